//! `tron-actors chaos`: the exactly-once promise under fire. A simulated node with faults on and
//! a backlog to catch up plus a moving head; a private redis-server with AOF (or, with
//! `--sentinel`, a primary, a replica and three sentinels); the daemon as one or more
//! (`--instances`) child processes of this same binary. While they work, a seeded plan SIGKILLs
//! daemons (the leader among them; then starts them again), SIGSTOPs daemons past their lease
//! (then SIGCONTs them), and SIGKILLs redis-server (then starts it again on its AOF; with
//! Sentinel: the primary, restarted as a replica of the one promoted), and the daemons' workers
//! panic at random (`faults.panic_one_in`). When every block of the range is done, each daemon
//! is stopped with SIGTERM and [`crate::verify`] checks the whole range against the node.
//!
//! What is reproducible: the chain (seeded), which requests get which node fault (seeded, in
//! request order), the plan (which disruptions, in which order, after how many blocks done, for
//! how long) and each daemon process's panic draws. What is not: timing. Requests race between
//! 15 workers, so the request order, and with it which block meets which fault, differs between
//! runs; so do the blocks in flight at each kill.
//!
//! The options and the entry point are here; the plan in `plan`, the running system and what
//! the harness does to it in `harness` (Redis, one server or a Sentinel deployment, in
//! `backend`), what it found in `report`.

mod backend;
mod harness;
mod plan;
mod report;

pub use plan::{plan, Disruption, DisruptionKind, PlanShape, Target};
pub use report::{ChaosReport, InstanceReport};

use crate::tools::local_redis::LocalRedisError;
use crate::verify::VerifyError;
use harness::Harness;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The harness writes under its own prefix, and the daemon's config comes only from what the
/// harness sets: inherited `TRON_ACTORS_*` and `OTEL_*` variables are dropped.
const PREFIX: &str = "{chaos}";
/// Disruptions fire between these fractions of the initial range done, so that each one hits
/// a daemon with work in hand, and the range still finishes after the last.
const FIRST_AT: f64 = 0.05;
const LAST_AT: f64 = 0.85;
/// How often the harness looks at the store and the daemon.
const TICK: Duration = Duration::from_millis(100);
/// How long the daemon gets to stop after SIGTERM: its grace period, then handing back leases.
const GRACE_MS: u64 = 5_000;
/// Problems kept in the report (all are counted).
const PROBLEMS_SHOWN: usize = 20;
/// The daemons' `sync.lease_ms` with several instances or pauses: low, so that a dead or
/// paused leader is replaced, and a paused daemon's leases reaped, within seconds.
const FLEET_LEASE_MS: u64 = 3_000;
/// The daemons' `sync.lease_ms` with one instance and no pauses (as before there were any).
const ALONE_LEASE_MS: u64 = 20_000;
/// Most daemon processes a run starts.
const MAX_INSTANCES: u32 = 16;

/// What the run does; the `chaos` command's flags. [`ChaosOptions::default`] is the long run's
/// shape (the flags' defaults).
#[derive(Clone, Debug, clap::Args)]
pub struct ChaosOptions {
    /// Seeds the chain, the node's faults, the plan of kills and restarts, and the panics.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Backlog: blocks the simulated node has produced when the daemon first starts (the live
    /// head keeps moving during the run and is part of the range).
    #[arg(long, default_value_t = 20_000)]
    pub blocks: u64,
    /// Average transactions per block. Mainnet has about 300; the default is lower so that a
    /// 20,000-block run fits in minutes.
    #[arg(long, default_value_t = 50)]
    pub txs_per_block: u32,
    /// Time between new head blocks.
    #[arg(long, default_value_t = 1_000)]
    pub block_interval_ms: u64,
    /// Daemon SIGKILLs (each followed by a new daemon process).
    #[arg(long, default_value_t = 5)]
    pub kills: u32,
    /// redis-server SIGKILLs (each followed by a restart on its AOF); with `--sentinel`,
    /// primary failovers.
    #[arg(long, default_value_t = 3)]
    pub redis_restarts: u32,
    /// Daemon processes on the same Redis, instance ids `chaos-0`, `chaos-1`, ...; kills hit a
    /// drawn instance, the first one (and others, by draw) the one leading at that moment.
    #[arg(long, default_value_t = 1)]
    pub instances: u32,
    /// Daemon SIGSTOPs past `sync.lease_ms` (then SIGCONT); default 0 with one instance, 2
    /// with several.
    #[arg(long)]
    pub pauses: Option<u32>,
    /// Redis as a primary, one replica and three sentinels (private processes); the daemons
    /// find the primary through the sentinels with `redis.wait_replicas = 1`, and the Redis
    /// restarts become failovers (SIGKILL of the primary, restarted as a replica).
    #[arg(long)]
    pub sentinel: bool,
    /// A worker panics after about one claimed batch in this many (0: never).
    #[arg(long, default_value_t = 40)]
    pub panic_one_in: u64,
    /// Chance per node request of each of: HTTP 500, 503, connection reset, truncated JSON,
    /// `{}` for an existing block, `[]` infos, `{"Error": ...}`, slow answer.
    #[arg(long, default_value_t = 0.01)]
    pub fault_rate: f64,
    /// Chance per node request of each of HTTP 429 and 403 (TronGrid's body, then a penalty).
    #[arg(long, default_value_t = 0.001)]
    pub rate_limit_rate: f64,
    /// The node's penalty after a 429/403 (TronGrid: 30,000), scaled down for the run.
    #[arg(long, default_value_t = 300)]
    pub penalty_ms: u64,
    /// How late a slow answer comes.
    #[arg(long, default_value_t = 300)]
    pub slow_ms: u64,
    /// Chance that a window of `--fork-window` blocks starts with a fork at the live head (the
    /// node serves its blocks in another version, then switches back to the canonical branch).
    #[arg(long, default_value_t = 1.0)]
    pub fork_rate: f64,
    /// Forks start at multiples of this many blocks.
    #[arg(long, default_value_t = 8)]
    pub fork_window: u64,
    /// Forks replace 1 to this many blocks (at most 19).
    #[arg(long, default_value_t = 5)]
    pub max_fork_depth: u64,
    /// Fail if the run has not finished after this many seconds.
    #[arg(long, value_name = "DURATION_CAP", default_value = "3600", value_parser = seconds)]
    pub duration_cap: Duration,
    /// The `tron-actors` binary to run the daemon with (the command runs itself).
    #[arg(skip = PathBuf::from("tron-actors"))]
    pub daemon_exe: PathBuf,
    /// Keep the working directory (Redis files, daemon logs) even when the run is exact.
    #[arg(long)]
    pub keep_dir: bool,
}

