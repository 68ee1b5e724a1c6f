//! `tron-actors verify`: proves a block range of the stream exact against the node. It reads the
//! stream once, in pages, as a consumer does (a `block_reverted` entry voids every entry of its
//! block before it), keeping per block only an entry count and a sum of entry hashes (a few bytes
//! per block, so 200,000 blocks fit easily), compares them with what the node's canonical blocks
//! must yield (every event entry and the `block` entry), and reads the stream a second time only
//! for the blocks that differ, to name the missing, duplicated and unexpected entries.
//!
//! The node is asked for blocks as it serves them now: a range that reaches above the node's
//! solidified block may still change, so verify what is final (or re-run it later).
//!
//! The node has bad moments (`{"Error": ...}` bodies, 5xx, timeouts) that say nothing about the
//! stream, so a block the node fails to give is asked again a few times, with a growing pause,
//! before it is called unverifiable; the report says how many retries that took.

use actors::chain::{Chain, ChainError};
use actors::model::{Block, KIND_BLOCK, KIND_BLOCK_REVERTED, KIND_FINALIZED};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

/// Entries read per XRANGE page.
const PAGE: usize = 2_000;
/// Blocks fetched from the node per request batch, and batches in flight.
const FETCH_CHUNK: u64 = 100;
const FETCH_PARALLEL: usize = 4;
/// The longest pause between two attempts at the same blocks, however many attempts are allowed.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// How hard verify tries to get a block from the node before it calls the block unverifiable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Times each block is asked for, the first included; 0 counts as 1. On top of these, the
    /// node client retries transport errors, timeouts and 5xx inside each request.
    pub attempts: u32,
    /// Pause before the second attempt; doubled before each further one, up to 4 s.
    pub backoff: Duration,
}

impl Default for VerifyOptions {
    /// 5 attempts, pauses of 250, 500, 1000 and 2000 ms: a bad moment of the node of a few
    /// seconds is ridden out, a node that is really down costs under 4 s more.
    fn default() -> Self {
        VerifyOptions {
            attempts: 5,
            backoff: Duration::from_millis(250),
        }
    }
}

impl VerifyOptions {
    /// The pause before attempt `attempt` (2 for the first retry).
    fn backoff_before(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(2).min(16);
        self.backoff
            .saturating_mul(1 << doublings)
            .min(MAX_BACKOFF.max(self.backoff))
    }
}

/// Why an audit could not run (a stream that differs is a report, not an error).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Reading the stream failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// `--from` is above `--to`.
    #[allow(missing_docs)]
    #[error("--from {from} is above --to {to}")]
    BadRange { from: u64, to: u64 },
}

/// What is wrong with one block.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct BlockProblem {
    pub(crate) block: u64,
    /// uids the block must yield that the stream lacks.
    pub missing: Vec<String>,
    /// uids present more than once.
    pub duplicated: Vec<String>,
    /// uids the block does not yield, or entries whose fields differ from what it yields.
    pub unexpected: Vec<String>,
    /// Why the block could not be checked (the node failed), if it could not.
    pub unverifiable: Option<String>,
}

/// What the audit of a block range found: counts, and the first blocks that differ.
#[derive(Debug, Default, Clone, Serialize)]
pub struct VerifyReport {
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) blocks: u64,
    pub(crate) expected_events: u64,
    pub(crate) stream_events: u64,
    /// `block_reverted` entries of blocks in range: orphaned versions retracted.
    pub reverted_blocks: u64,
    pub(crate) missing: u64,
    pub(crate) duplicated: u64,
    pub(crate) unexpected: u64,
    pub(crate) unverifiable_blocks: u64,
    /// Blocks asked for more than once: the node failed to give them at the first attempt
    /// (whether a retry got them or not).
    pub retried_blocks: u64,
    /// Attempts after the first, over all blocks.
    pub retries: u64,
    pub(crate) problems: Vec<BlockProblem>,
}

