//! The Redis store: queues, leases, retries, dead letters, last_synced_block and the event
//! stream, all under one hash-tagged prefix (`{tron}` by default) so every script also runs on
//! Redis Cluster.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<p>:last_synced` | string | last_synced_block |
//! | `<p>:queue:priority`, `<p>:queue:backlog` | sorted set | blocks to do, score = number |
//! | `<p>:lease` | hash | block -> `<slot>\|<origin>` (`LeaseValue`): who holds it, where it goes back |
//! | `<p>:lease_deadline` | sorted set | block -> deadline (ms) |
//! | `<p>:retry` | sorted set | block -> when it is due (ms) |
//! | `<p>:retry_path`, `<p>:attempts` | hash | block -> queue to return to, failures so far |
//! | `<p>:dead` | hash | block -> dead-letter record (JSON) |
//! | `<p>:done` | bitmap | bit n = block n committed (about 10 MB for the whole chain) |
//! | `<p>:events` (or `stream.key`) | stream | the entries: events, `block`, `block_reverted`, `finalized` |
//! | `<p>:links` | sorted set | the links of committed blocks above the finalized block: score = number, member `<number>\|<hash>\|<parent_hash>` (`LinkMember`) |
//! | `<p>:finalized` | string | the finalized block as last published |
//! | `<p>:leader`, `<p>:epoch`, `<p>:instances` | string, counter, hash | the leadership `<instance>\|<epoch>`, the last epoch, the registry of instances |
//! | `<p>:stats` | hash | `blocks:<origin>`, `events:<origin>`, `last_block_time`, `reverted_blocks`, `forks` ([`StoreStats`]) |
//!
//! The lease hash is the only record of who holds a block: a slot's leases are the entries
//! whose value names it. Versions before this one also kept a set `<p>:owned:<slot>` per slot, which
//! the scripts had to name by concatenation; nothing reads those sets any more, so a daemon
//! upgraded in place resumes the leases an older one left from the lease hash alone, and the
//! leftover sets are inert (delete them at leisure).
//!
//! The names are written once, in `schema.rs`: the key names, the lease value, the link member
//! and the stats fields; the scripts are given every key they touch (`scripts.rs`).

mod connect;
pub mod memory;
mod schema;
mod scripts;
mod stats;

pub use connect::{permanent_failure, ConnectError, PermanentFailure, RedisConn};
pub use schema::Keys;
pub use stats::{StoreSnapshot, StoreStats};

use actors::chain::ErrorSource;
use actors::model::{finalized_entry_fields, reverted_entry_fields, Block};
use actors::slot::{Instance, SlotId};
use actors::store::{
    Advance, BlockLink, CommitOutcome, Committer, DeadLetter, FailOutcome, LeaderClaim, Leadership,
    Lease, Origin, Queue, Store, StoreError, Term,
};
use async_trait::async_trait;
use redis::AsyncCommands;
use schema::{LeaseValue, LinkMember, StatsField, TermValue};
use scripts::Scripts;
use std::collections::HashMap;
use std::time::Duration;

/// Blocks enqueued per ZADD when a gap is recorded (201,600 blocks = 21 commands, pipelined).
const ENQUEUE_CHUNK: usize = 10_000;
/// Leases reaped or retries promoted per maintenance round.
const MAINTENANCE_LIMIT: usize = 1_000;

/// Settings of the Redis store, built by `Config::store_config` (from `[redis]` and `[stream]`;
/// the timeouts without a config key are fixed there): there is no `Default`, so the numbers
/// exist once. Code without a user's config starts from `Config::default().store_config()`.
#[derive(Clone)]
pub struct RedisStoreConfig {
    /// `redis://` or `rediss://` URL (with Sentinel: its scheme, user, password and database).
    pub url: String,
    /// The ACL user (`redis.username`); `None` = the URL's.
    pub username: Option<String>,
    /// The ACL user's password (`redis.password`, or read from `redis.password_file`); empty =
    /// the URL's.
    pub password: crate::config::Secret,
    /// PEM file of the CA(s) that signed the server's certificate (`rediss://` only).
    pub ca_file: Option<std::path::PathBuf>,
    /// The sentinels (`redis.sentinels`); empty = connect to `url` itself.
    pub sentinels: Vec<(String, u16)>,
    /// The name the sentinels monitor the primary under (`redis.master_name`).
    pub master_name: String,
    /// After each commit, WAIT until this many replicas have it; 0 = do not wait.
    pub wait_replicas: u32,
    /// How long a commit waits for `wait_replicas` replicas.
    pub wait_timeout: Duration,
    /// The prefix of every key (`redis.prefix`).
    pub prefix: String,
    /// The event stream's key; `None` = `<prefix>:events`.
    pub stream_key: Option<String>,
    /// Events older than this are trimmed from the stream (7 days).
    pub retention: Duration,
    /// A command that takes longer fails (and is retried by the caller).
    pub response_timeout: Duration,
    /// Connecting takes at most this long.
    pub connect_timeout: Duration,
}

