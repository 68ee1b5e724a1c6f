//! The `Store` contract: one suite of rules, each run against the in-memory store the actor tests
//! use (`actors::fakes::FakeStore`, tests `in_memory::*`) and against the Redis store on a private
//! redis-server (tests `on_redis::*`). The fake re-implements the Lua scripts in plain Rust; a
//! rule that passes on one side and fails on the other is the two drifting apart.
//!
//! Every rule speaks through the trait, plus a small [`StoreProbe`] for what the trait does not
//! expose (the stream, read as a list of [`Entry`], and the dead letters). The times are the
//! arguments the trait takes, so no clock is needed. What only Redis has (stream fields and their
//! order, stats, the script cache, AOF and restarts) is tested in tests/store.rs and
//! tests/reliability.rs.
#![allow(clippy::unwrap_used)]

mod common;

use actors::fakes::{FakeEntry, FakeStore};
use actors::model::{Block, KIND_BLOCK, KIND_BLOCK_REVERTED, KIND_FINALIZED};
use actors::slot::Instance;
use actors::slot::SlotId;
use actors::store::{
    Advance, BlockLink, CommitOutcome, Committer, DeadLetter, FailOutcome, LeaderClaim, Leadership,
    Lease, Origin, Queue, Store, StoreError, Term,
};
use async_trait::async_trait;
use common::sample_block;
use std::collections::{BTreeMap, HashMap};
use tron_actors::store::RedisStore;

/// One test per rule and per store; the rules are named once.
macro_rules! contract {
    ($($rule:ident),* $(,)?) => {
        mod in_memory {
            $(
                #[tokio::test]
                async fn $rule() {
                    super::$rule(&actors::fakes::FakeStore::default()).await;
                }
            )*
        }
        mod on_redis {
            $(
                #[tokio::test]
                async fn $rule() {
                    let redis = crate::common::TestRedis::start().await;
                    super::$rule(&redis.store()).await;
                }
            )*
        }
    };
}

contract!(
    a_first_run_has_no_last_synced_and_advance_sets_it,
    advance_enqueues_the_gap_and_leases_the_head_to_the_tip_slot,
    advance_refuses_a_stale_last_synced,
    advance_leases_no_head_that_is_already_done,
    backlog_is_claimed_highest_first_and_priority_lowest_first,
    claim_takes_at_most_max_and_leases_each_to_the_slot_with_the_queues_origin,
    commit_drops_the_lease_and_done_blocks_are_never_claimed,
    claim_pops_at_most_twenty_done_blocks_per_block_asked,
    expired_leases_go_back_to_their_queue_and_heartbeats_keep_them,
    reaping_moves_at_most_a_thousand_leases_per_call,
    a_block_is_committed_once_whatever_happens_after,
    commit_counts_prior_failures_and_forgets_the_pending_retry,
    failures_walk_the_schedule_into_the_dead_letter_set,
    a_failed_block_goes_back_to_the_queue_of_its_origin_when_due,
    a_dead_letter_names_the_queue_of_its_origin,
    a_dead_block_leaves_no_retry_behind,
    a_failure_after_the_commit_is_moot,
    release_hands_back_only_the_slots_own_leases,
    promoting_moves_at_most_a_thousand_retries_per_call,
    a_block_that_does_not_link_to_its_parent_is_refused_and_keeps_its_lease,
    a_block_that_its_committed_child_does_not_name_is_refused,
    a_done_block_in_another_version_is_refused,
    revert_retracts_newest_first_and_puts_the_blocks_back_to_work,
    revert_leaves_a_block_committed_in_another_version_and_a_final_one_alone,
    finalize_moves_only_forward_and_forgets_the_links_below_it,
    links_are_kept_only_above_the_finalized_block,
    one_term_leads_at_a_time_and_a_new_election_takes_the_next_epoch,
    steps_fenced_by_a_term_that_no_longer_leads_are_refused_and_write_nothing,
);

/// A stream entry as the rules read it: an event of a block, or an entry of the fake store's
/// journal (a `block`, `block_reverted` or `finalized` entry).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Event { block: u64 },
    Other(FakeEntry),
}

/// What a rule reads that the `Store` trait does not expose.
#[async_trait]
trait StoreProbe: Store {
    /// The stream, oldest entry first.
    async fn entries(&self) -> Vec<Entry>;
    /// The dead-letter set, lowest block first.
    async fn dead_letters(&self) -> Vec<DeadLetter>;
}

#[async_trait]
impl StoreProbe for FakeStore {
    async fn entries(&self) -> Vec<Entry> {
        let mut entries = Vec::new();
        for entry in &self.state.lock().unwrap().journal {
            // The fake journals a block's events as their count in its block entry.
            if let FakeEntry::Block { number, events, .. } = entry {
                entries.extend((0..*events).map(|_| Entry::Event { block: *number }));
            }
            entries.push(Entry::Other(entry.clone()));
        }
        entries
    }

    async fn dead_letters(&self) -> Vec<DeadLetter> {
        self.state.lock().unwrap().dead.values().cloned().collect()
    }
}

#[async_trait]
impl StoreProbe for RedisStore {
    async fn entries(&self) -> Vec<Entry> {
        let mut conn = self.connection();
        let stream: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(self.keys().events())
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .unwrap();
        stream
            .into_iter()
            .map(|(_, fields)| {
                let fields: HashMap<String, String> = fields.into_iter().collect();
                let number = fields["block"].parse().unwrap();
                let hash = || fields["block_hash"].clone();
                match fields["kind"].as_str() {
                    KIND_BLOCK => Entry::Other(FakeEntry::Block {
                        number,
                        hash: hash(),
                        events: fields["events"].parse().unwrap(),
                    }),
                    KIND_BLOCK_REVERTED => Entry::Other(FakeEntry::Reverted {
                        number,
                        hash: hash(),
                    }),
                    KIND_FINALIZED => Entry::Other(FakeEntry::Finalized { number }),
                    _ => Entry::Event { block: number },
                }
            })
            .collect()
    }

