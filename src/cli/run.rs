//! `tron-actors run`: the daemon, until SIGINT or SIGTERM (or the tree gives up).
//!
//! `--dry-run`: everything `run` checks before it starts, and what it would do first, without
//! starting. The configuration is loaded and validated (exit 2 naming the key),
//! Redis and the node must answer (exit 1 with the reason), Redis must not evict keys
//! (`maxmemory-policy noeviction`, else exit 2 as `run` would), then the plan is printed: where
//! syncing resumes, which queues hold which blocks, which leases will be resumed.
use super::{
    api_key_shown, check_redis, init_telemetry, load_config, node_client, node_head, open_store,
    redis_access_shown, shutdown_signal, CliError, CHECK_TIMEOUT,
};
use actors::store::Queue;
use actors::sync_rule::{decide, TipDecision};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use tron_actors::config::{redact_url, Config};
use tron_actors::daemon::DaemonHandle;
use tron_actors::store::memory::{read_settings, RedisMemorySettings, RedisSetupError};
use tron_actors::store::{RedisStore, StoreSnapshot};

#[derive(Args)]
pub(crate) struct RunArgs {
    /// Check the configuration, Redis and the node, print the plan, and exit (0 = ready to run).
    #[arg(long)]
    pub dry_run: bool,
}

/// What Redis holds, with the lowest and highest block of each queue.
struct RedisState {
    snapshot: StoreSnapshot,
    priority_range: Option<(u64, u64)>,
    backlog_range: Option<(u64, u64)>,
    /// `maxmemory-policy`, `maxmemory` and `appendonly` (from CONFIG GET, else INFO).
    memory: RedisMemorySettings,
}

pub(crate) async fn run(config_file: Option<PathBuf>, args: RunArgs) -> Result<(), CliError> {
    if args.dry_run {
        return dry_run(config_file).await;
    }
    let config = load_config(config_file)?;
    let telemetry = init_telemetry(&config)?;
    // A Redis that is down delays the work, not the start; one that can never be reached with
    // this configuration (TLS, credentials) stops it, naming the keys to check.
    if let Err(refused) = check_redis(&config, &open_store(&config)?).await {
        telemetry.shutdown();
        return Err(refused);
    }
    let result = follow(&config, shutdown_signal(), Some(&telemetry)).await;
    telemetry.shutdown();
    result
}

/// Runs the daemon until `stop` resolves (graceful shutdown) or the tree gives up.
pub(crate) async fn follow(
    config: &Config,
    stop: impl std::future::Future<Output = ()>,
    telemetry: Option<&tron_actors::telemetry::Telemetry>,
) -> Result<(), CliError> {
    let client = node_client(config)?;
    tracing::info!(
        nodes = %config.node.shown_urls(),
        redis = %redact_url(&config.redis.url),
        redis_access = %redis_access_shown(config),
        prefix = %config.redis.prefix,
        start = %config.sync.start_block.map_or_else(|| "last synced, or the head on a first run".to_string(), |b| format!("block {b} on a first run")),
        "Starting tron-actors"
    );
    let node_metrics = client.clone();
    let mut extra: Vec<tron_actors::metrics::ExtraMetrics> =
        vec![Arc::new(move || node_metrics.render_prometheus())];
    if let Some(telemetry) = telemetry {
        let trace_stats = telemetry.stats.clone();
        extra.push(Arc::new(move || {
            tron_actors::metrics::render_trace_stats(&trace_stats)
        }));
        if telemetry.tracing_enabled() {
            tracing::info!("Exporting one trace per block over OTLP");
        }
    }
    let mut daemon = match DaemonHandle::start_with_metrics(config, Arc::new(client), extra).await {
        Ok(daemon) => daemon,
        Err(error) if error.is_refusal() => {
            tracing::error!(%error, "Refusing to start");
            return Err(CliError::Refused(error.to_string()));
        }
        Err(error) => {
            tracing::error!(%error, "Could not start");
            return Err(CliError::Reported);
        }
    };
    let progress = tron_actors::progress::spawn(
        daemon.store.clone(),
        daemon.stats.clone(),
        tron_actors::progress::Mode::choose(config.log.format, config.log.progress_ms),
    );
    tokio::select! {
        _ = stop => {
            drop(progress);
            tracing::info!("Shutting down: finishing in-flight blocks");
            match daemon.shutdown().await {
                Ok(()) => {
                    tracing::info!("Stopped cleanly");
                    Ok(())
                }
                Err(error) => {
                    tracing::error!(%error, "Shutdown failed");
                    Err(CliError::Reported)
                }
            }
        }
        error = daemon.wait() => {
            tracing::error!(%error, "Exiting");
            Err(CliError::Reported)
        }
    }
}

