//! End to end: the daemon against a private redis-server and the simulated node over HTTP, for
//! each row of the sync table that a restart can meet.
#![allow(clippy::unwrap_used)]

mod common;

use actors::store::Origin;
use common::{assert_exactly_once, frozen_sim, start_daemon, test_config, wait_done, TestRedis};
use std::collections::HashMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_publishes_from_the_head_and_follows_it() {
    let redis = TestRedis::start().await;
    let sim = frozen_sim(50, 30).await;
    let head = sim.chain().head();
    let config = test_config(&sim.url(), &redis.url(), &[]);
    let daemon = start_daemon(&config).await;
    let store = daemon.store.clone();
    wait_done(&store, head, head, WAIT).await;
    sim.chain().advance(1);
    wait_done(&store, head + 1, head + 1, WAIT).await;
    daemon.shutdown().await.unwrap();
    assert_exactly_once(&redis, &sim, head, head + 1).await;
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.blocks(Origin::Tip), 2, "{stats:?}");
    use actors::store::Store;
    assert_eq!(store.last_synced().await.unwrap(), Some(head + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_ten_blocks_behind_fills_the_gap_through_the_priority_queue() {
    let redis = TestRedis::start().await;
    let sim = frozen_sim(50, 30).await;
    let head = sim.chain().head();
    let config = test_config(&sim.url(), &redis.url(), &[]);
    let daemon = start_daemon(&config).await;
    wait_done(&daemon.store, head, head, WAIT).await;
    daemon.shutdown().await.unwrap();

    sim.chain().advance(10);
    let daemon = start_daemon(&config).await;
    let store = daemon.store.clone();
    wait_done(&store, head, head + 10, WAIT).await;
    daemon.shutdown().await.unwrap();

    assert_exactly_once(&redis, &sim, head, head + 10).await;
    let stats = store.stats().await.unwrap();
    // Only the priority queue and the tip published: no backlog counter at all.
    assert_eq!(
        stats.blocks_by_origin(),
        [("priority".to_string(), 9), ("tip".to_string(), 2)].into(),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_three_thousand_blocks_behind_fills_the_backlog_highest_first() {
    let redis = TestRedis::start().await;
    let sim = frozen_sim(20, 8).await;
    let head = sim.chain().head();
    let config = test_config(&sim.url(), &redis.url(), &[]);
    let daemon = start_daemon(&config).await;
    wait_done(&daemon.store, head, head, WAIT).await;
    daemon.shutdown().await.unwrap();

    sim.chain().advance(3000);
    let new_head = head + 3000;
    let daemon = start_daemon(&config).await;
    let store = daemon.store.clone();
    wait_done(&store, head, new_head, WAIT).await;
    daemon.shutdown().await.unwrap();

    let entries = assert_exactly_once(&redis, &sim, head, new_head).await;
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.blocks(Origin::Backlog), 2999, "{stats:?}");
    assert_eq!(stats.blocks(Origin::Tip), 2, "{stats:?}");

    // Highest first: in publication order, backlog blocks run from the top down.
    let mut order: Vec<u64> = Vec::new();
    for entry in &entries {
        let block: u64 = common::field_map(entry)["block"].parse().unwrap();
        if block > head && block < new_head && order.last() != Some(&block) {
            order.push(block);
        }
    }
    let workers = config.sync.backlog_workers as u64;
    let batch = config.sync.backlog_batch as u64;
    assert!(
        order[0] >= new_head - 1 - workers * batch,
        "first backlog block published was {}, head {new_head}",
        order[0]
    );
    let tenth = order.len() / 10;
    let mean = |s: &[u64]| s.iter().sum::<u64>() / s.len() as u64;
    let (first, last) = (mean(&order[..tenth]), mean(&order[order.len() - tenth..]));
    assert!(
        first > last + 2000,
        "the first tenth published (mean block {first}) should be far above the last (mean {last})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_key_is_configurable() {
    let redis = TestRedis::start().await;
    let sim = frozen_sim(5, 30).await;
    let head = sim.chain().head();
    let config = test_config(
        &sim.url(),
        &redis.url(),
        &[("stream.key", "{tron}:events-nile")],
    );
    let daemon = start_daemon(&config).await;
    let store = daemon.store.clone();
    wait_done(&store, head, head, WAIT).await;
    daemon.shutdown().await.unwrap();

    let mut conn = redis.conn().await;
    let entries = common::read_stream(&mut conn, "{tron}:events-nile").await;
    let expected = sim.chain().expected_block(head).unwrap();
    // The finality entry is the coordinator's and the block's entries the publisher's: either may
    // come first, so the block's entries are compared in order and the finality entry on its own.
    let (finalized, block_entries): (Vec<_>, Vec<_>) = entries
        .iter()
        .map(common::field_map)
        .partition(|fields| fields.get("kind").map(String::as_str) == Some("finalized"));
    assert_eq!(block_entries, common::expected_fields(&expected));
    // The node's solidified block (19 below its head), published once.
    let expected_finalized: HashMap<String, String> =
        actors::model::finalized_entry_fields(head - 19, &sim.chain().id_at(head - 19, head))
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    assert_eq!(finalized, vec![expected_finalized]);
    let default_stream: u64 = redis::cmd("EXISTS")
        .arg("{tron}:events")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(default_stream, 0);
}
