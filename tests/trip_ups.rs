//! What a new user tripped on (issue 15, item 6): `demo` writing into whatever Redis answered,
//! colour codes in a redirected text log. (The metrics server's default address is checked with
//! the container files, tests/container.rs.)
#![allow(clippy::unwrap_used)]

mod common;

use common::cli::{output, text, Process};
use common::{frozen_sim, wait_done, TestRedis};
use std::time::Duration;

const DEMO: [&str; 9] = [
    "demo",
    "--history",
    "20",
    "--txs-per-block",
    "5",
    "--block-interval-ms",
    "1000",
    "--seconds",
    "4",
];

async fn keys(redis: &TestRedis) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_leaves_a_redis_that_answers_alone_unless_asked_and_says_how_to_clean_up() {
    let redis = TestRedis::start().await;
    let url = redis.url();
    let env = [
        ("TRON_ACTORS_REDIS__URL", url.as_str()),
        ("TRON_ACTORS_METRICS__LISTEN", "127.0.0.1:0"),
        ("TRON_ACTORS_LOG__FORMAT", "json"),
    ];
    // By default: a private redis-server, removed on exit; the one at redis.url is untouched.
    let out = output(&DEMO, &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("Started a private redis-server"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing is left behind"), "{stderr}");
    assert_eq!(keys(&redis).await, Vec::<String>::new());

    // Asked: it writes there, under its prefix only, and says how to remove it.
    let mut args = DEMO.to_vec();
    args.push("--existing-redis");
    let out = output(&args, &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let written = keys(&redis).await;
    assert!(
        written.contains(&"{tron-demo}:events".to_string()),
        "{written:?}"
    );
    assert!(
        written.iter().all(|k| k.starts_with("{tron-demo}:")),
        "{written:?}"
    );
    let hint = stderr
        .lines()
        .skip_while(|l| !l.contains("Remove them with:"))
        .nth(1)
        .unwrap_or_else(|| panic!("no removal command in {stderr}"))
        .trim()
        .to_string();
    assert_eq!(
        hint,
        format!("redis-cli -u {url} --scan --pattern '{{tron-demo}}:*' | xargs -r redis-cli -u {url} DEL")
    );
    // The command does what it says.
    let status = std::process::Command::new("sh")
        .args(["-c", &hint])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(keys(&redis).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_written_to_a_file_carry_no_colour_codes() {
    let redis = TestRedis::start().await;
    let sim = frozen_sim(10, 5).await;
    let head = sim.chain().head();
    let sim_url = sim.url();
    let redis_url = redis.url();
    let mut daemon = Process::spawn(
        &["run"],
        &[
            ("TRON_ACTORS_NODE__URL", sim_url.as_str()),
            ("TRON_ACTORS_REDIS__URL", redis_url.as_str()),
            ("TRON_ACTORS_METRICS__LISTEN", "127.0.0.1:0"),
            ("TRON_ACTORS_LOG__FORMAT", "text"),
        ],
    );
    wait_done(&redis.store(), head, head, Duration::from_secs(120)).await;
    daemon.terminate().await;
    let log = daemon.stderr();
    assert!(log.contains(" INFO "), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a file: {log:?}");
}
