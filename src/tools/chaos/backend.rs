//! Redis as the run has it: one private redis-server with AOF, or (`--sentinel`) a primary, one
//! replica and three sentinels, all private processes; and what the plan does to it.

use super::{io, ChaosError, PREFIX};
use crate::store::RedisStoreConfig;
use crate::tools::local_redis::{free_port, LocalRedis, Persistence};
use crate::tools::sentinel::Sentinels;
use std::path::Path;
use std::time::Duration;

/// The name the sentinels monitor the primary under.
const MASTER: &str = "chaos";
/// The sentinels take the primary as down after this long without an answer.
const DOWN_AFTER_MS: u64 = 500;
/// How long a commit waits for its replica (`redis.wait_timeout_ms`): low, since the one
/// replica is away from a failover until the old primary is back as a replica.
const WAIT_TIMEOUT_MS: u64 = 250;
/// How long the sentinels get to agree, to promote, and a restarted replica to sync.
const SENTINEL_LIMIT: Duration = Duration::from_secs(60);

pub(super) enum Backend {
    /// One redis-server with AOF (`appendfsync always`).
    Single(LocalRedis),
    /// Two redis-servers (the primary and its replica, the roles swapping at each failover)
    /// and the sentinels watching them.
    Sentinel {
        servers: Box<[LocalRedis; 2]>,
        sentinels: Sentinels,
    },
}

impl Backend {
    pub(super) async fn start(dir: &Path, sentinel: bool) -> Result<Backend, ChaosError> {
        let port = || free_port().map_err(io("find a free port for redis-server"));
        if !sentinel {
            let redis = LocalRedis::start_with(dir, port()?, Persistence::AofAlways).await?;
            return Ok(Backend::Single(redis));
        }
        // No AOF: a killed primary comes back as a replica and takes the new primary's data;
        // the replica (acknowledged by WAIT) is what keeps the commits.
        let mut dirs = Vec::new();
        for name in ["redis-a", "redis-b", "sentinels"] {
            let sub = dir.join(name);
            std::fs::create_dir_all(&sub).map_err(io(format!("create {}", sub.display())))?;
            dirs.push(sub);
        }
        let primary = LocalRedis::start_with(&dirs[0], port()?, Persistence::None).await?;
        let replica = LocalRedis::start_with_args(
            &dirs[1],
            port()?,
            Persistence::None,
            &replica_of(primary.port()),
        )
        .await?;
        let sentinels = Sentinels::start(
            &dirs[2],
            MASTER,
            primary.port(),
            1,
            DOWN_AFTER_MS,
            SENTINEL_LIMIT,
        )
        .await?;
        Ok(Backend::Sentinel {
            servers: Box::new([primary, replica]),
            sentinels,
        })
    }

    /// The harness's own store: the same Redis the daemons use, the current primary with
    /// Sentinel (so the final verify reads the primary of the end).
    pub(super) fn store_config(&self) -> RedisStoreConfig {
        let defaults = crate::config::Config::default().store_config();
        match self {
            Backend::Single(redis) => RedisStoreConfig {
                url: redis.url(),
                prefix: PREFIX.to_string(),
                ..defaults
            },
            Backend::Sentinel { sentinels, .. } => RedisStoreConfig {
                url: "redis://sentinel-names-the-host:1".to_string(),
                sentinels: sentinels
                    .addrs()
                    .iter()
                    .filter_map(|a| {
                        let (host, port) = a.rsplit_once(':')?;
                        Some((host.to_string(), port.parse().ok()?))
                    })
                    .collect(),
                master_name: MASTER.to_string(),
                prefix: PREFIX.to_string(),
                ..defaults
            },
        }
    }

