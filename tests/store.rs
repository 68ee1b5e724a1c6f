//! What only the Redis store has, against a real, private redis-server: the stream's fields and
//! their order, the stats, the script cache, an unreachable server. The protocol every store
//! follows (claim order, leases, exactly-once commit, retries, dead letters) is the contract suite
//! in tests/store_contract.rs, run against this store and the in-memory one alike.
#![allow(clippy::unwrap_used)]

mod common;

use actors::store::{CommitOutcome, Origin, Store};
use common::{by_block, expected_fields, read_stream, sample_block, TestRedis};

#[tokio::test]
async fn a_commit_writes_each_events_fields_in_order_and_counts_the_block_once_in_stats() {
    let redis = TestRedis::start().await;
    let store = redis.store();
    let block = sample_block(500, 3);
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
