//! The java-tron HTTP API as a [`Chain`]: one client, cloned to every worker, sharing one rate
//! limiter, one penalty gate and one set of counters.
//!
//! Retries inside the client are for the request only: the errors
//! [`ChainError::is_transient`] names (transport errors, timeouts, 5xx and rate-limit answers,
//! after the penalty), up to `max_attempts`. What the answer *means* (`{}`,
//! `[]` infos, `{"Error"}`, bad JSON) is the caller's retry schedule's business, with two cheap
//! exceptions that target TronGrid's load balancer, whose nodes are not always synced:
//! - `[]` infos for a block with transactions: the infos are asked once more straight away.
//! - `{}` for a block (or a header) at or below a head this client has already seen (so it
//!   exists): it is asked once more straight away. Above the head `{}` is the normal "not yet" and costs
//!   nothing extra.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;

use actors::chain::{BlockId, BlockSink, BlockSpans, Chain, ChainError, ErrorSource, Lane};
use actors::model::{Block, BlockHeader};
use async_trait::async_trait;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::decode::{self, RawBlock};
use super::limiter::RateLimiter;
use super::pool::{best_head, key_applies, unfit, Node, Pool};
use super::range::RANGES_AT_ONCE;
use super::refusal::{refusal, unavailable_pause};
use super::spans::{decode_span, failed_in, fetch_span, BodySource};
use super::{ClientBuildError, ClientStats, Endpoint, TronClientConfig};

/// Header TronGrid reads the API key from.
pub const API_KEY_HEADER: &str = "TRON-PRO-API-KEY";
/// Bare 5xx answers in a row (from all callers together) before every caller pauses.
const UNAVAILABLE_STREAK: u32 = 4;

