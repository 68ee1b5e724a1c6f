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
use crate::store::{Store, StoreError, Term};
use crate::tree::TreeDeps;
use std::sync::{Arc, RwLock};
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
    /// The term this instance leads in, while it does (set by the Supervisor on the
    /// LeaderElector's word).
    term: Arc<RwLock<Option<Term>>>,
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
            term: Arc::default(),
            backpressure,
        }
    }

    /// Hands the leases `slot` still holds back to their queues (a stop, or the end of a
    /// leadership), so that any worker takes them at once instead of when they expire.
    pub(crate) async fn hand_back(&self, slot: crate::slot::SlotId) {
        let store = &self.store;
        let result = async {
            let leases = store.owned_leases(slot).await?;
            let blocks: Vec<u64> = leases.iter().map(|l| l.block).collect();
            store.release(slot, &blocks).await
        }
        .await;
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(%slot, leases = n, "Handed back unfinished leases"),
            Err(error) => tracing::warn!(
                %slot,
                %error,
                "Could not hand back leases; they return when they expire or are resumed on the next start"
            ),
        }
    }

    /// The term this instance leads in, if it does.
    pub(crate) fn term(&self) -> Option<Term> {
        self.term.read().ok().and_then(|t| *t)
    }

    /// The term, for a step only the leader may take.
    pub(crate) fn leader_term(&self) -> Result<Term, StoreError> {
        self.term().ok_or(StoreError::NotLeader {
            instance: self.settings.instance,
            epoch: 0,
        })
    }

    pub(crate) fn set_term(&self, term: Option<Term>) {
        if let Ok(mut t) = self.term.write() {
            *t = term;
        }
        self.stats.leader_epoch.store(
            term.map_or(0, |t| t.epoch),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub(crate) fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    pub(crate) fn lease_deadline(&self) -> u64 {
        now_ms() + self.settings.lease.as_millis() as u64
    }
}
