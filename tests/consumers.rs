//! The consumer's side (docs/CONSUMERS.md): the examples in `examples/` (Python and Rust) read a
//! stream a daemon filled from a forking simulated node, through a crash of one consumer, and
//! credit exactly the node's canonical transfers; a group started at a block credits exactly
//! those from that block on; the consumer group metrics and the WARN near the retention cut; every
//! query of the Grafana dashboard names a metric a running daemon exports.
#![allow(clippy::unwrap_used)]

mod common;

use common::cli::{http_get, repo};
use common::forking::{fast_polls, forking_node, run_daemon_through};
use common::{assert_exactly_once, consumer_view, TestRedis};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tron_sim::{SimChain, SimHandle};

const STREAM: &str = "{tron}:events";
const TRANSFERS: [&str; 5] = ["trc20", "trc721", "trx", "trc10", "internal"];
const FIELDS: [&str; 9] = [
    "block", "tx", "i", "kind", "contract", "from", "to", "value", "token",
];

/// A credited transfer as the examples print it: its fields, and whether it is final.
type Credit = (BTreeMap<String, String>, bool);

/// The node's canonical transfers of blocks `from..=to`, final at or below `finalized`.
fn canonical_transfers(sim: &SimHandle, from: u64, to: u64, finalized: u64) -> BTreeSet<Credit> {
    let mut out = BTreeSet::new();
    for number in from..=to {
        let block = sim.chain().expected_block(number).unwrap();
        for event in &block.events {
            let fields: HashMap<&str, String> = event.stream_fields(number).into_iter().collect();
            if !TRANSFERS.contains(&fields["kind"].as_str()) {
                continue;
            }
            let credit = FIELDS
                .iter()
                .map(|k| (k.to_string(), fields.get(k).cloned().unwrap_or_default()))
                .collect();
            out.insert((credit, number <= finalized));
        }
    }
    out
}

/// The credits an example printed (one JSON object a line).
fn printed_credits(output: &Output) -> BTreeSet<Credit> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut out = BTreeSet::new();
    for line in stdout.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let object = value.as_object().unwrap();
        let fields = FIELDS
            .iter()
            .map(|k| (k.to_string(), object[*k].as_str().unwrap().to_string()))
            .collect();
        let credit = (fields, object["final"].as_bool().unwrap());
        assert!(out.insert(credit), "printed twice: {line}");
    }
    out
}

#[derive(Clone, Copy, Debug)]
enum Example {
    Python,
    Rust,
}

