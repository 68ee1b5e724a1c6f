//! The chaos harness, CI-sized: `tron-actors chaos` (the binary, which runs the daemon as its own
//! child processes) over a 2,000-block backlog and the live head, with node faults, daemon
//! SIGKILLs, worker panics and redis-server restarts; verify must find the range exact.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use tron_sim::{SimChain, SimParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ci_sized_chaos_run_publishes_every_event_exactly_once() {
    let seed = 11;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tron-actors"))
        .args(["chaos", "--json", "--seed", &seed.to_string()])
        .args(["--blocks", "2000", "--txs-per-block", "20"])
        .args([
            "--kills",
            "3",
            "--redis-restarts",
            "2",
            "--panic-one-in",
            "8",
        ])
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

    for key in [
        "missing",
        "duplicated",
        "unexpected",
        "unverifiable_blocks",
        "stop_status",
    ] {
        assert_eq!(report[key], 0, "{key}: {report:#}");
    }
    // The disruptions really happened: a harness that did nothing fails here.
    assert_eq!(report["kills"], 3, "{report:#}");
    assert_eq!(report["redis_restarts"], 2, "{report:#}");
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

    // The range is the whole backlog plus head blocks, and verify counted every event of it:
    // the same chain, rebuilt here from the seed, says how many there are.
    let from = report["from"].as_u64().unwrap();
    let to = report["to"].as_u64().unwrap();
    // The chain as the node served it when the run halted its head at `to`: forks the node
    // switched away from are in their canonical versions, one still open at `to` in its own.
    let chain = SimChain::new(SimParams {
        seed,
        history: to - SimParams::default().start_block + 1,
        txs_per_block: 20,
        frozen: true,
        fork_rate: 1.0,
        fork_window: 8,
        max_fork_depth: 5,
        ..SimParams::default()
    })
    .unwrap();
    // The live head forked, and the daemon retracted what it had committed of the forks.
    assert!(report["forks"].as_u64().unwrap() > 0, "{report:#}");
    assert!(
        report["reverted_blocks"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    assert_eq!(from, chain.params().start_block);
    assert!(to - from + 1 >= 2000, "{report:#}");
    assert_eq!(report["blocks"], to - from + 1);
    let events: usize = (from..=to)
        .map(|n| chain.expected_block(n).unwrap().events.len())
        .sum();
    assert_eq!(report["events"], events);
}
