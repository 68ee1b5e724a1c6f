//! Blocks in ranges: the bodies of consecutive blocks come up to [`MAX_RANGE`] to a
//! `getblockbylimitnext` answer instead of one `getblockbynum` each; each block is then
//! completed (its transaction infos) and sent on its own as soon as it is.

use std::collections::BTreeMap;
use std::sync::Arc;

use actors::chain::{BlockSink, BlockSpans, Chain, ChainError, ErrorSource, Lane};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::decode::{self, RawBlock};
use super::spans::{failed_in, fetch_span, BodySource};
use super::{Endpoint, TronClient};

/// The most blocks `getblockbylimitnext` gives in one answer; more answers `{}`.
pub const MAX_RANGE: u64 = 100;
/// Range requests (and their parsing) at once, for all workers together.
pub(super) const RANGES_AT_ONCE: usize = 2;

impl TronClient {
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
                Some(end - 1),
            )
            .await?;
        let mut blocks = self.counted(decode::parse_block_range(&bytes))?;
        // Anything outside the asked range is not ours to use.
        blocks.retain(|n, _| (start..end).contains(n));
        Ok(blocks)
    }

    /// Blocks `[from, to)`, one range at a time so that no more than one range of bodies is
    /// held in memory, each block sent to `sink` as soon as it is complete.
    pub(super) async fn fetch_blocks(
        &self,
        from: u64,
        to: u64,
        lane: Lane,
        sink: &BlockSink,
        spans: &mut BlockSpans,
    ) {
        let range_size = self.inner.config.range_size.clamp(1, MAX_RANGE);
        let mut end = to;
        // Highest range first, as the backlog wants.
        while end > from {
            let start = end.saturating_sub(range_size).max(from);
            if !self.fetch_chunk(start, end, lane, sink, spans).await {
                return;
            }
            end = start;
        }
    }

    /// Returns false when the receiver hung up. Each block's work runs in its span from `spans`
    /// (taken out, so that it ends once the block is sent), else in the current span.
    async fn fetch_chunk(
        &self,
        start: u64,
        end: u64,
        lane: Lane,
        sink: &BlockSink,
        spans: &mut BlockSpans,
    ) -> bool {
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
                        Some(Ok(block)) => {
                            let fetch = fetch_span(number, BodySource::Range);
                            client.complete(block, lane, fetch, BodySource::Range).await
                        }
                        Some(Err(error)) => {
                            let fetch = fetch_span(number, BodySource::Range);
                            failed_in(&fetch, Err(error))
                        }
                        None => client.block(number, lane).await,
                    };
                    // Sent while holding the permit: a slow receiver slows the fetching down
                    // instead of letting finished blocks pile up.
                    let sent = sink.send((number, result)).await.is_ok();
                    (number, sent)
                }
                .instrument(spans.remove(&number).unwrap_or_else(tracing::Span::current)),
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
                let failed = Err(ChainError::Transport(ErrorSource::message(
                    "block fetch task failed",
                )));
                open = sink.send((number, failed)).await.is_ok();
            }
        }
        open
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::tron::test_node::*;
    use crate::tron::TronClientConfig;

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
}
