//! The java-tron HTTP API as a [`Chain`]: one client, cloned to every worker, sharing one rate
//! limiter, one penalty gate and one set of counters.
//!
//! Retries inside the client are for the request only: transport errors, timeouts, 5xx and
//! rate-limit answers (after the penalty), up to `max_attempts`. What the answer *means* (`{}`,
//! `[]` infos, `{"Error"}`, bad JSON) is the caller's retry schedule's business, with two cheap
//! exceptions that target TronGrid's load balancer, whose nodes are not always synced:
//! - `[]` infos for a block with transactions: the infos are asked once more straight away.
//! - `{}` for a block at or below a head this client has already seen (so it exists): the block
//!   is asked once more straight away. Above the head `{}` is the normal "not yet" and costs
//!   nothing extra.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;

use actors::chain::{BlockSink, Chain, ChainError, Lane};
use actors::model::{Block, BlockHeader};
use async_trait::async_trait;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::decode::{self, RawBlock};
use super::limiter::RateLimiter;

/// Header TronGrid reads the API key from.
pub const API_KEY_HEADER: &str = "TRON-PRO-API-KEY";
/// The most blocks `getblockbylimitnext` gives in one answer; more answers `{}`.
pub const MAX_RANGE: u64 = 100;
/// Range requests (and their parsing) at once, for all workers together.
const RANGES_AT_ONCE: usize = 2;

#[derive(Clone)]
pub struct TronClientConfig {
    /// Base URL of the node's HTTP API, e.g. `http://127.0.0.1:8090` or `https://api.trongrid.io`.
    pub url: String,
    /// Sent as `TRON-PRO-API-KEY`; never logged or shown.
    pub api_key: Option<String>,
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
    /// Blocks per `getblockbylimitnext` request, at most [`MAX_RANGE`]. A mainnet block is
    /// about 0.5 MB of JSON, so a full range answer is tens of MB held briefly per worker.
    pub range_size: u64,
    /// Per `getblockbylimitnext` request, whose answer is far bigger than the others.
    pub range_timeout: Duration,
    /// Blocks of one `blocks()` call fetched at the same time (their requests still go through
    /// the shared limiter).
    pub fetch_concurrency: usize,
    /// How long the body of the last head stays usable for `block(head)`.
    pub head_cache_ttl: Duration,
}

impl Default for TronClientConfig {
    fn default() -> Self {
        TronClientConfig {
            url: "http://127.0.0.1:8090".to_string(),
            api_key: None,
            timeout: Duration::from_secs(10),
            rate_limit_rps: 10.0,
            rate_limit_burst: 3,
            penalty: Duration::from_secs(30),
            max_attempts: 3,
            retry_backoff: Duration::from_millis(250),
            use_range_fetch: true,
            range_size: MAX_RANGE,
            range_timeout: Duration::from_secs(30),
            fetch_concurrency: 4,
            head_cache_ttl: Duration::from_secs(3),
        }
    }
}

impl fmt::Debug for TronClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TronClientConfig")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
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

#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("invalid node URL {0:?}: expected http:// or https://")]
    Url(String),
    // Deliberately without the key itself.
    #[error("the API key is not a valid HTTP header value")]
    ApiKey,
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// The node endpoints the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    NowBlock,
    BlockByNum,
    TransactionInfoByBlockNum,
    BlockByLimitNext,
}

impl Endpoint {
    pub const ALL: [Endpoint; 4] = [
        Endpoint::NowBlock,
        Endpoint::BlockByNum,
        Endpoint::TransactionInfoByBlockNum,
        Endpoint::BlockByLimitNext,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::NowBlock => "/wallet/getnowblock",
            Endpoint::BlockByNum => "/wallet/getblockbynum",
            Endpoint::TransactionInfoByBlockNum => "/wallet/gettransactioninfobyblocknum",
            Endpoint::BlockByLimitNext => "/wallet/getblockbylimitnext",
        }
    }

    /// A short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::NowBlock => "getnowblock",
            Endpoint::BlockByNum => "getblockbynum",
            Endpoint::TransactionInfoByBlockNum => "gettransactioninfobyblocknum",
            Endpoint::BlockByLimitNext => "getblockbylimitnext",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Labels of [`ChainError::kind`], in the order of [`ClientStats`]' error counters.
pub const ERROR_KINDS: [&str; 8] = [
    "not_produced",
    "not_synced",
    "malformed",
    "node_error",
    "rate_limited",
    "http",
    "timeout",
    "transport",
];

fn error_index(error: &ChainError) -> usize {
    match error {
        ChainError::NotProduced(_) => 0,
        ChainError::NodeNotSynced { .. } => 1,
        ChainError::Malformed { .. } => 2,
        ChainError::Node(_) => 3,
        ChainError::RateLimited { .. } => 4,
        ChainError::Http { .. } => 5,
        ChainError::Timeout => 6,
        ChainError::Transport(_) => 7,
    }
}

/// Counters for metrics, shared by all clones of a client.
///
/// `requests` counts every HTTP attempt. `errors` counts every failed attempt (transport,
/// timeout, HTTP status, rate limit) and every answer that could not be used (`{}`, `[]` infos,
/// `{"Error"}`, bad JSON), each time it happens, retried or not.
#[derive(Debug, Default)]
pub struct ClientStats {
    requests: [AtomicU64; 4],
    errors: [AtomicU64; 8],
    retries: AtomicU64,
    penalties: AtomicU64,
    head_cache_hits: AtomicU64,
    latency_micros_sum: AtomicU64,
    latency_count: AtomicU64,
    /// Request latency per endpoint, for /metrics.
    pub latency_by_endpoint: [actors::histogram::Histogram; 4],
}

