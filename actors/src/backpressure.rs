//! Backpressure from the store: while it is on, no worker claims new work, commits wait, and
//! the head is still polled but not recorded (what it would enqueue waits until it is off: the
//! next head after it then finds the gap, as after any downtime). Nothing is failed, retried or
//! dead-lettered for it; blocks in hand keep their leases.
//!
//! Two things turn it on:
//! - the process's store monitor ([`Backpressure::set_paused`]): in the binary, Redis memory
//!   near `maxmemory` (`redis.memory_pause_ratio`) or an evicting `maxmemory-policy`; the
//!   monitor decides when it ends (with hysteresis) and logs both moments;
//! - a write the store refused for want of memory ([`crate::store::StoreError::OutOfMemory`]: a
//!   commit, a claim, recording a head): writes then wait a backoff (1 s, doubling while the
//!   refusals go on, at most 30 s) before they probe again, so an out-of-memory Redis is never
//!   hammered and no block walks the retry schedule into the dead letters for it. The first
//!   write that goes through ends it.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The first wait after an out-of-memory refusal.
const OOM_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest wait between attempts while the refusals go on.
const OOM_BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Default)]
struct PauseState {
    /// Why the monitor paused the work, while it does.
    paused: Option<String>,
    /// The last out-of-memory refusal, while no write has succeeded since.
    oom: Option<OomEpisode>,
}

#[derive(Clone, Debug)]
struct OomEpisode {
    error: String,
    /// Commits wait until then.
    until: Instant,
    /// The wait after the next refusal.
    next_backoff: Duration,
}

/// The shared switch; cloning shares it. Off (work goes on) until something turns it on.
#[derive(Clone)]
pub struct Backpressure {
    state: Arc<watch::Sender<PauseState>>,
}

impl Default for Backpressure {
    fn default() -> Self {
        Backpressure {
            state: Arc::new(watch::Sender::new(PauseState::default())),
        }
    }
}

impl std::fmt::Debug for Backpressure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backpressure")
            .field("reason", &self.reason())
            .finish()
    }
}

impl Backpressure {
    /// Pauses the work with `reason` (`Some`), or lets it go on (`None`). Returns whether this
    /// changed anything, so the caller logs the moments it began and ended once.
    pub fn set_paused(&self, reason: Option<String>) -> bool {
        self.state.send_if_modified(|state| {
            if state.paused == reason {
                return false;
            }
            state.paused = reason;
            true
        })
    }

    /// Why the work is paused, or `None` when it goes on: what `/readyz` says.
    pub fn reason(&self) -> Option<String> {
        let state = self.state.borrow();
        if let Some(reason) = &state.paused {
            return Some(reason.clone());
        }
        state.oom.as_ref().map(|oom| {
            format!(
                "the store refused a write for want of memory: {}",
                oom.error
            )
        })
    }

    /// Whether the work is paused (by the monitor, or by an out-of-memory refusal that no
    /// successful write followed yet).
    pub fn is_paused(&self) -> bool {
        let state = self.state.borrow();
        state.paused.is_some() || state.oom.is_some()
    }

    /// Whether work that writes may start now (claims, recording a head): not while the monitor
    /// pauses it, nor during an out-of-memory backoff. Once a backoff is over, writes may probe
    /// the store again; the first that goes through ends the episode.
    pub(crate) fn may_write(&self) -> bool {
        let state = self.state.borrow();
        state.paused.is_none()
            && state
                .oom
                .as_ref()
                .is_none_or(|oom| oom.until <= Instant::now())
    }

