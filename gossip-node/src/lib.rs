//! Reference gossip node.
//!
//! The library holds the command-line front end: simulator scenarios
//! (`gossip-node sim membership|dissemination|aggregation`), a node on real
//! sockets (`gossip-node agent`), the loopback measurement (`gossip-node
//! bench-net`), the cluster of agents it measures ([`cluster`]) and the SVG
//! figures of `--plot` ([`plot`]). The driver that runs a node on a
//! transport is `gossip-agent`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod aggregation;
pub mod bench_net;
pub mod cli;
pub mod cluster;
pub mod dissemination;
pub mod keys;
pub mod plot;
pub mod run_agent;
