//! The stream's consumer groups as the daemon watches them (docs/CONSUMERS.md): what each has
//! not read yet and not acknowledged yet (`XINFO GROUPS`), for `/metrics`, and a WARN when a
//! group's last delivered entry nears the retention cut, where the daemon's trimming would
//! delete entries the group has not read.

use crate::store::RedisStore;
use std::collections::HashMap;
use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the watch reads `XINFO GROUPS`.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// At most one WARN per group this often.
pub const WARN_EVERY: Duration = Duration::from_secs(600);
/// A group is near the cut when its last delivered entry is older than this share of
/// `stream.retention_hours` and it has entries left to read.
pub const NEAR_CUT: f64 = 0.9;

/// Why the groups could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GroupsError {
    /// Redis did not answer, or answered something else than XINFO GROUPS's shape.
    #[error("redis: XINFO GROUPS: {0}")]
    Redis(#[from] redis::RedisError),
}

/// One consumer group of the stream, as `XINFO GROUPS` gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group's name.
    pub name: String,
    /// Entries delivered to its consumers and not acknowledged (the pending entries list).
    pub pending: u64,
    /// The id of the last entry delivered to the group (`0-0`: none yet).
    pub last_delivered_id: String,
    /// Entries of the stream not yet delivered to the group; `None` when Redis cannot tell
    /// (the group was placed at an arbitrary id, or entries were deleted in its range).
    pub lag: Option<u64>,
}

impl GroupInfo {
    /// The millisecond part of the last delivered id: when that entry was added.
    pub fn last_delivered_ms(&self) -> u64 {
        let ms = self.last_delivered_id.split('-').next().unwrap_or("0");
        ms.parse().unwrap_or(0)
    }

    /// Whether the group may lose unread entries to trimming soon (`Near`: the oldest entry it
    /// has not read, added at `next_unread_ms`, is older than [`NEAR_CUT`] of the retention) or
    /// has already (`Trimmed`: its last delivered entry is older than the stream's first one,
    /// `first_id`, while it still has entries to read).
    pub fn retention_risk(
        &self,
        now_ms: u64,
        retention_ms: u64,
        first_id: Option<&str>,
        next_unread_ms: Option<u64>,
    ) -> Option<RetentionRisk> {
        let next = next_unread_ms?;
        if self.last_delivered_id != "0-0"
            && first_id.is_some_and(|first| id_key(&self.last_delivered_id) < id_key(first))
        {
            return Some(RetentionRisk::Trimmed);
        }
        let age = now_ms.saturating_sub(next);
        (age as f64 >= retention_ms as f64 * NEAR_CUT).then_some(RetentionRisk::Near)
    }
}

/// A stream id as (ms, seq), for comparing.
fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// The ids of `store`'s stream's first entry and of the first entry after `after`.
async fn first_and_next(
    store: &RedisStore,
    after: &str,
) -> Result<(Option<String>, Option<u64>), GroupsError> {
    let mut conn = store.connection();
    type Page = Vec<(String, Vec<String>)>;
    let (first, next): (Page, Page) = redis::pipe()
        .cmd("XRANGE")
        .arg(store.keys().events())
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .cmd("XRANGE")
        .arg(store.keys().events())
        .arg(format!("({after}"))
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await?;
    Ok((
        first.into_iter().next().map(|(id, _)| id),
        next.into_iter().next().map(|(id, _)| id_key(&id).0),
    ))
}

/// How close a group is to losing entries to the retention cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetentionRisk {
    /// Its next entries will be trimmed within a tenth of the retention.
    Near,
    /// It stopped before the cut: entries after it were trimmed before it read them.
    Trimmed,
}

/// The consumer groups of `store`'s event stream; none when the stream does not exist yet.
pub async fn read_groups(store: &RedisStore) -> Result<Vec<GroupInfo>, GroupsError> {
    let mut conn = store.connection();
    let reply: redis::RedisResult<Vec<HashMap<String, redis::Value>>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(store.keys().events())
        .query_async(&mut conn)
        .await;
    let groups = match reply {
        Ok(groups) => groups,
        Err(error) if error.to_string().contains("no such key") => return Ok(Vec::new()),
        Err(error) => return Err(error.into()),
    };
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let get = |key: &str| group.get(key).cloned().unwrap_or(redis::Value::Nil);
        out.push(GroupInfo {
            name: redis::from_redis_value(get("name")).map_err(redis::RedisError::from)?,
            pending: redis::from_redis_value(get("pending")).map_err(redis::RedisError::from)?,
            last_delivered_id: redis::from_redis_value(get("last-delivered-id"))
                .map_err(redis::RedisError::from)?,
            // Redis 6 has no lag at all; 7 answers nil when it cannot tell.
            lag: redis::from_redis_value(get("lag")).map_err(redis::RedisError::from)?,
        });
    }
    Ok(out)
}

