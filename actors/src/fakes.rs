//! In-memory fakes of the chain and the store, for tests of the actor logic (here, and in other
//! crates through the `test-utils` feature). The store follows the Redis store's protocol in plain
//! Rust (claim order, exactly-once commit, retry schedule, reaping, the bounds of one call); the
//! root crate's `tests/store_contract.rs` runs one suite of rules against both, so they cannot
//! drift apart. A test can run the whole tree on them with paused time.
#![allow(clippy::unwrap_used)]

use crate::chain::{Chain, ChainError, Lane};
use crate::model::{Block, BlockHeader, Event, EventBody};
use crate::retry::{after_failure, NextStep};
use crate::slot::SlotId;
use crate::store::{
    Advance, CommitOutcome, DeadLetter, FailOutcome, Lease, Origin, Queue, Store, StoreError,
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

/// A chain whose head the test moves; block n has n % 3 events; some blocks always fail.
#[derive(Default)]
pub struct FakeChain {
    /// The head block's number.
    pub head: AtomicU64,
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

    /// Block `number` as the chain serves it.
    pub fn expected(number: u64) -> Block {
        Block {
            header: header(number),
            events: (0..number % 3)
                .map(|i| Event {
                    uid: format!("tx{number}_{i}"),
                    tx: format!("tx{number}"),
                    body: EventBody::TrxTransfer {
                        from: "TA".into(),
                        to: "TB".into(),
                        value: i.to_string(),
                    },
                })
                .collect(),
        }
    }
}

fn header(number: u64) -> BlockHeader {
    BlockHeader {
        number,
        hash: format!("{number:064x}"),
        parent_hash: format!("{:064x}", number.saturating_sub(1)),
        timestamp_ms: number * 3000,
    }
}

#[async_trait]
impl Chain for FakeChain {
    async fn head(&self) -> Result<BlockHeader, ChainError> {
        Ok(header(self.head.load(Ordering::SeqCst)))
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
        Ok(Self::expected(number))
    }
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
    /// block -> failures so far.
    pub attempts: HashMap<u64, u32>,
    /// block -> (due, queue to return to)
    pub retry: BTreeMap<u64, (u64, Queue)>,
    /// The dead-letter set.
    pub dead: BTreeMap<u64, DeadLetter>,
}

/// A [`Store`] in memory.
#[derive(Default)]
pub struct FakeStore {
    /// What it holds.
    pub state: Mutex<FakeStoreState>,
    /// Commits and failure records fail, as with Redis down.
    pub down: std::sync::atomic::AtomicBool,
}

impl FakeStoreState {
    fn queue(&mut self, queue: Queue) -> &mut BTreeSet<u64> {
        match queue {
            Queue::Priority => &mut self.priority,
            Queue::Backlog => &mut self.backlog,
        }
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

    async fn commit(
        &self,
        _origin: Origin,
        block: &Block,
        _now_ms: u64,
    ) -> Result<CommitOutcome, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("connection refused".into()));
        }
        let mut s = self.state.lock().unwrap();
        let number = block.header.number;
        s.leases.remove(&number);
        let prior = s.attempts.remove(&number).unwrap_or(0);
        s.retry.remove(&number);
        if !s.done.insert(number) {
            return Ok(CommitOutcome::AlreadyDone);
        }
        s.stream.push((number, block.events.len()));
        Ok(CommitOutcome::Published {
            events: block.events.len(),
            attempt: prior + 1,
        })
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
