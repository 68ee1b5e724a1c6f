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

/// Runs the daemon as a process exporting to `endpoint` over the tip, priority and backlog
/// paths, stops it with SIGTERM (which flushes), and checks one `block` trace per block.
async fn traces_arrive(endpoint: &str, protocol: &str, received: Received) {
    let redis = TestRedis::start().await;
    let sim = frozen_sim(20, 10).await;
    let head = sim.chain().head();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_SERVICE_NAME", "tron-actors-test"),
    ];
    let mut daemon = DaemonProcess::spawn(&sim.url(), &redis.url(), &env);
    let store = redis.store();
    wait_done(&store, head, head, WAIT).await;
    sim.chain().advance(5); // priority: 4 blocks, tip: 1
    wait_done(&store, head, head + 5, WAIT).await;
    sim.chain().advance(30); // backlog: 29 blocks, tip: 1
    let last = head + 35;
    wait_done(&store, head, last, WAIT).await;
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
    let mut conn = redis.conn().await;
    let entries = read_stream(&mut conn, "{tron}:events").await;
    for number in head..=last {
        let roots = by_block
            .get(&(number as i64))
            .unwrap_or_else(|| panic!("no trace for block {number}"));
        assert_eq!(
            roots.len(),
            1,
            "block {number}: one trace per attempt, one attempt"
        );
        let root = roots[0];
        let expected = sim.chain().expected_block(number).unwrap();
        assert_eq!(
            attr_str(root, "hash").as_deref(),
            Some(expected.header.hash.as_str())
        );
        assert_eq!(attr_int(root, "events"), Some(expected.events.len() as i64));
        assert_eq!(attr_int(root, "attempt"), Some(1));
        assert_eq!(attr_str(root, "outcome").as_deref(), Some("published"));
        let path = attr_str(root, "path").unwrap();
        let slot = attr_str(root, "slot").unwrap();
        let want_path = if number == head || number == head + 5 || number == last {
            "tip"
        } else if number < head + 5 {
            "priority"
        } else {
            "backlog"
        };
        assert_eq!(path, want_path, "block {number}");
        assert!(slot == "tip" || slot == "priority" || slot.starts_with("backlog-"));
        let children: Vec<&Span> = spans
            .iter()
            .filter(|s| s.trace_id == root.trace_id && s.span_id != root.span_id)
            .collect();
        let commit = children
            .iter()
            .find(|s| s.name == "commit")
            .unwrap_or_else(|| panic!("block {number}: no commit span"));
        assert_eq!(commit.parent_span_id, root.span_id);
        if path == "backlog" {
            assert!(
                !root.links.is_empty(),
                "block {number}: backlog blocks come in ranges"
            );
        }
        if !root.links.is_empty() {
            // Bodies came in a range request: its trace is linked from the block's.
            let range = spans
                .iter()
                .find(|s| s.span_id == root.links[0].span_id)
                .unwrap();
            assert_eq!(range.name, "node.get_blocks");
            let range_children = spans.iter().filter(|s| s.trace_id == range.trace_id);
            assert!(range_children
                .map(|s| s.name.as_str())
                .any(|n| n == "decode"));
        } else {
            assert!(
                children.iter().any(|s| s.name == "node.request"),
                "block {number}: no node span"
            );
            assert!(
                children.iter().any(|s| s.name == "decode"),
                "block {number}: no decode span"
            );
        }
    }
    // Every block with events is in the stream: the traces describe real commits.
    let in_stream: std::collections::HashSet<u64> =
        common::by_block(&entries).keys().copied().collect();
    for number in head..=last {
        let expected = sim.chain().expected_block(number).unwrap();
        assert_eq!(in_stream.contains(&number), !expected.events.is_empty());
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
    let blocks_with_events = common::by_block(&entries).len() as f64;
    let empty_blocks = (head..=last)
        .filter(|n| sim.chain().expected_block(*n).unwrap().events.is_empty())
        .count() as f64;
    let published: f64 = ["tip", "priority", "backlog"]
        .iter()
        .map(|p| m[&format!("tron_actors_blocks_published_total{{path=\"{p}\"}}")])
        .sum();
    assert_eq!(published, blocks_with_events + empty_blocks);
    assert_eq!(published, (last - head + 1) as f64);
    let events: f64 = ["tip", "priority", "backlog"]
        .iter()
        .map(|p| m[&format!("tron_actors_events_published_total{{path=\"{p}\"}}")])
        .sum();
    assert_eq!(events, entries.len() as f64);
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
