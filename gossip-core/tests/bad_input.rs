//! Hostile and malformed input to `Node::handle_message`, and early ticks.
//!
//! Every refused frame must return its specific `RecvError`, count one
//! `recv_errors`, and leave everything else exactly as it was: the member list,
//! the other counters, the next deadline, and the (empty) transmit and event
//! queues.

use crate::common;
use crate::common::base_instant;

use std::time::Duration;

use gossip_core::wire::{self, Header, Message, PROTOCOL_VERSION};
use gossip_core::{Config, Generation, Incarnation, Node, NodeId, RecvError};
use gossip_sim::check::Snapshot;
use gossip_sim::node_addr as addr;
use gossip_sim::{LinkModel, Simulator};

type Sim = Simulator;

/// Identity of node `i`.
fn id(i: usize) -> NodeId {
    NodeId::new(addr(i))
}

/// Everything observable about `node`.
fn snapshot(node: &Node) -> Snapshot {
    Snapshot::of(node)
}

/// Nodes with `config`, generation 1, node `i` seeded with `node_seeds[i]`,
/// 1 ms links, every frame recorded, node 0 founding and the others joining
/// through it.
fn started(config: &Config, node_seeds: &[u64]) -> Sim {
    let mut sim = Simulator::builder(node_seeds.len(), config.clone())
        .link(LinkModel::fixed(Duration::from_millis(1)))
        .node_seeds(node_seeds.iter().copied())
        .first_generation(1)
        .record(true)
        .build();
    sim.start_all();
    sim
}

/// A converged 3-node cluster, quiet at the moment of return (all outputs drained).
fn cluster() -> Sim {
    let mut sim = started(&Config::default(), &[7, 8, 9]);
    let at = sim.run_until_cond(Duration::from_secs(10), &mut (), |s| s.all_running_see(3));
    assert!(at.is_some(), "cluster converges");
    sim.run_until(Duration::from_secs(6), &mut ());
    sim
}

/// The last ping `from` sent to `to`, as encoded bytes.
fn last_ping(sim: &Sim, config: &Config, from: usize, to: usize) -> Vec<u8> {
    sim.frames()
        .iter()
        .rev()
        .filter(|s| s.from == addr(from) && s.to == addr(to))
        .find(|s| {
            matches!(
                wire::decode(config, &s.bytes),
                Ok((_, Message::Ping { .. }))
            )
        })
        .map(|s| s.bytes.clone())
        .expect("a ping was sent")
}

/// Feeds `bytes` to node 0 of `sim` as if from node 1, expects `expected`,
/// and checks that only the error counter moved.
fn refused(sim: &mut Sim, bytes: &[u8], expected: RecvError) {
    let now = sim.instant(sim.now());
    let node = sim.node_mut(0).unwrap();
    assert_eq!(node.poll_transmit(), None, "queues start empty");
    assert_eq!(node.poll_event(), None, "queues start empty");
    let before = snapshot(node);
    assert_eq!(
        node.handle_message(now, addr(1), bytes),
        Err(expected.clone())
    );
    let mut after = snapshot(node);
    assert_eq!(
        after.stats.recv_errors,
        before.stats.recv_errors + 1,
        "{expected:?} counted once"
    );
    after.stats.recv_errors = before.stats.recv_errors;
    assert_eq!(after, before, "{expected:?} changed state");
    assert_eq!(
        node.poll_transmit(),
        None,
        "{expected:?} produced a transmit"
    );
    assert_eq!(node.poll_event(), None, "{expected:?} produced an event");
}

#[test]
fn a_valid_ping_is_accepted_so_the_fixture_is_meaningful() {
    let mut sim = cluster();
    let config = sim.node(0).unwrap().config().clone();
    let ping = last_ping(&sim, &config, 1, 0);
    let now = sim.instant(sim.now());
    let frames = sim.node(0).unwrap().stats().frames_received;
    assert_eq!(
        sim.node_mut(0).unwrap().handle_message(now, addr(1), &ping),
        Ok(())
    );
    assert_eq!(sim.node(0).unwrap().stats().frames_received, frames + 1);
    let ack = sim
        .node_mut(0)
        .unwrap()
        .poll_transmit()
        .expect("a ping is acked");
    assert_eq!(ack.to, addr(1));
    assert!(matches!(
        wire::decode(&config, &ack.bytes),
        Ok((_, Message::Ack { .. }))
    ));
}

#[test]
fn empty_and_garbage_frames_are_refused() {
    let mut sim = cluster();
    refused(&mut sim, &[], RecvError::Empty);
    // Right version byte, then a label length varint that never terminates.
    let mut garbage = vec![PROTOCOL_VERSION];
    garbage.extend([0xff; 40]);
    let now = sim.instant(sim.now());
    let err = sim
        .node_mut(0)
        .unwrap()
        .handle_message(now, addr(1), &garbage);
    assert!(matches!(err, Err(RecvError::Malformed(_))), "{err:?}");
    // Now check the state invariants too, with the exact error.
    refused(&mut sim, &garbage, err.unwrap_err());
    // Printable junk: its first byte is not a protocol version.
    refused(
        &mut sim,
        b"GET / HTTP/1.1\r\n\r\n",
        RecvError::UnsupportedVersion(b'G'),
    );
}