    async fn dead_letters(&self) -> Vec<DeadLetter> {
        RedisStore::dead_letters(self).await.unwrap()
    }
}

/// Events per block in the stream (a block without events has none).
async fn events_by_block(store: &impl StoreProbe) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for entry in store.entries().await {
        if let Entry::Event { block } = entry {
            *counts.entry(block).or_default() += 1;
        }
    }
    counts
}

/// The entries a commit of `block` writes: its events, then its block entry.
fn committed(block: &Block) -> Vec<Entry> {
    let number = block.header.number;
    let mut entries: Vec<Entry> = (0..block.events.len())
        .map(|_| Entry::Event { block: number })
        .collect();
    entries.push(Entry::Other(FakeEntry::Block {
        number,
        hash: block.header.hash.clone(),
        events: block.events.len(),
    }));
    entries
}

fn reverted(number: u64, version: u8) -> Entry {
    Entry::Other(FakeEntry::Reverted {
        number,
        hash: hash_of(number, version),
    })
}

fn finalized(number: u64) -> Entry {
    Entry::Other(FakeEntry::Finalized { number })
}

/// The hash of block `number` in version `version`; version 0 is [`sample_block`]'s.
fn hash_of(number: u64, version: u8) -> String {
    match version {
        0 => sample_block(number, 0).header.hash,
        v => format!("{number:016x}{}", format!("{v:02x}").repeat(24)),
    }
}

/// Block `number` with `events` events in version `version`, its parent in `parent_version`.
fn version(number: u64, events: usize, version: u8, parent_version: u8) -> Block {
    let mut block = sample_block(number, events);
    block.header.hash = hash_of(number, version);
    block.header.parent_hash = hash_of(number - 1, parent_version);
    block
}

/// The link a commit of `block` keeps.
fn link(block: &Block) -> BlockLink {
    BlockLink {
        number: block.header.number,
        hash: block.header.hash.clone(),
        parent_hash: block.header.parent_hash.clone(),
    }
}

/// Commits `blocks` (from the priority queue), each of which must be published.
async fn commit_all(store: &impl Store, blocks: &[Block]) {
    for block in blocks {
        let outcome = store.commit(Origin::Priority, block, 1).await.unwrap();
        assert_eq!(
            outcome,
            published(block.events.len(), 1),
            "{}",
            block.header.number
        );
    }
}

/// Every link kept, lowest first.
async fn all_links(store: &impl Store) -> Vec<BlockLink> {
    store.links(0, u64::MAX).await.unwrap()
}

/// A lease deadline no rule reaches.
const FAR: u64 = u64::MAX / 4;

/// Advances from `expected` to `head` (leased to the tip slot until `deadline`), enqueueing `gap`.
async fn advance(
    store: &impl Store,
    expected: Option<u64>,
    head: u64,
    deadline: u64,
    gap: Gap,
) -> Result<(), StoreError> {
    store
        .advance(&Advance {
            expected_last: expected,
            head,
            tip_slot: SlotId::TIP,
            lease_deadline_ms: deadline,
            enqueue: gap,
            term: None,
        })
        .await
}

/// [`advance`] with a lease that does not expire, which must succeed.
async fn sync_to(store: &impl Store, expected: Option<u64>, head: u64, gap: Gap) {
    advance(store, expected, head, FAR, gap).await.unwrap();
}

/// The gap an advance enqueues.
type Gap = Option<(Queue, u64, u64)>;

fn backlog(from: u64, to: u64) -> Gap {
    Some((Queue::Backlog, from, to))
}

fn priority(from: u64, to: u64) -> Gap {
    Some((Queue::Priority, from, to))
}

/// What `queue` holds, in claim order: claimed (to see it) by a slot no rule uses otherwise.
async fn drain(store: &impl Store, queue: Queue) -> Vec<u64> {
    store
        .claim(queue, SlotId::backlog(12), 100_000, FAR)
        .await
        .unwrap()
}

async fn claim(store: &impl Store, queue: Queue, slot: SlotId, max: usize) -> Vec<u64> {
    store.claim(queue, slot, max, FAR).await.unwrap()
}

fn leases(origin: Origin, blocks: &[u64]) -> Vec<Lease> {
    blocks
        .iter()
        .map(|block| Lease {
            block: *block,
            origin,
        })
        .collect()
}

fn dead(block: u64, attempts: u32, error: &str, at_ms: u64, path: &str) -> DeadLetter {
    DeadLetter {
        block,
        attempts,
        error: error.to_string(),
        at_ms,
        path: path.to_string(),
    }
}

fn published(events: usize, attempt: u32) -> CommitOutcome {
    CommitOutcome::Published { events, attempt }
}

fn retry(attempt: u32, due_ms: u64) -> FailOutcome {
    FailOutcome::Retry { attempt, due_ms }
}

// ---- advance ----

async fn a_first_run_has_no_last_synced_and_advance_sets_it(store: &impl StoreProbe) {
    assert_eq!(store.last_synced().await.unwrap(), None);
    sync_to(store, None, 50, None).await;
    assert_eq!(store.last_synced().await.unwrap(), Some(50));
    assert_eq!(
        store.owned_leases(SlotId::TIP).await.unwrap(),
        leases(Origin::Tip, &[50])
    );
    assert_eq!(drain(store, Queue::Priority).await, Vec::<u64>::new());
    assert_eq!(drain(store, Queue::Backlog).await, Vec::<u64>::new());
}

