//! tron-actors: the outside world (config, TRON client, Redis store, CLI, telemetry, simulated
//! node) around the actor tree of the `actors` crate.
pub mod config;
pub mod daemon;
pub mod metrics;
pub mod ops_server;
pub mod progress;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod tools;
pub mod tron;
pub mod verify;
