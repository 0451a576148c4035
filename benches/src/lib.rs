//! Fixtures shared by the criterion benchmarks: every strategy under a
//! stable name, and a node that already knows a cluster of a given size.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::time::Instant;

use gossip_core::wire::{self, Header, Message, SyncEntry, WireRumor, PROTOCOL_VERSION};
use gossip_core::Liveness;
use gossip_core::{Config, Generation, Incarnation, MessageId, Node, NodeId};
use gossip_sim::node_addr;
use gossip_strategies::{
    AntiEntropy, AnyStrategy, Central, Direct, Flood, Mode, RumorMongering, Termination,
};

/// Every strategy, with the name the benchmarks report it under.
pub fn all_strategies() -> Vec<(&'static str, AnyStrategy)> {
    let rumor = |mode| AnyStrategy::Rumor(RumorMongering::new(mode, Termination::FeedbackCoin, 2));
    vec![
        ("rumor-push", rumor(Mode::Push)),
        ("rumor-pull", rumor(Mode::Pull)),
        ("rumor-push-pull", rumor(Mode::PushPull)),
        (
            "anti-entropy-push",
            AnyStrategy::AntiEntropy(AntiEntropy::new(Mode::Push, 1)),
        ),
        (
            "anti-entropy-pull",
            AnyStrategy::AntiEntropy(AntiEntropy::new(Mode::Pull, 1)),
        ),
        (
            "anti-entropy-push-pull",
            AnyStrategy::AntiEntropy(AntiEntropy::new(Mode::PushPull, 1)),
        ),
        ("flood", AnyStrategy::Flood(Flood)),
        ("direct", AnyStrategy::Direct(Direct)),
        (
            "central",
            AnyStrategy::Central(Central {
                coordinator: NodeId::new(node_addr(0)),
            }),
        ),
    ]
}

fn header(sender: usize) -> Header<'static> {
    Header {
        version: PROTOCOL_VERSION,
        label: "",
        sender: NodeId::new(node_addr(sender)),
        generation: Generation(0),
        incarnation: Incarnation(0),
    }
}

/// Node 0 running `strategy`, already knowing members 1..`cluster`.
pub fn node_in_cluster(strategy: AnyStrategy, cluster: usize, now: Instant) -> Node<AnyStrategy> {
    let config = Config::lan(cluster);
    let mut node = Node::with_strategy(
        config,
        NodeId::new(node_addr(0)),
        Generation(0),
        7,
        strategy,
    )
    .expect("default config is valid");
    node.join(now, &[]).expect("fresh node");
    let members: Vec<SyncEntry> = (1..cluster)
        .map(|i| SyncEntry {
            id: NodeId::new(node_addr(i)),
            generation: Generation(0),
            incarnation: Incarnation(0),
            liveness: Liveness::Alive,
            metadata: Vec::new(),
        })
        .collect();
    for chunk in members.chunks(60) {
        let frame = wire::encode(
            &header(1),
            &Message::Sync {
                reply: false,
                nonce: 0,
                after: None,
                through: None,
                entries: chunk.to_vec(),
            },
        );
        node.handle_message(now, node_addr(1), &frame)
            .expect("valid sync");
    }
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
    assert_eq!(node.live_member_count(), cluster);
    node
}

/// A frame from member 1 carrying the rumor `sequence` with a 64-byte payload.
pub fn rumor_frame(sequence: u64) -> Vec<u8> {
    wire::encode(
        &header(1),
        &Message::Rumors {
            items: vec![WireRumor {
                id: MessageId {
                    origin: NodeId::new(node_addr(1)),
                    generation: 0,
                    sequence,
                },
                hops: 1,
                payload: vec![0x5a; 64],
            }],
        },
    )
}
