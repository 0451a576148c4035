//! Well-formed frames from lying senders: each rule of authority the node
//! keeps, tried by a forger. A lone node is driven by hand and fed frames
//! that name other members as their senders.

use crate::common;
use crate::common::{base_instant, drain};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gossip_core::wire::{self, Header, MemberRecord, Message, Status, SyncEntry, PROTOCOL_VERSION};
use gossip_core::{Config, Event, Generation, Incarnation, Liveness, Node, NodeId};

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 7946))
}

fn id(i: u8) -> NodeId {
    NodeId::new(addr(i))
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
    frame(
        i,
        &Message::Join {
            nonce: 0,
            metadata: vec![],
        },
    )
}

/// Node 1, founder of a cluster that members 2 and 3 joined (by frames
/// that claim to be theirs); outputs drained.
fn founder_with_two_members(now: Instant) -> Node {
    founder_with(Config::default(), now)
}

/// The same under `config`.
fn founder_with(config: Config, now: Instant) -> Node {
    let mut node = Node::new(config, id(1), Generation(1), 5).unwrap();
    node.join(now, &[]).unwrap();
    for i in [2, 3] {
        node.handle_message(now, addr(i), &join_frame(i)).unwrap();
        common::answer_challenge(&mut node, now, addr(i), |m| frame(i, m));
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
                nonce: 0,
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
fn a_strangers_probes_do_not_end_a_join_but_a_proven_members_do() {
    let now = base_instant();
    let mut node = Node::new(Config::default(), id(1), Generation(1), 5).unwrap();
    node.join(now, &[addr(2)]).unwrap();
    drain(&mut node);
    let ping = |i: u8| {
        frame(
            i,
            &Message::Ping {
                seq: 7,
                view_hash: [0; 4],
                updates: vec![],
            },
        )
    };
    let gossip = frame(9, &Message::Gossip { updates: vec![] });
    node.handle_message(now, addr(9), &ping(9)).unwrap();
    node.handle_message(now, addr(9), &gossip).unwrap();
    assert!(!node.is_joined(), "a stranger's ping or gossip does not");
    let sent = drain(&mut node);
    assert!(
        sent.iter().all(|t| !matches!(
            wire::decode(node.config(), &t.bytes),
            Ok((_, Message::Verify { .. }))
        )),
        "while its seed's answer is awaited, a stranger draws no challenge"
    );
    // Once the node stops waiting for its seed, a stranger's ping draws a
    // challenge; once it has answered it is a member, and a member probing
    // us holds us as one.
    let later = now + node.config().seed_answer_wait;
    node.handle_timeout(later);
    drain(&mut node);
    node.handle_message(later, addr(9), &ping(9)).unwrap();
    common::answer_challenge(&mut node, later, addr(9), |m| frame(9, m));
    node.handle_message(later, addr(9), &ping(9)).unwrap();
    assert!(node.is_joined(), "a proven member's ping does");
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

// ----- authority over membership claims ---------------------------------

/// What the node holds of member `i`.
fn held(node: &Node, i: u8) -> Option<gossip_core::Member> {
    node.members().find(|m| m.id == id(i))
}

fn record(i: u8, generation: u64, incarnation: u32, status: Status) -> MemberRecord {
    MemberRecord {
        id: id(i),
        generation: Generation(generation),
        incarnation: Incarnation(incarnation),
        status,
    }
}

fn gossip(from: u8, updates: Vec<MemberRecord>) -> Vec<u8> {
    frame(from, &Message::Gossip { updates })
}

/// Runs the node's timers up to `until`, dropping what it sends.
fn run_until(node: &mut Node, until: Instant) {
    while let Some(t) = node.poll_timeout().filter(|&t| t <= until) {
        node.handle_timeout(t);
        drain(node);
    }
}

#[test]
fn a_frame_naming_a_sender_other_than_its_source_is_refused() {
    let now = base_instant();
    let mut node = founder_with_two_members(now);
    let forged = gossip(2, vec![record(3, 1, 0, Status::Dead { by: id(2) })]);
    assert_eq!(
        node.handle_message(now, addr(9), &forged),
        Err(gossip_core::RecvError::SenderMismatch)
    );
    assert_eq!(held(&node, 3).unwrap().liveness, Liveness::Alive);
}

#[test]
fn a_strangers_claims_about_members_change_nothing() {
    let now = base_instant();
    let mut node = founder_with_two_members(now);
    let forged = gossip(
        9,
        vec![
            record(2, u64::MAX, u32::MAX, Status::Dead { by: id(9) }),
            record(3, 1, 0, Status::Left),
            record(
                2,
                1,
                5,
                Status::Alive {
                    metadata: b"evil".to_vec(),
                },
            ),
        ],
    );
    node.handle_message(now, addr(9), &forged).unwrap();
    for i in [2, 3] {
        let member = held(&node, i).unwrap();
        assert_eq!(member.liveness, Liveness::Alive, "member {i}");
        assert_eq!(member.incarnation, Incarnation(0), "member {i}");
    }
    assert_eq!(node.stats().claims_ignored, 3);
    // The stranger itself is challenged (it gossips as if it were a
    // member); nobody else hears a thing.
    let sent = drain(&mut node);
    assert!(
        sent.iter().all(|t| t.to == addr(9)),
        "only the stranger is answered"
    );
    assert!(sent.len() <= 1);
}

#[test]
fn a_members_death_claim_is_a_suspicion_its_subject_refutes() {
    let now = base_instant();
    let mut node = founder_with_two_members(now);
    // Member 3 claims 2 dead, and at a far later life (which only 2 may start).
    let claim = gossip(
        3,
        vec![
            record(2, u64::MAX, 0, Status::Dead { by: id(3) }),
            record(2, 1, 0, Status::Dead { by: id(3) }),
        ],
    );
    node.handle_message(now, addr(3), &claim).unwrap();
    let member = held(&node, 2).unwrap();
    assert_eq!(
        member.liveness,
        Liveness::Suspect,
        "a suspicion, not a death"
    );
    assert_eq!(
        member.generation,
        Generation(1),
        "no new life from a third party"
    );
    // The node tells 2 of the suspicion; 2 refutes with its own word.
    let refutation = gossip(2, vec![record(2, 1, 1, Status::Alive { metadata: vec![] })]);
    node.handle_message(now, addr(2), &refutation).unwrap();
    let member = held(&node, 2).unwrap();
    assert_eq!(
        (member.liveness, member.incarnation),
        (Liveness::Alive, Incarnation(1))
    );
}

#[test]
fn a_departure_reported_by_a_third_party_is_recorded_only_if_unrefuted() {
    let now = base_instant();
    let mut node = founder_with_two_members(now);
    node.handle_message(
        now,
        addr(3),
        &gossip(3, vec![record(2, 1, 0, Status::Left)]),
    )
    .unwrap();
    assert_eq!(held(&node, 2).unwrap().liveness, Liveness::Suspect);
    // Nobody refutes: the suspicion ends as a departure, not a failure.
    run_until(&mut node, now + Duration::from_secs(30));
    assert_eq!(held(&node, 2).unwrap().liveness, Liveness::Left);
    let left = core::iter::from_fn(|| node.poll_event())
        .any(|e| matches!(e, Event::MemberLeft(m) if m.id == id(2)));
    assert!(left);
    // The member's own farewell is final at once.
    let mut node = founder_with_two_members(now);
    node.handle_message(
        now,
        addr(3),
        &gossip(3, vec![record(3, 1, 1, Status::Left)]),
    )
    .unwrap();
    assert_eq!(held(&node, 3).unwrap().liveness, Liveness::Left);
}

#[test]
fn metadata_and_new_lives_claimed_by_a_third_party_wait_for_the_members_answer() {
    let now = base_instant();
    let mut node = founder_with_two_members(now);
    let claim = gossip(
        3,
        vec![record(
            2,
            7,
            0,
            Status::Alive {
                metadata: b"hijacked".to_vec(),
            },
        )],
    );
    node.handle_message(now, addr(3), &claim).unwrap();
    assert_eq!(
        held(&node, 2).unwrap().generation,
        Generation(1),
        "not taken yet"
    );
    let sent = drain(&mut node);
    let seq = sent
        .iter()
        .filter(|t| t.to == addr(2))
        .find_map(|t| match wire::decode(node.config(), &t.bytes) {
            Ok((_, Message::Verify { seq })) => Some(seq),
            _ => None,
        })
        .expect("member 2 is challenged");
    // Member 2 answers from its real life (generation 1): the claim dies.
    let answer = frame(
        2,
        &Message::Ack {
            seq,
            updates: vec![record(2, 1, 0, Status::Alive { metadata: vec![] })],
        },
    );
    node.handle_message(now, addr(2), &answer).unwrap();
    let member = held(&node, 2).unwrap();
    assert_eq!(
        (member.generation, member.metadata),
        (Generation(1), vec![])
    );
}

#[test]
fn a_join_flood_admits_nobody_who_does_not_answer_and_reflects_little() {
    let now = base_instant();
    let mut config = Config::default();
    config.max_candidates = std::num::NonZeroUsize::new(64).unwrap();
    let mut node = Node::new(config, id(1), Generation(1), 5).unwrap();
    node.join(now, &[]).unwrap();
    let (mut received, mut sent) = (0usize, 0usize);
    for i in 0..2000u32 {
        let fake = NodeId::new(SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 7946)));
        let join = wire::encode(
            &Header {
                version: PROTOCOL_VERSION,
                label: "",
                sender: fake,
                generation: Generation(1),
                incarnation: Incarnation(0),
            },
            &Message::Join {
                nonce: 0,
                metadata: vec![],
            },
        );
        received += join.len();
        node.handle_message(now, fake.addr(), &join).unwrap();
        sent += drain(&mut node)
            .iter()
            .map(|t| t.bytes.len())
            .sum::<usize>();
    }
    assert_eq!(node.live_member_count(), 1, "no fake is a member");
    let stats = node.stats();
    assert_eq!(stats.candidates_waiting, 64, "unproven claims are capped");
    assert_eq!(stats.candidates_dropped, 2000 - 64);
    assert!(
        sent <= 3 * received,
        "sent {sent} bytes to unproven addresses for {received} received"
    );
    let expiry = now + node.config().verify_timeout;
    run_until(&mut node, expiry);
    assert_eq!(
        node.stats().candidates_waiting,
        0,
        "unanswered claims expire"
    );
    assert_eq!(node.live_member_count(), 1);
}

#[test]
fn a_stranger_draws_only_small_bare_answers() {
    let now = base_instant();
    let mut node = founder_with_two_members(now);
    // Something to piggyback, were the node careless.
    node.set_metadata(now, vec![1; 100]).unwrap();
    let ping = frame(
        9,
        &Message::Ping {
            seq: 5,
            view_hash: [0; 4],
            updates: vec![],
        },
    );
    node.handle_message(now, addr(9), &ping).unwrap();
    // A bare ack, and a challenge (the stranger probes as if it were a
    // member): together within three times the ping.
    let answer = drain(&mut node);
    assert_eq!(answer.len(), 2);
    let bytes: usize = answer.iter().map(|t| t.bytes.len()).sum();
    assert!(
        bytes <= 3 * ping.len(),
        "{bytes} bytes for a {}-byte ping",
        ping.len()
    );
    // A state request from a stranger is not answered at all.
    let ask = frame(
        9,
        &Message::Sync {
            reply: true,
            nonce: 0,
            after: None,
            through: None,
            entries: vec![],
        },
    );
    node.handle_message(now, addr(9), &ask).unwrap();
    assert!(drain(&mut node).is_empty());
    // Nor is a request to probe a member, from a stranger.
    let request = frame(
        9,
        &Message::PingReq {
            seq: 1,
            target: id(2),
            updates: vec![],
        },
    );
    node.handle_message(now, addr(9), &request).unwrap();
    assert!(drain(&mut node).is_empty());
}

#[test]
fn probe_sequence_numbers_are_not_a_counter() {
    let mut now = base_instant();
    let mut node = founder_with_two_members(now);
    let mut seqs = Vec::new();
    for _ in 0..8 {
        let (at, _, seq) = next_probe(&mut node, now);
        seqs.push(seq);
        now = at;
    }
    let steps_of_one = seqs
        .windows(2)
        .filter(|w| w[1] == w[0].wrapping_add(1))
        .count();
    assert_eq!(steps_of_one, 0, "{seqs:?}");
}

#[test]
fn a_member_asking_for_state_again_and_again_is_held_to_its_budget() {
    let now = base_instant();
    let mut config = Config::default();
    config.source_reply_bytes_per_s = 1;
    config.source_reply_burst_bytes = 200;
    let mut node = founder_with(config, now);
    // Narrow requests that lack nothing: each costs the node a walk of its
    // table, however little it sends back.
    let ask = frame(
        2,
        &Message::Sync {
            reply: true,
            nonce: 0,
            after: Some(id(200)),
            through: Some(id(201)),
            entries: vec![],
        },
    );
    for _ in 0..200 {
        node.handle_message(now, addr(2), &ask).unwrap();
    }
    let throttled = node.stats().state_replies_throttled;
    assert!(
        throttled >= 150,
        "only {throttled} of 200 requests throttled"
    );
    // Another member's budget is untouched.
    let other = frame(
        3,
        &Message::Sync {
            reply: true,
            nonce: 0,
            after: None,
            through: None,
            entries: vec![],
        },
    );
    drain(&mut node);
    node.handle_message(now, addr(3), &other).unwrap();
    assert!(!drain(&mut node).is_empty(), "member 3 is answered");
}

#[test]
fn a_challenge_is_met_only_by_its_own_number_and_a_strangers_challenge_draws_little() {
    let now = base_instant();
    let mut node = founder_with_two_members(now);
    let proven = node.stats().candidates_proven;
    node.handle_message(now, addr(9), &join_frame(9)).unwrap();
    let challenge = drain(&mut node)
        .iter()
        .find_map(|t| match wire::decode(node.config(), &t.bytes) {
            Ok((_, Message::Verify { seq })) if t.to == addr(9) => Some(seq),
            _ => None,
        })
        .expect("the joiner is challenged");
    // A guessed number does not admit the joiner.
    let guess = frame(
        9,
        &Message::Ack {
            seq: challenge.wrapping_add(1),
            updates: vec![],
        },
    );
    node.handle_message(now, addr(9), &guess).unwrap();
    assert!(held(&node, 9).is_none(), "a wrong answer admits nobody");
    assert_eq!(node.stats().candidates_proven, proven);

    // A stranger's own challenge is answered small, and challenged back.
    let verify = frame(8, &Message::Verify { seq: 7 });
    node.handle_message(now, addr(8), &verify).unwrap();
    let answers = drain(&mut node);
    assert!(answers.iter().all(|t| t.to == addr(8)));
    let bytes: usize = answers.iter().map(|t| t.bytes.len()).sum();
    assert!(
        bytes <= 3 * verify.len(),
        "{bytes} bytes for a {}-byte challenge",
        verify.len()
    );
    assert!(held(&node, 8).is_none(), "challenging admits nobody");
}

/// Direct application messages come only from live members: a stranger's
/// is ignored and counted, a member's becomes an event naming it, and one
/// cannot be sent to a stranger either.
#[test]
fn direct_messages_are_taken_only_from_live_members() {
    let now = base_instant();
    let mut node = founder_with_two_members(now);
    let message = Message::Direct {
        payload: b"hello".to_vec(),
    };

    let ignored = node.stats().claims_ignored;
    node.handle_message(now, addr(9), &frame(9, &message))
        .unwrap();
    assert_eq!(node.stats().claims_ignored, ignored + 1);
    assert_eq!(node.stats().directs_received, 0);
    while let Some(event) = node.poll_event() {
        assert!(
            !matches!(event, Event::Direct { .. }),
            "a stranger's message surfaced"
        );
    }

    // A frame naming member 2 but coming from elsewhere is refused outright.
    assert!(node
        .handle_message(now, addr(9), &frame(2, &message))
        .is_err());

    node.handle_message(now, addr(2), &frame(2, &message))
        .unwrap();
    let events: Vec<Event> = core::iter::from_fn(|| node.poll_event()).collect();
    assert!(events.contains(&Event::Direct {
        from: id(2),
        payload: b"hello".to_vec(),
    }));
    assert_eq!(node.stats().directs_received, 1);

    assert_eq!(
        node.send_direct(now, id(9), b"x"),
        Err(gossip_core::CommandError::NotAMember)
    );
    let too_long = vec![0u8; node.max_direct_len() + 1];
    assert!(node.send_direct(now, id(2), &too_long).is_err());
    assert!(drain(&mut node).is_empty());
    let largest = vec![7u8; node.max_direct_len()];
    node.send_direct(now, id(2), &largest).unwrap();
    let sent = drain(&mut node);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, addr(2));
    assert!(sent[0].bytes.len() <= node.config().max_message_size.get());
}

