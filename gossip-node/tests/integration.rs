//! The crate's integration tests, built as one binary: one link of the
//! dependency graph instead of one per file keeps the test build short.
//! Run one file's tests with `cargo test -p gossip-node --test integration FILE::`.

mod adversary;
mod agent_api;
mod agent_cli;
mod cli;
mod common;
mod demo_cli;
mod fetch_loopback;
mod forged_udp;
mod kv_agents;
mod leader_cli;
mod loopback;
mod netns;
mod partial_agents;
mod plot_cli;
mod seal_cli;
mod signing_cli;
mod status_page;
mod tx_agents;
