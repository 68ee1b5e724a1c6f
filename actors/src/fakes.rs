//! In-memory fakes of the chain and the store, for tests of the actor logic (here, and in other
//! crates through the `test-utils` feature). The store follows the Redis store's protocol in plain
//! Rust (claim order, exactly-once commit, retry schedule, reaping, the bounds of one call); the
//! root crate's `tests/store_contract.rs` runs one suite of rules against both, so they cannot
//! drift apart. A test can run the whole tree on them with paused time.
#![allow(clippy::unwrap_used)]

use crate::chain::{BlockId, Chain, ChainError, Lane};
use crate::model::{Block, BlockHeader, Event, EventBody};
use crate::retry::{after_failure, NextStep};
use crate::slot::{Instance, SlotId};
use crate::store::{
    Advance, BlockLink, CommitOutcome, Committer, DeadLetter, FailOutcome, LeaderClaim, Leadership,
    Lease, Origin, Queue, Store, StoreError, Term,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Leases reaped or retries promoted per call, earliest first: the Redis store's bound on one
/// maintenance round.
const MAINTENANCE_LIMIT: usize = 1_000;
/// A claim pops at most this many blocks per block asked (done ones are dropped as they are
/// popped): the Redis store's bound on one claim.
const CLAIM_POPS_PER_BLOCK: usize = 20;

/// How far the fake chain's solidified block trails its head, unless a test sets it.
pub const FAKE_SOLID_LAG: u64 = 19;

/// A chain whose head the test moves; block n has n % 3 events; some blocks always fail. A test
/// can replace blocks by other versions (a fork) with [`FakeChain::fork`].
#[derive(Default)]
pub struct FakeChain {
    /// The head block's number.
    pub head: AtomicU64,
    /// The solidified block; 0 = `head - FAKE_SOLID_LAG`.
    pub solid: AtomicU64,
    /// Times the solidified block was asked for.
    pub finalized_requests: AtomicU64,
    /// The version each block is served in (absent = 0, the first one).
    pub versions: Mutex<HashMap<u64, u32>>,
    /// Fetching these blocks fails with a malformed answer, every time.
    pub always_failing: Mutex<HashSet<u64>>,
    /// Fetching these blocks panics (a bug in decoding, say).
    pub panicking: Mutex<HashSet<u64>>,
    /// Fetching these blocks never finishes (a node that hangs).
    pub stalled: Mutex<HashSet<u64>>,
    /// Fetching these blocks takes this long.
    pub slow: Mutex<HashMap<u64, std::time::Duration>>,
    /// Fetches per block so far.
    pub fetches: Mutex<HashMap<u64, u32>>,
}

impl FakeChain {
    /// A chain whose head is `head`.
    pub fn with_head(head: u64) -> Self {
        let chain = FakeChain::default();
        chain.head.store(head, Ordering::SeqCst);
        chain
    }

    /// Block `number` in its first version (what a chain without forks serves).
    pub fn expected(number: u64) -> Block {
        Self::version_of(number, 0, 0)
    }

    /// Block `number` in version `version`, its parent in version `parent_version`. Versions
    /// differ in hash and in their events' transactions.
    pub fn version_of(number: u64, version: u32, parent_version: u32) -> Block {
        let tx = if version == 0 {
            format!("tx{number}")
        } else {
            format!("tx{number}v{version}")
        };
        Block {
            header: BlockHeader {
                number,
                hash: fake_hash(number, version),
                parent_hash: fake_hash(number.saturating_sub(1), parent_version),
                timestamp_ms: number * 3000,
            },
            events: (0..number % 3)
                .map(|i| Event {
                    uid: format!("{tx}_{i}"),
                    tx: tx.clone(),
                    body: EventBody::TrxTransfer {
                        from: "TA".into(),
                        to: "TB".into(),
                        value: i.to_string(),
                    },
                })
                .collect(),
        }
    }

    /// Block `number` as the chain serves it now.
    pub fn served(&self, number: u64) -> Block {
        let versions = self.versions.lock().unwrap();
        let version = |n: u64| versions.get(&n).copied().unwrap_or(0);
        Self::version_of(number, version(number), version(number.saturating_sub(1)))
    }

    /// The node switches to another branch: blocks `from..from + depth` are served in a new
    /// version from now on.
    pub fn fork(&self, from: u64, depth: u64) {
        let mut versions = self.versions.lock().unwrap();
        for number in from..from + depth {
            *versions.entry(number).or_default() += 1;
        }
    }

    fn solid_block(&self) -> u64 {
        match self.solid.load(Ordering::SeqCst) {
            0 => self
                .head
                .load(Ordering::SeqCst)
                .saturating_sub(FAKE_SOLID_LAG),
            solid => solid,
        }
    }
}

/// The hash of version `version` of block `number`.
pub fn fake_hash(number: u64, version: u32) -> String {
    format!("{number:056x}{version:08x}")
}

#[async_trait]
impl Chain for FakeChain {
    async fn head(&self) -> Result<BlockHeader, ChainError> {
        Ok(self.served(self.head.load(Ordering::SeqCst)).header)
    }

    async fn header(&self, number: u64) -> Result<BlockHeader, ChainError> {
        if number > self.head.load(Ordering::SeqCst) {
            return Err(ChainError::NotProduced(number));
        }
        Ok(self.served(number).header)
    }

    async fn finalized(&self) -> Result<BlockId, ChainError> {
        self.finalized_requests.fetch_add(1, Ordering::SeqCst);
        let number = self.solid_block();
        Ok(BlockId {
            number,
            hash: self.served(number).header.hash,
        })
    }

    async fn block(&self, number: u64, _lane: Lane) -> Result<Block, ChainError> {
        *self.fetches.lock().unwrap().entry(number).or_default() += 1;
        if self.stalled.lock().unwrap().contains(&number) {
            std::future::pending::<()>().await;
        }
        let delay = self.slow.lock().unwrap().get(&number).copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        if self.panicking.lock().unwrap().contains(&number) {
            panic!("fake chain panics on block {number}");
        }
        if self.always_failing.lock().unwrap().contains(&number) {
            return Err(ChainError::Malformed {
                what: format!("block {number}"),
                detail: "truncated JSON".into(),
            });
        }
        if number > self.head.load(Ordering::SeqCst) {
            return Err(ChainError::NotProduced(number));
        }
        Ok(self.served(number))
    }
}

/// An entry of the fake store's stream, beyond the events themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeEntry {
    /// A committed block: its `block` entry (its events precede it).
    Block {
        /// The block.
        number: u64,
        /// Its hash.
        hash: String,
        /// Its events.
        events: usize,
    },
    /// A `block_reverted` entry.
    Reverted {
        /// The block.
        number: u64,
        /// The orphan's hash.
        hash: String,
    },
    /// A `finalized` entry.
    Finalized {
        /// The solidified block.
        number: u64,
    },
}

