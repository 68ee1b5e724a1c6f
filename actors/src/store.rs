//! The store as the actors see it: last_synced_block, the queues, leases, retries, dead letters
//! and the exactly-once commit. The Redis implementation lives in the binary crate; every method
//! there is one atomic step (a Lua script or an idempotent command).

use crate::chain::ErrorSource;
use crate::chain::Lane;
use crate::model::Block;
use crate::slot::{Instance, SlotId};
use async_trait::async_trait;

/// Where a block's work came from: the head, a small gap or retry, or a large gap. It decides
/// which queue the block goes back to (lease expired, retry due, hand-back on shutdown) and whose
/// lane its node requests take, and it labels metrics (`path="tip"`, ...). Its names are stored
/// in Redis (lease values, `stats`, dead letters), so they never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The head block, processed by the TipWatcher.
    Tip,
    /// A small gap (<= 20 blocks) or a due retry.
    Priority,
    /// A large gap, worked newest first.
    Backlog,
}

impl Origin {
    /// Every origin, in the order metrics list them.
    pub const ALL: [Origin; 3] = [Origin::Tip, Origin::Priority, Origin::Backlog];

    /// The stored name: `tip`, `priority`, `backlog`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Tip => "tip",
            Origin::Priority => "priority",
            Origin::Backlog => "backlog",
        }
    }

    /// Reads a stored name back.
    pub fn parse(text: &str) -> Option<Origin> {
        match text {
            "tip" => Some(Origin::Tip),
            "priority" => Some(Origin::Priority),
            "backlog" => Some(Origin::Backlog),
            _ => None,
        }
    }

    /// The queue a block of this origin goes back to. The head's block goes to the priority
    /// queue: it is as urgent as a small gap. (The Lua scripts' `queue_of` is the same rule on
    /// the Redis side; `tests/store_schema.rs` checks they agree.)
    pub fn queue(self) -> Queue {
        match self {
            Origin::Backlog => Queue::Backlog,
            Origin::Tip | Origin::Priority => Queue::Priority,
        }
    }
}

/// Whose node request it is: the backlog's, or the head's lane, which small gaps and retries share
/// since they too keep the stream live.
impl From<Origin> for Lane {
    fn from(origin: Origin) -> Self {
        match origin {
            Origin::Backlog => Lane::Backlog,
            Origin::Tip | Origin::Priority => Lane::Head,
        }
    }
}

/// The two work queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Queue {
    /// Taken lowest block first (oldest gap first).
    Priority,
    /// Taken highest block first (most recent first).
    Backlog,
}

impl Queue {
    /// The origin of the blocks claimed from this queue.
    pub fn origin(self) -> Origin {
        match self {
            Queue::Priority => Origin::Priority,
            Queue::Backlog => Origin::Backlog,
        }
    }

    /// The stored name: `priority`, `backlog` (the same as its origin's).
    pub fn as_str(self) -> &'static str {
        self.origin().as_str()
    }
}

/// A block leased to a slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The block leased.
    pub block: u64,
    /// Where its work came from, so it goes back to the right queue.
    pub origin: Origin,
}

/// One leadership: the instance that leads and the epoch it was elected in. Epochs only grow, so
/// a step fenced by a term is refused once another instance has been elected since (a paused
/// ex-leader that wakes up moves nothing back).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Term {
    /// Who leads.
    pub instance: Instance,
    /// The election it won.
    pub epoch: u64,
}

/// A bid for the leadership, or its renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderClaim {
    /// The bidder.
    pub instance: Instance,
    /// The epoch the bidder leads in now, to renew it; `None` to take the leadership when it
    /// is free (or held by an earlier process of the same instance id).
    pub held: Option<u64>,
    /// How long the leadership lasts without a renewal.
    pub ttl_ms: u64,
    /// Now, ms since the epoch (the instance's heartbeat in the registry of instances).
    pub now_ms: u64,
}

