//! StreamPublisher: the only writer of the event stream. Each block is one atomic commit (the
//! store's exactly-once step), so a block re-processed after any crash is written at most once.

use crate::model::Block;
use crate::services::{now_ms, Services};
use crate::store::{CommitOutcome, Path, StoreError};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

pub struct StreamPublisher {
    pub services: Services,
}

pub enum PublisherMsg {
    Commit {
        slot: String,
        path: Path,
        block: Box<Block>,
        reply: RpcReplyPort<Result<CommitOutcome, StoreError>>,
    },
}

impl Actor for StreamPublisher {
    type Msg = PublisherMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        self.services.directory.set_publisher(myself);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PublisherMsg::Commit {
                slot,
                path,
                block,
                reply,
            } => {
                let span = tracing::info_span!(
                    "commit",
                    block = block.header.number,
                    events = block.events.len(),
                    path = path.as_str()
                );
                let _entered = span.enter();
                let started = std::time::Instant::now();
                let result = self
                    .services
                    .store
                    .commit(&slot, path, &block, now_ms())
                    .await;
                self.services
                    .stats
                    .commit_latency
                    .observe(started.elapsed());
                match &result {
                    Ok(CommitOutcome::Published { events, .. }) => tracing::debug!(
                        block = block.header.number,
                        events,
                        path = path.as_str(),
                        "Block committed"
                    ),
                    Ok(CommitOutcome::AlreadyDone) => tracing::info!(
                        block = block.header.number,
                        "Block was already committed, nothing written"
                    ),
                    Err(error) => {
                        tracing::warn!(block = block.header.number, %error, "Commit failed")
                    }
                }
                // The caller may have given up waiting; the commit stands either way.
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
}
