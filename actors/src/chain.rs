//! The chain as the actors see it: a head to poll and blocks to fetch, already decoded.
//!
//! The real implementation (java-tron HTTP API, rate limit, quirks) lives in the binary crate;
//! tests use in-memory fakes.

use crate::model::{Block, BlockHeader};
use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;
use tracing::Instrument;

/// Why a block or the head could not be had. Every variant is worth retrying later: the retry
/// schedule, not the error, decides when a block is given up (dead-lettered). Within one request
/// the client asks again at once only when [`ChainError::is_transient`] says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The node answered `{}`: it has not got this block (yet).
    #[error("block {0} not produced yet")]
    NotProduced(u64),
    /// The block has transactions but the node answered `[]` infos: a node behind a load
    /// balancer that is not synced. Never publish such a block empty.
    #[error("node not synced for block {block}: {txs} transactions but no transaction infos")]
    NodeNotSynced {
        /// The block asked for.
        block: u64,
        /// Its transactions.
        txs: usize,
    },
    /// An answer we cannot use: bad JSON, missing fields, infos that do not match the block.
    #[error("malformed answer for {what}: {detail}")]
    Malformed {
        /// What was asked for (`block 5`, `head`, ...).
        what: String,
        /// What is wrong with the answer.
        detail: String,
    },
    /// HTTP 200 with `{"Error": ...}`; the node's message is kept.
    #[error("node error: {0}")]
    Node(String),
    /// The node suspended us for `pause_ms`: TronGrid's notice (any status, with the
    /// suspension in its body), a 429/403, or a `Retry-After`.
    #[error("rate limited by the node (HTTP {status}): every request waits {pause_ms} ms")]
    RateLimited {
        /// The HTTP status of the refusal.
        status: u16,
        /// How long every request waits.
        pause_ms: u64,
    },
    /// Other HTTP status codes; a bare 502/503/504 from a proxy or load balancer among them.
    #[error("node answered HTTP {status}")]
    Http {
        /// The HTTP status.
        status: u16,
    },
    /// No answer within the request timeout.
    #[error("node request timed out")]
    Timeout,
    /// The request did not get an answer; the HTTP client's error is the source. The message
    /// holds its causes too: the last one is the useful part ("connection refused").
    #[error("node unreachable: {}", .0.with_causes())]
    Transport(#[source] ErrorSource),
}

impl ChainError {
    /// Worth asking again at once, within the same request: the node or the way to it failed
    /// for a moment (a timeout, a lost connection, a 5xx from a proxy or a load balancer), or
    /// it suspended us (the client holds every request for the pause first). An answer that
    /// says something about the block (`{}`, `[]` infos, `{"Error"}`, bad JSON) or any other
    /// status is not: asking again at once would get the same answer.
    pub fn is_transient(&self) -> bool {
        match self {
            ChainError::RateLimited { .. } | ChainError::Timeout | ChainError::Transport(_) => true,
            ChainError::Http { status } => *status >= 500,
            ChainError::NotProduced(_)
            | ChainError::NodeNotSynced { .. }
            | ChainError::Malformed { .. }
            | ChainError::Node(_) => false,
        }
    }

    /// Which kind of error this is, without its details.
    pub fn error_kind(&self) -> ChainErrorKind {
        match self {
            ChainError::NotProduced(_) => ChainErrorKind::NotProduced,
            ChainError::NodeNotSynced { .. } => ChainErrorKind::NodeNotSynced,
            ChainError::Malformed { .. } => ChainErrorKind::Malformed,
            ChainError::Node(_) => ChainErrorKind::Node,
            ChainError::RateLimited { .. } => ChainErrorKind::RateLimited,
            ChainError::Http { .. } => ChainErrorKind::Http,
            ChainError::Timeout => ChainErrorKind::Timeout,
            ChainError::Transport(_) => ChainErrorKind::Transport,
        }
    }

    /// A short, stable label for metrics and dead-letter records: [`ChainErrorKind::as_str`].
    pub fn kind(&self) -> &'static str {
        self.error_kind().as_str()
    }
}

