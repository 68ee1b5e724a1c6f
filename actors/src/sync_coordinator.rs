//! SyncCoordinator: holds last_synced_block and decides what each new tip means (the table in
//! `sync_rule`). It also runs the periodic maintenance: expired leases back to their queues and
//! due retries back to work.

use crate::services::Services;
use crate::slot::SlotId;
use crate::store::{Advance, Queue, StoreError};
use crate::sync_rule::{decide, TipDecision};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

pub(crate) struct SyncCoordinator {
    pub services: Services,
}

pub(crate) enum CoordinatorMsg {
    /// A head seen by the TipWatcher; the answer says whether it leased the head to the tip.
    NewTip {
        head: u64,
        reply: RpcReplyPort<Result<TipDecision, StoreError>>,
    },
    /// Reap expired leases and promote due retries.
    Maintain,
}

pub(crate) struct CoordinatorState {
    /// last_synced_block as stored; `None` until read from the store (lazily, so a store that is
    /// down at start delays the coordinator instead of failing it).
    last: Option<Option<u64>>,
}

impl SyncCoordinator {
    async fn on_new_tip(
        &self,
        state: &mut CoordinatorState,
        head: u64,
    ) -> Result<TipDecision, StoreError> {
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
        let decision = decide(effective, head, settings.limits);
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
                tip_slot: SlotId::TIP,
                lease_deadline_ms: self.services.lease_deadline(),
                enqueue,
            };
            match self.services.store.advance(&advance).await {
                Ok(()) => state.last = Some(Some(head)),
                Err(error) => {
                    // Re-read on the next tip: the stored value is the truth.
                    state.last = None;
                    return Err(error);
                }
            }
            if let Some((queue, from, to)) = enqueue {
                tracing::info!(queue = ?queue, from, to, blocks = to - from + 1, head, "Gap queued");
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
        Ok(CoordinatorState { last: None })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CoordinatorMsg::NewTip { head, reply } => {
                let result = self.on_new_tip(state, head).await;
                let _ = reply.send(result);
            }
            CoordinatorMsg::Maintain => {
                let now = crate::clock::now_ms();
                let store = &self.services.store;
                match store.reap_expired(now).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(leases = n, "Expired leases returned to their queues"),
                    Err(error) => tracing::warn!(%error, "Reaping expired leases failed"),
                }
                match store.promote_due_retries(now).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(blocks = n, "Due retries returned to work"),
                    Err(error) => tracing::warn!(%error, "Promoting due retries failed"),
                }
            }
        }
        Ok(())
    }
}
