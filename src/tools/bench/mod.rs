//! `tron-actors bench`: how fast the daemon catches up and follows the head on this machine, and
//! how that compares with what the machine can do at all.
//!
//! One run, everything on this machine: a private redis-server (AOF on, as in production), the
//! simulated node in this process, the daemon as a child process (the real binary, so its RSS is
//! its own). Phases, in order, so that each figure is taken on an otherwise quiet machine:
//!
//! 1. ceilings: the simulated node serving blocks alone (raw HTTP, answers discarded), decoding
//!    alone (one core), the Redis commit path alone (pre-built blocks through the same
//!    exactly-once commit script), each on its own block range; and the physical ceiling of
//!    writing the stream: the same blocks' entries XADDed pipelined without the script, in the
//!    v1 shape and in v2 exactly as the commit writes them, with their memory per event;
//! 2. drain: the daemon starts `blocks` behind the head and empties the backlog while the head
//!    keeps moving; the node's request count per block comes from the node's side;
//! 3. head latency: once in sync, the time from each new block's timestamp (the moment the node
//!    has it) to the moment its done marker is set (in the same Lua script as its XADDs), for
//!    `head_blocks` blocks, by polling the marker every 10 ms;
//! 4. optionally the naive design (one block at a time, one XADD round trip per event) on its own
//!    range, for a gain measured in the same run.
//!
//! Phases 1 and 4 are in `ceilings`, 2 and 3 in `drain`, the report and its table in `report`.

mod ceilings;
mod drain;
mod report;

pub use report::{BenchReport, CpuUse, Latency, Rate, StreamCeiling};

use ceilings::{commit_alone, decode_alone, naive, serve_alone, xadd_alone, EntryShape};
use drain::drain_and_follow;

use super::local_redis::{LocalRedis, LocalRedisError};
use crate::store::{Keys, RedisStore, RedisStoreConfig};
use redis::aio::ConnectionManager;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tron_sim::{SimFaults, SimHandle, SimParams};

/// The largest `getblockbylimitnext` answer, as java-tron serves it.
const RANGE: u64 = 100;
/// Parallel requests when measuring the node's serving rate, and tasks committing in parallel
/// when measuring Redis alone: enough to keep either side busy on 2 cores.
const CEILING_CONCURRENCY: usize = 8;
const BENCH_PREFIX: &str = "{bench}";
const CEILING_PREFIX: &str = "{bench-ceiling}";
const NAIVE_PREFIX: &str = "{bench-naive}";
const XADD_PREFIX: &str = "{bench-xadd}";

/// What the run measures; the `bench` command's flags.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchOptions {
    /// Backlog the daemon drains, in blocks (a week is 201,600).
    #[arg(long, default_value_t = 20_000)]
    pub blocks: u64,
    /// Average transactions per simulated block (mainnet: about 300).
    #[arg(long, default_value_t = 300)]
    pub txs_per_block: u32,
    /// Time between simulated blocks.
    #[arg(long, default_value_t = 3000)]
    pub block_interval_ms: u64,
    /// Head blocks timed once in sync (p50/p99 of block timestamp to commit).
    #[arg(long, default_value_t = 100)]
    pub head_blocks: usize,
    /// Blocks per ceiling measurement (node alone, decoding alone, Redis alone).
    #[arg(long, default_value_t = 1000)]
    pub ceiling_blocks: u64,
    /// Also measure the naive design (one block at a time, one XADD per event) on this many
    /// blocks, for the gain as a ratio measured in the same run.
    #[arg(long)]
    pub naive: bool,
    /// Blocks for the naive design.
    #[arg(long, default_value_t = 1000)]
    pub naive_blocks: u64,
    /// Limit the simulated node to this many requests/s (429 and a 30 s penalty above it, like
    /// TronGrid) and the daemon's `node.rate_limit_rps` to the same. Skips the ceilings.
    #[arg(long)]
    pub node_rps: Option<u32>,
    /// Seeds the simulated chain.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The `tron-actors` binary to run as the daemon (the command runs itself).
    #[arg(skip)]
    pub daemon_exe: PathBuf,
}

impl BenchOptions {
    /// Blocks measured with the naive design: none unless asked for.
    fn naive_blocks(&self) -> u64 {
        if self.naive {
            self.naive_blocks
        } else {
            0
        }
    }

    fn validate(&self) -> Result<(), BenchError> {
        let mut problems = Vec::new();
        if self.blocks < 200 || self.blocks >= 201_600 {
            problems.push("--blocks must be within 200..201599 (the backlog cap is 201,600)");
        }
        if self.head_blocks == 0 {
            problems.push("--head-blocks must be at least 1");
        }
        if self.ceiling_blocks < RANGE {
            problems.push("--ceiling-blocks must be at least 100");
        }
        if self.block_interval_ms < 100 {
            problems.push("--block-interval-ms must be at least 100");
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(BenchError::Options(problems.join("; ")))
        }
    }
}