impl Example {
    async fn run(self, redis: &TestRedis, args: &[&str]) -> Output {
        let mut command = match self {
            Example::Python => {
                let mut c = tokio::process::Command::new("python3");
                c.arg(repo("examples/consumer.py"));
                c
            }
            Example::Rust => {
                // The example is built by `cargo test` with everything else; `cargo run` builds
                // it when this test runs alone.
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                let mut c = tokio::process::Command::new(cargo);
                c.current_dir(repo(".")).args([
                    "run",
                    "--quiet",
                    "--locked",
                    "--example",
                    "consumer",
                    "--",
                ]);
                c
            }
        };
        let output = command
            .args(["--redis", &redis.url()])
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        if !output.stderr.is_empty() {
            eprintln!(
                "{self:?} {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        output
    }

    fn name(self) -> &'static str {
        match self {
            Example::Python => "py",
            Example::Rust => "rs",
        }
    }
}

/// (pending, lag) of a group, as XINFO GROUPS says.
async fn group_state(redis: &TestRedis, group: &str) -> (u64, Option<u64>) {
    let mut conn = redis.conn().await;
    let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(STREAM)
        .query_async(&mut conn)
        .await
        .unwrap();
    let g = groups
        .iter()
        .find(|g| redis::from_redis_value_ref::<String>(&g["name"]).unwrap() == group)
        .unwrap_or_else(|| panic!("no group {group}"));
    (
        redis::from_redis_value_ref(&g["pending"]).unwrap(),
        redis::from_redis_value_ref(&g["lag"]).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_credit_exactly_the_canonical_transfers_through_a_crash_and_from_a_block() {
    let redis = TestRedis::start().await;
    let sim = forking_node().await;
    let (first, last) = run_daemon_through(&redis, &sim, &fast_polls(), 60, SimChain::head).await;
    let entries = assert_exactly_once(&redis, &sim, first, last).await;
    let view = consumer_view(&entries);
    assert!(
        view.reverted.len() >= 5,
        "few retractions: {:?}",
        view.reverted
    );
    let finalized = view.finalized.unwrap();
    let everything = canonical_transfers(&sim, first, last, finalized);
    let middle = first + (last - first) / 2;
    let from_middle = canonical_transfers(&sim, middle, last, finalized);
    assert!(everything.len() > from_middle.len() && !from_middle.is_empty());
    assert!(everything.iter().any(|(_, is_final)| *is_final));
    assert!(everything.iter().any(|(_, is_final)| !*is_final));

    for example in [Example::Python, Example::Rust] {
        let name = example.name();
        let ledger = format!("{{tron}}:{name}-ledger");
        // A consumer that dies after 37 entries of its first page of 100: 63 stay pending.
        let crashed = example
            .run(
                &redis,
                &["--group", name, "--consumer", "c1", "--ledger", &ledger]
                    .into_iter()
                    .chain(["--crash-after", "37"])
                    .collect::<Vec<_>>(),
            )
            .await;
        assert_eq!(crashed.status.code(), Some(3), "{name}: {crashed:?}");
        assert_eq!(group_state(&redis, name).await.0, 63, "{name}: pending");

        // Another consumer of the group takes them over (XAUTOCLAIM) and reads on.
        let output = example
            .run(
                &redis,
                &[
                    "--group",
                    name,
                    "--consumer",
                    "c2",
                    "--ledger",
                    &ledger,
                    "--claim-idle-ms",
                    "0",
                    "--idle-exit-ms",
                    "500",
                ],
            )
            .await;
        assert!(output.status.success(), "{name}: {output:?}");
        assert_eq!(printed_credits(&output), everything, "{name}: credits");
        assert_eq!(group_state(&redis, name).await, (0, Some(0)), "{name}");

        // A new group placed at a block in the middle of the stream.
        let group = format!("{name}-from");
        let ledger = format!("{{tron}}:{name}-from-ledger");
        let output = example
            .run(
                &redis,
                &[
                    "--group",
                    &group,
                    "--ledger",
                    &ledger,
                    "--from-block",
                    &middle.to_string(),
                    "--idle-exit-ms",
                    "500",
                ],
            )
            .await;
        assert!(output.status.success(), "{name}: {output:?}");
        assert_eq!(
            printed_credits(&output),
            from_middle,
            "{name}: from {middle}"
        );
    }
}

/// `name -> value` of every sample of a scrape, labels included in the name.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Every `tron_actors_*` name in `text`.
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("tron_actors_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// Every `expr` of the dashboard's panels.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(repo("deploy/grafana/dashboards/tron-actors.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    out
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_lag_and_pending_are_exported_a_group_near_the_cut_is_warned_and_the_dashboard_queries_exist(
) {
    let redis = TestRedis::start().await;
    let sim = common::frozen_sim(30, 4).await;
    let head = common::frozen_sim_head(30);
    let start = tron_sim::SimParams::default().start_block;
    let mut conn = redis.conn().await;
    // An entry 57 minutes old (a stream of one hour's retention keeps it 3 more minutes), the
    // group `behind` before it, `gone` at a place the stream no longer holds, `live` past it
    // (and it reads on).
    let old_id = format!("{}-0", now_ms() - 57 * 60_000);
    let gone_id = format!("{}-0", now_ms() - 120 * 60_000);
    let _: String = redis::cmd("XADD")
        .arg(STREAM)
        .arg(&old_id)
        .arg(&[
            "v",
            "2",
            "kind",
            "finalized",
            "block",
            "1",
            "block_hash",
            "00",
        ])
        .query_async(&mut conn)
        .await
        .unwrap();
    for (group, at, read) in [
        ("behind", "0", 0),
        ("live", &old_id, 1),
        ("gone", &gone_id, 0),
    ] {
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(STREAM)
            .arg(group)
            .arg(at)
            .arg("ENTRIESREAD")
            .arg(read)
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    let log = redis.dir.path().join("daemon.log");
    let port = tron_actors::tools::local_redis::free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let start_block = start.to_string();
    let mut daemon = common::DaemonProcess::spawn_to(
        &sim.url(),
        &redis.url(),
        &[
            ("TRON_ACTORS_STREAM__RETENTION_HOURS", "1"),
            ("TRON_ACTORS_SYNC__START_BLOCK", &start_block),
            ("TRON_ACTORS_METRICS__LISTEN", &listen),
        ],
        Some(&log),
    );
    common::wait_done(&redis.store(), start, head, Duration::from_secs(120)).await;
    let read: redis::Value = redis::cmd("XREADGROUP")
        .arg(&["GROUP", "live", "c1", "COUNT", "10", "STREAMS", STREAM, ">"])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(matches!(read, redis::Value::Array(_)));

    // The metrics agree with the stream: `live` was handed 10 entries after the old one,
    // `behind` none.
    let url = format!("http://127.0.0.1:{port}/metrics");
    let started = tokio::time::Instant::now();
    let text = loop {
        let len: u64 = redis::cmd("XLEN")
            .arg(STREAM)
            .query_async(&mut conn)
            .await
            .unwrap();
        let body = http_get(&url)
            .await
            .map(|(_, body)| body)
            .unwrap_or_default();
        let m = samples(&body);
        let get = |name: &str| m.get(name).copied();
        if get("tron_actors_consumer_group_lag{group=\"live\"}") == Some((len - 11) as f64)
            && get("tron_actors_consumer_group_lag{group=\"behind\"}") == Some(len as f64)
            && get("tron_actors_consumer_group_pending{group=\"live\"}") == Some(10.0)
            && get("tron_actors_consumer_group_pending{group=\"behind\"}") == Some(0.0)
            && get("tron_actors_consumer_group_pending{group=\"gone\"}") == Some(0.0)
        {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the group metrics never matched XLEN {len}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let m = samples(&text);
    let old_seconds =
        m["tron_actors_consumer_group_last_delivered_timestamp_seconds{group=\"live\"}"];
    assert!(
        old_seconds * 1000.0 >= (now_ms() - 60_000) as f64,
        "{old_seconds}"
    );

    // Every query of the dashboard names metrics this daemon exports.
    let exported: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let queries = dashboard_queries();
    assert!(queries.len() >= 15, "{} queries", queries.len());
    for query in &queries {
        let names = metric_names(query);
        assert!(
            !names.is_empty(),
            "a query without a tron_actors metric: {query}"
        );
        for name in names {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| exported.contains(*base))
                .unwrap_or(&name);
            assert!(
                exported.contains(base),
                "{name} (in {query}) is not exported"
            );
        }
    }

    // One WARN for each group at risk, none for `live`; at most one per group while it lasts.
    let warnings = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in text.lines() {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            // JSON lines with the event's fields flattened (telemetry.rs).
            if value["level"] == "WARN" && value["group"].is_string() {
                by_group
                    .entry(value["group"].as_str().unwrap().to_string())
                    .or_default()
                    .push(value["message"].as_str().unwrap_or("").to_string());
            }
        }
        by_group
    };
    let started = tokio::time::Instant::now();
    while warnings().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no WARN for both groups: {:?}\n{}",
            warnings(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(tron_actors::consumer_groups::CHECK_EVERY * 2).await;
    let by_group = warnings();
    assert_eq!(by_group.keys().collect::<Vec<_>>(), ["behind", "gone"]);
    assert_eq!(by_group["behind"].len(), 1, "{by_group:?}");
    assert!(by_group["behind"][0].contains("is near the retention cut"));
    assert_eq!(by_group["gone"].len(), 1, "{by_group:?}");
    assert!(by_group["gone"][0].contains("is past the retention cut"));
    assert!(daemon.terminate(Duration::from_secs(30)).await.success());
}
