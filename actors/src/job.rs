//! The work every worker does with a leased block: fetch it, commit it through the
//! StreamPublisher, or record the failure for the retry schedule. Shared by the TipWatcher, the
//! PriorityActor and the BacklogActors so the three paths cannot drift apart.

use crate::chain::{BlockSpans, ChainError, Lane};
use crate::clock::now_ms;
use crate::fork::ForkError;
use crate::model::Block;
use crate::services::Services;
use crate::slot::SlotId;
use crate::store::{CommitOutcome, FailOutcome, Origin, StoreError};
use crate::stream_publisher::PublisherMsg;
use crate::sync_coordinator::CoordinatorMsg;
use ractor::rpc::CallResult;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// The root span of one block's trace (one trace per block and attempt). Its fields are the
/// attributes an operator filters on in Jaeger; `hash`, `attempt`, `events` and `outcome` are
/// filled in as they become known, the `otel.*` and `error.*` ones when the attempt fails (see
/// [`crate::trace`]). Its children are the block's `fetch`, `decode` (made by the chain) and
/// `commit` (made by the StreamPublisher).
pub(crate) fn block_span(
    services: &Services,
    slot: SlotId,
    origin: Origin,
    number: u64,
) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "block",
        block = number,
        hash = tracing::field::Empty,
        path = origin.as_str(),
        slot = %slot,
        attempt = tracing::field::Empty,
        events = tracing::field::Empty,
        outcome = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        "otel.status_code" = tracing::field::Empty,
        "otel.status_description" = tracing::field::Empty,
        "error.type" = tracing::field::Empty,
        "error.message" = tracing::field::Empty,
    );
    if let Some(hook) = services.span_hook {
        hook(&span);
    }
    span
}

/// Fetches and finishes one leased block inside its own trace.
pub(crate) async fn work_one(
    services: &Services,
    slot: SlotId,
    origin: Origin,
    number: u64,
) -> Result<BlockOutcome, StoreError> {
    let span = block_span(services, slot, origin, number);
    async {
        let fetched = services.chain.block(number, origin.into()).await;
        finish_block(services, slot, origin, number, fetched).await
    }
    .instrument(span)
    .await
}

/// What became of one leased block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BlockOutcome {
    Committed(CommitOutcome),
    Failed(FailOutcome),
}

/// Commits a fetched block, or records why it could not be had. A `StoreError` means neither
/// happened: the lease stays, so the block comes back after a restart or when the lease expires.
pub(crate) async fn finish_block(
    services: &Services,
    slot: SlotId,
    origin: Origin,
    number: u64,
    fetched: Result<Block, ChainError>,
) -> Result<BlockOutcome, StoreError> {
    let span = tracing::Span::current();
    let (kind, error) = match fetched {
        Ok(block) => {
            span.record("hash", block.header.hash.as_str());
            span.record("events", block.events.len());
            match publish_linked(services, origin, Arc::new(block)).await {
                Ok(outcome) => {
                    match outcome {
                        CommitOutcome::Published { attempt, .. } => {
                            span.record("attempt", attempt);
                            span.record("outcome", "published");
                        }
                        CommitOutcome::AlreadyDone => {
                            span.record("outcome", "already_done");
                        }
                        CommitOutcome::Unlinked { .. } => {}
                    }
                    return Ok(BlockOutcome::Committed(outcome));
                }
                Err(Refusal::Store(error)) if error.is_backpressure() => {
                    // Not the block's fault: no failure counted, the lease stays.
                    span.record("outcome", "lease_kept");
                    return Err(error);
                }
                Err(refusal) => (refusal.kind(), refusal.to_string()),
            }
        }
        Err(error) => (error.kind(), error.to_string()),
    };
    // Recorded before the store is told, so that the trace says why even when that fails too.
    crate::trace::record_exception(&span, kind, &error);
    let outcome = match services
        .store
        .fail(number, &error, now_ms(), &services.settings.retry_delays_ms)
        .await
    {
        Ok(outcome) => outcome,
        Err(store_error) => {
            // Neither committed nor failed: the lease stays and the block comes back.
            span.record("outcome", "lease_kept");
            return Err(store_error);
        }
    };
    match &outcome {
        FailOutcome::Retry { attempt, .. } | FailOutcome::Dead { attempts: attempt } => {
            span.record("attempt", attempt);
        }
        FailOutcome::AlreadyDone => {}
    }
    span.record(
        "outcome",
        match outcome {
            FailOutcome::Retry { .. } => "retry",
            FailOutcome::Dead { .. } => "dead_letter",
            FailOutcome::AlreadyDone => "already_done",
        },
    );
    match &outcome {
        FailOutcome::Retry { attempt, due_ms } => tracing::warn!(
            block = number,
            %slot,
            attempt,
            retry_in_ms = due_ms.saturating_sub(now_ms()),
            %error,
            "Block failed, retry scheduled"
        ),
        FailOutcome::Dead { attempts } => tracing::error!(
            block = number,
            %slot,
            attempts,
            %error,
            "Block failed for the last time, moved to the dead-letter set"
        ),
        FailOutcome::AlreadyDone => {}
    }
    Ok(BlockOutcome::Failed(outcome))
}

