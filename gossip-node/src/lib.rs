//! Reference gossip node.
//!
//! The library holds the generic tokio driver ([`agent::Agent`]) that runs a
//! `gossip-core` node over any [`Transport`](gossip_core::Transport), an
//! in-memory network and a fault-injecting wrapper for tests
//! ([`transport`]), and the command-line front end: simulator scenarios
//! (`gossip-node sim membership|dissemination|aggregation`), a node on real
//! sockets (`gossip-node agent`) and the loopback measurement
//! (`gossip-node bench-net`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod aggregation;
pub mod bench_net;
pub mod cli;
pub mod cluster;
pub mod dissemination;
pub mod keys;
pub mod run_agent;
pub mod transport;
