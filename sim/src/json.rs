//! The java-tron JSON of a simulated block and of its transaction infos, written straight into a
//! byte buffer: the benchmark drains tens of thousands of 300-transaction blocks, so no
//! intermediate `serde_json::Value`. Every string written is hex or a fixed ASCII name, so
//! nothing needs escaping. Like the real node, fields holding a default value (0, empty, false)
//! are left out.

use crate::model::{
    block_id, AddrId, AddressBook, FailReason, SimBlock, SimInternal, SimLog, SimTx, SystemTx,
    TxKind, Uint256, APPROVAL_TOPIC, TRANSFER_TOPIC,
};
use actors::rng::Rng;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The TRC-20 `transfer(address,uint256)` selector, and friends.
const TRANSFER_SELECTOR: [u8; 4] = [0xa9, 0x05, 0x9c, 0xbb];
const APPROVE_SELECTOR: [u8; 4] = [0x09, 0x5e, 0xa7, 0xb3];
const TRANSFER_FROM_SELECTOR: [u8; 4] = [0x23, 0xb8, 0x72, 0xdd];
/// `Error(string)`, the prefix of a revert reason.
const ERROR_SELECTOR: [u8; 4] = [0x08, 0xc3, 0x79, 0xa0];
/// Hex of `call`, the note of every internal transaction of a contract call.
const CALL_NOTE: &str = "63616c6c";
/// Price of one unit of energy in sun, to make fees look plausible.
const ENERGY_PRICE: u64 = 210;

pub(crate) fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = out.len();
    out.resize(start + bytes.len() * 2, 0);
    for (pair, &b) in out[start..].chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0x0f)];
    }
}

/// Lowercase hex, faster than formatting byte by byte.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    // Only ASCII hex digits were written.
    String::from_utf8(out).unwrap_or_default()
}

fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// One JSON object being written; remembers whether a comma is due.
struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj { out, first: true }
    }

    fn key(&mut self, k: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn str(&mut self, k: &str, v: &str) {
        if v.is_empty() {
            return;
        }
        let out = self.key(k);
        out.push(b'"');
        out.extend_from_slice(v.as_bytes());
        out.push(b'"');
    }

    fn hex(&mut self, k: &str, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let out = self.key(k);
        out.push(b'"');
        push_hex(out, bytes);
        out.push(b'"');
    }

    fn addr(&mut self, k: &str, book: &AddressBook, id: AddrId) {
        self.hex(k, book.bytes(id));
    }

    fn u64(&mut self, k: &str, v: u64) {
        if v != 0 {
            push_u64(self.key(k), v);
        }
    }

    fn flag(&mut self, k: &str, v: bool) {
        if v {
            self.key(k).extend_from_slice(b"true");
        }
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// Starts element `i` of a JSON array.
fn sep(out: &mut Vec<u8>, i: usize) {
    if i > 0 {
        out.push(b',');
    }
}

/// What the renderer needs besides the block itself.
pub(crate) struct Ctx<'a> {
    pub book: &'a AddressBook,
    pub seed: u64,
}

/// The block as `getblockbynum` prints it; `detail: false` is `getblock`'s header-only form.
pub(crate) fn write_block(ctx: &Ctx<'_>, block: &SimBlock, detail: bool, out: &mut Vec<u8>) {
    let mut r = Rng::new(block.cosmetic);
    let mut obj = Obj::open(out);
    obj.hex("blockID", &block.id);
    {
        let mut header = Obj::open(obj.key("block_header"));
        {
            let mut raw = Obj::open(header.key("raw_data"));
            raw.u64("number", block.number);
            let root: [u8; 32] = if block.txs.is_empty() {
                [0; 32]
            } else {
                r.bytes()
            };
            // An all-zero root is still printed: only empty byte strings are defaults.
            raw.hex("txTrieRoot", &root);
            raw.addr("witness_address", ctx.book, block.witness);
            raw.hex("parentHash", &block.parent_id);
            raw.u64("version", 34);
            raw.u64("timestamp", block.timestamp_ms);
            raw.close();
        }
        let signature: [u8; 65] = r.bytes();
        header.hex("witness_signature", &signature);
        header.close();
    }
    if detail && !block.txs.is_empty() {
        let out = obj.key("transactions");
        out.push(b'[');
        for (i, tx) in block.txs.iter().enumerate() {
            sep(out, i);
            write_tx(ctx, block, tx, out);
        }
        out.push(b']');
    }
    obj.close();
}

fn write_tx(ctx: &Ctx<'_>, block: &SimBlock, tx: &SimTx, out: &mut Vec<u8>) {
    let book = ctx.book;
    let mut r = Rng::new(tx.cosmetic);
    let mut obj = Obj::open(out);
    {
        let contract_ret = match &tx.kind {
            TxKind::Failed { reason, .. } => reason.contract_ret(),
            _ => "SUCCESS",
        };
        let out = obj.key("ret");
        out.extend_from_slice(b"[{\"contractRet\":\"");
        out.extend_from_slice(contract_ret.as_bytes());
        out.extend_from_slice(b"\"}]");
    }
    {
        let signature: [u8; 65] = r.bytes();
        let out = obj.key("signature");
        out.extend_from_slice(b"[\"");
        push_hex(out, &signature);
        out.extend_from_slice(b"\"]");
    }
    obj.hex("txID", &tx.id);
    let is_trigger = matches!(
        tx.kind,
        TxKind::Trc20 { .. }
            | TxKind::Approval { .. }
            | TxKind::Trc721 { .. }
            | TxKind::Call { .. }
            | TxKind::Failed { .. }
    );
    {
        let mut raw = Obj::open(obj.key("raw_data"));
        {
            let out = raw.key("contract");
            out.push(b'[');
            let mut contract = Obj::open(out);
            let type_name = {
                let mut parameter = Obj::open(contract.key("parameter"));
                let type_name = {
                    let mut value = Obj::open(parameter.key("value"));
                    let name = write_contract_value(book, &tx.kind, &mut r, &mut value);
                    value.close();
                    name
                };
                let out = parameter.key("type_url");
                out.extend_from_slice(b"\"type.googleapis.com/protocol.");
                out.extend_from_slice(type_name.as_bytes());
                out.push(b'"');
                parameter.close();
                type_name
            };
            contract.str("type", type_name);
            contract.close();
            out.push(b']');
        }
        let ref_number = block.number.saturating_sub(r.range(1, 30));
        let ref_id = block_id(ctx.seed, ref_number, 0);
        raw.hex("ref_block_bytes", &ref_number.to_be_bytes()[6..]);
        raw.hex("ref_block_hash", &ref_id[8..16]);
        let created = block.timestamp_ms.saturating_sub(r.range(500, 50_000));
        raw.u64("expiration", created + 60_000);
        if is_trigger {
            let limits = [100_000_000, 150_000_000, 225_000_000, 1_000_000_000];
            raw.u64("fee_limit", limits[r.below(4) as usize]);
        }
        raw.u64("timestamp", created);
        raw.close();
    }
    {
        let mut raw_hex = [0u8; 180];
        let len = r.range(100, 180) as usize;
        r.fill(&mut raw_hex[..len]);
        obj.hex("raw_data_hex", &raw_hex[..len]);
    }
    obj.close();
}

fn calldata(selector: [u8; 4], words: &[[u8; 32]]) -> Vec<u8> {
    let mut data = Vec::with_capacity(4 + 32 * words.len());
    data.extend_from_slice(&selector);
    for w in words {
        data.extend_from_slice(w);
    }
    data
}

fn trigger(
    value: &mut Obj<'_>,
    book: &AddressBook,
    owner: AddrId,
    contract: AddrId,
    call_value: u64,
    data: &[u8],
) -> &'static str {
    value.hex("data", data);
    value.addr("owner_address", book, owner);
    value.addr("contract_address", book, contract);
    value.u64("call_value", call_value);
    "TriggerSmartContract"
}

