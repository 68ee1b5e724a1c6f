//! tron-actors follows a TRON node's HTTP API and publishes every event of every block to a Redis
//! stream, exactly once. This crate is the outside world around the actor tree of the `actors`
//! crate: the real chain, the real store, configuration and operations.
//!
//! # Layout
//!
//! The product, what `tron-actors run` is made of:
//!
//! - [`config`]: one figment (built-in defaults, `--config`, `TRON_ACTORS_*`), validated at once;
//! - [`tron`]: the node, `actors::chain::Chain` over java-tron's HTTP API: the client (shared
//!   rate limit, penalties, retries, range fetch) and the decoder of its JSON into events;
//! - [`store`]: `actors::store::Store` over Redis: queues, leases, retries, dead letters and the
//!   exactly-once commit, all as Lua scripts;
//! - [`daemon`]: the actor tree wired to the node and the store, and its lifecycle;
//! - [`telemetry`], [`metrics`], [`ops_server`], [`progress`]: logs and traces, Prometheus
//!   metrics, `/healthz` `/readyz` `/metrics`, catch-up progress;
//! - [`verify`]: the audit of a block range of the stream against the node;
//! - [`consumer`]: the stream read as a consumer reads it (retractions applied);
//! - [`tail`]: what `tron-actors tail` prints and where it starts (the pure parts);
//! - [`tls`]: the one TLS crypto provider every HTTP client needs.
//!
//! Apart, not the product: [`tools`], the harnesses that measure and test it from outside
//! (`bench`, `chaos`, `demo`, the daemon as a child process, a private redis-server). The
//! simulated node they run against is its own crate, `tron-sim` (`sim/`). The command line
//! (`src/main.rs`, `src/cli/`) is the binary's, one module per subcommand.
pub mod config;
pub mod consumer;
pub mod consumer_groups;
pub mod daemon;
pub mod metrics;
pub mod ops_server;
pub mod progress;
pub mod store;
pub mod tail;
pub mod telemetry;
pub mod tls;
pub mod tools;
pub mod tron;
pub mod verify;
