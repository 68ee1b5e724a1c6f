//! What Redis must not do to the daemon's keys: evict them, or run out of memory under a commit.
//!
//! - **The eviction policy**, checked at start ([`check_at_start`], `run` refuses with exit 2)
//!   and by `run --dry-run`: any `maxmemory-policy` but `noeviction` lets Redis delete keys when
//!   it is full. An evicted done mark publishes a block twice; an evicted lease, queue or retry
//!   entry loses blocks; silently. `volatile-*` policies evict only keys with a TTL, and none of
//!   ours has one today, but nothing in the schema promises it stays so (a key of another
//!   application with a TTL makes no difference to ours, but a future TTL'd key of ours would be
//!   at risk): they are refused too, so the rule is one sentence. While running, the guard reads
//!   the policy at every check, so a reconnect to another server or a `CONFIG SET` is seen
//!   within `redis.memory_check_ms`: then the work pauses (not ready, an error log) until the
//!   policy is `noeviction` again, rather than exiting.
//! - **AOF**: off is allowed, with one WARN at start (and one when it turns off while running).
//! - **The memory guard** ([`spawn_guard`]): every `redis.memory_check_ms` it reads `INFO
//!   memory`; at `used_memory / maxmemory >= redis.memory_pause_ratio` it pauses claims and
//!   commits (`actors::backpressure`), and lifts the pause below the ratio minus
//!   [`HYSTERESIS`]. One log line at each end; `/readyz` and two metrics say so meanwhile.
//!
//! Managed Redis services often refuse `CONFIG`: the settings are then read from `INFO memory`
//! (`maxmemory_policy`, `maxmemory`) and `INFO persistence` (`aof_enabled`), which every Redis
//! answers.

use super::RedisStore;
use actors::backpressure::Backpressure;
use actors::store::StoreError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The pause ends when the ratio falls this far below `redis.memory_pause_ratio`, so that a
/// Redis hovering at the threshold does not switch the work on and off at every check.
pub const HYSTERESIS: f64 = 0.05;

/// The one policy under which Redis never deletes a key by itself.
pub const NO_EVICTION: &str = "noeviction";

/// How long the start-up check waits for Redis before it lets the daemon start unchecked (the
/// guard checks as soon as Redis answers).
const START_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Redis's settings that decide whether the daemon's keys are safe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisMemorySettings {
    /// `maxmemory-policy`.
    pub policy: String,
    /// `maxmemory` in bytes; 0 = no limit.
    pub maxmemory: u64,
    /// `appendonly`, when Redis says.
    pub append_only: Option<bool>,
    /// Where they were read from: `CONFIG GET` or `INFO` (CONFIG refused).
    pub source: &'static str,
}

impl RedisMemorySettings {
    /// Whether the policy lets Redis delete keys.
    pub fn is_evicting(&self) -> bool {
        self.policy != NO_EVICTION
    }
}

/// Why Redis cannot be used as it is set up.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    /// An evicting `maxmemory-policy`.
    #[error("redis maxmemory-policy is {policy}: Redis would evict keys when full (done marks, leases, queues), and blocks would be published twice or lost; set maxmemory-policy noeviction (in redis.conf, with CONFIG SET maxmemory-policy noeviction, or in your provider's parameter group)")]
    EvictingPolicy {
        /// The policy found.
        policy: String,
    },
}

/// `field:value` lines of an `INFO` answer.
pub fn parse_info(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.trim_end().split_once(':'))
        .collect()
}

fn info_field<'a>(info: &HashMap<&str, &'a str>, field: &str) -> Result<&'a str, StoreError> {
    info.get(field)
        .copied()
        .ok_or_else(|| StoreError::Protocol(format!("INFO has no {field} field")))
}

fn info_number(info: &HashMap<&str, &str>, field: &str) -> Result<u64, StoreError> {
    let value = info_field(info, field)?;
    value
        .parse()
        .map_err(|_| StoreError::Protocol(format!("INFO {field} is {value:?}")))
}

/// One reading of `INFO memory` and `INFO persistence`.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryReading {
    /// `used_memory` in bytes.
    pub used: u64,
    /// `maxmemory` in bytes; 0 = no limit.
    pub maxmemory: u64,
    /// `maxmemory_policy`.
    pub policy: String,
    /// `aof_enabled`.
    pub append_only: Option<bool>,
}