impl VerifyReport {
    /// Every expected event is in the stream once and nothing else is: the CLI exits 0 only then.
    pub fn is_exact(&self) -> bool {
        self.missing == 0
            && self.duplicated == 0
            && self.unexpected == 0
            && self.unverifiable_blocks == 0
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "blocks {}..={}: {} blocks, {} events expected, {} in the stream after {} retracted blocks; missing {}, duplicated {}, unexpected {}, unverifiable blocks {}; node retries {} (for {} blocks): {}\n",
            self.from,
            self.to,
            self.blocks,
            self.expected_events,
            self.stream_events,
            self.reverted_blocks,
            self.missing,
            self.duplicated,
            self.unexpected,
            self.unverifiable_blocks,
            self.retries,
            self.retried_blocks,
            if self.is_exact() { "EXACT" } else { "NOT EXACT" }
        );
        for problem in self.problems.iter().take(50) {
            if let Some(why) = &problem.unverifiable {
                out.push_str(&format!("  block {}: unverifiable: {why}\n", problem.block));
                continue;
            }
            out.push_str(&format!(
                "  block {}: missing {:?} duplicated {:?} unexpected {:?}\n",
                problem.block, problem.missing, problem.duplicated, problem.unexpected
            ));
        }
        if self.problems.len() > 50 {
            out.push_str(&format!(
                "  ... and {} more blocks\n",
                self.problems.len() - 50
            ));
        }
        out
    }
}

/// Order-independent fingerprint of a block's entries: how many, and the wrapping sum of their
/// hashes. A lost, doubled or altered entry changes it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    count: u64,
    sum: u64,
}

impl Fingerprint {
    fn add(&mut self, hash: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(hash);
    }
}

fn entry_hash<'a>(fields: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    // SipHash with fixed keys: the same on every run, so the two sides agree.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (name, value) in fields {
        name.hash(&mut hasher);
        value.hash(&mut hasher);
    }
    hasher.finish()
}

/// The name a `block` entry goes by in a report, beside the events' uids.
const BLOCK_ENTRY: &str = "block";

/// What a block must have in the stream: each event entry (by uid) and its `block` entry.
fn expected_entries(block: &Block) -> Vec<(String, u64)> {
    let hash_of =
        |fields: Vec<(&str, String)>| entry_hash(fields.iter().map(|(k, v)| (*k, v.as_str())));
    let mut entries: Vec<(String, u64)> = block
        .events
        .iter()
        .map(|event| {
            (
                event.uid.clone(),
                hash_of(event.stream_fields(block.header.number)),
            )
        })
        .collect();
    entries.push((
        BLOCK_ENTRY.to_string(),
        hash_of(block.header.block_entry_fields(block.events.len())),
    ));
    entries
}

/// One stream entry of a block in range, as [`scan_stream`] sees it.
enum Seen<'a> {
    /// An event or `block` entry: its uid (or `block`) and the hash of its fields.
    Entry(&'a str, u64),
    /// A `block_reverted` entry: every entry of the block before it is void.
    Reverted,
}

/// Pages through the stream, calling `visit(block, seen)` for entries of blocks in range.
async fn scan_stream(
    conn: &mut crate::store::RedisConn,
    stream: &str,
    from: u64,
    to: u64,
    mut visit: impl FnMut(u64, Seen<'_>),
) -> Result<(), VerifyError> {
    let mut start = "-".to_string();
    loop {
        let page: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(conn)
            .await?;
        let n = page.len();
        for (id, flat) in &page {
            let pairs: Vec<(&str, &str)> = flat
                .chunks(2)
                .filter_map(|kv| match kv {
                    [k, v] => Some((k.as_str(), v.as_str())),
                    _ => None,
                })
                .collect();
            let block = pairs
                .iter()
                .find(|(k, _)| *k == "block")
                .and_then(|(_, v)| v.parse::<u64>().ok());
            let field = |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| *v)
                    .unwrap_or("")
            };
            let Some(block) = block.filter(|b| (from..=to).contains(b)) else {
                start = format!("({id}");
                continue;
            };
            let uid;
            let seen = match field("kind") {
                KIND_BLOCK_REVERTED => Seen::Reverted,
                KIND_FINALIZED => {
                    start = format!("({id}");
                    continue;
                }
                KIND_BLOCK => Seen::Entry(BLOCK_ENTRY, entry_hash(pairs.iter().copied())),
                _ => {
                    uid = format!("{}_{}", field("tx"), field("i"));
                    Seen::Entry(&uid, entry_hash(pairs.iter().copied()))
                }
            };
            visit(block, seen);
            start = format!("({id}");
        }
        if n < PAGE {
            return Ok(());
        }
    }
}

/// Splits ascending block numbers into runs `[start, end)` of consecutive blocks, each at most
/// [`FETCH_CHUNK`] long: what one `Chain::blocks` call can fetch cheaply.
fn runs(numbers: impl IntoIterator<Item = u64>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for number in numbers {
        match out.last_mut() {
            Some((start, end)) if *end == number && *end - *start < FETCH_CHUNK => *end += 1,
            _ => out.push((number, number + 1)),
        }
    }
    out
}

