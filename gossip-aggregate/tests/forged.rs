//! Every share may come from a liar: each rule an aggregate keeps against
//! forged shares, tried by a forged sender, and a check that honest runs
//! trip none of them.

use std::cell::Cell;

use gossip_aggregate::{
    Algorithm, AnyAggregate, AnyShare, FlowShare, Function, Input, Limits, PushPullShare,
    PushSumShare,
};
use gossip_core::{Aggregate, AggregateHost, NodeId};
use gossip_sim::{run_aggregation, AggregationProbe, AggregationScenario, RoundStats};

fn id(port: u16) -> NodeId {
    NodeId::new(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

fn input(value: f64) -> Input {
    Input {
        value,
        leader: false,
    }
}

/// A host that offers a fixed list of peers and records what is sent.
struct Recorder {
    peers: Vec<NodeId>,
    sent: Vec<(NodeId, AnyShare)>,
}

impl Recorder {
    fn new(peers: &[u16]) -> Self {
        Self {
            peers: peers.iter().map(|&p| id(p)).collect(),
            sent: Vec::new(),
        }
    }
}

impl AggregateHost<AnyShare> for Recorder {
    fn me(&self) -> NodeId {
        id(1)
    }
    fn random(&mut self) -> f64 {
        0.5
    }
    fn sample_peers(&mut self, count: usize, out: &mut Vec<NodeId>) {
        out.extend(self.peers.iter().take(count));
    }
    fn send(&mut self, to: NodeId, share: AnyShare) {
        self.sent.push((to, share));
    }
}

/// Offers `share` from `from` and asserts it is refused: the node's
/// serialized state is unchanged but for one more rejection, nothing is
/// sent, and the estimate did not move.
fn assert_refused(node: &mut AnyAggregate, from: NodeId, share: AnyShare) {
    let before = node.clone();
    let rejected = node.rejected_shares();
    let mut host = Recorder::new(&[]);
    node.on_share(&mut host, from, share);
    assert_eq!(
        node.rejected_shares(),
        rejected + 1,
        "{share:?} was not counted as refused"
    );
    assert!(host.sent.is_empty(), "{share:?} drew {:?}", host.sent);
    assert_eq!(node.estimate(), before.estimate(), "{share:?} moved it");
    assert_eq!(node.mass(), before.mass(), "{share:?} moved the mass");
}

#[test]
fn push_sum_refuses_non_finite_negative_and_too_heavy_mass() {
    let mut node = AnyAggregate::new(Algorithm::PushSum, Function::Average, input(0.5), None);
    let forged = [
        (f64::NAN, 1.0),
        (f64::INFINITY, 1.0),
        (1.0, f64::INFINITY),
        (1.0, f64::NAN),
        (-3.0, -1.0),
        (0.0, -1e-300),
        // Far more weight than a share can honestly hold.
        (1e6, 1e6),
        (65.0, 65.0),
    ];
    for (x, y) in forged {
        assert_refused(
            &mut node,
            id(2),
            AnyShare::PushSum(PushSumShare::Mass { epoch: 0, x, y }),
        );
    }
    let r = node.rejections();
    assert_eq!((r.malformed, r.too_heavy), (6, 2), "{r:?}");
    // An honest share at the limit still counts.
    let mut host = Recorder::new(&[]);
    node.on_share(
        &mut host,
        id(2),
        AnyShare::PushSum(PushSumShare::Mass {
            epoch: 0,
            x: 64.0 * 0.25,
            y: 64.0,
        }),
    );
    assert_eq!(node.rejected_shares(), 8);
    let expected = (0.5 + 16.0) / 65.0;
    assert!((node.estimate().unwrap() - expected).abs() < 1e-12);
}

#[test]
fn a_forged_infinite_extreme_is_refused_but_the_neutral_one_is_harmless() {
    for algorithm in [
        Algorithm::PushSum,
        Algorithm::PushPull,
        Algorithm::FlowUpdating { degree: 2 },
    ] {
        let mut node = AnyAggregate::new(algorithm, Function::Max, input(0.5), None);
        let extreme = |value: f64| match algorithm {
            Algorithm::PushSum => AnyShare::PushSum(PushSumShare::Extreme { epoch: 0, value }),
            Algorithm::PushPull => AnyShare::PushPull(PushPullShare::Request {
                epoch: 0,
                x: 0.5,
                y: 1.0,
                extreme: value,
            }),
            Algorithm::FlowUpdating { .. } => {
                AnyShare::FlowUpdating(FlowShare::Extreme { epoch: 0, value })
            }
        };
        for forged in [f64::INFINITY, f64::NAN] {
            assert_refused(&mut node, id(2), extreme(forged));
        }
        assert_eq!(node.estimate(), Some(0.5), "{algorithm:?}");
        // What a node that has seen nothing sends for a max: accepted,
        // and the estimate stays.
        let mut host = Recorder::new(&[]);
        node.on_share(&mut host, id(2), extreme(f64::NEG_INFINITY));
        assert_eq!(node.rejected_shares(), 2, "{algorithm:?}");
        assert_eq!(node.estimate(), Some(0.5), "{algorithm:?}");
        // A real, larger one is taken.
        node.on_share(&mut host, id(2), extreme(0.75));
        assert_eq!(node.estimate(), Some(0.75), "{algorithm:?}");
    }
}

#[test]
fn a_value_range_keeps_a_liar_inside_it() {
    let limits = Limits {
        value_range: Some((0.0, 1.0)),
        ..Limits::default()
    };
    let mut push_sum = AnyAggregate::new(Algorithm::PushSum, Function::Average, input(0.5), None)
        .with_limits(limits);
    assert_refused(
        &mut push_sum,
        id(2),
        AnyShare::PushSum(PushSumShare::Mass {
            epoch: 0,
            x: 5.0,
            y: 1.0,
        }),
    );
    assert_refused(
        &mut push_sum,
        id(2),
        AnyShare::PushSum(PushSumShare::Mass {
            epoch: 0,
            x: -0.001,
            y: 1.0,
        }),
    );
    let mut max =
        AnyAggregate::new(Algorithm::PushSum, Function::Max, input(0.5), None).with_limits(limits);
    assert_refused(
        &mut max,
        id(2),
        AnyShare::PushSum(PushSumShare::Extreme {
            epoch: 0,
            value: 1.5,
        }),
    );
    assert_eq!(max.rejections().out_of_range, 1);
    // In range, the liar's worst is an extreme input.
    let mut host = Recorder::new(&[]);
    push_sum.on_share(
        &mut host,
        id(2),
        AnyShare::PushSum(PushSumShare::Mass {
            epoch: 0,
            x: 1.0,
            y: 1.0,
        }),
    );
    assert_eq!(push_sum.estimate(), Some(0.75));

    let mut flow = AnyAggregate::new(
        Algorithm::FlowUpdating { degree: 2 },
        Function::Average,
        input(0.5),
        None,
    )
    .with_limits(limits);
    for (fx, fy, ex, ey) in [
        // A flow carrying more than 64 inputs' worth of value.
        (-65.0, 0.0, 0.5, 1.0),
        // An estimate outside the range.
        (0.0, 0.0, 2.0, 1.0),
    ] {
        assert_refused(
            &mut flow,
            id(2),
            AnyShare::FlowUpdating(FlowShare::Flow {
                epoch: 0,
                fx,
                fy,
                ex,
                ey,
            }),
        );
    }
    assert_eq!(flow.rejections().out_of_range, 2);
}

fn reply(epoch: u64, dx: f64, dy: f64) -> AnyShare {
    AnyShare::PushPull(PushPullShare::Reply {
        epoch,
        dx,
        dy,
        extreme: 0.0,
    })
}

#[test]
fn push_pull_takes_only_replies_to_its_own_outstanding_requests() {
    let mut node = AnyAggregate::new(Algorithm::PushPull, Function::Average, input(1.0), None);
    // Nothing asked yet: a reply from anyone is unsolicited.
    assert_refused(&mut node, id(2), reply(0, -0.5, 0.0));
    // Ask peer 2.
    let mut host = Recorder::new(&[2]);
    node.on_round(&mut host);
    assert!(matches!(
        host.sent[..],
        [(to, AnyShare::PushPull(PushPullShare::Request { .. }))] if to == id(2)
    ));
    // Another peer answers in its place: refused.
    assert_refused(&mut node, id(3), reply(0, -0.5, 0.0));
    // The right peer, a wrong epoch: refused.
    assert_refused(&mut node, id(2), reply(1, -0.5, 0.0));
    // The right peer with a reply that implies a negative weight for it
    // (its pair would be (1 - 1, 1 - 4)): refused, the request still open.
    assert_refused(&mut node, id(2), reply(0, -0.5, -2.0));
    assert_eq!(node.rejections().unsolicited, 3);
    assert_eq!(node.rejections().malformed, 1);
    // The real answer (peer 2 held (0, 1)): taken.
    let mut host = Recorder::new(&[]);
    node.on_share(&mut host, id(2), reply(0, -0.5, 0.0));
    assert_eq!(node.estimate(), Some(0.5));
    // The same answer replayed: the request is answered, refused.
    assert_refused(&mut node, id(2), reply(0, -0.5, 0.0));
    assert_eq!(node.estimate(), Some(0.5));
    assert_eq!(node.rejections().unsolicited, 4);
}

#[test]
fn push_pull_forgets_requests_after_the_timeout_and_keeps_at_most_the_bound() {
    let limits = Limits {
        reply_timeout: 3,
        max_outstanding: 2,
        ..Limits::default()
    };
    let mut node = AnyAggregate::new(Algorithm::PushPull, Function::Average, input(1.0), None)
        .with_limits(limits);
    let mut host = Recorder::new(&[2]);
    node.on_round(&mut host);
    let AnyAggregate::PushPull(inner) = &node else {
        unreachable!()
    };
    assert_eq!(inner.outstanding(), 1);
    // Ten rounds without answers (each asks peer 2 again): never more than
    // the bound.
    for _ in 0..10 {
        node.on_round(&mut host);
        let AnyAggregate::PushPull(inner) = &node else {
            unreachable!()
        };
        assert!(inner.outstanding() <= 2, "{}", inner.outstanding());
    }
    // Let every request expire: rounds pass, peer 2 no longer sampled.
    let mut quiet = Recorder::new(&[]);
    for _ in 0..3 {
        node.on_round(&mut quiet);
    }
    let AnyAggregate::PushPull(inner) = &node else {
        unreachable!()
    };
    assert_eq!(inner.outstanding(), 0);
    // So a late (or forged) answer from peer 2 is refused.
    assert_refused(&mut node, id(2), reply(0, -0.5, 0.0));
}

#[test]
fn flow_updating_caps_links_and_refuses_strangers_when_full() {
    let limits = Limits {
        max_links: 8,
        ..Limits::default()
    };
    let mut node = AnyAggregate::new(
        Algorithm::FlowUpdating { degree: 3 },
        Function::Average,
        input(0.5),
        None,
    )
    .with_limits(limits);
    let links = |node: &AnyAggregate| match node {
        AnyAggregate::FlowUpdating(f) => f.link_count(),
        _ => unreachable!(),
    };
    // The node picks its own 3 neighbours.
    let mut pick = Recorder::new(&[2, 3, 4]);
    node.on_round(&mut pick);
    assert_eq!(links(&node), 3);
    // A flood of strangers asking to link (joins and flows).
    let mut host = Recorder::new(&[]);
    let flow = |ex: f64| {
        AnyShare::FlowUpdating(FlowShare::Flow {
            epoch: 0,
            fx: 0.0,
            fy: 0.0,
            ex,
            ey: 1.0,
        })
    };
    for port in 100..200u16 {
        node.on_share(&mut host, id(port), AnyShare::FlowUpdating(FlowShare::Join));
        node.on_share(&mut host, id(port + 1000), flow(0.5));
    }
    // The node took strangers only until it held the cap less its own 3
    // picks' worth.
    assert_eq!(links(&node), 5);
    assert_eq!(node.rejections().refused_links, 198);
    // A refused stranger's flow moves nothing.
    assert_refused(
        &mut node,
        id(7777),
        AnyShare::FlowUpdating(FlowShare::Flow {
            epoch: 0,
            fx: -10.0,
            fy: 0.0,
            ex: 9.0,
            ey: 1.0,
        }),
    );
    assert_refused(&mut node, id(7778), AnyShare::FlowUpdating(FlowShare::Join));
    // Established neighbours, its own picks included, are still heard.
    let rejected = node.rejected_shares();
    for port in [2, 3, 4, 100] {
        node.on_share(&mut host, id(port), flow(0.25));
    }
    assert_eq!(node.rejected_shares(), rejected);
    assert_eq!(links(&node), 5);
    // A neighbour that leaves frees its slot for a stranger.
    node.on_peer_down(id(100));
    node.on_share(&mut host, id(7779), AnyShare::FlowUpdating(FlowShare::Join));
    assert_eq!(node.rejected_shares(), rejected);
    assert_eq!(links(&node), 5);
}

#[test]
fn one_flow_share_moves_a_node_by_a_bounded_amount() {
    let mut node = AnyAggregate::new(
        Algorithm::FlowUpdating { degree: 1 },
        Function::Count,
        Input {
            value: 0.0,
            leader: false,
        },
        None,
    );
    let mut host = Recorder::new(&[]);
    // A flow claiming more weight than the limit: refused.
    for (fx, fy, ex, ey) in [
        (0.0, -65.0, 0.0, 0.0),
        (0.0, 65.0, 0.0, 0.0),
        (0.0, 0.0, 1.0, 65.0),
        (0.0, 0.0, 1.0, -65.0),
        (f64::NAN, 0.0, 1.0, 1.0),
    ] {
        assert_refused(
            &mut node,
            id(2),
            AnyShare::FlowUpdating(FlowShare::Flow {
                epoch: 0,
                fx,
                fy,
                ex,
                ey,
            }),
        );
    }
    // The largest accepted flow hands this node at most 64 of weight.
    node.on_share(
        &mut host,
        id(2),
        AnyShare::FlowUpdating(FlowShare::Flow {
            epoch: 0,
            fx: 0.0,
            fy: 64.0,
            ex: 0.0,
            ey: 1.0,
        }),
    );
    assert_eq!(node.rejected_shares(), 5);
    // A non-leader of a count starts at (1, 0); the sender's flow of 64
    // towards us is a flow of -64 from us: we hold (1, 64).
    assert_eq!(node.estimate(), Some(1.0 / 64.0));
}

/// Runs an honest scenario and returns the largest number of shares any
/// node refused.
fn honest_rejections(
    algorithm: Algorithm,
    function: Function,
    scenario: AggregationScenario,
    epoch: Option<u32>,
) -> u64 {
    let worst = Cell::new(0u64);
    run_aggregation(
        &scenario,
        AggregationProbe {
            make: |_slot, value, leader, newcomer| {
                let node = AnyAggregate::new(algorithm, function, Input { value, leader }, epoch);
                if newcomer {
                    node.newcomer()
                } else {
                    node
                }
            },
            truth: |inputs: &[f64]| function.exact(inputs),
            mass: |node: &AnyAggregate| {
                worst.set(worst.get().max(node.rejected_shares()));
                node.mass()
            },
            observe: |_: &RoundStats, _: &[Option<f64>]| {},
        },
    );
    worst.get()
}

#[test]
fn honest_runs_refuse_nothing_under_loss_and_churn() {
    for algorithm in [
        Algorithm::PushSum,
        Algorithm::PushPull,
        Algorithm::FlowUpdating { degree: 4 },
    ] {
        for function in [Function::Average, Function::Count, Function::Min] {
            // The last run is the churn test's (flow updating's estimates
            // dip below zero weight there: a sign check would refuse them).
            for (nodes, seed, rounds, loss, churn, epoch) in [
                (1000, 3, 150, 0.0, 0.0, None),
                (1000, 3, 150, 0.05, 0.0, None),
                (1000, 3, 150, 0.0, 0.01, Some(50)),
                (3000, 9, 250, 0.0, 0.01, Some(50)),
            ] {
                let scenario = AggregationScenario {
                    nodes,
                    seed,
                    rounds,
                    loss,
                    churn,
                };
                let refused = honest_rejections(algorithm, function, scenario, epoch);
                assert_eq!(
                    refused, 0,
                    "{algorithm:?} {function:?} loss {loss} churn {churn}"
                );
            }
        }
    }
}

#[test]
fn degenerate_limits_from_a_config_neither_open_nor_close_everything() {
    let limits = Limits {
        max_share_weight: f64::NAN,
        value_range: Some((1.0, 0.0)),
        ..Limits::default()
    };
    let mut node = AnyAggregate::new(Algorithm::PushSum, Function::Average, input(0.5), None)
        .with_limits(limits);
    // A NaN cap reads as the default: a huge weight is still refused.
    assert_refused(
        &mut node,
        id(2),
        AnyShare::PushSum(PushSumShare::Mass {
            epoch: 0,
            x: 100.0,
            y: 100.0,
        }),
    );
    // An empty range is ignored: an ordinary share is taken.
    let mut host = Recorder::new(&[]);
    node.on_share(
        &mut host,
        id(2),
        AnyShare::PushSum(PushSumShare::Mass {
            epoch: 0,
            x: 0.25,
            y: 0.5,
        }),
    );
    assert_eq!(node.rejected_shares(), 1);
    assert_eq!(node.estimate(), Some(0.75 / 1.5));
}
