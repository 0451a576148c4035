//! The cold start: a seed answers the joins that arrive together with one
//! member list, paced by its reply budget, and a joiner takes the members
//! that list names on the seed's word only when the answer echoes the
//! nonce of its own request. A forger cannot add anyone that way.

use crate::common;
use crate::common::{base_instant, drain};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gossip_core::wire::{self, Header, Message, SyncEntry, PROTOCOL_VERSION};
use gossip_core::{Config, Generation, Incarnation, Liveness, Node, NodeId};

fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 1, (i % 250) as u8], 7000 + i))
}

fn id(i: u16) -> NodeId {
    NodeId::new(addr(i))
}

fn frame(i: u16, message: &Message) -> Vec<u8> {
    let header = Header {
        version: PROTOCOL_VERSION,
        label: "",
        sender: id(i),
        generation: Generation(1),
        incarnation: Incarnation(0),
    };
    wire::encode(&header, message)
}

/// What `node` sent, decoded, with destinations.
fn sent(node: &mut Node) -> Vec<(SocketAddr, Message)> {
    let config = node.config().clone();
    drain(node)
        .iter()
        .map(|t| (t.to, wire::decode(&config, &t.bytes).unwrap().1))
        .collect()
}

fn alive(i: u16) -> SyncEntry {
    SyncEntry {
        id: id(i),
        generation: Generation(1),
        incarnation: Incarnation(0),
        liveness: Liveness::Alive,
        metadata: Vec::new(),
    }
}

/// A node that asked seed 1 to join; returns it with the nonce its join
/// carried.
fn joiner(now: Instant) -> (Node, u32) {
    let mut node = Node::new(Config::default(), id(2), Generation(1), 9).unwrap();
    node.join(now, &[addr(1)]).unwrap();
    let nonce = sent(&mut node)
        .into_iter()
        .find_map(|(to, m)| match m {
            Message::Join { nonce, .. } if to == addr(1) => Some(nonce),
            _ => None,
        })
        .expect("the join goes to the seed");
    (node, nonce)
}

fn seed_answer(nonce: u32, members: impl IntoIterator<Item = u16>) -> Vec<u8> {
    frame(
        1,
        &Message::Sync {
            reply: false,
            nonce,
            after: None,
            through: None,
            entries: members.into_iter().map(alive).collect(),
        },
    )
}

#[test]
fn the_seeds_answer_to_our_nonce_admits_every_member_it_names_without_challenges() {
    let now = base_instant();
    let (mut node, nonce) = joiner(now);
    node.handle_message(now, addr(1), &seed_answer(nonce, 1..=40))
        .unwrap();
    assert_eq!(node.live_member_count(), 40, "39 others and itself");
    assert_eq!(node.stats().members_vouched, 39, "all but itself");
    let challenges = sent(&mut node)
        .into_iter()
        .filter(|(_, m)| matches!(m, Message::Verify { .. }))
        .count();
    assert_eq!(
        challenges, 0,
        "the seed's word needs no challenge per member"
    );
    assert!(node.is_joined());
}

#[test]
fn a_forged_seed_answer_with_another_nonce_admits_nobody_and_draws_no_challenge() {
    let now = base_instant();
    let (mut node, nonce) = joiner(now);
    // An address forger sends the seed's address a list of fake members
    // without having seen the join: it cannot echo the nonce.
    let forged = seed_answer(nonce.wrapping_add(1), 3..=100);
    node.handle_message(now, addr(1), &forged).unwrap();
    assert_eq!(node.stats().members_vouched, 0);
    assert!(
        node.members().all(|m| m.id == id(2) || m.id == id(1)),
        "no fake member entered the table"
    );
    let out = sent(&mut node);
    assert!(
        out.iter().all(|(to, _)| *to == addr(1)),
        "nothing is sent to the 98 addresses it named: {} frames",
        out.len()
    );
    // The real answer still counts afterwards.
    node.handle_message(now, addr(1), &seed_answer(nonce, [1, 3]))
        .unwrap();
    assert_eq!(node.live_member_count(), 3);
}

