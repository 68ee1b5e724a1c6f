//! Tests of the simulated node: the chain model and its JSON, then the server over real HTTP on
//! 127.0.0.1:0. That the JSON decodes to exactly the expected events is checked with the
//! production decoder, in the root crate's `tests/decoder.rs`.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;

use actors::model::{Block, EventBody};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::model::TxKind;
use crate::*;
use actors::address::hex_to_base58;

const START: u64 = 1_000;
/// A multiple of 3000, as mainnet timestamps are.
const GENESIS: u64 = 1_700_000_001_000;

fn params(seed: u64, txs: u32) -> SimParams {
    SimParams {
        seed,
        start_block: START,
        history: 200,
        txs_per_block: txs,
        genesis_ms: Some(GENESIS),
        frozen: true,
        ..SimParams::default()
    }
}

fn chain(seed: u64, txs: u32) -> SimChain {
    SimChain::new(params(seed, txs)).unwrap()
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

fn num(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

#[test]
fn same_seed_same_block_different_seed_different_block() {
    let (a, b, c) = (chain(7, 50), chain(7, 50), chain(8, 50));
    for n in [START, START + 1, START + 150] {
        assert_eq!(a.block_json(n), b.block_json(n));
        assert_eq!(a.infos_json(n), b.infos_json(n));
        assert_eq!(a.expected_block(n), b.expected_block(n));
        assert_ne!(a.block_json(n), c.block_json(n));
        assert_ne!(a.expected_block(n), c.expected_block(n));
    }
    // Generated alone or after others, a block is the same: content depends on nothing else.
    let fresh = chain(7, 50);
    assert_eq!(fresh.block_json(START + 150), a.block_json(START + 150));
}

#[test]
fn blocks_outside_the_chain_do_not_exist() {
    let c = chain(1, 10);
    let head = c.head();
    assert_eq!(head, START + 199);
    assert!(c.block_json(START - 1).is_none());
    assert!(c.block_json(head + 1).is_none());
    assert!(c.expected_block(head + 1).is_none());
    assert!(c.block_json(head).is_some());
    c.advance(2);
    assert_eq!(c.head(), head + 2);
    assert!(c.expected_block(head + 2).is_some());
}

#[test]
fn block_ids_timestamps_and_parent_hashes_chain_up() {
    let c = chain(3, 5);
    let mut previous: Option<String> = None;
    for n in START..START + 40 {
        let block = parse(&c.block_json(n).unwrap());
        let id = text(&block, "blockID");
        assert_eq!(id.len(), 64);
        assert_eq!(&id[..16], format!("{n:016x}"));
        let raw = &block["block_header"]["raw_data"];
        assert_eq!(num(raw, "number"), n);
        let ts = num(raw, "timestamp");
        assert_eq!(ts, GENESIS + (n - START) * 3000);
        assert_eq!(ts % 3000, 0);
        if let Some(previous) = &previous {
            assert_eq!(&text(raw, "parentHash"), previous);
        }
        let expected = c.expected_block(n).unwrap();
        assert_eq!(expected.header.hash, id);
        assert_eq!(expected.header.parent_hash, text(raw, "parentHash"));
        assert_eq!(expected.header.timestamp_ms, ts);
        previous = Some(id);
    }
}

#[test]
fn auto_genesis_puts_the_head_at_now() {
    let c = SimChain::new(SimParams {
        txs_per_block: 1,
        ..SimParams::default()
    })
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let head_ts = c.timestamp_of(c.head());
    assert!(head_ts <= now && now - head_ts < 6000, "{head_ts} vs {now}");
    assert_eq!(head_ts % 3000, 0);
}

#[test]
fn empty_blocks_have_no_transactions_key_and_no_infos() {
    let c = chain(5, 20);
    let empty: Vec<u64> = (START..START + 200)
        .filter(|&n| c.block(n).unwrap().txs.is_empty())
        .collect();
    assert!(
        (2..=25).contains(&empty.len()),
        "{} empty blocks of 200",
        empty.len()
    );
    for n in empty {
        let block = parse(&c.block_json(n).unwrap());
        assert!(block.get("transactions").is_none());
        assert_eq!(c.infos_json(n).unwrap(), "[]");
        assert!(c.expected_block(n).unwrap().events.is_empty());
    }
}

#[test]
fn tx_counts_vary_around_the_average_and_ids_are_unique() {
    let c = chain(9, 300);
    let mut ids = HashSet::new();
    for n in START..START + 20 {
        let block = c.block(n).unwrap();
        let count = block.txs.len();
        assert!(count == 0 || (240..=360).contains(&count), "{count}");
        for tx in &block.txs {
            assert!(ids.insert(tx.id), "duplicate tx id in block {n}");
        }
    }
}

#[test]
fn the_mix_has_every_kind_and_trc20_dominates() {
    let c = chain(13, 300);
    let mut labels = std::collections::HashMap::<&str, usize>::new();
    let mut kinds = BTreeSet::new();
    let mut uid_forms = BTreeSet::new();
    let mut total = 0;
    for n in START..START + 10 {
        for tx in c.block(n).unwrap().txs {
            *labels.entry(tx.kind.label()).or_default() += 1;
            total += 1;
        }
        for event in c.expected_block(n).unwrap().events {
            kinds.insert(event.body.kind());
            let suffix = event.uid.rsplit('_').next().unwrap().to_string();
            let form = if suffix.contains('.') {
                "intJ.K"
            } else if suffix.starts_with("int") {
                "intJ"
            } else if suffix.parse::<u32>().is_ok() {
                "logI"
            } else {
                if suffix == "trx" || suffix == "trc10" {
                    uid_forms.insert(suffix.clone());
                }
                continue;
            };
            uid_forms.insert(form.to_string());
            if let EventBody::InternalTransfer { token: Some(_), .. } = event.body {
                uid_forms.insert("internal_trc10".to_string());
            }
        }
    }
    for label in TxKind::LABELS {
        assert!(labels.contains_key(label), "no {label} in {labels:?}");
    }
    let share = labels["trc20"] as f64 / total as f64;
    assert!((0.55..0.65).contains(&share), "trc20 share {share}");
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["approval", "internal", "log", "trc10", "trc20", "trc721", "trx"]
    );
    for form in ["trx", "trc10", "logI", "intJ", "intJ.K", "internal_trc10"] {
        assert!(
            uid_forms.contains(form),
            "no uid form {form}: {uid_forms:?}"
        );
    }
    // USDT is among the contracts, by its real address.
    let usdt = hex_to_base58(model::USDT_HEX).unwrap();
    assert_eq!(usdt, "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t");
    let events = c.expected_block(START).unwrap().events;
    assert!(events.iter().any(|e| matches!(
        &e.body,
        EventBody::Trc20Transfer { contract, .. } if *contract == usdt
    )));
}

#[test]
fn failed_transactions_say_so_and_yield_nothing() {
    let c = chain(17, 300);
    let mut seen = 0;
    for n in START..START + 5 {
        let block = c.block(n).unwrap();
        let json = parse(&c.block_json(n).unwrap());
        let infos = parse(&c.infos_json(n).unwrap());
        let expected = c.expected_block(n).unwrap();
        for (i, tx) in block.txs.iter().enumerate() {
            let ret = text(&json["transactions"][i]["ret"][0], "contractRet");
            let info = &infos[i];
            if let TxKind::Failed { reason, .. } = &tx.kind {
                seen += 1;
                assert_eq!(ret, reason.contract_ret());
                assert_eq!(text(info, "result"), "FAILED");
                assert_eq!(text(&info["receipt"], "result"), reason.contract_ret());
                assert!(!text(info, "resMessage").is_empty());
                let id = actors::address::bytes_to_hex(&tx.id);
                assert!(expected.events.iter().all(|e| e.tx != id));
            } else {
                assert_eq!(ret, "SUCCESS");
                assert!(info.get("result").is_none());
                assert!(info.get("resMessage").is_none());
            }
        }
    }
    assert!(seen > 20, "{seen} failed txs");
}

/// Fields holding a default value are left out, at any depth. `contractResult: [""]` is a list
/// with one (empty) element, which the node does print.
fn assert_no_defaults(v: &Value, path: &str) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let here = format!("{path}.{k}");
                let default = match v {
                    Value::Null => true,
                    Value::Bool(b) => !b,
                    Value::Number(n) => n.as_u64() == Some(0),
                    Value::String(s) => s.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    Value::Object(o) => o.is_empty(),
                };
                assert!(!default, "default value at {here}: {v}");
                assert_no_defaults(v, &here);
            }
        }
        Value::Array(items) if path.ends_with("contractResult") => {
            assert_eq!(items.len(), 1);
        }
        Value::Array(items) => {
            for item in items {
                assert_no_defaults(item, &format!("{path}[]"));
            }
        }
        _ => {}
    }
}

