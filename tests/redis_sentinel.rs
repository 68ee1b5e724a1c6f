//! Redis Sentinel: a primary, two replicas and three sentinels, all private processes. The
//! daemon finds the primary through the sentinels and, with `redis.wait_replicas = 1`, follows a
//! failover (the primary SIGKILLed mid-backlog) without a restart, and the stream on the new
//! primary is exact: nothing missing, nothing twice (docs/RELIABILITY.md, "Sentinel").
#![allow(clippy::unwrap_used)]

mod common;

use actors::store::{CommitOutcome, Origin, Store};
use common::{
    assert_exactly_once, frozen_sim, read_stream, sample_block, start_daemon, test_config,
    wait_done, wait_until, TestRedis,
};
use std::time::Duration;
use tron_actors::store::{RedisStore, RedisStoreConfig};
use tron_actors::tools::local_redis::{free_port, LocalRedis, Persistence};
use tron_actors::tools::sentinel::Sentinels;

const WAIT: Duration = Duration::from_secs(240);
const MASTER: &str = "mymaster";

async fn start_redis(args: &[String]) -> TestRedis {
    let dir = tempfile::tempdir().unwrap();
    let server =
        LocalRedis::start_with_args(dir.path(), free_port().unwrap(), Persistence::None, args)
            .await
            .unwrap();
    TestRedis { server, dir }
}

/// A primary, two replicas of it and three sentinels watching it, all agreed on who is who.
struct Deployment {
    primary: TestRedis,
    replicas: [TestRedis; 2],
    sentinels: Sentinels,
    _dir: tempfile::TempDir,
}