async fn advance_enqueues_the_gap_and_leases_the_head_to_the_tip_slot(store: &impl StoreProbe) {
    sync_to(store, None, 100, backlog(80, 99)).await;
    sync_to(store, Some(100), 105, priority(101, 104)).await;
    assert_eq!(store.last_synced().await.unwrap(), Some(105));
    assert_eq!(
        store.owned_leases(SlotId::TIP).await.unwrap(),
        leases(Origin::Tip, &[105, 100])
    );
    assert_eq!(
        drain(store, Queue::Priority).await,
        vec![101, 102, 103, 104]
    );
    assert_eq!(
        drain(store, Queue::Backlog).await,
        (80..=99).rev().collect::<Vec<_>>()
    );
}

async fn advance_refuses_a_stale_last_synced(store: &impl StoreProbe) {
    let refused = advance(store, Some(5), 50, FAR, None).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Conflict {
                expected: Some(5),
                found: None
            })
        ),
        "{refused:?}"
    );
    sync_to(store, None, 50, None).await;
    let again = advance(store, None, 60, FAR, priority(51, 59)).await;
    assert!(
        matches!(
            again,
            Err(StoreError::Conflict {
                expected: None,
                found: Some(50)
            })
        ),
        "{again:?}"
    );
    assert_eq!(store.last_synced().await.unwrap(), Some(50));
    assert_eq!(
        store.owned_leases(SlotId::TIP).await.unwrap(),
        leases(Origin::Tip, &[50])
    );
    // Enqueueing is idempotent and goes first, so the refused advance's gap is queued anyway.
    assert_eq!(
        drain(store, Queue::Priority).await,
        (51..=59).collect::<Vec<_>>()
    );
}

async fn advance_leases_no_head_that_is_already_done(store: &impl StoreProbe) {
    let outcome = store
        .commit(Origin::Tip, &sample_block(70, 1), 1)
        .await
        .unwrap();
    assert_eq!(outcome, published(1, 1));
    sync_to(store, None, 70, None).await;
    assert_eq!(store.last_synced().await.unwrap(), Some(70));
    assert_eq!(store.owned_leases(SlotId::TIP).await.unwrap(), vec![]);
}

// ---- claim ----

async fn backlog_is_claimed_highest_first_and_priority_lowest_first(store: &impl StoreProbe) {
    sync_to(store, None, 200, backlog(100, 199)).await;
    sync_to(store, Some(200), 210, priority(201, 209)).await;
    assert_eq!(
        claim(store, Queue::Backlog, SlotId::backlog(0), 5).await,
        vec![199, 198, 197, 196, 195]
    );
    assert_eq!(
        claim(store, Queue::Backlog, SlotId::backlog(1), 3).await,
        vec![194, 193, 192]
    );
    assert_eq!(
        claim(store, Queue::Priority, SlotId::PRIORITY, 2).await,
        vec![201, 202]
    );
    assert_eq!(store.last_synced().await.unwrap(), Some(210));
    assert_eq!(
        store.owned_leases(SlotId::TIP).await.unwrap(),
        leases(Origin::Tip, &[210, 200])
    );
    assert_eq!(
        store.owned_leases(SlotId::backlog(1)).await.unwrap(),
        leases(Origin::Backlog, &[194, 193, 192])
    );
    assert_eq!(
        drain(store, Queue::Backlog).await,
        (100..=191).rev().collect::<Vec<_>>()
    );
}

async fn claim_takes_at_most_max_and_leases_each_to_the_slot_with_the_queues_origin(
    store: &impl StoreProbe,
) {
    sync_to(store, None, 20, backlog(1, 9)).await;
    sync_to(store, Some(20), 30, priority(21, 29)).await;
    assert_eq!(
        claim(store, Queue::Backlog, SlotId::backlog(0), 0).await,
        Vec::<u64>::new()
    );
    assert_eq!(
        claim(store, Queue::Backlog, SlotId::backlog(0), 3).await,
        vec![9, 8, 7]
    );
    assert_eq!(
        claim(store, Queue::Priority, SlotId::PRIORITY, 2).await,
        vec![21, 22]
    );
    assert_eq!(
        store.owned_leases(SlotId::backlog(0)).await.unwrap(),
        leases(Origin::Backlog, &[9, 8, 7])
    );
    assert_eq!(
        store.owned_leases(SlotId::PRIORITY).await.unwrap(),
        leases(Origin::Priority, &[22, 21])
    );
    // Fewer left than asked: all of them, then nothing.
    assert_eq!(
        claim(store, Queue::Backlog, SlotId::backlog(1), 100).await,
        vec![6, 5, 4, 3, 2, 1]
    );
    assert_eq!(
        claim(store, Queue::Backlog, SlotId::backlog(1), 5).await,
        Vec::<u64>::new()
    );
}

async fn commit_drops_the_lease_and_done_blocks_are_never_claimed(store: &impl StoreProbe) {
    sync_to(store, None, 20, backlog(1, 19)).await;
    assert_eq!(
        claim(store, Queue::Backlog, SlotId::backlog(0), 2).await,
        vec![19, 18]
    );
    store
        .commit(Origin::Backlog, &sample_block(19, 1), 1)
        .await
        .unwrap();
    assert_eq!(
        store.owned_leases(SlotId::backlog(0)).await.unwrap(),
        leases(Origin::Backlog, &[18])
    );
    // Block 17 gets done elsewhere (a duplicate enqueue); claiming drops it from the queue.
    store
        .commit(Origin::Priority, &sample_block(17, 0), 1)
        .await
        .unwrap();
    assert_eq!(
        claim(store, Queue::Backlog, SlotId::backlog(1), 2).await,
        vec![16, 15]
    );
    assert_eq!(
        drain(store, Queue::Backlog).await,
        (1..=14).rev().collect::<Vec<_>>()
    );
}

