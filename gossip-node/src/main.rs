//! `gossip-node`: the reference node's command-line entry point.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> anyhow::Result<()> {
    // Logs go to stderr, filtered by RUST_LOG (default: warnings only), so
    // stdout stays clean for reports and agent events.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    gossip_node::cli::Cli::parse().run()
}
