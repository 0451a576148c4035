//! Flow updating (Jesus, Baquero, Almeida, "Fault-tolerant aggregation by
//! flow updating", DAIS 2009).

use std::collections::BTreeMap;

use gossip_core::{Aggregate, AggregateHost, NodeId};
use serde::{Deserialize, Serialize};

use crate::common::{Common, Epochal, Function, Input, Limits, Reject, Rejections};

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
///
/// Every share may come from a liar:
/// - a flow must be finite, with a weight part of at most
///   [`Limits::max_share_weight`] either way (and, for an average with a
///   [`Limits::value_range`], a value part of at most that many inputs of
///   the range's largest magnitude); the estimate it carries must be a
///   finite pair with a weight of at most `max_share_weight` either way
///   (and in the value range, if set; an estimate is input minus flows,
///   and a sum's or count's honestly dips below zero weight under churn,
///   so its sign is not checked); an extreme must be finite or the function's neutral
///   infinity. So one share moves this node's own pair by at most twice
///   `max_share_weight` of weight (and, with a value range, of in-range
///   value): what it can change is bounded, though a member with a valid
///   key can keep re-sending such flows and, without a value range, claim
///   any finite value. Flows are state, and an honest flow's size depends
///   on the graph, so no tighter rule holds for honest flows too.
/// - links are capped at [`Limits::max_links`]. When the node is full, a
///   stranger that asks for a link (writes to it, or sends
///   [`FlowShare::Join`]) is *refused*, rather than the least recently
///   heard neighbour being evicted: an evicted neighbour still holds its
///   flow to us and keeps writing, so its mass would be lost or counted
///   twice, and a flood of fresh identities would churn out the honest
///   links that carry the epoch's mass. Refusal leaves every established
///   link intact, and strangers may fill only `max_links` less this node's
///   own `degree` picks (16 times as many at the leader), so its own picks
///   always fit under the cap. The prices: a refused honest node leaks its
///   flow towards us as towards a neighbour that crashed, until the epoch
///   ends; and since links are symmetric, a stranger's link counts towards
///   `degree` as before, so identities that reach a node first at an epoch
///   start can make up its neighbourhood (that they are live members is
///   the host's check: the seam gives only the sender's id).
///
/// Refused shares change nothing and are counted
/// ([`FlowUpdating::rejections`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowUpdating {
    common: Common,
    degree: usize,
    links: BTreeMap<NodeId, Link>,
    /// Sum of the flows towards neighbours that left during this epoch,
    /// kept so that a departure does not move this node's estimate (see
    /// [`Aggregate::on_peer_down`]).
    departed: (f64, f64),
    /// Bounds on shares and links.
    #[serde(default)]
    limits: Limits,
    /// Shares refused so far.
    #[serde(default)]
    rejected: Rejections,
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
            limits: Limits::default(),
            rejected: Rejections::default(),
        }
    }

    /// Sets the bounds shares are checked against and the link cap (flow
    /// updating reads `max_share_weight`, `value_range` and `max_links`).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Shares refused so far, by reason.
    pub fn rejections(&self) -> Rejections {
        self.rejected
    }

    /// How many shares were refused so far.
    pub fn rejected_shares(&self) -> u64 {
        self.rejected.total()
    }

    /// Neighbours this node keeps now.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// How many neighbours this node picks itself: `degree`, 16 times as
    /// many at the leader of a sum or count, never above the link cap.
    fn own_degree(&self) -> usize {
        let degree = if self.common.anchors() {
            self.degree.saturating_mul(LEADER_FANOUT)
        } else {
            self.degree
        };
        degree.min(self.limits.max_links.max(1))
    }

    /// Whether a share from `from` may go on: it is a neighbour, or there
    /// is room to link a stranger (the cap less this node's own picks).
    fn may_link(&self, from: NodeId) -> bool {
        self.links.contains_key(&from)
            || self.links.len() < self.limits.max_links.saturating_sub(self.own_degree())
    }

    /// Checks a share without changing anything.
    fn check(&self, from: NodeId, share: &FlowShare) -> Result<(), Reject> {
        let function = self.common.function;
        match *share {
            FlowShare::Flow { fx, fy, ex, ey, .. } => {
                self.limits.check_flow(function, fx, fy)?;
                self.limits.check_estimate(function, ex, ey)?;
            }
            FlowShare::Extreme { value, .. } => self.limits.check_extreme(function, value)?,
            FlowShare::Join => {}
        }
        if self.may_link(from) {
            Ok(())
        } else {
            Err(Reject::RefusedLink)
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
        let degree = self.own_degree();
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
        if let Err(reason) = self.check(from, &share) {
            self.rejected.count(reason);
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
