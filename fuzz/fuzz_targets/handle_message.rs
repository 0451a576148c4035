//! Fuzzes `Node::handle_message` with one arbitrary frame.
//!
//! The node runs alone in gossip-sim's simulator under `Drive::Manual` (the
//! target moves the clock and fires the timers), whose `check` module holds
//! the checks below.
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

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use gossip_core::wire::{self, Header, MemberRecord, Message, Status, PROTOCOL_VERSION};
use gossip_core::{Config, Generation, Incarnation, NodeId};
use gossip_sim::check::{check_view, handle_checked, timeout_checked, Invariants};
use gossip_sim::{Addressing, Drive, Simulator};
use libfuzzer_sys::fuzz_target;

/// Node `i` at `127.0.0.1:(7000 + i)`; only node 0 runs, the others are
/// peers it learns about from frames.
const ADDRESSING: Addressing = Addressing::Ports {
    ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
    first_port: 7000,
};

fn frame(config: &Config, sender: usize, message: &Message) -> Vec<u8> {
    let header = Header {
        version: PROTOCOL_VERSION,
        label: &config.cluster_label,
        sender: NodeId::new(ADDRESSING.addr(sender)),
        generation: Generation(1),
        incarnation: Incarnation(0),
    };
    wire::encode(&header, message)
}

/// Hands `bytes` to node 0 as if from `peer`, checking a refusal changed
/// nothing; frames and events it causes go through `checks`.
fn feed(
    sim: &mut Simulator,
    checks: &mut Invariants,
    peer: usize,
    bytes: &[u8],
) -> Result<(), gossip_core::RecvError> {
    let from = ADDRESSING.addr(peer);
    sim.command(
        0,
        |node, now| handle_checked(node, now, from, bytes),
        checks,
    )
    .expect("node 0 runs")
}

/// Answers, as `peer`, the last challenge node 0 sent it: a new member is
/// admitted only on its own answer.
fn answer_challenge(sim: &mut Simulator, checks: &mut Invariants, config: &Config, peer: usize) {
    let to = ADDRESSING.addr(peer);
    let seq = sim
        .frames()
        .iter()
        .rev()
        .filter(|f| f.to == to)
        .find_map(|f| match wire::decode(config, &f.bytes) {
            Ok((_, Message::Verify { seq })) => Some(seq),
            _ => None,
        })
        .expect("node 0 challenges the peer");
    let ack = frame(
        config,
        peer,
        &Message::Ack {
            seq,
            updates: Vec::new(),
        },
    );
    feed(sim, checks, peer, &ack).expect("the answer is accepted");
}

/// A one-node simulation whose node runs and knows peers 1 and 2 (alive)
/// and 3 (suspect); the caller delivers and ticks.
fn taught_node() -> (Simulator, Invariants) {
    let config = Config::default();
    let mut sim = Simulator::builder(1, config.clone())
        .addressing(ADDRESSING)
        .node_seeds([42])
        .first_generation(1)
        .drive(Drive::Manual)
        // The setup reads node 0's challenges from the trace.
        .record(true)
        .build();
    let mut checks = Invariants::new(config.clone(), ADDRESSING);
    sim.command(0, |node, now| node.join(now, &[]), &mut checks)
        .expect("node 0 runs")
        .expect("fresh node joins");
    for peer in [1, 2] {
        let join = frame(
            &config,
            peer,
            &Message::Join {
                nonce: 0,
                metadata: vec![peer as u8; 4],
            },
        );
        feed(&mut sim, &mut checks, peer, &join).expect("valid join is accepted");
        answer_challenge(&mut sim, &mut checks, &config, peer);
    }
    let third = NodeId::new(ADDRESSING.addr(3));
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
                    by: NodeId::new(ADDRESSING.addr(2)),
                }),
            ],
        },
    );
    feed(&mut sim, &mut checks, 2, &gossip).expect("valid gossip is accepted");
    // Member 2 vouched for 3, which proves its address before it counts.
    answer_challenge(&mut sim, &mut checks, &config, 3);
    feed(&mut sim, &mut checks, 2, &gossip).expect("valid gossip is accepted");
    assert_eq!(sim.node(0).expect("running").live_member_count(), 4);
    (sim, checks)
}

fuzz_target!(|data: &[u8]| {
    let (mut sim, mut checks) = taught_node();
    sim.run_until(Duration::from_millis(1), &mut checks);
    let _ = feed(&mut sim, &mut checks, 1, data);
    check_view(sim.node(0).expect("running"));
    // Run whatever the frame scheduled: an immediate tick, then the next few
    // deadlines (bounded, so each input stays cheap).
    for _ in 0..8 {
        sim.command(0, timeout_checked, &mut checks);
        check_view(sim.node(0).expect("running"));
        match sim.next_deadline() {
            Some(next) => sim.run_until(next, &mut checks),
            None => break,
        }
    }
});