/// A copy of [`ClientStats`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Attempts by endpoint label.
    pub requests: Vec<(&'static str, u64)>,
    /// Errors by [`ChainError::kind`].
    pub errors: Vec<(&'static str, u64)>,
    pub retries: u64,
    /// Rate-limit answers that started or extended a penalty.
    pub penalties: u64,
    pub head_cache_hits: u64,
    /// Sum and count of attempt latencies (completed or failed), for an average.
    pub latency_sum: Duration,
    pub latency_count: u64,
}

impl ClientStats {
    pub fn requests(&self, endpoint: Endpoint) -> u64 {
        self.requests[endpoint.index()].load(Ordering::Relaxed)
    }

    pub fn total_requests(&self) -> u64 {
        self.requests
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Errors of one [`ChainError::kind`] label; 0 for an unknown label.
    pub fn errors(&self, kind: &str) -> u64 {
        ERROR_KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.errors[i].load(Ordering::Relaxed))
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: Endpoint::ALL
                .iter()
                .map(|e| (e.label(), self.requests(*e)))
                .collect(),
            errors: ERROR_KINDS
                .iter()
                .zip(&self.errors)
                .map(|(k, c)| (*k, c.load(Ordering::Relaxed)))
                .collect(),
            retries: self.retries.load(Ordering::Relaxed),
            penalties: self.penalties.load(Ordering::Relaxed),
            head_cache_hits: self.head_cache_hits.load(Ordering::Relaxed),
            latency_sum: Duration::from_micros(self.latency_micros_sum.load(Ordering::Relaxed)),
            latency_count: self.latency_count.load(Ordering::Relaxed),
        }
    }

    fn error(&self, error: &ChainError) {
        self.errors[error_index(error)].fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text: requests and latency per endpoint, errors per kind.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP tron_actors_node_requests_total Requests sent to the node, retries included.\n\
             # TYPE tron_actors_node_requests_total counter\n",
        );
        for endpoint in Endpoint::ALL {
            out.push_str(&format!(
                "tron_actors_node_requests_total{{endpoint=\"{}\"}} {}\n",
                endpoint.label(),
                self.requests(endpoint)
            ));
        }
        out.push_str(
            "# HELP tron_actors_node_errors_total Failed node requests and answers, by kind \
             (timeout, rate_limited = a suspension: 429/403 or TronGrid's notice, http = any other status such as a bare 503, malformed, ...).\n\
             # TYPE tron_actors_node_errors_total counter\n",
        );
        for (kind, count) in ERROR_KINDS.iter().zip(&self.errors) {
            out.push_str(&format!(
                "tron_actors_node_errors_total{{kind=\"{kind}\"}} {}\n",
                count.load(Ordering::Relaxed)
            ));
        }
        out.push_str(
            "# HELP tron_actors_node_request_duration_seconds Node request latency.\n\
             # TYPE tron_actors_node_request_duration_seconds histogram\n",
        );
        for endpoint in Endpoint::ALL {
            out.push_str(&self.latency_by_endpoint[endpoint.index()].render(
                "tron_actors_node_request_duration_seconds",
                &format!("endpoint=\"{}\"", endpoint.label()),
            ));
        }
        out
    }

    fn latency(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_micros_sum.fetch_add(micros, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Client of a java-tron node's HTTP API. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct TronClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    config: TronClientConfig,
    limiter: RateLimiter,
    stats: ClientStats,
    head: Mutex<Option<CachedHead>>,
    /// The highest head seen: blocks at or below it exist.
    known_head: AtomicU64,
    /// Bare 5xx answers in a row, from any caller; any usable answer resets it.
    unavailable_streak: AtomicU32,
    /// Pauses taken for this streak so far: each is twice the one before.
    unavailable_level: AtomicU32,
    /// Range answers in flight or being parsed: each is tens of MB (100 mainnet-sized blocks),
    /// so they take turns instead of all workers holding one at once.
    range_permits: Semaphore,
}

struct CachedHead {
    fetched: Instant,
    block: RawBlock,
}

impl fmt::Debug for TronClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TronClient")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl TronClient {
    pub fn new(config: TronClientConfig) -> Result<Self, ClientBuildError> {
        let url = reqwest::Url::parse(&config.url)
            .map_err(|_| ClientBuildError::Url(config.url.clone()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientBuildError::Url(config.url.clone()));
        }
        crate::tls::install_crypto_provider();

        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = &config.api_key {
            let mut value = reqwest::header::HeaderValue::from_str(key)
                .map_err(|_| ClientBuildError::ApiKey)?;
            // Keeps it out of reqwest's own Debug output.
            value.set_sensitive(true);
            headers.insert(API_KEY_HEADER, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(config.timeout)
            .user_agent(concat!("tron-actors/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientBuildError::Http(error_chain(&e)))?;

        Ok(TronClient {
            inner: Arc::new(Inner {
                http,
                base: config.url.trim_end_matches('/').to_string(),
                limiter: RateLimiter::new(config.rate_limit_rps, config.rate_limit_burst),
                config,
                stats: ClientStats::default(),
                head: Mutex::new(None),
                known_head: AtomicU64::new(0),
                unavailable_streak: AtomicU32::new(0),
                unavailable_level: AtomicU32::new(0),
                range_permits: Semaphore::new(RANGES_AT_ONCE),
            }),
        })
    }

    pub fn stats(&self) -> &ClientStats {
        &self.inner.stats
    }

    pub fn config(&self) -> &TronClientConfig {
        &self.inner.config
    }

    /// One request, retried as the module documentation says. The answer is the raw body of an
    /// HTTP 2xx.
    async fn request(
        &self,
        endpoint: Endpoint,
        body: &serde_json::Value,
        lane: Lane,
    ) -> Result<Vec<u8>, ChainError> {
        let inner = &*self.inner;
        let max_attempts = inner.config.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            inner.limiter.acquire(lane).await;
            inner.stats.requests[endpoint.index()].fetch_add(1, Ordering::Relaxed);
            let start = Instant::now();
            let timeout = match endpoint {
                Endpoint::BlockByLimitNext => inner.config.range_timeout,
                _ => inner.config.timeout,
            };
            let span = tracing::info_span!(
                "node.request",
                endpoint = endpoint.label(),
                attempt,
                error = tracing::field::Empty
            );
            let result = tokio::time::timeout(timeout, self.send(endpoint, body))
                .instrument(span.clone())
                .await
                .unwrap_or(Err(ChainError::Timeout));
            inner.stats.latency(start.elapsed());
            inner.stats.latency_by_endpoint[endpoint.index()].observe(start.elapsed());
            if let Err(error) = &result {
                span.record("error", error.kind());
            }
            let error = match result {
                Ok(bytes) => {
                    inner.unavailable_streak.store(0, Ordering::Relaxed);
                    inner.unavailable_level.store(0, Ordering::Relaxed);
                    return Ok(bytes);
                }
                Err(error) => error,
            };
            inner.stats.error(&error);
            let retryable = match &error {
                ChainError::RateLimited { pause_ms, .. } => {
                    let pause = Duration::from_millis(*pause_ms);
                    inner.limiter.penalize(pause);
                    inner.stats.penalties.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        endpoint = endpoint.label(),
                        error = %error,
                        pause_ms,
                        "Rate limited by the node: every request waits"
                    );
                    true
                }
                ChainError::Http { status } if *status >= 500 => {
                    self.note_unavailable(endpoint, *status);
                    true
                }
                ChainError::Timeout | ChainError::Transport(_) => true,
                _ => false,
            };
            if !retryable || attempt >= max_attempts {
                return Err(error);
            }
            tracing::debug!(endpoint = endpoint.label(), attempt, error = %error, "retrying");
            inner.stats.retries.fetch_add(1, Ordering::Relaxed);
            if !matches!(error, ChainError::RateLimited { .. }) {
                // Only this caller backs off: a proxy's bare 5xx says nothing about the others'
                // requests. The limiter already holds rate-limited callers for the pause.
                let backoff = inner.config.retry_backoff * 2u32.pow((attempt - 1).min(3));
                tokio::time::sleep(backoff).await;
            }
            attempt += 1;
        }
    }

    /// A bare 5xx. One now and then (a proxy, a load balancer) costs only its caller a short
    /// backoff. When [`UNAVAILABLE_STREAK`] come in a row the node itself is down: every caller
    /// pauses, twice as long at each further escalation, up to the penalty. Answers to requests
    /// sent before a pause began do not escalate it (a burst that fails twenty requests in flight
    /// is one piece of evidence, not twenty).
    fn note_unavailable(&self, endpoint: Endpoint, status: u16) {
        let inner = &*self.inner;
        let streak = inner.unavailable_streak.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < UNAVAILABLE_STREAK || inner.limiter.penalty_until().is_some() {
            return;
        }
        let level = inner.unavailable_level.fetch_add(1, Ordering::Relaxed) + 1;
        let pause = unavailable_pause(level, inner.config.retry_backoff, inner.config.penalty);
        inner.limiter.penalize(pause);
        inner.stats.penalties.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            endpoint = endpoint.label(),
            status,
            in_a_row = streak,
            pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
            "The node keeps answering HTTP 5xx: every request waits"
        );
    }

    async fn send(
        &self,
        endpoint: Endpoint,
        body: &serde_json::Value,
    ) -> Result<Vec<u8>, ChainError> {
        let url = format!("{}{}", self.inner.base, endpoint.path());
        let response = self
            .inner
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().await.map_err(transport_error)?;
        match refusal(status, retry_after, &bytes, self.inner.config.penalty) {
            Some(error) => Err(error),
            // Takes the buffer over rather than copying it when reqwest holds the only reference.
            None => Ok(bytes.into()),
        }
    }

    /// Counts a decoding failure on its way out.
    fn counted<T>(&self, result: Result<T, ChainError>) -> Result<T, ChainError> {
        if let Err(error) = &result {
            self.inner.stats.error(error);
        }
        result
    }

    fn take_cached_head(&self, number: u64) -> Option<RawBlock> {
        let mut cache = self
            .inner
            .head
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let fresh = cache.as_ref().is_some_and(|c| {
            c.block.number() == number && c.fetched.elapsed() <= self.inner.config.head_cache_ttl
        });
        // One use only: a later ask for the same height (after a reorg, say) goes to the node.
        let cached = if fresh { cache.take() } else { None };
        cached.map(|c| {
            self.inner
                .stats
                .head_cache_hits
                .fetch_add(1, Ordering::Relaxed);
            c.block
        })
    }

    fn known_head(&self) -> u64 {
        self.inner.known_head.load(Ordering::Relaxed)
    }

    async fn fetch_body(&self, number: u64, lane: Lane) -> Result<RawBlock, ChainError> {
        let mut asked = 0;
        loop {
            asked += 1;
            let bytes = self
                .request(Endpoint::BlockByNum, &json!({ "num": number }), lane)
                .await?;
            let result = self.counted(decode::parse_block(number, &bytes));
            match result {
                Err(ChainError::NotProduced(_)) if asked == 1 && number <= self.known_head() => {
                    tracing::debug!(number, "block below the head answered {{}}: asking again");
                }
                other => return other,
            }
        }
    }

    /// The events of a body, with its transaction infos.
    async fn complete(&self, block: RawBlock, lane: Lane) -> Result<Block, ChainError> {
        let number = block.number();
        let mut asked = 0;
        loop {
            asked += 1;
            let infos = self
                .request(
                    Endpoint::TransactionInfoByBlockNum,
                    &json!({ "num": number }),
                    lane,
                )
                .await?;
            let result = tracing::info_span!("decode", block = number)
                .in_scope(|| self.counted(decode::decode_raw_block(&block, &infos)));
            match result {
                Err(ChainError::NodeNotSynced { .. }) if asked == 1 => {
                    tracing::debug!(number, "no transaction infos: asking again");
                }
                other => return other,
            }
        }
    }

    /// Bodies of `[start, end)` in one request (at most [`MAX_RANGE`] blocks).
    async fn fetch_range(
        &self,
        start: u64,
        end: u64,
        lane: Lane,
    ) -> Result<BTreeMap<u64, RawBlock>, ChainError> {
        // Never fails: the semaphore is never closed.
        let _permit = self.inner.range_permits.acquire().await;
        let bytes = self
            .request(
                Endpoint::BlockByLimitNext,
                &json!({ "startNum": start, "endNum": end }),
                lane,
            )
            .await?;
        let mut blocks = self.counted(decode::parse_block_range(&bytes))?;
        // Anything outside the asked range is not ours to use.
        blocks.retain(|n, _| (start..end).contains(n));
        Ok(blocks)
    }

    /// Blocks `[from, to)`, one range at a time so that no more than one range of bodies is
    /// held in memory, each block sent to `sink` as soon as it is complete.
    async fn fetch_blocks(&self, from: u64, to: u64, lane: Lane, sink: &BlockSink) {
        let range_size = self.inner.config.range_size.clamp(1, MAX_RANGE);
        let mut end = to;
        // Highest range first, as the backlog wants.
        while end > from {
            let start = end.saturating_sub(range_size).max(from);
            if !self.fetch_chunk(start, end, lane, sink).await {
                return;
            }
            end = start;
        }
    }

    /// Returns false when the receiver hung up.
    async fn fetch_chunk(&self, start: u64, end: u64, lane: Lane, sink: &BlockSink) -> bool {
        // `None`: no range fetch, every body is fetched on its own.
        let mut bodies = if self.inner.config.use_range_fetch {
            Some(self.fetch_range(start, end, lane).await)
        } else {
            None
        };
        let highest_answered = match &bodies {
            Some(Ok(blocks)) => blocks.keys().next_back().copied(),
            _ => None,
        };
        let permits = Arc::new(Semaphore::new(self.inner.config.fetch_concurrency.max(1)));
        let mut tasks = JoinSet::new();
        for number in (start..end).rev() {
            let body = match &mut bodies {
                None => None,
                // One bad block spoils a whole range answer: fetch each on its own, so only
                // the bad one fails.
                Some(Err(_)) => None,
                Some(Ok(blocks)) => match blocks.remove(&number) {
                    Some(block) => Some(Ok(block)),
                    // Left out of the answer though it exists: ask for it on its own.
                    None if highest_answered.is_some_and(|h| number < h)
                        || number <= self.known_head() =>
                    {
                        None
                    }
                    None => Some(Err(ChainError::NotProduced(number))),
                },
            };
            let client = self.clone();
            let permits = permits.clone();
            let sink = sink.clone();
            tasks.spawn(
                async move {
                    // Never fails: the semaphore is never closed.
                    let _permit = permits.acquire_owned().await;
                    let result = match body {
                        Some(Ok(block)) => client.complete(block, lane).await,
                        Some(Err(error)) => Err(error),
                        None => client.block(number, lane).await,
                    };
                    // Sent while holding the permit: a slow receiver slows the fetching down
                    // instead of letting finished blocks pile up.
                    let sent = sink.send((number, result)).await.is_ok();
                    (number, sent)
                }
                .in_current_span(),
            );
        }
        let mut reported = std::collections::BTreeSet::new();
        let mut open = true;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((number, sent)) => {
                    reported.insert(number);
                    open &= sent;
                }
                Err(error) => tracing::error!(%error, "block fetch task failed"),
            }
        }
        for number in (start..end).rev() {
            if open && !reported.contains(&number) {
                let failed = Err(ChainError::Transport("block fetch task failed".to_string()));
                open = sink.send((number, failed)).await.is_ok();
            }
        }
        open
    }
}

