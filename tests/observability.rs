//! Observability end to end: traces received by in-process OTLP receivers (gRPC and
//! HTTP/protobuf), /metrics values against the stream, /readyz against a stopped Redis.
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    frozen_sim, read_stream, start_daemon, test_config, wait_done, DaemonProcess, TestRedis,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tron_sim::SimFaults;

const WAIT: Duration = Duration::from_secs(120);

/// Everything the receivers got: (service.name, span).
type Received = Arc<Mutex<Vec<(String, Span)>>>;

fn collect(received: &Received, request: ExportTraceServiceRequest) {
    let mut all = received.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                all.push((service.clone(), span));
            }
        }
    }
}

struct GrpcReceiver(Received);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        collect(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn grpc_receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(GrpcReceiver(received.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (format!("http://{addr}"), received)
}

async fn http_receiver() -> (String, Received) {
    use prost::Message;
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).unwrap();
                collect(&sink, request);
                let mut out = Vec::new();
                ExportTraceServiceResponse::default()
                    .encode(&mut out)
                    .unwrap();
                (
                    [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                    out,
                )
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), received)
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn attr_int(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key)? {
        Value::IntValue(i) => Some(*i),
        Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

fn attr_str(span: &Span, key: &str) -> Option<String> {
    match attr(span, key)? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A node in front of the simulated one that answers the transaction infos of `block` with
/// garbage once, then passes everything through: the only way to fail a tip block's first
/// attempt (a malformed block in the simulator is malformed in the head poll too, so it never
/// reaches the tip).
async fn proxy_failing_infos_once(sim_url: String, block: u64) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(true));
    // reqwest is built without a TLS crypto provider; whichever comes first installs it.
    tron_actors::tls::install_crypto_provider();
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method, uri: axum::http::Uri, body: axum::body::Bytes| {
            let (client, armed, sim_url) = (client.clone(), armed.clone(), sim_url.clone());
            async move {
                let asked: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
                let num = asked.as_ref().and_then(|b| b["num"].as_u64());
                if uri.path().ends_with("/gettransactioninfobyblocknum")
                    && num == Some(block)
                    && armed.swap(false, std::sync::atomic::Ordering::SeqCst)
                {
                    return (axum::http::StatusCode::OK, b"[{\"id\":".to_vec());
                }
                let answer = client
                    .request(method, format!("{sim_url}{uri}"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = axum::http::StatusCode::from_u16(answer.status().as_u16()).unwrap();
                (status, answer.bytes().await.unwrap().to_vec())
            }
        },
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn status_code(span: &Span) -> i32 {
    span.status.as_ref().map_or(0, |s| s.code)
}

fn status_message(span: &Span) -> String {
    span.status
        .as_ref()
        .map(|s| s.message.clone())
        .unwrap_or_default()
}

const STATUS_ERROR: i32 = opentelemetry_proto::tonic::trace::v1::status::StatusCode::Error as i32;

fn event_attr(event: &opentelemetry_proto::tonic::trace::v1::span::Event, key: &str) -> String {
    let value = event
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref());
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        other => panic!("event attribute {key}: {other:?}"),
    }
}

/// Checks that `span` failed with a `malformed` error whose message starts with `message`, and
/// returns the message.
fn assert_failed(span: &Span, message: &str) -> String {
    assert_eq!(status_code(span), STATUS_ERROR, "{}", span.name);
    let full = status_message(span);
    assert!(full.starts_with(message), "{full:?}");
    assert_eq!(attr_str(span, "error.type").as_deref(), Some("malformed"));
    assert_eq!(attr_str(span, "error.message"), Some(full.clone()));
    full
}

/// Runs the daemon as a process exporting to `endpoint` over the tip, priority and backlog
/// paths, a block of each failing its first attempt, stops it with SIGTERM (which flushes), and
/// checks one `block` trace per block and attempt, each with its own fetch, decode and commit.
async fn traces_arrive(endpoint: &str, protocol: &str, received: Received) {
    let redis = TestRedis::start().await;
    let head = common::frozen_sim_head(20);
    // Malformed for good: every attempt fails until the block is dead-lettered.
    let bad_priority = head + 2;
    let bad_backlog = head + 20;
    // Its transaction infos are garbage once: the first attempt fails in decoding.
    let bad_tip = head + 5;
    let faults = SimFaults {
        malformed_blocks: [bad_priority, bad_backlog].into(),
        ..SimFaults::none()
    };
    let sim = common::frozen_sim_with_faults(20, 10, faults).await;
    assert_eq!(sim.chain().head(), head);
    let node = proxy_failing_infos_once(sim.url(), bad_tip).await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_SERVICE_NAME", "tron-actors-test"),
        // The whole retry schedule in well under a second.
        ("TRON_ACTORS_RETRY__DELAY_SCALE", "0.0001"),
    ];
    let mut daemon = DaemonProcess::spawn(&node, &redis.url(), &env);
    let store = redis.store();
    let dead = |block: u64| {
        let store = store.clone();
        async move {
            store
                .dead_letters()
                .await
                .unwrap()
                .iter()
                .any(|d| d.block == block && d.attempts == 10)
        }
    };
    wait_done(&store, head, head, WAIT).await;
    sim.chain().advance(5); // priority: 4 blocks, tip: 1
    wait_done(&store, head, bad_priority - 1, WAIT).await;
    wait_done(&store, bad_priority + 1, head + 5, WAIT).await;
    common::wait_until(WAIT, "priority block dead", || dead(bad_priority)).await;
    sim.chain().advance(30); // backlog: 29 blocks, tip: 1
    let last = head + 35;
    wait_done(&store, head + 6, bad_backlog - 1, WAIT).await;
    wait_done(&store, bad_backlog + 1, last, WAIT).await;
    common::wait_until(WAIT, "backlog block dead", || dead(bad_backlog)).await;
    let status = daemon.terminate(Duration::from_secs(20)).await;
    assert!(status.success());

    let spans = received.lock().unwrap().clone();
    assert!(!spans.is_empty(), "no span received");
    assert!(spans
        .iter()
        .all(|(service, _)| service == "tron-actors-test"));
    let spans: Vec<Span> = spans.into_iter().map(|(_, s)| s).collect();
    let roots: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "block" && s.parent_span_id.is_empty())
        .collect();
    let mut by_block: HashMap<i64, Vec<&Span>> = HashMap::new();
    for root in &roots {
        by_block
            .entry(attr_int(root, "block").unwrap())
            .or_default()
            .push(root);
    }
    let children_of = |parent: &Span| -> Vec<&Span> {
        let mut children: Vec<&Span> = spans
            .iter()
            .filter(|s| s.trace_id == parent.trace_id && s.parent_span_id == parent.span_id)
            .collect();
        children.sort_by(|a, b| a.name.cmp(&b.name));
        children
    };
    let names = |spans: &[&Span]| -> Vec<String> { spans.iter().map(|s| s.name.clone()).collect() };
    let mut conn = redis.conn().await;
    let entries = read_stream(&mut conn, "{tron}:events").await;
    for number in head..=last {
        let mut roots = by_block
            .get(&(number as i64))
            .unwrap_or_else(|| panic!("no trace for block {number}"))
            .clone();
        roots.sort_by_key(|root| attr_int(root, "attempt"));
        let first_path = if number == head || number == head + 5 || number == last {
            "tip"
        } else if number < head + 5 {
            "priority"
        } else {
            "backlog"
        };
        let attempts = if number == bad_priority || number == bad_backlog {
            10
        } else if number == bad_tip {
            2
        } else {
            1
        };
        assert_eq!(
            roots.len(),
            attempts,
            "block {number}: one trace per attempt"
        );
        let expected = sim.chain().expected_block(number).unwrap();
        for (index, root) in roots.iter().enumerate() {
            let attempt = index as i64 + 1;
            let context = format!("block {number}, attempt {attempt}");
            assert_eq!(attr_int(root, "attempt"), Some(attempt), "{context}");
            let path = attr_str(root, "path").unwrap();
            // `<instance>/<slot>`: the daemon's instance id, then the slot.
            let slot = attr_str(root, "slot").unwrap();
            let slot = slot
                .strip_prefix(&format!("{}/", common::DAEMON_INSTANCE))
                .unwrap_or_else(|| panic!("{slot} is not the daemon instance's"));
            // A retry goes back to the backlog or, for the tip and the priority queue, to the
            // priority queue.
            let want_path = match (attempt, first_path) {
                (1, path) | (_, path @ "backlog") => path,
                _ => "priority",
            };
            assert_eq!(path, want_path, "{context}");
            assert!(
                slot == path || slot.starts_with("backlog-"),
                "{context}: {slot}"
            );
            let children = children_of(root);
            let failed =
                attempt < attempts as i64 || number == bad_priority || number == bad_backlog;
            if failed {
                let outcome = if attempt == 10 {
                    "dead_letter"
                } else {
                    "retry"
                };
                assert_eq!(
                    attr_str(root, "outcome").as_deref(),
                    Some(outcome),
                    "{context}"
                );
                assert_eq!(attr_str(root, "hash"), None, "{context}");
                let message = if number == bad_tip {
                    // The body came fine; the infos did not decode.
                    assert_eq!(names(&children), ["decode", "fetch"], "{context}");
                    assert_eq!(status_code(children[1]), 0, "{context}");
                    assert_failed(
                        children[0],
                        &format!("malformed answer for transaction infos of block {number}: "),
                    )
                } else {
                    // The body itself is unparsable: nothing to decode, nothing to commit.
                    assert_eq!(names(&children), ["fetch"], "{context}");
                    assert_failed(
                        children[0],
                        &format!("malformed answer for block {number}: "),
                    )
                };
                assert_eq!(assert_failed(root, &message), message, "{context}");
                assert_eq!(root.events.len(), 1, "{context}");
                let event = &root.events[0];
                assert_eq!(event.name, "exception", "{context}");
                assert_eq!(event_attr(event, "exception.type"), "malformed");
                assert_eq!(event_attr(event, "exception.message"), message);
                assert_eq!(event_attr(event, "level"), "ERROR");
            } else {
                assert_eq!(
                    attr_str(root, "hash").as_deref(),
                    Some(expected.header.hash.as_str()),
                    "{context}"
                );
                assert_eq!(attr_int(root, "events"), Some(expected.events.len() as i64));
                assert_eq!(attr_str(root, "outcome").as_deref(), Some("published"));
                assert_eq!(status_code(root), 0, "{context}");
                assert!(root.events.is_empty(), "{context}: {:?}", root.events);
                assert_eq!(names(&children), ["commit", "decode", "fetch"], "{context}");
                assert!(children.iter().all(|s| status_code(s) == 0), "{context}");
            }
            if attempt == 1 && path == "backlog" {
                assert!(
                    !root.links.is_empty(),
                    "{context}: backlog blocks come in ranges"
                );
            }
            // The fetch holds the block's requests to the node; its body came alone, with the
            // head poll, or in a range request, whose trace is linked from the block's.
            let fetch = children.iter().find(|s| s.name == "fetch").unwrap();
            let body = attr_str(fetch, "body").unwrap();
            let mut endpoints: Vec<String> = children_of(fetch)
                .iter()
                .map(|s| {
                    assert_eq!(s.name, "node.request", "{context}");
                    attr_str(s, "endpoint").unwrap()
                })
                .collect();
            endpoints.sort();
            let infos_failed_to_come = failed && number != bad_tip;
            let want: &[&str] = match (body.as_str(), infos_failed_to_come) {
                ("node", true) => &["getblockbynum"],
                ("node", false) => &["getblockbynum", "gettransactioninfobyblocknum"],
                ("head" | "range", false) => &["gettransactioninfobyblocknum"],
                other => panic!("{context}: fetch {other:?}"),
            };
            assert_eq!(endpoints, want, "{context}");
            if let Some(link) = root.links.first() {
                let range = spans.iter().find(|s| s.span_id == link.span_id).unwrap();
                assert_eq!(range.name, "node.get_blocks", "{context}");
                let requests = children_of(range);
                assert_eq!(names(&requests), ["node.request"], "{context}");
                assert_eq!(
                    attr_str(requests[0], "endpoint").as_deref(),
                    Some("getblockbylimitnext")
                );
                // The range answer is unparsable when it holds a malformed block; each body is
                // then asked for alone.
                let range_ok = !(attr_int(range, "from").unwrap()..=attr_int(range, "to").unwrap())
                    .any(|n| n == bad_priority as i64 || n == bad_backlog as i64);
                assert_eq!(body == "range", range_ok, "{context}");
                // Nothing of one block's own work is left in the range's trace.
                assert!(spans
                    .iter()
                    .filter(|s| s.trace_id == range.trace_id)
                    .all(|s| s.name == "node.get_blocks" || s.name == "node.request"));
            } else {
                assert_ne!(body, "range", "{context}");
            }
        }
    }
    // Every block is in the stream (empty ones by their block entry), but the dead ones: the
    // traces describe real commits.
    let in_stream: std::collections::HashSet<u64> =
        common::by_block(&entries).keys().copied().collect();
    for number in head..=last {
        let dead = number == bad_priority || number == bad_backlog;
        assert_eq!(in_stream.contains(&number), !dead, "block {number}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_block_trace_per_block_over_grpc() {
    let (endpoint, received) = grpc_receiver().await;
    traces_arrive(&endpoint, "grpc", received).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_block_trace_per_block_over_http_protobuf() {
    let (endpoint, received) = http_receiver().await;
    traces_arrive(&endpoint, "http/protobuf", received).await;
}

/// Parses Prometheus text: every sample line is `name{labels} value` with a numeric value.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = key.split('{').next().unwrap();
        assert!(name.starts_with("tron_actors_"), "{line}");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        out.insert(key.to_string(), value);
    }
    out
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_the_run_and_readiness_follows_redis() {
    let mut redis = TestRedis::start().await;
    let sim = frozen_sim(20, 10).await;
    let head = sim.chain().head();
    let config = test_config(&sim.url(), &redis.url(), &[]);
    let daemon = start_daemon(&config).await;
    let base = format!("http://{}", daemon.ops.as_ref().unwrap().addr);
    wait_done(&daemon.store, head, head, WAIT).await;
    sim.chain().advance(60);
    let last = head + 60;
    wait_done(&daemon.store, head, last, WAIT).await;
    // The TipWatcher has seen the last head once it polled after the last commit.
    common::wait_until(WAIT, "lag 0", || async {
        let (_, text) = get(&format!("{base}/metrics")).await;
        parse_metrics(&text).get("tron_actors_lag_blocks") == Some(&0.0)
    })
    .await;
    let (status, text) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    let m = parse_metrics(&text);
    let mut conn = redis.conn().await;
    let entries = read_stream(&mut conn, "{tron}:events").await;
    // Every block committed, empty ones included, has its block entry.
    let blocks_in_stream = common::by_block(&entries).len() as f64;
    let published: f64 = ["tip", "priority", "backlog"]
        .iter()
        .map(|p| m[&format!("tron_actors_blocks_published_total{{path=\"{p}\"}}")])
        .sum();
    assert_eq!(published, blocks_in_stream);
    assert_eq!(published, (last - head + 1) as f64);
    let events: f64 = ["tip", "priority", "backlog"]
        .iter()
        .map(|p| m[&format!("tron_actors_events_published_total{{path=\"{p}\"}}")])
        .sum();
    let event_entries = entries
        .iter()
        .filter(|e| !matches!(common::field_map(e)["kind"].as_str(), "block" | "finalized"))
        .count();
    assert_eq!(events, event_entries as f64);
    // Published after each head, at most the node's solidified block (head - 19).
    let finalized = m["tron_actors_finalized_block"];
    assert!(
        finalized > 0.0 && finalized <= (last - 19) as f64,
        "{finalized}"
    );
    assert_eq!(m["tron_actors_forks_total"], 0.0);
    assert_eq!(m["tron_actors_reverted_blocks_total"], 0.0);
    assert_eq!(
        m["tron_actors_blocks_published_total{path=\"backlog\"}"],
        59.0
    );
    assert_eq!(m["tron_actors_chain_head_block"], last as f64);
    assert_eq!(m["tron_actors_last_synced_block"], last as f64);
    assert_eq!(m["tron_actors_lag_seconds"], 0.0);
    assert_eq!(m["tron_actors_queue_depth_blocks{queue=\"backlog\"}"], 0.0);
    assert_eq!(m["tron_actors_queue_depth_blocks{queue=\"dead\"}"], 0.0);
    assert_eq!(m["tron_actors_redis_up"], 1.0);
    assert_eq!(m["tron_actors_stream_entries"], entries.len() as f64);
    assert_eq!(m["tron_actors_commit_duration_seconds_count"], published);

    let (status, _) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 200);
    redis.server.kill().await;
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 503);
    assert!(body.contains("redis"), "{body}");
    let (status, _) = get(&format!("{base}/healthz")).await;
    assert_eq!(status, 200, "alive even when not ready");
    let (_, text) = get(&format!("{base}/metrics")).await;
    assert_eq!(parse_metrics(&text)["tron_actors_redis_up"], 0.0);
    redis.server.restart().await.unwrap();
    daemon.shutdown().await.unwrap();
}
