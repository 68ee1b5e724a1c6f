//! The pure parts of `tron-actors tail` (the command itself is `cli/tail.rs`): which entries it
//! prints, how a line looks, where in the stream it starts, and the hold of `--finalized-only`.
//!
//! **Finding a block's place.** The stream is in publication order, not block order (the
//! backlog commits newest first), and its ids are Redis's clock at the commit. A block is
//! committed after its timestamp, and TRON blocks are at least one block interval (3 s) apart,
//! so for any block `B < N` in the stream, `block_time(B) + interval * (N - B)` is at or before
//! `block_time(N)`, hence at or before the commit of every block `>= N`. `tail --from-block N`
//! samples the stream's `block` entries by a binary search over time (about 30 short
//! `XRANGE`s), keeps the highest such bound, takes a minute off for the clocks of Redis and the
//! block producers, starts there, and prints only the entries of blocks `>= N`. Without a sample
//! below `N` it starts at the stream's beginning: slower, never wrong.

use actors::filter::EventFilter;
use actors::model::{KIND_BLOCK, KIND_BLOCK_REVERTED, KIND_FINALIZED};
use std::collections::BTreeMap;
use std::time::Duration;

/// One stream entry: its id and its fields in order.
pub type Entry = (String, Vec<(String, String)>);

/// Taken off the time bound of `--from-block` for the clocks of Redis and of the producers.
pub const CLOCK_MARGIN_MS: u64 = 60_000;

fn field<'a>(entry: &'a Entry, name: &str) -> &'a str {
    entry
        .1
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// The entry's block number (0 when it has none, which the daemon never writes).
pub fn block_of(entry: &Entry) -> u64 {
    field(entry, "block").parse().unwrap_or(0)
}

/// A stream id, `<ms>-<seq>` or `<ms>` (= `<ms>-0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl StreamId {
    /// Parses `<ms>-<seq>` or `<ms>`.
    pub fn parse(text: &str) -> Option<StreamId> {
        let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
        Some(StreamId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// The id just before this one, for the exclusive start of `XREAD` and `XGROUP CREATE`;
    /// `None` for `0-0`, before which there is nothing.
    pub fn before(self) -> Option<StreamId> {
        match (self.ms, self.seq) {
            (0, 0) => None,
            (ms, 0) => Some(StreamId {
                ms: ms - 1,
                seq: u64::MAX,
            }),
            (ms, seq) => Some(StreamId { ms, seq: seq - 1 }),
        }
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// `--since`: a number and a unit (`ms`, `s`, `m`, `h`, `d`), repeated: `90s`, `10m`, `1h30m`,
/// `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?}: give a duration like 30s, 10m, 2h, 1h30m or 7d");
    let mut total = 0u64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let ms = match &rest[..unit] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        total = number
            .checked_mul(ms)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(bad)?;
        rest = &rest[unit..];
    }
    Ok(Duration::from_millis(total))
}

/// `--from-block N`'s bound from one `block` entry of block `sample < target` (see the module
/// docs): the time at or before which no block `>= target` can have been committed.
pub fn from_block_bound_ms(target: u64, sample: u64, sample_time_ms: u64, interval_ms: u64) -> u64 {
    sample_time_ms
        .saturating_add(interval_ms.saturating_mul(target.saturating_sub(sample)))
        .saturating_sub(CLOCK_MARGIN_MS)
}

/// Which entries `tail` prints (before `--finalized-only` holds them). Without `--kind` every
/// kind is printed, events through the contract and address filters, `block` entries only when
/// neither of those is given; with `--kind` only the kinds listed, `block_reverted` always
/// (it voids events printed before).
#[derive(Clone, Debug)]
pub struct Selection {
    /// The event filter (`--kind` event kinds, `--contract`, `--address`).
    pub events: EventFilter,
    /// Print `block` entries.
    pub blocks: bool,
    /// Print `finalized` entries.
    pub finalized: bool,
    /// `--from-block`: entries of lower blocks are skipped.
    pub from_block: Option<u64>,
}

impl Selection {
    /// What `--kind` (event kinds and `block`, `block_reverted`, `finalized`), `--contract`,
    /// `--address` and `--finalized-only` select, or every bad value named.
    pub fn new(
        kinds: &[String],
        contracts: &[String],
        addresses: &[String],
        finalized_only: bool,
        from_block: Option<u64>,
    ) -> Result<Selection, Vec<actors::filter::FilterError>> {
        let listed = |name: &str| kinds.iter().any(|k| k.trim() == name);
        let event_kinds: Vec<String> = kinds
            .iter()
            .filter(|k| !matches!(k.trim(), KIND_BLOCK | KIND_BLOCK_REVERTED | KIND_FINALIZED))
            .cloned()
            .collect();
        let only_markers = !kinds.is_empty() && event_kinds.is_empty();
        let events = EventFilter::new(
            &event_kinds,
            contracts,
            addresses,
            actors::filter::ListNames {
                kinds: "--kind",
                contracts: "--contract",
                addresses: "--address",
            },
        )?;
        Ok(Selection {
            events: if only_markers {
                EventFilter::none()
            } else {
                events
            },
            blocks: listed(KIND_BLOCK)
                || (kinds.is_empty() && contracts.is_empty() && addresses.is_empty()),
            finalized: kinds.is_empty() || listed(KIND_FINALIZED) || finalized_only,
            from_block,
        })
    }

    /// Whether `entry` is printed.
    pub fn selects(&self, entry: &Entry) -> bool {
        if self.from_block.is_some_and(|from| block_of(entry) < from) {
            return false;
        }
        match field(entry, "kind") {
            KIND_BLOCK => self.blocks,
            KIND_FINALIZED => self.finalized,
            KIND_BLOCK_REVERTED => true,
            kind => self.events.keeps(
                kind,
                field(entry, "contract"),
                field(entry, "from"),
                field(entry, "to"),
            ),
        }
    }
}

/// What became of an entry given to [`Hold::take`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// To print now, in this order.
    pub print: Vec<Entry>,
    /// Done with without printing (voided by a retraction): ids to acknowledge.
    pub dropped: Vec<String>,
}

