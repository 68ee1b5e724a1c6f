//! Operations: the container's command line as a plain process, `run --dry-run`, `status`,
//! `health`, progress lines, the API key (sent on every request, never shown), and static checks
//! of the Dockerfile and the compose files (no Docker engine needed).
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_exactly_once, frozen_sim, start_daemon, test_config, wait_done, TestRedis};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::process::Command;
use tron_actors::tools::local_redis::free_port;

const WAIT: Duration = Duration::from_secs(120);
const BIN: &str = env!("CARGO_BIN_EXE_tron-actors");
const API_KEY: &str = "sk-test-SECRET-5f3a9c1e7d";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The binary with nothing from this process's environment but PATH, as a container or a
/// systemd unit starts it.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn output(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(args, env).output().await.unwrap()
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A running process whose stdout and stderr go to files, read after it exits (or at any time).
struct Process {
    child: tokio::process::Child,
    dir: tempfile::TempDir,
}

impl Process {
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Process {
        let dir = tempfile::tempdir().unwrap();
        let out = std::fs::File::create(dir.path().join("stdout")).unwrap();
        let err = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let child = command(args, env)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap();
        Process { child, dir }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap()
    }

    async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("no exit within 60 s of SIGTERM")
            .unwrap()
    }
}

async fn http_get(url: &str) -> Option<(u16, String)> {
    tron_actors::tls::install_crypto_provider();
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

async fn wait_ready(port: u16) {
    let url = format!("http://127.0.0.1:{port}/readyz");
    common::wait_until(WAIT, "/readyz answers 200", || async {
        matches!(http_get(&url).await, Some((200, _)))
    })
    .await;
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped, per stage.
fn dockerfile_stages() -> Vec<Vec<(String, String)>> {
    let text = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for instruction in joined {
        let (keyword, rest) = instruction.split_once(' ').unwrap();
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("an instruction before FROM")
            .push((keyword, rest.trim().to_string()));
    }
    stages
}

fn instruction<'a>(stage: &'a [(String, String)], keyword: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|(k, _)| k == keyword)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// An exec-form argument list: `["a", "b"]`.
fn exec_form(value: &str) -> Vec<String> {
    serde_json::from_str(value).unwrap_or_else(|_| panic!("not an exec-form list: {value}"))
}

/// The final stage's ENV, as `KEY=value` pairs.
fn image_env(stage: &[(String, String)]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for value in instruction(stage, "ENV") {
        for pair in value.split_whitespace() {
            let (key, value) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("ENV without key=value: {pair}"));
            env.insert(key.to_string(), value.to_string());
        }
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_command_starts_on_environment_alone_publishes_and_stops_on_sigterm() {
    let stages = dockerfile_stages();
    let image = stages.last().unwrap();
    let entrypoint = exec_form(instruction(image, "ENTRYPOINT")[0]);
    let cmd = exec_form(instruction(image, "CMD")[0]);
    assert_eq!(entrypoint, ["tron-actors"]);
    assert_eq!(cmd, ["run"]);
    let healthcheck = instruction(image, "HEALTHCHECK")[0];
    let health_cmd = exec_form(&healthcheck[healthcheck.find("CMD ").unwrap() + 4..]);
    assert_eq!(health_cmd[0], "tron-actors");

    let redis = TestRedis::start().await;
    let sim = frozen_sim(40, 10).await;
    let head = sim.chain().head();
    let from = head - 9;
    // The image's environment, then what `docker run -e` adds: the node, Redis, a first block,
    // and a free port instead of 9464 on this shared host (the address stays 0.0.0.0, as in the
    // image, so the health check's 0.0.0.0 -> 127.0.0.1 rule is exercised).
    let port = free_port().unwrap();
    let mut env = image_env(image);
    assert_eq!(
        env.get("TRON_ACTORS_METRICS__LISTEN").map(String::as_str),
        Some("0.0.0.0:9464")
    );
    env.insert(
        "TRON_ACTORS_METRICS__LISTEN".into(),
        format!("0.0.0.0:{port}"),
    );
    env.insert("TRON_ACTORS_NODE__URL".into(), sim.url());
    env.insert("TRON_ACTORS_REDIS__URL".into(), redis.url());
    env.insert("TRON_ACTORS_SYNC__START_BLOCK".into(), from.to_string());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();

    let mut daemon = Process::spawn(&args, &env);
    wait_ready(port).await;
    wait_done(&redis.store(), from, head, WAIT).await;

    // The HEALTHCHECK as Docker runs it: the same environment, its own arguments only.
    let health_args: Vec<&str> = health_cmd[1..].iter().map(String::as_str).collect();
    let health = output(&health_args, &env).await;
    assert_eq!(health.status.code(), Some(0), "{:?}", text(&health));
    assert_eq!(text(&health).0, "ok\n");

    let status = daemon.terminate().await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", daemon.stderr());
    assert!(daemon.stderr().contains("Stopped cleanly"));
    assert_exactly_once(&redis, &sim, from, head).await;

    // Once the daemon is gone the health check fails.
    let health = output(&health_args, &env).await;
    assert_eq!(health.status.code(), Some(1), "{:?}", text(&health));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_refuses_a_bad_config_naming_the_key_and_an_unreachable_redis_with_the_reason() {
    let sim = frozen_sim(10, 1).await;
    let url = sim.url();

    let bad = output(
        &["run", "--dry-run"],
        &[
            ("TRON_ACTORS_NODE__URL", "localhost:8090"),
            ("TRON_ACTORS_SYNC__BACKLOG_WORKERS", "0"),
        ],
    )
    .await;
    let (stdout, stderr) = text(&bad);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("node.url"), "{stderr}");
    assert!(stderr.contains("sync.backlog_workers"), "{stderr}");
    assert!(!stdout.contains("plan:"), "{stdout}");

    let typo = output(
        &["run", "--dry-run"],
        &[("TRON_ACTORS_SYNC__START_BLOK", "5")],
    )
    .await;
    let (_, stderr) = text(&typo);
    assert_eq!(typo.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("sync.start_blok"), "{stderr}");
    assert!(stderr.contains("start_block"), "{stderr}");

    let closed = format!("redis://127.0.0.1:{}", free_port().unwrap());
    let no_redis = output(
        &["run", "--dry-run"],
        &[
            ("TRON_ACTORS_NODE__URL", url.as_str()),
            ("TRON_ACTORS_REDIS__URL", closed.as_str()),
        ],
    )
    .await;
    let (stdout, stderr) = text(&no_redis);
    assert_eq!(no_redis.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("configuration: valid"), "{stdout}");
    assert!(
        stderr.contains(&format!("error: redis at {closed}")),
        "{stderr}"
    );
    assert!(!stdout.contains("ready:"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_with_a_good_config_prints_the_plan_from_the_state_in_redis() {
    let redis = TestRedis::start().await;
    let sim = frozen_sim(10, 1).await;
    let head = sim.chain().head();
    let url = sim.url();
    let redis_url = redis.url();
    let env = [
        ("TRON_ACTORS_NODE__URL", url.as_str()),
        ("TRON_ACTORS_REDIS__URL", redis_url.as_str()),
    ];

    // Nothing in Redis yet: a first run starts at the head.
    let first = output(&["run", "--dry-run"], &env).await;
    let (stdout, stderr) = text(&first);
    assert_eq!(first.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "  first run (no last synced block), node head {head}\n  first: start at the head: publish block {head}, then follow\n"
        )),
        "{stdout}"
    );

    // A known state: 100 blocks behind, with work queued, retrying, dead and leased.
    let last = head - 100;
    let mut conn = redis.conn().await;
    redis::pipe()
        .set("{tron}:last_synced", last)
        .zadd_multiple("{tron}:queue:priority", &[(7u64, 7u64), (9, 9)])
        .zadd_multiple(
            "{tron}:queue:backlog",
            &(500u64..510).map(|b| (b, b)).collect::<Vec<_>>(),
        )
        .zadd("{tron}:retry", 42u64, 1u64)
        .hset("{tron}:dead", 41u64, "{}")
        .hset("{tron}:lease", 40u64, "backlog-3|backlog")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let planned = output(&["run", "--dry-run"], &env).await;
    let (stdout, stderr) = text(&planned);
    assert_eq!(planned.status.code(), Some(0), "{stdout}\n{stderr}");
    let expected = format!(
        "plan:
  last synced block {last}, node head {head}
  first: put blocks {}..={} (99 blocks) on the backlog, worked highest first by 13 workers, publish block {head}, then follow
  priority queue: 2 blocks (7..=9)
  backlog queue: 10 blocks (500..=509)
  retrying: 1 block
  dead letters: 1 block (see `tron-actors dlq list`)
  leases: 1 block resumed by their slots at start (backlog-3 1)
  stream: 0 entries
ready: `run` would start as above
",
        last + 1,
        head - 1
    );
    assert!(stdout.ends_with(&expected), "{stdout}");
    assert!(stdout.contains(&format!("  redis     {redis_url} (prefix {{tron}}")));
    assert!(stdout.contains("(api key: not set,"), "{stdout}");
    // The dry run wrote nothing.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 6, "{keys:?}");
}

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
    assert_eq!(stream_len, backlog_events + tip_events);

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
            "lag_blocks": 0,
            "lag_seconds": 0.0,
            "queues": {"priority": 0, "backlog": 0, "retry": 0, "dead": 1},
            "leases_by_slot": {},
            "published": {
                "blocks": {"backlog": 28, "tip": 1},
                "events": {"backlog": backlog_events, "tip": tip_events},
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
async fn the_api_key_is_sent_on_every_node_request_and_never_shown() {
    let redis = TestRedis::start().await;
    let sim = tron_sim::spawn(
        tron_sim::SimParams {
            seed: 7,
            history: 30,
            txs_per_block: 5,
            frozen: true,
            genesis_ms: Some(1_700_000_000_000),
            api_key: Some(API_KEY.to_string()),
            ..Default::default()
        },
        tron_sim::SimFaults::none(),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let head = sim.chain().head();
    let from = (head - 4).to_string();
    let url = sim.url();
    let redis_url = redis.url();
    let port = free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let base = [
        ("TRON_ACTORS_NODE__URL", url.as_str()),
        ("TRON_ACTORS_REDIS__URL", redis_url.as_str()),
    ];
    let with_key = |more: &[(&'static str, &'static str)]| {
        let mut env: Vec<(&str, &str)> = base.to_vec();
        env.push(("TRON_ACTORS_NODE__API_KEY", API_KEY));
        env.extend_from_slice(more);
        env
    };
    let mut shown: Vec<(String, String)> = Vec::new();
    fn keep(shown: &mut Vec<(String, String)>, what: &str, out: &Output) {
        let (stdout, stderr) = text(out);
        shown.push((format!("{what} (stdout)"), stdout));
        shown.push((format!("{what} (stderr)"), stderr));
    }

    // The daemon, as chatty as it gets.
    let mut env = with_key(&[
        ("TRON_ACTORS_LOG__PROGRESS_MS", "100"),
        ("RUST_LOG", "debug"),
    ]);
    env.push(("TRON_ACTORS_SYNC__START_BLOCK", from.as_str()));
    env.push(("TRON_ACTORS_METRICS__LISTEN", listen.as_str()));
    let mut daemon = Process::spawn(&["run"], &env);
    wait_ready(port).await;
    wait_done(&redis.store(), head - 4, head, WAIT).await;
    for path in ["/metrics", "/readyz", "/healthz"] {
        let (code, body) = http_get(&format!("http://{listen}{path}")).await.unwrap();
        assert_eq!(code, 200, "{path}: {body}");
        shown.push((path.to_string(), body));
    }
    let status = output(&["status"], &with_key(&[])).await;
    assert_eq!(status.status.code(), Some(0));
    assert!(text(&status).0.contains("(api key: <redacted>)"));
    keep(&mut shown, "status", &status);
    let status = output(&["status", "--json"], &with_key(&[])).await;
    assert_eq!(status.status.code(), Some(0));
    keep(&mut shown, "status --json", &status);
    let dry = output(&["run", "--dry-run"], &with_key(&[])).await;
    assert_eq!(dry.status.code(), Some(0), "{:?}", text(&dry));
    assert!(text(&dry).0.contains("(api key: <redacted>,"));
    keep(&mut shown, "run --dry-run", &dry);
    assert_eq!(daemon.terminate().await.code(), Some(0));
    shown.push(("run (stdout)".into(), daemon.stdout()));
    shown.push(("run (stderr)".into(), daemon.stderr()));
    assert!(daemon.stderr().lines().count() > 20, "{}", daemon.stderr());

    // Every request the node saw carried the key.
    let seen = sim.status();
    let requests: u64 = sim.request_counts().iter().map(|(_, n)| n).sum();
    assert!(requests > 0);
    assert_eq!(seen["api_key"]["accepted"], requests, "{seen}");
    assert_eq!(seen["api_key"]["refused"], 0, "{seen}");

    // From a file, as a Docker or systemd secret.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("trongrid-api-key");
    std::fs::write(&key_file, format!("{API_KEY}\n")).unwrap();
    let key_path = key_file.to_string_lossy().into_owned();
    let mut env = base.to_vec();
    env.push(("TRON_ACTORS_NODE__API_KEY_FILE", key_path.as_str()));
    let from_file = output(&["run", "--dry-run"], &env).await;
    assert_eq!(from_file.status.code(), Some(0), "{:?}", text(&from_file));
    keep(&mut shown, "dry run, key from a file", &from_file);
    assert_eq!(sim.status()["api_key"]["refused"], 0);

    // Failures: a bad config next to the key, a key that is no header value, a wrong key.
    let bad_config = output(
        &["run"],
        &with_key(&[("TRON_ACTORS_SYNC__BACKLOG_WORKERS", "0")]),
    )
    .await;
    assert_eq!(bad_config.status.code(), Some(2));
    keep(&mut shown, "bad config", &bad_config);
    let not_a_header = format!("{API_KEY}\n");
    let mut env = base.to_vec();
    env.push(("TRON_ACTORS_NODE__API_KEY", not_a_header.as_str()));
    let bad_key = output(&["run"], &env).await;
    assert_eq!(bad_key.status.code(), Some(2), "{:?}", text(&bad_key));
    assert!(text(&bad_key).1.contains("not a valid HTTP header value"));
    keep(&mut shown, "key that is no header value", &bad_key);
    let wrong_key = format!("{API_KEY}-but-wrong");
    let mut env = base.to_vec();
    env.push(("TRON_ACTORS_NODE__API_KEY", wrong_key.as_str()));
    let refused = output(&["run", "--dry-run"], &env).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused)
            .1
            .contains("HTTP 401 (the node refused the API key: check node.api_key)"),
        "{:?}",
        text(&refused)
    );
    keep(&mut shown, "wrong key", &refused);

    for (what, output) in &shown {
        assert!(
            !output.contains("SECRET"),
            "the API key shows in {what}:\n{output}"
        );
    }
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

#[tokio::test]
async fn help_lists_every_command_and_version_prints_the_version() {
    let help = output(&["--help"], &[]).await;
    assert_eq!(help.status.code(), Some(0));
    let (stdout, _) = text(&help);
    for command in ["run", "sim", "demo", "status", "dlq", "verify", "health"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "{command} missing from:\n{stdout}"
        );
    }
    assert!(stdout.contains("--config <FILE>"));
    assert!(stdout.contains("Exit codes: 0"));
    let run_help = text(&output(&["run", "--help"], &[]).await).0;
    assert!(run_help.contains("--dry-run"), "{run_help}");
    let status_help = text(&output(&["status", "--help"], &[]).await).0;
    assert!(status_help.contains("--json"), "{status_help}");
    let version = output(&["--version"], &[]).await;
    assert_eq!(
        text(&version).0,
        format!("tron-actors {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// Asserts `args` followed by `--help` is accepted: the subcommand and every flag exist.
async fn assert_real_command(args: &[String], context: &str) {
    let mut with_help: Vec<&str> = args.iter().map(String::as_str).collect();
    with_help.push("--help");
    let out = output(&with_help, &[]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{context}: `tron-actors {}` is not a real command: {:?}",
        args.join(" "),
        text(&out)
    );
}

#[tokio::test]
async fn the_dockerfile_builds_the_binary_runs_it_unprivileged_and_checks_health_without_curl() {
    let stages = dockerfile_stages();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (build, image) = (&stages[0], &stages[1]);
    assert!(instruction(build, "FROM")[0].starts_with("rust:"));
    assert!(instruction(image, "FROM")[0].starts_with("debian:"));
    // Dependencies are built before the sources are copied (the cached layer).
    let steps: Vec<&str> = build
        .iter()
        .filter_map(|(k, v)| match k.as_str() {
            "COPY" if v.starts_with("src ") => Some("copy sources"),
            "RUN" if v.contains("cargo build") => Some("build"),
            _ => None,
        })
        .collect();
    assert_eq!(steps, ["build", "copy sources", "build"]);
    // Everything the build copies exists and is not excluded by .dockerignore.
    let ignored: Vec<String> = std::fs::read_to_string(repo(".dockerignore"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_string())
        .collect();
    for copy in instruction(build, "COPY") {
        let parts: Vec<&str> = copy.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(
                repo(source).exists(),
                "COPY {source}: not in the repository"
            );
            let top = source.split('/').next().unwrap();
            assert!(
                !ignored.iter().any(|i| i == top || i == *source),
                "COPY {source}: excluded by .dockerignore"
            );
        }
    }
    assert!(ignored.iter().any(|i| i == "target"));

    let user = instruction(image, "USER");
    assert_eq!(user, ["10001:10001"]);
    assert_eq!(
        exec_form(instruction(image, "ENTRYPOINT")[0]),
        ["tron-actors"]
    );
    assert_eq!(exec_form(instruction(image, "CMD")[0]), ["run"]);
    let env = image_env(image);
    assert_eq!(instruction(image, "EXPOSE"), ["9464"]);
    assert!(env["TRON_ACTORS_METRICS__LISTEN"].ends_with(":9464"));
    assert!(env.keys().all(|k| k.starts_with("TRON_ACTORS_")), "{env:?}");
    let labels = instruction(image, "LABEL").join(" ");
    for label in [
        "org.opencontainers.image.title",
        "org.opencontainers.image.version",
        "org.opencontainers.image.licenses",
    ] {
        assert!(labels.contains(label), "label {label} missing");
    }
    assert!(labels.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))));
    let healthcheck = instruction(image, "HEALTHCHECK")[0];
    let health = exec_form(&healthcheck[healthcheck.find("CMD ").unwrap() + 4..]);
    assert_eq!(health, ["tron-actors", "health"]);
    assert_real_command(&health[1..], "HEALTHCHECK").await;
    assert!(
        stages.iter().flatten().all(|(_, v)| !v.contains("curl")),
        "the image must not need curl"
    );

    // `docker run tron-actors --help`: the entrypoint with --help prints the help.
    let help = output(&["--help"], &[]).await;
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help).0.contains("Usage: tron-actors"));
}

fn yaml(path: &str) -> serde_norway::Value {
    serde_norway::from_str(&std::fs::read_to_string(repo(path)).unwrap())
        .unwrap_or_else(|e| panic!("{path} does not parse: {e}"))
}

/// A compose value with any `!override`/`!reset` tag taken off.
fn untag(value: &serde_norway::Value) -> &serde_norway::Value {
    match value {
        serde_norway::Value::Tagged(tagged) => &tagged.value,
        other => other,
    }
}

fn strings(value: &serde_norway::Value) -> Vec<String> {
    untag(value)
        .as_sequence()
        .unwrap_or_else(|| panic!("not a list: {value:?}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn environment(service: &serde_norway::Value) -> BTreeMap<String, String> {
    untag(&service["environment"])
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let value = match v {
                serde_norway::Value::String(s) => s.clone(),
                other => panic!("environment values must be quoted strings: {other:?}"),
            };
            (k.as_str().unwrap().to_string(), value)
        })
        .collect()
}

/// The daemon's environment is a valid configuration: `run --dry-run` gets past the config
/// (prints "configuration: valid") and fails only on reaching the hosts. The node and Redis are
/// moved to closed local ports with the same scheme, so no test ever reaches TronGrid or a Redis
/// it does not own.
async fn assert_valid_config(env: &BTreeMap<String, String>, file: &str) {
    let mut env = env.clone();
    for key in ["TRON_ACTORS_NODE__URL", "TRON_ACTORS_REDIS__URL"] {
        if let Some(url) = env.get_mut(key) {
            let scheme = url.split("://").next().unwrap().to_string();
            *url = format!("{scheme}://127.0.0.1:{}", free_port().unwrap());
        }
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = output(&["run", "--dry-run"], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{file}: {stdout}\n{stderr}");
    assert!(
        stdout.starts_with("configuration: valid"),
        "{file}: {stdout}\n{stderr}"
    );
}

#[tokio::test]
async fn the_compose_files_use_only_public_images_real_commands_and_real_config_keys() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_mapping().unwrap();
    let names: Vec<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(names, ["redis", "jaeger", "node", "tron-actors"]);
    for (name, service) in services {
        let name = name.as_str().unwrap();
        let image = service["image"].as_str().unwrap_or_default();
        let ours = service.get("build").and_then(|b| b.as_str()) == Some(".");
        let public = image.starts_with("redis:") || image.starts_with("jaegertracing/");
        assert!(
            public || (ours && image == "tron-actors:local"),
            "{name}: image {image:?}"
        );
        if ours {
            assert_real_command(&strings(&service["command"]), name).await;
        }
        if let Some(test) = service.get("healthcheck").map(|h| strings(&h["test"])) {
            assert_eq!(test[0], "CMD", "{name}");
            if ours {
                assert_eq!(test[1], "tron-actors", "{name}");
                assert_real_command(&test[2..], name).await;
            }
        }
        if let Some(depends) = service.get("depends_on").and_then(|d| d.as_mapping()) {
            for dependency in depends.keys() {
                assert!(
                    services.contains_key(dependency),
                    "{name} depends on {dependency:?}"
                );
            }
        }
    }
    let redis = &services["redis"];
    let command = strings(&redis["command"]);
    let aof = command.iter().position(|a| a == "--appendonly").unwrap();
    assert_eq!(command[aof + 1], "yes");
    assert_eq!(
        strings(&redis["healthcheck"]["test"]),
        ["CMD", "redis-cli", "ping"]
    );

    let daemon = &services["tron-actors"];
    assert_eq!(strings(&daemon["command"]), ["run"]);
    let env = environment(daemon);
    assert_eq!(env["TRON_ACTORS_NODE__URL"], "http://node:8090");
    assert_eq!(env["TRON_ACTORS_REDIS__URL"], "redis://redis:6379");
    assert_eq!(env["TRON_ACTORS_OTEL__ENDPOINT"], "http://jaeger:4317");
    let sim = strings(&services["node"]["command"]);
    assert!(
        sim.windows(2).any(|w| w == ["--listen", "0.0.0.0:8090"]),
        "{sim:?}"
    );
    assert_eq!(strings(&daemon["ports"]), ["9464:9464"]);
    assert_valid_config(&env, "docker-compose.yml").await;

    // The TronGrid override: no simulated node, the key from the environment.
    let trongrid = yaml("docker-compose.trongrid.yml");
    let overrides = trongrid["services"].as_mapping().unwrap();
    assert!(overrides.keys().all(|k| services.contains_key(k)));
    assert_eq!(strings(&overrides["node"]["profiles"]), ["sim"]);
    let daemon = &overrides["tron-actors"];
    let depends = untag(&daemon["depends_on"]).as_mapping().unwrap();
    assert!(!depends.contains_key("node"));
    let mut env = environment(daemon);
    assert_eq!(env["TRON_ACTORS_NODE__URL"], "https://api.trongrid.io");
    let key = &env["TRON_ACTORS_NODE__API_KEY"];
    assert!(key.starts_with("${TRONGRID_API_KEY:?"), "{key}");
    assert!(!env.contains_key("TRON_ACTORS_SYNC__START_BLOCK"));
    // What compose substitutes.
    env.insert(
        "TRON_ACTORS_NODE__API_KEY".into(),
        "key-from-the-environment".into(),
    );
    assert_valid_config(&env, "docker-compose.trongrid.yml").await;
}

#[tokio::test]
async fn the_systemd_unit_runs_the_daemon_restarts_it_on_failure_and_reads_a_valid_environment() {
    let unit = std::fs::read_to_string(repo("deploy/tron-actors.service")).unwrap();
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect();
    let get = |key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .collect()
    };
    assert_eq!(get("ExecStart"), ["/usr/local/bin/tron-actors run"]);
    assert_real_command(&["run".to_string()], "ExecStart").await;
    assert_eq!(get("Restart"), ["on-failure"]);
    // Exit 2 (a configuration refused) is not retried: see EXIT_CONFIG in main.rs.
    assert_eq!(get("RestartPreventExitStatus"), ["2"]);
    assert_eq!(get("KillSignal"), ["SIGTERM"]);
    assert_eq!(get("EnvironmentFile"), ["/etc/tron-actors/tron-actors.env"]);
    for hardening in [
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "DynamicUser",
    ] {
        assert_eq!(get(hardening).len(), 1, "{hardening} missing");
    }
    // The example environment file holds only real keys with valid values.
    let example = std::fs::read_to_string(repo("deploy/tron-actors.env.example")).unwrap();
    let env: BTreeMap<String, String> = example
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    assert!(env.contains_key("TRON_ACTORS_NODE__API_KEY"));
    assert_valid_config(&env, "deploy/tron-actors.env.example").await;
}
