//! Aggregate shares carry their aggregate's type: a share from a node
//! running another aggregate is refused with a typed error and changes
//! nothing, where it used to be decoded as garbage.

use crate::common;

use std::net::SocketAddr;
use std::time::Instant;

use gossip_core::wire::{self, Header, Message, PROTOCOL_VERSION};
use gossip_core::{
    share_type, Aggregate, AggregateHost, Config, Generation, Incarnation, NoStrategy, Node,
    NodeId, RecvError,
};

/// An aggregate that keeps the last share it received as its estimate.
struct Last(Option<f64>);

impl Aggregate for Last {
    type Share = f64;
    const SHARE_TYPE: u32 = share_type("tests/last/1");

    fn on_round<H: AggregateHost<f64>>(&mut self, _host: &mut H) {}

    fn on_share<H: AggregateHost<f64>>(&mut self, _host: &mut H, _from: NodeId, share: f64) {
        self.0 = Some(share);
    }

    fn estimate(&self) -> Option<f64> {
        self.0
    }

    fn set_input(&mut self, _value: f64) {}
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A frame from the member at `addr(2)`.
fn frame(message: &Message) -> Vec<u8> {
    let header = Header {
        version: PROTOCOL_VERSION,
        label: "",
        sender: NodeId::new(addr(2)),
        generation: Generation(1),
        incarnation: Incarnation(0),
    };
    wire::encode(&header, message)
}

/// A share frame from a lying member, claiming `claimed` as its type.
fn share_frame(claimed: u32, value: f64) -> Vec<u8> {
    let share = postcard::to_allocvec(&value).unwrap();
    frame(&Message::Aggregate {
        share_type: claimed,
        share,
    })
}

#[test]
#[allow(clippy::disallowed_methods)] // an arbitrary origin; only differences matter
fn a_share_of_another_type_is_refused_and_changes_nothing() {
    let now = Instant::now();
    let mut node = Node::with_parts(
        Config::default(),
        NodeId::new(addr(1)),
        Generation(1),
        1,
        NoStrategy,
        Last(None),
    )
    .unwrap();
    node.join(now, &[]).unwrap();
    // Shares count only from members: the sender joins first.
    node.handle_message(
        now,
        addr(2),
        &frame(&Message::Join {
            nonce: 0,
            metadata: vec![],
        }),
    )
    .unwrap();
    common::answer_challenge(&mut node, now, addr(2), frame);
    while node.poll_transmit().is_some() {}

    let foreign = share_type("tests/other/1");
    assert_eq!(
        node.handle_message(now, addr(2), &share_frame(foreign, 7.0)),
        Err(RecvError::ShareTypeMismatch {
            expected: Last::SHARE_TYPE,
            got: foreign,
        })
    );
    assert_eq!(node.estimate(), None, "the foreign share was not applied");
    assert_eq!(node.stats().shares_received, 0);
    assert_eq!(node.stats().recv_errors, 1);

    node.handle_message(now, addr(2), &share_frame(Last::SHARE_TYPE, 7.0))
        .expect("a share of our own type is taken");
    assert_eq!(node.estimate(), Some(7.0));
    assert_eq!(node.stats().shares_received, 1);

    // A share of the right type from a stranger is ignored.
    let stranger = wire::encode(
        &Header {
            version: PROTOCOL_VERSION,
            label: "",
            sender: NodeId::new(addr(3)),
            generation: Generation(1),
            incarnation: Incarnation(0),
        },
        &Message::Aggregate {
            share_type: Last::SHARE_TYPE,
            share: postcard::to_allocvec(&-1.0f64).unwrap(),
        },
    );
    node.handle_message(now, addr(3), &stranger).unwrap();
    assert_eq!(
        node.estimate(),
        Some(7.0),
        "a stranger's share changes nothing"
    );
    assert_eq!(node.stats().claims_ignored, 1);
}

#[test]
#[allow(clippy::disallowed_methods)]
fn a_node_without_aggregate_refuses_shares() {
    let now = Instant::now();
    let mut node = Node::new(Config::default(), NodeId::new(addr(1)), Generation(1), 1).unwrap();
    node.join(now, &[]).unwrap();
    assert!(matches!(
        node.handle_message(now, addr(2), &share_frame(Last::SHARE_TYPE, 1.0)),
        Err(RecvError::ShareTypeMismatch { expected: 0, .. })
    ));
}

#[test]
fn share_type_names_differ() {
    assert_ne!(share_type("a/1"), share_type("a/2"));
    assert_ne!(
        share_type(""),
        0,
        "no name maps to the no-aggregate type by accident"
    );
}
