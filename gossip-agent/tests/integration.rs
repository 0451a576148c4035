//! The crate's integration tests, built as one binary: one link of the
//! dependency graph instead of one per file keeps the test build short.
//! Run one file's tests with `cargo test -p gossip-agent --test integration FILE::`.

mod agent;
mod apps;
mod common;
mod examples;
mod forged_quic;
mod frame_budget;
mod handle;
mod partial;
