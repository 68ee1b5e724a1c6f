//! The tron-actors supervision tree.
pub mod chain;
pub mod model;
