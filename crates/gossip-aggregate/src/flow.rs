//! Flow updating (Jesus, Baquero, Almeida, "Fault-tolerant aggregation by
//! flow updating", DAIS 2009).

use std::collections::BTreeMap;

use gossip_core::{Aggregate, AggregateHost, NodeId};
use serde::{Deserialize, Serialize};

use crate::common::{all_finite, Common, Epochal, Function, Input};

/// A flow-updating share: the sender's flow towards the receiver and its
/// current average estimate (or its extreme).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum FlowShare {
    /// Flow and estimate.
    Flow {
        /// Epoch of the sender.
        epoch: u64,
        /// Flow from the sender to the receiver (value part).
        fx: f64,
        /// Flow (weight part).
        fy: f64,
        /// The sender's estimate (value part).
        ex: f64,
        /// The sender's estimate (weight part).
        ey: f64,
    },
    /// The best extreme the sender has seen.
    Extreme {
        /// Epoch of the sender.
        epoch: u64,
        /// The value.
        value: f64,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Link {
    /// Flow from this node to the neighbour.
    flow: (f64, f64),
    /// Last estimate heard from the neighbour.
    estimate: (f64, f64),
}

/// Flow updating: instead of handing mass over, each node keeps, per
/// neighbour, the *flow* it has sent so far; its estimate is its input minus
/// its outgoing flows. Every round it averages its estimate with its
/// neighbours' last known ones, adjusts the flows so that each neighbour
/// would reach that average, and sends each neighbour the flow and the
/// average. A message carries state, not a delta, so a lost one is simply
/// superseded by the next: the computation converges to the exact
/// aggregate under loss, where push-sum and push-pull drift.
///
/// Works over a small stable set of `degree` neighbours (links are made
/// symmetric when a stranger writes), so it converges more slowly than the
/// mass-moving algorithms, and costs `degree` messages per node per round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowUpdating {
    common: Common,
    degree: usize,
    links: BTreeMap<NodeId, Link>,
}

impl FlowUpdating {
    /// A node computing `function` from `input` over `degree` neighbours,
    /// restarting every `epoch_length` rounds if given.
    pub fn new(function: Function, input: Input, degree: usize, epoch_length: Option<u32>) -> Self {
        Self {
            common: Common::new(function, input, epoch_length),
            degree: degree.max(1),
            links: BTreeMap::new(),
        }
    }

    /// Marks this node as joining a computation under way: it contributes
    /// its input from the next epoch on.
    pub fn newcomer(mut self) -> Self {
        self.make_newcomer();
        self
    }

    /// Input minus outgoing flows.
    fn own(&self) -> (f64, f64) {
        self.links.values().fold(self.common.start(), |(x, y), l| {
            (x - l.flow.0, y - l.flow.1)
        })
    }

    /// The mass this node holds (value part), for conservation checks.
    pub fn mass(&self) -> f64 {
        self.own().0
    }
}

impl Epochal for FlowUpdating {
    fn common(&self) -> &Common {
        &self.common
    }
    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }
    fn ratio(&self) -> Option<f64> {
        let (x, y) = self.own();
        (y > 0.0).then(|| x / y)
    }
    fn reset(&mut self) {
        // New epoch, new neighbours: those that left since are forgotten.
        self.links.clear();
    }
}

impl Aggregate for FlowUpdating {
    type Share = FlowShare;

    fn on_round<H: AggregateHost<FlowShare>>(&mut self, host: &mut H) {
        if !self.begin_round() {
            return;
        }
        if self.links.len() < self.degree {
            let mut peers = Vec::new();
            host.sample_peers(self.degree - self.links.len(), &mut peers);
            for peer in peers {
                self.links.entry(peer).or_default();
            }
        }
        let epoch = self.common.epochs.number;
        if self.common.function.is_extreme() {
            let value = self.common.extreme;
            for &peer in self.links.keys() {
                host.send(peer, FlowShare::Extreme { epoch, value });
            }
            return;
        }
        let (ex, ey) = self.own();
        let count = self.links.len() as f64 + 1.0;
        let (sx, sy) = self
            .links
            .values()
            .fold((ex, ey), |(x, y), l| (x + l.estimate.0, y + l.estimate.1));
        let average = (sx / count, sy / count);
        for (&peer, link) in &mut self.links {
            link.flow.0 += average.0 - link.estimate.0;
            link.flow.1 += average.1 - link.estimate.1;
            link.estimate = average;
            host.send(
                peer,
                FlowShare::Flow {
                    epoch,
                    fx: link.flow.0,
                    fy: link.flow.1,
                    ex: average.0,
                    ey: average.1,
                },
            );
        }
    }

    fn on_share<H: AggregateHost<FlowShare>>(
        &mut self,
        _host: &mut H,
        from: NodeId,
        share: FlowShare,
    ) {
        let finite = match share {
            FlowShare::Flow { fx, fy, ex, ey, .. } => all_finite(&[fx, fy, ex, ey]),
            FlowShare::Extreme { value, .. } => !value.is_nan(),
        };
        if !finite {
            return;
        }
        match share {
            FlowShare::Flow {
                epoch,
                fx,
                fy,
                ex,
                ey,
            } => {
                if !self.admit(epoch) {
                    return;
                }
                let link = self.links.entry(from).or_default();
                link.flow = (-fx, -fy);
                link.estimate = (ex, ey);
            }
            FlowShare::Extreme { epoch, value } => {
                if self.admit(epoch) {
                    // Links are symmetric, or a node nobody picked would
                    // never hear anything.
                    self.links.entry(from).or_default();
                    self.common.extreme = self.common.function.best(self.common.extreme, value);
                }
            }
        }
    }

    fn estimate(&self) -> Option<f64> {
        self.reported()
    }

    fn on_peer_down(&mut self, peer: NodeId) {
        // The flows to a departed neighbour vanish with it: its share of the
        // mass leaves the computation, as it should.
        self.links.remove(&peer);
    }
}