/// The kinds of [`ChainError`], one per variant: what counters are indexed by
/// (`kind as usize`, in the order of [`ChainErrorKind::ALL`]) and metrics are labelled with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChainErrorKind {
    /// [`ChainError::NotProduced`]
    NotProduced,
    /// [`ChainError::NodeNotSynced`]
    NodeNotSynced,
    /// [`ChainError::Malformed`]
    Malformed,
    /// [`ChainError::Node`]
    Node,
    /// [`ChainError::RateLimited`]
    RateLimited,
    /// [`ChainError::Http`]
    Http,
    /// [`ChainError::Timeout`]
    Timeout,
    /// [`ChainError::Transport`]
    Transport,
}

impl ChainErrorKind {
    /// Every kind, in declaration order: `ALL[kind as usize] == kind`.
    pub const ALL: [ChainErrorKind; 8] = [
        ChainErrorKind::NotProduced,
        ChainErrorKind::NodeNotSynced,
        ChainErrorKind::Malformed,
        ChainErrorKind::Node,
        ChainErrorKind::RateLimited,
        ChainErrorKind::Http,
        ChainErrorKind::Timeout,
        ChainErrorKind::Transport,
    ];

    /// The label in metrics (`kind="..."`), spans and dead-letter records.
    pub fn as_str(self) -> &'static str {
        match self {
            ChainErrorKind::NotProduced => "not_produced",
            ChainErrorKind::NodeNotSynced => "not_synced",
            ChainErrorKind::Malformed => "malformed",
            ChainErrorKind::Node => "node_error",
            ChainErrorKind::RateLimited => "rate_limited",
            ChainErrorKind::Http => "http",
            ChainErrorKind::Timeout => "timeout",
            ChainErrorKind::Transport => "transport",
        }
    }
}

/// Another error kept as the source of a [`ChainError`] or a
/// [`StoreError`](crate::store::StoreError): shared, so that they stay `Clone`, and compared by
/// its text with its causes, so that `ChainError` stays `PartialEq` (tests compare errors whole).
#[derive(Clone)]
pub struct ErrorSource(Arc<dyn std::error::Error + Send + Sync>);

impl ErrorSource {
    /// Keeps `error` as the source.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        ErrorSource(Arc::new(error))
    }

    /// For a failure that has no error value to keep, only a message.
    pub fn message(text: impl Into<String>) -> Self {
        ErrorSource::new(Message(text.into()))
    }

    /// The error and its causes, `": "` between them: the causes often hold the useful part
    /// ("connection refused") that the error's own message leaves out.
    pub fn with_causes(&self) -> String {
        let mut text = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(error) = cause {
            text.push_str(": ");
            text.push_str(&error.to_string());
            cause = error.source();
        }
        text
    }
}

impl fmt::Debug for ErrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The kept error's own message; its causes are its [`source`](std::error::Error::source).
impl fmt::Display for ErrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Stands in for the kept error: its causes are this one's.
impl std::error::Error for ErrorSource {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for ErrorSource {
    fn eq(&self, other: &Self) -> bool {
        self.with_causes() == other.with_causes()
    }
}

impl Eq for ErrorSource {}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

/// A block's number and hash, without the rest of its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockId {
    /// The block number.
    pub number: u64,
    /// `blockID`, 64 hex characters.
    pub hash: String,
}

/// Whose request it is. When the node's rate limit is what bounds us, the head (and small gaps)
/// go first: they keep the stream live; the backlog fills the rest of the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// The head, small gaps and retries.
    Head,
    /// The backlog.
    Backlog,
}

/// Where [`Chain::blocks_into`] sends each block as soon as it is complete. A small capacity
/// keeps a fast node from piling decoded blocks up in memory ahead of a slower commit.
pub type BlockSink = tokio::sync::mpsc::Sender<(u64, Result<Block, ChainError>)>;

/// The root span of each block's trace, by block number, for [`Chain::blocks_into`]: the work
/// done for one block of a range (its fetch and decoding) goes into that block's own trace.
pub type BlockSpans = std::collections::HashMap<u64, tracing::Span>;

