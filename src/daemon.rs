//! The `run` job: connects the actor tree to the real chain and the real store, and owns the
//! process-level lifecycle (Redis wait at start, shutdown on a signal, exit status).

use crate::config::Config;
use crate::store::RedisStore;
use actors::chain::Chain;
use actors::hooks::FaultHooks;
use actors::stats::TreeStats;
use actors::{Tree, TreeDeps, TreeHandle};
use std::sync::Arc;
use std::time::Duration;

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The Redis store cannot be set up (a bad URL).
    #[error("redis: {0}")]
    Store(#[from] actors::store::StoreError),
    /// The actor tree could not be started.
    #[error(transparent)]
    Tree(#[from] actors::TreeError),
    /// Actors failed more often than `supervisor.restart_max` in `supervisor.restart_window_ms`.
    #[error("the actor tree gave up (restart intensity exceeded); see the log above")]
    GaveUp,
    /// The ops server cannot listen on `metrics.listen`.
    #[error(transparent)]
    OpsServer(#[from] crate::ops_server::OpsServerError),
    /// Redis is set up so that it could lose the daemon's keys (an evicting maxmemory-policy):
    /// refused to start, as a bad configuration is (exit 2).
    #[error(transparent)]
    RedisSetup(#[from] crate::store::memory::RedisSetupError),
}

impl DaemonError {
    /// Whether a restart cannot help (exit 2): something must be fixed first.
    pub fn is_refusal(&self) -> bool {
        matches!(self, DaemonError::RedisSetup(_))
    }
}

/// A running daemon.
pub struct DaemonHandle {
    /// Fault injection (`faults.*`), which tests also drive directly.
    pub hooks: Arc<FaultHooks>,
    /// What the tree counts (blocks, restarts, ...), as /metrics shows it.
    pub stats: Arc<TreeStats>,
    /// The store the tree writes to, for status and progress reads.
    pub store: RedisStore,
    tree: TreeHandle,
    /// How long in-flight work may take to finish on shutdown.
    grace: Duration,
    /// The /healthz, /readyz, /metrics server, when `metrics.listen` is set.
    pub ops: Option<crate::ops_server::OpsServer>,
    /// On while Redis is short of memory (claims and commits wait); tests read it.
    pub backpressure: actors::backpressure::Backpressure,
    /// Reads Redis's memory and policy; stops when dropped.
    _memory_guard: crate::store::memory::MemoryGuard,
    /// Warns about consumer groups near the retention cut; stops when dropped.
    _group_watch: crate::consumer_groups::GroupWatch,
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
        mut extra_metrics: Vec<crate::metrics::ExtraMetrics>,
    ) -> Result<DaemonHandle, DaemonError> {
        let store = RedisStore::new(&config.store_config())?;
        // Before anything is claimed: under an evicting policy nothing the daemon keeps is safe.
        let checked = crate::store::memory::check_at_start(&store).await?;
        let backpressure = actors::backpressure::Backpressure::default();
        let memory_guard = crate::store::memory::spawn_guard(
            store.clone(),
            backpressure.clone(),
            config.memory_guard(),
            checked.and_then(|settings| settings.append_only),
        );
        extra_metrics.push(memory_guard.metrics());
        let group_watch = crate::consumer_groups::spawn_watch(
            store.clone(),
            Duration::from_secs(config.stream.retention_hours * 3600),
        );
        let settings = config.settings();
        let grace = settings.shutdown_grace;
        let hooks = Arc::new(if config.faults.panic_one_in > 0 {
            tracing::warn!(
                one_in = config.faults.panic_one_in,
                "Fault injection on: workers will panic at random (faults.panic_one_in)"
            );
            FaultHooks::with_random_panics(config.faults.panic_one_in, config.faults.seed)
        } else {
            FaultHooks::default()
        });
        if let Some(point) = config.faults.abort_in_retraction.0 {
            tracing::warn!(point = ?point, "Fault injection on: the process aborts in its first retraction (faults.abort_in_retraction)");
            hooks.abort_in_retraction(point);
        }
        let stats = Arc::new(TreeStats::default());
        // Before the tree, so that a busy port fails the start before any work is claimed.
        let ops = if let Some(listen) = config.metrics.listen {
            let state = crate::ops_server::OpsState {
                store: store.clone(),
                stats: stats.clone(),
                extra_metrics,
                backpressure: backpressure.clone(),
            };
            Some(crate::ops_server::start(listen, state).await?)
        } else {
            None
        };
        let tree = Tree::start(TreeDeps {
            chain,
            store: Arc::new(store.clone()),
            settings,
            hooks: hooks.clone(),
            stats: stats.clone(),
            span_hook: Some(crate::telemetry::record_trace_id),
            backpressure: backpressure.clone(),
        })
        .await?;
        Ok(DaemonHandle {
            hooks,
            stats,
            store,
            tree,
            grace,
            ops,
            backpressure,
            _memory_guard: memory_guard,
            _group_watch: group_watch,
        })
    }

    /// Waits until the tree stops by itself (it only does when it gives up).
    pub async fn wait(&mut self) -> DaemonError {
        self.tree.wait().await;
        DaemonError::GaveUp
    }

    /// Graceful shutdown: stop claiming, let in-flight blocks finish within the grace period,
    /// hand back every lease still held, stop (the order is the tree's, see `actors::tree`).
    pub async fn shutdown(self) -> Result<(), DaemonError> {
        self.tree.shutdown(self.grace).await;
        Ok(())
    }
}
