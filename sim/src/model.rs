//! The simulator's own model of a block: what each transaction *is* (a TRC-20 transfer, a swap, a
//! failed call, ...), generated as a pure function of (seed, block number, version). The node's
//! JSON (`json.rs`) and the expected events (`expected.rs`) are two independent renderings of it,
//! so a decoder checked against the second while reading the first is really checked.

use std::sync::OnceLock;

use crate::domain;
use actors::address::base58check;
use actors::rng::{key, mix64, Rng};

/// Index of an address in the [`AddressBook`].
pub type AddrId = u32;

/// USDT (TRC-20) on mainnet, `TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t`.
pub const USDT_HEX: &str = "41a614f803b6fd780986a42c78ec9c7f77e6ded13c";
const USDT_BYTES: [u8; 21] = [
    0x41, 0xa6, 0x14, 0xf8, 0x03, 0xb6, 0xfd, 0x78, 0x09, 0x86, 0xa4, 0x2c, 0x78, 0xec, 0x9c, 0x7f,
    0x77, 0xe6, 0xde, 0xd1, 0x3c,
];

/// The TRC-10 tokens transfers and internal transactions move.
pub const TRC10_TOKENS: [&str; 2] = ["1002000", "1000317"];

/// The address book's layout: a few well-known contracts, the block producers, then users.
pub(crate) const USDT: AddrId = 0;
/// TRC-20 tokens; the first two have 6 decimals, the others 18.
pub(crate) const TOKENS: [AddrId; 4] = [USDT, 1, 2, 3];
pub(crate) const NFTS: [AddrId; 2] = [4, 5];
pub(crate) const ROUTER: AddrId = 6;
pub(crate) const PAIRS: [AddrId; 2] = [7, 8];
pub(crate) const GAME: AddrId = 9;
const CONTRACTS: u32 = 10;
pub(crate) const WITNESS_BASE: AddrId = CONTRACTS;
pub(crate) const WITNESSES: u32 = 27;
const USER_BASE: AddrId = WITNESS_BASE + WITNESSES;
/// A few thousand users, so that addresses repeat the way they do on mainnet.
pub(crate) const USERS: u32 = 4000;

/// Topic0 of `Transfer(address,address,uint256)`.
pub const TRANSFER_TOPIC: [u8; 32] =
    hex32("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");
/// Topic0 of `Approval(address,address,uint256)`.
pub const APPROVAL_TOPIC: [u8; 32] =
    hex32("8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925");
/// Topic0 of a Uniswap-v2 style `Swap(address,uint256,uint256,uint256,uint256,address)`.
pub const SWAP_TOPIC: [u8; 32] =
    hex32("d78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822");
/// Topic0 of a Uniswap-v2 style `Sync(uint112,uint112)`.
pub const SYNC_TOPIC: [u8; 32] =
    hex32("1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1");

const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not lowercase hex"),
        }
    }
    let b = s.as_bytes();
    assert!(b.len() == 64);
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// Every address the simulator uses, with its base58 form computed once, on first use.
pub struct AddressBook {
    bytes: Vec<[u8; 21]>,
    base58: Vec<OnceLock<String>>,
}

impl AddressBook {
    /// Contracts are the same for every seed; producers and users depend on it.
    pub(crate) fn new(seed: u64) -> Self {
        let total = (USER_BASE + USERS) as usize;
        let mut bytes = Vec::with_capacity(total);
        bytes.push(USDT_BYTES);
        let mut fixed = Rng::new(key(&[0, domain::ADDRESSES]));
        for _ in 1..CONTRACTS {
            bytes.push(random_address(&mut fixed));
        }
        let mut seeded = Rng::new(key(&[seed, domain::ADDRESSES]));
        while bytes.len() < total {
            bytes.push(random_address(&mut seeded));
        }
        let base58 = (0..total).map(|_| OnceLock::new()).collect();
        AddressBook { bytes, base58 }
    }

    /// The 21-byte address (`0x41` + 20 bytes).
    pub fn bytes(&self, id: AddrId) -> &[u8; 21] {
        &self.bytes[id as usize]
    }

