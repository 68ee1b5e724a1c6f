//! StreamPublisher: the only writer of the event stream. Each block is one atomic commit (the
//! store's exactly-once step), so a block re-processed after any crash is written at most once.
//!
//! A few commits are in flight at once: while Redis runs one block's script, the next block's
//! arguments are built and sent, so neither side waits for the other. Their order does not
//! matter: each commit stands alone, and the done marker makes a second one of the same block a
//! no-op.

use crate::clock::now_ms;
use crate::model::Block;
use crate::services::Services;
use crate::store::{CommitOutcome, Origin, StoreError};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// Commits in flight at once.
pub(crate) const COMMITS_IN_FLIGHT: usize = 4;

pub(crate) struct StreamPublisher {
    pub services: Services,
}

pub(crate) enum PublisherMsg {
    Commit {
        origin: Origin,
        block: Arc<Block>,
        reply: RpcReplyPort<Result<CommitOutcome, StoreError>>,
    },
}

pub(crate) struct PublisherState {
    in_flight: Arc<Semaphore>,
    commits: tokio::task::JoinSet<()>,
}

impl Actor for StreamPublisher {
    type Msg = PublisherMsg;
    type State = PublisherState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        self.services.directory.set_publisher(myself);
        Ok(PublisherState {
            in_flight: Arc::new(Semaphore::new(COMMITS_IN_FLIGHT)),
            commits: tokio::task::JoinSet::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PublisherMsg::Commit {
                origin,
                block,
                reply,
            } => {
                // Waiting here holds the mailbox: at most COMMITS_IN_FLIGHT commits run.
                let permit = state.in_flight.clone().acquire_owned().await?;
                // Finished commits are reaped as we go, so the set stays small.
                while state.commits.try_join_next().is_some() {}
                let span = tracing::info_span!(
                    "commit",
                    block = block.header.number,
                    events = block.events.len(),
                    path = origin.as_str(),
                    "otel.status_code" = tracing::field::Empty,
                    "otel.status_description" = tracing::field::Empty,
                    "error.type" = tracing::field::Empty,
                    "error.message" = tracing::field::Empty,
                );
                let services = self.services.clone();
                state.commits.spawn(
                    async move {
                        let result = commit(&services, origin, &block).await;
                        drop(permit);
                        // The caller may have given up waiting; the commit stands either way.
                        let _ = reply.send(result);
                    }
                    .instrument(span),
                );
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Commits already sent finish (their blocks' workers are waiting for them).
        while state.commits.join_next().await.is_some() {}
        Ok(())
    }
}

async fn commit(
    services: &Services,
    origin: Origin,
    block: &Block,
) -> Result<CommitOutcome, StoreError> {
    let started = std::time::Instant::now();
    // The head's block is leased by the leader: its commit is fenced by the leader's term.
    // Queue work is anyone's, and the done mark alone keeps it exactly once.
    let by = crate::store::Committer {
        instance: services.settings.instance,
        term: (origin == Origin::Tip).then(|| services.term()).flatten(),
    };
    let result = services.store.commit_by(origin, block, now_ms(), by).await;
    services.stats.commit_latency.observe(started.elapsed());
    match &result {
        Ok(CommitOutcome::Published { events, .. }) => tracing::debug!(
            block = block.header.number,
            events,
            path = origin.as_str(),
            "Block committed"
        ),
        Ok(CommitOutcome::AlreadyDone) => tracing::info!(
            block = block.header.number,
            "Block was already committed, nothing written"
        ),
        Ok(CommitOutcome::Unlinked { at }) => tracing::info!(
            block = block.header.number,
            hash = block.header.hash.as_str(),
            at,
            "Block does not link to a committed block, nothing written"
        ),
        Err(error) => {
            crate::trace::record_failure(
                &tracing::Span::current(),
                error.kind(),
                &error.to_string(),
            );
            tracing::warn!(block = block.header.number, %error, "Commit failed")
        }
    }
    result
}
