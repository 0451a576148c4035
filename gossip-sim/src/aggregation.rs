//! Math mode for aggregation: rounds of atomic exchanges in random order,
//! oracle peer sampling over the live nodes, optional message loss and churn.

use std::collections::VecDeque;

use gossip_core::{Aggregate, AggregateHost, NodeId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::address::{node_addr, node_index};

/// One aggregation experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggregationScenario {
    /// Live nodes at the start (and, on average, throughout).
    pub nodes: usize,
    /// Seed of the run (inputs, sampling, loss, churn).
    pub seed: u64,
    /// Rounds to run.
    pub rounds: u32,
    /// Probability that any share is lost.
    pub loss: f64,
    /// Probability that a live node (other than the leader, node 0) leaves
    /// in a round; as many fresh nodes join, so the population wanders
    /// around `nodes`.
    pub churn: f64,
}

/// Measurements of one round, over the live nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundStats {
    /// Round number, from 1.
    pub round: u32,
    /// Live nodes.
    pub live: usize,
    /// The true aggregate over the live nodes' inputs.
    pub truth: f64,
    /// Largest relative error of any live node's estimate (infinite if a
    /// node has none yet).
    pub max_rel_error: f64,
    /// Mean squared deviation of the estimates from the truth.
    pub variance: f64,
    /// Total value mass held by live nodes.
    pub mass: f64,
    /// Total value mass before the first round.
    pub initial_mass: f64,
    /// Shares sent this round.
    pub messages: u64,
}

struct Envelope<T> {
    from: u32,
    to: u32,
    share: T,
}

struct Host<'a, T> {
    me: usize,
    live: &'a [bool],
    live_count: usize,
    rng: &'a mut ChaCha8Rng,
    out: &'a mut VecDeque<Envelope<T>>,
}

impl<T> AggregateHost<T> for Host<'_, T> {
    fn me(&self) -> NodeId {
        NodeId::new(node_addr(self.me))
    }

    fn random(&mut self) -> f64 {
        self.rng.random()
    }

    fn sample_peers(&mut self, count: usize, out: &mut Vec<NodeId>) {
        let count = count.min(self.live_count.saturating_sub(1));
        let start = out.len();
        let slots = self.live.len();
        while out.len() - start < count {
            let peer = self.rng.random_range(0..slots);
            if peer == self.me || !self.live[peer] {
                continue;
            }
            let id = NodeId::new(node_addr(peer));
            if !out[start..].contains(&id) {
                out.push(id);
            }
        }
    }

    fn send(&mut self, to: NodeId, share: T) {
        if let Some(to) = node_index(to.addr()).filter(|&i| i < self.live.len()) {
            self.out.push_back(Envelope {
                from: self.me as u32,
                to: to as u32,
                share,
            });
        }
    }
}

/// How a run builds, judges and watches its nodes.
pub struct AggregationProbe<M, T, W, O> {
    /// `make(slot, value, leader, newcomer)` builds a node's algorithm (node 0
    /// leads; `newcomer` for nodes that join a running computation).
    pub make: M,
    /// The exact aggregate of the live nodes' inputs.
    pub truth: T,
    /// The value mass a node holds, for conservation checks.
    pub mass: W,
    /// Sees every round's statistics and every slot's estimate.
    pub observe: O,
}

