//! What every actor of the tree shares: the chain, the store, the settings, where the other
//! actors currently are, the shutdown signal, the fault hooks and the stats. Built once, by
//! [`Services::new`], from the [`TreeDeps`] the tree was started with.

use crate::backpressure::Backpressure;
use crate::chain::Chain;
use crate::clock::now_ms;
use crate::directory::Directory;
use crate::hooks::FaultHooks;
use crate::settings::Settings;
use crate::stats::TreeStats;
use crate::store::Store;
use crate::tree::TreeDeps;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
pub(crate) struct Services {
    pub(crate) chain: Arc<dyn Chain>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) settings: Arc<Settings>,
    pub(crate) directory: Directory,
    /// Turns true when the tree is shutting down: stop claiming, finish what is in flight.
    pub(crate) stopping: watch::Receiver<bool>,
    pub(crate) hooks: Arc<FaultHooks>,
    pub(crate) stats: Arc<TreeStats>,
    /// Called on each new `block` span (the binary records the trace id on it).
    pub(crate) span_hook: Option<fn(&tracing::Span)>,
    /// On while the store is short of memory: claim nothing, let commits wait.
    pub(crate) backpressure: Backpressure,
}

impl Services {
    pub(crate) fn new(deps: TreeDeps, stopping: watch::Receiver<bool>) -> Services {
        let TreeDeps {
            chain,
            store,
            settings,
            hooks,
            stats,
            span_hook,
            backpressure,
        } = deps;
        Services {
            chain,
            store,
            settings: Arc::new(settings),
            directory: Directory::default(),
            stopping,
            hooks,
            stats,
            span_hook,
            backpressure,
        }
    }

    pub(crate) fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    pub(crate) fn lease_deadline(&self) -> u64 {
        now_ms() + self.settings.lease.as_millis() as u64
    }
}
