//! SyncCoordinator: holds last_synced_block and decides what each new tip means (the table in
//! `sync_rule`). It is also the one that walks back over forks (one walk at a time, whoever
//! found the fork), publishes how far the chain is final, and runs the periodic maintenance:
//! expired leases back to their queues and due retries back to work.

use crate::chain::{BlockId, ChainError};
use crate::fork::{orphans, ForkError};
use crate::model::BlockHeader;
use crate::services::Services;
use crate::settings::Follow;
use crate::slot::SlotId;
use crate::store::{Advance, Queue, StoreError};
use crate::sync_rule::{decide, TipDecision};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::atomic::Ordering;

pub(crate) struct SyncCoordinator {
    pub services: Services,
}

pub(crate) enum CoordinatorMsg {
    /// A head seen by the TipWatcher; the answer says whether it leased the head to the tip.
    NewTip {
        head: BlockHeader,
        reply: RpcReplyPort<Result<TipDecision, TipError>>,
    },
    /// A commit was refused because the block contradicts the committed block `at`: walk back
    /// and retract what the node no longer has. The answer is how many blocks were retracted.
    Reconcile {
        at: u64,
        reply: RpcReplyPort<Result<usize, ForkError>>,
    },
    /// Reap expired leases and promote due retries.
    Maintain,
}

pub(crate) struct CoordinatorState {
    /// last_synced_block as stored; `None` until read from the store (lazily, so a store that is
    /// down at start delays the coordinator instead of failing it).
    last: Option<Option<u64>>,
    /// The finalized block as published, read lazily as `last` is.
    finalized: Option<Option<u64>>,
    /// The node's solidified block and the head it was read at, once a round at that head
    /// completed: the next polls of the same head do not ask the node again (at most one
    /// request per block interval).
    solid_at: Option<(u64, BlockId)>,
}

/// Why a new tip could not be acted on.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum TipError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `sync.follow = "finalized"` and the node did not say where its solidified block is.
    #[error("the node's solidified block: {0}")]
    Finalized(#[from] ChainError),
}

impl SyncCoordinator {
    async fn finalized(&self, state: &mut CoordinatorState) -> Result<Option<u64>, StoreError> {
        match state.finalized {
            Some(finalized) => Ok(finalized),
            None => {
                let finalized = self.services.store.finalized().await?;
                state.finalized = Some(finalized);
                Ok(finalized)
            }
        }
    }

