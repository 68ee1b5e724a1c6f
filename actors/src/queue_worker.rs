//! The queue workers: the PriorityActor (slot `priority`, the priority queue, lowest block
//! first) and the 13 BacklogActors (slots `backlog-0` .. `backlog-12`, the backlog, highest block
//! first). They differ only in their queue and batch size, so they are one actor type.
//!
//! A worker first resumes the leases its slot still owns (left by a crashed predecessor or a
//! killed process), then claims new work in batches, atomically (pop + lease in one step).

use crate::job::work_batch;
use crate::services::Services;
use crate::slot::SlotId;
use crate::slot_state::SlotState;
use crate::store::{Origin, Queue, StoreError};
use ractor::{Actor, ActorProcessingErr, ActorRef};

/// A worker of one queue under one slot: the PriorityActor or a BacklogActor.
pub(crate) struct QueueWorker {
    services: Services,
    slot: SlotId,
    queue: Queue,
    /// Blocks claimed at once.
    batch: usize,
}

/// The worker of the priority queue (slot `priority`).
pub(crate) type PriorityActor = QueueWorker;
/// A worker of the backlog (slots `backlog-<i>`).
pub(crate) type BacklogActor = QueueWorker;

impl QueueWorker {
    /// The PriorityActor.
    pub(crate) fn priority(services: Services) -> PriorityActor {
        let batch = services.settings.priority_batch;
        let slot = SlotId::PRIORITY.of(services.settings.instance);
        QueueWorker {
            services,
            slot,
            queue: Queue::Priority,
            batch,
        }
    }

    /// The BacklogActor of `slot`, one of [`SlotId::backlog`]'s.
    pub(crate) fn backlog(services: Services, slot: SlotId) -> BacklogActor {
        let batch = services.settings.backlog_batch;
        QueueWorker {
            services,
            slot,
            queue: Queue::Backlog,
            batch,
        }
    }

    /// One round of work; returns how many blocks it finished.
    async fn step(&self, state: &mut SlotState) -> Result<usize, ActorProcessingErr> {
        let store = &self.services.store;
        let backpressure = &self.services.backpressure;
        if !backpressure.may_write() {
            // The store is short of memory: the queue keeps its blocks until it is not.
            return Ok(0);
        }
        let batch: Vec<(u64, Origin)> = if state.resumed {
            let origin = self.queue.origin();
            let claimed = match store
                .claim(
                    self.queue,
                    self.slot,
                    self.batch,
                    self.services.lease_deadline(),
                )
                .await
            {
                Err(StoreError::OutOfMemory(error)) => {
                    backpressure.out_of_memory(&error);
                    return Ok(0);
                }
                claimed => claimed?,
            };
            if !claimed.is_empty() {
                backpressure.write_succeeded();
            }
            claimed.into_iter().map(|block| (block, origin)).collect()
        } else {
            let leases = store.owned_leases(self.slot).await?;
            if !leases.is_empty() {
                tracing::info!(slot = %self.slot, leases = leases.len(), "Resuming the slot's leases");
            }
            state.resumed = true;
            leases.iter().map(|l| (l.block, l.origin)).collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let numbers: Vec<u64> = batch.iter().map(|(n, _)| *n).collect();
        if self
            .services
            .hooks
            .should_panic_after_claim(self.slot, &numbers)
        {
            panic!(
                "fault hook: {} panics after claiming {numbers:?}",
                self.slot
            );
        }
        Ok(work_batch(&self.services, self.slot, &batch).await?)
    }
}

pub(crate) enum WorkerMsg {
    Work,
}

impl Actor for QueueWorker {
    type Msg = WorkerMsg;
    type State = SlotState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_message(WorkerMsg::Work)?;
        Ok(SlotState::new(&self.services, self.slot))
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WorkerMsg::Work => {
                if self.services.is_stopping() {
                    return Ok(());
                }
                let idle = self.services.settings.idle;
                match self.step(state).await {
                    Ok(0) => {
                        state.succeeded(self.slot);
                        myself.send_after(idle, || WorkerMsg::Work);
                    }
                    Ok(_) => {
                        state.succeeded(self.slot);
                        myself.send_message(WorkerMsg::Work)?
                    }
                    Err(error) => {
                        let wait = state.failed(self.slot, idle, &error);
                        myself.send_after(wait, || WorkerMsg::Work);
                    }
                }
            }
        }
        Ok(())
    }
}
