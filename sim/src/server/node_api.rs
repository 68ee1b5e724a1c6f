//! java-tron's block endpoints (and `getnodeinfo`) under `/wallet` and `/walletsolidity`:
//! parameters parsed as the node parses them, its answers (and errors) byte for byte, and the
//! faults applied to them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::chain::{Rendered, SimChain};
use crate::faults::{ContentFaults, FaultKind, Gate};

use super::conn::ConnCtl;
use super::{node_error, ok, respond, Shared};

/// `getblockbylimitnext` answers `{}` for a range over this many blocks.
const LIMIT_NEXT_MAX: i64 = 100;

/// The node API endpoints, each served under `/wallet` and `/walletsolidity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Endpoint {
    NowBlock,
    BlockByNum,
    Block,
    BlockByLimitNext,
    TxInfoByBlockNum,
    NodeInfo,
}

impl Endpoint {
    pub(super) const ALL: [Endpoint; 6] = [
        Endpoint::NowBlock,
        Endpoint::BlockByNum,
        Endpoint::Block,
        Endpoint::BlockByLimitNext,
        Endpoint::TxInfoByBlockNum,
        Endpoint::NodeInfo,
    ];

    pub(super) fn path(self) -> &'static str {
        match self {
            Endpoint::NowBlock => "getnowblock",
            Endpoint::BlockByNum => "getblockbynum",
            Endpoint::Block => "getblock",
            Endpoint::BlockByLimitNext => "getblockbylimitnext",
            Endpoint::TxInfoByBlockNum => "gettransactioninfobyblocknum",
            Endpoint::NodeInfo => "getnodeinfo",
        }
    }

    pub(super) fn index(self, solid: bool) -> usize {
        let i = Endpoint::ALL.iter().position(|e| *e == self).unwrap_or(0);
        if solid {
            i + Endpoint::ALL.len()
        } else {
            i
        }
    }
}

pub(super) fn prefix(solid: bool) -> &'static str {
    if solid {
        "walletsolidity"
    } else {
        "wallet"
    }
}

fn number_format(input: Option<&str>) -> String {
    match input {
        Some(s) => format!("class java.lang.NumberFormatException : For input string: \"{s}\""),
        None => "class java.lang.NumberFormatException : null".to_string(),
    }
}

/// The request's parameters: the JSON body of a POST, else the query string.
struct Params {
    map: Map<String, Value>,
    /// GET parameters are parsed by `Long.parseLong`, which fails on a missing one; a POST body
    /// is a protobuf message, where a missing field is 0.
    missing_is_error: bool,
}

impl Params {
    fn none() -> Params {
        Params {
            map: Map::new(),
            missing_is_error: false,
        }
    }

