//! Math mode: round-synchronous dissemination of one rumor with an oracle
//! peer sampler, for the classic analytical results at up to a million nodes.
//!
//! Every node runs the very same [`Strategy`] type as a real node, but there
//! is no membership, no encoding and no clock: peers are drawn uniformly
//! from all nodes, and a round is "every node's `on_round`, then every
//! message of the round delivered". Answers (to pulls, feedback) arrive in
//! the same round; a rumor learned in a round is relayed from the next one,
//! even by eager strategies, as in the models of Demers and Pittel.

use std::collections::VecDeque;

use gossip_core::{Digest, GossipMessage, Host, MessageId, NodeId, Rumor, Strategy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::address::{node_addr, node_index};

/// One math-mode experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MathScenario {
    /// Number of nodes.
    pub nodes: usize,
    /// Seed of the run.
    pub seed: u64,
    /// Probability that any message is lost.
    pub loss: f64,
    /// The node that broadcasts the rumor at round 0.
    pub origin: usize,
    /// Give up after this many rounds.
    pub max_rounds: u32,
    /// Crash this node at the start of this round (e.g. a coordinator).
    pub crash: Option<(usize, u32)>,
    /// End the run as soon as every running node is informed. Needed for
    /// strategies that never stop by themselves (anti-entropy); leave it off
    /// to count a rumor's traffic until every node has lost interest.
    pub stop_when_all_informed: bool,
}

impl MathScenario {
    /// `nodes` nodes, no loss, node 0 broadcasts, at most 10 000 rounds.
    pub fn new(nodes: usize, seed: u64) -> Self {
        Self {
            nodes,
            seed,
            loss: 0.0,
            origin: 0,
            max_rounds: 10_000,
            crash: None,
            stop_when_all_informed: false,
        }
    }
}

/// What one math-mode run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MathRun {
    /// Round at which the last node ever informed was informed (0 if only
    /// the origin ever held the rumor).
    pub rounds: u32,
    /// Rounds simulated until nothing was left to do.
    pub rounds_run: u32,
    /// Mean round at which informed nodes were informed (origin at 0).
    pub t_ave: f64,
    /// Nodes informed, origin included.
    pub informed: usize,
    /// Fraction of nodes never informed.
    pub residue: f64,
    /// Messages carrying the rumor (pushes and pull answers), all copies.
    pub payload_messages: u64,
    /// All messages, digests and feedback included.
    pub messages: u64,
}

const NEVER: u32 = u32::MAX;

struct Envelope {
    from: u32,
    to: u32,
    message: GossipMessage,
}

/// The world as one node sees it while a strategy callback runs.
struct MathHost<'a> {
    me: usize,
    nodes: usize,
    rumor: MessageId,
    informed_round: &'a [u32],
    hops: &'a [u16],
    rng: &'a mut ChaCha8Rng,
    out: &'a mut VecDeque<Envelope>,
}

impl Host for MathHost<'_> {
    fn me(&self) -> NodeId {
        NodeId::new(node_addr(self.me))
    }

    fn random(&mut self) -> f64 {
        self.rng.random()
    }

    fn sample_peers(&mut self, count: usize, out: &mut Vec<NodeId>) {
        let others = self.nodes - 1;
        let count = count.min(others);
        let start = out.len();
        while out.len() - start < count {
            // Uniform over the other nodes: draw from n-1 and skip ourselves.
            let mut peer = self.rng.random_range(0..others);
            if peer >= self.me {
                peer += 1;
            }
            let id = NodeId::new(node_addr(peer));
            if !out[start..].contains(&id) {
                out.push(id);
            }
        }
    }

    fn all_peers(&mut self, out: &mut Vec<NodeId>) {
        out.extend(
            (0..self.nodes)
                .filter(|&i| i != self.me)
                .map(|i| NodeId::new(node_addr(i))),
        );
    }

    fn peer_count(&self) -> usize {
        self.nodes - 1
    }

    fn has(&self, id: MessageId) -> bool {
        id == self.rumor && self.informed_round[self.me] != NEVER
    }

    fn digest(&self) -> Digest {
        let mut digest = Digest::default();
        if self.informed_round[self.me] != NEVER {
            digest.heads.push((
                self.rumor.origin,
                self.rumor.generation,
                self.rumor.sequence,
            ));
        }
        digest
    }

    fn missing_from(&self, digest: &Digest, out: &mut Vec<Rumor>) {
        if self.informed_round[self.me] != NEVER && !digest.covers(self.rumor) {
            out.push(Rumor {
                id: self.rumor,
                hops: self.hops[self.me],
            });
        }
    }

    fn send(&mut self, to: NodeId, message: GossipMessage) {
        if let Some(to) = node_index(to.addr()).filter(|&i| i < self.nodes) {
            self.out.push_back(Envelope {
                from: self.me as u32,
                to: to as u32,
                message,
            });
        }
    }
}

