//! The daemon (a child process) drains a backlog, then follows the head: the rates, the head
//! latency, and what it cost (CPU, memory, node requests, Redis bytes).

use crate::store::{RedisStore, RedisStoreConfig};
use crate::tools::child::{DaemonCommand, DaemonOutput};
use crate::tools::local_redis::{free_port, LocalRedis};
use actors::store::Origin;
use redis::aio::ConnectionManager;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tron_sim::chain::wall_clock_ms;
use tron_sim::SimHandle;

use super::report::{per_second, BenchReport, CpuUse, Latency, Rate};
use super::{connect, BenchError, BenchOptions, BENCH_PREFIX};

/// User + system CPU seconds a process has used (Linux `/proc/<pid>/stat`); 0 elsewhere.
pub(super) fn cpu_seconds(pid: Option<u32>) -> f64 {
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

pub(super) fn requests_total(sim: &SimHandle) -> BTreeMap<String, u64> {
    sim.request_counts()
        .into_iter()
        .filter(|(path, _)| !path.starts_with("/sim"))
        .collect()
}

pub(super) fn node_429(sim: &SimHandle) -> u64 {
    sim.fault_counts()
        .into_iter()
        .filter(|(kind, _)| kind.contains("429") || *kind == "rate_limit")
        .map(|(_, n)| n)
        .sum()
}

/// Watches every block that appears at the node after `first` until it is done.
pub(super) struct HeadWatch {
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

pub(super) async fn drain_and_follow(
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
        ..crate::config::Config::default().store_config()
    })?;
    let mut conn = connect(redis_url).await?;
    let memory_before = used_memory(&mut conn).await?;
    let head = sim.chain().head();
    let start_block = head + 1 - options.blocks;
    let log = dir.join("daemon.log");
    let metrics_port = free_port()?;
    let command = DaemonCommand::new(&options.daemon_exe)
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
        .output(DaemonOutput::File(log.clone()));
    let log = log.display().to_string();
    let requests_before = requests_total(sim);
    let cpu_before = (cpu_seconds(redis.pid()), cpu_seconds(None));
    let started = Instant::now();
    let mut daemon = command.spawn().map_err(|source| BenchError::Daemon {
        exe: options.daemon_exe.display().to_string(),
        source,
    })?;
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
                status: status.to_string(),
                log: log.clone(),
            });
        }
        if started.elapsed() > drain_limit {
            return Err(BenchError::Stalled {
                what: "the backlog drain".into(),
                limit: drain_limit,
                log: log.clone(),
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
        let backlog_done = snapshot.stats.blocks(Origin::Backlog);
        let backlog_leases: u64 = snapshot
            .leases_by_slot
            .iter()
            .filter(|(slot, _)| {
                slot.parse().is_ok_and(|s: actors::slot::SlotId| {
                    s.kind() == actors::slot::SlotKind::Backlog
                })
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
    let stats = &drained.stats;
    report.drain = Rate {
        blocks: stats.blocks(Origin::Backlog),
        events: stats.events(Origin::Backlog),
        seconds,
    };
    report.head_blocks_during_drain = stats.blocks(Origin::Tip) + stats.blocks(Origin::Priority);
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
                status: status.to_string(),
                log: log.clone(),
            });
        }
        if sync_started.elapsed() > limit {
            return Err(BenchError::Stalled {
                what: format!("timing {} head blocks", options.head_blocks),
                limit,
                log: log.clone(),
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
    daemon.terminate(Duration::from_secs(15)).await;
    report.redis_used_memory_delta = used_memory(&mut conn).await?.saturating_sub(memory_before);
    Ok(())
}

pub(super) async fn used_memory(conn: &mut ConnectionManager) -> Result<u64, BenchError> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    Ok(info
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}
