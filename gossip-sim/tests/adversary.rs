//! The adversary's machinery: outsiders on the simulated network, the
//! frames each kind forges, and determinism of attacked runs. The
//! cluster-wide invariants under attack are asserted in gossip-node's
//! `tests/adversary.rs` (rumor-forge needs a strategy from
//! gossip-strategies).

use std::time::Duration;

use gossip_core::wire::{self, Header, Message, Status, PROTOCOL_VERSION};
use gossip_core::{Config, Generation, Incarnation, NodeId};
use gossip_sim::{
    node_addr, node_index, run_membership, Adversary, AdversaryKind, AdversarySpec, LinkModel,
    MembershipScenario, Simulator, ATTACKER_ADDR, VICTIM_ADDR,
};

#[test]
fn an_outsider_reaches_nodes_and_reads_their_answers_without_touching_net_stats() {
    let mut sim = Simulator::new(3, 1, Config::lan(3), LinkModel::default());
    sim.start_all();
    sim.run_until(Duration::from_secs(5), &mut ());
    assert!(sim.all_running_see(3));
    let net_before = sim.stats().clone();
    sim.add_outsider(ATTACKER_ADDR);
    // A join under the attacker's own name: the node answers with its view
    // to the frame's source.
    let header = Header {
        version: PROTOCOL_VERSION,
        label: "",
        sender: NodeId::new(ATTACKER_ADDR),
        generation: Generation(0),
        incarnation: Incarnation(0),
    };
    let join = wire::encode(
        &header,
        &Message::Join {
            nonce: 0,
            metadata: Vec::new(),
        },
    );
    sim.send_as_outsider(ATTACKER_ADDR, 1, join.clone());
    assert!(
        sim.take_outsider_frames().is_empty(),
        "nothing arrives before the link's latency"
    );
    sim.run_for(Duration::from_millis(5), &mut ());
    let answers = sim.take_outsider_frames();
    assert!(!answers.is_empty(), "the node answered the join");
    assert!(answers
        .iter()
        .all(|f| f.from == 1 && f.to == ATTACKER_ADDR && f.at <= sim.now()));
    // The node first challenges the joiner's address.
    assert!(matches!(
        wire::decode(&Config::lan(3), &answers[0].bytes),
        Ok((_, Message::Verify { .. }))
    ));
    let outsider = sim.outsider_stats().clone();
    assert_eq!(outsider.frames_sent, 1);
    assert_eq!(outsider.bytes_sent, join.len() as u64);
    assert_eq!(outsider.frames_delivered, 1);
    assert_eq!(outsider.frames_refused, 0);
    assert!(outsider.frames_captured >= answers.len() as u64);
    assert_eq!(
        outsider.bytes_captured,
        answers.iter().map(|f| f.bytes.len() as u64).sum::<u64>()
    );
    // The node's frames to the attacker are counted as sent, never as
    // blocked; the attacker's own frame is not the cluster's traffic.
    assert_eq!(sim.stats().frames_blocked, net_before.frames_blocked);
    assert!(sim.stats().frames_delivered >= net_before.frames_delivered);
    // Frames to a crashed node are dropped and counted.
    sim.crash(2);
    sim.send_as_outsider(ATTACKER_ADDR, 2, join);
    sim.run_for(Duration::from_millis(5), &mut ());
    assert_eq!(sim.outsider_stats().frames_dropped, 1);
}

#[test]
#[should_panic(expected = "an outsider cannot share a node's address")]
fn an_outsider_cannot_take_a_nodes_address() {
    let mut sim = Simulator::new(3, 1, Config::lan(3), LinkModel::default());
    sim.add_outsider(node_addr(2));
}

/// What `kind` forges, frame by frame, for a cluster of 10.
fn frames(kind: AdversaryKind, count: usize) -> Vec<(usize, Header<'static>, Message)> {
    let config = Config::lan(10);
    let mut adversary = Adversary::new(kind, 10, config.clone(), node_addr, 7);
    (0..count)
        .map(|_| {
            let (to, bytes) =
                adversary.next_frame(|i| Some((Generation(i as u64), Incarnation(2 * i as u32))));
            let (header, message) = wire::decode(&config, &bytes).expect("a well-formed frame");
            let header = Header {
                label: "",
                ..header
            };
            (to, header, message)
        })
        .collect()
}

fn is_member(id: NodeId) -> bool {
    node_index(id.addr()).is_some_and(|i| i < 10)
}

#[test]
fn every_kind_forges_well_formed_frames_never_in_the_receivers_own_name() {
    for kind in AdversaryKind::ALL {
        for (to, header, _) in frames(kind, 500) {
            assert!(to < 10);
            assert_ne!(
                header.sender,
                NodeId::new(node_addr(to)),
                "{}: a frame in the receiver's own name is refused, not an attack",
                kind.name()
            );
        }
    }
}

