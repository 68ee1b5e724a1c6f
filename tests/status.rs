//! What an operator sees of a running daemon: `status` against a known Redis state, and the
//! progress lines (log lines, or a bar on a terminal) while catching up.
#![allow(clippy::unwrap_used)]

mod common;

use common::cli::*;
use common::{start_daemon, test_config, wait_done, TestRedis};
use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;
use tron_actors::tools::local_redis::free_port;

/// Events the simulated node holds in `blocks`.
fn events_in(sim: &tron_sim::SimHandle, blocks: impl Iterator<Item = u64>) -> u64 {
    blocks
        .map(|b| sim.chain().expected_block(b).unwrap().events.len() as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_matches_the_redis_state_after_a_known_run() {
    let redis = TestRedis::start().await;
    // The simulated chain starts at block 60,000,000.
    let head = 60_000_000 + 40 - 1;
    let bad = head - 5;
    let sim = tron_sim::spawn(
        tron_sim::SimParams {
            seed: 7,
            history: 40,
            txs_per_block: 6,
            frozen: true,
            genesis_ms: Some(1_700_000_000_000),
            ..Default::default()
        },
        tron_sim::SimFaults {
            malformed_blocks: [bad].into_iter().collect(),
            ..Default::default()
        },
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    assert_eq!(sim.chain().head(), head);
    let from = head - 29;
    let start = from.to_string();
    let config = test_config(
        &sim.url(),
        &redis.url(),
        &[
            ("sync.start_block", start.as_str()),
            // The malformed block goes through its nine retries in well under a second.
            ("retry.delay_scale", "0.0001"),
        ],
    );
    let daemon = start_daemon(&config).await;
    let store = daemon.store.clone();
    wait_done(&store, bad + 1, head, WAIT).await;
    wait_done(&store, from, bad - 1, WAIT).await;
    common::wait_until(WAIT, "the malformed block dead-lettered", || async {
        store.snapshot().await.map(|s| s.dead == 1).unwrap_or(false)
    })
    .await;
    daemon.shutdown().await.unwrap();

    let url = sim.url();
    let redis_url = redis.url();
    let env = [
        ("TRON_ACTORS_NODE__URL", url.as_str()),
        ("TRON_ACTORS_REDIS__URL", redis_url.as_str()),
    ];
    let out = output(&["status", "--json"], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();

    let mut conn = redis.conn().await;
    let stream_len: u64 = redis::cmd("XLEN")
        .arg("{tron}:events")
        .query_async(&mut conn)
        .await
        .unwrap();
    let stream_memory: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg("{tron}:events")
        .query_async(&mut conn)
        .await
        .unwrap();
    let backlog_events = events_in(&sim, (from..head).filter(|b| *b != bad));
    let tip_events = events_in(&sim, head..=head);
    // The events, one block entry per committed block, and one finalized entry (the frozen
    // node's solidified block, head - 19, never moves).
    assert_eq!(stream_len, backlog_events + tip_events + 29 + 1);

    let expected = serde_json::json!({
        "node": {
            "url": url,
            "api_key": "not set",
            "head": head,
            "head_time_ms": sim.chain().timestamp_of(head),
            "error": null,
        },
        "redis": {
            "url": redis_url,
            "prefix": "{tron}",
            "used_memory_bytes": status["redis"]["used_memory_bytes"],
            "error": null,
        },
        "sync": {
            "last_synced": head,
            "finalized": head - 19,
            "lag_blocks": 0,
            "lag_seconds": 0.0,
            "queues": {"priority": 0, "backlog": 0, "retry": 0, "dead": 1},
            "leases_by_slot": {},
            // The daemon stopped cleanly: it resigned and left the registry of instances.
            "leader": null,
            "instances": [],
            "published": {
                "blocks": {"backlog": 28, "tip": 1},
                "events": {"backlog": backlog_events, "tip": tip_events},
                "reverted_blocks": 0,
                "forks": 0,
            },
            "stream": {
                "key": "{tron}:events",
                "length": stream_len,
                "memory_bytes": stream_memory,
            },
        },
    });
    assert_eq!(status, expected, "{stdout}");
    assert!(status["redis"]["used_memory_bytes"].as_u64().unwrap() > stream_memory);

    // The table says the same.
    let table = output(&["status"], &env).await;
    let (stdout, _) = text(&table);
    assert_eq!(table.status.code(), Some(0));
    let rows: HashMap<&str, &str> = stdout
        .lines()
        .filter_map(|line| line.split_once("  "))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    assert_eq!(rows["last synced"], head.to_string());
    assert_eq!(rows["lag"], "0 blocks, 0 s");
    assert_eq!(rows["dead letters"], "1");
    assert_eq!(rows["finalized"], (head - 19).to_string());
    assert_eq!(rows["forks"], "0 (0 blocks retracted)");
    assert_eq!(rows["retrying"], "0");
    assert_eq!(rows["blocks published"], "29 (backlog 28, tip 1)");
    assert!(
        rows["stream"].starts_with(&format!("{{tron}}:events: {stream_len} entries, ")),
        "{stdout}"
    );

    // Without the node, Redis's part is still shown, and the exit status says something is wrong.
    let closed = format!("http://127.0.0.1:{}", free_port().unwrap());
    let out = output(
        &["status", "--json"],
        &[
            ("TRON_ACTORS_NODE__URL", closed.as_str()),
            ("TRON_ACTORS_REDIS__URL", redis_url.as_str()),
            ("TRON_ACTORS_NODE__MAX_ATTEMPTS", "1"),
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(status["node"]["head"].is_null());
    assert!(
        status["node"]["error"]
            .as_str()
            .unwrap()
            .contains("node unreachable"),
        "{stdout}"
    );
    assert_eq!(status["sync"]["last_synced"], head);
    assert_eq!(status["sync"]["queues"]["dead"], 1);
    assert!(status["sync"]["lag_blocks"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catching_up_logs_blocks_left_rate_and_eta_every_few_seconds_when_not_on_a_terminal() {
    let redis = TestRedis::start().await;
    let head = 60_000_000 + 20 - 1;
    let sim = sim_with_two_failing_blocks(head).await;
    let url = sim.url();
    let redis_url = redis.url();
    let from = (head - 5).to_string();
    let mut daemon = Process::spawn(
        &["run"],
        &[
            ("TRON_ACTORS_NODE__URL", url.as_str()),
            ("TRON_ACTORS_REDIS__URL", redis_url.as_str()),
            ("TRON_ACTORS_SYNC__START_BLOCK", from.as_str()),
            ("TRON_ACTORS_LOG__PROGRESS_MS", "200"),
            ("TRON_ACTORS_METRICS__LISTEN", ""),
        ],
    );
    let store = redis.store();
    wait_done(&store, head - 1, head, WAIT).await;
    wait_done(&store, head - 5, head - 4, WAIT).await;
    let line_with_two_left = || {
        daemon.stderr().lines().find_map(|line| {
            let json: serde_json::Value = serde_json::from_str(line).ok()?;
            (json["message"] == "Catching up" && json["blocks_left"] == 2).then_some(json)
        })
    };
    common::wait_until(
        WAIT,
        "a progress line with the two failing blocks left",
        || {
            let found = line_with_two_left().is_some();
            async move { found }
        },
    )
    .await;
    let line = line_with_two_left().unwrap();
    assert_eq!(line["head"], head, "{line}");
    assert_eq!(line["last_synced"], head, "{line}");
    assert_eq!(line["level"], "INFO", "{line}");
    assert!(line["blocks_per_s"].is_number(), "{line}");
    let waiting = ["priority", "backlog", "retry", "leased"]
        .iter()
        .map(|k| line[*k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(waiting, 2, "{line}");
    assert_eq!(daemon.terminate().await.code(), Some(0));
}

/// The sim of the progress tests: two blocks that always fail keep the daemon "catching up"
/// with exactly two blocks left for as long as a test needs.
async fn sim_with_two_failing_blocks(head: u64) -> tron_sim::SimHandle {
    tron_sim::spawn(
        tron_sim::SimParams {
            seed: 7,
            history: head - 60_000_000 + 1,
            txs_per_block: 3,
            frozen: true,
            genesis_ms: Some(1_700_000_000_000),
            ..Default::default()
        },
        tron_sim::SimFaults {
            malformed_blocks: [head - 3, head - 2].into_iter().collect(),
            ..Default::default()
        },
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_catching_up_draws_a_progress_bar_with_blocks_left_rate_and_eta() {
    let redis = TestRedis::start().await;
    let head = 60_000_000 + 20 - 1;
    let sim = sim_with_two_failing_blocks(head).await;
    // `script` (util-linux, on every Debian system) runs the daemon on a pseudo-terminal.
    let daemon_line = format!("{BIN} run");
    let dir = tempfile::tempdir().unwrap();
    let typescript = dir.path().join("terminal");
    let mut script = Command::new("script")
        .args(["-qfec", &daemon_line])
        .arg(&typescript)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TERM", "xterm")
        .env("TRON_ACTORS_NODE__URL", sim.url())
        .env("TRON_ACTORS_REDIS__URL", redis.url())
        .env("TRON_ACTORS_SYNC__START_BLOCK", (head - 5).to_string())
        .env("TRON_ACTORS_METRICS__LISTEN", "")
        // Retries after 1 s, 2 s, 6 s...: their warnings are log lines written under the bar.
        .env("TRON_ACTORS_RETRY__DELAY_SCALE", "0.2")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("`script` (util-linux) is needed to run the daemon on a terminal");
    let screen = || std::fs::read_to_string(&typescript).unwrap_or_default();
    common::wait_until(WAIT, "a bar with two blocks left, then a log line", || {
        let screen = screen();
        let found = screen
            .find("  2 blocks left  ")
            .is_some_and(|bar| screen[bar..].contains(" WARN"));
        async move { found }
    })
    .await;
    let screen = screen();
    // The bar is redrawn in place: each drawing starts by going back and clearing the line.
    let drawings: Vec<&str> = screen
        .split("\r\x1b[2K")
        .filter(|d| d.starts_with('['))
        .collect();
    let drawing = drawings
        .iter()
        .find(|d| d.contains("  2 blocks left  "))
        .unwrap();
    assert!(drawing.contains("%  2 blocks left  "), "{drawing:?}");
    assert!(drawing.contains(" blocks/s  ETA "), "{drawing:?}");
    // Nothing is ever written after a drawing on its line: a log line clears the bar first.
    for drawing in &drawings {
        assert!(!drawing.contains('\n'), "{drawing:?}");
    }
    let pid = script.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let _ = tokio::time::timeout(Duration::from_secs(30), script.wait()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_several_nodes_status_checks_each_and_shows_the_one_in_use() {
    let redis = TestRedis::start().await;
    let sim = common::frozen_sim(20, 5).await;
    let head = sim.chain().head();
    let closed = format!("http://127.0.0.1:{}", free_port().unwrap());
    let urls = format!("{closed},{}", sim.url());
    let redis_url = redis.url();
    let out = output(
        &["status", "--json"],
        &[
            ("TRON_ACTORS_NODE__URLS", urls.as_str()),
            ("TRON_ACTORS_NODE__API_KEY", "k3y-of-status"),
            ("TRON_ACTORS_REDIS__URL", redis_url.as_str()),
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stdout.contains("k3y-of-status"), "{stdout}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        status["node"],
        serde_json::json!({
            "url": sim.url(),
            "api_key": "<redacted>",
            "head": head,
            "head_time_ms": sim.chain().timestamp_of(head),
            "error": null,
            "nodes": [
                {
                    "url": closed,
                    "api_key": false,
                    "head": null,
                    "active": false,
                    "unfit": "it does not answer (2 failures in a row)",
                },
                {
                    "url": sim.url(),
                    "api_key": false,
                    "head": head,
                    "active": true,
                    "unfit": null,
                },
            ],
        })
    );

    let out = output(
        &["status"],
        &[
            ("TRON_ACTORS_NODE__URLS", urls.as_str()),
            ("TRON_ACTORS_REDIS__URL", redis_url.as_str()),
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("{} head {head}", sim.url())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{closed} head unknown, not used: it does not answer"
        )),
        "{stdout}"
    );
}
