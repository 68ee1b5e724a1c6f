//! One pace for every request to the node, whoever sends it, and one penalty box when the node
//! says we went too fast.
//!
//! Pacing is a GCRA ("theoretical arrival time") with reservations: each caller takes the next
//! free slot under the lock and then sleeps until it, so callers are served in the order they
//! asked, and a burst of `burst` requests is allowed after a quiet period. The penalty gate holds
//! every caller until the node's suspension is over; nobody probes the node during it, since
//! TronGrid extends the suspension of a key that keeps knocking.
//!
//! Two lanes share the pace: head requests take the next free slot; backlog requests queue for
//! a turn first, and only the caller holding the turn has a slot reserved. A head request so waits
//! for at most one backlog slot, however many backlog workers are waiting, and the backlog gets
//! what the head leaves of the budget.

use std::sync::Mutex;
use std::time::Duration;

use actors::chain::Lane;
use tokio::time::{sleep_until, Instant};

#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// Time between two requests; `None` when unlimited.
    interval: Option<Duration>,
    /// How far ahead of the pace a burst may run: `(burst - 1) * interval`.
    tolerance: Duration,
    state: Mutex<State>,
    /// Held by the one backlog caller whose slot is reserved.
    backlog_turn: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct State {
    /// When the next request would be due if the pace had been kept exactly.
    tat: Instant,
    penalty_until: Option<Instant>,
}

impl RateLimiter {
    /// `rps` <= 0 (or not finite) means no pacing; the penalty gate still applies.
    pub(crate) fn new(rps: f64, burst: u32) -> Self {
        let interval = (rps.is_finite() && rps > 0.0).then(|| Duration::from_secs_f64(1.0 / rps));
        let tolerance = interval.map_or(Duration::ZERO, |i| i * burst.max(1).saturating_sub(1));
        RateLimiter {
            interval,
            tolerance,
            state: Mutex::new(State {
                tat: Instant::now(),
                penalty_until: None,
            }),
            backlog_turn: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding it: a few assignments.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until this caller may send one request.
    #[cfg(test)]
    pub(crate) async fn acquire(&self, lane: Lane) {
        self.acquire_or_leave(lane, false).await;
    }

    /// As [`RateLimiter::acquire`]; with `leave`, returns `false` instead of waiting out a
    /// penalty (another node can take the request), `true` when the request may go.
    pub(crate) async fn acquire_or_leave(&self, lane: Lane, leave: bool) -> bool {
        if lane == Lane::Backlog && (self.interval.is_some() || self.in_penalty()) {
            // Fair (FIFO): backlog callers take turns in the order they came.
            let _turn = self.backlog_turn.lock().await;
            self.acquire_slot(leave).await
        } else {
            self.acquire_slot(leave).await
        }
    }

    async fn acquire_slot(&self, leave: bool) -> bool {
        loop {
            let slot = {
                let mut state = self.lock();
                let now = Instant::now();
                match state.penalty_until {
                    Some(until) if until > now => Err(until),
                    _ => {
                        let Some(interval) = self.interval else {
                            return true;
                        };
                        let earliest = state.tat.checked_sub(self.tolerance).unwrap_or(now);
                        let slot = earliest.max(now);
                        state.tat = state.tat.max(slot) + interval;
                        Ok(slot)
                    }
                }
            };
            match slot {
                Err(_) if leave => return false,
                Err(penalty_end) => sleep_until(penalty_end).await,
                Ok(slot) => {
                    sleep_until(slot).await;
                    // A penalty that began while we waited for our slot applies to us too.
                    if !self.in_penalty() {
                        return true;
                    }
                }
            }
        }
    }

    /// Holds every caller for `duration` from now (or longer, if a penalty already runs longer).
    pub(crate) fn penalize(&self, duration: Duration) {
        let mut state = self.lock();
        let until = Instant::now() + duration;
        let until = state.penalty_until.map_or(until, |p| p.max(until));
        state.penalty_until = Some(until);
        // Restart at the plain pace after the penalty: no burst straight into a node that has
        // just suspended us.
        state.tat = state.tat.max(until + self.tolerance);
    }

    /// When the current penalty ends, if one runs.
    pub(crate) fn penalty_until(&self) -> Option<Instant> {
        let state = self.lock();
        state.penalty_until.filter(|until| *until > Instant::now())
    }

    fn in_penalty(&self) -> bool {
        self.penalty_until().is_some()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::sync::Arc;

    async fn grant_times(limiter: Arc<RateLimiter>, callers: usize) -> Vec<Duration> {
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..callers {
            let limiter = limiter.clone();
            tasks.spawn(async move {
                limiter.acquire(Lane::Head).await;
                start.elapsed()
            });
        }
        let mut times = tasks.join_all().await;
        times.sort();
        times
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_are_paced_after_the_burst() {
        let limiter = Arc::new(RateLimiter::new(10.0, 3));
        let times = grant_times(limiter, 6).await;
        let ms: Vec<u128> = times.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 0, 0, 100, 200, 300]);
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let limiter = Arc::new(RateLimiter::new(0.0, 1));
        let times = grant_times(limiter, 50).await;
        assert!(times.iter().all(|t| t.is_zero()));
    }

    #[tokio::test(start_paused = true)]
    async fn penalty_holds_everyone_then_paces_without_burst() {
        let limiter = Arc::new(RateLimiter::new(10.0, 3));
        limiter.penalize(Duration::from_secs(30));
        // A shorter penalty never shortens the running one.
        limiter.penalize(Duration::from_secs(1));
        let times = grant_times(limiter.clone(), 3).await;
        let ms: Vec<u128> = times.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![30_000, 30_100, 30_200]);
        assert!(limiter.penalty_until().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn penalty_during_a_wait_applies_to_waiters() {
        let limiter = Arc::new(RateLimiter::new(1.0, 1));
        limiter.acquire(Lane::Head).await;
        let waiter = {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                limiter.acquire(Lane::Backlog).await;
                start.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        limiter.penalize(Duration::from_secs(10));
        let waited = waiter.await.unwrap();
        assert!(waited >= Duration::from_millis(10_500), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_may_leave_does_not_wait_out_a_penalty() {
        let limiter = Arc::new(RateLimiter::new(10.0, 1));
        limiter.penalize(Duration::from_secs(30));
        let start = Instant::now();
        assert!(!limiter.acquire_or_leave(Lane::Backlog, true).await);
        assert!(!limiter.acquire_or_leave(Lane::Head, true).await);
        assert_eq!(start.elapsed(), Duration::ZERO);
        // One that may not leave waits, then goes.
        assert!(limiter.acquire_or_leave(Lane::Head, false).await);
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn the_head_waits_for_one_backlog_slot_not_for_the_whole_backlog() {
        let limiter = Arc::new(RateLimiter::new(10.0, 1));
        let start = Instant::now();
        let mut backlog = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let limiter = limiter.clone();
            backlog.spawn(async move {
                limiter.acquire(Lane::Backlog).await;
                start.elapsed()
            });
        }
        // Let every backlog caller queue up.
        tokio::time::sleep(Duration::from_millis(1)).await;
        limiter.acquire(Lane::Head).await;
        let head = start.elapsed();
        // With one queue for all it would be the 51st: 5 s.
        assert!(head <= Duration::from_millis(200), "head waited {head:?}");
        let mut times = backlog.join_all().await;
        times.sort();
        // The pace holds for everyone together: 51 requests at 10/s take 5 s.
        assert!(times[49] >= Duration::from_millis(4_900), "{:?}", times[49]);
    }
}
