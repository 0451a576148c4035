//! Well-formed frames from lying senders: each rule of authority the node
//! keeps, tried by a forger. A lone node is driven by hand and fed frames
//! that name other members as their senders.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gossip_core::wire::{self, Header, Message, SyncEntry, PROTOCOL_VERSION};
use gossip_core::{Config, Event, Generation, Incarnation, Liveness, Node, NodeId, Transmit};

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 7946))
}

fn id(i: u8) -> NodeId {
    NodeId::new(addr(i))
}

#[allow(clippy::disallowed_methods)] // the test host, not the core, reads the clock once
fn base_instant() -> Instant {
    Instant::now()
}

/// A frame that claims to come from member `i`.
fn frame(i: u8, message: &Message) -> Vec<u8> {
    let header = Header {
        version: PROTOCOL_VERSION,
        label: "",
        sender: id(i),
        generation: Generation(1),
        incarnation: Incarnation(0),
    };
    wire::encode(&header, message)
}

fn join_frame(i: u8) -> Vec<u8> {
    frame(i, &Message::Join { metadata: vec![] })
}

fn drain(node: &mut Node) -> Vec<Transmit> {
    core::iter::from_fn(|| node.poll_transmit()).collect()
}

/// Node 1, founder of a cluster that members 2 and 3 joined (by frames
/// that claim to be theirs); outputs drained.
fn founder_with_two_members(now: Instant) -> Node {
    let mut node = Node::new(Config::default(), id(1), Generation(1), 5).unwrap();
    node.join(now, &[]).unwrap();
    for i in [2, 3] {
        node.handle_message(now, addr(i), &join_frame(i)).unwrap();
    }
    drain(&mut node);
    while node.poll_event().is_some() {}
    assert_eq!(node.live_member_count(), 3);
    node
}

/// Runs the node's timers until its next probe ping; returns the time, the
/// target and the ping's sequence number.
fn next_probe(node: &mut Node, mut now: Instant) -> (Instant, NodeId, u32) {
    for _ in 0..100 {
        now = node.poll_timeout().expect("a timer is armed").max(now);
        node.handle_timeout(now);
        for transmit in drain(node) {
            if let Ok((_, Message::Ping { seq, .. })) = wire::decode(node.config(), &transmit.bytes)
            {
                return (now, NodeId::new(transmit.to), seq);
            }
        }
    }
    panic!("no probe within 100 timers");
}

fn other_of(target: NodeId) -> u8 {
    if target == id(2) {
        3
    } else {
        2
    }
}

#[test]
fn an_ack_forged_by_a_member_other_than_the_target_does_not_save_the_target() {
    let mut now = base_instant();
    let mut node = founder_with_two_members(now);
    let (at, target, seq) = next_probe(&mut node, now);
    now = at;
    // The other member answers in the target's place, before any helper
    // was asked: it must not count.
    let liar = other_of(target);
    let ack = frame(
        liar,
        &Message::Ack {
            seq,
            updates: vec![],
        },
    );
    node.handle_message(now, addr(liar), &ack).unwrap();
    // The target stays silent through the probe's end.
    let end = now + node.config().probe_interval;
    while let Some(t) = node.poll_timeout().filter(|&t| t <= end) {
        node.handle_timeout(t);
        drain(&mut node);
    }
    assert_eq!(
        node.stats().probes_failed,
        1,
        "the forged ack did not count"
    );
    let suspected = core::iter::from_fn(|| node.poll_event())
        .any(|e| matches!(e, Event::MemberSuspect(m) if m.id == target));
    assert!(suspected, "the silent target is suspected");
}

#[test]
fn the_targets_own_ack_still_counts() {
    let now = base_instant();
    let mut node = founder_with_two_members(now);
    let (now, target, seq) = next_probe(&mut node, now);
    let i = target
        .addr()
        .ip()
        .to_string()
        .rsplit('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let ack = frame(
        i,
        &Message::Ack {
            seq,
            updates: vec![],
        },
    );
    node.handle_message(now, target.addr(), &ack).unwrap();
    let end = now + node.config().probe_interval;
    while let Some(t) = node.poll_timeout().filter(|&t| t <= end) {
        node.handle_timeout(t);
        drain(&mut node);
    }
    assert_eq!(node.stats().probes_failed, 0);
}

