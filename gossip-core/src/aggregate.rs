//! The aggregation seam: computing averages, sums, counts and extremes by
//! gossip.
//!
//! An [`Aggregate`] exchanges its own serde [`Aggregate::Share`] values with
//! peers each round and keeps an [`estimate`](Aggregate::estimate). Like a
//! [`Strategy`](crate::Strategy) it never sees bytes or sockets: its
//! [`AggregateHost`] samples peers and delivers shares, in the simulator's
//! math mode as in a node.

use core::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::id::NodeId;

/// What an aggregate may ask of its host.
pub trait AggregateHost<T> {
    /// The hosting node.
    fn me(&self) -> NodeId;
    /// A uniform random number in `[0, 1)` from the host's seeded generator.
    fn random(&mut self) -> f64;
    /// Appends up to `count` distinct peers chosen uniformly, never this node.
    fn sample_peers(&mut self, count: usize, out: &mut Vec<NodeId>);
    /// Sends `share` to `to`.
    fn send(&mut self, to: NodeId, share: T);
}

/// A gossip aggregation algorithm.
pub trait Aggregate {
    /// What travels between nodes.
    type Share: Clone + Debug + Serialize + DeserializeOwned;

    /// Identifies [`Share`](Self::Share)'s encoding on the wire: a node
    /// refuses shares of another type with
    /// [`RecvError::ShareTypeMismatch`](crate::RecvError::ShareTypeMismatch)
    /// rather than decoding them as its own. Derive it from a name that
    /// changes with the encoding, with [`share_type`].
    const SHARE_TYPE: u32;

    /// Whether this aggregate computes anything (false only for [`NoAggregate`]).
    const ENABLED: bool = true;

    /// One round elapsed: send shares.
    fn on_round<H: AggregateHost<Self::Share>>(&mut self, host: &mut H);

    /// A share arrived from `from`.
    fn on_share<H: AggregateHost<Self::Share>>(
        &mut self,
        host: &mut H,
        from: NodeId,
        share: Self::Share,
    );

    /// The current estimate, if there is one yet.
    fn estimate(&self) -> Option<f64>;

    /// The application changed this node's input to `value`.
    ///
    /// Each algorithm documents when the change shows in the estimates;
    /// the input is used from the next epoch on at the latest. A value that
    /// is not finite would poison every node's estimate: implementations
    /// ignore it ([`Node::set_aggregate_input`](crate::Node::set_aggregate_input)
    /// refuses it before it gets here).
    fn set_input(&mut self, value: f64);

    /// `peer` left the view.
    fn on_peer_down(&mut self, peer: NodeId) {
        let _ = peer;
    }
}

/// A share type id from a name such as `"my-crate/my-share/1"` (32-bit
/// FNV-1a, computed at compile time), for [`Aggregate::SHARE_TYPE`].
///
/// ```
/// const ID: u32 = gossip_core::share_type("example/share/1");
/// assert_ne!(ID, gossip_core::share_type("example/share/2"));
/// ```
pub const fn share_type(name: &str) -> u32 {
    let bytes = name.as_bytes();
    let mut hash: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u32;
        hash = hash.wrapping_mul(0x0100_0193);
        i += 1;
    }
    hash
}

/// The absence of aggregation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoAggregate;

impl Aggregate for NoAggregate {
    type Share = ();
    const SHARE_TYPE: u32 = 0;
    const ENABLED: bool = false;

    fn on_round<H: AggregateHost<()>>(&mut self, _host: &mut H) {}

    fn on_share<H: AggregateHost<()>>(&mut self, _host: &mut H, _from: NodeId, _share: ()) {}

    fn estimate(&self) -> Option<f64> {
        None
    }

    fn set_input(&mut self, _value: f64) {}
}
