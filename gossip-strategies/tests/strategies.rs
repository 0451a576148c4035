//! Every strategy delivers, in math mode and inside real nodes exchanging
//! encoded frames; the baselines' message counts are exact; counters and
//! coins stop; eager relay beats round batching on latency.

use std::net::SocketAddr;
use std::time::Duration;

use gossip_core::{Config, Event, NodeId};
use gossip_sim::{node_addr, run_math, LinkModel, MathScenario, Observer, Simulator};
use gossip_strategies::{
    AntiEntropy, AnyStrategy, Central, Direct, Flood, Mode, Relay, RumorMongering, Termination,
};

fn coordinator() -> Central {
    Central {
        coordinator: NodeId::new(node_addr(0)),
    }
}

#[test]
fn baselines_send_exactly_their_textbook_counts() {
    let n = 100;
    let flood = run_math(&MathScenario::new(n, 1), &Flood);
    assert_eq!(flood.payload_messages, (n * (n - 1)) as u64);
    assert_eq!(flood.residue, 0.0);

    let direct = run_math(&MathScenario::new(n, 1), &Direct);
    assert_eq!(direct.payload_messages, (n - 1) as u64);
    assert_eq!(direct.residue, 0.0);

    let mut from_member = MathScenario::new(n, 1);
    from_member.origin = 5;
    let central = run_math(&from_member, &coordinator());
    assert_eq!(
        central.payload_messages, n as u64,
        "1 to the coordinator, N-1 from it"
    );
    assert_eq!(central.residue, 0.0);
    assert_eq!(central.rounds, 2, "two hops");
}

#[test]
fn central_delivers_nothing_once_its_coordinator_is_down() {
    let mut scenario = MathScenario::new(50, 1);
    scenario.origin = 7;
    scenario.crash = Some((0, 1));
    let run = run_math(&scenario, &coordinator());
    assert_eq!(run.informed, 1, "only the origin holds its update");
}

#[test]
fn anti_entropy_informs_everyone_in_every_mode() {
    for mode in [Mode::Push, Mode::Pull, Mode::PushPull] {
        let mut scenario = MathScenario::new(500, 3);
        scenario.stop_when_all_informed = true;
        let run = run_math(&scenario, &AntiEntropy::new(mode, 1));
        assert_eq!(run.residue, 0.0, "{mode:?}");
        assert!(
            run.rounds > 5 && run.rounds < 40,
            "{mode:?}: {} rounds",
            run.rounds
        );
    }
    // Push-pull is the fastest of the three (Karp et al.).
    let rounds = |mode| {
        (0..20)
            .map(|seed| {
                let mut s = MathScenario::new(2000, seed);
                s.stop_when_all_informed = true;
                run_math(&s, &AntiEntropy::new(mode, 1)).rounds
            })
            .sum::<u32>()
    };
    assert!(rounds(Mode::PushPull) < rounds(Mode::Push));
}

#[test]
fn rumor_mongering_stops_and_leaves_the_predicted_residue() {
    for termination in [
        Termination::FeedbackCounter,
        Termination::FeedbackCoin,
        Termination::BlindCounter,
        Termination::BlindCoin,
    ] {
        let run = run_math(
            &MathScenario::new(1000, 2),
            &RumorMongering::new(Mode::Push, termination, 2),
        );
        assert!(run.rounds_run < 1000, "{termination:?} must stop by itself");
        assert!(
            run.informed > 500,
            "{termination:?}: {} informed",
            run.informed
        );
    }
    // Push, feedback and coin, k=1: s = e^(-2(1-s)) gives s = 0.2032.
    let residue: f64 = (0..40)
        .map(|seed| {
            run_math(
                &MathScenario::new(2000, seed),
                &RumorMongering::new(Mode::Push, Termination::FeedbackCoin, 1),
            )
            .residue
        })
        .sum::<f64>()
        / 40.0;
    assert!((residue - 0.2032).abs() < 0.03, "mean residue {residue}");
}

#[test]
fn pull_rumors_leave_fewer_nodes_behind_than_push() {
    let mean = |mode| {
        (0..20)
            .map(|seed| {
                run_math(
                    &MathScenario::new(1000, seed),
                    &RumorMongering::new(mode, Termination::FeedbackCounter, 1),
                )
                .residue
            })
            .sum::<f64>()
    };
    assert!(mean(Mode::Pull) < mean(Mode::Push));
}

#[test]
fn hop_limit_caps_the_spread() {
    let limited = RumorMongering::new(Mode::Push, Termination::BlindCounter, 50).hop_limit(1);
    let run = run_math(&MathScenario::new(1000, 1), &limited);
    // Only the origin's own pushes go out: at most k = 50 contacts.
    assert!(run.informed <= 51, "{} informed", run.informed);
}

