//! Runtime choice among the algorithms.

use gossip_core::{Aggregate, AggregateHost, NodeId};
use serde::{Deserialize, Serialize};

use crate::{
    FlowShare, FlowUpdating, Function, Input, Limits, PushPull, PushPullShare, PushSum,
    PushSumShare, Rejections,
};

/// Any algorithm of this crate, chosen at runtime and dispatched by `match`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "kebab-case")]
pub enum AnyAggregate {
    /// [`PushSum`].
    PushSum(PushSum),
    /// [`PushPull`].
    PushPull(PushPull),
    /// [`FlowUpdating`].
    FlowUpdating(FlowUpdating),
}

/// The share of [`AnyAggregate`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum AnyShare {
    /// Of [`PushSum`].
    PushSum(PushSumShare),
    /// Of [`PushPull`].
    PushPull(PushPullShare),
    /// Of [`FlowUpdating`].
    FlowUpdating(FlowShare),
}

impl AnyShare {
    /// The value mass this share carries to its receiver, which its sender
    /// no longer counts: push-sum's mass, push-pull's gifts and the change
    /// a push-pull reply hands the initiator. Zero for extremes, push-pull
    /// requests (the initiator keeps its pair until the reply) and flow
    /// updating, whose flows are state: a flow in flight is a disagreement
    /// between two nodes about their link, settled when it lands.
    ///
    /// Held mass plus the mass of the shares in flight is what a lossless
    /// network conserves.
    pub fn mass(&self) -> f64 {
        match *self {
            AnyShare::PushSum(PushSumShare::Mass { x, .. }) => x,
            AnyShare::PushPull(PushPullShare::Gift { x, .. }) => x,
            AnyShare::PushPull(PushPullShare::Reply { dx, .. }) => dx,
            _ => 0.0,
        }
    }
}

/// Adapts a host of [`AnyShare`] to an algorithm's own share type.
struct Wrap<'a, H, F> {
    host: &'a mut H,
    wrap: F,
}

impl<T, H: AggregateHost<AnyShare>, F: Fn(T) -> AnyShare> AggregateHost<T> for Wrap<'_, H, F> {
    fn me(&self) -> NodeId {
        self.host.me()
    }
    fn random(&mut self) -> f64 {
        self.host.random()
    }
    fn sample_peers(&mut self, count: usize, out: &mut Vec<NodeId>) {
        self.host.sample_peers(count, out);
    }
    fn send(&mut self, to: NodeId, share: T) {
        self.host.send(to, (self.wrap)(share));
    }
}

/// Which algorithm an [`AnyAggregate`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// [`PushSum`].
    PushSum,
    /// [`PushPull`].
    PushPull,
    /// [`FlowUpdating`] over `degree` neighbours.
    FlowUpdating {
        /// Neighbours per node.
        degree: usize,
    },
}

impl AnyAggregate {
    /// A node running `algorithm` to compute `function` from `input`,
    /// restarting every `epoch_length` rounds if given.
    pub fn new(
        algorithm: Algorithm,
        function: Function,
        input: Input,
        epoch_length: Option<u32>,
    ) -> Self {
        match algorithm {
            Algorithm::PushSum => {
                AnyAggregate::PushSum(PushSum::new(function, input, epoch_length))
            }
            Algorithm::PushPull => {
                AnyAggregate::PushPull(PushPull::new(function, input, epoch_length))
            }
            Algorithm::FlowUpdating { degree } => {
                AnyAggregate::FlowUpdating(FlowUpdating::new(function, input, degree, epoch_length))
            }
        }
    }

    /// Marks this node as joining a computation under way.
    pub fn newcomer(self) -> Self {
        match self {
            AnyAggregate::PushSum(a) => AnyAggregate::PushSum(a.newcomer()),
            AnyAggregate::PushPull(a) => AnyAggregate::PushPull(a.newcomer()),
            AnyAggregate::FlowUpdating(a) => AnyAggregate::FlowUpdating(a.newcomer()),
        }
    }

