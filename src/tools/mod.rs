//! Not the product: the harnesses that measure and test it, and what they share. They drive the
//! product from outside, as an operator would: the daemon as a child process of this same binary,
//! a private redis-server, the simulated node of the `tron-sim` crate.
//!
//! - [`bench`]: catch-up speed and head latency against this machine's own ceilings;
//! - [`chaos`]: a seeded fault run (daemon SIGKILLs, Redis restarts, a faulty node), then verify;
//! - [`demo`]: the `demo` command's setup (a simulated node and a Redis to follow it into);
//! - [`child`]: the daemon as a child process (bench, chaos and the integration tests);
//! - [`local_redis`]: a private redis-server on a free port;
//! - [`sentinel`]: three private Redis sentinels watching a private primary.
pub mod bench;
pub mod chaos;
pub mod child;
pub mod demo;
pub mod local_redis;
pub mod sentinel;
