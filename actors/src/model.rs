//! The plain data every part agrees on: a block's header, its decoded events, and how each becomes
//! the flat fields of one stream entry (the contract of docs/EVENTS.md, schema `v=2`): an entry
//! per event, then one `block` entry per committed block; `block_reverted` and `finalized`
//! entries say what the chain's head did.

use serde::{Deserialize, Serialize};

/// Schema version written in every stream entry as field `v`.
pub const EVENT_SCHEMA_VERSION: &str = "2";

/// The `kind` of the entry that ends every committed block.
pub const KIND_BLOCK: &str = "block";
/// The `kind` of the entry that retracts an orphaned block.
pub const KIND_BLOCK_REVERTED: &str = "block_reverted";
/// The `kind` of the entry that says how far the chain is final.
pub const KIND_FINALIZED: &str = "finalized";

/// What identifies a block on the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// The block number (height).
    pub number: u64,
    /// `blockID`, 64 hex characters.
    pub hash: String,
    /// `parentHash`, 64 hex characters.
    pub parent_hash: String,
    /// Block timestamp in milliseconds.
    pub timestamp_ms: u64,
}

impl BlockHeader {
    /// The `block` entry that ends this block's commit: `events` entries of it precede it.
    pub fn block_entry_fields(&self, events: usize) -> Vec<(&'static str, String)> {
        vec![
            ("v", EVENT_SCHEMA_VERSION.to_string()),
            ("kind", KIND_BLOCK.to_string()),
            ("block", self.number.to_string()),
            ("block_hash", self.hash.clone()),
            ("parent_hash", self.parent_hash.clone()),
            ("block_time", self.timestamp_ms.to_string()),
            ("events", events.to_string()),
        ]
    }
}

/// The entry that retracts block `number` in its version `hash`: every entry of that block
/// before it is void.
pub fn reverted_entry_fields(number: u64, hash: &str) -> Vec<(&'static str, String)> {
    vec![
        ("v", EVENT_SCHEMA_VERSION.to_string()),
        ("kind", KIND_BLOCK_REVERTED.to_string()),
        ("block", number.to_string()),
        ("block_hash", hash.to_string()),
    ]
}

/// The entry that says every block at or below `number` is final (the node's solidified block,
/// whose hash is `hash`).
pub fn finalized_entry_fields(number: u64, hash: &str) -> Vec<(&'static str, String)> {
    vec![
        ("v", EVENT_SCHEMA_VERSION.to_string()),
        ("kind", KIND_FINALIZED.to_string()),
        ("block", number.to_string()),
        ("block_hash", hash.to_string()),
    ]
}

/// A block reduced to what we publish: its header and every event it yields, in block order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The block's identity.
    pub header: BlockHeader,
    /// Every event, in block order.
    pub events: Vec<Event>,
}

/// One published event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unique and stable: `<txid>_<log index>`, `<txid>_trx`, `<txid>_trc10`, `<txid>_int<i>`.
    pub uid: String,
    /// Transaction id.
    pub tx: String,
    /// What happened.
    pub body: EventBody,
}

/// The kind-specific part of an event. Addresses are base58 (`T...`), amounts decimal strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
// The fields are the stream entry's, each documented in docs/EVENTS.md.
#[allow(missing_docs)]
pub enum EventBody {
    /// A TRC-20 `Transfer` log.
    Trc20Transfer {
        contract: String,
        from: String,
        to: String,
        value: String,
    },
    /// A TRC-721 `Transfer` log.
    Trc721Transfer {
        contract: String,
        from: String,
        to: String,
        token_id: String,
    },
    /// An `Approval` log.
    Approval {
        contract: String,
        owner: String,
        spender: String,
        value: String,
    },
    /// Any other contract log, raw.
    Log {
        contract: String,
        /// Hex topics without `0x`.
        topics: Vec<String>,
        /// Hex data without `0x`.
        data: String,
    },
    /// A TRX transfer (a `TransferContract`).
    TrxTransfer {
        from: String,
        to: String,
        value: String,
    },
    /// A TRC-10 transfer (a `TransferAssetContract`).
    Trc10Transfer {
        from: String,
        to: String,
        value: String,
        /// The TRC-10 token id as text, e.g. `1002000`.
        token: String,
    },
    /// A value transfer made by a contract during execution. `token` is set when it moved a
    /// TRC-10 token instead of TRX.
    InternalTransfer {
        from: String,
        to: String,
        value: String,
        token: Option<String>,
    },
}

