//! The TRON node: its HTTP API client, the decoding of its JSON, and addresses.
pub mod address;