/// Writes `parameter.value` and answers the contract type.
fn write_contract_value(
    book: &AddressBook,
    kind: &TxKind,
    r: &mut Rng,
    value: &mut Obj<'_>,
) -> &'static str {
    match kind {
        TxKind::Trx { from, to, amount } => {
            value.u64("amount", *amount);
            value.addr("owner_address", book, *from);
            value.addr("to_address", book, *to);
            "TransferContract"
        }
        TxKind::Trc10 {
            from,
            to,
            token,
            amount,
        } => {
            value.u64("amount", *amount);
            value.hex("asset_name", token.as_bytes());
            value.addr("owner_address", book, *from);
            value.addr("to_address", book, *to);
            "TransferAssetContract"
        }
        TxKind::Trc20 {
            token,
            from,
            to,
            value: amount,
        } => {
            let data = calldata(TRANSFER_SELECTOR, &[book.topic(*to), amount.to_be_bytes()]);
            trigger(value, book, *from, *token, 0, &data)
        }
        TxKind::Approval {
            token,
            owner,
            spender,
            value: amount,
        } => {
            let data = calldata(
                APPROVE_SELECTOR,
                &[book.topic(*spender), amount.to_be_bytes()],
            );
            trigger(value, book, *owner, *token, 0, &data)
        }
        TxKind::Trc721 {
            contract,
            from,
            to,
            token_id,
        } => {
            let id = Uint256::Small(u128::from(*token_id)).to_be_bytes();
            let data = calldata(
                TRANSFER_FROM_SELECTOR,
                &[book.topic(*from), book.topic(*to), id],
            );
            trigger(value, book, *from, *contract, 0, &data)
        }
        TxKind::Call {
            owner,
            contract,
            call_value,
            selector,
            ..
        } => {
            let args: Vec<[u8; 32]> = (0..r.range(1, 4)).map(|_| r.bytes()).collect();
            let data = calldata(*selector, &args);
            trigger(value, book, *owner, *contract, *call_value, &data)
        }
        TxKind::Failed {
            owner,
            contract,
            call_value,
            ..
        } => {
            let mut to = [0u8; 32];
            r.fill(&mut to[12..]);
            let amount = Uint256::Small(u128::from(r.next_u64())).to_be_bytes();
            let data = calldata(TRANSFER_SELECTOR, &[to, amount]);
            trigger(value, book, *owner, *contract, *call_value, &data)
        }
        TxKind::System(system) => {
            write_system_value(book, system, value);
            system.contract_type()
        }
    }
}

fn write_system_value(book: &AddressBook, system: &SystemTx, value: &mut Obj<'_>) {
    // `resource` is an enum whose default (BANDWIDTH) is left out like any default.
    let resource = |energy: bool| if energy { "ENERGY" } else { "" };
    match system {
        SystemTx::FreezeV2 {
            owner,
            amount,
            energy,
        } => {
            value.addr("owner_address", book, *owner);
            value.u64("frozen_balance", *amount);
            value.str("resource", resource(*energy));
        }
        SystemTx::UnfreezeV2 {
            owner,
            amount,
            energy,
        } => {
            value.addr("owner_address", book, *owner);
            value.u64("unfreeze_balance", *amount);
            value.str("resource", resource(*energy));
        }
        SystemTx::Vote { owner, votes } => {
            value.addr("owner_address", book, *owner);
            let out = value.key("votes");
            out.push(b'[');
            for (i, (witness, count)) in votes.iter().enumerate() {
                sep(out, i);
                let mut vote = Obj::open(out);
                vote.addr("vote_address", book, *witness);
                vote.u64("vote_count", *count);
                vote.close();
            }
            out.push(b']');
        }
        SystemTx::Delegate {
            owner,
            receiver,
            balance,
            energy,
            lock,
        } => {
            value.addr("owner_address", book, *owner);
            value.str("resource", resource(*energy));
            value.u64("balance", *balance);
            value.addr("receiver_address", book, *receiver);
            value.flag("lock", *lock);
        }
        SystemTx::WithdrawExpireUnfreeze { owner, .. } => {
            value.addr("owner_address", book, *owner);
        }
        SystemTx::AccountCreate { owner, account } => {
            value.addr("owner_address", book, *owner);
            value.addr("account_address", book, *account);
        }
    }
}

/// The `gettransactioninfobyblocknum` answer: one TransactionInfo per transaction, in order.
pub(crate) fn write_infos(ctx: &Ctx<'_>, block: &SimBlock, out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, tx) in block.txs.iter().enumerate() {
        sep(out, i);
        write_info(ctx, block, tx, out);
    }
    out.push(b']');
}

/// The 32-byte word `true`, what a successful `transfer` returns.
const TRUE_WORD: [u8; 32] = {
    let mut w = [0u8; 32];
    w[31] = 1;
    w
};

fn revert_reason(msg: &str) -> Vec<u8> {
    let mut data = ERROR_SELECTOR.to_vec();
    data.extend_from_slice(&Uint256::Small(32).to_be_bytes());
    data.extend_from_slice(&Uint256::Small(msg.len() as u128).to_be_bytes());
    data.extend_from_slice(msg.as_bytes());
    data.resize(data.len() + (32 - msg.len() % 32) % 32, 0);
    data
}