/// What a [`LeaderClaim`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// The bidder leads in this term (renewed, or newly elected).
    Leader(Term),
    /// Another term holds it.
    Follower {
        /// The leader's term.
        leader: Term,
        /// When its leadership runs out unless renewed.
        expires_in_ms: u64,
    },
}

/// Who commits a block: the instance (counted per instance in the stats) and, for a block the
/// leader's TipWatcher leased itself, the leader's term, which the commit checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Committer {
    /// The committing instance.
    pub instance: Instance,
    /// The term the commit is fenced by; `None` = not fenced.
    pub term: Option<Term>,
}

/// What the atomic advance of last_synced_block records together with the new value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advance {
    /// The value of last_synced_block this decision was made from; the advance is refused if the
    /// store holds another one (a second coordinator moved it meanwhile).
    pub expected_last: Option<u64>,
    /// The new head, leased to `tip_slot`, becomes last_synced_block.
    pub head: u64,
    /// The slot the head is leased to.
    pub tip_slot: SlotId,
    /// When the head's lease expires, ms since the epoch.
    pub lease_deadline_ms: u64,
    /// Blocks to enqueue first (idempotent), `from..=to`.
    pub enqueue: Option<(Queue, u64, u64)>,
    /// The leader's term: the advance is refused ([`StoreError::NotLeader`]) when another term
    /// holds the leadership. `None` = not fenced (tools, tests of one store).
    pub term: Option<Term>,
}

/// Result of a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The block's events were added; it is now marked done. `attempt` is 1 on a first try,
    /// n after n - 1 failures.
    Published {
        /// Events added to the stream.
        events: usize,
        /// Which attempt this was.
        attempt: u32,
    },
    /// The block was already done; nothing was written (a re-processing after a crash).
    AlreadyDone,
    /// Nothing was written and the lease is kept: the block does not link to the committed
    /// block `at` (`at` is the block's parent and its stored hash is not the block's
    /// `parent_hash`, or `at` is its child and names another parent, or `at` is the block
    /// itself, committed in another version). The node switched forks: the coordinator walks
    /// back from `at` before the block is tried again.
    Unlinked {
        /// The committed block the new one contradicts.
        at: u64,
    },
}

/// What is kept of a committed block while it may still be replaced (above the finalized
/// block): enough to check that its neighbours link to it, and to retract it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockLink {
    /// The block number.
    pub number: u64,
    /// Its `blockID`.
    pub hash: String,
    /// Its `parentHash`.
    pub parent_hash: String,
}

/// Result of recording a failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailOutcome {
    /// Scheduled again; `attempt` is the number of failures so far.
    Retry {
        /// Failures so far.
        attempt: u32,
        /// When the retry is due, ms since the epoch.
        due_ms: u64,
    },
    /// The schedule is exhausted: the block is in the dead-letter set.
    Dead {
        /// Failures in all.
        attempts: u32,
    },
    /// The block was committed meanwhile; the failure is moot.
    AlreadyDone,
}

