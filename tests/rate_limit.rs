//! Under a node's rate limit: the daemon paces itself under it (no 429 storm, no penalty) and the
//! head keeps its place ahead of the backlog. A node's refusals: a bare 503 (a proxy) costs its
//! request a short backoff, TronGrid's suspension pauses everyone for as long as it says.
#![allow(clippy::unwrap_used)]

mod common;

use actors::chain::ChainErrorKind;
use common::{assert_exactly_once, test_config, wait_done, TestRedis};
use std::collections::HashMap;
use std::time::Duration;
use tron_sim::{SimFaults, SimParams};

const NODE_LIMIT: u32 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_node_rate_limit_the_daemon_stays_under_it_and_the_head_goes_first() {
    let redis = TestRedis::start().await;
    // A live node making a block a second, answering 429 (and suspending us for 30 s) above
    // NODE_LIMIT requests a second, like TronGrid.
    let sim = tron_sim::spawn(
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
    let last = common::last_published(&redis, until).await;
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
    let blocks = stats.blocks_by_origin();
    assert!(blocks["backlog"] >= head - start, "{stats:?}");
    assert_eq!(blocks.get("priority"), None, "{stats:?}");
    assert!(blocks["tip"] >= until - head, "{stats:?}");
}

/// A live node of `history` blocks with `faults`, and the daemon in this process catching it up
/// from its first block with its own `node.penalty_ms`, through a few new blocks. Asserts the
/// stream exact, then returns the node's fault counts and the daemon's node client counters.
async fn catch_up_through(
    seed: u64,
    history: u64,
    txs_per_block: u32,
    faults: SimFaults,
    penalty_ms: &str,
) -> (
    HashMap<&'static str, u64>,
    std::sync::Arc<tron_actors::tron::TronClient>,
) {
    let redis = TestRedis::start().await;
    let sim = tron_sim::spawn(
        SimParams {
            seed,
            history,
            txs_per_block,
            block_interval_ms: 1000,
            ..SimParams::default()
        },
        faults,
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let head = sim.chain().head();
    let start = head + 1 - history;
    let start_block = start.to_string();
    let config = test_config(
        &sim.url(),
        &redis.url(),
        &[
            ("sync.start_block", start_block.as_str()),
            ("node.penalty_ms", penalty_ms),
            ("sync.block_interval_ms", "1000"),
        ],
    );
    let client =
        std::sync::Arc::new(tron_actors::tron::TronClient::new(config.client_config()).unwrap());
    let daemon = tron_actors::daemon::DaemonHandle::start(&config, client.clone())
        .await
        .unwrap();
    let until = head + 3;
    wait_done(&daemon.store, start, until, Duration::from_secs(90)).await;
    daemon.shutdown().await.unwrap();
    let last = common::last_published(&redis, until).await;
    assert_exactly_once(&redis, &sim, start, last).await;
    (sim.fault_counts().into_iter().collect(), client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_503s_and_their_bursts_cost_a_short_backoff_not_a_suspension() {
    // The shipped 30 s penalty: a daemon that took each bare 503 for a suspension would sit
    // out 30 s at each of them, far past the wait for the catch-up.
    let faults = SimFaults {
        seed: 7,
        http_503_rate: 0.02,
        http_503_burst_rate: 0.005,
        http_503_burst_ms: 300,
        ..SimFaults::none()
    };
    let (faults, client) = catch_up_through(7, 400, 20, faults, "30000").await;
    assert!(faults["http_503"] > 0, "{faults:?}");
    assert!(faults["http_503_burst"] > 0, "{faults:?}");
    let stats = client.stats();
    assert_eq!(stats.errors(ChainErrorKind::RateLimited), 0);
    assert_eq!(
        stats.errors(ChainErrorKind::Http),
        faults["http_503"] + faults["http_503_burst"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_notice_pauses_every_request_for_the_time_it_says() {
    // The notice says 2 s; the daemon's own penalty is 10 minutes: only a daemon that waits what
    // the notice says catches up within the wait.
    let faults = SimFaults {
        seed: 8,
        http_503_suspend_rate: 0.01,
        penalty_ms: 2_000,
        ..SimFaults::none()
    };
    let (faults, client) = catch_up_through(8, 100, 5, faults, "600000").await;
    assert!(faults["http_503_suspend"] > 0, "{faults:?}");
    // Each refusal (the notice, and the 429s of requests already in flight when it came) held
    // every caller for the time it said.
    let stats = client.stats();
    let refusals = faults["http_503_suspend"] + faults["penalty_429"];
    assert_eq!(
        stats.errors(ChainErrorKind::RateLimited),
        refusals,
        "{faults:?}"
    );
    assert_eq!(stats.snapshot().penalties, refusals, "{faults:?}");
}