#[async_trait]
impl Chain for TronClient {
    async fn head(&self) -> Result<BlockHeader, ChainError> {
        let bytes = self
            .request(Endpoint::NowBlock, &json!({}), Lane::Head)
            .await?;
        let block = self.counted(decode::parse_head(&bytes))?;
        let header = block.header().clone();
        self.inner
            .known_head
            .fetch_max(header.number, Ordering::Relaxed);
        let mut cache = self
            .inner
            .head
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *cache = Some(CachedHead {
            fetched: Instant::now(),
            block,
        });
        Ok(header)
    }

    async fn block(&self, number: u64, lane: Lane) -> Result<Block, ChainError> {
        let body = match self.take_cached_head(number) {
            Some(block) => block,
            None => self.fetch_body(number, lane).await?,
        };
        self.complete(body, lane).await
    }

    async fn blocks_into(&self, from: u64, to: u64, lane: Lane, sink: BlockSink) {
        self.fetch_blocks(from, to, lane, &sink).await
    }
}

/// Bare 5xx answers in a row (from all callers together) before every caller pauses.
const UNAVAILABLE_STREAK: u32 = 4;
/// The longest pause a node may ask for; a longer one is taken as this (a lying or broken
/// node must not stop the daemon for hours).
const MAX_PAUSE: Duration = Duration::from_secs(600);