impl Deployment {
    async fn start() -> Deployment {
        let primary = start_redis(&[]).await;
        let primary_port = primary.server.port();
        let replica_of = [
            "--replicaof".to_string(),
            "127.0.0.1".to_string(),
            primary_port.to_string(),
        ];
        let replicas = [
            start_redis(&replica_of).await,
            start_redis(&replica_of).await,
        ];
        let dir = tempfile::tempdir().unwrap();
        // The primary is declared down after 500 ms. Each sentinel must know both replicas and
        // the two other sentinels before a failover can be agreed on (they learn them within
        // ~10 s).
        let sentinels = Sentinels::start(
            dir.path(),
            MASTER,
            primary_port,
            2,
            500,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        Deployment {
            primary,
            replicas,
            sentinels,
            _dir: dir,
        }
    }

    /// The daemon's config: the sentinels, WAIT for one replica, a backlog from `from`.
    fn config(&self, sim: &tron_sim::SimHandle, from: u64) -> tron_actors::config::Config {
        let start_block = from.to_string();
        let mut config = test_config(
            &sim.url(),
            // With sentinels only the scheme (and credentials, database) of the URL are used.
            "redis://sentinel-names-the-host:1",
            &[
                ("redis.master_name", MASTER),
                ("redis.wait_replicas", "1"),
                ("sync.start_block", start_block.as_str()),
            ],
        );
        config.redis.sentinels = self.sentinels.addrs();
        config
    }

    /// The replica the sentinels promoted.
    async fn new_primary(&self) -> &TestRedis {
        let port = self.sentinels.sentinels[0]
            .view()
            .await
            .unwrap()
            .primary_port;
        assert_ne!(port, self.primary.server.port(), "no failover happened");
        self.replicas
            .iter()
            .find(|r| r.server.port() == port)
            .expect("the new primary is one of the replicas")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_mid_backlog_is_followed_through_the_sentinels_and_the_stream_is_exact() {
    let mut deployment = Deployment::start().await;
    let sim = frozen_sim(6000, 8).await;
    let head = sim.chain().head();
    let from = head - 5000;
    let daemon = start_daemon(&deployment.config(&sim, from)).await;
    let store = daemon.store.clone();

    // A share of the backlog is done, then the primary dies.
    // The backlog is worked highest first: block `head - 200` done means ~200 are.
    wait_until(WAIT, "200 blocks done before the kill", || async {
        store.is_done(head - 200).await.unwrap_or(false)
    })
    .await;
    assert!(
        !store.is_done(from).await.unwrap(),
        "the backlog was drained before the kill: nothing was tested"
    );
    deployment.primary.server.kill().await;

    // The sentinels promote a replica; the daemon asks them again and finishes on it.
    wait_done(&store, from, head, WAIT).await;
    daemon.shutdown().await.unwrap();
    assert_exactly_once(deployment.new_primary().await, &sim, from, head).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_demoted_mid_backlog_by_a_manual_failover_is_followed_and_the_stream_is_exact() {
    let deployment = Deployment::start().await;
    let sim = frozen_sim(6000, 8).await;
    let head = sim.chain().head();
    let from = head - 5000;
    let daemon = start_daemon(&deployment.config(&sim, from)).await;
    let store = daemon.store.clone();
    // The backlog is worked highest first: block `head - 200` done means ~200 are.
    wait_until(WAIT, "200 blocks done before the failover", || async {
        store.is_done(head - 200).await.unwrap_or(false)
    })
    .await;
    // A failover the operator asks for: the old primary keeps running, demoted to a replica
    // (a write reaching it is refused as READONLY), and the sentinels disconnect its clients.
    assert!(
        !store.is_done(from).await.unwrap(),
        "the backlog was drained before the failover: nothing was tested"
    );
    deployment.sentinels.sentinels[1].failover().await.unwrap();
    wait_done(&store, from, head, WAIT).await;
    daemon.shutdown().await.unwrap();
    assert_exactly_once(deployment.new_primary().await, &sim, from, head).await;
    // The old primary is a replica of the new one now, with the same stream.
    let mut old = deployment.primary.conn().await;
    let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut old).await.unwrap();
    assert_eq!(
        role.first(),
        Some(&redis::Value::BulkString(b"slave".to_vec()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_fewer_replicas_acknowledged_is_reported_and_never_written_twice() {
    let primary = TestRedis::start().await;
    let store = RedisStore::new(&RedisStoreConfig {
        url: primary.url(),
        wait_replicas: 1,
        // Long enough for a loaded machine's replica to answer WAIT's GETACK; the two commits
        // without a replica wait it out in full.
        wait_timeout: Duration::from_millis(1_000),
        ..tron_actors::config::Config::default().store_config()
    })
    .unwrap();
    let block = sample_block(500, 3);
    let now = actors::clock::now_ms();
    // No replica: written on the primary, but not acknowledged.
    for _ in 0..2 {
        let error = store
            .commit(Origin::Backlog, &block, now)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("block 500 committed on the primary but only 0 of 1 replicas had it"),
            "{error}"
        );
        assert!(store.is_done(500).await.unwrap());
    }
    let mut conn = primary.conn().await;
    assert_eq!(read_stream(&mut conn, "{tron}:events").await.len(), 3 + 1);

    // With a replica, the next commit is acknowledged, and the one before is done.
    let replica = start_redis(&[
        "--replicaof".to_string(),
        "127.0.0.1".to_string(),
        primary.server.port().to_string(),
    ])
    .await;
    wait_until(
        Duration::from_secs(30),
        "the replica is in sync",
        || async {
            let mut conn = replica.conn().await;
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            info.contains("master_link_status:up")
        },
    )
    .await;
    // ... and the primary counts it (WAIT counts only replicas it sees online).
    wait_until(
        Duration::from_secs(30),
        "the primary sees the replica online",
        || async {
            let mut conn = primary.conn().await;
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            info.contains("state=online")
        },
    )
    .await;
    assert_eq!(
        store.commit(Origin::Backlog, &block, now).await.unwrap(),
        CommitOutcome::AlreadyDone
    );
    assert!(matches!(
        store
            .commit(Origin::Backlog, &sample_block(501, 2), now)
            .await
            .unwrap(),
        CommitOutcome::Published { events: 2, .. }
    ));
    let mut conn = replica.conn().await;
    assert_eq!(
        read_stream(&mut conn, "{tron}:events").await.len(),
        3 + 1 + 2 + 1
    );
}