/// The URL is shown redacted: it may carry a password.
impl std::fmt::Debug for RedisStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStoreConfig")
            .field("url", &crate::config::redact_url(&self.url))
            .field("username", &self.username)
            .field("password", &self.password)
            .field("ca_file", &self.ca_file)
            .field("sentinels", &self.sentinels)
            .field("master_name", &self.master_name)
            .field("wait_replicas", &self.wait_replicas)
            .field("wait_timeout", &self.wait_timeout)
            .field("prefix", &self.prefix)
            .field("stream_key", &self.stream_key)
            .field("retention", &self.retention)
            .field("response_timeout", &self.response_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// [`Store`] over Redis, plus the reads and dead-letter actions of the CLI and the harnesses.
#[derive(Clone)]
pub struct RedisStore {
    conn: RedisConn,
    keys: Keys,
    retention_ms: u64,
    /// `WAIT <replicas> <timeout ms>` after each commit, when `redis.wait_replicas` > 0.
    wait: Option<(u32, u64)>,
    scripts: std::sync::Arc<Scripts>,
}

fn unavailable(error: redis::RedisError) -> StoreError {
    // `-OOM command not allowed when used memory > 'maxmemory'`, also from inside a script or
    // as one answer of a pipeline.
    let out_of_memory = error.code() == Some("OOM")
        || error
            .clone()
            .into_server_errors()
            .is_some_and(|errors| errors.iter().any(|(_, e)| e.code() == "OOM"));
    if out_of_memory {
        return StoreError::OutOfMemory(error.to_string());
    }
    StoreError::Client(ErrorSource::new(error))
}

/// Adds one stream entry's fields to a script's ARGV: their count (names and values), then each
/// name and value.
fn entry_args(args: &mut Vec<String>, fields: Vec<(&'static str, String)>) {
    args.push((fields.len() * 2).to_string());
    for (name, value) in fields {
        args.push(name.to_string());
        args.push(value);
    }
}

/// The refusal of a step fenced by `term`.
fn not_leader(term: Option<Term>) -> StoreError {
    StoreError::NotLeader {
        instance: term.map(|t| t.instance).unwrap_or_default(),
        epoch: term.map_or(0, |t| t.epoch),
    }
}

/// Reads a stored block number (`last_synced`, `finalized`).
fn parse_block(key: &str, value: Option<String>) -> Result<Option<u64>, StoreError> {
    value
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| StoreError::Protocol(format!("{key} holds {v:?}")))
        })
        .transpose()
}

impl RedisStore {
    /// Creates the store without connecting: the connection is made on first use and remade
    /// after a loss (with backoff), so a Redis that is down at start delays work, not the start.
    ///
    /// Every command opens its store here (the daemon, `status`, `dlq`, `verify`, `demo`, the
    /// harnesses), so TLS, the ACL user and Sentinel apply to all of them (`connect.rs`).
    pub fn new(config: &RedisStoreConfig) -> Result<Self, StoreError> {
        let keys = Keys::with_stream(&config.prefix, config.stream_key.as_deref());
        let scripts = std::sync::Arc::new(Scripts::new());
        let conn = connect::connect(config, Self::hand_back_every_lease(&keys, &scripts))
            .map_err(|error| StoreError::BadUrl(ErrorSource::new(error)))?;
        Ok(RedisStore {
            conn,
            keys,
            retention_ms: config.retention.as_millis() as u64,
            wait: (config.wait_replicas > 0).then(|| {
                (
                    config.wait_replicas,
                    config.wait_timeout.as_millis().max(1) as u64,
                )
            }),
            scripts,
        })
    }