/// How long every caller pauses at the `level`-th escalation (from 1) of a streak of bare 5xx
/// answers: the retry backoff, doubled at each level, up to the penalty.
fn unavailable_pause(level: u32, backoff: Duration, penalty: Duration) -> Duration {
    let doublings = level.saturating_sub(1).min(16);
    backoff.saturating_mul(1 << doublings).min(penalty)
}

/// What an answer means when it is not a usable one: `None` for a 2xx without TronGrid's
/// suspension notice.
///
/// - TronGrid's notice (`{"Error":"The key exceeds the frequency limit(15), and the query server
///   is suspended for 30s"}`, with any status, 200 included): a suspension for the time it says,
///   else `Retry-After`, else the configured penalty.
/// - 429 and 403 without it: a suspension for `Retry-After`, else the penalty.
/// - 503 with `Retry-After`: the node asks for that pause.
/// - any other status, a bare 502/503/504 included: [`ChainError::Http`], a transient error
///   (proxies and load balancers answer so for a moment).
fn refusal(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    penalty: Duration,
) -> Option<ChainError> {
    let rate_limited = |pause: Duration| ChainError::RateLimited {
        status,
        pause_ms: u64::try_from(pause.min(MAX_PAUSE).as_millis()).unwrap_or(u64::MAX),
    };
    if let Some(notice) = suspension_notice(body) {
        return Some(rate_limited(notice.or(retry_after).unwrap_or(penalty)));
    }
    match (status, retry_after) {
        (200..=299, _) => None,
        (429 | 403, after) => Some(rate_limited(after.unwrap_or(penalty))),
        (503, Some(after)) => Some(rate_limited(after)),
        _ => Some(ChainError::Http { status }),
    }
}

