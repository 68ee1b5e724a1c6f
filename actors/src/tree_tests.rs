//! The whole tree against in-memory fakes, with paused time: hours of retry schedule run in
//! milliseconds, and nothing depends on the machine's speed.
#![allow(clippy::unwrap_used)]

use crate::fakes::{FakeChain, FakeStore};
use crate::settings::Settings;
use crate::slot::SlotId;
use crate::store::{Lease, Origin, Store};
use crate::tree::{Tree, TreeDeps, TreeHandle};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// A running tree and the fakes it runs on, for the test to look into.
struct TestTree {
    chain: Arc<FakeChain>,
    store: Arc<FakeStore>,
    handle: TreeHandle,
}

fn settings() -> Settings {
    Settings {
        backlog_workers: 3,
        backlog_batch: 5,
        idle: Duration::from_millis(100),
        poll_min: Duration::from_millis(500),
        poll_max: Duration::from_millis(500),
        lease: Duration::from_secs(30),
        heartbeat: Duration::from_secs(10),
        restart_max: 5,
        restart_window: Duration::from_secs(10),
        ..Settings::for_tests()
    }
}

async fn start(chain: FakeChain, store: FakeStore, settings: Settings) -> TestTree {
    let chain = Arc::new(chain);
    let store = Arc::new(store);
    let handle = Tree::start(TreeDeps::new(chain.clone(), store.clone(), settings))
        .await
        .unwrap();
    TestTree {
        chain,
        store,
        handle,
    }
}

fn store_with_last(last: u64) -> FakeStore {
    let store = FakeStore::default();
    store.state.lock().unwrap().last_synced = Some(last);
    store
}

