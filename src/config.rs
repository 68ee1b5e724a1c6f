//! Configuration, from one figment: `config/default.toml` (compiled in), then the file given
//! with `--config`, then environment variables `TRON_ACTORS_<SECTION>__<KEY>` (later wins).
//! Unknown keys are errors (a typo must not be ignored), and every problem is reported at once,
//! each naming its key and the fix.
//!
//! `config/default.toml` is the one source of defaults: the structs here have none of their own
//! (every key must come from it), [`Config::default`] is that file parsed, and the node client's,
//! the store's and the actor tree's settings are built from a `Config` only.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The defaults, compiled in so the binary runs from any directory.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");
pub(crate) const ENV_PREFIX: &str = "TRON_ACTORS_";
/// The keys that hold a secret: each one's environment variable is taken as the exact string it
/// is (figment would read `1234` as a number), and no error quotes its value.
const SECRET_PATHS: [&str; 2] = ["node.api_key", "redis.password"];

/// `url` with its password (if any) replaced by `***`, for output: a Redis URL may carry one
/// (`rediss://user:***@host:6380`). A URL that cannot be parsed is not shown at all when it
/// might hold a password (an `@` in it).
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            if parsed.set_password(Some("***")).is_ok() {
                parsed.to_string()
            } else {
                "<url with a password>".to_string()
            }
        }
        Ok(_) => url.to_string(),
        Err(_) if url.contains('@') => "<url with a password>".to_string(),
        Err(_) => url.to_string(),
    }
}

/// A secret string: never shown by Debug or Display, nor by a deserialization error.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

/// Accepts only a string, and says so without the value: serde's own type errors quote it
/// (`found unsigned int `1234``), which would put the secret in an error message.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        struct Visitor;
        fn refuse<E: Error>() -> E {
            E::custom("must be a string (quote it in TOML); the value is not shown")
        }
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Secret;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_string<E: Error>(self, v: String) -> Result<Secret, E> {
                Ok(Secret(v))
            }
            fn visit_bool<E: Error>(self, _: bool) -> Result<Secret, E> {
                Err(refuse())
            }
            fn visit_i64<E: Error>(self, _: i64) -> Result<Secret, E> {
                Err(refuse())
            }
            fn visit_i128<E: Error>(self, _: i128) -> Result<Secret, E> {
                Err(refuse())
            }
            fn visit_u64<E: Error>(self, _: u64) -> Result<Secret, E> {
                Err(refuse())
            }
            fn visit_u128<E: Error>(self, _: u128) -> Result<Secret, E> {
                Err(refuse())
            }
            fn visit_f64<E: Error>(self, _: f64) -> Result<Secret, E> {
                Err(refuse())
            }
            fn visit_bytes<E: Error>(self, _: &[u8]) -> Result<Secret, E> {
                Err(refuse())
            }
            fn visit_none<E: Error>(self) -> Result<Secret, E> {
                Ok(Secret::default())
            }
            fn visit_unit<E: Error>(self) -> Result<Secret, E> {
                Ok(Secret::default())
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
                Err(refuse())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
                Err(refuse())
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Secret {
    pub(crate) fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
    /// Whether no secret was given (an empty string counts as none).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"<redacted>\"")
        }
    }
}

/// `log.format`: how log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON lines otherwise.
    Auto,
    /// Human-readable, even when not on a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_string(deserializer, "auto, json or text", |text| match text {
            "auto" => Some(LogFormat::Auto),
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        })
    }
}

/// `sync.follow`: which blocks are published (the tree's [`actors::settings::Follow`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowMode(pub actors::settings::Follow);

impl<'de> Deserialize<'de> for FollowMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use actors::settings::Follow;
        parse_string(deserializer, "head or finalized", |text| match text {
            "head" => Some(FollowMode(Follow::Head)),
            "finalized" => Some(FollowMode(Follow::Finalized)),
            _ => None,
        })
    }
}

/// `log.level`: a level (`info`), or a tracing filter that starts from one and adds targets
/// (`info,actors=debug`); `RUST_LOG` overrides it. Checked at load: a bare word must be a
/// level, so a misspelt one (`inof`) is refused instead of silencing every log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLevel(String);

impl LogLevel {
    fn parse(text: &str) -> Option<LogLevel> {
        use tracing_subscriber::filter::{Directive, LevelFilter};
        let mut directives = text.split(',').map(str::trim).filter(|d| !d.is_empty());
        let valid = directives.clone().next().is_some()
            && directives.all(|directive| {
                let targets_something = directive.contains(['=', '[']);
                directive.parse::<Directive>().is_ok()
                    && (targets_something || directive.parse::<LevelFilter>().is_ok())
            });
        valid.then(|| LogLevel(text.to_string()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<tracing::Level> for LogLevel {
    fn from(level: tracing::Level) -> Self {
        LogLevel(level.as_str().to_ascii_lowercase())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_string(
            deserializer,
            "a level (off, error, warn, info, debug or trace), optionally followed by \
             target=level filters such as info,actors=debug",
            LogLevel::parse,
        )
    }
}

/// `otel.protocol`: how traces are sent to the OTLP endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `grpc`, usually port 4317.
    Grpc,
    /// `http/protobuf`, usually port 4318.
    HttpProtobuf,
}

impl OtlpProtocol {
    /// The protocol by its OTLP name, as in `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn from_name(name: &str) -> Option<OtlpProtocol> {
        match name {
            "grpc" => Some(OtlpProtocol::Grpc),
            "http/protobuf" => Some(OtlpProtocol::HttpProtobuf),
            _ => None,
        }
    }
}

/// `otel.protocol`; empty = `None` (OTEL_EXPORTER_OTLP_PROTOCOL decides).
fn otlp_protocol<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<OtlpProtocol>, D::Error> {
    parse_string(
        deserializer,
        "grpc or http/protobuf (or empty for OTEL_EXPORTER_OTLP_PROTOCOL)",
        |text| match text {
            "" => Some(None),
            name => OtlpProtocol::from_name(name).map(Some),
        },
    )
}

/// `metrics.listen`; empty = `None` (no server).
fn listen_address<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    parse_string(
        deserializer,
        "an address like 0.0.0.0:9464, or empty for no server",
        |text| match text {
            "" => Some(None),
            address => address.parse().ok().map(Some),
        },
    )
}

/// A value written as a string, read by `parse`; one it refuses is an error naming the key's
/// allowed values (`expected`), worded by [`describe_figment_error`] as `key = "value": must be
/// <expected>`.
fn parse_string<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    expected: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).ok_or_else(|| {
        serde::de::Error::invalid_value(serde::de::Unexpected::Str(&text), &expected)
    })
}

/// A list of strings, or one string whose items are separated by commas.
fn string_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let items = match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(text) => text.split(',').map(str::to_string).collect(),
        OneOrMany::Many(items) => items,
    };
    Ok(items
        .into_iter()
        .map(|item| item.trim().to_string())
        .filter(|item| !item.is_empty())
        .collect())
}

