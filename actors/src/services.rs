//! What every actor of the tree shares: the chain, the store, the settings, where the other
//! actors currently are, the shutdown signal and the test fault hooks.

use crate::chain::Chain;
use crate::settings::Settings;
use crate::slot::SlotId;
use crate::store::Store;
use crate::stream_publisher::PublisherMsg;
use crate::sync_coordinator::CoordinatorMsg;
use ractor::ActorRef;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Milliseconds since the epoch, the clock of leases, retries and stream trimming.
///
/// Read from the wall clock once, then advanced by tokio's monotonic clock: a wall-clock step
/// (NTP) cannot expire every lease at once, and tests with paused tokio time move it too.
pub fn now_ms() -> u64 {
    static ANCHOR: OnceLock<(u64, tokio::time::Instant)> = OnceLock::new();
    let (wall_ms, instant) = ANCHOR.get_or_init(|| {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        (wall_ms, tokio::time::Instant::now())
    });
    wall_ms + instant.elapsed().as_millis() as u64
}

/// Current addresses of the actors others talk to. A restarted actor has a new `ActorRef`; the
/// Supervisor updates this so callers always reach the live instance.
#[derive(Clone, Default)]
pub struct Directory {
    inner: Arc<RwLock<DirectoryInner>>,
}

#[derive(Default)]
struct DirectoryInner {
    publisher: Option<ActorRef<PublisherMsg>>,
    coordinator: Option<ActorRef<CoordinatorMsg>>,
}

impl Directory {
    pub fn publisher(&self) -> Option<ActorRef<PublisherMsg>> {
        self.inner.read().ok().and_then(|d| d.publisher.clone())
    }
    pub fn coordinator(&self) -> Option<ActorRef<CoordinatorMsg>> {
        self.inner.read().ok().and_then(|d| d.coordinator.clone())
    }
    pub fn set_publisher(&self, actor: ActorRef<PublisherMsg>) {
        if let Ok(mut d) = self.inner.write() {
            d.publisher = Some(actor);
        }
    }
    pub fn set_coordinator(&self, actor: ActorRef<CoordinatorMsg>) {
        if let Ok(mut d) = self.inner.write() {
            d.coordinator = Some(actor);
        }
    }
}

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
}

impl FaultHooks {
    /// Random panics after claiming, about one batch in `n`, drawn from `seed`.
    pub fn with_random_panics(n: u64, seed: u64) -> Self {
        let hooks = FaultHooks::default();
        hooks.panic_one_in.store(n, Ordering::SeqCst);
        hooks.draws.store(seed, Ordering::SeqCst);
        hooks
    }

    pub fn panic_once_after_claiming(&self, block: u64) {
        self.panic_after_claiming.store(block, Ordering::SeqCst);
    }

