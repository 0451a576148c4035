//! Push-pull averaging (Jelasity, Montresor, Babaoglu, "Gossip-based
//! aggregation in large dynamic networks", ACM TOCS 2005).

use std::collections::VecDeque;

use gossip_core::{Aggregate, AggregateHost, NodeId};
use serde::{Deserialize, Serialize};

use crate::common::{Epochal, Function, Input, Limits, Pair, Reject, Rejections};

/// A push-pull share.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum PushPullShare {
    /// The initiator's pair (and extreme).
    Request {
        /// Epoch of the sender.
        epoch: u64,
        /// Value part.
        x: f64,
        /// Weight part.
        y: f64,
        /// Best extreme seen.
        extreme: f64,
    },
    /// What the initiator must add to reach the mean, and the responder's extreme.
    Reply {
        /// Epoch of the sender.
        epoch: u64,
        /// Change of the value part.
        dx: f64,
        /// Change of the weight part.
        dy: f64,
        /// Best extreme seen.
        extreme: f64,
    },
    /// Mass the leader of a sum or count hands out, to be added (see
    /// [`PushPull`]).
    Gift {
        /// Epoch of the sender.
        epoch: u64,
        /// Value part.
        x: f64,
        /// Weight part.
        y: f64,
    },
}

/// Push-pull averaging: each round every node starts one exchange with a
/// uniformly random peer and both move to the mean of their pairs. The
/// variance of the estimates shrinks by about `2 sqrt(e)` per round, the
/// fastest of the three algorithms.
///
/// The answer carries the *change* the initiator must apply rather than the
/// responder's old value, so an initiator whose pair moved meanwhile (another
/// exchange landed first) still conserves mass exactly. A lost answer
/// tears the exchange and mass drifts: under loss prefer
/// [`FlowUpdating`](crate::FlowUpdating). Two messages per node per round.
///
/// The leader of a sum or count, which holds all the weight when an epoch
/// starts, first hands it out in 64 [`PushPullShare::Gift`]s, a 65th
/// each: after one exchange its peer would hold half the weight, and under
/// churn that one node leaving early would halve the epoch's weight and
/// double its estimate.
///
/// Every share may come from a liar. A reply is taken only when it answers
/// a request this node sent to that very peer in that epoch and has not
/// yet seen answered (one request per peer is remembered: a new one
/// replaces an older one left unanswered); requests are forgotten after
/// [`Limits::reply_timeout`] rounds, and at most
/// [`Limits::max_outstanding`] are remembered. Requests, gifts and the pair
/// a reply implies for its responder must be finite with a weight in
/// `[0, max_share_weight]` (and in the [`Limits::value_range`] for an
/// average, if set); extremes finite, or the function's neutral infinity.
/// A refused share changes nothing and is counted
/// ([`PushPull::rejections`]). A member with a valid key can still answer
/// a request with any pair that passes these checks, and send requests or
/// gifts: each adds at most `max_share_weight` of weight the system never
/// had (see [`PushSum`](crate::PushSum)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushPull {
    pair: Pair,
    /// Bounds on shares and on `outstanding`.
    #[serde(default)]
    limits: Limits,
    /// Shares refused so far.
    #[serde(default)]
    rejected: Rejections,
    /// Requests sent and not yet answered, oldest first.
    #[serde(default)]
    outstanding: VecDeque<Pending>,
    /// Rounds this node has run, to expire requests.
    #[serde(default)]
    round: u64,
}

/// A request awaiting its reply.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Pending {
    /// Whom it was sent to.
    peer: NodeId,
    /// The epoch it was sent in (the reply carries it back).
    epoch: u64,
    /// The round it was sent in.
    round: u64,
    /// The pair it carried: a reply's change implies the responder's pair.
    x: f64,
    y: f64,
}

impl PushPull {
    /// A node computing `function` from `input`, restarting every
    /// `epoch_length` rounds if given.
    pub fn new(function: Function, input: Input, epoch_length: Option<u32>) -> Self {
        Self {
            pair: Pair::new(function, input, epoch_length),
            limits: Limits::default(),
            rejected: Rejections::default(),
            outstanding: VecDeque::new(),
            round: 0,
        }
    }

    /// Sets the bounds shares are checked against and the bound on
    /// outstanding requests (push-pull reads `max_share_weight`,
    /// `value_range`, `max_outstanding` and `reply_timeout`).
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

    /// Requests awaiting a reply.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Forgets requests older than the reply timeout.
    fn expire(&mut self) {
        let timeout = u64::from(self.limits.reply_timeout.max(1));
        let now = self.round;
        self.outstanding
            .retain(|p| now.saturating_sub(p.round) < timeout);
    }

    /// Checks a share without changing anything.
    fn check(&self, share: &PushPullShare) -> Result<(), Reject> {
        let function = self.pair.common.function;
        let limits = &self.limits;
        match *share {
            PushPullShare::Request { x, y, extreme, .. } => {
                limits.check_mass(function, x, y)?;
                limits.check_extreme(function, extreme)
            }
            PushPullShare::Gift { x, y, .. } => limits.check_mass(function, x, y),
            PushPullShare::Reply { extreme, .. } => limits.check_extreme(function, extreme),
        }
    }

