//! TipWatcher: polls the node's head when the next block is due (see `poll_schedule`), asks the
//! SyncCoordinator what it means, and processes the head block itself when the coordinator
//! leased it to the tip slot.

use crate::clock::now_ms;
use crate::job::{work_batch, work_one};
use crate::poll_schedule::PollSchedule;
use crate::services::Services;
use crate::slot::SlotId;
use crate::slot_state::SlotState;
use crate::store::Origin;
use crate::store::StoreError;
use crate::sync_coordinator::{CoordinatorMsg, TipError};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::atomic::Ordering;
use std::time::Duration;

pub(crate) struct TipWatcher {
    pub services: Services,
}

pub(crate) enum TipMsg {
    Poll,
}

pub(crate) struct TipState {
    slot: SlotState,
    schedule: PollSchedule,
}

impl TipWatcher {
    /// This instance's tip slot.
    fn slot(&self) -> SlotId {
        SlotId::TIP.of(self.services.settings.instance)
    }

    /// One poll; returns the wait before the next one.
    async fn poll(&self, state: &mut TipState) -> Result<Duration, ActorProcessingErr> {
        let TipState {
            slot: state,
            schedule,
        } = state;
        if !state.resumed {
            let leases = self.services.store.owned_leases(self.slot()).await?;
            if !leases.is_empty() {
                tracing::info!(slot = %self.slot(), leases = leases.len(), "Resuming the slot's leases");
            }
            let batch: Vec<(u64, Origin)> = leases.iter().map(|l| (l.block, l.origin)).collect();
            work_batch(&self.services, self.slot(), &batch).await?;
            state.resumed = true;
        }
        let head = match self.services.chain.head().await {
            Ok(head) => head,
            Err(error) => {
                tracing::warn!(%error, "Head poll failed");
                return Ok(schedule.after_failure());
            }
        };
        let stats = &self.services.stats;
        stats.last_head_ok_ms.store(now_ms(), Ordering::Relaxed);
        stats.head.store(head.number, Ordering::Relaxed);
        stats
            .head_time_ms
            .store(head.timestamp_ms, Ordering::Relaxed);
        let backpressure = &self.services.backpressure;
        if !backpressure.may_write() {
            // The store is short of memory: the head is watched, not recorded; the next head
            // after the pause finds the gap and queues it.
            return Ok(schedule.after_failure());
        }
        let Some(coordinator) = self.services.directory.coordinator() else {
            return Ok(schedule.after_failure());
        };
        let number = head.number;
        let decision = match coordinator
            .call(
                |reply| CoordinatorMsg::NewTip {
                    head: head.clone(),
                    reply,
                },
                Some(Duration::from_secs(60)),
            )
            .await
        {
            Ok(CallResult::Success(Ok(decision))) => decision,
            Ok(CallResult::Success(Err(TipError::Store(StoreError::OutOfMemory(error))))) => {
                backpressure.out_of_memory(&error);
                return Ok(schedule.after_failure());
            }
            Ok(CallResult::Success(Err(crate::sync_coordinator::TipError::Store(
                crate::store::StoreError::NotLeader { epoch, .. },
            )))) => {
                // A leader that was paused past its lease: the store refused its term. Its
                // elector learns it follows at its next renewal and stops this actor.
                tracing::info!(
                    epoch,
                    head = number,
                    "No longer the leader: the head is left to the instance that leads now"
                );
                return Ok(schedule.after_failure());
            }
            Ok(CallResult::Success(Err(error))) => {
                tracing::warn!(%error, head = number, "Could not record the new head");
                return Ok(schedule.after_failure());
            }
            Ok(_) | Err(_) => return Ok(schedule.after_failure()),
        };
        let seen_at = now_ms();
        if decision.leased_head().is_some() {
            // The advance was written.
            backpressure.write_succeeded();
        }
        if let Some(leased) = decision.leased_head() {
            work_one(&self.services, self.slot(), Origin::Tip, leased).await?;
        }
        // Timed from when the head was seen, so the next block's due time is kept whatever
        // processing this one took.
        let wait = schedule.after_head(number, head.timestamp_ms, seen_at);
        Ok(wait.saturating_sub(Duration::from_millis(now_ms().saturating_sub(seen_at))))
    }
}

impl Actor for TipWatcher {
    type Msg = TipMsg;
    type State = TipState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_message(TipMsg::Poll)?;
        let settings = &self.services.settings;
        Ok(TipState {
            slot: SlotState::new(&self.services, self.slot()),
            schedule: PollSchedule::new(
                settings.block_interval,
                settings.poll_min,
                settings.poll_max,
            ),
        })
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
                        state.slot.succeeded(self.slot());
                        wait
                    }
                    Err(error) => {
                        state
                            .slot
                            .failed(self.slot(), self.services.settings.idle, &error)
                    }
                };
                myself.send_after(wait, || TipMsg::Poll);
            }
        }
        Ok(())
    }
}
