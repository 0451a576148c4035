//! Error types, one per kind of operation.

use thiserror::Error;

/// A configuration that [`Config::validate`](crate::Config::validate) refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field is outside its documented range.
    #[error("invalid config field `{field}`: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The node's address cannot be carried on the wire (an IPv6 address
    /// with a scope id or flow label).
    #[error(
        "address {0} has an IPv6 scope id or flow label, which the wire format does not carry"
    )]
    UnsupportedAddress(std::net::SocketAddr),
    /// `max_message_size` cannot hold a header and one maximal member record.
    #[error("max_message_size {configured} is too small: {needed} bytes are needed for a header and one member record")]
    MessageTooSmall {
        /// Smallest workable size for this configuration.
        needed: usize,
        /// The configured size.
        configured: usize,
    },
}

/// A fault in bytes received from the network.
///
/// Every variant leaves the node's state exactly as it was, and is counted in
/// [`Stats::recv_errors`](crate::Stats::recv_errors).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The frame is larger than `max_message_size`; it was not decoded.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Received length.
        len: usize,
        /// Configured limit.
        max: usize,
    },
    /// The frame is empty.
    #[error("empty frame")]
    Empty,
    /// The frame speaks a protocol version this node does not.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// The frame belongs to another cluster.
    #[error("frame from another cluster (label mismatch)")]
    WrongCluster,
    /// The frame does not decode.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// The frame decoded but bytes were left over.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The frame claims to come from this node.
    #[error("frame claims to come from this node")]
    FromSelf,
    /// A member record carries metadata longer than `max_metadata_len`.
    #[error("metadata of {len} bytes exceeds the {max}-byte limit")]
    MetadataTooLong {
        /// Received length.
        len: usize,
        /// Configured limit.
        max: usize,
    },
    /// The node has left the cluster and takes no more input.
    #[error("node has left the cluster")]
    Departed,
    /// A request whose answer would go to the claimed sender came from
    /// another address.
    #[error("request claims a sender other than its source address")]
    SenderMismatch,
    /// A rumor's payload exceeds what this node could relay in one frame.
    #[error("rumor payload of {len} bytes exceeds the {max}-byte limit")]
    PayloadTooLarge {
        /// Received length.
        len: usize,
        /// Largest payload this node relays.
        max: usize,
    },
    /// An aggregate share from a node running another aggregate (or none):
    /// its bytes would decode as garbage here.
    #[error("aggregate share of type {got:#010x}, this node runs {expected:#010x}")]
    ShareTypeMismatch {
        /// This node's [`Aggregate::SHARE_TYPE`](crate::Aggregate::SHARE_TYPE).
        expected: u32,
        /// The type the share claims.
        got: u32,
    },
}

/// A local command that could not be carried out. The node's state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No dissemination strategy is plugged in yet, so application broadcasts
    /// cannot be sent. Membership works without one.
    #[error("no dissemination strategy is configured")]
    NoStrategy,
    /// The metadata is longer than `max_metadata_len`.
    #[error("metadata of {len} bytes exceeds the {max}-byte limit")]
    MetadataTooLong {
        /// Offered length.
        len: usize,
        /// Configured limit.
        max: usize,
    },
    /// The node has left the cluster.
    #[error("node has left the cluster")]
    Departed,
    /// The node has not joined yet.
    #[error("node has not been started with join")]
    NotStarted,
    /// The broadcast payload does not fit one frame.
    #[error("payload of {len} bytes exceeds the {max}-byte limit")]
    PayloadTooLarge {
        /// Offered length.
        len: usize,
        /// Largest accepted payload.
        max: usize,
    },
    /// `join` was called on a node that is already running.
    #[error("node already joined or is joining")]
    AlreadyStarted,
    /// No aggregation algorithm is plugged in, so there is no input to set.
    #[error("no aggregation algorithm is configured")]
    NoAggregate,
    /// An aggregation input must be a finite number: a NaN or an infinity
    /// would poison every node's estimate.
    #[error("aggregation input must be a finite number")]
    NonFiniteInput,
    /// A direct message may only go to a live member (not to this node).
    #[error("the destination is not a live member")]
    NotAMember,
}
