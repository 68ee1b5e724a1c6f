//! Redis that evicts or fills up: an evicting maxmemory-policy refused at start (exit 2, by
//! `run` and by `run --dry-run`, also when CONFIG is refused and INFO is read instead); the
//! memory guard pausing a backlog near maxmemory and resuming by itself; a Redis that refuses
//! commits for want of memory (guard off) paused with backoff, not failed. Against private
//! redis-servers and the simulated node over HTTP.
#![allow(clippy::unwrap_used)]

mod common;

use common::cli::{http_get, output, text};
use common::{assert_exactly_once, start_daemon, test_config, wait_done, wait_until, TestRedis};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(180);

async fn config_set(redis: &TestRedis, name: &str, value: &str) {
    let mut conn = redis.conn().await;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
}

async fn used_memory(redis: &TestRedis) -> u64 {
    let mut conn = redis.conn().await;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .unwrap();
    tron_actors::store::memory::parse_info(&info)["used_memory"]
        .parse()
        .unwrap()
}

async fn dbsize(redis: &TestRedis) -> u64 {
    let mut conn = redis.conn().await;
    redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicting_policy_is_refused_with_exit_2_by_run_and_by_the_dry_run_even_without_config() {
    let redis = TestRedis::start().await;
    let sim = common::frozen_sim(10, 1).await;
    let node = sim.url();
    let url = redis.url();
    config_set(&redis, "maxmemory-policy", "allkeys-lru").await;
    let env = [
        ("TRON_ACTORS_NODE__URL", node.as_str()),
        ("TRON_ACTORS_REDIS__URL", url.as_str()),
        ("TRON_ACTORS_METRICS__LISTEN", "127.0.0.1:0"),
    ];
    let refusal = "redis maxmemory-policy is allkeys-lru: Redis would evict keys when full";
    let fix = "set maxmemory-policy noeviction";

    // A daemon that did not refuse would run until killed: the timeout is the failure.
    let run = tokio::time::timeout(WAIT, output(&["run"], &env))
        .await
        .expect("run did not refuse to start");
    let (stdout, stderr) = text(&run);
    assert_eq!(run.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains(&format!("error: {refusal}")), "{stderr}");
    assert!(stderr.contains(fix), "{stderr}");
    assert_eq!(dbsize(&redis).await, 0, "the refused daemon wrote to Redis");

    let dry = output(&["run", "--dry-run"], &env).await;
    let (stdout, stderr) = text(&dry);
    assert_eq!(dry.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("maxmemory-policy allkeys-lru, no maxmemory; read with CONFIG GET"),
        "{stdout}"
    );
    assert!(stderr.contains(&format!("error: {refusal}")), "{stderr}");
    assert!(!stdout.contains("ready:"), "{stdout}");

    // volatile-* evicts too (keys with a TTL): refused as well.
    config_set(&redis, "maxmemory-policy", "volatile-lru").await;
    let dry = output(&["run", "--dry-run"], &env).await;
    let (_, stderr) = text(&dry);
    assert_eq!(dry.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("maxmemory-policy is volatile-lru"),
        "{stderr}"
    );

    // A user that may not run CONFIG (as on managed Redis): the policy comes from INFO.
    let mut conn = redis.conn().await;
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("daemon")
        .arg("on")
        .arg(">s3cret-pw")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .arg("-config")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let limited = url.replace("redis://", "redis://daemon:s3cret-pw@");
    let limited_env = [
        ("TRON_ACTORS_NODE__URL", node.as_str()),
        ("TRON_ACTORS_REDIS__URL", limited.as_str()),
    ];
    config_set(&redis, "maxmemory-policy", "allkeys-lfu").await;
    let dry = output(&["run", "--dry-run"], &limited_env).await;
    let (stdout, stderr) = text(&dry);
    assert_eq!(dry.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("maxmemory-policy allkeys-lfu, no maxmemory; read with INFO"),
        "{stdout}"
    );
    assert!(
        stderr.contains("maxmemory-policy is allkeys-lfu"),
        "{stderr}"
    );

    config_set(&redis, "maxmemory-policy", "noeviction").await;
    let dry = output(&["run", "--dry-run"], &limited_env).await;
    let (stdout, stderr) = text(&dry);
    assert_eq!(dry.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("redis: reachable (AOF off: WARNING, a Redis restart can lose recent commits; set appendonly yes, maxmemory-policy noeviction, no maxmemory; read with INFO)"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret-pw"), "{stdout}");
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
}

/// A node of `blocks` blocks from block 1000 (low numbers keep the done bitmap tiny, so the
/// memory the test budgets is the stream's).
async fn low_sim(blocks: u64) -> tron_sim::SimHandle {
    let params = tron_sim::SimParams {
        seed: 7,
        start_block: 1000,
        history: blocks,
        txs_per_block: 20,
        frozen: true,
        genesis_ms: Some(1_700_000_000_000),
        ..Default::default()
    };
    tron_sim::spawn(
        params,
        tron_sim::SimFaults::none(),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap()
}

/// What a paused daemon shows: /readyz 503 with `reason`, the metric at 1.
async fn assert_shown_paused(daemon: &tron_actors::daemon::DaemonHandle, reason: &str) {
    let addr = daemon.ops.as_ref().unwrap().addr;
    let (status, body) = http_get(&format!("http://{addr}/readyz")).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(reason), "{body}");
    let (_, metrics) = http_get(&format!("http://{addr}/metrics")).await.unwrap();
    assert!(
        metrics.contains("\ntron_actors_redis_memory_paused 1\n"),
        "{metrics}"
    );
}

async fn assert_shown_running(daemon: &tron_actors::daemon::DaemonHandle) {
    let addr = daemon.ops.as_ref().unwrap().addr;
    let url = format!("http://{addr}/readyz");
    wait_until(WAIT, "/readyz answers 200", || async {
        matches!(http_get(&url).await, Some((200, _)))
    })
    .await;
    let (_, metrics) = http_get(&format!("http://{addr}/metrics")).await.unwrap();
    assert!(
        metrics.contains("\ntron_actors_redis_memory_paused 0\n"),
        "{metrics}"
    );
}

/// No block failed, retried or was dead-lettered.
async fn assert_no_failures(redis: &TestRedis) {
    let mut conn = redis.conn().await;
    let (attempts, retry, dead): (u64, u64, u64) = redis::pipe()
        .hlen("{tron}:attempts")
        .zcard("{tron}:retry")
        .hlen("{tron}:dead")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((attempts, retry, dead), (0, 0, 0), "failures were counted");
}

async fn backlog_len(redis: &TestRedis) -> u64 {
    let mut conn = redis.conn().await;
    redis::cmd("ZCARD")
        .arg("{tron}:queue:backlog")
        .query_async(&mut conn)
        .await
        .unwrap()
}

const BLOCKS: u64 = 1200;
const FIRST: u64 = 1000;
const LAST: u64 = FIRST + BLOCKS - 1;
/// Room above the empty server's memory: well under what the run writes.
const ROOM: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_guard_pauses_a_backlog_near_maxmemory_and_resumes_by_itself_exact() {
    let redis = TestRedis::start().await;
    let sim = low_sim(BLOCKS).await;
    config_set(
        &redis,
        "maxmemory",
        &(used_memory(&redis).await + ROOM).to_string(),
    )
    .await;
    let config = test_config(
        &sim.url(),
        &redis.url(),
        &[
            ("sync.start_block", &FIRST.to_string()),
            ("redis.memory_check_ms", "50"),
        ],
    );
    let daemon = start_daemon(&config).await;

    wait_until(WAIT, "the memory guard pauses the work", || async {
        daemon.backpressure.is_paused()
    })
    .await;
    assert_shown_paused(
        &daemon,
        "paused: redis used memory reached redis.memory_pause_ratio = 0.9 of maxmemory",
    )
    .await;
    // The rest of the backlog waits in its queue; nothing is moving.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = backlog_len(&redis).await;
    assert!(waiting > 0, "the backlog was not left waiting");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(backlog_len(&redis).await, waiting, "claimed while paused");
    assert!(daemon.backpressure.is_paused());
    assert_no_failures(&redis).await;

    // More room: the daemon goes on by itself.
    config_set(&redis, "maxmemory", "0").await;
    wait_done(&daemon.store, FIRST, LAST, WAIT).await;
    assert!(!daemon.backpressure.is_paused());
    assert_shown_running(&daemon).await;

    // The policy is read at every check too (a reconnect to another server, a CONFIG SET):
    // an evicting one pauses the work until it is noeviction again.
    config_set(&redis, "maxmemory-policy", "allkeys-lru").await;
    wait_until(WAIT, "an evicting policy pauses the work", || async {
        daemon.backpressure.is_paused()
    })
    .await;
    assert_shown_paused(
        &daemon,
        "paused: redis maxmemory-policy is allkeys-lru, which evicts keys: set maxmemory-policy noeviction",
    )
    .await;
    config_set(&redis, "maxmemory-policy", "noeviction").await;
    assert_shown_running(&daemon).await;
    daemon.shutdown().await.unwrap();
    assert_exactly_once(&redis, &sim, FIRST, LAST).await;
    assert_no_failures(&redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_refused_for_want_of_memory_pause_the_work_with_backoff_not_failures() {
    let redis = TestRedis::start().await;
    let sim = low_sim(BLOCKS).await;
    let maxmemory = used_memory(&redis).await + ROOM;
    config_set(&redis, "maxmemory", &maxmemory.to_string()).await;
    // The guard off: only Redis's own refusals (-OOM) stop the work.
    let config = test_config(
        &sim.url(),
        &redis.url(),
        &[
            ("sync.start_block", &FIRST.to_string()),
            ("redis.memory_pause_ratio", "0"),
        ],
    );
    let daemon = start_daemon(&config).await;
    // Redis checks maxmemory in a script only at its first write, and the commit script's first
    // write frees (it drops the lease): the backlog's commits go through past maxmemory. (This
    // is why the guard, not Redis, is what keeps memory below maxmemory.)
    wait_done(&daemon.store, FIRST, LAST, WAIT).await;
    assert!(
        used_memory(&redis).await > maxmemory,
        "precondition: the run did not fill Redis past maxmemory"
    );

    // The next gap must be queued (ZADD, refused at once): the work pauses, nothing is failed.
    sim.chain().advance(30);
    wait_until(WAIT, "an out-of-memory refusal pauses the work", || async {
        daemon.backpressure.is_paused()
    })
    .await;
    assert_shown_paused(&daemon, "the store refused a write for want of memory").await;
    let mut conn = redis.conn().await;
    let last: u64 = redis::cmd("GET")
        .arg("{tron}:last_synced")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        last, LAST,
        "the head was recorded while Redis refused writes"
    );
    assert_no_failures(&redis).await;

    config_set(&redis, "maxmemory", "0").await;
    wait_done(&daemon.store, FIRST, LAST + 30, WAIT).await;
    assert_shown_running(&daemon).await;
    daemon.shutdown().await.unwrap();
    assert_exactly_once(&redis, &sim, FIRST, LAST + 30).await;
    assert_no_failures(&redis).await;
}
