//! The TRON node: its HTTP API client, the decoding of its JSON, and addresses.
pub mod address;
pub mod client;
pub mod decode;
pub mod limiter;

pub use client::{
    ClientBuildError, ClientStats, Endpoint, StatsSnapshot, TronClient, TronClientConfig,
};
