//! Credits the transfers of tron-actors' event stream, as docs/CONSUMERS.md explains: the Rust
//! twin of `examples/consumer.py`, with the same arguments and the same output.
//!
//! A consumer group gives the reader a durable place in the stream and keeps what it was handed
//! but did not acknowledge (its pending entries), so that a crashed reader's entries are taken
//! over by another one (XAUTOCLAIM). Each entry is applied and acknowledged in one MULTI: the
//! ledger (here a Redis hash next to the stream; in real life your database) and the
//! acknowledgement move together.
//!
//! - a transfer (trc20, trc721, trx, trc10, internal) is credited under its key `<tx>_<i>`, so
//!   applying it twice credits it once;
//! - `block_reverted` uncredits everything credited for that block (its new version follows);
//! - `finalized` marks every credit at or below its block as final;
//! - `block`, `approval` and `log` entries are acknowledged and otherwise ignored.
//!
//! When no entry comes for --idle-exit-ms, it prints the ledger (one JSON object per credited
//! transfer, with "final") and exits 0.
//!
//! ```text
//! cargo run --example consumer -- --redis redis://127.0.0.1:6379 --group deposits --consumer c1
//! ```

use clap::Parser;
use redis::aio::MultiplexedConnection;
use std::collections::BTreeMap;

type Error = Box<dyn std::error::Error>;
/// One entry: its id and its fields, as flat `[name, value, ...]`.
type Entry = (String, Vec<String>);

const TRANSFERS: [&str; 5] = ["trc20", "trc721", "trx", "trc10", "internal"];
const FIELDS: [&str; 9] = [
    "block", "tx", "i", "kind", "contract", "from", "to", "value", "token",
];
/// Stream ids are the Redis server's clock at publication; a block's timestamp is its
/// producer's. Start this much earlier than the block's time when finding one's place.
const CLOCK_MARGIN_MS: u64 = 60_000;
const BLOCK_INTERVAL_MS: u64 = 3_000;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    #[arg(long, default_value = "{tron}:events")]
    stream: String,
    #[arg(long, default_value = "deposits")]
    group: String,
    #[arg(long, default_value = "consumer-1")]
    consumer: String,
    /// Key prefix of the example's ledger; same hash tag as the stream.
    #[arg(long, default_value = "{tron}:example-ledger")]
    ledger: String,
    /// A new group starts at this block (an existing group resumes).
    #[arg(long)]
    from_block: Option<u64>,
    /// Take over entries another consumer left pending this long.
    #[arg(long, default_value_t = 60_000)]
    claim_idle_ms: u64,
    #[arg(long, default_value_t = 2_000)]
    idle_exit_ms: u64,
    /// For tests: exit 3 after applying this many entries, as a crash would.
    #[arg(long)]
    crash_after: Option<u64>,
}

fn fields(flat: &[String]) -> BTreeMap<&str, &str> {
    flat.chunks_exact(2)
        .map(|kv| (kv[0].as_str(), kv[1].as_str()))
        .collect()
}

fn id_tuple(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// The id to start a group at so that no entry of a block >= `number` is missed: a block is
/// published after its timestamp, and timestamps grow by at least 3 s a block, so the `block`
/// entry of any block k <= number bounds it from below. Searched newest first.
async fn start_id_for_block(
    conn: &mut MultiplexedConnection,
    stream: &str,
    number: u64,
) -> Result<String, Error> {
    let mut end = "+".to_string();
    loop {
        let page: Vec<Entry> = redis::cmd("XREVRANGE")
            .arg(stream)
            .arg(&end)
            .arg("-")
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        let Some((last_id, _)) = page.last() else {
            return Ok("0".into());
        };
        for (_, flat) in &page {
            let f = fields(flat);
            let block: u64 = f
                .get("block")
                .and_then(|b| b.parse().ok())
                .unwrap_or(u64::MAX);
            if f.get("kind") == Some(&"block") && block <= number {
                let time: u64 = f
                    .get("block_time")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                let at = time + (number - block) * BLOCK_INTERVAL_MS;
                return Ok(format!("{}-0", at.saturating_sub(CLOCK_MARGIN_MS)));
            }
        }
        end = format!("({last_id}");
    }
}

async fn ensure_group(conn: &mut MultiplexedConnection, args: &Args) -> Result<(), Error> {
    let start = match args.from_block {
        Some(number) => start_id_for_block(conn, &args.stream, number).await?,
        None => "0".into(),
    };
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&args.stream)
        .arg(&args.group)
        .arg(&start)
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Ok(()) => eprintln!("created group {} at {start}", args.group),
        Err(e) if e.code() == Some("BUSYGROUP") => {}
        Err(e) => return Err(e.into()),
    }
    warn_if_trimmed(conn, args).await
}

