//! The transport seam: how a gossip driver moves frames between nodes.
//!
//! A `gossip_core::Node` never touches a socket. A driver (such as
//! `gossip-agent`'s `Agent`) receives frames from a [`Transport`], feeds them
//! to the node and sends whatever the node wants sent. Because every
//! transport implements this one trait, swapping UDP for QUIC (or for an
//! in-memory channel in tests) changes one line in the program that builds
//! the driver and nothing in the protocol.
//!
//! The trait lives in a crate of its own, below both the driver and the
//! transports, so that the sans-IO core names no async trait, a transport
//! does not compile the driver it plugs into, and the driver's examples and
//! tests can use the real transports without a dependency cycle. It needs
//! no async runtime either: it only names futures.
//!
//! The trait is object safe through `async-trait`, so a binary can pick a
//! `Box<dyn Transport>` at runtime. Implementations annotate their `impl`
//! with the re-exported [`async_trait`](macro@async_trait) attribute.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::net::SocketAddr;

use thiserror::Error;

/// The attribute every `impl Transport for ...` carries, re-exported so an
/// implementation needs no dependency of its own on `async-trait`.
pub use async_trait::async_trait;

/// Something a transport received.
///
/// New kinds may be added; a driver ignores the ones it does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Incoming {
    /// A frame from `from`, to hand to the node's `handle_message`.
    Frame {
        /// The sender's address, as the transport saw it.
        from: SocketAddr,
        /// The frame's bytes.
        bytes: Vec<u8>,
    },
    /// The transport lost its connection to `peer` (or could not make one).
    /// Connectionless transports never report this. Hand it to the node's
    /// `peer_unreachable`.
    Unreachable(SocketAddr),
    /// A bulk body from `from`, received whole on the transport's bulk path
    /// ([`Transport::send_bulk`]). The driver hands it to the applications
    /// beside the node (if `from` is a live member); the node never sees it.
    Bulk {
        /// The sender's address, as the transport saw it (for QUIC, the
        /// address its certificate names).
        from: SocketAddr,
        /// The body's bytes.
        bytes: Vec<u8>,
    },
}

/// Why a transport could not send or receive.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The frame is larger than this transport carries.
    #[error("frame of {len} bytes exceeds this transport's limit of {max} bytes")]
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The largest frame the transport sends.
        max: usize,
    },
    /// The destination cannot be reached with this transport (for example
    /// an IPv6 address on an IPv4 socket).
    #[error("cannot send to {0} from this transport")]
    Unsupported(SocketAddr),
    /// The transport was shut down.
    #[error("transport closed")]
    Closed,
    /// The operating system refused.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A transport-specific failure, described.
    #[error("{0}")]
    Other(String),
}

/// Counters a transport keeps, in what it puts on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Packets handed to the operating system.
    pub packets_sent: u64,
    /// Bytes in those packets, including the transport's own framing and
    /// encryption overhead but not IP and UDP headers.
    pub bytes_sent: u64,
    /// Packets received from the operating system.
    pub packets_received: u64,
    /// Bytes in those packets.
    pub bytes_received: u64,
    /// Frames dropped on the way out (queue full, peer unreachable).
    pub frames_dropped: u64,
    /// Frames received but refused before reaching the node: unsealed,
    /// sealed with an unknown key, or failing authentication. Only
    /// transports that authenticate frames count these.
    pub frames_refused: u64,
}

/// Moves frames between nodes.
///
/// Implementations must be usable from one task calling
/// [`recv`](Self::recv) inside `tokio::select!` while the same task also
/// calls [`send`](Self::send) between receives.
#[async_trait::async_trait]
pub trait Transport: Send + Sync {
    /// Sends one frame to `to`. Datagram semantics: delivery is not
    /// promised, and an `Ok` only means the frame was handed on. A frame
    /// longer than [`max_frame_len`](Self::max_frame_len) is refused with
    /// [`TransportError::TooLarge`].
    async fn send(&self, to: SocketAddr, bytes: &[u8]) -> Result<(), TransportError>;

