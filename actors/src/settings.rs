//! Knobs of the actor tree. They have no defaults here: the binary fills them from its config
//! (`config/default.toml` is the one source of the numbers), tests from `Settings::for_tests`.

use crate::sync_rule::GapLimits;
use std::time::Duration;

/// Which blocks the tree publishes (`sync.follow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Every block as soon as the node has it; a block replaced by a fork is retracted
    /// (`block_reverted`) and its canonical version published.
    Head,
    /// Only blocks at or below the node's solidified block (~19 blocks, ~57 s behind the
    /// head): nothing is ever retracted.
    Finalized,
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// This daemon's id (`instance.id`): its worker slots and its leadership are its own.
    pub instance: crate::slot::Instance,
    /// Which blocks to publish: the head's, or only final ones.
    pub follow: Follow,
    pub limits: GapLimits,
    /// Treat `start_block - 1` as last synced on a first run (backfill from a chosen block).
    pub start_block: Option<u64>,
    /// Number of BacklogActors: 13.
    pub backlog_workers: usize,
    /// How long a lease holds without a heartbeat; also the leadership's lease (a dead
    /// leader is replaced within it).
    pub lease: Duration,
    /// How often an actor extends its leases (a third of `lease` by default).
    pub heartbeat: Duration,
    /// Blocks a BacklogActor claims at once (fetched as one range from the node).
    pub backlog_batch: usize,
    /// Blocks the PriorityActor claims at once.
    pub priority_batch: usize,
    /// Wait before looking at an empty queue again.
    pub idle: Duration,
    /// The chain's block time: the next block is due this long after the last one's timestamp.
    pub block_interval: Duration,
    /// Shortest wait between two head polls (while the next block is due but not there yet).
    pub poll_min: Duration,
    /// Longest wait between two head polls.
    pub poll_max: Duration,
    /// How often the coordinator reaps expired leases and promotes due retries.
    pub maintain_every: Duration,
    /// The retry schedule in ms (see `retry::delays_ms`).
    pub retry_delays_ms: Vec<u64>,
    /// At most `restart_max` restarts within `restart_window`, then the tree gives up.
    pub restart_max: u32,
    pub restart_window: Duration,
    /// How long in-flight work may take to finish on shutdown.
    pub shutdown_grace: Duration,
}

#[cfg(test)]
impl Settings {
    /// Values for the crate's own tests: the production numbers of config/default.toml, written here because
    /// this crate cannot read the daemon's config. The daemon never uses them: it builds its
    /// settings from `config/default.toml` (`Config::settings` in the root crate).
    pub(crate) fn for_tests() -> Self {
        Settings {
            instance: crate::slot::Instance::NONE,
            follow: Follow::Head,
            limits: GapLimits {
                priority_max_gap: 20,
                backlog_max: 201_600,
            },
            start_block: None,
            backlog_workers: 13,
            lease: Duration::from_secs(60),
            heartbeat: Duration::from_secs(20),
            backlog_batch: 30,
            priority_batch: 4,
            idle: Duration::from_millis(500),
            block_interval: Duration::from_secs(3),
            poll_min: Duration::from_millis(250),
            poll_max: Duration::from_secs(3),
            maintain_every: Duration::from_secs(1),
            retry_delays_ms: crate::retry::delays_ms(1.0),
            restart_max: 20,
            restart_window: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}
