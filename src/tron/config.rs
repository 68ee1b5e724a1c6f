//! What a [`TronClient`](super::TronClient) is built from, and why building one may fail.

use std::fmt;
use std::time::Duration;

use actors::chain::ErrorSource;

/// Built by `Config::client_config` (from `[node]` and `sync.backlog_batch`; the knobs without a
/// config key are fixed there): there is no `Default`, so the numbers exist once. Code without a
/// user's config starts from `Config::default().client_config()`.
#[derive(Clone)]
pub struct TronClientConfig {
    /// Base URLs of the nodes' HTTP API, in order of preference, e.g. `http://127.0.0.1:8090`
    /// or `https://api.trongrid.io` (at least one).
    pub urls: Vec<String>,
    /// Sent as `TRON-PRO-API-KEY`; never logged or shown.
    pub api_key: Option<String>,
    /// With several nodes, the key goes only to the hosts listed here and their subdomains
    /// (`*` = every node); see [`key_applies`](super::pool::key_applies).
    pub api_key_hosts: Vec<String>,
    /// A node whose head is more than this many blocks behind the best head seen is not used.
    pub max_lag_blocks: u64,
    /// How often every node's head is checked when there are several.
    pub check_interval: Duration,
    /// Per request, from sending to the last byte of the answer.
    pub timeout: Duration,
    /// Requests per second for all clones together; 0 = unlimited.
    pub rate_limit_rps: f64,
    /// Requests that may go at once after a quiet period.
    pub rate_limit_burst: u32,
    /// How long every caller waits after a rate-limit answer that does not say for how long
    /// (TronGrid suspends a key for about 30 s and usually says so), and the longest pause that
    /// persistent bare 5xx answers escalate to.
    pub penalty: Duration,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Pause before the second attempt after a transport error, timeout or 5xx; doubled each
    /// further attempt, up to 8 times.
    pub retry_backoff: Duration,
    /// Fetch bodies of consecutive blocks with `getblockbylimitnext` (1 request per 100 blocks)
    /// instead of one `getblockbynum` each.
    pub use_range_fetch: bool,
    /// Blocks per `getblockbylimitnext` request, at most [`MAX_RANGE`](super::MAX_RANGE). A mainnet block is
    /// about 0.5 MB of JSON, so a full range answer is tens of MB held briefly per worker.
    pub range_size: u64,
    /// Per `getblockbylimitnext` request, whose answer is far bigger than the others.
    pub range_timeout: Duration,
    /// Blocks of one `blocks()` call fetched at the same time (their requests still go through
    /// the shared limiter).
    pub fetch_concurrency: usize,
    /// How long the body of the last head stays usable for `block(head)`.
    pub head_cache_ttl: Duration,
    /// Events not kept are dropped right after decoding (`[filter]`): the block keeps its
    /// header, so it is committed, marked done and closed by its `block` entry as any other.
    pub filter: actors::filter::EventFilter,
}

impl fmt::Debug for TronClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TronClientConfig")
            .field(
                "urls",
                &self
                    .urls
                    .iter()
                    .map(|u| super::pool::shown_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_hosts", &self.api_key_hosts)
            .field("max_lag_blocks", &self.max_lag_blocks)
            .field("check_interval", &self.check_interval)
            .field("timeout", &self.timeout)
            .field("rate_limit_rps", &self.rate_limit_rps)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("penalty", &self.penalty)
            .field("max_attempts", &self.max_attempts)
            .field("retry_backoff", &self.retry_backoff)
            .field("use_range_fetch", &self.use_range_fetch)
            .field("range_size", &self.range_size)
            .field("range_timeout", &self.range_timeout)
            .field("fetch_concurrency", &self.fetch_concurrency)
            .field("head_cache_ttl", &self.head_cache_ttl)
            .finish()
    }
}

/// Why a node client cannot be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// The URL is not http(s) (shown without credentials).
    #[error("invalid node URL {0:?}: expected http:// or https://")]
    Url(String),
    /// No URL at all.
    #[error("no node URL: set node.urls (or node.url)")]
    NoUrl,
    // Deliberately without the key itself.
    /// The API key has characters an HTTP header cannot carry.
    #[error("the API key is not a valid HTTP header value")]
    ApiKey,
    /// The HTTP client (TLS setup) cannot be built.
    #[error("cannot build the HTTP client: {}", .0.with_causes())]
    Http(#[source] ErrorSource),
}
