//! The Redis store: queues, leases, retries, dead letters, last_synced_block and the event
//! stream, all under one hash-tagged prefix (`{tron}` by default) so every script also runs on
//! Redis Cluster.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<p>:last_synced` | string | last_synced_block |
//! | `<p>:queue:priority`, `<p>:queue:backlog` | sorted set | blocks to do, score = number |
//! | `<p>:lease` | hash | block -> `<slot>\|<path>` |
//! | `<p>:lease_deadline` | sorted set | block -> deadline (ms) |
//! | `<p>:owned:<slot>` | set | the blocks a slot holds |
//! | `<p>:retry` | sorted set | block -> when it is due (ms) |
//! | `<p>:retry_path`, `<p>:attempts` | hash | block -> queue to return to, failures so far |
//! | `<p>:dead` | hash | block -> dead-letter record (JSON) |
//! | `<p>:done` | bitmap | bit n = block n committed (about 10 MB for the whole chain) |
//! | `<p>:events` (or `stream.key`) | stream | the events |
//! | `<p>:stats` | hash | blocks and events published per path |

mod scripts;

use actors::chain::ErrorSource;
use actors::model::Block;
use actors::slot::SlotId;
use actors::store::{
    Advance, CommitOutcome, DeadLetter, FailOutcome, Lease, Origin, Queue, Store, StoreError,
};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use scripts::Scripts;
use std::time::Duration;

/// Blocks enqueued per ZADD when a gap is recorded (201,600 blocks = 21 commands, pipelined).
const ENQUEUE_CHUNK: usize = 10_000;
/// Leases reaped or retries promoted per maintenance round.
const MAINTENANCE_LIMIT: usize = 1_000;

/// Key names under one prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    pub prefix: String,
    /// The event stream: `<prefix>:events` unless `stream.key` names another.
    events: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
            events: format!("{prefix}:events"),
        }
    }

    /// The same keys with the event stream under its own name (`stream.key`).
    pub fn with_stream(prefix: &str, stream: Option<&str>) -> Self {
        let mut keys = Keys::new(prefix);
        if let Some(stream) = stream.filter(|s| !s.is_empty()) {
            keys.events = stream.to_string();
        }
        keys
    }
    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }
    pub fn last_synced(&self) -> String {
        self.key("last_synced")
    }
    pub fn queue(&self, queue: Queue) -> String {
        match queue {
            Queue::Priority => self.key("queue:priority"),
            Queue::Backlog => self.key("queue:backlog"),
        }
    }
    pub fn lease(&self) -> String {
        self.key("lease")
    }
    pub fn lease_deadline(&self) -> String {
        self.key("lease_deadline")
    }
    pub fn owned(&self, slot: SlotId) -> String {
        self.key(&format!("owned:{slot}"))
    }
    pub fn retry(&self) -> String {
        self.key("retry")
    }
    pub fn retry_path(&self) -> String {
        self.key("retry_path")
    }
    pub fn attempts(&self) -> String {
        self.key("attempts")
    }
    pub fn dead(&self) -> String {
        self.key("dead")
    }
    pub fn done(&self) -> String {
        self.key("done")
    }
    pub fn events(&self) -> String {
        self.events.clone()
    }
    pub fn stats(&self) -> String {
        self.key("stats")
    }
}

/// Settings of the Redis store, built by `Config::store_config` (from `[redis]` and `[stream]`;
/// the timeouts without a config key are fixed there): there is no `Default`, so the numbers
/// exist once. Code without a user's config starts from `Config::default().store_config()`.
#[derive(Clone, Debug)]
pub struct RedisStoreConfig {
    pub url: String,
    pub prefix: String,
    /// The event stream's key; `None` = `<prefix>:events`.
    pub stream_key: Option<String>,
    /// Events older than this are trimmed from the stream (7 days).
    pub retention: Duration,
    /// A command that takes longer fails (and is retried by the caller).
    pub response_timeout: Duration,
    pub connect_timeout: Duration,
}

