//! Fault injection: the ways TronGrid and java-tron misbehave, each at a configurable rate. All
//! off by default. Which request gets which fault is drawn from a stream keyed by the fault seed
//! and the request's sequence number, so a run with one client is reproducible.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain;
use crate::SimError;
use actors::rng::{key, Rng};

/// TronGrid's answer when a key goes over its rate: it says how long the key is suspended, in
/// whole seconds (rounded up here, so a client that waits as told never knocks too early).
pub fn suspension_body(left: Duration) -> String {
    let seconds = left.as_millis().div_ceil(1000);
    format!(
        r#"{{"Error":"The key exceeds the frequency limit(15), and the query server is suspended for {seconds}s"}}"#
    )
}

/// What can go wrong, and how often. Rates are chances per request, within 0..1. The `sim`
/// command takes every field as a `--fault-*` flag (`help` is the flag's text, the doc the field's).
#[derive(Clone, Debug, PartialEq, clap::Args)]
pub struct SimFaults {
    /// Seeds the fault draws. Default 0.
    #[arg(
        id = "fault_seed",
        long = "fault-seed",
        value_name = "FAULT_SEED",
        default_value_t = 0,
        help = "Seeds which request gets which fault"
    )]
    pub seed: u64,
    /// HTTP 500.
    #[arg(
        long = "fault-500",
        value_name = "FAULT_500",
        default_value_t = 0.0,
        help = "Chance per request of an HTTP 500"
    )]
    pub http_500_rate: f64,
    /// A bare HTTP 503 (a proxy or load balancer), this request alone.
    #[arg(
        long = "fault-503",
        value_name = "FAULT_503",
        default_value_t = 0.0,
        help = "Chance per request of a bare HTTP 503 (as a proxy or load balancer answers)"
    )]
    pub http_503_rate: f64,
    /// A request starts a burst: every request answers a bare 503 for `http_503_burst_ms`.
    #[arg(
        long = "fault-503-burst",
        value_name = "FAULT_503_BURST",
        default_value_t = 0.0,
        help = "Chance per request of starting a burst of bare 503s to every request"
    )]
    pub http_503_burst_rate: f64,
    /// Default 2,000 ms.
    #[arg(
        long = "burst-ms",
        value_name = "BURST_MS",
        default_value_t = 2_000,
        help = "Length of a burst of bare 503s"
    )]
    pub http_503_burst_ms: u64,
    /// HTTP 503 with TronGrid's suspension notice, then a penalty (as a 429).
    #[arg(
        long = "fault-503-suspend",
        value_name = "FAULT_503_SUSPEND",
        default_value_t = 0.0,
        help = "Chance per request of an HTTP 503 with TronGrid's suspension notice, then a penalty"
    )]
    pub http_503_suspend_rate: f64,
    /// HTTP 429 with TronGrid's body, then a penalty.
    #[arg(
        long = "fault-429",
        value_name = "FAULT_429",
        default_value_t = 0.0,
        help = "Chance per request of an HTTP 429 with TronGrid's body, then a penalty"
    )]
    pub http_429_rate: f64,
    /// HTTP 403 with TronGrid's body, then a penalty.
    #[arg(
        long = "fault-403",
        value_name = "FAULT_403",
        default_value_t = 0.0,
        help = "Chance per request of an HTTP 403 with TronGrid's body, then a penalty"
    )]
    pub http_403_rate: f64,
    /// After a 429/403 or a suspending 503, every request answers 429 (with the time left in
    /// TronGrid's notice) for this long. Default 30,000 ms.
    #[arg(
        long = "penalty-ms",
        value_name = "PENALTY_MS",
        default_value_t = 30_000,
        help = "Penalty after a 429/403 or a suspending 503, during which every request answers 429"
    )]
    pub penalty_ms: u64,
    /// Answers delayed by `slow_ms`.
    #[arg(
        long = "fault-slow",
        value_name = "FAULT_SLOW",
        default_value_t = 0.0,
        help = "Chance per request of a slow answer"
    )]
    pub slow_rate: f64,
    /// Default 2,000 ms.
    #[arg(
        long = "slow-ms",
        value_name = "SLOW_MS",
        default_value_t = 2_000,
        help = "Delay of a slow answer"
    )]
    pub slow_ms: u64,
    /// The connection is reset (TCP RST) instead of answering.
    #[arg(
        long = "fault-reset",
        value_name = "FAULT_RESET",
        default_value_t = 0.0,
        help = "Chance per request of a connection reset"
    )]
    pub reset_rate: f64,
    /// The JSON answer is cut in half.
    #[arg(
        long = "fault-truncate",
        value_name = "FAULT_TRUNCATE",
        default_value_t = 0.0,
        help = "Chance per request of a truncated JSON body"
    )]
    pub truncate_rate: f64,
    /// `{}` for a block that exists (a lagging node behind the load balancer).
    #[arg(
        long = "fault-empty-block",
        value_name = "FAULT_EMPTY_BLOCK",
        default_value_t = 0.0,
        help = "Chance per request of `{}` for a block that exists"
    )]
    pub empty_block_rate: f64,
    /// `[]` infos for a block that has transactions.
    #[arg(
        long = "fault-empty-infos",
        value_name = "FAULT_EMPTY_INFOS",
        default_value_t = 0.0,
        help = "Chance per request of `[]` infos for a block that has transactions"
    )]
    pub empty_infos_rate: f64,
    /// HTTP 200 `{"Error": ...}`.
    #[arg(
        long = "fault-node-error",
        value_name = "FAULT_NODE_ERROR",
        default_value_t = 0.0,
        help = "Chance per request of an HTTP 200 `{\"Error\": ...}` body"
    )]
    pub node_error_rate: f64,
    /// A `gettransactioninfobyblocknum` answer for a block a fork replaces (above the
    /// irreversible head) is the infos of the version the node does not serve now, as when it
    /// switches branches between a block's body and its infos.
    #[arg(
        long = "fault-fork-race",
        value_name = "FAULT_FORK_RACE",
        default_value_t = 0.0,
        help = "Chance per infos request, for a block with two versions, of the other version's infos (a branch switch between body and infos)"
    )]
    pub fork_race_rate: f64,
    /// Blocks whose block and infos answers are ALWAYS unparsable: they can only be
    /// dead-lettered.
    #[arg(long, value_name = "MALFORMED_BLOCKS", value_parser = parse_block_list, default_value = "", hide_default_value = true, help = "Blocks whose answers are always malformed (comma-separated)")]
    pub malformed_blocks: BTreeSet<u64>,
    /// Requests per second over which the node answers 429 and starts a penalty, like
    /// TronGrid. `None` (default): no limit.
    #[arg(
        long = "max-rps",
        value_name = "MAX_RPS",
        help = "Requests per second over which the node answers 429 (like TronGrid)"
    )]
    pub max_requests_per_sec: Option<u32>,
}

