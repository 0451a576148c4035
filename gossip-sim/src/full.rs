//! Experiments on real nodes: dissemination and aggregation with membership
//! and encoded frames on the simulated network (the `--full` modes of
//! `gossip-node sim`), next to math mode's oracle runs.

use core::time::Duration;
use std::net::SocketAddr;

use gossip_core::wire::{self, Message};
use gossip_core::{Aggregate, Config, Event, MessageId, NoStrategy, Node, Strategy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::math::MathRun;
use crate::net::{LinkModel, Observer, Simulator};

/// One dissemination experiment on real nodes: after membership settles,
/// one broadcast per run, each followed until every node delivered it (and
/// 3 s more for the tail of the traffic) or for at most 60 s.
#[derive(Clone, Debug, PartialEq)]
pub struct FullDissemination {
    /// Cluster size (LAN config for that size).
    pub nodes: usize,
    /// Seed of every random choice (network, nodes, origins).
    pub seed: u64,
    /// Probability that a frame is lost.
    pub loss: f64,
    /// Broadcasts, one per run.
    pub runs: u32,
    /// The node that originates every broadcast, or `None` for one chosen at
    /// random per run.
    pub origin: Option<usize>,
}

/// What a [`FullDissemination`] measured.
#[derive(Clone, Debug, PartialEq)]
pub struct FullDisseminationReport {
    /// Per broadcast, in math mode's terms: a round is one gossip interval.
    pub runs: Vec<MathRun>,
    /// Dissemination frame bytes (rumors, pulls, feedback) per node per
    /// broadcast.
    pub bytes_per_node: f64,
    /// Node-rounds simulated while following the broadcasts.
    pub node_rounds: f64,
}

/// Watches one broadcast at a time: who delivered it when, and the
/// dissemination traffic meanwhile.
struct BroadcastWatch {
    config: Config,
    current: Option<MessageId>,
    start: Duration,
    delivered_at: Vec<Option<Duration>>,
    bytes: u64,
    payload_frames: u64,
    frames: u64,
}

impl BroadcastWatch {
    /// Starts following a broadcast by `origin` at `start`.
    fn reset(&mut self, origin: usize, start: Duration) {
        self.delivered_at.iter_mut().for_each(|d| *d = None);
        self.delivered_at[origin] = Some(Duration::ZERO);
        self.start = start;
        self.bytes = 0;
        self.payload_frames = 0;
        self.frames = 0;
    }
}

impl Observer for BroadcastWatch {
    fn on_event(&mut self, at: Duration, node: usize, event: &Event) {
        if let Event::Delivered { id, .. } = event {
            if Some(*id) == self.current && self.delivered_at[node].is_none() {
                self.delivered_at[node] = Some(at - self.start);
            }
        }
    }

    fn on_transmit(&mut self, _at: Duration, _from: usize, _to: SocketAddr, bytes: &[u8]) {
        let Ok((_, message)) = wire::decode(&self.config, bytes) else {
            return;
        };
        match message {
            Message::Rumors { items } => {
                if items.iter().any(|item| Some(item.id) == self.current) {
                    self.payload_frames += 1;
                }
            }
            Message::SignedRumors { items } => {
                if items.iter().any(|item| Some(item.rumor.id) == self.current) {
                    self.payload_frames += 1;
                }
            }
            Message::Pull { .. }
            | Message::Feedback { .. }
            | Message::Announce { .. }
            | Message::Graft { .. }
            | Message::Prune => {}
            _ => return,
        }
        self.frames += 1;
        self.bytes += bytes.len() as u64;
    }
}

/// Runs `scenario` with every node disseminating with a clone of
/// `prototype`, calling `progress` with the number of runs done after each.
///
/// # Errors
/// `n` real nodes running `prototype` under `config`, losing frames with
/// probability `loss`, started together and run until membership has
/// converged (10 simulated seconds, which is returned as the time now),
/// before the first broadcast.
pub(crate) fn converged<S: Strategy + Clone>(
    n: usize,
    seed: u64,
    config: &Config,
    loss: f64,
    prototype: &S,
) -> (Simulator<S>, Duration) {
    let link = LinkModel {
        loss,
        ..LinkModel::default()
    };
    let mut sim = Simulator::with_strategy(n, seed, config.clone(), link, prototype.clone());
    sim.start_all();
    let t = Duration::from_secs(10);
    sim.run_until(t, &mut ());
    (sim, t)
}

/// If a node refuses a broadcast.
pub fn run_full_dissemination<S: Strategy + Clone>(
    scenario: &FullDissemination,
    prototype: &S,
    mut progress: impl FnMut(u32),
) -> Result<FullDisseminationReport, String> {
    let n = scenario.nodes;
    let config = Config::lan(n);
    let round = config.gossip_interval;
    let (mut sim, mut t) = converged(n, scenario.seed, &config, scenario.loss, prototype);
    let mut watch = BroadcastWatch {
        config,
        current: None,
        start: t,
        delivered_at: vec![None; n],
        bytes: 0,
        payload_frames: 0,
        frames: 0,
    };
    let mut chooser = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0xb40a_dca5);
    let mut results = Vec::new();
    let mut total_bytes = 0u64;
    let window = Duration::from_secs(60);
    for run in 0..scenario.runs {
        let origin = scenario
            .origin
            .unwrap_or_else(|| chooser.random_range(0..n));
        watch.reset(origin, t);
        watch.current = sim.broadcast(origin, &[0x5a; 64], &mut watch);
        if watch.current.is_none() {
            return Err(format!("node {origin} refused the broadcast"));
        }
        let end = t + window;
        let mut all_since: Option<Duration> = None;
        while t < end {
            t += round;
            sim.run_until(t, &mut watch);
            if watch.delivered_at.iter().all(Option::is_some) {
                // Keep going a little so the tail of the traffic is counted.
                let since = *all_since.get_or_insert(t);
                if t >= since + Duration::from_secs(3) {
                    break;
                }
            }
        }
        let rounds_of = |d: Duration| (d.as_secs_f64() / round.as_secs_f64()).ceil() as u32;
        let informed: Vec<Duration> = watch.delivered_at.iter().flatten().copied().collect();
        results.push(MathRun {
            rounds: informed.iter().map(|&d| rounds_of(d)).max().unwrap_or(0),
            rounds_run: rounds_of(t - watch.start),
            t_ave: informed
                .iter()
                .map(|&d| f64::from(rounds_of(d)))
                .sum::<f64>()
                / informed.len() as f64,
            informed: informed.len(),
            residue: (n - informed.len()) as f64 / n as f64,
            payload_messages: watch.payload_frames,
            messages: watch.frames,
        });
        total_bytes += watch.bytes;
        progress(run + 1);
    }
    let node_rounds = results
        .iter()
        .map(|r| f64::from(r.rounds_run) * n as f64)
        .sum();
    Ok(FullDisseminationReport {
        runs: results,
        bytes_per_node: total_bytes as f64 / n as f64 / f64::from(scenario.runs),
        node_rounds,
    })
}

