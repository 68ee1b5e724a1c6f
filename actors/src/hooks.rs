//! Faults the tree can be told to inject, to prove that it recovers.

use crate::slot::SlotId;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Faults tests switch on to prove recovery; all off in production (the `[faults]` config
/// section is for tests and the chaos harness).
#[derive(Default)]
pub struct FaultHooks {
    /// When a queue worker claims this block, it panics once (0 = off).
    panic_after_claiming: AtomicU64,
    /// A queue worker panics after about one claimed batch in this many (0 = off).
    panic_one_in: AtomicU64,
    /// State of the generator drawing those panics.
    draws: AtomicU64,
    /// Where the process dies in its next retraction (0 = off), as under SIGKILL.
    abort_in_retraction: std::sync::atomic::AtomicU8,
    /// Slots whose worker is panicking on purpose, until their supervisor takes note: it logs
    /// the restart as `reason_kind = "fault_hook"`, which the chaos harness counts.
    injected: Mutex<HashSet<SlotId>>,
}

impl FaultHooks {
    /// Random panics after claiming, about one batch in `n`, drawn from `seed`.
    pub fn with_random_panics(n: u64, seed: u64) -> Self {
        let hooks = FaultHooks::default();
        hooks.panic_one_in.store(n, Ordering::SeqCst);
        hooks.draws.store(seed, Ordering::SeqCst);
        hooks
    }

    /// The process aborts (no cleanup, as under SIGKILL) at `point` of its next retraction.
    pub fn abort_in_retraction(&self, point: RetractionPoint) {
        self.abort_in_retraction
            .store(point as u8, Ordering::SeqCst);
    }

    /// Dies here if told to (see [`FaultHooks::abort_in_retraction`]).
    pub(crate) fn at_retraction_point(&self, point: RetractionPoint) {
        if self.abort_in_retraction.load(Ordering::SeqCst) == point as u8 {
            tracing::error!(point = ?point, "Fault hook: the process dies in the middle of a retraction");
            std::process::abort();
        }
    }

    /// Arms a panic of the worker that next claims `block`, once.
    pub fn panic_once_after_claiming(&self, block: u64) {
        self.panic_after_claiming.store(block, Ordering::SeqCst);
    }

    /// True (once) when `claimed` holds the armed block, or when the random draw says so; the
    /// worker of `slot` must then panic, and [`FaultHooks::take_injected_panic`] says so once.
    pub(crate) fn should_panic_after_claim(&self, slot: SlotId, claimed: &[u64]) -> bool {
        let armed = self.panic_after_claiming.load(Ordering::SeqCst);
        let hit_armed = armed != 0
            && claimed.contains(&armed)
            && self
                .panic_after_claiming
                .compare_exchange(armed, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
        let one_in = self.panic_one_in.load(Ordering::Relaxed);
        let panic = hit_armed || (one_in > 0 && self.draw() % one_in == 0);
        if panic {
            self.injected_slots().insert(slot);
        }
        panic
    }

    /// Whether the worker of `slot` stopped on a panic these hooks asked for (once per panic).
    pub(crate) fn take_injected_panic(&self, slot: SlotId) -> bool {
        self.injected_slots().remove(&slot)
    }

    /// A set of slots stays usable even if a holder panicked: nothing panics while holding it.
    fn injected_slots(&self) -> std::sync::MutexGuard<'_, HashSet<SlotId>> {
        self.injected.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// SplitMix64 ([`crate::rng`]) over an atomic state: reproducible for a seed, and workers
    /// draw without a lock.
    fn draw(&self) -> u64 {
        let state = self
            .draws
            .fetch_add(crate::rng::GOLDEN, Ordering::Relaxed)
            .wrapping_add(crate::rng::GOLDEN);
        crate::rng::mix64(state)
    }
}

/// The steps of a retraction a test can kill the process between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RetractionPoint {
    /// The fork is found and walked back; nothing is retracted yet.
    BeforeRevert = 1,
    /// The orphans are retracted; their canonical versions are not committed yet.
    AfterRevert = 2,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_injected_panic_is_reported_once_for_its_slot_only() {
        let hooks = FaultHooks::default();
        hooks.panic_once_after_claiming(7);
        assert!(!hooks.should_panic_after_claim(SlotId::backlog(1), &[5, 6]));
        assert!(hooks.should_panic_after_claim(SlotId::backlog(2), &[6, 7]));
        assert!(!hooks.take_injected_panic(SlotId::backlog(1)));
        assert!(hooks.take_injected_panic(SlotId::backlog(2)));
        assert!(!hooks.take_injected_panic(SlotId::backlog(2)));
    }
}
