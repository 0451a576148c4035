//! Why an agent could not start or a command could not run.

use std::net::SocketAddr;

use gossip_core::partial::PartialBroadcastError;
use gossip_core::CommandError;
use thiserror::Error;

/// Why an agent could not start or a command could not run.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The node's frames would not fit the transport at all.
    #[error(
        "node max_message_size {node} exceeds the transport's frame limit {transport}; \
         lower max_message_size"
    )]
    FrameTooLarge {
        /// The node's `max_message_size`.
        node: usize,
        /// The transport's `max_frame_len`.
        transport: usize,
    },
    /// The transport would carry the node's largest frames only by
    /// splitting them (a QUIC stream instead of a datagram, IP fragments),
    /// which gossip's lossy, independent frames are not built for.
    #[error(
        "node max_message_size {node} exceeds the {unfragmented} bytes the transport \
         carries unfragmented; lower max_message_size to at most {unfragmented}"
    )]
    WouldFragment {
        /// The node's `max_message_size`.
        node: usize,
        /// The transport's `unfragmented_frame_len`.
        unfragmented: usize,
    },
    /// The node's identity is not the address the transport listens on, so
    /// peers would answer somewhere else.
    #[error("node id {node} differs from the transport's address {transport}")]
    AddressMismatch {
        /// The node's identity.
        node: SocketAddr,
        /// Where the transport listens.
        transport: SocketAddr,
    },
    /// The node refused the command.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A partial-view node refused the broadcast.
    #[error(transparent)]
    PartialBroadcast(#[from] PartialBroadcastError),
    /// The agent has stopped (shut down, crashed, aborted, or a command
    /// panicked on its task).
    #[error("the agent has stopped")]
    Stopped,
}
