//! `tron-actors verify` (the binary) against a private redis-server and the simulated node: exact
//! after a clean run, and each kind of damage done to the stream by hand (XDEL, a doubled XADD,
//! an altered XADD) reported on exactly the block it was done to. A node with bad moments
//! (`{"Error"}` answers) is ridden out by retries, which the report counts; a node that never
//! answers makes its blocks unverifiable after a bounded number of attempts.
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    field_map, frozen_sim, frozen_sim_with_faults, read_stream, start_daemon, test_config,
    wait_done, TestRedis,
};
use serde_json::{json, Value};
use std::time::Duration;
use tron_sim::SimFaults;

const STREAM: &str = "{tron}:events";

/// Runs `verify --from --to --json`; returns the exit code and the report.
async fn verify(node_url: &str, redis_url: &str, from: u64, to: u64) -> (i32, Value) {
    verify_with(node_url, redis_url, from, to, &[]).await
}

/// [`verify`] with more arguments, and no client-side rate limit (the node under test has none).
async fn verify_with(
    node_url: &str,
    redis_url: &str,
    from: u64,
    to: u64,
    extra_args: &[&str],
) -> (i32, Value) {
    let output = verify_command(node_url, redis_url, from, to, extra_args)
        .arg("--json")
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

fn verify_command(
    node_url: &str,
    redis_url: &str,
    from: u64,
    to: u64,
    extra_args: &[&str],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tron-actors"));
    command
        .args(["verify", "--from", &from.to_string()])
        .args(["--to", &to.to_string()])
        .args(extra_args)
        .env("TRON_ACTORS_NODE__URL", node_url)
        .env("TRON_ACTORS_REDIS__URL", redis_url)
        .env("TRON_ACTORS_NODE__RATE_LIMIT_RPS", "0");
    command
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

/// A private Redis whose stream the daemon filled with every block of a frozen simulated node
/// of `history` blocks: the node, and the range `from..=to`.
async fn filled_stream(
    history: u64,
    txs_per_block: u32,
) -> (TestRedis, tron_sim::SimHandle, u64, u64) {
    let redis = TestRedis::start().await;
    let sim = frozen_sim(history, txs_per_block).await;
    let (from, to) = (sim.chain().params().start_block, sim.chain().head());
    let start = from.to_string();
    let config = test_config(&sim.url(), &redis.url(), &[("sync.start_block", &start)]);
    let daemon = start_daemon(&config).await;
    wait_done(&daemon.store, from, to, Duration::from_secs(120)).await;
    daemon.shutdown().await.unwrap();
    (redis, sim, from, to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_is_exact_after_a_run_and_names_each_deleted_doubled_or_altered_event() {
    let (redis, sim, from, to) = filled_stream(30, 5).await;

    let (code, report) = verify(&sim.url(), &redis.url(), from, to).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(figures(&report), no_problem());
    assert_eq!(report["blocks"], 30);
    let mut conn = redis.conn().await;
    let entries = read_stream(&mut conn, STREAM).await;
    let events: Vec<_> = entries
        .iter()
        .filter(|entry| !matches!(field_map(entry)["kind"].as_str(), "block" | "finalized"))
        .cloned()
        .collect();
    assert!(!events.is_empty());
    assert_eq!(report["expected_events"], events.len());
    assert_eq!(report["stream_events"], events.len());
    let entries = events;

    // The victim: an event entry in the middle of the range.
    let (id, fields) = entries[entries.len() / 2].clone();
    let victim = field_map(&(id.clone(), fields.clone()));
    let block: u64 = victim["block"].parse().unwrap();
    let uid = format!("{}_{}", victim["tx"], victim["i"]);

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
    // Its last field (an address, an amount, data) changed.
    let mut altered: Vec<(String, String)> = fields.clone();
    if let Some((_, value)) = altered.last_mut() {
        value.push('0');
    }
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

/// How many `{"Error"}` answers the simulated node gave.
fn node_errors(sim: &tron_sim::SimHandle) -> u64 {
    sim.fault_counts()
        .into_iter()
        .find(|(kind, _)| *kind == "node_error")
        .map(|(_, n)| n)
        .unwrap()
}

/// A twin of `frozen_sim(200, 2)` (the same chain) that answers 2% of requests with
/// `{"Error": ...}`, as a busy java-tron does. The faults are drawn per request in sequence
/// from the fault seed, so each fresh twin fails the same requests: with this seed the 24th,
/// 72nd, 99th, 145th, 164th and 180th, then none before the 460th. A verify pass over the 200
/// blocks takes 208 requests (8 ranges, 200 infos), so several blocks fail at the first attempt
/// (fewer only if an error lands on a range request, which the client then splits into one
/// request per block) and every retry succeeds.
async fn busy_twin() -> tron_sim::SimHandle {
    let faults = SimFaults {
        seed: 11,
        node_error_rate: 0.02,
        ..SimFaults::none()
    };
    frozen_sim_with_faults(200, 2, faults).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_rides_out_node_errors_and_says_how_many_retries_it_took() {
    // The stream is filled from a well-behaved node; verify then asks busy twins of it.
    let (redis, _sim, from, to) = filled_stream(200, 2).await;

    // One attempt per block, as verify used to do: the node's bad moments make blocks of an
    // exact range unverifiable.
    let busy = busy_twin().await;
    assert_eq!(busy.chain().head(), to);
    let no_retry = ["--attempts", "1"];
    let (code, report) = verify_with(&busy.url(), &redis.url(), from, to, &no_retry).await;
    assert_eq!(code, 1, "{report:#}");
    let unverifiable = report["unverifiable_blocks"].as_u64().unwrap();
    assert!(unverifiable >= 3, "{report:#}");
    assert!(unverifiable <= node_errors(&busy), "{report:#}");
    assert_eq!(
        (report["missing"].as_u64(), report["retries"].as_u64()),
        (Some(0), Some(0))
    );
    busy.shutdown().await.unwrap();

    // With retries (short pauses for the test): exact, and the report says what it took.
    let busy = busy_twin().await;
    let fast = ["--retry-backoff-ms", "10"];
    let (code, report) = verify_with(&busy.url(), &redis.url(), from, to, &fast).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(figures(&report), no_problem());
    assert_eq!(report["blocks"], 200);
    let retried_blocks = report["retried_blocks"].as_u64().unwrap();
    let retries = report["retries"].as_u64().unwrap();
    assert!(retried_blocks >= 3, "{report:#}");
    assert!(retries >= retried_blocks, "{report:#}");
    // Only blocks the node failed are asked again.
    assert!(retries <= node_errors(&busy), "{report:#}");
    busy.shutdown().await.unwrap();

    // The human summary says it too.
    let busy = busy_twin().await;
    let output = verify_command(&busy.url(), &redis.url(), from, to, &fast)
        .output()
        .await
        .unwrap();
    let summary = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{summary}");
    let first = summary.lines().next().unwrap();
    assert!(first.ends_with(": EXACT"), "{summary}");
    let retries = first
        .split_once("; node retries ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(retries.is_some_and(|n| n > 0), "{summary}");
    busy.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_the_node_never_gives_is_unverifiable_after_the_bounded_retries() {
    let redis = TestRedis::start().await;
    let sim = frozen_sim_with_faults(
        10,
        2,
        SimFaults {
            node_error_rate: 1.0,
            ..SimFaults::none()
        },
    )
    .await;
    let from = sim.chain().params().start_block;
    let to = from + 2;
    let args = ["--attempts", "3", "--retry-backoff-ms", "1"];
    let (code, report) = verify_with(&sim.url(), &redis.url(), from, to, &args).await;
    assert_eq!(code, 1, "{report:#}");
    let why = "node error: class org.tron.core.exception.StoreException : the node is busy, try later (after 3 attempts)";
    let problems: Vec<Value> = (from..=to)
        .map(|block| {
            json!({
                "block": block,
                "missing": [],
                "duplicated": [],
                "unexpected": [],
                "unverifiable": why,
            })
        })
        .collect();
    assert_eq!(
        figures(&report),
        json!({
            "missing": 0,
            "duplicated": 0,
            "unexpected": 0,
            "unverifiable_blocks": 3,
            "problems": problems,
        })
    );
    // Every block asked 3 times, no more: 2 retries each.
    assert_eq!(
        (
            report["retried_blocks"].as_u64(),
            report["retries"].as_u64()
        ),
        (Some(3), Some(6))
    );
    // Per attempt: one range request for the three blocks, then one request per block (the
    // client splits a failed range); an {"Error"} answer is not retried inside the client.
    assert_eq!(node_errors(&sim), 3 * (1 + 3));
    sim.shutdown().await.unwrap();
}