#[test]
fn default_valued_fields_are_left_out() {
    let c = chain(19, 300);
    let mut zero_amount = false;
    let mut unknown_field = false;
    for n in START..START + 20 {
        let block = parse(&c.block_json(n).unwrap());
        let infos = parse(&c.infos_json(n).unwrap());
        assert_no_defaults(&block, "block");
        assert_no_defaults(&infos, "infos");
        for tx in block["transactions"].as_array().into_iter().flatten() {
            let contract = &tx["raw_data"]["contract"][0];
            if contract["type"] == "TransferContract"
                && contract["parameter"]["value"].get("amount").is_none()
            {
                zero_amount = true;
            }
        }
        unknown_field |= infos
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i.get("packingFee").is_some());
        // Logs carry 20-byte addresses; everything else has the 41 prefix.
        for info in infos.as_array().unwrap() {
            for log in info
                .get("log")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                assert_eq!(text(log, "address").len(), 40);
            }
            if let Some(address) = info.get("contract_address") {
                assert!(address.as_str().unwrap().starts_with("41"));
            }
        }
    }
    assert!(
        zero_amount,
        "no TRX transfer of 0 (amount left out) in 20 blocks"
    );
    assert!(unknown_field, "no packingFee");
}

#[test]
fn forks_serve_another_version_then_replace_it() {
    let c = SimChain::new(SimParams {
        fork_rate: 1.0,
        max_fork_depth: 3,
        ..params(23, 5)
    })
    .unwrap();
    let (start, depth) = c.forks_between(START + 64, START + 100)[0];
    assert!(start > START && (1..=3).contains(&depth));
    // While the head is inside the fork, the node serves the orphan version.
    let head = start + depth - 1;
    let orphan = c.block_at(start, head).unwrap();
    assert_eq!(orphan.version, 1);
    // Its parent is the canonical block before the fork.
    assert_eq!(orphan.parent_id, c.block_at(start - 1, head).unwrap().id);
    // Once the head passes the fork, the canonical blocks replace it, and link up.
    let after = start + depth;
    let canonical = c.block_at(start, after).unwrap();
    assert_eq!(canonical.version, 0);
    assert_ne!(canonical.id, orphan.id);
    let tip = c.block_at(after, after).unwrap();
    assert_eq!(
        tip.parent_id,
        c.block_at(after - 1, after).unwrap().id,
        "the new head links to the canonical chain"
    );
    if depth > 1 {
        assert_ne!(tip.parent_id, c.block_at(after - 1, after - 1).unwrap().id);
    }
    // Irreversible blocks never change.
    for n in start.saturating_sub(40)..start {
        assert_eq!(c.version_at(n, n + SOLID_LAG), 0);
    }
    assert_ne!(
        c.expected_block_at(start, head),
        c.expected_block_at(start, after)
    );
}