impl MemoryReading {
    /// `used / maxmemory`; 0 without a limit.
    pub fn ratio(&self) -> f64 {
        if self.maxmemory == 0 {
            0.0
        } else {
            self.used as f64 / self.maxmemory as f64
        }
    }

    fn parse(memory: &str, persistence: &str) -> Result<Self, StoreError> {
        let memory = parse_info(memory);
        let persistence = parse_info(persistence);
        Ok(MemoryReading {
            used: info_number(&memory, "used_memory")?,
            maxmemory: info_number(&memory, "maxmemory")?,
            policy: info_field(&memory, "maxmemory_policy")?.to_string(),
            append_only: persistence.get("aof_enabled").map(|v| *v == "1"),
        })
    }
}

/// Reads `INFO memory` and `INFO persistence` in one round trip.
pub async fn read_memory(store: &RedisStore) -> Result<MemoryReading, StoreError> {
    let mut conn = store.connection();
    let (memory, persistence): (String, String) = redis::pipe()
        .cmd("INFO")
        .arg("memory")
        .cmd("INFO")
        .arg("persistence")
        .query_async(&mut conn)
        .await
        .map_err(super::unavailable)?;
    MemoryReading::parse(&memory, &persistence)
}

/// `CONFIG GET maxmemory-policy`, `maxmemory`, `appendonly`; from `INFO` when CONFIG is refused.
pub async fn read_settings(store: &RedisStore) -> Result<RedisMemorySettings, StoreError> {
    let mut conn = store.connection();
    let config: Result<(Vec<String>, Vec<String>, Vec<String>), _> = redis::pipe()
        .cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut conn)
        .await;
    // A pair `[name, value]`; an empty answer when the server does not know the name.
    let value = |pair: &[String]| pair.get(1).cloned();
    if let Ok((policy, maxmemory, append_only)) = &config {
        if let (Some(policy), Some(maxmemory)) = (value(policy), value(maxmemory)) {
            if let Ok(maxmemory) = maxmemory.parse() {
                return Ok(RedisMemorySettings {
                    policy,
                    maxmemory,
                    append_only: value(append_only).map(|v| v == "yes"),
                    source: "CONFIG GET",
                });
            }
        }
    }
    // CONFIG refused (renamed, ACL, a managed service) or not understood: INFO says the same.
    let reading = read_memory(store).await?;
    Ok(RedisMemorySettings {
        policy: reading.policy,
        maxmemory: reading.maxmemory,
        append_only: reading.append_only,
        source: "INFO",
    })
}

/// The start-up check of `run`: an evicting policy refuses the start; AOF off is a WARN. A Redis
/// that does not answer within a few seconds is no reason to refuse (the daemon waits for it
/// anyway): the guard checks the policy once it answers.
pub async fn check_at_start(
    store: &RedisStore,
) -> Result<Option<RedisMemorySettings>, RedisSetupError> {
    let settings = match tokio::time::timeout(START_CHECK_TIMEOUT, read_settings(store)).await {
        Ok(Ok(settings)) => settings,
        Ok(Err(error)) => {
            tracing::warn!(%error, "Could not read Redis's maxmemory-policy at start; it is checked once Redis answers");
            return Ok(None);
        }
        Err(_) => {
            tracing::warn!(
                "Redis did not answer at start; its maxmemory-policy is checked once it does"
            );
            return Ok(None);
        }
    };
    if settings.is_evicting() {
        return Err(RedisSetupError::EvictingPolicy {
            policy: settings.policy,
        });
    }
    if settings.append_only == Some(false) {
        warn_aof_off();
    }
    Ok(Some(settings))
}

fn warn_aof_off() {
    tracing::warn!(
        "Redis runs without AOF (appendonly no): a Redis restart loses the stream, the done marks and the queues; set appendonly yes (docs/RELIABILITY.md)"
    );
}

/// Whether the memory guard holds the work, from the reading and whether it held it before:
/// on at `ratio`, off below `ratio - HYSTERESIS`; never with `ratio` 0 or no `maxmemory`.
pub fn memory_paused(reading: &MemoryReading, pause_ratio: f64, paused_before: bool) -> bool {
    if pause_ratio <= 0.0 || reading.maxmemory == 0 {
        return false;
    }
    let ratio = reading.ratio();
    if paused_before {
        ratio >= pause_ratio - HYSTERESIS
    } else {
        ratio >= pause_ratio
    }
}