/// A math-mode simulation that can be advanced one round at a time (the
/// benchmarks time single rounds; [`run_math`] runs it to the end).
pub struct MathSim<S> {
    scenario: MathScenario,
    strategies: Vec<S>,
    informed_round: Vec<u32>,
    hops: Vec<u16>,
    crashed: Vec<bool>,
    rumor: MessageId,
    informed: usize,
    last_round: u32,
    sum_rounds: u64,
    payload_messages: u64,
    messages: u64,
    /// Sends made while a node learns the rumor wait for the next round.
    next_round: VecDeque<Envelope>,
    this_round: VecDeque<Envelope>,
    rng: ChaCha8Rng,
    round: u32,
    finished: bool,
}

impl<S: Strategy + Clone> MathSim<S> {
    /// Sets up `scenario.nodes` copies of `prototype`; the origin learns the
    /// rumor at round 0.
    ///
    /// # Panics
    /// If the scenario has fewer than two nodes or the origin is out of range.
    pub fn new(scenario: &MathScenario, prototype: &S) -> Self {
        let n = scenario.nodes;
        assert!(
            n >= 2 && scenario.origin < n,
            "need two nodes and a valid origin"
        );
        let mut sim = Self {
            scenario: scenario.clone(),
            strategies: vec![prototype.clone(); n],
            informed_round: vec![NEVER; n],
            hops: vec![0; n],
            crashed: vec![false; n],
            rumor: MessageId {
                origin: NodeId::new(node_addr(scenario.origin)),
                generation: 0,
                sequence: 1,
            },
            informed: 1,
            last_round: 0,
            sum_rounds: 0,
            payload_messages: 0,
            messages: 0,
            next_round: VecDeque::new(),
            this_round: VecDeque::new(),
            rng: ChaCha8Rng::seed_from_u64(scenario.seed),
            round: 0,
            finished: false,
        };
        let origin = scenario.origin;
        sim.informed_round[origin] = 0;
        let rumor = sim.rumor;
        sim.strategies[origin].on_rumor(
            &mut MathHost {
                me: origin,
                nodes: n,
                rumor,
                informed_round: &sim.informed_round,
                hops: &sim.hops,
                rng: &mut sim.rng,
                out: &mut sim.next_round,
            },
            Rumor { id: rumor, hops: 0 },
            None,
        );
        sim
    }

