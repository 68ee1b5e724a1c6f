//! Several nodes behind one client: which one a request goes to, and when the client moves
//! from one to another.
//!
//! Each node (`node.urls`, in order of preference) has its own HTTP client (the API key only
//! where [`key_applies`] says), its own rate limiter and penalty gate, and its own health:
//!
//! - **down**: [`DOWN_AFTER`] transport errors or timeouts in a row, with no good answer
//!   between (a bare 5xx streak pauses the node through its penalty gate instead, as it
//!   always did);
//! - **suspended**: its penalty gate is closed (a rate-limit answer, or persistent 5xx);
//! - **lagging**: its head is more than `node.max_lag_blocks` behind the best head seen across
//!   the nodes.
//!
//! A node that is none of these is *fit*. The *active* node is the first fit one in list
//! order, so the client fails back to a preferred node by itself once it is fit again. Every
//! node's head is checked (`getnowblock`, one attempt) every `node.check_ms`, piggy-backed on
//! the requests (no task of its own): a check in the background whenever the last one is that
//! old; the active node's head polls count as its checks.
//!
//! A request for a block goes to the first fit node known to have it (head at or above it),
//! else to the active node (its head may have moved since it was last seen). When no node is
//! fit, a request goes to the first node not suspended, else waits for the first one's
//! penalty: with every node away the daemon behaves as it does with one node.
//!
//! With one node there is nothing to choose: no checks, no switches, the behaviour of the
//! single-node client.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::limiter::RateLimiter;

/// Transport errors or timeouts in a row (no good answer between) that make a node down.
pub(super) const DOWN_AFTER: u32 = 2;

/// One node: where it is, how to reach it, and what the client knows of its health.
pub(super) struct Node {
    /// Base URL, without a trailing `/`.
    pub(super) base: String,
    /// The URL as logs and metrics show it: no credentials, no query.
    pub(super) shown: String,
    /// Whether the API key is sent to it.
    pub(super) keyed: bool,
    pub(super) http: reqwest::Client,
    pub(super) limiter: RateLimiter,
    /// The highest head it answered; 0 = not known yet.
    head: AtomicU64,
    /// When it last answered its head.
    head_at: Mutex<Option<Instant>>,
    /// Transport errors and timeouts in a row.
    failures: AtomicU32,
    /// Bare 5xx answers in a row, from any caller; any usable answer resets it.
    pub(super) unavailable_streak: AtomicU32,
    /// Pauses taken for this streak so far: each is twice the one before.
    pub(super) unavailable_level: AtomicU32,
}

impl Node {
    pub(super) fn new(
        base: String,
        keyed: bool,
        http: reqwest::Client,
        limiter: RateLimiter,
    ) -> Node {
        Node {
            shown: shown_url(&base),
            base,
            keyed,
            http,
            limiter,
            head: AtomicU64::new(0),
            head_at: Mutex::new(None),
            failures: AtomicU32::new(0),
            unavailable_streak: AtomicU32::new(0),
            unavailable_level: AtomicU32::new(0),
        }
    }

    pub(super) fn head(&self) -> u64 {
        self.head.load(Ordering::Relaxed)
    }

    /// It answered its head.
    pub(super) fn saw_head(&self, number: u64) {
        self.head.fetch_max(number, Ordering::Relaxed);
        *self
            .head_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now());
    }

    fn head_age(&self) -> Option<Duration> {
        self.head_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .map(|at| at.elapsed())
    }

    /// A usable answer: whatever went wrong before is over.
    pub(super) fn answered(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.unavailable_streak.store(0, Ordering::Relaxed);
        self.unavailable_level.store(0, Ordering::Relaxed);
    }

    /// No answer at all (a transport error, a timeout).
    pub(super) fn unreachable(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn health(&self) -> Health {
        Health {
            head: self.head(),
            down: self.failures.load(Ordering::Relaxed) >= DOWN_AFTER,
            suspended: self.limiter.penalty_until().is_some(),
        }
    }
}

/// What the choice looks at, per node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Health {
    /// Its head; 0 = not known yet (never counts as lagging).
    pub(super) head: u64,
    pub(super) down: bool,
    pub(super) suspended: bool,
}

/// Why a node is not fit, for the switch's log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unfit {
    /// Transport errors or timeouts in a row.
    Down,
    /// A rate limit or persistent 5xx holds its requests.
    Suspended,
    /// Its head is this many blocks behind the best head seen.
    Lagging { behind: u64 },
}

