//! QUIC transport for gossip nodes (`gossip_core::Node` driven by a driver
//! such as `gossip-agent`), on quinn.
//!
//! - **Frames**: a frame that fits the connection's datagram size goes as a
//!   QUIC datagram (unreliable, like UDP, but encrypted and congestion
//!   controlled); a larger one, up to [`QuicConfig::max_frame_len`], goes on
//!   its own unidirectional stream. Every connection carries datagrams of
//!   [`DATAGRAM_BUDGET`] bytes from its first packet, which is what
//!   [`Transport::unfragmented_frame_len`] reports: a node whose frames stay
//!   within it never falls back to streams.
//! - **Connections**: one per peer, opened lazily on the first frame to it;
//!   the newest connection with a peer (ours or the one it opened to us)
//!   carries our frames to it. A connection lives until
//!   [`QuicConfig::idle_timeout`] of silence. Sending never waits for a
//!   handshake: frames queue per peer while it runs.
//! - **Unreachable peers**: a failed connect, or a connection reset or
//!   broken by a protocol error, is reported as [`Incoming::Unreachable`],
//!   which the driver hands to `Node::peer_unreachable`. A graceful close
//!   or an idle timeout is not reported. The stateless-reset key is derived
//!   from the node's private key, so a node restarted at the same address
//!   resets the connections its previous life left open at its peers, and
//!   they reconnect instead of sending into the void.
//! - **Identity**: mutual TLS 1.3. Every node has a certificate issued by
//!   the cluster's root ([`ClusterCa`]); a node refuses peers whose
//!   certificate does not chain to it, and checks that the peer's
//!   certificate names the peer's IP address, whichever side dialled.
//!   Node certificates carry a validity period ([`Validity`], one year by
//!   default), checked against the system clock at every handshake (TLS
//!   session resumption is off, so that no handshake skips the check) and
//!   again every [`QuicConfig::certificate_recheck`] while a connection
//!   lives: an expired or not-yet-valid certificate is refused both ways,
//!   and a connection whose peer certificate expires is closed. Every
//!   [`Incoming::Frame`]'s `from` is thus the address the peer's
//!   certificate names (its IP; the port is not certified), and stays so:
//!   connection migration is off.
//! - **Bulk bodies** ([`Transport::send_bulk`]): a body far larger than a
//!   frame (a block of a megabyte, up to [`QuicConfig::max_bulk_len`]) goes
//!   whole on a unidirectional stream of its own, beside the frames, sent
//!   by a task of its own so that it never holds frames back. Every stream
//!   starts with one byte naming its kind (a frame or a bulk body), so the
//!   receiver applies each kind's limits: at most
//!   [`QuicConfig::max_bulk_streams`] bodies read or waiting for the driver
//!   at once (a further one is stopped), each finished within
//!   [`QuicConfig::bulk_timeout`], and at most
//!   [`QuicConfig::max_bulk_sends`] bodies being sent at once (a further
//!   one is dropped). Bodies are delivered as [`Incoming::Bulk`] from the
//!   certified address, like frames.
//! - **Limits sized for gossip**: at most
//!   [`QuicConfig::max_connections_per_ip`] incoming connections from one
//!   IP address, no bidirectional streams, at most
//!   [`QuicConfig::max_uni_streams`] unidirectional ones at a time, each
//!   with a receive window of one frame (or of
//!   [`QuicConfig::bulk_stream_window`], if larger, so that a bulk body
//!   does not crawl; the connection's window stays bounded, see there). Above
//!   [`QuicConfig::retry_above_handshakes`] handshakes under way, a new
//!   peer must first prove it receives at its source address (QUIC Retry).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use gossip_transport::Transport;
//! use gossip_transport_quic::{ClusterCa, QuicConfig, QuicTransport};
//!
//! let ca = ClusterCa::generate()?;
//! let identity = ca.issue(&["127.0.0.1".parse()?], &[])?;
//! let transport =
//!     QuicTransport::bind("127.0.0.1:7946".parse()?, identity, QuicConfig::default()).await?;
//! transport.send("127.0.0.1:7947".parse()?, b"frame").await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod identity;
mod recheck;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gossip_transport::{async_trait, Incoming, Transport, TransportError, TransportStats};
pub use identity::{
    ClusterCa, Identity, IdentityError, Validity, CLOCK_SKEW_ALLOWANCE, DEFAULT_VALID_DAYS,
    MAX_VALID_DAYS,
};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, ConnectionError, Endpoint};
use recheck::{peer_chain, ChainCheck, PeerRole};
use rustls::pki_types::ServerName;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

/// ALPN protocol name: peers speaking anything else are refused.
///
/// Version 2: every stream starts with a byte naming its kind
/// ([`Transport::send_bulk`] bodies beside frames).
pub const ALPN: &[u8] = b"gossip/2";

/// First byte of a stream that carries one frame.
const STREAM_FRAME: u8 = 0;
/// First byte of a stream that carries one bulk body.
const STREAM_BULK: u8 = 1;
/// Application error code with which a bulk stream beyond the limits is stopped.
const STOP_BULK_REFUSED: u32 = 1;

/// The UDP payload every connection starts with, set explicitly rather than
/// left to quinn's default so that [`DATAGRAM_BUDGET`] holds by
/// construction. 1200 bytes is what QUIC requires every path to carry (RFC
/// 9000, section 14); path MTU discovery may raise it later, but a frame
/// must fit before that happens.
const INITIAL_MTU: u16 = 1200;