    /// Waits for the next frame or connection loss.
    ///
    /// Cancellation safe: if the future is dropped before it completes
    /// (because another `select!` branch won), nothing is lost.
    async fn recv(&self) -> Result<Incoming, TransportError>;

    /// The address peers reach this transport at: the node's identity.
    fn local_addr(&self) -> SocketAddr;

    /// The largest frame [`send`](Self::send) accepts. A node's
    /// `max_message_size` must not exceed it.
    fn max_frame_len(&self) -> usize;

    /// The largest frame this transport carries in one packet, without
    /// splitting it: a datagram on the path, as opposed to a stream or IP
    /// fragments. Never more than [`max_frame_len`](Self::max_frame_len).
    ///
    /// Gossip relies on frames being independent, cheap and lossy; a frame
    /// that must be fragmented costs more round trips and is lost whenever
    /// any fragment is, so a driver refuses a node whose `max_message_size`
    /// exceeds this. The default, for transports that carry every frame the
    /// same way, is `max_frame_len`.
    fn unfragmented_frame_len(&self) -> usize {
        self.max_frame_len()
    }

    /// The largest body [`send_bulk`](Self::send_bulk) carries; 0 (the
    /// default) when this transport has no bulk path.
    ///
    /// The bulk path is an optional capability for bodies far larger than a
    /// frame (a block of a megabyte): sent reliably and in order, on a
    /// stream of its own, without the datagram budget of
    /// [`send`](Self::send). A driver without it falls back to what fits in
    /// frames (an application chunks its bodies).
    fn max_bulk_len(&self) -> usize {
        0
    }

    /// Sends `body` to `to` on the bulk path, whole: the receiver gets one
    /// [`Incoming::Bulk`] with exactly these bytes, or nothing. Returns
    /// once the transfer is under way, not once it is done; like
    /// [`send`](Self::send) it may drop the body (a limit on transfers at
    /// once, a lost connection), and the application retries.
    ///
    /// The default refuses every body with [`TransportError::TooLarge`]
    /// (`max` 0): this transport has no bulk path.
    async fn send_bulk(&self, to: SocketAddr, body: Vec<u8>) -> Result<(), TransportError> {
        let _ = to;
        Err(TransportError::TooLarge {
            len: body.len(),
            max: 0,
        })
    }

    /// What this transport has put on and taken off the wire so far.
    fn stats(&self) -> TransportStats {
        TransportStats::default()
    }

    /// Sends what is still queued (within a short bound) and shuts down.
    /// A driver calls it when its node stops gracefully, so that the last
    /// frames (a leave announcement) leave; dropping a transport without
    /// it is a crash. The default has nothing to flush.
    async fn close(&self) {}
}

/// Smart pointers to a transport are transports: a program may hold a
/// `Box<dyn Transport>` chosen at runtime, or share one behind an `Arc`.
macro_rules! forward_transport {
    ($($pointer:ident)::+) => {
        #[async_trait::async_trait]
        impl<T: Transport + ?Sized> Transport for $($pointer)::+<T> {
            async fn send(&self, to: SocketAddr, bytes: &[u8]) -> Result<(), TransportError> {
                (**self).send(to, bytes).await
            }

            async fn recv(&self) -> Result<Incoming, TransportError> {
                (**self).recv().await
            }

            fn local_addr(&self) -> SocketAddr {
                (**self).local_addr()
            }

            fn max_frame_len(&self) -> usize {
                (**self).max_frame_len()
            }

            fn unfragmented_frame_len(&self) -> usize {
                (**self).unfragmented_frame_len()
            }

            fn max_bulk_len(&self) -> usize {
                (**self).max_bulk_len()
            }

            async fn send_bulk(&self, to: SocketAddr, body: Vec<u8>) -> Result<(), TransportError> {
                (**self).send_bulk(to, body).await
            }

            fn stats(&self) -> TransportStats {
                (**self).stats()
            }

            async fn close(&self) {
                (**self).close().await
            }
        }
    };
}

forward_transport!(Box);
forward_transport!(std::sync::Arc);