/// Every key of `config/default.toml`; no field has a default of its own, that file is the one
/// source (see the module docs).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[instance]`: this daemon's id among those sharing one Redis.
    pub instance: InstanceConfig,
    /// `[node]`: the java-tron HTTP API to follow.
    pub node: NodeConfig,
    /// `[redis]`: where queues, leases and the stream live.
    pub redis: RedisConfig,
    /// `[stream]`: the event stream's key and retention.
    pub stream: StreamConfig,
    /// `[sync]`: workers, gaps, leases and head polling.
    pub sync: SyncConfig,
    /// `[retry]`: the schedule of a failed block's retries.
    pub retry: RetryConfig,
    /// `[supervisor]`: restart intensity.
    pub supervisor: SupervisorConfig,
    /// `[shutdown]`: the grace for in-flight work.
    pub shutdown: ShutdownConfig,
    /// `[log]`: format, level, progress lines.
    pub log: LogConfig,
    /// `[metrics]`: the ops HTTP server.
    pub metrics: MetricsConfig,
    /// `[otel]`: trace export.
    pub otel: OtelConfig,
    /// `[faults]`: fault injection, for tests and the chaos harness.
    pub faults: FaultsConfig,
    /// `[filter]`: which events are published.
    pub filter: FilterConfig,
}

/// `[filter]`: which events are published (see `actors::filter` for the rule). Each list is a
/// TOML list or one string of items separated by commas (handy in an environment variable).
// Each key is documented, with its default, in config/default.toml (the one source of
// defaults); a second copy here would drift.
#[allow(missing_docs)]
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    #[serde(deserialize_with = "string_list")]
    pub kinds: Vec<String>,
    #[serde(deserialize_with = "string_list")]
    pub contracts: Vec<String>,
    #[serde(deserialize_with = "string_list")]
    pub addresses: Vec<String>,
}

/// The names of `[filter]`'s keys, for the messages naming a bad value.
const FILTER_KEYS: actors::filter::ListNames = actors::filter::ListNames {
    kinds: "filter.kinds",
    contracts: "filter.contracts",
    addresses: "filter.addresses",
};

/// `[instance]`: this daemon's id.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// 1 to 64 of `A-Z a-z 0-9 . _ -`; empty = the host name.
    pub id: String,
}

/// Trace export. Empty values fall back to the standard OTEL_EXPORTER_OTLP_* variables.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtelConfig {
    /// OTLP endpoint, e.g. http://127.0.0.1:4317 (gRPC) or http://127.0.0.1:4318 (HTTP).
    pub endpoint: String,
    /// `grpc` or `http/protobuf`; empty (`None`, the default) = OTEL_EXPORTER_OTLP_PROTOCOL, else gRPC.
    #[serde(deserialize_with = "otlp_protocol")]
    pub protocol: Option<OtlpProtocol>,
}

/// `[metrics]`: the server for /metrics, /healthz and /readyz.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the HTTP server for /metrics, /healthz and /readyz (default 127.0.0.1:9464,
    /// this machine only; the container files set 0.0.0.0:9464);
    /// empty (`None`) = no server.
    #[serde(deserialize_with = "listen_address")]
    pub listen: Option<SocketAddr>,
}

/// Faults for tests and the chaos harness. Never set these in production.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsConfig {
    /// A queue worker panics after about one claimed batch in this many; 0 = never.
    pub panic_one_in: u64,
    /// Seeds the draw, so a chaos run panics at the same places again.
    pub seed: u64,
    /// The process aborts at this point of its first retraction (tests of crash recovery).
    pub abort_in_retraction: AbortInRetraction,
}

/// `faults.abort_in_retraction`: `off`, `before_revert` or `after_revert`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortInRetraction(pub Option<actors::hooks::RetractionPoint>);

impl<'de> Deserialize<'de> for AbortInRetraction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use actors::hooks::RetractionPoint;
        parse_string(
            deserializer,
            "off, before_revert or after_revert",
            |text| match text {
                "off" => Some(AbortInRetraction(None)),
                "before_revert" => Some(AbortInRetraction(Some(RetractionPoint::BeforeRevert))),
                "after_revert" => Some(AbortInRetraction(Some(RetractionPoint::AfterRevert))),
                _ => None,
            },
        )
    }
}

/// `[node]`: the node's URL, credentials, timeouts, rate limit and retries.
// Each key is documented, with its default, in config/default.toml (the one source of
// defaults); a second copy here would drift.
#[allow(missing_docs)]
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// One node: the same as `urls = [url]`. Folded into `urls` at load (then `None`); setting
    /// both is an error.
    pub url: Option<String>,
    /// The nodes in order of preference; a list, or one string of URLs separated by commas
    /// (handy in an environment variable).
    #[serde(deserialize_with = "string_list")]
    pub urls: Vec<String>,
    #[serde(default)]
    pub api_key: Secret,
    pub api_key_file: Option<PathBuf>,
    #[serde(deserialize_with = "string_list")]
    pub api_key_hosts: Vec<String>,
    pub max_lag_blocks: u64,
    pub check_ms: u64,
    pub timeout_ms: u64,
    pub rate_limit_rps: f64,
    pub penalty_ms: u64,
    pub max_attempts: u32,
}

impl NodeConfig {
    /// The nodes as output shows them (no credentials), separated by `, `.
    pub fn shown_urls(&self) -> String {
        self.urls
            .iter()
            .map(|url| crate::tron::shown_url(url))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `[redis]`: the server, its credentials and TLS, Sentinel, and the key prefix.
// Each key is documented, with its default, in config/default.toml (the one source of
// defaults); a second copy here would drift.
#[allow(missing_docs)]
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    pub url: String,
    pub prefix: String,
    pub memory_pause_ratio: f64,
    pub memory_check_ms: u64,
    pub username: String,
    #[serde(default)]
    pub password: Secret,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub sentinels: Vec<String>,
    pub master_name: String,
    pub wait_replicas: u32,
    pub wait_timeout_ms: u64,
}

/// The URL is shown redacted: it may carry a password.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("sentinels", &self.sentinels)
            .field("master_name", &self.master_name)
            .field("wait_replicas", &self.wait_replicas)
            .field("wait_timeout_ms", &self.wait_timeout_ms)
            .finish()
    }
}

/// `[stream]`: the event stream.
// Each key is documented, with its default, in config/default.toml (the one source of
// defaults); a second copy here would drift.
#[allow(missing_docs)]
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    pub retention_hours: u64,
    /// The event stream's key; empty = `<redis.prefix>:events`. It must carry the prefix's hash
    /// tag (`{tron}`), because the commit script writes it together with the done marks.
    pub key: String,
}

/// `[sync]`: how work is split, leased and paced.
// Each key is documented, with its default, in config/default.toml (the one source of
// defaults); a second copy here would drift.
#[allow(missing_docs)]
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    pub follow: FollowMode,
    pub start_block: Option<u64>,
    pub backlog_workers: usize,
    pub priority_max_gap: u64,
    pub backlog_max: u64,
    pub lease_ms: u64,
    pub backlog_batch: usize,
    pub priority_batch: usize,
    pub idle_ms: u64,
    pub block_interval_ms: u64,
    pub poll_min_ms: u64,
    pub poll_max_ms: u64,
    pub maintain_ms: u64,
}

/// `[retry]`: the retry schedule of a failed block.
// Each key is documented, with its default, in config/default.toml (the one source of
// defaults); a second copy here would drift.
#[allow(missing_docs)]
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    pub delay_scale: f64,
}