async fn claim_pops_at_most_twenty_done_blocks_per_block_asked(store: &impl StoreProbe) {
    sync_to(store, None, 40, backlog(1, 30)).await;
    for block in 11..=30 {
        store
            .commit(Origin::Priority, &sample_block(block, 0), 1)
            .await
            .unwrap();
    }
    // One block asked: 20 pops, all of them done, so nothing this time (the bound keeps one
    // call short); the next call goes on from there.
    assert_eq!(
        claim(store, Queue::Backlog, SlotId::backlog(0), 1).await,
        Vec::<u64>::new()
    );
    assert_eq!(
        claim(store, Queue::Backlog, SlotId::backlog(0), 1).await,
        vec![10]
    );
}

// ---- heartbeat and reaping ----

async fn expired_leases_go_back_to_their_queue_and_heartbeats_keep_them(store: &impl StoreProbe) {
    advance(store, None, 30, 1_000, backlog(1, 29))
        .await
        .unwrap();
    for slot in [SlotId::backlog(0), SlotId::backlog(1)] {
        store.claim(Queue::Backlog, slot, 2, 1_000).await.unwrap();
    }
    store
        .commit(Origin::Backlog, &sample_block(26, 0), 1)
        .await
        .unwrap();
    assert_eq!(
        store.heartbeat(SlotId::backlog(1), 10_000).await.unwrap(),
        1,
        "27: 26 is done, its lease gone"
    );
    assert_eq!(
        store.heartbeat(SlotId::backlog(2), 10_000).await.unwrap(),
        0
    );
    assert_eq!(store.reap_expired(999).await.unwrap(), 0, "not a ms early");
    assert_eq!(
        store.reap_expired(1_000).await.unwrap(),
        3,
        "tip 30, backlog 29 and 28"
    );
    assert_eq!(store.reap_expired(1_000).await.unwrap(), 0);
    assert_eq!(store.owned_leases(SlotId::TIP).await.unwrap(), vec![]);
    assert_eq!(
        store.owned_leases(SlotId::backlog(0)).await.unwrap(),
        vec![]
    );
    assert_eq!(
        store.owned_leases(SlotId::backlog(1)).await.unwrap(),
        leases(Origin::Backlog, &[27])
    );
    // The backlog blocks are back on the backlog, the tip block on the priority queue.
    assert_eq!(
        claim(store, Queue::Backlog, SlotId::backlog(2), 3).await,
        vec![29, 28, 25]
    );
    assert_eq!(drain(store, Queue::Priority).await, vec![30]);
    // The heartbeat's deadline holds to the ms.
    assert_eq!(store.reap_expired(9_999).await.unwrap(), 0);
    assert_eq!(store.reap_expired(10_000).await.unwrap(), 1);
    assert_eq!(
        store.owned_leases(SlotId::backlog(1)).await.unwrap(),
        vec![]
    );
}

async fn reaping_moves_at_most_a_thousand_leases_per_call(store: &impl StoreProbe) {
    sync_to(store, None, 2_000, backlog(1, 1_001)).await;
    let claimed = store
        .claim(Queue::Backlog, SlotId::backlog(0), 1_001, 1_000)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1_001);
    assert_eq!(store.reap_expired(1_000).await.unwrap(), 1_000);
    assert_eq!(store.reap_expired(1_000).await.unwrap(), 1);
    assert_eq!(store.reap_expired(1_000).await.unwrap(), 0);
    assert_eq!(
        store.owned_leases(SlotId::backlog(0)).await.unwrap(),
        vec![]
    );
    assert_eq!(
        drain(store, Queue::Backlog).await,
        (1..=1_001).rev().collect::<Vec<_>>()
    );
}

// ---- commit ----

async fn a_block_is_committed_once_whatever_happens_after(store: &impl StoreProbe) {
    let block = sample_block(500, 3);
    let first = store.commit(Origin::Backlog, &block, 1_000).await.unwrap();
    assert_eq!(first, published(3, 1));
    let second = store.commit(Origin::Backlog, &block, 2_000).await.unwrap();
    assert_eq!(second, CommitOutcome::AlreadyDone);
    // A block without events is done all the same.
    let empty = sample_block(501, 0);
    assert_eq!(
        store.commit(Origin::Tip, &empty, 3_000).await.unwrap(),
        published(0, 1)
    );
    assert_eq!(
        store.commit(Origin::Tip, &empty, 4_000).await.unwrap(),
        CommitOutcome::AlreadyDone
    );
    // Each commit ends with its block entry, the empty block's included: it is its only entry.
    assert_eq!(
        store.entries().await,
        [committed(&block), committed(&empty)].concat()
    );
    assert_eq!(events_by_block(store).await, BTreeMap::from([(500, 3)]));
}

async fn commit_counts_prior_failures_and_forgets_the_pending_retry(store: &impl StoreProbe) {
    let delays = [10, 20, 30];
    sync_to(store, None, 100, backlog(90, 99)).await;
    assert_eq!(
        claim(store, Queue::Backlog, SlotId::backlog(0), 1).await,
        vec![99]
    );
    assert_eq!(
        store.fail(99, "e", 1_000, &delays).await.unwrap(),
        retry(1, 1_010)
    );
    assert_eq!(store.promote_due_retries(1_010).await.unwrap(), 1);
    assert_eq!(
        claim(store, Queue::Backlog, SlotId::backlog(0), 1).await,
        vec![99]
    );
    assert_eq!(
        store.fail(99, "e", 2_000, &delays).await.unwrap(),
        retry(2, 2_020)
    );
    // Its retry is pending when another path commits it (a duplicate enqueue, say).
    assert_eq!(
        store
            .commit(Origin::Backlog, &sample_block(99, 2), 3_000)
            .await
            .unwrap(),
        published(2, 3)
    );
    assert_eq!(store.promote_due_retries(u64::MAX).await.unwrap(), 0);
    assert_eq!(
        drain(store, Queue::Backlog).await,
        (90..=98).rev().collect::<Vec<_>>()
    );
    assert_eq!(store.entries().await, committed(&sample_block(99, 2)));
}

// ---- fail ----