/// Fetches the blocks of `runs` from the node, a few runs at a time, handing each to `visit`.
async fn fetch_runs(
    chain: &Arc<dyn Chain>,
    runs: &[(u64, u64)],
    mut visit: impl FnMut(u64, Result<Block, ChainError>),
) {
    let mut runs = runs.iter().copied();
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        while in_flight.len() < FETCH_PARALLEL {
            let Some((start, end)) = runs.next() else {
                break;
            };
            let chain = chain.clone();
            in_flight.spawn(async move { chain.blocks(start, end).await });
        }
        match in_flight.join_next().await {
            Some(Ok(results)) => {
                for (number, result) in results {
                    visit(number, result);
                }
            }
            Some(Err(join_error)) => {
                tracing::error!(%join_error, "A verify fetch task failed");
            }
            None => return,
        }
    }
}

/// How the fetching went: the blocks the node never gave, with its last error, and the retries.
#[derive(Debug, Default)]
struct Fetched {
    failed: BTreeMap<u64, ChainError>,
    /// Blocks asked for more than once.
    retried_blocks: u64,
    /// Attempts after the first, over all blocks.
    retries: u64,
}

/// Fetches blocks `from..=to` from the node, handing each block it gets to `visit`. The blocks
/// the node fails to give are asked again, all together after a pause, up to
/// `options.attempts` times in all; the daemon rides out a bad moment of the node the same way
/// (with a longer schedule), and a single failed answer says nothing about the stream.
async fn fetch_expected(
    chain: Arc<dyn Chain>,
    from: u64,
    to: u64,
    options: &VerifyOptions,
    mut visit: impl FnMut(u64, Block),
) -> Fetched {
    let attempts = options.attempts.max(1);
    let mut fetched = Fetched::default();
    let mut pending = runs(from..=to);
    for attempt in 1..=attempts {
        if attempt > 1 {
            let blocks = fetched.failed.len();
            let pause = options.backoff_before(attempt);
            tracing::warn!(
                blocks,
                attempt,
                attempts,
                pause_ms = pause.as_millis() as u64,
                error = %fetched.failed.values().next().map(ToString::to_string).unwrap_or_default(),
                "The node failed to give some blocks: asking again"
            );
            if attempt == 2 {
                fetched.retried_blocks = blocks as u64;
            }
            fetched.retries += blocks as u64;
            tokio::time::sleep(pause).await;
        }
        let mut failed = BTreeMap::new();
        fetch_runs(&chain, &pending, |number, result| match result {
            Ok(block) => visit(number, block),
            Err(error) => {
                failed.insert(number, error);
            }
        })
        .await;
        fetched.failed = failed;
        if fetched.failed.is_empty() {
            break;
        }
        pending = runs(fetched.failed.keys().copied());
    }
    fetched
}

/// Verifies `from..=to` of `stream` against `chain`.
pub async fn verify(
    chain: Arc<dyn Chain>,
    mut conn: crate::store::RedisConn,
    stream: &str,
    from: u64,
    to: u64,
    options: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    if from > to {
        return Err(VerifyError::BadRange { from, to });
    }
    let mut found: HashMap<u64, Fingerprint> = HashMap::new();
    let mut block_entries: HashMap<u64, u64> = HashMap::new();
    let mut reverted_blocks = 0u64;
    scan_stream(&mut conn, stream, from, to, |block, seen| match seen {
        Seen::Entry(uid, hash) => {
            found.entry(block).or_default().add(hash);
            if uid == BLOCK_ENTRY {
                *block_entries.entry(block).or_default() += 1;
            }
        }
        Seen::Reverted => {
            found.remove(&block);
            block_entries.remove(&block);
            reverted_blocks += 1;
        }
    })
    .await?;
    let entries: u64 = found.values().map(|f| f.count).sum();
    let stream_events = entries.saturating_sub(block_entries.values().sum());

    let mut report = VerifyReport {
        from,
        to,
        blocks: to - from + 1,
        stream_events,
        reverted_blocks,
        ..Default::default()
    };
    // Blocks to look at closely, with what they must hold.
    let mut suspects: BTreeMap<u64, Vec<(String, u64)>> = BTreeMap::new();
    let fetched = fetch_expected(chain, from, to, options, |number, block| {
        let entries = expected_entries(&block);
        report.expected_events += block.events.len() as u64;
        let mut expected = Fingerprint::default();
        for (_, hash) in &entries {
            expected.add(*hash);
        }
        if found.get(&number).copied().unwrap_or_default() != expected {
            suspects.insert(number, entries);
        }
    })
    .await;
    report.retried_blocks = fetched.retried_blocks;
    report.retries = fetched.retries;
    let attempts = options.attempts.max(1);
    let unverifiable: Vec<BlockProblem> = fetched
        .failed
        .into_iter()
        .map(|(block, error)| BlockProblem {
            block,
            unverifiable: Some(format!("{error} (after {attempts} attempts)")),
            ..Default::default()
        })
        .collect();

    if !suspects.is_empty() {
        let mut seen: HashMap<u64, Vec<(String, u64)>> = HashMap::new();
        scan_stream(&mut conn, stream, from, to, |block, entry| {
            if !suspects.contains_key(&block) {
                return;
            }
            match entry {
                Seen::Entry(uid, hash) => {
                    seen.entry(block).or_default().push((uid.to_string(), hash))
                }
                Seen::Reverted => {
                    seen.remove(&block);
                }
            }
        })
        .await?;
        for (block, expected) in &suspects {
            let problem = compare(
                *block,
                expected,
                seen.get(block).map(Vec::as_slice).unwrap_or(&[]),
            );
            report.missing += problem.missing.len() as u64;
            report.duplicated += problem.duplicated.len() as u64;
            report.unexpected += problem.unexpected.len() as u64;
            report.problems.push(problem);
        }
    }
    report.unverifiable_blocks = unverifiable.len() as u64;
    report.problems.extend(unverifiable);
    report.problems.sort_by_key(|p| p.block);
    Ok(report)
}

