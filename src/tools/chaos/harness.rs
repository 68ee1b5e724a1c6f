//! The running system (simulated node, redis-server, the daemon as a child process) and what
//! the harness does to it: start, disrupt as planned, keep going, stop, verify.

use super::plan::{plan, DisruptionKind};
use super::report::ChaosReport;
use super::{io, ChaosError, ChaosOptions, GRACE_MS, PREFIX, TICK};
use crate::store::{RedisStore, RedisStoreConfig};
use crate::tools::child::{DaemonChild, DaemonCommand, DaemonOutput};
use crate::tools::local_redis::{free_port, LocalRedis, Persistence};
use crate::tron::{TronClient, TronClientConfig};
use crate::verify::VerifyReport;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tron_sim::{SimFaults, SimHandle, SimParams};

/// Counted from a daemon's stderr as it is written, so nothing is lost when it is SIGKILLed.
#[derive(Default)]
pub(super) struct LogCounts {
    panics: AtomicU64,
}

pub(super) struct Harness {
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

impl Harness {
    pub(super) async fn start(
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
            fork_rate: options.fork_rate,
            fork_window: options.fork_window,
            max_fork_depth: options.max_fork_depth,
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
            fork_race_rate: rate,
            ..SimFaults::default()
        };
        let sim = tron_sim::spawn(params, faults, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let store = RedisStore::new(&RedisStoreConfig {
            url: redis.url(),
            prefix: PREFIX.to_string(),
            ..crate::config::Config::default().store_config()
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
            forks: 0,
            reverted_blocks: 0,
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
    pub(super) async fn drive(&mut self) -> Result<(), ChaosError> {
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
        // The head moved meanwhile: the range ends at the head once the plan is over, so it
        // holds live-head blocks too. The node's head stops there: a fork still open at it
        // stays as it is, and verify's twin serves the same versions the daemon last saw.
        let to = self.sim.chain().halt();
        self.wait_done(from, to, to - from + 1).await?;
        self.report.forks = self
            .sim
            .chain()
            .forks_between(initial_head + 1, to)
            .iter()
            .filter(|(start, depth)| *start > initial_head && start + depth <= to)
            .count() as u64;
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
    pub(super) async fn finish(
        mut self,
        outcome: Result<(), ChaosError>,
    ) -> Result<ChaosReport, ChaosError> {
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
            urls: vec![twin.url()],
            rate_limit_rps: 0.0,
            range_size: crate::tron::MAX_RANGE,
            ..crate::config::Config::default().client_config()
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
            &crate::verify::VerifyOptions::default(),
        )
        .await;
        let _ = twin.shutdown().await;
        Ok(verified?)
    }
}

/// The daemon's configuration, all through `TRON_ACTORS_*` variables as a container would set
/// it. Everything slow in production is scaled down so that the run's retries, penalties and
/// polls happen within minutes.
pub(super) fn daemon_env(
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
/// last straw past the restart intensity): a JSON log event whose `reason_kind` field, set by
/// the supervisor from the fault hooks, is `fault_hook`. The message and the panic's text are
/// not read, so rewording them cannot break the count.
///
/// The event is the first JSON object on the line, not the whole line: a panic's backtrace is
/// written to the same stderr in pieces, so a piece of it can precede or follow the event.
pub(super) fn is_injected_panic(line: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct LogEvent {
        reason_kind: Option<String>,
    }
    let first_event = line.match_indices("{\"").find_map(|(start, _)| {
        serde_json::Deserializer::from_str(&line[start..])
            .into_iter::<LogEvent>()
            .next()?
            .ok()
    });
    first_event.is_some_and(|event| event.reason_kind.as_deref() == Some("fault_hook"))
}

/// Blocks of `from..=to` whose done bit is set, from one GETRANGE of the bitmap.
pub(super) async fn done_count(
    store: &RedisStore,
    from: u64,
    to: u64,
) -> Result<u64, redis::RedisError> {
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
pub(super) fn count_bits(bytes: &[u8], first_bit: u64, from: u64, to: u64) -> u64 {
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
mod tests {
    use super::*;

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
        let restarted = r#"{"timestamp":"2026-11-23T17:40:28.328258Z","level":"WARN","message":"Actor stopped unexpectedly, restarting it","slot":"backlog-2","reason":"fault hook: backlog-2 panics after claiming [7]","reason_kind":"fault_hook","target":"actors::supervisor"}"#;
        assert!(is_injected_panic(restarted));
        assert!(is_injected_panic(
            r#"{"level":"ERROR","message":"Restart intensity exceeded, giving up","slot":"priority","reason_kind":"fault_hook","max":20,"window_s":60}"#
        ));
        // A piece of a backtrace written in between, before or after the event.
        assert!(is_injected_panic(&format!(
            "  37: tokio::runtime::task::harness::Harness<T,S>{restarted}::poll_inner"
        )));
        // The panic's own text, as the panic hook prints it, is not a supervisor line.
        assert!(!is_injected_panic(
            "fault hook: backlog-3 panics after claiming [1]"
        ));
        assert!(!is_injected_panic(
            r#"{"level":"WARN","message":"Actor stopped unexpectedly, restarting it","reason":"redis down","reason_kind":"failure"}"#
        ));
        // Nor is a line that only mentions the value in its text.
        assert!(!is_injected_panic(
            r#"{"level":"INFO","message":"reason_kind fault_hook"}"#
        ));
    }
}
