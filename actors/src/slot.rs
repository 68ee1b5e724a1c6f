//! Worker slots: the stable identities leases belong to. A lease is owned by a slot, not by an
//! actor instance, so a restarted worker takes over the leases its predecessor left.
//!
//! A slot's name is stored in Redis (a lease's owner, in the lease hash), so the names never
//! change: `tip`, `priority`, `backlog-0` .. `backlog-<n-1>`, each prefixed with the daemon
//! instance's id (`<instance>/backlog-3`) so that several daemons on one Redis never resume each
//! other's leases. [`SlotId`]'s `Display` is the only place that writes one and its `FromStr` the
//! only place that reads one.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

/// A daemon instance's id (`instance.id`): `[A-Za-z0-9._-]`, 1 to 64 characters, or none (tests
/// and tools that run no tree). Interned, so that [`SlotId`] stays `Copy`: a process has one or
/// a few.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Instance(&'static str);

/// Why a text is not an instance id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an instance id: use 1 to 64 of A-Z a-z 0-9 . _ -")]
pub struct BadInstance(pub String);

impl Instance {
    /// No instance: slot names without a prefix.
    pub const NONE: Instance = Instance("");

    /// The instance `id`, checked.
    pub fn new(id: &str) -> Result<Instance, BadInstance> {
        let valid = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return Err(BadInstance(id.to_string()));
        }
        static INTERNED: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
        let mut interned = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
        let set = interned.get_or_insert_with(HashSet::new);
        let name = match set.get(id) {
            Some(name) => *name,
            None => {
                let name: &'static str = Box::leak(id.to_string().into_boxed_str());
                set.insert(name);
                name
            }
        };
        Ok(Instance(name))
    }

    /// The id as written; empty for [`Instance::NONE`].
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl Default for Instance {
    fn default() -> Self {
        Instance::NONE
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

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
    /// The daemon instance the slot belongs to.
    instance: Instance,
    kind: SlotKind,
    /// Which BacklogActor; 0 for the single tip and priority slots.
    index: usize,
}

impl SlotId {
    /// The TipWatcher's slot, `tip`.
    pub const TIP: SlotId = SlotId {
        instance: Instance::NONE,
        kind: SlotKind::Tip,
        index: 0,
    };
    /// The PriorityActor's slot, `priority`.
    pub const PRIORITY: SlotId = SlotId {
        instance: Instance::NONE,
        kind: SlotKind::Priority,
        index: 0,
    };

    /// BacklogActor number `index`'s slot, `backlog-<index>`.
    pub fn backlog(index: usize) -> SlotId {
        SlotId {
            instance: Instance::NONE,
            kind: SlotKind::Backlog,
            index,
        }
    }

    /// The same slot of `instance`.
    pub fn of(self, instance: Instance) -> SlotId {
        SlotId { instance, ..self }
    }

    /// The instance the slot belongs to.
    pub fn instance(self) -> Instance {
        self.instance
    }

    /// What the slot works on.
    pub fn kind(self) -> SlotKind {
        self.kind
    }

    /// Every worker slot of `instance`'s tree with `backlog_workers` BacklogActors, in start
    /// order.
    pub fn all(instance: Instance, backlog_workers: usize) -> impl Iterator<Item = SlotId> {
        [SlotId::TIP, SlotId::PRIORITY]
            .into_iter()
            .chain((0..backlog_workers).map(SlotId::backlog))
            .map(move |slot| slot.of(instance))
    }
}

impl fmt::Display for SlotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.instance != Instance::NONE {
            write!(f, "{}/", self.instance)?;
        }
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

    fn from_str(full: &str) -> Result<SlotId, UnknownSlot> {
        let unknown = || UnknownSlot(full.to_string());
        let (instance, name) = match full.split_once('/') {
            Some((instance, name)) => (Instance::new(instance).map_err(|_| unknown())?, name),
            None => (Instance::NONE, full),
        };
        let slot = match name {
            "tip" => Ok(SlotId::TIP),
            "priority" => Ok(SlotId::PRIORITY),
            _ => name
                .strip_prefix("backlog-")
                .filter(|index| index.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|index| index.parse().ok())
                .map(SlotId::backlog)
                .ok_or_else(unknown),
        }?;
        Ok(slot.of(instance))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_are_the_ones_stored_in_redis() {
        let names: Vec<String> = SlotId::all(Instance::NONE, 13)
            .map(|s| s.to_string())
            .collect();
        assert_eq!(names.len(), 15);
        assert_eq!(names[0], "tip");
        assert_eq!(names[1], "priority");
        assert_eq!(names[2], "backlog-0");
        assert_eq!(names[14], "backlog-12");
    }

    #[test]
    fn a_slot_name_reads_back_as_the_same_slot() {
        let a = Instance::new("host-a.1").unwrap();
        for slot in SlotId::all(Instance::NONE, 13).chain(SlotId::all(a, 13)) {
            assert_eq!(slot.to_string().parse::<SlotId>(), Ok(slot));
        }
        assert_eq!("backlog-40".parse(), Ok(SlotId::backlog(40)));
        assert_eq!("host-a.1/tip".parse(), Ok(SlotId::TIP.of(a)));
    }

    #[test]
    fn an_instances_slots_carry_its_id_and_differ_from_anothers() {
        let a = Instance::new("a").unwrap();
        let b = Instance::new("b").unwrap();
        assert_eq!(SlotId::backlog(3).of(a).to_string(), "a/backlog-3");
        assert_ne!(SlotId::backlog(3).of(a), SlotId::backlog(3).of(b));
        assert_eq!(SlotId::PRIORITY.of(b).instance(), b);
        assert_eq!(Instance::new("a").unwrap(), a, "interned once");
    }

    #[test]
    fn instance_ids_are_checked() {
        for bad in ["", "a/b", "a|b", "a b", &"x".repeat(65)] {
            assert_eq!(
                Instance::new(bad),
                Err(BadInstance(bad.to_string())),
                "{bad}"
            );
        }
        assert!(Instance::new(&"x".repeat(64)).is_ok());
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
            "a/",
            "a b/tip",
            "/tip",
        ] {
            assert_eq!(
                name.parse::<SlotId>(),
                Err(UnknownSlot(name.to_string())),
                "{name}"
            );
        }
    }
}
