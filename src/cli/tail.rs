//! `tron-actors tail`: the stream as a person or a pipe reads it. One JSON object per line when
//! stdout is not a terminal, an aligned line on a terminal (`--format` chooses). The pure parts
//! (selection, lines, start points, the `--finalized-only` hold) are `tron_actors::tail`.
//!
//! Reading: plain `XREAD` from the start point, or with `--group` an `XREADGROUP` that first
//! takes this consumer's own pending entries (delivered before, never acknowledged: a tail that
//! stopped or crashed mid-batch) and then new ones; an entry is acknowledged (`XACK`) once it is
//! written to stdout and flushed, or once it is done with unprinted (filtered out, voided by a
//! retraction under `--finalized-only`). Entries held by `--finalized-only` stay pending until
//! printed. A closed stdout (`| head`) ends it with exit 0: a write that fails says so, and
//! while the stream is quiet each idle read asks whether the pipe's reader has gone.
use super::{load_config, open_store, CliError};
use clap::{ArgGroup, Args, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;
use tron_actors::store::RedisConn;
use tron_actors::tail::{
    block_of, from_block_bound_ms, json_line, parse_duration, text_line, Entry, Hold, Selection,
    StreamId,
};

/// Entries asked for at once.
const PAGE: usize = 500;
/// How long one `XREAD` waits for new entries (well under the connection's response timeout).
const BLOCK_MS: u64 = 2000;

#[derive(Args)]
#[command(group(ArgGroup::new("start").args(["from_block", "since", "new", "from_id"])))]
pub(crate) struct TailArgs {
    /// Only entries of this kind: trc20, trc721, approval, log, trx, trc10, internal, block,
    /// finalized; repeatable or comma-separated. block_reverted entries are always shown (they
    /// void events shown before). Without it every kind is shown.
    #[arg(long, value_name = "KIND", value_delimiter = ',')]
    kind: Vec<String>,
    /// Only events of this contract (base58 T... or hex 41...); repeatable.
    #[arg(long, value_name = "ADDRESS", value_delimiter = ',')]
    contract: Vec<String>,
    /// Only events from or to this address (an approval's owner or spender); repeatable.
    #[arg(long, value_name = "ADDRESS", value_delimiter = ',')]
    address: Vec<String>,
    /// Start at the entries of block N (and print only blocks >= N): found from the stream's
    /// block entries by time, see docs/EVENTS.md "Finding a block".
    #[arg(long, value_name = "N")]
    from_block: Option<u64>,
    /// Start with the entries written this long ago: 30s, 10m, 2h, 1h30m, 7d.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    since: Option<Duration>,
    /// Only entries written from now on (the default).
    #[arg(long)]
    new: bool,
    /// Start at this stream id (included), e.g. 1763000000000-0.
    #[arg(long, value_name = "ID", value_parser = parse_id)]
    from_id: Option<StreamId>,
    /// Read through this consumer group (created at the start point if it does not exist, else
    /// resumed where it stopped), acknowledging each entry once printed.
    #[arg(long, value_name = "G")]
    group: Option<String>,
    /// The consumer's name in the group; keep it across runs to resume its pending entries.
    #[arg(long, value_name = "C", requires = "group", default_value = "tail")]
    consumer: String,
    /// Print N entries, then exit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Print an event only once its block is final (a finalized entry covers it); retracted
    /// blocks are never printed.
    #[arg(long)]
    finalized_only: bool,
    /// auto = aligned text on a terminal, JSON lines otherwise.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Auto,
    Json,
    Text,
}

fn parse_id(text: &str) -> Result<StreamId, String> {
    StreamId::parse(text).ok_or_else(|| format!("{text:?}: give a stream id like 1763000000000-0"))
}

/// How the reading ended early.
enum Stop {
    /// `--count` reached, or stdout closed: exit 0.
    Done,
}

pub(crate) async fn run(config_file: Option<PathBuf>, args: TailArgs) -> Result<(), CliError> {
    let config = load_config(config_file)?;
    let selection = Selection::new(
        &args.kind,
        &args.contract,
        &args.address,
        args.finalized_only,
        args.from_block,
    )
    .map_err(|errors| {
        CliError::Refused(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let store = open_store(&config)?;
    let key = store.keys().events();
    let mut conn = store.connection();
    let exists: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .map_err(|error| redis_failed(&config, error))?;
    if !exists {
        return Err(CliError::Failed(format!(
            "the stream {key} does not exist yet in the Redis at {}: no block was published \
             there under redis.prefix {:?}; start the daemon (tron-actors run) or check \
             redis.url and redis.prefix",
            tron_actors::config::redact_url(&config.redis.url),
            config.redis.prefix
        )));
    }
    let start = start_after(&mut conn, &key, &args, config.sync.block_interval_ms)
        .await
        .map_err(|error| redis_failed(&config, error))?;
    let json = match args.format {
        Format::Json => true,
        Format::Text => false,
        Format::Auto => !std::io::stdout().is_terminal(),
    };
    let mut tail = Tail {
        conn,
        key,
        selection,
        hold: args.finalized_only.then(Hold::default),
        json,
        left: args.count,
        out: std::io::stdout(),
    };
    let result = match &args.group {
        None => tail.plain(start).await,
        Some(group) => tail.grouped(group, &args.consumer, start).await,
    };
    match result {
        Ok(Stop::Done) => Ok(()),
        Err(error) => Err(redis_failed(&config, error)),
    }
}

fn redis_failed(config: &tron_actors::config::Config, error: redis::RedisError) -> CliError {
    CliError::Failed(format!(
        "redis at {}: {error}",
        tron_actors::config::redact_url(&config.redis.url)
    ))
}

/// The id reading starts after (exclusive); `None` = from the stream's first entry.
async fn start_after(
    conn: &mut RedisConn,
    key: &str,
    args: &TailArgs,
    interval_ms: u64,
) -> Result<Option<StreamId>, redis::RedisError> {
    let from = if let Some(id) = args.from_id {
        id
    } else if let Some(since) = args.since {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        StreamId {
            ms: now.saturating_sub(since.as_millis() as u64),
            seq: 0,
        }
    } else if let Some(block) = args.from_block {
        StreamId {
            ms: seek_block(conn, key, block, interval_ms).await?,
            seq: 0,
        }
    } else {
        // --new: after the last entry there is now.
        let last: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
            .arg(key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await?;
        return Ok(last.first().and_then(|(id, _)| StreamId::parse(id)));
    };
    Ok(from.before())
}

/// `--from-block`: the time at or before which no block `>= target` was committed, found by a
/// binary search over the stream's time (tron_actors::tail's module docs); 0 when no block
/// entry below `target` was seen.
async fn seek_block(
    conn: &mut RedisConn,
    key: &str,
    target: u64,
    interval_ms: u64,
) -> Result<u64, redis::RedisError> {
    let edge = |reverse: bool| {
        let mut cmd = redis::cmd(if reverse { "XREVRANGE" } else { "XRANGE" });
        cmd.arg(key);
        if reverse {
            cmd.arg("+").arg("-");
        } else {
            cmd.arg("-").arg("+");
        }
        cmd.arg("COUNT").arg(1);
        cmd
    };
    let first: Vec<(String, Vec<String>)> = edge(false).query_async(conn).await?;
    let last: Vec<(String, Vec<String>)> = edge(true).query_async(conn).await?;
    let ms = |page: &[(String, Vec<String>)]| {
        page.first()
            .and_then(|(id, _)| StreamId::parse(id))
            .map_or(0, |id| id.ms)
    };
    let (mut low, mut high) = (ms(&first), ms(&last));
    let mut best = 0u64;
    while low < high {
        let mid = low + (high - low) / 2;
        let page: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(key)
            .arg(mid)
            .arg("+")
            .arg("COUNT")
            .arg(50)
            .query_async(conn)
            .await?;
        let mut below = false;
        for (id, flat) in page {
            let entry = to_entry(id, flat);
            let fields: std::collections::HashMap<&str, &str> = entry
                .1
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            if fields.get("kind") != Some(&"block") {
                continue;
            }
            let block = block_of(&entry);
            if block < target {
                below = true;
                if let Some(time) = fields.get("block_time").and_then(|t| t.parse().ok()) {
                    best = best.max(from_block_bound_ms(target, block, time, interval_ms));
                }
            }
        }
        // Blocks below the target here: the target's entries are later, look later; else earlier.
        if below {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    Ok(best)
}

fn to_entry(id: String, flat: Vec<String>) -> Entry {
    let mut fields = Vec::with_capacity(flat.len() / 2);
    let mut items = flat.into_iter();
    while let (Some(name), Some(value)) = (items.next(), items.next()) {
        fields.push((name, value));
    }
    (id, fields)
}

type StreamReply = Option<Vec<(String, Vec<(String, Vec<String>)>)>>;

fn entries_of(reply: StreamReply) -> Vec<Entry> {
    reply
        .into_iter()
        .flatten()
        .flat_map(|(_, entries)| entries)
        .map(|(id, flat)| to_entry(id, flat))
        .collect()
}

struct Tail {
    conn: RedisConn,
    key: String,
    selection: Selection,
    hold: Option<Hold>,
    json: bool,
    left: Option<u64>,
    out: std::io::Stdout,
}

impl Tail {
    async fn plain(&mut self, start: Option<StreamId>) -> Result<Stop, redis::RedisError> {
        let mut after = start.map_or_else(|| "0-0".to_string(), |id| id.to_string());
        loop {
            let reply: StreamReply = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(PAGE)
                .arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("STREAMS")
                .arg(&self.key)
                .arg(&after)
                .query_async(&mut self.conn)
                .await?;
            let entries = entries_of(reply);
            if entries.is_empty() && stdout_closed() {
                return Ok(Stop::Done);
            }
            if let Some((id, _)) = entries.last() {
                after = id.clone();
            }
            let (stop, _) = self.handle(entries);
            if let Some(stop) = stop {
                return Ok(stop);
            }
        }
    }

    async fn grouped(
        &mut self,
        group: &str,
        consumer: &str,
        start: Option<StreamId>,
    ) -> Result<Stop, redis::RedisError> {
        let at = start.map_or_else(|| "0".to_string(), |id| id.to_string());
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.key)
            .arg(group)
            .arg(&at)
            .query_async(&mut self.conn)
            .await;
        match created {
            Ok(()) => {}
            Err(error) if error.code() == Some("BUSYGROUP") => {
                eprintln!("Resuming consumer group {group} where it stopped (a start point applies only when the group is created)");
            }
            Err(error) => return Err(error),
        }
        // This consumer's pending entries first, from the beginning of its list, then new ones.
        let mut pending_after = Some("0-0".to_string());
        loop {
            let (id, block) = match &pending_after {
                Some(after) => (after.clone(), None),
                None => (">".to_string(), Some(BLOCK_MS)),
            };
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(group)
                .arg(consumer)
                .arg("COUNT")
                .arg(PAGE);
            if let Some(block) = block {
                cmd.arg("BLOCK").arg(block);
            }
            cmd.arg("STREAMS").arg(&self.key).arg(&id);
            let reply: StreamReply = cmd.query_async(&mut self.conn).await?;
            let entries = entries_of(reply);
            if entries.is_empty() && stdout_closed() {
                return Ok(Stop::Done);
            }
            if pending_after.is_some() {
                pending_after = entries.last().map(|(id, _)| id.clone());
            }
            let (stop, done) = self.handle(entries);
            if !done.is_empty() {
                let _: u64 = redis::cmd("XACK")
                    .arg(&self.key)
                    .arg(group)
                    .arg(&done)
                    .query_async(&mut self.conn)
                    .await?;
            }
            if let Some(stop) = stop {
                return Ok(stop);
            }
        }
    }

    /// Prints what `entries` select; returns whether to stop and the ids done with (printed and
    /// flushed, or dropped), in order. Entries after a stop are not done.
    fn handle(&mut self, entries: Vec<Entry>) -> (Option<Stop>, Vec<String>) {
        let mut done = Vec::new();
        for entry in entries {
            if !self.selection.selects(&entry) {
                done.push(entry.0);
                continue;
            }
            let print = match &mut self.hold {
                None => vec![entry],
                Some(hold) => {
                    let released = hold.take(entry);
                    done.extend(released.dropped);
                    released.print
                }
            };
            for entry in print {
                if self.left == Some(0) {
                    return (Some(Stop::Done), done);
                }
                let line = if self.json {
                    json_line(&entry)
                } else {
                    text_line(&entry)
                };
                let mut out = self.out.lock();
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    // A closed pipe (`| head`): the reader has what it wanted.
                    return (Some(Stop::Done), done);
                }
                done.push(entry.0);
                if let Some(left) = &mut self.left {
                    *left -= 1;
                }
            }
            if self.left == Some(0) {
                return (Some(Stop::Done), done);
            }
        }
        (None, done)
    }
}

/// Whether stdout is a pipe whose reader has gone (`| head` exited): poll(2) reports POLLERR on
/// the write end of such a pipe. A terminal or a file never is.
#[cfg(unix)]
#[allow(unsafe_code)]
fn stdout_closed() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1, no wait; poll only reads and writes that struct.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    ready > 0 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

#[cfg(not(unix))]
fn stdout_closed() -> bool {
    false
}
