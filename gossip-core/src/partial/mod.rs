//! Partial views: HyParView membership with a Plumtree broadcast tree over
//! it, for clusters beyond what full views serve.
//!
//! [`PartialNode`] keeps an *active view* of a few neighbours
//! ([`PartialConfig::active_size`], 5) and a *passive view* of reserve
//! addresses ([`PartialConfig::passive_size`], 30), whatever the cluster's
//! size. A joining node's contact takes it in and sends random walks
//! through the overlay that end in more nodes taking it in; neighbours are
//! pinged when quiet and dropped after [`PartialConfig::dead_after`], and
//! a gap is refilled from the passive view; shuffles along random walks
//! keep the passive views mixed. Broadcasts go eagerly along a spanning
//! tree of active links and are announced by 8-byte id on the rest; a
//! duplicate prunes its link, a missing id is grafted from an announcer.
//!
//! **Cost.** Per node: `active_size + passive_size` addresses and the
//! payloads held for grafts, independent of N; background traffic is a
//! ping per quiet neighbour per [`PartialConfig::ping_interval`] and a
//! shuffle per [`PartialConfig::shuffle_interval`]. A broadcast costs
//! about one payload per node plus 8 bytes per lazy link.
//!
//! **When to choose it.** Beyond a few thousand nodes, where a full view's
//! memory (every member on every node) and its join traffic (every member
//! learning about every other) grow too large, or where no node should
//! talk to more than a handful of peers. A full view
//! ([`Node`](crate::Node)) detects a crash everywhere and knows every
//! member; a partial view only knows its neighbourhood.
//!
//! **What a lying peer can do.** Frames are decoded within
//! [`PartialConfig::max_frame_len`] and the list limits. A label keeps
//! overlays apart by mistake, not by design: anyone may write it (a
//! sealing keyring authenticates it). Walks, shuffles,
//! payloads, announcements and grafts are taken only from active
//! neighbours; a shuffle answer only with the nonce of an open shuffle; a
//! neighbour answer only from the node asked; a stranger's join accept
//! only into free room. Joins and promotion requests are rate-limited
//! ([`PartialConfig::joins_per_s`]) so a flood cannot churn the view
//! faster, and graft answers are budgeted per neighbour. An active
//! neighbour that lies can still inject addresses into walks and
//! shuffles (they fall out when they do not answer pings) and withhold
//! payloads (its neighbours graft from other announcers).
//!
//! **Where it runs.** The simulator (`gossip-node sim membership
//! --membership partial`) and, on real sockets, `gossip_agent::PartialAgent`
//! over any transport; `gossip-node agent` runs it with
//! `membership = "partial"` in its config file. A neighbour found dead by
//! the pings is reported as [`PartialEvent::NeighbourDown`] with
//! [`NeighbourDownReason::Silent`]; [`PartialNode::leave`] tells the
//! neighbours at once. It is a separate state machine from the full-view
//! [`Node`](crate::Node): SWIM's detection, the strategies of
//! `gossip-strategies`, aggregates and the applications that need every
//! member known do not run over it. Its frames carry
//! [`PartialConfig::cluster_label`] as the full view's carry theirs: a
//! frame of another overlay is refused before its message is decoded
//! ([`PartialDecodeError::WrongCluster`]).

mod config;
mod node;
mod wire;

pub use config::{PartialConfig, PartialConfigError};
pub use node::{
    NeighbourDownReason, PartialBroadcastError, PartialEvent, PartialNode, PartialStats,
};
pub use wire::{BroadcastId, PartialDecodeError, PartialMessage, PARTIAL_VERSION};
