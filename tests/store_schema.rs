//! The Redis schema the two languages share, against a real, private redis-server: the Lua
//! scripts send a block back to the queue `Origin::queue` names, write a block's link as Rust
//! reads it, and a daemon upgraded in place works on the data an older version left.
#![allow(clippy::unwrap_used)]

mod common;

use actors::slot::SlotId;
use actors::store::{Advance, BlockLink, CommitOutcome, FailOutcome, Lease, Origin, Queue, Store};
use common::{sample_block, TestRedis};
use redis::AsyncCommands;
use tron_actors::store::RedisStore;

const FAR: u64 = u64::MAX / 4;
const NOW: u64 = 1_000_000;

/// Leases `block` with `origin` to `slot` until `deadline_ms`, the way the daemon does.
async fn lease(store: &RedisStore, origin: Origin, block: u64, slot: SlotId, deadline_ms: u64) {
    let mut conn = store.connection();
    match origin {
        Origin::Tip => store
            .advance(&Advance {
                expected_last: store.last_synced().await.unwrap(),
                head: block,
                tip_slot: slot,
                lease_deadline_ms: deadline_ms,
                enqueue: None,
                term: None,
            })
            .await
            .unwrap(),
        Origin::Priority | Origin::Backlog => {
            let queue = match origin {
                Origin::Priority => Queue::Priority,
                _ => Queue::Backlog,
            };
            let () = conn
                .zadd(store.keys().queue(queue), block, block)
                .await
                .unwrap();
            let claimed = store.claim(queue, slot, 1, deadline_ms).await.unwrap();
            assert_eq!(claimed, [block]);
        }
    }
    let held = store.owned_leases(slot).await.unwrap();
    assert!(held.contains(&Lease { block, origin }), "{held:?}");
}

/// Asserts `block` waits in `queue` and nowhere else, then takes it out for the next check.
async fn assert_queued_in(store: &RedisStore, block: u64, queue: Queue, how: &str) {
    let mut conn = store.connection();
    for q in [Queue::Priority, Queue::Backlog] {
        let members: Vec<u64> = conn.zrange(store.keys().queue(q), 0, -1).await.unwrap();
        let expected: &[u64] = if q == queue { &[block] } else { &[] };
        assert_eq!(members, expected, "block {block} {how}: {q:?} queue");
    }
    let () = conn.zrem(store.keys().queue(queue), block).await.unwrap();
}

#[tokio::test]
async fn every_way_back_to_a_queue_takes_the_queue_origin_queue_names() {
    let redis = TestRedis::start().await;
    let store = redis.store();
    let slot = SlotId::backlog(0);
    let mut block = 100;
    for origin in Origin::ALL {
        let queue = origin.queue();

        block += 1;
        lease(&store, origin, block, slot, NOW).await;
        assert_eq!(store.reap_expired(NOW + 1).await.unwrap(), 1);
        assert_queued_in(&store, block, queue, &format!("{origin:?} reaped")).await;

        block += 1;
        lease(&store, origin, block, slot, FAR).await;
        assert_eq!(store.release(slot, &[block]).await.unwrap(), 1);
        assert_queued_in(&store, block, queue, &format!("{origin:?} released")).await;

        block += 1;
        lease(&store, origin, block, slot, FAR).await;
        let retry = store.fail(block, "bad", NOW, &[10]).await.unwrap();
        assert_eq!(
            retry,
            FailOutcome::Retry {
                attempt: 1,
                due_ms: NOW + 10
            }
        );
        assert_eq!(store.promote_due_retries(NOW + 10).await.unwrap(), 1);
        assert_queued_in(&store, block, queue, &format!("{origin:?} retried")).await;

        block += 1;
        lease(&store, origin, block, slot, FAR).await;
        let dead = store.fail(block, "bad", NOW, &[]).await.unwrap();
        assert_eq!(dead, FailOutcome::Dead { attempts: 1 });
        let letters = store.dead_letters().await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].path, queue.as_str());
        assert_eq!(store.requeue_dead(&[block]).await.unwrap(), [block]);
        assert_queued_in(&store, block, queue, &format!("{origin:?} requeued")).await;
    }
}

