//! The retry schedule: attempt n waits the n-th delay; after the last one the block is dead.

use std::time::Duration;

/// 5, 10, 30, 60, 180, 300, 600, 1800, 3600 seconds.
pub const RETRY_DELAYS_SECS: [u64; 9] = [5, 10, 30, 60, 180, 300, 600, 1800, 3600];

/// The delays in milliseconds, multiplied by `scale` (1.0 in production; tests shrink it).
pub fn delays_ms(scale: f64) -> Vec<u64> {
    RETRY_DELAYS_SECS
        .iter()
        .map(|secs| ((*secs as f64) * 1000.0 * scale).round().max(1.0) as u64)
        .collect()
}

/// What happens after the `attempt`-th failure (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    /// Try again after this delay.
    RetryAfter(Duration),
    /// The schedule is used up: give the block up.
    DeadLetter,
}

/// The step after the `attempt`-th failure, by the schedule `delays_ms` (one delay per retry).
pub fn after_failure(attempt: u32, delays_ms: &[u64]) -> NextStep {
    match attempt
        .checked_sub(1)
        .and_then(|index| delays_ms.get(index as usize))
    {
        Some(ms) => NextStep::RetryAfter(Duration::from_millis(*ms)),
        None => NextStep::DeadLetter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_schedule_then_dead_letter() {
        let delays = delays_ms(1.0);
        let waits: Vec<_> = (1..=9)
            .map(|attempt| match after_failure(attempt, &delays) {
                NextStep::RetryAfter(d) => d.as_secs(),
                NextStep::DeadLetter => panic!("attempt {attempt} dead too early"),
            })
            .collect();
        assert_eq!(waits, RETRY_DELAYS_SECS);
        assert_eq!(after_failure(10, &delays), NextStep::DeadLetter);
    }

    #[test]
    fn scale_shrinks_every_delay() {
        assert_eq!(
            delays_ms(0.001),
            vec![5, 10, 30, 60, 180, 300, 600, 1800, 3600]
        );
    }
}