#[test]
fn truncated_frames_are_refused() {
    let mut sim = cluster();
    let config = sim.node(0).unwrap().config().clone();
    let ping = last_ping(&sim, &config, 1, 0);
    refused(
        &mut sim,
        &ping[..ping.len() - 1],
        RecvError::Malformed("truncated"),
    );
    refused(&mut sim, &ping[..1], RecvError::Malformed("truncated"));
    refused(
        &mut sim,
        &ping[..ping.len() / 2],
        RecvError::Malformed("truncated"),
    );
}

#[test]
fn trailing_bytes_are_refused() {
    let mut sim = cluster();
    let config = sim.node(0).unwrap().config().clone();
    let ping = last_ping(&sim, &config, 1, 0);
    let mut one_more = ping.clone();
    one_more.push(0);
    refused(&mut sim, &one_more, RecvError::TrailingBytes(1));
    let mut three_more = ping;
    three_more.extend([1, 2, 3]);
    refused(&mut sim, &three_more, RecvError::TrailingBytes(3));
}

#[test]
fn oversized_frames_are_refused_before_decoding() {
    let mut sim = cluster();
    let config = sim.node(0).unwrap().config().clone();
    let max = config.max_message_size.get();
    let mut big = last_ping(&sim, &config, 1, 0);
    big.resize(max + 1, 0);
    refused(&mut sim, &big, RecvError::TooLarge { len: max + 1, max });
    // Even a frame that is garbage all the way is refused for its size first.
    refused(
        &mut sim,
        &vec![0xff; 64 * 1024],
        RecvError::TooLarge {
            len: 64 * 1024,
            max,
        },
    );
}

#[test]
fn other_protocol_versions_are_refused() {
    let mut sim = cluster();
    let config = sim.node(0).unwrap().config().clone();
    let ping = last_ping(&sim, &config, 1, 0);
    for version in [0, PROTOCOL_VERSION + 1, 0xff] {
        let mut frame = ping.clone();
        frame[0] = version;
        refused(&mut sim, &frame, RecvError::UnsupportedVersion(version));
    }
}

#[test]
fn frames_from_another_cluster_are_refused() {
    // A second cluster labelled differently, run until one of its nodes pings.
    let mut other_config = Config::default();
    other_config.cluster_label = "other-cluster".into();
    let mut other = started(&other_config, &[11, 12]);
    other.run_until(Duration::from_secs(5), &mut ());
    let foreign = last_ping(&other, &other_config, 1, 0);
    assert!(
        wire::decode(&other_config, &foreign).is_ok(),
        "valid in its own cluster"
    );

    let mut sim = cluster();
    refused(&mut sim, &foreign, RecvError::WrongCluster);
}

#[test]
fn frames_claiming_to_come_from_the_receiver_are_refused() {
    let mut sim = cluster();
    let config = sim.node(0).unwrap().config().clone();
    // Node 0's own ping, reflected back at it.
    let own = last_ping(&sim, &config, 0, 1);
    refused(&mut sim, &own, RecvError::FromSelf);
    // A forged frame naming node 0 as sender, with a newer incarnation.
    let forged = wire::encode(
        &Header {
            version: PROTOCOL_VERSION,
            label: "",
            sender: id(0),
            generation: Generation(1),
            incarnation: Incarnation(99),
        },
        &Message::Join {
            nonce: 0,
            metadata: Vec::new(),
        },
    );
    refused(&mut sim, &forged, RecvError::FromSelf);
}

#[test]
fn oversized_metadata_is_refused() {
    let mut sim = cluster();
    let max = sim.node(0).unwrap().config().max_metadata_len;
    let frame = wire::encode(
        &Header {
            version: PROTOCOL_VERSION,
            label: "",
            sender: id(9),
            generation: Generation(1),
            incarnation: Incarnation(0),
        },
        &Message::Join {
            nonce: 0,
            metadata: vec![b'x'; max + 1],
        },
    );
    refused(
        &mut sim,
        &frame,
        RecvError::MetadataTooLong { len: max + 1, max },
    );
    assert!(
        sim.view_of(0, 9).is_none(),
        "the would-be joiner was not added"
    );
}

#[test]
fn departed_node_refuses_everything() {
    let mut sim = cluster();
    let config = sim.node(0).unwrap().config().clone();
    let ping = last_ping(&sim, &config, 1, 0);
    sim.command(0, |n, now| n.leave(now), &mut ())
        .expect("running")
        .expect("leave");
    // Drain what leaving queued (the announcement) so the queues are empty.
    let node = sim.node_mut(0).unwrap();
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
    refused(&mut sim, &ping, RecvError::Departed);
}