/// `[supervisor]`: how many restarts the tree takes before the process gives up.
// Each key is documented, with its default, in config/default.toml (the one source of
// defaults); a second copy here would drift.
#[allow(missing_docs)]
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorConfig {
    pub restart_max: u32,
    pub restart_window_ms: u64,
}

/// `[shutdown]`: how long in-flight blocks may take to finish on SIGTERM.
// Each key is documented, with its default, in config/default.toml (the one source of
// defaults); a second copy here would drift.
#[allow(missing_docs)]
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    pub grace_ms: u64,
}

/// `[log]`: how and how much the daemon logs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Default `auto`.
    pub format: LogFormat,
    /// Default `info`.
    pub level: LogLevel,
    /// While catching up and not on a terminal: a progress line this often (ms); 0 = never.
    pub progress_ms: u64,
}

/// Why a config cannot be used; the CLI exits with code 2 on any of them.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` names a file that is not there.
    #[error("config file {0} does not exist (check --config)")]
    MissingFile(PathBuf),
    /// A file or value that cannot be read at all.
    #[error("invalid config: {0}")]
    Parse(String),
    /// Every problem found, one line each, naming the key and the fix.
    #[error("invalid config:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<String>),
    /// `node.api_key_file` cannot be read.
    #[error("cannot read node.api_key_file {path}: {source} (check the path and its permissions)")]
    ApiKeyFile {
        /// The file as configured.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// `redis.password_file` cannot be read.
    #[error(
        "cannot read redis.password_file {path}: {source} (check the path and its permissions)"
    )]
    PasswordFile {
        /// The file as configured.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
}

