//! Push-sum (Kempe, Dobra, Gehrke, "Gossip-based computation of aggregate
//! information", FOCS 2003).

use gossip_core::{Aggregate, AggregateHost, NodeId};
use serde::{Deserialize, Serialize};

use crate::common::{Admit, Epochs, Function, Input};

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
/// One message per node per round. Min and max spread the best value seen
/// instead, reaching everyone in about `log N` rounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushSum {
    function: Function,
    input: Input,
    x: f64,
    y: f64,
    extreme: f64,
    epochs: Epochs,
}

impl PushSum {
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
}

impl Aggregate for PushSum {
    type Share = PushSumShare;

    fn on_round<H: AggregateHost<PushSumShare>>(&mut self, host: &mut H) {
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
        let Some(&to) = peer.first() else { return };
        let epoch = self.epochs.number;
        if self.function.is_extreme() {
            host.send(
                to,
                PushSumShare::Extreme {
                    epoch,
                    value: self.extreme,
                },
            );
        } else {
            self.x /= 2.0;
            self.y /= 2.0;
            host.send(
                to,
                PushSumShare::Mass {
                    epoch,
                    x: self.x,
                    y: self.y,
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
        let epoch = match share {
            PushSumShare::Mass { epoch, .. } | PushSumShare::Extreme { epoch, .. } => epoch,
        };
        match self.epochs.admit(epoch) {
            Admit::Stale => return,
            Admit::Later => {
                self.epochs.complete(self.current(), epoch);
                self.restart();
            }
            Admit::Current => {}
        }
        match share {
            PushSumShare::Mass { x, y, .. } => {
                self.x += x;
                self.y += y;
            }
            PushSumShare::Extreme { value, .. } => {
                self.extreme = self.function.best(self.extreme, value)
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