/// Why a fetched block was not committed.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Fork(#[from] ForkError),
    /// Still contradicts a committed block after the walk back: this version of the block is
    /// not the node's (fetched before it switched, or from a node on another branch).
    #[error(
        "block {block} ({hash}) does not link to committed block {at}, even after the walk back"
    )]
    Unlinked { block: u64, hash: String, at: u64 },
}

impl Refusal {
    fn kind(&self) -> &'static str {
        match self {
            Refusal::Store(error) => error.kind(),
            Refusal::Fork(error) => error.kind(),
            Refusal::Unlinked { .. } => "fork_unlinked",
        }
    }
}

/// Commits the block; when it contradicts a committed block (the node switched branches), has
/// the coordinator walk back and retract the orphans, then tries once more. Never returns
/// [`CommitOutcome::Unlinked`].
async fn publish_linked(
    services: &Services,
    origin: Origin,
    block: Arc<Block>,
) -> Result<CommitOutcome, Refusal> {
    let first = publish(services, origin, Arc::clone(&block)).await?;
    let CommitOutcome::Unlinked { at } = first else {
        return Ok(first);
    };
    let number = block.header.number;
    tracing::info!(
        block = number,
        at,
        "Block contradicts a committed block: walking back"
    );
    // On a follower there is no coordinator: the leader finds the same fork from the head or
    // its finality check within a block interval or so, and this block is tried again then.
    let coordinator = services.directory.coordinator().ok_or_else(|| {
        StoreError::Unavailable(
            "the node switched branches; the leading instance walks back, this block is tried again later"
                .into(),
        )
    })?;
    let answer = coordinator
        .call(
            |reply| CoordinatorMsg::Reconcile { at, reply },
            Some(Duration::from_secs(60)),
        )
        .await
        .map_err(|e| StoreError::Unavailable(format!("sync coordinator: {e}")))?;
    match answer {
        CallResult::Success(result) => {
            result?;
        }
        CallResult::Timeout | CallResult::SenderError => {
            return Err(StoreError::Unavailable(
                "sync coordinator did not finish the walk back".into(),
            )
            .into())
        }
    }
    match publish(services, origin, Arc::clone(&block)).await? {
        CommitOutcome::Unlinked { at } => Err(Refusal::Unlinked {
            block: number,
            hash: block.header.hash.clone(),
            at,
        }),
        outcome => Ok(outcome),
    }
}