/// TronGrid's suspension notice: `Some(how long it says)` (`None` inside when it does not say),
/// or `None` when the body is not such a notice.
fn suspension_notice(body: &[u8]) -> Option<Option<Duration>> {
    const LIMIT: usize = 1024;
    if body.len() > LIMIT {
        return None;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim_start();
    if !(text.starts_with("{\"Error\"")
        && (text.contains("exceeds the frequency limit") || text.contains("is suspended")))
    {
        return None;
    }
    let said = text.split_once("suspended for").and_then(|(_, rest)| {
        let digits: String = rest
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse::<u64>().ok().map(Duration::from_secs)
    });
    Some(said)
}

fn transport_error(error: reqwest::Error) -> ChainError {
    if error.is_timeout() {
        ChainError::Timeout
    } else {
        ChainError::Transport(error_chain(&error))
    }
}

/// An error with its causes, which hold the useful part ("connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use serde_json::Value;
    use std::collections::HashMap;

    const KEY: &str = "0123-secret-api-key";

    struct Seen {
        path: String,
        body: Value,
        api_key: Option<String>,
        at: std::time::Instant,
    }

    struct Reply {
        status: u16,
        body: String,
        delay: Duration,
        retry_after: Option<u64>,
    }

    impl Reply {
        fn ok(body: Value) -> Reply {
            Reply::status(200, body.to_string())
        }

        fn status(status: u16, body: impl Into<String>) -> Reply {
            Reply {
                status,
                body: body.into(),
                delay: Duration::ZERO,
                retry_after: None,
            }
        }

        fn retry_after(self, seconds: u64) -> Reply {
            Reply {
                retry_after: Some(seconds),
                ..self
            }
        }
    }

    /// Answers a request given how many came before it on the same path (0-based).
    type Script = dyn Fn(&str, &Value, usize) -> Reply + Send + Sync;

    struct NodeState {
        script: Box<Script>,
        seen: Mutex<Vec<Seen>>,
        per_path: Mutex<HashMap<String, usize>>,
    }

    struct TestNode {
        url: String,
        state: Arc<NodeState>,
    }

    impl TestNode {
        fn seen_paths(&self) -> Vec<String> {
            self.state
                .seen
                .lock()
                .unwrap()
                .iter()
                .map(|s| s.path.clone())
                .collect()
        }

        fn count(&self, endpoint: Endpoint) -> usize {
            self.seen_paths()
                .iter()
                .filter(|p| *p == endpoint.path())
                .count()
        }
    }

    async fn handle(
        State(state): State<Arc<NodeState>>,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, HeaderMap, String) {
        let path = uri.path().to_string();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let nth = {
            let mut per_path = state.per_path.lock().unwrap();
            let n = per_path.entry(path.clone()).or_default();
            *n += 1;
            *n - 1
        };
        state.seen.lock().unwrap().push(Seen {
            path: path.clone(),
            body: body.clone(),
            api_key: headers
                .get(API_KEY_HEADER)
                .map(|v| v.to_str().unwrap().to_string()),
            at: std::time::Instant::now(),
        });
        let reply = (state.script)(&path, &body, nth);
        tokio::time::sleep(reply.delay).await;
        let mut headers = HeaderMap::new();
        if let Some(seconds) = reply.retry_after {
            headers.insert("retry-after", seconds.to_string().parse().unwrap());
        }
        (
            StatusCode::from_u16(reply.status).unwrap(),
            headers,
            reply.body,
        )
    }

    async fn spawn_node(
        script: impl Fn(&str, &Value, usize) -> Reply + Send + Sync + 'static,
    ) -> TestNode {
        let state = Arc::new(NodeState {
            script: Box::new(script),
            seen: Mutex::new(Vec::new()),
            per_path: Mutex::new(HashMap::new()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestNode { url, state }
    }

    fn config(node: &TestNode) -> TronClientConfig {
        TronClientConfig {
            url: node.url.clone(),
            api_key: Some(KEY.to_string()),
            timeout: Duration::from_secs(5),
            rate_limit_rps: 0.0,
            penalty: Duration::from_millis(200),
            retry_backoff: Duration::from_millis(10),
            ..TronClientConfig::default()
        }
    }

    fn client(node: &TestNode) -> TronClient {
        TronClient::new(config(node)).unwrap()
    }

    fn block_hash(n: u64) -> String {
        format!("{n:016x}{}", "ab".repeat(24))
    }

    fn txid(n: u64) -> String {
        format!("{n:064x}")
    }

    /// Block `n` of the test chain: one TRX transfer.
    fn chain_block(n: u64) -> Value {
        json!({
            "blockID": block_hash(n),
            "block_header": {"raw_data": {
                "number": n,
                "parentHash": block_hash(n.saturating_sub(1)),
                "timestamp": 1_000_000 + n * 3000
            }},
            "transactions": [{
                "txID": txid(n),
                "raw_data": {"contract": [{
                    "type": "TransferContract",
                    "parameter": {"value": {
                        "owner_address": "411111111111111111111111111111111111111111",
                        "to_address": "412222222222222222222222222222222222222222",
                        "amount": n
                    }}
                }]},
                "ret": [{"contractRet": "SUCCESS"}]
            }]
        })
    }

    fn num(body: &Value, field: &str) -> u64 {
        body[field].as_u64().unwrap()
    }

    /// A node whose chain is blocks 1..=head.
    fn chain(head: u64) -> impl Fn(&str, &Value, usize) -> Reply + Send + Sync + 'static {
        move |path, body, _| match path {
            "/wallet/getnowblock" => Reply::ok(chain_block(head)),
            "/wallet/getblockbynum" if num(body, "num") <= head => {
                Reply::ok(chain_block(num(body, "num")))
            }
            "/wallet/getblockbynum" => Reply::ok(json!({})),
            "/wallet/gettransactioninfobyblocknum" if num(body, "num") <= head => {
                let n = num(body, "num");
                Reply::ok(json!([{"id": txid(n), "blockNumber": n, "packingFee": 1}]))
            }
            "/wallet/gettransactioninfobyblocknum" => Reply::ok(json!([])),
            "/wallet/getblockbylimitnext" => {
                let (start, end) = (num(body, "startNum"), num(body, "endNum"));
                if end.saturating_sub(start) > MAX_RANGE {
                    return Reply::ok(json!({}));
                }
                let blocks: Vec<Value> = (start..end.min(head + 1)).map(chain_block).collect();
                Reply::ok(json!({ "block": blocks }))
            }
            _ => Reply::status(404, "not found"),
        }
    }

    #[tokio::test]
    async fn rate_limit_answer_waits_the_penalty_then_succeeds() {
        let ok = chain(50);
        let node = spawn_node(move |path, body, nth| {
            if nth == 0 {
                Reply::status(429, "Too Many Requests")
            } else {
                ok(path, body, nth)
            }
        })
        .await;
        let client = client(&node);
        let header = client.head().await.unwrap();
        assert_eq!(header.number, 50);
        let seen = node.state.seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen[1].at - seen[0].at >= Duration::from_millis(200));
        let stats = client.stats();
        assert_eq!(stats.requests(Endpoint::NowBlock), 2);
        assert_eq!(stats.errors("rate_limited"), 1);
        assert_eq!(stats.snapshot().penalties, 1);
    }

    #[tokio::test]
    async fn trongrid_suspension_notice_pauses_for_the_time_it_says() {
        let ok = chain(50);
        let node = spawn_node(move |path, body, nth| {
            if nth == 0 {
                Reply::status(
                    503,
                    json!({"Error": "The key exceeds the frequency limit(15), and the query server is suspended for 1s"})
                        .to_string(),
                )
            } else {
                ok(path, body, nth)
            }
        })
        .await;
        // The configured penalty is 200 ms: the notice's 1 s is what counts.
        let client = client(&node);
        assert_eq!(client.head().await.unwrap().number, 50);
        assert_eq!(node.count(Endpoint::NowBlock), 2);
        assert_eq!(client.stats().errors("rate_limited"), 1);
        assert_eq!(client.stats().snapshot().penalties, 1);
        let seen = node.state.seen.lock().unwrap();
        assert!(seen[1].at - seen[0].at >= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn retry_after_sets_the_pause_of_a_429() {
        let ok = chain(50);
        let node = spawn_node(move |path, body, nth| {
            if nth == 0 {
                Reply::status(429, "Too Many Requests").retry_after(1)
            } else {
                ok(path, body, nth)
            }
        })
        .await;
        let client = client(&node);
        assert_eq!(client.head().await.unwrap().number, 50);
        let seen = node.state.seen.lock().unwrap();
        assert!(seen[1].at - seen[0].at >= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_bare_503_is_retried_by_its_caller_alone() {
        let ok = chain(50);
        let node = spawn_node(move |path, body, nth| {
            if nth == 0 {
                Reply::status(503, "Service Unavailable")
            } else {
                ok(path, body, nth)
            }
        })
        .await;
        let client = TronClient::new(TronClientConfig {
            penalty: Duration::from_secs(30),
            ..config(&node)
        })
        .unwrap();
        assert_eq!(client.head().await.unwrap().number, 50);
        let stats = client.stats().snapshot();
        assert_eq!(client.stats().errors("http"), 1);
        assert_eq!(client.stats().errors("rate_limited"), 0);
        assert_eq!(stats.retries, 1);
        // Nobody else was held: no penalty gate.
        assert_eq!(stats.penalties, 0);
        assert_eq!(client.inner.limiter.penalty_until(), None);
    }

    #[tokio::test]
    async fn persistent_5xx_answers_pause_every_caller_more_and_more() {
        let node = spawn_node(|_, _, _| Reply::status(502, "Bad Gateway")).await;
        let client = TronClient::new(TronClientConfig {
            max_attempts: 6,
            ..config(&node)
        })
        .unwrap();
        assert_eq!(
            client.head().await.unwrap_err(),
            ChainError::Http { status: 502 }
        );
        assert_eq!(node.count(Endpoint::NowBlock), 6);
        // The 4th, 5th and 6th answers in a row each paused everyone.
        assert_eq!(client.stats().snapshot().penalties, 3);
    }

    #[test]
    fn what_a_refusal_means() {
        let penalty = Duration::from_secs(30);
        let notice = |secs: &str| {
            format!(
                r#"{{"Error":"The key exceeds the frequency limit(15), and the query server is suspended for {secs}"}}"#
            )
        };
        let limited = |status, pause_ms| Some(ChainError::RateLimited { status, pause_ms });
        let cases: Vec<(u16, Option<u64>, String, Option<ChainError>)> = vec![
            (200, None, "{}".into(), None),
            (200, None, notice("27s"), limited(200, 27_000)),
            (503, None, notice("30s"), limited(503, 30_000)),
            (403, Some(5), notice("s"), limited(403, 5_000)),
            (429, None, notice("s"), limited(429, 30_000)),
            (403, None, String::new(), limited(403, 30_000)),
            (
                429,
                Some(2),
                "Too Many Requests".into(),
                limited(429, 2_000),
            ),
            (503, Some(4), String::new(), limited(503, 4_000)),
            (200, None, notice("99999s"), limited(200, 600_000)),
            (
                503,
                None,
                "Service Unavailable".into(),
                Some(ChainError::Http { status: 503 }),
            ),
            (
                502,
                None,
                String::new(),
                Some(ChainError::Http { status: 502 }),
            ),
            (
                504,
                Some(9),
                String::new(),
                Some(ChainError::Http { status: 504 }),
            ),
            (
                500,
                None,
                String::new(),
                Some(ChainError::Http { status: 500 }),
            ),
            (
                404,
                None,
                String::new(),
                Some(ChainError::Http { status: 404 }),
            ),
        ];
        for (status, retry_after, body, expected) in cases {
            let got = refusal(
                status,
                retry_after.map(Duration::from_secs),
                body.as_bytes(),
                penalty,
            );
            assert_eq!(
                got, expected,
                "HTTP {status}, Retry-After {retry_after:?}, {body}"
            );
        }
    }

    #[test]
    fn pauses_for_persistent_5xx_double_up_to_the_penalty() {
        let backoff = Duration::from_millis(250);
        let penalty = Duration::from_secs(30);
        let pauses: Vec<u128> = (1..=10)
            .map(|level| unavailable_pause(level, backoff, penalty).as_millis())
            .collect();
        assert_eq!(
            pauses,
            vec![250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
        );
        assert_eq!(unavailable_pause(u32::MAX, backoff, penalty), penalty);
    }

    #[tokio::test]
    async fn rate_limits_until_the_last_attempt_are_an_error() {
        let node = spawn_node(|_, _, _| Reply::status(403, "")).await;
        let client = TronClient::new(TronClientConfig {
            penalty: Duration::from_millis(20),
            max_attempts: 2,
            ..config(&node)
        })
        .unwrap();
        assert_eq!(
            client.block(5, Lane::Head).await.unwrap_err(),
            ChainError::RateLimited {
                status: 403,
                pause_ms: 20
            }
        );
        assert_eq!(node.count(Endpoint::BlockByNum), 2);
    }

    #[tokio::test]
    async fn node_error_message_is_kept_and_not_retried() {
        let message = "class java.lang.NullPointerException : null";
        let node = spawn_node(move |_, _, _| Reply::ok(json!({ "Error": message }))).await;
        let client = client(&node);
        assert_eq!(
            client.block(7, Lane::Head).await.unwrap_err(),
            ChainError::Node(message.into())
        );
        assert_eq!(node.seen_paths(), vec![Endpoint::BlockByNum.path()]);
        assert_eq!(client.stats().errors("node_error"), 1);
    }

    #[tokio::test]
    async fn api_key_is_sent_on_every_request_and_never_shown() {
        let node = spawn_node(chain(300)).await;
        let client = client(&node);
        client.head().await.unwrap();
        client.block(10, Lane::Head).await.unwrap();
        for (_, result) in client.blocks(20, 23).await {
            result.unwrap();
        }
        let seen = node.state.seen.lock().unwrap();
        assert_eq!(seen.len(), 1 + 2 + 4);
        assert!(seen.iter().all(|s| s.api_key.as_deref() == Some(KEY)));
        let shown = format!("{client:?} {:?}", client.config());
        assert!(!shown.contains(KEY), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[tokio::test]
    async fn limiter_is_shared_by_clones() {
        let node = spawn_node(chain(50)).await;
        let client = TronClient::new(TronClientConfig {
            rate_limit_rps: 20.0,
            rate_limit_burst: 1,
            ..config(&node)
        })
        .unwrap();
        let mut tasks = JoinSet::new();
        for _ in 0..8 {
            let clone = client.clone();
            tasks.spawn(async move { clone.head().await });
        }
        for result in tasks.join_all().await {
            result.unwrap();
        }
        let seen = node.state.seen.lock().unwrap();
        assert_eq!(seen.len(), 8);
        let first = seen.iter().map(|s| s.at).min().unwrap();
        let last = seen.iter().map(|s| s.at).max().unwrap();
        // 8 requests at 20/s: 7 intervals of 50 ms. Measured where they arrive, so the first may
        // have been delayed on its way by a busy machine: 6 intervals at least, where an
        // unshared limiter would let all 8 through within a few milliseconds.
        assert!(
            last - first >= Duration::from_millis(300),
            "{:?}",
            last - first
        );
        assert_eq!(client.stats().requests(Endpoint::NowBlock), 8);
    }

    #[tokio::test]
    async fn slow_node_times_out() {
        let node = spawn_node(|_, _, _| Reply {
            delay: Duration::from_secs(5),
            ..Reply::ok(json!({}))
        })
        .await;
        let client = TronClient::new(TronClientConfig {
            timeout: Duration::from_millis(100),
            max_attempts: 2,
            ..config(&node)
        })
        .unwrap();
        assert_eq!(client.head().await.unwrap_err(), ChainError::Timeout);
        assert_eq!(node.count(Endpoint::NowBlock), 2);
        assert_eq!(client.stats().errors("timeout"), 2);
        assert_eq!(client.stats().snapshot().retries, 1);
    }

    #[tokio::test]
    async fn server_errors_are_retried() {
        let ok = chain(50);
        let node = spawn_node(move |path, body, nth| {
            if nth == 0 {
                Reply::status(500, "oops")
            } else {
                ok(path, body, nth)
            }
        })
        .await;
        let client = client(&node);
        let block = client.block(9, Lane::Head).await.unwrap();
        assert_eq!(block.header.number, 9);
        assert_eq!(node.count(Endpoint::BlockByNum), 2);
        assert_eq!(node.count(Endpoint::TransactionInfoByBlockNum), 2);
        assert_eq!(client.stats().errors("http"), 2);
    }

    #[tokio::test]
    async fn unreachable_node_is_a_transport_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let client = TronClient::new(TronClientConfig {
            url,
            retry_backoff: Duration::from_millis(1),
            ..TronClientConfig::default()
        })
        .unwrap();
        assert!(matches!(client.head().await, Err(ChainError::Transport(_))));
        assert_eq!(client.stats().errors("transport"), 3);
    }

    #[tokio::test]
    async fn range_fetch_builds_every_block() {
        let node = spawn_node(chain(300)).await;
        let client = client(&node);
        let results = client.blocks(1, 251).await;
        assert_eq!(results.len(), 250);
        for (i, (number, result)) in results.iter().enumerate() {
            assert_eq!(*number, i as u64 + 1);
            let block = result.as_ref().unwrap();
            assert_eq!(block.header.number, *number);
            assert_eq!(block.header.hash, block_hash(*number));
            assert_eq!(block.events.len(), 1);
            assert_eq!(block.events[0].uid, format!("{}_trx", txid(*number)));
        }
        let seen = node.state.seen.lock().unwrap();
        let ranges: Vec<(u64, u64)> = seen
            .iter()
            .filter(|s| s.path == Endpoint::BlockByLimitNext.path())
            .map(|s| (num(&s.body, "startNum"), num(&s.body, "endNum")))
            .collect();
        // Highest first, as the backlog is worked.
        assert_eq!(ranges, vec![(151, 251), (51, 151), (1, 51)]);
        assert_eq!(seen.len(), 3 + 250);
    }

    #[tokio::test]
    async fn range_size_is_configurable() {
        let node = spawn_node(chain(300)).await;
        let client = TronClient::new(TronClientConfig {
            range_size: 7,
            ..config(&node)
        })
        .unwrap();
        assert!(client.blocks(1, 16).await.iter().all(|(_, r)| r.is_ok()));
        assert_eq!(node.count(Endpoint::BlockByLimitNext), 3);
    }

    #[tokio::test]
    async fn blocks_missing_from_a_range_are_handled_alone() {
        let ok = chain(12);
        let node = spawn_node(move |path, body, nth| {
            if path == Endpoint::BlockByLimitNext.path() {
                // Block 11 left out; 13 does not exist yet.
                Reply::ok(json!({"block": [chain_block(10), chain_block(12)]}))
            } else {
                ok(path, body, nth)
            }
        })
        .await;
        let client = client(&node);
        let results = client.blocks(10, 14).await;
        let numbers: Vec<u64> = results.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, vec![10, 11, 12, 13]);
        for (n, result) in &results[..3] {
            assert_eq!(result.as_ref().unwrap().header.number, *n);
        }
        assert_eq!(results[3].1, Err(ChainError::NotProduced(13)));
        assert_eq!(node.count(Endpoint::BlockByNum), 1);
        assert_eq!(node.count(Endpoint::TransactionInfoByBlockNum), 3);
    }

    #[tokio::test]
    async fn without_range_fetch_bodies_come_one_by_one() {
        let node = spawn_node(chain(50)).await;
        let client = TronClient::new(TronClientConfig {
            use_range_fetch: false,
            ..config(&node)
        })
        .unwrap();
        let results = client.blocks(48, 52).await;
        assert!(results[..3].iter().all(|(_, r)| r.is_ok()));
        assert_eq!(results[3].1, Err(ChainError::NotProduced(51)));
        assert_eq!(node.count(Endpoint::BlockByNum), 4);
        assert_eq!(node.count(Endpoint::BlockByLimitNext), 0);
    }

    #[tokio::test]
    async fn head_body_is_reused_once() {
        let node = spawn_node(chain(77)).await;
        let client = client(&node);
        let head = client.head().await.unwrap();
        let block = client.block(head.number, Lane::Head).await.unwrap();
        assert_eq!(block.header, head);
        assert_eq!(node.count(Endpoint::BlockByNum), 0);
        client.block(head.number, Lane::Head).await.unwrap();
        assert_eq!(node.count(Endpoint::BlockByNum), 1);
        assert_eq!(client.stats().snapshot().head_cache_hits, 1);
    }

    #[tokio::test]
    async fn unsynced_infos_are_asked_again_once() {
        let ok = chain(50);
        let node = spawn_node(move |path, body, nth| {
            if path == Endpoint::TransactionInfoByBlockNum.path() && num(body, "num") == 5 {
                return Reply::ok(json!([]));
            }
            if path == Endpoint::TransactionInfoByBlockNum.path() && nth == 0 {
                return Reply::ok(json!([]));
            }
            ok(path, body, nth)
        })
        .await;
        let client = client(&node);
        // First infos answer `[]`, the second is good.
        assert!(client.block(9, Lane::Head).await.is_ok());
        assert_eq!(node.count(Endpoint::TransactionInfoByBlockNum), 2);
        // Always `[]`: given up after one more ask.
        assert_eq!(
            client.block(5, Lane::Head).await.unwrap_err(),
            ChainError::NodeNotSynced { block: 5, txs: 1 }
        );
        assert_eq!(node.count(Endpoint::TransactionInfoByBlockNum), 4);
    }

    #[tokio::test]
    async fn empty_answer_is_asked_again_only_below_the_head() {
        let ok = chain(50);
        let node = spawn_node(move |path, body, nth| {
            if path == Endpoint::BlockByNum.path() && nth == 0 {
                return Reply::ok(json!({}));
            }
            ok(path, body, nth)
        })
        .await;
        let client = client(&node);
        client.head().await.unwrap();
        // Below the head: the load balancer's `{}` is asked again and the block comes.
        assert_eq!(
            client.block(40, Lane::Head).await.unwrap().header.number,
            40
        );
        assert_eq!(node.count(Endpoint::BlockByNum), 2);
        // Above the head: one request, not produced.
        assert_eq!(
            client.block(51, Lane::Head).await.unwrap_err(),
            ChainError::NotProduced(51)
        );
        assert_eq!(node.count(Endpoint::BlockByNum), 3);
    }

    #[test]
    fn bad_config_is_refused_without_showing_the_key() {
        let bad_url = TronClientConfig {
            url: "ftp://node".into(),
            ..TronClientConfig::default()
        };
        assert!(matches!(
            TronClient::new(bad_url),
            Err(ClientBuildError::Url(_))
        ));
        let bad_key = TronClientConfig {
            api_key: Some("line\nbreak".into()),
            ..TronClientConfig::default()
        };
        let error = TronClient::new(bad_key).unwrap_err();
        assert!(!error.to_string().contains("line"));
    }

    #[test]
    fn https_client_builds_with_the_ring_provider() {
        let config = TronClientConfig {
            url: "https://api.trongrid.io".into(),
            ..TronClientConfig::default()
        };
        assert!(TronClient::new(config).is_ok());
    }
}