/// The guard's settings (`redis.memory_pause_ratio`, `redis.memory_check_ms`).
#[derive(Clone, Copy, Debug)]
pub struct MemoryGuardConfig {
    /// Pause at this fraction of `maxmemory`; 0 = never.
    pub pause_ratio: f64,
    /// How often Redis is read.
    pub check_every: Duration,
}

/// What the guard last read, for `/metrics`.
#[derive(Debug, Default)]
pub struct MemoryStats {
    used: AtomicU64,
    maxmemory: AtomicU64,
}

/// The running guard; dropping it stops it.
pub struct MemoryGuard {
    task: tokio::task::JoinHandle<()>,
    stats: Arc<MemoryStats>,
    backpressure: Backpressure,
}

impl Drop for MemoryGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MemoryGuard {
    /// Renders `tron_actors_redis_memory_paused`, `tron_actors_redis_used_memory_ratio` and the
    /// two figures it comes from.
    pub fn metrics(&self) -> crate::metrics::ExtraMetrics {
        let stats = self.stats.clone();
        let backpressure = self.backpressure.clone();
        Arc::new(move || render_metrics(&stats, backpressure.is_paused()))
    }
}

fn render_metrics(stats: &MemoryStats, paused: bool) -> String {
    let used = stats.used.load(Ordering::Relaxed);
    let max = stats.maxmemory.load(Ordering::Relaxed);
    let ratio = if max == 0 {
        0.0
    } else {
        used as f64 / max as f64
    };
    let mut out = String::new();
    crate::metrics::sample(
        &mut out,
        "tron_actors_redis_memory_paused",
        "gauge",
        "1 while claims and commits are paused because Redis is short of memory (redis.memory_pause_ratio, an out-of-memory refusal) or would evict keys.",
        u8::from(paused),
    );
    crate::metrics::sample(
        &mut out,
        "tron_actors_redis_used_memory_ratio",
        "gauge",
        "Redis used_memory / maxmemory at the last check (0 without maxmemory).",
        ratio,
    );
    crate::metrics::sample(
        &mut out,
        "tron_actors_redis_used_memory_bytes",
        "gauge",
        "Redis used_memory at the last check.",
        used,
    );
    crate::metrics::sample(
        &mut out,
        "tron_actors_redis_maxmemory_bytes",
        "gauge",
        "Redis maxmemory at the last check (0 = no limit).",
        max,
    );
    out
}

/// Starts the guard: reads Redis every `check_every`, holds the work while memory is at the
/// ratio or the policy evicts, and lets it go when neither is so.
pub fn spawn_guard(
    store: RedisStore,
    backpressure: Backpressure,
    config: MemoryGuardConfig,
    aof_seen: Option<bool>,
) -> MemoryGuard {
    let stats = Arc::new(MemoryStats::default());
    let task = tokio::spawn(guard_loop(
        store,
        backpressure.clone(),
        config,
        stats.clone(),
        aof_seen,
    ));
    MemoryGuard {
        task,
        stats,
        backpressure,
    }
}