async fn dry_run(config_file: Option<PathBuf>) -> Result<(), CliError> {
    let config = load_config(config_file)?;
    tron_actors::telemetry::init_logs(config.log.format, tracing::Level::ERROR);
    let store = open_store(&config)?;
    let client = node_client(&config)?;
    println!("configuration: valid");
    print!("{}", describe_config(&config));
    // A Redis that is only down is reported below with what it would hold.
    let _down_is_reported_below = check_redis(&config, &store).await?;
    let (redis, head) = tokio::join!(read_redis(&store), node_head(&client));
    match &redis {
        Ok(state) => {
            let memory = &state.memory;
            let aof = match memory.append_only {
                Some(true) => "AOF on",
                Some(false) => {
                    "AOF off: WARNING, a Redis restart can lose recent commits; set appendonly yes"
                }
                None => "AOF unknown",
            };
            let maxmemory = if memory.maxmemory == 0 {
                "no maxmemory".to_string()
            } else {
                format!(
                    "maxmemory {} bytes, paused at {} of it",
                    memory.maxmemory, config.redis.memory_pause_ratio
                )
            };
            println!(
                "redis: reachable ({aof}, maxmemory-policy {}, {maxmemory}; read with {})",
                memory.policy, memory.source
            );
        }
        Err(error) => {
            eprintln!(
                "error: redis at {}: {error} (check redis.url, and that Redis runs)",
                redact_url(&config.redis.url)
            );
        }
    }
    match &head {
        Ok(head) => println!(
            "node: reachable, head {} ({})",
            head.number,
            super::dlq::format_time(head.timestamp_ms)
        ),
        Err(error) => {
            eprintln!("error: node at {}: {error}", config.node.shown_urls());
        }
    }
    if let Ok(state) = &redis {
        if state.memory.is_evicting() {
            return Err(CliError::Refused(
                RedisSetupError::EvictingPolicy {
                    policy: state.memory.policy.clone(),
                }
                .to_string(),
            ));
        }
    }
    let (Ok(state), Ok(head)) = (redis, head) else {
        return Err(CliError::NotReady(
            "`run` would start, but could not work until the above is fixed".to_string(),
        ));
    };
    print!("{}", plan(&config, &state, head.number));
    println!("ready: `run` would start as above");
    Ok(())
}

fn describe_config(config: &Config) -> String {
    let mut out = String::new();
    let node = &config.node;
    out.push_str(&format!(
        "  node      {} (api key: {}, rate limit: {})\n",
        node.shown_urls(),
        api_key_shown(config),
        if node.rate_limit_rps > 0.0 {
            format!("{} requests/s per node", node.rate_limit_rps)
        } else {
            "none".into()
        }
    ));
    if node.urls.len() > 1 {
        let keyed: Vec<String> = node
            .urls
            .iter()
            .filter(|url| {
                !node.api_key.is_empty()
                    && tron_actors::tron::key_applies(url, &node.api_key_hosts, node.urls.len())
            })
            .map(|url| tron_actors::tron::shown_url(url))
            .collect();
        out.push_str(&format!(
            "  failover  first fit node in this order; at most {} blocks behind the best; heads checked every {} ms; api key sent to: {}\n",
            node.max_lag_blocks,
            node.check_ms,
            if keyed.is_empty() { "none".to_string() } else { keyed.join(", ") }
        ));
    }
    out.push_str(&format!(
        "  redis     {} (prefix {}, stream {}:events, kept {} h)\n",
        redact_url(&config.redis.url),
        config.redis.prefix,
        config.redis.prefix,
        config.stream.retention_hours
    ));
    out.push_str(&format!("            {}\n", redis_access_shown(config)));
    out.push_str(&format!(
        "  workers   tip, priority, {} backlog (batches of {})\n",
        config.sync.backlog_workers, config.sync.backlog_batch
    ));
    out.push_str(&format!(
        "  metrics   {}\n",
        super::health::local_url(config.metrics.listen, "/metrics")
            .map_or_else(|| "off".into(), |url| format!("{url}, /healthz, /readyz"))
    ));
    let otel = config.otel_settings();
    let endpoint = if otel.endpoint.is_empty() {
        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default()
    } else {
        otel.endpoint
    };
    out.push_str(&format!(
        "  traces    {}\n",
        if endpoint.is_empty() {
            "off".to_string()
        } else {
            format!("OTLP to {}", redact_url(&endpoint))
        }
    ));
    out
}

