//! The Redis store's protocols against a real, private redis-server.
#![allow(clippy::unwrap_used)]

mod common;

use actors::slot::SlotId;
use actors::store::{Advance, CommitOutcome, FailOutcome, Lease, Origin, Queue, Store};
use common::{by_block, expected_fields, read_stream, sample_block, TestRedis};
use redis::AsyncCommands;

const FAR: u64 = u64::MAX / 4;

#[tokio::test]
async fn backlog_is_claimed_highest_first_and_priority_lowest_first() {
    let redis = TestRedis::start().await;
    let store = redis.store();
    store
        .advance(&Advance {
            expected_last: None,
            head: 200,
            tip_slot: SlotId::TIP,
            lease_deadline_ms: FAR,
            enqueue: Some((Queue::Backlog, 100, 199)),
        })
        .await
        .unwrap();
    store
        .advance(&Advance {
            expected_last: Some(200),
            head: 210,
            tip_slot: SlotId::TIP,
            lease_deadline_ms: FAR,
            enqueue: Some((Queue::Priority, 201, 209)),
        })
        .await
        .unwrap();
    let backlog = store
        .claim(Queue::Backlog, SlotId::backlog(0), 5, FAR)
        .await
        .unwrap();
    assert_eq!(backlog, vec![199, 198, 197, 196, 195]);
    let next = store
        .claim(Queue::Backlog, SlotId::backlog(1), 3, FAR)
        .await
        .unwrap();
    assert_eq!(next, vec![194, 193, 192]);
    let priority = store
        .claim(Queue::Priority, SlotId::PRIORITY, 2, FAR)
        .await
        .unwrap();
    assert_eq!(priority, vec![201, 202]);
    assert_eq!(store.queue_len(Queue::Backlog).await.unwrap(), 92);
    assert_eq!(store.last_synced().await.unwrap(), Some(210));
    let tip = store.owned_leases(SlotId::TIP).await.unwrap();
    assert_eq!(
        tip,
        vec![
            Lease {
                block: 210,
                origin: Origin::Tip
            },
            Lease {
                block: 200,
                origin: Origin::Tip
            }
        ]
    );
    let owned = store.owned_leases(SlotId::backlog(1)).await.unwrap();
    assert_eq!(
        owned.iter().map(|l| l.block).collect::<Vec<_>>(),
        vec![194, 193, 192]
    );
}

#[tokio::test]
async fn advance_refuses_a_stale_last_synced() {
    let redis = TestRedis::start().await;
    let store = redis.store();
    let advance = Advance {
        expected_last: None,
        head: 50,
        tip_slot: SlotId::TIP,
        lease_deadline_ms: FAR,
        enqueue: None,
    };
    store.advance(&advance).await.unwrap();
    let again = store.advance(&advance).await;
    assert!(matches!(
        again,
        Err(actors::store::StoreError::Conflict {
            expected: None,
            found: Some(50)
        })
    ));
}

#[tokio::test]
async fn a_block_is_committed_once_whatever_happens_after() {
    let redis = TestRedis::start().await;
    let store = redis.store();
    let block = sample_block(500, 3);
    store
        .claim(Queue::Backlog, SlotId::backlog(0), 1, FAR)
        .await
        .unwrap();
    let first = store
        .commit(Origin::Backlog, &block, actors::clock::now_ms())
        .await
        .unwrap();
    assert_eq!(
        first,
        CommitOutcome::Published {
            events: 3,
            attempt: 1
        }
    );
    let second = store
        .commit(Origin::Backlog, &block, actors::clock::now_ms())
        .await
        .unwrap();
    assert_eq!(second, CommitOutcome::AlreadyDone);
    let mut conn = redis.conn().await;
    let entries = read_stream(&mut conn, &store.keys().events()).await;
    let blocks = by_block(&entries);
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[&500], expected_fields(&block));
    // Field order is part of the contract.
    let names: Vec<&str> = entries[0].1.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "v",
            "kind",
            "uid",
            "block",
            "block_hash",
            "block_time",
            "tx",
            "from",
            "to",
            "value"
        ]
    );
    assert!(store.is_done(500).await.unwrap());
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.blocks(Origin::Backlog), 1);
    assert_eq!(stats.events(Origin::Backlog), 3);
}

