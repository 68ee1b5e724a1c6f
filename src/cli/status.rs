//! `tron-actors status [--json]`: the sync state as Redis and the node see it. It reads, never
//! writes, and works whether the daemon runs or not. When one side does not answer, what the
//! other side knows is still printed, and the exit status is 1.
use super::{
    api_key_shown, check_redis, load_config, node_client, node_head, open_store, CliError,
    CHECK_TIMEOUT,
};
use actors::model::BlockHeader;
use clap::Args;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tron_actors::config::redact_url;
use tron_actors::store::{RedisStore, StoreSnapshot};
use tron_actors::tron::NodeView;

#[derive(Args)]
pub(crate) struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Status {
    node: NodeStatus,
    redis: RedisStatus,
    /// What Redis holds; absent when Redis does not answer.
    sync: Option<SyncStatus>,
}

#[derive(Serialize)]
struct NodeStatus {
    /// The node in use (with several, the one the daemon would choose now).
    url: String,
    api_key: &'static str,
    head: Option<u64>,
    head_time_ms: Option<u64>,
    error: Option<String>,
    /// With several nodes (`node.urls`), each one as checked now; absent with one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    nodes: Vec<NodeView>,
}

#[derive(Serialize)]
struct RedisStatus {
    url: String,
    prefix: String,
    used_memory_bytes: Option<u64>,
    error: Option<String>,
}

#[derive(Serialize)]
struct SyncStatus {
    last_synced: Option<u64>,
    /// The node's solidified block as last published in a `finalized` entry.
    finalized: Option<u64>,
    /// As `tron_actors_lag_blocks`: head - last_synced plus queued, leased and retrying blocks;
    /// absent without a head.
    lag_blocks: Option<u64>,
    /// Head block time minus the newest published block's time.
    lag_seconds: Option<f64>,
    queues: Queues,
    leases_by_slot: BTreeMap<String, u64>,
    /// The leader's instance id and epoch; absent while none leads.
    leader: Option<Leader>,
    /// The daemons sharing this Redis.
    instances: Vec<InstanceStatus>,
    published: Published,
    stream: StreamStatus,
}

#[derive(Serialize)]
struct Leader {
    instance: String,
    epoch: u64,
}

#[derive(Serialize)]
struct InstanceStatus {
    id: String,
    /// When it last bid for or renewed the leadership (ms since the epoch).
    last_seen_ms: u64,
    leader: bool,
    /// Leases its worker slots hold.
    leases: u64,
    /// Blocks it committed.
    blocks_committed: u64,
}

#[derive(Serialize)]
struct Queues {
    priority: u64,
    backlog: u64,
    retry: u64,
    dead: u64,
}

#[derive(Serialize)]
struct Published {
    blocks: BTreeMap<String, u64>,
    events: BTreeMap<String, u64>,
    /// Blocks retracted (`block_reverted` entries), and the forks they belonged to.
    reverted_blocks: u64,
    forks: u64,
}

#[derive(Serialize)]
struct StreamStatus {
    key: String,
    length: u64,
    memory_bytes: Option<u64>,
}

