//! Redis Sentinel as private processes (`redis-server --sentinel`), watching a private primary:
//! what tests/redis_sentinel.rs and `chaos --sentinel` run. Low timeouts, so that a failover
//! takes a second or two.

use crate::tools::local_redis::{free_port, LocalRedisError};
use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// How long a sentinel waits, after a previous failover attempt of the same primary, before it
/// tries again (twice this); also the limit on a replica's reconfiguration.
const FAILOVER_TIMEOUT_MS: u64 = 3_000;

/// What one sentinel knows about the primary it monitors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentinelView {
    /// The primary's port (every server is on 127.0.0.1).
    pub primary_port: u16,
    /// Replicas of it the sentinel knows (up or not).
    pub replicas: usize,
    /// Other sentinels it knows.
    pub sentinels: usize,
}

/// A `redis-server --sentinel` child process on 127.0.0.1; killed when dropped.
pub struct Sentinel {
    port: u16,
    master: String,
    _child: Child,
}

impl Sentinel {
    /// Starts a sentinel monitoring `master` at 127.0.0.1:`primary_port` (quorum 2), which takes
    /// the primary as down after `down_after_ms` without an answer. Its config file
    /// (`sentinel-<index>.conf`, which Sentinel rewrites with what it learns) is in `dir`.
    pub async fn start(
        dir: &Path,
        index: usize,
        master: &str,
        primary_port: u16,
        down_after_ms: u64,
    ) -> Result<Sentinel, LocalRedisError> {
        let port = free_port().map_err(|e| LocalRedisError::Start(e.to_string()))?;
        let conf = dir.join(format!("sentinel-{index}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {master} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {master} {down_after_ms}\n\
                 sentinel failover-timeout {master} {FAILOVER_TIMEOUT_MS}\n\
                 sentinel parallel-syncs {master} 2\n",
                dir = dir.display()
            ),
        )
        .map_err(|e| LocalRedisError::Start(format!("write {}: {e}", conf.display())))?;
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => LocalRedisError::NotInstalled,
                _ => LocalRedisError::Start(e.to_string()),
            })?;
        Ok(Sentinel {
            port,
            master: master.to_string(),
            _child: child,
        })
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection to it, if it answers.
    pub async fn conn(&self) -> Option<redis::aio::MultiplexedConnection> {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.port))
            .ok()?
            .get_multiplexed_async_connection()
            .await
            .ok()
    }

    /// What it knows now; `None` while it does not answer.
    pub async fn view(&self) -> Option<SentinelView> {
        let mut conn = self.conn().await?;
        let (_, primary_port): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master)
            .query_async(&mut conn)
            .await
            .ok()?;
        let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
            .arg("replicas")
            .arg(&self.master)
            .query_async(&mut conn)
            .await
            .ok()?;
        let sentinels: Vec<redis::Value> = redis::cmd("SENTINEL")
            .arg("sentinels")
            .arg(&self.master)
            .query_async(&mut conn)
            .await
            .ok()?;
        Some(SentinelView {
            primary_port,
            replicas: replicas.len(),
            sentinels: sentinels.len(),
        })
    }

    /// The ports of the replicas it takes as up (flags exactly `slave`: not down, not
    /// disconnected), which a failover can promote; `None` while it does not answer.
    pub async fn replicas_up(&self) -> Option<Vec<u16>> {
        let mut conn = self.conn().await?;
        let replicas: Vec<HashMap<String, String>> = redis::cmd("SENTINEL")
            .arg("replicas")
            .arg(&self.master)
            .query_async(&mut conn)
            .await
            .ok()?;
        Some(
            replicas
                .iter()
                .filter(|r| r.get("flags").map(String::as_str) == Some("slave"))
                .filter(|r| r.get("master-link-status").map(String::as_str) == Some("ok"))
                .filter_map(|r| r.get("port")?.parse().ok())
                .collect(),
        )
    }

    /// `SENTINEL FAILOVER`: a failover the operator asks for (the primary lives on, demoted).
    pub async fn failover(&self) -> Result<(), redis::RedisError> {
        let Some(mut conn) = self.conn().await else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "the sentinel does not answer",
            )));
        };
        redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(&self.master)
            .query_async::<()>(&mut conn)
            .await
    }
}

/// Three sentinels (quorum 2) watching one primary.
pub struct Sentinels {
    /// The sentinels, each its own process.
    pub sentinels: Vec<Sentinel>,
    master: String,
}

impl Sentinels {
    /// Starts three sentinels for `master` at 127.0.0.1:`primary_port` (config files in `dir`)
    /// and waits up to `limit` until each knows the primary, `replicas` replicas and the two
    /// other sentinels: before that, a failover cannot be agreed on (they learn each other in
    /// ~10 s).
    pub async fn start(
        dir: &Path,
        master: &str,
        primary_port: u16,
        replicas: usize,
        down_after_ms: u64,
        limit: Duration,
    ) -> Result<Sentinels, LocalRedisError> {
        let mut sentinels = Vec::new();
        for index in 0..3 {
            sentinels.push(Sentinel::start(dir, index, master, primary_port, down_after_ms).await?);
        }
        let group = Sentinels {
            sentinels,
            master: master.to_string(),
        };
        let wanted = SentinelView {
            primary_port,
            replicas,
            sentinels: 2,
        };
        let started = tokio::time::Instant::now();
        loop {
            let mut agreed = true;
            for sentinel in &group.sentinels {
                agreed &= sentinel.view().await == Some(wanted);
            }
            if agreed {
                return Ok(group);
            }
            if started.elapsed() > limit {
                return Err(LocalRedisError::Start(format!(
                    "the sentinels did not agree on the primary at port {primary_port} with \
                     {replicas} replicas within {limit:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The name they monitor the primary under.
    pub fn master(&self) -> &str {
        &self.master
    }

    /// Their addresses, `127.0.0.1:<port>` (what `redis.sentinels` takes).
    pub fn addrs(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect()
    }

    /// The primary's port as the first sentinel that answers says.
    pub async fn primary_port(&self) -> Option<u16> {
        for sentinel in &self.sentinels {
            if let Some(view) = sentinel.view().await {
                return Some(view.primary_port);
            }
        }
        None
    }
}
