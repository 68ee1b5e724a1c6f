//! The HTTP face of the simulated node: java-tron's endpoints under `/wallet` and
//! `/walletsolidity`, with the node's answers and quirks, plus `/sim/*` for tests.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::any;
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::chain::{Rendered, SimChain, SimParams};
use crate::faults::{ContentFaults, FaultKind, FaultState, Gate, SimFaults};
use crate::SimError;

/// The header TronGrid reads the API key from.
const API_KEY_HEADER: &str = "TRON-PRO-API-KEY";

/// `getblockbylimitnext` answers `{}` for a range over this many blocks.
const LIMIT_NEXT_MAX: i64 = 100;

/// The node API endpoints, each served under `/wallet` and `/walletsolidity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    NowBlock,
    BlockByNum,
    Block,
    BlockByLimitNext,
    TxInfoByBlockNum,
}

impl Endpoint {
    const ALL: [Endpoint; 5] = [
        Endpoint::NowBlock,
        Endpoint::BlockByNum,
        Endpoint::Block,
        Endpoint::BlockByLimitNext,
        Endpoint::TxInfoByBlockNum,
    ];

    fn path(self) -> &'static str {
        match self {
            Endpoint::NowBlock => "getnowblock",
            Endpoint::BlockByNum => "getblockbynum",
            Endpoint::Block => "getblock",
            Endpoint::BlockByLimitNext => "getblockbylimitnext",
            Endpoint::TxInfoByBlockNum => "gettransactioninfobyblocknum",
        }
    }

    fn index(self, solid: bool) -> usize {
        let i = Endpoint::ALL.iter().position(|e| *e == self).unwrap_or(0);
        if solid {
            i + Endpoint::ALL.len()
        } else {
            i
        }
    }
}

fn prefix(solid: bool) -> &'static str {
    if solid {
        "walletsolidity"
    } else {
        "wallet"
    }
}

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
            "solid_head": head.saturating_sub(super::chain::SOLID_LAG),
            "start_block": p.start_block,
            "seed": p.seed,
            "history": p.history,
            "block_interval_ms": p.block_interval_ms,
            "txs_per_block": p.txs_per_block,
            "genesis_ms": chain.genesis_ms(),
            "head_timestamp_ms": chain.timestamp_of(head),
            "frozen": p.frozen,
            "fork_rate": p.fork_rate,
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
    Infos {
        rendered: Arc<Rendered>,
        number: u64,
    },
    /// `{}`, `[]` or an error: nothing a content fault applies to.
    Plain(Bytes),
}

const EMPTY_OBJECT: &str = "{}";
const EMPTY_ARRAY: &str = "[]";

async fn node_api(
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
    let answer = match Params::parse(method, uri, body) {
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
        Answer::Infos { rendered, number } => {
            if content.empty_infos && rendered.tx_count > 0 {
                shared.faults.count(FaultKind::EmptyInfos);
                return Bytes::from_static(EMPTY_ARRAY.as_bytes());
            }
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
        head.saturating_sub(super::chain::SOLID_LAG)
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
                Some((number, rendered)) => Answer::Infos { rendered, number },
                // The node answers `[]` for a block it has not got, as for an empty one.
                None => Answer::Plain(Bytes::from_static(EMPTY_ARRAY.as_bytes())),
            }
        }
    })
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

async fn sim_status(State(shared): State<Arc<Shared>>) -> Response {
    ok(shared.status_json().to_string())
}

fn query_u64(uri: &Uri, name: &str) -> Option<u64> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

async fn sim_expected(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let Some(number) = query_u64(&uri, "num") else {
        return respond(
            StatusCode::BAD_REQUEST,
            node_error("expected ?num=<block number>"),
        );
    };
    match shared.chain.expected_block(number) {
        Some(block) => match serde_json::to_vec(&block) {
            Ok(body) => ok(body),
            Err(error) => respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                node_error(&error.to_string()),
            ),
        },
        None => respond(StatusCode::NOT_FOUND, EMPTY_OBJECT),
    }
}

async fn sim_advance(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let blocks = query_u64(&uri, "blocks").unwrap_or(1);
    shared.chain.advance(blocks);
    ok(json!({ "head": shared.chain.head() }).to_string())
}

/// Accepts TCP connections and gives each one a kill switch, so that a handler can make its
/// connection end in a reset instead of an answer.
struct SimListener {
    inner: TcpListener,
}

/// The per-connection handle a handler sees (as `ConnectInfo`).
#[derive(Clone, Debug)]
struct ConnCtl {
    kill: Arc<AtomicBool>,
}

impl ConnCtl {
    fn reset(&self) {
        self.kill.store(true, Ordering::Relaxed);
    }
}

impl Connected<IncomingStream<'_, SimListener>> for ConnCtl {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.remote_addr().clone()
    }
}

impl Listener for SimListener {
    type Io = SimConn;
    type Addr = ConnCtl;

    async fn accept(&mut self) -> (SimConn, ConnCtl) {
        loop {
            match self.inner.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let kill = Arc::new(AtomicBool::new(false));
                    let ctl = ConnCtl {
                        kill: Arc::clone(&kill),
                    };
                    return (SimConn { stream, kill }, ctl);
                }
                // Out of file descriptors and the like: wait instead of spinning.
                Err(error) => {
                    tracing::warn!(%error, "Simulated node cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<ConnCtl> {
        self.inner.local_addr().map(|_| ConnCtl {
            kill: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// A TCP connection that fails every read and write once killed, with SO_LINGER 0 so that
/// closing it sends a RST: the client sees "connection reset by peer", not a clean close.
struct SimConn {
    stream: TcpStream,
    kill: Arc<AtomicBool>,
}

impl SimConn {
    fn killed(&self) -> Option<io::Error> {
        if !self.kill.load(Ordering::Relaxed) {
            return None;
        }
        let _ = self.stream.set_zero_linger();
        Some(io::Error::from(io::ErrorKind::ConnectionReset))
    }
}

impl AsyncRead for SimConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(error) = self.killed() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(error) = self.killed() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(error) = self.killed() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(error) = self.killed() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
