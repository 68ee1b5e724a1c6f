//! `tron-actors tail` as a user runs it: the binary against a private redis-server filled by a
//! short daemon run on the simulated node. Every output is compared, line by line, with the
//! stream's entries (read with XRANGE) and with the node's own blocks.
#![allow(clippy::unwrap_used)]

mod common;

use common::cli::{command, output, text};
use common::{frozen_sim, read_stream, start_daemon, test_config, wait_done, Entry, TestRedis};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const USDT: &str = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";
const USDT_HEX: &str = "41a614f803b6fd780986a42c78ec9c7f77e6ded13c";

/// A Redis holding `blocks` committed blocks of a frozen simulated node (history 40, 20
/// transactions a block), the node, and the stream's entries.
struct Filled {
    redis: TestRedis,
    sim: tron_sim::SimHandle,
    from: u64,
    head: u64,
    entries: Vec<Entry>,
}

async fn filled(blocks: u64, extra: &[(&str, &str)]) -> Filled {
    let redis = TestRedis::start().await;
    let sim = frozen_sim(40, 20).await;
    let head = sim.chain().head();
    let from = head - (blocks - 1);
    let start = from.to_string();
    let mut overrides = vec![("sync.start_block", start.as_str())];
    overrides.extend_from_slice(extra);
    let config = test_config(&sim.url(), &redis.url(), &overrides);
    let daemon = start_daemon(&config).await;
    wait_done(&daemon.store, from, head, WAIT).await;
    daemon.shutdown().await.unwrap();
    let entries = read_stream(&mut redis.conn().await, "{tron}:events").await;
    Filled {
        redis,
        sim,
        from,
        head,
        entries,
    }
}

fn env(redis: &TestRedis) -> Vec<(&'static str, String)> {
    vec![("TRON_ACTORS_REDIS__URL", redis.url())]
}

/// Runs `tail` to its end; its exit code, stdout and stderr.
async fn tail(redis: &TestRedis, args: &[&str]) -> (Option<i32>, String, String) {
    let env = env(redis);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut all = vec!["tail"];
    all.extend_from_slice(args);
    let out = tokio::time::timeout(WAIT, output(&all, &env))
        .await
        .expect("tail did not end");
    let (stdout, stderr) = text(&out);
    (out.status.code(), stdout, stderr)
}

/// The output's JSON lines as maps (id and fields).
fn parsed(stdout: &str) -> Vec<BTreeMap<String, String>> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

/// An entry as `parsed` gives it.
fn as_map(entry: &Entry) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = entry.1.iter().cloned().collect();
    map.insert("id".into(), entry.0.clone());
    map
}

fn field<'a>(entry: &'a Entry, name: &str) -> &'a str {
    entry
        .1
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

