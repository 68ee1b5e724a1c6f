//! `tron-actors bench`: how fast the daemon catches up and follows the head on this machine, and
//! how that compares with what the machine can do at all.
//!
//! One run, everything on this machine: a private redis-server (AOF on, as in production), the
//! simulated node in this process, the daemon as a child process (the real binary, so its RSS is
//! its own). Phases, in order, so that each figure is taken on an otherwise quiet machine:
//!
//! 1. ceilings: the simulated node serving blocks alone (raw HTTP, answers discarded), decoding
//!    alone (one core), and the Redis commit path alone (pre-built blocks through the same
//!    exactly-once commit script), each on its own block range;
//! 2. drain: the daemon starts `blocks` behind the head and empties the backlog while the head
//!    keeps moving; the node's request count per block comes from the node's side;
//! 3. head latency: once in sync, the time from each new block's timestamp (the moment the node
//!    has it) to the moment its done marker is set (in the same Lua script as its XADDs), for
//!    `head_blocks` blocks, by polling the marker every 10 ms;
//! 4. optionally the naive design (one block at a time, one XADD round trip per event) on its own
//!    range, for a gain measured in the same run.

use crate::local_redis::{free_port, LocalRedis, LocalRedisError};
use crate::sim::chain::wall_clock_ms;
use crate::sim::{SimFaults, SimHandle, SimParams};
use crate::store::{Keys, RedisStore, RedisStoreConfig};
use crate::tron::{decode, TronClient, TronClientConfig};
use actors::chain::Chain;
use actors::model::Block;
use actors::slot::{SlotId, SlotKind};
use actors::store::{Origin, Store};
use redis::aio::ConnectionManager;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest `getblockbylimitnext` answer, as java-tron serves it.
const RANGE: u64 = 100;
/// Parallel requests when measuring the node's serving rate, and tasks committing in parallel
/// when measuring Redis alone: enough to keep either side busy on 2 cores.
const CEILING_CONCURRENCY: usize = 8;
const BENCH_PREFIX: &str = "{bench}";
const CEILING_PREFIX: &str = "{bench-ceiling}";
const NAIVE_PREFIX: &str = "{bench-naive}";

#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Backlog to drain, in blocks.
    pub blocks: u64,
    pub txs_per_block: u32,
    pub block_interval_ms: u64,
    /// Head blocks to time once in sync.
    pub head_blocks: usize,
    /// Blocks per ceiling measurement.
    pub ceiling_blocks: u64,
    /// Also measure the naive design, on this many blocks (0 = not at all).
    pub naive_blocks: u64,
    /// Limit the simulated node to this many requests/s (429 and a penalty above it) and the
    /// daemon to the same rate.
    pub node_rps: Option<u32>,
    pub seed: u64,
    /// The `tron-actors` binary to run as the daemon.
    pub daemon_exe: PathBuf,
}