/// Counts first deliveries per node and when they happened.
#[derive(Default)]
struct Deliveries {
    per_node: Vec<usize>,
    times: Vec<Duration>,
}

impl Observer for Deliveries {
    fn on_event(&mut self, at: Duration, node: usize, event: &Event) {
        if let Event::Delivered { .. } = event {
            self.per_node[node] += 1;
            self.times.push(at);
        }
    }
    fn on_transmit(&mut self, _at: Duration, _from: usize, _to: SocketAddr, _bytes: &[u8]) {}
}

fn full_run(strategy: AnyStrategy, n: usize, loss: f64) -> Deliveries {
    let link = LinkModel {
        loss,
        ..LinkModel::default()
    };
    let mut sim = Simulator::with_strategy(n, 11, Config::lan(n), link, strategy);
    sim.start_all();
    sim.run_until(Duration::from_secs(5), &mut ());
    let mut seen = Deliveries {
        per_node: vec![0; n],
        times: Vec::new(),
    };
    let origin = 3;
    sim.broadcast(origin, b"hello, cluster", &mut seen)
        .expect("broadcast accepted");
    sim.run_until(Duration::from_secs(30), &mut seen);
    assert_eq!(
        seen.per_node[origin], 0,
        "the origin does not deliver to itself"
    );
    seen.per_node[origin] = 1;
    seen
}

#[test]
fn every_strategy_delivers_over_real_encoded_frames() {
    let n = 30;
    let strategies = [
        AnyStrategy::Flood(Flood),
        AnyStrategy::Direct(Direct),
        AnyStrategy::Central(coordinator()),
        AnyStrategy::AntiEntropy(AntiEntropy::new(Mode::PushPull, 1)),
        AnyStrategy::Rumor(
            RumorMongering::new(Mode::PushPull, Termination::FeedbackCoin, 2)
                .backed_by(AntiEntropy::new(Mode::PushPull, 1).every(5)),
        ),
    ];
    for strategy in strategies {
        let seen = full_run(strategy.clone(), n, 0.0);
        assert!(
            seen.per_node.iter().all(|&d| d == 1),
            "{strategy:?}: {:?}",
            seen.per_node
        );
    }
}

#[test]
fn backed_rumors_reach_everyone_despite_loss() {
    let strategy = AnyStrategy::Rumor(
        RumorMongering::new(Mode::Push, Termination::FeedbackCoin, 1)
            .backed_by(AntiEntropy::new(Mode::PushPull, 1).every(5)),
    );
    let seen = full_run(strategy, 40, 0.05);
    assert!(seen.per_node.iter().all(|&d| d == 1), "{:?}", seen.per_node);
}

#[test]
fn eager_relay_is_faster_than_round_batching() {
    let rumor = |relay| {
        AnyStrategy::Rumor(
            RumorMongering::new(Mode::Push, Termination::BlindCounter, 3)
                .fanout(3)
                .relay(relay)
                .backed_by(AntiEntropy::new(Mode::PushPull, 1).every(5)),
        )
    };
    let eager = full_run(rumor(Relay::Eager), 40, 0.0);
    let batched = full_run(rumor(Relay::Batched), 40, 0.0);
    assert!(eager.per_node.iter().all(|&d| d == 1) && batched.per_node.iter().all(|&d| d == 1));
    // Median delivery delay: hops times the link delay, against rounds of 200 ms.
    let median = |d: &Deliveries| d.times[d.times.len() / 2] - Duration::from_secs(5);
    assert!(
        median(&eager) * 10 < median(&batched),
        "eager {:?} vs batched {:?}",
        median(&eager),
        median(&batched)
    );
}

mod hostile_input {
    //! Inputs a peer (or a forger) controls must not hurt a node with a strategy.

    use std::time::{Duration, Instant};

    use gossip_core::wire::{self, Header, Message, WireRumor, PROTOCOL_VERSION};
    use gossip_core::{
        Config, Digest, Generation, Incarnation, MessageId, Node, NodeId, RecvError,
    };
    use gossip_strategies::{AntiEntropy, AnyStrategy, Flood, Mode};

    fn addr(port: u16) -> std::net::SocketAddr {
        ([127, 0, 0, 1], port).into()
    }

    fn node(strategy: AnyStrategy, now: Instant) -> Node<AnyStrategy> {
        let mut node = Node::with_strategy(
            Config::default(),
            NodeId::new(addr(1)),
            Generation(1_700_000_000_000),
            1,
            strategy,
        )
        .unwrap();
        node.join(now, &[]).unwrap();
        node
    }

