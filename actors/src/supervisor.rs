//! Supervisor: the root of the tree. It starts every child under a stable slot name, restarts a
//! child that fails or stops unexpectedly under the same slot (the new instance resumes the slot's
//! leases), counts restarts, and gives up loudly past the restart intensity (OTP style: at most N
//! restarts within T), so that systemd or the container runtime restarts the whole process.
//!
//! The leader's children (the SyncCoordinator and the TipWatcher) run only while the
//! LeaderElector says this instance leads; the others (the StreamPublisher, the elector and the
//! queue workers) run in every instance.

use crate::leader_elector::LeaderElector;
use crate::queue_worker::{BacklogActor, PriorityActor};
use crate::services::Services;
use crate::slot::{Instance, SlotId, SlotKind};
use crate::store::Term;
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
    Elector,
    Coordinator,
    /// The TipWatcher, the PriorityActor or a BacklogActor.
    Worker(SlotId),
}

impl Child {
    /// The children every instance runs, in start order (the publisher first, since the workers
    /// talk to it).
    pub(crate) fn always(instance: Instance, backlog_workers: usize) -> Vec<Child> {
        [Child::Publisher, Child::Elector]
            .into_iter()
            .chain(
                SlotId::all(instance, backlog_workers)
                    .filter(|slot| slot.kind() != SlotKind::Tip)
                    .map(Child::Worker),
            )
            .collect()
    }

    /// The children only the leader runs, in start order (the coordinator first, since the
    /// TipWatcher talks to it).
    pub(crate) fn leader_only(instance: Instance) -> [Child; 2] {
        [Child::Coordinator, Child::Worker(SlotId::TIP.of(instance))]
    }

    fn is_leader_only(self) -> bool {
        match self {
            Child::Coordinator => true,
            Child::Worker(slot) => slot.kind() == SlotKind::Tip,
            Child::Publisher | Child::Elector => false,
        }
    }
}

/// The name restarts are counted under: the worker's slot, `publisher` or `coordinator`.
impl std::fmt::Display for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Child::Publisher => f.write_str("publisher"),
            Child::Elector => f.write_str("elector"),
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
    /// The elector won (or renewed under a new epoch) the leadership.
    Lead(Term),
    /// The elector lost the leadership, or cannot be sure it still has it.
    Follow,
}

/// Starts the actor of `child`, linked to `supervisor`.
pub(crate) async fn spawn_child(
    services: &Services,
    child: Child,
    supervisor: &ActorRef<SupervisorMsg>,
) -> Result<ActorCell, ractor::SpawnErr> {
    let services = services.clone();
    let elector_supervisor = supervisor.clone();
    let supervisor = supervisor.get_cell();
    let cell = match child {
        Child::Elector => Actor::spawn_linked(
            None,
            LeaderElector {
                services,
                supervisor: elector_supervisor,
            },
            (),
            supervisor,
        )
        .await?
        .0
        .get_cell(),
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
        if child.is_leader_only() && self.services.term().is_none() {
            // The leadership ended meanwhile: the next leader runs it.
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
        let cell = spawn_child(&self.services, child, myself).await?;
        state.children.insert(cell.get_id(), child);
        Ok(())
    }

    /// Starts the leader's children, unless they run.
    async fn lead(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        term: Term,
    ) -> Result<(), ActorProcessingErr> {
        self.services.set_term(Some(term));
        if state.children.values().any(|c| c.is_leader_only()) {
            return Ok(());
        }
        for child in Child::leader_only(self.services.settings.instance) {
            let cell = spawn_child(&self.services, child, myself).await?;
            state.children.insert(cell.get_id(), child);
        }
        Ok(())
    }

    /// Stops the leader's children (the TipWatcher after the head block in hand, within the
    /// grace period) and hands the tip slot's leases back to the priority queue, where any
    /// instance's worker takes them.
    async fn follow(&self, myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState) {
        self.services.set_term(None);
        let mut leader_children: Vec<(ActorCell, Child)> = myself
            .get_children()
            .into_iter()
            .filter_map(|cell| {
                let child = *state.children.get(&cell.get_id())?;
                child.is_leader_only().then_some((cell, child))
            })
            .collect();
        leader_children.sort_by_key(|(_, child)| *child == Child::Coordinator);
        let grace = self.services.settings.shutdown_grace;
        // The TipWatcher first (it may be waiting for the coordinator), then the coordinator.
        for (cell, child) in leader_children {
            state.children.remove(&cell.get_id());
            if cell
                .stop_and_wait(Some("leadership ended".into()), Some(grace))
                .await
                .is_err()
            {
                cell.kill();
            }
            tracing::info!(child = %child, "Stopped: this instance no longer leads");
        }
        self.services.directory.clear_coordinator();
        self.services
            .hand_back(SlotId::TIP.of(self.services.settings.instance))
            .await;
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
        for child in Child::always(settings.instance, settings.backlog_workers) {
            let cell = spawn_child(&self.services, child, &myself).await?;
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
            SupervisorMsg::Lead(term) => {
                if !self.services.is_stopping() {
                    self.lead(&myself, state, term).await?;
                }
            }
            SupervisorMsg::Follow => {
                if !self.services.is_stopping() {
                    self.follow(&myself, state).await
                }
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
#[allow(clippy::unwrap_used)]
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
        let names: Vec<String> = Child::always(Instance::NONE, 13)
            .into_iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(names.len(), 16);
        assert_eq!(names[0], "publisher");
        assert_eq!(names[1], "elector");
        assert_eq!(names[2], "priority");
        assert_eq!(names[3], "backlog-0");
        assert_eq!(names[15], "backlog-12");
        let a = Instance::new("a").unwrap();
        let leader: Vec<String> = Child::leader_only(a)
            .into_iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(leader, ["coordinator", "a/tip"]);
    }
}
