//! Supervisor: the root of the tree. It starts every child under a stable slot name, restarts a
//! child that fails or stops unexpectedly under the same slot (the new instance resumes the slot's
//! leases), counts restarts, and gives up loudly past the restart intensity (OTP style: at most N
//! restarts within T), so that systemd or the container runtime restarts the whole process.

use crate::queue_worker::{BacklogActor, PriorityActor};
use crate::services::Services;
use crate::slot::{SlotId, SlotKind};
use crate::stream_publisher::StreamPublisher;
use crate::sync_coordinator::SyncCoordinator;
use crate::tip_watcher::TipWatcher;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// A child's stable identity: a restarted child comes back under the same one, and a worker's
/// leases belong to its slot, not to an actor instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Child {
    Publisher,
    Coordinator,
    /// The TipWatcher, the PriorityActor or a BacklogActor.
    Worker(SlotId),
}

impl Child {
    /// Every child of the tree, in start order (the publisher and coordinator first, since the
    /// workers talk to them).
    pub(crate) fn all(backlog_workers: usize) -> impl Iterator<Item = Child> {
        [Child::Publisher, Child::Coordinator]
            .into_iter()
            .chain(SlotId::all(backlog_workers).map(Child::Worker))
    }
}

/// The name restarts are counted under: the worker's slot, `publisher` or `coordinator`.
impl std::fmt::Display for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Child::Publisher => f.write_str("publisher"),
            Child::Coordinator => f.write_str("coordinator"),
            Child::Worker(slot) => slot.fmt(f),
        }
    }
}

/// OTP's restart intensity: at most `max` restarts in any window of `window`.
#[derive(Debug)]
pub(crate) struct RestartIntensity {
    max: u32,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl RestartIntensity {
    pub(crate) fn new(max: u32, window: Duration) -> Self {
        RestartIntensity {
            max,
            window,
            recent: VecDeque::new(),
        }
    }

    /// Records a restart at `now`; false when it exceeds the intensity.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        while let Some(oldest) = self.recent.front() {
            if now.duration_since(*oldest) >= self.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        self.recent.push_back(now);
        self.recent.len() as u32 <= self.max
    }
}

pub(crate) struct Supervisor {
    pub services: Services,
}

pub(crate) struct SupervisorState {
    children: HashMap<ActorId, Child>,
    intensity: RestartIntensity,
}

pub(crate) enum SupervisorMsg {
    /// The workers running now, for the shutdown (which stops them before the others).
    Workers(ractor::RpcReplyPort<Vec<ActorCell>>),
}

/// Starts the actor of `child`, linked to `supervisor`.
pub(crate) async fn spawn_child(
    services: &Services,
    child: Child,
    supervisor: ActorCell,
) -> Result<ActorCell, ractor::SpawnErr> {
    let services = services.clone();
    let cell = match child {
        Child::Publisher => Actor::spawn_linked(None, StreamPublisher { services }, (), supervisor)
            .await?
            .0
            .get_cell(),
        Child::Coordinator => {
            Actor::spawn_linked(None, SyncCoordinator { services }, (), supervisor)
                .await?
                .0
                .get_cell()
        }
        Child::Worker(slot) => match slot.kind() {
            SlotKind::Tip => Actor::spawn_linked(None, TipWatcher { services }, (), supervisor)
                .await?
                .0
                .get_cell(),
            SlotKind::Priority => {
                Actor::spawn_linked(None, PriorityActor::priority(services), (), supervisor)
                    .await?
                    .0
                    .get_cell()
            }
            SlotKind::Backlog => {
                Actor::spawn_linked(None, BacklogActor::backlog(services, slot), (), supervisor)
                    .await?
                    .0
                    .get_cell()
            }
        },
    };
    Ok(cell)
}

impl Supervisor {
    async fn restart(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        cell: &ActorCell,
        why: String,
    ) -> Result<(), ActorProcessingErr> {
        let Some(child) = state.children.remove(&cell.get_id()) else {
            return Ok(());
        };
        if self.services.is_stopping() {
            return Ok(());
        }
        let name = child.to_string();
        // Structured, so that the chaos harness counts injected panics without reading the text.
        let reason_kind = match child {
            Child::Worker(slot) if self.services.hooks.take_injected_panic(slot) => "fault_hook",
            _ => "failure",
        };
        self.services.stats.restarts.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut by_slot) = self.services.stats.restarts_by_slot.lock() {
            *by_slot.entry(name.clone()).or_default() += 1;
        }
        if !state.intensity.allow(Instant::now()) {
            let settings = &self.services.settings;
            tracing::error!(
                slot = %name,
                reason_kind,
                max = settings.restart_max,
                window_s = settings.restart_window.as_secs(),
                "Restart intensity exceeded, giving up"
            );
            return Err(format!(
                "restart intensity exceeded: more than {} restarts in {:?} (last: {name}: {why})",
                settings.restart_max, settings.restart_window
            )
            .into());
        }
        tracing::warn!(
            slot = %name,
            reason = %why,
            reason_kind,
            "Actor stopped unexpectedly, restarting it"
        );
        let cell = spawn_child(&self.services, child, myself.get_cell()).await?;
        state.children.insert(cell.get_id(), child);
        Ok(())
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        let settings = &self.services.settings;
        let mut children = HashMap::new();
        for child in Child::all(settings.backlog_workers) {
            let cell = spawn_child(&self.services, child, myself.get_cell()).await?;
            children.insert(cell.get_id(), child);
        }
        Ok(SupervisorState {
            children,
            intensity: RestartIntensity::new(settings.restart_max, settings.restart_window),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Workers(reply) => {
                let workers = myself
                    .get_children()
                    .into_iter()
                    .filter(|cell| {
                        matches!(state.children.get(&cell.get_id()), Some(Child::Worker(_)))
                    })
                    .collect();
                let _ = reply.send(workers);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                self.restart(&myself, state, &cell, error.to_string()).await
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let why = reason.unwrap_or_else(|| "stopped".into());
                self.restart(&myself, state, &cell, why).await
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn intensity_allows_n_restarts_per_window_then_refuses() {
        let mut intensity = RestartIntensity::new(3, Duration::from_secs(10));
        for _ in 0..3 {
            assert!(intensity.allow(Instant::now()));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert!(
            !intensity.allow(Instant::now()),
            "a fourth restart within 10 s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn old_restarts_leave_the_window() {
        let mut intensity = RestartIntensity::new(2, Duration::from_secs(10));
        assert!(intensity.allow(Instant::now()));
        assert!(intensity.allow(Instant::now()));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(intensity.allow(Instant::now()));
        assert!(intensity.allow(Instant::now()));
        assert!(!intensity.allow(Instant::now()));
    }

    #[test]
    fn children_are_counted_under_stable_names() {
        let names: Vec<String> = Child::all(13).map(|c| c.to_string()).collect();
        assert_eq!(names.len(), 17);
        assert_eq!(names[0], "publisher");
        assert_eq!(names[1], "coordinator");
        assert_eq!(names[2], "tip");
        assert_eq!(names[3], "priority");
        assert_eq!(names[4], "backlog-0");
        assert_eq!(names[16], "backlog-12");
    }
}