    /// Walks back from the committed block `at` and retracts the orphans found.
    async fn reconcile(&self, state: &mut CoordinatorState, at: u64) -> Result<usize, ForkError> {
        let finalized = self.finalized(state).await?;
        let services = &self.services;
        let found = match orphans(&*services.chain, &*services.store, at, finalized).await {
            Ok(found) => found,
            Err(error) => {
                if matches!(error, ForkError::BeyondFinalized { .. }) {
                    services
                        .stats
                        .deep_fork_refusals
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%error, at, "Fork deeper than the finalized block: nothing retracted, the node is not trusted for these blocks");
                }
                return Err(error);
            }
        };
        if found.is_empty() {
            return Ok(0);
        }
        services
            .hooks
            .at_retraction_point(crate::hooks::RetractionPoint::BeforeRevert);
        let term = services.leader_term()?;
        let reverted = services
            .store
            .revert_in(&found, crate::clock::now_ms(), Some(term))
            .await?;
        services
            .hooks
            .at_retraction_point(crate::hooks::RetractionPoint::AfterRevert);
        if !reverted.is_empty() {
            services.stats.forks.fetch_add(1, Ordering::Relaxed);
            services
                .stats
                .reverted_blocks
                .fetch_add(reverted.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                at,
                depth = reverted.len(),
                newest = reverted.first().copied(),
                oldest = reverted.last().copied(),
                "Fork: the node switched branches; the replaced blocks were retracted and are fetched again"
            );
        }
        Ok(reverted.len())
    }

    /// The node's head contradicts a committed block (the node switched branches at or below
    /// the head): walk back at once, without waiting for the next block to be refused.
    async fn check_head(&self, state: &mut CoordinatorState, head: &BlockHeader) {
        let from = head.number.saturating_sub(1);
        let links = match self.services.store.links(from, head.number).await {
            Ok(links) => links,
            Err(error) => {
                tracing::warn!(%error, "Reading the committed links failed");
                return;
            }
        };
        let contradicted = links.iter().rev().find(|link| {
            (link.number == head.number && link.hash != head.hash)
                || (link.number == from
                    && link.number < head.number
                    && link.hash != head.parent_hash)
        });
        if let Some(link) = contradicted {
            let at = link.number;
            if let Err(error) = self.reconcile(state, at).await {
                tracing::warn!(%error, at, "Walk back failed; tried again at the next refusal or head");
            }
        }
    }

    /// Publishes the node's solidified block when it moved, after checking that every block
    /// committed up to it is the one the node has (retracting what is not, which postpones the
    /// entry to the next round). Returns the node's solidified block.
    async fn advance_finality(
        &self,
        state: &mut CoordinatorState,
        head: u64,
    ) -> Result<Option<BlockId>, TipError> {
        if let Some((at, solid)) = &state.solid_at {
            if *at == head {
                return Ok(Some(solid.clone()));
            }
        }
        let solid = self.services.chain.finalized().await?;
        let stored = self.finalized(state).await?;
        if stored.is_some_and(|f| solid.number <= f) {
            state.solid_at = Some((head, solid.clone()));
            return Ok(Some(solid));
        }
        let services = &self.services;
        let links = services
            .store
            .links(stored.map_or(0, |f| f + 1), solid.number)
            .await?;
        // Each run of adjacent committed blocks is one chain (commits check neighbours), so the
        // newest block of each run tells for the whole run.
        let mut newest_of_runs = Vec::new();
        for (i, link) in links.iter().enumerate() {
            let run_ends = links
                .get(i + 1)
                .is_none_or(|next| next.number != link.number + 1);
            if run_ends {
                newest_of_runs.push(link);
            }
        }
        for link in newest_of_runs.into_iter().rev() {
            let node_hash = if link.number == solid.number {
                solid.hash.clone()
            } else {
                match services.chain.header(link.number).await {
                    Ok(header) => header.hash,
                    Err(error) => {
                        tracing::warn!(%error, block = link.number, "Finality check postponed");
                        return Ok(Some(solid));
                    }
                }
            };
            if node_hash != link.hash {
                if let Err(error) = self.reconcile(state, link.number).await {
                    tracing::warn!(%error, at = link.number, "Walk back failed; finality postponed");
                }
                return Ok(Some(solid));
            }
        }
        if services
            .store
            .finalize_in(
                solid.number,
                &solid.hash,
                crate::clock::now_ms(),
                Some(services.leader_term()?),
            )
            .await?
        {
            state.finalized = Some(Some(solid.number));
            services
                .stats
                .finalized
                .store(solid.number, Ordering::Relaxed);
        }
        state.solid_at = Some((head, solid.clone()));
        Ok(Some(solid))
    }

    async fn on_new_tip(
        &self,
        state: &mut CoordinatorState,
        head: &BlockHeader,
    ) -> Result<TipDecision, TipError> {
        let target = match self.services.settings.follow {
            Follow::Head => {
                self.check_head(state, head).await;
                head.number
            }
            Follow::Finalized => match self.advance_finality(state, head.number).await? {
                Some(solid) => solid.number,
                None => return Ok(TipDecision::InSync),
            },
        };
        let stored = match state.last {
            Some(last) => last,
            None => {
                let last = self.services.store.last_synced().await?;
                state.last = Some(last);
                last
            }
        };
        let settings = &self.services.settings;
        // A first run with `sync.start_block` behaves as if the block before it was synced.
        let effective = stored.or_else(|| settings.start_block.map(|b| b.saturating_sub(1)));
        let decision = decide(effective, target, settings.limits);
        let enqueue = match decision {
            TipDecision::SmallGap { from, to, .. } => Some((Queue::Priority, from, to)),
            TipDecision::LargeGap {
                from, to, skipped, ..
            } => {
                if skipped > 0 {
                    tracing::warn!(
                        skipped,
                        from,
                        "Gap is longer than the backlog cap; older blocks are not fetched"
                    );
                }
                Some((Queue::Backlog, from, to))
            }
            TipDecision::Behind { head, last } => {
                tracing::info!(head, last, "Node is behind the last synced block, waiting");
                None
            }
            TipDecision::InSync | TipDecision::Next { .. } => None,
        };
        if let Some(head) = decision.leased_head() {
            let advance = Advance {
                expected_last: stored,
                head,
                tip_slot: SlotId::TIP.of(settings.instance),
                lease_deadline_ms: self.services.lease_deadline(),
                enqueue,
                term: Some(self.services.leader_term()?),
            };
            match self.services.store.advance(&advance).await {
                Ok(()) => state.last = Some(Some(head)),
                Err(error) => {
                    // Re-read on the next tip: the stored value is the truth.
                    state.last = None;
                    return Err(error.into());
                }
            }
            if let Some((queue, from, to)) = enqueue {
                tracing::info!(queue = ?queue, from, to, blocks = to - from + 1, head = target, "Gap queued");
            }
        }
        Ok(decision)
    }
}

impl Actor for SyncCoordinator {
    type Msg = CoordinatorMsg;
    type State = CoordinatorState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        self.services.directory.set_coordinator(myself.clone());
        let every = self.services.settings.maintain_every;
        myself.send_interval(every, || CoordinatorMsg::Maintain);
        Ok(CoordinatorState {
            last: None,
            finalized: None,
            solid_at: None,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CoordinatorMsg::NewTip { head, reply } => {
                let result = self.on_new_tip(state, &head).await;
                let _ = reply.send(result);
                // After the answer, so that the head's block is not kept waiting for it.
                if self.services.settings.follow == Follow::Head {
                    match self.advance_finality(state, head.number).await {
                        Ok(_) => {}
                        Err(TipError::Store(StoreError::OutOfMemory(error))) => {
                            self.services.backpressure.out_of_memory(&error);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "Could not read or publish the finalized block");
                        }
                    }
                }
            }
            CoordinatorMsg::Reconcile { at, reply } => {
                let result = self.reconcile(state, at).await;
                if result.is_err() {
                    // Re-read: a failed step may have left the store ahead of this cache.
                    state.finalized = None;
                }
                let _ = reply.send(result);
            }
            CoordinatorMsg::Maintain => {
                let now = crate::clock::now_ms();
                let store = &self.services.store;
                match store.reap_expired(now).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(leases = n, "Expired leases returned to their queues"),
                    // Out of memory: the leases wait for the pause to end, logged once there.
                    Err(error) if error.is_backpressure() => {
                        tracing::debug!(%error, "Reaping expired leases failed");
                    }
                    Err(error) => tracing::warn!(%error, "Reaping expired leases failed"),
                }
                match store.promote_due_retries(now).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(blocks = n, "Due retries returned to work"),
                    Err(error) if error.is_backpressure() => {
                        tracing::debug!(%error, "Promoting due retries failed");
                    }
                    Err(error) => tracing::warn!(%error, "Promoting due retries failed"),
                }
            }
        }
        Ok(())
    }
}