/// What a 1-RTT packet around one datagram costs at most, with room to
/// spare: a short header (1 byte, a connection id of up to 20, a packet
/// number of up to 4), the 16-byte AEAD tag, and the DATAGRAM frame's type
/// and length (up to 3) come to 44 bytes; the rest is margin.
const PACKET_OVERHEAD_ALLOWANCE: usize = 100;

/// The largest frame every connection sends as one QUIC datagram, from its
/// first packet on: 1100 bytes. Larger frames (up to
/// [`QuicConfig::max_frame_len`]) go on streams, split across packets and
/// retransmitted, which costs round trips gossip does not want; a node
/// meant for QUIC sets its `max_message_size` to at most this.
pub const DATAGRAM_BUDGET: usize = INITIAL_MTU as usize - PACKET_OVERHEAD_ALLOWANCE;

/// Bytes of datagrams quinn may hold per connection before sending them.
const DATAGRAM_SEND_BUFFER: usize = 1 << 20;

/// How long [`Transport::close`] waits for queued frames to leave.
const CLOSE_DRAIN: Duration = Duration::from_secs(1);

/// Settings of a [`QuicTransport`].
#[derive(Clone, Debug)]
pub struct QuicConfig {
    /// Largest frame accepted for sending or receiving (streams carry
    /// what datagrams cannot). Default 64 KiB.
    pub max_frame_len: usize,
    /// A connection silent this long is closed; the next frame reopens it.
    /// Default 300 s, so that a gossip node's sparse contacts with each
    /// peer reuse one handshake.
    pub idle_timeout: Duration,
    /// How long a handshake may take before the peer is reported
    /// unreachable. Default 2 s.
    pub connect_timeout: Duration,
    /// After a failed connect, frames to that peer are dropped for this
    /// long instead of retrying at once. Default 1 s.
    pub retry_after: Duration,
    /// Most open connections, and most peers with a sending queue; beyond
    /// it new connections are refused and frames to new peers dropped.
    /// Default 4096.
    pub max_connections: usize,
    /// Frames queued per peer while its connection is being made; beyond
    /// it frames are dropped. Default 256.
    pub peer_queue_len: usize,
    /// Received frames queued for the driver; beyond it frames are
    /// dropped. Default 4096.
    pub inbound_queue_len: usize,
    /// Most connections other nodes may hold open to this one from one IP
    /// address, counting handshakes from proven addresses; beyond it new
    /// ones are refused. One node per host needs one (two for a moment
    /// after it restarts); default 4. Range 1 to `max_connections`; a
    /// cluster with many nodes behind one address (several on loopback)
    /// raises it to its size.
    pub max_connections_per_ip: usize,
    /// Most unidirectional streams a peer may have open at once on one
    /// connection; each carries one frame too large for a datagram.
    /// Default 16; at least 1. Peers may open no bidirectional
    /// streams at all. The receive windows follow from it: one frame
    /// ([`max_frame_len`](Self::max_frame_len)) per stream, and this many
    /// frames per connection.
    pub max_uni_streams: u32,
    /// Number of handshakes under way from which a new peer must first
    /// prove its address with a QUIC Retry (one extra round trip), so that
    /// spoofed sources cannot make this node spend handshakes, or
    /// amplified replies, on addresses that never asked. Default 64; 0
    /// asks every new peer for it.
    pub retry_above_handshakes: usize,
    /// How often the peer certificate of a live connection is checked
    /// again against the clock and the root. The handshake checks it too,
    /// but a connection that never falls silent never ends, so this bounds
    /// how long a certificate keeps working after it expires. Default
    /// 60 s; must be positive.
    pub certificate_recheck: Duration,
    /// Largest bulk body ([`Transport::send_bulk`]) sent or received; a
    /// longer incoming one is dropped. Default 4 MiB plus 4 KiB, room for a
    /// 4 MiB payload and the application's header. 0 turns the bulk path
    /// off ([`Transport::max_bulk_len`] reports 0).
    pub max_bulk_len: usize,
    /// Incoming bulk bodies being read, or read and waiting for the
    /// driver, at once, over all connections; a stream beyond it is
    /// stopped at once. With [`max_bulk_len`](Self::max_bulk_len) it
    /// bounds the memory bulk bodies take: default 8, so 32 MiB.
    pub max_bulk_streams: usize,
    /// Bulk bodies being sent at once; a further one is dropped (the
    /// application fetches again). Default 16.
    pub max_bulk_sends: usize,
    /// A bulk body must be sent, or received, within this long from its
    /// stream's start; a slower one is given up. Default 20 s: a 4 MiB
    /// body at 200 kB/s.
    pub bulk_timeout: Duration,
    /// Receive window of each stream, if larger than
    /// [`max_frame_len`](Self::max_frame_len): how many bytes of a bulk
    /// body may be in flight before the reader takes them. A window of one
    /// frame caps a body's rate at a frame per round trip. The connection's
    /// window is `max_frame_len * max_uni_streams` plus this, so it still
    /// bounds what one peer makes this node buffer. Default 512 KiB.
    pub bulk_stream_window: usize,
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            max_frame_len: 64 * 1024,
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(2),
            retry_after: Duration::from_secs(1),
            max_connections: 4096,
            peer_queue_len: 256,
            inbound_queue_len: 4096,
            max_connections_per_ip: 4,
            max_uni_streams: 16,
            retry_above_handshakes: 64,
            certificate_recheck: Duration::from_secs(60),
            max_bulk_len: (4 << 20) + 4096,
            max_bulk_streams: 8,
            max_bulk_sends: 16,
            bulk_timeout: Duration::from_secs(20),
            bulk_stream_window: 512 << 10,
        }
    }
}