/// `--finalized-only`: an entry of a block waits until a `finalized` entry covers its block
/// (then its block's entries are printed, lowest block first, before the `finalized` entry); an
/// entry of a block at or below a `finalized` entry already read (a catch-up commits old blocks
/// after the finality of newer ones) is printed at once; a `block_reverted` entry drops what
/// waits for its block and is not printed (nothing of it was). Relies on the stream's order
/// only: no block at or below a `finalized` entry is retracted after it (docs/EVENTS.md).
#[derive(Debug, Default)]
pub struct Hold {
    waiting: BTreeMap<u64, Vec<Entry>>,
    finalized: Option<u64>,
}

impl Hold {
    /// Takes one selected entry; says what to print and what was dropped.
    pub fn take(&mut self, entry: Entry) -> Released {
        let block = block_of(&entry);
        let mut out = Released::default();
        match field(&entry, "kind") {
            KIND_FINALIZED => {
                self.finalized = Some(self.finalized.map_or(block, |f| f.max(block)));
                let above = self.waiting.split_off(&(block + 1));
                let due = std::mem::replace(&mut self.waiting, above);
                out.print.extend(due.into_values().flatten());
                out.print.push(entry);
            }
            KIND_BLOCK_REVERTED => {
                out.dropped.extend(
                    self.waiting
                        .remove(&block)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(id, _)| id),
                );
                out.dropped.push(entry.0);
            }
            _ if self.finalized.is_some_and(|f| block <= f) => out.print.push(entry),
            _ => self.waiting.entry(block).or_default().push(entry),
        }
        out
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.waiting.values().map(Vec::len).sum()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// One JSON object: `id`, then the entry's fields in stream order, every value a string.
pub fn json_line(entry: &Entry) -> String {
    let quote = |text: &str| serde_json::Value::from(text).to_string();
    let mut out = format!("{{\"id\":{}", quote(&entry.0));
    for (name, value) in &entry.1 {
        out.push(',');
        out.push_str(&quote(name));
        out.push(':');
        out.push_str(&quote(value));
    }
    out.push('}');
    out
}

fn short(hash: &str) -> String {
    if hash.len() > 12 {
        format!("{}…", &hash[..12])
    } else {
        hash.to_string()
    }
}

/// One aligned line for a terminal: block, kind, then what the kind has.
pub fn text_line(entry: &Entry) -> String {
    let f = |name: &str| field(entry, name);
    let block = f("block");
    let kind = f("kind");
    match kind {
        KIND_BLOCK => format!(
            "{block:>10}  {:<9}  {:<13}  {} events, time {}",
            "block",
            short(f("block_hash")),
            f("events"),
            f("block_time")
        ),
        KIND_BLOCK_REVERTED => format!(
            "{block:>10}  {:<9}  {:<13}  void every entry of this block printed before",
            "REVERTED",
            short(f("block_hash"))
        ),
        KIND_FINALIZED => format!(
            "{block:>10}  {:<9}  {:<13}  blocks <= {block} are final",
            "FINALIZED",
            short(f("block_hash"))
        ),
        "log" => format!(
            "{block:>10}  {kind:<9}  {:<13}  {:>6}  {:<34}  topics {} data {}",
            short(f("tx")),
            f("i"),
            f("contract"),
            f("topics"),
            f("data")
        ),
        _ => {
            let contract = if f("contract").is_empty() {
                "-"
            } else {
                f("contract")
            };
            let token = if f("token").is_empty() {
                String::new()
            } else {
                format!(" token {}", f("token"))
            };
            format!(
                "{block:>10}  {kind:<9}  {:<13}  {:>6}  {contract:<34}  {:<34} -> {:<34}  {}{token}",
                short(f("tx")),
                f("i"),
                f("from"),
                f("to"),
                f("value")
            )
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(id: &str, fields: &[(&str, &str)]) -> Entry {
        (
            id.to_string(),
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn event(id: &str, block: &str) -> Entry {
        entry(
            id,
            &[("v", "2"), ("kind", "trx"), ("block", block), ("tx", "t")],
        )
    }

    fn marker(id: &str, kind: &str, block: &str) -> Entry {
        entry(
            id,
            &[
                ("v", "2"),
                ("kind", kind),
                ("block", block),
                ("block_hash", "h"),
            ],
        )
    }

    #[test]
    fn stream_ids_parse_and_step_back() {
        let id = StreamId::parse("1700-3").unwrap();
        assert_eq!(id.before().unwrap().to_string(), "1700-2");
        let id = StreamId::parse("1700").unwrap();
        assert_eq!(
            id.before().unwrap().to_string(),
            format!("1699-{}", u64::MAX)
        );
        assert_eq!(StreamId::parse("0-0").unwrap().before(), None);
        assert_eq!(StreamId::parse("abc"), None);
        assert_eq!(StreamId::parse("1-x"), None);
    }

    #[test]
    fn durations_are_a_number_and_a_unit_repeated() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "10", "m", "10x", "-5s", "1h 2m"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_from_block_bound_steps_one_interval_per_block_and_keeps_a_margin() {
        assert_eq!(
            from_block_bound_ms(110, 100, 1_000_000, 3000),
            1_000_000 + 30_000 - CLOCK_MARGIN_MS
        );
        assert_eq!(from_block_bound_ms(110, 100, 10, 3000), 0);
    }

    #[test]
    fn the_hold_prints_a_block_once_final_and_drops_a_retracted_one() {
        let mut hold = Hold::default();
        assert_eq!(hold.take(event("1-0", "11")), Released::default());
        assert_eq!(hold.take(event("2-0", "10")), Released::default());
        assert_eq!(hold.take(event("3-0", "12")), Released::default());
        let reverted = hold.take(marker("4-0", "block_reverted", "12"));
        assert_eq!(reverted.dropped, ["3-0", "4-0"]);
        assert!(reverted.print.is_empty());
        let released = hold.take(marker("5-0", "finalized", "11"));
        let ids: Vec<&str> = released.print.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["2-0", "1-0", "5-0"]);
        assert!(hold.is_empty());
        // Committed after the finality that covers it (a catch-up): printed at once.
        let late = hold.take(event("6-0", "9"));
        assert_eq!(late.print, [event("6-0", "9")]);
        assert_eq!(hold.take(event("7-0", "12")), Released::default());
        assert_eq!(hold.len(), 1);
    }

    #[test]
    fn a_selection_shows_the_kinds_listed_and_retractions_always() {
        let kinds = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let selection = Selection::new(&kinds(&["trc20"]), &[], &[], false, Some(10)).unwrap();
        assert!(!selection.selects(&event("1-0", "11")));
        assert!(selection.selects(&marker("1-0", "block_reverted", "11")));
        assert!(!selection.selects(&marker("1-0", "finalized", "11")));
        assert!(!selection.selects(&marker("1-0", "block_reverted", "9")));
        assert!(!selection.selects(&marker("1-0", "block", "11")));
        let blocks = Selection::new(&kinds(&["block"]), &[], &[], false, None).unwrap();
        assert!(blocks.selects(&marker("1-0", "block", "11")));
        assert!(!blocks.selects(&event("1-0", "11")));
        let all = Selection::new(&[], &[], &[], false, None).unwrap();
        assert!(all.selects(&event("1-0", "11")));
        assert!(all.selects(&marker("1-0", "finalized", "11")));
        assert!(all.selects(&marker("1-0", "block", "11")));
        let errors = Selection::new(&kinds(&["usdt"]), &[], &[], false, None).unwrap_err();
        assert!(errors[0].to_string().starts_with("--kind: \"usdt\""));
    }

    #[test]
    fn lines_keep_every_field_as_json_and_align_as_text() {
        let e = entry(
            "5-1",
            &[
                ("kind", "block_reverted"),
                ("block", "7"),
                ("block_hash", "ab\"c"),
            ],
        );
        assert_eq!(
            json_line(&e),
            r#"{"id":"5-1","kind":"block_reverted","block":"7","block_hash":"ab\"c"}"#
        );
        assert_eq!(
            text_line(&e),
            "         7  REVERTED   ab\"c           void every entry of this block printed before"
        );
    }
}