    /// True (once) when `claimed` holds the armed block, or when the random draw says so.
    pub fn should_panic_after_claim(&self, claimed: &[u64]) -> bool {
        let armed = self.panic_after_claiming.load(Ordering::SeqCst);
        let hit_armed = armed != 0
            && claimed.contains(&armed)
            && self
                .panic_after_claiming
                .compare_exchange(armed, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
        let one_in = self.panic_one_in.load(Ordering::Relaxed);
        hit_armed || (one_in > 0 && self.draw() % one_in == 0)
    }

    /// splitmix64 over a shared counter: reproducible for a seed, lock-free across workers.
    fn draw(&self) -> u64 {
        let mut z = self
            .draws
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Counts kept by the tree for metrics, readiness and tests.
#[derive(Default)]
pub struct TreeStats {
    pub restarts: AtomicU64,
    /// When the TipWatcher last got the node's head (ms since the epoch; 0 = never).
    pub last_head_ok_ms: AtomicU64,
    /// The last head seen.
    pub head: AtomicU64,
    /// Timestamp of that head block (ms).
    pub head_time_ms: AtomicU64,
    /// Time of each commit script, as the StreamPublisher sees it.
    pub commit_latency: crate::histogram::Histogram,
    /// Restarts per slot name.
    pub restarts_by_slot: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

#[derive(Clone)]
pub struct Services {
    pub chain: Arc<dyn Chain>,
    pub store: Arc<dyn Store>,
    pub settings: Arc<Settings>,
    pub directory: Directory,
    /// Turns true when the process is shutting down: stop claiming, finish what is in flight.
    pub stopping: watch::Receiver<bool>,
    pub hooks: Arc<FaultHooks>,
    pub stats: Arc<TreeStats>,
    /// Called on each new `block` span (the binary records the trace id on it).
    pub span_hook: Option<fn(&tracing::Span)>,
}

impl Services {
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    pub fn lease_deadline(&self) -> u64 {
        now_ms() + self.settings.lease.as_millis() as u64
    }
}

/// Aborts a background task when the actor state holding it is dropped, including after a
/// panic (ractor does not run `post_stop` then).
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the heartbeat of `slot`'s leases.
pub fn spawn_heartbeat(services: &Services, slot: SlotId) -> AbortOnDrop {
    let store = services.store.clone();
    let every = services.settings.heartbeat;
    let lease = services.settings.lease.as_millis() as u64;
    AbortOnDrop(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(error) = store.heartbeat(slot, now_ms() + lease).await {
                tracing::warn!(%slot, %error, "Lease heartbeat failed");
            }
        }
    }))
}

/// What every lease-holding worker keeps: whether it has resumed its slot's leases yet, its
/// outage tracking, and its heartbeat.
pub struct SlotState {
    /// Leases the slot held before this instance started (or left after a failed round) are
    /// taken up first.
    pub resumed: bool,
    pub outage: Outage,
    _heartbeat: AbortOnDrop,
}

impl SlotState {
    pub fn new(services: &Services, slot: SlotId) -> Self {
        SlotState {
            resumed: false,
            outage: Outage::default(),
            _heartbeat: spawn_heartbeat(services, slot),
        }
    }

    /// A round went well: log the end of an outage, if there was one.
    pub fn succeeded(&mut self, slot: SlotId) {
        if self.outage.failures > 0 {
            tracing::info!(%slot, failed_rounds = self.outage.failures, "Works again");
        }
        self.outage.failures = 0;
    }

    /// A round failed: the blocks in hand stay leased to this slot, so they are taken up first
    /// next round. Returns how long to wait. Logged once per outage, not once per attempt
    /// (15 workers retry together).
    pub fn failed(
        &mut self,
        slot: SlotId,
        idle: Duration,
        error: &dyn std::fmt::Display,
    ) -> Duration {
        self.resumed = false;
        self.outage.failures = self.outage.failures.saturating_add(1);
        let wait = self.outage.backoff(idle);
        if self.outage.failures == 1 {
            tracing::warn!(%slot, %error, "Work failed; the leases stay, retrying with backoff");
        } else {
            tracing::debug!(%slot, %error, retry_in_ms = wait.as_millis() as u64, "Work still failing");
        }
        wait
    }
}

/// Rounds failed in a row, while the store or the node is away.
#[derive(Debug, Default)]
pub struct Outage {
    pub failures: u32,
}

impl Outage {
    /// `base` doubled per failure in a row, at most 5 s: no busy loop while Redis is away, and
    /// a prompt return when it is back.
    pub fn backoff(&self, base: Duration) -> Duration {
        let factor = 1u32 << self.failures.saturating_sub(1).min(8);
        (base * factor).min(Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::Outage;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_five_seconds() {
        let base = Duration::from_millis(500);
        let after = |failures| Outage { failures }.backoff(base);
        assert_eq!(after(1), base);
        assert_eq!(after(2), Duration::from_secs(1));
        assert_eq!(after(4), Duration::from_secs(4));
        assert_eq!(after(5), Duration::from_secs(5));
        assert_eq!(after(100), Duration::from_secs(5));
    }
}
