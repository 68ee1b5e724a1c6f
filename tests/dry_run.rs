//! `run --dry-run`: a bad configuration refused naming the key, unreachable hosts named with
//! the reason, and the plan printed from the state in Redis.
#![allow(clippy::unwrap_used)]

mod common;

use common::cli::*;
use common::{frozen_sim, TestRedis};
use tron_actors::tools::local_redis::free_port;

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
