//! The one way to a Redis connection from the configuration: every command (`run`, `status`,
//! `dlq`, `verify`, `demo`, the harnesses) opens its store through [`RedisStore::new`], which
//! calls [`connect`] here, so TLS (`rediss://`, `redis.ca_file`), the ACL user
//! (`redis.username`, `redis.password`, `redis.password_file`) and Sentinel (`redis.sentinels`)
//! apply to all of them alike.
//!
//! A [`RedisConn`] is either one [`ConnectionManager`] (a plain or TLS Redis: it reconnects to
//! the same address by itself), or, with Sentinel, a manager for the primary the sentinels
//! named, which is forgotten when a command fails in a way that says the primary may have
//! changed (the connection dropped or was refused, a timeout, a write refused as `READONLY`):
//! the next command asks the sentinels again and connects to the primary they name. The failed
//! command itself is not repeated here; its caller retries it as after any Redis error.
//!
//! [`RedisStore::new`]: super::RedisStore::new

use super::RedisStoreConfig;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, TlsCertificates, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why no connection can be made from the configuration; each says which key to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `redis.url` cannot be used. The URL is not quoted (it may hold a password).
    #[error("redis.url cannot be used: {0} (e.g. rediss://user@redis.example.com:6380)")]
    Url(#[source] redis::RedisError),
    /// `redis.ca_file` cannot be read.
    #[error("cannot read redis.ca_file {path}: {source} (check the path and its permissions)")]
    CaFile {
        /// The file as configured.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// `redis.ca_file` holds no PEM certificate redis-rs can use.
    #[error("redis.ca_file {path} holds no usable PEM certificate: {reason}")]
    CaPem {
        /// The file as configured.
        path: PathBuf,
        /// What the PEM parser said.
        reason: String,
    },
    /// The sentinel client cannot be built from `redis.sentinels`.
    #[error("redis.sentinels cannot be used: {0}")]
    Sentinel(#[source] redis::RedisError),
}

/// Why a connection that was tried failed for good: a restart with the same configuration
/// fails the same way. [`permanent_failure`] tells them from a Redis that is down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermanentFailure {
    /// The TLS handshake failed (the server's certificate is not trusted, or not for this host).
    Tls(String),
    /// Redis refused the credentials, or the user lacks a permission.
    Auth(String),
}

impl std::fmt::Display for PermanentFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PermanentFailure::Tls(reason) => write!(
                f,
                "the TLS handshake with Redis failed: {reason} (check redis.ca_file: it must hold \
                 the CA that signed the server's certificate, and the host in redis.url must be \
                 one the certificate names)"
            ),
            PermanentFailure::Auth(reason) => write!(
                f,
                "Redis refused the credentials: {reason} (check redis.username and \
                 redis.password / redis.password_file, or the user:password in redis.url)"
            ),
        }
    }
}

/// Whether `error` is a failure that retrying will not mend (TLS, credentials), and which.
pub fn permanent_failure(error: &(dyn std::error::Error + 'static)) -> Option<PermanentFailure> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(PermanentFailure::Tls(tls.to_string()));
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                return Some(PermanentFailure::Tls(tls.to_string()));
            }
        }
        if let Some(redis) = current.downcast_ref::<redis::RedisError>() {
            if let Some(found) = redis_permanent(redis) {
                return Some(found);
            }
        }
        cause = current.source();
    }
    None
}

fn redis_permanent(error: &redis::RedisError) -> Option<PermanentFailure> {
    let auth = error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"));
    if auth {
        // The server's words ("WRONGPASS invalid username-password pair ..."); they never
        // carry the password.
        return Some(PermanentFailure::Auth(error.to_string()));
    }
    let text = error.to_string();
    // redis-rs keeps the rustls error as text in some paths (an io::Error built from a string).
    let tls_words = [
        "invalid peer certificate",
        "UnknownIssuer",
        "NotValidForName",
        "certificate",
    ];
    if error.is_io_error() && tls_words.iter().any(|w| text.contains(w)) {
        return Some(PermanentFailure::Tls(text));
    }
    None
}

