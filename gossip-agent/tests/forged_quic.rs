//! A member with a valid certificate tries to speak for another over real
//! QUIC on loopback: the core refuses every frame whose `header.sender` is
//! not the certified peer's address, so the forged departure changes
//! nothing, while the same endpoint speaking for itself is answered.

use std::num::NonZeroUsize;
use std::time::Duration;

use gossip_agent::{Agent, AgentConfig, AgentHandle};
use gossip_core::wire::{self, Header, MemberRecord, Message, Status, PROTOCOL_VERSION};
use gossip_core::{Config, Generation, Incarnation, Liveness, Node, NodeId};
use gossip_transport::{Incoming, Transport};
use gossip_transport_quic::{ClusterCa, QuicConfig, QuicTransport, DATAGRAM_BUDGET};

async fn endpoint(ca: &ClusterCa) -> QuicTransport {
    let identity = ca.issue(&["127.0.0.1".parse().unwrap()], &[]).unwrap();
    QuicTransport::bind(
        "127.0.0.1:0".parse().unwrap(),
        identity,
        QuicConfig::default(),
    )
    .await
    .unwrap()
}

fn config() -> Config {
    let mut config = Config::lan(3);
    config.max_message_size = NonZeroUsize::new(DATAGRAM_BUDGET).unwrap();
    config
}

async fn agent(ca: &ClusterCa, seed: u64) -> AgentHandle {
    let transport = endpoint(ca).await;
    let id = NodeId::new(transport.local_addr());
    let node = Node::new(config(), id, Generation(1), seed).unwrap();
    Agent::spawn(node, transport, AgentConfig::default()).unwrap()
}

async fn alive(agent: &AgentHandle, who: NodeId) -> bool {
    agent
        .members()
        .await
        .unwrap()
        .iter()
        .any(|m| m.id == who && m.liveness == Liveness::Alive)
}

fn frame(sender: NodeId, message: &Message) -> Vec<u8> {
    let header = Header {
        version: PROTOCOL_VERSION,
        label: "",
        sender,
        generation: Generation(1),
        incarnation: Incarnation(0),
    };
    wire::encode(&header, message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certified_member_cannot_speak_for_another_over_quic() {
    let ca = ClusterCa::generate().unwrap();
    let a = agent(&ca, 1).await;
    let b = agent(&ca, 2).await;
    a.join(vec![]).await.unwrap();
    b.join(vec![a.id()]).await.unwrap();
    let b_id = NodeId::new(b.id());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !alive(&a, b_id).await {
        assert!(tokio::time::Instant::now() < deadline, "B never joined A");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // E holds a certificate from the same root, so its connection is
    // accepted; it sends B's departure in frames that name B as sender.
    let evil = endpoint(&ca).await;
    let departure = Message::Gossip {
        updates: vec![MemberRecord {
            id: b_id,
            generation: Generation(1),
            incarnation: Incarnation(u32::MAX),
            status: Status::Left,
        }],
    };
    for _ in 0..5 {
        evil.send(a.id(), &frame(b_id, &departure)).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let refused = a.stats().await.unwrap().refused;
        if refused.get("sender_mismatch").copied().unwrap_or(0) >= 5 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "forged frames not refused: {refused:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(alive(&a, b_id).await, "a forged departure removed B");

    // The same endpoint speaking for itself is heard: its join draws a
    // challenge from A.
    let evil_id = NodeId::new(evil.local_addr());
    evil.send(
        a.id(),
        &frame(
            evil_id,
            &Message::Join {
                nonce: 0,
                metadata: vec![],
            },
        ),
    )
    .await
    .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Incoming::Frame { from, bytes }) = evil.recv().await {
                if from == a.id() {
                    return bytes;
                }
            }
        }
    })
    .await
    .expect("A answers a join from the certified address");
    let (_, message) = wire::decode(&config(), &answer).unwrap();
    assert!(matches!(message, Message::Verify { .. }), "{message:?}");
}
