//! Reference gossip node.
//!
//! The library holds the command-line front end: a first look at a cluster
//! at work ([`demo`]), simulator scenarios
//! (`gossip-node sim membership|dissemination|aggregation`), a node on real
//! sockets (`gossip-node agent`: [`run_agent`], its configuration
//! [`agent_config`] and [`data_dir`], control API [`api`], [`metrics`] and
//! broadcast [`envelope`]), the subcommands that talk to a running agent
//! ([`client`]), the loopback measurement (`gossip-node bench-net`), the
//! cluster of agents it measures ([`cluster`]) and the SVG figures of
//! `--plot` ([`plot`]). The driver that runs a node on a transport is
//! `gossip-agent`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent_config;
pub mod aggregation;
pub mod api;
pub mod api_kv;
pub mod api_leader;
pub mod api_partial;
pub mod bench_net;
pub mod bench_partial;
pub mod bench_tx;
pub mod blocks_sim;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod data_dir;
pub mod demo;
pub mod dissemination;
pub mod envelope;
pub mod keys;
pub mod kv_cmd;
pub mod kv_sim;
pub mod leader_sim;
pub mod metrics;
pub mod partial_sim;
pub mod plot;
pub mod run_agent;
pub mod run_partial;
pub mod stream_sim;

/// `docs/library-guide.md`, whose snippets run as doctests of this crate
/// (it depends on every crate they use).
#[cfg(doctest)]
#[doc = include_str!("../../docs/library-guide.md")]
pub struct LibraryGuide;