/// Why the store could not do a step. None is fatal: the step is tried again later (a restart,
/// the next tick, an expired lease), so nothing branches on the variant; they differ in what
/// they keep for the log and the trace.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer (down, timed out, connection lost).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store's client failed (cannot connect, timed out, refused the command); its error
    /// is the source.
    #[error("store unavailable: {0}")]
    Client(#[source] ErrorSource),
    /// The store refused a write for want of memory (Redis: `-OOM command not allowed when used
    /// memory > 'maxmemory'`). Not the block's fault: the work pauses (see
    /// [`crate::backpressure`]) and the write is tried again, never failed for it.
    #[error("store out of memory: {0}")]
    OutOfMemory(String),
    /// The work is paused (see [`crate::backpressure`]) and the tree is stopping: the block was
    /// not committed, its lease stays.
    #[error("store paused: {0}")]
    Paused(String),
    /// The store's address cannot be used; the parser's error is the source.
    #[error("store unavailable: bad redis url: {0}")]
    BadUrl(#[source] ErrorSource),
    /// The store answered something the protocol does not allow.
    #[error("store answered something unexpected: {0}")]
    Protocol(String),
    /// A stored value that cannot be decoded; the decoder's error is the source.
    #[error("store answered something unexpected: {what}: {source}")]
    Undecodable {
        /// What was being decoded.
        what: String,
        /// Why it could not be.
        #[source]
        source: ErrorSource,
    },
    /// An advance was refused: last_synced_block is not what the decision was made from.
    #[error("last_synced_block moved meanwhile (expected {expected:?}, found {found:?})")]
    Conflict {
        /// The value the decision was made from.
        expected: Option<u64>,
        /// The value the store holds.
        found: Option<u64>,
    },
    /// A step fenced by a term was refused: that term no longer leads.
    #[error("instance {instance} is no longer the leader (its epoch {epoch} ended)")]
    NotLeader {
        /// The refused term's instance.
        instance: Instance,
        /// The refused term's epoch.
        epoch: u64,
    },
}

impl StoreError {
    /// Whether it says the store is short of memory rather than anything about the block: the
    /// block then keeps its lease and is not counted as a failure.
    pub fn is_backpressure(&self) -> bool {
        matches!(self, StoreError::OutOfMemory(_) | StoreError::Paused(_))
    }

    /// A short, stable label, as [`crate::chain::ChainError::kind`] is for the chain.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) | StoreError::Client(_) | StoreError::BadUrl(_) => {
                "store_unavailable"
            }
            StoreError::OutOfMemory(_) => "store_out_of_memory",
            StoreError::Paused(_) => "store_paused",
            StoreError::Protocol(_) | StoreError::Undecodable { .. } => "store_protocol",
            StoreError::Conflict { .. } => "store_conflict",
            StoreError::NotLeader { .. } => "store_not_leader",
        }
    }
}

/// Dead-letter record of one block.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// The block given up.
    pub block: u64,
    /// Failures in all.
    pub attempts: u32,
    /// The last failure's message.
    pub error: String,
    /// When it was given up, ms since the epoch.
    pub at_ms: u64,
    /// The queue it goes back to when requeued (an [`Origin`]'s name; stored as `path`).
    pub path: String,
}

