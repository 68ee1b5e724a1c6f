//! Worker slots: the stable identities leases belong to. A lease is owned by a slot, not by an
//! actor instance, so a restarted worker takes over the leases its predecessor left.
//!
//! A slot's name is stored in Redis (a lease's owner, in the lease hash), so the names never
//! change: `tip`, `priority`, `backlog-0` .. `backlog-<n-1>`. [`SlotId`]'s `Display` is the only
//! place that writes one and its `FromStr` the only place that reads one.

use std::fmt;
use std::str::FromStr;

/// What a worker slot works on: the head, the priority queue or the backlog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SlotKind {
    /// The TipWatcher's slot.
    Tip,
    /// The PriorityActor's slot.
    Priority,
    /// One of the BacklogActors' slots.
    Backlog,
}

impl SlotKind {
    /// The `slot_kind` label of metrics: `tip`, `priority`, `backlog`.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotKind::Tip => "tip",
            SlotKind::Priority => "priority",
            SlotKind::Backlog => "backlog",
        }
    }
}

/// A lease-holding worker slot. Its fields are private so that scoping slots further (per daemon
/// instance, say) adds a field here, not a new type at every caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotId {
    kind: SlotKind,
    /// Which BacklogActor; 0 for the single tip and priority slots.
    index: usize,
}

impl SlotId {
    /// The TipWatcher's slot, `tip`.
    pub const TIP: SlotId = SlotId {
        kind: SlotKind::Tip,
        index: 0,
    };
    /// The PriorityActor's slot, `priority`.
    pub const PRIORITY: SlotId = SlotId {
        kind: SlotKind::Priority,
        index: 0,
    };

    /// BacklogActor number `index`'s slot, `backlog-<index>`.
    pub fn backlog(index: usize) -> SlotId {
        SlotId {
            kind: SlotKind::Backlog,
            index,
        }
    }

    /// What the slot works on.
    pub fn kind(self) -> SlotKind {
        self.kind
    }

    /// Every worker slot of a tree with `backlog_workers` BacklogActors, in start order.
    pub fn all(backlog_workers: usize) -> impl Iterator<Item = SlotId> {
        [SlotId::TIP, SlotId::PRIORITY]
            .into_iter()
            .chain((0..backlog_workers).map(SlotId::backlog))
    }
}

impl fmt::Display for SlotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            SlotKind::Tip | SlotKind::Priority => f.write_str(self.kind.as_str()),
            SlotKind::Backlog => write!(f, "backlog-{}", self.index),
        }
    }
}

/// A name that is not a worker slot's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a worker slot: {0:?}")]
pub struct UnknownSlot(pub String);

impl FromStr for SlotId {
    type Err = UnknownSlot;

    fn from_str(name: &str) -> Result<SlotId, UnknownSlot> {
        match name {
            "tip" => Ok(SlotId::TIP),
            "priority" => Ok(SlotId::PRIORITY),
            _ => name
                .strip_prefix("backlog-")
                .filter(|index| index.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|index| index.parse().ok())
                .map(SlotId::backlog)
                .ok_or_else(|| UnknownSlot(name.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_are_the_ones_stored_in_redis() {
        let names: Vec<String> = SlotId::all(13).map(|s| s.to_string()).collect();
        assert_eq!(names.len(), 15);
        assert_eq!(names[0], "tip");
        assert_eq!(names[1], "priority");
        assert_eq!(names[2], "backlog-0");
        assert_eq!(names[14], "backlog-12");
    }

    #[test]
    fn a_slot_name_reads_back_as_the_same_slot() {
        for slot in SlotId::all(13) {
            assert_eq!(slot.to_string().parse::<SlotId>(), Ok(slot));
        }
        assert_eq!("backlog-40".parse(), Ok(SlotId::backlog(40)));
    }

    #[test]
    fn other_names_are_not_slots() {
        for name in [
            "publisher",
            "backlog",
            "backlog-",
            "backlog-+1",
            "backlog-x",
            "Tip",
            "",
        ] {
            assert_eq!(
                name.parse::<SlotId>(),
                Err(UnknownSlot(name.to_string())),
                "{name}"
            );
        }
    }
}