/// Run on a new primary before any other command reaches it, after a failover (the sentinels
/// named another server than before): see [`SentinelRoute`].
pub(crate) type FailoverHook = Arc<
    dyn Fn(
            ConnectionManager,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = redis::RedisResult<()>> + Send>>
        + Send
        + Sync,
>;

/// Builds the connection the store uses. Nothing is connected yet: a plain or TLS Redis is
/// reached on first use (and again after a loss, with backoff); with Sentinel the sentinels
/// are asked on first use.
pub(crate) fn connect(
    config: &RedisStoreConfig,
    on_failover: FailoverHook,
) -> Result<RedisConn, ConnectError> {
    let manager_config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(config.response_timeout))
        .set_connection_timeout(Some(config.connect_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    let certificates = certificates(config)?;
    if config.sentinels.is_empty() {
        let client = client(config, certificates)?;
        let manager = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(ConnectError::Url)?;
        return Ok(RedisConn::Direct(manager));
    }
    crate::tls::install_crypto_provider();
    let primary = connection_info(config)?;
    Ok(RedisConn::Sentinel(Arc::new(SentinelRoute {
        asking: tokio::sync::Mutex::new(()),
        current: Mutex::new(None),
        generation: AtomicU64::new(0),
        last_address: Mutex::new(None),
        on_failover,
        manager_config,
        sentinels: config.sentinels.clone(),
        master_name: config.master_name.clone(),
        tls: matches!(primary.addr(), redis::ConnectionAddr::TcpTls { .. }),
        settings: primary.redis_settings().clone(),
        certificates,
        connect_timeout: config.connect_timeout,
    })))
}

/// The CA file's certificates, checked now so that a bad file stops the start.
fn certificates(config: &RedisStoreConfig) -> Result<Option<TlsCertificates>, ConnectError> {
    let Some(path) = &config.ca_file else {
        return Ok(None);
    };
    let pem = std::fs::read(path).map_err(|source| ConnectError::CaFile {
        path: path.clone(),
        source,
    })?;
    use rustls::pki_types::pem::PemObject;
    let parsed: Result<Vec<_>, _> =
        rustls::pki_types::CertificateDer::pem_slice_iter(&pem).collect();
    match parsed {
        Ok(certs) if !certs.is_empty() => {}
        Ok(_) => {
            return Err(ConnectError::CaPem {
                path: path.clone(),
                reason: "no BEGIN CERTIFICATE block".into(),
            })
        }
        Err(error) => {
            return Err(ConnectError::CaPem {
                path: path.clone(),
                reason: error.to_string(),
            })
        }
    }
    Ok(Some(TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

/// `redis.url` with `redis.username` and `redis.password` applied.
fn connection_info(config: &RedisStoreConfig) -> Result<redis::ConnectionInfo, ConnectError> {
    let info = config
        .url
        .as_str()
        .into_connection_info()
        .map_err(ConnectError::Url)?;
    let mut settings = info.redis_settings().clone();
    if let Some(username) = &config.username {
        settings = settings.set_username(username);
    }
    if !config.password.is_empty() {
        settings = settings.set_password(config.password.expose());
    }
    Ok(info.set_redis_settings(settings))
}

fn client(
    config: &RedisStoreConfig,
    certificates: Option<TlsCertificates>,
) -> Result<redis::Client, ConnectError> {
    // rustls needs a process-wide crypto provider; the binary carries ring (src/tls.rs).
    crate::tls::install_crypto_provider();
    let info = connection_info(config)?;
    match certificates {
        Some(certificates) => redis::Client::build_with_tls(info, certificates),
        None => redis::Client::open(info),
    }
    .map_err(ConnectError::Url)
}

/// A connection to Redis, cheap to clone (clones share it): every command of the store goes
/// through one.
#[derive(Clone)]
pub enum RedisConn {
    /// One server, reconnected to by the manager itself.
    Direct(ConnectionManager),
    /// The primary the sentinels name, asked again after a failure that may mean a failover.
    Sentinel(Arc<SentinelRoute>),
}

/// The primary the sentinels named last, and how to ask them again.
///
/// After a failover the new primary holds what the old one had replicated to it, which can be
/// less than the old one acknowledged (replication is asynchronous; even a commit WAITed for
/// may have reached another replica than the one promoted). A lost commit leaves its block
/// leased to a slot whose worker has moved on, and that worker's heartbeat would keep the lease
/// alive. So before the first command reaches a primary other than the last one, the
/// `on_failover` hook hands every lease back to its queue (the store's `reap` of all leases):
/// a lost commit's block is done again; a block a worker still holds may be fetched twice but
/// is committed once (the done bit).
pub struct SentinelRoute {
    /// Held by the one task asking the sentinels; the others wait for its answer.
    asking: tokio::sync::Mutex<()>,
    /// The manager for the primary in use, with its generation; `None` = ask the sentinels.
    current: Mutex<Option<(u64, ConnectionManager)>>,
    generation: AtomicU64,
    /// The primary connected to last (`host:port`).
    last_address: Mutex<Option<String>>,
    on_failover: FailoverHook,
    manager_config: ConnectionManagerConfig,
    sentinels: Vec<(String, u16)>,
    master_name: String,
    /// TLS to the sentinels and to the primary (`rediss://` in `redis.url`).
    tls: bool,
    /// The primary's user, password and database (the sentinels get none).
    settings: redis::RedisConnectionInfo,
    certificates: Option<TlsCertificates>,
    connect_timeout: Duration,
}

impl SentinelRoute {
    fn current(&self) -> Option<(u64, ConnectionManager)> {
        self.current.lock().ok().and_then(|current| current.clone())
    }

    /// The primary's connection: the one in use, or a new one to the primary the sentinels
    /// name now (one task asks; the others wait for its answer).
    async fn primary(&self) -> redis::RedisResult<(u64, ConnectionManager)> {
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let _asking = self.asking.lock().await;
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let (client, address) = self.ask_sentinels().await?;
        let manager =
            ConnectionManager::new_with_config(client, self.manager_config.clone()).await?;
        let previous = self.last_address.lock().ok().and_then(|last| last.clone());
        if previous
            .as_ref()
            .is_some_and(|previous| *previous != address)
        {
            tracing::warn!(
                master = %self.master_name,
                from = previous.as_deref().unwrap_or_default(),
                to = %address,
                "Redis failover: the new primary may lack the last writes; every lease goes back \
                 to its queue"
            );
            (self.on_failover)(manager.clone()).await?;
        }
        if let Ok(mut last) = self.last_address.lock() {
            *last = Some(address.clone());
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut current) = self.current.lock() {
            *current = Some((generation, manager.clone()));
        }
        tracing::info!(
            master = %self.master_name,
            %address,
            "Connected to the Redis primary the sentinels name"
        );
        Ok((generation, manager))
    }

    /// Asks the sentinels in turn where the primary is (`SENTINEL get-master-addr-by-name`),
    /// and returns a client for the first answer whose server says it is a primary (`ROLE`):
    /// a sentinel that has not yet seen a failover may still name the old one.
    async fn ask_sentinels(&self) -> redis::RedisResult<(redis::Client, String)> {
        let mut last_error = None;
        for (host, port) in &self.sentinels {
            match self.ask_sentinel(host, *port).await {
                Ok(found) => return Ok(found),
                Err(error) => {
                    tracing::debug!(sentinel = %format!("{host}:{port}"), %error, "Sentinel gave no primary");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no sentinels"))
        }))
    }

    async fn ask_sentinel(
        &self,
        host: &str,
        port: u16,
    ) -> redis::RedisResult<(redis::Client, String)> {
        let sentinel = self.client(host, port, redis::RedisConnectionInfo::default())?;
        let mut conn = self.open(&sentinel).await?;
        let cmd = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master_name)
            .to_owned();
        let found: Option<(String, u16)> = cmd.query_async(&mut conn).await?;
        let Some((primary_host, primary_port)) = found else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "the sentinel does not know the master name (redis.master_name)",
                self.master_name.clone(),
            )));
        };
        let primary = self.client(&primary_host, primary_port, self.settings.clone())?;
        let mut conn = self.open(&primary).await?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
        match role.first() {
            Some(redis::Value::BulkString(role)) if role.as_slice() == b"master" => {
                Ok((primary, format!("{primary_host}:{primary_port}")))
            }
            _ => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "the server the sentinel names is not a primary (yet)",
                format!("{primary_host}:{primary_port}"),
            ))),
        }
    }

    /// A client for `host:port` with TLS as configured and `settings` (user, password, db).
    fn client(
        &self,
        host: &str,
        port: u16,
        settings: redis::RedisConnectionInfo,
    ) -> redis::RedisResult<redis::Client> {
        let addr = if self.tls {
            redis::ConnectionAddr::TcpTls {
                host: host.to_string(),
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            redis::ConnectionAddr::Tcp(host.to_string(), port)
        };
        let info = addr.into_connection_info()?.set_redis_settings(settings);
        match &self.certificates {
            Some(certificates) if self.tls => {
                redis::Client::build_with_tls(info, certificates.clone())
            }
            _ => redis::Client::open(info),
        }
    }

    async fn open(
        &self,
        client: &redis::Client,
    ) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.connect_timeout));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// After a command on the connection of `generation` failed with `error`: forget the
    /// connection when the primary may have changed, so that the next command asks the
    /// sentinels.
    fn after_failure(&self, generation: u64, error: &dyn std::fmt::Display) {
        if let Ok(mut current) = self.current.lock() {
            if current.as_ref().map(|(g, _)| *g) == Some(generation) {
                tracing::warn!(
                    master = %self.master_name,
                    %error,
                    "Redis primary lost or demoted: asking the sentinels again"
                );
                *current = None;
            }
        }
    }

    /// Looks at a command's result for a sign of a failover.
    fn check<T>(
        &self,
        generation: u64,
        result: &redis::RedisResult<T>,
        values: impl Fn(&T) -> bool,
    ) {
        match result {
            Err(error) if may_have_failed_over(error) => self.after_failure(generation, error),
            Ok(value) if values(value) => {
                self.after_failure(generation, &"a write was refused as READONLY")
            }
            _ => {}
        }
    }
}