#[test]
fn a_probe_request_for_a_stranger_is_declined_and_sends_nothing() {
    let now = base_instant();
    let mut node = founder_with_two_members(now);
    let stranger = NodeId::new(SocketAddr::from(([10, 9, 9, 9], 7946)));
    let request = frame(
        2,
        &Message::PingReq {
            seq: 1,
            target: stranger,
            updates: vec![],
        },
    );
    let before = node.stats();
    node.handle_message(now, addr(2), &request)
        .expect("a well-formed request is taken, and declined");
    assert!(drain(&mut node).is_empty(), "no ping aimed at the stranger");
    assert_eq!(node.stats().indirect_pings_sent, before.indirect_pings_sent);
    assert_eq!(node.stats().probe_requests_declined, 1);
    // A request for a member is served.
    let request = frame(
        2,
        &Message::PingReq {
            seq: 2,
            target: id(3),
            updates: vec![],
        },
    );
    node.handle_message(now, addr(2), &request).unwrap();
    let sent = drain(&mut node);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, addr(3));
}

#[test]
fn only_a_seed_or_a_member_completes_a_join() {
    let now = base_instant();
    let mut node = Node::new(Config::default(), id(1), Generation(1), 5).unwrap();
    node.join(now, &[addr(2)]).unwrap();
    drain(&mut node);
    let view = |i: u8| {
        frame(
            i,
            &Message::Sync {
                reply: false,
                after: None,
                through: None,
                entries: vec![SyncEntry {
                    id: id(i),
                    generation: Generation(1),
                    incarnation: Incarnation(0),
                    liveness: Liveness::Alive,
                    metadata: vec![],
                }],
            },
        )
    };
    node.handle_message(now, addr(9), &view(9)).unwrap();
    assert!(!node.is_joined(), "a stranger's view does not end the join");
    // The join is retried, to the seed.
    let retry = now + node.config().join_retry_interval;
    node.handle_timeout(retry);
    assert!(drain(&mut node).iter().any(|t| t.to == addr(2)));
    node.handle_message(retry, addr(2), &view(2)).unwrap();
    assert!(node.is_joined(), "the seed's answer does");
}

#[test]
fn a_forged_ack_for_an_indirect_probe_is_not_forwarded() {
    let now = base_instant();
    let mut node = founder_with_two_members(now);
    let request = frame(
        2,
        &Message::PingReq {
            seq: 77,
            target: id(3),
            updates: vec![],
        },
    );
    node.handle_message(now, addr(2), &request).unwrap();
    let ping = drain(&mut node).pop().unwrap();
    let Ok((_, Message::Ping { seq, .. })) = wire::decode(node.config(), &ping.bytes) else {
        panic!("the helper pings the target");
    };
    // The requester itself claims the target answered.
    let forged = frame(
        2,
        &Message::Ack {
            seq,
            updates: vec![],
        },
    );
    node.handle_message(now, addr(2), &forged).unwrap();
    assert!(drain(&mut node).is_empty(), "nothing forwarded");
    // The target's own ack is forwarded to the requester.
    let real = frame(
        3,
        &Message::Ack {
            seq,
            updates: vec![],
        },
    );
    node.handle_message(now + Duration::from_millis(1), addr(3), &real)
        .unwrap();
    let forwarded = drain(&mut node);
    assert_eq!(forwarded.len(), 1);
    assert_eq!(forwarded[0].to, addr(2));
    match wire::decode(node.config(), &forwarded[0].bytes).unwrap().1 {
        Message::Ack { seq, .. } => assert_eq!(seq, 77),
        other => panic!("expected the forwarded ack, got {other:?}"),
    }
}