    /// The base58check form (`T...`).
    pub fn base58(&self, id: AddrId) -> &str {
        self.base58[id as usize].get_or_init(|| base58check(&self.bytes[id as usize]))
    }

    /// The address as an indexed log topic: left-padded to 32 bytes, without the `41`.
    pub fn topic(&self, id: AddrId) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[12..].copy_from_slice(&self.bytes(id)[1..]);
        out
    }

    /// Users are picked with a heavy head, like exchanges' hot wallets on mainnet.
    fn user(&self, r: &mut Rng) -> AddrId {
        let u = r.unit();
        let idx = ((f64::from(USERS) * u * u * u) as u32).min(USERS - 1);
        USER_BASE + idx
    }
}

fn random_address(r: &mut Rng) -> [u8; 21] {
    let mut a = [0u8; 21];
    a[0] = 0x41;
    r.fill(&mut a[1..]);
    a
}

/// A uint256 amount. Generated values fit in u128; `Max` is the "unlimited" approval
/// (2^256 - 1) wallets love, which does not fit in any machine integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uint256 {
    /// Any amount the generator draws.
    Small(u128),
    /// 2^256 - 1.
    Max,
}

const U256_MAX_DECIMAL: &str =
    "115792089237316195423570985008687907853269984665640564039457584007913129639935";

impl Uint256 {
    pub(crate) fn to_be_bytes(self) -> [u8; 32] {
        match self {
            Uint256::Small(v) => {
                let mut out = [0u8; 32];
                out[16..].copy_from_slice(&v.to_be_bytes());
                out
            }
            Uint256::Max => [0xff; 32],
        }
    }

    pub(crate) fn to_decimal(self) -> String {
        match self {
            Uint256::Small(v) => v.to_string(),
            Uint256::Max => U256_MAX_DECIMAL.to_string(),
        }
    }
}

/// One block of the simulated chain.
#[derive(Clone, Debug)]
pub struct SimBlock {
    pub(crate) number: u64,
    /// 0 for the canonical block; 1 for the block a fork later replaces.
    pub version: u32,
    pub(crate) id: [u8; 32],
    pub(crate) parent_id: [u8; 32],
    pub(crate) timestamp_ms: u64,
    pub(crate) witness: AddrId,
    /// Seeds the header fields no event depends on (trie root, signature).
    pub(crate) cosmetic: u64,
    /// In block order.
    pub txs: Vec<SimTx>,
}

/// One transaction of a [`SimBlock`]: its id and what it is.
#[derive(Clone, Debug)]
pub struct SimTx {
    pub(crate) id: [u8; 32],
    /// What the node shows and the decoder must turn into events.
    pub kind: TxKind,
    /// Seeds the fields no event depends on (fees, signature, raw_data_hex, ...).
    pub(crate) cosmetic: u64,
}

/// What a transaction is.
// The variants' fields are the contract's own parameters under their ABI names (from, to,
// value, ...); a doc line each would only repeat the name.
#[allow(missing_docs)]
#[derive(Clone, Debug)]
pub enum TxKind {
    /// `TransferContract`.
    Trx {
        from: AddrId,
        to: AddrId,
        amount: u64,
    },
    /// `TransferAssetContract`.
    Trc10 {
        from: AddrId,
        to: AddrId,
        token: &'static str,
        amount: u64,
    },
    /// `transfer(to, value)` on a TRC-20 contract: one `Transfer` log.
    Trc20 {
        token: AddrId,
        from: AddrId,
        to: AddrId,
        value: Uint256,
    },
    /// `approve(spender, value)`: one `Approval` log.
    Approval {
        token: AddrId,
        owner: AddrId,
        spender: AddrId,
        value: Uint256,
    },
    /// `transferFrom(from, to, tokenId)` on a TRC-721 contract: a 4-topic `Transfer` log.
    Trc721 {
        contract: AddrId,
        from: AddrId,
        to: AddrId,
        token_id: u64,
    },
    /// Any other successful `TriggerSmartContract`: swaps, games, deposits.
    Call {
        owner: AddrId,
        contract: AddrId,
        call_value: u64,
        selector: [u8; 4],
        logs: Vec<SimLog>,
        internals: Vec<SimInternal>,
    },
    /// A `TriggerSmartContract` that failed: `ret` says `reason`, the info says `FAILED`. Its
    /// logs and (rejected) internal transactions are there to trap a decoder that forgets to
    /// check the result.
    Failed {
        owner: AddrId,
        contract: AddrId,
        call_value: u64,
        reason: FailReason,
        logs: Vec<SimLog>,
        internals: Vec<SimInternal>,
    },
    /// A contract type with no transfer event of its own.
    System(SystemTx),
}

