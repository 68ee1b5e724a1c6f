//! The chaos harness, CI-sized: `tron-actors chaos` (the binary, which runs the daemon as its own
//! child processes) over a backlog and the live head, with node faults, daemon SIGKILLs (and,
//! with several instances, SIGSTOPs past the lease), worker panics and redis-server restarts (or
//! Sentinel failovers); verify must find the range exact.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use tron_sim::{SimChain, SimParams};

/// One run at a time: each starts several processes, and the machine has 2 cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `chaos --json --seed <seed>` with `args`; the JSON report of an exact run.
async fn chaos(seed: u64, args: &[&str]) -> Value {
    let _turn = ONE_AT_A_TIME.lock().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tron-actors"))
        .args(["chaos", "--json", "--seed", &seed.to_string()])
        .args(args)
        // A hung run fails the test instead of hanging CI.
        .args(["--duration-cap", "600"])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("no JSON report ({error}); stderr:\n{stderr}"));
    assert!(output.status.success(), "{report:#}\n{stderr}");
    eprintln!("{}", stderr.lines().last().unwrap_or_default());
    report
}

/// Nothing missing, doubled or unexpected, a clean stop, and verify counted every event of the
/// range: the same chain, rebuilt here from the seed, says how many there are.
fn assert_exact(report: &Value, seed: u64, txs_per_block: u32, blocks: u64) {
    for key in [
        "missing",
        "duplicated",
        "unexpected",
        "unverifiable_blocks",
        "stop_status",
    ] {
        assert_eq!(report[key], 0, "{key}: {report:#}");
    }
    let from = report["from"].as_u64().unwrap();
    let to = report["to"].as_u64().unwrap();
    // The chain as the node served it when the run halted its head at `to`: forks the node
    // switched away from are in their canonical versions, one still open at `to` in its own.
    let chain = SimChain::new(SimParams {
        seed,
        history: to - SimParams::default().start_block + 1,
        txs_per_block,
        frozen: true,
        fork_rate: 1.0,
        fork_window: 8,
        max_fork_depth: 5,
        ..SimParams::default()
    })
    .unwrap();
    assert_eq!(from, chain.params().start_block);
    assert!(to - from + 1 >= blocks, "{report:#}");
    assert_eq!(report["blocks"], to - from + 1);
    let events: usize = (from..=to)
        .map(|n| chain.expected_block(n).unwrap().events.len())
        .sum();
    assert_eq!(report["events"], events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ci_sized_chaos_run_publishes_every_event_exactly_once() {
    let seed = 11;
    let report = chaos(
        seed,
        &[
            "--blocks",
            "2000",
            "--txs-per-block",
            "20",
            "--kills",
            "3",
            "--redis-restarts",
            "2",
            "--panic-one-in",
            "8",
        ],
    )
    .await;
    assert_exact(&report, seed, 20, 2000);
    // The disruptions really happened: a harness that did nothing fails here.
    assert_eq!(report["instances"], 1, "{report:#}");
    assert_eq!(report["kills"], 3, "{report:#}");
    assert_eq!(report["pauses"], 0, "{report:#}");
    assert_eq!(report["redis_restarts"], 2, "{report:#}");
    assert_eq!(report["failovers"], 0, "{report:#}");
    assert!(report["panics"].as_u64().unwrap() > 0, "{report:#}");
    let faults = &report["node_faults"];
    for kind in [
        "http_500",
        "http_503",
        "reset",
        "truncated",
        "empty_infos",
        "node_error",
        "slow",
    ] {
        assert!(faults[kind].as_u64().unwrap() > 0, "no {kind}: {report:#}");
    }
    // The live head forked, and the daemon retracted what it had committed of the forks.
    assert!(report["forks"].as_u64().unwrap() > 0, "{report:#}");
    assert!(
        report["reverted_blocks"].as_u64().unwrap() > 0,
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_through_leader_kills_and_pauses_publish_every_event_exactly_once() {
    let seed = 12;
    let report = chaos(
        seed,
        &[
            "--instances",
            "3",
            "--blocks",
            "1500",
            "--txs-per-block",
            "10",
            "--kills",
            "3",
            "--pauses",
            "2",
            "--redis-restarts",
            "1",
            "--panic-one-in",
            "20",
        ],
    )
    .await;
    assert_exact(&report, seed, 10, 1500);
    assert_eq!(report["instances"], 3, "{report:#}");
    assert_eq!(report["kills"], 3, "{report:#}");
    assert!(report["leader_kills"].as_u64().unwrap() >= 1, "{report:#}");
    assert_eq!(report["pauses"], 2, "{report:#}");
    assert_eq!(report["redis_restarts"], 1, "{report:#}");
    // Every instance committed some of the range, and stopped cleanly on its SIGTERM.
    let instances = report["per_instance"].as_array().unwrap();
    let ids: Vec<&str> = instances
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["chaos-0", "chaos-1", "chaos-2"], "{report:#}");
    for instance in instances {
        assert!(instance["blocks"].as_u64().unwrap() > 0, "{report:#}");
        assert_eq!(instance["stop_status"], 0, "{report:#}");
    }
    let kills: u64 = instances.iter().map(|i| i["kills"].as_u64().unwrap()).sum();
    let pauses: u64 = instances
        .iter()
        .map(|i| i["pauses"].as_u64().unwrap())
        .sum();
    assert_eq!((kills, pauses), (3, 2), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failovers_under_chaos_publish_every_event_exactly_once() {
    let seed = 13;
    let report = chaos(
        seed,
        &[
            "--sentinel",
            "--blocks",
            "1500",
            "--txs-per-block",
            "10",
            "--kills",
            "1",
            "--redis-restarts",
            "2",
            "--panic-one-in",
            "20",
        ],
    )
    .await;
    assert_exact(&report, seed, 10, 1500);
    assert_eq!(report["failovers"], 2, "{report:#}");
    assert_eq!(report["redis_restarts"], 0, "{report:#}");
    assert_eq!(report["kills"], 1, "{report:#}");
    let plan = report["plan"].as_array().unwrap();
    assert_eq!(
        plan.iter()
            .filter(|d| d["kind"] == "failover_redis")
            .count(),
        2,
        "{report:#}"
    );
}