/// Everything the fake store holds; a test may read it or set it up directly.
#[derive(Default)]
pub struct FakeStoreState {
    /// last_synced_block.
    pub last_synced: Option<u64>,
    /// The priority queue.
    pub priority: BTreeSet<u64>,
    /// The backlog queue.
    pub backlog: BTreeSet<u64>,
    /// block -> (slot, origin, deadline)
    pub leases: HashMap<u64, (SlotId, Origin, u64)>,
    /// The blocks committed.
    pub done: HashSet<u64>,
    /// Commits in order: (block, events).
    pub stream: Vec<(u64, usize)>,
    /// Every block, retraction and finality entry, in stream order.
    pub journal: Vec<FakeEntry>,
    /// The links of committed blocks above the finalized block.
    pub links: BTreeMap<u64, BlockLink>,
    /// The finalized block last published.
    pub finalized: Option<u64>,
    /// block -> failures so far.
    pub attempts: HashMap<u64, u32>,
    /// block -> (due, queue to return to)
    pub retry: BTreeMap<u64, (u64, Queue)>,
    /// The dead-letter set.
    pub dead: BTreeMap<u64, DeadLetter>,
    /// The leader's term and when its leadership runs out (ms since the epoch).
    pub leader: Option<(Term, u64)>,
    /// The last epoch handed out.
    pub epoch: u64,
    /// The registry of instances: instance -> last seen.
    pub instances: BTreeMap<Instance, u64>,
    /// Blocks committed per instance.
    pub committed_by: HashMap<Instance, u64>,
    /// Steps refused because their term no longer led.
    pub not_leader_refusals: u64,
}

