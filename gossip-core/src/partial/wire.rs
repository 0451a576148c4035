//! The partial-view protocol's frames.
//!
//! ```text
//! +---------+---------------+-------------------------+
//! | version | cluster label | message (enum)          |
//! |  1 byte | varint + utf8 | postcard PartialMessage |
//! +---------+---------------+-------------------------+
//! ```
//!
//! The label is written as the full-view frames write theirs (postcard's
//! string: a varint length, then the bytes), so an empty label costs one
//! byte. Decoding refuses frames longer than the configured limit, another
//! version, another cluster's label (before the message is decoded at
//! all), trailing bytes, and lists longer than the configured limits, with
//! a typed error; nothing is allocated beyond what the (bounded) frame
//! itself holds.

use serde::{Deserialize, Serialize};

use super::config::PartialConfig;
use crate::NodeId;

/// The first byte of every partial-view frame (0x51: the cluster label
/// follows it; 0x50 frames had none, and a node of either refuses the
/// other's with a version error).
pub const PARTIAL_VERSION: u8 = 0x51;

/// A broadcast's id: eight random bytes drawn by its origin. Eight bytes
/// on the wire per announced id.
pub type BroadcastId = [u8; 8];

/// What partial-view nodes say to each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartialMessage {
    /// "Take me in": sent by a joining node to a contact.
    Join,
    /// A join's random walk: `joiner` wants neighbours; `ttl` hops remain.
    ForwardJoin {
        /// The joining node.
        joiner: NodeId,
        /// Hops left.
        ttl: u8,
    },
    /// "You are in my active view now" (the end of a join's walk, or the
    /// contact itself).
    JoinAccept,
    /// "Be my neighbour"; `urgent` when the sender has few neighbours or
    /// was refused repeatedly, which a full active view makes room for.
    Neighbour {
        /// The sender's active view is empty.
        urgent: bool,
    },
    /// The answer to [`Neighbour`](Self::Neighbour).
    NeighbourReply {
        /// Whether the receiver took the sender in.
        accepted: bool,
    },
    /// "You are out of my active view."
    Disconnect,
    /// A view sample walking to a random node.
    Shuffle {
        /// Who started it and gets the answer.
        origin: NodeId,
        /// Hops left.
        ttl: u8,
        /// Matches the answer to the request.
        nonce: u32,
        /// The origin and some of its neighbours and reserve.
        sample: Vec<NodeId>,
    },
    /// The answer to a shuffle, sent straight to its origin.
    ShuffleReply {
        /// The request's nonce.
        nonce: u32,
        /// Part of the answering node's passive view.
        sample: Vec<NodeId>,
    },
    /// "Are you there?" to a quiet neighbour.
    Ping,
    /// The answer to [`Ping`](Self::Ping).
    Pong,
    /// A broadcast payload pushed along the tree.
    Gossip {
        /// Its id.
        id: BroadcastId,
        /// Hops from its origin.
        hops: u16,
        /// The payload.
        payload: Vec<u8>,
    },
    /// Ids this node has (lazy links).
    IHave {
        /// The ids.
        ids: Vec<BroadcastId>,
    },
    /// "Send me these, and push to me from now on."
    Graft {
        /// The ids wanted.
        ids: Vec<BroadcastId>,
    },
    /// "Stop pushing to me; announce instead."
    Prune,
}

impl PartialMessage {
    /// The message's name, for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::ForwardJoin { .. } => "forward_join",
            Self::JoinAccept => "join_accept",
            Self::Neighbour { .. } => "neighbour",
            Self::NeighbourReply { .. } => "neighbour_reply",
            Self::Disconnect => "disconnect",
            Self::Shuffle { .. } => "shuffle",
            Self::ShuffleReply { .. } => "shuffle_reply",
            Self::Ping => "ping",
            Self::Pong => "pong",
            Self::Gossip { .. } => "gossip",
            Self::IHave { .. } => "ihave",
            Self::Graft { .. } => "graft",
            Self::Prune => "prune",
        }
    }

    /// The frame carrying this message for the overlay labelled `label`
    /// ([`PartialConfig::cluster_label`]).
    pub fn encode(&self, label: &str) -> Vec<u8> {
        let out = vec![PARTIAL_VERSION];
        // Serializing into a Vec cannot fail for these types.
        let out = postcard::to_extend(label, out).unwrap_or_default();
        postcard::to_extend(self, out).unwrap_or_default()
    }

    /// Reads a frame from an untrusted peer.
    pub fn decode(bytes: &[u8], config: &PartialConfig) -> Result<Self, PartialDecodeError> {
        if bytes.len() > config.max_frame_len {
            return Err(PartialDecodeError::TooLong {
                len: bytes.len(),
                max: config.max_frame_len,
            });
        }
        let (&version, body) = bytes.split_first().ok_or(PartialDecodeError::Empty)?;
        if version != PARTIAL_VERSION {
            return Err(PartialDecodeError::Version(version));
        }
        // The label is compared as bytes, borrowed from the frame: another
        // overlay's frame is refused before its message is looked at, and
        // a label that is not even UTF-8 is simply another label.
        let (label, body): (&[u8], _) =
            postcard::take_from_bytes(body).map_err(|_| PartialDecodeError::Malformed)?;
        if label != config.cluster_label.as_bytes() {
            return Err(PartialDecodeError::WrongCluster);
        }
        let (message, rest): (Self, _) =
            postcard::take_from_bytes(body).map_err(|_| PartialDecodeError::Malformed)?;
        if !rest.is_empty() {
            return Err(PartialDecodeError::TrailingBytes(rest.len()));
        }
        let too_many = |what, len, max| Err(PartialDecodeError::TooMany { what, len, max });
        match &message {
            Self::Shuffle { sample, .. } | Self::ShuffleReply { sample, .. }
                if sample.len() > config.max_sample() =>
            {
                too_many("sample", sample.len(), config.max_sample())
            }
            Self::IHave { ids } | Self::Graft { ids } if ids.len() > config.max_ids => {
                too_many("ids", ids.len(), config.max_ids)
            }
            Self::Gossip { payload, .. } if payload.len() > config.max_payload_len => {
                too_many("payload bytes", payload.len(), config.max_payload_len)
            }
            _ => Ok(message),
        }
    }
}

/// Why a partial-view frame was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PartialDecodeError {
    /// No bytes at all.
    #[error("empty frame")]
    Empty,
    /// Longer than `max_frame_len`.
    #[error("frame of {len} bytes exceeds {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Another protocol or version.
    #[error("unknown version byte {0:#04x}")]
    Version(u8),
    /// Another overlay's frame: its cluster label is not
    /// [`PartialConfig::cluster_label`].
    #[error("frame of another cluster")]
    WrongCluster,
    /// Not a message.
    #[error("malformed frame")]
    Malformed,
    /// Bytes after the message.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// A list longer than its limit.
    #[error("{len} {what} exceed the limit of {max}")]
    TooMany {
        /// What was counted.
        what: &'static str,
        /// How many there were.
        len: usize,
        /// The limit.
        max: usize,
    },
}