#[test]
fn forged_death_and_departure_name_real_members_at_current_and_absurd_versions() {
    for kind in [AdversaryKind::ForgeDead, AdversaryKind::ForgeLeft] {
        let (mut current, mut absurd, mut own) = (0, 0, 0);
        for (to, header, message) in frames(kind, 300) {
            let as_itself = header.sender == NodeId::new(ATTACKER_ADDR);
            own += usize::from(as_itself);
            assert!(
                as_itself || is_member(header.sender),
                "impersonates a member, or speaks as itself"
            );
            let Message::Gossip { updates } = message else {
                panic!("{}: gossip frames only", kind.name());
            };
            let record = &updates[0];
            let victim = node_index(record.id.addr()).expect("a member");
            assert_ne!(victim, to);
            match (&record.status, kind) {
                (Status::Dead { by }, AdversaryKind::ForgeDead) => {
                    assert!(is_member(*by));
                    if !as_itself {
                        assert_eq!(*by, header.sender);
                    }
                }
                (Status::Left, AdversaryKind::ForgeLeft) => {}
                (status, _) => panic!("{}: unexpected {status:?}", kind.name()),
            }
            if (record.generation, record.incarnation)
                == (Generation(victim as u64), Incarnation(2 * victim as u32))
            {
                current += 1;
            } else if record.generation == Generation(u64::MAX)
                || record.incarnation == Incarnation(u32::MAX)
                || record.generation > Generation(victim as u64)
            {
                absurd += 1;
            } else {
                panic!(
                    "{}: a version below the current one: {record:?}",
                    kind.name()
                );
            }
        }
        assert!(
            current > 100 && absurd > 100,
            "{current} current, {absurd} absurd"
        );
        assert!((100..200).contains(&own), "{own} of 300 sent as itself");
    }
}

#[test]
fn flood_and_reflection_frames_name_fakes_and_the_victim() {
    for (_, header, message) in frames(AdversaryKind::JoinFlood, 200) {
        assert!(matches!(message, Message::Join { .. }));
        assert!(!is_member(header.sender), "a fake joiner");
    }
    let mut syncs = 0;
    for (_, header, message) in frames(AdversaryKind::Reflect, 200) {
        assert!(
            header.sender == NodeId::new(VICTIM_ADDR)
                || header.sender == NodeId::new(ATTACKER_ADDR)
        );
        match message {
            Message::Join { .. } => {}
            Message::Sync {
                reply: true,
                nonce: 0,
                after: None,
                through: None,
                entries,
            } if entries.is_empty() => syncs += 1,
            other => panic!("reflect sent {other:?}"),
        }
    }
    assert!(syncs > 50);
    let (mut fake_alive, mut real_alive) = (0, 0);
    for (_, _, message) in frames(AdversaryKind::ForgeAlive, 200) {
        let Message::Gossip { updates } = message else {
            panic!("gossip frames only");
        };
        let record = &updates[0];
        assert!(matches!(record.status, Status::Alive { .. }));
        if is_member(record.id) {
            assert_eq!(record.generation, Generation(u64::MAX));
            real_alive += 1;
        } else {
            fake_alive += 1;
        }
    }
    assert!(fake_alive > 50 && real_alive > 50);
}

#[test]
fn an_attacked_run_replays_exactly_and_reports_the_attack() {
    let mut s = MembershipScenario::new(12);
    s.duration = Duration::from_secs(20);
    s.adversary = Some(AdversarySpec::new(
        AdversaryKind::PingFlood,
        200.0,
        Duration::from_secs(8),
        Duration::from_secs(18),
    ));
    let mut a = run_membership(&s, |_| {}).unwrap();
    let mut b = run_membership(&s, |_| {}).unwrap();
    for r in [&mut a, &mut b] {
        r.cpu_s = 0.0;
        r.node_periods_per_cpu_s = 0.0;
        r.steady_node_periods_per_cpu_s = None;
    }
    assert_eq!(a, b);
    let attack = a.attack.expect("an attack report");
    assert_eq!(attack.adversary, AdversaryKind::PingFlood);
    assert_eq!(attack.adversary_traffic.frames_sent, 2000);
    assert_eq!(attack.adversary_window_s, (8.0, 18.0));
    assert!(attack.max_table_len >= 12);
    assert!(attack.broadcasts.is_none());
    s.adversary = None;
    assert!(run_membership(&s, |_| {}).unwrap().attack.is_none());
}

#[test]
fn rumor_forge_needs_a_strategy() {
    let mut s = MembershipScenario::new(5);
    s.duration = Duration::from_secs(20);
    s.adversary = Some(AdversarySpec::new(
        AdversaryKind::RumorForge,
        10.0,
        Duration::from_secs(5),
        Duration::from_secs(20),
    ));
    let error = run_membership(&s, |_| {}).unwrap_err();
    assert!(error.contains("refused a broadcast"), "{error}");
}