/// A chain where about half the windows fork, up to the deepest fork allowed, over 300 blocks.
fn forked_chain() -> SimChain {
    SimChain::new(SimParams {
        fork_rate: 0.5,
        max_fork_depth: SOLID_LAG,
        history: 300,
        ..params(31, 2)
    })
    .unwrap()
}

/// The blocks the forks of `c` replace between `from` and `to`.
fn forked_blocks(c: &SimChain, from: u64, to: u64) -> BTreeSet<u64> {
    c.forks_between(from, to)
        .into_iter()
        .flat_map(|(start, depth)| start..start + depth)
        .filter(|n| (from..=to).contains(n))
        .collect()
}

#[test]
fn a_forked_chain_links_up_at_every_head() {
    let c = forked_chain();
    let last = START + 299;
    let forks = c.forks_between(START, last);
    assert!(forks.len() >= 3, "{forks:?}");
    assert!(forks.iter().any(|&(_, depth)| depth > 1), "{forks:?}");
    for head in START..=last {
        for n in START + 1..=head {
            assert_eq!(
                c.block_at(n, head).unwrap().parent_id,
                c.block_at(n - 1, head).unwrap().id,
                "block {n} at head {head}"
            );
        }
    }
    // The JSON says the same, inside each fork and right after it.
    for &(start, depth) in &forks {
        for head in [start + depth - 1, start + depth] {
            let mut previous = text(&parse_rendered(&c, start - 1, head), "blockID");
            for n in start..=head {
                let block = parse_rendered(&c, n, head);
                let raw = &block["block_header"]["raw_data"];
                assert_eq!(
                    text(raw, "parentHash"),
                    previous,
                    "block {n} at head {head}"
                );
                previous = text(&block, "blockID");
            }
        }
    }
}