#[derive(Default)]
struct Counters {
    /// Totals of connections already closed.
    closed: Mutex<TransportStats>,
    dropped: AtomicU64,
    /// Retry packets sent to unproven addresses.
    retries: AtomicU64,
    /// Incoming handshakes under way (they count against the limit).
    handshaking: AtomicUsize,
    /// Sending tasks still running.
    senders: AtomicUsize,
}

struct Shared {
    endpoint: Endpoint,
    config: QuicConfig,
    /// The connection used to send to each peer.
    connections: Mutex<HashMap<SocketAddr, Connection>>,
    /// Every open connection, for the counters.
    open: Mutex<HashMap<usize, Connection>>,
    /// Per-peer queues feeding the sending tasks.
    senders: Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>,
    inbound: mpsc::Sender<Incoming>,
    counters: Counters,
    per_ip: IpSlots,
    chain_check: ChainCheck,
    /// One permit per incoming bulk body being read or waiting for the
    /// driver ([`QuicConfig::max_bulk_streams`]).
    bulk_in: Arc<Semaphore>,
    /// One permit per bulk body being sent ([`QuicConfig::max_bulk_sends`]).
    bulk_out: Arc<Semaphore>,
}

/// Incoming connections per peer IP address (open ones, and handshakes
/// from proven addresses), so that one host cannot take every connection.
#[derive(Clone, Default)]
struct IpSlots(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl IpSlots {
    /// A slot for one more connection from `ip`, if it has fewer than `max`.
    fn take(&self, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut counts = self.0.lock().expect("per-ip lock");
        let count = counts.entry(ip).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            slots: self.clone(),
            ip,
        })
    }

    fn is_full(&self, ip: IpAddr, max: usize) -> bool {
        self.0
            .lock()
            .expect("per-ip lock")
            .get(&ip)
            .is_some_and(|&count| count >= max)
    }
}

/// One incoming connection's place in its IP's count, given back when the
/// connection (or its handshake) ends.
struct IpSlot {
    slots: IpSlots,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.slots.0.lock().expect("per-ip lock");
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// A gossip transport over QUIC. See the [crate documentation](crate).
pub struct QuicTransport {
    shared: Arc<Shared>,
    local: SocketAddr,
    inbound: tokio::sync::Mutex<mpsc::Receiver<Incoming>>,
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTransport")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

fn other(error: impl std::fmt::Display) -> TransportError {
    TransportError::Other(error.to_string())
}

impl QuicTransport {
    /// Binds a QUIC endpoint at `addr` that serves and dials with
    /// `identity`. Must be called inside a tokio runtime.
    pub async fn bind(
        addr: SocketAddr,
        identity: Identity,
        config: QuicConfig,
    ) -> Result<Self, TransportError> {
        check(&config)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain_check = ChainCheck::new(
            identity.trust_root.clone(),
            provider.signature_verification_algorithms.all,
        );
        // Certificates are checked against this node's system clock, read
        // at every handshake: expired and not-yet-valid ones are refused.
        let clock: Arc<dyn rustls::time_provider::TimeProvider> =
            Arc::new(rustls::time_provider::DefaultTimeProvider);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(identity.trust_root.clone()).map_err(other)?;
        let roots = Arc::new(roots);

        let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::clone(&roots),
            Arc::clone(&provider),
        )
        .build()
        .map_err(other)?;
        let mut server_tls =
            rustls::ServerConfig::builder_with_details(Arc::clone(&provider), Arc::clone(&clock))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(other)?
                .with_client_cert_verifier(client_verifier)
                .with_single_cert(identity.chain.clone(), identity.key.clone_key())
                .map_err(other)?;
        server_tls.alpn_protocols = vec![ALPN.to_vec()];
        // No session resumption, either way: a resumed handshake takes the
        // peer's certificate from the earlier session without checking it
        // against the clock again, which would let an expired one back in.
        server_tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server_tls.send_tls13_tickets = 0;

        let mut client_tls = rustls::ClientConfig::builder_with_details(provider, clock)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(other)?
            .with_root_certificates(Arc::clone(&roots))
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(other)?;
        client_tls.alpn_protocols = vec![ALPN.to_vec()];
        client_tls.resumption = rustls::client::Resumption::disabled();

        let mut transport = quinn::TransportConfig::default();
        transport
            .max_idle_timeout(Some(config.idle_timeout.try_into().map_err(other)?))
            .keep_alive_interval(None)
            .initial_mtu(INITIAL_MTU)
            .datagram_receive_buffer_size(Some(1 << 20))
            .datagram_send_buffer_size(DATAGRAM_SEND_BUFFER)
            // Frames travel on uni streams only, one frame per stream.
            .max_concurrent_bidi_streams(0u32.into())
            .max_concurrent_uni_streams(config.max_uni_streams.into())
            .stream_receive_window(varint(stream_window(&config))?)
            .receive_window(varint(
                config
                    .max_frame_len
                    .saturating_mul(config.max_uni_streams as usize)
                    .saturating_add(bulk_window(&config)),
            )?);
        let transport = Arc::new(transport);

