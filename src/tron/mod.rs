//! The TRON node: its HTTP API client, the decoding of its JSON, and addresses.
/// TRON addresses live in the `actors` crate, shared with the simulated node.
pub use actors::address;
pub mod client;
pub mod decode;
pub mod limiter;

pub use client::{
    ClientBuildError, ClientStats, Endpoint, StatsSnapshot, TronClient, TronClientConfig,
};