#[test]
fn a_members_answer_is_weighed_claim_by_claim_even_with_the_right_nonce() {
    let now = base_instant();
    let (mut node, nonce) = joiner(now);
    node.handle_message(now, addr(1), &seed_answer(nonce, [1, 3]))
        .unwrap();
    drain(&mut node);
    // Member 3, not a seed, names 50 others in a frame carrying the nonce it
    // may have learned: each is challenged, none admitted on its word.
    let lie = frame(
        3,
        &Message::Sync {
            reply: false,
            nonce,
            after: None,
            through: None,
            entries: (10..60).map(alive).collect(),
        },
    );
    node.handle_message(now, addr(3), &lie).unwrap();
    assert_eq!(node.live_member_count(), 3, "nobody admitted on its word");
    let challenged = sent(&mut node)
        .into_iter()
        .filter(|(_, m)| matches!(m, Message::Verify { .. }))
        .count();
    assert_eq!(
        challenged, 50,
        "one challenge per claimed member, within the cap"
    );
}

/// Seed 1 and `n` joiners (ids 2..) whose joins arrive at once; returns
/// the seed after it proved them all, and each joiner's nonce.
fn seed_with_joins(config: Config, now: Instant, n: u16) -> (Node, Vec<u32>) {
    let mut seed = Node::new(config, id(1), Generation(1), 3).unwrap();
    seed.join(now, &[]).unwrap();
    let mut nonces = Vec::new();
    for i in 2..2 + n {
        let nonce = 1000 + u32::from(i);
        nonces.push(nonce);
        let join = frame(
            i,
            &Message::Join {
                nonce,
                metadata: vec![],
            },
        );
        seed.handle_message(now, addr(i), &join).unwrap();
        common::answer_challenge(&mut seed, now, addr(i), |m| frame(i, m));
    }
    (seed, nonces)
}

/// The sync frames in `sent`, with their nonce and entry count, by
/// destination.
fn answers(node: &mut Node) -> Vec<(SocketAddr, u32, usize)> {
    sent(node)
        .into_iter()
        .filter_map(|(to, m)| match m {
            Message::Sync {
                reply: false,
                nonce,
                entries,
                ..
            } => Some((to, nonce, entries.len())),
            _ => None,
        })
        .collect()
}

#[test]
fn joins_arriving_together_get_one_list_naming_each_other_after_the_delay() {
    let now = base_instant();
    let config = Config::default();
    let delay = config.join_answer_delay;
    let (mut seed, nonces) = seed_with_joins(config, now, 20);
    assert!(
        answers(&mut seed).is_empty(),
        "nothing is answered before the delay"
    );
    seed.handle_timeout(now + delay);
    let out = answers(&mut seed);
    for (k, i) in (2..22).enumerate() {
        let to_i: Vec<_> = out.iter().filter(|(to, _, _)| *to == addr(i)).collect();
        assert!(!to_i.is_empty(), "joiner {i} is answered");
        assert!(
            to_i.iter().all(|(_, nonce, _)| *nonce == nonces[k]),
            "each answer echoes its own join's nonce"
        );
        let listed: usize = to_i.iter().map(|(_, _, n)| n).sum();
        assert_eq!(listed, 21, "joiner {i} learns all 21 members at once");
    }
    assert_eq!(seed.stats().joins_answered, 20);
}

