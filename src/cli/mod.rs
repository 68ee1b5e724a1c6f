//! One module per subcommand, each owning its arguments and its handler. A handler returns
//! `Result<(), CliError>`; the error says what to print and carries the exit code (README
//! "Commands"): 0 fine, 1 failed while running or a check failed, 2 refused to start.
pub(crate) mod bench;
pub(crate) mod chaos;
pub(crate) mod demo;
pub(crate) mod dlq;
pub(crate) mod health;
pub(crate) mod run;
pub(crate) mod sim;
pub(crate) mod status;
pub(crate) mod tail;
pub(crate) mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tron_actors::config::Config;
use tron_actors::store::RedisStore;
use tron_actors::tron::TronClient;

/// Failed while running, or a check failed.
pub(crate) const EXIT_RUNTIME: u8 = 1;
/// Refused to start: bad configuration or arguments.
pub(crate) const EXIT_CONFIG: u8 = 2;

/// Why a command ends with a non-zero exit code; its `Display` is the line printed to stderr.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Bad configuration or arguments: refused to start (exit 2).
    #[error("error: {0}")]
    Refused(String),
    /// Failed while running (exit 1).
    #[error("error: {0}")]
    Failed(String),
    /// `health`: the daemon's endpoint did not answer 200 (exit 1).
    #[error("unhealthy: {0}")]
    Unhealthy(String),
    /// `run --dry-run`: a check failed (exit 1).
    #[error("not ready: {0}")]
    NotReady(String),
    /// Exit 1 and print nothing more: the output or the log already says what went wrong.
    #[error("")]
    Reported,
}

impl CliError {
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Refused(_) => EXIT_CONFIG,
            CliError::Failed(_)
            | CliError::Unhealthy(_)
            | CliError::NotReady(_)
            | CliError::Reported => EXIT_RUNTIME,
        }
    }

    /// Prints the error (unless already reported) and gives the process's exit code.
    pub(crate) fn report(self) -> ExitCode {
        if !matches!(self, CliError::Reported) {
            eprintln!("{self}");
        }
        ExitCode::from(self.exit_code())
    }
}

pub(crate) fn load_config(file: Option<PathBuf>) -> Result<Config, CliError> {
    Config::load(file.as_deref()).map_err(|error| CliError::Refused(error.to_string()))
}

/// Logs, and traces when an OTLP endpoint is configured.
pub(crate) fn init_telemetry(
    config: &Config,
) -> Result<tron_actors::telemetry::Telemetry, CliError> {
    tron_actors::telemetry::init(
        config.log.format,
        &config.log.level,
        &config.otel_settings(),
    )
    .map_err(|error| CliError::Refused(error.to_string()))
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

pub(crate) fn open_store(config: &Config) -> Result<RedisStore, CliError> {
    RedisStore::new(&config.store_config()).map_err(|error| CliError::Refused(error.to_string()))
}

/// Connects to Redis once: a failure that no retry mends (a certificate not trusted,
/// credentials refused) is refused as a configuration error (exit 2) naming the keys to check;
/// a Redis that is down or slow is returned as `Err` text for the caller to report or wait out.
pub(crate) async fn check_redis(
    config: &Config,
    store: &RedisStore,
) -> Result<Result<(), String>, CliError> {
    match store.check_connection(CHECK_TIMEOUT).await {
        Ok(reached) => Ok(reached.map_err(|error| error.to_string())),
        Err(failure) => Err(CliError::Refused(format!(
            "redis at {}: {failure}",
            tron_actors::config::redact_url(&config.redis.url)
        ))),
    }
}

/// How `[redis]` is reached, for `run --dry-run` and the start log: TLS, the user, whether a
/// password is set (never the password), Sentinel, WAIT.
pub(crate) fn redis_access_shown(config: &Config) -> String {
    let redis = &config.redis;
    let url = reqwest::Url::parse(&redis.url).ok();
    let tls = if redis.url.starts_with("rediss://") {
        match &redis.ca_file {
            Some(path) => format!("TLS, CA {}", path.display()),
            None => "TLS, system CAs".to_string(),
        }
    } else {
        "no TLS".to_string()
    };
    let url_user = url
        .as_ref()
        .map(|u| u.username().to_string())
        .unwrap_or_default();
    let user = if !redis.username.is_empty() {
        redis.username.clone()
    } else if !url_user.is_empty() {
        url_user
    } else {
        "default".to_string()
    };
    let password = if !redis.password.is_empty() {
        if redis.password_file.is_some() {
            "password from redis.password_file"
        } else {
            "password set"
        }
    } else if url.as_ref().is_some_and(|u| u.password().is_some()) {
        "password in the URL"
    } else {
        "no password"
    };
    let mut out = format!("{tls}, user {user}, {password}");
    if !redis.sentinels.is_empty() {
        out.push_str(&format!(
            ", primary {:?} from sentinels {}",
            redis.master_name,
            redis.sentinels.join(" ")
        ));
    }
    if redis.wait_replicas > 0 {
        out.push_str(&format!(
            ", each commit waits for {} replica(s), at most {} ms",
            redis.wait_replicas, redis.wait_timeout_ms
        ));
    }
    out
}

/// This program's own path: the harnesses run it again as the daemon under test.
pub(crate) fn own_exe() -> Result<PathBuf, CliError> {
    std::env::current_exe().map_err(|error| {
        CliError::Failed(format!(
            "cannot find this program's own path to run the daemon with: {error}"
        ))
    })
}

pub(crate) fn node_client(config: &Config) -> Result<TronClient, CliError> {
    TronClient::new(config.client_config())
        .map_err(|error| CliError::Refused(format!("node: {error}")))
}

/// A check gives up after this long, retries included, so a command never hangs on a dead host.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// The node's head header, or why there is none.
/// With several nodes, every node is checked first, so that the head comes from the node the
/// daemon would use.
pub(crate) async fn node_head(client: &TronClient) -> Result<actors::model::BlockHeader, String> {
    use actors::chain::Chain;
    let head = async {
        if client.nodes().len() > 1 {
            client.check_nodes().await;
        }
        client.head().await
    };
    match tokio::time::timeout(CHECK_TIMEOUT, head).await {
        Ok(Ok(header)) => Ok(header),
        Ok(Err(error)) => Err(match &error {
            actors::chain::ChainError::Http { status: 401 } => {
                format!("{error} (the node refused the API key: check node.api_key)")
            }
            _ => format!("{error} (check node.urls, and that the node runs)"),
        }),
        Err(_) => Err(format!(
            "no answer within {}s (check node.urls)",
            CHECK_TIMEOUT.as_secs()
        )),
    }
}

/// "set (redacted)" or "not set": all any output ever says about the API key.
pub(crate) fn api_key_shown(config: &Config) -> &'static str {
    if config.node.api_key.is_empty() {
        "not set"
    } else {
        "<redacted>"
    }
}