impl std::fmt::Display for Unfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unfit::Down => write!(f, "it does not answer ({DOWN_AFTER} failures in a row)"),
            Unfit::Suspended => write!(f, "it suspended our requests (rate limit or 5xx)"),
            Unfit::Lagging { behind } => write!(f, "it lags {behind} blocks behind the best head"),
        }
    }
}

/// The best head among the nodes that answer: a down node's last head grows stale, and must
/// not make the others look as if they lagged.
pub(super) fn best_head(nodes: &[Health]) -> u64 {
    nodes
        .iter()
        .filter(|h| !h.down)
        .map(|h| h.head)
        .max()
        .unwrap_or(0)
}

/// Why `node` is not fit, if it is not.
pub(super) fn unfit(node: &Health, best: u64, max_lag: u64) -> Option<Unfit> {
    if node.down {
        Some(Unfit::Down)
    } else if node.suspended {
        Some(Unfit::Suspended)
    } else if node.head > 0 && best.saturating_sub(node.head) > max_lag {
        Some(Unfit::Lagging {
            behind: best - node.head,
        })
    } else {
        None
    }
}

/// The node a request goes to: for a block (`need`), the first fit node whose head is known to
/// be at or above it; else (and for anything else) the first fit node; with none fit, the first
/// one not suspended, else the first.
pub(super) fn choose(nodes: &[Health], max_lag: u64, need: Option<u64>) -> Choice {
    let best = best_head(nodes);
    let fit = |h: &&Health| unfit(h, best, max_lag).is_none();
    let first_fit = nodes.iter().position(|h| fit(&h));
    let with_block = need.and_then(|n| nodes.iter().position(|h| fit(&h) && h.head >= n));
    match with_block.or(first_fit) {
        Some(index) => Choice { index, fit: true },
        None => Choice {
            index: nodes.iter().position(|h| !h.suspended).unwrap_or(0),
            fit: false,
        },
    }
}

/// Where a request goes, and whether that node is fit (a fit node's requests leave its penalty
/// gate for another node when it closes; a fallback's wait at it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Choice {
    pub(super) index: usize,
    pub(super) fit: bool,
}

/// The nodes and what the client decided about them.
pub(super) struct Pool {
    pub(super) nodes: Vec<Node>,
    max_lag: u64,
    check_every: Duration,
    active: AtomicUsize,
    switches: AtomicU64,
    last_check: Mutex<Option<Instant>>,
    checking: AtomicBool,
}

impl Pool {
    pub(super) fn new(nodes: Vec<Node>, max_lag: u64, check_every: Duration) -> Pool {
        Pool {
            nodes,
            max_lag,
            check_every,
            active: AtomicUsize::new(0),
            switches: AtomicU64::new(0),
            last_check: Mutex::new(None),
            checking: AtomicBool::new(false),
        }
    }

    pub(super) fn several(&self) -> bool {
        self.nodes.len() > 1
    }

    pub(super) fn healths(&self) -> Vec<Health> {
        self.nodes.iter().map(Node::health).collect()
    }

    /// The node for a request (see [`choose`]); notes (and logs) a change of the active node.
    pub(super) fn pick(&self, need: Option<u64>) -> Choice {
        if !self.several() {
            return Choice {
                index: 0,
                fit: true,
            };
        }
        let healths = self.healths();
        let preferred = choose(&healths, self.max_lag, None);
        let previous = self.active.swap(preferred.index, Ordering::Relaxed);
        if previous != preferred.index {
            self.switches.fetch_add(1, Ordering::Relaxed);
            let best = best_head(&healths);
            let reason = match unfit(&healths[previous], best, self.max_lag) {
                Some(why) => why.to_string(),
                None => "a node earlier in node.urls is fit again".to_string(),
            };
            tracing::info!(
                from = %self.nodes[previous].shown,
                to = %self.nodes[preferred.index].shown,
                from_head = healths[previous].head,
                to_head = healths[preferred.index].head,
                reason = %reason,
                "Switched node"
            );
        }
        match need {
            None => preferred,
            Some(_) => choose(&healths, self.max_lag, need),
        }
    }

    pub(super) fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    pub(super) fn switches(&self) -> u64 {
        self.switches.load(Ordering::Relaxed)
    }

