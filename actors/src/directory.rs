//! Where the actors others talk to currently are.

use crate::stream_publisher::PublisherMsg;
use crate::sync_coordinator::CoordinatorMsg;
use ractor::ActorRef;
use std::sync::{Arc, RwLock};

/// Current addresses of the actors others talk to. A restarted actor has a new `ActorRef`; the
/// Supervisor updates this so callers always reach the live instance.
#[derive(Clone, Default)]
pub(crate) struct Directory {
    inner: Arc<RwLock<DirectoryInner>>,
}

#[derive(Default)]
struct DirectoryInner {
    publisher: Option<ActorRef<PublisherMsg>>,
    coordinator: Option<ActorRef<CoordinatorMsg>>,
}

impl Directory {
    pub(crate) fn publisher(&self) -> Option<ActorRef<PublisherMsg>> {
        self.inner.read().ok().and_then(|d| d.publisher.clone())
    }
    pub(crate) fn coordinator(&self) -> Option<ActorRef<CoordinatorMsg>> {
        self.inner.read().ok().and_then(|d| d.coordinator.clone())
    }
    pub(crate) fn set_publisher(&self, actor: ActorRef<PublisherMsg>) {
        if let Ok(mut d) = self.inner.write() {
            d.publisher = Some(actor);
        }
    }
    pub(crate) fn clear_coordinator(&self) {
        if let Ok(mut d) = self.inner.write() {
            d.coordinator = None;
        }
    }
    pub(crate) fn set_coordinator(&self, actor: ActorRef<CoordinatorMsg>) {
        if let Ok(mut d) = self.inner.write() {
            d.coordinator = Some(actor);
        }
    }
}
