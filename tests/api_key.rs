//! The API key: sent on every node request, never shown (logs, status, dry run, metrics).
#![allow(clippy::unwrap_used)]

mod common;

use common::cli::*;
use common::{wait_done, TestRedis};
use std::process::Output;
use tron_actors::tools::local_redis::free_port;

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
