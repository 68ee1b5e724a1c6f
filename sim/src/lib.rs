//! The simulated TRON node: a java-tron look-alike that tests, the demo and the benchmark run
//! against.
//!
//! Layout:
//! - [`actors::rng`]: the deterministic PRNG every choice comes from, keyed by a `domain`;
//! - [`model`]: what a block's transactions *are*, a pure function of (seed, number);
//! - `json`: the node's JSON for a block and its transaction infos, rendered from the model;
//! - `expected`: the events a block must yield (docs/EVENTS.md), rendered from the same model,
//!   independently of the JSON, so that a decoder can be checked against it;
//! - [`chain`]: which blocks exist (a head moving with time), forks, a small render cache;
//! - [`faults`]: what can go wrong (errors, 429 penalties, resets, lying answers, ...);
//! - [`server`]: the HTTP endpoints under `/wallet`, `/walletsolidity` and `/sim`.

pub mod chain;
mod expected;
pub mod faults;
mod json;
pub mod model;
pub mod server;

/// Domains keep the PRNG streams of different purposes apart even for equal numbers.
pub(crate) mod domain {
    pub(crate) const ADDRESSES: u64 = 1;
    pub(crate) const HEADER: u64 = 2;
    pub(crate) const TXS: u64 = 3;
    pub(crate) const TX_ID: u64 = 4;
    pub(crate) const FORK: u64 = 5;
    pub(crate) const FAULTS: u64 = 6;
}

#[cfg(test)]
mod tests;

pub use chain::{SimChain, SimParams, SOLID_LAG};
pub use faults::{parse_block_list, SimFaults};
pub use server::{serve_forever, serve_until, spawn, SimHandle};

/// Why the simulated node cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The settings contradict each other or are out of range.
    #[error("invalid simulator settings: {0}")]
    InvalidParams(String),
    /// The listen address is taken or not allowed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why the bind failed.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped on an I/O error.
    #[error("simulated node server failed: {0}")]
    Serve(#[source] std::io::Error),
}