async fn guard_loop(
    store: RedisStore,
    backpressure: Backpressure,
    config: MemoryGuardConfig,
    stats: Arc<MemoryStats>,
    mut aof_seen: Option<bool>,
) {
    let mut ticker = tokio::time::interval(config.check_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut memory_paused_now = false;
    let mut evicting: Option<String> = None;
    loop {
        ticker.tick().await;
        let reading = match read_memory(&store).await {
            Ok(reading) => reading,
            Err(error) => {
                // Redis away: the workers back off by themselves; keep the last decision.
                tracing::debug!(%error, "Could not read Redis's memory");
                continue;
            }
        };
        stats.used.store(reading.used, Ordering::Relaxed);
        stats.maxmemory.store(reading.maxmemory, Ordering::Relaxed);

        let policy_evicts = reading.policy != NO_EVICTION;
        if policy_evicts && evicting.as_deref() != Some(reading.policy.as_str()) {
            tracing::error!(
                policy = %reading.policy,
                "Redis maxmemory-policy is {}: it may evict the daemon's keys; claims and commits pause until it is set to noeviction",
                reading.policy
            );
        } else if !policy_evicts && evicting.is_some() {
            tracing::info!("Redis maxmemory-policy is noeviction again: claims and commits resume");
        }
        evicting = policy_evicts.then(|| reading.policy.clone());

        let paused = memory_paused(&reading, config.pause_ratio, memory_paused_now);
        let percent = |r: f64| (r * 1000.0).round() / 10.0;
        if paused && !memory_paused_now {
            tracing::warn!(
                used_memory = reading.used,
                maxmemory = reading.maxmemory,
                ratio = percent(reading.ratio()),
                pause_ratio = config.pause_ratio,
                "Redis memory at {}% of maxmemory: claims and commits pause until it is below {}% (redis.memory_pause_ratio)",
                percent(reading.ratio()),
                percent(config.pause_ratio - HYSTERESIS),
            );
        } else if !paused && memory_paused_now {
            tracing::info!(
                used_memory = reading.used,
                maxmemory = reading.maxmemory,
                ratio = percent(reading.ratio()),
                "Redis memory at {}% of maxmemory: claims and commits resume",
                percent(reading.ratio()),
            );
        }
        memory_paused_now = paused;

        let reason = if let Some(policy) = &evicting {
            Some(format!(
                "redis maxmemory-policy is {policy}, which evicts keys: set maxmemory-policy noeviction"
            ))
        } else if paused {
            Some(format!(
                "redis used memory reached redis.memory_pause_ratio = {} of maxmemory ({} bytes); resumes below {:.2}",
                config.pause_ratio,
                reading.maxmemory,
                config.pause_ratio - HYSTERESIS
            ))
        } else {
            None
        };
        backpressure.set_paused(reason);

        if reading.append_only == Some(false) && aof_seen != Some(false) {
            warn_aof_off();
        }
        if reading.append_only.is_some() {
            aof_seen = reading.append_only;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const MEMORY: &str = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nmaxmemory:2097152\r\nmaxmemory_human:2.00M\r\nmaxmemory_policy:allkeys-lru\r\n";
    const PERSISTENCE: &str = "# Persistence\r\nloading:0\r\naof_enabled:0\r\n";

    #[test]
    fn info_memory_and_persistence_give_the_settings() {
        let reading = MemoryReading::parse(MEMORY, PERSISTENCE).unwrap();
        assert_eq!(
            reading,
            MemoryReading {
                used: 1_048_576,
                maxmemory: 2_097_152,
                policy: "allkeys-lru".into(),
                append_only: Some(false),
            }
        );
        assert_eq!(reading.ratio(), 0.5);
        let missing = MemoryReading::parse("# Memory\r\nused_memory:1\r\n", "");
        assert!(
            matches!(&missing, Err(StoreError::Protocol(m)) if m.contains("maxmemory")),
            "{missing:?}"
        );
    }

    fn reading(used: u64, maxmemory: u64) -> MemoryReading {
        MemoryReading {
            used,
            maxmemory,
            policy: NO_EVICTION.into(),
            append_only: Some(true),
        }
    }

    #[test]
    fn the_guard_pauses_at_the_ratio_and_resumes_below_it_minus_the_hysteresis() {
        assert!(!memory_paused(&reading(899, 1000), 0.9, false));
        assert!(memory_paused(&reading(900, 1000), 0.9, false));
        assert!(memory_paused(&reading(860, 1000), 0.9, true));
        assert!(memory_paused(&reading(851, 1000), 0.9, true));
        assert!(!memory_paused(&reading(849, 1000), 0.9, true));
        // Off: ratio 0, or no maxmemory.
        assert!(!memory_paused(&reading(1000, 1000), 0.0, true));
        assert!(!memory_paused(&reading(5_000, 0), 0.9, true));
    }

    #[test]
    fn only_noeviction_keeps_every_key() {
        let settings = |policy: &str| RedisMemorySettings {
            policy: policy.into(),
            maxmemory: 0,
            append_only: None,
            source: "INFO",
        };
        for policy in [
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
        ] {
            assert!(settings(policy).is_evicting(), "{policy}");
        }
        assert!(!settings("noeviction").is_evicting());
        let message = RedisSetupError::EvictingPolicy {
            policy: "allkeys-lru".into(),
        }
        .to_string();
        assert!(
            message.contains("maxmemory-policy is allkeys-lru"),
            "{message}"
        );
        assert!(
            message.contains("set maxmemory-policy noeviction"),
            "{message}"
        );
    }

    #[test]
    fn metrics_say_paused_and_the_ratio() {
        let stats = MemoryStats::default();
        stats.used.store(950, Ordering::Relaxed);
        stats.maxmemory.store(1000, Ordering::Relaxed);
        let text = render_metrics(&stats, true);
        assert!(
            text.contains("\ntron_actors_redis_memory_paused 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\ntron_actors_redis_used_memory_ratio 0.95\n"),
            "{text}"
        );
    }
}