/// A Prometheus label value: `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The groups' metrics; the HELP and TYPE lines even without a group.
pub fn render(out: &mut String, groups: &[GroupInfo]) {
    let metric = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    metric(
        out,
        "tron_actors_consumer_group_lag",
        "Entries of the stream not yet delivered to the consumer group (XINFO GROUPS lag; absent while Redis cannot tell).",
    );
    for g in groups {
        if let Some(lag) = g.lag {
            let _ = writeln!(
                out,
                "tron_actors_consumer_group_lag{{group=\"{}\"}} {lag}",
                label(&g.name)
            );
        }
    }
    metric(
        out,
        "tron_actors_consumer_group_pending",
        "Entries delivered to the consumer group's consumers and not acknowledged (XACK) yet.",
    );
    for g in groups {
        let _ = writeln!(
            out,
            "tron_actors_consumer_group_pending{{group=\"{}\"}} {}",
            label(&g.name),
            g.pending
        );
    }
    metric(
        out,
        "tron_actors_consumer_group_last_delivered_timestamp_seconds",
        "When the last entry delivered to the consumer group was added to the stream (its id), Unix seconds; 0 = none delivered.",
    );
    for g in groups {
        let _ = writeln!(
            out,
            "tron_actors_consumer_group_last_delivered_timestamp_seconds{{group=\"{}\"}} {}",
            label(&g.name),
            g.last_delivered_ms() as f64 / 1000.0
        );
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Watches the groups every [`CHECK_EVERY`] and WARNs (at most once per group every
/// [`WARN_EVERY`]) about a group near the retention cut; stops when dropped.
pub struct GroupWatch(tokio::task::JoinHandle<()>);

impl Drop for GroupWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the watch over `store`'s stream, trimmed after `retention`.
pub fn spawn_watch(store: RedisStore, retention: Duration) -> GroupWatch {
    GroupWatch(tokio::spawn(async move {
        let retention_ms = retention.as_millis() as u64;
        let mut warned: HashMap<String, tokio::time::Instant> = HashMap::new();
        let mut ticker = tokio::time::interval(CHECK_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let groups = match read_groups(&store).await {
                Ok(groups) => groups,
                Err(error) => {
                    tracing::debug!(%error, "Could not read the consumer groups");
                    continue;
                }
            };
            let now = now_ms();
            for g in &groups {
                let (first, next) = match first_and_next(&store, &g.last_delivered_id).await {
                    Ok(read) => read,
                    Err(error) => {
                        tracing::debug!(%error, "Could not read the stream's ends");
                        continue;
                    }
                };
                let Some(risk) = g.retention_risk(now, retention_ms, first.as_deref(), next) else {
                    continue;
                };
                if warned
                    .get(&g.name)
                    .is_some_and(|at| at.elapsed() < WARN_EVERY)
                {
                    continue;
                }
                warned.insert(g.name.clone(), tokio::time::Instant::now());
                let age_h = now.saturating_sub(next.unwrap_or(now)) as f64 / 3_600_000.0;
                let lag = g.lag.map_or("unknown".to_string(), |n| n.to_string());
                match risk {
                    RetentionRisk::Near => tracing::warn!(
                        group = %g.name,
                        last_delivered_id = %g.last_delivered_id,
                        lag = %lag,
                        "Consumer group {} is near the retention cut: the oldest entry it has not read is {:.1} h old, the stream keeps {} h (stream.retention_hours) and will trim it soon",
                        g.name,
                        age_h,
                        retention_ms / 3_600_000,
                    ),
                    RetentionRisk::Trimmed => tracing::warn!(
                        group = %g.name,
                        last_delivered_id = %g.last_delivered_id,
                        lag = %lag,
                        "Consumer group {} is past the retention cut: it stopped before the stream's first entry, so entries after it were trimmed before it read them (its oldest unread entry is {:.1} h old, the stream keeps {} h, stream.retention_hours) (docs/CONSUMERS.md says how to re-read those blocks)",
                        g.name,
                        age_h,
                        retention_ms / 3_600_000,
                    ),
                }
            }
            warned.retain(|name, _| groups.iter().any(|g| &g.name == name));
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(last_delivered_ms: u64, lag: Option<u64>) -> GroupInfo {
        GroupInfo {
            name: "g".into(),
            pending: 0,
            last_delivered_id: format!("{last_delivered_ms}-0"),
            lag,
        }
    }

    #[test]
    fn a_group_is_at_risk_when_its_oldest_unread_entry_nears_the_cut_or_was_trimmed() {
        let hour = 3_600_000;
        let now = 1_000 * hour;
        let retention = 10 * hour;
        let g = group(now - 20 * hour, Some(5));
        let first = format!("{}-0", now - 30 * hour);
        let risk = |g: &GroupInfo, first: &str, next: Option<u64>| {
            g.retention_risk(now, retention, Some(first), next)
        };
        assert_eq!(risk(&g, &first, Some(now - 8 * hour)), None);
        assert_eq!(
            risk(&g, &first, Some(now - 9 * hour)),
            Some(RetentionRisk::Near)
        );
        // Nothing left to read: an old position is no risk.
        assert_eq!(risk(&g, &first, None), None);
        // The stream now starts after the group's position: entries in between are gone.
        let later = format!("{}-0", now - 2 * hour);
        assert_eq!(
            risk(&g, &later, Some(now - hour)),
            Some(RetentionRisk::Trimmed)
        );
        let mut fresh = group(0, None);
        fresh.last_delivered_id = "0-0".into();
        assert_eq!(risk(&fresh, &later, Some(now - hour)), None);
    }

    #[test]
    fn group_names_are_escaped_in_labels() {
        let mut out = String::new();
        let mut g = group(1_500, Some(3));
        g.name = "a\"b".into();
        render(&mut out, &[g]);
        assert!(out.contains("tron_actors_consumer_group_lag{group=\"a\\\"b\"} 3\n"));
        assert!(out.contains(
            "tron_actors_consumer_group_last_delivered_timestamp_seconds{group=\"a\\\"b\"} 1.5\n"
        ));
    }
}