/// The store protocol of docs/ARCHITECTURE.md ("The Redis schema", "Why each block is in the
/// stream exactly once"), which both stores follow (tests/store_contract.rs holds them to it).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// last_synced_block; `None` on a first run.
    async fn last_synced(&self) -> Result<Option<u64>, StoreError>;

    /// Enqueues the gap (if any), leases the head to the tip slot and moves last_synced_block, so
    /// that a crash leaves either all or none of it visible (enqueueing is idempotent and happens
    /// first; the lease and the move are one atomic step).
    async fn advance(&self, advance: &Advance) -> Result<(), StoreError>;

    /// Atomically pops up to `max` blocks from `queue` (backlog highest first, priority lowest
    /// first) and leases them to `slot`. Blocks already done are dropped, not returned.
    async fn claim(
        &self,
        queue: Queue,
        slot: SlotId,
        max: usize,
        deadline_ms: u64,
    ) -> Result<Vec<u64>, StoreError>;

    /// The leases `slot` still owns (resumed by a restarted actor before it claims new work).
    async fn owned_leases(&self, slot: SlotId) -> Result<Vec<Lease>, StoreError>;

    /// Extends every lease `slot` owns to `deadline_ms`; returns how many.
    async fn heartbeat(&self, slot: SlotId, deadline_ms: u64) -> Result<usize, StoreError>;

    /// The exactly-once step: if `block` is not done, add all its events to the stream, mark it
    /// done and drop its lease; otherwise only drop the lease. Counted for `by.instance`; refused
    /// with [`StoreError::NotLeader`] (nothing written, the lease kept) when `by.term` no longer
    /// leads.
    async fn commit_by(
        &self,
        origin: Origin,
        block: &Block,
        now_ms: u64,
        by: Committer,
    ) -> Result<CommitOutcome, StoreError>;

    /// [`Store::commit_by`] by no instance, not fenced.
    async fn commit(
        &self,
        origin: Origin,
        block: &Block,
        now_ms: u64,
    ) -> Result<CommitOutcome, StoreError> {
        self.commit_by(origin, block, now_ms, Committer::default())
            .await
    }

    /// The links kept of committed blocks `from..=to`, lowest first. A committed block has one
    /// exactly when it was committed above the finalized block and is not yet below it.
    async fn links(&self, from: u64, to: u64) -> Result<Vec<BlockLink>, StoreError>;

    /// Retracts orphaned blocks, `orphans` newest first, in one atomic step: for each whose
    /// stored link still has the orphan's hash, one `block_reverted` entry, its done mark and
    /// link cleared, and the block back on the priority queue; others are left alone. Returns
    /// the blocks retracted. A block at or below the finalized block is never retracted.
    /// Refused with [`StoreError::NotLeader`] when `term` no longer leads.
    async fn revert_in(
        &self,
        orphans: &[BlockLink],
        now_ms: u64,
        term: Option<Term>,
    ) -> Result<Vec<u64>, StoreError>;

    /// [`Store::revert_in`], not fenced.
    async fn revert(&self, orphans: &[BlockLink], now_ms: u64) -> Result<Vec<u64>, StoreError> {
        self.revert_in(orphans, now_ms, None).await
    }

    /// The finalized block as last published; `None` before the first.
    async fn finalized(&self) -> Result<Option<u64>, StoreError>;

    /// Publishes a `finalized` entry for `block` (the node's solidified block, hash `hash`) if
    /// it is above the stored one, and forgets the links below it; returns whether it moved.
    /// Refused with [`StoreError::NotLeader`] when `term` no longer leads.
    async fn finalize_in(
        &self,
        block: u64,
        hash: &str,
        now_ms: u64,
        term: Option<Term>,
    ) -> Result<bool, StoreError>;

    /// [`Store::finalize_in`], not fenced.
    async fn finalize(&self, block: u64, hash: &str, now_ms: u64) -> Result<bool, StoreError> {
        self.finalize_in(block, hash, now_ms, None).await
    }

    /// Takes or renews the leadership for `claim.instance` (a lease of `claim.ttl_ms`; a new
    /// election starts a new, higher epoch), or says who holds it. Also records the instance
    /// as alive at `claim.now_ms` in the registry of instances.
    async fn lead(&self, claim: &LeaderClaim) -> Result<Leadership, StoreError>;

    /// Gives the leadership up if `term` still holds it (clean shutdown: a follower takes over at
    /// once instead of after the lease), and removes the instance from the registry.
    async fn resign(&self, term: Option<Term>, instance: Instance) -> Result<(), StoreError>;

    /// Records a failed attempt: the block goes to the retry set, due after the delay for this
    /// attempt in `delays_ms`, or to the dead-letter set once they are used up. Drops the lease.
    async fn fail(
        &self,
        block: u64,
        error: &str,
        now_ms: u64,
        delays_ms: &[u64],
    ) -> Result<FailOutcome, StoreError>;

    /// Hands the given leases of `slot` back to their queues (graceful shutdown).
    async fn release(&self, slot: SlotId, blocks: &[u64]) -> Result<usize, StoreError>;

    /// Returns expired leases to the queue they came from; returns how many.
    async fn reap_expired(&self, now_ms: u64) -> Result<usize, StoreError>;

    /// Moves retries that are due back to their queues; returns how many.
    async fn promote_due_retries(&self, now_ms: u64) -> Result<usize, StoreError>;
}
