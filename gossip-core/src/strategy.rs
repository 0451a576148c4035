//! The dissemination seam: how application broadcasts spread.
//!
//! A [`Strategy`] decides whom to contact and what to push, pull or answer.
//! It never sees bytes: the [`Host`] it is given (a real [`Node`](crate::Node),
//! or the simulator's round-synchronous math mode) stores payloads,
//! deduplicates, packs frames and samples peers. So one strategy type runs
//! unchanged on sockets and in a million-node simulation.

use serde::{Deserialize, Serialize};

use crate::id::{MessageId, NodeId};

/// One rumor as a strategy sees it: its id and how many relays it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Rumor {
    /// Which broadcast.
    pub id: MessageId,
    /// Relays between the origin and the holder (0 at the origin).
    pub hops: u16,
}

/// What a node holds, summarised per origin (Scuttlebutt-style): for each
/// origin life, every sequence number up to `through` is held.
///
/// Sorted by origin; a rumor is covered if its sequence is at or below its
/// origin's entry. Holes above a gap are not described, so they may be sent
/// again: a duplicate costs bytes, never correctness.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// `(origin, generation, through)`, sorted.
    #[serde(deserialize_with = "crate::wire::bounded_vec")]
    pub heads: Vec<(NodeId, u64, u64)>,
}

impl Digest {
    /// Whether the digest's owner holds `id`.
    pub fn covers(&self, id: MessageId) -> bool {
        self.heads
            .binary_search_by(|h| (h.0, h.1).cmp(&(id.origin, id.generation)))
            .is_ok_and(|i| id.sequence <= self.heads[i].2)
    }
}

/// A message between strategies. The host attaches the payloads of pushed
/// rumors when it encodes a [`GossipMessage::Push`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GossipMessage {
    /// Here are rumors (payloads attached by the host).
    Push {
        /// The rumors, as the sender holds them.
        rumors: Vec<Rumor>,
    },
    /// Send me what I lack.
    Pull {
        /// What the sender already holds.
        digest: Digest,
        /// Whether the receiver should pull back in turn, so that one
        /// contact reconciles both sides (push-pull anti-entropy).
        reciprocate: bool,
    },
    /// I already had these (Demers' feedback: the sender may lose interest).
    Feedback {
        /// The rumors the receiver already held.
        known: Vec<MessageId>,
    },
    /// I hold these and can send them (Plumtree's lazy `IHave`): ids only,
    /// no payloads. With no ids, it acknowledges a link request (a `Graft`
    /// with no ids): the link is kept at both ends.
    Announce {
        /// Rumors the sender holds.
        ids: Vec<MessageId>,
    },
    /// Push to me eagerly from now on, starting with these rumors if you
    /// hold them (Plumtree's `Graft`; with no ids, a request to become a
    /// tree neighbour).
    Graft {
        /// Rumors the sender lacks.
        ids: Vec<MessageId>,
    },
    /// Stop pushing to me eagerly: announce instead (Plumtree's `Prune`).
    Prune,
}

/// What a strategy may ask of the node hosting it.
pub trait Host {
    /// The hosting node.
    fn me(&self) -> NodeId;
    /// A uniform random number in `[0, 1)` from the node's seeded generator.
    fn random(&mut self) -> f64;
    /// Appends up to `count` distinct peers chosen uniformly, never this node.
    fn sample_peers(&mut self, count: usize, out: &mut Vec<NodeId>);
    /// Appends every peer this node currently knows to be alive.
    fn all_peers(&mut self, out: &mut Vec<NodeId>);
    /// How many peers this node currently knows to be alive.
    fn peer_count(&self) -> usize;
    /// Whether this node holds `id`.
    fn has(&self, id: MessageId) -> bool;
    /// What this node holds, for a pull request.
    fn digest(&self) -> Digest;
    /// Appends the rumors this node holds that `digest` does not cover.
    fn missing_from(&self, digest: &Digest, out: &mut Vec<Rumor>);
    /// Sends `message` to `to`.
    fn send(&mut self, to: NodeId, message: GossipMessage);
}

/// A dissemination strategy. Every callback gets the host; none does I/O.
///
/// The host calls [`on_rumor`](Self::on_rumor) once per rumor the node
/// learns (or originates), [`on_duplicate`](Self::on_duplicate) when a rumor
/// it already held arrives again, [`on_feedback`](Self::on_feedback) and
/// [`on_pull`](Self::on_pull) for those messages, and
/// [`on_round`](Self::on_round) every round while
/// [`wants_rounds`](Self::wants_rounds) says so.
pub trait Strategy {
    /// Whether broadcasts are possible with this strategy (false only for
    /// [`NoStrategy`]).
    const ENABLED: bool = true;

    /// A rumor became known here: originated locally (`from` is `None`) or
    /// received for the first time.
    fn on_rumor<H: Host>(&mut self, host: &mut H, rumor: Rumor, from: Option<NodeId>);

    /// A rumor this node already held arrived again from `from`.
    fn on_duplicate<H: Host>(&mut self, host: &mut H, rumor: Rumor, from: NodeId) {
        let _ = (host, rumor, from);
    }

    /// `from` reports it already held these rumors when we sent them.
    fn on_feedback<H: Host>(&mut self, host: &mut H, from: NodeId, known: &[MessageId]) {
        let _ = (host, from, known);
    }

    /// `from` asks for rumors its digest does not cover, and with
    /// `reciprocate` for a pull back.
    fn on_pull<H: Host>(&mut self, host: &mut H, from: NodeId, digest: &Digest, reciprocate: bool) {
        let _ = (host, from, digest, reciprocate);
    }

    /// `from` announces rumors it holds ([`GossipMessage::Announce`]).
    fn on_announce<H: Host>(&mut self, host: &mut H, from: NodeId, ids: &[MessageId]) {
        let _ = (host, from, ids);
    }

    /// `from` asks to be pushed to eagerly, starting with `ids`
    /// ([`GossipMessage::Graft`]).
    fn on_graft<H: Host>(&mut self, host: &mut H, from: NodeId, ids: &[MessageId]) {
        let _ = (host, from, ids);
    }

    /// `from` asks not to be pushed to eagerly ([`GossipMessage::Prune`]).
    fn on_prune<H: Host>(&mut self, host: &mut H, from: NodeId) {
        let _ = (host, from);
    }

    /// One gossip round elapsed.
    fn on_round<H: Host>(&mut self, host: &mut H) {
        let _ = host;
    }

    /// Whether [`on_round`](Self::on_round) has anything to do; an idle
    /// strategy lets the node sleep.
    fn wants_rounds(&self) -> bool {
        false
    }

    /// Whether this node is still actively spreading something (a hot
    /// rumor). A simulation ends when every node is quiescent and nothing is
    /// in flight, or when everyone is informed.
    fn is_quiescent(&self) -> bool {
        !self.wants_rounds()
    }

    /// `peer` left the view (dead or departed).
    fn on_peer_down(&mut self, peer: NodeId) {
        let _ = peer;
    }
}

/// The absence of a dissemination strategy: membership only.
/// [`Node::broadcast`](crate::Node::broadcast) returns
/// [`CommandError::NoStrategy`](crate::CommandError::NoStrategy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoStrategy;

impl Strategy for NoStrategy {
    const ENABLED: bool = false;

    fn on_rumor<H: Host>(&mut self, _host: &mut H, _rumor: Rumor, _from: Option<NodeId>) {}
}