#[tokio::test]
async fn commit_drops_the_lease_and_done_blocks_are_never_claimed() {
    let redis = TestRedis::start().await;
    let store = redis.store();
    store
        .advance(&Advance {
            expected_last: None,
            head: 20,
            tip_slot: SlotId::TIP,
            lease_deadline_ms: FAR,
            enqueue: Some((Queue::Backlog, 1, 19)),
        })
        .await
        .unwrap();
    let claimed = store
        .claim(Queue::Backlog, SlotId::backlog(0), 2, FAR)
        .await
        .unwrap();
    assert_eq!(claimed, vec![19, 18]);
    store
        .commit(Origin::Backlog, &sample_block(19, 1), 1)
        .await
        .unwrap();
    assert_eq!(
        store.owned_leases(SlotId::backlog(0)).await.unwrap(),
        vec![Lease {
            block: 18,
            origin: Origin::Backlog
        }]
    );
    // Block 17 gets done elsewhere (a duplicate enqueue); claiming skips it.
    store
        .commit(Origin::Priority, &sample_block(17, 0), 1)
        .await
        .unwrap();
    let claimed = store
        .claim(Queue::Backlog, SlotId::backlog(1), 2, FAR)
        .await
        .unwrap();
    assert_eq!(claimed, vec![16, 15]);
}

#[tokio::test]
async fn failures_walk_the_schedule_into_the_dead_letter_set() {
    let redis = TestRedis::start().await;
    let store = redis.store();
    let delays = actors::retry::delays_ms(1.0);
    store
        .advance(&Advance {
            expected_last: None,
            head: 100,
            tip_slot: SlotId::TIP,
            lease_deadline_ms: FAR,
            enqueue: Some((Queue::Backlog, 90, 99)),
        })
        .await
        .unwrap();
    let mut now = 1_000_000u64;
    for attempt in 1..=9u32 {
        let claimed = store
            .claim(Queue::Backlog, SlotId::backlog(0), 1, FAR)
            .await
            .unwrap();
        assert_eq!(claimed, vec![99], "attempt {attempt} takes block 99 again");
        let outcome = store
            .fail(99, "malformed answer", now, &delays)
            .await
            .unwrap();
        let due = now + delays[attempt as usize - 1];
        assert_eq!(
            outcome,
            FailOutcome::Retry {
                attempt,
                due_ms: due
            }
        );
        assert!(store
            .owned_leases(SlotId::backlog(0))
            .await
            .unwrap()
            .is_empty());
        // Not due a millisecond early, due exactly on time, and back on the backlog.
        assert_eq!(store.promote_due_retries(due - 1).await.unwrap(), 0);
        assert_eq!(store.promote_due_retries(due).await.unwrap(), 1);
        now = due;
    }
    store
        .claim(Queue::Backlog, SlotId::backlog(0), 1, FAR)
        .await
        .unwrap();
    let last = store
        .fail(99, "still malformed", now, &delays)
        .await
        .unwrap();
    assert_eq!(last, FailOutcome::Dead { attempts: 10 });
    let dead = store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].block, 99);
    assert_eq!(dead[0].attempts, 10);
    assert_eq!(dead[0].error, "still malformed");
    assert_eq!(dead[0].path, "backlog");
    let mut conn = redis.conn().await;
    let retries: u64 = conn.zcard(store.keys().retry()).await.unwrap();
    assert_eq!(retries, 0);
    // The next claim moves on to the other blocks.
    assert_eq!(
        store
            .claim(Queue::Backlog, SlotId::backlog(0), 1, FAR)
            .await
            .unwrap(),
        vec![98]
    );
}