    /// The nodes to check now, if a check is due and none runs; the caller runs it and then
    /// calls [`Pool::checked`]. The active node is left out while its own head polls are recent.
    pub(super) fn due_for_check(&self) -> Option<Vec<usize>> {
        if !self.several() {
            return None;
        }
        {
            let mut last = self
                .last_check
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if last.is_some_and(|at| at.elapsed() < self.check_every) {
                return None;
            }
            if self.checking.swap(true, Ordering::AcqRel) {
                return None;
            }
            *last = Some(Instant::now());
        }
        let fresh = self.check_every / 2;
        Some(
            (0..self.nodes.len())
                .filter(|&i| {
                    let node = &self.nodes[i];
                    node.health().down || node.head_age().is_none_or(|age| age >= fresh)
                })
                .collect(),
        )
    }

    /// A check starts outside [`Pool::due_for_check`] (`check_nodes`): the next is due a
    /// whole interval later.
    pub(super) fn check_started(&self) {
        *self
            .last_check
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now());
        self.checking.store(true, Ordering::Release);
    }

    pub(super) fn checked(&self) {
        self.checking.store(false, Ordering::Release);
    }

    /// Prometheus text: the active node, each node's head and health, the switches.
    pub(super) fn render_prometheus(&self) -> String {
        let healths = self.healths();
        let best = best_head(&healths);
        let active = self.active();
        let mut out = String::from(
            "# HELP tron_actors_node_active 1 for the node requests go to now, 0 for the others (node.urls).\n\
             # TYPE tron_actors_node_active gauge\n",
        );
        for (i, node) in self.nodes.iter().enumerate() {
            out.push_str(&format!(
                "tron_actors_node_active{{url=\"{}\"}} {}\n",
                label(&node.shown),
                u8::from(i == active)
            ));
        }
        out.push_str(
            "# HELP tron_actors_node_head_block Each node's head as last answered (0 = not yet).\n\
             # TYPE tron_actors_node_head_block gauge\n",
        );
        for (node, health) in self.nodes.iter().zip(&healths) {
            out.push_str(&format!(
                "tron_actors_node_head_block{{url=\"{}\"}} {}\n",
                label(&node.shown),
                health.head
            ));
        }
        out.push_str(
            "# HELP tron_actors_node_fit 1 when the node answers, is not suspended and does not lag more than node.max_lag_blocks.\n\
             # TYPE tron_actors_node_fit gauge\n",
        );
        for (node, health) in self.nodes.iter().zip(&healths) {
            out.push_str(&format!(
                "tron_actors_node_fit{{url=\"{}\"}} {}\n",
                label(&node.shown),
                u8::from(unfit(health, best, self.max_lag).is_none())
            ));
        }
        out.push_str(&format!(
            "# HELP tron_actors_node_switches_total Times the active node changed (failover and failback).\n\
             # TYPE tron_actors_node_switches_total counter\n\
             tron_actors_node_switches_total {}\n",
            self.switches()
        ));
        out
    }
}

/// A Prometheus label value: `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A node URL as logs, metrics and `status` show it: without user, password, query or
/// fragment (where keys hide), each replaced by `REDACTED`.
pub fn shown_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return "<unreadable URL>".to_string();
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Only fails for URLs that cannot carry credentials, which these then do not.
        let _ = parsed.set_username("REDACTED");
        let _ = parsed.set_password(None);
    }
    if parsed.query().is_some() {
        parsed.set_query(Some("REDACTED"));
    }
    if parsed.fragment().is_some() {
        parsed.set_fragment(None);
    }
    parsed.to_string().trim_end_matches('/').to_string()
}