/// A [`Store`] in memory.
#[derive(Default)]
pub struct FakeStore {
    /// What it holds.
    pub state: Mutex<FakeStoreState>,
    /// Commits and failure records fail, as with Redis down.
    pub down: std::sync::atomic::AtomicBool,
    /// Commits are refused for want of memory (Redis's `-OOM`); counts each refusal.
    pub out_of_memory: std::sync::atomic::AtomicBool,
    /// Commits refused by `out_of_memory` so far.
    pub oom_refusals: std::sync::atomic::AtomicU64,
}

impl FakeStoreState {
    fn queue(&mut self, queue: Queue) -> &mut BTreeSet<u64> {
        match queue {
            Queue::Priority => &mut self.priority,
            Queue::Backlog => &mut self.backlog,
        }
    }

    /// The leader now, if its leadership has not run out.
    pub fn leader_at(&self, now_ms: u64) -> Option<Term> {
        self.leader
            .filter(|(_, until)| *until > now_ms)
            .map(|(term, _)| term)
    }

    /// Refuses a step fenced by a term that no longer leads (the scripts' twin).
    fn fence(&mut self, term: Option<Term>) -> Result<(), StoreError> {
        let Some(term) = term else { return Ok(()) };
        if self.leader_at(crate::clock::now_ms()) == Some(term) {
            return Ok(());
        }
        self.not_leader_refusals += 1;
        Err(StoreError::NotLeader {
            instance: term.instance,
            epoch: term.epoch,
        })
    }

    fn return_to_queue(&mut self, block: u64) {
        if let Some((_, origin, _)) = self.leases.remove(&block) {
            if !self.done.contains(&block) {
                self.queue(origin.queue()).insert(block);
            }
        }
    }
}

