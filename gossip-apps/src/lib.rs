//! Applications that the field builds on gossip, as sans-IO state machines
//! over the core's public seams: a replicated key-value store, leader
//! election, partition awareness, payloads larger than a frame, and
//! transactions deduplicated by hash.
//!
//! An [`Application`] sits beside a [`gossip_core::Node`]: the host hands it
//! every [`Event`] the node emits and wakes it at its own deadline, and the
//! application acts on the cluster only through [`Cluster`]: broadcasts
//! (which spread by the node's dissemination strategy) and direct messages
//! to one live member ([`Node::send_direct`]). Like the core it never reads
//! a clock, never uses a global random generator and never does I/O, so the
//! simulator (`gossip-sim`'s `AppSim`) and the tokio agent run the same
//! code, and the same seed and inputs give the same outputs.
//!
//! Several applications share one node: each one's payloads start with its
//! [`Channel`] byte, and each ignores payloads of other channels.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bulk;
pub mod fetch;
pub mod kv;
pub mod leader;
pub mod partition;
#[cfg(test)]
mod testing;
pub mod tx;
mod view;

pub use leader::{LeaderConfig, LeaderElection, LeaderEvent, LeaderStatus};
pub use partition::{PartitionConfig, PartitionEvent, PartitionStatus, PartitionWatch};

use std::any::Any;
use std::time::Instant;

use gossip_core::{Aggregate, CommandError, Event, Member, MessageId, Node, NodeId, Strategy};

/// The first byte of every payload an application broadcasts or sends
/// directly, so that applications sharing a node tell theirs apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Channel {
    /// The replicated key-value store.
    Kv = 0xA1,
    /// Leader election's announcements.
    Leader = 0xA2,
    /// Bulk payloads' headers and chunks.
    Bulk = 0xA3,
    /// Transactions ([`tx::Tx`]).
    Tx = 0xA4,
    /// Fetched payloads ([`fetch`]): offers, requests and bodies.
    Fetch = 0xA5,
}

impl Channel {
    /// The channel's tag byte.
    pub const fn tag(self) -> u8 {
        self as u8
    }

    /// Every channel.
    pub const ALL: [Channel; 5] = [
        Channel::Kv,
        Channel::Leader,
        Channel::Bulk,
        Channel::Tx,
        Channel::Fetch,
    ];

    /// The channel `payload` belongs to, if any: how a host tells an
    /// application's broadcasts from the user's own.
    pub fn of(payload: &[u8]) -> Option<Channel> {
        let tag = *payload.first()?;
        Self::ALL.into_iter().find(|channel| channel.tag() == tag)
    }

    /// The payload after the tag if `payload` belongs to this channel.
    pub fn open(self, payload: &[u8]) -> Option<&[u8]> {
        match payload.split_first() {
            Some((&tag, rest)) if tag == self.tag() => Some(rest),
            _ => None,
        }
    }

    /// `body` with this channel's tag in front.
    pub fn wrap(self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + body.len());
        out.push(self.tag());
        out.extend_from_slice(body);
        out
    }
}

