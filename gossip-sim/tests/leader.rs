//! Leader election and partition awareness on simulated clusters: failover
//! after a crash, replay, a forged phantom, quorum-mode splits and a 50/50
//! partition reported on both sides.

use std::time::Duration;

use gossip_apps::{LeaderConfig, PartitionConfig};
use gossip_core::wire::{self, Header, MemberRecord, Message, Status, WireRumor};
use gossip_core::{Config, Generation, Incarnation, MessageId, NodeId};
use gossip_sim::{
    node_addr, probe_cluster, run_leader, run_partition, LeaderScenario, LinkModel,
    PartitionScenario,
};
use gossip_strategies::RumorMongering;

fn small(n: usize) -> LeaderScenario {
    LeaderScenario {
        crashes: 2,
        runs: 3,
        run_nodes: 5,
        run_duration: Duration::from_secs(90),
        ..LeaderScenario::new(n)
    }
}

#[test]
fn a_crashed_leader_is_replaced_on_every_node_soon_after_detection() {
    let report = run_leader(&small(8), &RumorMongering::default(), |_| {}).unwrap();
    let failover = report.failover_s.max.expect("every node followed");
    let detection = report.detection_s.max.expect("every node detected");
    assert!(
        failover <= detection + 1.0,
        "failover {failover} s, detection {detection} s"
    );
    assert!(report.terms_agree, "{report:?}");
    assert_eq!(report.term_regressions, 0);
    assert_eq!(report.false_partition_reports, 0);
    assert_eq!(report.dual_leader_with_quorum_s, 0.0);
}

#[test]
fn the_same_seed_replays_the_same_leadership_history() {
    let run = || {
        let mut c = probe_cluster(
            6,
            9,
            Config::lan(6),
            LinkModel {
                loss: 0.05,
                ..LinkModel::default()
            },
            &RumorMongering::default(),
            &LeaderConfig::default(),
            &PartitionConfig::default(),
        );
        c.run_until(Duration::from_secs(20), &mut ());
        c.crash(0);
        c.run_until(Duration::from_secs(40), &mut ());
        c.apps()
            .iter()
            .map(|a| a.history.clone())
            .collect::<Vec<_>>()
    };
    let first = run();
    assert!(first.iter().all(|h| h.len() >= 2));
    assert_eq!(first, run());
}

#[test]
fn forged_frames_naming_a_low_sorting_phantom_do_not_take_leadership() {
    let n = 5;
    let mut c = probe_cluster(
        n,
        3,
        Config::lan(n),
        LinkModel::default(),
        &RumorMongering::default(),
        &LeaderConfig::default(),
        &PartitionConfig::default(),
    );
    c.run_until(Duration::from_secs(20), &mut ());
    let leader = NodeId::new(node_addr(0));
    let term = c.app(1).election.term();
    assert!(term >= 1);
    // 127.0.0.1:1 sorts below every node (127.0.0.1:7946 and up).
    let phantom = NodeId::new("127.0.0.1:1".parse().unwrap());
    let config = Config::lan(n);
    let header = |sender: NodeId| Header {
        version: wire::PROTOCOL_VERSION,
        label: "",
        sender,
        generation: Generation(1),
        incarnation: Incarnation(0),
    };
    let alive = Message::Gossip {
        updates: vec![MemberRecord {
            id: phantom,
            generation: Generation(1),
            incarnation: Incarnation(0),
            status: Status::Alive {
                metadata: b"priority=99".to_vec(),
            },
        }],
    };
    let claim = |origin: NodeId| Message::Rumors {
        items: vec![WireRumor {
            id: MessageId {
                origin,
                generation: 1,
                sequence: 1,
            },
            hops: 0,
            payload: gossip_apps::leader::encode_announcement(1_000),
        }],
    };
    for to in 1..n {
        for (from, bytes) in [
            // The phantom joins from its own (unreachable) address.
            (
                phantom,
                wire::encode(
                    &header(phantom),
                    &Message::Join {
                        nonce: 0,
                        metadata: vec![],
                    },
                ),
            ),
            // A spoofed member vouches for the phantom and relays its claim.
            (
                NodeId::new(node_addr(2)),
                wire::encode(&header(NodeId::new(node_addr(2))), &alive),
            ),
            (
                NodeId::new(node_addr(2)),
                wire::encode(&header(NodeId::new(node_addr(2))), &claim(phantom)),
            ),
            // The phantom speaks for itself.
            (phantom, wire::encode(&header(phantom), &claim(phantom))),
        ] {
            let _ = c.command(
                to,
                |_, node, now| node.handle_message(now, from.addr(), &bytes),
                &mut (),
            );
        }
    }
    let _ = config;
    c.run_until(Duration::from_secs(40), &mut ());
    for i in 0..n {
        let election = &c.app(i).election;
        assert_eq!(election.leader(), Some(leader), "node {i}");
        assert!(election.term() < 1_000, "node {i} took the phantom's term");
        let history = &c.app(i).history;
        assert!(
            history.iter().all(|s| s.leader != Some(phantom)),
            "node {i}"
        );
    }
}

#[test]
fn a_fifty_fifty_split_is_reported_on_both_sides_and_healed() {
    let scenario = PartitionScenario {
        split_at: Duration::from_secs(20),
        heal_at: Duration::from_secs(40),
        duration: Duration::from_secs(55),
        ..PartitionScenario::new(10)
    };
    let report = run_partition(&scenario, &RumorMongering::default()).unwrap();
    assert_eq!(
        (report.reported_side_a, report.reported_side_b),
        (5, 5),
        "{report:?}"
    );
    assert!(report.reported_s.max.unwrap() <= 10.0, "{report:?}");
    assert_eq!(report.healed_nodes, 10, "{report:?}");
    assert!(report.healed_s.max.unwrap() <= 5.0, "{report:?}");
    assert_eq!(report.false_reports, 0);
    assert_eq!(report.leaders_with_quorum_during_split, 0, "{report:?}");
    assert_eq!(report.agree_after_heal, 10);
}
