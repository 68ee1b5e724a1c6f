//! Forks at the head, against the simulated node with forks on and a private redis-server: the
//! stream read as a consumer reads it (retractions applied) is the node's chain, block by block;
//! `sync.follow = "finalized"` never retracts; a process that dies in the middle of a
//! retraction leaves nothing orphaned and nothing missing once restarted.
//!
//! The node's head moves one block at a time, and the test waits for the daemon to commit each
//! head before the next: so every block of a fork is first committed in the version the fork
//! replaces, and the number of retractions is known exactly.

#![allow(clippy::unwrap_used)]

mod common;

use common::forking::{fast_polls, forking_node, run_daemon_through, wait_done};
use common::{assert_exactly_once, consumer_view, read_stream, TestRedis};
use std::time::Duration;
use tron_sim::{SimChain, SimHandle};

/// The retractions a daemon that committed every head `from..=to` as it came must have
/// written: for each fork that started above `from` and was replaced by `to`, its blocks newest
/// first, each with the hash of the version replaced.
fn expected_retractions(sim: &SimHandle, from: u64, to: u64) -> Vec<(u64, String)> {
    let chain = sim.chain();
    let mut out = Vec::new();
    for (start, depth) in chain.forks_between(from, to) {
        if start <= from || start + depth > to {
            continue;
        }
        for number in (start..start + depth).rev() {
            // The version a node whose head was the fork's last block served.
            let orphan = chain.expected_block_at(number, start + depth - 1).unwrap();
            out.push((number, orphan.header.hash));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_through_dozens_of_forks_reads_as_the_nodes_chain_block_by_block() {
    let redis = TestRedis::start().await;
    let sim = forking_node().await;
    let (first, last) = run_daemon_through(&redis, &sim, &fast_polls(), 240, SimChain::head).await;

    let entries = assert_exactly_once(&redis, &sim, first, last).await;
    let view = consumer_view(&entries);
    let expected = expected_retractions(&sim, first, last);
    let forks = sim
        .chain()
        .forks_between(first, last)
        .iter()
        .filter(|(start, depth)| *start > first && start + depth <= last)
        .count();
    assert!(forks >= 24, "only {forks} forks in the run");
    assert_eq!(view.reverted, expected, "retractions differ");
    assert_eq!(view.finalized, Some(last - 19));
    println!(
        "{} blocks, {forks} forks, {} blocks retracted and republished",
        last - first + 1,
        expected.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_finalized_blocks_never_retracts_and_is_exact() {
    let redis = TestRedis::start().await;
    let sim = forking_node().await;
    let mut overrides = fast_polls();
    overrides.push(("sync.follow", "finalized"));
    let (first, last) =
        run_daemon_through(&redis, &sim, &overrides, 80, SimChain::solid_head).await;

    let entries = assert_exactly_once(&redis, &sim, first, last).await;
    let view = consumer_view(&entries);
    assert_eq!(view.reverted, vec![], "a final block was retracted");
    assert_eq!(view.finalized, Some(last));
    assert!(
        sim.chain().forks_between(first, last + 19).len() >= 8,
        "the node forked above the final blocks meanwhile"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_in_the_middle_of_a_retraction_leaves_nothing_orphaned_or_missing() {
    for point in ["before_revert", "after_revert"] {
        let redis = TestRedis::start().await;
        let sim = forking_node().await;
        let store = redis.store();
        let mut env = vec![
            ("TRON_ACTORS_SYNC__POLL_MIN_MS", "10"),
            ("TRON_ACTORS_SYNC__POLL_MAX_MS", "10"),
            ("TRON_ACTORS_SYNC__IDLE_MS", "10"),
        ];
        let mut first_run = env.clone();
        first_run.push(("TRON_ACTORS_FAULTS__ABORT_IN_RETRACTION", point));
        let mut daemon = common::DaemonProcess::spawn(&sim.url(), &redis.url(), &first_run);
        let first = sim.chain().head();
        assert!(wait_done(&store, first, || false).await);
        // Up the chain until the first fork is found: the process dies in its retraction.
        let died = loop {
            sim.chain().advance(1);
            let head = sim.chain().head();
            assert!(head < first + 20, "{point}: no retraction by block {head}");
            if !wait_done(&store, head, || daemon.exited().is_some()).await {
                break head;
            }
        };
        let mut conn = redis.conn().await;
        let retracted = consumer_view(&read_stream(&mut conn, "{tron}:events").await).reverted;
        match point {
            "before_revert" => assert_eq!(retracted, vec![], "{point}"),
            _ => assert_eq!(
                retracted,
                expected_retractions(&sim, first, died),
                "{point}: the retraction is one step"
            ),
        }

        env.push(("TRON_ACTORS_FAULTS__ABORT_IN_RETRACTION", "off"));
        let mut daemon = common::DaemonProcess::spawn(&sim.url(), &redis.url(), &env);
        assert!(wait_done(&store, died, || false).await, "{point}");
        for _ in 0..24 {
            sim.chain().advance(1);
            assert!(wait_done(&store, sim.chain().head(), || false).await);
        }
        let last = sim.chain().head();
        common::wait_done(&store, first, last, Duration::from_secs(60)).await;
        daemon.terminate(Duration::from_secs(10)).await;

        let entries = assert_exactly_once(&redis, &sim, first, last).await;
        let view = consumer_view(&entries);
        assert_eq!(
            view.reverted,
            expected_retractions(&sim, first, last),
            "{point}: retractions differ"
        );
    }
}