/// Why a benchmark run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The options contradict each other.
    #[error("{0}")]
    Options(String),
    /// The private redis-server did not start.
    #[error("{0}")]
    Redis(#[from] LocalRedisError),
    /// A direct Redis read (memory, stream length) failed.
    #[error("redis: {0}")]
    RedisCommand(#[from] redis::RedisError),
    /// The store failed during a measurement.
    #[error("store: {0}")]
    Store(#[from] actors::store::StoreError),
    /// The simulated node did not start.
    #[error("simulated node: {0}")]
    Sim(#[from] tron_sim::SimError),
    /// The node client failed during a measurement.
    #[error("node: {0}")]
    Chain(#[from] actors::chain::ChainError),
    /// The node client cannot be built.
    #[error("node client: {0}")]
    Client(String),
    /// The daemon binary cannot be started.
    #[error("cannot run the daemon {exe}: {source}")]
    Daemon {
        /// The binary tried.
        exe: String,
        /// Why it cannot be started.
        #[source]
        source: std::io::Error,
    },
    /// A phase made no progress within its limit.
    #[error("{what} did not finish within {limit:?} (daemon log: {log})")]
    Stalled {
        /// The phase.
        what: String,
        /// How long it was given.
        limit: Duration,
        /// The daemon's log file, to read why.
        log: String,
    },
    /// The daemon exited before the drain finished.
    #[error("the daemon exited early with {status} (log: {log})")]
    DaemonExited {
        /// Its exit status.
        status: String,
        /// Its log file, to read why.
        log: String,
    },
    /// A temporary directory or a log file cannot be made or read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Where each phase's blocks come from: disjoint ranges, so no phase profits from another's
/// cache.
struct Ranges {
    serve: (u64, u64),
    commit: (u64, u64),
    naive: (u64, u64),
}

/// Runs the whole benchmark; `say` receives progress lines.
pub async fn run(options: &BenchOptions, say: impl Fn(&str)) -> Result<BenchReport, BenchError> {
    options.validate()?;
    let dir = tempfile_dir()?;
    let redis = LocalRedis::start_on_free_port(&dir, true).await?;
    say(&format!(
        "redis-server on {} (AOF everysec), files in {}",
        redis.url(),
        dir.display()
    ));

    let first = SimParams::default().start_block;
    let k = options.ceiling_blocks;
    let ranges = Ranges {
        serve: (first, first + k),
        commit: (first + k, first + 2 * k),
        naive: (first + 2 * k, first + 2 * k + options.naive_blocks()),
    };
    // The drain range is the `blocks` below the head when the daemon starts: keep it clear of
    // the ranges above with some margin for the time the ceilings take.
    let history = 2 * k + options.naive_blocks() + options.blocks + 1_000;
    let params = SimParams {
        seed: options.seed,
        start_block: first,
        history,
        block_interval_ms: options.block_interval_ms,
        txs_per_block: options.txs_per_block,
        ..SimParams::default()
    };
    let faults = SimFaults {
        max_requests_per_sec: options.node_rps,
        penalty_ms: 30_000,
        ..SimFaults::none()
    };
    let sim = tron_sim::spawn(params, faults, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    say(&format!(
        "simulated node on {} ({} txs/block, head {})",
        sim.url(),
        options.txs_per_block,
        sim.chain().head()
    ));

    let mut report = BenchReport {
        txs_per_block: options.txs_per_block,
        block_interval_ms: options.block_interval_ms,
        node_rps: options.node_rps,
        ..BenchReport::default()
    };

    // Under a node rate limit the ceilings would only measure the limit (and trip it).
    if options.node_rps.is_none() {
        say("ceiling: the node serving alone ...");
        report.serve_alone = serve_alone(&sim, ranges.serve).await?;
        say("ceiling: decoding alone ...");
        report.decode_alone = decode_alone(&sim, ranges.serve)?;
        say("ceiling: the redis commit path alone ...");
        let (serial, parallel) = commit_alone(&sim, &redis.url(), ranges.commit).await?;
        report.commit_alone_serial = serial;
        report.commit_alone_parallel = parallel;
        say("ceiling: raw XADD of the same entries, v1-shaped then v2 ...");
        report.xadd_v1 = xadd_alone(&sim, &redis.url(), ranges.commit, EntryShape::V1).await?;
        report.xadd_v2 = xadd_alone(&sim, &redis.url(), ranges.commit, EntryShape::V2).await?;
    }

    say(&format!(
        "drain: the daemon starts {} blocks behind the head ...",
        options.blocks
    ));
    drain_and_follow(options, &sim, &redis, &dir, &mut report, &say).await?;

    let mut conn = connect(&redis.url()).await?;
    let keys = Keys::new(BENCH_PREFIX);
    // The commit script counts a block's events in the stats hash in the same script as their
    // XADDs, and the daemon is stopped: exactly the event entries in the stream, which also holds
    // a `block` entry per block and `finalized` entries.
    report.stream_events = RedisStore::new(&RedisStoreConfig {
        url: redis.url(),
        prefix: BENCH_PREFIX.to_string(),
        ..crate::config::Config::default().store_config()
    })?
    .stats()
    .await?
    .events_published();
    report.stream_entries = redis::cmd("XLEN")
        .arg(keys.events())
        .query_async(&mut conn)
        .await?;
    report.stream_bytes = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(keys.events())
        .arg("SAMPLES")
        .arg(0)
        .query_async::<Option<u64>>(&mut conn)
        .await?
        .unwrap_or(0);

    if options.naive_blocks() > 0 {
        say(&format!(
            "naive design over {} blocks ...",
            options.naive_blocks
        ));
        report.naive = Some(naive(&sim, &redis.url(), ranges.naive).await?);
    }
    let _ = sim.shutdown().await;
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}

fn tempfile_dir() -> Result<PathBuf, BenchError> {
    let dir = std::env::temp_dir().join(format!("tron-actors-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn connect(url: &str) -> Result<ConnectionManager, BenchError> {
    let client = redis::Client::open(url)?;
    // MEMORY USAGE of a stream of millions of entries takes longer than redis-rs's default
    // 500 ms answer timeout.
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(60)));
    Ok(ConnectionManager::new_with_config(client, config).await?)
}

fn events_in(sim: &SimHandle, (from, to): (u64, u64)) -> u64 {
    let head = sim.chain().head();
    (from..to)
        .filter_map(|n| sim.chain().expected_block_at(n, head))
        .map(|b| b.events.len() as u64)
        .sum()
}