/// A source of blocks. Implementations share one rate limit across all callers.
#[async_trait]
pub trait Chain: Send + Sync + 'static {
    /// The node's head block header.
    async fn head(&self) -> Result<BlockHeader, ChainError>;

    /// The header of block `number` as the node serves it now (`/wallet/getblock` without
    /// detail): what a walk back over a fork compares with the stored hashes.
    async fn header(&self, number: u64) -> Result<BlockHeader, ChainError>;

    /// The node's irreversible ("solidified") block: at and below it the chain never changes.
    async fn finalized(&self) -> Result<BlockId, ChainError>;

    /// One block, fully decoded. Errors are never partial results: a block either comes back
    /// with every event it holds or not at all.
    async fn block(&self, number: u64, lane: Lane) -> Result<Block, ChainError>;

    /// Blocks `from..to` (end exclusive), fetched as cheaply as the node allows (the real client
    /// asks for bodies in ranges), each sent to `sink` as soon as it is complete, highest first
    /// as far as the fetching allows. Each block succeeds or fails on its own; every block of the
    /// range is sent unless the receiver hangs up, which stops the fetching. The work for a
    /// block in `spans` is done inside its span (each is dropped once its block is sent, so
    /// that it can end); other blocks' work goes into the current span.
    async fn blocks_into(
        &self,
        from: u64,
        to: u64,
        lane: Lane,
        sink: BlockSink,
        mut spans: BlockSpans,
    ) {
        for number in (from..to).rev() {
            let fetch = self.block(number, lane);
            let result = match spans.remove(&number) {
                Some(span) => fetch.instrument(span).await,
                None => fetch.await,
            };
            if sink.send((number, result)).await.is_err() {
                return;
            }
        }
    }

    /// Blocks `from..to` all together, in order (audits compare them as a whole).
    async fn blocks(&self, from: u64, to: u64) -> Vec<(u64, Result<Block, ChainError>)> {
        let (sink, mut received) = tokio::sync::mpsc::channel(16);
        let collect = async {
            let mut out = Vec::new();
            while let Some(item) = received.recv().await {
                out.push(item);
            }
            out
        };
        let fetch = self.blocks_into(from, to, Lane::Backlog, sink, BlockSpans::new());
        let ((), mut out) = tokio::join!(fetch, collect);
        out.sort_by_key(|(number, _)| *number);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_sits_at_its_own_index_with_its_own_label() {
        for (index, kind) in ChainErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, index);
        }
        let labels: Vec<&str> = ChainErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            labels,
            vec![
                "not_produced",
                "not_synced",
                "malformed",
                "node_error",
                "rate_limited",
                "http",
                "timeout",
                "transport"
            ]
        );
    }

    #[test]
    fn only_failures_of_the_moment_are_transient() {
        let cases = [
            (ChainError::NotProduced(1), false),
            (ChainError::NodeNotSynced { block: 1, txs: 1 }, false),
            (
                ChainError::Malformed {
                    what: "block 1".into(),
                    detail: "no blockID".into(),
                },
                false,
            ),
            (
                ChainError::Node("class java.lang.NullPointerException".into()),
                false,
            ),
            (
                ChainError::RateLimited {
                    status: 429,
                    pause_ms: 30_000,
                },
                true,
            ),
            (ChainError::Http { status: 404 }, false),
            (ChainError::Http { status: 499 }, false),
            (ChainError::Http { status: 500 }, true),
            (ChainError::Http { status: 503 }, true),
            (ChainError::Timeout, true),
            (ChainError::Transport(ErrorSource::message("reset")), true),
        ];
        for (error, transient) in cases {
            assert_eq!(error.is_transient(), transient, "{error}");
        }
    }

    #[test]
    fn a_transport_error_keeps_its_source_and_shows_its_causes() {
        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        #[derive(Debug, thiserror::Error)]
        #[error("tcp connect error")]
        struct Connect(#[source] std::io::Error);

        let error = ChainError::Transport(ErrorSource::new(Connect(refused)));
        assert_eq!(
            error.to_string(),
            "node unreachable: tcp connect error: connection refused"
        );
        let source = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("tcp connect error"));
        assert_eq!(error.kind(), "transport");
        assert_eq!(error.clone(), error);
    }
}
