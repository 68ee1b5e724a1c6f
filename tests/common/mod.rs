//! The shared test kit: a private redis-server per test, the simulated node, stream readers and a
//! wait-until helper.
#![allow(dead_code, clippy::unwrap_used)]

use actors::model::{Block, BlockHeader, Event, EventBody};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;
use tron_actors::local_redis::LocalRedis;
use tron_actors::store::{RedisStore, RedisStoreConfig};

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
            ..Default::default()
        })
        .unwrap()
    }

    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
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

/// Entries grouped by block number, in stream order within a block.
pub fn by_block(
    entries: &[Entry],
) -> std::collections::BTreeMap<u64, Vec<HashMap<String, String>>> {
    let mut out: std::collections::BTreeMap<u64, Vec<HashMap<String, String>>> = Default::default();
    for entry in entries {
        let fields = field_map(entry);
        let block: u64 = fields["block"].parse().unwrap();
        out.entry(block).or_default().push(fields);
    }
    out
}

/// The stream fields the daemon must write for a block, as maps.
pub fn expected_fields(block: &Block) -> Vec<HashMap<String, String>> {
    block
        .events
        .iter()
        .map(|e| {
            e.stream_fields(&block.header)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        })
        .collect()
}
