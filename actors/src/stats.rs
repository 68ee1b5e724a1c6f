//! What the tree counts, for metrics, readiness and tests.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counts kept by the tree for metrics, readiness and tests.
#[derive(Default)]
pub struct TreeStats {
    /// Restarts of any child by the Supervisor.
    pub restarts: AtomicU64,
    /// When the TipWatcher last got the node's head (ms since the epoch; 0 = never).
    pub last_head_ok_ms: AtomicU64,
    /// The last head seen.
    pub head: AtomicU64,
    /// Timestamp of that head block (ms).
    pub head_time_ms: AtomicU64,
    /// The node's solidified block as last published in a `finalized` entry (0 = none yet).
    pub finalized: AtomicU64,
    /// Forks found: walks back that retracted at least one block.
    pub forks: AtomicU64,
    /// Blocks retracted (`block_reverted` entries written).
    pub reverted_blocks: AtomicU64,
    /// Walks back refused because the node contradicts a finalized block (a broken node).
    pub deep_fork_refusals: AtomicU64,
    /// Time of each commit script, as the StreamPublisher sees it.
    pub commit_latency: crate::histogram::Histogram,
    /// The epoch this instance leads in; 0 while it follows.
    pub leader_epoch: AtomicU64,
    /// Elections this instance won (each starts a new epoch).
    pub elections_won: AtomicU64,
    /// Restarts per child: its worker slot's name, `publisher` or `coordinator`.
    pub restarts_by_slot: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// True from the tree's start until it stops or begins to shut down (readiness).
    running: AtomicBool,
}

impl TreeStats {
    /// Whether the tree is running and not shutting down.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// Whether this instance leads (runs the TipWatcher and the SyncCoordinator).
    pub fn is_leader(&self) -> bool {
        self.leader_epoch.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Relaxed);
    }
}
