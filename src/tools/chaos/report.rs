//! What a chaos run did and found.

use super::plan::Disruption;
use super::PROBLEMS_SHOWN;
use crate::verify::{BlockProblem, VerifyReport};
use serde::Serialize;

/// What a run did and found.
#[derive(Clone, Debug, Serialize)]
pub struct ChaosReport {
    pub(crate) seed: u64,
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) blocks: u64,
    pub(crate) events: u64,
    /// Daemon processes run side by side (`--instances`).
    pub instances: u32,
    pub(crate) kills: u64,
    /// Kills that hit the instance leading at that moment.
    pub leader_kills: u64,
    /// SIGSTOPs past the lease, each followed by a SIGCONT.
    pub pauses: u64,
    /// Injected worker panics: the daemons' supervisor log lines with `reason_kind = "fault_hook"`.
    pub panics: u64,
    pub(crate) redis_restarts: u64,
    /// Sentinel failovers: the primary SIGKILLed, a replica promoted, the old one back as its
    /// replica.
    pub failovers: u64,
    /// Times the daemon exited by itself (its tree gave up past the restart intensity) and the
    /// harness started it again, as systemd would.
    pub daemon_exits: u64,
    /// Forks the node made at the live head and switched away from during the run.
    pub forks: u64,
    /// `block_reverted` entries in the range: orphaned versions the daemon retracted.
    pub reverted_blocks: u64,
    /// Blocks that failed every retry and were put back to work by the harness.
    pub dead_requeued: u64,
    /// The daemons' exit status after the final SIGTERM: 0 when every one exited 0, else the
    /// first other (`None`: one did not exit, or died of a signal).
    pub stop_status: Option<i32>,
    /// Per instance, in id order: blocks committed, kills, pauses, exit status.
    pub per_instance: Vec<InstanceReport>,
    pub(crate) missing: u64,
    pub(crate) duplicated: u64,
    pub(crate) unexpected: u64,
    pub(crate) unverifiable_blocks: u64,
    pub(crate) elapsed_s: u64,
    /// Faults the node injected, per kind.
    pub node_faults: std::collections::BTreeMap<String, u64>,
    pub(crate) plan: Vec<Disruption>,
    /// The first problems verify found, per block.
    pub problems: Vec<BlockProblem>,
}

/// What one daemon instance did in a run.
#[derive(Clone, Debug, Serialize)]
pub struct InstanceReport {
    /// Its `instance.id`.
    pub id: String,
    /// Blocks it committed (the stats hash's `blocks_by:<id>`, read before verify).
    pub blocks: u64,
    /// SIGKILLs it took.
    pub kills: u64,
    /// Pauses it took.
    pub pauses: u64,
    /// Its exit status after the final SIGTERM.
    pub stop_status: Option<i32>,
}

impl ChaosReport {
    /// Nothing missing, doubled or unexpected, every block checked, and a clean stop.
    pub fn is_exact(&self) -> bool {
        self.missing == 0
            && self.duplicated == 0
            && self.unexpected == 0
            && self.unverifiable_blocks == 0
            && self.stop_status == Some(0)
    }

    /// The one line a run ends with.
    pub fn line(&self) -> String {
        format!(
            "chaos seed={} instances={} blocks={} events={} kills={} pauses={} panics={} redis_restarts={} failovers={} forks={} reverted_blocks={} missing={} duplicated={} unexpected={} unverifiable={} daemon_exits={} dead_requeued={} stop_status={} elapsed_s={} {}",
            self.seed,
            self.instances,
            self.blocks,
            self.events,
            self.kills,
            self.pauses,
            self.panics,
            self.redis_restarts,
            self.failovers,
            self.forks,
            self.reverted_blocks,
            self.missing,
            self.duplicated,
            self.unexpected,
            self.unverifiable_blocks,
            self.daemon_exits,
            self.dead_requeued,
            self.stop_status.map_or("none".to_string(), |s| s.to_string()),
            self.elapsed_s,
            if self.is_exact() { "EXACT" } else { "NOT EXACT" }
        )
    }

    pub(super) fn absorb(&mut self, verified: VerifyReport) {
        self.blocks = verified.blocks;
        self.events = verified.expected_events;
        self.reverted_blocks = verified.reverted_blocks;
        self.missing = verified.missing;
        self.duplicated = verified.duplicated;
        self.unexpected = verified.unexpected;
        self.unverifiable_blocks = verified.unverifiable_blocks;
        self.problems = verified.problems.into_iter().take(PROBLEMS_SHOWN).collect();
    }
}