async fn failures_walk_the_schedule_into_the_dead_letter_set(store: &impl StoreProbe) {
    let delays = actors::retry::delays_ms(1.0);
    sync_to(store, None, 100, backlog(90, 99)).await;
    let mut now = 1_000_000u64;
    for attempt in 1..=9u32 {
        assert_eq!(
            claim(store, Queue::Backlog, SlotId::backlog(0), 1).await,
            vec![99],
            "attempt {attempt} takes block 99 again"
        );
        let outcome = store
            .fail(99, "malformed answer", now, &delays)
            .await
            .unwrap();
        let due = now + delays[attempt as usize - 1];
        assert_eq!(outcome, retry(attempt, due));
        assert_eq!(
            store.owned_leases(SlotId::backlog(0)).await.unwrap(),
            vec![]
        );
        // Not due a millisecond early, due exactly on time, and back on the backlog.
        assert_eq!(store.promote_due_retries(due - 1).await.unwrap(), 0);
        assert_eq!(store.promote_due_retries(due).await.unwrap(), 1);
        now = due;
    }
    claim(store, Queue::Backlog, SlotId::backlog(0), 1).await;
    let last = store
        .fail(99, "still malformed", now, &delays)
        .await
        .unwrap();
    assert_eq!(last, FailOutcome::Dead { attempts: 10 });
    assert_eq!(
        store.owned_leases(SlotId::backlog(0)).await.unwrap(),
        vec![]
    );
    assert_eq!(
        store.dead_letters().await,
        vec![dead(99, 10, "still malformed", now, "backlog")]
    );
    assert_eq!(store.promote_due_retries(u64::MAX).await.unwrap(), 0);
    // The next claim moves on to the other blocks.
    assert_eq!(
        claim(store, Queue::Backlog, SlotId::backlog(0), 1).await,
        vec![98]
    );
}

async fn a_failed_block_goes_back_to_the_queue_of_its_origin_when_due(store: &impl StoreProbe) {
    let delays = [10];
    sync_to(store, None, 100, backlog(50, 50)).await;
    sync_to(store, Some(100), 101, priority(60, 60)).await;
    assert_eq!(
        claim(store, Queue::Backlog, SlotId::backlog(0), 1).await,
        vec![50]
    );
    assert_eq!(
        claim(store, Queue::Priority, SlotId::PRIORITY, 1).await,
        vec![60]
    );
    // The head, a backlog block, a priority block, and one nobody leased.
    for block in [101, 50, 60, 77] {
        assert_eq!(
            store.fail(block, "e", 1_000, &delays).await.unwrap(),
            retry(1, 1_010),
            "block {block}"
        );
    }
    assert_eq!(
        store.owned_leases(SlotId::TIP).await.unwrap(),
        leases(Origin::Tip, &[100])
    );
    assert_eq!(
        store.owned_leases(SlotId::backlog(0)).await.unwrap(),
        vec![]
    );
    assert_eq!(store.owned_leases(SlotId::PRIORITY).await.unwrap(), vec![]);
    assert_eq!(store.promote_due_retries(1_009).await.unwrap(), 0);
    assert_eq!(store.promote_due_retries(1_010).await.unwrap(), 4);
    assert_eq!(drain(store, Queue::Backlog).await, vec![50]);
    assert_eq!(drain(store, Queue::Priority).await, vec![60, 77, 101]);
}

async fn a_dead_letter_names_the_queue_of_its_origin(store: &impl StoreProbe) {
    sync_to(store, None, 100, backlog(50, 50)).await;
    assert_eq!(
        claim(store, Queue::Backlog, SlotId::backlog(0), 1).await,
        vec![50]
    );
    // No delays: the first failure is the last.
    for (block, error, now) in [(100, "a", 5), (50, "b", 6), (77, "c", 7)] {
        assert_eq!(
            store.fail(block, error, now, &[]).await.unwrap(),
            FailOutcome::Dead { attempts: 1 }
        );
    }
    assert_eq!(store.owned_leases(SlotId::TIP).await.unwrap(), vec![]);
    assert_eq!(
        store.owned_leases(SlotId::backlog(0)).await.unwrap(),
        vec![]
    );
    assert_eq!(
        store.dead_letters().await,
        vec![
            dead(50, 1, "b", 6, "backlog"),
            dead(77, 1, "c", 7, "priority"),
            dead(100, 1, "a", 5, "priority"),
        ]
    );
}

async fn a_dead_block_leaves_no_retry_behind(store: &impl StoreProbe) {
    let delays = [10];
    assert_eq!(
        store.fail(5, "first", 1_000, &delays).await.unwrap(),
        retry(1, 1_010)
    );
    // It fails again before its retry is due (a second lease from a duplicate enqueue, say).
    assert_eq!(
        store.fail(5, "second", 1_001, &delays).await.unwrap(),
        FailOutcome::Dead { attempts: 2 }
    );
    assert_eq!(store.promote_due_retries(u64::MAX).await.unwrap(), 0);
    assert_eq!(drain(store, Queue::Priority).await, Vec::<u64>::new());
    assert_eq!(
        store.dead_letters().await,
        vec![dead(5, 2, "second", 1_001, "priority")]
    );
}

async fn a_failure_after_the_commit_is_moot(store: &impl StoreProbe) {
    store
        .commit(Origin::Backlog, &sample_block(8, 1), 1)
        .await
        .unwrap();
    assert_eq!(
        store.fail(8, "late", 2, &[10]).await.unwrap(),
        FailOutcome::AlreadyDone
    );
    assert_eq!(
        store.fail(8, "late", 3, &[]).await.unwrap(),
        FailOutcome::AlreadyDone
    );
    assert_eq!(store.promote_due_retries(u64::MAX).await.unwrap(), 0);
    assert_eq!(store.dead_letters().await, vec![]);
    assert_eq!(drain(store, Queue::Priority).await, Vec::<u64>::new());
    assert_eq!(store.entries().await, committed(&sample_block(8, 1)));
}

