//! Three nodes over UDP in one process, on loopback ports the system picks:
//! they join, node 0 broadcasts, node 2 leaves gracefully and the others see
//! it leave. Every event is printed; the run ends by itself within seconds.
//!
//! ```sh
//! cargo run -p gossip-agent --example udp_cluster
//! ```

use std::error::Error;

use gossip_core::Config;
use gossip_transport_udp::{UdpTransport, DEFAULT_MAX_DATAGRAM};

#[path = "common/mod.rs"]
mod common;

const NODES: usize = 3;

/// Binds the sockets and runs the shared scenario on them.
pub async fn run() -> Result<common::Outcome, Box<dyn Error>> {
    let mut transports = Vec::new();
    for _ in 0..NODES {
        // Port 0: the system picks a free port, which becomes the node's id.
        transports.push(UdpTransport::bind("127.0.0.1:0".parse()?, DEFAULT_MAX_DATAGRAM).await?);
    }
    // Config::lan's frames are 1400 bytes, the UDP transport's default budget.
    common::join_broadcast_leave(transports, Config::lan(NODES)).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    run().await?.print(NODES);
    Ok(())
}
