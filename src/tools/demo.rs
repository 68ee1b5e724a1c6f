//! `tron-actors demo`: everything needed to see the daemon work, on one machine, with nothing
//! but a Rust toolchain and redis-server: the simulated node with a history to catch up, a
//! private redis-server (the configured Redis only when asked: it would receive ~400 MB kept 7
//! days), and progress lines. On exit it says what it leaves behind and how to remove it.

use crate::config::Config;
use crate::store::RedisStore;
use crate::tools::local_redis::{LocalRedis, LocalRedisError};
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
    /// The Redis it wrote to (`redis.url`, or the private server's).
    redis_url: String,
}

/// Starts the simulated node and a Redis, and points `config` at them: a private redis-server,
/// or with `existing_redis` the one at `redis.url` (under [`DEMO_PREFIX`]).
pub async fn prepare(
    config: &mut Config,
    history: u64,
    txs_per_block: u32,
    block_interval_ms: u64,
    existing_redis: bool,
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
    let redis = if existing_redis {
        tracing::info!(redis = %crate::config::redact_url(&config.redis.url), prefix = DEMO_PREFIX, "Using the Redis at redis.url, as asked (--existing-redis)");
        None
    } else {
        let dir = std::env::temp_dir().join(format!("tron-actors-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(DemoError::TempDir)?;
        let server = LocalRedis::start_on_free_port(&dir, true).await?;
        tracing::info!(redis = %server.url(), dir = %dir.display(), "Started a private redis-server (removed on exit; --existing-redis uses redis.url instead)");
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
        "Demo ready: catching up the simulated history, then following the head. Read the events with: {}",
        tail_command(&crate::config::redact_url(&config.redis.url))
    );
    let redis_url = config.redis.url.clone();
    Ok(Demo {
        sim,
        redis,
        store,
        redis_url,
    })
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

    /// Stops the node and the private redis-server and removes its files; returns what it
    /// leaves behind and how to remove it, for the last line the user sees.
    pub async fn finish(self) -> String {
        let _ = self.sim.shutdown().await;
        match self.redis {
            Some((mut redis, dir)) => {
                redis.kill().await;
                let _ = std::fs::remove_dir_all(&dir);
                format!(
                    "Demo stopped: its private redis-server is stopped and its files ({}) removed; nothing is left behind.",
                    dir.display()
                )
            }
            None => removal_hint(&crate::config::redact_url(&self.redis_url)),
        }
    }
}

/// The command that shows the demo's events as they come (in another terminal).
pub fn tail_command(redis_url: &str) -> String {
    format!(
        "TRON_ACTORS_REDIS__URL={redis_url} TRON_ACTORS_REDIS__PREFIX='{DEMO_PREFIX}' tron-actors tail"
    )
}

/// What `demo --existing-redis` says on exit: where its keys are and the command that removes
/// them all (every key of the demo starts with [`DEMO_PREFIX`]; a later demo also clears them).
pub fn removal_hint(redis_url: &str) -> String {
    format!(
        "Demo stopped: its keys stay in the Redis at {redis_url}, all under the prefix {DEMO_PREFIX} \
         (the stream keeps 7 days). Remove them with:\n  \
         redis-cli -u {redis_url} --scan --pattern '{DEMO_PREFIX}:*' | xargs -r redis-cli -u {redis_url} DEL"
    )
}
