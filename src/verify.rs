//! `tron-actors verify`: proves a block range of the stream exact against the node. It reads the
//! stream once, in pages, keeping per block only an event count and a sum of entry hashes
//! (a few bytes per block, so 200,000 blocks fit easily), compares them with what the node's
//! blocks must yield, and reads the stream a second time only for the blocks that differ, to
//! name the missing, duplicated and unexpected events.

use actors::chain::Chain;
use actors::model::Block;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Entries read per XRANGE page.
const PAGE: usize = 2_000;
/// Blocks fetched from the node per request batch, and batches in flight.
const FETCH_CHUNK: u64 = 100;
const FETCH_PARALLEL: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("--from {from} is above --to {to}")]
    BadRange { from: u64, to: u64 },
}

/// What is wrong with one block.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct BlockProblem {
    pub block: u64,
    /// uids the block must yield that the stream lacks.
    pub missing: Vec<String>,
    /// uids present more than once.
    pub duplicated: Vec<String>,
    /// uids the block does not yield, or entries whose fields differ from what it yields.
    pub unexpected: Vec<String>,
    /// Why the block could not be checked (the node failed), if it could not.
    pub unverifiable: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct VerifyReport {
    pub from: u64,
    pub to: u64,
    pub blocks: u64,
    pub expected_events: u64,
    pub stream_events: u64,
    pub missing: u64,
    pub duplicated: u64,
    pub unexpected: u64,
    pub unverifiable_blocks: u64,
    pub problems: Vec<BlockProblem>,
}

impl VerifyReport {
    pub fn is_exact(&self) -> bool {
        self.missing == 0
            && self.duplicated == 0
            && self.unexpected == 0
            && self.unverifiable_blocks == 0
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "blocks {}..={}: {} blocks, {} events expected, {} in the stream; missing {}, duplicated {}, unexpected {}, unverifiable blocks {}: {}\n",
            self.from,
            self.to,
            self.blocks,
            self.expected_events,
            self.stream_events,
            self.missing,
            self.duplicated,
            self.unexpected,
            self.unverifiable_blocks,
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

fn expected_entries(block: &Block) -> Vec<(String, u64)> {
    block
        .events
        .iter()
        .map(|event| {
            let fields = event.stream_fields(&block.header);
            (
                event.uid.clone(),
                entry_hash(fields.iter().map(|(k, v)| (*k, v.as_str()))),
            )
        })
        .collect()
}

/// Pages through the stream, calling `visit(block, uid, hash)` for entries of blocks in range.
async fn scan_stream(
    conn: &mut redis::aio::ConnectionManager,
    stream: &str,
    from: u64,
    to: u64,
    mut visit: impl FnMut(u64, &str, u64),
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
            let uid = pairs
                .iter()
                .find(|(k, _)| *k == "uid")
                .map(|(_, v)| *v)
                .unwrap_or("");
            if let Some(block) = block.filter(|b| (from..=to).contains(b)) {
                visit(block, uid, entry_hash(pairs.iter().copied()));
            }
            start = format!("({id}");
        }
        if n < PAGE {
            return Ok(());
        }
    }
}

/// Fetches blocks `from..=to` from the node, a few chunks at a time, handing each to `visit`.
async fn fetch_expected(
    chain: Arc<dyn Chain>,
    from: u64,
    to: u64,
    mut visit: impl FnMut(u64, Result<Block, String>),
) {
    let mut chunks = (from..=to).step_by(FETCH_CHUNK as usize).peekable();
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        while in_flight.len() < FETCH_PARALLEL {
            let Some(start) = chunks.next() else { break };
            let end = (start + FETCH_CHUNK).min(to + 1);
            let chain = chain.clone();
            in_flight.spawn(async move { chain.blocks(start, end).await });
        }
        match in_flight.join_next().await {
            Some(Ok(results)) => {
                for (number, result) in results {
                    visit(number, result.map_err(|e| e.to_string()));
                }
            }
            Some(Err(join_error)) => {
                tracing::error!(%join_error, "A verify fetch task failed");
            }
            None => return,
        }
    }
}

/// Verifies `from..=to` of `stream` against `chain`.
pub async fn verify(
    chain: Arc<dyn Chain>,
    mut conn: redis::aio::ConnectionManager,
    stream: &str,
    from: u64,
    to: u64,
) -> Result<VerifyReport, VerifyError> {
    if from > to {
        return Err(VerifyError::BadRange { from, to });
    }
    let mut found: HashMap<u64, Fingerprint> = HashMap::new();
    let mut stream_events = 0u64;
    scan_stream(&mut conn, stream, from, to, |block, _, hash| {
        found.entry(block).or_default().add(hash);
        stream_events += 1;
    })
    .await?;

    let mut report = VerifyReport {
        from,
        to,
        blocks: to - from + 1,
        stream_events,
        ..Default::default()
    };
    // Blocks to look at closely, with what they must hold.
    let mut suspects: BTreeMap<u64, Vec<(String, u64)>> = BTreeMap::new();
    let mut unverifiable: Vec<BlockProblem> = Vec::new();
    fetch_expected(chain, from, to, |number, result| match result {
        Ok(block) => {
            let entries = expected_entries(&block);
            report.expected_events += entries.len() as u64;
            let mut expected = Fingerprint::default();
            for (_, hash) in &entries {
                expected.add(*hash);
            }
            if found.get(&number).copied().unwrap_or_default() != expected {
                suspects.insert(number, entries);
            }
        }
        Err(error) => unverifiable.push(BlockProblem {
            block: number,
            unverifiable: Some(error),
            ..Default::default()
        }),
    })
    .await;

    if !suspects.is_empty() {
        let mut seen: HashMap<u64, Vec<(String, u64)>> = HashMap::new();
        scan_stream(&mut conn, stream, from, to, |block, uid, hash| {
            if suspects.contains_key(&block) {
                seen.entry(block).or_default().push((uid.to_string(), hash));
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