#[test]
fn early_handle_timeout_does_nothing() {
    let base = base_instant();
    let config = Config::default();
    let mut node = Node::new(config.clone(), id(0), Generation(1), 5).expect("valid");
    // Before join there is no deadline, and ticking does nothing.
    assert_eq!(node.poll_timeout(), None);
    node.handle_timeout(base + Duration::from_secs(100));
    assert_eq!(node.poll_transmit(), None);

    node.join(base, &[addr(1)]).expect("join");
    let join = node.poll_transmit().expect("join request");
    assert_eq!(join.to, addr(1));
    assert_eq!(node.poll_transmit(), None);
    let deadline = node.poll_timeout().expect("timers armed");
    assert!(deadline > base);
    let stats = node.stats();

    // Every instant strictly before the deadline is early.
    for early in [
        base,
        base + (deadline - base) / 2,
        deadline - Duration::from_nanos(1),
    ] {
        node.handle_timeout(early);
        assert_eq!(
            node.poll_transmit(),
            None,
            "tick at {:?} sent",
            early - base
        );
        assert_eq!(node.poll_event(), None);
        assert_eq!(node.poll_timeout(), Some(deadline));
        assert_eq!(node.stats(), stats);
    }
    // At the deadline something is due, and the deadline moves on.
    node.handle_timeout(deadline);
    assert_ne!(node.poll_timeout(), Some(deadline));
}

#[test]
fn early_ticks_in_a_running_cluster_send_nothing() {
    let mut sim = cluster();
    for i in 0..3 {
        let now = sim.instant(sim.now());
        let deadline = sim
            .node(i)
            .unwrap()
            .poll_timeout()
            .expect("running nodes have timers");
        assert!(deadline > now, "the harness leaves no overdue timer");
        let before = snapshot(sim.node(i).unwrap());
        sim.node_mut(i).unwrap().handle_timeout(now);
        assert_eq!(sim.node_mut(i).unwrap().poll_transmit(), None, "node {i}");
        assert_eq!(sim.node_mut(i).unwrap().poll_event(), None, "node {i}");
        assert_eq!(snapshot(sim.node(i).unwrap()), before, "node {i}");
    }
}

#[test]
fn invalid_config_is_refused_at_construction() {
    let mut config = Config::default();
    config.probe_timeout = config.probe_interval;
    assert!(Node::new(config, id(0), Generation(1), 1).is_err());
    let mut config = Config::default();
    config.max_metadata_len = 60_000;
    config.max_message_size = std::num::NonZeroUsize::new(1400).expect("non-zero");
    assert!(matches!(
        Node::new(config, id(0), Generation(1), 1),
        Err(gossip_core::ConfigError::MessageTooSmall { .. })
    ));
}

#[test]
fn scoped_ipv6_identity_is_refused_at_construction() {
    use gossip_core::{Config, ConfigError, Generation, Node, NodeId};
    use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
    // The wire carries address and port only, so a scope id would be lost.
    let scoped = SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
        7000,
        0,
        3,
    ));
    let refused = Node::new(Config::default(), NodeId::new(scoped), Generation(1), 1);
    assert!(matches!(refused, Err(ConfigError::UnsupportedAddress(a)) if a == scoped));
    let plain = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 7000, 0, 0));
    assert!(Node::new(Config::default(), NodeId::new(plain), Generation(1), 1).is_ok());
}

#[test]
fn a_death_claim_at_the_last_incarnation_is_survived_as_a_new_generation() {
    use gossip_core::wire::{self, Header, MemberRecord, Message, Status, PROTOCOL_VERSION};
    use gossip_core::{Config, Generation, Incarnation, Node, NodeId};
    let me = addr(0);
    let now = base_instant();
    let mut node = Node::new(Config::default(), NodeId::new(me), Generation(5), 1).unwrap();
    node.join(now, &[]).unwrap();
    let from_member = |message: &Message| {
        wire::encode(
            &Header {
                version: PROTOCOL_VERSION,
                label: "",
                sender: id(1),
                generation: Generation(1),
                incarnation: Incarnation(0),
            },
            message,
        )
    };
    let join = from_member(&Message::Join {
        nonce: 0,
        metadata: vec![],
    });
    node.handle_message(now, addr(1), &join).unwrap();
    common::answer_challenge(&mut node, now, addr(1), from_member);
    // Incarnations saturate: Alive(MAX) could never outrank Dead(MAX), so
    // without a way out this claim, by a member, would be permanent.
    let forged = from_member(&Message::Gossip {
        updates: vec![MemberRecord {
            id: NodeId::new(me),
            generation: Generation(5),
            incarnation: Incarnation(u32::MAX),
            status: Status::Dead { by: id(1) },
        }],
    });
    node.handle_message(now, addr(1), &forged).unwrap();
    let own = node.members().next().unwrap();
    assert_eq!(own.generation, Generation(6), "moved on to the next life");
    assert_eq!(own.incarnation, Incarnation(0));
    assert_eq!(node.stats().refutations, 1);
}
