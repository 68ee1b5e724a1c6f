//! The tron-actors supervision tree (ractor on tokio), written against two small traits: the
//! [`chain::Chain`] the blocks come from and the [`store::Store`] that holds queues, leases and the
//! event stream. The binary crate provides the real ones (java-tron HTTP API, Redis); tests use
//! fakes.
//!
//! ```text
//! Supervisor             restarts children under their slot, counts restarts, gives up past N in T
//! ├── StreamPublisher    the only writer of the event stream; one atomic commit per block
//! ├── SyncCoordinator    holds last_synced_block; decides what each new tip means; reaps leases
//! ├── TipWatcher         polls the head; processes the head block     (slot `tip`)
//! ├── PriorityActor      works the priority queue, lowest first        (slot `priority`)
//! └── BacklogActor x 13  work the backlog, highest block first         (slots `backlog-0..12`)
//! ```
//!
//! The one entry point is [`Tree::start`]: it takes the chain, the store and the settings
//! ([`TreeDeps`]) and returns a [`TreeHandle`] with the tree's stats, a way to wait until it gives
//! up, and the graceful shutdown (workers first, then the hand-back of their leases, then the
//! coordinator and publisher).
//!
//! - [`tree`] — `Tree::start`, `TreeHandle`, the shutdown order
//! - `supervisor` — Supervisor, its children, restart intensity
//! - `stream_publisher` — StreamPublisher
//! - `sync_coordinator` — SyncCoordinator
//! - `tip_watcher` — TipWatcher
//! - `queue_worker` — PriorityActor and BacklogActor (aliases of one worker type, two queues)
//! - `job` — fetch, commit or fail one leased block (shared by all workers)
//! - `services`, `directory`, `slot_state` — what the actors share, where the others are, what
//!   every lease-holding worker keeps (resume flag, outage backoff, lease heartbeat)
//! - [`backpressure`] — the switch that pauses claims and commits while the store is short of
//!   memory (set by the process's store monitor, and by out-of-memory refusals)
//! - [`fork`] — the walk back over a fork: which committed blocks the node no longer has
//! - [`sync_rule`], [`retry`], `poll_schedule` — the pure rules (sync table, retry schedule,
//!   when to poll the head)
//! - [`model`], [`chain`], [`store`] — the data and the two traits; [`store::Origin`] says where
//!   a block's work came from and maps it to its queue and node lane
//! - [`slot`] — [`slot::SlotId`], the worker slots leases belong to
//! - [`clock`], [`hooks`], [`stats`], [`histogram`], [`settings`] — the lease clock, fault
//!   injection, what the tree counts, the tree's knobs
//! - `fakes` (feature `test-utils`) — the in-memory chain and store that tests run the tree on
//! - [`trace`] — how a span records a failure (status, error attributes, exception event)
//! - [`filter`] — which events are kept (the daemon's `filter.*`, `tail`'s filters)
//! - [`address`], [`rng`] — TRON addresses and the seeded SplitMix64, shared by the product, the
//!   simulated node (`tron-sim`) and the harnesses

pub mod address;
pub mod backpressure;
pub mod chain;
pub mod clock;
mod directory;
#[cfg(any(test, feature = "test-utils"))]
pub mod fakes;
pub mod filter;
pub mod fork;
pub mod histogram;
pub mod hooks;
mod job;
mod leader_elector;
pub mod model;
mod poll_schedule;
mod queue_worker;
pub mod retry;
pub mod rng;
mod services;
// Its fields are documented where their values are chosen (config/default.toml); the typed
// config rework owns this file.
#[allow(missing_docs)]
pub mod settings;
pub mod slot;
mod slot_state;
pub mod stats;
pub mod store;
mod stream_publisher;
mod supervisor;
mod sync_coordinator;
pub mod sync_rule;
mod tip_watcher;
pub mod trace;
pub mod tree;
#[cfg(test)]
mod tree_tests;

pub use tree::{Tree, TreeDeps, TreeError, TreeHandle};
