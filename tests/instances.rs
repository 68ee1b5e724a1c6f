//! Several daemons on one Redis (a rolling deployment, replicas for availability): one leader,
//! every instance working the shared queues, a dead leader replaced within the lease, a paused
//! ex-leader fenced out, and the stream exact through all of it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    assert_exactly_once, done_count, frozen_sim, start_daemon, test_config, wait_done, wait_until,
    DaemonProcess, TestRedis,
};
use redis::AsyncCommands;
use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(180);
const INSTANCES: [&str; 3] = ["i0", "i1", "i2"];
/// Short, so that the test sees several leaderships run out: a dead leader is replaced within
/// this, and a process paused for longer has lost its leadership and its leases.
const LEASE_MS: u64 = 2_000;

struct Fleet {
    node: String,
    redis: String,
    dir: PathBuf,
    daemons: Vec<DaemonProcess>,
    logs: Vec<PathBuf>,
}

impl Fleet {
    fn spawn(&mut self, index: usize) -> DaemonProcess {
        let log = self
            .dir
            .join(format!("{}-{}.log", INSTANCES[index], self.logs.len()));
        self.logs.push(log.clone());
        let lease = LEASE_MS.to_string();
        let env = [
            ("TRON_ACTORS_INSTANCE__ID", INSTANCES[index]),
            ("TRON_ACTORS_SYNC__LEASE_MS", lease.as_str()),
            ("TRON_ACTORS_SYNC__BACKLOG_WORKERS", "4"),
            ("TRON_ACTORS_SYNC__BACKLOG_BATCH", "10"),
            ("TRON_ACTORS_SHUTDOWN__GRACE_MS", "2000"),
        ];
        DaemonProcess::spawn_to(&self.node, &self.redis, &env, Some(&log))
    }

    /// The index of the instance that leads now, as Redis says.
    async fn leader(&self, redis: &TestRedis) -> Option<usize> {
        let mut conn = redis.conn().await;
        let value: Option<String> = conn.get("{tron}:leader").await.unwrap();
        let (id, _) = value?
            .rsplit_once('|')
            .map(|(i, e)| (i.to_string(), e.to_string()))?;
        INSTANCES.iter().position(|i| *i == id)
    }

    async fn wait_for_leader(&self, redis: &TestRedis) -> usize {
        let started = tokio::time::Instant::now();
        loop {
            if let Some(leader) = self.leader(redis).await {
                return leader;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no leader");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn lines_with(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(needle))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_share_the_backlog_under_one_leader_through_kills_and_pauses() {
    let redis = TestRedis::start().await;
    let sim = frozen_sim(20, 5).await;
    let head = sim.chain().head();
    {
        let config = test_config(&sim.url(), &redis.url(), &[]);
        let daemon = start_daemon(&config).await;
        wait_done(&daemon.store, head, head, WAIT).await;
        daemon.shutdown().await.unwrap();
    }
    const BACKLOG: u64 = 3000;
    sim.chain().advance(BACKLOG);
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet {
        node: sim.url(),
        redis: redis.url(),
        dir: dir.path().to_path_buf(),
        daemons: Vec::new(),
        logs: Vec::new(),
    };
    for index in 0..INSTANCES.len() {
        let daemon = fleet.spawn(index);
        fleet.daemons.push(daemon);
    }
    let store = redis.store();
    let mut to = head + BACKLOG;
    let mut kills = 0;
    let mut leaders = std::collections::BTreeSet::new();
    // The plan: at each share of the backlog done, one disruption; the head moves meanwhile.
    for (step, share) in [10u64, 25, 40, 55, 70].into_iter().enumerate() {
        let target = BACKLOG * share / 100;
        wait_until(WAIT, &format!("{share}% of the backlog done"), || async {
            done_count(&store, head + 1, head + BACKLOG).await >= target
        })
        .await;
        let leader = fleet.wait_for_leader(&redis).await;
        leaders.insert(leader);
        match step {
            // The leader SIGKILLed: no resignation, its lease must run out.
            0 | 2 | 4 => {
                fleet.daemons[leader].kill().await;
                kills += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
                fleet.daemons[leader] = fleet.spawn(leader);
            }
            // A follower, then the leader, paused past the lease: each comes back to find its
            // leases (and the leader its leadership) taken; its stale steps are refused.
            1 | 3 => {
                let paused = if step == 1 {
                    (leader + 1) % INSTANCES.len()
                } else {
                    leader
                };
                fleet.daemons[paused].signal("STOP").await;
                tokio::time::sleep(Duration::from_millis(LEASE_MS + 1_500)).await;
                fleet.daemons[paused].signal("CONT").await;
            }
            _ => unreachable!(),
        }
        sim.chain().advance(5);
        to += 5;
    }
    wait_done(&store, head + 1, to, WAIT).await;
    // Let the last head be taken over by whoever leads, then stop everyone cleanly.
    for daemon in &mut fleet.daemons {
        let status = daemon.terminate(Duration::from_secs(10)).await;
        assert!(status.success(), "exit status {status:?}");
    }
    assert_exactly_once(&redis, &sim, head, to).await;

    let snapshot = store.snapshot().await.unwrap();
    // The first sync's block was committed by the in-process daemon (its host name's id).
    let shares: std::collections::BTreeMap<String, u64> = snapshot
        .stats
        .blocks_by_instance()
        .iter()
        .filter(|(id, _)| INSTANCES.contains(&id.as_str()))
        .map(|(id, n)| (id.clone(), *n))
        .collect();
    eprintln!(
        "blocks committed per instance: {shares:?}; {kills} leader kills; leaders seen {leaders:?}"
    );
    assert_eq!(shares.values().sum::<u64>(), to - head, "{shares:?}");
    for id in INSTANCES {
        assert!(
            shares.get(id).copied().unwrap_or(0) > 0,
            "{id} drained nothing: {shares:?}"
        );
    }
    assert!(snapshot.leader.is_none(), "the last leader resigned");
    assert!(
        INSTANCES
            .iter()
            .all(|i| !snapshot.instances.contains_key(*i)),
        "every instance left the registry on its clean stop: {:?}",
        snapshot.instances
    );
    // Followers do not fight over the head: no instance logs a refused head step per block.
    let mut warnings = Vec::new();
    let mut fenced = 0;
    for log in &fleet.logs {
        assert_eq!(
            lines_with(log, "Could not record the new head"),
            0,
            "{}",
            log.display()
        );
        warnings.push((
            log.file_name().unwrap().to_string_lossy().to_string(),
            lines_with(log, "\"WARN\""),
        ));
        fenced += lines_with(log, "No longer the leader");
    }
    eprintln!(
        "WARN lines per process: {warnings:?}; head steps of a stale leader refused: {fenced}"
    );
    for (log, n) in &warnings {
        assert!(*n < 60, "{log}: {n} warnings for {} blocks", to - head);
    }
}