impl Default for SimFaults {
    fn default() -> Self {
        SimFaults {
            seed: 0,
            http_500_rate: 0.0,
            http_503_rate: 0.0,
            http_503_burst_rate: 0.0,
            http_503_burst_ms: 2_000,
            http_503_suspend_rate: 0.0,
            http_429_rate: 0.0,
            http_403_rate: 0.0,
            penalty_ms: 30_000,
            slow_rate: 0.0,
            slow_ms: 2_000,
            reset_rate: 0.0,
            truncate_rate: 0.0,
            empty_block_rate: 0.0,
            empty_infos_rate: 0.0,
            node_error_rate: 0.0,
            fork_race_rate: 0.0,
            malformed_blocks: BTreeSet::new(),
            max_requests_per_sec: None,
        }
    }
}

impl SimFaults {
    /// No fault at all.
    pub fn none() -> Self {
        SimFaults::default()
    }

    /// Every problem at once.
    pub fn validate(&self) -> Result<(), SimError> {
        let rates = [
            ("http_500_rate", self.http_500_rate),
            ("http_503_rate", self.http_503_rate),
            ("http_503_burst_rate", self.http_503_burst_rate),
            ("http_503_suspend_rate", self.http_503_suspend_rate),
            ("http_429_rate", self.http_429_rate),
            ("http_403_rate", self.http_403_rate),
            ("slow_rate", self.slow_rate),
            ("reset_rate", self.reset_rate),
            ("truncate_rate", self.truncate_rate),
            ("empty_block_rate", self.empty_block_rate),
            ("empty_infos_rate", self.empty_infos_rate),
            ("node_error_rate", self.node_error_rate),
            ("fork_race_rate", self.fork_race_rate),
        ];
        let mut problems: Vec<String> = rates
            .iter()
            .filter(|(_, rate)| !(0.0..=1.0).contains(rate))
            .map(|(name, rate)| format!("{name} must be within 0..1, got {rate}"))
            .collect();
        if self.max_requests_per_sec == Some(0) {
            problems.push("max_requests_per_sec must be at least 1 (or unset)".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SimError::InvalidParams(problems.join("; ")))
        }
    }
}

