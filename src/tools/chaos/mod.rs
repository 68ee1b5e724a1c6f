//! `tron-actors chaos`: the exactly-once promise under fire. A simulated node with faults on and
//! a backlog to catch up plus a moving head; a private redis-server with AOF; the daemon as a
//! child process of this same binary. While it works, a seeded plan SIGKILLs the daemon (then
//! starts it again) and SIGKILLs redis-server (then starts it again on its AOF), and the daemon's
//! workers panic at random (`faults.panic_one_in`). When every block of the range is done, the
//! daemon is stopped with SIGTERM and [`crate::verify`] checks the whole range against the node.
//!
//! What is reproducible: the chain (seeded), which requests get which node fault (seeded, in
//! request order), the plan (which disruptions, in which order, after how many blocks done, for
//! how long) and each daemon process's panic draws. What is not: timing. Requests race between
//! 15 workers, so the request order, and with it which block meets which fault, differs between
//! runs; so do the blocks in flight at each kill.

use super::child::{DaemonChild, DaemonCommand, DaemonOutput};
use crate::store::{RedisStore, RedisStoreConfig};
use crate::tools::local_redis::{free_port, LocalRedis, LocalRedisError, Persistence};
use crate::tron::{TronClient, TronClientConfig};
use crate::verify::{BlockProblem, VerifyError, VerifyReport};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tron_sim::{SimFaults, SimHandle, SimParams};

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
    /// redis-server SIGKILLs (each followed by a restart on its AOF).
    #[arg(long, default_value_t = 3)]
    pub redis_restarts: u32,
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
            panic_one_in: 40,
            fault_rate: 0.01,
            rate_limit_rate: 0.001,
            penalty_ms: 300,
            slow_ms: 300,
            duration_cap: Duration::from_secs(3_600),
            daemon_exe: PathBuf::from("tron-actors"),
            keep_dir: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("invalid options: {0}")]
    Options(String),
    #[error("simulated node: {0}")]
    Sim(#[from] tron_sim::SimError),
    #[error("{0}")]
    Redis(#[from] LocalRedisError),
    #[error("redis: {0}")]
    Store(#[from] actors::store::StoreError),
    #[error("verify: {0}")]
    Verify(#[from] VerifyError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("node client for verify: {0}")]
    Client(String),
    #[error("not finished after {cap_s} s: {done} of {total} blocks done; logs in {dir}")]
    TimedOut {
        cap_s: u64,
        done: u64,
        total: u64,
        dir: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ChaosError {
    let what = what.into();
    move |source| ChaosError::Io { what, source }
}

/// One thing the plan does to the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DisruptionKind {
    /// SIGKILL the daemon, wait `down`, start a new one.
    KillDaemon,
    /// SIGKILL redis-server, wait `down`, start it again on its AOF.
    RestartRedis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Disruption {
    /// Fires once this many blocks of the initial range are done.
    pub after_done: u64,
    pub kind: DisruptionKind,
    pub down_ms: u64,
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

/// What a run did and found.
#[derive(Clone, Debug, Serialize)]
pub struct ChaosReport {
    pub seed: u64,
    pub from: u64,
    pub to: u64,
    pub blocks: u64,
    pub events: u64,
    pub kills: u64,
    /// Injected worker panics, counted from the daemons' logs.
    pub panics: u64,
    pub redis_restarts: u64,
    /// Times the daemon exited by itself (its tree gave up past the restart intensity) and the
    /// harness started it again, as systemd would.
    pub daemon_exits: u64,
    /// Blocks that failed every retry and were put back to work by the harness.
    pub dead_requeued: u64,
    /// The daemon's exit status after the final SIGTERM (0 expected).
    pub stop_status: Option<i32>,
    pub missing: u64,
    pub duplicated: u64,
    pub unexpected: u64,
    pub unverifiable_blocks: u64,
    pub elapsed_s: u64,
    /// Faults the node injected, per kind.
    pub node_faults: std::collections::BTreeMap<String, u64>,
    pub plan: Vec<Disruption>,
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
            "chaos seed={} blocks={} events={} kills={} panics={} redis_restarts={} missing={} duplicated={} unexpected={} unverifiable={} daemon_exits={} dead_requeued={} stop_status={} elapsed_s={} {}",
            self.seed,
            self.blocks,
            self.events,
            self.kills,
            self.panics,
            self.redis_restarts,
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

    fn absorb(&mut self, verified: VerifyReport) {
        self.blocks = verified.blocks;
        self.events = verified.expected_events;
        self.missing = verified.missing;
        self.duplicated = verified.duplicated;
        self.unexpected = verified.unexpected;
        self.unverifiable_blocks = verified.unverifiable_blocks;
        self.problems = verified.problems.into_iter().take(PROBLEMS_SHOWN).collect();
    }
}

/// Counted from a daemon's stderr as it is written, so nothing is lost when it is SIGKILLed.
#[derive(Default)]
struct LogCounts {
    panics: AtomicU64,
}

struct Harness {
    options: ChaosOptions,
    dir: PathBuf,
    sim: SimHandle,
    redis: LocalRedis,
    store: RedisStore,
    env: Vec<(String, String)>,
    daemon: Option<DaemonChild>,
    daemon_starts: u64,
    counts: Arc<LogCounts>,
    report: ChaosReport,
    started: Instant,
    last_dead_check: Instant,
    last_progress: Instant,
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
    if options.panic_one_in == 1 {
        problems.push("--panic-one-in 1 would panic on every batch; use 0 (off) or more".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ChaosError::Options(problems.join("; ")))
    }
}

impl Harness {
    async fn start(
        options: ChaosOptions,
        dir: PathBuf,
        started: Instant,
    ) -> Result<Harness, ChaosError> {
        let port = free_port().map_err(io("find a free port for redis-server"))?;
        let redis = LocalRedis::start_with(&dir, port, Persistence::AofAlways).await?;
        let params = SimParams {
            seed: options.seed,
            history: options.blocks,
            block_interval_ms: options.block_interval_ms,
            txs_per_block: options.txs_per_block,
            ..SimParams::default()
        };
        let rate = options.fault_rate;
        let faults = SimFaults {
            seed: options.seed,
            http_500_rate: rate,
            http_503_rate: rate,
            http_429_rate: options.rate_limit_rate,
            http_403_rate: options.rate_limit_rate,
            penalty_ms: options.penalty_ms,
            slow_rate: rate,
            slow_ms: options.slow_ms,
            reset_rate: rate,
            truncate_rate: rate,
            empty_block_rate: rate,
            empty_infos_rate: rate,
            node_error_rate: rate,
            ..SimFaults::default()
        };
        let sim = tron_sim::spawn(params, faults, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let store = RedisStore::new(&RedisStoreConfig {
            url: redis.url(),
            prefix: PREFIX.to_string(),
            ..RedisStoreConfig::default()
        })?;
        let from = sim.chain().params().start_block;
        let env = daemon_env(&options, &sim.url(), &redis.url(), from);
        let report = ChaosReport {
            seed: options.seed,
            from,
            to: from,
            blocks: 0,
            events: 0,
            kills: 0,
            panics: 0,
            redis_restarts: 0,
            daemon_exits: 0,
            dead_requeued: 0,
            stop_status: None,
            missing: 0,
            duplicated: 0,
            unexpected: 0,
            unverifiable_blocks: 0,
            elapsed_s: 0,
            node_faults: Default::default(),
            plan: Vec::new(),
            problems: Vec::new(),
        };
        Ok(Harness {
            options,
            dir,
            sim,
            redis,
            store,
            env,
            daemon: None,
            daemon_starts: 0,
            counts: Arc::new(LogCounts::default()),
            report,
            started,
            last_dead_check: started,
            last_progress: started,
        })
    }

    /// Starts the daemon, runs the plan, waits for the range, stops the daemon: everything up
    /// to verify.
    async fn drive(&mut self) -> Result<(), ChaosError> {
        let from = self.report.from;
        self.start_daemon()?;
        let initial_head = self.sim.chain().head();
        let total = initial_head - from + 1;
        let plan = plan(
            self.options.seed,
            total,
            self.options.kills,
            self.options.redis_restarts,
        );
        self.report.plan = plan.clone();
        eprintln!(
            "chaos: node {} head {initial_head}, redis {} (AOF, appendfsync always), range from {from}, work dir {}",
            self.sim.url(),
            self.redis.url(),
            self.dir.display()
        );
        for disruption in plan {
            self.wait_done(from, initial_head, disruption.after_done)
                .await?;
            let down = Duration::from_millis(disruption.down_ms);
            match disruption.kind {
                DisruptionKind::KillDaemon => {
                    if let Some(mut daemon) = self.daemon.take() {
                        if daemon.kill().await {
                            self.report.kills += 1;
                        }
                    }
                    tokio::time::sleep(down).await;
                    self.start_daemon()?;
                }
                DisruptionKind::RestartRedis => {
                    self.redis.kill().await;
                    tokio::time::sleep(down).await;
                    self.redis.restart().await?;
                    self.report.redis_restarts += 1;
                }
            }
            eprintln!(
                "chaos: {:?} after {} blocks done, down {} ms",
                disruption.kind, disruption.after_done, disruption.down_ms
            );
        }
        // The head moved meanwhile: the range ends at the head seen once the plan is over, so
        // it holds live-head blocks too.
        let to = self.sim.chain().head();
        self.wait_done(from, to, to - from + 1).await?;
        if let Some(mut daemon) = self.daemon.take() {
            let limit = Duration::from_millis(GRACE_MS + 10_000);
            self.report.stop_status = daemon.terminate(limit).await.and_then(|s| s.code());
        }
        // Head blocks done after `to` are in the stream too; verify takes them in.
        let mut last = to;
        while self.store.is_done(last + 1).await? {
            last += 1;
        }
        self.report.to = last;
        Ok(())
    }

    fn start_daemon(&mut self) -> Result<(), ChaosError> {
        self.daemon_starts += 1;
        let log_path = self.dir.join(format!("daemon-{}.log", self.daemon_starts));
        let counts = self.counts.clone();
        let daemon = DaemonCommand::new(&self.options.daemon_exe)
            .without_inherited_config()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            // Each process draws its own panics, still fixed by the seed.
            .env(
                "TRON_ACTORS_FAULTS__SEED",
                (self.options.seed ^ self.daemon_starts.wrapping_mul(0x9E37_79B9)).to_string(),
            )
            .output(DaemonOutput::Lines {
                path: log_path,
                watch: Box::new(move |line| {
                    if is_injected_panic(line) {
                        counts.panics.fetch_add(1, Ordering::Relaxed);
                    }
                }),
            })
            .spawn()
            .map_err(io(format!("start {}", self.options.daemon_exe.display())))?;
        self.daemon = Some(daemon);
        Ok(())
    }

    /// Waits until at least `want` blocks of `from..=to` are done, keeping the system going
    /// meanwhile (see `tick`).
    async fn wait_done(&mut self, from: u64, to: u64, want: u64) -> Result<(), ChaosError> {
        // While Redis is away the count is unknown: the last one read stands in for it.
        let mut done = 0;
        loop {
            if let Ok(now) = done_count(&self.store, from, to).await {
                done = now;
            }
            if done >= want {
                return Ok(());
            }
            self.tick(done, to - from + 1).await?;
            tokio::time::sleep(TICK).await;
        }
    }

    /// What an operator would do while waiting: start a daemon that exited by itself again,
    /// requeue dead letters, and give up past the duration cap.
    async fn tick(&mut self, done: u64, total: u64) -> Result<(), ChaosError> {
        if self.started.elapsed() > self.options.duration_cap {
            return Err(ChaosError::TimedOut {
                cap_s: self.options.duration_cap.as_secs(),
                done,
                total,
                dir: self.dir.display().to_string(),
            });
        }
        let exited = match self.daemon.as_mut() {
            Some(daemon) => daemon.exited().is_some(),
            None => false,
        };
        if exited {
            if let Some(mut daemon) = self.daemon.take() {
                daemon.kill().await;
            }
            self.report.daemon_exits += 1;
            eprintln!("chaos: the daemon exited by itself; starting it again");
            tokio::time::sleep(Duration::from_millis(500)).await;
            self.start_daemon()?;
        }
        if self.last_dead_check.elapsed() > Duration::from_secs(1) {
            self.last_dead_check = Instant::now();
            // Retries run on a scaled-down schedule, so a block that met faults on ten
            // attempts in a row lands here within seconds; put it back, as an operator would.
            if let Ok(moved) = self.store.requeue_dead(&[]).await {
                if !moved.is_empty() {
                    eprintln!("chaos: requeued dead letters {moved:?}");
                }
                self.report.dead_requeued += moved.len() as u64;
            }
        }
        if self.last_progress.elapsed() > Duration::from_secs(10) {
            self.last_progress = Instant::now();
            eprintln!(
                "chaos: {done}/{total} blocks done, kills {}, redis restarts {}, panics {}, {} s",
                self.report.kills,
                self.report.redis_restarts,
                self.counts.panics.load(Ordering::Relaxed),
                self.started.elapsed().as_secs()
            );
        }
        Ok(())
    }

    /// Verifies the range (when the run got that far), tears everything down, and hands back
    /// the report.
    async fn finish(mut self, outcome: Result<(), ChaosError>) -> Result<ChaosReport, ChaosError> {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.kill().await;
        }
        let verified = match outcome {
            Ok(()) => self.verify().await,
            Err(error) => Err(error),
        };
        self.report.panics = self.counts.panics.load(Ordering::Relaxed);
        self.report.node_faults = self
            .sim
            .fault_counts()
            .into_iter()
            .map(|(kind, n)| (kind.to_string(), n))
            .collect();
        self.report.elapsed_s = self.started.elapsed().as_secs();
        let _ = self.sim.shutdown().await;
        self.redis.kill().await;
        let keep = self.options.keep_dir || !matches!(&verified, Ok(r) if r.is_exact());
        if keep {
            eprintln!(
                "chaos: Redis files and daemon logs kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        let verified = verified?;
        self.report.absorb(verified);
        Ok(self.report)
    }

    /// Checks the range against a fault-free twin of the node: the same chain (seed, first
    /// block, timestamps), frozen at the current head. Verify is the judge here, not a subject:
    /// asking the faulty node would only make it retry.
    async fn verify(&self) -> Result<VerifyReport, ChaosError> {
        let chain = self.sim.chain();
        let params = SimParams {
            history: chain.head() - chain.params().start_block + 1,
            genesis_ms: Some(chain.genesis_ms()),
            frozen: true,
            ..chain.params().clone()
        };
        let twin = tron_sim::spawn(
            params,
            SimFaults::none(),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await?;
        let client = TronClient::new(TronClientConfig {
            url: twin.url(),
            rate_limit_rps: 0.0,
            ..TronClientConfig::default()
        })
        .map_err(|e| ChaosError::Client(e.to_string()))?;
        eprintln!(
            "chaos: every block done and the daemon stopped after {} s; verifying blocks {}..={}",
            self.started.elapsed().as_secs(),
            self.report.from,
            self.report.to
        );
        let verified = crate::verify::verify(
            Arc::new(client),
            self.store.connection(),
            &self.store.keys().events(),
            self.report.from,
            self.report.to,
        )
        .await;
        let _ = twin.shutdown().await;
        Ok(verified?)
    }
}

/// The daemon's configuration, all through `TRON_ACTORS_*` variables as a container would set
/// it. Everything slow in production is scaled down so that the run's retries, penalties and
/// polls happen within minutes.
fn daemon_env(
    options: &ChaosOptions,
    node_url: &str,
    redis_url: &str,
    from: u64,
) -> Vec<(String, String)> {
    [
        ("NODE__URL", node_url.to_string()),
        ("NODE__PENALTY_MS", options.penalty_ms.to_string()),
        ("NODE__RATE_LIMIT_RPS", "0".to_string()),
        ("REDIS__URL", redis_url.to_string()),
        ("REDIS__PREFIX", PREFIX.to_string()),
        ("SYNC__START_BLOCK", from.to_string()),
        (
            "SYNC__BLOCK_INTERVAL_MS",
            options.block_interval_ms.to_string(),
        ),
        ("SYNC__POLL_MIN_MS", "200".to_string()),
        ("SYNC__POLL_MAX_MS", "1000".to_string()),
        ("SYNC__IDLE_MS", "100".to_string()),
        ("SYNC__LEASE_MS", "20000".to_string()),
        ("RETRY__DELAY_SCALE", "0.001".to_string()),
        ("FAULTS__PANIC_ONE_IN", options.panic_one_in.to_string()),
        ("SHUTDOWN__GRACE_MS", GRACE_MS.to_string()),
        ("METRICS__LISTEN", String::new()),
        ("LOG__FORMAT", "json".to_string()),
        ("LOG__LEVEL", "info".to_string()),
    ]
    .into_iter()
    .map(|(key, value)| (format!("TRON_ACTORS_{key}"), value))
    .collect()
}

/// A supervisor log line about an actor that stopped on an injected panic (restarted, or the
/// last straw past the restart intensity).
fn is_injected_panic(line: &str) -> bool {
    line.contains("fault hook")
        && (line.contains("restarting it") || line.contains("Restart intensity exceeded"))
}

/// Blocks of `from..=to` whose done bit is set, from one GETRANGE of the bitmap.
async fn done_count(store: &RedisStore, from: u64, to: u64) -> Result<u64, redis::RedisError> {
    let mut conn = store.connection();
    let bytes: Vec<u8> = redis::cmd("GETRANGE")
        .arg(store.keys().done())
        .arg(from / 8)
        .arg(to / 8)
        .query_async(&mut conn)
        .await?;
    Ok(count_bits(&bytes, from / 8 * 8, from, to))
}

/// Set bits in `bytes` (Redis order: bit 0 is the high bit of byte 0; `bytes[0]` holds bits
/// `first_bit..first_bit+8`) whose index is within `from..=to`.
fn count_bits(bytes: &[u8], first_bit: u64, from: u64, to: u64) -> u64 {
    let mut n = 0;
    for (i, byte) in bytes.iter().enumerate() {
        for bit in 0..8u64 {
            let index = first_bit + i as u64 * 8 + bit;
            if (from..=to).contains(&index) && byte & (0x80 >> bit) != 0 {
                n += 1;
            }
        }
    }
    n
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

    #[test]
    fn bits_count_in_redis_order_within_the_range() {
        // Bits 8..=23: byte 0 = 0b1000_0001 (bits 8 and 15), byte 1 = 0xFF (16..=23).
        let bytes = [0b1000_0001, 0xFF];
        assert_eq!(count_bits(&bytes, 8, 8, 23), 10);
        assert_eq!(count_bits(&bytes, 8, 9, 23), 9);
        assert_eq!(count_bits(&bytes, 8, 15, 16), 2);
        assert_eq!(count_bits(&[], 8, 8, 23), 0);
    }

    #[test]
    fn only_supervisor_lines_about_injected_panics_count() {
        assert!(is_injected_panic(
            r#"{"level":"WARN","fields":{"message":"Actor stopped unexpectedly, restarting it","reason":"fault hook: backlog-3 panics after claiming [1]"}}"#
        ));
        assert!(!is_injected_panic(
            "fault hook: backlog-3 panics after claiming [1]"
        ));
        assert!(!is_injected_panic(
            r#"{"fields":{"message":"Actor stopped unexpectedly, restarting it","reason":"redis down"}}"#
        ));
    }
}
