//! The tree's one entry point. [`Tree::start`] builds the Supervisor and its children from
//! [`TreeDeps`]; the [`TreeHandle`] it returns is all a process needs afterwards: the stats, a
//! way to wait until the tree gives up, and the graceful shutdown.
//!
//! Shutdown stops the tree in the order its work needs:
//! 1. the stop signal: no worker claims new work or polls the head again;
//! 2. the workers (TipWatcher, PriorityActor, BacklogActors) stop after the batch in hand, within
//!    the grace period; those still busy then are killed;
//! 3. every lease a worker slot still holds is handed back to its queue, so any worker of any
//!    later process takes it at once instead of waiting for the lease to expire;
//! 4. the SyncCoordinator, the LeaderElector and the StreamPublisher stop (the publisher only
//!    once the workers are gone, so a block finished within the grace period is still
//!    committed);
//! 5. the leadership is given up (another instance leads at once instead of after the lease),
//!    then the Supervisor stops.

use crate::backpressure::Backpressure;
use crate::chain::Chain;
use crate::hooks::FaultHooks;
use crate::services::Services;
use crate::settings::Settings;
use crate::slot::SlotId;
use crate::stats::TreeStats;
use crate::store::Store;
use crate::supervisor::{Supervisor, SupervisorMsg};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorRef};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long the steps of shutdown after the grace period may take (a killed worker to go, the
/// coordinator and publisher to stop, the Supervisor to end).
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// What the tree is built from.
pub struct TreeDeps {
    /// Where the blocks come from.
    pub chain: Arc<dyn Chain>,
    /// Queues, leases and the event stream.
    pub store: Arc<dyn Store>,
    /// The tree's knobs.
    pub settings: Settings,
    /// Faults to inject (none by default).
    pub hooks: Arc<FaultHooks>,
    /// Where the tree counts; passed in so that readers that exist before the tree (the
    /// operations server) share it.
    pub stats: Arc<TreeStats>,
    /// Called on each new `block` span (the binary records the trace id on it).
    pub span_hook: Option<fn(&tracing::Span)>,
    /// Pauses claims and commits while the store is short of memory; passed in so that the
    /// process's store monitor and the operations server share it.
    pub backpressure: Backpressure,
}

impl TreeDeps {
    /// The tree's dependencies with no fault hooks, fresh stats and no span hook.
    pub fn new(chain: Arc<dyn Chain>, store: Arc<dyn Store>, settings: Settings) -> Self {
        TreeDeps {
            chain,
            store,
            settings,
            hooks: Arc::default(),
            stats: Arc::default(),
            span_hook: None,
            backpressure: Backpressure::default(),
        }
    }
}

/// Why the tree could not start.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The Supervisor or one of its children failed to start.
    #[error("could not start the actor tree: {0}")]
    Spawn(#[from] ractor::SpawnErr),
}

/// The supervision tree drawn in the crate docs.
pub struct Tree;

impl Tree {
    /// Starts the Supervisor, which starts every child. The store need not be reachable: every
    /// actor backs off while it is away.
    pub async fn start(deps: TreeDeps) -> Result<TreeHandle, TreeError> {
        let (stop, stopping) = watch::channel(false);
        let services = Services::new(deps, stopping);
        let supervisor = Supervisor {
            services: services.clone(),
        };
        let (supervisor, supervisor_task) = Actor::spawn(None, supervisor, ()).await?;
        let stats = services.stats.clone();
        stats.set_running(true);
        let ended = tokio::spawn(async move {
            let _ = supervisor_task.await;
            stats.set_running(false);
        });
        Ok(TreeHandle {
            services,
            stop,
            supervisor,
            ended,
        })
    }
}

/// A running tree. Dropping it leaves the tree running; [`TreeHandle::shutdown`] stops it.
pub struct TreeHandle {
    services: Services,
    stop: watch::Sender<bool>,
    supervisor: ActorRef<SupervisorMsg>,
    /// Ends when the Supervisor does.
    ended: tokio::task::JoinHandle<()>,
}

impl TreeHandle {
    /// What the tree counts.
    pub fn stats(&self) -> &Arc<TreeStats> {
        &self.services.stats
    }

    /// The fault hooks the tree was started with.
    pub fn hooks(&self) -> &Arc<FaultHooks> {
        &self.services.hooks
    }

    /// True once the tree has stopped.
    pub fn is_finished(&self) -> bool {
        self.ended.is_finished()
    }

    /// Waits until the tree stops by itself, which it only does when it gives up (restart
    /// intensity exceeded).
    pub async fn wait(&mut self) {
        let _ = (&mut self.ended).await;
    }

    /// Graceful shutdown, in the order of the module docs. Returns once the tree has stopped:
    /// after at most `grace` plus a few bounded steps.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        // Draining: readiness says so from now on.
        self.services.stats.set_running(false);
        let workers = self.workers().await;
        for worker in &workers {
            worker.stop(Some("shutdown".into()));
        }
        // Each worker stops after the message it is handling: that is the in-flight work.
        let stopped = tokio::time::timeout(grace, async {
            for worker in &workers {
                let _ = worker.wait(None).await;
            }
        })
        .await;
        if stopped.is_err() {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "In-flight work did not finish within the grace period"
            );
            for worker in &workers {
                worker.kill();
            }
            // Gone before their leases are handed back, so none of them writes after that.
            let _ = tokio::time::timeout(STOP_TIMEOUT, async {
                for worker in &workers {
                    let _ = worker.wait(None).await;
                }
            })
            .await;
        }
        self.hand_back_leases().await;
        let cell = self.supervisor.get_cell();
        cell.stop_children_and_wait(Some("shutdown".into()), Some(STOP_TIMEOUT))
            .await;
        // After the coordinator has stopped: another instance may lead at once.
        let term = self.services.term();
        self.services.set_term(None);
        if let Err(error) = self
            .services
            .store
            .resign(term, self.services.settings.instance)
            .await
        {
            tracing::warn!(%error, "Could not give the leadership up; another instance takes it when its lease runs out");
        }
        cell.stop(Some("shutdown".into()));
        let _ = tokio::time::timeout(STOP_TIMEOUT, self.ended).await;
    }

    /// The workers running now; none when the Supervisor has already stopped.
    async fn workers(&self) -> Vec<ActorCell> {
        match self
            .supervisor
            .call(SupervisorMsg::Workers, Some(STOP_TIMEOUT))
            .await
        {
            Ok(CallResult::Success(workers)) => workers,
            _ => Vec::new(),
        }
    }

    /// Returns the leases every worker slot still holds to their queues.
    async fn hand_back_leases(&self) {
        let settings = &self.services.settings;
        for slot in SlotId::all(settings.instance, settings.backlog_workers) {
            self.services.hand_back(slot).await;
        }
    }
}
