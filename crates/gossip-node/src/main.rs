//! `gossip-node`: the reference node's command-line entry point.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> anyhow::Result<()> {
    gossip_node::cli::Cli::parse().run()
}
