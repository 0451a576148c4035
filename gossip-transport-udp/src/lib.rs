//! UDP transport for gossip nodes (`gossip_core::Node` driven by a driver
//! such as `gossip-agent`).
//!
//! One tokio [`UdpSocket`] per node, bound to the address that is the node's
//! identity. Each frame is one datagram; a frame above the configured budget
//! is refused with [`TransportError::TooLarge`] before it reaches the kernel,
//! and an arriving datagram above it is dropped and counted, never handed to
//! the node. IPv4 and IPv6 both work: bind to the family the cluster uses.
//!
//! ```no_run
//! # async fn example() -> Result<(), gossip_transport::TransportError> {
//! use gossip_transport::Transport;
//! use gossip_transport_udp::UdpTransport;
//!
//! let transport = UdpTransport::bind("127.0.0.1:7946".parse().unwrap(), 1400).await?;
//! transport.send("127.0.0.1:7947".parse().unwrap(), b"frame").await?;
//! # Ok(()) }
//! ```
//!
//! Batching: every datagram a gossip node sends goes to a different peer, so
//! segmentation offload (which batches datagrams to one destination) has
//! nothing to merge, and the idle load is a few packets per node per second.
//! This transport therefore sends and receives one datagram per system call.
#![forbid(unsafe_code)]

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use gossip_transport::{async_trait, Incoming, Transport, TransportError, TransportStats};
use tokio::net::UdpSocket;

/// The default datagram budget: fits a 1500-byte Ethernet MTU after IPv6 and
/// UDP headers, with room for tunnel overhead.
pub const DEFAULT_MAX_DATAGRAM: usize = 1400;

/// Largest budget accepted: the largest UDP payload over IPv4.
pub const MAX_DATAGRAM_LIMIT: usize = 65_507;

/// A gossip transport over one UDP socket.
#[derive(Debug)]
pub struct UdpTransport {
    socket: UdpSocket,
    local: SocketAddr,
    max_datagram: usize,
    counters: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    packets_sent: AtomicU64,
    bytes_sent: AtomicU64,
    packets_received: AtomicU64,
    bytes_received: AtomicU64,
    dropped: AtomicU64,
}

impl UdpTransport {
    /// Binds a socket at `addr` (port 0 picks a free port) that sends and
    /// accepts datagrams of at most `max_datagram` bytes.
    ///
    /// `max_datagram` must be between 1 and [`MAX_DATAGRAM_LIMIT`].
    pub async fn bind(addr: SocketAddr, max_datagram: usize) -> Result<Self, TransportError> {
        if max_datagram == 0 || max_datagram > MAX_DATAGRAM_LIMIT {
            return Err(TransportError::TooLarge {
                len: max_datagram,
                max: MAX_DATAGRAM_LIMIT,
            });
        }
        let socket = UdpSocket::bind(addr).await?;
        let local = socket.local_addr()?;
        Ok(Self {
            socket,
            local,
            max_datagram,
            counters: Counters::default(),
        })
    }
}

#[async_trait]
impl Transport for UdpTransport {
    async fn send(&self, to: SocketAddr, bytes: &[u8]) -> Result<(), TransportError> {
        if bytes.len() > self.max_datagram {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(TransportError::TooLarge {
                len: bytes.len(),
                max: self.max_datagram,
            });
        }
        if to.is_ipv4() != self.local.is_ipv4() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(TransportError::Unsupported(to));
        }
        match self.socket.send_to(bytes, to).await {
            Ok(_) => {
                self.counters.packets_sent.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .bytes_sent
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                Err(error.into())
            }
        }
    }

    async fn recv(&self) -> Result<Incoming, TransportError> {
        // One byte more than the budget, so an over-long datagram shows as
        // such instead of being silently truncated into a valid-looking one.
        let mut buf = vec![0u8; self.max_datagram + 1];
        loop {
            // `recv_from` is cancellation safe: a datagram is either
            // returned or left in the socket.
            match self.socket.recv_from(&mut buf).await {
                Ok((len, from)) => {
                    self.counters
                        .packets_received
                        .fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .bytes_received
                        .fetch_add(len as u64, Ordering::Relaxed);
                    if len > self.max_datagram {
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    buf.truncate(len);
                    return Ok(Incoming::Frame { from, bytes: buf });
                }
                // An ICMP error for an earlier datagram (the peer's port is
                // closed) says nothing about this receive; membership finds
                // dead peers by itself.
                Err(error)
                    if matches!(
                        error.kind(),
                        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset
                    ) =>
                {
                    continue
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn max_frame_len(&self) -> usize {
        self.max_datagram
    }

    // Every frame is one datagram, so the budget is both limits. (A budget
    // above the path MTU makes the kernel fragment at the IP layer; the
    // caller who chose it knows the path.)
    fn unfragmented_frame_len(&self) -> usize {
        self.max_datagram
    }

    fn stats(&self) -> TransportStats {
        let c = &self.counters;
        TransportStats {
            packets_sent: c.packets_sent.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            packets_received: c.packets_received.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            frames_dropped: c.dropped.load(Ordering::Relaxed),
            // Plain UDP authenticates nothing; `gossip-seal` counts refusals.
            frames_refused: 0,
        }
    }
}