/// One aggregation experiment on real nodes: inputs uniform in `[0, 1)`
/// (the first draws of the seed, as in math mode), node 0 leading, a round
/// being one gossip interval.
#[derive(Clone, Debug, PartialEq)]
pub struct FullAggregation {
    /// Cluster size (LAN config for that size).
    pub nodes: usize,
    /// Seed of every random choice (inputs, network, nodes).
    pub seed: u64,
    /// Rounds to run.
    pub rounds: u32,
    /// Probability that a frame is lost.
    pub loss: f64,
    /// Relative errors whose first round of being met by every node is
    /// reported ([`FullAggregationReport::rounds_to_error`]).
    pub error_bounds: Vec<f64>,
}

/// How a [`FullAggregation`] builds and weighs its nodes' aggregates.
pub struct FullAggregationProbe<M, T, W, V> {
    /// `make(slot, value, leader)` builds node `slot`'s aggregate.
    pub make: M,
    /// The exact aggregate of all inputs.
    pub truth: T,
    /// The value mass an aggregate holds, for conservation.
    pub mass: W,
    /// The value mass a share carries while in flight.
    pub share_mass: V,
}

/// What a [`FullAggregation`] measured.
#[derive(Clone, Debug, PartialEq)]
pub struct FullAggregationReport {
    /// Per error bound, in order: the first round at which every node's
    /// relative error was at or below it (`None`: never).
    pub rounds_to_error: Vec<Option<u32>>,
    /// Largest relative error over the nodes after the last round.
    pub final_max_rel_error: f64,
    /// Relative change of the total mass (held plus in flight) over the run.
    pub mass_drift: f64,
    /// Mass in flight when the run stopped, relative to the initial total.
    pub mass_in_flight: f64,
    /// Shares sent per node per round.
    pub messages_per_node_per_round: f64,
}

