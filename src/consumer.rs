//! The stream read as a consumer reads it (docs/EVENTS.md, "Reading the stream"): event entries
//! of a block, closed by its `block` entry; a `block_reverted` entry voids every entry of its
//! block before it; a `finalized` entry says which blocks can no longer change. Verify, the
//! harnesses and the tests read the stream through [`ConsumerView`], which also names every
//! breach of the contract it sees.

use actors::model::{KIND_BLOCK, KIND_BLOCK_REVERTED, KIND_FINALIZED};
use std::collections::BTreeMap;

/// One entry's fields, in order.
pub type Fields = Vec<(String, String)>;

/// A block as a consumer holds it: closed by its `block` entry and not retracted since.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewBlock {
    /// `block_hash` of its `block` entry.
    pub hash: String,
    /// `parent_hash` of its `block` entry.
    pub parent_hash: String,
    /// Its event entries, in stream order.
    pub events: Vec<Fields>,
    /// Its `block` entry.
    pub block_entry: Fields,
}

/// What a consumer holds after applying the stream's entries in order.
#[derive(Clone, Debug, Default)]
pub struct ConsumerView {
    /// Blocks committed and standing, by number.
    pub blocks: BTreeMap<u64, ViewBlock>,
    /// `block_reverted` entries applied: (block, orphan's hash), in stream order.
    pub reverted: Vec<(u64, String)>,
    /// The highest `finalized` entry seen.
    pub finalized: Option<u64>,
    /// Every breach of the contract seen, in words.
    pub violations: Vec<String>,
    /// Event entries of the block being read, not yet closed by its `block` entry.
    open: Option<(u64, Vec<Fields>)>,
}

fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl ConsumerView {
    /// The view after reading `entries` in order.
    pub fn read<'a>(entries: impl IntoIterator<Item = &'a Fields>) -> ConsumerView {
        let mut view = ConsumerView::default();
        for fields in entries {
            view.apply(fields);
        }
        view.finish();
        view
    }

    /// Applies one entry.
    pub fn apply(&mut self, fields: &Fields) {
        let Some(block) = field(fields, "block").and_then(|b| b.parse::<u64>().ok()) else {
            self.violations
                .push(format!("entry without a block number: {fields:?}"));
            return;
        };
        match field(fields, "kind").unwrap_or("") {
            KIND_BLOCK => self.close(block, fields),
            KIND_BLOCK_REVERTED => {
                self.interrupt(block);
                let hash = field(fields, "block_hash").unwrap_or("").to_string();
                if self.finalized.is_some_and(|f| block <= f) {
                    self.violations.push(format!(
                        "block {block} retracted at or below the finalized block"
                    ));
                }
                match self.blocks.remove(&block) {
                    Some(standing) if standing.hash == hash => {}
                    Some(standing) => self.violations.push(format!(
                        "block {block} retracted as {hash}, but {} stands",
                        standing.hash
                    )),
                    None => self
                        .violations
                        .push(format!("block {block} retracted but none stands")),
                }
                self.reverted.push((block, hash));
            }
            KIND_FINALIZED => {
                self.interrupt(block);
                if self.finalized.is_some_and(|f| block <= f) {
                    self.violations.push(format!(
                        "finalized went from {:?} to {block}",
                        self.finalized
                    ));
                }
                self.finalized = Some(self.finalized.map_or(block, |f| f.max(block)));
            }
            _ => match &mut self.open {
                Some((open, events)) if *open == block => events.push(fields.clone()),
                _ => {
                    self.interrupt(block);
                    self.open = Some((block, vec![fields.clone()]));
                }
            },
        }
    }

    /// The stream ended: events not closed by their `block` entry are a breach.
    pub fn finish(&mut self) {
        if let Some((block, events)) = self.open.take() {
            self.violations.push(format!(
                "{} event entries of block {block} without its block entry at the end",
                events.len()
            ));
        }
    }

    fn interrupt(&mut self, by: u64) {
        if let Some((block, events)) = self.open.take() {
            self.violations.push(format!(
                "{} event entries of block {block} interrupted by an entry of block {by}",
                events.len()
            ));
        }
    }

    fn close(&mut self, block: u64, fields: &Fields) {
        let events = match self.open.take() {
            Some((open, events)) if open == block => events,
            Some((open, events)) => {
                self.violations.push(format!(
                    "{} event entries of block {open} closed by the block entry of {block}",
                    events.len()
                ));
                Vec::new()
            }
            None => Vec::new(),
        };
        let announced = field(fields, "events").and_then(|n| n.parse::<usize>().ok());
        if announced != Some(events.len()) {
            self.violations.push(format!(
                "block {block}: its block entry says {announced:?} events, {} precede it",
                events.len()
            ));
        }
        let standing = ViewBlock {
            hash: field(fields, "block_hash").unwrap_or("").to_string(),
            parent_hash: field(fields, "parent_hash").unwrap_or("").to_string(),
            events,
            block_entry: fields.clone(),
        };
        if let Some(previous) = self.blocks.insert(block, standing) {
            self.violations.push(format!(
                "block {block} committed again ({}) while {} stands",
                self.blocks[&block].hash, previous.hash
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actors::model::{finalized_entry_fields, reverted_entry_fields, BlockHeader};

    fn owned(fields: Vec<(&str, String)>) -> Fields {
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    fn event(block: u64, tx: &str) -> Fields {
        owned(vec![
            ("v", "2".into()),
            ("kind", "trx".into()),
            ("block", block.to_string()),
            ("tx", tx.into()),
            ("i", "trx".into()),
        ])
    }

    fn block_entry(block: u64, hash: &str, events: usize) -> Fields {
        let header = BlockHeader {
            number: block,
            hash: hash.into(),
            parent_hash: "p".into(),
            timestamp_ms: 0,
        };
        owned(header.block_entry_fields(events))
    }

    #[test]
    fn a_retraction_voids_the_orphan_and_the_canonical_version_stands() {
        let entries = vec![
            event(7, "a"),
            block_entry(7, "orphan", 1),
            owned(finalized_entry_fields(5, "f")),
            owned(reverted_entry_fields(7, "orphan")),
            event(7, "b"),
            event(7, "c"),
            block_entry(7, "canonical", 2),
        ];
        let view = ConsumerView::read(&entries);
        assert!(view.violations.is_empty(), "{:?}", view.violations);
        assert_eq!(view.blocks[&7].hash, "canonical");
        assert_eq!(view.blocks[&7].events, vec![event(7, "b"), event(7, "c")]);
        assert_eq!(view.reverted, vec![(7, "orphan".to_string())]);
        assert_eq!(view.finalized, Some(5));
    }

    #[test]
    fn every_breach_is_named() {
        let entries = vec![
            event(7, "a"),
            event(8, "b"),
            block_entry(8, "h8", 2),
            block_entry(8, "again", 0),
            owned(finalized_entry_fields(9, "f")),
            owned(reverted_entry_fields(8, "again")),
            event(10, "c"),
        ];
        let view = ConsumerView::read(&entries);
        assert_eq!(
            view.violations,
            vec![
                "1 event entries of block 7 interrupted by an entry of block 8",
                "block 8: its block entry says Some(2) events, 1 precede it",
                "block 8 committed again (again) while h8 stands",
                "block 8 retracted at or below the finalized block",
                "1 event entries of block 10 without its block entry at the end",
            ]
        );
    }
}