/// Records the tree messages the host hands it, and answers grafts with
/// the rumors asked for, as a tree strategy would.
struct TreeProbe {
    calls: std::rc::Rc<std::cell::RefCell<Vec<(&'static str, NodeId)>>>,
}

impl gossip_core::Strategy for TreeProbe {
    fn on_rumor<H: gossip_core::Host>(
        &mut self,
        _host: &mut H,
        _rumor: gossip_core::Rumor,
        _from: Option<NodeId>,
    ) {
    }
    fn on_announce<H: gossip_core::Host>(
        &mut self,
        _host: &mut H,
        from: NodeId,
        _ids: &[gossip_core::MessageId],
    ) {
        self.calls.borrow_mut().push(("announce", from));
    }
    fn on_graft<H: gossip_core::Host>(
        &mut self,
        host: &mut H,
        from: NodeId,
        ids: &[gossip_core::MessageId],
    ) {
        self.calls.borrow_mut().push(("graft", from));
        if ids.is_empty() {
            // A link request: acknowledged, as Plumtree does.
            host.send(
                from,
                gossip_core::GossipMessage::Announce { ids: Vec::new() },
            );
            return;
        }
        let rumors = ids
            .iter()
            .filter(|&&id| host.has(id))
            .map(|&id| gossip_core::Rumor { id, hops: 0 })
            .collect();
        host.send(from, gossip_core::GossipMessage::Push { rumors });
    }
    fn on_prune<H: gossip_core::Host>(&mut self, _host: &mut H, from: NodeId) {
        self.calls.borrow_mut().push(("prune", from));
    }
}

/// Tree messages (announce, graft, prune) are taken only from live
/// members, and a member's grafts are answered within its reply budget:
/// asking for the same rumors again and again cannot amplify.
#[test]
fn tree_messages_come_only_from_members_and_grafts_cannot_amplify() {
    let now = base_instant();
    let calls = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let probe = TreeProbe {
        calls: calls.clone(),
    };
    let mut node = Node::with_strategy(Config::default(), id(1), Generation(1), 5, probe).unwrap();
    node.join(now, &[]).unwrap();
    for i in [2, 3] {
        node.handle_message(now, addr(i), &join_frame(i)).unwrap();
        common::answer_challenge(&mut node, now, addr(i), |m| frame(i, m));
    }
    let ids: Vec<gossip_core::MessageId> = (0..40)
        .map(|_| node.broadcast(now, &[0xab; 1000]).unwrap())
        .collect();
    core::iter::from_fn(|| node.poll_transmit()).for_each(drop);
    while node.poll_event().is_some() {}

    // A stranger's announce, graft and prune reach no strategy and draw
    // nothing.
    let messages = [
        Message::Announce { ids: ids.clone() },
        Message::Graft { ids: ids.clone() },
        Message::Prune,
    ];
    for message in &messages {
        node.handle_message(now, addr(9), &frame(9, message))
            .unwrap();
    }
    assert!(calls.borrow().is_empty(), "{:?}", calls.borrow());
    assert!(core::iter::from_fn(|| node.poll_transmit())
        .next()
        .is_none());

    // A member's reach its strategy.
    for message in &messages {
        node.handle_message(now, addr(2), &frame(2, message))
            .unwrap();
    }
    assert_eq!(
        *calls.borrow(),
        [("announce", id(2)), ("graft", id(2)), ("prune", id(2))]
    );

    core::iter::from_fn(|| node.poll_transmit()).for_each(drop);

    // A link request (a graft naming nothing): a stranger's draws nothing,
    // a member's one bare acknowledgement no larger than the request.
    let request = |i| frame(i, &Message::Graft { ids: Vec::new() });
    node.handle_message(now, addr(9), &request(9)).unwrap();
    assert!(core::iter::from_fn(|| node.poll_transmit())
        .next()
        .is_none());
    node.handle_message(now, addr(3), &request(3)).unwrap();
    let answers: Vec<_> = core::iter::from_fn(|| node.poll_transmit()).collect();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].to, addr(3));
    assert!(answers[0].bytes.len() <= request(3).len());
    let (_, answer) = gossip_core::wire::decode(node.config(), &answers[0].bytes).unwrap();
    assert_eq!(answer, Message::Announce { ids: Vec::new() });

    // 1,000 grafts of 40 kB of rumors each from one member, at one
    // instant: answered up to the per-source burst, then refused.
    let graft = frame(2, &Message::Graft { ids });
    let mut sent = 0;
    for _ in 0..1000 {
        node.handle_message(now, addr(2), &graft).unwrap();
        sent += core::iter::from_fn(|| node.poll_transmit())
            .map(|t| t.bytes.len() as u64)
            .sum::<u64>();
    }
    let received = 1000 * graft.len() as u64;
    let burst = node.config().source_reply_burst_bytes;
    assert!(
        sent <= burst + 64 * 1024,
        "{sent} bytes answered {received} bytes of grafts (burst {burst})"
    );
    assert!(node.stats().state_replies_throttled > 0);
}