/// Why a failed call failed, as the node's `contractRet` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailReason {
    /// `REVERT`: the contract refused.
    Revert,
    /// `OUT_OF_ENERGY`: the call ran out of its energy budget.
    OutOfEnergy,
}

impl FailReason {
    pub(crate) fn contract_ret(self) -> &'static str {
        match self {
            FailReason::Revert => "REVERT",
            FailReason::OutOfEnergy => "OUT_OF_ENERGY",
        }
    }
}

/// A system contract: staking, voting, delegation, account creation; no transfer event.
// The fields are the contract's parameters under their protobuf names.
#[allow(missing_docs)]
#[derive(Clone, Debug)]
pub enum SystemTx {
    /// `FreezeBalanceV2Contract`: stake TRX for energy or bandwidth.
    FreezeV2 {
        owner: AddrId,
        amount: u64,
        energy: bool,
    },
    /// `UnfreezeBalanceV2Contract`: start unstaking.
    UnfreezeV2 {
        owner: AddrId,
        amount: u64,
        energy: bool,
    },
    /// `VoteWitnessContract`: votes for block producers.
    Vote {
        owner: AddrId,
        votes: Vec<(AddrId, u64)>,
    },
    /// `DelegateResourceContract`: lend staked resources to another account.
    Delegate {
        owner: AddrId,
        receiver: AddrId,
        balance: u64,
        energy: bool,
        lock: bool,
    },
    /// `WithdrawExpireUnfreezeContract`: take back what finished unstaking.
    WithdrawExpireUnfreeze { owner: AddrId, amount: u64 },
    /// `AccountCreateContract`: activate a new account.
    AccountCreate { owner: AddrId, account: AddrId },
}

impl SystemTx {
    pub(crate) fn contract_type(&self) -> &'static str {
        match self {
            SystemTx::FreezeV2 { .. } => "FreezeBalanceV2Contract",
            SystemTx::UnfreezeV2 { .. } => "UnfreezeBalanceV2Contract",
            SystemTx::Vote { .. } => "VoteWitnessContract",
            SystemTx::Delegate { .. } => "DelegateResourceContract",
            SystemTx::WithdrawExpireUnfreeze { .. } => "WithdrawExpireUnfreezeContract",
            SystemTx::AccountCreate { .. } => "AccountCreateContract",
        }
    }
}

/// One log of a contract call.
// The fields are the log's topics and data under their ABI names.
#[allow(missing_docs)]
#[derive(Clone, Debug)]
pub enum SimLog {
    /// A TRC-20 `Transfer(from, to, value)`.
    Trc20Transfer {
        token: AddrId,
        from: AddrId,
        to: AddrId,
        value: Uint256,
    },
    /// An `Approval(owner, spender, value)`.
    Approval {
        token: AddrId,
        owner: AddrId,
        spender: AddrId,
        value: Uint256,
    },
    /// A log that is not a standard event, on purpose including Transfer or Approval topics of
    /// the wrong shape: it must come out raw.
    Raw {
        contract: AddrId,
        topics: Vec<[u8; 32]>,
        data: Vec<u8>,
    },
}

/// One entry of `internal_transactions`.
#[derive(Clone, Debug)]
pub struct SimInternal {
    pub(crate) hash: [u8; 32],
    pub(crate) caller: AddrId,
    pub(crate) to: AddrId,
    /// `callValueInfo`: an amount of 0 is printed as `{}`, as the node does.
    pub values: Vec<CallValue>,
    pub(crate) rejected: bool,
}

