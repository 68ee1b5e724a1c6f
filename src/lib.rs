//! tron-actors: the outside world (config, TRON client, Redis store, CLI, telemetry, simulated
//! node) around the actor tree of the `actors` crate.
pub mod sim;
pub mod tron;