/// Counts the ids announcements deliver to the strategy.
struct IdCounter {
    announced: std::rc::Rc<std::cell::Cell<usize>>,
}

impl gossip_core::Strategy for IdCounter {
    fn on_rumor<H: gossip_core::Host>(
        &mut self,
        _host: &mut H,
        _rumor: gossip_core::Rumor,
        _from: Option<NodeId>,
    ) {
    }
    fn on_announce<H: gossip_core::Host>(
        &mut self,
        _host: &mut H,
        _from: NodeId,
        ids: &[gossip_core::MessageId],
    ) {
        self.announced.set(self.announced.get() + ids.len());
    }
    fn on_graft<H: gossip_core::Host>(
        &mut self,
        _host: &mut H,
        _from: NodeId,
        ids: &[gossip_core::MessageId],
    ) {
        self.announced.set(self.announced.get() + ids.len());
    }
}

fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out
}

/// Announced and grafted ids travel grouped by origin life with
/// delta-encoded sequences. A member that forges the grouping (groups out
/// of order or repeated, sums that overflow, more groups than the frame
/// holds) is refused as malformed and reaches no strategy; a frame crammed
/// with consecutive ids expands to at most one id per byte.
#[test]
fn forged_id_groups_are_refused_and_expand_to_at_most_one_id_per_byte() {
    let now = base_instant();
    let announced = std::rc::Rc::new(std::cell::Cell::new(0));
    let probe = IdCounter {
        announced: announced.clone(),
    };
    let mut node = Node::with_strategy(Config::default(), id(1), Generation(1), 5, probe).unwrap();
    node.join(now, &[]).unwrap();
    node.handle_message(now, addr(2), &join_frame(2)).unwrap();
    common::answer_challenge(&mut node, now, addr(2), |m| frame(2, m));
    core::iter::from_fn(|| node.poll_transmit()).for_each(drop);
    while node.poll_event().is_some() {}

    // A frame of `message` kind whose id list is `groups`, byte for byte.
    let with_groups = |message: &Message, groups: &[u8]| {
        let mut bytes = frame(2, message);
        assert_eq!(bytes.pop(), Some(0), "an empty list ends the frame");
        bytes.extend_from_slice(groups);
        bytes
    };
    // Member i's address as a group's origin: step 0 and the id in full
    // (IPv4 tag, ip, port) where the encoder writes it so, else a step
    // from the previous group's origin (same port, address moved by d:
    // zigzag(d) * 2 + 1).
    let full = |i: u8| {
        let mut out = vec![0, 0, 127, 0, 0, i];
        out.extend_from_slice(&7946u16.to_le_bytes());
        out
    };
    let origin = |i: u8, after: Option<u8>| match after {
        Some(before) if before != i => {
            let d = i64::from(i) - i64::from(before);
            varint((((d << 1) ^ (d >> 63)) as u64) << 1 | 1)
        }
        _ => full(i),
    };
    let group_after =
        |after: Option<u8>, who: u8, generation_delta: u64, first: u64, gaps: &[u64]| {
            let mut out = origin(who, after);
            out.extend(varint(generation_delta));
            out.extend(varint(first));
            out.extend(varint(gaps.len() as u64));
            gaps.iter().for_each(|&g| out.extend(varint(g)));
            out
        };
    let group = |who, generation_delta, first, gaps: &[u64]| {
        group_after(None, who, generation_delta, first, gaps)
    };
    let list = |groups: &[Vec<u8>]| {
        let mut out = varint(groups.len() as u64);
        groups.iter().for_each(|g| out.extend_from_slice(g));
        out
    };
    let forged = [
        // The same origin life twice.
        list(&[group(3, 1, 1, &[]), group_after(Some(3), 3, 0, 5, &[])]),
        // Origins of one life out of order.
        list(&[group(4, 1, 1, &[]), group_after(Some(4), 3, 0, 1, &[])]),
        // A generation past the largest.
        list(&[
            group(3, u64::MAX, 1, &[]),
            group_after(Some(3), 4, 1, 1, &[]),
        ]),
        // An origin in full where a step names it: one encoding only.
        list(&[group(3, 1, 1, &[]), group(4, 0, 1, &[])]),
        // A step with no origin before it, and a step below 0.0.0.0.
        list(&[group_after(Some(2), 3, 1, 1, &[])]),
        [
            varint(2),
            group(3, 1, 1, &[]),
            varint(((1u64 << 49) - 1) << 1),
            varint(0),
            varint(1),
            varint(0),
        ]
        .concat(),
        // A sequence past the largest.
        list(&[group(3, 1, u64::MAX, &[0])]),
        list(&[group(3, 1, u64::MAX - 3, &[1, 1])]),
        // A million groups announced, one sent.
        [varint(1 << 20), group(3, 1, 1, &[])].concat(),
    ];
    let kinds = [
        Message::Announce { ids: Vec::new() },
        Message::Graft { ids: Vec::new() },
    ];
    for kind in &kinds {
        for groups in &forged {
            let bytes = with_groups(kind, groups);
            assert!(
                matches!(
                    node.handle_message(now, addr(2), &bytes),
                    Err(gossip_core::RecvError::Malformed(_))
                ),
                "{groups:?} accepted"
            );
        }
    }
    assert_eq!(announced.get(), 0, "no forged list reached the strategy");
    assert!(core::iter::from_fn(|| node.poll_transmit())
        .next()
        .is_none());

    // The densest honest list: one origin, consecutive sequences.
    let gaps = vec![0; 1300];
    let bytes = with_groups(&kinds[0], &list(&[group(3, 1, 1, &gaps)]));
    assert!(bytes.len() <= node.config().max_message_size.get());
    node.handle_message(now, addr(2), &bytes).unwrap();
    assert_eq!(announced.get(), 1301);
    assert!(announced.get() <= bytes.len());
}
