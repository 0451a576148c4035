//! `gossip-node`: the reference node's command-line entry point.
#![forbid(unsafe_code)]

use clap::Parser;
use gossip_node::agent_config::BadConfig;
use gossip_node::run_agent::LogFormat;

fn main() {
    let cli = gossip_node::cli::Cli::parse();
    // Logs go to stderr, filtered by RUST_LOG, so stdout stays clean for
    // reports and agent events.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.default_log_level()));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.log_format() {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    if let Err(error) = cli.run() {
        // One line: the error and its causes.
        eprintln!("error: {error:#}");
        // A configuration mistake exits 2, like a command-line one.
        let code = if error.downcast_ref::<BadConfig>().is_some() {
            2
        } else {
            1
        };
        std::process::exit(code);
    }
}
