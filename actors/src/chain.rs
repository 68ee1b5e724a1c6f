//! The chain as the actors see it: a head to poll and blocks to fetch, already decoded.
//!
//! The real implementation (java-tron HTTP API, rate limit, quirks) lives in the binary crate;
//! tests use in-memory fakes.

use crate::model::{Block, BlockHeader};
use async_trait::async_trait;
use tracing::Instrument;

/// Why a block or the head could not be had. Every variant is worth retrying later: the retry
/// schedule, not the error, decides when a block is given up (dead-lettered).
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
    /// No connection (refused, reset, DNS, TLS).
    #[error("node unreachable: {0}")]
    Transport(String),
}

impl ChainError {
    /// A short, stable label for metrics and dead-letter records.
    pub fn kind(&self) -> &'static str {
        match self {
            ChainError::NotProduced(_) => "not_produced",
            ChainError::NodeNotSynced { .. } => "not_synced",
            ChainError::Malformed { .. } => "malformed",
            ChainError::Node(_) => "node_error",
            ChainError::RateLimited { .. } => "rate_limited",
            ChainError::Http { .. } => "http",
            ChainError::Timeout => "timeout",
            ChainError::Transport(_) => "transport",
        }
    }
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
