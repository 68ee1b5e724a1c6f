//! The `run` job: connects the actor tree to the real chain and the real store, and owns the
//! process-level lifecycle (Redis wait at start, shutdown on a signal, exit status).

use crate::config::Config;
use crate::store::RedisStore;
use actors::chain::Chain;
use actors::services::{Directory, FaultHooks, Services, TreeStats};
use actors::slot::SlotId;
use actors::store::Store;
use actors::supervisor::Supervisor;
use ractor::Actor;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("redis: {0}")]
    Store(#[from] actors::store::StoreError),
    #[error("could not start the actor tree: {0}")]
    Spawn(String),
    #[error("the actor tree gave up (restart intensity exceeded); see the log above")]
    GaveUp,
    #[error(transparent)]
    OpsServer(#[from] crate::ops_server::OpsServerError),
}

/// A running daemon.
pub struct DaemonHandle {
    pub hooks: Arc<FaultHooks>,
    pub stats: Arc<TreeStats>,
    pub store: RedisStore,
    stop: watch::Sender<bool>,
    supervisor: ractor::ActorRef<actors::supervisor::SupervisorMsg>,
    join: tokio::task::JoinHandle<()>,
    settings: Arc<actors::settings::Settings>,
    tree_running: Arc<std::sync::atomic::AtomicBool>,
    /// The /healthz, /readyz, /metrics server, when `metrics.listen` is set.
    pub ops: Option<crate::ops_server::OpsServer>,
}

impl DaemonHandle {
    /// Starts the tree. Redis need not be up: the store connects lazily and every actor backs
    /// off while it is away.
    pub async fn start(
        config: &Config,
        chain: Arc<dyn Chain>,
    ) -> Result<DaemonHandle, DaemonError> {
        Self::start_with_metrics(config, chain, Vec::new()).await
    }

    /// As `start`, with more metrics for /metrics (the node client's, the tracer's).
    pub async fn start_with_metrics(
        config: &Config,
        chain: Arc<dyn Chain>,
        extra_metrics: Vec<crate::metrics::ExtraMetrics>,
    ) -> Result<DaemonHandle, DaemonError> {
        let store = RedisStore::new(&config.store_config())?;
        let settings = Arc::new(config.settings());
        let (stop, stopping) = watch::channel(false);
        let hooks = Arc::new(if config.faults.panic_one_in > 0 {
            tracing::warn!(
                one_in = config.faults.panic_one_in,
                "Fault injection on: workers will panic at random (faults.panic_one_in)"
            );
            FaultHooks::with_random_panics(config.faults.panic_one_in, config.faults.seed)
        } else {
            FaultHooks::default()
        });
        let stats = Arc::new(TreeStats::default());
        let services = Services {
            chain,
            store: Arc::new(store.clone()),
            settings: settings.clone(),
            directory: Directory::default(),
            stopping,
            hooks: hooks.clone(),
            stats: stats.clone(),
            span_hook: Some(crate::telemetry::record_trace_id),
        };
        let tree_running = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ops = if config.metrics.listen.is_empty() {
            None
        } else {
            let state = crate::ops_server::OpsState {
                store: store.clone(),
                stats: stats.clone(),
                tree_running: tree_running.clone(),
                extra_metrics,
            };
            Some(crate::ops_server::start(&config.metrics.listen, state).await?)
        };
        let (supervisor, supervisor_task) = Actor::spawn(None, Supervisor { services }, ())
            .await
            .map_err(|e| DaemonError::Spawn(e.to_string()))?;
        tree_running.store(true, std::sync::atomic::Ordering::Relaxed);
        let running = tree_running.clone();
        let join = tokio::spawn(async move {
            let _ = supervisor_task.await;
            running.store(false, std::sync::atomic::Ordering::Relaxed);
        });
        Ok(DaemonHandle {
            hooks,
            stats,
            store,
            stop,
            supervisor,
            join,
            settings,
            tree_running,
            ops,
        })
    }

    /// Waits until the tree stops by itself (it only does when it gives up).
    pub async fn wait(&mut self) -> DaemonError {
        let _ = (&mut self.join).await;
        DaemonError::GaveUp
    }

    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Graceful shutdown: stop claiming, let in-flight blocks finish within the grace period,
    /// hand back every lease still held, stop.
    pub async fn shutdown(self) -> Result<(), DaemonError> {
        let _ = self.stop.send(true);
        // Draining: readiness says so from now on.
        self.tree_running
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let grace = self.settings.shutdown_grace;
        let cell = self.supervisor.get_cell();
        // Each child stops after the message it is handling: that is the in-flight work.
        let stopped = tokio::time::timeout(
            grace,
            cell.stop_children_and_wait(Some("shutdown".into()), Some(grace)),
        )
        .await;
        if stopped.is_err() {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "In-flight work did not finish within the grace period"
            );
        }
        for child in cell.get_children() {
            child.kill();
        }
        self.hand_back_leases().await;
        cell.stop(Some("shutdown".into()));
        let _ = tokio::time::timeout(Duration::from_secs(5), self.join).await;
        Ok(())
    }

    /// Returns the leases every worker slot still holds to their queues, so any worker of any
    /// later process takes them at once.
    async fn hand_back_leases(&self) {
        for slot in SlotId::all(self.settings.backlog_workers) {
            let result = async {
                let leases = self.store.owned_leases(slot).await?;
                let blocks: Vec<u64> = leases.iter().map(|l| l.block).collect();
                self.store.release(slot, &blocks).await
            }
            .await;
            match result {
                Ok(0) => {}
                Ok(n) => tracing::info!(%slot, leases = n, "Handed back unfinished leases"),
                Err(error) => {
                    tracing::warn!(%slot, %error, "Could not hand back leases; they are resumed on the next start")
                }
            }
        }
    }
}
