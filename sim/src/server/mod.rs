//! The HTTP face of the simulated node: java-tron's endpoints under `/wallet` and
//! `/walletsolidity`, with the node's answers and quirks, plus `/sim/*` for tests.
//!
//! - this module: the handle, start and stop, the routes, the API key check;
//! - `node_api`: java-tron's endpoints, their parameters, answers and faults;
//! - `control`: `/sim/status`, `/sim/expected`, `/sim/advance`;
//! - `conn`: connections a handler can end with a reset.

mod conn;
mod control;
mod node_api;

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::connect_info::ConnectInfo;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::chain::{SimChain, SimParams};
use crate::faults::{FaultState, SimFaults};
use crate::SimError;
use conn::{ConnCtl, SimListener};
use control::{sim_advance, sim_expected, sim_status};
use node_api::{node_api, prefix, Endpoint};

/// The header TronGrid reads the API key from.
const API_KEY_HEADER: &str = "TRON-PRO-API-KEY";
/// What every handler shares.
struct Shared {
    chain: Arc<SimChain>,
    faults: FaultState,
    requests: [AtomicU64; 2 * Endpoint::ALL.len()],
    /// Node API requests that carried the required API key, and those refused without it.
    key_accepted: AtomicU64,
    key_refused: AtomicU64,
}

impl Shared {
    fn request_counts(&self) -> Vec<(String, u64)> {
        [false, true]
            .iter()
            .flat_map(|&solid| {
                Endpoint::ALL.iter().map(move |&e| {
                    (
                        format!("/{}/{}", prefix(solid), e.path()),
                        self.requests[e.index(solid)].load(Ordering::Relaxed),
                    )
                })
            })
            .collect()
    }

    fn status_json(&self) -> Value {
        let chain = &self.chain;
        let p = chain.params();
        let requests: Map<String, Value> = self
            .request_counts()
            .into_iter()
            .map(|(k, v)| (k, Value::from(v)))
            .collect();
        let faults: Map<String, Value> = self
            .faults
            .counts()
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect();
        let head = chain.head();
        json!({
            "head": head,
            "solid_head": head.saturating_sub(crate::chain::SOLID_LAG),
            "start_block": p.start_block,
            "seed": p.seed,
            "history": p.history,
            "block_interval_ms": p.block_interval_ms,
            "txs_per_block": p.txs_per_block,
            "genesis_ms": chain.genesis_ms(),
            "head_timestamp_ms": chain.timestamp_of(head),
            "frozen": p.frozen,
            "fork_rate": p.fork_rate,
            "max_fork_depth": p.max_fork_depth,
            "requests": requests,
            "faults": faults,
            "penalty_left_ms": self.faults.penalty_left().as_millis() as u64,
            "malformed_blocks": self.faults.faults().malformed_blocks.iter().collect::<Vec<_>>(),
            // Counts only: the key itself is never echoed.
            "api_key": {
                "required": p.api_key.is_some(),
                "accepted": self.key_accepted.load(Ordering::Relaxed),
                "refused": self.key_refused.load(Ordering::Relaxed),
            },
        })
    }
}