// ---- release and promotion ----

async fn release_hands_back_only_the_slots_own_leases(store: &impl StoreProbe) {
    sync_to(store, None, 10, backlog(1, 9)).await;
    assert_eq!(
        claim(store, Queue::Backlog, SlotId::backlog(0), 2).await,
        vec![9, 8]
    );
    assert_eq!(
        claim(store, Queue::Backlog, SlotId::backlog(1), 1).await,
        vec![7]
    );
    assert_eq!(store.release(SlotId::backlog(1), &[9, 8]).await.unwrap(), 0);
    assert_eq!(store.release(SlotId::backlog(0), &[]).await.unwrap(), 0);
    assert_eq!(
        store
            .release(SlotId::backlog(0), &[9, 9, 8, 7])
            .await
            .unwrap(),
        2,
        "7 is another slot's, 9 counts once"
    );
    assert_eq!(
        store.owned_leases(SlotId::backlog(0)).await.unwrap(),
        vec![]
    );
    assert_eq!(
        store.owned_leases(SlotId::backlog(1)).await.unwrap(),
        leases(Origin::Backlog, &[7])
    );
    assert_eq!(store.release(SlotId::TIP, &[10]).await.unwrap(), 1);
    assert_eq!(
        drain(store, Queue::Backlog).await,
        vec![9, 8, 6, 5, 4, 3, 2, 1]
    );
    assert_eq!(drain(store, Queue::Priority).await, vec![10]);
}

async fn promoting_moves_at_most_a_thousand_retries_per_call(store: &impl StoreProbe) {
    for block in 1..=1_001 {
        assert_eq!(
            store.fail(block, "e", 0, &[10]).await.unwrap(),
            retry(1, 10)
        );
    }
    assert_eq!(store.promote_due_retries(9).await.unwrap(), 0);
    assert_eq!(store.promote_due_retries(10).await.unwrap(), 1_000);
    assert_eq!(store.promote_due_retries(10).await.unwrap(), 1);
    assert_eq!(store.promote_due_retries(10).await.unwrap(), 0);
    assert_eq!(
        drain(store, Queue::Priority).await,
        (1..=1_001).collect::<Vec<_>>()
    );
}

// ---- forks: links, revert, finalize ----

async fn a_block_that_does_not_link_to_its_parent_is_refused_and_keeps_its_lease(
    store: &impl StoreProbe,
) {
    sync_to(store, None, 20, priority(10, 11)).await;
    assert_eq!(
        claim(store, Queue::Priority, SlotId::PRIORITY, 2).await,
        vec![10, 11]
    );
    commit_all(store, &[sample_block(10, 1)]).await;
    // Block 11 failed once: its retry is pending, then it is leased again.
    assert_eq!(
        store.fail(11, "e", 1_000, &[10]).await.unwrap(),
        retry(1, 1_010)
    );
    assert_eq!(store.promote_due_retries(1_010).await.unwrap(), 1);
    assert_eq!(
        claim(store, Queue::Priority, SlotId::PRIORITY, 1).await,
        vec![11]
    );
    let before = store.entries().await;
    // Block 11 of a branch whose block 10 is not the one committed.
    let orphan_child = version(11, 2, 1, 1);
    assert_eq!(
        store
            .commit(Origin::Priority, &orphan_child, 2_000)
            .await
            .unwrap(),
        CommitOutcome::Unlinked { at: 10 }
    );
    assert_eq!(store.entries().await, before, "nothing written");
    assert_eq!(
        store.owned_leases(SlotId::PRIORITY).await.unwrap(),
        leases(Origin::Priority, &[11])
    );
    assert_eq!(all_links(store).await, vec![link(&sample_block(10, 1))]);
    // The block is not done: its canonical version commits, the failure before still counted.
    let canonical = sample_block(11, 2);
    assert_eq!(
        store
            .commit(Origin::Priority, &canonical, 3_000)
            .await
            .unwrap(),
        published(2, 2)
    );
    assert_eq!(store.owned_leases(SlotId::PRIORITY).await.unwrap(), vec![]);
    assert_eq!(
        store.entries().await,
        [before, committed(&canonical)].concat()
    );
}

async fn a_block_that_its_committed_child_does_not_name_is_refused(store: &impl StoreProbe) {
    sync_to(store, None, 30, priority(11, 11)).await;
    assert_eq!(
        claim(store, Queue::Priority, SlotId::PRIORITY, 1).await,
        vec![11]
    );
    commit_all(store, &[sample_block(10, 0), sample_block(12, 1)]).await;
    let before = store.entries().await;
    // It names block 10 as its parent, but block 12 committed names another block 11.
    let other = version(11, 1, 1, 0);
    assert_eq!(
        store.commit(Origin::Priority, &other, 2).await.unwrap(),
        CommitOutcome::Unlinked { at: 12 }
    );
    assert_eq!(store.entries().await, before, "nothing written");
    assert_eq!(
        store.owned_leases(SlotId::PRIORITY).await.unwrap(),
        leases(Origin::Priority, &[11])
    );
    assert_eq!(
        all_links(store).await,
        vec![link(&sample_block(10, 0)), link(&sample_block(12, 1))]
    );
    // The version both neighbours name commits.
    commit_all(store, &[sample_block(11, 3)]).await;
    assert_eq!(
        all_links(store).await,
        (10..=12)
            .map(|n| link(&sample_block(n, 0)))
            .collect::<Vec<_>>()
    );
}