fn parse_rendered(c: &SimChain, number: u64, head: u64) -> Value {
    parse(&String::from_utf8_lossy(
        &c.rendered(number, head).unwrap().block,
    ))
}

#[test]
fn a_forks_blocks_are_served_in_another_version_once_the_head_passes_it() {
    let c = forked_chain();
    for (start, depth) in c.forks_between(START, START + 299) {
        let end = start + depth;
        for n in start..end {
            // First served (as the head, and while the head is in the fork) in version 1 ...
            let orphan = c.block_at(n, n).unwrap();
            assert_eq!(orphan.version, 1);
            assert_eq!(c.expected_block_at(n, end - 1), c.expected_block_at(n, n));
            // ... then, from the first head past the fork, in version 0 for good.
            let canonical = c.block_at(n, end).unwrap();
            assert_eq!(canonical.version, 0);
            assert_eq!(c.expected_block_at(n, n + 200), c.expected_block_at(n, end));
            assert_ne!(orphan.id, canonical.id);
            // Other transactions (no id in common), so other events.
            let orphan_txs: HashSet<_> = orphan.txs.iter().map(|tx| tx.id).collect();
            assert!(canonical.txs.iter().all(|tx| !orphan_txs.contains(&tx.id)));
            assert_ne!(c.expected_block_at(n, n), c.expected_block_at(n, end));
        }
    }
}

#[test]
fn forks_between_lists_exactly_the_blocks_that_change() {
    let c = forked_chain();
    let (from, to) = (START, START + 299);
    let changed: BTreeSet<u64> = (from..=to)
        .filter(|&n| c.block_at(n, n).unwrap().id != c.block_at(n, n + SOLID_LAG).unwrap().id)
        .collect();
    assert_eq!(changed, forked_blocks(&c, from, to));
    // And nothing changes once it is irreversible.
    for n in from..=to {
        assert_eq!(c.version_at(n, n + SOLID_LAG), 0, "block {n}");
    }
}

#[test]
fn the_canonical_chain_is_what_a_head_far_ahead_serves() {
    let c = forked_chain();
    let far = START + 10_000;
    let mut previous: Option<Block> = None;
    for n in START..START + 300 {
        let canonical = c.expected_block_at(n, far).unwrap();
        assert_eq!(c.block_at(n, far).unwrap().version, 0);
        assert_eq!(
            Some(&canonical),
            c.expected_block_at(n, n + SOLID_LAG).as_ref()
        );
        if let Some(previous) = &previous {
            assert_eq!(canonical.header.parent_hash, previous.header.hash);
        }
        previous = Some(canonical);
    }
}