impl ChaosOptions {
    /// Daemon pauses: `--pauses`, else 0 with one instance and 2 with several.
    pub fn pauses(&self) -> u32 {
        self.pauses
            .unwrap_or(if self.instances > 1 { 2 } else { 0 })
    }

    /// The daemons' `sync.lease_ms`: low with several instances or pauses.
    pub fn lease_ms(&self) -> u64 {
        if self.instances > 1 || self.pauses() > 0 {
            FLEET_LEASE_MS
        } else {
            ALONE_LEASE_MS
        }
    }
}

fn seconds(text: &str) -> Result<Duration, std::num::ParseIntError> {
    text.parse().map(Duration::from_secs)
}

impl Default for ChaosOptions {
    fn default() -> Self {
        ChaosOptions {
            seed: 1,
            blocks: 20_000,
            txs_per_block: 50,
            block_interval_ms: 1_000,
            kills: 5,
            redis_restarts: 3,
            instances: 1,
            pauses: None,
            sentinel: false,
            panic_one_in: 40,
            fault_rate: 0.01,
            rate_limit_rate: 0.001,
            penalty_ms: 300,
            slow_ms: 300,
            fork_rate: 1.0,
            fork_window: 8,
            max_fork_depth: 5,
            duration_cap: Duration::from_secs(3_600),
            daemon_exe: PathBuf::from("tron-actors"),
            keep_dir: false,
        }
    }
}

/// Why a chaos run failed (a run that finishes with a wrong stream is a report, not an error).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// The options contradict each other.
    #[error("invalid options: {0}")]
    Options(String),
    /// The simulated node did not start.
    #[error("simulated node: {0}")]
    Sim(#[from] tron_sim::SimError),
    /// The private redis-server did not (re)start.
    #[error("{0}")]
    Redis(#[from] LocalRedisError),
    /// The sentinels did not carry out a failover, or its old primary did not come back as a
    /// replica.
    #[error("sentinel failover: {0}")]
    Failover(String),
    /// Reading progress from the store failed.
    #[error("redis: {0}")]
    Store(#[from] actors::store::StoreError),
    /// The final audit could not run.
    #[error("verify: {0}")]
    Verify(#[from] VerifyError),
    /// A file, directory or child process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The node client for the audit cannot be built.
    #[error("node client for verify: {0}")]
    Client(String),
    /// The run did not finish within `--duration-cap`.
    #[error("not finished after {cap_s} s: {done} of {total} blocks done; logs in {dir}")]
    TimedOut {
        /// The cap, in seconds.
        cap_s: u64,
        /// Blocks of the range done by then.
        done: u64,
        /// Blocks in the range.
        total: u64,
        /// The run's directory (daemon logs, Redis AOF), kept for inspection.
        dir: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ChaosError {
    let what = what.into();
    move |source| ChaosError::Io { what, source }
}

/// Runs the whole thing; `Ok` carries the report whether or not the range is exact.
pub async fn run(options: ChaosOptions) -> Result<ChaosReport, ChaosError> {
    validate(&options)?;
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!(
        "tron-actors-chaos-{}-{}",
        std::process::id(),
        options.seed
    ));
    std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
    let mut harness = Harness::start(options, dir, started).await?;
    let outcome = harness.drive().await;
    harness.finish(outcome).await
}

fn validate(options: &ChaosOptions) -> Result<(), ChaosError> {
    let mut problems = Vec::new();
    if options.blocks < 100 {
        problems.push("--blocks must be at least 100".to_string());
    }
    // Eight kinds of fault at this rate each must leave most requests answered.
    if !(0.0..=0.1).contains(&options.fault_rate) {
        problems.push("--fault-rate must be within 0..=0.1".to_string());
    }
    if !(0.0..=0.05).contains(&options.rate_limit_rate) {
        problems.push("--rate-limit-rate must be within 0..=0.05".to_string());
    }
    if !(1..=MAX_INSTANCES).contains(&options.instances) {
        problems.push(format!("--instances must be within 1..={MAX_INSTANCES}"));
    }
    if options.panic_one_in == 1 {
        problems.push("--panic-one-in 1 would panic on every batch; use 0 (off) or more".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ChaosError::Options(problems.join("; ")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_default_to_the_long_run() {
        use clap::{Args, FromArgMatches};
        let command = ChaosOptions::augment_args(clap::Command::new("chaos"));
        let parsed = ChaosOptions::from_arg_matches(&command.get_matches_from(["chaos"])).unwrap();
        let wanted = ChaosOptions::default();
        assert_eq!(format!("{parsed:?}"), format!("{wanted:?}"));
    }
}