    /// A write was refused for want of memory: writes wait a backoff, which doubles each time a
    /// probe after it is refused again (refusals within one backoff, from writers that were
    /// already under way, do not lengthen it). Logged when an episode begins; returns the wait.
    pub(crate) fn out_of_memory(&self, error: &str) -> Duration {
        let mut wait = OOM_BACKOFF_MIN;
        self.state.send_modify(|state| {
            let now = Instant::now();
            match &mut state.oom {
                Some(oom) if oom.until > now => {
                    wait = oom.until - now;
                }
                Some(oom) => {
                    wait = oom.next_backoff;
                    oom.error = error.to_string();
                    oom.until = now + wait;
                    oom.next_backoff = (wait * 2).min(OOM_BACKOFF_MAX);
                }
                None => {
                    tracing::warn!(
                        %error,
                        "Redis refused a write for want of memory: claims and commits pause, and are tried again with backoff"
                    );
                    state.oom = Some(OomEpisode {
                        error: error.to_string(),
                        until: now + OOM_BACKOFF_MIN,
                        next_backoff: OOM_BACKOFF_MIN * 2,
                    });
                }
            }
        });
        wait
    }

    /// A write went through: an out-of-memory episode, if any, is over (logged once).
    pub(crate) fn write_succeeded(&self) {
        if self.state.borrow().oom.is_none() {
            return;
        }
        let ended = self
            .state
            .send_if_modified(|state| state.oom.take().is_some());
        if ended {
            tracing::info!("Redis accepts writes again: claims and commits resume");
        }
    }

    /// Waits until commits may go ahead; `false` when `stopping` is true while they may not
    /// (the caller keeps its lease and gives up the block).
    pub(crate) async fn wait_until_open(&self, stopping: &mut watch::Receiver<bool>) -> bool {
        let mut changes = self.state.subscribe();
        loop {
            // Open as `may_write` is; a backoff's end is waited for here, not polled.
            let (paused, until) = {
                let state = changes.borrow_and_update();
                (state.paused.is_some(), state.oom.as_ref().map(|o| o.until))
            };
            let backoff_over = until.is_none_or(|until| until <= Instant::now());
            if !paused && backoff_over {
                // Also while stopping: a block finished within the grace is committed.
                return true;
            }
            if *stopping.borrow() {
                return false;
            }
            let sleep = async {
                match until {
                    Some(until) if !paused => tokio::time::sleep_until(until).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = changes.changed() => {}
                _ = stopping.changed() => {}
                () = sleep => {
                    // The backoff is over: try once more (the episode ends with a success).
                    return true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_commits_until_it_is_lifted() {
        let gate = Backpressure::default();
        let (_stop, mut stopping) = watch::channel(false);
        assert!(gate.set_paused(Some("redis memory at 95%".into())));
        assert!(!gate.set_paused(Some("redis memory at 95%".into())));
        assert!(!gate.may_write());
        assert_eq!(gate.reason().as_deref(), Some("redis memory at 95%"));
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.wait_until_open(&mut stopping).await })
        };
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!waiter.is_finished());
        assert!(gate.set_paused(None));
        assert!(waiter.await.unwrap());
        assert!(gate.may_write());
        assert_eq!(gate.reason(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn out_of_memory_backs_off_doubling_to_thirty_seconds_until_a_write_succeeds() {
        let gate = Backpressure::default();
        let (_stop, mut stopping) = watch::channel(false);
        let mut waits = Vec::new();
        for _ in 0..8 {
            // Every writer refused within one backoff waits for the same end.
            let wait = gate.out_of_memory("OOM command not allowed");
            assert_eq!(gate.out_of_memory("OOM command not allowed"), wait);
            assert!(!gate.may_write());
            assert!(gate.is_paused());
            let started = Instant::now();
            assert!(gate.wait_until_open(&mut stopping).await);
            assert_eq!(started.elapsed(), wait);
            // The backoff is over: a probe may write; still paused until one goes through.
            assert!(gate.may_write());
            assert!(gate.is_paused());
            waits.push(wait.as_secs());
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert!(gate.reason().unwrap().contains("OOM command not allowed"));
        gate.write_succeeded();
        assert!(!gate.is_paused());
        assert_eq!(gate.reason(), None);
        assert_eq!(gate.out_of_memory("again").as_secs(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_ends_the_wait_without_opening() {
        let gate = Backpressure::default();
        gate.set_paused(Some("full".into()));
        let (stop, mut stopping) = watch::channel(false);
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.wait_until_open(&mut stopping).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.send_replace(true);
        assert!(!waiter.await.unwrap());
    }
}
