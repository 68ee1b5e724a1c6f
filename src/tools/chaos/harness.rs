//! The running system (simulated node, Redis, the daemons as child processes) and what the
//! harness does to them: start, disrupt as planned, keep going, stop, verify.

use super::backend::Backend;
use super::plan::{plan, DisruptionKind, PlanShape, Target};
use super::report::{ChaosReport, InstanceReport};
use super::{io, ChaosError, ChaosOptions, GRACE_MS, PREFIX, TICK};
use crate::store::RedisStore;
use crate::tools::child::{DaemonChild, DaemonCommand, DaemonOutput};
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
    redis: Backend,
    store: RedisStore,
    env: Vec<(String, String)>,
    /// One slot per instance (`chaos-<index>`); `None` between a kill and the next start.
    daemons: Vec<Option<DaemonChild>>,
    daemon_starts: u64,
    /// Blocks done and in the range, as last counted (what `tick` is given while the harness
    /// waits for a leader).
    progress: (u64, u64),
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
        let redis = Backend::start(&dir, options.sentinel).await?;
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
        let store = RedisStore::new(&redis.store_config())?;
        let from = sim.chain().params().start_block;
        let mut env = daemon_env(&options, &sim.url(), from);
        env.extend(
            redis
                .daemon_env()
                .into_iter()
                .map(|(key, value)| (format!("TRON_ACTORS_{key}"), value)),
        );
        let report = ChaosReport {
            seed: options.seed,
            from,
            to: from,
            blocks: 0,
            events: 0,
            instances: options.instances,
            kills: 0,
            leader_kills: 0,
            pauses: 0,
            panics: 0,
            redis_restarts: 0,
            failovers: 0,
            forks: 0,
            reverted_blocks: 0,
            daemon_exits: 0,
            dead_requeued: 0,
            stop_status: None,
            per_instance: (0..options.instances)
                .map(|index| InstanceReport {
                    id: instance_id(index as usize),
                    blocks: 0,
                    kills: 0,
                    pauses: 0,
                    stop_status: None,
                })
                .collect(),
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
            daemons: (0..options.instances).map(|_| None).collect(),
            options,
            dir,
            sim,
            redis,
            store,
            env,
            daemon_starts: 0,
            progress: (0, 0),
            counts: Arc::new(LogCounts::default()),
            report,
            started,
            last_dead_check: started,
            last_progress: started,
        })
    }

    /// Starts the daemons, runs the plan, waits for the range, stops the daemons: everything
    /// up to verify.
    pub(super) async fn drive(&mut self) -> Result<(), ChaosError> {
        let from = self.report.from;
        for index in 0..self.daemons.len() {
            self.start_daemon(index)?;
        }
        let initial_head = self.sim.chain().head();
        let total = initial_head - from + 1;
        let plan = plan(
            self.options.seed,
            total,
            &PlanShape {
                kills: self.options.kills,
                pauses: self.options.pauses(),
                lease_ms: self.options.lease_ms(),
                redis_restarts: self.options.redis_restarts,
                sentinel: self.options.sentinel,
                instances: self.options.instances,
            },
        );
        self.report.plan = plan.clone();
        eprintln!(
            "chaos: node {} head {initial_head}, {}, {} daemon(s), range from {from}, work dir {}",
            self.sim.url(),
            self.redis.describe(),
            self.daemons.len(),
            self.dir.display()
        );
        for disruption in plan {
            self.wait_done(from, initial_head, disruption.after_done)
                .await?;
            let down = Duration::from_millis(disruption.down_ms);
            let mut hit = String::new();
            match disruption.kind {
                DisruptionKind::KillDaemon => {
                    let (index, leads) = self.resolve(disruption.target).await?;
                    hit = format!(
                        " {}{}",
                        instance_id(index),
                        if leads { " (leader)" } else { "" }
                    );
                    if let Some(mut daemon) = self.daemons[index].take() {
                        if daemon.kill().await {
                            self.report.kills += 1;
                            self.report.per_instance[index].kills += 1;
                            self.report.leader_kills += u64::from(leads);
                        }
                    }
                    tokio::time::sleep(down).await;
                    self.start_daemon(index)?;
                }
                DisruptionKind::PauseDaemon => {
                    let (index, leads) = self.resolve(disruption.target).await?;
                    hit = format!(
                        " {}{}",
                        instance_id(index),
                        if leads { " (leader)" } else { "" }
                    );
                    if let Some(daemon) = self.daemons[index].as_ref() {
                        if daemon.signal("STOP").await {
                            tokio::time::sleep(down).await;
                            daemon.signal("CONT").await;
                            self.report.pauses += 1;
                            self.report.per_instance[index].pauses += 1;
                        }
                    }
                }
                DisruptionKind::RestartRedis => {
                    self.redis.restart(down).await?;
                    self.report.redis_restarts += 1;
                }
                DisruptionKind::FailoverRedis => {
                    self.redis.failover(down).await?;
                    self.report.failovers += 1;
                }
            }
            eprintln!(
                "chaos: {:?}{hit} after {} blocks done, down {} ms",
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
        self.stop_daemons().await;
        // Head blocks done after `to` are in the stream too; verify takes them in.
        let mut last = to;
        while self.store.is_done(last + 1).await? {
            last += 1;
        }
        self.report.to = last;
        match self.store.stats().await {
            Ok(stats) => {
                let by_instance = stats.blocks_by_instance();
                for instance in &mut self.report.per_instance {
                    instance.blocks = by_instance.get(&instance.id).copied().unwrap_or(0);
                }
            }
            Err(error) => eprintln!("chaos: cannot read the blocks per instance: {error}"),
        }
        Ok(())
    }

    /// SIGTERM to every daemon at once, then each one's exit status (each must exit 0).
    async fn stop_daemons(&mut self) {
        let limit = Duration::from_millis(GRACE_MS + 10_000);
        for daemon in self.daemons.iter().flatten() {
            daemon.signal("TERM").await;
        }
        let mut overall = Some(0);
        for (index, slot) in self.daemons.iter_mut().enumerate() {
            let status = match slot.take() {
                Some(mut daemon) => daemon.wait_exit(limit).await.and_then(|s| s.code()),
                None => None,
            };
            self.report.per_instance[index].stop_status = status;
            if overall == Some(0) {
                overall = status;
            }
        }
        self.report.stop_status = overall;
    }

    /// The instance a kill or pause hits, and whether it leads now. The leader is read from
    /// `<prefix>:leader`; while no instance leads (an election after a kill, Redis away), the
    /// harness waits for one, keeping the system going, up to twice the lease.
    async fn resolve(&mut self, target: Option<Target>) -> Result<(usize, bool), ChaosError> {
        let leader = match target {
            Some(Target::Leader) => {
                let limit = Duration::from_millis(2 * self.options.lease_ms() + 5_000);
                let started = Instant::now();
                loop {
                    if let Some(index) = self.leader().await {
                        break Some(index);
                    }
                    if started.elapsed() > limit {
                        eprintln!("chaos: no leader after {limit:?}; hitting chaos-0");
                        break None;
                    }
                    let (done, total) = self.progress;
                    self.tick(done, total).await?;
                    tokio::time::sleep(TICK).await;
                }
            }
            _ => self.leader().await,
        };
        let index = match target {
            Some(Target::Instance(index)) => (index as usize).min(self.daemons.len() - 1),
            _ => leader.unwrap_or(0),
        };
        Ok((index, leader == Some(index)))
    }

    /// The index of the instance that leads now, as Redis says (`<instance>|<epoch>`).
    async fn leader(&self) -> Option<usize> {
        let mut conn = self.store.connection();
        let value: Option<String> = redis::cmd("GET")
            .arg(self.store.keys().leader())
            .query_async(&mut conn)
            .await
            .ok()?;
        let (id, _epoch) = value?.rsplit_once('|').map(|(i, e)| (i.to_string(), e))?;
        (0..self.daemons.len()).find(|index| instance_id(*index) == id)
    }

    fn start_daemon(&mut self, index: usize) -> Result<(), ChaosError> {
        self.daemon_starts += 1;
        let id = instance_id(index);
        let log_path = self
            .dir
            .join(format!("daemon-{}-{id}.log", self.daemon_starts));
        let counts = self.counts.clone();
        let daemon = DaemonCommand::new(&self.options.daemon_exe)
            .without_inherited_config()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("TRON_ACTORS_INSTANCE__ID", &id)
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
        self.daemons[index] = Some(daemon);
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
            self.progress = (done, to - from + 1);
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
        for index in 0..self.daemons.len() {
            let exited = match self.daemons[index].as_mut() {
                Some(daemon) => daemon.exited().is_some(),
                None => false,
            };
            if exited {
                if let Some(mut daemon) = self.daemons[index].take() {
                    daemon.kill().await;
                }
                self.report.daemon_exits += 1;
                eprintln!(
                    "chaos: daemon {} exited by itself; starting it again",
                    instance_id(index)
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
                self.start_daemon(index)?;
            }
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
                "chaos: {done}/{total} blocks done, kills {}, pauses {}, redis restarts {}, failovers {}, panics {}, {} s",
                self.report.kills,
                self.report.pauses,
                self.report.redis_restarts,
                self.report.failovers,
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
        for mut daemon in self.daemons.iter_mut().filter_map(Option::take) {
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
            "chaos: every block done and the daemons stopped after {} s; verifying blocks {}..={}",
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

/// `instance.id` of the daemon in slot `index`.
fn instance_id(index: usize) -> String {
    format!("chaos-{index}")
}

/// The daemons' configuration but for Redis and the instance id, all through `TRON_ACTORS_*`
/// variables as a container would set it. Everything slow in production is scaled down so that
/// the run's retries, penalties, polls and elections happen within minutes.
pub(super) fn daemon_env(
    options: &ChaosOptions,
    node_url: &str,
    from: u64,
) -> Vec<(String, String)> {
    [
        ("NODE__URL", node_url.to_string()),
        ("NODE__PENALTY_MS", options.penalty_ms.to_string()),
        ("NODE__RATE_LIMIT_RPS", "0".to_string()),
        ("REDIS__PREFIX", PREFIX.to_string()),
        ("SYNC__START_BLOCK", from.to_string()),
        (
            "SYNC__BLOCK_INTERVAL_MS",
            options.block_interval_ms.to_string(),
        ),
        ("SYNC__POLL_MIN_MS", "200".to_string()),
        ("SYNC__POLL_MAX_MS", "1000".to_string()),
        ("SYNC__IDLE_MS", "100".to_string()),
        ("SYNC__LEASE_MS", options.lease_ms().to_string()),
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
