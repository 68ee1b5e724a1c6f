//! The plan: which disruptions fire when, and at which daemon, a pure function of the seed.

use super::{FIRST_AT, LAST_AT};
use serde::Serialize;

/// One thing the plan does to the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DisruptionKind {
    /// SIGKILL a daemon, wait `down`, start a new one with the same instance id.
    KillDaemon,
    /// SIGSTOP a daemon, wait `down` (longer than `sync.lease_ms`), SIGCONT it.
    PauseDaemon,
    /// SIGKILL redis-server, wait `down`, start it again on its AOF.
    RestartRedis,
    /// With Sentinel: SIGKILL the primary, wait until the sentinels promoted the replica, wait
    /// `down`, start the old primary again as a replica of the new one.
    FailoverRedis,
}

/// Which daemon a disruption hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Whichever instance leads when it fires (`<prefix>:leader`).
    Leader,
    /// Instance `chaos-<n>`, leading or not.
    Instance(u32),
}

/// One planned disruption of a chaos run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Disruption {
    /// Fires once this many blocks of the initial range are done.
    pub after_done: u64,
    /// What is done to a daemon or to Redis.
    pub kind: DisruptionKind,
    /// The daemon it hits (kills and pauses only).
    pub target: Option<Target>,
    pub(crate) down_ms: u64,
}

/// What the plan holds: how many of each disruption, over how many daemons.
#[derive(Clone, Copy, Debug)]
pub struct PlanShape {
    /// Daemon SIGKILLs.
    pub kills: u32,
    /// Daemon SIGSTOP/SIGCONT pairs.
    pub pauses: u32,
    /// How long a pause lasts at least: the daemons' `sync.lease_ms`; a pause lasts 1 to 2 s
    /// more, so the paused daemon loses its leases (and its leadership).
    pub lease_ms: u64,
    /// Redis restarts (or, with Sentinel, failovers).
    pub redis_restarts: u32,
    /// Whether Redis restarts are Sentinel failovers.
    pub sentinel: bool,
    /// Daemon processes.
    pub instances: u32,
}

/// The disruptions for a range of `total` blocks, in firing order: a pure function of its
/// arguments. The instants and down times of kills and Redis restarts are drawn as before
/// there were pauses and instances, so a seed's one-instance plan is unchanged; targets and
/// pauses come from draws of their own. With several instances the first kill hits the
/// leader, every other kill or pause the leader or a drawn instance (one chance in N + 1 each).
pub fn plan(seed: u64, total: u64, shape: &PlanShape) -> Vec<Disruption> {
    let mut rng = actors::rng::Rng::new(seed ^ 0xC4A0_5C4A_05C4_A05C);
    let mut targets = actors::rng::Rng::new(seed ^ 0x7A46_E7A4_6E7A_46E7);
    let mut draw_target = |first_kill: bool| {
        if shape.instances <= 1 {
            return Target::Instance(0);
        }
        let pick = targets.below(u64::from(shape.instances) + 1) as u32;
        if first_kill || pick == shape.instances {
            Target::Leader
        } else {
            Target::Instance(pick)
        }
    };
    let mut out = Vec::new();
    let mut draw = |kind, down: (f64, f64), target| Disruption {
        after_done: (rng.between(FIRST_AT, LAST_AT) * total as f64) as u64,
        kind,
        target,
        down_ms: rng.between(down.0, down.1) as u64,
    };
    for _ in 0..shape.kills {
        out.push(draw(DisruptionKind::KillDaemon, (0.0, 2_000.0), None));
    }
    let redis_kind = if shape.sentinel {
        DisruptionKind::FailoverRedis
    } else {
        DisruptionKind::RestartRedis
    };
    for _ in 0..shape.redis_restarts {
        out.push(draw(redis_kind, (200.0, 1_500.0), None));
    }
    let pause = shape.lease_ms as f64;
    for _ in 0..shape.pauses {
        out.push(draw(
            DisruptionKind::PauseDaemon,
            (pause + 1_000.0, pause + 2_000.0),
            None,
        ));
    }
    out.sort_by_key(|d| d.after_done);
    let mut first_kill = true;
    for disruption in &mut out {
        match disruption.kind {
            DisruptionKind::KillDaemon => {
                disruption.target = Some(draw_target(first_kill));
                first_kill = false;
            }
            DisruptionKind::PauseDaemon => disruption.target = Some(draw_target(false)),
            DisruptionKind::RestartRedis | DisruptionKind::FailoverRedis => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(instances: u32, pauses: u32) -> PlanShape {
        PlanShape {
            kills: 5,
            pauses,
            lease_ms: 3_000,
            redis_restarts: 3,
            sentinel: false,
            instances,
        }
    }

    #[test]
    fn a_plan_is_a_function_of_its_seed() {
        let one = plan(7, 20_000, &shape(1, 0));
        assert_eq!(one, plan(7, 20_000, &shape(1, 0)));
        assert_ne!(one, plan(8, 20_000, &shape(1, 0)));
        let kills = one
            .iter()
            .filter(|d| d.kind == DisruptionKind::KillDaemon)
            .count();
        assert_eq!((kills, one.len()), (5, 8));
        assert!(one.windows(2).all(|w| w[0].after_done <= w[1].after_done));
        assert!(one
            .iter()
            .all(|d| (1_000..=17_000).contains(&d.after_done) && d.down_ms <= 2_000));
        // One instance: every daemon disruption hits it.
        assert!(one.iter().all(|d| match d.kind {
            DisruptionKind::KillDaemon => d.target == Some(Target::Instance(0)),
            _ => d.target.is_none(),
        }));
    }

    #[test]
    fn instances_and_pauses_leave_the_kills_and_restarts_where_they_were() {
        let alone = plan(7, 20_000, &shape(1, 0));
        let fleet = plan(7, 20_000, &shape(3, 2));
        let without_pauses: Vec<(u64, DisruptionKind, u64)> = fleet
            .iter()
            .filter(|d| d.kind != DisruptionKind::PauseDaemon)
            .map(|d| (d.after_done, d.kind, d.down_ms))
            .collect();
        let before: Vec<(u64, DisruptionKind, u64)> = alone
            .iter()
            .map(|d| (d.after_done, d.kind, d.down_ms))
            .collect();
        assert_eq!(without_pauses, before);
        let pauses: Vec<&Disruption> = fleet
            .iter()
            .filter(|d| d.kind == DisruptionKind::PauseDaemon)
            .collect();
        assert_eq!(pauses.len(), 2);
        // Past the lease, by 1 to 2 s.
        assert!(pauses.iter().all(|d| (4_000..=5_000).contains(&d.down_ms)));
        let kills: Vec<Target> = fleet
            .iter()
            .filter(|d| d.kind == DisruptionKind::KillDaemon)
            .filter_map(|d| d.target)
            .collect();
        assert_eq!(kills.len(), 5);
        assert_eq!(kills[0], Target::Leader, "the first kill hits the leader");
        assert!(fleet
            .iter()
            .filter_map(|d| d.target)
            .all(|t| matches!(t, Target::Leader | Target::Instance(0..=2))));
    }

    #[test]
    fn with_sentinel_the_redis_restarts_are_failovers() {
        let failovers = plan(
            7,
            20_000,
            &PlanShape {
                sentinel: true,
                ..shape(1, 0)
            },
        );
        let kinds: Vec<DisruptionKind> = failovers.iter().map(|d| d.kind).collect();
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == DisruptionKind::FailoverRedis)
                .count(),
            3
        );
        assert!(!kinds.contains(&DisruptionKind::RestartRedis));
    }
}
