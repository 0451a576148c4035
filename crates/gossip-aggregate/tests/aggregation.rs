//! Mass conservation, convergence, exact extremes, robustness to loss (flow
//! updating) and epochs under churn, in the simulator's math mode.

use gossip_aggregate::{Algorithm, AnyAggregate, Function, Input, PushSum};
use gossip_core::Aggregate;
use gossip_sim::{run_aggregation, AggregationProbe, AggregationScenario, RoundStats};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Algo {
    PushSum,
    PushPull,
    Flow,
}

fn build(
    algo: Algo,
    function: Function,
    epoch: Option<u32>,
) -> impl FnMut(usize, f64, bool, bool) -> AnyAggregate {
    let algorithm = match algo {
        Algo::PushSum => Algorithm::PushSum,
        Algo::PushPull => Algorithm::PushPull,
        Algo::Flow => Algorithm::FlowUpdating { degree: 4 },
    };
    move |_slot, value, leader, newcomer| {
        let node = AnyAggregate::new(algorithm, function, Input { value, leader }, epoch);
        if newcomer {
            node.newcomer()
        } else {
            node
        }
    }
}

fn truth(function: Function) -> impl Fn(&[f64]) -> f64 {
    move |inputs: &[f64]| function.exact(inputs)
}

/// Runs and returns every round's statistics.
fn run(
    algo: Algo,
    function: Function,
    scenario: AggregationScenario,
    epoch: Option<u32>,
) -> Vec<RoundStats> {
    let mut rounds = Vec::new();
    run_aggregation(
        &scenario,
        AggregationProbe {
            make: build(algo, function, epoch),
            truth: truth(function),
            mass: AnyAggregate::mass,
            observe: |stats: &RoundStats, _estimates: &[Option<f64>]| rounds.push(stats.clone()),
        },
    );
    rounds
}

fn scenario(nodes: usize, rounds: u32, loss: f64) -> AggregationScenario {
    AggregationScenario {
        nodes,
        seed: 5,
        rounds,
        loss,
        churn: 0.0,
    }
}

#[test]
fn mass_is_conserved_without_loss() {
    for algo in [Algo::PushSum, Algo::PushPull] {
        let stats = run(algo, Function::Average, scenario(1000, 60, 0.0), None);
        for s in &stats {
            let drift = ((s.mass - s.initial_mass) / s.initial_mass).abs();
            assert!(
                drift <= 1e-12,
                "{algo:?} round {}: drift {drift:e}",
                s.round
            );
        }
    }
}

#[test]
fn averages_converge_everywhere() {
    for (algo, rounds) in [(Algo::PushPull, 40), (Algo::PushSum, 70), (Algo::Flow, 70)] {
        let stats = run(algo, Function::Average, scenario(1000, rounds, 0.0), None);
        let last = stats.last().unwrap();
        assert!(
            last.max_rel_error <= 1e-6,
            "{algo:?}: {:e}",
            last.max_rel_error
        );
    }
}

#[test]
fn push_pull_shrinks_variance_by_two_root_e() {
    let stats = run(
        Algo::PushPull,
        Function::Average,
        scenario(5000, 12, 0.0),
        None,
    );
    let factor = (stats[11].variance / stats[1].variance).powf(1.0 / 10.0);
    let theory = 1.0 / (2.0 * std::f64::consts::E.sqrt());
    assert!((factor - theory).abs() < 0.03, "{factor} vs {theory}");
}

#[test]
fn sums_and_counts_need_only_one_leader() {
    for algo in [Algo::PushSum, Algo::PushPull] {
        for function in [Function::Sum, Function::Count] {
            let stats = run(algo, function, scenario(2000, 60, 0.0), None);
            let last = stats.last().unwrap();
            assert!(
                last.max_rel_error <= 0.01,
                "{algo:?} {function:?}: {:e}",
                last.max_rel_error
            );
        }
    }
}

#[test]
fn extremes_are_exact_everywhere() {
    for algo in [Algo::PushSum, Algo::PushPull, Algo::Flow] {
        for function in [Function::Min, Function::Max] {
            let stats = run(algo, function, scenario(1000, 40, 0.0), None);
            assert_eq!(
                stats.last().unwrap().max_rel_error,
                0.0,
                "{algo:?} {function:?}"
            );
        }
    }
}

#[test]
fn flow_updating_converges_despite_loss_where_mass_movers_drift() {
    let flow = run(
        Algo::Flow,
        Function::Average,
        scenario(1000, 200, 0.05),
        None,
    );
    let push_sum = run(
        Algo::PushSum,
        Function::Average,
        scenario(1000, 200, 0.05),
        None,
    );
    let flow_error = flow.last().unwrap().max_rel_error;
    let push_sum_error = push_sum.last().unwrap().max_rel_error;
    assert!(flow_error <= 1e-4, "flow updating: {flow_error:e}");
    assert!(
        push_sum_error > 10.0 * flow_error,
        "push-sum {push_sum_error:e} vs flow {flow_error:e}"
    );
    let lost = push_sum.last().unwrap();
    assert!(
        lost.mass < 0.5 * lost.initial_mass,
        "push-sum loses mass with every lost share"
    );
}