    fn parse(method: &Method, uri: &Uri, body: &[u8]) -> Result<Params, String> {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if !text.is_empty() {
            return match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => Ok(Params {
                    map,
                    missing_is_error: false,
                }),
                _ => Err(format!(
                    "class org.tron.core.services.http.JsonFormat$ParseException : 1:1: Expected \"{{\". input: {}",
                    text.chars().take(40).collect::<String>()
                )),
            };
        }
        let mut map = Map::new();
        for pair in uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(k.to_string(), Value::String(v.to_string()));
        }
        Ok(Params {
            map,
            missing_is_error: *method == Method::GET,
        })
    }

    fn i64(&self, name: &str) -> Result<i64, String> {
        match self.map.get(name) {
            None if self.missing_is_error => Err(number_format(None)),
            None | Some(Value::Null) => Ok(0),
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| number_format(Some(&n.to_string()))),
            Some(Value::String(s)) => s.trim().parse().map_err(|_| number_format(Some(s))),
            Some(other) => Err(number_format(Some(&other.to_string()))),
        }
    }

    fn bool(&self, name: &str) -> bool {
        match self.map.get(name) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        }
    }

    fn string(&self, name: &str) -> Option<String> {
        match self.map.get(name)? {
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// What an endpoint answers before content faults are applied.
enum Answer {
    /// A block (or the list of blocks), and the numbers it concerns.
    Blocks { body: Bytes, numbers: Vec<u64> },
    /// A block's infos, and the head they were rendered at (a fork race needs it).
    Infos {
        rendered: Arc<Rendered>,
        number: u64,
        head: u64,
    },
    /// `{}`, `[]` or an error: nothing a content fault applies to.
    Plain(Bytes),
}

pub(super) const EMPTY_OBJECT: &str = "{}";
const EMPTY_ARRAY: &str = "[]";

pub(super) async fn node_api(
    shared: &Shared,
    endpoint: Endpoint,
    solid: bool,
    conn: &ConnCtl,
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> Response {
    shared.requests[endpoint.index(solid)].fetch_add(1, Ordering::Relaxed);
    let content = match shared.faults.gate() {
        Gate::Pass(content) => content,
        Gate::Refuse { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return respond(status, body);
        }
        Gate::Reset => {
            conn.reset();
            return respond(StatusCode::OK, "");
        }
    };
    if let Some(delay) = content.slow {
        tokio::time::sleep(delay).await;
    }
    if content.node_error {
        shared.faults.count(FaultKind::NodeError);
        return ok(node_error(
            "class org.tron.core.exception.StoreException : the node is busy, try later",
        ));
    }
    let params = match endpoint {
        // The node's servlet takes no parameter and reads no body.
        Endpoint::NodeInfo => Ok(Params::none()),
        _ => Params::parse(method, uri, body),
    };
    let answer = match params {
        Ok(params) => answer(&shared.chain, endpoint, solid, &params)
            .unwrap_or_else(|message| Answer::Plain(node_error(&message))),
        Err(message) => Answer::Plain(node_error(&message)),
    };
    ok(apply_content_faults(shared, answer, &content))
}

fn apply_content_faults(shared: &Shared, answer: Answer, content: &ContentFaults) -> Bytes {
    let malformed = &shared.faults.faults().malformed_blocks;
    let (body, numbers) = match answer {
        Answer::Plain(body) => (body, Vec::new()),
        Answer::Blocks { body, numbers } => {
            if content.empty_block {
                shared.faults.count(FaultKind::EmptyBlock);
                return Bytes::from_static(EMPTY_OBJECT.as_bytes());
            }
            (body, numbers)
        }
        Answer::Infos {
            rendered,
            number,
            head,
        } => {
            if content.empty_infos && rendered.tx_count > 0 {
                shared.faults.count(FaultKind::EmptyInfos);
                return Bytes::from_static(EMPTY_ARRAY.as_bytes());
            }
            let other = content
                .fork_race
                .then(|| shared.chain.rendered_other_version(number, head))
                .flatten();
            let rendered = match other {
                Some(other) => {
                    shared.faults.count(FaultKind::ForkRace);
                    other
                }
                None => rendered,
            };
            (rendered.infos.clone(), vec![number])
        }
    };
    if let Some(&bad) = numbers.iter().find(|n| malformed.contains(n)) {
        shared.faults.count(FaultKind::Malformed);
        return malformed_body(bad, &body);
    }
    if content.truncate && body.len() > 1 {
        shared.faults.count(FaultKind::Truncated);
        return body.slice(..body.len() / 2);
    }
    body
}

/// An answer no JSON parser accepts, always the same for one block: half of the real one for
/// even numbers, garbage for odd ones.
fn malformed_body(number: u64, body: &Bytes) -> Bytes {
    if number % 2 == 0 && body.len() > 1 {
        body.slice(..body.len() / 2)
    } else {
        Bytes::from(format!(
            "{{\"blockID\":\"{number:016x}\",\"block_header\":{{\"raw_data\":{{\"number\":,}}}}<html>502 Bad Gateway</html>"
        ))
    }
}

fn answer(
    chain: &SimChain,
    endpoint: Endpoint,
    solid: bool,
    params: &Params,
) -> Result<Answer, String> {
    let head = chain.head();
    let visible = if solid {
        head.saturating_sub(crate::chain::SOLID_LAG)
    } else {
        head
    };
    let exists = |n: i64| -> Option<u64> {
        let n = u64::try_from(n).ok()?;
        (chain.exists(n, head) && n <= visible).then_some(n)
    };
    let block = |n: u64, detail: bool| -> Answer {
        match chain.rendered(n, head) {
            Some(rendered) => Answer::Blocks {
                body: if detail {
                    rendered.block.clone()
                } else {
                    rendered.header.clone()
                },
                numbers: vec![n],
            },
            None => Answer::Plain(Bytes::from_static(EMPTY_OBJECT.as_bytes())),
        }
    };
    let nothing = || Answer::Plain(Bytes::from_static(EMPTY_OBJECT.as_bytes()));
    Ok(match endpoint {
        Endpoint::NowBlock => match exists(visible as i64) {
            Some(n) => block(n, true),
            None => nothing(),
        },
        Endpoint::BlockByNum => match exists(params.i64("num")?) {
            Some(n) => block(n, true),
            None => nothing(),
        },
        Endpoint::Block => {
            let detail = params.bool("detail");
            let number = match params.string("id_or_num") {
                None => Some(visible),
                Some(id_or_num) => block_number_of(chain, head, &id_or_num)?,
            };
            match number.and_then(|n| exists(n as i64)) {
                Some(n) => block(n, detail),
                None => nothing(),
            }
        }
        Endpoint::BlockByLimitNext => {
            let start = params.i64("startNum")?;
            let end = params.i64("endNum")?;
            if start < 0 || end <= start || end - start > LIMIT_NEXT_MAX {
                return Ok(nothing());
            }
            let numbers: Vec<u64> = (start..end).filter_map(exists).collect();
            if numbers.is_empty() {
                return Ok(nothing());
            }
            let mut body = Vec::from(&b"{\"block\":["[..]);
            let mut listed = Vec::with_capacity(numbers.len());
            for n in numbers {
                if let Some(rendered) = chain.rendered(n, head) {
                    if !listed.is_empty() {
                        body.push(b',');
                    }
                    body.extend_from_slice(&rendered.block);
                    listed.push(n);
                }
            }
            body.extend_from_slice(b"]}");
            Answer::Blocks {
                body: Bytes::from(body),
                numbers: listed,
            }
        }
        Endpoint::TxInfoByBlockNum => {
            let num = params.i64("num")?;
            if num <= 0 {
                return Ok(nothing());
            }
            match exists(num).and_then(|n| chain.rendered(n, head).map(|r| (n, r))) {
                Some((number, rendered)) => Answer::Infos {
                    rendered,
                    number,
                    head,
                },
                // The node answers `[]` for a block it has not got, as for an empty one.
                None => Answer::Plain(Bytes::from_static(EMPTY_ARRAY.as_bytes())),
            }
        }
        Endpoint::NodeInfo => Answer::Plain(node_info(chain)),
    })
}

/// java-tron's `getnodeinfo`: its Java object printed by fastjson (keys in alphabetical order),
/// with the head and the irreversible block as `Num:<n>,ID:<blockID>`. Peers, config and machine
/// are a plausible few fields: nothing reads them but a human.
fn node_info(chain: &SimChain) -> Bytes {
    let head = chain.head();
    let solid = head.saturating_sub(crate::chain::SOLID_LAG);
    let described = |n: u64| format!("Num:{n},ID:{}", chain.id_at(n, head));
    Bytes::from(
        json!({
            "activeConnectCount": 3,
            "beginSyncNum": solid.saturating_sub(1),
            "block": described(head),
            "cheatWitnessInfoMap": {},
            "configNodeInfo": {
                "codeVersion": "4.8.1",
                "dbVersion": 2,
                "discoverEnable": true,
                "listenPort": 18888,
                "maxConnectCount": 30,
                "p2pVersion": "11111",
                "supportConstant": false
            },
            "currentConnectCount": 30,
            "machineInfo": {
                "cpuCount": 8,
                "deadLockThreadCount": 0,
                "javaVersion": "1.8.0_412",
                "osName": "Linux amd64",
                "threadCount": 120
            },
            "passiveConnectCount": 27,
            "peerList": [],
            "solidityBlock": described(solid),
            "totalFlow": 0
        })
        .to_string(),
    )
}

/// `id_or_num` is a number or a 64-hex block id; an id must match the block at its height.
fn block_number_of(chain: &SimChain, head: u64, id_or_num: &str) -> Result<Option<u64>, String> {
    let text = id_or_num.trim();
    if let Ok(n) = text.parse::<i64>() {
        return Ok(u64::try_from(n).ok());
    }
    let is_hex = text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hex {
        return Err(number_format(Some(text)));
    }
    let number = u64::from_str_radix(&text[..16], 16).map_err(|_| number_format(Some(text)))?;
    let Some(block) = chain.block_at(number, head) else {
        return Ok(None);
    };
    let id = actors::address::bytes_to_hex(&block.id);
    Ok(id.eq_ignore_ascii_case(text).then_some(number))
}
