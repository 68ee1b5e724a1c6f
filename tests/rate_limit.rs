//! Under a node's rate limit: the daemon paces itself under it (no 429 storm, no penalty) and the
//! head keeps its place ahead of the backlog.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_exactly_once, test_config, wait_done, TestRedis};
use std::collections::HashMap;
use std::time::Duration;
use tron_actors::sim::{SimFaults, SimParams};

const NODE_LIMIT: u32 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_node_rate_limit_the_daemon_stays_under_it_and_the_head_goes_first() {
    let redis = TestRedis::start().await;
    // A live node making a block a second, answering 429 (and suspending us for 30 s) above
    // NODE_LIMIT requests a second, like TronGrid.
    let sim = tron_actors::sim::spawn(
        SimParams {
            seed: 11,
            history: 400,
            txs_per_block: 5,
            block_interval_ms: 1000,
            ..SimParams::default()
        },
        SimFaults {
            max_requests_per_sec: Some(NODE_LIMIT),
            penalty_ms: 30_000,
            ..SimFaults::none()
        },
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let head = sim.chain().head();
    let start = head - 300;
    let rate = (f64::from(NODE_LIMIT) * 0.9).to_string();
    let start_block = start.to_string();
    let config = test_config(
        &sim.url(),
        &redis.url(),
        &[
            ("node.rate_limit_rps", rate.as_str()),
            ("sync.start_block", start_block.as_str()),
            ("sync.block_interval_ms", "1000"),
            ("sync.poll_min_ms", "250"),
            ("sync.poll_max_ms", "1000"),
        ],
    );
    let daemon = common::start_daemon(&config).await;
    let store = daemon.store.clone();
    // The backlog (300 blocks at 36 requests/s: about 9 s) and the blocks made meanwhile.
    let until = head + 12;
    wait_done(&store, start, until, Duration::from_secs(120)).await;
    daemon.shutdown().await.unwrap();
    let last = sim.chain().head().min(until);
    assert_exactly_once(&redis, &sim, start, last).await;

    let faults: HashMap<&str, u64> = sim.fault_counts().into_iter().collect();
    assert_eq!(
        faults["rate_limit_429"], 0,
        "the daemon went over the limit: {faults:?}"
    );
    assert_eq!(faults["penalty_429"], 0, "{faults:?}");
    // Every block made during the drain was taken by the TipWatcher as it came: none fell
    // behind into the priority queue, which is what happens when head requests queue behind
    // the backlog's (52 of them at 36/s: 1.4 s per request, 2 requests per block).
    let stats = store.stats().await.unwrap();
    // The head at the daemon's first poll is `head` or one more.
    assert!(stats["blocks:backlog"] >= head - start, "{stats:?}");
    assert_eq!(stats.get("blocks:priority"), None, "{stats:?}");
    assert!(stats["blocks:tip"] >= until - head, "{stats:?}");
}
