//! `Agent::spawn` refuses a node whose largest frames its transport would
//! carry only by splitting them, naming both sizes.

use std::net::SocketAddr;
use std::num::NonZeroUsize;

use gossip_agent::testing::{Faults, Faulty, MemoryNetwork};
use gossip_agent::{Agent, AgentConfig, AgentError, Transport};
use gossip_core::{Config, Generation, Node, NodeId};
use gossip_transport_quic::{ClusterCa, QuicConfig, QuicTransport, DATAGRAM_BUDGET};

use crate::common;
use common::addr;

fn node_with_max_message(at: SocketAddr, max_message_size: usize) -> Node {
    let mut config = Config::lan(8);
    config.max_message_size = NonZeroUsize::new(max_message_size).unwrap();
    Node::new(config, NodeId::new(at), Generation(1), 1).unwrap()
}

fn spawn(max_message_size: usize, transport: impl Transport + 'static) -> Result<(), AgentError> {
    let node = node_with_max_message(transport.local_addr(), max_message_size);
    Agent::spawn(node, transport, AgentConfig::default()).map(|_| ())
}

/// The refusal names the node's size and the transport's, as numbers and
/// in the message.
fn assert_would_fragment(result: Result<(), AgentError>, node: usize, unfragmented: usize) {
    let error = result.expect_err("spawn must refuse");
    let message = error.to_string();
    assert!(
        matches!(error, AgentError::WouldFragment { node: n, unfragmented: u } if n == node && u == unfragmented),
        "unexpected error {error:?}"
    );
    assert!(
        message.contains(&node.to_string()) && message.contains(&unfragmented.to_string()),
        "message {message:?} names both sizes"
    );
}

/// A transport that sends 64 KiB frames but only 1100 bytes unfragmented.
fn memory_endpoint(network: &MemoryNetwork, i: usize) -> impl Transport + 'static {
    network
        .bind(addr(i), 64 * 1024)
        .unwrap()
        .with_unfragmented_frame_len(1100)
}

#[tokio::test]
async fn spawn_refuses_1400_byte_frames_on_a_transport_that_carries_1100_unfragmented() {
    let network = MemoryNetwork::new();
    assert_would_fragment(spawn(1400, memory_endpoint(&network, 0)), 1400, 1100);
}

#[tokio::test]
async fn spawn_accepts_frames_up_to_the_unfragmented_size() {
    let network = MemoryNetwork::new();
    spawn(1100, memory_endpoint(&network, 0)).expect("1100-byte frames fit");
}

#[tokio::test]
async fn the_fault_injector_and_boxes_report_the_wrapped_transports_size() {
    let network = MemoryNetwork::new();
    let faulty = Faulty::new(memory_endpoint(&network, 0), Faults::default(), 1).unwrap();
    assert_eq!(faulty.unfragmented_frame_len(), 1100);
    assert_would_fragment(spawn(1400, faulty), 1400, 1100);
    let boxed: Box<dyn Transport> = Box::new(memory_endpoint(&network, 1));
    assert_would_fragment(spawn(1400, boxed), 1400, 1100);
}

#[tokio::test]
async fn a_frame_the_transport_cannot_send_at_all_is_refused_as_too_large() {
    let network = MemoryNetwork::new();
    let transport = network.bind(addr(0), 512).unwrap();
    let refused = spawn(1400, transport).expect_err("spawn must refuse");
    assert!(matches!(
        refused,
        AgentError::FrameTooLarge {
            node: 1400,
            transport: 512
        }
    ));
}

async fn quic_endpoint() -> QuicTransport {
    let ca = ClusterCa::generate().unwrap();
    let identity = ca.issue(&["127.0.0.1".parse().unwrap()], &[]).unwrap();
    QuicTransport::bind(
        "127.0.0.1:0".parse().unwrap(),
        identity,
        QuicConfig::default(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn spawn_refuses_1400_byte_frames_over_quic_whose_datagrams_carry_1100() {
    assert_eq!(DATAGRAM_BUDGET, 1100);
    let transport = quic_endpoint().await;
    assert_eq!(transport.unfragmented_frame_len(), DATAGRAM_BUDGET);
    assert!(transport.max_frame_len() > 1400, "streams would carry it");
    assert_would_fragment(spawn(1400, transport), 1400, DATAGRAM_BUDGET);
}

#[tokio::test]
async fn a_quic_node_within_the_datagram_budget_spawns() {
    spawn(DATAGRAM_BUDGET, quic_endpoint().await).expect("frames fit a datagram");
}

#[tokio::test]
async fn udp_carries_its_whole_datagram_budget_unfragmented() {
    let transport = gossip_transport_udp::UdpTransport::bind("127.0.0.1:0".parse().unwrap(), 1400)
        .await
        .unwrap();
    assert_eq!(transport.unfragmented_frame_len(), 1400);
    spawn(1400, transport).expect("a 1400-byte budget carries 1400-byte frames");
}