/// Client of a java-tron node's HTTP API. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct TronClient {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    /// The nodes, their limiters and health; which one a request goes to.
    pub(super) pool: Pool,
    pub(super) config: TronClientConfig,
    stats: ClientStats,
    head: Mutex<Option<CachedHead>>,
    /// The highest head seen on any node: blocks at or below it exist.
    known_head: AtomicU64,
    /// With several nodes, the head last reported to the caller: a node behind it never makes
    /// the chain look as if it went backwards.
    reported_head: Mutex<Option<BlockHeader>>,
    /// Range answers in flight or being parsed: each is tens of MB (100 mainnet-sized blocks),
    /// so they take turns instead of all workers holding one at once.
    pub(super) range_permits: Semaphore,
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
    /// A client for the nodes of `config.urls`; settings it cannot use (a URL, the API key,
    /// TLS) are refused.
    pub fn new(config: TronClientConfig) -> Result<Self, ClientBuildError> {
        if config.urls.is_empty() {
            return Err(ClientBuildError::NoUrl);
        }
        crate::tls::install_crypto_provider();
        let mut nodes = Vec::with_capacity(config.urls.len());
        for url in &config.urls {
            let keyed = config.api_key.is_some()
                && key_applies(url, &config.api_key_hosts, config.urls.len());
            let http = http_client(url, config.api_key.as_deref().filter(|_| keyed), &config)?;
            nodes.push(Node::new(
                url.trim_end_matches('/').to_string(),
                keyed,
                http,
                RateLimiter::new(config.rate_limit_rps, config.rate_limit_burst),
            ));
        }
        Ok(TronClient {
            inner: Arc::new(Inner {
                pool: Pool::new(nodes, config.max_lag_blocks, config.check_interval),
                config,
                stats: ClientStats::default(),
                head: Mutex::new(None),
                known_head: AtomicU64::new(0),
                reported_head: Mutex::new(None),
                range_permits: Semaphore::new(RANGES_AT_ONCE),
            }),
        })
    }

    /// Prometheus text: the counters, and with several nodes which one is in use, their heads
    /// and health, and the switches.
    pub fn render_prometheus(&self) -> String {
        let mut out = self.inner.stats.render_prometheus();
        out.push_str(&self.inner.pool.render_prometheus());
        out
    }

    /// Each node as it stands now, in `node.urls` order.
    pub fn nodes(&self) -> Vec<NodeView> {
        let pool = &self.inner.pool;
        let healths = pool.healths();
        let best = best_head(&healths);
        let active = pool.active();
        pool.nodes
            .iter()
            .zip(healths)
            .enumerate()
            .map(|(i, (node, health))| NodeView {
                url: node.shown.clone(),
                api_key: node.keyed,
                head: (health.head > 0).then_some(health.head),
                active: i == active,
                unfit: unfit(&health, best, self.inner.config.max_lag_blocks)
                    .map(|why| why.to_string()),
            })
            .collect()
    }

    /// Checks every node's head now (one attempt each) and picks the node to use, as the
    /// daemon does every `node.check_ms`: for `status`, and for tests.
    pub async fn check_nodes(&self) {
        let all: Vec<usize> = (0..self.inner.pool.nodes.len()).collect();
        self.inner.pool.check_started();
        self.check(all).await;
        self.inner.pool.pick(None);
    }

    /// What it counted: requests by endpoint, errors by kind, penalties, latency.
    pub fn stats(&self) -> &ClientStats {
        &self.inner.stats
    }

    #[cfg(test)]
    pub(crate) fn config(&self) -> &TronClientConfig {
        &self.inner.config
    }

    /// One request, retried as the module documentation says, to the node the pool chooses
    /// (for block `need`, one known to have it). The answer is the raw body of an HTTP 2xx.
    pub(super) async fn request(
        &self,
        endpoint: Endpoint,
        body: &serde_json::Value,
        lane: Lane,
        need: Option<u64>,
    ) -> Result<Vec<u8>, ChainError> {
        self.request_from(endpoint, body, lane, need)
            .await
            .map(|(_, bytes)| bytes)
    }

    /// As [`TronClient::request`], with the node that answered.
    async fn request_from(
        &self,
        endpoint: Endpoint,
        body: &serde_json::Value,
        lane: Lane,
        need: Option<u64>,
    ) -> Result<(usize, Vec<u8>), ChainError> {
        let inner = &*self.inner;
        self.maybe_check();
        let max_attempts = inner.config.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let choice = inner.pool.pick(need);
            let node = &inner.pool.nodes[choice.index];
            // A fit node's caller leaves a penalty that closes on it for another node; with no
            // other node to go to, it waits the penalty out as a single node's caller does.
            if !node
                .limiter
                .acquire_or_leave(lane, choice.fit && inner.pool.several())
                .await
            {
                continue;
            }
            inner.stats.attempt(endpoint);
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
            let result = tokio::time::timeout(timeout, self.send(node, endpoint, body))
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
                    node.answered();
                    return Ok((choice.index, bytes));
                }
                Err(error) => error,
            };
            inner.stats.error(&error);
            self.note_failure(choice.index, endpoint, &error);
            if !error.is_transient() || attempt >= max_attempts {
                return Err(error);
            }
            tracing::debug!(endpoint = endpoint.label(), attempt, error = %error, "retrying");
            inner.stats.retry();
            let moved = inner.pool.several() && inner.pool.pick(need).index != choice.index;
            if !matches!(error, ChainError::RateLimited { .. }) && !moved {
                // Only this caller backs off: a proxy's bare 5xx says nothing about the others'
                // requests. The limiter already holds rate-limited callers for the pause, and
                // a retry that goes to another node need not wait.
                let backoff = inner.config.retry_backoff * 2u32.pow((attempt - 1).min(3));
                tokio::time::sleep(backoff).await;
            }
            attempt += 1;
        }
    }

    /// What a failed attempt says about its node: a suspension closes its penalty gate, a bare
    /// 5xx counts toward a streak, no answer at all toward being down.
    fn note_failure(&self, index: usize, endpoint: Endpoint, error: &ChainError) {
        let inner = &*self.inner;
        let node = &inner.pool.nodes[index];
        match error {
            ChainError::RateLimited { pause_ms, .. } => {
                let pause = Duration::from_millis(*pause_ms);
                node.limiter.penalize(pause);
                inner.stats.penalty();
                tracing::warn!(
                    endpoint = endpoint.label(),
                    node = %node.shown,
                    error = %error,
                    pause_ms,
                    "Rate limited by the node: every request to it waits"
                );
            }
            ChainError::Http { status } if error.is_transient() => {
                self.note_unavailable(node, endpoint, *status);
            }
            ChainError::Timeout | ChainError::Transport(_) => node.unreachable(),
            _ => {}
        }
    }

    /// A bare 5xx. One now and then (a proxy, a load balancer) costs only its caller a short
    /// backoff. When [`UNAVAILABLE_STREAK`] come in a row the node itself is down: every caller
    /// pauses, twice as long at each further escalation, up to the penalty. Answers to requests
    /// sent before a pause began do not escalate it (a burst that fails twenty requests in flight
    /// is one piece of evidence, not twenty).
    fn note_unavailable(&self, node: &Node, endpoint: Endpoint, status: u16) {
        let inner = &*self.inner;
        let streak = node.unavailable_streak.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < UNAVAILABLE_STREAK || node.limiter.penalty_until().is_some() {
            return;
        }
        let level = node.unavailable_level.fetch_add(1, Ordering::Relaxed) + 1;
        let pause = unavailable_pause(level, inner.config.retry_backoff, inner.config.penalty);
        node.limiter.penalize(pause);
        inner.stats.penalty();
        tracing::warn!(
            endpoint = endpoint.label(),
            node = %node.shown,
            status,
            in_a_row = streak,
            pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
            "The node keeps answering HTTP 5xx: every request to it waits"
        );
    }

    /// Starts a check of the nodes' heads in the background when one is due (several nodes
    /// only).
    fn maybe_check(&self) {
        if let Some(due) = self.inner.pool.due_for_check() {
            let client = self.clone();
            tokio::spawn(async move { client.check(due).await });
        }
    }

    /// One `getnowblock` to each of `nodes`, at once, one attempt each; a node whose penalty
    /// gate is closed is left alone (knocking would extend a suspension).
    async fn check(&self, nodes: Vec<usize>) {
        let mut checks = tokio::task::JoinSet::new();
        for index in nodes {
            let client = self.clone();
            checks.spawn(async move { client.check_one(index).await });
        }
        checks.join_all().await;
        self.inner.pool.checked();
    }

    async fn check_one(&self, index: usize) {
        let inner = &*self.inner;
        let node = &inner.pool.nodes[index];
        if !node.limiter.acquire_or_leave(Lane::Head, true).await {
            return;
        }
        inner.stats.attempt(Endpoint::NowBlock);
        let result = tokio::time::timeout(
            inner.config.timeout,
            self.send(node, Endpoint::NowBlock, &json!({})),
        )
        .await
        .unwrap_or(Err(ChainError::Timeout))
        .and_then(|bytes| decode::parse_head(&bytes));
        match result {
            Ok(block) => {
                node.answered();
                node.saw_head(block.number());
                inner
                    .known_head
                    .fetch_max(block.number(), Ordering::Relaxed);
            }
            Err(error) => {
                inner.stats.error(&error);
                tracing::debug!(node = %node.shown, error = %error, "Node check failed");
                self.note_failure(index, Endpoint::NowBlock, &error);
            }
        }
    }

    async fn send(
        &self,
        node: &Node,
        endpoint: Endpoint,
        body: &serde_json::Value,
    ) -> Result<Vec<u8>, ChainError> {
        let url = format!("{}{}", node.base, endpoint.path());
        let response = node
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
    pub(super) fn counted<T>(&self, result: Result<T, ChainError>) -> Result<T, ChainError> {
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
            self.inner.stats.head_cache_hit();
            c.block
        })
    }

    pub(super) fn known_head(&self) -> u64 {
        self.inner.known_head.load(Ordering::Relaxed)
    }

    async fn fetch_body(&self, number: u64, lane: Lane) -> Result<RawBlock, ChainError> {
        let mut asked = 0;
        loop {
            asked += 1;
            let bytes = self
                .request(
                    Endpoint::BlockByNum,
                    &json!({ "num": number }),
                    lane,
                    Some(number),
                )
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

    /// `block` without the events `[filter]` does not keep: the narrowest place, before the
    /// block waits in a worker's batch and before its commit.
    fn filtered(&self, mut block: Block) -> Block {
        let filter = &self.inner.config.filter;
        if !filter.is_empty() {
            block.events.retain(|event| filter.keeps_event(&event.body));
            block.events.shrink_to_fit();
        }
        block
    }

    /// The events of a body, with its transaction infos. The infos are asked for within the
    /// block's `fetch` span, which ends there; decoding is a `decode` span beside it.
    pub(super) async fn complete(
        &self,
        block: RawBlock,
        lane: Lane,
        mut fetch: tracing::Span,
        body: BodySource,
    ) -> Result<Block, ChainError> {
        let number = block.number();
        let mut asked = 0;
        loop {
            asked += 1;
            let infos = self
                .request(
                    Endpoint::TransactionInfoByBlockNum,
                    &json!({ "num": number }),
                    lane,
                    Some(number),
                )
                .instrument(fetch.clone())
                .await;
            let infos = failed_in(&fetch, infos)?;
            // The last handle: the fetch ends before decoding starts.
            drop(fetch);
            let decode = decode_span(number);
            let result = decode.in_scope(|| {
                failed_in(
                    &decode,
                    self.counted(decode::decode_raw_block(&block, &infos)),
                )
                .map(|block| self.filtered(block))
            });
            match result {
                Err(ChainError::NodeNotSynced { .. }) if asked == 1 => {
                    tracing::debug!(number, "no transaction infos: asking again");
                    fetch = fetch_span(number, body);
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl Chain for TronClient {
    /// The head of the node in use. With several nodes, never lower than a head reported
    /// before: a node behind it (the daemon just moved to it) answers the last one again, so
    /// the chain never looks as if it went backwards; its blocks come from nodes that have them.
    async fn head(&self) -> Result<BlockHeader, ChainError> {
        let (index, bytes) = self
            .request_from(Endpoint::NowBlock, &json!({}), Lane::Head, None)
            .await?;
        let block = self.counted(decode::parse_head(&bytes))?;
        let header = block.header().clone();
        let inner = &*self.inner;
        inner.pool.nodes[index].saw_head(header.number);
        inner.known_head.fetch_max(header.number, Ordering::Relaxed);
        if inner.pool.several() {
            let mut reported = inner
                .reported_head
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match reported.as_ref() {
                Some(before) if before.number > header.number => return Ok(before.clone()),
                _ => *reported = Some(header.clone()),
            }
        }
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

    async fn header(&self, number: u64) -> Result<BlockHeader, ChainError> {
        // A string, as the node's own docs send it: `id_or_num` is also a blockID.
        let body = json!({ "id_or_num": number.to_string(), "detail": false });
        let mut asked = 0;
        loop {
            asked += 1;
            let bytes = self
                .request(Endpoint::Block, &body, Lane::Head, Some(number))
                .await?;
            match self.counted(decode::parse_header(number, &bytes)) {
                Err(ChainError::NotProduced(_)) if asked == 1 && number <= self.known_head() => {
                    tracing::debug!(number, "header below the head answered {{}}: asking again");
                }
                other => return other,
            }
        }
    }

    async fn finalized(&self) -> Result<BlockId, ChainError> {
        let bytes = self
            .request(Endpoint::NodeInfo, &json!({}), Lane::Head, None)
            .await?;
        self.counted(decode::parse_finalized(&bytes))
    }

    async fn block(&self, number: u64, lane: Lane) -> Result<Block, ChainError> {
        if let Some(body) = self.take_cached_head(number) {
            let fetch = fetch_span(number, BodySource::Head);
            return self.complete(body, lane, fetch, BodySource::Head).await;
        }
        let fetch = fetch_span(number, BodySource::Node);
        let body = self
            .fetch_body(number, lane)
            .instrument(fetch.clone())
            .await;
        let body = failed_in(&fetch, body)?;
        self.complete(body, lane, fetch, BodySource::Node).await
    }

    async fn blocks_into(
        &self,
        from: u64,
        to: u64,
        lane: Lane,
        sink: BlockSink,
        mut spans: BlockSpans,
    ) {
        self.fetch_blocks(from, to, lane, &sink, &mut spans).await
    }
}

/// One node as the client sees it now, for `status` and tests.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NodeView {
    /// Its URL without credentials.
    pub url: String,
    /// Whether the API key is sent to it.
    pub api_key: bool,
    /// Its head as last answered.
    pub head: Option<u64>,
    /// Whether requests go to it now.
    pub active: bool,
    /// Why it is passed over, if it is.
    pub unfit: Option<String>,
}

/// The HTTP client of one node: the API key (when it goes there) as a default header.
fn http_client(
    url: &str,
    api_key: Option<&str>,
    config: &TronClientConfig,
) -> Result<reqwest::Client, ClientBuildError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|_| ClientBuildError::Url(super::pool::shown_url(url)))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ClientBuildError::Url(super::pool::shown_url(url)));
    }
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = api_key {
        let mut value =
            reqwest::header::HeaderValue::from_str(key).map_err(|_| ClientBuildError::ApiKey)?;
        // Keeps it out of reqwest's own Debug output.
        value.set_sensitive(true);
        headers.insert(API_KEY_HEADER, value);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(config.timeout)
        .user_agent(concat!("tron-actors/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ClientBuildError::Http(ErrorSource::new(e)))
}

/// A request that got no answer: a timeout is its own kind, anything else keeps the HTTP
/// client's error as the source.
fn transport_error(mut error: reqwest::Error) -> ChainError {
    if error.is_timeout() {
        return ChainError::Timeout;
    }
    // The message names the URL: as logs show node URLs, without credentials or query.
    if let Some(url) = error.url_mut() {
        if let Ok(shown) = reqwest::Url::parse(&super::pool::shown_url(url.as_str())) {
            *url = shown;
        }
    }
    ChainError::Transport(ErrorSource::new(error))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::Config;
    use crate::tron::test_node::*;
    use actors::chain::ChainErrorKind;
    use std::sync::atomic::Ordering;
    use tokio::task::JoinSet;

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
        assert_eq!(stats.errors(ChainErrorKind::RateLimited), 1);
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
        assert_eq!(client.stats().errors(ChainErrorKind::RateLimited), 1);
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
        assert_eq!(client.stats().errors(ChainErrorKind::Http), 1);
        assert_eq!(client.stats().errors(ChainErrorKind::RateLimited), 0);
        assert_eq!(stats.retries, 1);
        // Nobody else was held: no penalty gate.
        assert_eq!(stats.penalties, 0);
        assert_eq!(client.inner.pool.nodes[0].limiter.penalty_until(), None);
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
        assert_eq!(client.stats().errors(ChainErrorKind::Node), 1);
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
        assert_eq!(client.stats().errors(ChainErrorKind::Timeout), 2);
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
        assert_eq!(client.stats().errors(ChainErrorKind::Http), 2);
    }

    #[tokio::test]
    async fn unreachable_node_is_a_transport_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let client = TronClient::new(TronClientConfig {
            urls: vec![url],
            retry_backoff: Duration::from_millis(1),
            ..Config::default().client_config()
        })
        .unwrap();
        let error = client.head().await.unwrap_err();
        assert!(matches!(error, ChainError::Transport(_)), "{error:?}");
        // The causes are in the message, and the HTTP client's error is kept as the source.
        assert!(error.to_string().contains("onnection refused"), "{error}");
        assert!(std::error::Error::source(&error).is_some());
        assert_eq!(client.stats().errors(ChainErrorKind::Transport), 3);
    }

    #[tokio::test]
    async fn a_transport_error_does_not_show_credentials_of_the_url() {
        let url = unreachable_url().replace("http://", "http://user:pa55@");
        let client = TronClient::new(TronClientConfig {
            urls: vec![format!("{url}/?apikey=s3cret")],
            max_attempts: 1,
            ..Config::default().client_config()
        })
        .unwrap();
        let error = client.head().await.unwrap_err().to_string();
        // reqwest leaves the credentials out itself; the query is ours to hide.
        assert!(error.contains("?REDACTED"), "{error}");
        assert!(
            !error.contains("pa55") && !error.contains("s3cret"),
            "{error}"
        );
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

    #[tokio::test]
    async fn a_header_is_the_blocks_header_as_the_node_serves_it() {
        let (sim, client) = sim_node(100, 0.0, tron_sim::SimFaults::none()).await;
        let n = sim.chain().head() - 3;
        let header = client.header(n).await.unwrap();
        assert_eq!(header, sim.chain().expected_block(n).unwrap().header);
        assert_eq!(client.stats().requests(Endpoint::Block), 1);
        assert_eq!(client.stats().requests(Endpoint::BlockByNum), 0);
        assert!(sim
            .request_counts()
            .contains(&("/wallet/getblock".to_string(), 1)));
    }

    #[tokio::test]
    async fn a_header_not_produced_yet_is_not_produced() {
        let (sim, client) = sim_node(100, 0.0, tron_sim::SimFaults::none()).await;
        let next = sim.chain().head() + 1;
        assert_eq!(
            client.header(next).await.unwrap_err(),
            ChainError::NotProduced(next)
        );
        assert_eq!(client.stats().requests(Endpoint::Block), 1);
    }

    #[tokio::test]
    async fn a_header_of_another_block_is_malformed() {
        let node = spawn_node(|_, _, _| Reply::ok(chain_block(8))).await;
        let client = client(&node);
        let error = client.header(7).await.unwrap_err();
        assert!(
            matches!(&error, ChainError::Malformed { detail, .. } if detail.contains("block 8")),
            "{error:?}"
        );
        let seen = node.state.seen.lock().unwrap();
        assert_eq!(seen[0].path, "/wallet/getblock");
        assert_eq!(seen[0].body, json!({"id_or_num": "7", "detail": false}));
    }

    #[tokio::test]
    async fn finalized_is_the_irreversible_block_19_below_the_head() {
        let (sim, client) = sim_node(100, 0.0, tron_sim::SimFaults::none()).await;
        let solid = sim.chain().head() - tron_sim::SOLID_LAG;
        assert_eq!(
            client.finalized().await.unwrap(),
            BlockId {
                number: solid,
                hash: sim.chain().expected_block(solid).unwrap().header.hash,
            }
        );
        assert_eq!(client.stats().requests(Endpoint::NodeInfo), 1);
        assert!(sim
            .request_counts()
            .contains(&("/wallet/getnodeinfo".to_string(), 1)));
    }

    #[tokio::test]
    async fn a_node_info_without_a_readable_solidity_block_is_malformed() {
        let id = block_hash(12);
        let answers = [
            json!({"block": format!("Num:20,ID:{}", block_hash(20))}),
            json!({"solidityBlock": "Num:12"}),
            json!({"solidityBlock": format!("Num:13,ID:{id}")}),
            json!({"solidityBlock": format!("Num:12,ID:{}", &id[..60])}),
            json!({"solidityBlock": 12}),
        ];
        for answer in answers {
            let node = spawn_node(move |_, _, _| Reply::ok(answer.clone())).await;
            let error = client(&node).finalized().await.unwrap_err();
            assert!(
                matches!(&error, ChainError::Malformed { detail, .. } if detail.contains("solidityBlock")),
                "{error:?}"
            );
        }
        let node = spawn_node(|_, _, _| Reply::ok(json!({"Error": "busy"}))).await;
        assert_eq!(
            client(&node).finalized().await.unwrap_err(),
            ChainError::Node("busy".into())
        );
    }

    #[tokio::test]
    async fn a_block_whose_infos_come_from_its_other_version_is_refused() {
        let faults = tron_sim::SimFaults {
            fork_race_rate: 1.0,
            ..tron_sim::SimFaults::none()
        };
        let (sim, client) = sim_node(200, 1.0, faults).await;
        let chain = sim.chain();
        let head = chain.head();
        // Forked blocks above the irreversible head: their infos come from the other version.
        let raced: Vec<u64> = chain
            .forks_between(head - tron_sim::SOLID_LAG + 1, head)
            .into_iter()
            .flat_map(|(start, depth)| start..start + depth)
            .filter(|&n| n > head - tron_sim::SOLID_LAG && n <= head)
            .collect();
        assert!(!raced.is_empty());
        for &n in &raced {
            let error = client.block(n, Lane::Head).await.unwrap_err();
            assert!(
                matches!(error, ChainError::Malformed { .. }),
                "{n}: {error:?}"
            );
        }
        assert!(sim
            .fault_counts()
            .contains(&("fork_race", raced.len() as u64)));
        // A block with one version is fetched whole.
        let single = head;
        assert!(chain
            .forks_between(single, single)
            .iter()
            .all(|&(s, d)| single >= s + d));
        assert_eq!(
            client.block(single, Lane::Head).await.unwrap(),
            chain.expected_block(single).unwrap()
        );
    }

    #[test]
    fn bad_config_is_refused_without_showing_the_key() {
        let bad_url = TronClientConfig {
            urls: vec!["ftp://node".into()],
            ..Config::default().client_config()
        };
        assert!(matches!(
            TronClient::new(bad_url),
            Err(ClientBuildError::Url(_))
        ));
        let bad_key = TronClientConfig {
            api_key: Some("line\nbreak".into()),
            ..Config::default().client_config()
        };
        let error = TronClient::new(bad_key).unwrap_err();
        assert!(!error.to_string().contains("line"));
    }

    #[test]
    fn https_client_builds_with_the_ring_provider() {
        let config = TronClientConfig {
            urls: vec!["https://api.trongrid.io".into()],
            ..Config::default().client_config()
        };
        assert!(TronClient::new(config).is_ok());
    }

    /// A client of `nodes`, in that order; the key goes to hosts named `localhost` only.
    fn several(nodes: &[&TestNode]) -> TronClient {
        TronClient::new(TronClientConfig {
            urls: nodes.iter().map(|n| n.url.clone()).collect(),
            api_key_hosts: vec!["localhost".into()],
            max_lag_blocks: 5,
            ..config(nodes[0])
        })
        .unwrap()
    }

    fn unreachable_url() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        url
    }

    #[tokio::test]
    async fn a_request_moves_to_the_next_node_when_the_first_does_not_answer() {
        let dead = TestNode {
            url: unreachable_url(),
            state: spawn_node(chain(1)).await.state,
        };
        let live = spawn_node(chain(50)).await;
        let client = several(&[&dead, &live]);
        // The check finds it silent once: one failure is not yet down.
        client.check_nodes().await;
        assert!(client.nodes()[0].active);
        assert_eq!(client.head().await.unwrap().number, 50);
        assert_eq!(client.stats().errors(ChainErrorKind::Transport), 2);
        assert_eq!(
            client.block(49, Lane::Head).await.unwrap().header.number,
            49
        );
        let nodes = client.nodes();
        assert!(!nodes[0].active && nodes[1].active, "{nodes:?}");
        assert_eq!(
            nodes[0].unfit.as_deref(),
            Some("it does not answer (2 failures in a row)")
        );
        assert_eq!(client.inner.pool.switches(), 1);
        assert!(client.render_prometheus().contains(&format!(
            "tron_actors_node_active{{url=\"{}\"}} 1",
            live.url
        )));
    }

    #[tokio::test]
    async fn a_suspension_of_one_node_does_not_hold_requests_to_the_other() {
        let ok = chain(50);
        let limited = spawn_node(move |path, body, nth| {
            if path == Endpoint::NowBlock.path() {
                Reply::status(429, "Too Many Requests").retry_after(60)
            } else {
                ok(path, body, nth)
            }
        })
        .await;
        let other = spawn_node(chain(50)).await;
        let client = several(&[&limited, &other]);
        client.check_nodes().await;
        assert_eq!(client.head().await.unwrap().number, 50);
        // Still suspended for about a minute when the head came from the other node, which
        // never waited for it.
        let suspended = client.inner.pool.nodes[0].limiter.penalty_until().unwrap();
        assert!(suspended > Instant::now() + Duration::from_secs(50));
        assert!(client.inner.pool.nodes[1].limiter.penalty_until().is_none());
        // Nobody knocks at the suspended node again: its one refusal.
        assert_eq!(limited.count(Endpoint::NowBlock), 1);
        assert_eq!(
            client.block(40, Lane::Head).await.unwrap().header.number,
            40
        );
        assert_eq!(limited.count(Endpoint::BlockByNum), 0);
    }

    #[tokio::test]
    async fn a_block_above_a_nodes_head_is_asked_from_a_node_that_has_it() {
        let behind = spawn_node(chain(47)).await;
        let ahead = spawn_node(chain(50)).await;
        let client = several(&[&behind, &ahead]);
        client.check_nodes().await;
        // 3 behind, within the allowed 5: the first node stays in use...
        assert!(client.nodes()[0].active);
        // ...but a block it has not got is asked from the node that has it.
        assert_eq!(
            client.block(49, Lane::Head).await.unwrap().header.number,
            49
        );
        assert_eq!(behind.count(Endpoint::BlockByNum), 0);
        assert_eq!(behind.count(Endpoint::TransactionInfoByBlockNum), 0);
        assert_eq!(ahead.count(Endpoint::BlockByNum), 1);
        // One it has comes from it.
        client.block(40, Lane::Head).await.unwrap();
        assert_eq!(behind.count(Endpoint::BlockByNum), 1);
        assert_eq!(ahead.count(Endpoint::BlockByNum), 1);
        // A range ending above its head too.
        for (_, block) in client.blocks(45, 49).await {
            block.unwrap();
        }
        assert_eq!(behind.count(Endpoint::BlockByLimitNext), 0);
        assert_eq!(ahead.count(Endpoint::BlockByLimitNext), 1);
    }

    #[tokio::test]
    async fn the_head_never_goes_back_when_the_client_moves_to_a_node_behind() {
        let refuse = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let refusing = refuse.clone();
        let ok = chain(48);
        let first = spawn_node(move |path, body, nth| {
            if refusing.load(Ordering::Relaxed) {
                Reply::status(429, "Too Many Requests").retry_after(1)
            } else {
                ok(path, body, nth)
            }
        })
        .await;
        let second = spawn_node(chain(50)).await;
        let client = several(&[&first, &second]);
        // The first node suspends us: the head comes from the second.
        client.check_nodes().await;
        assert_eq!(client.head().await.unwrap().number, 50);
        refuse.store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // Its suspension over, the first node (2 behind: fit) is used again; its head, 48, is
        // below the one reported: the chain does not go back.
        let head = client.head().await.unwrap();
        assert_eq!(head.number, 50);
        assert_eq!(head.hash, block_hash(50));
        let nodes = client.nodes();
        assert!(nodes[0].active, "{nodes:?}");
        assert_eq!(nodes[0].head, Some(48));
        assert_eq!(client.inner.pool.switches(), 2);
        // Block 50 comes from the node that has it.
        client.block(50, Lane::Head).await.unwrap();
        assert_eq!(first.count(Endpoint::TransactionInfoByBlockNum), 0);
    }

    #[tokio::test]
    async fn the_api_key_goes_only_to_the_hosts_that_need_it() {
        let keyed = spawn_node(chain(50)).await;
        let keyed = TestNode {
            url: keyed.url.replace("127.0.0.1", "localhost"),
            state: keyed.state,
        };
        let plain = spawn_node(chain(50)).await;
        let client = several(&[&keyed, &plain]);
        client.check_nodes().await;
        let keys = |node: &TestNode| -> Vec<Option<String>> {
            node.state
                .seen
                .lock()
                .unwrap()
                .iter()
                .map(|s| s.api_key.clone())
                .collect()
        };
        assert_eq!(keys(&keyed), vec![Some(KEY.to_string())]);
        assert_eq!(keys(&plain), vec![None]);
        let nodes = client.nodes();
        assert!(nodes[0].api_key && !nodes[1].api_key);
    }
}