/// One amount an internal transaction moves: TRX or a TRC-10 token.
#[derive(Clone, Copy, Debug)]
pub struct CallValue {
    pub(crate) amount: u64,
    /// The TRC-10 token id; `None` for TRX.
    pub token: Option<&'static str>,
}

impl TxKind {
    /// Every [`TxKind::label`]: what a test must see to have seen every kind.
    pub const LABELS: [&'static str; 15] = [
        "trx",
        "trc10",
        "trc20",
        "approval",
        "trc721",
        "call",
        "call_with_value",
        "failed_revert",
        "failed_out_of_energy",
        "FreezeBalanceV2Contract",
        "UnfreezeBalanceV2Contract",
        "VoteWitnessContract",
        "DelegateResourceContract",
        "WithdrawExpireUnfreezeContract",
        "AccountCreateContract",
    ];

    /// A short label per kind of transaction, for tests and statistics.
    pub fn label(&self) -> &'static str {
        match self {
            TxKind::Trx { .. } => "trx",
            TxKind::Trc10 { .. } => "trc10",
            TxKind::Trc20 { .. } => "trc20",
            TxKind::Approval { .. } => "approval",
            TxKind::Trc721 { .. } => "trc721",
            TxKind::Call { call_value, .. } if *call_value > 0 => "call_with_value",
            TxKind::Call { .. } => "call",
            TxKind::Failed {
                reason: FailReason::Revert,
                ..
            } => "failed_revert",
            TxKind::Failed {
                reason: FailReason::OutOfEnergy,
                ..
            } => "failed_out_of_energy",
            TxKind::System(s) => s.contract_type(),
        }
    }
}

/// The block id: the number big-endian, then bytes derived from (seed, number, version).
pub(crate) fn block_id(seed: u64, number: u64, version: u32) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&number.to_be_bytes());
    Rng::new(key(&[seed, domain::HEADER, number, u64::from(version), 1])).fill(&mut id[8..]);
    id
}

/// What a block looks like apart from its transactions: enough to answer a header-only request
/// without generating the transactions.
pub(crate) struct HeaderDraw {
    pub tx_count: usize,
    pub witness: AddrId,
    pub cosmetic: u64,
}

pub(crate) fn draw_header(seed: u64, number: u64, version: u32, txs_per_block: u32) -> HeaderDraw {
    let mut r = Rng::new(key(&[seed, domain::HEADER, number, u64::from(version), 2]));
    // About 5% of mainnet blocks carry no transaction at all.
    let empty = txs_per_block == 0 || r.chance(0.05);
    let spread = 0.8 + 0.4 * r.unit();
    let tx_count = if empty {
        0
    } else {
        ((f64::from(txs_per_block) * spread).round() as usize).max(1)
    };
    let witness = WITNESS_BASE + ((number + u64::from(version) * 7) % u64::from(WITNESSES)) as u32;
    HeaderDraw {
        tx_count,
        witness,
        cosmetic: r.next_u64(),
    }
}

/// Transaction ids: the first 8 bytes are a bijection of an injective (number, index) key, so
/// ids never repeat for one seed and version.
fn tx_id(base: u64, number: u64, index: usize) -> [u8; 32] {
    let head = mix64(base ^ ((number << 20) | index as u64));
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&head.to_be_bytes());
    Rng::new(mix64(head ^ base)).fill(&mut id[8..]);
    id
}

/// The transactions of block `number` (version `version`), `count` of them.
pub(crate) fn generate_txs(
    book: &AddressBook,
    seed: u64,
    number: u64,
    version: u32,
    count: usize,
) -> Vec<SimTx> {
    let mut r = Rng::new(key(&[seed, domain::TXS, number, u64::from(version)]));
    let id_base = key(&[seed, domain::TX_ID, u64::from(version)]);
    (0..count)
        .map(|index| SimTx {
            id: tx_id(id_base, number, index),
            kind: generate_kind(book, &mut r),
            cosmetic: r.next_u64(),
        })
        .collect()
}