#[tokio::test]
async fn expired_leases_go_back_to_their_queue_and_heartbeats_keep_them() {
    let redis = TestRedis::start().await;
    let store = redis.store();
    store
        .advance(&Advance {
            expected_last: None,
            head: 30,
            tip_slot: SlotId::TIP,
            lease_deadline_ms: 1_000,
            enqueue: Some((Queue::Backlog, 1, 29)),
        })
        .await
        .unwrap();
    store
        .claim(Queue::Backlog, SlotId::backlog(0), 2, 1_000)
        .await
        .unwrap();
    store
        .claim(Queue::Backlog, SlotId::backlog(1), 1, 1_000)
        .await
        .unwrap();
    assert_eq!(
        store.heartbeat(SlotId::backlog(1), 10_000).await.unwrap(),
        1
    );
    assert_eq!(
        store.reap_expired(5_000).await.unwrap(),
        3,
        "tip 30, backlog 29 and 28"
    );
    assert!(store
        .owned_leases(SlotId::backlog(0))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.owned_leases(SlotId::backlog(1)).await.unwrap().len(),
        1
    );
    // The backlog blocks are back on the backlog, the tip block on the priority queue.
    assert_eq!(
        store
            .claim(Queue::Backlog, SlotId::backlog(2), 3, FAR)
            .await
            .unwrap(),
        vec![29, 28, 26]
    );
    assert_eq!(
        store
            .claim(Queue::Priority, SlotId::PRIORITY, 5, FAR)
            .await
            .unwrap(),
        vec![30]
    );
}

#[tokio::test]
async fn release_hands_back_only_the_slots_own_leases() {
    let redis = TestRedis::start().await;
    let store = redis.store();
    store
        .advance(&Advance {
            expected_last: None,
            head: 10,
            tip_slot: SlotId::TIP,
            lease_deadline_ms: FAR,
            enqueue: Some((Queue::Backlog, 1, 9)),
        })
        .await
        .unwrap();
    store
        .claim(Queue::Backlog, SlotId::backlog(0), 2, FAR)
        .await
        .unwrap();
    assert_eq!(store.release(SlotId::backlog(1), &[9, 8]).await.unwrap(), 0);
    assert_eq!(store.release(SlotId::backlog(0), &[9, 8]).await.unwrap(), 2);
    assert_eq!(store.queue_len(Queue::Backlog).await.unwrap(), 9);
}

#[tokio::test]
async fn a_redis_that_forgot_the_scripts_still_commits() {
    let redis = TestRedis::start().await;
    let store = redis.store();
    let first = sample_block(7, 3);
    store.commit(Origin::Tip, &first, 1_000).await.unwrap();
    // What a restarted Redis (or SCRIPT FLUSH) does to the script cache.
    let mut conn = redis.conn().await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let second = sample_block(8, 5);
    let outcome = store.commit(Origin::Tip, &second, 1_000).await.unwrap();
    assert_eq!(
        outcome,
        CommitOutcome::Published {
            events: second.events.len(),
            attempt: 1
        }
    );
    let entries = read_stream(&mut conn, &store.keys().events()).await;
    let blocks = by_block(&entries);
    assert_eq!(blocks[&7].len(), first.events.len());
    assert_eq!(blocks[&8].len(), second.events.len());
}

#[tokio::test]
async fn a_store_it_cannot_reach_says_so_and_keeps_the_redis_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    drop(listener);
    let store = tron_actors::store::RedisStore::new(&tron_actors::store::RedisStoreConfig {
        url,
        ..tron_actors::config::Config::default().store_config()
    })
    .unwrap();
    let error = store.last_synced().await.unwrap_err();
    assert_eq!(error.kind(), "store_unavailable");
    assert!(
        error.to_string().starts_with("store unavailable: "),
        "{error}"
    );
    let source = std::error::Error::source(&error).map(ToString::to_string);
    assert_eq!(
        source,
        Some(error.to_string()["store unavailable: ".len()..].to_string())
    );
}
