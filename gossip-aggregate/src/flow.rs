//! Flow updating (Jesus, Baquero, Almeida, "Fault-tolerant aggregation by
//! flow updating", DAIS 2009).

use std::collections::BTreeMap;

use gossip_core::{Aggregate, AggregateHost, NodeId};
use serde::{Deserialize, Serialize};

use crate::common::{all_finite, Common, Epochal, Function, Input};

/// How many times more neighbours the leader of a sum or count keeps.
const LEADER_FANOUT: usize = 16;

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
    /// A newcomer asks to become the receiver's neighbour. It carries no
    /// epoch: the newcomer does not know one yet and learns it from the
    /// flow the receiver sends back next round.
    Join,
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
/// mass-moving algorithms, and costs `degree` messages per node per round
/// (the leader of a sum or count keeps `16 x degree`, see below).
///
/// Under churn, with epochs: each epoch draws new neighbours; a newcomer
/// asks `degree` peers to link it ([`FlowShare::Join`]), since in a stable
/// neighbourhood nobody would otherwise pick it before the next epoch; a
/// node that hears from a neighbour still in an epoch it has completed
/// links it, so next round's flow moves it on. A sum or count starts each
/// epoch with all the weight at the leader and soon most of it at the
/// leader's neighbours: with four of them, one leaving in the first rounds
/// takes a tenth of the weight and throws the epoch's estimate a tenth off,
/// so the leader spreads it over sixteen times as many.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowUpdating {
    common: Common,
    degree: usize,
    links: BTreeMap<NodeId, Link>,
    /// Sum of the flows towards neighbours that left during this epoch,
    /// kept so that a departure does not move this node's estimate (see
    /// [`Aggregate::on_peer_down`]).
    departed: (f64, f64),
}

impl FlowUpdating {
    /// A node computing `function` from `input` over `degree` neighbours,
    /// restarting every `epoch_length` rounds if given.
    pub fn new(function: Function, input: Input, degree: usize, epoch_length: Option<u32>) -> Self {
        Self {
            common: Common::new(function, input, epoch_length),
            degree: degree.max(1),
            links: BTreeMap::new(),
            departed: (0.0, 0.0),
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
        let (x, y) = self.common.start();
        let start = (x - self.departed.0, y - self.departed.1);
        self.links
            .values()
            .fold(start, |(x, y), l| (x - l.flow.0, y - l.flow.1))
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
        self.departed = (0.0, 0.0);
    }
}

impl Aggregate for FlowUpdating {
    type Share = FlowShare;
    const SHARE_TYPE: u32 = gossip_core::share_type("gossip-aggregate/flow-updating/1");

    fn on_round<H: AggregateHost<FlowShare>>(&mut self, host: &mut H) {
        if !self.begin_round() {
            // A newcomer that nobody has written to yet: flow updating's
            // neighbours are stable, so nobody would pick it until the next
            // epoch's fresh draw. It asks to be linked instead.
            let mut peers = Vec::new();
            host.sample_peers(self.degree, &mut peers);
            for peer in peers {
                host.send(peer, FlowShare::Join);
            }
            return;
        }
        let degree = if self.common.anchors() {
            self.degree * LEADER_FANOUT
        } else {
            self.degree
        };
        if self.links.len() < degree {
            let mut peers = Vec::new();
            host.sample_peers(degree - self.links.len(), &mut peers);
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
            FlowShare::Join => true,
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
                    // A neighbour left behind in an epoch this node has
                    // completed: link it, so that next round's flow
                    // tells it the epoch under way (its old neighbours have
                    // all moved on and may never write to it again).
                    if !self.common.epochs.fresh {
                        self.links.entry(from).or_default();
                    }
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
            FlowShare::Join => {
                // The newcomer learns this node's epoch from the next round's
                // flow; a node that does not know the epoch itself has
                // nothing to teach and does not link.
                if !self.common.epochs.fresh {
                    self.links.entry(from).or_default();
                }
            }
        }
    }

    fn estimate(&self) -> Option<f64> {
        self.reported()
    }

    /// Takes effect at once: a node's own value is its input minus its
    /// flows, so the flows carry the change to every node from the next
    /// round (with epochs, into the epoch under way, reported when it
    /// completes). A newcomer's input counts from the
    /// next epoch; a worse min or max than the one already spread shows
    /// from the next epoch only (never without epochs). A count ignores the
    /// value.
    fn set_input(&mut self, value: f64) {
        self.common.set_input(value);
    }

    /// With epochs, the flows to a departed neighbour are kept until the
    /// epoch ends, so the neighbour leaves with the mass it held, as in
    /// push-sum and push-pull, and this node's estimate does not move.
    /// Dropping them instead (the paper's rule, kept without epochs) takes
    /// the neighbour's *input* out and keeps the total exact, but moves
    /// each former neighbour's own value by its whole flow: around the
    /// leader of a count, flows carry the whole weight out to the cluster
    /// and are about N / degree times what a node holds, so each departure
    /// there threw estimates far off (negative weights, counts off by
    /// orders of magnitude) for longer than the churn left between two
    /// departures. Epochs follow the population instead.
    ///
    /// The departed flows stay until the epoch ends, even if a process at
    /// the same address writes again: it is treated as a new neighbour
    /// (a restarted process there starts its flows from zero). The price is
    /// a falsely reported departure: that neighbour's flow is then counted
    /// twice until the next epoch.
    fn on_peer_down(&mut self, peer: NodeId) {
        if let Some(link) = self.links.remove(&peer) {
            if self.common.epochs.length.is_some() {
                self.departed.0 += link.flow.0;
                self.departed.1 += link.flow.1;
            }
        }
    }
}