/// Sleeps in paused time until `check` holds; panics after `limit` of virtual time.
async fn until(limit: Duration, what: &str, check: impl Fn() -> bool) {
    let started = tokio::time::Instant::now();
    while !check() {
        assert!(
            started.elapsed() < limit,
            "not reached within {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl TestTree {
    fn all_done(&self, from: u64, to: u64) -> bool {
        let s = self.store.state.lock().unwrap();
        (from..=to).all(|b| s.done.contains(&b))
    }

    /// Commits per block.
    fn commits(&self) -> HashMap<u64, usize> {
        let mut out = HashMap::new();
        for (block, _) in &self.store.state.lock().unwrap().stream {
            *out.entry(*block).or_default() += 1;
        }
        out
    }

    fn restarts(&self) -> BTreeMap<String, u64> {
        self.handle.stats().restarts_by_slot.lock().unwrap().clone()
    }
}

#[tokio::test(start_paused = true)]
async fn a_large_gap_is_filled_through_the_backlog_exactly_once() {
    let tree = start(FakeChain::with_head(200), store_with_last(100), settings()).await;
    until(Duration::from_secs(120), "blocks 101..=200 done", || {
        tree.all_done(101, 200)
    })
    .await;
    let commits = tree.commits();
    assert_eq!(commits.len(), 100);
    assert!(commits.values().all(|n| *n == 1), "a block committed twice");
    let s = tree.store.state.lock().unwrap();
    assert_eq!(s.last_synced, Some(200));
    // The first backlog commit is among the highest blocks (the tip commits 200 itself).
    let first_backlog = s.stream.iter().find(|(b, _)| *b != 200).unwrap().0;
    assert!(
        first_backlog >= 199 - 3 * 5,
        "first backlog block was {first_backlog}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_block_that_always_fails_walks_the_whole_schedule_into_dead_letters() {
    let chain = FakeChain::with_head(100);
    chain.always_failing.lock().unwrap().insert(90);
    let settings = Settings {
        idle: Duration::from_secs(1),
        ..settings()
    };
    let tree = start(chain, store_with_last(80), settings).await;
    // The others are not held up by it.
    until(Duration::from_secs(60), "all but 90 done", || {
        tree.all_done(81, 89) && tree.all_done(91, 100)
    })
    .await;
    // 5+10+30+60+180+300+600+1800+3600 s = 6585 s of schedule.
    until(Duration::from_secs(7_000), "90 dead-lettered", || {
        tree.store.state.lock().unwrap().dead.contains_key(&90)
    })
    .await;
    let s = tree.store.state.lock().unwrap();
    let dead = &s.dead[&90];
    assert_eq!(dead.attempts, 10, "one first try and nine retries");
    assert!(dead.error.contains("truncated JSON"), "{}", dead.error);
    assert_eq!(tree.chain.fetches.lock().unwrap()[&90], 10);
    assert!(!s.done.contains(&90));
    assert!(s.retry.is_empty() && !s.priority.contains(&90));
}

#[tokio::test(start_paused = true)]
async fn an_expired_lease_of_a_vanished_worker_is_reaped_and_done() {
    let store = store_with_last(50);
    // A lease left by a slot that no longer exists (a smaller deployment, say).
    store
        .state
        .lock()
        .unwrap()
        .leases
        .insert(42, (SlotId::backlog(40), Origin::Backlog, 0));
    let tree = start(FakeChain::with_head(50), store, settings()).await;
    until(Duration::from_secs(30), "block 42 done", || {
        tree.all_done(42, 42)
    })
    .await;
    assert_eq!(tree.commits()[&42], 1);
    assert!(tree
        .store
        .owned_leases(SlotId::backlog(40))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_panics_after_claiming_is_restarted_and_resumes_its_lease() {
    let store = store_with_last(100);
    // A lease far longer than the wait below: only resuming, not reaping, can finish block 150.
    let settings = Settings {
        lease: Duration::from_secs(3600),
        ..settings()
    };
    let tree = start(FakeChain::with_head(100), store, settings).await;
    tree.handle.hooks().panic_once_after_claiming(150);
    tree.chain
        .head
        .store(200, std::sync::atomic::Ordering::SeqCst);
    until(Duration::from_secs(60), "101..=200 done", || {
        tree.all_done(101, 200)
    })
    .await;
    let restarts = tree.restarts();
    assert_eq!(restarts.values().sum::<u64>(), 1, "{restarts:?}");
    assert!(restarts.keys().all(|slot| slot.starts_with("backlog-")));
    let commits = tree.commits();
    assert_eq!(commits[&150], 1);
    assert!(commits.values().all(|n| *n == 1));
    // Nothing left leased by anyone.
    let leases: Vec<Lease> = tree.store.owned_leases(SlotId::backlog(0)).await.unwrap();
    assert!(leases.is_empty());
}

#[tokio::test(start_paused = true)]
async fn restarts_past_the_intensity_stop_the_tree() {
    let chain = FakeChain::with_head(100);
    chain.panicking.lock().unwrap().insert(95);
    let mut tree = start(chain, store_with_last(90), settings()).await;
    // The PriorityActor panics on 95, resumes its lease on restart, panics again...
    let ended = tokio::time::timeout(Duration::from_secs(60), tree.handle.wait()).await;
    assert!(ended.is_ok(), "the supervisor did not give up");
    let fetches = tree.chain.fetches.lock().unwrap()[&95];
    assert_eq!(fetches, 6, "the first try and 5 restarts, then it gives up");
}

#[tokio::test(start_paused = true)]
async fn shutdown_commits_what_finishes_within_the_grace_and_hands_back_the_rest() {
    let chain = FakeChain::with_head(100);
    // In sync with the head: only the two queued blocks are worked, one per BacklogActor.
    let store = store_with_last(100);
    store.state.lock().unwrap().backlog.extend([50, 60]);
    chain
        .slow
        .lock()
        .unwrap()
        .insert(50, Duration::from_secs(2));
    chain.stalled.lock().unwrap().insert(60);
    let settings = Settings {
        backlog_workers: 2,
        backlog_batch: 1,
        ..settings()
    };
    let tree = start(chain, store, settings).await;
    until(Duration::from_secs(10), "both blocks in flight", || {
        let fetches = tree.chain.fetches.lock().unwrap();
        fetches.contains_key(&50) && fetches.contains_key(&60)
    })
    .await;
    let stats = tree.handle.stats().clone();
    assert!(stats.is_running());

    let grace = Duration::from_secs(5);
    let started = tokio::time::Instant::now();
    tree.handle.shutdown(grace).await;
    assert_eq!(
        started.elapsed(),
        grace,
        "the stalled fetch holds it to the grace"
    );

    assert!(!stats.is_running());
    let s = tree.store.state.lock().unwrap();
    assert_eq!(s.stream, vec![(50, 50 % 3)], "50 finished within the grace");
    assert_eq!(s.backlog.iter().copied().collect::<Vec<_>>(), vec![60]);
    assert!(s.leases.is_empty(), "{:?}", s.leases);
}

#[tokio::test(start_paused = true)]
async fn a_fork_under_the_head_is_retracted_newest_first_and_its_canonical_blocks_published() {
    use crate::fakes::{fake_hash, FakeEntry};
    use std::sync::atomic::Ordering;
    let tree = start(FakeChain::with_head(100), store_with_last(95), settings()).await;
    until(Duration::from_secs(10), "blocks 96..=100 done", || {
        tree.all_done(96, 100)
    })
    .await;
    // The node switches: 98..=100 are replaced and block 101 is built on the new branch.
    tree.chain.fork(98, 3);
    tree.chain.head.store(101, Ordering::SeqCst);
    until(
        Duration::from_secs(30),
        "101 and the new 98..=100 done",
        || {
            let s = tree.store.state.lock().unwrap();
            s.done.contains(&101)
                && (98..=100).all(|n| s.links.get(&n).is_some_and(|l| l.hash == fake_hash(n, 1)))
        },
    )
    .await;
    let stats = tree.handle.stats().clone();
    let store = tree.store.clone();
    tree.handle.shutdown(Duration::from_secs(5)).await;
    let s = store.state.lock().unwrap();
    let reverted: Vec<&FakeEntry> = s
        .journal
        .iter()
        .filter(|e| matches!(e, FakeEntry::Reverted { .. }))
        .collect();
    let orphan = |number| FakeEntry::Reverted {
        number,
        hash: fake_hash(number, 0),
    };
    assert_eq!(reverted, vec![&orphan(100), &orphan(99), &orphan(98)]);
    // Each block of the old branch was committed once, then once more in its new version.
    let commits: Vec<u64> = s.stream.iter().map(|(b, _)| *b).collect();
    for number in 96..=101 {
        let expected = if (98..=100).contains(&number) { 2 } else { 1 };
        assert_eq!(
            commits.iter().filter(|b| **b == number).count(),
            expected,
            "{number}"
        );
    }
    let standing = |number: u64| s.links.get(&number).map(|l| l.hash.clone());
    assert_eq!(standing(97), Some(fake_hash(97, 0)));
    assert_eq!(standing(100), Some(fake_hash(100, 1)));
    assert_eq!(standing(101), Some(fake_hash(101, 0)));
    assert_eq!(stats.forks.load(Ordering::SeqCst), 1);
    assert_eq!(stats.reverted_blocks.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn following_finalized_publishes_only_final_blocks_and_never_retracts() {
    use crate::fakes::FakeEntry;
    use crate::settings::Follow;
    use std::sync::atomic::Ordering;
    let settings = Settings {
        follow: Follow::Finalized,
        ..settings()
    };
    let tree = start(FakeChain::with_head(100), store_with_last(75), settings).await;
    until(Duration::from_secs(10), "blocks 76..=81 done", || {
        tree.all_done(76, 81)
    })
    .await;
    // A fork above the solidified block changes nothing that was published.
    tree.chain.fork(95, 6);
    tree.chain.head.store(105, Ordering::SeqCst);
    until(Duration::from_secs(10), "blocks 82..=86 done", || {
        tree.all_done(82, 86)
    })
    .await;
    let store = tree.store.clone();
    tree.handle.shutdown(Duration::from_secs(5)).await;
    let s = store.state.lock().unwrap();
    assert_eq!(s.done.iter().copied().max(), Some(86));
    assert!(s
        .journal
        .iter()
        .all(|e| !matches!(e, FakeEntry::Reverted { .. })));
    let finalized: Vec<u64> = s
        .journal
        .iter()
        .filter_map(|e| match e {
            FakeEntry::Finalized { number } => Some(*number),
            _ => None,
        })
        .collect();
    assert_eq!(finalized, vec![81, 86]);
    assert_eq!(s.finalized, Some(86));
}

#[tokio::test(start_paused = true)]
async fn the_solidified_block_is_asked_for_once_per_new_head_however_often_the_head_is_polled() {
    use std::sync::atomic::Ordering;
    let tree = start(FakeChain::with_head(100), store_with_last(99), settings()).await;
    // 20 polls of the same head (every 500 ms).
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(tree.all_done(100, 100));
    assert_eq!(tree.chain.finalized_requests.load(Ordering::SeqCst), 1);
    tree.chain.head.store(101, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(tree.all_done(101, 101));
    assert_eq!(tree.chain.finalized_requests.load(Ordering::SeqCst), 2);
    assert_eq!(tree.store.state.lock().unwrap().finalized, Some(101 - 19));
    tree.handle.shutdown(Duration::from_secs(5)).await;
}

/// Two trees of two instances on one store: a rolling deployment, or two replicas.
async fn start_two(chain: &Arc<FakeChain>, store: &Arc<FakeStore>) -> (TreeHandle, TreeHandle) {
    let mut trees = Vec::new();
    for id in ["a", "b"] {
        let settings = Settings {
            instance: crate::slot::Instance::new(id).unwrap(),
            ..settings()
        };
        let deps = TreeDeps::new(chain.clone(), store.clone(), settings);
        trees.push(Tree::start(deps).await.unwrap());
        // b bids once a holds the leadership.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let b = trees.pop().unwrap();
    (trees.pop().unwrap(), b)
}

fn each_block_once(store: &FakeStore, from: u64, to: u64) {
    let s = store.state.lock().unwrap();
    let mut commits: BTreeMap<u64, usize> = BTreeMap::new();
    for (block, _) in &s.stream {
        *commits.entry(*block).or_default() += 1;
    }
    let expected: BTreeMap<u64, usize> = (from..=to).map(|b| (b, 1)).collect();
    assert_eq!(commits, expected);
}

#[tokio::test(start_paused = true)]
async fn two_instances_elect_one_leader_and_drain_the_backlog_together() {
    let chain = Arc::new(FakeChain::with_head(400));
    // Fetching takes time, as on a node: both instances' workers are busy at once.
    chain
        .slow
        .lock()
        .unwrap()
        .extend((101..=400).map(|n| (n, Duration::from_millis(200))));
    let store = Arc::new(store_with_last(100));
    let (a, b) = start_two(&chain, &store).await;
    until(Duration::from_secs(300), "blocks 101..=400 done", || {
        let s = store.state.lock().unwrap();
        (101..=400).all(|n| s.done.contains(&n))
    })
    .await;
    each_block_once(&store, 101, 400);
    assert!(a.stats().is_leader(), "the first to bid leads");
    assert!(!b.stats().is_leader(), "one leader");
    let a_id = crate::slot::Instance::new("a").unwrap();
    let b_id = crate::slot::Instance::new("b").unwrap();
    {
        let s = store.state.lock().unwrap();
        assert_eq!(s.last_synced, Some(400));
        let leader = s.leader.unwrap().0;
        assert_eq!((leader.instance, leader.epoch), (a_id, 1));
        let by_a = s.committed_by.get(&a_id).copied().unwrap_or(0);
        let by_b = s.committed_by.get(&b_id).copied().unwrap_or(0);
        assert_eq!(by_a + by_b, 300);
        assert!(by_a > 0 && by_b > 0, "both drained: a {by_a}, b {by_b}");
        assert_eq!(s.not_leader_refusals, 0);
        // Each instance's workers hold leases under its own slots only.
        assert!(s.leases.is_empty(), "{:?}", s.leases);
        assert_eq!(
            s.instances.keys().copied().collect::<Vec<_>>(),
            [a_id, b_id]
        );
    }
    a.shutdown(Duration::from_secs(5)).await;
    b.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn when_the_leader_stops_the_follower_takes_over_at_once_and_follows_the_head() {
    let chain = Arc::new(FakeChain::with_head(200));
    let store = Arc::new(store_with_last(199));
    let (a, b) = start_two(&chain, &store).await;
    until(Duration::from_secs(30), "block 200 done", || {
        store.state.lock().unwrap().done.contains(&200)
    })
    .await;
    assert!(a.stats().is_leader() && !b.stats().is_leader());
    a.shutdown(Duration::from_secs(5)).await;
    // a resigned: b need not wait for the 30 s lease to run out.
    until(Duration::from_secs(2), "b leads", || b.stats().is_leader()).await;
    assert_eq!(
        b.stats()
            .leader_epoch
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    chain.head.store(230, std::sync::atomic::Ordering::SeqCst);
    until(Duration::from_secs(60), "blocks 201..=230 done", || {
        let s = store.state.lock().unwrap();
        (201..=230).all(|n| s.done.contains(&n))
    })
    .await;
    each_block_once(&store, 200, 230);
    assert_eq!(store.state.lock().unwrap().last_synced, Some(230));
    b.shutdown(Duration::from_secs(5)).await;
    assert!(
        store.state.lock().unwrap().leader.is_none(),
        "b resigned too"
    );
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_lease_ran_out_is_replaced_and_its_stale_steps_are_refused() {
    let chain = Arc::new(FakeChain::with_head(200));
    let store = Arc::new(store_with_last(199));
    let (a, b) = start_two(&chain, &store).await;
    until(Duration::from_secs(30), "block 200 done", || {
        store.state.lock().unwrap().done.contains(&200)
    })
    .await;
    let old = store.state.lock().unwrap().leader.unwrap().0;
    // The store forgets a's leadership, as when a was paused past its lease: b is elected
    // within a lease, and a, on its next renewal, learns it follows.
    store.state.lock().unwrap().leader = None;
    until(Duration::from_secs(30), "b leads and a follows", || {
        b.stats().is_leader() && !a.stats().is_leader()
    })
    .await;
    let refused = store
        .advance(&crate::store::Advance {
            expected_last: Some(200),
            head: 201,
            tip_slot: SlotId::TIP.of(old.instance),
            lease_deadline_ms: 0,
            enqueue: None,
            term: Some(old),
        })
        .await;
    assert!(
        matches!(
            refused,
            Err(crate::store::StoreError::NotLeader { epoch: 1, .. })
        ),
        "{refused:?}"
    );
    chain.head.store(210, std::sync::atomic::Ordering::SeqCst);
    until(Duration::from_secs(60), "blocks 201..=210 done", || {
        let s = store.state.lock().unwrap();
        (201..=210).all(|n| s.done.contains(&n))
    })
    .await;
    each_block_once(&store, 200, 210);
    a.shutdown(Duration::from_secs(5)).await;
    b.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn commits_refused_for_want_of_memory_wait_with_backoff_and_never_count_as_failures() {
    use std::sync::atomic::Ordering;
    let store = store_with_last(100);
    store.out_of_memory.store(true, Ordering::SeqCst);
    let chain = Arc::new(FakeChain::with_head(200));
    let store = Arc::new(store);
    let deps = TreeDeps::new(chain.clone(), store.clone(), settings());
    let backpressure = deps.backpressure.clone();
    let handle = Tree::start(deps).await.unwrap();
    let tree = TestTree {
        chain,
        store,
        handle,
    };

    // Ten minutes of a Redis that refuses every commit.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(backpressure.is_paused());
    let refusals = tree.store.oom_refusals.load(Ordering::SeqCst);
    // Backoff 1, 2, 4, 8, 16, then every 30 s: about 25 rounds of a few commits each. Without
    // it, the workers would retry every `idle` (100 ms): thousands.
    assert!((1..=200).contains(&refusals), "{refusals} refusals");
    {
        let s = tree.store.state.lock().unwrap();
        assert!(s.stream.is_empty());
        assert!(s.attempts.is_empty(), "{:?}", s.attempts);
        assert!(s.retry.is_empty() && s.dead.is_empty());
    }

    tree.store.out_of_memory.store(false, Ordering::SeqCst);
    until(Duration::from_secs(120), "blocks 101..=200 done", || {
        tree.all_done(101, 200)
    })
    .await;
    assert!(!backpressure.is_paused());
    assert!(
        tree.commits().values().all(|n| *n == 1),
        "a block committed twice"
    );
    let s = tree.store.state.lock().unwrap();
    assert!(s.attempts.is_empty() && s.retry.is_empty() && s.dead.is_empty());
}
