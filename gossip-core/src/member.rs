//! What the application sees of a member: the public view type.
//!
//! [`Member`] is built from the node's own table and is not what travels
//! on the wire, so a field added here changes neither the protocol nor the
//! encoding of state synchronisation.

use serde::{Deserialize, Serialize};

use crate::id::{Generation, Incarnation, NodeId};

/// Liveness of a member as seen by one node.
///
/// State synchronisation encodes it by variant index, so new variants are
/// only ever appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Liveness {
    /// Answers probes.
    Alive,
    /// Failed a probe; will be declared dead unless it refutes in time.
    Suspect,
    /// Declared dead.
    Dead,
    /// Left the cluster gracefully.
    Left,
}

/// One member as seen by one node: what [`Node::members`](crate::Node::members)
/// lists and what membership events carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Member {
    /// The member.
    pub id: NodeId,
    /// Its generation (one per process life).
    pub generation: Generation,
    /// Its incarnation within that life.
    pub incarnation: Incarnation,
    /// Its liveness in this view.
    pub liveness: Liveness,
    /// Its metadata.
    pub metadata: Vec<u8>,
}

impl Member {
    /// A member record, for code that builds views of its own (simulators,
    /// tests); nodes build theirs from what they learn.
    pub fn new(
        id: NodeId,
        generation: Generation,
        incarnation: Incarnation,
        liveness: Liveness,
        metadata: Vec<u8>,
    ) -> Self {
        Self {
            id,
            generation,
            incarnation,
            liveness,
            metadata,
        }
    }
}