/// Commits the block once the store accepts writes: while the work is paused (the store short
/// of memory, see [`crate::backpressure`]) the block waits here with its lease, and a commit
/// refused for want of memory is tried again after a backoff, never counted as a failure.
async fn publish(
    services: &Services,
    origin: Origin,
    block: Arc<Block>,
) -> Result<CommitOutcome, StoreError> {
    let gate = &services.backpressure;
    let mut stopping = services.stopping.clone();
    loop {
        if !gate.wait_until_open(&mut stopping).await {
            return Err(StoreError::Paused(
                gate.reason()
                    .unwrap_or_else(|| "stopping while paused".into()),
            ));
        }
        match publish_once(services, origin, Arc::clone(&block)).await {
            Err(StoreError::OutOfMemory(error)) => {
                gate.out_of_memory(&error);
            }
            Ok(outcome) => {
                gate.write_succeeded();
                return Ok(outcome);
            }
            Err(error) => return Err(error),
        }
    }
}

/// Hands the block to the StreamPublisher and waits for its commit.
async fn publish_once(
    services: &Services,
    origin: Origin,
    block: Arc<Block>,
) -> Result<CommitOutcome, StoreError> {
    let publisher = services
        .directory
        .publisher()
        .ok_or_else(|| StoreError::Unavailable("stream publisher not running".into()))?;
    let answer = publisher
        .call(
            |reply| PublisherMsg::Commit {
                origin,
                block,
                reply,
            },
            Some(Duration::from_secs(30)),
        )
        .await
        .map_err(|e| StoreError::Unavailable(format!("stream publisher: {e}")))?;
    match answer {
        CallResult::Success(result) => result,
        CallResult::Timeout => Err(StoreError::Unavailable(
            "stream publisher did not answer in 30 s".into(),
        )),
        CallResult::SenderError => Err(StoreError::Unavailable(
            "stream publisher stopped before answering".into(),
        )),
    }
}

/// Splits block numbers into runs of consecutive numbers (`from..to`, end exclusive), so a
/// batch can be fetched with as few range requests as possible.
pub(crate) fn consecutive_runs(blocks: &[u64]) -> Vec<(u64, u64)> {
    let mut sorted = blocks.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for number in sorted {
        match runs.last_mut() {
            Some((_, end)) if *end == number => *end += 1,
            _ => runs.push((number, number + 1)),
        }
    }
    runs
}

/// Fetches and finishes a batch of leased blocks: runs of adjacent blocks are fetched as ranges,
/// and each block is committed (or failed) as soon as it is complete, so a worker holds a few
/// decoded blocks at a time, not its whole batch. Runs go highest first. Returns how many were
/// finished; stops at the first store error, leaving the rest leased.
pub(crate) async fn work_batch(
    services: &Services,
    slot: SlotId,
    batch: &[(u64, Origin)],
) -> Result<usize, StoreError> {
    let numbers: Vec<u64> = batch.iter().map(|(n, _)| *n).collect();
    let runs = consecutive_runs(&numbers);
    if runs.len() == batch.len() {
        // No two blocks adjacent: each is its own trace from fetch to commit.
        for (number, origin) in batch {
            work_one(services, slot, *origin, *number).await?;
        }
        return Ok(batch.len());
    }
    let origin_of: std::collections::HashMap<u64, Origin> = batch.iter().copied().collect();
    let mut finished = 0;
    for (from, to) in runs.into_iter().rev() {
        finished += work_run(services, slot, &origin_of, from, to).await?;
    }
    Ok(finished)
}