/// What an application may ask of the node it runs beside. Implemented for
/// every [`Node`]; tests may implement it to record what an application
/// does.
pub trait Cluster {
    /// This node's id.
    fn me(&self) -> NodeId;
    /// The members this node knows, in any state, this node first.
    fn members(&self) -> Vec<Member>;
    /// Broadcasts `payload` through the node's strategy.
    fn broadcast(&mut self, now: Instant, payload: &[u8]) -> Result<MessageId, CommandError>;
    /// Sends `payload` to one live member.
    fn send_direct(&mut self, now: Instant, to: NodeId, payload: &[u8])
        -> Result<(), CommandError>;
    /// Largest payload [`broadcast`](Self::broadcast) accepts.
    fn max_broadcast_len(&self) -> usize;
    /// Largest payload [`send_direct`](Self::send_direct) accepts.
    fn max_direct_len(&self) -> usize;
    /// Largest body [`send_bulk`](Self::send_bulk) accepts; 0 (the
    /// default) when the host has no bulk path, as a bare [`Node`] has not.
    fn max_bulk_len(&self) -> usize {
        0
    }
    /// Sends `body` to one live member whole, on the host's bulk path (a
    /// QUIC stream, for one): reliable and far larger than a frame, but
    /// best effort like a datagram as a whole (the application retries).
    /// The receiver's host hands it to
    /// [`Application::handle_bulk`].
    ///
    /// # Errors
    /// [`CommandError::PayloadTooLarge`] beyond
    /// [`max_bulk_len`](Self::max_bulk_len) (so always, by default),
    /// [`CommandError::NotAMember`] if `to` is not a live member.
    fn send_bulk(&mut self, now: Instant, to: NodeId, body: Vec<u8>) -> Result<(), CommandError> {
        let _ = (now, to);
        Err(CommandError::PayloadTooLarge {
            len: body.len(),
            max: self.max_bulk_len(),
        })
    }
}

impl<S: Strategy, A: Aggregate> Cluster for Node<S, A> {
    fn me(&self) -> NodeId {
        self.id()
    }

    fn members(&self) -> Vec<Member> {
        Node::members(self).collect()
    }

    fn broadcast(&mut self, now: Instant, payload: &[u8]) -> Result<MessageId, CommandError> {
        Node::broadcast(self, now, payload)
    }

    fn send_direct(
        &mut self,
        now: Instant,
        to: NodeId,
        payload: &[u8],
    ) -> Result<(), CommandError> {
        Node::send_direct(self, now, to, payload)
    }

    fn max_broadcast_len(&self) -> usize {
        self.max_payload_len()
    }

    fn max_direct_len(&self) -> usize {
        Node::max_direct_len(self)
    }
}

/// An application over the gossip layer: a state machine driven by the
/// node's events and by its own deadline.
///
/// The host calls [`handle_event`](Self::handle_event) with every event the
/// node emits (membership changes, deliveries, direct messages; the
/// application ignores what it does not use and payloads of other
/// [`Channel`]s), and [`handle_timeout`](Self::handle_timeout) once
/// [`poll_timeout`](Self::poll_timeout)'s instant has come. After either, it
/// polls the node's transmits and events as usual.
///
/// Applications are [`Any`], so that a host holding several as trait
/// objects can hand one back by its type (the agent's `with_app`).
pub trait Application: Any {
    /// The node emitted `event` at `now`.
    fn handle_event(&mut self, now: Instant, event: &Event, cluster: &mut dyn Cluster);

    /// The application's deadline has come (an early call must do nothing
    /// harmful).
    fn handle_timeout(&mut self, now: Instant, cluster: &mut dyn Cluster);

    /// When the application next wants [`handle_timeout`](Self::handle_timeout).
    fn poll_timeout(&self) -> Option<Instant>;

    /// A live member sent this node `body` on the host's bulk path
    /// ([`Cluster::send_bulk`]). Bodies of other [`Channel`]s are ignored;
    /// so is everything, by default.
    fn handle_bulk(&mut self, now: Instant, from: NodeId, body: &[u8], cluster: &mut dyn Cluster) {
        let _ = (now, from, body, cluster);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_open_only_their_own_payloads() {
        let wrapped = Channel::Kv.wrap(b"abc");
        assert_eq!(Channel::Kv.open(&wrapped), Some(&b"abc"[..]));
        assert_eq!(Channel::Leader.open(&wrapped), None);
        assert_eq!(Channel::Kv.open(&[]), None);
        assert_eq!(Channel::Kv.open(&[Channel::Kv.tag()]), Some(&[][..]));
        assert_eq!(Channel::of(&wrapped), Some(Channel::Kv));
        assert_eq!(
            Channel::of(&Channel::Leader.wrap(b"")),
            Some(Channel::Leader)
        );
        assert_eq!(Channel::of(b"plain"), None);
        assert_eq!(Channel::of(&[]), None);
    }
}