        let mut server = quinn::ServerConfig::with_crypto(Arc::new(
            QuicServerConfig::try_from(server_tls).map_err(other)?,
        ));
        server.transport_config(Arc::clone(&transport));
        server.max_incoming(config.max_connections);
        // A peer is known by the address its certificate names; a
        // connection that moved elsewhere would carry frames from an
        // address nobody checked.
        server.migration(false);
        let mut client = quinn::ClientConfig::new(Arc::new(
            QuicClientConfig::try_from(client_tls).map_err(other)?,
        ));
        client.transport_config(transport);

        let socket = std::net::UdpSocket::bind(addr)?;
        let mut endpoint = Endpoint::new(
            quinn::EndpointConfig::new(Arc::new(reset_key(&identity))),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        endpoint.set_default_client_config(client);
        let local = endpoint.local_addr()?;
        let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_queue_len.max(1));
        let config_bulk_streams = config.max_bulk_streams;
        let config_bulk_sends = config.max_bulk_sends;
        let shared = Arc::new(Shared {
            endpoint,
            config,
            connections: Mutex::default(),
            open: Mutex::default(),
            senders: Mutex::default(),
            inbound: inbound_tx,
            counters: Counters::default(),
            per_ip: IpSlots::default(),
            chain_check,
            bulk_in: Arc::new(Semaphore::new(config_bulk_streams)),
            bulk_out: Arc::new(Semaphore::new(config_bulk_sends)),
        });
        tokio::spawn(accept_loop(Arc::clone(&shared)));
        Ok(Self {
            shared,
            local,
            inbound: tokio::sync::Mutex::new(inbound_rx),
        })
    }

    /// Number of peers with a sending queue (each has a task).
    pub fn peer_queue_count(&self) -> usize {
        self.shared.senders.lock().expect("senders lock").len()
    }

    /// Number of open connections.
    pub fn connection_count(&self) -> usize {
        self.shared.open.lock().expect("open lock").len()
    }

    /// Number of Retry packets sent so far, asking new peers to prove
    /// their address (see [`QuicConfig::retry_above_handshakes`]).
    pub fn retries_sent(&self) -> u64 {
        self.shared.counters.retries.load(Ordering::Relaxed)
    }
}

/// Refuses settings the transport cannot work with.
fn check(config: &QuicConfig) -> Result<(), TransportError> {
    if config.max_frame_len == 0
        || config.max_connections == 0
        || config.max_connections_per_ip == 0
        || config.max_uni_streams == 0
        || config.certificate_recheck.is_zero()
    {
        return Err(other(
            "max_frame_len, max_connections, max_connections_per_ip, max_uni_streams \
             and certificate_recheck must be positive",
        ));
    }
    if config.max_bulk_len > 0
        && (config.max_bulk_streams == 0
            || config.max_bulk_sends == 0
            || config.bulk_timeout.is_zero())
    {
        return Err(other(
            "with a bulk path (max_bulk_len > 0), max_bulk_streams, max_bulk_sends \
             and bulk_timeout must be positive",
        ));
    }
    Ok(())
}

/// The bulk path's share of a connection's receive window: nothing if it
/// is off.
fn bulk_window(config: &QuicConfig) -> usize {
    if config.max_bulk_len == 0 {
        0
    } else {
        config.bulk_stream_window.min(config.max_bulk_len)
    }
}

/// Each stream's receive window: a frame, or the bulk window if larger.
fn stream_window(config: &QuicConfig) -> usize {
    config.max_frame_len.max(bulk_window(config))
}

/// A QUIC variable-length integer (at most 2^62 - 1).
fn varint(value: usize) -> Result<quinn::VarInt, TransportError> {
    quinn::VarInt::try_from(value as u64).map_err(other)
}

/// The stateless-reset key: the same for every life of a node with the same
/// private key, so that a restarted node can reset connections its previous
/// life left open at its peers.
fn reset_key(identity: &Identity) -> ring::hmac::Key {
    let secret = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, identity.key.secret_der());
    let derived = ring::hmac::sign(&secret, b"gossip stateless reset key v1");
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref())
}

impl Drop for QuicTransport {
    fn drop(&mut self) {
        // Dropping the queues ends the sending tasks; closing the endpoint
        // ends the accept loop and every connection's reader.
        self.shared.senders.lock().expect("senders lock").clear();
        self.shared
            .connections
            .lock()
            .expect("connections lock")
            .clear();
        self.shared.endpoint.close(0u32.into(), b"shutdown");
    }
}