impl BenchOptions {
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

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Options(String),
    #[error("{0}")]
    Redis(#[from] LocalRedisError),
    #[error("redis: {0}")]
    RedisCommand(#[from] redis::RedisError),
    #[error("store: {0}")]
    Store(#[from] actors::store::StoreError),
    #[error("simulated node: {0}")]
    Sim(#[from] crate::sim::SimError),
    #[error("node: {0}")]
    Chain(#[from] actors::chain::ChainError),
    #[error("node client: {0}")]
    Client(String),
    #[error("cannot run the daemon {exe}: {source}")]
    Daemon {
        exe: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} did not finish within {limit:?} (daemon log: {log})")]
    Stalled {
        what: String,
        limit: Duration,
        log: String,
    },
    #[error("the daemon exited early with {status} (log: {log})")]
    DaemonExited { status: String, log: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A rate over a measured stretch.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Rate {
    pub blocks: u64,
    pub events: u64,
    pub seconds: f64,
}

impl Rate {
    pub fn bps(&self) -> f64 {
        per_second(self.blocks, self.seconds)
    }
    pub fn eps(&self) -> f64 {
        per_second(self.events, self.seconds)
    }
}

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Quantiles of a set of latencies, in ms.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(mut values: Vec<f64>) -> Latency {
        if values.is_empty() {
            return Latency::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            // Nearest rank: the smallest value with at least q of the samples at or below it.
            let rank = (q * values.len() as f64).ceil().max(1.0) as usize;
            values[rank.min(values.len()) - 1]
        };
        Latency {
            samples: values.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BenchReport {
    pub txs_per_block: u32,
    pub block_interval_ms: u64,
    pub node_rps: Option<u32>,
    /// The node serving bodies in ranges and infos per block, answers discarded.
    pub serve_alone: Rate,
    /// Decoding node JSON into events, one core.
    pub decode_alone: Rate,
    /// Pre-built blocks through the commit script, one at a time (as the StreamPublisher).
    pub commit_alone_serial: Rate,
    /// The same with several commits in flight: what Redis can absorb.
    pub commit_alone_parallel: Rate,
    pub drain: Rate,
    /// Blocks that arrived at the head during the drain and went through the tip or priority.
    pub head_blocks_during_drain: u64,
    pub requests_during_drain: u64,
    pub requests_by_endpoint: BTreeMap<String, u64>,
    pub node_429: u64,
    pub head_while_draining: Latency,
    pub head_in_sync: Latency,
    pub head_polls_per_sec: f64,
    pub rss_peak_mb: f64,
    pub stream_entries: u64,
    pub stream_bytes: u64,
    pub redis_used_memory_delta: u64,
    pub naive: Option<Rate>,
    /// CPU seconds used during the drain by the daemon, redis-server, and this process (the
    /// simulated node and the bench's own polling).
    pub drain_cpu: CpuUse,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CpuUse {
    pub daemon_s: f64,
    pub redis_s: f64,
    pub node_s: f64,
}

/// User + system CPU seconds a process has used (Linux `/proc/<pid>/stat`); 0 elsewhere.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces), from field 3 on.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15; USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

impl BenchReport {
    pub fn ceiling_eps(&self) -> f64 {
        let commit = self
            .commit_alone_serial
            .eps()
            .max(self.commit_alone_parallel.eps());
        commit.min(self.serve_alone.eps())
    }

    pub fn ratio(&self) -> f64 {
        let ceiling = self.ceiling_eps();
        if ceiling > 0.0 {
            self.drain.eps() / ceiling
        } else {
            0.0
        }
    }

    pub fn req_per_block(&self) -> f64 {
        let blocks = self.drain.blocks + self.head_blocks_during_drain;
        self.requests_during_drain as f64 / blocks.max(1) as f64
    }

    pub fn redis_bytes_per_event(&self) -> f64 {
        self.stream_bytes as f64 / self.stream_entries.max(1) as f64
    }

    /// The figures as a table, for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let row = |out: &mut String, what: &str, rate: &Rate| {
            if rate.blocks == 0 {
                // Not measured (the ceilings are skipped under a node rate limit).
                return;
            }
            let _ = writeln!(
                out,
                "{:<44} {:>9} {:>11} {:>8.1} {:>10.0} {:>12.0}",
                what,
                rate.blocks,
                rate.events,
                rate.seconds,
                rate.bps(),
                rate.eps()
            );
        };
        let _ = writeln!(
            out,
            "tron-actors bench: {} txs/block, blocks every {} ms, node limit {}",
            self.txs_per_block,
            self.block_interval_ms,
            self.node_rps
                .map_or_else(|| "none".to_string(), |r| format!("{r} req/s"))
        );
        let _ = writeln!(
            out,
            "{:<44} {:>9} {:>11} {:>8} {:>10} {:>12}",
            "measure", "blocks", "events", "seconds", "blocks/s", "events/s"
        );
        row(&mut out, "ceiling: node serving alone", &self.serve_alone);
        row(
            &mut out,
            "ceiling: decoding alone (1 core)",
            &self.decode_alone,
        );
        row(
            &mut out,
            "ceiling: redis commit alone (1 in flight)",
            &self.commit_alone_serial,
        );
        row(
            &mut out,
            &format!("ceiling: redis commit alone ({CEILING_CONCURRENCY} in flight)"),
            &self.commit_alone_parallel,
        );
        row(&mut out, "daemon: backlog drain", &self.drain);
        if let Some(naive) = &self.naive {
            row(
                &mut out,
                "naive: 1 block at a time, 1 XADD per event",
                naive,
            );
        }
        let _ = writeln!(out);
        if self.ceiling_eps() > 0.0 {
            let _ = writeln!(
                out,
                "ceiling (min of node, redis)        {:>12.0} events/s",
                self.ceiling_eps()
            );
            let _ = writeln!(
                out,
                "drain / ceiling                     {:>12.2}",
                self.ratio()
            );
        } else {
            let _ = writeln!(
                out,
                "ceilings not measured (under a node rate limit they would only measure the limit)"
            );
        }
        if let Some(naive) = &self.naive {
            let gain = if naive.eps() > 0.0 {
                self.drain.eps() / naive.eps()
            } else {
                0.0
            };
            let _ = writeln!(out, "drain / naive                       {:>12.1}x", gain);
        }
        let endpoints: Vec<String> = self
            .requests_by_endpoint
            .iter()
            .map(|(path, n)| format!("{}={n}", path.rsplit('/').next().unwrap_or(path)))
            .collect();
        let _ = writeln!(
            out,
            "node requests per block (drain)     {:>12.3}   ({} requests for {} blocks: {})",
            self.req_per_block(),
            self.requests_during_drain,
            self.drain.blocks + self.head_blocks_during_drain,
            endpoints.join(" ")
        );
        let _ = writeln!(
            out,
            "node requests per second (drain)    {:>12.1}",
            per_second(self.requests_during_drain, self.drain.seconds)
        );
        let _ = writeln!(
            out,
            "node 429 answers                    {:>12}",
            self.node_429
        );
        let latency = |out: &mut String, what: &str, l: &Latency| {
            let _ = writeln!(
                out,
                "{what:<35} p50 {:>6.0} ms  p99 {:>6.0} ms  max {:>6.0} ms  ({} blocks)",
                l.p50_ms, l.p99_ms, l.max_ms, l.samples
            );
        };
        latency(
            &mut out,
            "head latency while draining",
            &self.head_while_draining,
        );
        latency(&mut out, "head latency in sync", &self.head_in_sync);
        let _ = writeln!(
            out,
            "head polls per second (in sync)     {:>12.2}",
            self.head_polls_per_sec
        );
        let cpu = &self.drain_cpu;
        let _ = writeln!(
            out,
            "CPU during the drain                daemon {:.1} s, redis-server {:.1} s, node {:.1} s ({:.1} s wall, 2 cores = {:.1} CPU s)",
            cpu.daemon_s,
            cpu.redis_s,
            cpu.node_s,
            self.drain.seconds,
            self.drain.seconds * 2.0
        );
        let _ = writeln!(
            out,
            "daemon peak RSS                     {:>12.1} MB",
            self.rss_peak_mb
        );
        let _ = writeln!(
            out,
            "redis stream bytes per event        {:>12.0}   ({} entries, {:.1} MB; used_memory grew {:.1} MB)",
            self.redis_bytes_per_event(),
            self.stream_entries,
            self.stream_bytes as f64 / 1e6,
            self.redis_used_memory_delta as f64 / 1e6
        );
        out
    }

    /// The one-line summary the issue asks for, always the last line printed.
    pub fn line(&self) -> String {
        format!(
            "drain_bps={:.1} drain_eps={:.0} ceiling_eps={:.0} ratio={:.2} req_per_block={:.3} \
             head_p50_ms={:.0} head_p99_ms={:.0} rss_mb={:.1} redis_bytes_per_event={:.0}",
            self.drain.bps(),
            self.drain.eps(),
            self.ceiling_eps(),
            self.ratio(),
            self.req_per_block(),
            self.head_in_sync.p50_ms,
            self.head_in_sync.p99_ms,
            self.rss_peak_mb,
            self.redis_bytes_per_event()
        )
    }
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
        naive: (first + 2 * k, first + 2 * k + options.naive_blocks),
    };
    // The drain range is the `blocks` below the head when the daemon starts: keep it clear of
    // the ranges above with some margin for the time the ceilings take.
    let history = 2 * k + options.naive_blocks + options.blocks + 1_000;
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
    let sim = crate::sim::spawn(params, faults, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
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
    }

    say(&format!(
        "drain: the daemon starts {} blocks behind the head ...",
        options.blocks
    ));
    drain_and_follow(options, &sim, &redis, &dir, &mut report, &say).await?;

    let mut conn = connect(&redis.url()).await?;
    let keys = Keys::new(BENCH_PREFIX);
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

    if options.naive_blocks > 0 {
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

/// Bodies in ranges of 100 and infos per block over plain HTTP, answers read and dropped.
async fn serve_alone(sim: &SimHandle, (from, to): (u64, u64)) -> Result<Rate, BenchError> {
    // reqwest is built without a default TLS provider; the node client installs the same one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .build()
        .map_err(|e| BenchError::Client(e.to_string()))?;
    let base = sim.url();
    let started = Instant::now();
    let post = |path: &'static str, body: serde_json::Value| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let answer = http
                .post(url)
                .json(&body)
                .send()
                .await
                .map_err(|e| BenchError::Client(e.to_string()))?;
            let bytes = answer
                .bytes()
                .await
                .map_err(|e| BenchError::Client(e.to_string()))?;
            Ok::<usize, BenchError>(bytes.len())
        }
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(CEILING_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    let mut start = from;
    while start < to {
        let end = (start + RANGE).min(to);
        let permit = permits.clone();
        let request = post(
            "/wallet/getblockbylimitnext",
            serde_json::json!({"startNum": start, "endNum": end}),
        );
        tasks.spawn(async move {
            let _permit = permit.acquire_owned().await;
            request.await
        });
        for n in start..end {
            let permit = permits.clone();
            let request = post(
                "/wallet/gettransactioninfobyblocknum",
                serde_json::json!({ "num": n }),
            );
            tasks.spawn(async move {
                let _permit = permit.acquire_owned().await;
                request.await
            });
        }
        start = end;
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| BenchError::Client(e.to_string()))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Rate {
        blocks: to - from,
        events: events_in(sim, (from, to)),
        seconds,
    })
}

/// The daemon's decoder over the node's JSON of the same blocks, on one core.
fn decode_alone(sim: &SimHandle, (from, to): (u64, u64)) -> Result<Rate, BenchError> {
    let chain = sim.chain();
    let mut inputs = Vec::new();
    for n in from..to {
        if let (Some(body), Some(infos)) = (chain.block_json(n), chain.infos_json(n)) {
            inputs.push((n, body, infos));
        }
    }
    let started = Instant::now();
    let mut events = 0u64;
    for (n, body, infos) in &inputs {
        let block = decode::decode_block(*n, body.as_bytes(), infos.as_bytes())?;
        events += block.events.len() as u64;
    }
    Ok(Rate {
        blocks: inputs.len() as u64,
        events,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Pre-built blocks through the exactly-once commit script: first one at a time, then
/// `CEILING_CONCURRENCY` at once. Each half of the range is its own measurement.
async fn commit_alone(
    sim: &SimHandle,
    redis_url: &str,
    (from, to): (u64, u64),
) -> Result<(Rate, Rate), BenchError> {
    let head = sim.chain().head();
    let blocks: Vec<Block> = (from..to)
        .filter_map(|n| sim.chain().expected_block_at(n, head))
        .collect();
    let store = RedisStore::new(&RedisStoreConfig {
        url: redis_url.to_string(),
        prefix: CEILING_PREFIX.to_string(),
        ..RedisStoreConfig::default()
    })?;
    let (serial_blocks, parallel_blocks) = blocks.split_at(blocks.len() / 2);

    let started = Instant::now();
    let mut events = 0;
    for block in serial_blocks {
        store
            .commit(Origin::Backlog, block, wall_clock_ms())
            .await?;
        events += block.events.len() as u64;
    }
    let serial = Rate {
        blocks: serial_blocks.len() as u64,
        events,
        seconds: started.elapsed().as_secs_f64(),
    };

    let shared: Arc<Vec<Block>> = Arc::new(parallel_blocks.to_vec());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CEILING_CONCURRENCY {
        let (store, shared, next) = (store.clone(), shared.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(block) = shared.get(i) else {
                    return Ok::<(), actors::store::StoreError>(());
                };
                store
                    .commit(Origin::Backlog, block, wall_clock_ms())
                    .await?;
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| BenchError::Client(e.to_string()))??;
    }
    let parallel = Rate {
        blocks: shared.len() as u64,
        events: shared.iter().map(|b| b.events.len() as u64).sum(),
        seconds: started.elapsed().as_secs_f64(),
    };
    store.delete_all_keys().await?;
    Ok((serial, parallel))
}

fn requests_total(sim: &SimHandle) -> BTreeMap<String, u64> {
    sim.request_counts()
        .into_iter()
        .filter(|(path, _)| !path.starts_with("/sim"))
        .collect()
}

fn node_429(sim: &SimHandle) -> u64 {
    sim.fault_counts()
        .into_iter()
        .filter(|(kind, _)| kind.contains("429") || *kind == "rate_limit")
        .map(|(_, n)| n)
        .sum()
}

/// The daemon as a child process; killed if dropped.
struct Daemon {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Daemon {
    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    fn log(&self) -> String {
        self.log.display().to_string()
    }

    /// Peak resident memory so far (Linux: VmHWM), in MB.
    fn peak_rss_mb(&self) -> f64 {
        let Some(pid) = self.pid() else { return 0.0 };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            return 0.0;
        };
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0.0, |kb| kb / 1024.0)
    }

    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    async fn stop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.kill().await;
            }
        }
    }
}

/// Watches every block that appears at the node after `first` until it is done.
struct HeadWatch {
    next: u64,
    pending: Vec<u64>,
    done_key: String,
}

impl HeadWatch {
    /// Newly done blocks with their latency (ms from the block's timestamp to now).
    async fn poll(
        &mut self,
        sim: &SimHandle,
        conn: &mut ConnectionManager,
    ) -> Result<Vec<(u64, f64)>, BenchError> {
        let head = sim.chain().head();
        while self.next <= head {
            self.pending.push(self.next);
            self.next += 1;
        }
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for n in &self.pending {
            pipe.getbit(&self.done_key, *n as usize);
        }
        let bits: Vec<u8> = pipe.query_async(conn).await?;
        let now = wall_clock_ms();
        let mut finished = Vec::new();
        let mut still = Vec::new();
        for (n, bit) in self.pending.iter().zip(bits) {
            if bit == 1 {
                let latency = now.saturating_sub(sim.chain().timestamp_of(*n)) as f64;
                finished.push((*n, latency));
            } else {
                still.push(*n);
            }
        }
        self.pending = still;
        Ok(finished)
    }
}

async fn drain_and_follow(
    options: &BenchOptions,
    sim: &SimHandle,
    redis: &LocalRedis,
    dir: &std::path::Path,
    report: &mut BenchReport,
    say: &impl Fn(&str),
) -> Result<(), BenchError> {
    let redis_url = &redis.url();
    let store = RedisStore::new(&RedisStoreConfig {
        url: redis_url.to_string(),
        prefix: BENCH_PREFIX.to_string(),
        ..RedisStoreConfig::default()
    })?;
    let mut conn = connect(redis_url).await?;
    let memory_before = used_memory(&mut conn).await?;
    let head = sim.chain().head();
    let start_block = head + 1 - options.blocks;
    let log = dir.join("daemon.log");
    let log_file = std::fs::File::create(&log)?;
    let metrics_port = free_port()?;
    let mut command = tokio::process::Command::new(&options.daemon_exe);
    command
        .arg("run")
        .env("TRON_ACTORS_NODE__URL", sim.url())
        .env("TRON_ACTORS_REDIS__URL", redis_url)
        .env("TRON_ACTORS_REDIS__PREFIX", BENCH_PREFIX)
        .env("TRON_ACTORS_SYNC__START_BLOCK", start_block.to_string())
        .env(
            "TRON_ACTORS_METRICS__LISTEN",
            format!("127.0.0.1:{metrics_port}"),
        )
        .env("TRON_ACTORS_LOG__FORMAT", "json")
        .env("TRON_ACTORS_LOG__LEVEL", "warn")
        .env(
            "TRON_ACTORS_NODE__RATE_LIMIT_RPS",
            options.node_rps.map_or(0.0, f64::from).to_string(),
        )
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true);
    let requests_before = requests_total(sim);
    let cpu_before = (cpu_seconds(redis.pid()), cpu_seconds(None));
    let started = Instant::now();
    let child = command.spawn().map_err(|source| BenchError::Daemon {
        exe: options.daemon_exe.display().to_string(),
        source,
    })?;
    let mut daemon = Daemon { child, log };
    let mut watch = HeadWatch {
        next: head + 1,
        pending: Vec::new(),
        done_key: store.keys().done(),
    };

    // Drain: until the backlog is empty, nothing of it is leased or waiting for a retry.
    let drain_limit = Duration::from_secs(600 + options.blocks / 10);
    let mut while_draining = Vec::new();
    let mut last_report = Instant::now();
    let drained = loop {
        if let Some(status) = daemon.exited() {
            return Err(BenchError::DaemonExited {
                status,
                log: daemon.log(),
            });
        }
        if started.elapsed() > drain_limit {
            return Err(BenchError::Stalled {
                what: "the backlog drain".into(),
                limit: drain_limit,
                log: daemon.log(),
            });
        }
        while_draining.extend(
            watch
                .poll(sim, &mut conn)
                .await?
                .into_iter()
                .map(|(_, l)| l),
        );
        let snapshot = store.snapshot().await?;
        let backlog_done = snapshot.stats.get("blocks:backlog").copied().unwrap_or(0);
        let backlog_leases: u64 = snapshot
            .leases_by_slot
            .iter()
            .filter(|(slot, _)| {
                slot.parse()
                    .is_ok_and(|s: SlotId| s.kind() == SlotKind::Backlog)
            })
            .map(|(_, n)| n)
            .sum();
        if backlog_done > 0 && snapshot.backlog == 0 && backlog_leases == 0 && snapshot.retry == 0 {
            break snapshot;
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            let rate = backlog_done as f64 / started.elapsed().as_secs_f64();
            say(&format!(
                "  {backlog_done} blocks drained, {} left, {rate:.0} blocks/s",
                snapshot.backlog + backlog_leases
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    report.drain_cpu = CpuUse {
        daemon_s: cpu_seconds(daemon.pid()),
        redis_s: cpu_seconds(redis.pid()) - cpu_before.0,
        node_s: cpu_seconds(None) - cpu_before.1,
    };
    let requests_after = requests_total(sim);
    report.requests_during_drain =
        requests_after.values().sum::<u64>() - requests_before.values().sum::<u64>();
    report.requests_by_endpoint = requests_after
        .iter()
        .map(|(path, n)| {
            let before = requests_before.get(path).copied().unwrap_or(0);
            (path.clone(), n - before)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    let stat = |name: &str| drained.stats.get(name).copied().unwrap_or(0);
    report.drain = Rate {
        blocks: stat("blocks:backlog"),
        events: stat("events:backlog"),
        seconds,
    };
    report.head_blocks_during_drain = stat("blocks:tip") + stat("blocks:priority");
    say(&format!(
        "  drained {} blocks in {seconds:.1} s; timing {} head blocks in sync ...",
        report.drain.blocks, options.head_blocks
    ));

    // In sync: the next `head_blocks` blocks.
    let polls_before = requests_total(sim)
        .get("/wallet/getnowblock")
        .copied()
        .unwrap_or(0);
    let sync_started = Instant::now();
    let limit =
        Duration::from_millis(options.block_interval_ms * (options.head_blocks as u64 + 5) * 2);
    let mut in_sync = Vec::new();
    // Blocks that appeared during the drain are not in-sync samples.
    let already_pending = watch.pending.clone();
    while in_sync.len() < options.head_blocks {
        if let Some(status) = daemon.exited() {
            return Err(BenchError::DaemonExited {
                status,
                log: daemon.log(),
            });
        }
        if sync_started.elapsed() > limit {
            return Err(BenchError::Stalled {
                what: format!("timing {} head blocks", options.head_blocks),
                limit,
                log: daemon.log(),
            });
        }
        for (n, latency) in watch.poll(sim, &mut conn).await? {
            if already_pending.contains(&n) {
                while_draining.push(latency);
            } else {
                in_sync.push(latency);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let polls_after = requests_total(sim)
        .get("/wallet/getnowblock")
        .copied()
        .unwrap_or(0);
    report.head_polls_per_sec = per_second(
        polls_after - polls_before,
        sync_started.elapsed().as_secs_f64(),
    );
    report.head_while_draining = Latency::of(while_draining);
    report.head_in_sync = Latency::of(in_sync);
    report.node_429 = node_429(sim);
    report.rss_peak_mb = daemon.peak_rss_mb();
    daemon.stop().await;
    report.redis_used_memory_delta = used_memory(&mut conn).await?.saturating_sub(memory_before);
    Ok(())
}

async fn used_memory(conn: &mut ConnectionManager) -> Result<u64, BenchError> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    Ok(info
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// The design we compare with: one block at a time (two requests each, no ranges) and one XADD
/// round trip per event, then the done marker.
async fn naive(
    sim: &SimHandle,
    redis_url: &str,
    (from, to): (u64, u64),
) -> Result<Rate, BenchError> {
    let client = TronClient::new(TronClientConfig {
        url: sim.url(),
        rate_limit_rps: 0.0,
        use_range_fetch: false,
        ..TronClientConfig::default()
    })
    .map_err(|e| BenchError::Client(e.to_string()))?;
    let keys = Keys::new(NAIVE_PREFIX);
    let mut conn = connect(redis_url).await?;
    let started = Instant::now();
    let mut events = 0;
    for n in (from..to).rev() {
        let block = client.block(n, actors::chain::Lane::Backlog).await?;
        for event in &block.events {
            let fields = event.stream_fields(&block.header);
            let _: String = redis::cmd("XADD")
                .arg(keys.events())
                .arg("*")
                .arg(&fields)
                .query_async(&mut conn)
                .await?;
        }
        let _: u8 = redis::cmd("SETBIT")
            .arg(keys.done())
            .arg(n)
            .arg(1)
            .query_async(&mut conn)
            .await?;
        events += block.events.len() as u64;
    }
    let rate = Rate {
        blocks: to - from,
        events,
        seconds: started.elapsed().as_secs_f64(),
    };
    let _: () = redis::cmd("DEL")
        .arg(keys.events())
        .arg(keys.done())
        .query_async(&mut conn)
        .await?;
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let l = Latency::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (l.p50_ms, l.p99_ms, l.max_ms, l.samples),
            (50.0, 99.0, 100.0, 100)
        );
        let one = Latency::of(vec![7.0]);
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
        assert_eq!(Latency::of(Vec::new()).samples, 0);
    }

    #[test]
    fn the_last_line_has_every_figure_the_issue_names() {
        let report = BenchReport {
            drain: Rate {
                blocks: 1000,
                events: 300_000,
                seconds: 10.0,
            },
            serve_alone: Rate {
                blocks: 100,
                events: 60_000,
                seconds: 1.0,
            },
            commit_alone_serial: Rate {
                blocks: 100,
                events: 40_000,
                seconds: 1.0,
            },
            requests_during_drain: 1010,
            stream_entries: 1000,
            stream_bytes: 500_000,
            ..BenchReport::default()
        };
        assert_eq!(
            report.line(),
            "drain_bps=100.0 drain_eps=30000 ceiling_eps=40000 ratio=0.75 req_per_block=1.010 \
             head_p50_ms=0 head_p99_ms=0 rss_mb=0.0 redis_bytes_per_event=500"
        );
    }
}
