//! `tron-actors demo`: everything needed to see the daemon work, on one machine, with nothing
//! but a Rust toolchain and redis-server: the simulated node with a history to catch up, a Redis
//! (the configured one when it answers, else a private redis-server), and progress lines.

use crate::config::Config;
use crate::store::RedisStore;
use crate::tools::local_redis::{is_reachable, LocalRedis, LocalRedisError};
use actors::store::{Queue, Store};
use std::net::SocketAddr;
use std::time::Duration;
use tron_sim::{SimFaults, SimHandle, SimParams};

/// The demo writes under its own prefix so it never touches a real deployment's keys.
pub const DEMO_PREFIX: &str = "{tron-demo}";

/// Why `tron-actors demo` could not set up its node and Redis.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The simulated node did not start.
    #[error("simulated node: {0}")]
    Sim(#[from] tron_sim::SimError),
    /// The private redis-server did not start.
    #[error("{0}")]
    Redis(#[from] LocalRedisError),
    /// The store for progress reads cannot be set up.
    #[error("redis: {0}")]
    Store(#[from] actors::store::StoreError),
    /// No directory for the private redis-server's files.
    #[error("cannot create a directory for the private redis-server: {0}")]
    TempDir(std::io::Error),
}

/// The demo's simulated node and Redis, running until [`Demo::finish`].
pub struct Demo {
    sim: SimHandle,
    redis: Option<(LocalRedis, std::path::PathBuf)>,
    store: RedisStore,
}

/// Starts the simulated node and a Redis, and points `config` at them.
pub async fn prepare(
    config: &mut Config,
    history: u64,
    txs_per_block: u32,
    block_interval_ms: u64,
) -> Result<Demo, DemoError> {
    let params = SimParams {
        history,
        txs_per_block,
        block_interval_ms,
        ..SimParams::default()
    };
    let first_block = params.start_block;
    let sim = tron_sim::spawn(
        params,
        SimFaults::none(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await?;
    let redis = if is_reachable(&config.redis.url).await {
        tracing::info!(redis = %config.redis.url, prefix = DEMO_PREFIX, "Using the Redis that answers at redis.url");
        None
    } else {
        let dir = std::env::temp_dir().join(format!("tron-actors-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(DemoError::TempDir)?;
        let server = LocalRedis::start_on_free_port(&dir, true).await?;
        tracing::info!(redis = %server.url(), dir = %dir.display(), "No Redis at redis.url; started a private redis-server");
        config.redis.url = server.url();
        Some((server, dir))
    };
    config.redis.prefix = DEMO_PREFIX.to_string();
    config.node.urls = vec![sim.url()];
    config.sync.start_block = Some(first_block);
    let store = RedisStore::new(&config.store_config())?;
    let removed = store.delete_all_keys().await?;
    if removed > 0 {
        tracing::info!(
            keys = removed,
            prefix = DEMO_PREFIX,
            "Cleared the previous demo's keys"
        );
    }
    tracing::info!(
        node = %sim.url(),
        from = first_block,
        head = sim.chain().head(),
        stream = %store.keys().events(),
        "Demo ready: catching up the simulated history, then following the head. Read the events with: redis-cli -u {} XREVRANGE '{}' + - COUNT 5",
        config.redis.url,
        store.keys().events()
    );
    Ok(Demo { sim, redis, store })
}

impl Demo {
    /// Once caught up, logs what has been published every 15 s; never returns. (The catch-up
    /// itself is reported by the daemon's progress bar or lines, with rate and ETA.)
    pub async fn report_progress(&self) {
        loop {
            tokio::time::sleep(Duration::from_secs(15)).await;
            let head = self.sim.chain().head();
            let snapshot = async {
                let last = self.store.last_synced().await?;
                let backlog = self.store.queue_len(Queue::Backlog).await?;
                let priority = self.store.queue_len(Queue::Priority).await?;
                let stats = self.store.stats().await?;
                Ok::<_, actors::store::StoreError>((last, backlog, priority, stats))
            }
            .await;
            match snapshot {
                Ok((last, backlog, priority, stats)) => {
                    if backlog + priority > 0 {
                        continue;
                    }
                    tracing::info!(
                        head,
                        last_synced = last.unwrap_or(0),
                        blocks_published = stats.published(),
                        events_published = stats.events_published(),
                        "Following the head"
                    );
                }
                Err(error) => tracing::warn!(%error, "Cannot read progress"),
            }
        }
    }

    /// Stops the node and the private redis-server and removes its files.
    pub async fn finish(self) {
        let _ = self.sim.shutdown().await;
        if let Some((mut redis, dir)) = self.redis {
            redis.kill().await;
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