#[test]
fn answers_beyond_the_reply_budget_wait_for_it_instead_of_being_dropped() {
    let now = base_instant();
    let mut config = Config::default();
    // Room for about two answers of 31 members a second.
    config.state_reply_bytes_per_s = 600;
    config.state_reply_burst_bytes = 600;
    // Joiners here answer no probe: keep the seed from declaring them dead
    // while they wait.
    config.probe_interval = Duration::from_secs(3600);
    config.probe_timeout = Duration::from_secs(1800);
    let delay = config.join_answer_delay;
    let (mut seed, _) = seed_with_joins(config, now, 30);
    drain(&mut seed);
    let mut answered = Vec::new();
    let mut t = now;
    for _ in 0..200 {
        t += delay;
        seed.handle_timeout(t);
        for (to, _, _) in answers(&mut seed) {
            if !answered.contains(&to) {
                answered.push(to);
            }
        }
        if answered.len() == 30 {
            break;
        }
    }
    assert_eq!(
        answered.len(),
        30,
        "every joiner is answered in the end: {answered:?}"
    );
    let waited = t - now;
    assert!(
        waited >= Duration::from_secs(5),
        "the budget paced them: all answered after {waited:?}"
    );
    let expected: Vec<_> = (2..32).map(addr).collect();
    assert_eq!(answered, expected, "oldest first");
}

#[test]
fn a_restarted_members_failed_probe_of_its_former_life_raises_no_suspicion() {
    // Covered end to end by behaviour::restarted_node_rejoins_as_a_new_generation;
    // here the seed's own view: a member answering in a new life after a
    // probe of the old one began is not suspected when that probe ends.
    let now = base_instant();
    let (mut seed, _) = seed_with_joins(Config::default(), now, 1);
    drain(&mut seed);
    let probe_at = now + seed.config().probe_interval * 2;
    seed.handle_timeout(probe_at);
    let pinged = sent(&mut seed)
        .into_iter()
        .any(|(to, m)| to == addr(2) && matches!(m, Message::Ping { .. }));
    assert!(pinged, "the seed probes its only member");
    // Member 2 restarts as generation 2 and joins again before the probe ends.
    let rejoin = wire::encode(
        &Header {
            version: PROTOCOL_VERSION,
            label: "",
            sender: id(2),
            generation: Generation(2),
            incarnation: Incarnation(0),
        },
        &Message::Join {
            nonce: 5,
            metadata: vec![],
        },
    );
    seed.handle_message(probe_at, addr(2), &rejoin).unwrap();
    let end = probe_at + seed.config().probe_interval;
    seed.handle_timeout(end);
    let held = seed.members().find(|m| m.id == id(2)).expect("known");
    assert_eq!(held.generation, Generation(2));
    assert_eq!(
        held.liveness,
        Liveness::Alive,
        "not suspected for its old life"
    );
}

#[test]
fn a_seed_answering_our_probes_keeps_us_waiting_for_its_list() {
    let now = base_instant();
    let (mut node, nonce) = joiner(now);
    // The seed proves itself (it challenges us, we challenge it back).
    node.handle_message(now, addr(1), &frame(1, &Message::Verify { seq: 4 }))
        .unwrap();
    common::answer_challenge(&mut node, now, addr(1), |m| frame(1, m));
    let wait = node.config().seed_answer_wait;
    let period = node.config().probe_interval;
    // For longer than `seed_answer_wait`, the seed answers every probe.
    let mut t = now;
    while t < now + wait * 2 {
        t += period / 2;
        node.handle_timeout(t);
        for (to, m) in sent(&mut node) {
            if let (true, Message::Ping { seq, .. }) = (to == addr(1), m) {
                let ack = Message::Ack {
                    seq,
                    updates: vec![],
                };
                node.handle_message(t, addr(1), &frame(1, &ack)).unwrap();
            }
        }
    }
    // Still waiting: a stranger's ping draws no challenge.
    node.handle_message(
        t,
        addr(9),
        &frame(
            9,
            &Message::Ping {
                seq: 1,
                view_hash: [0; 4],
                updates: vec![],
            },
        ),
    )
    .unwrap();
    assert!(
        sent(&mut node)
            .iter()
            .all(|(_, m)| !matches!(m, Message::Verify { .. })),
        "the seed is up: its list is still awaited"
    );
    // The list comes and counts.
    node.handle_message(t, addr(1), &seed_answer(nonce, [1, 3, 9]))
        .unwrap();
    assert_eq!(node.live_member_count(), 4);
}
