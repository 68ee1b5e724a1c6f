//! A private `redis-server` child process: what `demo` starts when no Redis is reachable, and
//! what every integration test runs against (on a free port, so tests can kill and restart it).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// `stream-node-max-bytes` of every redis-server started here: the recommended production value.
pub const STREAM_NODE_MAX_BYTES: u32 = 8192;
/// Why a private redis-server is not available.
#[derive(Debug, thiserror::Error)]
pub enum LocalRedisError {
    /// No `redis-server` on PATH.
    #[error("redis-server is not on PATH; install it (Debian/Ubuntu: apt-get install redis-server, macOS: brew install redis) or point redis.url at a running Redis")]
    NotInstalled,
    /// The process could not be started.
    #[error("could not start redis-server: {0}")]
    Start(String),
    /// It started but did not answer PING on `port` within `waited`.
    #[allow(missing_docs)]
    #[error("redis-server on port {port} did not answer within {waited:?}")]
    NotReady { port: u16, waited: Duration },
}

/// A free TCP port on 127.0.0.1 (the OS picks it; a tiny race with other processes is accepted).
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// How the private server keeps its data across a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing: a restart empties it.
    None,
    /// AOF with `appendfsync everysec`, as production should run.
    AofEverySec,
    /// AOF with `appendfsync always`. With `everysec`, Redis may hold a write in its own buffer
    /// (not yet in the kernel) for up to 2 s while a slow background fsync runs, and still
    /// answer; a SIGKILL then loses acknowledged writes. `always` writes and fsyncs before it
    /// answers, so a harness that SIGKILLs Redis on a busy disk never loses what it was told.
    AofAlways,
}

/// A private redis-server child process on 127.0.0.1, its files in the directory it was given;
/// killed when dropped.
pub struct LocalRedis {
    port: u16,
    dir: PathBuf,
    persistence: Persistence,
    /// More redis-server arguments (TLS, replication), kept for a restart.
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl LocalRedis {
    /// Starts redis-server on `port` with its files in `dir`; `append_only` turns on AOF with
    /// `appendfsync everysec`, as production should run.
    pub async fn start(dir: &Path, port: u16, append_only: bool) -> Result<Self, LocalRedisError> {
        let persistence = if append_only {
            Persistence::AofEverySec
        } else {
            Persistence::None
        };
        Self::start_with(dir, port, persistence).await
    }

    /// Starts redis-server on `port` with its files in `dir`, persisting as told.
    pub async fn start_with(
        dir: &Path,
        port: u16,
        persistence: Persistence,
    ) -> Result<Self, LocalRedisError> {
        Self::start_with_args(dir, port, persistence, &[]).await
    }

    /// Starts redis-server on `port` (plain TCP, which the readiness check uses) with more
    /// arguments, e.g. `--tls-port` and its certificate files, or `--replicaof`.
    pub async fn start_with_args(
        dir: &Path,
        port: u16,
        persistence: Persistence,
        extra_args: &[String],
    ) -> Result<Self, LocalRedisError> {
        let mut redis = LocalRedis {
            port,
            dir: dir.to_path_buf(),
            persistence,
            extra_args: extra_args.to_vec(),
            child: None,
        };
        redis.spawn().await?;
        Ok(redis)
    }

    /// Starts it on a free port.
    pub async fn start_on_free_port(
        dir: &Path,
        append_only: bool,
    ) -> Result<Self, LocalRedisError> {
        let port = free_port().map_err(|e| LocalRedisError::Start(e.to_string()))?;
        Self::start(dir, port, append_only).await
    }

    async fn spawn(&mut self) -> Result<(), LocalRedisError> {
        let child = Command::new("redis-server")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg(if self.persistence == Persistence::None {
                "no"
            } else {
                "yes"
            })
            .arg("--appendfsync")
            .arg(if self.persistence == Persistence::AofAlways {
                "always"
            } else {
                "everysec"
            })
            // The recommended setting for the event stream (README, "Redis"; docs/BENCHMARKS.md):
            // nodes of 8 KB hold twice the entries of the 4 KB default, so each entry carries
            // half the node overhead.
            .arg("--stream-node-max-bytes")
            .arg(STREAM_NODE_MAX_BYTES.to_string())
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => LocalRedisError::NotInstalled,
                _ => LocalRedisError::Start(e.to_string()),
            })?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(10)).await
    }

    async fn wait_ready(&self, limit: Duration) -> Result<(), LocalRedisError> {
        let started = tokio::time::Instant::now();
        while started.elapsed() < limit {
            if let Ok(client) = redis::Client::open(self.url()) {
                if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                    // A server loading its AOF answers LOADING errors; wait for a real PONG.
                    if redis::cmd("PING")
                        .query_async::<String>(&mut conn)
                        .await
                        .is_ok()
                    {
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(LocalRedisError::NotReady {
            port: self.port,
            waited: limit,
        })
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|child| child.id())
    }

    /// Its plain TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs the server (as a crash would).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it again on the same port and directory (with AOF on, its data comes back).
    pub async fn restart(&mut self) -> Result<(), LocalRedisError> {
        self.kill().await;
        self.spawn().await
    }

    /// Starts it again on the same port and directory with other extra arguments (kept for
    /// the next restart), e.g. `--replicaof` the primary that replaced it.
    pub async fn restart_with_args(
        &mut self,
        extra_args: &[String],
    ) -> Result<(), LocalRedisError> {
        self.extra_args = extra_args.to_vec();
        self.restart().await
    }
}