async fn a_done_block_in_another_version_is_refused(store: &impl StoreProbe) {
    commit_all(store, &[sample_block(40, 2)]).await;
    let before = store.entries().await;
    assert_eq!(
        store
            .commit(Origin::Tip, &version(40, 1, 1, 0), 2)
            .await
            .unwrap(),
        CommitOutcome::Unlinked { at: 40 }
    );
    // The same version again is a re-processing, not a contradiction.
    assert_eq!(
        store
            .commit(Origin::Tip, &sample_block(40, 2), 3)
            .await
            .unwrap(),
        CommitOutcome::AlreadyDone
    );
    assert_eq!(store.entries().await, before, "nothing written");
    assert_eq!(all_links(store).await, vec![link(&sample_block(40, 2))]);
}

async fn revert_retracts_newest_first_and_puts_the_blocks_back_to_work(store: &impl StoreProbe) {
    let blocks: Vec<Block> = (10..=14)
        .map(|n| sample_block(n, (n % 3) as usize))
        .collect();
    commit_all(store, &blocks).await;
    let before = store.entries().await;
    let orphans: Vec<BlockLink> = all_links(store).await.into_iter().skip(2).rev().collect();
    assert_eq!(
        orphans.iter().map(|l| l.number).collect::<Vec<_>>(),
        vec![14, 13, 12]
    );
    assert_eq!(store.revert(&orphans, 2).await.unwrap(), vec![14, 13, 12]);
    assert_eq!(
        store.entries().await,
        [
            before.clone(),
            vec![reverted(14, 0), reverted(13, 0), reverted(12, 0)]
        ]
        .concat()
    );
    assert_eq!(
        all_links(store).await,
        blocks[..2].iter().map(link).collect::<Vec<_>>()
    );
    // Retracting them again finds nothing left to retract, and writes nothing.
    assert_eq!(store.revert(&orphans, 3).await.unwrap(), Vec::<u64>::new());
    // They are not done any more: back on the priority queue, to be claimed and committed anew,
    // the new branch linking to block 11.
    assert_eq!(drain(store, Queue::Priority).await, vec![12, 13, 14]);
    let branch = [
        version(12, 1, 1, 0),
        version(13, 0, 1, 1),
        version(14, 2, 1, 1),
    ];
    commit_all(store, &branch).await;
    let mut expected = [
        before,
        vec![reverted(14, 0), reverted(13, 0), reverted(12, 0)],
    ]
    .concat();
    for block in &branch {
        expected.extend(committed(block));
    }
    assert_eq!(store.entries().await, expected);
    let mut links: Vec<BlockLink> = blocks[..2].iter().map(link).collect();
    links.extend(branch.iter().map(link));
    assert_eq!(all_links(store).await, links);
}

async fn revert_leaves_a_block_committed_in_another_version_and_a_final_one_alone(
    store: &impl StoreProbe,
) {
    let blocks: Vec<Block> = (20..=23).map(|n| sample_block(n, 1)).collect();
    commit_all(store, &blocks).await;
    assert!(store.finalize(21, &hash_of(21, 0), 2).await.unwrap());
    let before = store.entries().await;
    // 23 was committed in version 0, not 1; 21 is final (its link is still kept).
    let orphans = [
        link(&version(23, 1, 1, 0)),
        link(&blocks[2]),
        link(&blocks[1]),
    ];
    assert_eq!(store.revert(&orphans, 3).await.unwrap(), vec![22]);
    assert_eq!(
        store.entries().await,
        [before, vec![reverted(22, 0)]].concat()
    );
    assert_eq!(
        all_links(store).await,
        vec![link(&blocks[1]), link(&blocks[3])]
    );
    assert_eq!(drain(store, Queue::Priority).await, vec![22]);
    // 21 and 23 are still done.
    assert_eq!(
        store.commit(Origin::Tip, &blocks[1], 4).await.unwrap(),
        CommitOutcome::AlreadyDone
    );
    assert_eq!(
        store.commit(Origin::Tip, &blocks[3], 4).await.unwrap(),
        CommitOutcome::AlreadyDone
    );
}

async fn finalize_moves_only_forward_and_forgets_the_links_below_it(store: &impl StoreProbe) {
    let blocks: Vec<Block> = (1..=6).map(|n| sample_block(n, 0)).collect();
    commit_all(store, &blocks).await;
    assert_eq!(store.finalized().await.unwrap(), None);
    let before = store.entries().await;
    assert!(store.finalize(4, &hash_of(4, 0), 2).await.unwrap());
    assert_eq!(store.finalized().await.unwrap(), Some(4));
    assert_eq!(
        all_links(store).await,
        blocks[3..].iter().map(link).collect::<Vec<_>>()
    );
    assert!(!store.finalize(4, &hash_of(4, 0), 3).await.unwrap());
    assert!(!store.finalize(3, &hash_of(3, 0), 4).await.unwrap());
    assert_eq!(store.finalized().await.unwrap(), Some(4));
    assert!(store.finalize(5, &hash_of(5, 0), 5).await.unwrap());
    assert_eq!(store.finalized().await.unwrap(), Some(5));
    assert_eq!(
        store.entries().await,
        [before, vec![finalized(4), finalized(5)]].concat()
    );
    assert_eq!(
        all_links(store).await,
        blocks[4..].iter().map(link).collect::<Vec<_>>()
    );
    // A range is read lowest first, its ends included.
    assert_eq!(store.links(6, 6).await.unwrap(), vec![link(&blocks[5])]);
    assert_eq!(store.links(0, 4).await.unwrap(), vec![]);
}

async fn links_are_kept_only_above_the_finalized_block(store: &impl StoreProbe) {
    commit_all(store, &[sample_block(1, 0), sample_block(3, 0)]).await;
    assert!(store.finalize(3, &hash_of(3, 0), 2).await.unwrap());
    assert_eq!(all_links(store).await, vec![link(&sample_block(3, 0))]);
    // Blocks at or below the finalized one commit without a link; those above keep one.
    let blocks = [sample_block(2, 1), sample_block(4, 1), sample_block(5, 0)];
    commit_all(store, &blocks).await;
    assert_eq!(
        all_links(store).await,
        vec![
            link(&sample_block(3, 0)),
            link(&blocks[1]),
            link(&blocks[2])
        ]
    );
    assert_eq!(
        store.links(4, u64::MAX).await.unwrap(),
        vec![link(&blocks[1]), link(&blocks[2])]
    );
}