/// A point-in-time view of the store.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StoreSnapshot {
    pub last_synced: Option<u64>,
    pub priority: u64,
    pub backlog: u64,
    pub retry: u64,
    pub dead: u64,
    /// Leases held per slot name.
    pub leases_by_slot: std::collections::BTreeMap<String, u64>,
    /// `blocks:<path>`, `events:<path>`, `last_block_time`.
    pub stats: std::collections::HashMap<String, u64>,
    pub stream_len: u64,
}

impl StoreSnapshot {
    pub fn leased(&self) -> u64 {
        self.leases_by_slot.values().sum()
    }
}

#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    keys: Keys,
    retention_ms: u64,
    scripts: std::sync::Arc<Scripts>,
}

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::Client(ErrorSource::new(error))
}

impl RedisStore {
    /// Creates the store without connecting: the connection is made on first use and remade
    /// after a loss (with backoff), so a Redis that is down at start delays work, not the start.
    pub fn new(config: &RedisStoreConfig) -> Result<Self, StoreError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| StoreError::BadUrl(ErrorSource::new(e)))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.connect_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn =
            ConnectionManager::new_lazy_with_config(client, manager_config).map_err(unavailable)?;
        Ok(RedisStore {
            conn,
            keys: Keys::with_stream(&config.prefix, config.stream_key.as_deref()),
            retention_ms: config.retention.as_millis() as u64,
            scripts: std::sync::Arc::new(Scripts::new()),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A connection handle for reads outside the Store protocol (CLI, tests).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Everything /metrics and `status` show from Redis, read in one pipeline.
    pub async fn snapshot(&self) -> Result<StoreSnapshot, StoreError> {
        let mut conn = self.conn.clone();
        type Reply = (
            Option<u64>,
            u64,
            u64,
            u64,
            u64,
            std::collections::HashMap<u64, String>,
            std::collections::HashMap<String, u64>,
            u64,
        );
        let (last, priority, backlog, retry, dead, leases, stats, stream_len): Reply =
            redis::pipe()
                .get(self.keys.last_synced())
                .zcard(self.keys.queue(Queue::Priority))
                .zcard(self.keys.queue(Queue::Backlog))
                .zcard(self.keys.retry())
                .hlen(self.keys.dead())
                .hgetall(self.keys.lease())
                .hgetall(self.keys.stats())
                .xlen(self.keys.events())
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        let mut leases_by_slot = std::collections::BTreeMap::new();
        for value in leases.values() {
            let slot = value.split('|').next().unwrap_or_default().to_string();
            *leases_by_slot.entry(slot).or_insert(0u64) += 1;
        }
        Ok(StoreSnapshot {
            last_synced: last,
            priority,
            backlog,
            retry,
            dead,
            leases_by_slot,
            stats,
            stream_len,
        })
    }

    /// Deletes every key under the prefix (the demo starts clean); returns how many.
    pub async fn delete_all_keys(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        // Braces are not special in Redis glob patterns; a prefix with * ? [ ] would need escaping.
        let pattern = format!("{}:*", self.keys.prefix);
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if !keys.is_empty() {
                removed += conn.del::<_, u64>(&keys).await.map_err(unavailable)?;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    /// Every dead letter, lowest block first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let mut conn = self.conn.clone();
        let raw: Vec<(u64, String)> = conn.hgetall(self.keys.dead()).await.map_err(unavailable)?;
        let mut letters = raw
            .into_iter()
            .map(|(block, json)| {
                serde_json::from_str::<DeadLetter>(&json).map_err(|e| StoreError::Undecodable {
                    what: format!("dead letter of block {block}"),
                    source: ErrorSource::new(e),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        letters.sort_by_key(|l| l.block);
        Ok(letters)
    }

    /// Puts dead-lettered blocks back to work (all when `blocks` is empty); returns those moved.
    pub async fn requeue_dead(&self, blocks: &[u64]) -> Result<Vec<u64>, StoreError> {
        self.act_on_dead("requeue", blocks).await
    }

    /// Deletes dead letters (all when `blocks` is empty); returns those deleted.
    pub async fn purge_dead(&self, blocks: &[u64]) -> Result<Vec<u64>, StoreError> {
        self.act_on_dead("purge", blocks).await
    }

    async fn act_on_dead(&self, action: &str, blocks: &[u64]) -> Result<Vec<u64>, StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.dead_letters.prepare_invoke();
        invocation
            .key(self.keys.dead())
            .key(self.keys.attempts())
            .arg(&self.keys.prefix)
            .arg(action);
        for block in blocks {
            invocation.arg(*block);
        }
        let mut done: Vec<u64> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        done.sort_unstable();
        Ok(done)
    }

    /// Number of blocks in a queue.
    pub async fn queue_len(&self, queue: Queue) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        conn.zcard(self.keys.queue(queue))
            .await
            .map_err(unavailable)
    }

    /// Whether `block` is marked done.
    pub async fn is_done(&self, block: u64) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        conn.getbit(self.keys.done(), block as usize)
            .await
            .map_err(unavailable)
    }

    /// The stats hash: `blocks:<path>` and `events:<path>` counters.
    pub async fn stats(&self) -> Result<std::collections::HashMap<String, u64>, StoreError> {
        let mut conn = self.conn.clone();
        conn.hgetall(self.keys.stats()).await.map_err(unavailable)
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn last_synced(&self) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn.clone();
        let value: Option<String> = conn
            .get(self.keys.last_synced())
            .await
            .map_err(unavailable)?;
        value
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    StoreError::Protocol(format!("{} holds {v:?}", self.keys.last_synced()))
                })
            })
            .transpose()
    }

    async fn advance(&self, advance: &Advance) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        if let Some((queue, from, to)) = advance.enqueue {
            // Idempotent, so it goes first: a crash before the move below re-enqueues the same
            // blocks on the next start, and nothing is lost.
            let key = self.keys.queue(queue);
            let blocks: Vec<u64> = (from..=to).collect();
            let mut pipe = redis::pipe();
            for chunk in blocks.chunks(ENQUEUE_CHUNK) {
                let members: Vec<(u64, u64)> = chunk.iter().map(|b| (*b, *b)).collect();
                pipe.zadd_multiple(&key, &members).ignore();
            }
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        let expected = advance
            .expected_last
            .map(|b| b.to_string())
            .unwrap_or_default();
        let (moved, current): (u8, String) = self
            .scripts
            .advance
            .key(self.keys.last_synced())
            .key(self.keys.lease())
            .key(self.keys.lease_deadline())
            .key(self.keys.done())
            .arg(&self.keys.prefix)
            .arg(expected)
            .arg(advance.head)
            .arg(advance.lease_deadline_ms)
            .arg(advance.tip_slot.to_string())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if moved == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                expected: advance.expected_last,
                found: current.parse().ok(),
            })
        }
    }

    async fn claim(
        &self,
        queue: Queue,
        slot: SlotId,
        max: usize,
        deadline_ms: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let mut conn = self.conn.clone();
        let order = match queue {
            Queue::Backlog => "max",
            Queue::Priority => "min",
        };
        self.scripts
            .claim
            .key(self.keys.queue(queue))
            .key(self.keys.done())
            .key(self.keys.lease())
            .key(self.keys.lease_deadline())
            .key(self.keys.owned(slot))
            .arg(max)
            .arg(deadline_ms)
            .arg(slot.to_string())
            .arg(queue.as_str())
            .arg(order)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn owned_leases(&self, slot: SlotId) -> Result<Vec<Lease>, StoreError> {
        let mut conn = self.conn.clone();
        let flat: Vec<String> = self
            .scripts
            .owned
            .key(self.keys.owned(slot))
            .key(self.keys.lease())
            .arg(slot.to_string())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut leases = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks(2) {
            let [block, origin] = pair else {
                return Err(StoreError::Protocol("odd lease list".into()));
            };
            let block = block
                .parse()
                .map_err(|_| StoreError::Protocol(format!("lease on {block:?}")))?;
            let origin = Origin::parse(origin)
                .ok_or_else(|| StoreError::Protocol(format!("lease path {origin:?}")))?;
            leases.push(Lease { block, origin });
        }
        leases.sort_by_key(|l| std::cmp::Reverse(l.block));
        Ok(leases)
    }

    async fn heartbeat(&self, slot: SlotId, deadline_ms: u64) -> Result<usize, StoreError> {
        let mut conn = self.conn.clone();
        self.scripts
            .heartbeat
            .key(self.keys.owned(slot))
            .key(self.keys.lease())
            .key(self.keys.lease_deadline())
            .arg(slot.to_string())
            .arg(deadline_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn commit(
        &self,
        origin: Origin,
        block: &Block,
        now_ms: u64,
    ) -> Result<CommitOutcome, StoreError> {
        let mut conn = self.conn.clone();
        let minid = now_ms.saturating_sub(self.retention_ms);
        let script = &self.scripts.commit;
        // EVALSHA built as one command: its thousands of arguments go into one buffer, where a
        // ScriptInvocation allocates each on its own (a fifth of the daemon's time, callgrind).
        let keys = [
            self.keys.done(),
            self.keys.events(),
            self.keys.lease(),
            self.keys.lease_deadline(),
            self.keys.attempts(),
            self.keys.retry(),
            self.keys.retry_path(),
            self.keys.stats(),
        ];
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash())
            .arg(keys.len())
            .arg(&keys)
            .arg(block.header.number)
            .arg(&self.keys.prefix)
            .arg(origin.as_str())
            .arg(minid)
            .arg(block.header.timestamp_ms)
            .arg(block.events.len());
        for event in &block.events {
            let fields = event.stream_fields(&block.header);
            cmd.arg(fields.len() * 2);
            for (name, value) in fields {
                cmd.arg(name).arg(value);
            }
        }
        let answer = match cmd.query_async::<(i64, u32)>(&mut conn).await {
            Err(error)
                if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                // A restarted (or flushed) Redis has forgotten the script: load it, ask again.
                script
                    .prepare_invoke()
                    .load_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                cmd.query_async(&mut conn).await
            }
            other => other,
        };
        let (added, prior_failures) = answer.map_err(unavailable)?;
        Ok(if added < 0 {
            CommitOutcome::AlreadyDone
        } else {
            CommitOutcome::Published {
                events: added as usize,
                attempt: prior_failures + 1,
            }
        })
    }

    async fn fail(
        &self,
        block: u64,
        error: &str,
        now_ms: u64,
        delays_ms: &[u64],
    ) -> Result<FailOutcome, StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.fail.prepare_invoke();
        invocation
            .key(self.keys.done())
            .key(self.keys.attempts())
            .key(self.keys.retry())
            .key(self.keys.retry_path())
            .key(self.keys.dead())
            .arg(block)
            .arg(&self.keys.prefix)
            .arg(error)
            .arg(now_ms);
        for delay in delays_ms {
            invocation.arg(*delay);
        }
        let (what, attempts, due): (String, u32, u64) = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        match what.as_str() {
            "retry" => Ok(FailOutcome::Retry {
                attempt: attempts,
                due_ms: due,
            }),
            "dead" => Ok(FailOutcome::Dead { attempts }),
            "done" => Ok(FailOutcome::AlreadyDone),
            other => Err(StoreError::Protocol(format!("fail script said {other:?}"))),
        }
    }

    async fn release(&self, slot: SlotId, blocks: &[u64]) -> Result<usize, StoreError> {
        if blocks.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.release.prepare_invoke();
        invocation
            .key(self.keys.done())
            .key(self.keys.lease())
            .arg(&self.keys.prefix)
            .arg(slot.to_string());
        for block in blocks {
            invocation.arg(*block);
        }
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn reap_expired(&self, now_ms: u64) -> Result<usize, StoreError> {
        let mut conn = self.conn.clone();
        self.scripts
            .reap
            .key(self.keys.lease_deadline())
            .key(self.keys.done())
            .key(self.keys.lease())
            .arg(&self.keys.prefix)
            .arg(now_ms)
            .arg(MAINTENANCE_LIMIT)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn promote_due_retries(&self, now_ms: u64) -> Result<usize, StoreError> {
        let mut conn = self.conn.clone();
        self.scripts
            .promote
            .key(self.keys.retry())
            .key(self.keys.retry_path())
            .arg(now_ms)
            .arg(&self.keys.prefix)
            .arg(MAINTENANCE_LIMIT)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }
}