fn pick<T: Copy>(r: &mut Rng, items: &[T]) -> T {
    items[r.below(items.len() as u64) as usize]
}

/// An amount spread over many orders of magnitude, `10^lo .. 10^hi`.
fn log_amount(r: &mut Rng, lo: f64, hi: f64) -> u128 {
    (10f64.powf(lo + (hi - lo) * r.unit())) as u128
}

fn token_value(r: &mut Rng, token: AddrId) -> Uint256 {
    let decimals = if token == TOKENS[0] || token == TOKENS[1] {
        6
    } else {
        18
    };
    let mut v = log_amount(r, f64::from(decimals) - 2.0, f64::from(decimals) + 5.0);
    let unit = 10u128.pow(decimals);
    if v > unit && r.chance(0.3) {
        v -= v % unit;
    }
    Uint256::Small(v)
}

fn trc20_token(r: &mut Rng) -> AddrId {
    if r.chance(0.8) {
        USDT
    } else {
        pick(r, &TOKENS[1..])
    }
}

fn sun(r: &mut Rng) -> u64 {
    log_amount(r, 5.0, 11.0) as u64
}

fn generate_kind(book: &AddressBook, r: &mut Rng) -> TxKind {
    match r.below(1000) {
        0..600 => {
            let token = trc20_token(r);
            let from = book.user(r);
            let to = book.user(r);
            let value = token_value(r, token);
            TxKind::Trc20 {
                token,
                from,
                to,
                value,
            }
        }
        600..720 => {
            let from = book.user(r);
            let to = book.user(r);
            // A zero amount is left out of the JSON: the decoder must read it as 0.
            let amount = if r.chance(0.01) { 0 } else { sun(r) };
            TxKind::Trx { from, to, amount }
        }
        720..750 => TxKind::Trc10 {
            from: book.user(r),
            to: book.user(r),
            token: pick(r, &TRC10_TOKENS),
            amount: log_amount(r, 0.0, 9.0) as u64,
        },
        750..800 => {
            let token = trc20_token(r);
            let owner = book.user(r);
            let spender = if r.chance(0.6) { ROUTER } else { book.user(r) };
            let value = if r.chance(0.4) {
                Uint256::Max
            } else {
                token_value(r, token)
            };
            TxKind::Approval {
                token,
                owner,
                spender,
                value,
            }
        }
        800..820 => TxKind::Trc721 {
            contract: pick(r, &NFTS),
            from: book.user(r),
            to: book.user(r),
            token_id: r.below(100_000),
        },
        820..870 => generate_call(book, r),
        870..890 => {
            // A plain deposit: the only event is the TRX moved by call_value, and sometimes a
            // prize paid back by the contract.
            let owner = book.user(r);
            let call_value = sun(r);
            let mut internals = Vec::new();
            if r.chance(0.3) {
                internals.push(internal(GAME, owner, vec![trx(sun(r))], false, r));
            }
            TxKind::Call {
                owner,
                contract: GAME,
                call_value,
                selector: [0xd0, 0xe3, 0x0d, 0xb0],
                logs: Vec::new(),
                internals,
            }
        }
        890..940 => generate_failed(book, r),
        _ => TxKind::System(generate_system(book, r)),
    }
}

fn trx(amount: u64) -> CallValue {
    CallValue {
        amount,
        token: None,
    }
}

/// `r` comes last so that the values, drawn from it too, are evaluated first.
fn internal(
    caller: AddrId,
    to: AddrId,
    values: Vec<CallValue>,
    rejected: bool,
    r: &mut Rng,
) -> SimInternal {
    SimInternal {
        hash: r.bytes(),
        caller,
        to,
        values,
        rejected,
    }
}

fn word(r: &mut Rng) -> [u8; 32] {
    Uint256::Small(log_amount(r, 3.0, 24.0)).to_be_bytes()
}

fn words(r: &mut Rng, n: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(32 * n);
    for _ in 0..n {
        data.extend_from_slice(&word(r));
    }
    data
}

