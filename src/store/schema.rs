//! The store's Redis schema, written once: the key names ([`Keys`], and [`Key`], the keys a
//! script may be given), the value of a lease ([`LeaseValue`]), the member of a block's link
//! ([`LinkMember`]) and the fields of the stats hash. The Lua scripts build no key name and parse
//! no lease or link themselves: they receive every key in KEYS, bound to the names
//! [`Key::lua_name`] gives, and their lease and link helpers are the Lua twins of [`LeaseValue`]
//! and [`LinkMember`] (see `scripts.rs`).

use actors::slot::SlotId;
use actors::store::{BlockLink, Origin, Queue};
use std::fmt;

/// Key names under one prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    /// The prefix every key but a renamed stream starts with (`{tron}` by default: a hash tag).
    pub prefix: String,
    /// The event stream: `<prefix>:events` unless `stream.key` names another.
    events: String,
}

impl Keys {
    /// The keys under `prefix`, the stream included.
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
            events: format!("{prefix}:events"),
        }
    }

    /// The same keys with the event stream under its own name (`stream.key`).
    pub fn with_stream(prefix: &str, stream: Option<&str>) -> Self {
        let mut keys = Keys::new(prefix);
        if let Some(stream) = stream.filter(|s| !s.is_empty()) {
            keys.events = stream.to_string();
        }
        keys
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// The name of a key a script may be given.
    pub(crate) fn of(&self, key: Key) -> String {
        match key {
            Key::LastSynced => self.last_synced(),
            Key::PriorityQueue => self.queue(Queue::Priority),
            Key::BacklogQueue => self.queue(Queue::Backlog),
            Key::Lease => self.lease(),
            Key::LeaseDeadline => self.lease_deadline(),
            Key::Retry => self.retry(),
            Key::RetryPath => self.retry_path(),
            Key::Attempts => self.attempts(),
            Key::Dead => self.dead(),
            Key::Done => self.done(),
            Key::Events => self.events(),
            Key::Stats => self.stats(),
            Key::Links => self.links(),
            Key::Finalized => self.finalized(),
            Key::Leader => self.leader(),
            Key::Epoch => self.epoch(),
            Key::Instances => self.instances(),
        }
    }

    /// last_synced_block.
    pub fn last_synced(&self) -> String {
        self.key("last_synced")
    }
    /// A work queue.
    pub fn queue(&self, queue: Queue) -> String {
        match queue {
            Queue::Priority => self.key("queue:priority"),
            Queue::Backlog => self.key("queue:backlog"),
        }
    }
    /// Block -> `<slot>|<origin>`.
    pub fn lease(&self) -> String {
        self.key("lease")
    }
    /// Block -> when its lease expires.
    pub fn lease_deadline(&self) -> String {
        self.key("lease_deadline")
    }
    /// Block -> when its next attempt is due.
    pub fn retry(&self) -> String {
        self.key("retry")
    }
    /// Block -> the queue a retrying block goes back to.
    pub fn retry_path(&self) -> String {
        self.key("retry_path")
    }
    /// Block -> failures so far.
    pub fn attempts(&self) -> String {
        self.key("attempts")
    }
    /// Block -> dead-letter record.
    pub fn dead(&self) -> String {
        self.key("dead")
    }
    /// The bitmap of committed blocks.
    pub fn done(&self) -> String {
        self.key("done")
    }
    /// The event stream.
    pub fn events(&self) -> String {
        self.events.clone()
    }
    /// What has been published, per origin: see [`StoreStats`](super::StoreStats).
    pub fn stats(&self) -> String {
        self.key("stats")
    }
    /// The links of committed blocks above the finalized block: a sorted set, score = number,
    /// member = [`LinkMember`].
    pub fn links(&self) -> String {
        self.key("links")
    }
    /// The finalized block as last published.
    pub fn finalized(&self) -> String {
        self.key("finalized")
    }
    /// The leadership: `<instance>|<epoch>` ([`TermValue`]), expiring with the leader's lease.
    pub fn leader(&self) -> String {
        self.key("leader")
    }
    /// The last epoch handed out (a counter: every election takes the next one).
    pub fn epoch(&self) -> String {
        self.key("epoch")
    }
    /// The registry of instances: instance id -> when it last bid or renewed (ms).
    pub fn instances(&self) -> String {
        self.key("instances")
    }
}