pub(crate) async fn run(config_file: Option<PathBuf>, args: StatusArgs) -> Result<(), CliError> {
    let config = load_config(config_file)?;
    tron_actors::telemetry::init_logs(config.log.format, tracing::Level::ERROR);
    let store = open_store(&config)?;
    let client = node_client(&config)?;
    let node = async {
        let head = node_head(&client).await;
        (head, client.nodes())
    };
    let read = async {
        // TLS or credentials refused: say which keys to check rather than the bare error.
        if let Err(CliError::Refused(failure)) = check_redis(&config, &store).await {
            return Err(failure);
        }
        read_sync(&store).await
    };
    let ((head, nodes), sync) = tokio::join!(node, read);
    let in_use = nodes
        .iter()
        .find(|n| n.active)
        .map_or_else(|| config.node.shown_urls(), |n| n.url.clone());
    let (sync, used_memory, redis_error) = match sync {
        Ok((read, used_memory)) => (Some(read.status(head.as_ref().ok())), used_memory, None),
        Err(error) => (None, None, Some(error)),
    };
    let status = Status {
        node: NodeStatus {
            url: in_use,
            api_key: api_key_shown(&config),
            head: head.as_ref().ok().map(|h| h.number),
            head_time_ms: head.as_ref().ok().map(|h| h.timestamp_ms),
            error: head.as_ref().err().cloned(),
            nodes: if nodes.len() > 1 { nodes } else { Vec::new() },
        },
        redis: RedisStatus {
            url: redact_url(&config.redis.url),
            prefix: config.redis.prefix.clone(),
            used_memory_bytes: used_memory,
            error: redis_error,
        },
        sync,
    };
    if args.json {
        let json = serde_json::to_string_pretty(&status).map_err(|error| {
            CliError::Failed(format!("cannot render the status as JSON: {error}"))
        })?;
        println!("{json}");
    } else {
        print!("{}", table(&status));
    }
    if status.node.error.is_some() || status.redis.error.is_some() {
        Err(CliError::Reported)
    } else {
        Ok(())
    }
}

/// What Redis says, before it meets the node's head.
struct SyncRead {
    snapshot: StoreSnapshot,
    stream_key: String,
    stream_memory: Option<u64>,
}

impl SyncRead {
    /// The sync state, with the lag when the node gave its head.
    fn status(self, head: Option<&BlockHeader>) -> SyncStatus {
        let s = self.snapshot;
        SyncStatus {
            last_synced: s.last_synced,
            finalized: s.finalized,
            lag_blocks: head.map(|head| s.lag_blocks(head.number)),
            lag_seconds: head.and_then(|head| s.stats.lag_seconds(head.timestamp_ms)),
            queues: Queues {
                priority: s.priority,
                backlog: s.backlog,
                retry: s.retry,
                dead: s.dead,
            },
            published: Published {
                blocks: s.stats.blocks_by_origin(),
                events: s.stats.events_by_origin(),
                reverted_blocks: s.stats.reverted_blocks(),
                forks: s.stats.forks(),
            },
            leader: s.leader.as_ref().map(|(instance, epoch)| Leader {
                instance: instance.clone(),
                epoch: *epoch,
            }),
            instances: s
                .instances
                .iter()
                .map(|(id, seen)| InstanceStatus {
                    id: id.clone(),
                    last_seen_ms: *seen,
                    leader: s.leader.as_ref().is_some_and(|(l, _)| l == id),
                    leases: s
                        .leases_by_slot
                        .iter()
                        .filter(|(slot, _)| slot.split_once('/').is_some_and(|(i, _)| i == id))
                        .map(|(_, n)| n)
                        .sum(),
                    blocks_committed: s.stats.blocks_by_instance().get(id).copied().unwrap_or(0),
                })
                .collect(),
            leases_by_slot: s.leases_by_slot,
            stream: StreamStatus {
                key: self.stream_key,
                length: s.stream_len,
                memory_bytes: self.stream_memory,
            },
        }
    }
}

/// Everything from Redis, and its used memory.
async fn read_sync(store: &RedisStore) -> Result<(SyncRead, Option<u64>), String> {
    let read = async {
        let snapshot = store.snapshot().await.map_err(|e| e.to_string())?;
        let mut conn = store.connection();
        let stream_key = store.keys().events();
        let (stream_memory, info): (Option<u64>, String) = redis::pipe()
            .cmd("MEMORY")
            .arg("USAGE")
            .arg(&stream_key)
            .cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let used_memory = info
            .lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok());
        Ok::<_, String>((
            SyncRead {
                snapshot,
                stream_key,
                stream_memory,
            },
            used_memory,
        ))
    };
    match tokio::time::timeout(CHECK_TIMEOUT, read).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
    }
}

fn bytes(n: Option<u64>) -> String {
    match n {
        None => "-".into(),
        Some(n) if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        Some(n) if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        Some(n) if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        Some(n) => format!("{n} B"),
    }
}