/// A log that is not a standard event; several shapes are near misses of Transfer/Approval.
fn odd_log(book: &AddressBook, r: &mut Rng, contract: AddrId, user: AddrId) -> SimLog {
    let (topics, data) = match r.below(6) {
        // Transfer with 3 topics but no data.
        0 => (
            vec![TRANSFER_TOPIC, book.topic(contract), book.topic(user)],
            Vec::new(),
        ),
        // Approval with only 2 topics.
        1 => (vec![APPROVAL_TOPIC, book.topic(user)], words(r, 1)),
        // An anonymous event: no topics at all.
        2 => (Vec::new(), words(r, 2)),
        // Transfer with 3 topics and 64 bytes of data.
        3 => (
            vec![TRANSFER_TOPIC, book.topic(user), book.topic(contract)],
            words(r, 2),
        ),
        // Transfer with 4 topics *and* data: neither TRC-20 nor TRC-721.
        4 => (
            vec![
                TRANSFER_TOPIC,
                book.topic(user),
                book.topic(contract),
                word(r),
            ],
            words(r, 1),
        ),
        // Some application event with an arbitrary signature and no data.
        _ => {
            let sig: [u8; 32] = r.bytes();
            (vec![sig, book.topic(user)], Vec::new())
        }
    };
    SimLog::Raw {
        contract,
        topics,
        data,
    }
}

fn generate_call(book: &AddressBook, r: &mut Rng) -> TxKind {
    let owner = book.user(r);
    match r.below(4) {
        // TRX -> token swap: TRX in through call_value, forwarded by the router to the pair.
        0 => {
            let pair = pick(r, &PAIRS);
            let token = trc20_token(r);
            let call_value = sun(r);
            let logs = vec![
                SimLog::Trc20Transfer {
                    token,
                    from: pair,
                    to: owner,
                    value: token_value(r, token),
                },
                SimLog::Raw {
                    contract: pair,
                    topics: vec![SWAP_TOPIC, book.topic(ROUTER), book.topic(owner)],
                    data: words(r, 4),
                },
            ];
            let internals = vec![internal(ROUTER, pair, vec![trx(call_value)], false, r)];
            TxKind::Call {
                owner,
                contract: ROUTER,
                call_value,
                selector: [0xfb, 0x3b, 0xdb, 0x41],
                logs,
                internals,
            }
        }
        // Token -> TRX swap: the pair pays TRX back through the router.
        1 => {
            let pair = pick(r, &PAIRS);
            let token = trc20_token(r);
            let out = sun(r);
            let logs = vec![
                SimLog::Trc20Transfer {
                    token,
                    from: owner,
                    to: pair,
                    value: token_value(r, token),
                },
                SimLog::Raw {
                    contract: pair,
                    topics: vec![SYNC_TOPIC],
                    data: words(r, 2),
                },
                SimLog::Raw {
                    contract: pair,
                    topics: vec![SWAP_TOPIC, book.topic(ROUTER), book.topic(ROUTER)],
                    data: words(r, 4),
                },
            ];
            let internals = vec![
                internal(pair, ROUTER, vec![trx(out)], false, r),
                internal(ROUTER, owner, vec![trx(out)], false, r),
            ];
            TxKind::Call {
                owner,
                contract: ROUTER,
                call_value: 0,
                selector: [0x18, 0xcb, 0xaf, 0xe5],
                logs,
                internals,
            }
        }
        // A game contract: odd logs and every shape of internal transaction.
        2 => {
            let call_value = if r.chance(0.5) { sun(r) } else { 0 };
            let logs = (0..r.range(1, 3))
                .map(|_| odd_log(book, r, GAME, owner))
                .collect();
            let token = pick(r, &TRC10_TOKENS);
            let other = book.user(r);
            let mut internals = vec![
                // TRX and a TRC-10 token in one entry: two events, `_int0` and `_int0.1`.
                internal(
                    GAME,
                    owner,
                    vec![
                        trx(sun(r)),
                        CallValue {
                            amount: log_amount(r, 0.0, 6.0) as u64,
                            token: Some(token),
                        },
                    ],
                    false,
                    r,
                ),
                // A plain call that moves nothing: `callValueInfo: [{}]`, no event.
                internal(GAME, other, vec![trx(0)], false, r),
            ];
            if r.chance(0.5) {
                // A sub-call that reverted inside a successful transaction: no event.
                internals.push(internal(GAME, other, vec![trx(sun(r))], true, r));
            }
            if r.chance(0.5) {
                // Zero TRX then a token: only the second value yields an event (`.1`).
                let amount = log_amount(r, 0.0, 6.0) as u64;
                internals.push(internal(
                    GAME,
                    other,
                    vec![
                        trx(0),
                        CallValue {
                            amount,
                            token: Some(token),
                        },
                    ],
                    false,
                    r,
                ));
            }
            TxKind::Call {
                owner,
                contract: GAME,
                call_value,
                selector: [0x3c, 0xcf, 0xd6, 0x0b],
                logs,
                internals,
            }
        }
        // transferFrom through the router: Transfer of someone else's tokens and the
        // allowance update, two standard events from a non-standard call.
        _ => {
            let token = trc20_token(r);
            let holder = book.user(r);
            let to = book.user(r);
            let value = token_value(r, token);
            let logs = vec![
                SimLog::Trc20Transfer {
                    token,
                    from: holder,
                    to,
                    value,
                },
                SimLog::Approval {
                    token,
                    owner: holder,
                    spender: ROUTER,
                    value: token_value(r, token),
                },
            ];
            TxKind::Call {
                owner,
                contract: ROUTER,
                call_value: 0,
                selector: [0x23, 0xb8, 0x72, 0xdd],
                logs,
                internals: Vec::new(),
            }
        }
    }
}

