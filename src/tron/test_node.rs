//! A scripted node for the client's tests: it answers each request as the test says and
//! records what it was sent. And the simulated node, for what a script would only restate.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::{Endpoint, TronClient, TronClientConfig, API_KEY_HEADER, MAX_RANGE};

use crate::config::Config;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;
use std::collections::HashMap;

pub(super) const KEY: &str = "0123-secret-api-key";

pub(super) struct Seen {
    pub(super) path: String,
    pub(super) body: Value,
    pub(super) api_key: Option<String>,
    pub(super) at: std::time::Instant,
}

pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: String,
    pub(super) delay: Duration,
    pub(super) retry_after: Option<u64>,
}

impl Reply {
    pub(super) fn ok(body: Value) -> Reply {
        Reply::status(200, body.to_string())
    }

    pub(super) fn status(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            body: body.into(),
            delay: Duration::ZERO,
            retry_after: None,
        }
    }

    pub(super) fn retry_after(self, seconds: u64) -> Reply {
        Reply {
            retry_after: Some(seconds),
            ..self
        }
    }
}

/// Answers a request given how many came before it on the same path (0-based).
pub(super) type Script = dyn Fn(&str, &Value, usize) -> Reply + Send + Sync;

pub(super) struct NodeState {
    pub(super) script: Box<Script>,
    pub(super) seen: Mutex<Vec<Seen>>,
    pub(super) per_path: Mutex<HashMap<String, usize>>,
}

pub(super) struct TestNode {
    pub(super) url: String,
    pub(super) state: Arc<NodeState>,
}

impl TestNode {
    pub(super) fn seen_paths(&self) -> Vec<String> {
        self.state
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.path.clone())
            .collect()
    }

    pub(super) fn count(&self, endpoint: Endpoint) -> usize {
        self.seen_paths()
            .iter()
            .filter(|p| *p == endpoint.path())
            .count()
    }
}

pub(super) async fn handle(
    State(state): State<Arc<NodeState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, String) {
    let path = uri.path().to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let nth = {
        let mut per_path = state.per_path.lock().unwrap();
        let n = per_path.entry(path.clone()).or_default();
        *n += 1;
        *n - 1
    };
    state.seen.lock().unwrap().push(Seen {
        path: path.clone(),
        body: body.clone(),
        api_key: headers
            .get(API_KEY_HEADER)
            .map(|v| v.to_str().unwrap().to_string()),
        at: std::time::Instant::now(),
    });
    let reply = (state.script)(&path, &body, nth);
    tokio::time::sleep(reply.delay).await;
    let mut headers = HeaderMap::new();
    if let Some(seconds) = reply.retry_after {
        headers.insert("retry-after", seconds.to_string().parse().unwrap());
    }
    (
        StatusCode::from_u16(reply.status).unwrap(),
        headers,
        reply.body,
    )
}

pub(super) async fn spawn_node(
    script: impl Fn(&str, &Value, usize) -> Reply + Send + Sync + 'static,
) -> TestNode {
    let state = Arc::new(NodeState {
        script: Box::new(script),
        seen: Mutex::new(Vec::new()),
        per_path: Mutex::new(HashMap::new()),
    });
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    TestNode { url, state }
}

pub(super) fn config(node: &TestNode) -> TronClientConfig {
    TronClientConfig {
        urls: vec![node.url.clone()],
        api_key: Some(KEY.to_string()),
        timeout: Duration::from_secs(5),
        rate_limit_rps: 0.0,
        penalty: Duration::from_millis(200),
        retry_backoff: Duration::from_millis(10),
        // The tests count range requests of the node's largest range.
        range_size: MAX_RANGE,
        ..Config::default().client_config()
    }
}

pub(super) fn client(node: &TestNode) -> TronClient {
    TronClient::new(config(node)).unwrap()
}

pub(super) fn block_hash(n: u64) -> String {
    format!("{n:016x}{}", "ab".repeat(24))
}

pub(super) fn txid(n: u64) -> String {
    format!("{n:064x}")
}

/// Block `n` of the test chain: one TRX transfer.
pub(super) fn chain_block(n: u64) -> Value {
    json!({
        "blockID": block_hash(n),
        "block_header": {"raw_data": {
            "number": n,
            "parentHash": block_hash(n.saturating_sub(1)),
            "timestamp": 1_000_000 + n * 3000
        }},
        "transactions": [{
            "txID": txid(n),
            "raw_data": {"contract": [{
                "type": "TransferContract",
                "parameter": {"value": {
                    "owner_address": "411111111111111111111111111111111111111111",
                    "to_address": "412222222222222222222222222222222222222222",
                    "amount": n
                }}
            }]},
            "ret": [{"contractRet": "SUCCESS"}]
        }]
    })
}

pub(super) fn num(body: &Value, field: &str) -> u64 {
    body[field].as_u64().unwrap()
}

/// A node whose chain is blocks 1..=head.
pub(super) fn chain(head: u64) -> impl Fn(&str, &Value, usize) -> Reply + Send + Sync + 'static {
    move |path, body, _| match path {
        "/wallet/getnowblock" => Reply::ok(chain_block(head)),
        "/wallet/getblockbynum" if num(body, "num") <= head => {
            Reply::ok(chain_block(num(body, "num")))
        }
        "/wallet/getblockbynum" => Reply::ok(json!({})),
        "/wallet/gettransactioninfobyblocknum" if num(body, "num") <= head => {
            let n = num(body, "num");
            Reply::ok(json!([{"id": txid(n), "blockNumber": n, "packingFee": 1}]))
        }
        "/wallet/gettransactioninfobyblocknum" => Reply::ok(json!([])),
        "/wallet/getblockbylimitnext" => {
            let (start, end) = (num(body, "startNum"), num(body, "endNum"));
            if end.saturating_sub(start) > MAX_RANGE {
                return Reply::ok(json!({}));
            }
            let blocks: Vec<Value> = (start..end.min(head + 1)).map(chain_block).collect();
            Reply::ok(json!({ "block": blocks }))
        }
        _ => Reply::status(404, "not found"),
    }
}

/// The first block of the simulated chains the client's tests run against.
pub(super) const SIM_START: u64 = 1_000;

/// A frozen simulated node whose head is `SIM_START + history - 1`, and a client of it.
pub(super) async fn sim_node(
    history: u64,
    fork_rate: f64,
    faults: tron_sim::SimFaults,
) -> (tron_sim::SimHandle, TronClient) {
    let params = tron_sim::SimParams {
        seed: 5,
        start_block: SIM_START,
        history,
        txs_per_block: 20,
        genesis_ms: Some(1_700_000_001_000),
        frozen: true,
        fork_rate,
        ..tron_sim::SimParams::default()
    };
    let sim = tron_sim::spawn(params, faults, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = TronClient::new(TronClientConfig {
        urls: vec![sim.url()],
        rate_limit_rps: 0.0,
        retry_backoff: Duration::from_millis(10),
        ..Config::default().client_config()
    })
    .unwrap();
    (sim, client)
}