/// A running simulated node. Dropping it stops the server (gracefully, in the background).
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl SimHandle {
    /// The address the server listens on (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to give a client, e.g. `http://127.0.0.1:8090`.
    pub fn url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// The chain it serves: `head()`, `expected_block(n)`, `advance(n)`, ...
    pub fn chain(&self) -> &Arc<SimChain> {
        &self.shared.chain
    }

    /// What `/sim/status` answers.
    pub fn status(&self) -> Value {
        self.shared.status_json()
    }

    /// Requests served per endpoint path (e.g. `/wallet/getblockbynum`).
    pub fn request_counts(&self) -> Vec<(String, u64)> {
        self.shared.request_counts()
    }

    /// Faults injected, per kind (e.g. `http_429`, `reset`, `malformed`).
    pub fn fault_counts(&self) -> Vec<(&'static str, u64)> {
        self.shared.faults.counts()
    }

    /// Stops accepting, lets answers in flight finish (up to 5 s), then returns.
    pub async fn shutdown(mut self) -> Result<(), SimError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
            Ok(Ok(result)) => result.map_err(SimError::Serve),
            // The server task panicked or was cancelled: nothing left to stop.
            Ok(Err(_)) => Ok(()),
            Err(_) => {
                task.abort();
                Ok(())
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts the simulated node on `listen` (port 0 picks a free port) and returns at once.
pub async fn spawn(
    params: SimParams,
    faults: SimFaults,
    listen: SocketAddr,
) -> Result<SimHandle, SimError> {
    faults.validate()?;
    let chain = Arc::new(SimChain::new(params)?);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| SimError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind {
        addr: listen,
        source,
    })?;
    let shared = Arc::new(Shared {
        chain,
        faults: FaultState::new(faults),
        requests: std::array::from_fn(|_| AtomicU64::new(0)),
        key_accepted: AtomicU64::new(0),
        key_refused: AtomicU64::new(0),
    });
    let app = router(Arc::clone(&shared));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = axum::serve(
        SimListener { inner: listener },
        app.into_make_service_with_connect_info::<ConnCtl>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stopped.await;
    });
    let task = tokio::spawn(async move { server.await });
    tracing::info!(%addr, head = shared.chain.head(), "Simulated TRON node listening");
    Ok(SimHandle {
        addr,
        shared,
        stop: Some(stop),
        task: Some(task),
    })
}

/// Serves until `shutdown` completes: what the `sim` command runs.
pub async fn serve_until(
    params: SimParams,
    faults: SimFaults,
    listen: SocketAddr,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SimError> {
    let handle = spawn(params, faults, listen).await?;
    tracing::info!(url = %handle.url(), "Simulated TRON node ready");
    shutdown.await;
    tracing::info!("Simulated TRON node stopping");
    handle.shutdown().await
}

/// Serves until Ctrl-C (SIGINT).
pub async fn serve_forever(
    params: SimParams,
    faults: SimFaults,
    listen: SocketAddr,
) -> Result<(), SimError> {
    serve_until(params, faults, listen, async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "Cannot listen for Ctrl-C; serving until killed");
            std::future::pending::<()>().await;
        }
    })
    .await
}

fn router(shared: Arc<Shared>) -> Router {
    let mut app = Router::new();
    for solid in [false, true] {
        for endpoint in Endpoint::ALL {
            let path = format!("/{}/{}", prefix(solid), endpoint.path());
            app = app.route(
                &path,
                any(
                    move |State(shared): State<Arc<Shared>>,
                          ConnectInfo(conn): ConnectInfo<ConnCtl>,
                          method: Method,
                          headers: HeaderMap,
                          uri: Uri,
                          body: Bytes| async move {
                        if let Some(refused) = check_api_key(&shared, &headers) {
                            return refused;
                        }
                        node_api(&shared, endpoint, solid, &conn, &method, &uri, &body).await
                    },
                ),
            );
        }
    }
    app.route("/sim/status", any(sim_status))
        .route("/sim/expected", any(sim_expected))
        .route("/sim/advance", any(sim_advance))
        .with_state(shared)
}

/// TronGrid's answer to a missing or unknown key: 401, before any rate limit or fault.
fn check_api_key(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let required = shared.chain.params().api_key.as_deref()?;
    let sent = headers.get(API_KEY_HEADER).and_then(|v| v.to_str().ok());
    if sent == Some(required) {
        shared.key_accepted.fetch_add(1, Ordering::Relaxed);
        None
    } else {
        shared.key_refused.fetch_add(1, Ordering::Relaxed);
        Some(respond(
            StatusCode::UNAUTHORIZED,
            json!({"Success": false, "Error": "ApiKey not exists", "code": 401}).to_string(),
        ))
    }
}

fn respond(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn ok(body: impl Into<Body>) -> Response {
    respond(StatusCode::OK, body)
}

/// java-tron's way to fail: HTTP 200 and `{"Error": "<class> : <message>"}`.
fn node_error(message: &str) -> Bytes {
    Bytes::from(json!({ "Error": message }).to_string())
}
