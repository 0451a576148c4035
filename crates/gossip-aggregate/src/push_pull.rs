//! Push-pull averaging (Jelasity, Montresor, Babaoglu, "Gossip-based
//! aggregation in large dynamic networks", ACM TOCS 2005).

use gossip_core::{Aggregate, AggregateHost, NodeId};
use serde::{Deserialize, Serialize};

use crate::common::{Admit, Epochs, Function, Input};

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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushPull {
    function: Function,
    input: Input,
    x: f64,
    y: f64,
    extreme: f64,
    epochs: Epochs,
}

impl PushPull {
    /// A node computing `function` from `input`, restarting every
    /// `epoch_length` rounds if given.
    pub fn new(function: Function, input: Input, epoch_length: Option<u32>) -> Self {
        let (x, y) = function.initial(input);
        Self {
            function,
            input,
            x,
            y,
            extreme: input.value,
            epochs: Epochs::new(epoch_length, false),
        }
    }

    /// Marks this node as joining a computation under way: it contributes
    /// its input from the next epoch on.
    pub fn newcomer(mut self) -> Self {
        self.epochs = Epochs::new(self.epochs.length, true);
        self.restart();
        self
    }

    fn restart(&mut self) {
        let contributes = self.epochs.contributes;
        (self.x, self.y) = self.function.start(self.input, contributes);
        self.extreme = self.function.start_extreme(self.input, contributes);
    }

    fn current(&self) -> Option<f64> {
        if self.function.is_extreme() {
            Some(self.extreme)
        } else if self.y > 0.0 {
            Some(self.x / self.y)
        } else {
            None
        }
    }

    /// The mass this node holds (value part), for conservation checks.
    pub fn mass(&self) -> f64 {
        self.x
    }

    /// Applies the epoch of a share; false if the share is stale.
    fn admit(&mut self, epoch: u64) -> bool {
        match self.epochs.admit(epoch) {
            Admit::Stale => false,
            Admit::Later => {
                self.epochs.complete(self.current(), epoch);
                self.restart();
                true
            }
            Admit::Current => true,
        }
    }
}

impl Aggregate for PushPull {
    type Share = PushPullShare;

    fn on_round<H: AggregateHost<PushPullShare>>(&mut self, host: &mut H) {
        if self.epochs.tick() {
            let next = self.epochs.number + 1;
            self.epochs.complete(self.current(), next);
            self.restart();
        }
        if self.epochs.fresh {
            return;
        }
        let mut peer = Vec::with_capacity(1);
        host.sample_peers(1, &mut peer);
        if let Some(&to) = peer.first() {
            host.send(
                to,
                PushPullShare::Request {
                    epoch: self.epochs.number,
                    x: self.x,
                    y: self.y,
                    extreme: self.extreme,
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
        match share {
            PushPullShare::Request {
                epoch,
                x,
                y,
                extreme,
            } => {
                if !self.admit(epoch) {
                    return;
                }
                let (mx, my) = ((self.x + x) / 2.0, (self.y + y) / 2.0);
                let best = self.function.best(self.extreme, extreme);
                host.send(
                    from,
                    PushPullShare::Reply {
                        epoch,
                        dx: mx - x,
                        dy: my - y,
                        extreme: best,
                    },
                );
                self.x = mx;
                self.y = my;
                self.extreme = best;
            }
            PushPullShare::Reply {
                epoch,
                dx,
                dy,
                extreme,
            } => {
                if self.epochs.admit(epoch) != Admit::Current {
                    // The exchange began in an epoch this node has left.
                    return;
                }
                self.x += dx;
                self.y += dy;
                self.extreme = self.function.best(self.extreme, extreme);
            }
        }
    }

    fn estimate(&self) -> Option<f64> {
        if self.epochs.length.is_some() {
            self.epochs.completed
        } else {
            self.current()
        }
    }
}