fn expected(entries: &[Entry], keep: impl Fn(&Entry) -> bool) -> Vec<BTreeMap<String, String>> {
    entries.iter().filter(|e| keep(e)).map(as_map).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_print_exactly_the_matching_entries_in_stream_order() {
    let f = filled(10, &[]).await;
    // USDT transfers, the contract given in hex: exactly the node's USDT transfers.
    let want = expected(&f.entries, |e| {
        field(e, "kind") == "trc20" && field(e, "contract") == USDT
    });
    let from_node: usize = (f.from..=f.head)
        .map(|n| {
            let block = f.sim.chain().expected_block(n).unwrap();
            block
                .events
                .iter()
                .filter(|e| {
                    matches!(&e.body, actors::model::EventBody::Trc20Transfer { contract, .. } if contract == USDT)
                })
                .count()
        })
        .sum();
    assert!(from_node > 0, "the simulated blocks have USDT transfers");
    assert_eq!(want.len(), from_node);
    let count = want.len().to_string();
    let (code, stdout, stderr) = tail(
        &f.redis,
        &[
            "--from-id",
            "0",
            "--kind",
            "trc20",
            "--contract",
            USDT_HEX,
            "--count",
            &count,
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(parsed(&stdout), want);

    // An address matches either side; the kinds listed are the only ones shown.
    let address = field(
        f.entries
            .iter()
            .find(|e| field(e, "kind") == "trx")
            .unwrap(),
        "to",
    )
    .to_string();
    let want = expected(&f.entries, |e| {
        matches!(field(e, "kind"), "trx" | "trc20" | "block")
            && (field(e, "kind") == "block"
                || field(e, "from") == address
                || field(e, "to") == address)
    });
    let count = want.len().to_string();
    let (code, stdout, stderr) = tail(
        &f.redis,
        &[
            "--from-id",
            "0",
            "--kind",
            "trx,trc20",
            "--kind",
            "block",
            "--address",
            &address,
            "--count",
            &count,
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(parsed(&stdout), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_points_and_count_pick_the_exact_entries() {
    let f = filled(10, &[]).await;
    let all: Vec<BTreeMap<String, String>> = f.entries.iter().map(as_map).collect();

    // --from-id: that entry included, then --count of them.
    let k = all.len() / 2;
    let (code, stdout, stderr) =
        tail(&f.redis, &["--from-id", &f.entries[k].0, "--count", "7"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(parsed(&stdout), all[k..k + 7]);

    // --since: everything written within the hour, i.e. the whole stream.
    let count = all.len().to_string();
    let (code, stdout, stderr) = tail(&f.redis, &["--since", "1h", "--count", &count]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(parsed(&stdout), all);

    // --from-block: every entry of the blocks from N on, nothing of the blocks below.
    let n = f.from + 6;
    let want = expected(&f.entries, |e| {
        field(e, "block").parse::<u64>().unwrap() >= n
    });
    let count = want.len().to_string();
    let (code, stdout, stderr) = tail(
        &f.redis,
        &["--from-block", &n.to_string(), "--count", &count],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(parsed(&stdout), want);

    // On a terminal (--format text): one aligned line per entry, block number first.
    let block_entries: Vec<&Entry> = f
        .entries
        .iter()
        .filter(|e| field(e, "kind") == "block")
        .collect();
    let (code, stdout, stderr) = tail(
        &f.redis,
        &[
            "--from-id",
            "0",
            "--kind",
            "block",
            "--format",
            "text",
            "--count",
            "3",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3);
    for (line, entry) in lines.iter().zip(&block_entries) {
        assert_eq!(
            *line,
            format!(
                "{:>10}  block      {}…  {} events, time {}",
                field(entry, "block"),
                &field(entry, "block_hash")[..12],
                field(entry, "events"),
                field(entry, "block_time")
            )
        );
    }
    let blocks: Vec<u64> = want
        .iter()
        .filter(|e| e["kind"] == "block")
        .map(|e| e["block"].parse().unwrap())
        .collect();
    assert_eq!(blocks.len() as u64, f.head - n + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_prints_only_what_is_written_after_it_started() {
    let redis = TestRedis::start().await;
    let sim = frozen_sim(40, 20).await;
    let head = sim.chain().head();
    let config = test_config(&sim.url(), &redis.url(), &[]);
    let daemon = start_daemon(&config).await;
    wait_done(&daemon.store, head, head, WAIT).await;
    let env = env(&redis);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let child = command(&["tail", "--kind", "block", "--count", "1"], &env)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it is blocked in its XREAD at the end of the stream.
    wait_blocked_in_xread(&redis).await;
    sim.chain().advance(1);
    wait_done(&daemon.store, head + 1, head + 1, WAIT).await;
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    daemon.shutdown().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let lines = parsed(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["kind"], "block");
    assert_eq!(lines[0]["block"], (head + 1).to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_resumes_where_it_stopped_and_acknowledges_what_it_printed() {
    let f = filled(5, &[]).await;
    let all: Vec<BTreeMap<String, String>> = f.entries.iter().map(as_map).collect();
    let group = ["--group", "g", "--consumer", "c1", "--from-id", "0"];
    let mut printed = Vec::new();
    for _ in 0..3 {
        let mut args = group.to_vec();
        args.extend(["--count", "4"]);
        let (code, stdout, stderr) = tail(&f.redis, &args).await;
        assert_eq!(code, Some(0), "{stderr}");
        printed.extend(parsed(&stdout));
    }
    assert_eq!(printed, all[..12]);
    let mut conn = f.redis.conn().await;
    // Acknowledged: exactly the 12 printed; the rest of the batch is pending for c1.
    let pending: (u64, Option<String>, Option<String>, redis::Value) = redis::cmd("XPENDING")
        .arg("{tron}:events")
        .arg("g")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending.0 as usize, all.len() - 12);
    assert_eq!(pending.1.as_deref(), Some(all[12]["id"].as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalized_only_prints_a_block_once_a_finalized_entry_covers_it() {
    // 30 blocks up to the head: the solidified block is the head - 19.
    let f = filled(30, &[]).await;
    let finalized: Vec<u64> = f
        .entries
        .iter()
        .filter(|e| field(e, "kind") == "finalized")
        .map(|e| field(e, "block").parse().unwrap())
        .collect();
    let Some(&last) = finalized.last() else {
        panic!("no finalized entry in the stream");
    };
    assert_eq!(last, f.head - 19);
    // Expected: for each finalized entry in stream order, the trc20 events of the blocks it
    // newly covers (lowest block first, stream order within), then the entry itself; a trc20
    // event of a block already covered (the catch-up commits below the finality) at once.
    let mut want = Vec::new();
    let mut waiting: BTreeMap<u64, Vec<&Entry>> = BTreeMap::new();
    let mut final_so_far = None;
    for entry in &f.entries {
        let block: u64 = field(entry, "block").parse().unwrap();
        match field(entry, "kind") {
            "trc20" if final_so_far.is_some_and(|f| block <= f) => want.push(as_map(entry)),
            "finalized" => {
                final_so_far = Some(block);
                let above = waiting.split_off(&(block + 1));
                for (_, held) in std::mem::replace(&mut waiting, above) {
                    want.extend(held.into_iter().map(as_map));
                }
                want.push(as_map(entry));
            }
            "trc20" => waiting.entry(block).or_default().push(entry),
            _ => {}
        }
    }
    assert!(want.iter().any(|e| e["kind"] == "trc20"));
    let count = want.len().to_string();
    let (code, stdout, stderr) = tail(
        &f.redis,
        &[
            "--from-id",
            "0",
            "--kind",
            "trc20",
            "--finalized-only",
            "--count",
            &count,
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let got = parsed(&stdout);
    assert_eq!(got, want);
    assert!(got
        .iter()
        .all(|e| e["block"].parse::<u64>().unwrap() <= last));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_it_with_exit_0() {
    let f = filled(5, &[]).await;
    let env = env(&f.redis);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut child = command(&["tail", "--from-id", "0"], &env)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap().into_owned_fd().unwrap();
    let mut reader = BufReader::new(std::fs::File::from(stdout));
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(parsed(&line), [as_map(&f.entries[0])]);
    // `| head -1`: the reader goes away.
    drop(reader);
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("tail did not end on a closed pipe")
        .unwrap();
    assert_eq!(status.code(), Some(0));

    // On a quiet stream there is nothing to write: it notices the reader gone while it waits.
    let mut child = command(&["tail", "--new"], &env)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_blocked_in_xread(&f.redis).await;
    drop(child.stdout.take());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("tail did not notice its reader gone")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Waits until a client (the tail under test) is blocked in XREAD.
async fn wait_blocked_in_xread(redis: &TestRedis) {
    let conn = redis.conn().await;
    common::wait_until(WAIT, "tail waiting in XREAD", || {
        let mut conn = conn.clone();
        async move {
            let clients: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut conn)
                .await
                .unwrap();
            clients
                .lines()
                .any(|l| l.contains("cmd=xread") && l.contains("flags=b"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_exit_2_and_a_missing_stream_is_named() {
    let redis = TestRedis::start().await;
    for (args, says) in [
        (
            vec!["--kind", "usdt"],
            "--kind: \"usdt\" is not an event kind",
        ),
        (vec!["--contract", "Tnope"], "--contract: address \"Tnope\""),
        (vec!["--since", "10x"], "give a duration like"),
        (vec!["--from-id", "abc"], "give a stream id like"),
        (vec!["--new", "--from-block", "5"], "cannot be used with"),
        (vec!["--consumer", "c"], "--group"),
        (vec!["--count", "0"], "--count"),
    ] {
        let mut all = vec![];
        all.extend(args.iter().copied());
        let (code, _, stderr) = tail(&redis, &all).await;
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let (code, _, stderr) = tail(&redis, &["--from-id", "0"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("the stream {tron}:events does not exist yet"),
        "{stderr}"
    );
}