/// The commit script writes a link (`link_member`), Rust reads it (`LinkMember`): the member
/// is `<number>|<hash>|<parent_hash>`, scored by the number.
#[tokio::test]
async fn a_link_the_commit_script_writes_is_the_link_rust_reads() {
    let redis = TestRedis::start().await;
    let store = redis.store();
    let block = sample_block(81, 2);
    store.commit(Origin::Tip, &block, NOW).await.unwrap();
    let mut conn = redis.conn().await;
    let raw: Vec<(String, u64)> = conn
        .zrange_withscores(store.keys().links(), 0, -1)
        .await
        .unwrap();
    let header = &block.header;
    assert_eq!(
        raw,
        [(format!("81|{}|{}", header.hash, header.parent_hash), 81)]
    );
    assert_eq!(
        store.links(81, 81).await.unwrap(),
        [BlockLink {
            number: 81,
            hash: header.hash.clone(),
            parent_hash: header.parent_hash.clone(),
        }]
    );
}

/// What an older version left in Redis, written as it wrote it: leases in flight (then also
/// listed in a set per slot, `owned:<slot>`, which nothing reads any more), a queue, a retry and
/// the stats.
#[tokio::test]
async fn a_daemon_upgraded_in_place_resumes_the_work_an_older_one_left() {
    let redis = TestRedis::start().await;
    let mut conn = redis.conn().await;
    redis::pipe()
        .set("{tron}:last_synced", 20)
        .hset_multiple(
            "{tron}:lease",
            &[
                (10, "backlog-0|backlog"),
                (11, "backlog-0|backlog"),
                (20, "tip|tip"),
            ],
        )
        .zadd_multiple("{tron}:lease_deadline", &[(NOW, 10), (NOW, 11), (NOW, 20)])
        .sadd("{tron}:owned:backlog-0", &[10, 11])
        .sadd("{tron}:owned:tip", 20)
        .zadd_multiple("{tron}:queue:backlog", &[(1, 1), (2, 2), (3, 3)])
        .zadd("{tron}:retry", 15, NOW + 10)
        .hset("{tron}:retry_path", 15, "backlog")
        .hset("{tron}:attempts", 15, 1)
        .hset_multiple(
            "{tron}:stats",
            &[
                ("blocks:backlog", 4u64),
                ("events:backlog", 12),
                // Block 20's time.
                ("last_block_time", 1_700_000_060_000),
            ],
        )
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    let store = redis.store();
    // Each slot resumes its leases from the lease hash alone, and keeps them alive.
    assert_eq!(
        store.owned_leases(SlotId::backlog(0)).await.unwrap(),
        [
            Lease {
                block: 11,
                origin: Origin::Backlog
            },
            Lease {
                block: 10,
                origin: Origin::Backlog
            }
        ]
    );
    assert_eq!(
        store.owned_leases(SlotId::TIP).await.unwrap(),
        [Lease {
            block: 20,
            origin: Origin::Tip
        }]
    );
    assert_eq!(store.heartbeat(SlotId::backlog(0), FAR).await.unwrap(), 2);
    // The tip slot's lease was not extended: it expires and goes back to the priority queue.
    assert_eq!(store.reap_expired(NOW + 1).await.unwrap(), 1);
    let priority: Vec<u64> = conn.zrange("{tron}:queue:priority", 0, -1).await.unwrap();
    assert_eq!(priority, [20]);
    // A resumed lease commits once, counted on top of the old stats.
    assert_eq!(
        store
            .commit(Origin::Backlog, &sample_block(10, 2), NOW)
            .await
            .unwrap(),
        CommitOutcome::Published {
            events: 2,
            attempt: 1
        }
    );
    assert_eq!(store.release(SlotId::backlog(0), &[11]).await.unwrap(), 1);
    assert!(store
        .owned_leases(SlotId::backlog(0))
        .await
        .unwrap()
        .is_empty());
    // The old queue and retry go on as before.
    assert_eq!(store.promote_due_retries(NOW + 10).await.unwrap(), 1);
    assert_eq!(
        store
            .claim(Queue::Backlog, SlotId::backlog(1), 10, FAR)
            .await
            .unwrap(),
        [15, 11, 3, 2, 1]
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.blocks(Origin::Backlog), 5);
    assert_eq!(stats.events(Origin::Backlog), 14);
    // Block 10 is older than the newest block published.
    assert_eq!(stats.last_block_time_ms(), Some(1_700_000_060_000));
}