    fn frame(sender: u16, message: &Message) -> Vec<u8> {
        let header = Header {
            version: PROTOCOL_VERSION,
            label: "",
            sender: NodeId::new(addr(sender)),
            generation: Generation(0),
            incarnation: Incarnation(0),
        };
        wire::encode(&header, message)
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // an arbitrary origin; only differences matter
    fn a_departed_node_with_rounds_goes_quiet() {
        let now = Instant::now();
        let mut node = node(
            AnyStrategy::AntiEntropy(AntiEntropy::new(Mode::PushPull, 1)),
            now,
        );
        node.leave(now).unwrap();
        let later = now + Duration::from_secs(5);
        node.handle_timeout(later);
        assert!(
            node.poll_timeout().is_none_or(|t| t > later),
            "a past deadline would make every driver spin"
        );
    }

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn a_rumor_too_large_to_relay_is_refused_unchanged() {
        let now = Instant::now();
        let mut node = node(AnyStrategy::Flood(Flood), now);
        // A peer with a shorter header fits a payload our own frame cannot.
        let payload = vec![7u8; node.max_payload_len() + 40];
        let bytes = frame(
            2,
            &Message::Rumors {
                items: vec![WireRumor {
                    id: MessageId {
                        origin: NodeId::new(addr(2)),
                        generation: 0,
                        sequence: 1,
                    },
                    hops: 0,
                    payload,
                }],
            },
        );
        assert!(bytes.len() <= Config::default().max_message_size.get());
        let result = node.handle_message(now, addr(2), &bytes);
        assert!(
            matches!(result, Err(RecvError::PayloadTooLarge { .. })),
            "{result:?}"
        );
        assert!(node.poll_event().is_none() && node.poll_transmit().is_none());
        assert_eq!(node.stats().rumors_delivered, 0);
    }

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn a_pull_claiming_another_sender_is_refused() {
        let now = Instant::now();
        let mut node = node(
            AnyStrategy::AntiEntropy(AntiEntropy::new(Mode::Pull, 1)),
            now,
        );
        node.broadcast(now, b"stored").unwrap();
        while node.poll_transmit().is_some() {}
        let pull = frame(
            9,
            &Message::Pull {
                reciprocate: false,
                digest: Digest::default(),
            },
        );
        // The frame names 127.0.0.1:9 but arrives from :2: the answer would
        // go to a third party.
        assert_eq!(
            node.handle_message(now, addr(2), &pull),
            Err(RecvError::SenderMismatch)
        );
        assert!(node.poll_transmit().is_none());
        // From its own address, but from a stranger, it is ignored.
        node.handle_message(now, addr(9), &pull).unwrap();
        assert!(node.poll_transmit().is_none());
        // Once :9 joined and proved its address, it is answered.
        let join = frame(
            9,
            &Message::Join {
                nonce: 0,
                metadata: vec![],
            },
        );
        node.handle_message(now, addr(9), &join).unwrap();
        let config = node.config().clone();
        let seq = core::iter::from_fn(|| node.poll_transmit())
            .find_map(|t| match wire::decode(&config, &t.bytes) {
                Ok((_, Message::Verify { seq })) => Some(seq),
                _ => None,
            })
            .expect("the joiner is challenged");
        let ack = frame(
            9,
            &Message::Ack {
                seq,
                updates: vec![],
            },
        );
        node.handle_message(now, addr(9), &ack).unwrap();
        while node.poll_transmit().is_some() {}
        node.handle_message(now, addr(9), &pull).unwrap();
        let answer = node.poll_transmit().expect("the stored rumor");
        assert_eq!(answer.to, addr(9));
    }
}

#[test]
fn hot_rumors_stay_bounded() {
    use gossip_core::{Digest, GossipMessage, Host, MessageId, Rumor, Strategy};

    /// A host with nothing to offer: sends go nowhere.
    struct Nowhere;
    impl Host for Nowhere {
        fn me(&self) -> NodeId {
            NodeId::new(node_addr(0))
        }
        fn random(&mut self) -> f64 {
            0.5
        }
        fn sample_peers(&mut self, _count: usize, _out: &mut Vec<NodeId>) {}
        fn all_peers(&mut self, _out: &mut Vec<NodeId>) {}
        fn peer_count(&self) -> usize {
            0
        }
        fn has(&self, _id: MessageId) -> bool {
            false
        }
        fn digest(&self) -> Digest {
            Digest::default()
        }
        fn missing_from(&self, _digest: &Digest, _out: &mut Vec<Rumor>) {}
        fn send(&mut self, _to: NodeId, _message: GossipMessage) {}
    }

    let mut rumor = RumorMongering::new(Mode::Push, Termination::FeedbackCounter, 3);
    rumor.max_hot = 5;
    for sequence in 1..=100 {
        let id = MessageId {
            origin: NodeId::new(node_addr(1)),
            generation: 0,
            sequence,
        };
        rumor.on_rumor(
            &mut Nowhere,
            Rumor { id, hops: 1 },
            Some(NodeId::new(node_addr(1))),
        );
    }
    // Nobody ever answers, so feedback never cools them: only the cap bounds them.
    assert_eq!(rumor.hot_count(), 5);
}

#[test]
fn the_eager_wave_fans_out_to_ln_n_plus_two_and_its_duplicates_are_forgiven() {
    use gossip_core::{Digest, GossipMessage, Host, MessageId, Rumor, Strategy};

    /// A host that knows `peers` peers and records whom it pushed to.
    struct Recording {
        peers: usize,
        pushes: Vec<NodeId>,
        next: usize,
    }
    impl Host for Recording {
        fn me(&self) -> NodeId {
            NodeId::new(node_addr(0))
        }
        fn random(&mut self) -> f64 {
            0.5
        }
        fn sample_peers(&mut self, count: usize, out: &mut Vec<NodeId>) {
            for _ in 0..count.min(self.peers) {
                self.next = self.next % self.peers + 1;
                out.push(NodeId::new(node_addr(self.next)));
            }
        }
        fn all_peers(&mut self, _out: &mut Vec<NodeId>) {}
        fn peer_count(&self) -> usize {
            self.peers
        }
        fn has(&self, _id: MessageId) -> bool {
            true
        }
        fn digest(&self) -> Digest {
            Digest::default()
        }
        fn missing_from(&self, _digest: &Digest, _out: &mut Vec<Rumor>) {}
        fn send(&mut self, to: NodeId, message: GossipMessage) {
            if matches!(message, GossipMessage::Push { .. }) {
                self.pushes.push(to);
            }
        }
    }

    let mut host = Recording {
        peers: 100,
        pushes: Vec::new(),
        next: 0,
    };
    let mut rumor = RumorMongering::default();
    let id = MessageId {
        origin: NodeId::new(node_addr(1)),
        generation: 0,
        sequence: 1,
    };
    let from = NodeId::new(node_addr(1));
    rumor.on_rumor(&mut host, Rumor { id, hops: 1 }, Some(from));
    // ceil(ln 100) + 2 = 7, more than the configured fanout of 3.
    assert_eq!(host.pushes.len(), 7);
    // Every one of the wave's contacts already had it: still hot.
    for peer in host.pushes.clone() {
        rumor.on_feedback(&mut host, peer, &[id]);
    }
    assert_eq!(rumor.hot_count(), 1, "the wave's duplicates are forgiven");
    rumor.on_round(&mut host);
    assert_eq!(
        host.pushes.len(),
        7 + 3,
        "one round at the configured fanout"
    );
    // Three useless round contacts (the counter k = 3) end its interest.
    let round_pushes: Vec<NodeId> = host.pushes[7..].to_vec();
    for peer in round_pushes {
        rumor.on_feedback(&mut host, peer, &[id]);
    }
    assert_eq!(rumor.hot_count(), 0);

    // Batched relay keeps the configured fanout and waits for the round.
    let mut batched = RumorMongering::default().relay(Relay::Batched);
    host.pushes.clear();
    batched.on_rumor(&mut host, Rumor { id, hops: 1 }, Some(from));
    assert!(host.pushes.is_empty());
}

/// Many origins streaming at once into one cluster: every origin's rumors
/// travel its own tree, so each node gets about one copy of each, not the
/// two or more a single shared tree gave while its links were pruned at
/// two places of a cycle at once and grafted back.
#[test]
fn plumtree_streams_from_many_origins_with_about_one_copy_per_node() {
    let scenario = gossip_sim::StreamScenario {
        rate: 200.0,
        secs: 3.0,
        ..gossip_sim::StreamScenario::new(40)
    };
    let mut tree = gossip_strategies::TreeStats::default();
    let report = gossip_sim::run_stream(
        &scenario,
        &AnyStrategy::Plumtree(gossip_strategies::Plumtree::default()),
        |node| {
            if let Some(stats) = node.strategy().tree_stats() {
                tree.add(&stats);
            }
        },
    )
    .expect("the stream runs");
    assert_eq!(report.delivered_fraction, 1.0, "{report:?}");
    assert!(
        report.copies_per_node_per_rumor < 1.1,
        "copies per node per rumor: {report:?}"
    );
    assert!(
        report.duplicates_per_node_per_rumor < 0.1,
        "duplicates: {report:?}"
    );
    // Rumors seldom need a graft once the trees have formed.
    let deliveries = report.submitted * (scenario.nodes as u64 - 1);
    assert!(
        tree.graft_deliveries * 20 < deliveries,
        "{tree:?} over {deliveries} deliveries"
    );
}
