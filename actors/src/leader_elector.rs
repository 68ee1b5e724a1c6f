//! LeaderElector: keeps this instance's bid for the leadership. Several daemons may share one
//! Redis (a rolling deployment, two replicas for availability); exactly one of them runs the
//! TipWatcher and the SyncCoordinator (the head, last_synced_block, forks, finality and the
//! maintenance), while every one of them runs the queue workers on the shared queues.
//!
//! The leadership is a lease in the store with an epoch that grows with every election. The
//! leader renews it every third of `sync.lease_ms`; a follower bids again every
//! `sync.maintain_ms` and as soon as the leader's lease can have run out, so a dead leader is
//! replaced within `sync.lease_ms` and one that resigned (a clean shutdown) within a second. The
//! steps only the leader takes are fenced by its term in the store itself, so an ex-leader that
//! was paused past its lease and wakes up still believing it leads is refused there.

use crate::clock::now_ms;
use crate::services::Services;
use crate::store::{LeaderClaim, Leadership, Term};
use crate::supervisor::SupervisorMsg;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::time::Duration;
use tokio::time::Instant;

/// A follower bids this long after the leader's lease should have run out (clock skew between
/// the Redis server's expiry and this process's timer).
const BID_MARGIN: Duration = Duration::from_millis(50);

pub(crate) struct LeaderElector {
    pub services: Services,
    /// Told of every change: `Lead(term)` or `Follow`.
    pub supervisor: ActorRef<SupervisorMsg>,
}

pub(crate) enum ElectorMsg {
    Tick,
}

pub(crate) struct ElectorState {
    term: Option<Term>,
    /// When the leadership was last renewed (so that a leader cut off from the store steps down
    /// once its lease has run out, as the store sees it).
    renewed_at: Instant,
}

impl LeaderElector {
    fn lease(&self) -> Duration {
        self.services.settings.lease
    }

    /// One bid or renewal; returns the wait before the next.
    async fn tick(&self, state: &mut ElectorState) -> Duration {
        let settings = &self.services.settings;
        let renew_every = self.lease() / 3;
        let claim = LeaderClaim {
            instance: settings.instance,
            held: state.term.map(|t| t.epoch),
            ttl_ms: self.lease().as_millis() as u64,
            now_ms: now_ms(),
        };
        match self.services.store.lead(&claim).await {
            Ok(Leadership::Leader(term)) => {
                state.renewed_at = Instant::now();
                if state.term != Some(term) {
                    tracing::info!(
                        instance = %term.instance,
                        epoch = term.epoch,
                        "Elected leader: this instance now runs the TipWatcher and the SyncCoordinator"
                    );
                    self.services
                        .stats
                        .elections_won
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    state.term = Some(term);
                    let _ = self.supervisor.cast(SupervisorMsg::Lead(term));
                }
                renew_every
            }
            Ok(Leadership::Follower {
                leader,
                expires_in_ms,
            }) => {
                if let Some(mine) = state.term.take() {
                    if leader.instance == mine.instance {
                        tracing::error!(
                            instance = %mine.instance,
                            epoch = mine.epoch,
                            other_epoch = leader.epoch,
                            "Another process took the leadership under this instance's id: \
                             give each daemon its own instance.id"
                        );
                    } else {
                        tracing::warn!(
                            epoch = mine.epoch,
                            leader = %leader.instance,
                            leader_epoch = leader.epoch,
                            "Lost the leadership; following"
                        );
                    }
                    let _ = self.supervisor.cast(SupervisorMsg::Follow);
                }
                // A follower also looks every maintenance interval (1 s): a leader that resigned
                // on shutdown is replaced at once, not when its lease would have run out.
                (Duration::from_millis(expires_in_ms) + BID_MARGIN)
                    .min(settings.maintain_every)
                    .min(renew_every)
            }
            Err(error) => {
                if let Some(mine) = state.term {
                    if state.renewed_at.elapsed() >= self.lease() {
                        tracing::warn!(
                            %error,
                            epoch = mine.epoch,
                            "Could not renew the leadership within its lease; stepping down"
                        );
                        state.term = None;
                        let _ = self.supervisor.cast(SupervisorMsg::Follow);
                    }
                } else {
                    tracing::debug!(%error, "Could not bid for the leadership");
                }
                settings.idle.min(renew_every)
            }
        }
    }
}

impl Actor for LeaderElector {
    type Msg = ElectorMsg;
    type State = ElectorState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_message(ElectorMsg::Tick)?;
        Ok(ElectorState {
            term: None,
            renewed_at: Instant::now(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ElectorMsg::Tick => {
                if self.services.is_stopping() {
                    return Ok(());
                }
                let wait = self.tick(state).await;
                myself.send_after(wait, || ElectorMsg::Tick);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // A restarted elector starts as a follower: the leader's children must not outlive the
        // certainty that this instance leads. It bids again at once (and wins its own lease
        // back, with a new epoch, if no one else took it).
        // On shutdown the tree gives the leadership up itself, after the coordinator stopped.
        if state.term.is_some() && !self.services.is_stopping() {
            let _ = self.supervisor.cast(SupervisorMsg::Follow);
        }
        Ok(())
    }
}
