//! Push-pull averaging (Jelasity, Montresor, Babaoglu, "Gossip-based
//! aggregation in large dynamic networks", ACM TOCS 2005).

use gossip_core::{Aggregate, AggregateHost, NodeId};
use serde::{Deserialize, Serialize};

use crate::common::{all_finite, Epochal, Function, Input, Pair};

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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushPull {
    pair: Pair,
}

impl PushPull {
    /// A node computing `function` from `input`, restarting every
    /// `epoch_length` rounds if given.
    pub fn new(function: Function, input: Input, epoch_length: Option<u32>) -> Self {
        Self {
            pair: Pair::new(function, input, epoch_length),
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
        let epoch = self.pair.common.epochs.number;
        self.pair
            .scatter_to(host, |epoch, x, y| PushPullShare::Gift { epoch, x, y });
        let mut peer = Vec::with_capacity(1);
        host.sample_peers(1, &mut peer);
        if let Some(&to) = peer.first() {
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
        let finite = match share {
            PushPullShare::Request { x, y, extreme, .. } => {
                all_finite(&[x, y]) && y >= 0.0 && !extreme.is_nan()
            }
            PushPullShare::Reply {
                dx, dy, extreme, ..
            } => all_finite(&[dx, dy]) && !extreme.is_nan(),
            PushPullShare::Gift { x, y, .. } => all_finite(&[x, y]) && y >= 0.0,
        };
        if !finite {
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