/// Runs `scenario`, calling `progress` with each round number as it ends.
pub fn run_full_aggregation<A, M, T, W, V>(
    scenario: &FullAggregation,
    probe: FullAggregationProbe<M, T, W, V>,
    mut progress: impl FnMut(u32),
) -> FullAggregationReport
where
    A: Aggregate + Clone + 'static,
    M: FnMut(usize, f64, bool) -> A,
    T: Fn(&[f64]) -> f64,
    W: Fn(&A) -> f64,
    V: Fn(&A::Share) -> f64,
{
    let FullAggregationProbe {
        mut make,
        truth,
        mass,
        share_mass,
    } = probe;
    let n = scenario.nodes;
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed);
    let inputs: Vec<f64> = (0..n).map(|_| rng.random()).collect();
    let nodes: Vec<A> = (0..n).map(|i| make(i, inputs[i], i == 0)).collect();
    let config = Config::lan(n);
    let wire_config = config.clone();
    let round = config.gossip_interval;
    let link = LinkModel {
        loss: scenario.loss,
        ..LinkModel::default()
    };
    let mut sim = Simulator::with_parts(n, scenario.seed, config, link, NoStrategy, move |i| {
        nodes[i].clone()
    });
    sim.start_all();
    let exact = truth(&inputs);
    let scale = exact.abs().max(f64::MIN_POSITIVE);
    let mass_of = |sim: &Simulator<NoStrategy, A>| -> f64 {
        (0..n)
            .filter_map(|i| sim.node(i)?.aggregate().map(&mass))
            .sum()
    };
    // A push-sum share in flight is mass its sender no longer holds and its
    // receiver does not hold yet: count it, or the figure reports the gossip
    // under way as drift.
    let in_flight_of = |sim: &Simulator<NoStrategy, A>| -> f64 {
        sim.in_flight()
            .filter_map(|(_, _, bytes)| match wire::decode(&wire_config, bytes) {
                Ok((_, Message::Aggregate { share, .. })) => {
                    wire::decode_share::<A::Share>(&share).ok()
                }
                _ => None,
            })
            .map(|share| share_mass(&share))
            .sum()
    };
    let initial_mass = mass_of(&sim) + in_flight_of(&sim);
    let mut reached: Vec<Option<u32>> = vec![None; scenario.error_bounds.len()];
    let mut final_error = f64::INFINITY;
    for r in 1..=scenario.rounds {
        sim.run_until(round * r, &mut ());
        final_error = (0..n)
            .map(|i| match sim.node(i).and_then(Node::estimate) {
                Some(e) => (e - exact).abs() / scale,
                None => f64::INFINITY,
            })
            .fold(0.0, f64::max);
        for (slot, &bound) in reached.iter_mut().zip(&scenario.error_bounds) {
            if final_error <= bound {
                slot.get_or_insert(r);
            }
        }
        progress(r);
    }
    let shares: u64 = (0..n)
        .filter_map(|i| sim.node(i))
        .map(|node| node.stats().shares_sent)
        .sum();
    let in_flight = in_flight_of(&sim);
    FullAggregationReport {
        rounds_to_error: reached,
        final_max_rel_error: final_error,
        mass_drift: ((mass_of(&sim) + in_flight - initial_mass) / initial_mass).abs(),
        mass_in_flight: in_flight / initial_mass,
        messages_per_node_per_round: shares as f64 / (n as f64 * f64::from(scenario.rounds)),
    }
}