/// Parses a list of block numbers and ranges, e.g. `60000010,60000020-60000025`, as the
/// `--malformed-blocks` flag takes it.
pub fn parse_block_list(list: &str) -> Result<BTreeSet<u64>, SimError> {
    let mut blocks = BTreeSet::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad =
            || SimError::InvalidParams(format!("{item:?} is not a block number or a range a-b"));
        match item.split_once('-') {
            Some((a, b)) => {
                let a: u64 = a.trim().parse().map_err(|_| bad())?;
                let b: u64 = b.trim().parse().map_err(|_| bad())?;
                if b < a || b - a > 1_000_000 {
                    return Err(bad());
                }
                blocks.extend(a..=b);
            }
            None => {
                blocks.insert(item.parse().map_err(|_| bad())?);
            }
        }
    }
    Ok(blocks)
}

/// Kinds of injected faults, counted for `/sim/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultKind {
    Penalty,
    RateLimit,
    Reset,
    Http500,
    Http503,
    Burst503,
    Suspend503,
    Http429,
    Http403,
    Slow,
    NodeError,
    Truncated,
    EmptyBlock,
    EmptyInfos,
    Malformed,
    ForkRace,
}

impl FaultKind {
    pub(crate) const ALL: [FaultKind; 16] = [
        FaultKind::Penalty,
        FaultKind::RateLimit,
        FaultKind::Reset,
        FaultKind::Http500,
        FaultKind::Http503,
        FaultKind::Burst503,
        FaultKind::Suspend503,
        FaultKind::Http429,
        FaultKind::Http403,
        FaultKind::Slow,
        FaultKind::NodeError,
        FaultKind::Truncated,
        FaultKind::EmptyBlock,
        FaultKind::EmptyInfos,
        FaultKind::Malformed,
        FaultKind::ForkRace,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            FaultKind::Penalty => "penalty_429",
            FaultKind::RateLimit => "rate_limit_429",
            FaultKind::Reset => "reset",
            FaultKind::Http500 => "http_500",
            FaultKind::Http503 => "http_503",
            FaultKind::Burst503 => "http_503_burst",
            FaultKind::Suspend503 => "http_503_suspend",
            FaultKind::Http429 => "http_429",
            FaultKind::Http403 => "http_403",
            FaultKind::Slow => "slow",
            FaultKind::NodeError => "node_error",
            FaultKind::Truncated => "truncated",
            FaultKind::EmptyBlock => "empty_block",
            FaultKind::EmptyInfos => "empty_infos",
            FaultKind::Malformed => "malformed",
            FaultKind::ForkRace => "fork_race",
        }
    }
}

/// What the gate decided for one request before it is answered.
#[derive(Debug, PartialEq)]
pub(crate) enum Gate {
    /// Answer normally, with these faults applied to the content.
    Pass(ContentFaults),
    /// Answer this status and body instead.
    Refuse { status: u16, body: String },
    /// Drop the connection without an answer.
    Reset,
}

