//! The crate's integration tests, built as one binary: one link of the
//! dependency graph instead of one per file keeps the test build short.
//! Run one file's tests with `cargo test -p gossip-core --test integration FILE::`.

mod bad_input;
mod behaviour;
mod cold_start;
mod common;
mod contact;
mod forged;
mod fuzz_regressions;
mod partial;
mod proptest_wire;
mod rumor_forgery;
mod share_type;