fn write_info(ctx: &Ctx<'_>, block: &SimBlock, tx: &SimTx, out: &mut Vec<u8>) {
    let book = ctx.book;
    // A stream of its own, so that the block JSON and the infos can be rendered separately.
    let mut r = Rng::new(tx.cosmetic ^ 0x1f0_1f0_1f0);
    let mut obj = Obj::open(out);

    struct Receipt {
        energy_usage: u64,
        energy_fee: u64,
        energy_total: u64,
        net_usage: u64,
        net_fee: u64,
        result: &'static str,
    }
    let (contract, failure, logs, internals): (
        Option<AddrId>,
        Option<FailReason>,
        &[SimLog],
        &[SimInternal],
    ) = match &tx.kind {
        TxKind::Trc20 { token, .. } | TxKind::Approval { token, .. } => {
            (Some(*token), None, &[], &[])
        }
        TxKind::Trc721 { contract, .. } => (Some(*contract), None, &[], &[]),
        TxKind::Call {
            contract,
            logs,
            internals,
            ..
        } => (Some(*contract), None, logs, internals),
        TxKind::Failed {
            contract,
            reason,
            logs,
            internals,
            ..
        } => (Some(*contract), Some(*reason), logs, internals),
        TxKind::Trx { .. } | TxKind::Trc10 { .. } | TxKind::System(_) => (None, None, &[], &[]),
    };
    let receipt = if contract.is_some() {
        let energy_total = match &tx.kind {
            TxKind::Trc20 { .. } if r.chance(0.3) => 130_285,
            TxKind::Trc20 { .. } => 64_285,
            _ => r.range(10_000, 300_000),
        };
        // Part of the energy comes from the owner's stake, the rest is burnt.
        let energy_usage = if r.chance(0.5) {
            0
        } else {
            r.range(0, energy_total)
        };
        let (net_usage, net_fee) = if r.chance(0.6) {
            (345, 0)
        } else {
            (0, 345_000)
        };
        Receipt {
            energy_usage,
            energy_fee: (energy_total - energy_usage) * ENERGY_PRICE,
            energy_total,
            net_usage,
            net_fee,
            result: failure.map_or("SUCCESS", FailReason::contract_ret),
        }
    } else {
        let (net_usage, net_fee) = if r.chance(0.7) {
            (268, 0)
        } else {
            (0, 268_000)
        };
        Receipt {
            energy_usage: 0,
            energy_fee: 0,
            energy_total: 0,
            net_usage,
            net_fee,
            result: "",
        }
    };
    let creation_fee = if matches!(tx.kind, TxKind::System(SystemTx::AccountCreate { .. })) {
        1_000_000
    } else {
        0
    };
    let fee = receipt.energy_fee + receipt.net_fee + creation_fee;

    obj.hex("id", &tx.id);
    obj.u64("fee", fee);
    obj.u64("blockNumber", block.number);
    obj.u64("blockTimeStamp", block.timestamp_ms);
    {
        let result: Vec<u8> = match (&tx.kind, failure) {
            (_, Some(FailReason::Revert)) => revert_reason("transfer amount exceeds balance"),
            (_, Some(FailReason::OutOfEnergy)) => Vec::new(),
            (TxKind::Trc20 { .. } | TxKind::Approval { .. }, None) => TRUE_WORD.to_vec(),
            (TxKind::Call { .. }, None) if r.chance(0.5) => r.bytes::<32>().to_vec(),
            _ => Vec::new(),
        };
        // A repeated bytes field with one empty element prints as `[""]`.
        let out = obj.key("contractResult");
        out.extend_from_slice(b"[\"");
        push_hex(out, &result);
        out.extend_from_slice(b"\"]");
    }
    if let Some(contract) = contract {
        obj.addr("contract_address", book, contract);
    }
    {
        let mut rc = Obj::open(obj.key("receipt"));
        rc.u64("energy_usage", receipt.energy_usage);
        rc.u64("energy_fee", receipt.energy_fee);
        rc.u64("energy_usage_total", receipt.energy_total);
        rc.u64("net_usage", receipt.net_usage);
        rc.u64("net_fee", receipt.net_fee);
        rc.str("result", receipt.result);
        rc.close();
    }
    write_logs(
        book,
        &tx.kind,
        logs,
        obj.key_if("log", has_logs(&tx.kind, logs)),
    );
    if let Some(reason) = failure {
        obj.str("result", "FAILED");
        let message = match reason {
            FailReason::Revert => "REVERT opcode executed",
            FailReason::OutOfEnergy => {
                "Not enough energy for 'SSTORE' operation executing: curInvokeEnergyLimit[100000000]"
            }
        };
        obj.hex("resMessage", message.as_bytes());
    }
    if let TxKind::System(SystemTx::WithdrawExpireUnfreeze { amount, .. }) = &tx.kind {
        obj.u64("withdraw_expire_amount", *amount);
    }
    if !internals.is_empty() {
        let out = obj.key("internal_transactions");
        out.push(b'[');
        for (i, internal) in internals.iter().enumerate() {
            sep(out, i);
            write_internal(book, internal, out);
        }
        out.push(b']');
    }
    // Newer nodes print fields an older decoder has never heard of.
    if fee > 0 && r.chance(0.25) {
        obj.u64("packingFee", fee / 10 + 1);
    }
    obj.close();
}

