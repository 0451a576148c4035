//! The `udp_cluster` example over QUIC: three nodes in one process on
//! loopback, each with a certificate issued in memory by one cluster root.
//! They join, node 0 broadcasts, node 2 leaves gracefully and the others see
//! it leave; the run ends by itself within seconds.
//!
//! ```sh
//! cargo run -p gossip-agent --example quic_cluster
//! ```

use std::error::Error;
use std::num::NonZeroUsize;

use gossip_core::Config;
use gossip_transport_quic::{ClusterCa, QuicConfig, QuicTransport, DATAGRAM_BUDGET};

#[path = "common/mod.rs"]
mod common;

const NODES: usize = 3;

/// Makes the cluster root, binds one endpoint per node with a certificate
/// for its address, and runs the shared scenario on them.
pub async fn run() -> Result<common::Outcome, Box<dyn Error>> {
    // Nothing touches the disk: the root and every node's key live in memory.
    let root = ClusterCa::generate()?;
    let mut transports = Vec::new();
    for _ in 0..NODES {
        // A certificate names the IP address its node is dialled at.
        let identity = root.issue(&["127.0.0.1".parse()?], &[])?;
        let transport =
            QuicTransport::bind("127.0.0.1:0".parse()?, identity, QuicConfig::default()).await?;
        transports.push(transport);
    }
    // Frames must fit one QUIC datagram, or the agent refuses the node.
    let mut config = Config::lan(NODES);
    config.max_message_size = NonZeroUsize::new(DATAGRAM_BUDGET).ok_or("empty budget")?;
    common::join_broadcast_leave(transports, config).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    run().await?.print(NODES);
    Ok(())
}
