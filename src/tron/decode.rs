//! Turning the node's JSON into blocks and events, by the rules of docs/EVENTS.md. Pure: no I/O.
//!
//! The node leaves out every field that has its default value, adds fields in new versions and
//! knows about 40 contract types, so every field here is optional and unknown ones are ignored.
//! What is checked strictly is what decides whether a block may be published whole: the answer
//! being a block at all, its number, and the transaction infos matching the transactions.

use std::collections::BTreeMap;

use actors::chain::{BlockId, ChainError};
use actors::model::{Block, BlockHeader, Event, EventBody};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::address::{any_to_base58, hex_to_base58, hex_to_bytes, topic_to_base58};

/// topic0 of `Transfer(address,address,uint256)`, shared by TRC-20 and TRC-721.
pub const TRANSFER_TOPIC: &str = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
/// topic0 of `Approval(address,address,uint256)`.
pub const APPROVAL_TOPIC: &str = "8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925";

// ---------------------------------------------------------------------------------------------
// The node's JSON, as loosely as it comes.

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BlockJson {
    #[serde(rename = "blockID")]
    block_id: Option<String>,
    block_header: Option<BlockHeaderJson>,
    transactions: Option<Vec<TxJson>>,
    #[serde(rename = "Error")]
    error: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BlockHeaderJson {
    raw_data: Option<BlockRawJson>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BlockRawJson {
    number: u64,
    #[serde(rename = "parentHash")]
    parent_hash: Option<String>,
    timestamp: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct TxJson {
    #[serde(rename = "txID")]
    tx_id: Option<String>,
    raw_data: Option<TxRawJson>,
    ret: Vec<RetJson>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct TxRawJson {
    contract: Vec<ContractJson>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct ContractJson {
    #[serde(rename = "type")]
    kind: Option<String>,
    parameter: Option<ParameterJson>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct ParameterJson {
    // Kept as its JSON text: only the few contract types we publish are given a shape, so an
    // unknown type (or a known one with odd extra fields) can never fail the block; and a
    // range of bodies waiting to be decoded holds text, not a tree of maps (a third the memory).
    value: Option<Box<serde_json::value::RawValue>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct RetJson {
    #[serde(rename = "contractRet")]
    contract_ret: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TransferJson {
    owner_address: Option<String>,
    to_address: Option<String>,
    amount: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TransferAssetJson {
    asset_name: Option<String>,
    owner_address: Option<String>,
    to_address: Option<String>,
    amount: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TriggerJson {
    owner_address: Option<String>,
    contract_address: Option<String>,
    call_value: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InfoJson {
    id: Option<String>,
    #[serde(rename = "blockNumber")]
    block_number: Option<u64>,
    #[serde(rename = "blockTimeStamp")]
    block_time_stamp: Option<u64>,
    result: Option<String>,
    log: Vec<LogJson>,
    internal_transactions: Vec<InternalJson>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LogJson {
    address: Option<String>,
    topics: Vec<String>,
    data: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InternalJson {
    caller_address: Option<String>,
    #[serde(rename = "transferTo_address")]
    transfer_to_address: Option<String>,
    #[serde(rename = "callValueInfo")]
    call_value_info: Vec<CallValueJson>,
    rejected: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CallValueJson {
    #[serde(rename = "callValue")]
    call_value: u64,
    // A string in the protocol; a number is tolerated.
    #[serde(rename = "tokenId")]
    token_id: Option<serde_json::Value>,
}

/// An object answer that is not a block: `{}` or `{"Error": ...}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ObjectAnswer {
    #[serde(rename = "Error")]
    error: Option<serde_json::Value>,
}

/// `getnodeinfo`: only the irreversible block is read.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NodeInfoJson {
    #[serde(rename = "solidityBlock")]
    solidity_block: Option<serde_json::Value>,
    #[serde(rename = "Error")]
    error: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RangeJson {
    block: Option<Vec<BlockJson>>,
    #[serde(rename = "Error")]
    error: Option<serde_json::Value>,
}

// ---------------------------------------------------------------------------------------------
// Public API.

/// A block body as the node sent it, its header checked, its transactions not yet decoded into
/// events (that needs the transaction infos, fetched separately).
#[derive(Debug, Clone)]
pub struct RawBlock {
    header: BlockHeader,
    transactions: Vec<TxJson>,
}

impl RawBlock {
    pub(crate) fn header(&self) -> &BlockHeader {
        &self.header
    }

    pub(crate) fn number(&self) -> u64 {
        self.header.number
    }

    #[cfg(test)]
    pub(crate) fn transaction_count(&self) -> usize {
        self.transactions.len()
    }
}

fn malformed(what: impl Into<String>, detail: impl Into<String>) -> ChainError {
    ChainError::Malformed {
        what: what.into(),
        detail: detail.into(),
    }
}

fn node_error(error: serde_json::Value) -> ChainError {
    match error {
        serde_json::Value::String(message) => ChainError::Node(message),
        other => ChainError::Node(other.to_string()),
    }
}

fn parse_json<T: DeserializeOwned>(what: &str, json: &[u8]) -> Result<T, ChainError> {
    serde_json::from_slice(json).map_err(|e| malformed(what, format!("bad JSON: {e}")))
}

/// The body of block `number` (a `getblockbynum` answer), checked but not yet decoded.
/// `{}` is [`ChainError::NotProduced`].
pub fn parse_block(number: u64, block_json: &[u8]) -> Result<RawBlock, ChainError> {
    let what = format!("block {number}");
    let raw = parse_json::<BlockJson>(&what, block_json)?;
    match checked_block(&what, raw)? {
        Some(block) if block.header.number == number => Ok(block),
        Some(block) => Err(malformed(
            what,
            format!("the node answered block {}", block.header.number),
        )),
        None => Err(ChainError::NotProduced(number)),
    }
}

/// The head block (a `getnowblock` answer), its body kept so it need not be fetched again.
pub fn parse_head(block_json: &[u8]) -> Result<RawBlock, ChainError> {
    let what = "head block";
    let raw = parse_json::<BlockJson>(what, block_json)?;
    checked_block(what, raw)?.ok_or_else(|| malformed(what, "empty answer"))
}

/// The header of the head block (a `getnowblock` answer).
pub fn decode_header(block_json: &[u8]) -> Result<BlockHeader, ChainError> {
    parse_head(block_json).map(|block| block.header)
}

/// The header of block `number` (a `getblock` answer without detail). `{}` is
/// [`ChainError::NotProduced`]; another block's header is malformed.
pub fn parse_header(number: u64, block_json: &[u8]) -> Result<BlockHeader, ChainError> {
    parse_block(number, block_json).map(|block| block.header)
}

/// The irreversible block of a `getnodeinfo` answer: its `solidityBlock`, `Num:<n>,ID:<blockID>`.
pub fn parse_finalized(node_info_json: &[u8]) -> Result<BlockId, ChainError> {
    let what = "node info";
    let raw = parse_json::<NodeInfoJson>(what, node_info_json)?;
    if let Some(error) = raw.error {
        return Err(node_error(error));
    }
    let text = match raw.solidity_block {
        Some(serde_json::Value::String(text)) => text,
        None => return Err(malformed(what, "no solidityBlock")),
        Some(other) => return Err(malformed(what, format!("solidityBlock is {other}"))),
    };
    block_ref(&text).ok_or_else(|| {
        malformed(
            what,
            format!("solidityBlock {text:?} is not \"Num:<n>,ID:<64 hex starting with n>\""),
        )
    })
}

/// The blocks of a `getblockbylimitnext` answer, by number. `{}` (the node's answer to a range
/// over 100 blocks) gives an empty map; blocks the node left out are simply absent.
pub fn parse_block_range(range_json: &[u8]) -> Result<BTreeMap<u64, RawBlock>, ChainError> {
    let what = "block range";
    let raw = parse_json::<RangeJson>(what, range_json)?;
    if let Some(error) = raw.error {
        return Err(node_error(error));
    }
    let mut blocks = BTreeMap::new();
    for block in raw.block.unwrap_or_default() {
        if let Some(block) = checked_block(what, block)? {
            blocks.entry(block.header.number).or_insert(block);
        }
    }
    Ok(blocks)
}

/// Block `number`, fully decoded from its `getblockbynum` and `gettransactioninfobyblocknum`
/// answers.
pub fn decode_block(
    number: u64,
    block_json: &[u8],
    infos_json: &[u8],
) -> Result<Block, ChainError> {
    let block = parse_block(number, block_json)?;
    decode_raw_block(&block, infos_json)
}

/// A checked body and its `gettransactioninfobyblocknum` answer, decoded into events.
pub fn decode_raw_block(block: &RawBlock, infos_json: &[u8]) -> Result<Block, ChainError> {
    let number = block.header.number;
    let what = format!("transaction infos of block {number}");
    let infos = parse_infos(&what, infos_json)?;
    if infos.is_empty() && !block.transactions.is_empty() {
        return Err(ChainError::NodeNotSynced {
            block: number,
            txs: block.transactions.len(),
        });
    }
    if infos.len() != block.transactions.len() {
        return Err(malformed(
            what,
            format!(
                "{} infos for {} transactions",
                infos.len(),
                block.transactions.len()
            ),
        ));
    }
    let mut events = Vec::new();
    for (index, (tx, info)) in block.transactions.iter().zip(&infos).enumerate() {
        let txid = tx.tx_id.as_deref().ok_or_else(|| {
            malformed(
                format!("block {number}"),
                format!("transaction {index} has no txID"),
            )
        })?;
        let info_id = info.id.as_deref().unwrap_or_default();
        if !info_id.eq_ignore_ascii_case(txid) {
            return Err(malformed(
                what,
                format!("info {index} is for {info_id:?}, transaction is {txid}"),
            ));
        }
        if let Some(info_block) = info.block_number {
            if info_block != number {
                return Err(malformed(
                    what,
                    format!("info {index} says block {info_block}"),
                ));
            }
        }
        // Two versions of a block from two producers carry two timestamps: infos of the other
        // version (the node switched branches between the two requests) are refused even when
        // they hold the same transactions.
        if let Some(info_time) = info.block_time_stamp {
            if info_time != block.header.timestamp_ms {
                return Err(malformed(
                    what,
                    format!(
                        "info {index} is of a block made at {info_time}, this one was made at {}",
                        block.header.timestamp_ms
                    ),
                ));
            }
        }
        transaction_events(number, &txid.to_ascii_lowercase(), tx, info, &mut events)?;
    }
    Ok(Block {
        header: block.header.clone(),
        events,
    })
}

/// Decimal text of a big-endian unsigned hex number of any length (uint256 included).
/// `None` when it is not hex. Empty hex is 0.
pub fn hex_to_decimal(hex: &str) -> Option<String> {
    const BASE: u64 = 1_000_000_000;
    // Little-endian limbs of nine decimal digits each.
    let mut limbs: Vec<u64> = vec![0];
    for c in hex.chars() {
        let mut carry = u64::from(c.to_digit(16)?);
        for limb in limbs.iter_mut() {
            let v = *limb * 16 + carry;
            *limb = v % BASE;
            carry = v / BASE;
        }
        if carry > 0 {
            limbs.push(carry);
        }
    }
    let mut out = String::new();
    let mut iter = limbs.iter().rev();
    if let Some(top) = iter.next() {
        out.push_str(&top.to_string());
    }
    for limb in iter {
        out.push_str(&format!("{limb:09}"));
    }
    Some(out)
}

/// A TRC-10 token id from `asset_name`: hex of ASCII by default, kept as given when it is not
/// hex of printable ASCII (as with `visible=true`).
pub fn asset_name_to_token(asset_name: &str) -> String {
    match hex_to_bytes(asset_name) {
        Some(bytes) if !bytes.is_empty() && bytes.iter().all(|b| (0x20..=0x7e).contains(b)) => {
            bytes.into_iter().map(char::from).collect()
        }
        _ => asset_name.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Internals.

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `Num:<n>,ID:<blockID>`, as `getnodeinfo` prints a block. A blockID starts with its block's
/// number (8 bytes, big-endian): an ID that does not is not this block's.
fn block_ref(text: &str) -> Option<BlockId> {
    let (number, id) = text.split_once(',')?;
    let number: u64 = number.strip_prefix("Num:")?.parse().ok()?;
    let hash = id.strip_prefix("ID:")?;
    if !is_hash(hash) || u64::from_str_radix(&hash[..16], 16).ok()? != number {
        return None;
    }
    Some(BlockId {
        number,
        hash: hash.to_ascii_lowercase(),
    })
}

/// `Ok(None)` for `{}`; the header checked otherwise.
fn checked_block(what: &str, raw: BlockJson) -> Result<Option<RawBlock>, ChainError> {
    if let Some(error) = raw.error {
        return Err(node_error(error));
    }
    let Some(block_id) = raw.block_id else {
        if raw.block_header.is_none() && raw.transactions.is_none() {
            return Ok(None);
        }
        return Err(malformed(what, "no blockID"));
    };
    let header = raw
        .block_header
        .and_then(|h| h.raw_data)
        .ok_or_else(|| malformed(what, "no block_header.raw_data"))?;
    let parent_hash = header.parent_hash.unwrap_or_default();
    if !is_hash(&block_id) || !is_hash(&parent_hash) {
        return Err(malformed(
            what,
            format!("blockID {block_id:?} or parentHash {parent_hash:?} is not 64 hex"),
        ));
    }
    Ok(Some(RawBlock {
        header: BlockHeader {
            number: header.number,
            hash: block_id.to_ascii_lowercase(),
            parent_hash: parent_hash.to_ascii_lowercase(),
            timestamp_ms: header.timestamp,
        },
        transactions: raw.transactions.unwrap_or_default(),
    }))
}

/// The infos answer: an array, `{}` (read as no infos) or `{"Error": ...}`.
fn parse_infos(what: &str, json: &[u8]) -> Result<Vec<InfoJson>, ChainError> {
    let first = json.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        let answer = parse_json::<ObjectAnswer>(what, json)?;
        return match answer.error {
            Some(error) => Err(node_error(error)),
            None => Ok(Vec::new()),
        };
    }
    parse_json(what, json)
}

fn is_failed(tx: &TxJson, info: &InfoJson) -> bool {
    let ret_failed = tx
        .ret
        .first()
        .and_then(|r| r.contract_ret.as_deref())
        .is_some_and(|r| r != "SUCCESS");
    ret_failed || info.result.as_deref() == Some("FAILED")
}

fn transaction_events(
    number: u64,
    txid: &str,
    tx: &TxJson,
    info: &InfoJson,
    out: &mut Vec<Event>,
) -> Result<(), ChainError> {
    if is_failed(tx, info) {
        return Ok(());
    }
    let what = || format!("transaction {txid} of block {number}");
    let event = |suffix: &str, body: EventBody| Event {
        uid: format!("{txid}_{suffix}"),
        tx: txid.to_string(),
        body,
    };
    let address = |field: &str, value: Option<&str>| -> Result<String, ChainError> {
        let value = value.ok_or_else(|| malformed(what(), format!("no {field}")))?;
        any_to_base58(value).map_err(|e| malformed(what(), format!("{field}: {e}")))
    };

    // 1. Its own transfer.
    let contract = tx.raw_data.as_ref().and_then(|r| r.contract.first());
    if let Some(contract) = contract {
        let value = contract
            .parameter
            .as_ref()
            .and_then(|p| p.value.as_deref())
            .map_or("null", |raw| raw.get());
        let shape = |e: serde_json::Error| malformed(what(), format!("parameter: {e}"));
        match contract.kind.as_deref() {
            Some("TransferContract") => {
                let p = serde_json::from_str::<TransferJson>(value).map_err(shape)?;
                out.push(event(
                    "trx",
                    EventBody::TrxTransfer {
                        from: address("owner_address", p.owner_address.as_deref())?,
                        to: address("to_address", p.to_address.as_deref())?,
                        value: p.amount.to_string(),
                    },
                ));
            }
            Some("TransferAssetContract") => {
                let p = serde_json::from_str::<TransferAssetJson>(value).map_err(shape)?;
                out.push(event(
                    "trc10",
                    EventBody::Trc10Transfer {
                        from: address("owner_address", p.owner_address.as_deref())?,
                        to: address("to_address", p.to_address.as_deref())?,
                        value: p.amount.to_string(),
                        token: asset_name_to_token(p.asset_name.as_deref().unwrap_or_default()),
                    },
                ));
            }
            Some("TriggerSmartContract") => {
                let p = serde_json::from_str::<TriggerJson>(value).map_err(shape)?;
                if p.call_value > 0 {
                    out.push(event(
                        "trx",
                        EventBody::TrxTransfer {
                            from: address("owner_address", p.owner_address.as_deref())?,
                            to: address("contract_address", p.contract_address.as_deref())?,
                            value: p.call_value.to_string(),
                        },
                    ));
                }
            }
            _ => {}
        }
    }

    // 2. Its logs.
    for (i, log) in info.log.iter().enumerate() {
        let contract = log
            .address
            .as_deref()
            .ok_or_else(|| malformed(what(), format!("log {i} has no address")))
            .and_then(|a| {
                hex_to_base58(a).map_err(|e| malformed(what(), format!("log {i}: {e}")))
            })?;
        out.push(event(&i.to_string(), log_body(contract, log)));
    }

    // 3. Its internal transactions.
    for (j, internal) in info.internal_transactions.iter().enumerate() {
        if internal.rejected {
            continue;
        }
        for (k, call) in internal.call_value_info.iter().enumerate() {
            if call.call_value == 0 {
                continue;
            }
            let token = match &call.token_id {
                Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            let suffix = if k == 0 {
                format!("int{j}")
            } else {
                format!("int{j}.{k}")
            };
            out.push(event(
                &suffix,
                EventBody::InternalTransfer {
                    from: address("caller_address", internal.caller_address.as_deref())?,
                    to: address(
                        "transferTo_address",
                        internal.transfer_to_address.as_deref(),
                    )?,
                    value: call.call_value.to_string(),
                    token,
                },
            ));
        }
    }
    Ok(())
}

/// A log's event: a standard transfer or approval when its shape is exactly the standard one,
/// raw otherwise.
fn log_body(contract: String, log: &LogJson) -> EventBody {
    let topics: Vec<String> = log.topics.iter().map(|t| t.to_ascii_lowercase()).collect();
    let data = log.data.as_deref().unwrap_or_default().to_ascii_lowercase();
    let standard = || -> Option<EventBody> {
        let topic0 = topics.first()?;
        let word = |hex: &str| is_hash(hex).then(|| hex_to_decimal(hex)).flatten();
        if topic0 == TRANSFER_TOPIC && topics.len() == 3 && is_hash(&data) {
            Some(EventBody::Trc20Transfer {
                contract: contract.clone(),
                from: topic_to_base58(&topics[1]).ok()?,
                to: topic_to_base58(&topics[2]).ok()?,
                value: word(&data)?,
            })
        } else if topic0 == TRANSFER_TOPIC && topics.len() == 4 && data.is_empty() {
            Some(EventBody::Trc721Transfer {
                contract: contract.clone(),
                from: topic_to_base58(&topics[1]).ok()?,
                to: topic_to_base58(&topics[2]).ok()?,
                token_id: word(&topics[3])?,
            })
        } else if topic0 == APPROVAL_TOPIC && topics.len() == 3 && is_hash(&data) {
            Some(EventBody::Approval {
                contract: contract.clone(),
                owner: topic_to_base58(&topics[1]).ok()?,
                spender: topic_to_base58(&topics[2]).ok()?,
                value: word(&data)?,
            })
        } else {
            None
        }
    };
    standard().unwrap_or(EventBody::Log {
        contract,
        topics,
        data,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::{json, Value};

    const USDT_HEX: &str = "41a614f803b6fd780986a42c78ec9c7f77e6ded13c";
    const USDT: &str = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";
    const A_HEX: &str = "411111111111111111111111111111111111111111";
    const A: &str = "TBXSw8fM4jpQkGc6zZjsVABFpVN7UvXPdV";
    const B_HEX: &str = "412222222222222222222222222222222222222222";
    const B: &str = "TD5gsCwxykWsLN9aPrq2TAfNjByuZKYp4E";
    const C_HEX: &str = "413333333333333333333333333333333333333333";
    const C: &str = "TEdvoHEatmDKvTh3o9vBRB9Vdtbhn4QFhy";
    const MAX_U256: &str =
        "115792089237316195423570985008687907853269984665640564039457584007913129639935";

    fn hash(prefix: u64, fill: &str) -> String {
        format!("{prefix:016x}{}", fill.repeat(24))
    }

    fn txid(n: u64) -> String {
        hash(n, "7e")
    }

    /// An address as an indexed topic: 32 bytes, left-padded, no 41.
    fn topic(address_hex: &str) -> String {
        format!("{}{}", "0".repeat(24), &address_hex[2..])
    }

    fn word(n: u128) -> String {
        format!("{n:064x}")
    }

    fn block_json(number: u64, txs: Option<Vec<Value>>) -> Value {
        let mut block = json!({
            "blockID": hash(number, "ab"),
            "block_header": {
                "raw_data": {
                    "number": number,
                    "txTrieRoot": "00".repeat(32),
                    "witness_address": A_HEX,
                    "parentHash": hash(number - 1, "ab"),
                    "version": 34,
                    "timestamp": 1_700_000_001_000u64 + number * 3000
                },
                "witness_signature": "ff"
            },
            "packingFee": 1
        });
        if let Some(txs) = txs {
            block["transactions"] = Value::Array(txs);
        }
        block
    }

    fn tx(id: &str, kind: &str, value: Value, ret: Option<&str>) -> Value {
        let mut tx = json!({
            "txID": id,
            "raw_data": {
                "contract": [{
                    "type": kind,
                    "parameter": { "value": value, "type_url": format!("type.googleapis.com/protocol.{kind}") }
                }],
                "ref_block_bytes": "0000",
                "expiration": 1,
                "timestamp": 1
            },
            "raw_data_hex": "00",
            "signature": ["00"]
        });
        if let Some(ret) = ret {
            tx["ret"] = json!([{ "contractRet": ret }]);
        }
        tx
    }

    fn info(id: &str, number: u64) -> Value {
        json!({
            "id": id,
            "fee": 345000,
            "blockNumber": number,
            "blockTimeStamp": 1_700_000_001_000u64 + number * 3000,
            "contractResult": [""],
            "receipt": { "net_fee": 345000, "result": "SUCCESS" },
            "packingFee": 7
        })
    }

    fn bytes(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    fn decode(number: u64, block: &Value, infos: &Value) -> Result<Block, ChainError> {
        decode_block(number, &bytes(block), &bytes(infos))
    }

    fn ev(tx: &str, suffix: &str, body: EventBody) -> Event {
        Event {
            uid: format!("{tx}_{suffix}"),
            tx: tx.to_string(),
            body,
        }
    }

    #[test]
    fn full_block_yields_exact_events_in_order() {
        let n = 70_000_000;
        let (t1, t2, t3, t4, t5, t6, t7) = (
            txid(1),
            txid(2),
            txid(3),
            txid(4),
            txid(5),
            txid(6),
            txid(7),
        );
        let txs = vec![
            tx(
                &t1,
                "TransferContract",
                json!({"owner_address": A_HEX, "to_address": B_HEX, "amount": 1_500_000}),
                Some("SUCCESS"),
            ),
            tx(
                &t2,
                "TriggerSmartContract",
                json!({"owner_address": A_HEX, "contract_address": USDT_HEX, "data": "a9059cbb"}),
                Some("SUCCESS"),
            ),
            tx(
                &t3,
                "TriggerSmartContract",
                json!({"owner_address": A_HEX, "contract_address": C_HEX, "call_value": 5, "data": "00"}),
                Some("SUCCESS"),
            ),
            tx(
                &t4,
                "TransferAssetContract",
                json!({"asset_name": "31303032303030", "owner_address": B_HEX, "to_address": C_HEX, "amount": 42}),
                Some("SUCCESS"),
            ),
            tx(
                &t5,
                "TriggerSmartContract",
                json!({"owner_address": A_HEX, "contract_address": USDT_HEX, "call_value": 9}),
                Some("REVERT"),
            ),
            tx(
                &t6,
                "TransferContract",
                json!({"owner_address": A_HEX, "to_address": B_HEX, "amount": 1}),
                Some("SUCCESS"),
            ),
            tx(
                &t7,
                "FreezeBalanceV2Contract",
                json!({"owner_address": A_HEX, "frozen_balance": 10, "resource": "ENERGY", "brand_new": {"x": [1, 2]}}),
                Some("SUCCESS"),
            ),
        ];
        let usdt_log = json!({"address": &USDT_HEX[2..], "topics": [TRANSFER_TOPIC, topic(A_HEX), topic(B_HEX)], "data": word(1_000_000)});
        let mut i1 = info(&t1, n);
        i1["receipt"] = json!({"net_usage": 268});
        let mut i2 = info(&t2, n);
        i2["log"] = json!([usdt_log]);
        i2["contract_address"] = json!(USDT_HEX);
        let mut i3 = info(&t3, n);
        i3["log"] = json!([
            {"address": &C_HEX[2..], "topics": [TRANSFER_TOPIC, topic(A_HEX), topic(B_HEX), word(77)]},
            {"address": &C_HEX[2..], "topics": [APPROVAL_TOPIC, topic(A_HEX), topic(B_HEX)], "data": word(500)},
            {"address": &C_HEX[2..], "topics": ["AAAA".repeat(16)], "data": "BEEF"},
            // A Transfer of an unexpected shape (data too long) stays a raw log.
            {"address": &C_HEX[2..], "topics": [TRANSFER_TOPIC, topic(A_HEX), topic(B_HEX)], "data": format!("{}{}", word(1), word(2))}
        ]);
        i3["internal_transactions"] = json!([
            {"hash": "01", "caller_address": C_HEX, "transferTo_address": B_HEX, "callValueInfo": [{"callValue": 3}], "note": "63616c6c"},
            {"hash": "02", "caller_address": C_HEX, "transferTo_address": A_HEX, "callValueInfo": [{"callValue": 2}], "note": "63616c6c", "rejected": true},
            {"hash": "03", "caller_address": C_HEX, "transferTo_address": A_HEX, "callValueInfo": [{}, {"callValue": 8, "tokenId": "1002000"}, {"callValue": 1}], "note": "63616c6c"},
            {"hash": "04", "caller_address": C_HEX, "transferTo_address": A_HEX, "callValueInfo": [{}], "note": "63616c6c"}
        ]);
        let i4 = info(&t4, n);
        let mut i5 = info(&t5, n);
        i5["result"] = json!("FAILED");
        i5["resMessage"] = json!("5245564552540a");
        i5["log"] = json!([usdt_log]);
        let mut i6 = info(&t6, n);
        i6["result"] = json!("FAILED");
        let mut i7 = info(&t7, n);
        i7["internal_transactions"] = json!([{"caller_address": A_HEX, "transferTo_address": C_HEX, "callValueInfo": [{"callValue": 4}]}]);
        let infos = json!([i1, i2, i3, i4, i5, i6, i7]);

        let block = decode(n, &block_json(n, Some(txs)), &infos).unwrap();
        assert_eq!(
            block.header,
            BlockHeader {
                number: n,
                hash: hash(n, "ab"),
                parent_hash: hash(n - 1, "ab"),
                timestamp_ms: 1_700_000_001_000 + n * 3000,
            }
        );
        let s = |v: &str| v.to_string();
        let expected = vec![
            ev(
                &t1,
                "trx",
                EventBody::TrxTransfer {
                    from: s(A),
                    to: s(B),
                    value: s("1500000"),
                },
            ),
            ev(
                &t2,
                "0",
                EventBody::Trc20Transfer {
                    contract: s(USDT),
                    from: s(A),
                    to: s(B),
                    value: s("1000000"),
                },
            ),
            ev(
                &t3,
                "trx",
                EventBody::TrxTransfer {
                    from: s(A),
                    to: s(C),
                    value: s("5"),
                },
            ),
            ev(
                &t3,
                "0",
                EventBody::Trc721Transfer {
                    contract: s(C),
                    from: s(A),
                    to: s(B),
                    token_id: s("77"),
                },
            ),
            ev(
                &t3,
                "1",
                EventBody::Approval {
                    contract: s(C),
                    owner: s(A),
                    spender: s(B),
                    value: s("500"),
                },
            ),
            ev(
                &t3,
                "2",
                EventBody::Log {
                    contract: s(C),
                    topics: vec!["aaaa".repeat(16)],
                    data: s("beef"),
                },
            ),
            ev(
                &t3,
                "3",
                EventBody::Log {
                    contract: s(C),
                    topics: vec![s(TRANSFER_TOPIC), topic(A_HEX), topic(B_HEX)],
                    data: format!("{}{}", word(1), word(2)),
                },
            ),
            ev(
                &t3,
                "int0",
                EventBody::InternalTransfer {
                    from: s(C),
                    to: s(B),
                    value: s("3"),
                    token: None,
                },
            ),
            ev(
                &t3,
                "int2.1",
                EventBody::InternalTransfer {
                    from: s(C),
                    to: s(A),
                    value: s("8"),
                    token: Some(s("1002000")),
                },
            ),
            ev(
                &t3,
                "int2.2",
                EventBody::InternalTransfer {
                    from: s(C),
                    to: s(A),
                    value: s("1"),
                    token: None,
                },
            ),
            ev(
                &t4,
                "trc10",
                EventBody::Trc10Transfer {
                    from: s(B),
                    to: s(C),
                    value: s("42"),
                    token: s("1002000"),
                },
            ),
            ev(
                &t7,
                "int0",
                EventBody::InternalTransfer {
                    from: s(A),
                    to: s(C),
                    value: s("4"),
                    token: None,
                },
            ),
        ];
        assert_eq!(block.events, expected);
    }

    #[test]
    fn full_uint256_values_are_decimal() {
        let n = 5;
        let t = txid(1);
        let txs = vec![tx(
            &t,
            "TriggerSmartContract",
            json!({"owner_address": A_HEX, "contract_address": USDT_HEX}),
            Some("SUCCESS"),
        )];
        let mut i = info(&t, n);
        i["log"] = json!([{"address": &USDT_HEX[2..], "topics": [TRANSFER_TOPIC, topic(A_HEX), topic(B_HEX)], "data": "f".repeat(64)}]);
        let block = decode(n, &block_json(n, Some(txs)), &json!([i])).unwrap();
        assert_eq!(
            block.events[0].body,
            EventBody::Trc20Transfer {
                contract: USDT.into(),
                from: A.into(),
                to: B.into(),
                value: MAX_U256.into()
            }
        );
    }

    #[test]
    fn absent_amount_is_zero_and_ret_absent_is_success() {
        let n = 9;
        let t = txid(1);
        let txs = vec![tx(
            &t,
            "TransferContract",
            json!({"owner_address": A_HEX, "to_address": B_HEX}),
            None,
        )];
        let block = decode(n, &block_json(n, Some(txs)), &json!([info(&t, n)])).unwrap();
        assert_eq!(
            block.events,
            vec![ev(
                &t,
                "trx",
                EventBody::TrxTransfer {
                    from: A.into(),
                    to: B.into(),
                    value: "0".into()
                }
            )]
        );
    }

    #[test]
    fn empty_block_without_transactions_key_has_no_events() {
        let block = decode(12, &block_json(12, None), &json!([])).unwrap();
        assert_eq!(block.header.number, 12);
        assert!(block.events.is_empty());
    }

    #[test]
    fn empty_object_block_is_not_produced() {
        assert_eq!(
            decode(12, &json!({}), &json!([])),
            Err(ChainError::NotProduced(12))
        );
    }

    #[test]
    fn empty_infos_for_a_block_with_transactions_is_not_synced() {
        let t = txid(1);
        let txs = vec![tx(
            &t,
            "TransferContract",
            json!({"owner_address": A_HEX, "to_address": B_HEX, "amount": 1}),
            Some("SUCCESS"),
        )];
        assert_eq!(
            decode(3, &block_json(3, Some(txs.clone())), &json!([])),
            Err(ChainError::NodeNotSynced { block: 3, txs: 1 })
        );
        // `{}` infos read as none: the same.
        assert_eq!(
            decode(3, &block_json(3, Some(txs)), &json!({})),
            Err(ChainError::NodeNotSynced { block: 3, txs: 1 })
        );
    }

    #[test]
    fn node_errors_keep_the_message() {
        let msg = "class java.lang.IllegalArgumentException : num must be positive";
        assert_eq!(
            decode(3, &json!({"Error": msg}), &json!([])),
            Err(ChainError::Node(msg.into()))
        );
        assert_eq!(
            decode(3, &block_json(3, None), &json!({"Error": msg})),
            Err(ChainError::Node(msg.into()))
        );
        assert_eq!(
            decode_header(&bytes(&json!({"Error": msg}))),
            Err(ChainError::Node(msg.into()))
        );
    }

    #[test]
    fn mismatching_infos_are_malformed() {
        let (t1, t2) = (txid(1), txid(2));
        let txs = vec![
            tx(
                &t1,
                "TransferContract",
                json!({"owner_address": A_HEX, "to_address": B_HEX, "amount": 1}),
                Some("SUCCESS"),
            ),
            tx(
                &t2,
                "TransferContract",
                json!({"owner_address": A_HEX, "to_address": B_HEX, "amount": 1}),
                Some("SUCCESS"),
            ),
        ];
        let block = block_json(3, Some(txs));
        let swapped = json!([info(&t2, 3), info(&t1, 3)]);
        assert!(matches!(
            decode(3, &block, &swapped),
            Err(ChainError::Malformed { .. })
        ));
        let short = json!([info(&t1, 3)]);
        assert!(matches!(
            decode(3, &block, &short),
            Err(ChainError::Malformed { .. })
        ));
        let wrong_block = json!([info(&t1, 3), info(&t2, 4)]);
        assert!(matches!(
            decode(3, &block, &wrong_block),
            Err(ChainError::Malformed { .. })
        ));
        // Infos for an empty block.
        assert!(matches!(
            decode(3, &block_json(3, None), &short),
            Err(ChainError::Malformed { .. })
        ));
    }

    #[test]
    fn truncated_json_is_malformed() {
        let t = txid(1);
        let txs = vec![tx(
            &t,
            "TransferContract",
            json!({"owner_address": A_HEX, "to_address": B_HEX, "amount": 1}),
            Some("SUCCESS"),
        )];
        let block = bytes(&block_json(3, Some(txs)));
        let infos = bytes(&json!([info(&t, 3)]));
        let cut = |b: &[u8]| b[..b.len() / 2].to_vec();
        assert!(matches!(
            decode_block(3, &cut(&block), &infos),
            Err(ChainError::Malformed { .. })
        ));
        assert!(matches!(
            decode_block(3, &block, &cut(&infos)),
            Err(ChainError::Malformed { .. })
        ));
        assert!(matches!(
            decode_block(3, b"", &infos),
            Err(ChainError::Malformed { .. })
        ));
        assert!(decode_block(3, &block, &infos).is_ok());
    }

    #[test]
    fn infos_of_another_version_of_the_block_are_malformed_even_with_the_same_transactions() {
        let t = txid(1);
        let txs = vec![tx(
            &t,
            "TransferContract",
            json!({"owner_address": A_HEX, "to_address": B_HEX, "amount": 1}),
            None,
        )];
        let block = block_json(3, Some(txs));
        let mut other_version = info(&t, 3);
        other_version["blockTimeStamp"] = json!(1_700_000_001_000u64 + 3 * 3000 + 3000);
        assert!(decode(3, &block, &json!([info(&t, 3)])).is_ok());
        match decode(3, &block, &json!([other_version])) {
            Err(ChainError::Malformed { detail, .. }) => {
                assert!(detail.contains("made at"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn another_block_number_is_malformed() {
        assert!(matches!(
            decode(4, &block_json(3, None), &json!([])),
            Err(ChainError::Malformed { .. })
        ));
    }

    #[test]
    fn invalid_transfer_address_is_malformed() {
        let t = txid(1);
        let txs = vec![tx(
            &t,
            "TransferContract",
            json!({"owner_address": "41zz", "to_address": B_HEX, "amount": 1}),
            Some("SUCCESS"),
        )];
        assert!(matches!(
            decode(3, &block_json(3, Some(txs)), &json!([info(&t, 3)])),
            Err(ChainError::Malformed { .. })
        ));
    }

    #[test]
    fn visible_addresses_and_asset_names_are_kept() {
        let t = txid(1);
        let txs = vec![tx(
            &t,
            "TransferAssetContract",
            json!({"asset_name": "1002000", "owner_address": A, "to_address": B, "amount": 3}),
            Some("SUCCESS"),
        )];
        let block = decode(3, &block_json(3, Some(txs)), &json!([info(&t, 3)])).unwrap();
        assert_eq!(
            block.events,
            vec![ev(
                &t,
                "trc10",
                EventBody::Trc10Transfer {
                    from: A.into(),
                    to: B.into(),
                    value: "3".into(),
                    token: "1002000".into()
                }
            )]
        );
    }

    #[test]
    fn head_header_is_decoded() {
        let header = decode_header(&bytes(&block_json(80, None))).unwrap();
        assert_eq!(header.number, 80);
        assert_eq!(header.hash, hash(80, "ab"));
        assert_eq!(header.parent_hash, hash(79, "ab"));
        assert_eq!(header.timestamp_ms, 1_700_000_001_000 + 80 * 3000);
        assert!(matches!(
            decode_header(b"{}"),
            Err(ChainError::Malformed { .. })
        ));
    }

    #[test]
    fn a_header_is_the_asked_blocks_header() {
        let header = parse_header(80, &bytes(&block_json(80, None))).unwrap();
        assert_eq!(header.hash, hash(80, "ab"));
        assert_eq!(header.parent_hash, hash(79, "ab"));
        assert_eq!(parse_header(80, b"{}"), Err(ChainError::NotProduced(80)));
        assert!(matches!(
            parse_header(81, &bytes(&block_json(80, None))),
            Err(ChainError::Malformed { .. })
        ));
    }

    #[test]
    fn the_finalized_block_is_read_from_solidity_block() {
        let id = hash(61, "AB");
        let info = json!({
            "beginSyncNum": 60,
            "block": format!("Num:80,ID:{}", hash(80, "ab")),
            "solidityBlock": format!("Num:61,ID:{id}"),
            "peerList": []
        });
        assert_eq!(
            parse_finalized(&bytes(&info)),
            Ok(BlockId {
                number: 61,
                hash: id.to_ascii_lowercase()
            })
        );
        for bad in [
            json!({}),
            json!({"solidityBlock": null}),
            json!({"solidityBlock": ""}),
            json!({"solidityBlock": "Num:61"}),
            json!({"solidityBlock": format!("Num:x,ID:{id}")}),
            json!({"solidityBlock": format!("Num:62,ID:{id}")}),
            json!({"solidityBlock": format!("ID:{id},Num:61")}),
            json!({"solidityBlock": format!("Num:61,ID:{id}00")}),
        ] {
            let error = parse_finalized(&bytes(&bad)).unwrap_err();
            assert!(
                matches!(&error, ChainError::Malformed { what, detail } if what == "node info" && detail.contains("solidityBlock")),
                "{bad}: {error:?}"
            );
        }
        assert!(matches!(
            parse_finalized(b"{\"solidityBlock\": "),
            Err(ChainError::Malformed { .. })
        ));
        assert_eq!(
            parse_finalized(&bytes(&json!({"Error": "busy"}))),
            Err(ChainError::Node("busy".into()))
        );
    }

    /// A node switching branches between a block's body and its infos: the simulated node's
    /// two versions of every block of many forks, mixed both ways, are never one block.
    #[test]
    fn a_body_with_the_infos_of_its_other_version_is_refused() {
        use tron_sim::{SimChain, SimParams};
        let params = SimParams {
            seed: 9,
            start_block: 1_000,
            history: 1,
            txs_per_block: 5,
            genesis_ms: Some(1_700_000_001_000),
            frozen: true,
            fork_rate: 1.0,
            max_fork_depth: 5,
            ..SimParams::default()
        };
        let mut mixes = 0;
        let mut malformed = 0;
        for window in 1..=20u64 {
            let start = 1_000 - 1_000 % 32 + window * 32;
            // Each version as the node serves it: at a head inside the fork, then past it.
            let chain = SimChain::new(SimParams {
                history: start - 1_000 + 1,
                ..params.clone()
            })
            .unwrap();
            let (_, depth) = chain.forks_between(start, start)[0];
            let mut versions = Vec::new();
            for head in [start + depth - 1, start + depth] {
                chain.advance(head - chain.head());
                let n = start;
                let body = chain.block_json(n).unwrap();
                let infos = chain.infos_json(n).unwrap();
                assert!(decode_block(n, body.as_bytes(), infos.as_bytes()).is_ok());
                versions.push((body, infos));
            }
            let [(body_1, infos_1), (body_0, infos_0)] = &versions[..] else {
                unreachable!()
            };
            assert_ne!(body_1, body_0);
            for (body, infos) in [(body_1, infos_0), (body_0, infos_1)] {
                mixes += 1;
                match decode_block(start, body.as_bytes(), infos.as_bytes()) {
                    Err(ChainError::Malformed { .. }) => malformed += 1,
                    // The other version is empty: `[]` infos, as from an unsynced node.
                    Err(ChainError::NodeNotSynced { .. }) => assert_eq!(infos, "[]"),
                    other => panic!("block {start}: a mixed block decoded: {other:?}"),
                }
            }
        }
        assert_eq!(mixes, 40);
        assert!(malformed >= 36, "{malformed} of {mixes}");
    }

    #[test]
    fn ranges_give_blocks_by_number() {
        let t = txid(1);
        let txs = vec![tx(
            &t,
            "TransferContract",
            json!({"owner_address": A_HEX, "to_address": B_HEX, "amount": 1}),
            Some("SUCCESS"),
        )];
        let range = json!({"block": [block_json(10, None), block_json(12, Some(txs))]});
        let blocks = parse_block_range(&bytes(&range)).unwrap();
        assert_eq!(blocks.keys().copied().collect::<Vec<_>>(), vec![10, 12]);
        assert_eq!(blocks[&12].transaction_count(), 1);
        let decoded = decode_raw_block(&blocks[&12], &bytes(&json!([info(&t, 12)]))).unwrap();
        assert_eq!(decoded.events.len(), 1);
        assert!(parse_block_range(b"{}").unwrap().is_empty());
        assert_eq!(
            parse_block_range(br#"{"Error":"boom"}"#).unwrap_err(),
            ChainError::Node("boom".into())
        );
        assert!(matches!(
            parse_block_range(b"{\"block\": [").unwrap_err(),
            ChainError::Malformed { .. }
        ));
    }

    #[test]
    fn hex_to_decimal_handles_any_width() {
        assert_eq!(hex_to_decimal("").as_deref(), Some("0"));
        assert_eq!(hex_to_decimal(&"0".repeat(64)).as_deref(), Some("0"));
        assert_eq!(hex_to_decimal("0f4240").as_deref(), Some("1000000"));
        assert_eq!(hex_to_decimal("3b9aca00").as_deref(), Some("1000000000"));
        assert_eq!(
            hex_to_decimal("ffffffffffffffff").as_deref(),
            Some("18446744073709551615")
        );
        assert_eq!(hex_to_decimal(&"f".repeat(64)).as_deref(), Some(MAX_U256));
        assert_eq!(
            hex_to_decimal(&format!("1{}", "0".repeat(32))).as_deref(),
            Some("340282366920938463463374607431768211456")
        );
        assert_eq!(hex_to_decimal("xyz"), None);
    }

    #[test]
    fn asset_names_decode_only_printable_hex() {
        assert_eq!(asset_name_to_token("31303032303030"), "1002000");
        assert_eq!(asset_name_to_token("1002000"), "1002000");
        assert_eq!(asset_name_to_token("0001"), "0001");
        assert_eq!(asset_name_to_token(""), "");
    }
}