/// Names the differences between what a block must hold and what the stream holds for it.
fn compare(block: u64, expected: &[(String, u64)], seen: &[(String, u64)]) -> BlockProblem {
    let expected_by_uid: HashMap<&str, u64> = expected
        .iter()
        .map(|(uid, hash)| (uid.as_str(), *hash))
        .collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut problem = BlockProblem {
        block,
        ..Default::default()
    };
    for (uid, hash) in seen {
        match expected_by_uid.get(uid.as_str()) {
            Some(want) if want == hash => *counts.entry(uid.as_str()).or_default() += 1,
            _ => problem.unexpected.push(uid.clone()),
        }
    }
    let mut reported = HashSet::new();
    for (uid, _) in expected {
        match counts.get(uid.as_str()).copied().unwrap_or(0) {
            0 => problem.missing.push(uid.clone()),
            1 => {}
            _ => {
                if reported.insert(uid.as_str()) {
                    problem.duplicated.push(uid.clone());
                }
            }
        }
    }
    problem
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(uid: &str, hash: u64) -> (String, u64) {
        (uid.to_string(), hash)
    }

    #[test]
    fn compare_names_missing_duplicated_and_unexpected() {
        let expected = vec![e("a", 1), e("b", 2), e("c", 3)];
        let seen = vec![e("a", 1), e("a", 1), e("c", 9), e("z", 4)];
        let problem = compare(7, &expected, &seen);
        assert_eq!(problem.missing, vec!["b".to_string(), "c".to_string()]);
        assert_eq!(problem.duplicated, vec!["a".to_string()]);
        assert_eq!(problem.unexpected, vec!["c".to_string(), "z".to_string()]);
    }

    #[test]
    fn runs_split_at_gaps_and_at_the_fetch_chunk() {
        assert_eq!(runs([3, 4, 5, 7, 9, 10]), vec![(3, 6), (7, 8), (9, 11)]);
        assert_eq!(runs(10..=259), vec![(10, 110), (110, 210), (210, 260)]);
        assert_eq!(runs([]), vec![]);
    }

    #[test]
    fn backoff_doubles_from_the_first_retry_up_to_the_cap() {
        let options = VerifyOptions::default();
        let pauses: Vec<u128> = (2..=8)
            .map(|attempt| options.backoff_before(attempt).as_millis())
            .collect();
        assert_eq!(pauses, [250, 500, 1000, 2000, 4000, 4000, 4000]);
        // A configured first pause above the cap is kept, not cut down.
        let slow = VerifyOptions {
            attempts: 3,
            backoff: Duration::from_secs(10),
        };
        assert_eq!(slow.backoff_before(3), Duration::from_secs(10));
    }

    #[test]
    fn fingerprints_see_a_duplicate_and_a_loss() {
        let mut one = Fingerprint::default();
        one.add(5);
        one.add(6);
        let mut two = Fingerprint::default();
        two.add(6);
        two.add(5);
        assert_eq!(one, two, "order does not matter");
        two.add(5);
        assert_ne!(one, two);
    }
}
