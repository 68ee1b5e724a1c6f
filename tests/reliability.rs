//! Nothing lost, nothing twice: actor panics, process SIGKILL, a block that is always malformed,
//! a Redis restart and SIGTERM, each in the middle of a backlog, against a private redis-server
//! and the simulated node over HTTP.
#![allow(clippy::unwrap_used)]

mod common;

use actors::slot::{Instance, SlotId};
use actors::store::Store;
use common::{
    assert_exactly_once, done_count, frozen_sim, start_daemon, test_config, wait_done, wait_until,
    DaemonProcess, TestRedis, DAEMON_INSTANCE,
};
use std::sync::atomic::Ordering;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(180);

/// Syncs the head once, so that the next start sees a gap; returns the head.
async fn first_sync(redis: &TestRedis, sim: &tron_sim::SimHandle) -> u64 {
    let head = sim.chain().head();
    let config = test_config(&sim.url(), &redis.url(), &[]);
    let daemon = start_daemon(&config).await;
    wait_done(&daemon.store, head, head, WAIT).await;
    daemon.shutdown().await.unwrap();
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_actor_that_panics_after_claiming_is_restarted_and_resumes_its_lease() {
    let redis = TestRedis::start().await;
    let sim = frozen_sim(20, 5).await;
    let head = first_sync(&redis, &sim).await;
    sim.chain().advance(500);
    let new_head = head + 500;
    // A lease longer than the test: only resuming, not the reaper, can finish the block.
    let config = test_config(&sim.url(), &redis.url(), &[("sync.lease_ms", "600000")]);
    let daemon = start_daemon(&config).await;
    // The first batch the backlog hands out holds the block just below the head.
    daemon.hooks.panic_once_after_claiming(new_head - 1);
    let store = daemon.store.clone();
    wait_done(&store, head, new_head, WAIT).await;
    assert_eq!(daemon.stats.restarts.load(Ordering::SeqCst), 1);
    daemon.shutdown().await.unwrap();
    assert_exactly_once(&redis, &sim, head, new_head).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_daemon_restarted_mid_backlog_publishes_every_block_once() {
    let redis = TestRedis::start().await;
    let sim = frozen_sim(20, 10).await;
    let head = first_sync(&redis, &sim).await;
    sim.chain().advance(3000);
    let new_head = head + 3000;
    let store = redis.store();

    let mut daemon = DaemonProcess::spawn(&sim.url(), &redis.url(), &[]);
    wait_until(WAIT, "a fifth of the backlog done", || async {
        done_count(&store, head, new_head).await > 600
    })
    .await;
    daemon.kill().await;
    let done_at_kill = done_count(&store, head, new_head).await;
    assert!(done_at_kill < 3001, "killed too late to mean anything");
    // Leases of the killed process are still there, owned by their slots.
    let mut leased = 0;
    let instance = Instance::new(DAEMON_INSTANCE).unwrap();
    for slot in (0..13).map(|i| SlotId::backlog(i).of(instance)) {
        leased += store.owned_leases(slot).await.unwrap().len();
    }

    let mut daemon = DaemonProcess::spawn(&sim.url(), &redis.url(), &[]);
    wait_done(&store, head, new_head, WAIT).await;
    daemon.kill().await;
    assert_exactly_once(&redis, &sim, head, new_head).await;
    eprintln!("killed with {done_at_kill} blocks done and {leased} leased; all 3001 exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_always_malformed_block_walks_the_schedule_into_dead_letters_and_requeue_brings_it_back()
{
    let redis = TestRedis::start().await;
    let params = tron_sim::SimParams {
        seed: 7,
        history: 20,
        txs_per_block: 5,
        frozen: true,
        genesis_ms: Some(1_700_000_000_000),
        ..Default::default()
    };
    let bad = params.start_block + 100;
    let faults = tron_sim::SimFaults {
        malformed_blocks: [bad].into_iter().collect(),
        ..Default::default()
    };
    let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let sim = tron_sim::spawn(params.clone(), faults, any_port)
        .await
        .unwrap();
    let head = first_sync(&redis, &sim).await;
    sim.chain().advance(300);
    let new_head = head + 300;
    let config = test_config(
        &sim.url(),
        &redis.url(),
        &[("retry.delay_scale", "0.0001"), ("sync.maintain_ms", "20")],
    );
    let daemon = start_daemon(&config).await;
    let store = daemon.store.clone();
    wait_until(WAIT, "the bad block dead-lettered", || async {
        !store.dead_letters().await.unwrap().is_empty()
    })
    .await;
    let dead = store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].block, bad);
    assert_eq!(dead[0].attempts, 10, "the first try and the nine retries");
    assert!(dead[0].error.contains("malformed"), "{}", dead[0].error);
    // Every other block was done meanwhile.
    wait_done(&store, head, bad - 1, WAIT).await;
    wait_done(&store, bad + 1, new_head, WAIT).await;
    assert!(!store.is_done(bad).await.unwrap());

    // The node is fixed (same chain, no fault); the operator requeues the block.
    let addr = sim.addr();
    let advanced_params = tron_sim::SimParams {
        history: params.history + 300,
        ..params
    };
    sim.shutdown().await.unwrap();
    let sim = tron_sim::spawn(advanced_params, Default::default(), addr)
        .await
        .unwrap();
    assert_eq!(sim.chain().head(), new_head);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tron-actors"))
        .args(["dlq", "requeue", &bad.to_string()])
        .env("TRON_ACTORS_REDIS__URL", redis.url())
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let said = String::from_utf8_lossy(&output.stdout);
    assert_eq!(said.trim(), format!("requeued 1 block(s): [{bad}]"));
    wait_done(&store, bad, bad, WAIT).await;
    daemon.shutdown().await.unwrap();
    assert!(store.dead_letters().await.unwrap().is_empty());
    assert_exactly_once(&redis, &sim, head, new_head).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_backlog_loses_nothing_with_aof() {
    let mut redis = TestRedis::start_with(true).await;
    let sim = frozen_sim(20, 10).await;
    let head = first_sync(&redis, &sim).await;
    sim.chain().advance(2000);
    let new_head = head + 2000;
    let config = test_config(&sim.url(), &redis.url(), &[]);
    let daemon = start_daemon(&config).await;
    let store = daemon.store.clone();
    wait_until(WAIT, "a quarter of the backlog done", || async {
        done_count(&store, head, new_head).await > 500
    })
    .await;
    redis.server.kill().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.server.restart().await.unwrap();
    wait_done(&store, head, new_head, WAIT).await;
    daemon.shutdown().await.unwrap();
    assert_exactly_once(&redis, &sim, head, new_head).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_backlog_exits_zero_and_a_restart_completes_the_range_once() {
    let redis = TestRedis::start().await;
    let sim = frozen_sim(20, 10).await;
    let head = first_sync(&redis, &sim).await;
    sim.chain().advance(2000);
    let new_head = head + 2000;
    let store = redis.store();
    let grace = [("TRON_ACTORS_SHUTDOWN__GRACE_MS", "3000")];
    let mut daemon = DaemonProcess::spawn(&sim.url(), &redis.url(), &grace);
    wait_until(WAIT, "some of the backlog done", || async {
        done_count(&store, head, new_head).await > 300
    })
    .await;
    // Grace 3 s, plus the time to hand back leases and exit.
    let status = daemon.terminate(Duration::from_secs(8)).await;
    assert!(status.success(), "exit status {status:?}");
    // Everything claimed was handed back: no slot holds a lease.
    for slot in SlotId::all(Instance::new(DAEMON_INSTANCE).unwrap(), 13) {
        assert!(
            store.owned_leases(slot).await.unwrap().is_empty(),
            "{slot} kept leases"
        );
    }
    let mut daemon = DaemonProcess::spawn(&sim.url(), &redis.url(), &grace);
    wait_done(&store, head, new_head, WAIT).await;
    daemon.kill().await;
    assert_exactly_once(&redis, &sim, head, new_head).await;
}
