//! What every lease-holding worker keeps besides its own state: whether it has resumed its
//! slot's leases, its outage (failed rounds in a row) and the heartbeat of its leases.

use crate::clock::now_ms;
use crate::services::Services;
use crate::slot::SlotId;
use std::time::Duration;

/// Aborts a background task when the actor state holding it is dropped, including after a
/// panic (ractor does not run `post_stop` then).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the heartbeat of `slot`'s leases.
fn spawn_heartbeat(services: &Services, slot: SlotId) -> AbortOnDrop {
    let store = services.store.clone();
    let every = services.settings.heartbeat;
    let lease = services.settings.lease.as_millis() as u64;
    AbortOnDrop(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match store.heartbeat(slot, now_ms() + lease).await {
                Ok(_) => {}
                // Out of memory: logged once where the work pauses; the lease may expire, and
                // the reaper hands the block back once Redis accepts writes again.
                Err(error) if error.is_backpressure() => {
                    tracing::debug!(%slot, %error, "Lease heartbeat failed");
                }
                Err(error) => tracing::warn!(%slot, %error, "Lease heartbeat failed"),
            }
        }
    }))
}

/// What every lease-holding worker keeps: whether it has resumed its slot's leases yet, its
/// outage tracking, and its heartbeat.
pub(crate) struct SlotState {
    /// Leases the slot held before this instance started (or left after a failed round) are
    /// taken up first.
    pub(crate) resumed: bool,
    outage: Outage,
    _heartbeat: AbortOnDrop,
}

impl SlotState {
    pub(crate) fn new(services: &Services, slot: SlotId) -> Self {
        SlotState {
            resumed: false,
            outage: Outage::default(),
            _heartbeat: spawn_heartbeat(services, slot),
        }
    }

    /// A round went well: log the end of an outage, if there was one.
    pub(crate) fn succeeded(&mut self, slot: SlotId) {
        if self.outage.failures > 0 {
            tracing::info!(%slot, failed_rounds = self.outage.failures, "Works again");
        }
        self.outage.failures = 0;
    }

    /// A round failed: the blocks in hand stay leased to this slot, so they are taken up first
    /// next round. Returns how long to wait. Logged once per outage, not once per attempt
    /// (15 workers retry together).
    pub(crate) fn failed(
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
struct Outage {
    failures: u32,
}

impl Outage {
    /// `base` doubled per failure in a row, at most 5 s: no busy loop while Redis is away, and
    /// a prompt return when it is back.
    fn backoff(&self, base: Duration) -> Duration {
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