    /// Marks this node as joining a computation under way: it contributes
    /// its input from the next epoch on.
    pub fn newcomer(mut self) -> Self {
        self.pair.make_newcomer();
        self
    }

    /// The mass this node holds (value part), for conservation checks.
    pub fn mass(&self) -> f64 {
        self.pair.x
    }
}

impl Aggregate for PushPull {
    type Share = PushPullShare;
    const SHARE_TYPE: u32 = gossip_core::share_type("gossip-aggregate/push-pull/1");

    fn on_round<H: AggregateHost<PushPullShare>>(&mut self, host: &mut H) {
        if !self.pair.begin_round() {
            return;
        }
        self.round = self.round.saturating_add(1);
        self.expire();
        let epoch = self.pair.common.epochs.number;
        self.pair
            .scatter_to(host, |epoch, x, y| PushPullShare::Gift { epoch, x, y });
        let mut peer = Vec::with_capacity(1);
        host.sample_peers(1, &mut peer);
        if let Some(&to) = peer.first() {
            // One request per peer: an older one to the same peer went
            // unanswered (its reply was lost), and a reply is matched to
            // the pair of the request it answers.
            self.outstanding.retain(|p| p.peer != to);
            if self.outstanding.len() >= self.limits.max_outstanding.max(1) {
                self.outstanding.pop_front();
            }
            self.outstanding.push_back(Pending {
                peer: to,
                epoch,
                round: self.round,
                x: self.pair.x,
                y: self.pair.y,
            });
            host.send(
                to,
                PushPullShare::Request {
                    epoch,
                    x: self.pair.x,
                    y: self.pair.y,
                    extreme: self.pair.common.extreme,
                },
            );
        }
    }

    fn on_share<H: AggregateHost<PushPullShare>>(
        &mut self,
        host: &mut H,
        from: NodeId,
        share: PushPullShare,
    ) {
        if let Err(reason) = self.check(&share) {
            self.rejected.count(reason);
            return;
        }
        match share {
            PushPullShare::Request {
                epoch,
                x,
                y,
                extreme,
            } => {
                if !self.pair.admit(epoch) {
                    return;
                }
                let (mx, my) = ((self.pair.x + x) / 2.0, (self.pair.y + y) / 2.0);
                let best = self
                    .pair
                    .common
                    .function
                    .best(self.pair.common.extreme, extreme);
                host.send(
                    from,
                    PushPullShare::Reply {
                        epoch,
                        dx: mx - x,
                        dy: my - y,
                        extreme: best,
                    },
                );
                self.pair.x = mx;
                self.pair.y = my;
                self.pair.common.extreme = best;
            }
            PushPullShare::Reply {
                epoch,
                dx,
                dy,
                extreme,
            } => {
                // Only an answer to our own request to this very peer in
                // that epoch counts, and only once.
                let Some(at) = self
                    .outstanding
                    .iter()
                    .position(|p| p.peer == from && p.epoch == epoch)
                else {
                    self.rejected.count(Reject::Unsolicited);
                    return;
                };
                let sent = self.outstanding[at];
                // The responder's pair before the exchange is what the
                // change implies: (sent + 2 change). It must pass the
                // checks a request would. Halving and doubling are exact,
                // the mean's rounding leaves at most an ulp of the sent
                // weight, forgiven here.
                let implied_y = sent.y + 2.0 * dy;
                let implied_y = if implied_y < 0.0 && implied_y >= -f64::EPSILON * sent.y {
                    0.0
                } else {
                    implied_y
                };
                let function = self.pair.common.function;
                if let Err(reason) = self
                    .limits
                    .check_mass(function, sent.x + 2.0 * dx, implied_y)
                {
                    self.rejected.count(reason);
                    return;
                }
                self.outstanding.remove(at);
                if epoch != self.pair.common.epochs.number {
                    // The exchange began in an epoch this node has left.
                    return;
                }
                self.pair.x += dx;
                self.pair.y += dy;
                self.pair.common.extreme = self
                    .pair
                    .common
                    .function
                    .best(self.pair.common.extreme, extreme);
            }
            PushPullShare::Gift { epoch, x, y } => {
                if self.pair.admit(epoch) {
                    self.pair.x += x;
                    self.pair.y += y;
                }
            }
        }
    }

    fn estimate(&self) -> Option<f64> {
        self.pair.reported()
    }

    /// The change joins the mass this node holds, so the epoch under way
    /// mixes it into every estimate (reported when that epoch completes;
    /// without epochs, the estimates move from the next round on). A
    /// newcomer's input counts from the next epoch; a worse min or max
    /// than the one already spread shows from the next epoch only (never
    /// without epochs). A count ignores the value.
    fn set_input(&mut self, value: f64) {
        self.pair.set_input(value);
    }
}
