//! What only the Redis store has, against a real, private redis-server: the stream's fields and
//! their order, the stats, the script cache, an unreachable server. The protocol every store
//! follows (claim order, leases, exactly-once commit, retries, dead letters) is the contract suite
//! in tests/store_contract.rs, run against this store and the in-memory one alike.
#![allow(clippy::unwrap_used)]

mod common;

use actors::model::{finalized_entry_fields, reverted_entry_fields, Block};
use actors::store::{BlockLink, CommitOutcome, Origin, Store};
use common::{read_stream, sample_block, Entry, TestRedis};
use redis::AsyncCommands;
use tron_actors::store::RedisStore;

/// One entry's fields, in order, as the model writes them.
type Fields = Vec<(String, String)>;

fn owned(fields: Vec<(&'static str, String)>) -> Fields {
    fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// The entries a commit of `block` writes, fields in order: each event, then the block entry.
fn committed(block: &Block) -> Vec<Fields> {
    let number = block.header.number;
    let mut entries: Vec<Fields> = block
        .events
        .iter()
        .map(|e| owned(e.stream_fields(number)))
        .collect();
    entries.push(owned(block.header.block_entry_fields(block.events.len())));
    entries
}

/// The stream's entries without their ids.
fn fields_of(entries: Vec<Entry>) -> Vec<Fields> {
    entries.into_iter().map(|(_, fields)| fields).collect()
}

#[tokio::test]
async fn a_commit_writes_each_events_fields_in_order_then_its_block_entry_and_counts_the_block_once(
) {
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
    assert_eq!(fields_of(entries.clone()), committed(&block));
    // Field order is part of the contract.
    let names = |i: usize| -> Vec<String> { entries[i].1.iter().map(|(k, _)| k.clone()).collect() };
    assert_eq!(
        names(0),
        ["v", "kind", "block", "tx", "i", "contract", "from", "to", "value", "token"]
    );
    assert_eq!(
        names(3),
        [
            "v",
            "kind",
            "block",
            "block_hash",
            "parent_hash",
            "block_time",
            "events"
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
    assert_eq!(
        fields_of(entries),
        [committed(&first), committed(&second)].concat()
    );
}

#[tokio::test]
async fn a_refusal_a_retraction_and_finality_write_exactly_their_entries_and_are_counted() {
    let redis = TestRedis::start().await;
    let store = redis.store();
    let blocks: Vec<Block> = (10..=12).map(|n| sample_block(n, 1)).collect();
    let empty = sample_block(13, 0);
    for block in blocks.iter().chain([&empty]) {
        store.commit(Origin::Tip, block, 1_000).await.unwrap();
    }
    let header = &blocks[0].header;
    let mut conn = redis.conn().await;
    // Block 14 of another branch: refused, nothing written.
    let mut stranger = sample_block(14, 2);
    stranger.header.parent_hash = "ff".repeat(32);
    assert_eq!(
        store.commit(Origin::Tip, &stranger, 2_000).await.unwrap(),
        CommitOutcome::Unlinked { at: 13 }
    );
    let link = |block: &Block| BlockLink {
        number: block.header.number,
        hash: block.header.hash.clone(),
        parent_hash: block.header.parent_hash.clone(),
    };
    let orphans = [link(&empty), link(&blocks[2]), link(&blocks[1])];
    assert_eq!(
        store.revert(&orphans, 3_000).await.unwrap(),
        vec![13, 12, 11]
    );
    // A second walk over the same orphans retracts nothing and is no fork.
    assert_eq!(
        store.revert(&orphans, 3_000).await.unwrap(),
        Vec::<u64>::new()
    );
    assert!(store.finalize(10, &header.hash, 4_000).await.unwrap());
    assert!(!store.finalize(10, &header.hash, 4_000).await.unwrap());

    let entries = read_stream(&mut conn, &store.keys().events()).await;
    let mut expected: Vec<Fields> = blocks.iter().chain([&empty]).flat_map(committed).collect();
    for orphan in &orphans {
        expected.push(owned(reverted_entry_fields(orphan.number, &orphan.hash)));
    }
    expected.push(owned(finalized_entry_fields(10, &header.hash)));
    assert_eq!(fields_of(entries), expected);

    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(snapshot.finalized, Some(10));
    assert_eq!(snapshot.stats.reverted_blocks(), 3);
    assert_eq!(snapshot.stats.forks(), 1);
    assert_eq!(snapshot.stats.blocks(Origin::Tip), 4);
    assert_eq!(store.links(0, u64::MAX).await.unwrap(), [link(&blocks[0])]);
    for number in 11..=13 {
        assert!(!store.is_done(number).await.unwrap(), "{number}");
    }
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

async fn stream_len(store: &RedisStore) -> u64 {
    let mut conn = store.connection();
    conn.xlen(store.keys().events()).await.unwrap()
}

/// The retention holds whichever script writes: a commit (an empty block's too, which writes only
/// its block entry), a retraction and a finality entry each trim what is older than it.
#[tokio::test]
async fn every_script_that_writes_entries_trims_the_stream() {
    let redis = TestRedis::start().await;
    let store = redis.store();
    let mut conn = redis.conn().await;
    // One entry per listpack node, so that the approximate trim (`MINID ~`), which drops only
    // whole nodes, drops every entry older than the limit.
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("stream-node-max-entries")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Far enough ahead that every entry written now is past the retention.
    let later = actors::clock::now_ms() + 30 * 24 * 3_600_000;

    store
        .commit(Origin::Tip, &sample_block(1, 1), 0)
        .await
        .unwrap();
    assert_eq!(stream_len(&store).await, 2, "nothing is old at time 0");
    store
        .commit(Origin::Tip, &sample_block(2, 0), later)
        .await
        .unwrap();
    assert_eq!(stream_len(&store).await, 0, "an empty block's commit");

    let block = sample_block(3, 1);
    store.commit(Origin::Tip, &block, 0).await.unwrap();
    let orphan = BlockLink {
        number: 3,
        hash: block.header.hash.clone(),
        parent_hash: block.header.parent_hash.clone(),
    };
    assert_eq!(store.revert(&[orphan], later).await.unwrap(), [3]);
    assert_eq!(stream_len(&store).await, 0, "a retraction");

    store
        .commit(Origin::Tip, &sample_block(4, 1), 0)
        .await
        .unwrap();
    assert!(store.finalize(4, "", later).await.unwrap());
    assert_eq!(stream_len(&store).await, 0, "a finality entry");
}
