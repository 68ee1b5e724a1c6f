//! The shared test kit: a private redis-server per test, the simulated node, stream readers and a
//! wait-until helper.
#![allow(dead_code, clippy::unwrap_used)]
// Each test file is its own crate that includes this kit as a private module: `pub` here means
// "for the test files", which rustc cannot see and reports as unreachable.
#![allow(unreachable_pub)]

pub mod cli;
pub mod forking;

use actors::model::{Block, BlockHeader, Event, EventBody};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;
use tron_actors::store::{RedisStore, RedisStoreConfig};
use tron_actors::tools::child::{DaemonChild, DaemonCommand};
use tron_actors::tools::local_redis::LocalRedis;

pub struct TestRedis {
    pub server: LocalRedis,
    pub dir: tempfile::TempDir,
}

impl TestRedis {
    pub async fn start() -> TestRedis {
        Self::start_with(false).await
    }

    pub async fn start_with(append_only: bool) -> TestRedis {
        let dir = tempfile::tempdir().unwrap();
        let server = LocalRedis::start_on_free_port(dir.path(), append_only)
            .await
            .unwrap();
        TestRedis { server, dir }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn store(&self) -> RedisStore {
        RedisStore::new(&RedisStoreConfig {
            url: self.url(),
            ..tron_actors::config::Config::default().store_config()
        })
        .unwrap()
    }

    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            // redis-rs gives up on an answer after 500 ms by default; a page of the stream on a
            // loaded 2-core machine can take longer, and a test must not fail for that.
            .get_multiplexed_async_connection_with_config(
                &redis::AsyncConnectionConfig::new()
                    .set_response_timeout(Some(Duration::from_secs(30))),
            )
            .await
            .unwrap()
    }
}

