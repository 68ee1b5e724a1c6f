//! The client's counters, shared by all its clones, and their Prometheus text.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actors::chain::{ChainError, ChainErrorKind};

use super::Endpoint;

/// Counters for metrics, shared by all clones of a client.
///
/// `requests` counts every HTTP attempt. `errors` counts every failed attempt (transport,
/// timeout, HTTP status, rate limit) and every answer that could not be used (`{}`, `[]` infos,
/// `{"Error"}`, bad JSON), each time it happens, retried or not.
#[derive(Debug, Default)]
pub struct ClientStats {
    requests: [AtomicU64; Endpoint::ALL.len()],
    errors: [AtomicU64; ChainErrorKind::ALL.len()],
    retries: AtomicU64,
    penalties: AtomicU64,
    head_cache_hits: AtomicU64,
    latency_micros_sum: AtomicU64,
    latency_count: AtomicU64,
    /// Request latency per endpoint, for /metrics.
    pub latency_by_endpoint: [actors::histogram::Histogram; Endpoint::ALL.len()],
}

/// A copy of [`ClientStats`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Attempts by endpoint label.
    pub requests: Vec<(&'static str, u64)>,
    /// Errors by [`ChainError::kind`].
    pub errors: Vec<(&'static str, u64)>,
    /// Attempts that were retried (transport errors, timeouts, 5xx).
    pub retries: u64,
    /// Rate-limit answers that started or extended a penalty.
    pub penalties: u64,
    /// Head reads answered from the short-lived head cache.
    pub head_cache_hits: u64,
    /// Sum and count of attempt latencies (completed or failed), for an average.
    pub latency_sum: Duration,
    /// Attempts summed in `latency_sum`.
    pub latency_count: u64,
}

impl ClientStats {
    pub(crate) fn requests(&self, endpoint: Endpoint) -> u64 {
        self.requests[endpoint.index()].load(Ordering::Relaxed)
    }

    /// Errors of one kind.
    pub fn errors(&self, kind: ChainErrorKind) -> u64 {
        self.errors[kind as usize].load(Ordering::Relaxed)
    }

    /// A copy of every counter, for a report.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: Endpoint::ALL
                .iter()
                .map(|e| (e.label(), self.requests(*e)))
                .collect(),
            errors: ChainErrorKind::ALL
                .iter()
                .map(|k| (k.as_str(), self.errors(*k)))
                .collect(),
            retries: self.retries.load(Ordering::Relaxed),
            penalties: self.penalties.load(Ordering::Relaxed),
            head_cache_hits: self.head_cache_hits.load(Ordering::Relaxed),
            latency_sum: Duration::from_micros(self.latency_micros_sum.load(Ordering::Relaxed)),
            latency_count: self.latency_count.load(Ordering::Relaxed),
        }
    }

    pub(super) fn error(&self, error: &ChainError) {
        self.errors[error.error_kind() as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text: requests and latency per endpoint, errors per kind.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP tron_actors_node_requests_total Requests sent to the node, retries included.\n\
             # TYPE tron_actors_node_requests_total counter\n",
        );
        for endpoint in Endpoint::ALL {
            out.push_str(&format!(
                "tron_actors_node_requests_total{{endpoint=\"{}\"}} {}\n",
                endpoint.label(),
                self.requests(endpoint)
            ));
        }
        out.push_str(
            "# HELP tron_actors_node_errors_total Failed node requests and answers, by kind \
             (timeout, rate_limited = a suspension: 429/403 or TronGrid's notice, http = any other status such as a bare 503, malformed, ...).\n\
             # TYPE tron_actors_node_errors_total counter\n",
        );
        for kind in ChainErrorKind::ALL {
            out.push_str(&format!(
                "tron_actors_node_errors_total{{kind=\"{}\"}} {}\n",
                kind.as_str(),
                self.errors(kind)
            ));
        }
        out.push_str(
            "# HELP tron_actors_node_request_duration_seconds Node request latency.\n\
             # TYPE tron_actors_node_request_duration_seconds histogram\n",
        );
        for endpoint in Endpoint::ALL {
            out.push_str(&self.latency_by_endpoint[endpoint.index()].render(
                "tron_actors_node_request_duration_seconds",
                &format!("endpoint=\"{}\"", endpoint.label()),
            ));
        }
        out
    }

    /// One attempt at `endpoint`, completed or failed.
    pub(super) fn attempt(&self, endpoint: Endpoint) {
        self.requests[endpoint.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn penalty(&self) {
        self.penalties.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn head_cache_hit(&self) {
        self.head_cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn latency(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_micros_sum.fetch_add(micros, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }
}
