//! `tron-actors verify` (the binary) against a private redis-server and the simulated node: exact
//! after a clean run, and each kind of damage done to the stream by hand (XDEL, a doubled XADD,
//! an altered XADD) reported on exactly the block it was done to.
#![allow(clippy::unwrap_used)]

mod common;

use common::{field_map, frozen_sim, read_stream, start_daemon, test_config, wait_done, TestRedis};
use serde_json::{json, Value};
use std::time::Duration;

const STREAM: &str = "{tron}:events";

/// Runs `verify --from --to --json`; returns the exit code and the report.
async fn verify(node_url: &str, redis_url: &str, from: u64, to: u64) -> (i32, Value) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tron-actors"))
        .args(["verify", "--json", "--from", &from.to_string()])
        .args(["--to", &to.to_string()])
        .env("TRON_ACTORS_NODE__URL", node_url)
        .env("TRON_ACTORS_REDIS__URL", redis_url)
        .output()
        .await
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "verify printed no JSON ({error}): stdout {:?} stderr {:?}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap(), report)
}

async fn xadd(conn: &mut redis::aio::MultiplexedConnection, fields: &[(String, String)]) {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(STREAM).arg("*");
    for (name, value) in fields {
        cmd.arg(name).arg(value);
    }
    let _: String = cmd.query_async(conn).await.unwrap();
}

async fn xdel(conn: &mut redis::aio::MultiplexedConnection, id: &str) {
    let deleted: u64 = redis::cmd("XDEL")
        .arg(STREAM)
        .arg(id)
        .query_async(conn)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
}

/// The totals and the problems of a report, the parts a test compares exactly.
fn figures(report: &Value) -> Value {
    json!({
        "missing": report["missing"],
        "duplicated": report["duplicated"],
        "unexpected": report["unexpected"],
        "unverifiable_blocks": report["unverifiable_blocks"],
        "problems": report["problems"],
    })
}

fn one_problem(block: u64, missing: &[&str], duplicated: &[&str], unexpected: &[&str]) -> Value {
    json!({
        "missing": missing.len(),
        "duplicated": duplicated.len(),
        "unexpected": unexpected.len(),
        "unverifiable_blocks": 0,
        "problems": [{
            "block": block,
            "missing": missing,
            "duplicated": duplicated,
            "unexpected": unexpected,
            "unverifiable": null,
        }],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_is_exact_after_a_run_and_names_each_deleted_doubled_or_altered_event() {
    let redis = TestRedis::start().await;
    let sim = frozen_sim(30, 5).await;
    let (from, to) = (sim.chain().params().start_block, sim.chain().head());
    let start = from.to_string();
    let config = test_config(&sim.url(), &redis.url(), &[("sync.start_block", &start)]);
    let daemon = start_daemon(&config).await;
    wait_done(&daemon.store, from, to, Duration::from_secs(120)).await;
    daemon.shutdown().await.unwrap();

    let (code, report) = verify(&sim.url(), &redis.url(), from, to).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(figures(&report), no_problem());
    assert_eq!(report["blocks"], 30);
    let mut conn = redis.conn().await;
    let entries = read_stream(&mut conn, STREAM).await;
    assert!(!entries.is_empty());
    assert_eq!(report["expected_events"], entries.len());
    assert_eq!(report["stream_events"], entries.len());

    // The victim: an entry in the middle of the range.
    let (id, fields) = entries[entries.len() / 2].clone();
    let block: u64 = field_map(&(id.clone(), fields.clone()))["block"]
        .parse()
        .unwrap();
    let uid = field_map(&(id.clone(), fields.clone()))["uid"].clone();

    // Deleted: that event is missing from its block, and nothing else is wrong.
    xdel(&mut conn, &id).await;
    let (code, report) = verify(&sim.url(), &redis.url(), from, to).await;
    assert_eq!(code, 1);
    assert_eq!(figures(&report), one_problem(block, &[&uid], &[], &[]));
    assert_eq!(report["stream_events"], entries.len() - 1);

    // Put back (at the end of the stream, out of its block's place): exact again, since a
    // block's events are compared as a set.
    xadd(&mut conn, &fields).await;
    let (code, report) = verify(&sim.url(), &redis.url(), from, to).await;
    assert_eq!((code, figures(&report)), (0, no_problem()));

    // Added twice: one duplicated event.
    xadd(&mut conn, &fields).await;
    let (code, report) = verify(&sim.url(), &redis.url(), from, to).await;
    assert_eq!(code, 1);
    assert_eq!(figures(&report), one_problem(block, &[], &[&uid], &[]));
    assert_eq!(report["stream_events"], entries.len() + 1);
    let copy = last_id(&mut conn).await;
    xdel(&mut conn, &copy).await;

    // An altered copy next to the original: unexpected.
    let altered: Vec<(String, String)> = fields
        .iter()
        .map(|(name, value)| {
            let value = if name == "block_hash" {
                "00".repeat(32)
            } else {
                value.clone()
            };
            (name.clone(), value)
        })
        .collect();
    assert_ne!(altered, fields);
    xadd(&mut conn, &altered).await;
    let (code, report) = verify(&sim.url(), &redis.url(), from, to).await;
    assert_eq!(code, 1);
    assert_eq!(figures(&report), one_problem(block, &[], &[], &[&uid]));

    // The altered copy replacing the original: the original is missing too.
    let original = entry_id_with(&mut conn, &uid, &fields).await;
    xdel(&mut conn, &original).await;
    let (code, report) = verify(&sim.url(), &redis.url(), from, to).await;
    assert_eq!(code, 1);
    assert_eq!(figures(&report), one_problem(block, &[&uid], &[], &[&uid]));
    assert_eq!(report["missing"], 1);
    assert_eq!(report["unexpected"], 1);
}

fn no_problem() -> Value {
    json!({
        "missing": 0,
        "duplicated": 0,
        "unexpected": 0,
        "unverifiable_blocks": 0,
        "problems": [],
    })
}

async fn last_id(conn: &mut redis::aio::MultiplexedConnection) -> String {
    let last: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
        .arg(STREAM)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await
        .unwrap();
    last[0].0.clone()
}

/// The id of the one entry with exactly these fields.
async fn entry_id_with(
    conn: &mut redis::aio::MultiplexedConnection,
    uid: &str,
    fields: &[(String, String)],
) -> String {
    let matching: Vec<String> = read_stream(conn, STREAM)
        .await
        .into_iter()
        .filter(|(_, f)| f.as_slice() == fields)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(matching.len(), 1, "{uid}: {matching:?}");
    matching[0].clone()
}
