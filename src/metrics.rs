//! `/metrics` in the Prometheus text format. Every name starts with `tron_actors_`. Values read
//! from Redis (queues, leases, published totals) are the shared truth across restarts; latency
//! histograms and error counts belong to this process.

use crate::store::{RedisStore, StoreSnapshot};
use actors::slot::{SlotId, SlotKind};
use actors::stats::TreeStats;
use actors::store::Origin;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// More metrics rendered by parts the server does not know (the node client, the tracer).
pub type ExtraMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// A metric without labels: its HELP and TYPE lines, then its one sample.
pub(crate) fn sample(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    metric(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Renders everything; a Redis that does not answer leaves its metrics out and sets
/// `tron_actors_redis_up 0`.
pub async fn render(store: &RedisStore, tree: &TreeStats, extra: &[ExtraMetrics]) -> String {
    let mut out = String::new();
    let snapshot = store.snapshot().await;
    metric(
        &mut out,
        "tron_actors_redis_up",
        "gauge",
        "1 when Redis answered this scrape.",
    );
    let _ = writeln!(out, "tron_actors_redis_up {}", u8::from(snapshot.is_ok()));

    let head = tree.head.load(Ordering::Relaxed);
    let head_time = tree.head_time_ms.load(Ordering::Relaxed);
    metric(
        &mut out,
        "tron_actors_chain_head_block",
        "gauge",
        "The node's head block, as last polled.",
    );
    let _ = writeln!(out, "tron_actors_chain_head_block {head}");

    if let Ok(s) = &snapshot {
        render_store(&mut out, s, head, head_time);
        // The stream's consumer groups (XINFO GROUPS): one more round trip, skipped with Redis away.
        match crate::consumer_groups::read_groups(store).await {
            Ok(groups) => crate::consumer_groups::render(&mut out, &groups),
            Err(error) => tracing::debug!(%error, "Could not read the consumer groups"),
        }
    }

    metric(
        &mut out,
        "tron_actors_commit_duration_seconds",
        "histogram",
        "Time of one block's atomic commit (Lua script) as the StreamPublisher sees it.",
    );
    out.push_str(
        &tree
            .commit_latency
            .render("tron_actors_commit_duration_seconds", ""),
    );

    metric(
        &mut out,
        "tron_actors_actor_restarts_total",
        "counter",
        "Actor restarts by the Supervisor, per slot.",
    );
    if let Ok(by_slot) = tree.restarts_by_slot.lock() {
        for (slot, n) in by_slot.iter() {
            let _ = writeln!(
                out,
                "tron_actors_actor_restarts_total{{slot=\"{slot}\"}} {n}"
            );
        }
    }
    sample(
        &mut out,
        "tron_actors_leader",
        "gauge",
        "1 while this instance leads (runs the TipWatcher and the SyncCoordinator), 0 while it follows.",
        u8::from(tree.is_leader()),
    );
    sample(
        &mut out,
        "tron_actors_elections_won_total",
        "counter",
        "Elections this instance won (each starts a new leadership epoch).",
        tree.elections_won.load(Ordering::Relaxed),
    );
    sample(
        &mut out,
        "tron_actors_fork_refusals_total",
        "counter",
        "Walks back this process refused because the node contradicted a finalized block (a broken node).",
        tree.deep_fork_refusals.load(Ordering::Relaxed),
    );
    for render_more in extra {
        out.push_str(&render_more());
    }
    out
}

fn render_store(out: &mut String, s: &StoreSnapshot, head: u64, head_time: u64) {
    let last = s.last_synced.unwrap_or(0);
    sample(
        out,
        "tron_actors_finalized_block",
        "gauge",
        "The node's solidified block as last published in a finalized entry (0 = none yet).",
        s.finalized.unwrap_or(0),
    );
    sample(
        out,
        "tron_actors_forks_total",
        "counter",
        "Forks found and retracted (retractions of at least one block).",
        s.stats.forks(),
    );
    sample(
        out,
        "tron_actors_reverted_blocks_total",
        "counter",
        "Blocks retracted (block_reverted entries written).",
        s.stats.reverted_blocks(),
    );
    sample(
        out,
        "tron_actors_leader_epoch",
        "gauge",
        "The leadership's current epoch as Redis holds it (0 = no leader now).",
        s.leader.as_ref().map_or(0, |(_, epoch)| *epoch),
    );
    metric(
        out,
        "tron_actors_instance_blocks_committed_total",
        "counter",
        "Blocks committed per daemon instance (instance.id), from every instance sharing this Redis.",
    );
    for (instance, n) in s.stats.blocks_by_instance() {
        let _ = writeln!(
            out,
            "tron_actors_instance_blocks_committed_total{{instance=\"{instance}\"}} {n}"
        );
    }
    metric(
        out,
        "tron_actors_last_synced_block",
        "gauge",
        "last_synced_block: the newest head taken over (older gaps may still be queued).",
    );
    let _ = writeln!(out, "tron_actors_last_synced_block {last}");

    metric(
        out,
        "tron_actors_lag_blocks",
        "gauge",
        "Blocks not yet published: head - last_synced plus queued, leased and retrying blocks.",
    );
    let _ = writeln!(out, "tron_actors_lag_blocks {}", s.lag_blocks(head));

    metric(
        out,
        "tron_actors_lag_seconds",
        "gauge",
        "Head block timestamp minus the newest published block timestamp.",
    );
    let lag = s.stats.lag_seconds(head_time).unwrap_or(0.0);
    let _ = writeln!(out, "tron_actors_lag_seconds {lag}");

    metric(
        out,
        "tron_actors_queue_depth_blocks",
        "gauge",
        "Blocks waiting, per queue (retry = waiting for their next attempt, dead = dead letters).",
    );
    for (queue, n) in [
        ("priority", s.priority),
        ("backlog", s.backlog),
        ("retry", s.retry),
        ("dead", s.dead),
    ] {
        let _ = writeln!(
            out,
            "tron_actors_queue_depth_blocks{{queue=\"{queue}\"}} {n}"
        );
    }

    metric(
        out,
        "tron_actors_leases",
        "gauge",
        "Blocks leased, per kind of slot.",
    );
    let mut by_kind = [
        (SlotKind::Tip, 0u64),
        (SlotKind::Priority, 0),
        (SlotKind::Backlog, 0),
    ];
    for (slot, n) in &s.leases_by_slot {
        // A lease whose owner is no slot of ours (written by hand, say) counts with the tip's.
        let kind = slot.parse::<SlotId>().map_or(SlotKind::Tip, SlotId::kind);
        if let Some((_, count)) = by_kind.iter_mut().find(|(k, _)| *k == kind) {
            *count += n;
        }
    }
    for (kind, n) in by_kind {
        let _ = writeln!(
            out,
            "tron_actors_leases{{slot_kind=\"{}\"}} {n}",
            kind.as_str()
        );
    }

    metric(
        out,
        "tron_actors_blocks_published_total",
        "counter",
        "Blocks committed to the stream, per path (tip, priority, backlog).",
    );
    for origin in Origin::ALL {
        let _ = writeln!(
            out,
            "tron_actors_blocks_published_total{{path=\"{}\"}} {}",
            origin.as_str(),
            s.stats.blocks(origin)
        );
    }
    metric(
        out,
        "tron_actors_events_published_total",
        "counter",
        "Events added to the stream, per path.",
    );
    for origin in Origin::ALL {
        let _ = writeln!(
            out,
            "tron_actors_events_published_total{{path=\"{}\"}} {}",
            origin.as_str(),
            s.stats.events(origin)
        );
    }
    metric(
        out,
        "tron_actors_stream_entries",
        "gauge",
        "Entries in the event stream (after trimming).",
    );
    let _ = writeln!(out, "tron_actors_stream_entries {}", s.stream_len);
}

/// The tracer's counts.
pub fn render_trace_stats(stats: &crate::telemetry::TraceStats) -> String {
    let mut out = String::new();
    sample(
        &mut out,
        "tron_actors_trace_spans_exported_total",
        "counter",
        "Spans the OTLP exporter delivered.",
        stats.spans_exported.load(Ordering::Relaxed),
    );
    sample(
        &mut out,
        "tron_actors_trace_export_failures_total",
        "counter",
        "OTLP export batches that failed (collector away); their spans are dropped, never waited on.",
        stats.export_failures.load(Ordering::Relaxed),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_counted_per_kind_of_slot() {
        let mut snapshot = StoreSnapshot::default();
        for (slot, n) in [
            ("tip", 1),
            ("priority", 2),
            ("backlog-0", 3),
            ("backlog-12", 4),
        ] {
            snapshot.leases_by_slot.insert(slot.to_string(), n);
        }
        let mut out = String::new();
        render_store(&mut out, &snapshot, 0, 0);
        let leases: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("tron_actors_leases{"))
            .collect();
        assert_eq!(
            leases,
            [
                "tron_actors_leases{slot_kind=\"tip\"} 1",
                "tron_actors_leases{slot_kind=\"priority\"} 2",
                "tron_actors_leases{slot_kind=\"backlog\"} 7",
            ]
        );
    }
}
