//! What the store says about progress, parsed once: [`StoreStats`] (the stats hash) and
//! [`StoreSnapshot`] (everything /metrics, `status`, progress and the harnesses read), with the
//! one computation of the lag they all show.

use super::schema::StatsField;
use actors::store::Origin;
use std::collections::{BTreeMap, HashMap};

/// The stats hash `<p>:stats`: blocks and events published per origin, the newest block time
/// published, and the retractions. Counters the scripts never touched are absent, not zero.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Indexed like [`Origin::ALL`].
    blocks: [Option<u64>; 3],
    events: [Option<u64>; 3],
    last_block_time_ms: Option<u64>,
    reverted_blocks: u64,
    forks: u64,
    by_instance: BTreeMap<String, u64>,
}

fn index(origin: Origin) -> usize {
    match origin {
        Origin::Tip => 0,
        Origin::Priority => 1,
        Origin::Backlog => 2,
    }
}

impl StoreStats {
    /// Reads the hash as HGETALL returns it; fields no version of ours wrote are ignored.
    pub fn parse(hash: &HashMap<String, u64>) -> Self {
        let mut stats = StoreStats::default();
        for (name, value) in hash {
            match StatsField::parse(name) {
                Some(StatsField::Blocks(origin)) => stats.blocks[index(origin)] = Some(*value),
                Some(StatsField::Events(origin)) => stats.events[index(origin)] = Some(*value),
                Some(StatsField::LastBlockTime) => stats.last_block_time_ms = Some(*value),
                Some(StatsField::RevertedBlocks) => stats.reverted_blocks = *value,
                Some(StatsField::Forks) => stats.forks = *value,
                Some(StatsField::BlocksBy(instance)) => {
                    stats.by_instance.insert(instance.to_string(), *value);
                }
                None => {}
            }
        }
        stats
    }

    /// Blocks committed from `origin`.
    pub fn blocks(&self, origin: Origin) -> u64 {
        self.blocks[index(origin)].unwrap_or(0)
    }

    /// Events added to the stream by blocks from `origin`.
    pub fn events(&self, origin: Origin) -> u64 {
        self.events[index(origin)].unwrap_or(0)
    }

    /// Blocks published so far, every origin together.
    pub fn published(&self) -> u64 {
        Origin::ALL.iter().map(|o| self.blocks(*o)).sum()
    }

    /// Events published so far, every origin together.
    pub fn events_published(&self) -> u64 {
        Origin::ALL.iter().map(|o| self.events(*o)).sum()
    }

    /// Blocks committed per origin name, for the origins that committed any.
    pub fn blocks_by_origin(&self) -> BTreeMap<String, u64> {
        by_origin(&self.blocks)
    }

    /// Events published per origin name, for the origins that committed any block.
    pub fn events_by_origin(&self) -> BTreeMap<String, u64> {
        by_origin(&self.events)
    }

    /// Blocks retracted so far (`block_reverted` entries written).
    pub fn reverted_blocks(&self) -> u64 {
        self.reverted_blocks
    }

    /// Blocks committed per instance id (daemons with an `instance.id`), every origin together.
    pub fn blocks_by_instance(&self) -> &BTreeMap<String, u64> {
        &self.by_instance
    }

    /// Forks met so far: retractions that retracted at least one block.
    pub fn forks(&self) -> u64 {
        self.forks
    }

    /// The newest block time published, ms since the epoch; `None` before the first commit.
    pub fn last_block_time_ms(&self) -> Option<u64> {
        self.last_block_time_ms
    }

    /// The head's block time minus the newest published block's, in seconds; `None` before the
    /// first commit. A head older than that (a node behind us) is no lag.
    pub fn lag_seconds(&self, head_time_ms: u64) -> Option<f64> {
        self.last_block_time_ms
            .map(|last| head_time_ms.saturating_sub(last) as f64 / 1000.0)
    }
}

fn by_origin(counts: &[Option<u64>; 3]) -> BTreeMap<String, u64> {
    Origin::ALL
        .iter()
        .filter_map(|o| Some((o.as_str().to_string(), counts[index(*o)]?)))
        .collect()
}

/// A point-in-time view of the store.
#[derive(Clone, Debug, Default)]
pub struct StoreSnapshot {
    /// last_synced_block; `None` before the first advance.
    pub last_synced: Option<u64>,
    /// Blocks in the priority queue.
    pub priority: u64,
    /// Blocks in the backlog queue.
    pub backlog: u64,
    /// Blocks waiting for their next attempt.
    pub retry: u64,
    /// Dead letters.
    pub dead: u64,
    /// Leases held per slot name.
    pub leases_by_slot: BTreeMap<String, u64>,
    /// The leader's instance id and epoch; `None` while no instance leads.
    pub leader: Option<(String, u64)>,
    /// The registry of instances: id -> when it last bid for or renewed the leadership (ms).
    pub instances: BTreeMap<String, u64>,
    /// What has been published.
    pub stats: StoreStats,
    /// Entries in the event stream.
    pub stream_len: u64,
    /// The finalized block as last published; `None` before the first.
    pub finalized: Option<u64>,
}

