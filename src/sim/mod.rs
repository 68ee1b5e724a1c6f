//! The simulated TRON node.
