//! Helpers shared by core's integration tests.

use std::net::SocketAddr;
use std::time::Instant;

use gossip_core::wire::{self, Message};
use gossip_core::{Aggregate, Node, Strategy, Transmit};

/// The origin of time for tests that drive nodes by hand.
#[allow(clippy::disallowed_methods)] // the test host, not the core, reads the clock once
pub fn base_instant() -> Instant {
    Instant::now()
}

/// Every frame `node` has queued, in order.
pub fn drain<S: Strategy, A: Aggregate>(node: &mut Node<S, A>) -> Vec<Transmit> {
    core::iter::from_fn(|| node.poll_transmit()).collect()
}

/// Answers, as the peer at `peer` would, the challenge `node` sent it (after
/// its join, or a claim naming it): a bare ack echoing the challenge,
/// framed by `frame` with the peer's header. Other frames the node queued
/// are drained.
pub fn answer_challenge<S: Strategy, A: Aggregate>(
    node: &mut Node<S, A>,
    now: Instant,
    peer: SocketAddr,
    frame: impl Fn(&Message) -> Vec<u8>,
) {
    let config = node.config().clone();
    let seq = core::iter::from_fn(|| node.poll_transmit())
        .filter(|t| t.to == peer)
        .find_map(|t| match wire::decode(&config, &t.bytes) {
            Ok((_, Message::Verify { seq })) => Some(seq),
            _ => None,
        })
        .expect("the node challenges the peer's address");
    let ack = Message::Ack {
        seq,
        updates: vec![],
    };
    node.handle_message(now, peer, &frame(&ack))
        .expect("the answer is taken");
}