fn table(status: &Status) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |what: &str, value: String| rows.push((what.to_string(), value));
    row(
        "node",
        format!("{} (api key: {})", status.node.url, status.node.api_key),
    );
    for node in &status.node.nodes {
        row(
            if node.active { "  in use" } else { "  other" },
            format!(
                "{} head {}{}{}",
                node.url,
                node.head
                    .map_or_else(|| "unknown".to_string(), |h| h.to_string()),
                if node.api_key { ", api key sent" } else { "" },
                node.unfit
                    .as_ref()
                    .map(|why| format!(", not used: {why}"))
                    .unwrap_or_default()
            ),
        );
    }
    match (&status.node.head, &status.node.error) {
        (Some(head), _) => row(
            "head",
            format!(
                "{head} ({})",
                super::dlq::format_time(status.node.head_time_ms.unwrap_or(0))
            ),
        ),
        (None, Some(error)) => row("head", format!("unknown: node unreachable: {error}")),
        (None, None) => row("head", "unknown".into()),
    }
    row(
        "redis",
        format!(
            "{} prefix {} (used memory {})",
            status.redis.url,
            status.redis.prefix,
            bytes(status.redis.used_memory_bytes)
        ),
    );
    match &status.sync {
        None => row(
            "state",
            format!(
                "unknown: redis unreachable: {}",
                status.redis.error.as_deref().unwrap_or("no answer")
            ),
        ),
        Some(sync) => {
            row(
                "last synced",
                sync.last_synced
                    .map_or_else(|| "none (never ran)".into(), |b| b.to_string()),
            );
            row(
                "finalized",
                sync.finalized
                    .map_or_else(|| "none yet".into(), |b| b.to_string()),
            );
            row(
                "forks",
                format!(
                    "{} ({} blocks retracted)",
                    sync.published.forks, sync.published.reverted_blocks
                ),
            );
            let lag_seconds = sync
                .lag_seconds
                .map_or_else(String::new, |s| format!(", {s:.0} s"));
            row(
                "lag",
                sync.lag_blocks.map_or_else(
                    || "unknown (no head)".into(),
                    |lag| format!("{lag} blocks{lag_seconds}"),
                ),
            );
            row(
                "leader",
                sync.leader.as_ref().map_or_else(
                    || "none now (the next instance to bid takes it)".into(),
                    |l| format!("{} (epoch {})", l.instance, l.epoch),
                ),
            );
            row("instances", sync.instances.len().to_string());
            for i in &sync.instances {
                row(
                    &format!("  {}", i.id),
                    format!(
                        "{}last seen {}, {} leases, {} blocks committed",
                        if i.leader { "leader, " } else { "" },
                        super::dlq::format_time(i.last_seen_ms),
                        i.leases,
                        i.blocks_committed
                    ),
                );
            }
            let q = &sync.queues;
            row("priority queue", q.priority.to_string());
            row("backlog queue", q.backlog.to_string());
            row("retrying", q.retry.to_string());
            row("dead letters", q.dead.to_string());
            let leases: u64 = sync.leases_by_slot.values().sum();
            row("leases", leases.to_string());
            for (slot, n) in &sync.leases_by_slot {
                row(&format!("  {slot}"), n.to_string());
            }
            for (what, map) in [
                ("blocks published", &sync.published.blocks),
                ("events published", &sync.published.events),
            ] {
                let total: u64 = map.values().sum();
                let parts: Vec<String> = map.iter().map(|(p, n)| format!("{p} {n}")).collect();
                row(
                    what,
                    if parts.is_empty() {
                        "0".into()
                    } else {
                        format!("{total} ({})", parts.join(", "))
                    },
                );
            }
            row(
                "stream",
                format!(
                    "{}: {} entries, {}",
                    sync.stream.key,
                    sync.stream.length,
                    bytes(sync.stream.memory_bytes)
                ),
            );
        }
    }
    let width = rows.iter().map(|(w, _)| w.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(what, value)| format!("{what:<width$}  {value}\n"))
        .collect()
}