    /// The daemons' `TRON_ACTORS_REDIS__*` settings, without the prefix.
    pub(super) fn daemon_env(&self) -> Vec<(&'static str, String)> {
        match self {
            Backend::Single(redis) => vec![("REDIS__URL", redis.url())],
            Backend::Sentinel { sentinels, .. } => vec![
                // With sentinels only the scheme of the URL is used.
                (
                    "REDIS__URL",
                    "redis://sentinel-names-the-host:1".to_string(),
                ),
                (
                    "REDIS__SENTINELS",
                    serde_json::Value::from(sentinels.addrs()).to_string(),
                ),
                ("REDIS__MASTER_NAME", MASTER.to_string()),
                ("REDIS__WAIT_REPLICAS", "1".to_string()),
                ("REDIS__WAIT_TIMEOUT_MS", WAIT_TIMEOUT_MS.to_string()),
            ],
        }
    }

    /// What the run's first line says of Redis.
    pub(super) fn describe(&self) -> String {
        match self {
            Backend::Single(redis) => format!("redis {} (AOF, appendfsync always)", redis.url()),
            Backend::Sentinel { servers, sentinels } => format!(
                "redis primary 127.0.0.1:{} and replica 127.0.0.1:{}, sentinels {} (master {MASTER})",
                servers[0].port(),
                servers[1].port(),
                sentinels.addrs().join(",")
            ),
        }
    }

    /// One server: SIGKILL, `down`, start again on its AOF.
    pub(super) async fn restart(&mut self, down: Duration) -> Result<(), ChaosError> {
        let Backend::Single(redis) = self else {
            return Err(ChaosError::Options(
                "a Redis restart planned with Sentinel".into(),
            ));
        };
        redis.kill().await;
        tokio::time::sleep(down).await;
        redis.restart().await?;
        Ok(())
    }

    /// Sentinel: SIGKILL the primary, wait until the sentinels name the other server, `down`,
    /// start the old primary again as a replica of the new one, and wait until the sentinels
    /// take it as a replica that is up and in sync (the next failover can promote it).
    pub(super) async fn failover(&mut self, down: Duration) -> Result<(), ChaosError> {
        let Backend::Sentinel { servers, sentinels } = self else {
            return Err(ChaosError::Options(
                "a failover planned without Sentinel".into(),
            ));
        };
        let old_port = sentinels
            .primary_port()
            .await
            .ok_or_else(|| ChaosError::Failover("no sentinel answers".into()))?;
        let Some(old) = servers.iter().position(|s| s.port() == old_port) else {
            return Err(ChaosError::Failover(format!(
                "the sentinels name port {old_port}, not one of the run's servers"
            )));
        };
        let new_port = servers[1 - old].port();
        servers[old].kill().await;
        wait_for(
            &format!("the sentinels to promote port {new_port}"),
            || async { sentinels.primary_port().await == Some(new_port) },
        )
        .await?;
        tokio::time::sleep(down).await;
        servers[old]
            .restart_with_args(&replica_of(new_port))
            .await?;
        wait_for(
            &format!("port {old_port} to be a replica in sync again"),
            || async {
                for sentinel in &sentinels.sentinels {
                    match sentinel.replicas_up().await {
                        Some(up) if up.contains(&old_port) => {}
                        _ => return false,
                    }
                }
                true
            },
        )
        .await
    }

    /// SIGKILLs every Redis process the run started.
    pub(super) async fn kill(&mut self) {
        match self {
            Backend::Single(redis) => redis.kill().await,
            // The sentinels go when dropped.
            Backend::Sentinel { servers, .. } => {
                for server in servers.iter_mut() {
                    server.kill().await;
                }
            }
        }
    }
}

fn replica_of(port: u16) -> Vec<String> {
    vec![
        "--replicaof".to_string(),
        "127.0.0.1".to_string(),
        port.to_string(),
    ]
}

async fn wait_for<F, Fut>(what: &str, mut check: F) -> Result<(), ChaosError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = tokio::time::Instant::now();
    while !check().await {
        if started.elapsed() > SENTINEL_LIMIT {
            return Err(ChaosError::Failover(format!(
                "waited {SENTINEL_LIMIT:?} for {what}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