/// A key a script may be given. Each script lists the ones it touches; Rust passes them in KEYS
/// in that order and the script's prelude binds each to a Lua local named [`Key::lua_name`], so
/// neither side counts positions and no script builds a key name (what Redis Cluster requires).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Key {
    LastSynced,
    PriorityQueue,
    BacklogQueue,
    Lease,
    LeaseDeadline,
    Retry,
    RetryPath,
    Attempts,
    Dead,
    Done,
    Events,
    Stats,
    Links,
    Finalized,
    Leader,
    Epoch,
    Instances,
}

impl Key {
    /// The Lua local the key is bound to in a script that is given it.
    pub(crate) fn lua_name(self) -> &'static str {
        match self {
            Key::LastSynced => "LAST_SYNCED",
            Key::PriorityQueue => "PRIORITY_QUEUE",
            Key::BacklogQueue => "BACKLOG_QUEUE",
            Key::Lease => "LEASE",
            Key::LeaseDeadline => "DEADLINE",
            Key::Retry => "RETRY",
            Key::RetryPath => "RETRY_PATH",
            Key::Attempts => "ATTEMPTS",
            Key::Dead => "DEAD",
            Key::Done => "DONE",
            Key::Events => "EVENTS",
            Key::Stats => "STATS",
            Key::Links => "LINKS",
            Key::Finalized => "FINALIZED",
            Key::Leader => "LEADER",
            Key::Epoch => "EPOCH",
            Key::Instances => "INSTANCES",
        }
    }
}

/// A term as stored in `<p>:leader` and as the fenced scripts take it: `<instance>|<epoch>`;
/// '' for a step not fenced. Its Lua twin is the `fenced_out` helper and the lead script of
/// `scripts.rs`.
pub(crate) struct TermValue;

impl TermValue {
    /// The stored form of `term`; '' for none.
    pub(crate) fn of(term: Option<actors::store::Term>) -> String {
        term.map(|t| format!("{}|{}", t.instance, t.epoch))
            .unwrap_or_default()
    }
}

/// A lease as stored in `<p>:lease` (block -> value): `<slot>|<origin>`. Its Lua twin is the
/// `lease_value`, `lease_slot` and `lease_origin` helpers of `scripts.rs`, which write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LeaseValue<'a> {
    /// The owner's name; a [`SlotId`] unless written by hand.
    pub(crate) slot: &'a str,
    /// Its [`Origin`]'s name.
    origin: &'a str,
}

impl<'a> LeaseValue<'a> {
    /// Reads a stored value. A value without `|` is all owner, with no origin.
    pub(crate) fn parse(value: &'a str) -> Self {
        let (slot, origin) = value.split_once('|').unwrap_or((value, ""));
        LeaseValue { slot, origin }
    }

    /// Whether `slot` holds the lease.
    pub(crate) fn is_held_by(&self, slot: SlotId) -> bool {
        self.slot == slot.to_string()
    }

    /// Where the leased block's work came from; `None` for a value no version of ours wrote.
    pub(crate) fn origin(&self) -> Option<Origin> {
        Origin::parse(self.origin)
    }
}

impl fmt::Display for LeaseValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}", self.slot, self.origin)
    }
}

/// A block's link as stored in `<p>:links`: the member `<number>|<hash>|<parent_hash>`, scored
/// by the number. A sorted set makes the two things done with links one command each: read the
/// links of a range of blocks (`ZRANGEBYSCORE`) and forget those below the finalized block
/// (`ZREMRANGEBYSCORE`); a hash keyed by number would need the numbers to be known. The number is
/// in the member too so that the member alone is the whole link. Its Lua twin is the
/// `link_member`, `link_hash` and `link_parent` helpers of `scripts.rs`, which write and read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LinkMember<'a> {
    number: u64,
    hash: &'a str,
    parent_hash: &'a str,
}

impl<'a> LinkMember<'a> {
    /// Reads a stored member; `None` for one no version of ours wrote.
    pub(crate) fn parse(member: &'a str) -> Option<Self> {
        let mut parts = member.splitn(3, '|');
        let number = parts.next()?.parse().ok()?;
        let hash = parts.next()?;
        let parent_hash = parts.next()?;
        Some(LinkMember {
            number,
            hash,
            parent_hash,
        })
    }

    /// The link it stores.
    pub(crate) fn link(&self) -> BlockLink {
        BlockLink {
            number: self.number,
            hash: self.hash.to_string(),
            parent_hash: self.parent_hash.to_string(),
        }
    }
}

impl fmt::Display for LinkMember<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}|{}", self.number, self.hash, self.parent_hash)
    }
}