/// A server's answer that says it is a replica now (a demoted primary).
fn is_readonly(value: &Value) -> bool {
    matches!(value, Value::ServerError(error)
        if error.code() == "READONLY" || error.details().is_some_and(|d| d.contains("READONLY")))
}

/// The connection dropped or was refused, timed out, or a write was refused because the server
/// is now a replica.
fn may_have_failed_over(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        || error.code() == Some("READONLY")
        || error.to_string().contains("READONLY")
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Direct(manager) => manager.req_packed_command(cmd),
            RedisConn::Sentinel(route) => Box::pin(async move {
                let (generation, mut manager) = route.primary().await?;
                let result = manager.req_packed_command(cmd).await;
                route.check(generation, &result, is_readonly);
                result
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Direct(manager) => manager.req_packed_commands(pipeline, offset, count),
            RedisConn::Sentinel(route) => Box::pin(async move {
                let (generation, mut manager) = route.primary().await?;
                let result = manager.req_packed_commands(pipeline, offset, count).await;
                route.check(generation, &result, |values: &Vec<Value>| {
                    values.iter().any(is_readonly)
                });
                result
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Direct(manager) => manager.get_db(),
            RedisConn::Sentinel(route) => route.current().map_or(0, |(_, m)| m.get_db()),
        }
    }
}