/// What a daemon following the head sees: it commits each new head block; when the block's
/// parent is not the block it committed below, it retracts blocks until the chain links again
/// and commits the node's blocks from there.
#[test]
fn a_follower_of_the_head_commits_each_forks_orphans_then_retracts_exactly_them() {
    let c = forked_chain();
    let (from, to) = (START, START + 299);
    let mut committed = std::collections::BTreeMap::<u64, [u8; 32]>::new();
    let mut retracted = Vec::new();
    for head in from..=to {
        let mut lowest = head;
        while lowest > from
            && committed.get(&(lowest - 1)) != Some(&c.block_at(lowest, head).unwrap().parent_id)
        {
            lowest -= 1;
            let orphan = committed.remove(&lowest).unwrap();
            retracted.push((head, lowest, orphan));
        }
        for n in lowest..=head {
            committed.insert(n, c.block_at(n, head).unwrap().id);
        }
    }
    // Each fork's blocks, retracted newest first by the first head past the fork, were the
    // version-1 blocks the node served when each was the head.
    let mut expected = Vec::new();
    for (start, depth) in c.forks_between(from, to) {
        if start + depth > to {
            continue;
        }
        for n in (start..start + depth).rev() {
            expected.push((start + depth, n, c.block_at(n, n).unwrap().id));
        }
    }
    assert!(!expected.is_empty());
    assert_eq!(retracted, expected);
    let far = to + 1000;
    let canonical: Vec<_> = (from..=to - SOLID_LAG)
        .map(|n| c.block_at(n, far).unwrap().id)
        .collect();
    let kept: Vec<_> = committed
        .range(..=to - SOLID_LAG)
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(kept, canonical);
}

#[test]
fn the_flags_default_to_the_defaults() {
    use clap::{Args, FromArgMatches};
    let command = SimFaults::augment_args(SimParams::augment_args(clap::Command::new("sim")));
    let matches = command.get_matches_from(["sim"]);
    assert_eq!(
        SimParams::from_arg_matches(&matches).unwrap(),
        SimParams::default()
    );
    assert_eq!(
        SimFaults::from_arg_matches(&matches).unwrap(),
        SimFaults::default()
    );
}

#[test]
fn the_fork_flags_reach_the_params() {
    use clap::{Args, FromArgMatches};
    let command = SimFaults::augment_args(SimParams::augment_args(clap::Command::new("sim")));
    let matches = command.get_matches_from([
        "sim",
        "--fork-rate",
        "0.25",
        "--max-fork-depth",
        "7",
        "--fault-fork-race",
        "0.5",
    ]);
    let params = SimParams::from_arg_matches(&matches).unwrap();
    assert_eq!((params.fork_rate, params.max_fork_depth), (0.25, 7));
    assert_eq!(
        SimFaults::from_arg_matches(&matches)
            .unwrap()
            .fork_race_rate,
        0.5
    );
}

#[test]
fn bad_params_are_refused_all_at_once() {
    let err = SimChain::new(SimParams {
        history: 0,
        block_interval_ms: 0,
        max_fork_depth: 25,
        ..SimParams::default()
    })
    .err()
    .unwrap()
    .to_string();
    for word in ["history", "block_interval_ms", "max_fork_depth"] {
        assert!(err.contains(word), "{err}");
    }
}

// ---- the server, over real HTTP

struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", &self.body[..self.body.len().min(200)]))
    }
}

/// A bare HTTP/1.1 client: what a reset or a truncated body looks like is visible as is.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(addr).await?;
    let body = body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no HTTP answer"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(Reply {
        status,
        body: body.to_string(),
    })
}

async fn post(addr: SocketAddr, path: &str, body: &str) -> Reply {
    request(addr, "POST", path, Some(body)).await.unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, None).await.unwrap()
}