/// Runs `scenario`; inputs are uniform in `[0, 1)` from its seed.
///
/// # Panics
/// If the scenario has fewer than two nodes.
pub fn run_aggregation<A, M, T, W, O>(
    scenario: &AggregationScenario,
    probe: AggregationProbe<M, T, W, O>,
) where
    A: Aggregate,
    M: FnMut(usize, f64, bool, bool) -> A,
    T: Fn(&[f64]) -> f64,
    W: Fn(&A) -> f64,
    O: FnMut(&RoundStats, &[Option<f64>]),
{
    let AggregationProbe {
        mut make,
        truth,
        mass: mass_of,
        mut observe,
    } = probe;
    let n = scenario.nodes;
    assert!(n >= 2, "need two nodes");
    // Spare slots for joiners, so churn never runs out of room.
    let slots = if scenario.churn > 0.0 { 2 * n } else { n };
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed);
    let mut inputs = vec![0.0f64; slots];
    let mut live = vec![false; slots];
    let mut nodes: Vec<Option<A>> = (0..slots).map(|_| None).collect();
    for i in 0..n {
        inputs[i] = rng.random();
        live[i] = true;
        nodes[i] = Some(make(i, inputs[i], i == 0, false));
    }
    let mut live_count = n;
    let initial_mass = compensated_sum(nodes.iter().flatten().map(&mass_of));
    let mut queue: VecDeque<Envelope<A::Share>> = VecDeque::new();
    let mut estimates: Vec<Option<f64>> = vec![None; slots];
    let mut live_inputs = Vec::with_capacity(slots);
    let mut order: Vec<usize> = Vec::with_capacity(slots);
    for round in 1..=scenario.rounds {
        if scenario.churn > 0.0 {
            let mut left = 0;
            let mut departed = Vec::new();
            for i in 1..slots {
                if live[i] && rng.random::<f64>() < scenario.churn {
                    live[i] = false;
                    nodes[i] = None;
                    left += 1;
                    departed.push(NodeId::new(node_addr(i)));
                }
            }
            // Membership would tell every node; so does the oracle.
            for node in nodes.iter_mut().flatten() {
                for &gone in &departed {
                    node.on_peer_down(gone);
                }
            }
            live_count -= left;
            let mut joined = 0;
            while joined < left {
                let slot = rng.random_range(1..slots);
                if !live[slot] {
                    inputs[slot] = rng.random();
                    live[slot] = true;
                    nodes[slot] = Some(make(slot, inputs[slot], false, true));
                    joined += 1;
                }
            }
            live_count += joined;
        }
        // Nodes act one at a time in a fresh random order, and each one's
        // exchange completes (answers included) before the next starts: the
        // atomic-exchange model of Jelasity et al. and Kempe et al.
        order.clear();
        order.extend((0..slots).filter(|&i| live[i]));
        for i in (1..order.len()).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
        let mut messages = 0u64;
        for &i in &order {
            if let Some(node) = nodes[i].as_mut() {
                node.on_round(&mut Host {
                    me: i,
                    live: &live,
                    live_count,
                    rng: &mut rng,
                    out: &mut queue,
                });
            }
            while let Some(envelope) = queue.pop_front() {
                messages += 1;
                let to = envelope.to as usize;
                if !live[to] || rng.random::<f64>() < scenario.loss {
                    continue;
                }
                let from = NodeId::new(node_addr(envelope.from as usize));
                if let Some(node) = nodes[to].as_mut() {
                    node.on_share(
                        &mut Host {
                            me: to,
                            live: &live,
                            live_count,
                            rng: &mut rng,
                            out: &mut queue,
                        },
                        from,
                        envelope.share,
                    );
                }
            }
        }
        live_inputs.clear();
        live_inputs.extend((0..slots).filter(|&i| live[i]).map(|i| inputs[i]));
        let exact = truth(&live_inputs);
        let mut max_rel_error = 0.0f64;
        let mut squared = 0.0f64;
        let mut mass = Neumaier::default();
        for i in 0..slots {
            estimates[i] = None;
            let Some(node) = nodes[i].as_ref() else {
                continue;
            };
            mass.add(mass_of(node));
            let estimate = node.estimate();
            estimates[i] = estimate;
            match estimate {
                Some(e) if e.is_finite() => {
                    let deviation = e - exact;
                    squared += deviation * deviation;
                    let scale = exact.abs().max(f64::MIN_POSITIVE);
                    max_rel_error = max_rel_error.max(deviation.abs() / scale);
                }
                _ => max_rel_error = f64::INFINITY,
            }
        }
        observe(
            &RoundStats {
                round,
                live: live_count,
                truth: exact,
                max_rel_error,
                variance: squared / live_count as f64,
                mass: mass.total(),
                initial_mass,
                messages,
            },
            &estimates,
        );
    }
}

/// Neumaier's compensated summation: a million nearly equal values summed
/// naively lose about 1e-11 of their total to rounding, which would swamp
/// the conservation being measured.
#[derive(Default)]
struct Neumaier {
    sum: f64,
    compensation: f64,
}

impl Neumaier {
    fn add(&mut self, value: f64) {
        let t = self.sum + value;
        if self.sum.abs() >= value.abs() {
            self.compensation += (self.sum - t) + value;
        } else {
            self.compensation += (value - t) + self.sum;
        }
        self.sum = t;
    }

    fn total(&self) -> f64 {
        self.sum + self.compensation
    }
}

fn compensated_sum(values: impl Iterator<Item = f64>) -> f64 {
    let mut sum = Neumaier::default();
    values.for_each(|v| sum.add(v));
    sum.total()
}