/// Polls `check` every 50 ms until it is true; panics with `what` after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = tokio::time::Instant::now();
    loop {
        if check().await {
            return;
        }
        if started.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A block with `n` TRX transfers, for store tests.
pub fn sample_block(number: u64, n: usize) -> Block {
    Block {
        header: BlockHeader {
            number,
            hash: format!("{number:016x}{}", "ab".repeat(24)),
            parent_hash: format!("{:016x}{}", number - 1, "ab".repeat(24)),
            timestamp_ms: 1_700_000_000_000 + number * 3000,
        },
        events: (0..n)
            .map(|i| Event {
                uid: format!("tx{number}_{i}_trx"),
                tx: format!("tx{number}_{i}"),
                body: EventBody::TrxTransfer {
                    from: "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t".into(),
                    to: "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t".into(),
                    value: (i * 1000).to_string(),
                },
            })
            .collect(),
    }
}

/// One stream entry: its id and fields in order.
pub type Entry = (String, Vec<(String, String)>);

/// Reads the whole stream in pages of 1,000.
pub async fn read_stream(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut start = "-".to_string();
    loop {
        // Raw XRANGE keeps the field order of each entry, which is part of the contract.
        let page: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        let n = page.len();
        for (id, flat) in page {
            let fields = flat
                .chunks(2)
                .map(|kv| (kv[0].clone(), kv[1].clone()))
                .collect();
            start = format!("({id}");
            out.push((id, fields));
        }
        if n < 1000 {
            return out;
        }
    }
}

/// Field map of one entry.
pub fn field_map(entry: &Entry) -> HashMap<String, String> {
    entry.1.iter().cloned().collect()
}

/// Event and `block` entries grouped by block number, in stream order within a block
/// (`finalized` and `block_reverted` entries left out).
pub fn by_block(
    entries: &[Entry],
) -> std::collections::BTreeMap<u64, Vec<HashMap<String, String>>> {
    let mut out: std::collections::BTreeMap<u64, Vec<HashMap<String, String>>> = Default::default();
    for entry in entries {
        let fields = field_map(entry);
        if matches!(fields["kind"].as_str(), "finalized" | "block_reverted") {
            continue;
        }
        let block: u64 = fields["block"].parse().unwrap();
        out.entry(block).or_default().push(fields);
    }
    out
}

/// The stream entries the daemon must write for a block, as maps: its events, then its
/// `block` entry.
pub fn expected_fields(block: &Block) -> Vec<HashMap<String, String>> {
    let owned = |fields: Vec<(&str, String)>| {
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<HashMap<String, String>>()
    };
    let mut out: Vec<HashMap<String, String>> = block
        .events
        .iter()
        .map(|e| owned(e.stream_fields(block.header.number)))
        .collect();
    out.push(owned(block.header.block_entry_fields(block.events.len())));
    out
}

/// The stream read as a consumer reads it (block entries close blocks, retractions applied).
pub fn consumer_view(entries: &[Entry]) -> tron_actors::consumer::ConsumerView {
    tron_actors::consumer::ConsumerView::read(entries.iter().map(|(_, fields)| fields))
}

/// A simulated node whose head only moves when the test says so.
pub async fn frozen_sim(history: u64, txs_per_block: u32) -> tron_sim::SimHandle {
    frozen_sim_with_faults(history, txs_per_block, tron_sim::SimFaults::none()).await
}

/// The head of a `frozen_sim` before it is advanced, known before it starts (to aim faults).
pub fn frozen_sim_head(history: u64) -> u64 {
    tron_sim::SimParams::default().start_block + history - 1
}

/// [`frozen_sim`] with faults: the same chain (same blocks, same hashes) served badly.
pub async fn frozen_sim_with_faults(
    history: u64,
    txs_per_block: u32,
    faults: tron_sim::SimFaults,
) -> tron_sim::SimHandle {
    let params = tron_sim::SimParams {
        seed: 7,
        history,
        txs_per_block,
        frozen: true,
        genesis_ms: Some(1_700_000_000_000),
        ..Default::default()
    };
    tron_sim::spawn(
        params,
        faults,
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap()
}

/// The config a test daemon runs with: the given node and Redis, fast polls, everything else
/// as shipped. `extra` are more `key = value` overrides.
pub fn test_config(
    node_url: &str,
    redis_url: &str,
    extra: &[(&str, &str)],
) -> tron_actors::config::Config {
    test_config_nodes(&[node_url.to_string()], redis_url, extra)
}

/// [`test_config`] with several nodes (`node.urls`, in this order).
pub fn test_config_nodes(
    node_urls: &[String],
    redis_url: &str,
    extra: &[(&str, &str)],
) -> tron_actors::config::Config {
    use figment::providers::Serialized;
    let mut figment = tron_actors::config::Config::figment(None)
        .merge(Serialized::default("node.urls", node_urls))
        .merge(Serialized::default("redis.url", redis_url))
        .merge(Serialized::default("sync.poll_min_ms", 50))
        .merge(Serialized::default("sync.poll_max_ms", 50))
        .merge(Serialized::default("sync.idle_ms", 50))
        .merge(Serialized::default("shutdown.grace_ms", 5000))
        .merge(Serialized::default("metrics.listen", "127.0.0.1:0"));
    for (key, value) in extra {
        let value: figment::value::Value = match (value.parse::<i64>(), value.parse::<f64>()) {
            (Ok(int), _) => int.into(),
            (_, Ok(float)) => float.into(),
            _ => (*value).into(),
        };
        figment = figment.merge(Serialized::default(key, value));
    }
    tron_actors::config::Config::from_figment(figment).unwrap()
}

/// Starts the daemon in this process against `config`.
pub async fn start_daemon(
    config: &tron_actors::config::Config,
) -> tron_actors::daemon::DaemonHandle {
    let client = tron_actors::tron::TronClient::new(config.client_config()).unwrap();
    tron_actors::daemon::DaemonHandle::start(config, std::sync::Arc::new(client))
        .await
        .unwrap()
}

/// Asserts that the stream, read as a consumer reads it (retractions applied), holds exactly
/// the blocks `from..=to` as the simulated node serves them now, each once, each with exactly
/// its events then its `block` entry, contiguous; and that it breaks no rule of the contract.
/// Returns the entries.
pub async fn assert_exactly_once(
    redis: &TestRedis,
    sim: &tron_sim::SimHandle,
    from: u64,
    to: u64,
) -> Vec<Entry> {
    let mut conn = redis.conn().await;
    let entries = read_stream(&mut conn, "{tron}:events").await;
    let view = consumer_view(&entries);
    assert!(
        view.violations.is_empty(),
        "the stream breaks the contract: {:?}",
        view.violations
    );
    for number in from..=to {
        let expected = sim.chain().expected_block(number).unwrap();
        let Some(got) = view.blocks.get(&number) else {
            panic!("block {number} is not in the stream");
        };
        let mut got_entries: Vec<HashMap<String, String>> = got
            .events
            .iter()
            .map(|fields| fields.iter().cloned().collect())
            .collect();
        got_entries.push(got.block_entry.iter().cloned().collect());
        assert_eq!(
            got.events.len(),
            expected.events.len(),
            "block {number}: {} events in the stream, {} expected",
            got.events.len(),
            expected.events.len()
        );
        assert_eq!(
            got_entries,
            expected_fields(&expected),
            "block {number}: entries differ"
        );
    }
    let outside: Vec<u64> = view
        .blocks
        .keys()
        .copied()
        .filter(|b| *b < from || *b > to)
        .collect();
    assert!(
        outside.is_empty(),
        "blocks outside {from}..={to} in the stream: {outside:?}"
    );
    entries
}

/// The last block of a run on a live simulated node: `until`, or a later head the TipWatcher
/// took up before the shutdown and finished within the grace period (its in-flight work is
/// committed, not dropped). `assert_exactly_once` up to it then proves every block up to it.
pub async fn last_published(redis: &TestRedis, until: u64) -> u64 {
    let mut conn = redis.conn().await;
    let entries = read_stream(&mut conn, "{tron}:events").await;
    consumer_view(&entries)
        .blocks
        .keys()
        .copied()
        .fold(until, u64::max)
}

/// Waits until blocks `from..=to` are all marked done.
pub async fn wait_done(store: &RedisStore, from: u64, to: u64, limit: Duration) {
    wait_until(limit, &format!("blocks {from}..={to} done"), || async {
        let mut conn = store.connection();
        let count: u64 = redis::cmd("BITCOUNT")
            .arg(store.keys().done())
            .arg(from / 8)
            .arg(to / 8)
            .query_async(&mut conn)
            .await
            .unwrap_or(0);
        if count < to - from + 1 {
            return false;
        }
        for block in from..=to {
            if !store.is_done(block).await.unwrap_or(false) {
                return false;
            }
        }
        true
    })
    .await;
}

/// The `instance.id` of [`DaemonProcess`]es unless a test gives another.
pub const DAEMON_INSTANCE: &str = "test-daemon";

/// The daemon as a separate process (the real binary), configured by environment variables
/// only, as a container runs it.
pub struct DaemonProcess(DaemonChild);

impl DaemonProcess {
    /// `tron-actors run` against this node and Redis, polling fast, plus `extra_env`.
    pub fn spawn(node_url: &str, redis_url: &str, extra_env: &[(&str, &str)]) -> DaemonProcess {
        Self::spawn_to(node_url, redis_url, extra_env, None)
    }

    /// [`DaemonProcess::spawn`], its output (JSON log lines) appended to `log` when given.
    pub fn spawn_to(
        node_url: &str,
        redis_url: &str,
        extra_env: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> DaemonProcess {
        let mut command = DaemonCommand::new(env!("CARGO_BIN_EXE_tron-actors"));
        if let Some(log) = log {
            command = command.output(tron_actors::tools::child::DaemonOutput::Lines {
                path: log.to_path_buf(),
                watch: Box::new(|_| {}),
            });
        }
        let child = command
            .env("TRON_ACTORS_NODE__URL", node_url)
            .env("TRON_ACTORS_REDIS__URL", redis_url)
            .env("TRON_ACTORS_SYNC__POLL_MIN_MS", "50")
            .env("TRON_ACTORS_SYNC__POLL_MAX_MS", "50")
            .env("TRON_ACTORS_SYNC__IDLE_MS", "50")
            .env("TRON_ACTORS_LOG__FORMAT", "json")
            .env("TRON_ACTORS_METRICS__LISTEN", "127.0.0.1:0")
            .env("TRON_ACTORS_INSTANCE__ID", DAEMON_INSTANCE)
            .envs(extra_env.iter().copied())
            .spawn()
            .unwrap();
        DaemonProcess(child)
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.exited()
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) with kill(1).
    pub async fn signal(&self, signal: &str) {
        assert!(
            self.0.signal(signal).await,
            "kill -{signal} {:?}",
            self.0.pid()
        );
    }

    /// SIGKILL, as a crash or power loss would.
    pub async fn kill(&mut self) {
        self.0.kill().await;
    }

    /// SIGTERM, then the exit status.
    pub async fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        self.0
            .terminate(limit)
            .await
            .expect("the daemon did not exit after SIGTERM")
    }
}

/// How many blocks in `from..=to` are done.
pub async fn done_count(store: &RedisStore, from: u64, to: u64) -> u64 {
    let mut n = 0;
    for block in from..=to {
        if store.is_done(block).await.unwrap_or(false) {
            n += 1;
        }
    }
    n
}