impl Config {
    /// The figment every config comes from. Precedence, later wins:
    ///
    /// 1. `config/default.toml`, compiled in: every key with its default;
    /// 2. `file` (`--config`), when given;
    /// 3. environment variables `TRON_ACTORS_<SECTION>__<KEY>`, e.g. `TRON_ACTORS_SYNC__LEASE_MS`;
    ///    `TRON_ACTORS_NODE__API_KEY` is taken as the exact string it is, never as a number.
    ///
    /// `node.api_key_file` is read after extraction, only when no `node.api_key` is set.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        // figment reads `1234` or `true` in a variable as a number or a boolean: an API key or a
        // password must reach us as the exact string it is, so their variables are taken raw.
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__").ignore(&SECRET_PATHS));
        for path in SECRET_PATHS {
            let var = format!(
                "{ENV_PREFIX}{}",
                path.replace('.', "__").to_ascii_uppercase()
            );
            if let Some((_, value)) =
                std::env::vars().find(|(name, _)| name.eq_ignore_ascii_case(&var))
            {
                figment = figment.merge(figment::providers::Serialized::default(path, value));
            }
        }
        figment
    }

    /// Loads and validates; every problem is reported at once.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::MissingFile(file.to_path_buf()));
            }
        }
        Self::from_figment(Self::figment(file))
    }

    /// Extracts and validates `figment`; every problem is reported at once.
    pub fn from_figment(mut figment: Figment) -> Result<Config, ConfigError> {
        // serde stops at the first value it refuses. To name every problem at once, each refused
        // value is noted and replaced by its default, and the extraction tried again; an
        // unknown key (or a key without a default) cannot be replaced, and ends the search.
        let defaults = Figment::from(Toml::string(DEFAULT_TOML));
        let mut problems = Vec::new();
        let mut replaced = Vec::new();
        let mut config: Config = loop {
            let errors = match figment.extract::<Config>() {
                Ok(config) => break config,
                Err(errors) => errors,
            };
            let mut retry = false;
            for error in errors {
                let key = error.path.join(".");
                let default = match error.kind {
                    figment::error::Kind::UnknownField(..) => None,
                    _ if replaced.contains(&key) => None,
                    _ => defaults.find_value(&key).ok(),
                };
                problems.push(describe_figment_error(error));
                if let Some(default) = default {
                    figment = figment.merge(Serialized::default(&key, default));
                    replaced.push(key);
                    retry = true;
                }
            }
            if !retry {
                return Err(ConfigError::Invalid(problems));
            }
        };
        if let Some(url) = config.node.url.take() {
            if set_by_user(&figment, "node.urls") {
                problems.push(
                    "node.url and node.urls are both set: keep one (node.urls = [\"http://a:8090\", \"http://b:8090\"] \
                     for several nodes, or node.url for one)"
                        .to_string(),
                );
            } else {
                config.node.urls = vec![url];
            }
        }
        if let Err(ConfigError::Invalid(more)) = config.validate() {
            problems.extend(more);
        }
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        if let Some(path) = config.node.api_key_file.clone() {
            if config.node.api_key.is_empty() {
                let key =
                    std::fs::read_to_string(&path).map_err(|source| ConfigError::ApiKeyFile {
                        path: path.clone(),
                        source,
                    })?;
                config.node.api_key = Secret::new(key.trim());
            }
        }
        if let Some(path) = config.redis.password_file.clone() {
            let password =
                std::fs::read_to_string(&path).map_err(|source| ConfigError::PasswordFile {
                    path: path.clone(),
                    source,
                })?;
            // A file written by `echo` or an editor ends with a newline that is not part of it.
            config.redis.password = Secret::new(password.trim_end_matches(['\n', '\r']));
        }
        Ok(config)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, problem: String| {
            if !ok {
                problems.push(problem);
            }
        };
        check(
            !self.node.urls.is_empty(),
            "node.urls is empty: name at least one node (e.g. [\"https://api.trongrid.io\"])"
                .into(),
        );
        for url in &self.node.urls {
            check(
                url.starts_with("http://") || url.starts_with("https://"),
                format!(
                    "node.urls (or node.url): {:?} must start with http:// or https:// (e.g. https://api.trongrid.io)",
                    crate::tron::shown_url(url)
                ),
            );
        }
        check(
            self.node.check_ms >= 100,
            "node.check_ms must be at least 100 (default 3000)".into(),
        );
        check(
            self.node.timeout_ms >= 100,
            "node.timeout_ms must be at least 100".into(),
        );
        check(
            self.node.rate_limit_rps >= 0.0 && self.node.rate_limit_rps.is_finite(),
            "node.rate_limit_rps must be 0 (no limit) or a positive number".into(),
        );
        check(
            self.node.max_attempts >= 1,
            "node.max_attempts must be at least 1".into(),
        );
        self.validate_redis(&mut check);
        check(
            self.instance.id.is_empty() || actors::slot::Instance::new(&self.instance.id).is_ok(),
            format!(
                "instance.id = {:?}: use 1 to 64 of A-Z a-z 0-9 . _ - (e.g. \"tron-actors-1\"), or leave it empty for the host name",
                self.instance.id
            ),
        );
        check(
            self.redis.memory_pause_ratio == 0.0
                || (0.1..=1.0).contains(&self.redis.memory_pause_ratio),
            format!(
                "redis.memory_pause_ratio = {}: must be 0 (no memory guard) or between 0.1 and 1 (default 0.9)",
                self.redis.memory_pause_ratio
            ),
        );
        check(
            self.redis.memory_check_ms >= 10,
            "redis.memory_check_ms must be at least 10 (default 1000)".into(),
        );
        check(
            !self.redis.prefix.is_empty(),
            "redis.prefix must not be empty (default \"{tron}\")".into(),
        );
        if let Some(tag) = hash_tag(&self.redis.prefix) {
            check(
                self.stream.key.is_empty() || hash_tag(&self.stream.key) == Some(tag),
                format!(
                    "stream.key = {:?}: must carry redis.prefix's hash tag {{{tag}}} (e.g. \"{{{tag}}}:events-nile\"), \
                     because each block's events and its done mark are written in one script; \
                     to keep several networks on one Redis, give each its own redis.prefix",
                    self.stream.key
                ),
            );
        }
        check(
            !self.stream.key.contains(['*', '?', '[', ']']),
            format!(
                "stream.key = {:?}: must not contain * ? [ ]",
                self.stream.key
            ),
        );
        check(
            self.stream.retention_hours >= 1,
            "stream.retention_hours must be at least 1 (default 168 = 7 days)".into(),
        );
        let sync = &self.sync;
        check(
            (1..=64).contains(&sync.backlog_workers),
            "sync.backlog_workers must be between 1 and 64 (default 13)".into(),
        );
        check(
            sync.priority_max_gap >= 1,
            "sync.priority_max_gap must be at least 1 (default 20)".into(),
        );
        check(
            sync.backlog_max >= sync.priority_max_gap,
            "sync.backlog_max must be at least sync.priority_max_gap (default 201600)".into(),
        );
        check(
            sync.lease_ms >= 1000,
            "sync.lease_ms must be at least 1000 (default 60000)".into(),
        );
        check(
            (1..=100).contains(&sync.backlog_batch),
            "sync.backlog_batch must be between 1 and 100 (the node serves at most 100 blocks per range)".into(),
        );
        check(
            sync.priority_batch >= 1,
            "sync.priority_batch must be at least 1".into(),
        );
        check(
            sync.idle_ms >= 10 && sync.poll_min_ms >= 10,
            "sync.idle_ms and sync.poll_min_ms must be at least 10 (poll_min_ms 250 = at most 4 head polls a second)"
                .into(),
        );
        check(
            sync.poll_max_ms >= sync.poll_min_ms,
            "sync.poll_max_ms must be at least sync.poll_min_ms".into(),
        );
        check(
            sync.block_interval_ms >= 100,
            "sync.block_interval_ms must be at least 100 (TRON: 3000)".into(),
        );
        check(
            self.retry.delay_scale > 0.0 && self.retry.delay_scale.is_finite(),
            "retry.delay_scale must be a positive number (1.0 in production)".into(),
        );
        check(
            self.supervisor.restart_max >= 1 && self.supervisor.restart_window_ms >= 1000,
            "supervisor.restart_max must be at least 1 and supervisor.restart_window_ms at least 1000".into(),
        );
        check(
            !self.redis.prefix.contains(['*', '?', '[', ']']),
            format!(
                "redis.prefix = {:?}: must not contain * ? [ ] (default \"{{tron}}\")",
                self.redis.prefix
            ),
        );
        if let Err(errors) = self.try_event_filter() {
            problems.extend(errors.iter().map(ToString::to_string));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    fn try_event_filter(
        &self,
    ) -> Result<actors::filter::EventFilter, Vec<actors::filter::FilterError>> {
        actors::filter::EventFilter::new(
            &self.filter.kinds,
            &self.filter.contracts,
            &self.filter.addresses,
            FILTER_KEYS,
        )
    }

    /// The events the daemon publishes (`[filter]`, checked by `validate`: a loaded config
    /// always has a valid one). Applied by the node client right after decoding, and by
    /// `verify` to what the node serves.
    pub fn event_filter(&self) -> actors::filter::EventFilter {
        self.try_event_filter().unwrap_or_default()
    }

    /// This daemon's instance id: `instance.id`, else the host name (`HOSTNAME`, else
    /// `/etc/hostname`) made valid, else `tron-actors`.
    pub fn instance(&self) -> actors::slot::Instance {
        use actors::slot::Instance;
        if let Ok(id) = Instance::new(&self.instance.id) {
            return id;
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .unwrap_or_default();
        let cleaned: String = host
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect();
        Instance::new(&cleaned)
            .or_else(|_| Instance::new("tron-actors"))
            .unwrap_or(Instance::NONE)
    }

    /// The `[redis]` checks: the URL, the credentials given once, TLS, Sentinel.
    fn validate_redis(&self, check: &mut impl FnMut(bool, String)) {
        let redis = &self.redis;
        let shown = redact_url(&redis.url);
        let tls = redis.url.starts_with("rediss://");
        check(
            ["redis://", "rediss://", "unix://", "redis+unix://"]
                .iter()
                .any(|s| redis.url.starts_with(s)),
            format!(
                "redis.url = {shown:?}: must start with redis:// or rediss:// (TLS), e.g. \
                 redis://127.0.0.1:6379 or rediss://user@redis.example.com:6380"
            ),
        );
        let parsed = reqwest::Url::parse(&redis.url).ok();
        check(
            !parsed
                .as_ref()
                .and_then(|url| url.fragment())
                .is_some_and(|fragment| fragment.contains("insecure")),
            format!(
                "redis.url = {shown:?}: #insecure (TLS without checking the server's certificate) \
                 is not supported; give the CA that signed the server's certificate in redis.ca_file"
            ),
        );
        let url_password = parsed.as_ref().is_some_and(|url| url.password().is_some());
        let url_username = parsed
            .as_ref()
            .is_some_and(|url| !url.username().is_empty());
        check(
            redis.password.is_empty() || redis.password_file.is_none(),
            "redis.password and redis.password_file are both set: give the password once \
             (password_file, or TRON_ACTORS_REDIS__PASSWORD)"
                .into(),
        );
        check(
            !url_password || (redis.password.is_empty() && redis.password_file.is_none()),
            format!(
                "redis.url = {shown:?} carries a password and redis.password or \
                 redis.password_file is set too: give it once (better in redis.password_file)"
            ),
        );
        check(
            !url_username || redis.username.is_empty(),
            format!(
                "redis.url = {shown:?} names a user and redis.username is set too: give it once"
            ),
        );
        check(
            redis.ca_file.is_none() || tls,
            format!(
                "redis.ca_file is set but redis.url = {shown:?} is not a rediss:// URL: use \
                 rediss:// for TLS, or remove redis.ca_file"
            ),
        );
        if !redis.sentinels.is_empty() {
            check(
                !redis.master_name.is_empty(),
                "redis.master_name must be set with redis.sentinels: the name the sentinels \
                 monitor the primary under (`sentinel monitor <name> ...`, often \"mymaster\")"
                    .into(),
            );
            check(
                redis.url.starts_with("redis://") || tls,
                format!(
                    "redis.url = {shown:?}: with redis.sentinels it must be redis:// or rediss://; \
                     its scheme, user, password and database apply to the primary the sentinels \
                     name (its host and port are not used)"
                ),
            );
            for sentinel in &redis.sentinels {
                check(
                    parse_host_port(sentinel).is_some(),
                    format!(
                        "redis.sentinels: {sentinel:?} must be host:port (e.g. \"10.0.0.5:26379\")"
                    ),
                );
            }
        }
        check(
            redis.wait_replicas == 0 || redis.wait_timeout_ms >= 10,
            "redis.wait_timeout_ms must be at least 10 when redis.wait_replicas is set (default 1000)"
                .into(),
        );
    }

    /// The actor tree's settings.
    pub fn settings(&self) -> actors::settings::Settings {
        let sync = &self.sync;
        let lease = Duration::from_millis(sync.lease_ms);
        actors::settings::Settings {
            instance: self.instance(),
            follow: sync.follow.0,
            limits: actors::sync_rule::GapLimits {
                priority_max_gap: sync.priority_max_gap,
                backlog_max: sync.backlog_max,
            },
            start_block: sync.start_block,
            backlog_workers: sync.backlog_workers,
            lease,
            heartbeat: lease / 3,
            backlog_batch: sync.backlog_batch,
            priority_batch: sync.priority_batch,
            idle: Duration::from_millis(sync.idle_ms),
            block_interval: Duration::from_millis(sync.block_interval_ms),
            poll_min: Duration::from_millis(sync.poll_min_ms),
            poll_max: Duration::from_millis(sync.poll_max_ms),
            maintain_every: Duration::from_millis(sync.maintain_ms).min(lease / 4),
            retry_delays_ms: actors::retry::delays_ms(self.retry.delay_scale),
            restart_max: self.supervisor.restart_max,
            restart_window: Duration::from_millis(self.supervisor.restart_window_ms),
            shutdown_grace: Duration::from_millis(self.shutdown.grace_ms),
        }
    }

    /// The node client's settings.
    pub fn client_config(&self) -> crate::tron::TronClientConfig {
        let node = &self.node;
        crate::tron::TronClientConfig {
            urls: node.urls.clone(),
            api_key: (!node.api_key.is_empty()).then(|| node.api_key.expose().to_string()),
            api_key_hosts: node.api_key_hosts.clone(),
            max_lag_blocks: node.max_lag_blocks,
            check_interval: Duration::from_millis(node.check_ms),
            timeout: Duration::from_millis(node.timeout_ms),
            rate_limit_rps: node.rate_limit_rps,
            penalty: Duration::from_millis(node.penalty_ms),
            max_attempts: node.max_attempts,
            range_size: self.sync.backlog_batch as u64,
            // Knobs without a config key: their values live here only.
            rate_limit_burst: 3,
            retry_backoff: Duration::from_millis(250),
            use_range_fetch: true,
            range_timeout: Duration::from_secs(30),
            fetch_concurrency: 4,
            head_cache_ttl: Duration::from_secs(3),
            filter: self.event_filter(),
        }
    }

    /// The trace exporter's settings.
    pub fn otel_settings(&self) -> crate::telemetry::OtelSettings {
        crate::telemetry::OtelSettings {
            endpoint: self.otel.endpoint.clone(),
            protocol: self.otel.protocol,
        }
    }

    /// The memory guard's settings (`redis.memory_pause_ratio`, `redis.memory_check_ms`).
    pub fn memory_guard(&self) -> crate::store::memory::MemoryGuardConfig {
        crate::store::memory::MemoryGuardConfig {
            pause_ratio: self.redis.memory_pause_ratio,
            check_every: Duration::from_millis(self.redis.memory_check_ms),
        }
    }

    /// The Redis store's settings.
    pub fn store_config(&self) -> crate::store::RedisStoreConfig {
        let redis = &self.redis;
        crate::store::RedisStoreConfig {
            url: redis.url.clone(),
            username: (!redis.username.is_empty()).then(|| redis.username.clone()),
            password: redis.password.clone(),
            ca_file: redis.ca_file.clone(),
            sentinels: redis
                .sentinels
                .iter()
                .filter_map(|s| parse_host_port(s))
                .collect(),
            master_name: redis.master_name.clone(),
            wait_replicas: redis.wait_replicas,
            wait_timeout: Duration::from_millis(redis.wait_timeout_ms),
            prefix: redis.prefix.clone(),
            stream_key: (!self.stream.key.is_empty()).then(|| self.stream.key.clone()),
            retention: Duration::from_secs(self.stream.retention_hours * 3600),
            // Knobs without a config key: their values live here only.
            response_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// The shipped defaults: `config/default.toml` as compiled in, without a file or the
/// environment. Where code needs a client, store or tree config without a user's config (tests,
/// the bench, the chaos harness), it starts from this, so the numbers exist once.
impl Default for Config {
    fn default() -> Self {
        // The embedded file is part of the binary; `the_embedded_defaults_load` tests it.
        Config::from_figment(Figment::from(Toml::string(DEFAULT_TOML)))
            .expect("config/default.toml is valid")
    }
}

/// The name figment gives the defaults' provider (`Toml::string`).
const DEFAULTS_SOURCE: &str = "TOML source string";

/// Whether `key` was set by a file, the environment or code, not left at its default.
fn set_by_user(figment: &Figment, key: &str) -> bool {
    figment
        .find_metadata(key)
        .is_some_and(|metadata| metadata.name != DEFAULTS_SOURCE)
}

/// `host:port` (a sentinel's address); IPv6 hosts in brackets (`[::1]:26379`).
pub(crate) fn parse_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse::<u16>().ok().filter(|port| *port > 0)?;
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// What became of a key earlier versions had.
fn renamed(field: &str) -> &'static str {
    match field {
        "poll_in_sync_ms" | "poll_after_block_ms" => {
            "it is gone since the head is polled when the next block is due: set \
             sync.block_interval_ms, sync.poll_min_ms and sync.poll_max_ms instead; "
        }
        _ => "",
    }
}

/// The hash tag of a Redis key as Redis Cluster reads it: what stands between the first `{` and
/// the next `}`, when that is not empty.
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')?;
    let tag = &key[open + 1..open + 1 + close];
    (!tag.is_empty()).then_some(tag)
}

/// One line per figment error, naming the key as the user writes it.
fn describe_figment_error(error: figment::Error) -> String {
    let mut path = error.path.clone();
    // figment puts the unknown field at the end of the path already (from a file and from the
    // environment alike); naming it again would say `node.foo.foo`.
    if let figment::error::Kind::UnknownField(field, _) = &error.kind {
        if path.last() == Some(field) {
            path.pop();
        }
    }
    let key = path.join(".");
    let source = error
        .metadata
        .as_ref()
        .map(|m| format!(" (from {})", m.name))
        .unwrap_or_default();
    let fix = match &error.kind {
        figment::error::Kind::UnknownField(field, expected) => format!(
            "unknown key {:?}{}; {}known keys here: {}",
            if key.is_empty() {
                field.clone()
            } else {
                format!("{key}.{field}")
            },
            source,
            renamed(field),
            expected.join(", ")
        ),
        // What `parse_string` refuses: the same words as the checks of `validate`.
        figment::error::Kind::InvalidValue(figment::error::Actual::Str(value), expected) => {
            format!("{key} = {value:?}: must be {expected}{source}")
        }
        kind => format!("{key}: {kind}{source}"),
    };
    fix
}

#[cfg(test)]
// figment's Jail closures return its large error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    /// Why loading the configuration failed; empty when it did not.
    fn load_error() -> String {
        Config::load(None)
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    /// The same, with these environment variables set.
    fn load_error_with(vars: &[(&str, &str)]) -> String {
        let mut message = String::new();
        Jail::expect_with(|jail| {
            for (name, value) in vars {
                jail.set_env(name, value);
            }
            message = load_error();
            Ok(())
        });
        message
    }
    use figment::Jail;

    #[test]
    fn defaults_load_and_validate() {
        Jail::expect_with(|_| {
            let config = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.sync.backlog_workers, 13);
            assert_eq!(config.redis.prefix, "{tron}");
            assert_eq!(config.sync.start_block, None);
            Ok(())
        });
    }

    #[test]
    fn file_then_environment_take_precedence() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "my.toml",
                "[node]\nurl = \"http://file:8090\"\n[sync]\nstart_block = 5\n",
            )?;
            jail.set_env("TRON_ACTORS_SYNC__START_BLOCK", "7");
            jail.set_env("TRON_ACTORS_REDIS__URL", "redis://env:6380");
            let config = Config::load(Some(Path::new("my.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.node.urls, vec!["http://file:8090".to_string()]);
            assert_eq!(config.node.url, None);
            assert_eq!(config.sync.start_block, Some(7));
            assert_eq!(config.redis.url, "redis://env:6380");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_is_named() {
        let message = load_error_with(&[("TRON_ACTORS_SYNC__START_BLOK", "7")]);
        assert!(message.contains("sync.start_blok"), "{message}");
        assert!(message.contains("start_block"), "{message}");
    }

    #[test]
    fn an_unknown_key_from_the_environment_is_named_once() {
        let message = load_error_with(&[("TRON_ACTORS_NODE__FOO", "1")]);
        assert_eq!(
            message,
            "invalid config:\n  - unknown key \"node.foo\" (from `TRON_ACTORS_` environment \
             variable(s)); known keys here: url, urls, api_key, api_key_file, api_key_hosts, \
             max_lag_blocks, check_ms, timeout_ms, rate_limit_rps, penalty_ms, max_attempts"
        );
    }

    #[test]
    fn an_unknown_key_from_a_file_is_named_once() {
        Jail::expect_with(|jail| {
            jail.create_file("my.toml", "[stream]\nkeys = \"x\"\n")?;
            let message = Config::load(Some(Path::new("my.toml")))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert_eq!(
                message,
                "invalid config:\n  - unknown key \"stream.keys\" (from TOML file); known keys \
                 here: retention_hours, key"
            );
            Ok(())
        });
    }

    #[test]
    fn the_stream_key_defaults_to_the_prefix_and_must_share_its_hash_tag() {
        let config = Config::default();
        assert_eq!(config.store_config().stream_key, None);
        let keys = crate::store::Keys::with_stream(&config.redis.prefix, None);
        assert_eq!(keys.events(), "{tron}:events");

        let message = load_error_with(&[("TRON_ACTORS_STREAM__KEY", "nile-events")]);
        assert_eq!(
            message,
            "invalid config:\n  - stream.key = \"nile-events\": must carry redis.prefix's hash \
             tag {tron} (e.g. \"{tron}:events-nile\"), because each block's events and its done \
             mark are written in one script; to keep several networks on one Redis, give each \
             its own redis.prefix"
        );

        Jail::expect_with(|jail| {
            jail.set_env("TRON_ACTORS_STREAM__KEY", "{tron}:events-nile");
            let config = Config::load(None).map_err(|e| e.to_string())?;
            let store = config.store_config();
            assert_eq!(store.stream_key.as_deref(), Some("{tron}:events-nile"));
            let keys = crate::store::Keys::with_stream(&store.prefix, store.stream_key.as_deref());
            assert_eq!(keys.events(), "{tron}:events-nile");
            assert_eq!(keys.done(), "{tron}:done");
            // A prefix without a hash tag (no Redis Cluster) takes any name.
            jail.set_env("TRON_ACTORS_REDIS__PREFIX", "nile");
            jail.set_env("TRON_ACTORS_STREAM__KEY", "nile-events");
            Config::load(None).map_err(|e| e.to_string())?;
            Ok(())
        });
    }

    #[test]
    fn a_key_of_an_earlier_version_says_what_replaced_it() {
        let message = load_error_with(&[("TRON_ACTORS_SYNC__POLL_IN_SYNC_MS", "1000")]);
        assert!(message.contains("sync.poll_in_sync_ms"), "{message}");
        assert!(message.contains("sync.poll_min_ms"), "{message}");
    }

    #[test]
    fn every_invalid_value_is_reported_at_once() {
        Jail::expect_with(|jail| {
            jail.set_env("TRON_ACTORS_NODE__URL", "localhost:8090");
            jail.set_env("TRON_ACTORS_SYNC__BACKLOG_WORKERS", "0");
            jail.set_env("TRON_ACTORS_RETRY__DELAY_SCALE", "-1");
            let message = load_error();
            for key in ["node.url", "sync.backlog_workers", "retry.delay_scale"] {
                assert!(message.contains(key), "{key} missing from: {message}");
            }
            Ok(())
        });
    }

    #[test]
    fn the_memory_guard_keys_are_checked_and_zero_turns_it_off() {
        let message = load_error_with(&[
            ("TRON_ACTORS_REDIS__MEMORY_PAUSE_RATIO", "1.5"),
            ("TRON_ACTORS_REDIS__MEMORY_CHECK_MS", "0"),
        ]);
        assert!(
            message.contains(
                "redis.memory_pause_ratio = 1.5: must be 0 (no memory guard) or between 0.1 and 1"
            ),
            "{message}"
        );
        assert!(message.contains("redis.memory_check_ms"), "{message}");
        Jail::expect_with(|jail| {
            let shipped = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(shipped.redis.memory_pause_ratio, 0.9);
            jail.set_env("TRON_ACTORS_REDIS__MEMORY_PAUSE_RATIO", "0");
            let guard = Config::load(None)
                .map_err(|e| e.to_string())?
                .memory_guard();
            assert_eq!(guard.pause_ratio, 0.0);
            assert_eq!(guard.check_every, Duration::from_secs(1));
            Ok(())
        });
    }

    #[test]
    fn a_wrong_type_names_the_key() {
        let message = load_error_with(&[("TRON_ACTORS_SYNC__LEASE_MS", "soon")]);
        assert!(message.contains("sync.lease_ms"), "{message}");
    }

    #[test]
    fn an_api_key_that_looks_like_a_number_stays_a_string_and_a_bad_one_is_not_quoted() {
        Jail::expect_with(|jail| {
            jail.set_env("TRON_ACTORS_NODE__API_KEY", "0012345");
            let config = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.node.api_key.expose(), "0012345");
            jail.clear_env();
            jail.create_file("c.toml", "[node]\napi_key = 98765\n")?;
            let message = Config::load(Some(Path::new("c.toml")))
                .map(|_| ())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(message.contains("node.api_key"), "{message}");
            assert!(!message.contains("98765"), "{message}");
            Ok(())
        });
    }

    /// The configuration loaded with these environment variables set.
    fn load_with(vars: &[(&str, &str)]) -> Config {
        let mut config = None;
        Jail::expect_with(|jail| {
            for (name, value) in vars {
                jail.set_env(name, value);
            }
            config = Some(Config::load(None).map_err(|e| e.to_string())?);
            Ok(())
        });
        config.expect("the jail returned a config")
    }

    #[test]
    fn follow_is_head_or_finalized() {
        use actors::settings::Follow;
        assert_eq!(Config::default().sync.follow.0, Follow::Head);
        let config = load_with(&[("TRON_ACTORS_SYNC__FOLLOW", "finalized")]);
        assert_eq!(config.settings().follow, Follow::Finalized);
        assert_eq!(
            load_error_with(&[("TRON_ACTORS_SYNC__FOLLOW", "solid")]),
            "invalid config:\n  - sync.follow = \"solid\": must be head or finalized (from \
             `TRON_ACTORS_` environment variable(s))"
        );
    }

    #[test]
    fn log_format_is_one_of_three_names() {
        assert_eq!(Config::default().log.format, LogFormat::Auto);
        for (name, format) in [
            ("auto", LogFormat::Auto),
            ("text", LogFormat::Text),
            ("json", LogFormat::Json),
        ] {
            let config = load_with(&[("TRON_ACTORS_LOG__FORMAT", name)]);
            assert_eq!(config.log.format, format);
        }
        assert_eq!(
            load_error_with(&[("TRON_ACTORS_LOG__FORMAT", "xml")]),
            "invalid config:\n  - log.format = \"xml\": must be auto, json or text (from \
             `TRON_ACTORS_` environment variable(s))"
        );
    }

    #[test]
    fn log_level_is_a_level_or_a_filter_starting_from_one() {
        assert_eq!(Config::default().log.level.as_str(), "info");
        for level in [
            "trace",
            "debug",
            "warn",
            "error",
            "off",
            "info,actors=debug",
            "warn,tron_actors::tron=trace",
            "tron_actors=debug",
        ] {
            let config = load_with(&[("TRON_ACTORS_LOG__LEVEL", level)]);
            assert_eq!(config.log.level.as_str(), level);
        }
        for level in ["inof", "info,actors=loud", ""] {
            assert_eq!(
                load_error_with(&[("TRON_ACTORS_LOG__LEVEL", level)]),
                format!(
                    "invalid config:\n  - log.level = {level:?}: must be a level (off, error, \
                     warn, info, debug or trace), optionally followed by target=level filters \
                     such as info,actors=debug (from `TRON_ACTORS_` environment variable(s))"
                )
            );
        }
    }

    #[test]
    fn otel_protocol_is_grpc_or_http_protobuf_or_unset() {
        assert_eq!(Config::default().otel.protocol, None);
        for (name, protocol) in [
            ("grpc", Some(OtlpProtocol::Grpc)),
            ("http/protobuf", Some(OtlpProtocol::HttpProtobuf)),
            ("", None),
        ] {
            let config = load_with(&[("TRON_ACTORS_OTEL__PROTOCOL", name)]);
            assert_eq!(config.otel.protocol, protocol);
            assert_eq!(config.otel_settings().protocol, protocol);
        }
        assert_eq!(
            load_error_with(&[("TRON_ACTORS_OTEL__PROTOCOL", "http/json")]),
            "invalid config:\n  - otel.protocol = \"http/json\": must be grpc or http/protobuf \
             (or empty for OTEL_EXPORTER_OTLP_PROTOCOL) (from `TRON_ACTORS_` environment \
             variable(s))"
        );
    }

    #[test]
    fn metrics_listen_is_an_address_and_empty_means_no_server() {
        // Outside a container only this machine may scrape it (the container files set 0.0.0.0).
        assert_eq!(
            Config::default().metrics.listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
        let config = load_with(&[("TRON_ACTORS_METRICS__LISTEN", "")]);
        assert_eq!(config.metrics.listen, None);
        let config = load_with(&[("TRON_ACTORS_METRICS__LISTEN", "[::1]:9000")]);
        assert_eq!(config.metrics.listen, "[::1]:9000".parse().ok());
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[metrics]\nlisten = \"\"\n")?;
            let config = Config::load(Some(Path::new("c.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.metrics.listen, None);
            Ok(())
        });
        assert_eq!(
            load_error_with(&[("TRON_ACTORS_METRICS__LISTEN", "localhost:9464")]),
            "invalid config:\n  - metrics.listen = \"localhost:9464\": must be an address like \
             0.0.0.0:9464, or empty for no server (from `TRON_ACTORS_` environment variable(s))"
        );
    }

    #[test]
    fn refused_values_and_failed_checks_are_reported_together() {
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[log]\nformat = \"xml\"\n")?;
            jail.set_env("TRON_ACTORS_OTEL__PROTOCOL", "http");
            jail.set_env("TRON_ACTORS_SYNC__LEASE_MS", "soon");
            jail.set_env("TRON_ACTORS_NODE__URL", "localhost:8090");
            let message = Config::load(Some(Path::new("c.toml")))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            let problems: Vec<&str> = message.lines().skip(1).collect();
            assert_eq!(problems.len(), 4, "{message}");
            for key in [
                "log.format = \"xml\"",
                "otel.protocol = \"http\"",
                "sync.lease_ms",
                "node.url",
            ] {
                assert!(message.contains(key), "{key} missing from: {message}");
            }
            Ok(())
        });
    }

    #[test]
    fn the_embedded_defaults_load() {
        Jail::expect_with(|_| {
            let loaded = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(format!("{:?}", Config::default()), format!("{loaded:?}"));
            Ok(())
        });
    }

    #[test]
    fn client_store_and_tree_settings_come_from_the_toml() {
        let config = Config::default();
        let client = config.client_config();
        assert_eq!(client.urls, vec!["http://127.0.0.1:8090".to_string()]);
        assert_eq!(client.api_key, None);
        assert_eq!(client.api_key_hosts, vec!["trongrid.io".to_string()]);
        assert_eq!(client.max_lag_blocks, 5);
        assert_eq!(client.check_interval, Duration::from_millis(3000));
        assert_eq!(client.timeout, Duration::from_millis(10_000));
        // Once 10 in the client's own default against 0 in the TOML: the TOML is the source.
        assert_eq!(client.rate_limit_rps, 0.0);
        assert_eq!(client.penalty, Duration::from_millis(30_000));
        assert_eq!(client.max_attempts, 3);
        assert_eq!(client.range_size, 30);

        let store = config.store_config();
        assert_eq!(store.url, "redis://127.0.0.1:6379");
        assert_eq!(store.prefix, "{tron}");
        assert_eq!(store.stream_key, None);
        assert_eq!(store.retention, Duration::from_secs(168 * 3600));

        let settings = config.settings();
        assert_eq!(settings.limits.priority_max_gap, 20);
        assert_eq!(settings.limits.backlog_max, 201_600);
        assert_eq!(settings.start_block, None);
        assert_eq!(settings.backlog_workers, 13);
        assert_eq!(settings.lease, Duration::from_millis(60_000));
        assert_eq!(settings.heartbeat, Duration::from_millis(20_000));
        assert_eq!(settings.backlog_batch, 30);
        assert_eq!(settings.priority_batch, 4);
        assert_eq!(settings.idle, Duration::from_millis(500));
        assert_eq!(settings.block_interval, Duration::from_millis(3000));
        assert_eq!(settings.poll_min, Duration::from_millis(250));
        assert_eq!(settings.poll_max, Duration::from_millis(3000));
        assert_eq!(settings.maintain_every, Duration::from_millis(1000));
        assert_eq!(settings.retry_delays_ms, actors::retry::delays_ms(1.0));
        assert_eq!(settings.restart_max, 20);
        assert_eq!(settings.restart_window, Duration::from_millis(60_000));
        assert_eq!(settings.shutdown_grace, Duration::from_millis(10_000));
    }

    #[test]
    fn node_urls_is_a_list_or_a_comma_separated_string_and_node_url_one_of_them() {
        let two = vec!["http://a:8090".to_string(), "http://b:8090".to_string()];
        let config = load_with(&[("TRON_ACTORS_NODE__URLS", "http://a:8090, http://b:8090")]);
        assert_eq!(config.node.urls, two);
        let config = load_with(&[(
            "TRON_ACTORS_NODE__URLS",
            "[\"http://a:8090\", \"http://b:8090\"]",
        )]);
        assert_eq!(config.node.urls, two);
        assert_eq!(config.client_config().urls, two);
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[node]\nurls = [\"http://a:8090\", \"http://b:8090\"]\n",
            )?;
            let config = Config::load(Some(Path::new("c.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.node.urls, vec!["http://a:8090", "http://b:8090"]);
            Ok(())
        });
        // node.url alone replaces the default list.
        let config = load_with(&[("TRON_ACTORS_NODE__URL", "http://c:8090")]);
        assert_eq!(config.node.urls, vec!["http://c:8090".to_string()]);
        assert_eq!(config.node.shown_urls(), "http://c:8090");
    }

    #[test]
    fn node_url_and_node_urls_together_are_refused_naming_both() {
        let message = load_error_with(&[
            ("TRON_ACTORS_NODE__URL", "http://c:8090"),
            ("TRON_ACTORS_NODE__URLS", "http://a:8090,http://b:8090"),
        ]);
        assert_eq!(
            message,
            "invalid config:\n  - node.url and node.urls are both set: keep one (node.urls = \
             [\"http://a:8090\", \"http://b:8090\"] for several nodes, or node.url for one)"
        );
        assert_eq!(
            load_error_with(&[("TRON_ACTORS_NODE__URLS", "")]),
            "invalid config:\n  - node.urls is empty: name at least one node (e.g. \
             [\"https://api.trongrid.io\"])"
        );
        let message = load_error_with(&[(
            "TRON_ACTORS_NODE__URLS",
            "http://a:8090,ftp://user:pw@b:2121",
        )]);
        assert!(message.contains("\"ftp://REDACTED@b:2121\""), "{message}");
        assert!(!message.contains("pw"), "{message}");
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("redis://:hunter2@redis:6379/0"),
            "redis://:***@redis:6379/0"
        );
        assert_eq!(
            redact_url("rediss://tron:hunter2@redis.example.com:6380"),
            "rediss://tron:***@redis.example.com:6380"
        );
        assert_eq!(redact_url("redis://redis:6379"), "redis://redis:6379");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url("redis//x:hunter2@h"), "<url with a password>");
    }

    #[test]
    fn the_redis_password_comes_from_a_file_without_its_newline_and_is_never_shown() {
        Jail::expect_with(|jail| {
            jail.create_file("pw", "0012345\n")?;
            jail.set_env("TRON_ACTORS_REDIS__URL", "rediss://redis.example.com:6380");
            jail.set_env("TRON_ACTORS_REDIS__USERNAME", "tron");
            jail.set_env("TRON_ACTORS_REDIS__PASSWORD_FILE", "pw");
            let config = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.redis.password.expose(), "0012345");
            let store = config.store_config();
            assert_eq!(store.password.expose(), "0012345");
            assert_eq!(store.username.as_deref(), Some("tron"));
            assert!(!format!("{config:?}{store:?}").contains("0012345"));
            jail.clear_env();
            // From the environment, a password of digits stays the string it is.
            jail.set_env("TRON_ACTORS_REDIS__PASSWORD", "0012345");
            let config = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.redis.password.expose(), "0012345");
            Ok(())
        });
        let debug = format!(
            "{:?}",
            load_with(&[("TRON_ACTORS_REDIS__URL", "redis://:hunter2@redis:6379")])
        );
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("redis://:***@redis:6379"), "{debug}");
    }

    #[test]
    fn redis_credentials_tls_and_sentinel_settings_are_checked_naming_the_keys() {
        Jail::expect_with(|jail| {
            jail.create_file("pw", "x")?;
            jail.set_env("TRON_ACTORS_REDIS__PASSWORD", "hunter2");
            jail.set_env("TRON_ACTORS_REDIS__PASSWORD_FILE", "pw");
            let message = load_error();
            assert!(
                message.contains("redis.password and redis.password_file are both set"),
                "{message}"
            );
            assert!(!message.contains("hunter2"), "{message}");
            Ok(())
        });
        let message = load_error_with(&[
            ("TRON_ACTORS_REDIS__URL", "rediss://u:hunter2@h:6380"),
            ("TRON_ACTORS_REDIS__PASSWORD", "other"),
            ("TRON_ACTORS_REDIS__USERNAME", "v"),
        ]);
        assert!(
            message.contains("carries a password and redis.password"),
            "{message}"
        );
        assert!(
            message.contains("names a user and redis.username"),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
        let message = load_error_with(&[("TRON_ACTORS_REDIS__URL", "rediss://h:6380/#insecure")]);
        assert!(message.contains("#insecure"), "{message}");
        assert!(message.contains("redis.ca_file"), "{message}");
        let message = load_error_with(&[("TRON_ACTORS_REDIS__CA_FILE", "/etc/ca.pem")]);
        assert!(
            message.contains("redis.ca_file is set but redis.url = \"redis://127.0.0.1:6379\""),
            "{message}"
        );
        let message = load_error_with(&[("TRON_ACTORS_REDIS__SENTINELS", "[\"a:26379\", \"b\"]")]);
        assert!(
            message.contains("redis.master_name must be set"),
            "{message}"
        );
        assert!(
            message.contains("redis.sentinels: \"b\" must be host:port"),
            "{message}"
        );
        let config = load_with(&[
            (
                "TRON_ACTORS_REDIS__SENTINELS",
                "[\"10.0.0.5:26379\", \"[::1]:26380\"]",
            ),
            ("TRON_ACTORS_REDIS__MASTER_NAME", "mymaster"),
            ("TRON_ACTORS_REDIS__WAIT_REPLICAS", "1"),
        ]);
        let store = config.store_config();
        assert_eq!(
            store.sentinels,
            vec![("10.0.0.5".to_string(), 26379), ("::1".to_string(), 26380)]
        );
        assert_eq!(store.master_name, "mymaster");
        assert_eq!(store.wait_replicas, 1);
        assert_eq!(store.wait_timeout, Duration::from_millis(1000));
    }

    #[test]
    fn api_key_is_redacted_and_read_from_a_file() {
        Jail::expect_with(|jail| {
            jail.create_file("key.txt", "s3cret-key\n")?;
            jail.set_env("TRON_ACTORS_NODE__API_KEY_FILE", "key.txt");
            let config = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.node.api_key.expose(), "s3cret-key");
            let debug = format!("{config:?}");
            assert!(!debug.contains("s3cret-key"), "{debug}");
            assert!(debug.contains("<redacted>"));
            Ok(())
        });
    }
}
