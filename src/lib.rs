//! tron-actors: the outside world (config, TRON client, Redis store, CLI, telemetry, simulated
//! node) around the actor tree of the `actors` crate.
pub mod bench;
pub mod chaos;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod local_redis;
pub mod metrics;
pub mod ops_server;
pub mod progress;
pub mod store;
pub mod telemetry;
pub mod tron;
pub mod verify;