#[derive(Debug, Default, PartialEq)]
pub(crate) struct ContentFaults {
    pub slow: Option<Duration>,
    pub node_error: bool,
    pub truncate: bool,
    pub empty_block: bool,
    pub empty_infos: bool,
    pub fork_race: bool,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The faults' running state: request sequence, penalty, rate limit, counters.
pub(crate) struct FaultState {
    faults: SimFaults,
    sequence: AtomicU64,
    penalty_until: Mutex<Option<Instant>>,
    burst_until: Mutex<Option<Instant>>,
    bucket: Mutex<Bucket>,
    counts: [AtomicU64; FaultKind::ALL.len()],
}

impl FaultState {
    pub(crate) fn new(faults: SimFaults) -> Self {
        let tokens = faults.max_requests_per_sec.map_or(0.0, f64::from);
        FaultState {
            faults,
            sequence: AtomicU64::new(0),
            penalty_until: Mutex::new(None),
            burst_until: Mutex::new(None),
            bucket: Mutex::new(Bucket {
                tokens,
                last: Instant::now(),
            }),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    pub(crate) fn faults(&self) -> &SimFaults {
        &self.faults
    }

    pub(crate) fn count(&self, kind: FaultKind) {
        // ALL lists every kind in declaration order, so the position is the index.
        if let Some(i) = FaultKind::ALL.iter().position(|k| *k == kind) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn counts(&self) -> Vec<(&'static str, u64)> {
        FaultKind::ALL
            .iter()
            .zip(&self.counts)
            .map(|(kind, n)| (kind.name(), n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Time left in the current penalty.
    pub(crate) fn penalty_left(&self) -> Duration {
        let until = *self.penalty_until.lock().unwrap_or_else(|e| e.into_inner());
        until.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(Instant::now())
        })
    }

    /// Time left in the current burst of bare 503s.
    fn burst_left(&self) -> Duration {
        let until = *self.burst_until.lock().unwrap_or_else(|e| e.into_inner());
        until.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(Instant::now())
        })
    }

    fn start_burst(&self) {
        let until = Instant::now() + Duration::from_millis(self.faults.http_503_burst_ms);
        *self.burst_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
    }

    /// 429 with TronGrid's notice, saying the time left in the penalty.
    fn suspended(&self) -> Gate {
        Gate::Refuse {
            status: 429,
            body: suspension_body(self.penalty_left()),
        }
    }

    fn bare_503() -> Gate {
        Gate::Refuse {
            status: 503,
            body: "Service Unavailable".to_string(),
        }
    }

    fn start_penalty(&self) {
        if self.faults.penalty_ms > 0 {
            let until = Instant::now() + Duration::from_millis(self.faults.penalty_ms);
            *self.penalty_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
        }
    }

    /// Takes one token; false when the client goes over the rate.
    fn within_rate(&self, per_sec: u32) -> bool {
        let rate = f64::from(per_sec);
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(bucket.last).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(rate);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Decides the fate of one node API request.
    pub(crate) fn gate(&self) -> Gate {
        let f = &self.faults;
        if !self.penalty_left().is_zero() {
            self.count(FaultKind::Penalty);
            return self.suspended();
        }
        if !self.burst_left().is_zero() {
            self.count(FaultKind::Burst503);
            return Self::bare_503();
        }
        if let Some(per_sec) = f.max_requests_per_sec {
            if !self.within_rate(per_sec) {
                self.count(FaultKind::RateLimit);
                self.start_penalty();
                return self.suspended();
            }
        }
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        let mut r = Rng::new(key(&[f.seed, domain::FAULTS, n]));
        // Every rate gets its own draw, in a fixed order (new ones at the end), so that changing
        // one rate does not reshuffle which requests get the other faults.
        let draws: [f64; 13] = std::array::from_fn(|_| r.unit());
        if draws[0] < f.reset_rate {
            self.count(FaultKind::Reset);
            return Gate::Reset;
        }
        if draws[1] < f.http_500_rate {
            self.count(FaultKind::Http500);
            return Gate::Refuse {
                status: 500,
                body: "Internal Server Error".to_string(),
            };
        }
        if draws[2] < f.http_503_rate {
            self.count(FaultKind::Http503);
            return Self::bare_503();
        }
        if draws[10] < f.http_503_burst_rate {
            self.count(FaultKind::Burst503);
            self.start_burst();
            return Self::bare_503();
        }
        if draws[11] < f.http_503_suspend_rate {
            self.count(FaultKind::Suspend503);
            self.start_penalty();
            return Gate::Refuse {
                status: 503,
                body: suspension_body(Duration::from_millis(f.penalty_ms)),
            };
        }
        if draws[3] < f.http_429_rate {
            self.count(FaultKind::Http429);
            self.start_penalty();
            return self.suspended();
        }
        if draws[4] < f.http_403_rate {
            self.count(FaultKind::Http403);
            self.start_penalty();
            return Gate::Refuse {
                status: 403,
                body: suspension_body(Duration::from_millis(f.penalty_ms)),
            };
        }
        let mut content = ContentFaults::default();
        if draws[5] < f.slow_rate {
            self.count(FaultKind::Slow);
            content.slow = Some(Duration::from_millis(f.slow_ms));
        }
        content.node_error = draws[6] < f.node_error_rate;
        content.truncate = draws[7] < f.truncate_rate;
        content.empty_block = draws[8] < f.empty_block_rate;
        content.empty_infos = draws[9] < f.empty_infos_rate;
        content.fork_race = draws[12] < f.fork_race_rate;
        Gate::Pass(content)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn block_lists_parse() {
        let blocks = parse_block_list("5, 7-9,12").unwrap();
        assert_eq!(blocks.into_iter().collect::<Vec<_>>(), [5, 7, 8, 9, 12]);
        assert!(parse_block_list("").unwrap().is_empty());
        assert!(parse_block_list("x").is_err());
        assert!(parse_block_list("9-7").is_err());
    }

    #[test]
    fn no_faults_by_default() {
        let state = FaultState::new(SimFaults::default());
        for _ in 0..1000 {
            assert_eq!(state.gate(), Gate::Pass(ContentFaults::default()));
        }
        assert!(state.counts().iter().all(|(_, n)| *n == 0));
    }

    #[test]
    fn a_429_starts_a_penalty() {
        let state = FaultState::new(SimFaults {
            http_429_rate: 1.0,
            penalty_ms: 60_000,
            ..SimFaults::default()
        });
        assert!(matches!(state.gate(), Gate::Refuse { status: 429, .. }));
        assert!(state.penalty_left() > Duration::from_secs(50));
        assert!(matches!(state.gate(), Gate::Refuse { status: 429, .. }));
        let counts: std::collections::HashMap<_, _> = state.counts().into_iter().collect();
        assert_eq!(counts["http_429"], 1);
        assert_eq!(counts["penalty_429"], 1);
    }

    #[test]
    fn a_suspending_503_says_for_how_long_and_starts_a_penalty() {
        let state = FaultState::new(SimFaults {
            http_503_suspend_rate: 1.0,
            penalty_ms: 27_000,
            ..SimFaults::default()
        });
        assert_eq!(
            state.gate(),
            Gate::Refuse {
                status: 503,
                body: r#"{"Error":"The key exceeds the frequency limit(15), and the query server is suspended for 27s"}"#.to_string()
            }
        );
        // Then 429s that say the time left, rounded up to whole seconds.
        match state.gate() {
            Gate::Refuse { status: 429, body } => {
                assert!(body.ends_with("suspended for 27s\"}"), "{body}")
            }
            other => panic!("{other:?}"),
        }
        let counts: std::collections::HashMap<_, _> = state.counts().into_iter().collect();
        assert_eq!(counts["http_503_suspend"], 1);
        assert_eq!(counts["penalty_429"], 1);
    }

    #[test]
    fn a_503_burst_refuses_every_request_for_its_length_then_ends() {
        let state = FaultState::new(SimFaults {
            http_503_burst_rate: 1.0,
            http_503_burst_ms: 60_000,
            ..SimFaults::default()
        });
        for _ in 0..5 {
            assert_eq!(state.gate(), FaultState::bare_503());
        }
        let counts: std::collections::HashMap<_, _> = state.counts().into_iter().collect();
        assert_eq!(counts["http_503_burst"], 5);
        assert!(state.burst_left() > Duration::from_secs(50));
    }

    #[test]
    fn rate_limit_refuses_the_excess() {
        let state = FaultState::new(SimFaults {
            max_requests_per_sec: Some(5),
            penalty_ms: 0,
            ..SimFaults::default()
        });
        let passed = (0..20)
            .filter(|_| matches!(state.gate(), Gate::Pass(_)))
            .count();
        assert!((5..=6).contains(&passed), "{passed} passed");
    }

    #[test]
    fn rates_are_roughly_honoured_and_validated() {
        let state = FaultState::new(SimFaults {
            http_500_rate: 0.1,
            ..SimFaults::default()
        });
        let refused = (0..10_000)
            .filter(|_| matches!(state.gate(), Gate::Refuse { status: 500, .. }))
            .count();
        assert!((800..1200).contains(&refused), "{refused}");
        let bad = SimFaults {
            reset_rate: 1.5,
            max_requests_per_sec: Some(0),
            ..SimFaults::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("reset_rate") && err.contains("max_requests_per_sec"),
            "{err}"
        );
    }
}