async fn start(faults: SimFaults) -> SimHandle {
    spawn(params(29, 20), faults, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn blocks_and_infos_over_http() {
    let sim = start(SimFaults::none()).await;
    let addr = sim.addr();
    assert!(sim.url().starts_with("http://127.0.0.1:"));
    let head = sim.chain().head();

    let now = post(addr, "/wallet/getnowblock", "").await.json();
    assert_eq!(now["block_header"]["raw_data"]["number"], head);
    let by_post = post(
        addr,
        "/wallet/getblockbynum",
        &format!("{{\"num\": {head}}}"),
    )
    .await;
    let by_get = get(addr, &format!("/wallet/getblockbynum?num={head}")).await;
    assert_eq!(by_post.status, 200);
    assert_eq!(by_post.body, by_get.body);
    assert_eq!(by_post.json(), now);
    assert_eq!(by_post.body, sim.chain().block_json(head).unwrap());

    // Blocks not produced yet, and below the chain's start.
    let future = post(
        addr,
        "/wallet/getblockbynum",
        &format!("{{\"num\": {}}}", head + 1),
    )
    .await;
    assert_eq!(future.body, "{}");
    assert_eq!(
        post(addr, "/wallet/getblockbynum", r#"{"num": 5}"#)
            .await
            .body,
        "{}"
    );
    let infos = format!("{{\"num\": {}}}", head + 1);
    assert_eq!(
        post(addr, "/wallet/gettransactioninfobyblocknum", &infos)
            .await
            .body,
        "[]"
    );
    for bad in ["0", "-1"] {
        let reply = post(
            addr,
            "/wallet/gettransactioninfobyblocknum",
            &format!("{{\"num\": {bad}}}"),
        )
        .await;
        assert_eq!(reply.body, "{}");
    }
    let infos = get(
        addr,
        &format!("/wallet/gettransactioninfobyblocknum?num={head}"),
    )
    .await;
    assert_eq!(infos.body, sim.chain().infos_json(head).unwrap());

    // getblock: by number or id, with or without detail.
    let id = now["blockID"].as_str().unwrap().to_string();
    let full = post(
        addr,
        "/wallet/getblock",
        &format!(r#"{{"id_or_num": "{head}", "detail": true}}"#),
    )
    .await;
    assert_eq!(full.json(), now);
    let header = post(
        addr,
        "/wallet/getblock",
        &format!(r#"{{"id_or_num": "{id}"}}"#),
    )
    .await
    .json();
    assert!(header.get("transactions").is_none());
    assert_eq!(header["blockID"], now["blockID"]);
    let unknown = format!(r#"{{"id_or_num": "{}{}"}}"#, &id[..16], "0".repeat(48));
    assert_eq!(post(addr, "/wallet/getblock", &unknown).await.body, "{}");

    // getblockbylimitnext: [a, b), only what exists, nothing over 100.
    let range = post(
        addr,
        "/wallet/getblockbylimitnext",
        &format!(r#"{{"startNum": {}, "endNum": {}}}"#, head - 2, head + 5),
    )
    .await
    .json();
    let numbers: Vec<u64> = range["block"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["block_header"]["raw_data"]["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [head - 2, head - 1, head]);
    let over = format!(r#"{{"startNum": {}, "endNum": {}}}"#, head - 150, head - 49);
    assert_eq!(
        post(addr, "/wallet/getblockbylimitnext", &over).await.body,
        "{}"
    );

    // The solidity node stops 19 blocks behind.
    let solid = get(addr, "/walletsolidity/getnowblock").await.json();
    assert_eq!(
        solid["block_header"]["raw_data"]["number"],
        head - SOLID_LAG
    );
    let above = format!("{{\"num\": {}}}", head - 5);
    assert_eq!(
        post(addr, "/walletsolidity/getblockbynum", &above)
            .await
            .body,
        "{}"
    );
    assert_eq!(
        post(addr, "/walletsolidity/gettransactioninfobyblocknum", &above)
            .await
            .body,
        "[]"
    );

    // Bad requests: java-tron's error bodies, with HTTP 200.
    let missing = get(addr, "/wallet/getblockbynum").await;
    assert_eq!(missing.status, 200);
    assert!(missing.json()["Error"]
        .as_str()
        .unwrap()
        .contains("NumberFormatException"));
    let invalid = post(addr, "/wallet/getblockbynum", r#"{"num": "abc"}"#).await;
    assert!(invalid.json()["Error"]
        .as_str()
        .unwrap()
        .contains("For input string: \"abc\""));
    let garbage = post(addr, "/wallet/getblockbynum", "not json").await;
    assert!(garbage.json().get("Error").is_some());

    // The test endpoints.
    let expected = get(addr, &format!("/sim/expected?num={head}")).await;
    let expected: Block = serde_json::from_str(&expected.body).unwrap();
    assert_eq!(expected, sim.chain().expected_block(head).unwrap());
    assert_eq!(
        get(addr, &format!("/sim/expected?num={}", head + 1))
            .await
            .status,
        404
    );
    let status = get(addr, "/sim/status").await.json();
    assert_eq!(status["head"], head);
    assert_eq!(status["requests"]["/wallet/getblockbynum"], 7);
    let advanced = post(addr, "/sim/advance?blocks=3", "").await.json();
    assert_eq!(advanced["head"], head + 3);

    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn malformed_blocks_are_always_unparsable() {
    let faults = SimFaults {
        malformed_blocks: [START + 10, START + 11].into_iter().collect(),
        ..SimFaults::none()
    };
    let sim = start(faults).await;
    for n in [START + 10, START + 11] {
        for _ in 0..2 {
            let block = post(
                sim.addr(),
                "/wallet/getblockbynum",
                &format!("{{\"num\": {n}}}"),
            )
            .await;
            assert_eq!(block.status, 200);
            assert!(
                serde_json::from_str::<Value>(&block.body).is_err(),
                "{}",
                block.body
            );
            let path = format!("/wallet/gettransactioninfobyblocknum?num={n}");
            let infos = get(sim.addr(), &path).await;
            assert!(serde_json::from_str::<Value>(&infos.body).is_err());
        }
    }
    let fine = post(
        sim.addr(),
        "/wallet/getblockbynum",
        &format!("{{\"num\": {}}}", START + 12),
    )
    .await;
    fine.json();
    assert!(sim.fault_counts().contains(&("malformed", 8)));
}

#[tokio::test]
async fn a_429_is_followed_by_a_penalty() {
    let sim = start(SimFaults {
        http_429_rate: 1.0,
        ..SimFaults::none()
    })
    .await;
    for _ in 0..3 {
        let reply = post(sim.addr(), "/wallet/getnowblock", "").await;
        assert_eq!(reply.status, 429);
        assert!(reply.json()["Error"]
            .as_str()
            .unwrap()
            .contains("frequency limit"));
    }
    let status = get(sim.addr(), "/sim/status").await.json();
    assert_eq!(status["faults"]["http_429"], 1);
    assert_eq!(status["faults"]["penalty_429"], 2);
    assert!(status["penalty_left_ms"].as_u64().unwrap() > 25_000);
}

#[tokio::test]
async fn lying_answers_and_resets() {
    let sim = start(SimFaults {
        empty_infos_rate: 1.0,
        empty_block_rate: 1.0,
        ..SimFaults::none()
    })
    .await;
    let n = (START..START + 100)
        .find(|&n| !sim.chain().block(n).unwrap().txs.is_empty())
        .unwrap();
    let num = format!("{{\"num\": {n}}}");
    assert_eq!(
        post(sim.addr(), "/wallet/getblockbynum", &num).await.body,
        "{}"
    );
    assert_eq!(
        post(sim.addr(), "/wallet/gettransactioninfobyblocknum", &num)
            .await
            .body,
        "[]"
    );
    drop(sim);

    let sim = start(SimFaults {
        reset_rate: 1.0,
        ..SimFaults::none()
    })
    .await;
    let reply = request(sim.addr(), "POST", "/wallet/getnowblock", Some("")).await;
    let error = reply.err().expect("a reset, not an answer");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
    assert!(sim.fault_counts().contains(&("reset", 1)));

    let sim = start(SimFaults {
        truncate_rate: 1.0,
        ..SimFaults::none()
    })
    .await;
    let reply = post(sim.addr(), "/wallet/getnowblock", "").await;
    assert_eq!(reply.status, 200);
    assert!(serde_json::from_str::<Value>(&reply.body).is_err());
}

#[tokio::test]
async fn slow_answers_and_node_errors() {
    let sim = start(SimFaults {
        slow_rate: 1.0,
        slow_ms: 300,
        ..SimFaults::none()
    })
    .await;
    let started = std::time::Instant::now();
    post(sim.addr(), "/wallet/getnowblock", "").await.json();
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));

    let sim = start(SimFaults {
        node_error_rate: 1.0,
        ..SimFaults::none()
    })
    .await;
    let reply = post(sim.addr(), "/wallet/getnowblock", "").await;
    assert_eq!(reply.status, 200);
    assert!(reply.json()["Error"]
        .as_str()
        .unwrap()
        .starts_with("class "));
    // The test endpoints are never faulty.
    assert_eq!(
        get(sim.addr(), "/sim/status").await.json()["faults"]["node_error"],
        1
    );
}

#[tokio::test]
async fn a_fork_race_answers_the_other_versions_infos() {
    let params = SimParams {
        fork_rate: 1.0,
        max_fork_depth: 3,
        ..params(29, 20)
    };
    let faults = SimFaults {
        fork_race_rate: 1.0,
        ..SimFaults::none()
    };
    let sim = spawn(params, faults, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let chain = sim.chain();
    let head = chain.head();
    // The last fork below the head: past it (version 0 served), above the irreversible head.
    let (start, depth) = *chain.forks_between(head - 16, head).last().unwrap();
    assert!(start + depth <= head && start > head - SOLID_LAG);
    let infos = |n: u64| {
        let addr = sim.addr();
        async move {
            post(
                addr,
                "/wallet/gettransactioninfobyblocknum",
                &format!("{{\"num\": {n}}}"),
            )
            .await
            .body
        }
    };
    let orphan_infos = &chain.rendered(start, start).unwrap().infos;
    assert_ne!(infos(start).await, chain.infos_json(start).unwrap());
    assert_eq!(infos(start).await.as_bytes(), &orphan_infos[..]);
    // A block with one version, and an irreversible one, answer their own infos.
    assert_eq!(infos(head).await, chain.infos_json(head).unwrap());
    let solid_fork = chain.forks_between(START + 64, head - 40)[0].0;
    assert_eq!(
        infos(solid_fork).await,
        chain.infos_json(solid_fork).unwrap()
    );
    // While the fork is the best chain, the race answers the canonical version's infos.
    assert_eq!(
        chain.rendered_other_version(start, start).unwrap().infos,
        chain.rendered(start, head).unwrap().infos
    );
    assert!(sim.fault_counts().contains(&("fork_race", 2)));
}

#[tokio::test]
async fn node_info_says_the_head_and_the_irreversible_block() {
    let sim = start(SimFaults::none()).await;
    let addr = sim.addr();
    let head = sim.chain().head();
    let by_post = post(addr, "/wallet/getnodeinfo", "").await;
    let by_get = get(addr, "/wallet/getnodeinfo").await;
    assert_eq!(by_post.status, 200);
    assert_eq!(by_post.body, by_get.body);
    let info = by_post.json();
    let id = |n: u64| text(&parse(&sim.chain().block_json(n).unwrap()), "blockID");
    assert_eq!(info["block"], format!("Num:{head},ID:{}", id(head)));
    let solid = head - SOLID_LAG;
    assert_eq!(
        info["solidityBlock"],
        format!("Num:{solid},ID:{}", id(solid))
    );
    let solid_now = get(addr, "/walletsolidity/getnowblock").await.json();
    assert_eq!(
        info["solidityBlock"],
        format!("Num:{solid},ID:{}", text(&solid_now, "blockID"))
    );
    for key in [
        "beginSyncNum",
        "currentConnectCount",
        "activeConnectCount",
        "passiveConnectCount",
        "totalFlow",
    ] {
        assert!(info[key].is_u64(), "{key}: {info}");
    }
    assert_eq!(info["peerList"], Value::Array(vec![]));
    assert_eq!(
        info["cheatWitnessInfoMap"],
        Value::Object(Default::default())
    );
    assert!(info["configNodeInfo"]["codeVersion"].is_string());
    assert!(info["machineInfo"]["cpuCount"].is_u64());
    // The body is not read, as on the node.
    assert_eq!(
        post(addr, "/wallet/getnodeinfo", "not json").await.body,
        by_get.body
    );
    let status = get(addr, "/sim/status").await.json();
    assert_eq!(status["requests"]["/wallet/getnodeinfo"], 3);

    // Faults apply as to every node endpoint.
    let sim = start(SimFaults {
        node_error_rate: 1.0,
        ..SimFaults::none()
    })
    .await;
    let reply = post(sim.addr(), "/wallet/getnodeinfo", "").await;
    assert!(reply.json()["Error"]
        .as_str()
        .unwrap()
        .starts_with("class "));
    let sim = start(SimFaults {
        reset_rate: 1.0,
        ..SimFaults::none()
    })
    .await;
    let reply = request(sim.addr(), "POST", "/wallet/getnodeinfo", Some("")).await;
    assert!(reply.is_err());
    assert!(sim.fault_counts().contains(&("reset", 1)));
}