#[async_trait]
impl Transport for QuicTransport {
    async fn send(&self, to: SocketAddr, bytes: &[u8]) -> Result<(), TransportError> {
        let max = self.shared.config.max_frame_len;
        if bytes.len() > max {
            self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(TransportError::TooLarge {
                len: bytes.len(),
                max,
            });
        }
        let frame = Bytes::copy_from_slice(bytes);
        let mut senders = self.shared.senders.lock().expect("senders lock");
        if !senders.contains_key(&to) && senders.len() >= self.shared.config.max_connections {
            // Every queue is a task and a future connection: bounded.
            self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let queue = senders.entry(to).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(self.shared.config.peer_queue_len.max(1));
            // Counted before it first runs, so that `close` waits for it.
            self.shared.counters.senders.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(send_loop(Arc::clone(&self.shared), to, rx));
            tx
        });
        if queue.try_send(frame).is_err() {
            // Datagram semantics: a full queue drops, it does not wait.
            self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn recv(&self) -> Result<Incoming, TransportError> {
        // Only the driver receives; `mpsc::Receiver::recv` is cancellation safe.
        let mut inbound = self.inbound.lock().await;
        let incoming = inbound.recv().await.ok_or(TransportError::Closed)?;
        if matches!(incoming, Incoming::Bulk { .. }) {
            // The body has left the queue: its place may take another.
            self.shared.bulk_in.add_permits(1);
        }
        Ok(incoming)
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn max_frame_len(&self) -> usize {
        self.shared.config.max_frame_len
    }

    fn unfragmented_frame_len(&self) -> usize {
        DATAGRAM_BUDGET.min(self.shared.config.max_frame_len)
    }

    fn max_bulk_len(&self) -> usize {
        self.shared.config.max_bulk_len
    }

    async fn send_bulk(&self, to: SocketAddr, body: Vec<u8>) -> Result<(), TransportError> {
        let max = self.shared.config.max_bulk_len;
        if body.len() > max {
            self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(TransportError::TooLarge {
                len: body.len(),
                max,
            });
        }
        let Ok(permit) = Arc::clone(&self.shared.bulk_out).try_acquire_owned() else {
            // As many bodies are on their way as allowed: like a full
            // frame queue, this one is dropped, not waited for.
            tracing::debug!(%to, "bulk send dropped: max_bulk_sends under way");
            self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            let limit = shared.config.bulk_timeout;
            let sent = tokio::time::timeout(limit, send_bulk_body(&shared, to, &body)).await;
            let reason = match sent {
                Ok(Ok(())) => None,
                Ok(Err(reason)) => Some(reason),
                Err(_) => Some("timed out".to_string()),
            };
            if let Some(reason) = reason {
                tracing::debug!(%to, %reason, "bulk send failed");
                shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        });
        Ok(())
    }

    fn stats(&self) -> TransportStats {
        let mut total = *self.shared.counters.closed.lock().expect("counters lock");
        for connection in self.shared.open.lock().expect("open lock").values() {
            add(&mut total, connection);
        }
        total.frames_dropped += self.shared.counters.dropped.load(Ordering::Relaxed);
        total
    }

    async fn close(&self) {
        let shared = &self.shared;
        let deadline = Instant::now() + CLOSE_DRAIN;
        // Dropping the queues lets each sending task send what it holds and end.
        shared.senders.lock().expect("senders lock").clear();
        while shared.counters.senders.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Then wait until quinn has handed every buffered datagram to the socket.
        loop {
            let drained = shared
                .open
                .lock()
                .expect("open lock")
                .values()
                .all(|c| c.datagram_send_buffer_space() >= DATAGRAM_SEND_BUFFER);
            if drained || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shared.endpoint.close(0u32.into(), b"leaving");
        let _ = tokio::time::timeout(CLOSE_DRAIN, shared.endpoint.wait_idle()).await;
    }
}

fn add(total: &mut TransportStats, connection: &Connection) {
    let stats = connection.stats();
    total.packets_sent += stats.udp_tx.datagrams;
    total.bytes_sent += stats.udp_tx.bytes;
    total.packets_received += stats.udp_rx.datagrams;
    total.bytes_received += stats.udp_rx.bytes;
}

fn is_open(connection: &Connection) -> bool {
    connection.close_reason().is_none()
}

/// The open connection to `peer` this transport holds, if any: frames and
/// bulk bodies both look it up before dialling.
fn open_connection(shared: &Shared, peer: SocketAddr) -> Option<Connection> {
    shared
        .connections
        .lock()
        .expect("connections lock")
        .get(&peer)
        .filter(|c| is_open(c))
        .cloned()
}

async fn accept_loop(shared: Arc<Shared>) {
    while let Some(incoming) = shared.endpoint.accept().await {
        let Some((incoming, slot)) = admit(&shared, incoming) else {
            continue;
        };
        shared.counters.handshaking.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            handshake(&shared, incoming, slot).await;
            shared.counters.handshaking.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Decides what to do with a new peer's first packet: refuse it, ask it
/// to prove its address (Retry), or start the handshake, with its per-IP
/// slot if the address is proven already.
fn admit(shared: &Shared, incoming: quinn::Incoming) -> Option<(quinn::Incoming, Option<IpSlot>)> {
    let config = &shared.config;
    let ip = incoming.remote_address().ip();
    let open = shared.open.lock().expect("open lock").len();
    let handshaking = shared.counters.handshaking.load(Ordering::Relaxed);
    if open + handshaking >= config.max_connections {
        incoming.refuse();
        return None;
    }
    if !incoming.remote_address_validated() {
        // An unproven source address may be spoofed: under load it must
        // prove itself before costing a handshake, and it may not be
        // refused in the name of an IP it may not own (that would let a
        // spoofer lock a real node out).
        if handshaking >= config.retry_above_handshakes
            || shared.per_ip.is_full(ip, config.max_connections_per_ip)
        {
            match incoming.retry() {
                Ok(()) => {
                    shared.counters.retries.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => error.into_incoming().ignore(),
            }
            return None;
        }
        // Counted once the handshake proves the address.
        return Some((incoming, None));
    }
    match shared.per_ip.take(ip, config.max_connections_per_ip) {
        Some(slot) => Some((incoming, Some(slot))),
        None => {
            tracing::debug!(%ip, "too many connections from this address");
            incoming.refuse();
            None
        }
    }
}

/// Runs an incoming handshake to its end and adopts the connection if its
/// peer is a cluster member at the address its certificate names.
async fn handshake(shared: &Arc<Shared>, incoming: quinn::Incoming, slot: Option<IpSlot>) {
    // A peer outside the cluster, or with an expired certificate, fails
    // here, in the handshake.
    let connection = match tokio::time::timeout(shared.config.connect_timeout, incoming).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            tracing::debug!(%error, "incoming handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("incoming handshake timed out");
            return;
        }
    };
    let peer = connection.remote_address();
    if !names_its_address(&connection) {
        tracing::debug!(%peer, "certificate does not name the peer's address");
        connection.close(1u32.into(), b"certificate does not name this address");
        return;
    }
    // A completed handshake proves the address: count it now if not yet.
    let slot = slot.or_else(|| {
        shared
            .per_ip
            .take(peer.ip(), shared.config.max_connections_per_ip)
    });
    match slot {
        Some(slot) => adopt(shared, connection, Origin::Accepted { _slot: slot }),
        None => {
            tracing::debug!(%peer, "too many connections from this address");
            connection.close(2u32.into(), b"too many connections from this address");
        }
    }
}

/// Whether the certificate a dialling peer presented (already checked to
/// chain to the cluster root) names the IP address it dials from, as the
/// dialling side checks of the peer it dials.
fn names_its_address(connection: &Connection) -> bool {
    let Some(chain) = peer_chain(connection) else {
        return false;
    };
    let Some(leaf) = chain.first() else {
        return false;
    };
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else {
        return false;
    };
    let ip = ServerName::IpAddress(connection.remote_address().ip().into());
    cert.verify_is_valid_for_subject_name(&ip).is_ok()
}

/// Makes a new connection the one that carries frames to its peer (the
/// newest wins: after a peer restarts, its new connection replaces the one
/// to its previous life) and starts reading from it.
fn adopt(shared: &Arc<Shared>, connection: Connection, origin: Origin) {
    let peer = connection.remote_address();
    shared
        .open
        .lock()
        .expect("open lock")
        .insert(connection.stable_id(), connection.clone());
    shared
        .connections
        .lock()
        .expect("connections lock")
        .insert(peer, connection.clone());
    tokio::spawn(read_loop(Arc::clone(shared), connection, origin));
}

fn deliver(shared: &Shared, incoming: Incoming) {
    if shared.inbound.try_send(incoming).is_err() {
        shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// How a connection came to be.
enum Origin {
    /// We dialled the peer.
    Dialled,
    /// The peer dialled us; it holds a place in its IP's count until it ends.
    Accepted {
        /// Held for its `Drop`, which gives the place back.
        _slot: IpSlot,
    },
}

impl Origin {
    fn peer_role(&self) -> PeerRole {
        match self {
            Origin::Dialled => PeerRole::Server,
            Origin::Accepted { .. } => PeerRole::Client,
        }
    }
}

/// Delivers a connection's frames until it ends (and then gives back what
/// `origin` holds), closing it if the peer's certificate expires meanwhile.
async fn read_loop(shared: Arc<Shared>, connection: Connection, origin: Origin) {
    let from = connection.remote_address();
    let max = shared.config.max_frame_len;
    let period = shared.config.certificate_recheck;
    let mut recheck = tokio::time::interval_at(Instant::now() + period, period);
    let error = loop {
        tokio::select! {
            _ = recheck.tick() => {
                if !shared.chain_check.still_valid(&connection, origin.peer_role()) {
                    tracing::debug!(%from, "peer certificate no longer valid");
                    connection.close(3u32.into(), b"certificate no longer valid");
                }
            },
            datagram = connection.read_datagram() => match datagram {
                Ok(bytes) if bytes.len() <= max => deliver(&shared, Incoming::Frame { from, bytes: bytes.to_vec() }),
                Ok(_) => { shared.counters.dropped.fetch_add(1, Ordering::Relaxed); }
                Err(error) => break error,
            },
            stream = connection.accept_uni() => match stream {
                Ok(stream) => {
                    tokio::spawn(read_stream(Arc::clone(&shared), from, stream));
                }
                Err(error) => break error,
            },
        }
    };
    // Fold the finished connection's counters into the totals.
    if let Some(connection) = shared
        .open
        .lock()
        .expect("open lock")
        .remove(&connection.stable_id())
    {
        add(
            &mut shared.counters.closed.lock().expect("counters lock"),
            &connection,
        );
    }
    {
        let mut connections = shared.connections.lock().expect("connections lock");
        if connections
            .get(&from)
            .is_some_and(|c| c.stable_id() == connection.stable_id())
        {
            connections.remove(&from);
        }
    }
    // An idle timeout is the normal end of a quiet connection, and a
    // graceful close is the peer's choice; neither says the peer is gone.
    let lost = matches!(
        error,
        ConnectionError::Reset | ConnectionError::TransportError(_)
    );
    if lost {
        tracing::debug!(%from, %error, "connection lost");
        deliver(&shared, Incoming::Unreachable(from));
    }
}

/// Reads one incoming stream: its kind byte, then a frame or a bulk body,
/// each within its own limits.
async fn read_stream(shared: Arc<Shared>, from: SocketAddr, mut stream: quinn::RecvStream) {
    let dropped = || {
        shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
    };
    let mut kind = [0u8; 1];
    let limit = shared.config.bulk_timeout;
    match tokio::time::timeout(limit, stream.read_exact(&mut kind)).await {
        Ok(Ok(())) => {}
        _ => return dropped(),
    }
    match kind[0] {
        STREAM_FRAME => {
            // read_to_end refuses (and we drop) anything longer than a frame.
            match stream.read_to_end(shared.config.max_frame_len).await {
                Ok(bytes) => deliver(&shared, Incoming::Frame { from, bytes }),
                Err(_) => dropped(),
            }
        }
        STREAM_BULK if shared.config.max_bulk_len > 0 => {
            let Ok(permit) = Arc::clone(&shared.bulk_in).try_acquire_owned() else {
                // Enough bodies are being read or wait for the driver.
                tracing::debug!(%from, "bulk body refused: max_bulk_streams under way");
                let _ = stream.stop(STOP_BULK_REFUSED.into());
                return dropped();
            };
            let read = stream.read_to_end(shared.config.max_bulk_len);
            match tokio::time::timeout(limit, read).await {
                Ok(Ok(bytes)) => {
                    if shared
                        .inbound
                        .try_send(Incoming::Bulk { from, bytes })
                        .is_ok()
                    {
                        // Held until the driver takes the body (`recv`
                        // gives it back), so that queued bodies count too.
                        permit.forget();
                    } else {
                        dropped();
                    }
                }
                _ => {
                    let _ = stream.stop(STOP_BULK_REFUSED.into());
                    dropped();
                }
            }
        }
        _ => {
            let _ = stream.stop(STOP_BULK_REFUSED.into());
            dropped();
        }
    }
}

/// Sends one bulk body on a stream of its own, connecting if needed.
async fn send_bulk_body(shared: &Arc<Shared>, peer: SocketAddr, body: &[u8]) -> Result<(), String> {
    let cached = open_connection(shared, peer);
    let connection = match cached {
        Some(c) => c,
        None => {
            let c = connect(shared, peer).await?;
            adopt(shared, c.clone(), Origin::Dialled);
            c
        }
    };
    send_on_stream(&connection, STREAM_BULK, body).await
}

async fn connect(shared: &Arc<Shared>, peer: SocketAddr) -> Result<Connection, String> {
    if shared.open.lock().expect("open lock").len() >= shared.config.max_connections {
        return Err("connection limit reached".into());
    }
    // Peers' certificates name their IP address: dial by it.
    let connecting = shared
        .endpoint
        .connect(peer, &peer.ip().to_string())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(shared.config.connect_timeout, connecting).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("handshake timed out".into()),
    }
}

/// Sends one peer's frames in order, connecting when needed.
async fn send_loop(shared: Arc<Shared>, peer: SocketAddr, frames: mpsc::Receiver<Bytes>) {
    send_frames(&shared, peer, frames).await;
    shared.counters.senders.fetch_sub(1, Ordering::Relaxed);
}

async fn send_frames(shared: &Arc<Shared>, peer: SocketAddr, mut frames: mpsc::Receiver<Bytes>) {
    let mut refused_until: Option<Instant> = None;
    loop {
        let frame = match tokio::time::timeout(shared.config.idle_timeout, frames.recv()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(_) => {
                // Idle: retire this task, unless a frame raced in.
                let mut senders = shared.senders.lock().expect("senders lock");
                if frames.is_empty() {
                    senders.remove(&peer);
                    return;
                }
                continue;
            }
        };
        if refused_until.is_some_and(|until| Instant::now() < until) {
            shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // Looked up for every frame: a newer connection (the peer's, after
        // it restarted) replaces the one we used before.
        let cached = open_connection(shared, peer);
        let current = match cached {
            Some(c) => c,
            None => match connect(shared, peer).await {
                Ok(c) => {
                    adopt(shared, c.clone(), Origin::Dialled);
                    c
                }
                Err(reason) => {
                    tracing::debug!(%peer, %reason, "connect failed");
                    shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    refused_until = Some(Instant::now() + shared.config.retry_after);
                    deliver(shared, Incoming::Unreachable(peer));
                    continue;
                }
            },
        };
        refused_until = None;
        let fits = current
            .max_datagram_size()
            .is_some_and(|size| frame.len() <= size);
        let sent = if fits {
            current.send_datagram(frame).map_err(|e| e.to_string())
        } else {
            send_on_stream(&current, STREAM_FRAME, &frame).await
        };
        if let Err(reason) = sent {
            tracing::debug!(%peer, %reason, "send failed");
            shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn send_on_stream(connection: &Connection, kind: u8, bytes: &[u8]) -> Result<(), String> {
    let mut stream = connection.open_uni().await.map_err(|e| e.to_string())?;
    stream.write_all(&[kind]).await.map_err(|e| e.to_string())?;
    stream.write_all(bytes).await.map_err(|e| e.to_string())?;
    stream.finish().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budget is a promise about quinn's arithmetic: check it on a real
    /// connection, before any path MTU discovery could have raised it.
    #[tokio::test]
    async fn a_fresh_connection_carries_a_budget_sized_datagram() {
        let ca = ClusterCa::generate().unwrap();
        let bind = |ca: &ClusterCa| {
            let identity = ca.issue(&["127.0.0.1".parse().unwrap()], &[]).unwrap();
            QuicTransport::bind(
                "127.0.0.1:0".parse().unwrap(),
                identity,
                QuicConfig::default(),
            )
        };
        let a = bind(&ca).await.unwrap();
        let b = bind(&ca).await.unwrap();
        a.send(b.local_addr(), &[7; DATAGRAM_BUDGET]).await.unwrap();
        let received = tokio::time::timeout(Duration::from_secs(5), b.recv())
            .await
            .expect("a frame within 5 s")
            .unwrap();
        assert!(
            matches!(received, Incoming::Frame { bytes, .. } if bytes.len() == DATAGRAM_BUDGET)
        );
        let connection = a
            .shared
            .connections
            .lock()
            .unwrap()
            .get(&b.local_addr())
            .cloned()
            .expect("a connection to b");
        let size = connection.max_datagram_size().expect("datagrams enabled");
        assert!(size >= DATAGRAM_BUDGET, "datagrams of {size} bytes only");
        assert_eq!(a.unfragmented_frame_len(), DATAGRAM_BUDGET);
    }

    async fn pair(ca: &ClusterCa, a: Identity) -> (QuicTransport, QuicTransport) {
        let bind = |identity| {
            QuicTransport::bind(
                "127.0.0.1:0".parse().unwrap(),
                identity,
                QuicConfig::default(),
            )
        };
        let b = ca.issue(&["127.0.0.1".parse().unwrap()], &[]).unwrap();
        (bind(a).await.unwrap(), bind(b).await.unwrap())
    }

    /// The operator reads why a peer was refused: the dialling side's
    /// error names the expiry.
    #[tokio::test]
    async fn dialling_a_peer_whose_certificate_expired_fails_with_an_error_that_says_so() {
        let ca = ClusterCa::generate().unwrap();
        let now = std::time::SystemTime::now();
        let day = Duration::from_secs(86_400);
        let expired = ca
            .issue_with_validity(
                &["127.0.0.1".parse().unwrap()],
                &[],
                Validity {
                    not_before: now - 2 * day,
                    not_after: now - day,
                },
            )
            .unwrap();
        let (stale, member) = pair(&ca, expired).await;
        let error = connect(&member.shared, stale.local_addr())
            .await
            .expect_err("an expired certificate is refused");
        assert!(error.contains("expired"), "unclear error: {error}");
    }

    /// A bulk body far larger than a frame arrives whole as
    /// `Incoming::Bulk`; one above `max_bulk_len` is refused by the
    /// sender, and one above the receiver's limit is dropped unread.
    #[tokio::test]
    async fn bulk_bodies_arrive_whole_within_their_limits() {
        let ca = ClusterCa::generate().unwrap();
        let bind = |max_bulk_len| {
            let identity = ca.issue(&["127.0.0.1".parse().unwrap()], &[]).unwrap();
            QuicTransport::bind(
                "127.0.0.1:0".parse().unwrap(),
                identity,
                QuicConfig {
                    max_bulk_len,
                    ..QuicConfig::default()
                },
            )
        };
        let a = bind(1 << 20).await.unwrap();
        let b = bind(200_000).await.unwrap();
        let body: Vec<u8> = (0..150_000u32).map(|i| i as u8).collect();
        a.send_bulk(b.local_addr(), body.clone()).await.unwrap();
        let received = tokio::time::timeout(Duration::from_secs(5), b.recv())
            .await
            .expect("a body within 5 s")
            .unwrap();
        assert_eq!(
            received,
            Incoming::Bulk {
                from: a.local_addr(),
                bytes: body
            }
        );
        assert!(matches!(
            b.send_bulk(a.local_addr(), vec![0; 200_001]).await,
            Err(TransportError::TooLarge { max: 200_000, .. })
        ));
        // Above the receiver's limit: dropped, and a frame after it still
        // arrives.
        a.send_bulk(b.local_addr(), vec![1; 300_000]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        a.send(b.local_addr(), b"after").await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), b.recv())
            .await
            .expect("the frame within 5 s")
            .unwrap();
        assert!(matches!(next, Incoming::Frame { bytes, .. } if bytes == b"after"));
        // A transport with the bulk path off says so.
        let off = bind(0).await.unwrap();
        assert_eq!(off.max_bulk_len(), 0);
    }

    /// A peer gets no bidirectional streams and at most `max_uni_streams`
    /// unidirectional ones at once.
    #[tokio::test]
    async fn streams_are_limited_to_what_gossip_uses() {
        let ca = ClusterCa::generate().unwrap();
        let a_identity = ca.issue(&["127.0.0.1".parse().unwrap()], &[]).unwrap();
        let (a, b) = pair(&ca, a_identity).await;
        let connection = connect(&a.shared, b.local_addr()).await.unwrap();
        let wait = Duration::from_millis(300);
        assert!(
            tokio::time::timeout(wait, connection.open_bi())
                .await
                .is_err(),
            "no credit for a bidirectional stream"
        );
        let limit = QuicConfig::default().max_uni_streams;
        let mut streams = Vec::new();
        for _ in 0..limit {
            let stream = tokio::time::timeout(wait, connection.open_uni())
                .await
                .expect("within the limit")
                .unwrap();
            streams.push(stream);
        }
        assert!(
            tokio::time::timeout(wait, connection.open_uni())
                .await
                .is_err(),
            "one stream beyond the limit must wait"
        );
    }
}
