//! The queue workers: the PriorityActor (slot `priority`, the priority queue, lowest block
//! first) and the 13 BacklogActors (slots `backlog-0` .. `backlog-12`, the backlog, highest block
//! first). They differ only in their queue and batch size, so they are one actor type.
//!
//! A worker first resumes the leases its slot still owns (left by a crashed predecessor or a
//! killed process), then claims new work in batches, atomically (pop + lease in one step).

use crate::job::work_batch;
use crate::services::{spawn_heartbeat, AbortOnDrop, Services};
use crate::store::{Path, Queue};
use ractor::{Actor, ActorProcessingErr, ActorRef};

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_five_seconds() {
        let base = Duration::from_millis(500);
        assert_eq!(backoff(base, 1), base);
        assert_eq!(backoff(base, 2), Duration::from_secs(1));
        assert_eq!(backoff(base, 4), Duration::from_secs(4));
        assert_eq!(backoff(base, 5), Duration::from_secs(5));
        assert_eq!(backoff(base, 100), Duration::from_secs(5));
    }
}

pub struct QueueWorker {
    pub services: Services,
    pub slot: String,
    pub queue: Queue,
    pub batch: usize,
}

impl QueueWorker {
    /// The PriorityActor.
    pub fn priority(services: Services) -> Self {
        let batch = services.settings.priority_batch;
        QueueWorker {
            services,
            slot: "priority".into(),
            queue: Queue::Priority,
            batch,
        }
    }

    /// BacklogActor number `index`.
    pub fn backlog(services: Services, index: usize) -> Self {
        let batch = services.settings.backlog_batch;
        QueueWorker {
            services,
            slot: format!("backlog-{index}"),
            queue: Queue::Backlog,
            batch,
        }
    }

    /// One round of work; returns how many blocks it finished.
    async fn step(&self, state: &mut WorkerState) -> Result<usize, ActorProcessingErr> {
        let store = &self.services.store;
        let batch: Vec<(u64, Path)> = if state.resumed {
            let path = self.queue.path();
            store
                .claim(
                    self.queue,
                    &self.slot,
                    self.batch,
                    self.services.lease_deadline(),
                )
                .await?
                .into_iter()
                .map(|block| (block, path))
                .collect()
        } else {
            let leases = store.owned_leases(&self.slot).await?;
            if !leases.is_empty() {
                tracing::info!(slot = %self.slot, leases = leases.len(), "Resuming the slot's leases");
            }
            state.resumed = true;
            leases.iter().map(|l| (l.block, l.path)).collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let numbers: Vec<u64> = batch.iter().map(|(n, _)| *n).collect();
        if self.services.hooks.should_panic_after_claim(&numbers) {
            panic!(
                "fault hook: {} panics after claiming {numbers:?}",
                self.slot
            );
        }
        Ok(work_batch(&self.services, &self.slot, &batch).await?)
    }
}

/// `base` doubled per failure in a row, at most 5 s: no busy loop while Redis is away, and a
/// prompt return when it is back.
pub fn backoff(base: std::time::Duration, failures: u32) -> std::time::Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(8);
    (base * factor).min(std::time::Duration::from_secs(5))
}

pub enum WorkerMsg {
    Work,
}

pub struct WorkerState {
    resumed: bool,
    /// Rounds failed in a row, for the backoff while the store or node is away.
    failures: u32,
    _heartbeat: AbortOnDrop,
}

impl Actor for QueueWorker {
    type Msg = WorkerMsg;
    type State = WorkerState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_message(WorkerMsg::Work)?;
        Ok(WorkerState {
            resumed: false,
            failures: 0,
            _heartbeat: spawn_heartbeat(&self.services, self.slot.clone()),
        })
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
                match self.step(state).await {
                    Ok(0) => {
                        state.failures = 0;
                        myself.send_after(self.services.settings.idle, || WorkerMsg::Work);
                    }
                    Ok(_) => {
                        if state.failures > 0 {
                            tracing::info!(slot = %self.slot, failed_rounds = state.failures, "Queue work works again");
                        }
                        state.failures = 0;
                        myself.send_message(WorkerMsg::Work)?
                    }
                    Err(error) => {
                        state.failures = state.failures.saturating_add(1);
                        // Blocks of the failed batch are still leased to this slot: take them
                        // up first next round instead of waiting for their leases to expire.
                        state.resumed = false;
                        let wait = backoff(self.services.settings.idle, state.failures);
                        // Once per outage, not once per attempt: 15 workers retry together.
                        if state.failures == 1 {
                            tracing::warn!(slot = %self.slot, %error, "Queue work failed, backing off until it works again");
                        } else {
                            tracing::debug!(slot = %self.slot, %error, retry_in_ms = wait.as_millis() as u64, "Queue work still failing");
                        }
                        myself.send_after(wait, || WorkerMsg::Work);
                    }
                }
            }
        }
        Ok(())
    }
}