#[async_trait]
impl Store for FakeStore {
    async fn last_synced(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.state.lock().unwrap().last_synced)
    }

    async fn advance(&self, advance: &Advance) -> Result<(), StoreError> {
        let mut s = self.state.lock().unwrap();
        s.fence(advance.term)?;
        if let Some((queue, from, to)) = advance.enqueue {
            s.queue(queue).extend(from..=to);
        }
        if s.last_synced != advance.expected_last {
            return Err(StoreError::Conflict {
                expected: advance.expected_last,
                found: s.last_synced,
            });
        }
        if !s.done.contains(&advance.head) {
            s.leases.insert(
                advance.head,
                (advance.tip_slot, Origin::Tip, advance.lease_deadline_ms),
            );
        }
        s.last_synced = Some(advance.head);
        Ok(())
    }

    async fn claim(
        &self,
        queue: Queue,
        slot: SlotId,
        max: usize,
        deadline_ms: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let mut s = self.state.lock().unwrap();
        let mut out = Vec::new();
        let mut popped = 0;
        while out.len() < max && popped < max * CLAIM_POPS_PER_BLOCK {
            popped += 1;
            let next = match queue {
                Queue::Backlog => s.backlog.pop_last(),
                Queue::Priority => s.priority.pop_first(),
            };
            let Some(block) = next else { break };
            if !s.done.contains(&block) {
                s.leases.insert(block, (slot, queue.origin(), deadline_ms));
                out.push(block);
            }
        }
        Ok(out)
    }

    async fn owned_leases(&self, slot: SlotId) -> Result<Vec<Lease>, StoreError> {
        let s = self.state.lock().unwrap();
        let mut leases: Vec<Lease> = s
            .leases
            .iter()
            .filter(|(_, (owner, _, _))| *owner == slot)
            .map(|(block, (_, origin, _))| Lease {
                block: *block,
                origin: *origin,
            })
            .collect();
        leases.sort_by_key(|l| std::cmp::Reverse(l.block));
        Ok(leases)
    }

    async fn heartbeat(&self, slot: SlotId, deadline_ms: u64) -> Result<usize, StoreError> {
        let mut s = self.state.lock().unwrap();
        let mut n = 0;
        for (owner, _, deadline) in s.leases.values_mut() {
            if *owner == slot {
                *deadline = deadline_ms;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn commit_by(
        &self,
        _origin: Origin,
        block: &Block,
        _now_ms: u64,
        by: Committer,
    ) -> Result<CommitOutcome, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("connection refused".into()));
        }
        if self.out_of_memory.load(Ordering::SeqCst) {
            self.oom_refusals.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::OutOfMemory(
                "OOM command not allowed when used memory > 'maxmemory'".into(),
            ));
        }
        let mut s = self.state.lock().unwrap();
        s.fence(by.term)?;
        let header = &block.header;
        let number = header.number;
        let differs = |link: Option<&BlockLink>, hash: &str| link.is_some_and(|l| l.hash != hash);
        if s.done.contains(&number) && differs(s.links.get(&number), &header.hash) {
            return Ok(CommitOutcome::Unlinked { at: number });
        }
        if !s.done.contains(&number) {
            if let Some(parent) = number.checked_sub(1) {
                if differs(s.links.get(&parent), &header.parent_hash) {
                    return Ok(CommitOutcome::Unlinked { at: parent });
                }
            }
            let child = s.links.get(&(number + 1));
            if child.is_some_and(|c| c.parent_hash != header.hash) {
                return Ok(CommitOutcome::Unlinked { at: number + 1 });
            }
        }
        s.leases.remove(&number);
        let prior = s.attempts.remove(&number).unwrap_or(0);
        s.retry.remove(&number);
        if !s.done.insert(number) {
            return Ok(CommitOutcome::AlreadyDone);
        }
        s.stream.push((number, block.events.len()));
        *s.committed_by.entry(by.instance).or_default() += 1;
        s.journal.push(FakeEntry::Block {
            number,
            hash: header.hash.clone(),
            events: block.events.len(),
        });
        if s.finalized.is_none_or(|f| number > f) {
            s.links.insert(
                number,
                BlockLink {
                    number,
                    hash: header.hash.clone(),
                    parent_hash: header.parent_hash.clone(),
                },
            );
        }
        Ok(CommitOutcome::Published {
            events: block.events.len(),
            attempt: prior + 1,
        })
    }

    async fn links(&self, from: u64, to: u64) -> Result<Vec<BlockLink>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        let s = self.state.lock().unwrap();
        Ok(s.links.range(from..=to).map(|(_, l)| l.clone()).collect())
    }

    async fn revert_in(
        &self,
        orphans: &[BlockLink],
        _now_ms: u64,
        term: Option<Term>,
    ) -> Result<Vec<u64>, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("connection refused".into()));
        }
        let mut s = self.state.lock().unwrap();
        s.fence(term)?;
        let mut reverted = Vec::new();
        for orphan in orphans {
            let number = orphan.number;
            let stored = s.links.get(&number).map(|l| l.hash.clone());
            if s.finalized.is_some_and(|f| number <= f) || stored.as_ref() != Some(&orphan.hash) {
                continue;
            }
            s.journal.push(FakeEntry::Reverted {
                number,
                hash: orphan.hash.clone(),
            });
            s.done.remove(&number);
            s.links.remove(&number);
            s.priority.insert(number);
            reverted.push(number);
        }
        Ok(reverted)
    }

    async fn finalized(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.state.lock().unwrap().finalized)
    }

    async fn finalize_in(
        &self,
        block: u64,
        _hash: &str,
        _now_ms: u64,
        term: Option<Term>,
    ) -> Result<bool, StoreError> {
        let mut s = self.state.lock().unwrap();
        s.fence(term)?;
        if s.finalized.is_some_and(|f| f >= block) {
            return Ok(false);
        }
        s.finalized = Some(block);
        s.journal.push(FakeEntry::Finalized { number: block });
        s.links.retain(|number, _| *number >= block);
        Ok(true)
    }

    async fn lead(&self, claim: &LeaderClaim) -> Result<Leadership, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("connection refused".into()));
        }
        let mut s = self.state.lock().unwrap();
        s.instances.insert(claim.instance, claim.now_ms);
        let until = claim.now_ms + claim.ttl_ms;
        let current = s.leader.filter(|(_, expires)| *expires > claim.now_ms);
        match current {
            Some((term, _))
                if term.instance == claim.instance && claim.held == Some(term.epoch) =>
            {
                s.leader = Some((term, until));
                Ok(Leadership::Leader(term))
            }
            Some((term, _)) if !(term.instance == claim.instance && claim.held.is_none()) => {
                Ok(Leadership::Follower {
                    leader: term,
                    expires_in_ms: current.map_or(0, |(_, e)| e - claim.now_ms),
                })
            }
            _ => {
                s.epoch += 1;
                let term = Term {
                    instance: claim.instance,
                    epoch: s.epoch,
                };
                s.leader = Some((term, until));
                Ok(Leadership::Leader(term))
            }
        }
    }

    async fn resign(&self, term: Option<Term>, instance: Instance) -> Result<(), StoreError> {
        let mut s = self.state.lock().unwrap();
        if term.is_some() && s.leader.map(|(t, _)| t) == term {
            s.leader = None;
        }
        s.instances.remove(&instance);
        Ok(())
    }

    async fn fail(
        &self,
        block: u64,
        error: &str,
        now_ms: u64,
        delays_ms: &[u64],
    ) -> Result<FailOutcome, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("connection refused".into()));
        }
        let mut s = self.state.lock().unwrap();
        let origin = s
            .leases
            .remove(&block)
            .map(|(_, origin, _)| origin)
            .unwrap_or(Origin::Priority);
        if s.done.contains(&block) {
            return Ok(FailOutcome::AlreadyDone);
        }
        let attempt = {
            let a = s.attempts.entry(block).or_default();
            *a += 1;
            *a
        };
        match after_failure(attempt, delays_ms) {
            NextStep::RetryAfter(delay) => {
                let due_ms = now_ms + delay.as_millis() as u64;
                s.retry.insert(block, (due_ms, origin.queue()));
                Ok(FailOutcome::Retry { attempt, due_ms })
            }
            NextStep::DeadLetter => {
                s.attempts.remove(&block);
                s.retry.remove(&block);
                s.dead.insert(
                    block,
                    DeadLetter {
                        block,
                        attempts: attempt,
                        error: error.to_string(),
                        at_ms: now_ms,
                        path: origin.queue().as_str().to_string(),
                    },
                );
                Ok(FailOutcome::Dead { attempts: attempt })
            }
        }
    }

    async fn release(&self, slot: SlotId, blocks: &[u64]) -> Result<usize, StoreError> {
        let mut s = self.state.lock().unwrap();
        let mut n = 0;
        for block in blocks {
            if s.leases
                .get(block)
                .is_some_and(|(owner, _, _)| *owner == slot)
            {
                s.return_to_queue(*block);
                n += 1;
            }
        }
        Ok(n)
    }

    async fn reap_expired(&self, now_ms: u64) -> Result<usize, StoreError> {
        let mut s = self.state.lock().unwrap();
        let expired = earliest_first(
            s.leases
                .iter()
                .map(|(block, (_, _, deadline))| (*deadline, *block)),
            now_ms,
        );
        for block in &expired {
            s.return_to_queue(*block);
        }
        Ok(expired.len())
    }

    async fn promote_due_retries(&self, now_ms: u64) -> Result<usize, StoreError> {
        let mut s = self.state.lock().unwrap();
        let due = earliest_first(s.retry.iter().map(|(block, (at, _))| (*at, *block)), now_ms);
        for block in &due {
            if let Some((_, queue)) = s.retry.remove(block) {
                s.queue(queue).insert(*block);
            }
        }
        Ok(due.len())
    }
}

/// The blocks due by `now_ms`, at most [`MAINTENANCE_LIMIT`], in the order a Redis sorted set
/// ranges them: by score, then by member as text.
fn earliest_first(scored: impl Iterator<Item = (u64, u64)>, now_ms: u64) -> Vec<u64> {
    let mut due: Vec<(u64, u64)> = scored.filter(|(score, _)| *score <= now_ms).collect();
    due.sort_by_cached_key(|(score, block)| (*score, block.to_string()));
    due.into_iter()
        .take(MAINTENANCE_LIMIT)
        .map(|(_, block)| block)
        .collect()
}
