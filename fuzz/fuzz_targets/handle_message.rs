//! Fuzzes `Node::handle_message` with one arbitrary frame.
//!
//! Setup (identical for every input): a node founds a cluster (`join` with no
//! seeds) and learns a few members from valid frames encoded with
//! `gossip_core::wire::encode`: a `Join` from two peers, then a `Gossip` that
//! introduces a third peer and marks it suspect. The fuzz input is then fed as
//! one frame from the first peer's address, and the node's timers are run a
//! few times afterwards so that whatever the frame scheduled also executes.
//!
//! Checks:
//! - nothing panics (including gossip-core's debug assertions);
//! - if `handle_message` returns `Err`, nothing observable changed except the
//!   `recv_errors` counter: `members()`, `live_member_count()`, the other
//!   stats, `poll_timeout()`, the view hash, and no transmit or event queued;
//! - every frame the node emits is at most `max_message_size` bytes and
//!   decodes with `wire::decode` under the node's own config (a node must
//!   never emit a frame it would itself reject), sent under its own id;
//! - the view stays consistent: the node itself first in `members()`, no
//!   duplicates, metadata within bounds, `live_member_count()` equal to the
//!   members listed alive or suspect;
//! - after `handle_timeout(now)`, `poll_timeout()` is `None` or later than
//!   `now`, and `handle_timeout` called before the deadline does nothing.
#![no_main]

use std::time::Duration;

use gossip_core::wire::{self, Header, MemberRecord, Message, Status, PROTOCOL_VERSION};
use gossip_core::{Config, Generation, Incarnation, Node, NodeId};
use gossip_core_fuzz::{
    addr, at, check_view, drain_events, drain_transmits, handle_checked, timeout_checked,
};
use libfuzzer_sys::fuzz_target;

fn frame(config: &Config, sender: u16, message: &Message) -> Vec<u8> {
    let header = Header {
        version: PROTOCOL_VERSION,
        label: &config.cluster_label,
        sender: NodeId::new(addr(sender)),
        generation: Generation(1),
        incarnation: Incarnation(0),
    };
    wire::encode(&header, message)
}

/// A running node that knows peers 1 and 2 (alive) and 3 (suspect).
fn taught_node() -> Node {
    let config = Config::default();
    let mut node = Node::new(config.clone(), NodeId::new(addr(0)), Generation(1), 42)
        .expect("default config is valid");
    let now = at(Duration::ZERO);
    node.join(now, &[]).expect("fresh node joins");
    for peer in [1, 2] {
        let join = frame(
            &config,
            peer,
            &Message::Join {
                metadata: vec![peer as u8; 4],
            },
        );
        handle_checked(&mut node, now, addr(peer), &join).expect("valid join is accepted");
        drain_transmits(&mut node);
    }
    let third = NodeId::new(addr(3));
    let record = |status| MemberRecord {
        id: third,
        generation: Generation(1),
        incarnation: Incarnation(0),
        status,
    };
    let gossip = frame(
        &config,
        2,
        &Message::Gossip {
            updates: vec![
                record(Status::Alive {
                    metadata: Vec::new(),
                }),
                record(Status::Suspect {
                    by: NodeId::new(addr(2)),
                }),
            ],
        },
    );
    handle_checked(&mut node, now, addr(2), &gossip).expect("valid gossip is accepted");
    drain_transmits(&mut node);
    drain_events(&mut node);
    assert_eq!(node.live_member_count(), 4);
    node
}

fuzz_target!(|data: &[u8]| {
    let mut node = taught_node();
    let now = at(Duration::from_millis(1));
    let _ = handle_checked(&mut node, now, addr(1), data);
    drain_transmits(&mut node);
    drain_events(&mut node);
    check_view(&node);
    // Run whatever the frame scheduled: an immediate tick, then the next few
    // deadlines (bounded, so each input stays cheap).
    let mut now = now;
    for _ in 0..8 {
        timeout_checked(&mut node, now);
        drain_transmits(&mut node);
        drain_events(&mut node);
        check_view(&node);
        match node.poll_timeout() {
            Some(next) => now = next,
            None => break,
        }
    }
});