fn generate_failed(book: &AddressBook, r: &mut Rng) -> TxKind {
    let owner = book.user(r);
    let reason = if r.chance(0.7) {
        FailReason::Revert
    } else {
        FailReason::OutOfEnergy
    };
    if r.chance(0.6) {
        // A USDT transfer that failed (no balance, blacklisted, out of energy).
        let mut logs = Vec::new();
        if r.chance(0.3) {
            let to = book.user(r);
            logs.push(SimLog::Trc20Transfer {
                token: USDT,
                from: owner,
                to,
                value: token_value(r, USDT),
            });
        }
        TxKind::Failed {
            owner,
            contract: USDT,
            call_value: 0,
            reason,
            logs,
            internals: Vec::new(),
        }
    } else {
        // A paid call that failed: its call_value and internal payouts never happened.
        let call_value = sun(r);
        let internals = vec![internal(GAME, owner, vec![trx(sun(r))], true, r)];
        TxKind::Failed {
            owner,
            contract: GAME,
            call_value,
            reason,
            logs: Vec::new(),
            internals,
        }
    }
}

fn generate_system(book: &AddressBook, r: &mut Rng) -> SystemTx {
    let owner = book.user(r);
    match r.below(100) {
        0..30 => SystemTx::FreezeV2 {
            owner,
            amount: sun(r),
            energy: r.chance(0.6),
        },
        30..45 => SystemTx::Vote {
            owner,
            votes: (0..r.range(1, 3))
                .map(|_| {
                    let witness = WITNESS_BASE + r.below(u64::from(WITNESSES)) as u32;
                    (witness, r.range(1, 1_000_000))
                })
                .collect(),
        },
        45..65 => SystemTx::Delegate {
            owner,
            receiver: book.user(r),
            balance: sun(r),
            energy: r.chance(0.8),
            lock: r.chance(0.3),
        },
        65..80 => SystemTx::UnfreezeV2 {
            owner,
            amount: sun(r),
            energy: r.chance(0.6),
        },
        80..90 => SystemTx::WithdrawExpireUnfreeze {
            owner,
            amount: sun(r),
        },
        _ => SystemTx::AccountCreate {
            owner,
            account: book.user(r),
        },
    }
}