async fn read_redis(store: &RedisStore) -> Result<RedisState, String> {
    let read = async {
        let snapshot = store.snapshot().await.map_err(|e| e.to_string())?;
        let mut conn = store.connection();
        let (priority_low, priority_high, backlog_low, backlog_high): (
            Vec<u64>,
            Vec<u64>,
            Vec<u64>,
            Vec<u64>,
        ) = redis::pipe()
            .zrange(store.keys().queue(Queue::Priority), 0, 0)
            .zrange(store.keys().queue(Queue::Priority), -1, -1)
            .zrange(store.keys().queue(Queue::Backlog), 0, 0)
            .zrange(store.keys().queue(Queue::Backlog), -1, -1)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        // Managed Redis services often refuse CONFIG: INFO is asked then.
        let memory = read_settings(store).await.map_err(|e| e.to_string())?;
        let range = |low: Vec<u64>, high: Vec<u64>| Some((*low.first()?, *high.first()?));
        Ok(RedisState {
            snapshot,
            priority_range: range(priority_low, priority_high),
            backlog_range: range(backlog_low, backlog_high),
            memory,
        })
    };
    match tokio::time::timeout(CHECK_TIMEOUT, read).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
    }
}

fn blocks(n: u64) -> String {
    if n == 1 {
        "1 block".into()
    } else {
        format!("{n} blocks")
    }
}

/// What `run` would do first, from the state in Redis and the node's head.
fn plan(config: &Config, state: &RedisState, head: u64) -> String {
    let s = &state.snapshot;
    let mut out = String::from("plan:\n");
    let last = s.last_synced.filter(|l| *l > 0);
    // A first run with start_block behaves as if start_block - 1 was synced.
    let (effective, start) = match (last, config.sync.start_block) {
        (Some(last), _) => {
            out.push_str(&format!("  last synced block {last}, node head {head}\n"));
            (Some(last), None)
        }
        (None, Some(start)) => {
            out.push_str(&format!(
                "  first run (no last synced block); sync.start_block = {start}, node head {head}\n"
            ));
            (Some(start.saturating_sub(1)), Some(start))
        }
        (None, None) => {
            out.push_str(&format!(
                "  first run (no last synced block), node head {head}\n"
            ));
            (None, None)
        }
    };
    let limits = config.settings().limits;
    let first = match decide(effective, head, limits) {
        TipDecision::InSync => format!("in sync: wait for block {}", head + 1),
        TipDecision::Next { head } => match (last, start) {
            (None, None) => format!("start at the head: publish block {head}, then follow"),
            _ => format!("publish block {head}, then follow the head"),
        },
        TipDecision::SmallGap { from, to, head } => format!(
            "put blocks {from}..={to} ({}) on the priority queue, publish block {head}, then follow",
            blocks(to - from + 1)
        ),
        TipDecision::LargeGap {
            from,
            to,
            head,
            skipped,
        } => {
            let mut line = format!(
                "put blocks {from}..={to} ({}) on the backlog, worked highest first by {} workers, publish block {head}, then follow",
                blocks(to - from + 1),
                config.sync.backlog_workers
            );
            if skipped > 0 {
                line.push_str(&format!(
                    "; {} older than sync.backlog_max = {} are never fetched",
                    blocks(skipped),
                    limits.backlog_max
                ));
            }
            line
        }
        TipDecision::Behind { head, last } => format!(
            "the node (head {head}) is behind the last synced block {last}: wait until it catches up"
        ),
    };
    out.push_str(&format!("  first: {first}\n"));
    let range = |r: Option<(u64, u64)>| {
        r.map_or_else(String::new, |(low, high)| format!(" ({low}..={high})"))
    };
    out.push_str(&format!(
        "  priority queue: {}{}\n",
        blocks(s.priority),
        range(state.priority_range)
    ));
    out.push_str(&format!(
        "  backlog queue: {}{}\n",
        blocks(s.backlog),
        range(state.backlog_range)
    ));
    out.push_str(&format!("  retrying: {}\n", blocks(s.retry)));
    out.push_str(&format!(
        "  dead letters: {}{}\n",
        blocks(s.dead),
        if s.dead > 0 {
            " (see `tron-actors dlq list`)"
        } else {
            ""
        }
    ));
    if s.leases_by_slot.is_empty() {
        out.push_str("  leases: none\n");
    } else {
        let by_slot: Vec<String> = s
            .leases_by_slot
            .iter()
            .map(|(slot, n)| format!("{slot} {n}"))
            .collect();
        out.push_str(&format!(
            "  leases: {} resumed by their slots at start ({})\n",
            blocks(s.leased()),
            by_slot.join(", ")
        ));
    }
    out.push_str(&format!("  stream: {} entries\n", s.stream_len));
    out
}
