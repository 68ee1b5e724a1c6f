//! The TRON node: its HTTP API client, the decoding of its JSON, and addresses.
//!
//! The client, one idea a file: [`client`] (requests, their retries, the [`Chain`] it is),
//! `config` (what it is built from), `endpoint` (the node's endpoints), `range` (blocks 100
//! to an answer), `refusal` (what a refused answer means, how long everyone pauses), `spans`
//! (its spans in a block's trace), `stats` (its counters and their Prometheus text).
//!
//! [`Chain`]: actors::chain::Chain
/// TRON addresses live in the `actors` crate, shared with the simulated node.
pub use actors::address;
pub mod client;
mod config;
pub mod decode;
mod endpoint;
pub mod limiter;
mod pool;
mod range;
mod refusal;
mod spans;
mod stats;
#[cfg(test)]
mod test_node;

pub use client::{NodeView, TronClient, API_KEY_HEADER};
pub use config::{ClientBuildError, TronClientConfig};
pub use endpoint::Endpoint;
pub use pool::{key_applies, shown_url};
pub use range::MAX_RANGE;
pub use stats::{ClientStats, StatsSnapshot};