fn bid(instance: &str, held: Option<u64>, ttl_ms: u64) -> LeaderClaim {
    LeaderClaim {
        instance: Instance::new(instance).unwrap(),
        held,
        ttl_ms,
        now_ms: actors::clock::now_ms(),
    }
}

fn term(instance: &str, epoch: u64) -> Term {
    Term {
        instance: Instance::new(instance).unwrap(),
        epoch,
    }
}

async fn one_term_leads_at_a_time_and_a_new_election_takes_the_next_epoch(store: &impl Store) {
    let a1 = term("a", 1);
    assert_eq!(
        store.lead(&bid("a", None, 60_000)).await.unwrap(),
        Leadership::Leader(a1)
    );
    match store.lead(&bid("b", None, 60_000)).await.unwrap() {
        Leadership::Follower {
            leader,
            expires_in_ms,
        } => {
            assert_eq!(leader, a1);
            assert!(
                (59_000..=60_000).contains(&expires_in_ms),
                "{expires_in_ms}"
            );
        }
        other => panic!("b leads too: {other:?}"),
    }
    // A renewal keeps the epoch.
    assert_eq!(
        store.lead(&bid("a", Some(1), 60_000)).await.unwrap(),
        Leadership::Leader(a1)
    );
    // Another process under a's id that does not hold epoch 1 is a duplicate: it follows.
    assert!(matches!(
        store.lead(&bid("a", Some(7), 60_000)).await.unwrap(),
        Leadership::Follower { leader, .. } if leader == a1
    ));
    // a's next process (restarted, holding nothing) takes its own leadership over at once.
    assert_eq!(
        store.lead(&bid("a", None, 60_000)).await.unwrap(),
        Leadership::Leader(term("a", 2))
    );
    // Resigning frees it for b at once.
    store
        .resign(Some(term("a", 2)), Instance::new("a").unwrap())
        .await
        .unwrap();
    assert_eq!(
        store.lead(&bid("b", None, 300)).await.unwrap(),
        Leadership::Leader(term("b", 3))
    );
    // A leadership not renewed runs out: a takes it with the next epoch.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        store.lead(&bid("a", None, 60_000)).await.unwrap(),
        Leadership::Leader(term("a", 4))
    );
    // Resigning a term that does not lead changes nothing.
    store
        .resign(Some(term("b", 3)), Instance::new("b").unwrap())
        .await
        .unwrap();
    assert_eq!(
        store.lead(&bid("a", Some(4), 60_000)).await.unwrap(),
        Leadership::Leader(term("a", 4))
    );
}

async fn steps_fenced_by_a_term_that_no_longer_leads_are_refused_and_write_nothing(
    store: &impl Store,
) {
    let a1 = term("a", 1);
    store.lead(&bid("a", None, 300)).await.unwrap();
    let advance = |head: u64, expected: Option<u64>, term: Option<Term>| Advance {
        expected_last: expected,
        head,
        tip_slot: SlotId::TIP.of(Instance::new("a").unwrap()),
        lease_deadline_ms: FAR,
        enqueue: None,
        term,
    };
    store.advance(&advance(10, None, Some(a1))).await.unwrap();
    // a is paused past its lease; b is elected.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let b2 = term("b", 2);
    assert_eq!(
        store.lead(&bid("b", None, 60_000)).await.unwrap(),
        Leadership::Leader(b2)
    );
    let not_leader = |result: Result<_, StoreError>| {
        matches!(result, Err(StoreError::NotLeader { epoch: 1, .. }))
    };
    assert!(not_leader(
        store
            .advance(&advance(11, Some(10), Some(a1)))
            .await
            .map(|_| 0)
    ));
    let by_a = Committer {
        instance: Instance::new("a").unwrap(),
        term: Some(a1),
    };
    let block = sample_block(10, 2);
    assert!(not_leader(
        store
            .commit_by(Origin::Tip, &block, 1, by_a)
            .await
            .map(|_| 0)
    ));
    assert!(not_leader(
        store.finalize_in(5, "h5", 1, Some(a1)).await.map(|_| 0)
    ));
    let orphan = BlockLink {
        number: 10,
        hash: block.header.hash.clone(),
        parent_hash: block.header.parent_hash.clone(),
    };
    assert!(not_leader(
        store.revert_in(&[orphan], 1, Some(a1)).await.map(|_| 0)
    ));
    // Nothing moved: last_synced, the head's lease to a's tip, no commit, no finality.
    assert_eq!(store.last_synced().await.unwrap(), Some(10));
    assert_eq!(store.finalized().await.unwrap(), None);
    assert_eq!(
        store
            .owned_leases(SlotId::TIP.of(Instance::new("a").unwrap()))
            .await
            .unwrap(),
        vec![Lease {
            block: 10,
            origin: Origin::Tip
        }]
    );
    // The leader's steps go through; the block is committed once, by b's term.
    store
        .advance(&advance(11, Some(10), Some(b2)))
        .await
        .unwrap();
    let by_b = Committer {
        instance: Instance::new("b").unwrap(),
        term: Some(b2),
    };
    assert!(matches!(
        store.commit_by(Origin::Tip, &block, 1, by_b).await.unwrap(),
        CommitOutcome::Published { events: 2, .. }
    ));
    assert_eq!(
        store
            .commit_by(Origin::Tip, &block, 1, by_a)
            .await
            .map(|_| 0)
            .ok(),
        None,
        "the ex-leader is still refused"
    );
    assert!(store.finalize_in(5, "h5", 1, Some(b2)).await.unwrap());
}