    /// What a Sentinel failover runs on the new primary first: every lease back to its queue
    /// (`reap` of leases expiring before +inf), see `connect::SentinelRoute`.
    fn hand_back_every_lease(
        keys: &Keys,
        scripts: &std::sync::Arc<Scripts>,
    ) -> connect::FailoverHook {
        let keys = keys.clone();
        let scripts = scripts.clone();
        std::sync::Arc::new(move |mut manager| {
            let keys = keys.clone();
            let scripts = scripts.clone();
            Box::pin(async move {
                let mut total = 0;
                loop {
                    let reaped: usize = scripts
                        .reap
                        .invocation(&keys)
                        .arg("+inf")
                        .arg(MAINTENANCE_LIMIT)
                        .invoke_async(&mut manager)
                        .await?;
                    total += reaped;
                    if reaped < MAINTENANCE_LIMIT {
                        break;
                    }
                }
                tracing::info!(
                    leases = total,
                    "Leases handed back to their queues after the failover"
                );
                Ok(())
            })
        })
    }

    /// Connects now and PINGs, to tell at start a configuration that can never connect (a
    /// certificate not trusted, credentials refused: [`PermanentFailure`]) from a Redis that
    /// is only down (`Ok(Err(..))`: the daemon starts and waits for it).
    pub async fn check_connection(
        &self,
        limit: Duration,
    ) -> Result<Result<(), StoreError>, PermanentFailure> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        match tokio::time::timeout(limit, ping).await {
            Ok(Ok(_)) => Ok(Ok(())),
            Ok(Err(error)) => match permanent_failure(&error) {
                Some(failure) => Err(failure),
                None => Ok(Err(unavailable(error))),
            },
            Err(_) => Ok(Err(StoreError::Unavailable(format!(
                "no answer within {limit:?}"
            )))),
        }
    }

    /// Its key names.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A connection handle for reads outside the Store protocol (CLI, tests).
    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    /// Whether Redis answers.
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
            HashMap<u64, String>,
            HashMap<String, u64>,
            u64,
            Option<u64>,
            Option<String>,
            HashMap<String, u64>,
        );
        let (
            last,
            priority,
            backlog,
            retry,
            dead,
            leases,
            stats,
            stream_len,
            finalized,
            leader,
            instances,
        ): Reply = redis::pipe()
            .get(self.keys.last_synced())
            .zcard(self.keys.queue(Queue::Priority))
            .zcard(self.keys.queue(Queue::Backlog))
            .zcard(self.keys.retry())
            .hlen(self.keys.dead())
            .hgetall(self.keys.lease())
            .hgetall(self.keys.stats())
            .xlen(self.keys.events())
            .get(self.keys.finalized())
            .get(self.keys.leader())
            .hgetall(self.keys.instances())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut leases_by_slot = std::collections::BTreeMap::new();
        for value in leases.values() {
            let slot = LeaseValue::parse(value).slot.to_string();
            *leases_by_slot.entry(slot).or_insert(0u64) += 1;
        }
        Ok(StoreSnapshot {
            last_synced: last,
            priority,
            backlog,
            retry,
            dead,
            leases_by_slot,
            stats: StoreStats::parse(&stats),
            stream_len,
            finalized,
            leader: leader.and_then(|value| {
                let (instance, epoch) = value.rsplit_once('|')?;
                Some((instance.to_string(), epoch.parse().ok()?))
            }),
            instances: instances.into_iter().collect(),
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
        let mut invocation = self.scripts.dead_letters.invocation(&self.keys);
        invocation.arg(action);
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

    /// What has been published (the stats hash).
    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut conn = self.conn.clone();
        let hash: HashMap<String, u64> =
            conn.hgetall(self.keys.stats()).await.map_err(unavailable)?;
        Ok(StoreStats::parse(&hash))
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn last_synced(&self) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn.clone();
        let key = self.keys.last_synced();
        let value: Option<String> = conn.get(&key).await.map_err(unavailable)?;
        parse_block(&key, value)
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
        let (moved, current): (i8, String) = self
            .scripts
            .advance
            .invocation(&self.keys)
            .arg(expected)
            .arg(advance.head)
            .arg(advance.lease_deadline_ms)
            .arg(advance.tip_slot.to_string())
            .arg(Origin::Tip.as_str())
            .arg(TermValue::of(advance.term))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if moved == 1 {
            Ok(())
        } else if moved == -3 {
            Err(not_leader(advance.term))
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
            .invocation(&self.keys)
            .arg(max)
            .arg(deadline_ms)
            .arg(slot.to_string())
            .arg(queue.origin().as_str())
            .arg(order)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn owned_leases(&self, slot: SlotId) -> Result<Vec<Lease>, StoreError> {
        let mut conn = self.conn.clone();
        let all: HashMap<String, String> =
            conn.hgetall(self.keys.lease()).await.map_err(unavailable)?;
        let mut leases = Vec::new();
        for (block, value) in &all {
            let value = LeaseValue::parse(value);
            if !value.is_held_by(slot) {
                continue;
            }
            let block = block
                .parse()
                .map_err(|_| StoreError::Protocol(format!("lease on {block:?}")))?;
            let origin = value
                .origin()
                .ok_or_else(|| StoreError::Protocol(format!("lease value {value}")))?;
            leases.push(Lease { block, origin });
        }
        leases.sort_by_key(|l| std::cmp::Reverse(l.block));
        Ok(leases)
    }

    async fn heartbeat(&self, slot: SlotId, deadline_ms: u64) -> Result<usize, StoreError> {
        let mut conn = self.conn.clone();
        self.scripts
            .heartbeat
            .invocation(&self.keys)
            .arg(slot.to_string())
            .arg(deadline_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn commit_by(
        &self,
        origin: Origin,
        block: &Block,
        now_ms: u64,
        by: Committer,
    ) -> Result<CommitOutcome, StoreError> {
        let mut conn = self.conn.clone();
        let minid = now_ms.saturating_sub(self.retention_ms);
        let script = &self.scripts.commit;
        // EVALSHA built as one command: its thousands of arguments go into one buffer, where a
        // ScriptInvocation allocates each on its own (a fifth of the daemon's time, callgrind).
        let keys = script.key_names(&self.keys);
        let mut cmd = redis::cmd("EVALSHA");
        let header = &block.header;
        cmd.arg(script.hash())
            .arg(keys.len())
            .arg(&keys)
            .arg(header.number)
            .arg(minid)
            .arg(header.timestamp_ms)
            .arg(&header.hash)
            .arg(&header.parent_hash)
            .arg(StatsField::Blocks(origin).name())
            .arg(StatsField::Events(origin).name())
            .arg(StatsField::LastBlockTime.name())
            .arg(TermValue::of(by.term))
            .arg(if by.instance == Instance::NONE {
                String::new()
            } else {
                StatsField::BlocksBy(by.instance).name()
            })
            .arg(block.events.len());
        let events = block.events.iter().map(|e| e.stream_fields(header.number));
        for fields in events.chain([header.block_entry_fields(block.events.len())]) {
            cmd.arg(fields.len() * 2);
            for (name, value) in fields {
                cmd.arg(name).arg(value);
            }
        }
        // With redis.wait_replicas, WAIT goes in the same pipeline, so on the same connection
        // right after the script: it returns once that many replicas have everything this
        // connection wrote, the commit included.
        let mut pipe = redis::pipe();
        pipe.add_command(cmd);
        if let Some((replicas, timeout_ms)) = self.wait {
            pipe.cmd("WAIT").arg(replicas).arg(timeout_ms);
        }
        let answer = match pipe.query_async::<Vec<redis::Value>>(&mut conn).await {
            Err(error)
                if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                // A restarted (or flushed) Redis, or a new primary, has not got the script: load
                // it, ask again.
                script
                    .invocation(&self.keys)
                    .load_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                pipe.query_async(&mut conn).await
            }
            other => other,
        };
        let mut answers = answer.map_err(unavailable)?.into_iter();
        let (status, value): (i64, u64) = redis::from_redis_value(
            answers
                .next()
                .ok_or_else(|| StoreError::Protocol("commit script said nothing".into()))?,
        )
        .map_err(|e| StoreError::Undecodable {
            what: "the commit script's answer".into(),
            source: ErrorSource::new(e),
        })?;
        if let (Some((replicas, timeout_ms)), Some(acked)) = (self.wait, answers.next()) {
            let acked: u64 =
                redis::from_redis_value(acked).map_err(|e| StoreError::Undecodable {
                    what: "WAIT's answer".into(),
                    source: ErrorSource::new(e),
                })?;
            if status != -2 && acked < u64::from(replicas) {
                // Not acknowledged: the caller retries the block, whose commit then writes
                // nothing (it is done) and waits again.
                return Err(StoreError::Unavailable(format!(
                    "block {} committed on the primary but only {acked} of {replicas} replicas \
                     had it within {timeout_ms} ms (redis.wait_replicas, redis.wait_timeout_ms)",
                    header.number
                )));
            }
        }
        match status {
            -3 => Err(not_leader(by.term)),
            -2 => Ok(CommitOutcome::Unlinked { at: value }),
            -1 => Ok(CommitOutcome::AlreadyDone),
            added if added >= 0 => Ok(CommitOutcome::Published {
                events: added as usize,
                attempt: u32::try_from(value)
                    .map_err(|_| StoreError::Protocol(format!("{value} prior failures")))?
                    + 1,
            }),
            other => Err(StoreError::Protocol(format!(
                "commit script said {other}, {value}"
            ))),
        }
    }

    async fn links(&self, from: u64, to: u64) -> Result<Vec<BlockLink>, StoreError> {
        let mut conn = self.conn.clone();
        // Scores are doubles: past 2^53 a bound is no block number, and u64::MAX means "all".
        let to = if to >= 1 << 53 {
            "+inf".to_string()
        } else {
            to.to_string()
        };
        let members: Vec<String> = conn
            .zrangebyscore(self.keys.links(), from, to)
            .await
            .map_err(unavailable)?;
        members
            .iter()
            .map(|member| {
                LinkMember::parse(member)
                    .map(|m| m.link())
                    .ok_or_else(|| StoreError::Protocol(format!("link {member:?}")))
            })
            .collect()
    }

    async fn revert_in(
        &self,
        orphans: &[BlockLink],
        now_ms: u64,
        term: Option<Term>,
    ) -> Result<Vec<u64>, StoreError> {
        if orphans.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut args = vec![
            now_ms.saturating_sub(self.retention_ms).to_string(),
            StatsField::RevertedBlocks.name(),
            StatsField::Forks.name(),
            TermValue::of(term),
        ];
        for orphan in orphans {
            args.push(orphan.number.to_string());
            args.push(orphan.hash.clone());
            entry_args(
                &mut args,
                reverted_entry_fields(orphan.number, &orphan.hash),
            );
        }
        let reverted: Vec<i64> = self
            .scripts
            .revert
            .invocation(&self.keys)
            .arg(args)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if reverted == [-3] {
            return Err(not_leader(term));
        }
        reverted
            .into_iter()
            .map(|b| u64::try_from(b).map_err(|_| StoreError::Protocol(format!("reverted {b}"))))
            .collect()
    }

    async fn finalized(&self) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn.clone();
        let key = self.keys.finalized();
        let value: Option<String> = conn.get(&key).await.map_err(unavailable)?;
        parse_block(&key, value)
    }

    async fn finalize_in(
        &self,
        block: u64,
        hash: &str,
        now_ms: u64,
        term: Option<Term>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let mut args = vec![
            block.to_string(),
            now_ms.saturating_sub(self.retention_ms).to_string(),
            TermValue::of(term),
        ];
        entry_args(&mut args, finalized_entry_fields(block, hash));
        let moved: i64 = self
            .scripts
            .finalize
            .invocation(&self.keys)
            .arg(args)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        match moved {
            -3 => Err(not_leader(term)),
            moved => Ok(moved == 1),
        }
    }

    async fn lead(&self, claim: &LeaderClaim) -> Result<Leadership, StoreError> {
        let mut conn = self.conn.clone();
        let (leads, who, epoch, ttl): (u8, String, u64, i64) = self
            .scripts
            .lead
            .invocation(&self.keys)
            .arg(claim.instance.as_str())
            .arg(claim.held.map(|e| e.to_string()).unwrap_or_default())
            .arg(claim.ttl_ms)
            .arg(claim.now_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let instance = Instance::new(&who)
            .map_err(|e| StoreError::Protocol(format!("{}: {e}", self.keys.leader())))?;
        let term = Term { instance, epoch };
        Ok(if leads == 1 {
            Leadership::Leader(term)
        } else {
            Leadership::Follower {
                leader: term,
                expires_in_ms: u64::try_from(ttl).unwrap_or(0),
            }
        })
    }

    async fn resign(&self, term: Option<Term>, instance: Instance) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.scripts
            .resign
            .invocation(&self.keys)
            .arg(TermValue::of(term))
            .arg(instance.as_str())
            .invoke_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn fail(
        &self,
        block: u64,
        error: &str,
        now_ms: u64,
        delays_ms: &[u64],
    ) -> Result<FailOutcome, StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.fail.invocation(&self.keys);
        invocation.arg(block).arg(error).arg(now_ms);
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
        let mut invocation = self.scripts.release.invocation(&self.keys);
        invocation.arg(slot.to_string());
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
            .invocation(&self.keys)
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
            .invocation(&self.keys)
            .arg(now_ms)
            .arg(MAINTENANCE_LIMIT)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }
}