    /// The mass this node holds (value part), for conservation checks.
    pub fn mass(&self) -> f64 {
        match self {
            AnyAggregate::PushSum(a) => a.mass(),
            AnyAggregate::PushPull(a) => a.mass(),
            AnyAggregate::FlowUpdating(a) => a.mass(),
        }
    }

    /// Sets the bounds shares are checked against and the bounds of the
    /// algorithm's collections (see [`Limits`]).
    pub fn with_limits(self, limits: Limits) -> Self {
        match self {
            AnyAggregate::PushSum(a) => AnyAggregate::PushSum(a.with_limits(limits)),
            AnyAggregate::PushPull(a) => AnyAggregate::PushPull(a.with_limits(limits)),
            AnyAggregate::FlowUpdating(a) => AnyAggregate::FlowUpdating(a.with_limits(limits)),
        }
    }

    /// Shares refused so far, by reason. A share of another algorithm is
    /// not counted (it is a misconfiguration, not a lie about a value).
    pub fn rejections(&self) -> Rejections {
        match self {
            AnyAggregate::PushSum(a) => a.rejections(),
            AnyAggregate::PushPull(a) => a.rejections(),
            AnyAggregate::FlowUpdating(a) => a.rejections(),
        }
    }

    /// How many shares were refused so far.
    pub fn rejected_shares(&self) -> u64 {
        self.rejections().total()
    }
}

impl Aggregate for AnyAggregate {
    type Share = AnyShare;
    const SHARE_TYPE: u32 = gossip_core::share_type("gossip-aggregate/any/1");

    fn on_round<H: AggregateHost<AnyShare>>(&mut self, host: &mut H) {
        match self {
            AnyAggregate::PushSum(a) => a.on_round(&mut Wrap {
                host,
                wrap: AnyShare::PushSum,
            }),
            AnyAggregate::PushPull(a) => a.on_round(&mut Wrap {
                host,
                wrap: AnyShare::PushPull,
            }),
            AnyAggregate::FlowUpdating(a) => a.on_round(&mut Wrap {
                host,
                wrap: AnyShare::FlowUpdating,
            }),
        }
    }

    fn on_share<H: AggregateHost<AnyShare>>(
        &mut self,
        host: &mut H,
        from: NodeId,
        share: AnyShare,
    ) {
        // A share of another algorithm (a misconfigured peer) is ignored.
        match (self, share) {
            (AnyAggregate::PushSum(a), AnyShare::PushSum(s)) => a.on_share(
                &mut Wrap {
                    host,
                    wrap: AnyShare::PushSum,
                },
                from,
                s,
            ),
            (AnyAggregate::PushPull(a), AnyShare::PushPull(s)) => a.on_share(
                &mut Wrap {
                    host,
                    wrap: AnyShare::PushPull,
                },
                from,
                s,
            ),
            (AnyAggregate::FlowUpdating(a), AnyShare::FlowUpdating(s)) => a.on_share(
                &mut Wrap {
                    host,
                    wrap: AnyShare::FlowUpdating,
                },
                from,
                s,
            ),
            _ => {}
        }
    }

    fn estimate(&self) -> Option<f64> {
        match self {
            AnyAggregate::PushSum(a) => a.estimate(),
            AnyAggregate::PushPull(a) => a.estimate(),
            AnyAggregate::FlowUpdating(a) => a.estimate(),
        }
    }

    fn set_input(&mut self, value: f64) {
        match self {
            AnyAggregate::PushSum(a) => a.set_input(value),
            AnyAggregate::PushPull(a) => a.set_input(value),
            AnyAggregate::FlowUpdating(a) => a.set_input(value),
        }
    }

    fn on_peer_down(&mut self, peer: NodeId) {
        match self {
            AnyAggregate::PushSum(a) => a.on_peer_down(peer),
            AnyAggregate::PushPull(a) => a.on_peer_down(peer),
            AnyAggregate::FlowUpdating(a) => a.on_peer_down(peer),
        }
    }
}
