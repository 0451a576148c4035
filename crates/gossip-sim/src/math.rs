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

use crate::net::{node_addr, node_index};

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

/// Runs one rumor from `scenario.origin` through `nodes` copies of
/// `prototype` until it is everywhere or nobody is spreading it any more.
///
/// # Panics
/// If the scenario has fewer than two nodes or the origin is out of range.
pub fn run_math<S: Strategy + Clone>(scenario: &MathScenario, prototype: &S) -> MathRun {
    let n = scenario.nodes;
    assert!(
        n >= 2 && scenario.origin < n,
        "need two nodes and a valid origin"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed);
    let mut strategies = vec![prototype.clone(); n];
    let mut informed_round = vec![NEVER; n];
    let mut hops = vec![0u16; n];
    let mut crashed = vec![false; n];
    let rumor = MessageId {
        origin: NodeId::new(node_addr(scenario.origin)),
        generation: 0,
        sequence: 1,
    };
    let mut informed = 1usize;
    let mut last_round = 0u32;
    let mut sum_rounds = 0u64;
    let mut payload_messages = 0u64;
    let mut messages = 0u64;

    // Sends made while a node learns the rumor wait for the next round.
    let mut next_round: VecDeque<Envelope> = VecDeque::new();
    let mut this_round: VecDeque<Envelope> = VecDeque::new();
    informed_round[scenario.origin] = 0;
    strategies[scenario.origin].on_rumor(
        &mut MathHost {
            me: scenario.origin,
            nodes: n,
            rumor,
            informed_round: &informed_round,
            hops: &hops,
            rng: &mut rng,
            out: &mut next_round,
        },
        Rumor { id: rumor, hops: 0 },
        None,
    );

    let mut round = 0u32;
    while round < scenario.max_rounds {
        round += 1;
        if let Some((node, at)) = scenario.crash {
            if at == round && node < n {
                crashed[node] = true;
            }
        }
        core::mem::swap(&mut this_round, &mut next_round);
        for (i, strategy) in strategies.iter_mut().enumerate() {
            if crashed[i] || !strategy.wants_rounds() {
                continue;
            }
            strategy.on_round(&mut MathHost {
                me: i,
                nodes: n,
                rumor,
                informed_round: &informed_round,
                hops: &hops,
                rng: &mut rng,
                out: &mut this_round,
            });
        }
        while let Some(envelope) = this_round.pop_front() {
            messages += 1;
            let (from, to) = (envelope.from as usize, envelope.to as usize);
            if let GossipMessage::Push { rumors } = &envelope.message {
                if !rumors.is_empty() {
                    payload_messages += 1;
                }
            }
            if crashed[to] || crashed[from] || rng.random::<f64>() < scenario.loss {
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
                        let newly = informed_round[to] == NEVER;
                        if newly {
                            informed_round[to] = round;
                            hops[to] = arrived.hops;
                            informed += 1;
                            last_round = round;
                            sum_rounds += u64::from(round);
                        }
                        let mut host = MathHost {
                            me: to,
                            nodes: n,
                            rumor,
                            informed_round: &informed_round,
                            hops: &hops,
                            rng: &mut rng,
                            out: if newly {
                                &mut next_round
                            } else {
                                &mut this_round
                            },
                        };
                        if newly {
                            strategies[to].on_rumor(&mut host, arrived, Some(from_id));
                        } else {
                            strategies[to].on_duplicate(&mut host, arrived, from_id);
                        }
                    }
                }
                GossipMessage::Pull {
                    digest,
                    reciprocate,
                } => strategies[to].on_pull(
                    &mut MathHost {
                        me: to,
                        nodes: n,
                        rumor,
                        informed_round: &informed_round,
                        hops: &hops,
                        rng: &mut rng,
                        out: &mut this_round,
                    },
                    from_id,
                    &digest,
                    reciprocate,
                ),
                GossipMessage::Feedback { known } => strategies[to].on_feedback(
                    &mut MathHost {
                        me: to,
                        nodes: n,
                        rumor,
                        informed_round: &informed_round,
                        hops: &hops,
                        rng: &mut rng,
                        out: &mut this_round,
                    },
                    from_id,
                    &known,
                ),
            }
        }
        let quiet = next_round.is_empty()
            && strategies
                .iter()
                .enumerate()
                .all(|(i, s)| crashed[i] || s.is_quiescent());
        let everyone = informed + crashed.iter().filter(|&&c| c).count() >= n
            && (0..n).all(|i| crashed[i] || informed_round[i] != NEVER);
        if quiet || (scenario.stop_when_all_informed && everyone) {
            break;
        }
    }
    MathRun {
        rounds: last_round,
        rounds_run: round,
        t_ave: sum_rounds as f64 / informed as f64,
        informed,
        residue: (n - informed) as f64 / n as f64,
        payload_messages,
        messages,
    }
}
