//! The operations HTTP server on `metrics.listen`: `/healthz` (the process answers), `/readyz`
//! (Redis and the node reachable, the work not paused for Redis memory, the actor tree running) and `/metrics` (Prometheus text).

use crate::store::RedisStore;
use actors::clock::now_ms;
use actors::stats::TreeStats;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The node counts as unreachable when no head poll succeeded for this long.
const NODE_STALE: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub(crate) struct OpsState {
    pub store: RedisStore,
    /// The tree's stats, which also say whether it is running.
    pub stats: Arc<TreeStats>,
    pub(crate) extra_metrics: Vec<crate::metrics::ExtraMetrics>,
    /// On while Redis is short of memory or would evict keys: not ready then.
    pub(crate) backpressure: actors::backpressure::Backpressure,
}

/// The ops server cannot listen (port taken, address not allowed).
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on metrics.listen = {addr}: {source} (choose a free port, or set it empty to run without the server)")]
pub struct OpsServerError {
    addr: String,
    source: std::io::Error,
}

/// A running server; dropping it stops it.
pub struct OpsServer {
    /// The address it listens on (the port resolved when `:0` was asked).
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn start(
    listen: std::net::SocketAddr,
    state: OpsState,
) -> Result<OpsServer, OpsServerError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| OpsServerError {
            addr: listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| OpsServerError {
        addr: listen.to_string(),
        source,
    })?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "Operations server stopped");
        }
    });
    tracing::info!(%addr, "Serving /healthz, /readyz and /metrics");
    Ok(OpsServer { addr, task })
}

async fn metrics(
    State(state): State<OpsState>,
) -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    let body = crate::metrics::render(&state.store, &state.stats, &state.extra_metrics).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 when Redis answers, the node answered a head poll lately, the work is not paused (Redis
/// short of memory or set to evict) and the tree runs; 503 with the reasons otherwise.
async fn readyz(State(state): State<OpsState>) -> (StatusCode, String) {
    let mut problems = Vec::new();
    if let Err(error) = tokio::time::timeout(Duration::from_secs(2), state.store.ping())
        .await
        .unwrap_or_else(|_| {
            Err(actors::store::StoreError::Unavailable(
                "no answer in 2 s".into(),
            ))
        })
    {
        problems.push(format!("redis: {error}"));
    }
    let last_head = state.stats.last_head_ok_ms.load(Ordering::Relaxed);
    if last_head == 0 || now_ms().saturating_sub(last_head) > NODE_STALE.as_millis() as u64 {
        problems.push("node: no head poll succeeded in the last 30 s".into());
    }
    if let Some(reason) = state.backpressure.reason() {
        problems.push(format!("paused: {reason}"));
    }
    if !state.stats.is_running() {
        problems.push("actors: the tree is not running".into());
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{}\n", problems.join("\n")),
        )
    }
}