impl EventBody {
    /// The `kind` field of the stream entry: short, since every entry carries it.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::Trc20Transfer { .. } => "trc20",
            EventBody::Trc721Transfer { .. } => "trc721",
            EventBody::Approval { .. } => "approval",
            EventBody::Log { .. } => "log",
            EventBody::TrxTransfer { .. } => "trx",
            EventBody::Trc10Transfer { .. } => "trc10",
            EventBody::InternalTransfer { .. } => "internal",
        }
    }
}

impl Event {
    /// Its place in its transaction, field `i`: the uid without its `<tx>_` (`0` for the first
    /// log, `trx`, `trc10`, `int2`, `int2.1`), so that `uid = <tx>_<i>`.
    pub fn index(&self) -> &str {
        self.uid
            .strip_prefix(self.tx.as_str())
            .and_then(|rest| rest.strip_prefix('_'))
            .unwrap_or(&self.uid)
    }

    /// The flat field/value pairs of this event's stream entry in block `block`, in a fixed
    /// order. The block's hash and time are in its `block` entry, not repeated here.
    ///
    /// Every kind but `log` has the same field names (`contract from to value token`, empty
    /// where a kind has none): Redis stores an entry's field names only when they differ from
    /// the first entry of its listpack node, so one list for almost every entry saves ~40 bytes
    /// an event (docs/BENCHMARKS.md).
    pub fn stream_fields(&self, block: u64) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("v", EVENT_SCHEMA_VERSION.to_string()),
            ("kind", self.body.kind().to_string()),
            ("block", block.to_string()),
            ("tx", self.tx.clone()),
            ("i", self.index().to_string()),
        ];
        let none = String::new;
        let (contract, from, to, value, token) = match &self.body {
            EventBody::Log {
                contract,
                topics,
                data,
            } => {
                fields.extend([
                    ("contract", contract.clone()),
                    ("topics", topics.join(",")),
                    ("data", data.clone()),
                ]);
                return fields;
            }
            EventBody::Trc20Transfer {
                contract,
                from,
                to,
                value,
            } => (contract.clone(), from, to, value.clone(), none()),
            EventBody::Trc721Transfer {
                contract,
                from,
                to,
                token_id,
            } => (contract.clone(), from, to, none(), token_id.clone()),
            EventBody::Approval {
                contract,
                owner,
                spender,
                value,
            } => (contract.clone(), owner, spender, value.clone(), none()),
            EventBody::TrxTransfer { from, to, value } => (none(), from, to, value.clone(), none()),
            EventBody::Trc10Transfer {
                from,
                to,
                value,
                token,
            } => (none(), from, to, value.clone(), token.clone()),
            EventBody::InternalTransfer {
                from,
                to,
                value,
                token,
            } => (
                none(),
                from,
                to,
                value.clone(),
                token.clone().unwrap_or_default(),
            ),
        };
        fields.extend([
            ("contract", contract),
            ("from", from.clone()),
            ("to", to.clone()),
            ("value", value),
            ("token", token),
        ]);
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_entries_carry_the_block_and_its_event_count() {
        let header = BlockHeader {
            number: 7,
            hash: "00".repeat(32),
            parent_hash: "11".repeat(32),
            timestamp_ms: 21_000,
        };
        let fields = header.block_entry_fields(3);
        let names: Vec<_> = fields.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "v",
                "kind",
                "block",
                "block_hash",
                "parent_hash",
                "block_time",
                "events"
            ]
        );
        assert_eq!(fields[0].1, "2");
        assert_eq!(fields[1].1, "block");
        assert_eq!(fields[6].1, "3");
        assert_eq!(
            reverted_entry_fields(7, "ab"),
            vec![
                ("v", "2".to_string()),
                ("kind", "block_reverted".to_string()),
                ("block", "7".to_string()),
                ("block_hash", "ab".to_string())
            ]
        );
        assert_eq!(finalized_entry_fields(9, "cd")[1].1, "finalized");
    }

    #[test]
    fn stream_fields_are_flat_and_complete() {
        let header = BlockHeader {
            number: 7,
            hash: "00".repeat(32),
            parent_hash: "11".repeat(32),
            timestamp_ms: 21_000,
        };
        let event = Event {
            uid: "ab_0".into(),
            tx: "ab".into(),
            body: EventBody::Log {
                contract: "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t".into(),
                topics: vec!["aa".into(), "bb".into()],
                data: "cc".into(),
            },
        };
        let fields = event.stream_fields(header.number);
        let names: Vec<_> = fields.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            ["v", "kind", "block", "tx", "i", "contract", "topics", "data"]
        );
        assert_eq!(fields[0].1, "2");
        assert_eq!(fields[1].1, "log");
        assert_eq!(fields[2].1, "7");
        assert_eq!(fields[4].1, "0");
        assert_eq!(fields[6].1, "aa,bb");
    }

    #[test]
    fn every_kind_but_log_has_one_field_list() {
        let event = |uid: &str, body: EventBody| Event {
            uid: uid.into(),
            tx: "ab".into(),
            body,
        };
        let (a, b) = ("TA".to_string(), "TB".to_string());
        let cases = [
            (
                event(
                    "ab_0",
                    EventBody::Trc20Transfer {
                        contract: "TC".into(),
                        from: a.clone(),
                        to: b.clone(),
                        value: "5".into(),
                    },
                ),
                ["trc20", "0", "TC", "TA", "TB", "5", ""],
            ),
            (
                event(
                    "ab_1",
                    EventBody::Trc721Transfer {
                        contract: "TC".into(),
                        from: a.clone(),
                        to: b.clone(),
                        token_id: "9".into(),
                    },
                ),
                ["trc721", "1", "TC", "TA", "TB", "", "9"],
            ),
            (
                event(
                    "ab_2",
                    EventBody::Approval {
                        contract: "TC".into(),
                        owner: a.clone(),
                        spender: b.clone(),
                        value: "5".into(),
                    },
                ),
                ["approval", "2", "TC", "TA", "TB", "5", ""],
            ),
            (
                event(
                    "ab_trx",
                    EventBody::TrxTransfer {
                        from: a.clone(),
                        to: b.clone(),
                        value: "5".into(),
                    },
                ),
                ["trx", "trx", "", "TA", "TB", "5", ""],
            ),
            (
                event(
                    "ab_trc10",
                    EventBody::Trc10Transfer {
                        from: a.clone(),
                        to: b.clone(),
                        value: "5".into(),
                        token: "1002000".into(),
                    },
                ),
                ["trc10", "trc10", "", "TA", "TB", "5", "1002000"],
            ),
            (
                event(
                    "ab_int0.1",
                    EventBody::InternalTransfer {
                        from: a.clone(),
                        to: b.clone(),
                        value: "5".into(),
                        token: None,
                    },
                ),
                ["internal", "int0.1", "", "TA", "TB", "5", ""],
            ),
        ];
        for (event, want) in cases {
            let fields = event.stream_fields(7);
            let names: Vec<_> = fields.iter().map(|(k, _)| *k).collect();
            assert_eq!(
                names,
                ["v", "kind", "block", "tx", "i", "contract", "from", "to", "value", "token"]
            );
            let values: Vec<&str> = [1, 4, 5, 6, 7, 8, 9]
                .iter()
                .map(|i| fields[*i].1.as_str())
                .collect();
            assert_eq!(values, want);
        }
    }
}
