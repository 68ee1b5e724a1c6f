//! The plain data every part agrees on: a block's header, its decoded events, and how an event
//! becomes the flat fields of one stream entry (the event contract of docs/EVENTS.md, schema `v=1`).

use serde::{Deserialize, Serialize};

/// Schema version written in every stream entry as field `v`.
pub const EVENT_SCHEMA_VERSION: &str = "1";

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
    /// The `kind` field of the stream entry.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::Trc20Transfer { .. } => "trc20_transfer",
            EventBody::Trc721Transfer { .. } => "trc721_transfer",
            EventBody::Approval { .. } => "approval",
            EventBody::Log { .. } => "log",
            EventBody::TrxTransfer { .. } => "trx_transfer",
            EventBody::Trc10Transfer { .. } => "trc10_transfer",
            EventBody::InternalTransfer { .. } => "internal_transfer",
        }
    }
}

impl Event {
    /// The flat field/value pairs of this event's stream entry, in a fixed order.
    pub fn stream_fields(&self, header: &BlockHeader) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("v", EVENT_SCHEMA_VERSION.to_string()),
            ("kind", self.body.kind().to_string()),
            ("uid", self.uid.clone()),
            ("block", header.number.to_string()),
            ("block_hash", header.hash.clone()),
            ("block_time", header.timestamp_ms.to_string()),
            ("tx", self.tx.clone()),
        ];
        match &self.body {
            EventBody::Trc20Transfer {
                contract,
                from,
                to,
                value,
            } => fields.extend([
                ("contract", contract.clone()),
                ("from", from.clone()),
                ("to", to.clone()),
                ("value", value.clone()),
            ]),
            EventBody::Trc721Transfer {
                contract,
                from,
                to,
                token_id,
            } => fields.extend([
                ("contract", contract.clone()),
                ("from", from.clone()),
                ("to", to.clone()),
                ("token_id", token_id.clone()),
            ]),
            EventBody::Approval {
                contract,
                owner,
                spender,
                value,
            } => fields.extend([
                ("contract", contract.clone()),
                ("owner", owner.clone()),
                ("spender", spender.clone()),
                ("value", value.clone()),
            ]),
            EventBody::Log {
                contract,
                topics,
                data,
            } => fields.extend([
                ("contract", contract.clone()),
                ("topics", topics.join(",")),
                ("data", data.clone()),
            ]),
            EventBody::TrxTransfer { from, to, value } => fields.extend([
                ("from", from.clone()),
                ("to", to.clone()),
                ("value", value.clone()),
            ]),
            EventBody::Trc10Transfer {
                from,
                to,
                value,
                token,
            } => fields.extend([
                ("from", from.clone()),
                ("to", to.clone()),
                ("value", value.clone()),
                ("token", token.clone()),
            ]),
            EventBody::InternalTransfer {
                from,
                to,
                value,
                token,
            } => {
                fields.extend([
                    ("from", from.clone()),
                    ("to", to.clone()),
                    ("value", value.clone()),
                ]);
                if let Some(token) = token {
                    fields.push(("token", token.clone()));
                }
            }
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let fields = event.stream_fields(&header);
        let names: Vec<_> = fields.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "v",
                "kind",
                "uid",
                "block",
                "block_hash",
                "block_time",
                "tx",
                "contract",
                "topics",
                "data"
            ]
        );
        assert_eq!(fields[1].1, "log");
        assert_eq!(fields[8].1, "aa,bb");
        assert_eq!(fields[5].1, "21000");
    }
}