/// Blocks `from..to` of a batch, committed as they arrive. The range request is its own trace,
/// linked from each block's; each block's own fetch and decoding go into the block's trace, so
/// its root is opened before the range is asked for and covers the wait for it.
async fn work_run(
    services: &Services,
    slot: SlotId,
    origin_of: &std::collections::HashMap<u64, Origin>,
    from: u64,
    to: u64,
) -> Result<usize, StoreError> {
    let range_span =
        tracing::info_span!(parent: None, "node.get_blocks", from, to = to - 1, slot = %slot);
    let (sink, arriving) = tokio::sync::mpsc::channel(1);
    // A batch comes from one queue; its first block tells which.
    let lane = origin_of
        .get(&from)
        .copied()
        .map_or(Lane::Backlog, Lane::from);
    let mut roots: BlockSpans = (from..to)
        .filter_map(|number| {
            let origin = origin_of.get(&number).copied()?;
            let span = block_span(services, slot, origin, number);
            span.follows_from(&range_span);
            Some((number, span))
        })
        .collect();
    // The chain holds a handle on each root only while it works on that block, and the commit
    // below takes the other one, so every root ends when its block does, not with the run.
    let fetch = services
        .chain
        .blocks_into(from, to, lane, sink, roots.clone())
        .instrument(range_span.clone());
    let mut seen = std::collections::HashSet::new();
    let commit = async {
        // Owned here, so that returning early hangs up on the fetch.
        let mut arriving = arriving;
        while let Some((number, result)) = arriving.recv().await {
            let Some(origin) = origin_of.get(&number).copied() else {
                continue;
            };
            seen.insert(number);
            let span = roots
                .remove(&number)
                .unwrap_or_else(|| block_span(services, slot, origin, number));
            finish_block(services, slot, origin, number, result)
                .instrument(span)
                .await?;
        }
        Ok::<(), StoreError>(())
    };
    // A store error ends `commit`, which hangs up on the fetch and ends it too.
    let ((), committed) = tokio::join!(fetch, commit);
    committed?;
    let mut finished = seen.len();
    for number in from..to {
        if seen.contains(&number) {
            continue;
        }
        let Some(origin) = origin_of.get(&number).copied() else {
            continue;
        };
        let missing = Err(ChainError::Malformed {
            what: format!("block {number}"),
            detail: "missing from the range answer".into(),
        });
        let span = roots
            .remove(&number)
            .unwrap_or_else(|| block_span(services, slot, origin, number));
        finish_block(services, slot, origin, number, missing)
            .instrument(span)
            .await?;
        finished += 1;
    }
    Ok(finished)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::fakes::{FakeChain, FakeStore};
    use crate::stream_publisher::StreamPublisher;
    use crate::tree::TreeDeps;
    use std::sync::Arc;

    async fn services(chain: FakeChain, store: Arc<FakeStore>) -> Services {
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        let deps = TreeDeps::new(
            Arc::new(chain),
            store,
            crate::settings::Settings::for_tests(),
        );
        let services = Services::new(deps, stopping);
        let publisher = StreamPublisher {
            services: services.clone(),
        };
        ractor::Actor::spawn(None, publisher, ()).await.unwrap();
        services
    }

    fn backlog(numbers: std::ops::RangeInclusive<u64>) -> Vec<(u64, Origin)> {
        numbers.rev().map(|n| (n, Origin::Backlog)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_is_committed_highest_first_as_blocks_arrive() {
        let store = Arc::new(FakeStore::default());
        let services = services(FakeChain::with_head(100), store.clone()).await;
        let finished = work_batch(&services, SlotId::backlog(0), &backlog(41..=50))
            .await
            .unwrap();
        assert_eq!(finished, 10);
        let order: Vec<u64> = store
            .state
            .lock()
            .unwrap()
            .stream
            .iter()
            .map(|(b, _)| *b)
            .collect();
        assert_eq!(order, (41..=50).rev().collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_error_ends_the_batch_instead_of_hanging_on_the_fetch() {
        let store = Arc::new(FakeStore::default());
        store.down.store(true, std::sync::atomic::Ordering::SeqCst);
        let services = services(FakeChain::with_head(100), store.clone()).await;
        // Paused time: a hang would run into the timeout at once.
        let result = tokio::time::timeout(
            Duration::from_secs(600),
            work_batch(&services, SlotId::backlog(0), &backlog(1..=20)),
        )
        .await
        .expect("work_batch hung after a store error");
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
    }

    #[test]
    fn runs_group_consecutive_blocks_whatever_the_order() {
        assert_eq!(
            consecutive_runs(&[10, 9, 8, 5, 4, 20]),
            vec![(4, 6), (8, 11), (20, 21)]
        );
        assert_eq!(consecutive_runs(&[]), vec![]);
    }
}