impl Obj<'_> {
    /// The key's buffer when the field is `present`: an empty array is a default, left out.
    fn key_if(&mut self, k: &str, present: bool) -> Option<&mut Vec<u8>> {
        present.then(|| self.key(k))
    }
}

fn has_logs(kind: &TxKind, logs: &[SimLog]) -> bool {
    matches!(
        kind,
        TxKind::Trc20 { .. } | TxKind::Approval { .. } | TxKind::Trc721 { .. }
    ) || !logs.is_empty()
}

fn write_logs(book: &AddressBook, kind: &TxKind, logs: &[SimLog], out: Option<&mut Vec<u8>>) {
    let Some(out) = out else { return };
    out.push(b'[');
    match kind {
        TxKind::Trc20 {
            token,
            from,
            to,
            value,
        } => write_log(
            out,
            book.bytes(*token),
            &[TRANSFER_TOPIC, book.topic(*from), book.topic(*to)],
            &value.to_be_bytes(),
        ),
        TxKind::Approval {
            token,
            owner,
            spender,
            value,
        } => write_log(
            out,
            book.bytes(*token),
            &[APPROVAL_TOPIC, book.topic(*owner), book.topic(*spender)],
            &value.to_be_bytes(),
        ),
        TxKind::Trc721 {
            contract,
            from,
            to,
            token_id,
        } => write_log(
            out,
            book.bytes(*contract),
            &[
                TRANSFER_TOPIC,
                book.topic(*from),
                book.topic(*to),
                Uint256::Small(u128::from(*token_id)).to_be_bytes(),
            ],
            &[],
        ),
        _ => {
            for (i, log) in logs.iter().enumerate() {
                sep(out, i);
                match log {
                    SimLog::Trc20Transfer {
                        token,
                        from,
                        to,
                        value,
                    } => write_log(
                        out,
                        book.bytes(*token),
                        &[TRANSFER_TOPIC, book.topic(*from), book.topic(*to)],
                        &value.to_be_bytes(),
                    ),
                    SimLog::Approval {
                        token,
                        owner,
                        spender,
                        value,
                    } => write_log(
                        out,
                        book.bytes(*token),
                        &[APPROVAL_TOPIC, book.topic(*owner), book.topic(*spender)],
                        &value.to_be_bytes(),
                    ),
                    SimLog::Raw {
                        contract,
                        topics,
                        data,
                    } => write_log(out, book.bytes(*contract), topics, data),
                }
            }
        }
    }
    out.push(b']');
}

/// A log: the address is the 20-byte form, without the `41` prefix.
fn write_log(out: &mut Vec<u8>, address: &[u8; 21], topics: &[[u8; 32]], data: &[u8]) {
    let mut log = Obj::open(out);
    log.hex("address", &address[1..]);
    if !topics.is_empty() {
        let out = log.key("topics");
        out.push(b'[');
        for (i, topic) in topics.iter().enumerate() {
            sep(out, i);
            out.push(b'"');
            push_hex(out, topic);
            out.push(b'"');
        }
        out.push(b']');
    }
    log.hex("data", data);
    log.close();
}

fn write_internal(book: &AddressBook, internal: &SimInternal, out: &mut Vec<u8>) {
    let mut obj = Obj::open(out);
    obj.hex("hash", &internal.hash);
    obj.addr("caller_address", book, internal.caller);
    obj.addr("transferTo_address", book, internal.to);
    if !internal.values.is_empty() {
        let out = obj.key("callValueInfo");
        out.push(b'[');
        for (i, value) in internal.values.iter().enumerate() {
            sep(out, i);
            let mut info = Obj::open(out);
            info.u64("callValue", value.amount);
            info.str("tokenId", value.token.unwrap_or(""));
            info.close();
        }
        out.push(b']');
    }
    obj.str("note", CALL_NOTE);
    obj.flag("rejected", internal.rejected);
    obj.close();
}
