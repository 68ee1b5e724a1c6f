//! The plan: which disruptions fire when, a pure function of the seed.

use super::{FIRST_AT, LAST_AT};
use serde::Serialize;

/// One thing the plan does to the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DisruptionKind {
    /// SIGKILL the daemon, wait `down`, start a new one.
    KillDaemon,
    /// SIGKILL redis-server, wait `down`, start it again on its AOF.
    RestartRedis,
}

/// One planned disruption of a chaos run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Disruption {
    /// Fires once this many blocks of the initial range are done.
    pub after_done: u64,
    /// What is done to the daemon or to Redis.
    pub kind: DisruptionKind,
    pub(crate) down_ms: u64,
}

/// The disruptions for a range of `total` blocks, in firing order: a pure function of its
/// arguments.
pub fn plan(seed: u64, total: u64, kills: u32, redis_restarts: u32) -> Vec<Disruption> {
    let mut rng = actors::rng::Rng::new(seed ^ 0xC4A0_5C4A_05C4_A05C);
    let mut draw = |kind, down: (f64, f64)| Disruption {
        after_done: (rng.between(FIRST_AT, LAST_AT) * total as f64) as u64,
        kind,
        down_ms: rng.between(down.0, down.1) as u64,
    };
    let mut out = Vec::new();
    for _ in 0..kills {
        out.push(draw(DisruptionKind::KillDaemon, (0.0, 2_000.0)));
    }
    for _ in 0..redis_restarts {
        out.push(draw(DisruptionKind::RestartRedis, (200.0, 1_500.0)));
    }
    out.sort_by_key(|d| d.after_done);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_is_a_function_of_its_seed() {
        let one = plan(7, 20_000, 5, 3);
        assert_eq!(one, plan(7, 20_000, 5, 3));
        assert_ne!(one, plan(8, 20_000, 5, 3));
        let kills = one
            .iter()
            .filter(|d| d.kind == DisruptionKind::KillDaemon)
            .count();
        assert_eq!((kills, one.len()), (5, 8));
        assert!(one.windows(2).all(|w| w[0].after_done <= w[1].after_done));
        assert!(one
            .iter()
            .all(|d| (1_000..=17_000).contains(&d.after_done) && d.down_ms <= 2_000));
    }
}