/// A field of the stats hash `<p>:stats`, which the commit and revert scripts count up and
/// [`StoreStats`](super::StoreStats) reads back: the names are written here only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatsField {
    /// Blocks committed, per origin: `blocks:<origin>`.
    Blocks(Origin),
    /// Events added to the stream, per origin: `events:<origin>`.
    Events(Origin),
    /// The newest block time published (ms): `last_block_time`.
    LastBlockTime,
    /// Blocks retracted (`block_reverted` entries written): `reverted_blocks`.
    RevertedBlocks,
    /// Reverts that retracted at least one block: `forks`.
    Forks,
    /// Blocks committed by one instance: `blocks_by:<instance>`.
    BlocksBy(actors::slot::Instance),
}

impl StatsField {
    /// The fields without an origin.
    const PLAIN: [StatsField; 3] = [
        StatsField::LastBlockTime,
        StatsField::RevertedBlocks,
        StatsField::Forks,
    ];

    /// The field's name in the hash.
    pub(crate) fn name(self) -> String {
        match self {
            StatsField::Blocks(origin) => format!("blocks:{}", origin.as_str()),
            StatsField::Events(origin) => format!("events:{}", origin.as_str()),
            StatsField::LastBlockTime => "last_block_time".to_string(),
            StatsField::RevertedBlocks => "reverted_blocks".to_string(),
            StatsField::Forks => "forks".to_string(),
            StatsField::BlocksBy(instance) => format!("blocks_by:{instance}"),
        }
    }

    /// Reads a field's name back; `None` for a field no version of ours wrote.
    pub(crate) fn parse(name: &str) -> Option<StatsField> {
        if let Some(plain) = Self::PLAIN.into_iter().find(|f| f.name() == name) {
            return Some(plain);
        }
        let (what, origin) = name.split_once(':')?;
        if what == "blocks_by" {
            return actors::slot::Instance::new(origin)
                .ok()
                .map(StatsField::BlocksBy);
        }
        let origin = Origin::parse(origin)?;
        match what {
            "blocks" => Some(StatsField::Blocks(origin)),
            "events" => Some(StatsField::Events(origin)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_value_is_the_slot_and_the_origin() {
        let value = "backlog-3|backlog";
        let lease = LeaseValue::parse(value);
        assert_eq!(lease.slot, "backlog-3");
        assert_eq!(lease.origin(), Some(Origin::Backlog));
        assert!(lease.is_held_by(SlotId::backlog(3)));
        assert!(!lease.is_held_by(SlotId::backlog(30)));
        assert_eq!(lease.to_string(), value);
        assert_eq!(LeaseValue::parse("tip|tip").origin(), Some(Origin::Tip));
        // Written by hand: all owner, no origin.
        let odd = LeaseValue::parse("someone");
        assert_eq!((odd.slot, odd.origin()), ("someone", None));
    }

    #[test]
    fn a_link_member_is_the_number_the_hash_and_the_parent_hash() {
        let link = BlockLink {
            number: 81,
            hash: "00aa".into(),
            parent_hash: "00bb".into(),
        };
        let member = "81|00aa|00bb";
        let parsed = LinkMember::parse(member);
        assert_eq!(parsed.map(|m| m.link()), Some(link));
        assert_eq!(parsed.map(|m| m.to_string()).as_deref(), Some(member));
        assert_eq!(LinkMember::parse("81|00aa"), None);
        assert_eq!(LinkMember::parse("x|00aa|00bb"), None);
    }

    #[test]
    fn every_stats_field_reads_back_as_itself() {
        for origin in Origin::ALL {
            for field in [StatsField::Blocks(origin), StatsField::Events(origin)] {
                assert_eq!(StatsField::parse(&field.name()), Some(field));
            }
        }
        assert_eq!(StatsField::Blocks(Origin::Tip).name(), "blocks:tip");
        assert_eq!(StatsField::Events(Origin::Backlog).name(), "events:backlog");
        for field in StatsField::PLAIN {
            assert_eq!(StatsField::parse(&field.name()), Some(field));
        }
        assert_eq!(
            StatsField::parse("last_block_time"),
            Some(StatsField::LastBlockTime)
        );
        assert_eq!(
            StatsField::parse("reverted_blocks"),
            Some(StatsField::RevertedBlocks)
        );
        assert_eq!(StatsField::parse("forks"), Some(StatsField::Forks));
        assert_eq!(StatsField::parse("blocks:elsewhere"), None);
        assert_eq!(StatsField::parse("other"), None);
    }
}
