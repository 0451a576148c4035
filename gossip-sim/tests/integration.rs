//! The crate's integration tests, built as one binary: one link of the
//! dependency graph instead of one per file keeps the test build short.
//! Run one file's tests with `cargo test -p gossip-sim --test integration FILE::`.

mod adversary;
mod apps;
mod blocks;
mod kv;
mod leader;
mod partial;
mod plumtree;
mod scenarios;