    /// Runs one round; returns whether the simulation goes on.
    pub fn step(&mut self) -> bool {
        if self.finished || self.round >= self.scenario.max_rounds {
            self.finished = true;
            return false;
        }
        let n = self.scenario.nodes;
        let rumor = self.rumor;
        self.round += 1;
        let round = self.round;
        // The world as node `$me` sees it, its sends going to `$out`.
        macro_rules! host {
            ($me:expr, $out:expr) => {
                MathHost {
                    me: $me,
                    nodes: n,
                    rumor,
                    informed_round: &self.informed_round,
                    hops: &self.hops,
                    rng: &mut self.rng,
                    out: $out,
                }
            };
        }
        if let Some((node, at)) = self.scenario.crash {
            if at == round && node < n {
                self.crashed[node] = true;
            }
        }
        core::mem::swap(&mut self.this_round, &mut self.next_round);
        for (i, strategy) in self.strategies.iter_mut().enumerate() {
            if self.crashed[i] || !strategy.wants_rounds() {
                continue;
            }
            strategy.on_round(&mut host!(i, &mut self.this_round));
        }
        while let Some(envelope) = self.this_round.pop_front() {
            self.messages += 1;
            let (from, to) = (envelope.from as usize, envelope.to as usize);
            if let GossipMessage::Push { rumors } = &envelope.message {
                if !rumors.is_empty() {
                    self.payload_messages += 1;
                }
            }
            if self.crashed[to]
                || self.crashed[from]
                || self.rng.random::<f64>() < self.scenario.loss
            {
                continue;
            }
            let from_id = NodeId::new(node_addr(from));
            match envelope.message {
                GossipMessage::Push { rumors } => {
                    for pushed in rumors {
                        if pushed.id != rumor {
                            continue;
                        }
                        let arrived = Rumor {
                            id: rumor,
                            hops: pushed.hops.saturating_add(1),
                        };
                        let newly = self.informed_round[to] == NEVER;
                        if newly {
                            self.informed_round[to] = round;
                            self.hops[to] = arrived.hops;
                            self.informed += 1;
                            self.last_round = round;
                            self.sum_rounds += u64::from(round);
                        }
                        let mut host = host!(
                            to,
                            if newly {
                                &mut self.next_round
                            } else {
                                &mut self.this_round
                            }
                        );
                        if newly {
                            self.strategies[to].on_rumor(&mut host, arrived, Some(from_id));
                        } else {
                            self.strategies[to].on_duplicate(&mut host, arrived, from_id);
                        }
                    }
                }
                GossipMessage::Pull {
                    digest,
                    reciprocate,
                } => self.strategies[to].on_pull(
                    &mut host!(to, &mut self.this_round),
                    from_id,
                    &digest,
                    reciprocate,
                ),
                GossipMessage::Feedback { known } => self.strategies[to].on_feedback(
                    &mut host!(to, &mut self.this_round),
                    from_id,
                    &known,
                ),
                GossipMessage::Announce { ids } => self.strategies[to].on_announce(
                    &mut host!(to, &mut self.this_round),
                    from_id,
                    &ids,
                ),
                GossipMessage::Graft { ids } => self.strategies[to].on_graft(
                    &mut host!(to, &mut self.this_round),
                    from_id,
                    &ids,
                ),
                GossipMessage::Prune => {
                    self.strategies[to].on_prune(&mut host!(to, &mut self.this_round), from_id)
                }
            }
        }
        let crashed = &self.crashed;
        let quiet = self.next_round.is_empty()
            && self
                .strategies
                .iter()
                .enumerate()
                .all(|(i, s)| crashed[i] || s.is_quiescent());
        let everyone = (0..n).all(|i| crashed[i] || self.informed_round[i] != NEVER);
        if quiet || (self.scenario.stop_when_all_informed && everyone) {
            self.finished = true;
        }
        !self.finished
    }

    /// What the run measured so far.
    pub fn result(&self) -> MathRun {
        let n = self.scenario.nodes;
        MathRun {
            rounds: self.last_round,
            rounds_run: self.round,
            t_ave: self.sum_rounds as f64 / self.informed as f64,
            informed: self.informed,
            residue: (n - self.informed) as f64 / n as f64,
            payload_messages: self.payload_messages,
            messages: self.messages,
        }
    }
}

/// Runs one rumor from `scenario.origin` through `nodes` copies of
/// `prototype` until it is everywhere or nobody is spreading it any more.
///
/// # Panics
/// If the scenario has fewer than two nodes or the origin is out of range.
pub fn run_math<S: Strategy + Clone>(scenario: &MathScenario, prototype: &S) -> MathRun {
    let mut sim = MathSim::new(scenario, prototype);
    while sim.step() {}
    sim.result()
}