/// Whether the API key goes to `url`: with one node always (as before there were several);
/// with several, when its host is one of `hosts` or under one of them (`trongrid.io` covers
/// `api.trongrid.io` and `nile.trongrid.io`), or `hosts` holds `*`.
pub fn key_applies(url: &str, hosts: &[String], nodes: usize) -> bool {
    if nodes <= 1 {
        return true;
    }
    let Some(host) = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
    else {
        return false;
    };
    hosts.iter().any(|h| {
        let h = h.trim().trim_start_matches('.').to_ascii_lowercase();
        h == "*" || host == h || host.ends_with(&format!(".{h}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(head: u64) -> Health {
        Health {
            head,
            down: false,
            suspended: false,
        }
    }

    fn down(head: u64) -> Health {
        Health {
            down: true,
            ..node(head)
        }
    }

    fn suspended(head: u64) -> Health {
        Health {
            suspended: true,
            ..node(head)
        }
    }

    fn fit(index: usize) -> Choice {
        Choice { index, fit: true }
    }

    #[test]
    fn the_first_fit_node_in_list_order_is_chosen() {
        assert_eq!(choose(&[node(100), node(100)], 5, None), fit(0));
        // Behind the best, but within the allowed lag: still preferred.
        assert_eq!(choose(&[node(95), node(100)], 5, None), fit(0));
        // Unknown heads never lag: at start the first node is used.
        assert_eq!(choose(&[node(0), node(0)], 5, None), fit(0));
        assert_eq!(choose(&[node(0), node(100)], 5, None), fit(0));
    }

    #[test]
    fn a_down_suspended_or_lagging_node_is_passed_over() {
        assert_eq!(choose(&[down(100), node(100)], 5, None), fit(1));
        assert_eq!(choose(&[suspended(100), node(100)], 5, None), fit(1));
        assert_eq!(choose(&[node(94), node(100)], 5, None), fit(1));
        assert_eq!(
            choose(&[down(100), node(80), node(99), node(100)], 5, None),
            fit(2)
        );
        // A down node's head is stale: the others are measured against those that answer.
        assert_eq!(choose(&[down(100), node(90), node(97)], 5, None), fit(2));
        assert_eq!(choose(&[down(100), node(94), node(97)], 5, None), fit(1));
    }

    #[test]
    fn a_block_goes_to_a_fit_node_that_has_it() {
        // The first node lags 3 (fit) and has not got block 99 yet: the second has.
        assert_eq!(choose(&[node(97), node(100)], 5, Some(99)), fit(1));
        assert_eq!(choose(&[node(97), node(100)], 5, Some(97)), fit(0));
        // Nobody is known to have it: the active node (its head may have moved).
        assert_eq!(choose(&[node(97), node(100)], 5, Some(101)), fit(0));
        // Never a node that is not fit, even when it has the block.
        assert_eq!(choose(&[node(97), suspended(100)], 5, Some(99)), fit(0));
        assert_eq!(choose(&[node(90), node(97)], 5, Some(95)), fit(1));
    }

    #[test]
    fn with_no_fit_node_the_first_not_suspended_one_is_tried() {
        assert_eq!(
            choose(&[suspended(100), down(100)], 5, None),
            Choice {
                index: 1,
                fit: false
            }
        );
        assert_eq!(
            choose(&[down(100), down(100)], 5, Some(3)),
            Choice {
                index: 0,
                fit: false
            }
        );
        assert_eq!(
            choose(&[suspended(100), suspended(100)], 5, None),
            Choice {
                index: 0,
                fit: false
            }
        );
    }

    #[test]
    fn why_a_node_is_unfit() {
        assert_eq!(unfit(&node(100), 100, 5), None);
        assert_eq!(unfit(&node(95), 100, 5), None);
        assert_eq!(unfit(&node(94), 100, 5), Some(Unfit::Lagging { behind: 6 }));
        assert_eq!(unfit(&node(0), 100, 0), None);
        assert_eq!(unfit(&down(100), 100, 5), Some(Unfit::Down));
        assert_eq!(unfit(&suspended(100), 100, 5), Some(Unfit::Suspended));
        assert_eq!(
            Unfit::Lagging { behind: 6 }.to_string(),
            "it lags 6 blocks behind the best head"
        );
    }

    #[test]
    fn node_urls_are_shown_without_credentials() {
        assert_eq!(
            shown_url("https://api.trongrid.io/"),
            "https://api.trongrid.io"
        );
        assert_eq!(
            shown_url("http://user:pass@10.0.0.1:8090"),
            "http://REDACTED@10.0.0.1:8090"
        );
        assert_eq!(
            shown_url("https://node.example/rpc?apikey=s3cret#x"),
            "https://node.example/rpc?REDACTED"
        );
        assert_eq!(shown_url("not a url"), "<unreadable URL>");
    }

    #[test]
    fn the_key_goes_to_the_hosts_that_need_it() {
        let hosts = vec!["trongrid.io".to_string()];
        assert!(key_applies("http://10.0.0.1:8090", &hosts, 1));
        assert!(key_applies("https://api.trongrid.io", &hosts, 2));
        assert!(key_applies("https://nile.TronGrid.io/", &hosts, 2));
        assert!(key_applies("https://trongrid.io", &hosts, 2));
        assert!(!key_applies("http://10.0.0.1:8090", &hosts, 2));
        assert!(!key_applies("https://nottrongrid.io", &hosts, 2));
        assert!(!key_applies("https://trongrid.io.evil.example", &hosts, 2));
        assert!(key_applies("http://10.0.0.1:8090", &["*".to_string()], 2));
        assert!(!key_applies("http://10.0.0.1:8090", &[], 2));
    }
}