/// A group whose next entry was trimmed (older than the stream's retention) lost entries.
async fn warn_if_trimmed(conn: &mut MultiplexedConnection, args: &Args) -> Result<(), Error> {
    let groups: Vec<BTreeMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&args.stream)
        .query_async(conn)
        .await?;
    let first: Vec<Entry> = redis::cmd("XRANGE")
        .arg(&args.stream)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    for group in groups {
        let text = |key: &str| -> Result<String, Error> {
            let value = group
                .get(key)
                .ok_or(format!("XINFO GROUPS without {key}"))?;
            Ok(redis::from_redis_value_ref(value)?)
        };
        let (name, delivered) = (text("name")?, text("last-delivered-id")?);
        if let (true, Some((first_id, _))) = (name == args.group, first.first()) {
            if delivered != "0-0" && id_tuple(&delivered) < id_tuple(first_id) {
                eprintln!(
                    "warning: group {name} stopped at {delivered}, the stream now starts at \
                     {first_id}: entries in between were trimmed before it read them"
                );
            }
        }
    }
    Ok(())
}

struct Ledger {
    conn: MultiplexedConnection,
    stream: String,
    group: String,
    prefix: String,
    from_block: Option<u64>,
    crash_after: Option<u64>,
    applied: u64,
}

impl Ledger {
    fn credits(&self) -> String {
        format!("{}:credits", self.prefix) // <tx>_<i> -> the transfer (JSON)
    }
    fn finalized(&self) -> String {
        format!("{}:finalized", self.prefix) // the highest finalized block seen
    }
    fn by_block(&self, number: u64) -> String {
        format!("{}:block:{number}", self.prefix) // the keys credited for that block
    }

    async fn apply(&mut self, id: &str, flat: &[String]) -> Result<(), Error> {
        let f = fields(flat);
        let kind = f.get("kind").copied().unwrap_or("");
        let number: u64 = f.get("block").and_then(|b| b.parse().ok()).unwrap_or(0);
        let mut pipe = redis::pipe();
        pipe.atomic();
        if TRANSFERS.contains(&kind) && self.from_block.is_none_or(|from| number >= from) {
            let key = format!(
                "{}_{}",
                f.get("tx").unwrap_or(&""),
                f.get("i").unwrap_or(&"")
            );
            let transfer: serde_json::Map<String, serde_json::Value> = FIELDS
                .iter()
                .map(|k| (k.to_string(), f.get(k).copied().unwrap_or("").into()))
                .collect();
            pipe.hset(
                self.credits(),
                &key,
                serde_json::Value::Object(transfer).to_string(),
            );
            pipe.sadd(self.by_block(number), &key);
        } else if kind == "block_reverted" {
            let keys: Vec<String> = redis::cmd("SMEMBERS")
                .arg(self.by_block(number))
                .query_async(&mut self.conn)
                .await?;
            for key in keys {
                let credited: Option<String> = redis::cmd("HGET")
                    .arg(self.credits())
                    .arg(&key)
                    .query_async(&mut self.conn)
                    .await?;
                // The same transaction may already stand in another block of the new branch.
                let block_of = |json: &str| -> Option<u64> {
                    let value: serde_json::Value = serde_json::from_str(json).ok()?;
                    value.get("block")?.as_str()?.parse().ok()
                };
                if credited.as_deref().and_then(block_of) == Some(number) {
                    pipe.hdel(self.credits(), &key);
                }
            }
            pipe.del(self.by_block(number));
        } else if kind == "finalized" {
            let current: Option<u64> = redis::cmd("GET")
                .arg(self.finalized())
                .query_async(&mut self.conn)
                .await?;
            pipe.set(self.finalized(), current.unwrap_or(0).max(number));
        }
        pipe.cmd("XACK").arg(&self.stream).arg(&self.group).arg(id);
        pipe.query_async::<()>(&mut self.conn).await?;
        self.applied += 1;
        if self.crash_after.is_some_and(|n| self.applied >= n) {
            // No cleanup, no acknowledgement of what was read but not applied.
            std::process::exit(3);
        }
        Ok(())
    }

