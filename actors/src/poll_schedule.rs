//! When the TipWatcher asks the node for its head next.
//!
//! TRON produces a block every 3 s, stamped with its slot time, so the next block is due at the
//! last one's timestamp plus 3 s. Polling at a fixed cadence either wastes requests or adds up to
//! a whole period of latency; polling when the block is due gets it within one poll interval.
//! A block reaches the node a little after its timestamp, and the node's clock and ours differ:
//! each new head bounds that delay from below (it was not there at our previous poll), and the
//! median of recent bounds is added to the due time. Being a lower bound it never makes us poll
//! after the block arrived; polls then follow every `min` (at most 4 per second by default) until
//! it is there, and every `max` once it is more than a block time late (a stalled node).

use std::collections::VecDeque;
use std::time::Duration;

/// Bounds remembered for the estimate: about a minute and a half of blocks.
const WINDOW: usize = 32;

#[derive(Clone, Debug)]
pub(crate) struct PollSchedule {
    block_interval_ms: i64,
    min_ms: u64,
    max_ms: u64,
    /// The newest head seen: number and timestamp.
    last_head: Option<(u64, i64)>,
    /// When the previous poll was answered, on our clock.
    previous_poll_ms: Option<i64>,
    /// Per recent new head: our previous poll's time minus the head's timestamp. The block was
    /// not at the node then, so its arrival delay is larger.
    arrival_bounds: VecDeque<i64>,
}

impl PollSchedule {
    /// `block_interval`: the chain's block time; `min`/`max`: the shortest and longest waits
    /// between two polls.
    pub(crate) fn new(block_interval: Duration, min: Duration, max: Duration) -> Self {
        let min_ms = (min.as_millis() as u64).max(1);
        PollSchedule {
            block_interval_ms: block_interval.as_millis() as i64,
            min_ms,
            max_ms: (max.as_millis() as u64).max(min_ms),
            last_head: None,
            previous_poll_ms: None,
            arrival_bounds: VecDeque::with_capacity(WINDOW),
        }
    }

    /// Records the head answered at our time `now_ms` and returns the wait before the next poll.
    pub(crate) fn after_head(&mut self, number: u64, timestamp_ms: u64, now_ms: u64) -> Duration {
        let (timestamp, now) = (timestamp_ms as i64, now_ms as i64);
        let is_new = self.last_head.is_none_or(|(last, _)| number > last);
        if is_new {
            if let (Some(previous), Some(_)) = (self.previous_poll_ms, self.last_head) {
                if self.arrival_bounds.len() == WINDOW {
                    self.arrival_bounds.pop_front();
                }
                self.arrival_bounds.push_back(previous - timestamp);
            }
            self.last_head = Some((number, timestamp));
        }
        self.previous_poll_ms = Some(now);
        let last_timestamp = self.last_head.map_or(timestamp, |(_, t)| t);
        let due = last_timestamp + self.block_interval_ms + self.arrival_delay();
        let wait = due - now;
        let wait = if -wait > self.block_interval_ms {
            self.max_ms
        } else {
            (wait.max(0) as u64).clamp(self.min_ms, self.max_ms)
        };
        Duration::from_millis(wait)
    }

    /// The median of the recent lower bounds of the arrival delay; 0 before any.
    fn arrival_delay(&self) -> i64 {
        let mut bounds: Vec<i64> = self.arrival_bounds.iter().copied().collect();
        bounds.sort_unstable();
        bounds.get(bounds.len() / 2).copied().unwrap_or(0)
    }

    /// The wait after a failed poll: the node or the coordinator did not answer.
    pub(crate) fn after_failure(&self) -> Duration {
        Duration::from_millis(self.min_ms.max(1_000).min(self.max_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> PollSchedule {
        PollSchedule::new(
            Duration::from_millis(3000),
            Duration::from_millis(250),
            Duration::from_millis(3000),
        )
    }

    fn ms(wait: Duration) -> u64 {
        wait.as_millis() as u64
    }

    #[test]
    fn polls_when_the_next_block_is_due() {
        let mut s = schedule();
        // First sight of block 1 (timestamp 10_000) at 11_700: block 2 is due at 13_000.
        assert_eq!(ms(s.after_head(1, 10_000, 11_700)), 1300);
        // The same head again at 12_000 (processing took 300 ms).
        assert_eq!(ms(s.after_head(1, 10_000, 12_000)), 1000);
    }

    #[test]
    fn learns_how_late_blocks_arrive_from_polls_that_missed_them() {
        let mut s = schedule();
        s.after_head(1, 10_000, 10_500);
        // Polled at 13_000: not there yet; every 250 ms until it is.
        assert_eq!(ms(s.after_head(1, 10_000, 13_000)), 250);
        assert_eq!(ms(s.after_head(1, 10_000, 13_250)), 250);
        // Block 2 (13_000) seen at 13_500: it was not there at 13_250, so it arrives at least
        // 250 ms after its timestamp; block 3 is polled for at 16_000 + 250.
        assert_eq!(ms(s.after_head(2, 13_000, 13_500)), 2750);
    }

    #[test]
    fn a_clock_behind_the_node_polls_earlier() {
        let mut s = schedule();
        s.after_head(1, 10_000, 9_600);
        // Block 2 is already there at our 12_400 (node time 13_000+): the bound is negative.
        assert_eq!(ms(s.after_head(2, 13_000, 12_400)), 250);
        // The median of {9_600 - 13_000} = -3_400 puts block 3's poll at 16_000 - 3_400.
        assert_eq!(s.arrival_delay(), -3_400);
    }

    #[test]
    fn a_late_block_is_polled_for_every_min_then_every_max_when_very_late() {
        let mut s = schedule();
        s.after_head(1, 10_000, 10_100);
        assert_eq!(ms(s.after_head(1, 10_000, 13_150)), 250);
        assert_eq!(ms(s.after_head(1, 10_000, 15_000)), 250);
        // More than a block time late: a stalled node is not polled 4 times a second.
        assert_eq!(ms(s.after_head(1, 10_000, 16_200)), 3000);
    }

    #[test]
    fn waits_stay_within_min_and_max() {
        let mut s = PollSchedule::new(
            Duration::from_millis(3000),
            Duration::from_millis(50),
            Duration::from_millis(50),
        );
        assert_eq!(ms(s.after_head(1, 10_000, 10_000)), 50);
        assert_eq!(ms(s.after_failure()), 50);
        assert_eq!(ms(schedule().after_failure()), 1000);
    }
}
