//! Push-sum (Kempe, Dobra, Gehrke, "Gossip-based computation of aggregate
//! information", FOCS 2003).

use gossip_core::{Aggregate, AggregateHost, NodeId};
use serde::{Deserialize, Serialize};

use crate::common::{Epochal, Function, Input, Limits, Pair, Rejections};

/// A push-sum share: half of the sender's mass, or its extreme.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum PushSumShare {
    /// Mass moved to the receiver.
    Mass {
        /// Epoch of the sender.
        epoch: u64,
        /// Value part.
        x: f64,
        /// Weight part.
        y: f64,
    },
    /// The best extreme the sender has seen.
    Extreme {
        /// Epoch of the sender.
        epoch: u64,
        /// The value.
        value: f64,
    },
}

/// Push-sum: each node holds a pair `(x, y)`, keeps half and sends half to a
/// uniformly random peer every round; `x / y` converges to the aggregate
/// everywhere, the variance of the estimates roughly halving each round.
///
/// Mass is conserved exactly without loss; every lost share is lost mass,
/// so under loss the estimate drifts (try [`FlowUpdating`](crate::FlowUpdating)).
/// One message per node per round (in the first round of an epoch, the
/// leader of a sum or count keeps a 65th of its pair and sends a 65th to
/// each of 64 peers, so that no single other node holds much of the weight
/// while it is concentrated). Min and max spread the best value
/// seen instead, reaching everyone in about `log N` rounds.
///
/// Every share may come from a liar. A mass must be finite with a weight
/// in `[0, max_share_weight]` ([`Limits`]), an extreme finite (or the
/// function's neutral infinity); with a [`Limits::value_range`], an
/// average's mass must lie in it. A refused share changes nothing and is
/// counted ([`PushSum::rejections`]). What a member with a valid key can
/// still do: weights are conserved (they sum to the number of contributing
/// nodes for an average, to 1 for sums and counts), so each share it
/// forges adds at most `max_share_weight` of weight the system never had,
/// at any value it likes unless a value range is set; with one, it moves
/// an average no further than that much weight of in-range input would.
/// Forged weight stays in the system until the epoch ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushSum {
    pair: Pair,
    /// Bounds on what a share may carry.
    #[serde(default)]
    limits: Limits,
    /// Shares refused so far.
    #[serde(default)]
    rejected: Rejections,
}

impl PushSum {
    /// A node computing `function` from `input`, restarting every
    /// `epoch_length` rounds if given.
    pub fn new(function: Function, input: Input, epoch_length: Option<u32>) -> Self {
        Self {
            pair: Pair::new(function, input, epoch_length),
            limits: Limits::default(),
            rejected: Rejections::default(),
        }
    }

    /// Sets the bounds shares are checked against (push-sum reads
    /// `max_share_weight` and `value_range`).
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

impl Aggregate for PushSum {
    type Share = PushSumShare;
    const SHARE_TYPE: u32 = gossip_core::share_type("gossip-aggregate/push-sum/1");

    fn on_round<H: AggregateHost<PushSumShare>>(&mut self, host: &mut H) {
        if !self.pair.begin_round() {
            return;
        }
        let epoch = self.pair.common.epochs.number;
        if self
            .pair
            .scatter_to(host, |epoch, x, y| PushSumShare::Mass { epoch, x, y })
        {
            return;
        }
        let mut peer = Vec::with_capacity(1);
        host.sample_peers(1, &mut peer);
        let Some(&to) = peer.first() else { return };
        if self.pair.common.function.is_extreme() {
            let value = self.pair.common.extreme;
            host.send(to, PushSumShare::Extreme { epoch, value });
        } else {
            self.pair.x /= 2.0;
            self.pair.y /= 2.0;
            host.send(
                to,
                PushSumShare::Mass {
                    epoch,
                    x: self.pair.x,
                    y: self.pair.y,
                },
            );
        }
    }

    fn on_share<H: AggregateHost<PushSumShare>>(
        &mut self,
        _host: &mut H,
        _from: NodeId,
        share: PushSumShare,
    ) {
        let function = self.pair.common.function;
        let (epoch, checked) = match share {
            PushSumShare::Mass { epoch, x, y } => (epoch, self.limits.check_mass(function, x, y)),
            PushSumShare::Extreme { epoch, value } => {
                (epoch, self.limits.check_extreme(function, value))
            }
        };
        if let Err(reason) = checked {
            self.rejected.count(reason);
            return;
        }
        if !self.pair.admit(epoch) {
            return;
        }
        match share {
            PushSumShare::Mass { x, y, .. } => {
                self.pair.x += x;
                self.pair.y += y;
            }
            PushSumShare::Extreme { value, .. } => {
                self.pair.common.extreme = self
                    .pair
                    .common
                    .function
                    .best(self.pair.common.extreme, value);
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