impl StoreSnapshot {
    /// Blocks leased, every slot together.
    pub fn leased(&self) -> u64 {
        self.leases_by_slot.values().sum()
    }

    /// Blocks not yet published for a node at `head`: head - last_synced_block plus every queued,
    /// retrying and leased block. Dead letters are left out: they wait for an operator, not for
    /// time. Before the first advance only the queues count (there is no head taken over yet to
    /// measure from), and a node behind us adds nothing.
    pub fn lag_blocks(&self, head: u64) -> u64 {
        let unsynced = self.last_synced.map_or(0, |last| head.saturating_sub(last));
        unsynced + self.priority + self.backlog + self.retry + self.leased()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(last: Option<u64>, queues: [u64; 4], leased: u64) -> StoreSnapshot {
        let [priority, backlog, retry, dead] = queues;
        let mut s = StoreSnapshot {
            last_synced: last,
            priority,
            backlog,
            retry,
            dead,
            ..Default::default()
        };
        if leased > 0 {
            s.leases_by_slot.insert("backlog-0".into(), leased);
        }
        s
    }

    #[test]
    fn lag_in_blocks_row_by_row() {
        // (last_synced, [priority, backlog, retry, dead], leased, head, lag)
        let rows = [
            // In sync: nothing left.
            (Some(110), [0, 0, 0, 0], 0, 110, 0),
            // The unsynced head and every queue but dead letters.
            (Some(100), [3, 40, 2, 7], 5, 110, 10 + 3 + 40 + 2 + 5),
            // A node behind us adds nothing.
            (Some(100), [3, 40, 2, 7], 5, 90, 50),
            // No last_synced yet: only the queues.
            (None, [3, 40, 2, 7], 5, 110, 50),
            (None, [0, 0, 0, 0], 0, 110, 0),
            // Leases in flight alone.
            (Some(110), [0, 0, 0, 0], 4, 110, 4),
        ];
        for (last, queues, leased, head, lag) in rows {
            let s = snapshot(last, queues, leased);
            assert_eq!(s.lag_blocks(head), lag, "{s:?} at head {head}");
        }
    }

    #[test]
    fn lag_in_seconds_row_by_row() {
        let stats = |last: Option<u64>| {
            let mut hash = HashMap::new();
            if let Some(last) = last {
                hash.insert("last_block_time".to_string(), last);
            }
            StoreStats::parse(&hash)
        };
        // (last block time, head time, lag)
        let rows = [
            (None, 1_000_000, None),
            (Some(1_000_000), 1_000_000, Some(0.0)),
            (Some(1_000_000), 1_003_000, Some(3.0)),
            (Some(1_000_000), 1_000_500, Some(0.5)),
            // A head older than the newest published block.
            (Some(1_000_000), 997_000, Some(0.0)),
        ];
        for (last, head_time, lag) in rows {
            assert_eq!(stats(last).lag_seconds(head_time), lag, "{last:?}");
        }
    }

    #[test]
    fn the_stats_hash_is_read_per_origin() {
        let hash: HashMap<String, u64> = [
            ("blocks:tip", 2),
            ("events:tip", 7),
            ("blocks:backlog", 28),
            ("events:backlog", 0),
            ("last_block_time", 1_700_000_000_000),
            ("reverted_blocks", 6),
            ("forks", 2),
            ("blocks:elsewhere", 5),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let stats = StoreStats::parse(&hash);
        assert_eq!(stats.blocks(Origin::Tip), 2);
        assert_eq!(stats.blocks(Origin::Priority), 0);
        assert_eq!(stats.blocks(Origin::Backlog), 28);
        assert_eq!(stats.events(Origin::Tip), 7);
        assert_eq!(stats.published(), 30);
        assert_eq!(stats.events_published(), 7);
        assert_eq!(stats.last_block_time_ms(), Some(1_700_000_000_000));
        assert_eq!((stats.reverted_blocks(), stats.forks()), (6, 2));
        let names = |m: BTreeMap<String, u64>| m.into_iter().collect::<Vec<_>>();
        assert_eq!(
            names(stats.blocks_by_origin()),
            [("backlog".to_string(), 28), ("tip".to_string(), 2)]
        );
        assert_eq!(
            names(stats.events_by_origin()),
            [("backlog".to_string(), 0), ("tip".to_string(), 7)]
        );
        assert_eq!(StoreStats::parse(&HashMap::new()), StoreStats::default());
    }
}
