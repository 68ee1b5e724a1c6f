//! A simulated node that forks often, and a daemon run through it one head at a time (tests of
//! forks and of consumers that must apply retractions).
#![allow(dead_code, clippy::unwrap_used)]
#![allow(unreachable_pub)]

use super::TestRedis;
use std::time::Duration;
use tron_actors::store::RedisStore;
use tron_sim::{SimChain, SimHandle, SimParams};

/// Blocks at the simulated node's start: the first head is 60,000,039.
pub const HISTORY: u64 = 40;

/// A node whose head moves only when the test says so, a fork (1 to 5 blocks deep) starting
/// at every 8th block.
pub async fn forking_node() -> SimHandle {
    let params = SimParams {
        seed: 7,
        history: HISTORY,
        txs_per_block: 4,
        frozen: true,
        genesis_ms: Some(1_700_000_000_000),
        fork_rate: 1.0,
        max_fork_depth: 5,
        fork_window: 8,
        ..Default::default()
    };
    tron_sim::spawn(
        params,
        tron_sim::SimFaults::none(),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap()
}

/// Polls fast: a step of the head is a few tens of milliseconds.
pub fn fast_polls() -> Vec<(&'static str, &'static str)> {
    vec![
        ("sync.poll_min_ms", "10"),
        ("sync.poll_max_ms", "10"),
        ("sync.idle_ms", "10"),
    ]
}

pub async fn wait_done(store: &RedisStore, block: u64, mut gave_up: impl FnMut() -> bool) -> bool {
    let started = tokio::time::Instant::now();
    loop {
        if store.is_done(block).await.unwrap_or(false) {
            return true;
        }
        if gave_up() {
            return false;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "block {block} not committed within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs a daemon (in this process, with `overrides`) while the node's head moves `steps` blocks,
/// one at a time, each time waiting until the daemon committed `target` of the node (its head,
/// or its solidified block); stops it once every block from the first target to the last is
/// done. Returns those two blocks.
pub async fn run_daemon_through(
    redis: &TestRedis,
    sim: &SimHandle,
    overrides: &[(&str, &str)],
    steps: u64,
    target: fn(&SimChain) -> u64,
) -> (u64, u64) {
    let config = super::test_config(&sim.url(), &redis.url(), overrides);
    let daemon = super::start_daemon(&config).await;
    let store = redis.store();
    let first = target(sim.chain());
    assert!(wait_done(&store, first, || false).await);
    for _ in 0..steps {
        sim.chain().advance(1);
        assert!(wait_done(&store, target(sim.chain()), || false).await);
    }
    let last = target(sim.chain());
    super::wait_done(&store, first, last, Duration::from_secs(60)).await;
    daemon.shutdown().await.unwrap();
    (first, last)
}
