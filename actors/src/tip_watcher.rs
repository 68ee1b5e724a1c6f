//! TipWatcher: polls the node's head, asks the SyncCoordinator what it means, and processes the
//! head block itself when the coordinator leased it to the tip slot.

use crate::job::{work_batch, work_one};
use crate::services::{Services, SlotState};
use crate::store::Path;
use crate::sync_coordinator::CoordinatorMsg;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::atomic::Ordering;
use std::time::Duration;

pub struct TipWatcher {
    pub services: Services,
    /// Stable slot name: `tip`.
    pub slot: String,
}

pub enum TipMsg {
    Poll,
}

impl TipWatcher {
    /// One poll; returns the wait before the next one.
    async fn poll(&self, state: &mut SlotState) -> Result<Duration, ActorProcessingErr> {
        let settings = &self.services.settings;
        if !state.resumed {
            let leases = self.services.store.owned_leases(&self.slot).await?;
            if !leases.is_empty() {
                tracing::info!(slot = %self.slot, leases = leases.len(), "Resuming the slot's leases");
            }
            let batch: Vec<(u64, Path)> = leases.iter().map(|l| (l.block, l.path)).collect();
            work_batch(&self.services, &self.slot, &batch).await?;
            state.resumed = true;
        }
        let head = match self.services.chain.head().await {
            Ok(head) => head,
            Err(error) => {
                tracing::warn!(%error, "Head poll failed");
                return Ok(settings.poll_in_sync);
            }
        };
        let stats = &self.services.stats;
        stats
            .last_head_ok_ms
            .store(crate::services::now_ms(), Ordering::Relaxed);
        stats.head.store(head.number, Ordering::Relaxed);
        stats
            .head_time_ms
            .store(head.timestamp_ms, Ordering::Relaxed);
        let Some(coordinator) = self.services.directory.coordinator() else {
            return Ok(settings.poll_in_sync);
        };
        let number = head.number;
        let decision = match coordinator
            .call(
                |reply| CoordinatorMsg::NewTip {
                    head: number,
                    reply,
                },
                Some(Duration::from_secs(60)),
            )
            .await
        {
            Ok(CallResult::Success(Ok(decision))) => decision,
            Ok(CallResult::Success(Err(error))) => {
                tracing::warn!(%error, head = number, "Could not record the new head");
                return Ok(settings.poll_in_sync);
            }
            Ok(_) | Err(_) => return Ok(settings.poll_in_sync),
        };
        match decision.leased_head() {
            Some(leased) => {
                work_one(&self.services, &self.slot, Path::Tip, leased).await?;
                Ok(settings.poll_after_block)
            }
            // In sync, or the node is behind us.
            None => Ok(settings.poll_in_sync),
        }
    }
}

impl Actor for TipWatcher {
    type Msg = TipMsg;
    type State = SlotState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_message(TipMsg::Poll)?;
        Ok(SlotState::new(&self.services, &self.slot))
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            TipMsg::Poll => {
                if self.services.is_stopping() {
                    return Ok(());
                }
                let wait = match self.poll(state).await {
                    Ok(wait) => {
                        state.succeeded(&self.slot);
                        wait
                    }
                    Err(error) => state.failed(&self.slot, self.services.settings.idle, &error),
                };
                myself.send_after(wait, || TipMsg::Poll);
            }
        }
        Ok(())
    }
}