    async fn print(&mut self) -> Result<(), Error> {
        let finalized: Option<u64> = redis::cmd("GET")
            .arg(self.finalized())
            .query_async(&mut self.conn)
            .await?;
        let credits: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(self.credits())
            .query_async(&mut self.conn)
            .await?;
        let mut rows: Vec<serde_json::Map<String, serde_json::Value>> = Vec::new();
        for json in credits.values() {
            if let serde_json::Value::Object(row) = serde_json::from_str(json)? {
                rows.push(row);
            }
        }
        let text = |row: &serde_json::Map<String, serde_json::Value>, k: &str| {
            row.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let block = |row: &serde_json::Map<String, serde_json::Value>| -> u64 {
            text(row, "block").parse().unwrap_or(0)
        };
        rows.sort_by_key(|row| (block(row), text(row, "tx"), text(row, "i")));
        for mut row in rows {
            let is_final = block(&row) <= finalized.unwrap_or(0);
            row.insert("final".into(), is_final.into());
            println!("{}", serde_json::Value::Object(row));
        }
        Ok(())
    }
}

/// Entries a crashed consumer of the group read but never acknowledged, oldest first.
async fn claim_abandoned(
    conn: &mut MultiplexedConnection,
    args: &Args,
    ledger: &mut Ledger,
) -> Result<(), Error> {
    let mut cursor = "0-0".to_string();
    loop {
        // Redis 7: [next cursor, entries, ids deleted (trimmed) while pending].
        let (next, entries, deleted): (String, Vec<Entry>, Vec<String>) = redis::cmd("XAUTOCLAIM")
            .arg(&args.stream)
            .arg(&args.group)
            .arg(&args.consumer)
            .arg(args.claim_idle_ms)
            .arg(&cursor)
            .arg("COUNT")
            .arg(100)
            .query_async(conn)
            .await?;
        for (id, flat) in &entries {
            ledger.apply(id, flat).await?;
        }
        if !deleted.is_empty() {
            redis::cmd("XACK")
                .arg(&args.stream)
                .arg(&args.group)
                .arg(&deleted)
                .query_async::<()>(conn)
                .await?;
        }
        if next == "0-0" {
            return Ok(());
        }
        cursor = next;
    }
}

/// XREADGROUP from `id` ("0": this consumer's pending entries; ">": new ones).
async fn read_group(
    conn: &mut MultiplexedConnection,
    args: &Args,
    id: &str,
) -> Result<Vec<Entry>, Error> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP").arg(&args.group).arg(&args.consumer);
    if id == ">" {
        cmd.arg("COUNT")
            .arg(100)
            .arg("BLOCK")
            .arg(args.idle_exit_ms);
    }
    cmd.arg("STREAMS").arg(&args.stream).arg(id);
    // [[stream, [[id, fields or nil], ...]]], or nil after BLOCK without entries.
    type Streams = Vec<(String, Vec<(String, Option<Vec<String>>)>)>;
    let reply: Option<Streams> = cmd.query_async(conn).await?;
    Ok(reply
        .into_iter()
        .flatten()
        .flat_map(|(_, entries)| entries)
        // A pending entry trimmed since comes back without fields.
        .filter_map(|(id, flat)| Some((id, flat?)))
        .collect())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let client = redis::Client::open(args.redis.as_str())?;
    // No response timeout: XREADGROUP BLOCK waits longer than the default one.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    ensure_group(&mut conn, &args).await?;
    let mut ledger = Ledger {
        conn: conn.clone(),
        stream: args.stream.clone(),
        group: args.group.clone(),
        prefix: args.ledger.clone(),
        from_block: args.from_block,
        crash_after: args.crash_after,
        applied: 0,
    };
    // This consumer's own pending entries (a previous run under the same name), then the
    // abandoned ones of others, then new entries.
    for (id, flat) in read_group(&mut conn, &args, "0").await? {
        ledger.apply(&id, &flat).await?;
    }
    claim_abandoned(&mut conn, &args, &mut ledger).await?;
    loop {
        let entries = read_group(&mut conn, &args, ">").await?;
        if entries.is_empty() {
            break;
        }
        for (id, flat) in &entries {
            ledger.apply(id, flat).await?;
        }
    }
    ledger.print().await
}
