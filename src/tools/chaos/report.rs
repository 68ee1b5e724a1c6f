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
    pub(crate) kills: u64,
    /// Injected worker panics: the daemons' supervisor log lines with `reason_kind = "fault_hook"`.
    pub panics: u64,
    pub(crate) redis_restarts: u64,
    /// Times the daemon exited by itself (its tree gave up past the restart intensity) and the
    /// harness started it again, as systemd would.
    pub daemon_exits: u64,
    /// Forks the node made at the live head and switched away from during the run.
    pub forks: u64,
    /// `block_reverted` entries in the range: orphaned versions the daemon retracted.
    pub reverted_blocks: u64,
    /// Blocks that failed every retry and were put back to work by the harness.
    pub dead_requeued: u64,
    /// The daemon's exit status after the final SIGTERM (0 expected).
    pub stop_status: Option<i32>,
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
            "chaos seed={} blocks={} events={} kills={} panics={} redis_restarts={} forks={} reverted_blocks={} missing={} duplicated={} unexpected={} unverifiable={} daemon_exits={} dead_requeued={} stop_status={} elapsed_s={} {}",
            self.seed,
            self.blocks,
            self.events,
            self.kills,
            self.panics,
            self.redis_restarts,
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