#[test]
fn epochs_follow_the_live_population_under_churn() {
    let mut worst: f64 = 0.0;
    let mut readings = 0;
    run_aggregation(
        &AggregationScenario {
            nodes: 3000,
            seed: 9,
            rounds: 250,
            loss: 0.0,
            churn: 0.01,
        },
        AggregationProbe {
            make: build(Algo::PushPull, Function::Count, Some(50)),
            truth: truth(Function::Count),
            mass: AnyAggregate::mass,
            observe: |stats: &RoundStats, estimates: &[Option<f64>]| {
                if stats.round > 50 && stats.round % 50 == 25 {
                    readings += 1;
                    for e in estimates.iter().flatten() {
                        worst = worst.max((e - stats.truth).abs() / stats.truth);
                    }
                }
            },
        },
    );
    assert_eq!(readings, 4);
    // The figure (5% at 10^4 nodes) comes from `sim aggregation`;
    // 3000 nodes leave a little more sampling noise per epoch.
    assert!(worst <= 0.08, "worst completed-epoch error {worst}");
}

#[test]
fn any_aggregate_round_trips_through_serde_and_ignores_foreign_shares() {
    let node = AnyAggregate::PushSum(PushSum::new(
        Function::Average,
        Input {
            value: 0.5,
            leader: false,
        },
        None,
    ));
    let json = serde_json::to_string(&node).unwrap();
    let mut back: AnyAggregate = serde_json::from_str(&json).unwrap();
    assert_eq!(node, back);
    assert_eq!(back.estimate(), Some(0.5));

    /// A host that records what is sent.
    struct Recorder(Vec<gossip_aggregate::AnyShare>);
    impl gossip_core::AggregateHost<gossip_aggregate::AnyShare> for Recorder {
        fn me(&self) -> gossip_core::NodeId {
            gossip_core::NodeId::new("127.0.0.1:1".parse().unwrap())
        }
        fn random(&mut self) -> f64 {
            0.5
        }
        fn sample_peers(&mut self, _count: usize, _out: &mut Vec<gossip_core::NodeId>) {}
        fn send(&mut self, _to: gossip_core::NodeId, share: gossip_aggregate::AnyShare) {
            self.0.push(share);
        }
    }
    let foreign = gossip_aggregate::AnyShare::PushPull(gossip_aggregate::PushPullShare::Request {
        epoch: 0,
        x: 100.0,
        y: 1.0,
        extreme: 100.0,
    });
    let mut host = Recorder(Vec::new());
    let from = gossip_core::NodeId::new("127.0.0.1:2".parse().unwrap());
    back.on_share(&mut host, from, foreign);
    assert_eq!(
        back.estimate(),
        Some(0.5),
        "a misconfigured peer's share changes nothing"
    );
    assert!(host.0.is_empty(), "and draws no answer");
}

/// Input of node `i` in the full-node tests.
fn value_of(i: usize) -> f64 {
    (i as f64 * 0.618_033_988_75).fract()
}

#[derive(Default)]
struct Estimates(Vec<(usize, f64)>);

impl gossip_sim::Observer for Estimates {
    fn on_event(&mut self, _at: std::time::Duration, node: usize, event: &gossip_core::Event) {
        if let gossip_core::Event::Estimate(value) = event {
            self.0.push((node, *value));
        }
    }
}

#[test]
fn real_nodes_compute_the_average_over_encoded_frames() {
    use std::time::Duration;
    let n = 40;
    let truth = (0..n).map(value_of).sum::<f64>() / n as f64;
    for algo in [Algo::PushSum, Algo::PushPull, Algo::Flow] {
        let mut make = build(algo, Function::Average, None);
        let nodes: Vec<AnyAggregate> = (0..n)
            .map(|i| make(i, value_of(i), i == 0, false))
            .collect();
        let mut sim = gossip_sim::Simulator::with_parts(
            n,
            3,
            gossip_core::Config::lan(n),
            gossip_sim::LinkModel::default(),
            gossip_core::NoStrategy,
            move |i| nodes[i].clone(),
        );
        sim.start_all();
        let mut seen = Estimates::default();
        sim.run_until(Duration::from_secs(40), &mut seen);
        for i in 0..n {
            let estimate = sim.node(i).unwrap().estimate().expect("an estimate");
            assert!(
                ((estimate - truth) / truth).abs() < 1e-6,
                "{algo:?} node {i}: {estimate} vs {truth}"
            );
        }
        assert!(
            seen.0.iter().any(|&(node, _)| node == 7),
            "{algo:?}: Event::Estimate reaches the application"
        );
    }
}
