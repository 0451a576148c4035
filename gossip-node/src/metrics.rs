//! The agent's Prometheus metrics (`GET /metrics`), and [`Metered`], the
//! transport wrapper that counts frames by message kind and times probes.
//!
//! Where each figure comes from:
//!
//! | metric | source |
//! | --- | --- |
//! | `gossip_members{state}` | the node's member list, at scrape time |
//! | `gossip_frames_total{direction,kind}`, `gossip_frame_bytes_total{direction,kind}` | [`Metered`]: each frame decoded on its way through (`kind="undecodable"` for frames that do not decode) |
//! | `gossip_frames_refused_total{reason}` | the driver's count of `RecvError`s by kind, plus `reason="seal"` for frames the sealing layer refused |
//! | `gossip_suspicions_raised_total`, `gossip_refutations_total`, `gossip_members_declared_dead_total` | the core's `Stats` |
//! | `gossip_probe_rtt_seconds` | [`Metered`]: from a ping leaving to the ack with the same sequence number arriving from the same address (the core exposes no round-trip time) |
//! | `gossip_pending_updates`, `gossip_stored_rumors` | the core's `Stats`: membership updates waiting to be piggybacked, rumors held for relaying |
//! | `gossip_broadcast_propagation_seconds` | the agent's broadcast envelope: receive time minus the origin's send time |
//! | `gossip_transport_*` | the transport's own counters |
//! | `gossip_leader_*`, `gossip_partition*` | leader election and partition awareness, after each of their events and every second |
//! | `gossip_kv_*` | the key-value store ([`crate::api_kv::KvMetrics`]): its state and counters, read at scrape time |

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gossip_agent::{AgentStats, Incoming, Transport, TransportError, TransportStats};
use gossip_core::wire::{self, Message};
use gossip_core::{Config, Liveness, Member};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Every metric the agent exports, in one registry.
pub struct Metrics {
    registry: Registry,
    members: Family<Labels, Gauge>,
    frames: Family<Labels, Counter>,
    frame_bytes: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
    suspicions: Counter,
    refutations: Counter,
    deaths: Counter,
    broadcasts: Counter,
    deliveries: Counter,
    pending_updates: Gauge,
    stored_rumors: Gauge,
    probe_rtt: Histogram,
    propagation: Histogram,
    transport: Family<Labels, Counter>,
    send_errors: Counter,
    /// Leader election and partition metrics.
    pub leader: crate::api_leader::LeaderMetrics,
    kv: crate::api_kv::KvMetrics,
    /// Serialises scrapes, which bring the counters up to date.
    scrape: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gossip");
        let members = Family::<Labels, Gauge>::default();
        let frames = Family::<Labels, Counter>::default();
        let frame_bytes = Family::<Labels, Counter>::default();
        let refused = Family::<Labels, Counter>::default();
        let transport = Family::<Labels, Counter>::default();
        let (suspicions, refutations, deaths) =
            (Counter::default(), Counter::default(), Counter::default());
        let (broadcasts, deliveries, send_errors) =
            (Counter::default(), Counter::default(), Counter::default());
        let (pending_updates, stored_rumors) = (Gauge::default(), Gauge::default());
        // 100 us to about 3.3 s.
        let probe_rtt = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        // 1 ms to about 33 s.
        let propagation = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "members",
            "Members in this node's view, by state (alive, suspect, dead, left), itself included",
            members.clone(),
        );
        registry.register(
            "frames",
            "Frames sent (direction=out) and received (direction=in), by message kind",
            frames.clone(),
        );
        registry.register(
            "frame_bytes",
            "Bytes of protocol frames sent and received, by message kind (transport framing and seals excluded)",
            frame_bytes.clone(),
        );
        registry.register(
            "frames_refused",
            "Received frames refused, by reason (a RecvError kind, or seal for the sealing layer)",
            refused.clone(),
        );
        registry.register(
            "suspicions_raised",
            "Suspicions this node raised itself after failed probes",
            suspicions.clone(),
        );
        registry.register(
            "refutations",
            "Times this node refuted a suspicion or death claim about itself",
            refutations.clone(),
        );
        registry.register(
            "members_declared_dead",
            "Members this node declared dead when their suspicion timed out",
            deaths.clone(),
        );
        registry.register(
            "broadcasts",
            "Broadcasts originated here",
            broadcasts.clone(),
        );
        registry.register(
            "deliveries",
            "Broadcasts from others delivered here for the first time, hosted applications' (KV writes, leader terms) included",
            deliveries.clone(),
        );
        registry.register(
            "pending_updates",
            "Membership updates waiting to be piggybacked (the broadcast queue of the membership layer)",
            pending_updates.clone(),
        );
        registry.register(
            "stored_rumors",
            "Application broadcasts held for relaying and answering pulls",
            stored_rumors.clone(),
        );
        registry.register(
            "probe_rtt_seconds",
            "Time from a ping leaving to its ack arriving from the pinged address",
            probe_rtt.clone(),
        );
        registry.register(
            "broadcast_propagation_seconds",
            "Time from a broadcast leaving its origin (origin's clock) to its delivery here (this host's clock)",
            propagation.clone(),
        );
        registry.register(
            "transport",
            "The transport's counters: packets and bytes sent and received, frames dropped",
            transport.clone(),
        );
        registry.register(
            "send_errors",
            "Frames the transport refused to send",
            send_errors.clone(),
        );
        let leader = crate::api_leader::LeaderMetrics::register(&mut registry);
        let kv = crate::api_kv::KvMetrics::register(&mut registry);
        Self {
            leader,
            kv,
            registry,
            members,
            frames,
            frame_bytes,
            refused,
            suspicions,
            refutations,
            deaths,
            broadcasts,
            deliveries,
            pending_updates,
            stored_rumors,
            probe_rtt,
            propagation,
            transport,
            send_errors,
            scrape: Mutex::new(()),
        }
    }

    /// Brings the key-value store's metrics up to `snapshot` (serialised
    /// with scrapes: the counters mirror the store's by catching up).
    pub fn kv(&self, snapshot: &crate::api_kv::KvSnapshot) {
        let _scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.kv.update(snapshot);
    }

    /// Counts one frame of `kind` and `len` bytes going `direction`.
    fn frame(&self, direction: &'static str, kind: &'static str, len: usize) {
        let labels = vec![
            ("direction", direction.to_string()),
            ("kind", kind.to_string()),
        ];
        self.frames.get_or_create(&labels).inc();
        self.frame_bytes.get_or_create(&labels).inc_by(len as u64);
    }

    /// Records a delivery and, when the payload carried its send time, the
    /// propagation delay.
    pub fn delivered(&self, delay: Option<Duration>) {
        if let Some(delay) = delay {
            self.propagation.observe(delay.as_secs_f64());
        }
    }

    /// Brings the counters that mirror the node's and transport's up to
    /// date, and renders every metric in the Prometheus text format
    /// (OpenMetrics 1.0, which Prometheus reads).
    pub fn render(&self, stats: &AgentStats, members: &[Member]) -> String {
        let _scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        let node = &stats.node;
        for (counter, value) in [
            (&self.suspicions, node.suspicions_raised),
            (&self.refutations, node.refutations),
            (&self.deaths, node.members_declared_dead),
            (&self.broadcasts, node.broadcasts),
            (&self.deliveries, node.rumors_delivered),
            (&self.send_errors, stats.send_errors),
        ] {
            catch_up(counter, value);
        }
        self.pending_updates.set(node.pending_updates as i64);
        self.stored_rumors.set(node.stored_messages as i64);
        for (reason, count) in &stats.refused {
            catch_up(
                &self
                    .refused
                    .get_or_create(&vec![("reason", reason.to_string())]),
                *count,
            );
        }
        catch_up(
            &self
                .refused
                .get_or_create(&vec![("reason", "seal".to_string())]),
            stats.transport.frames_refused,
        );
        let TransportStats {
            packets_sent,
            bytes_sent,
            packets_received,
            bytes_received,
            frames_dropped,
            ..
        } = stats.transport;
        for (what, value) in [
            ("packets_sent", packets_sent),
            ("bytes_sent", bytes_sent),
            ("packets_received", packets_received),
            ("bytes_received", bytes_received),
            ("frames_dropped", frames_dropped),
        ] {
            catch_up(
                &self
                    .transport
                    .get_or_create(&vec![("counter", what.to_string())]),
                value,
            );
        }
        for state in ["alive", "suspect", "dead", "left"] {
            let count = members
                .iter()
                .filter(|m| state_name(m.liveness) == state)
                .count();
            self.members
                .get_or_create(&vec![("state", state.to_string())])
                .set(count as i64);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing into a String cannot fail");
        out
    }
}

/// Raises a counter that mirrors a monotonic figure to that figure.
pub(crate) fn catch_up(counter: &Counter<u64, AtomicU64>, value: u64) {
    counter.inc_by(value.saturating_sub(counter.get()));
}

/// The API's and the metrics' name for a liveness.
pub fn state_name(liveness: Liveness) -> &'static str {
    match liveness {
        Liveness::Alive => "alive",
        Liveness::Suspect => "suspect",
        Liveness::Dead => "dead",
        Liveness::Left => "left",
        _ => "unknown",
    }
}

/// The metric label of a message kind.
fn kind(message: &Message) -> &'static str {
    match message {
        Message::Ping { .. } => "ping",
        Message::Ack { .. } => "ack",
        Message::PingReq { .. } => "ping_req",
        Message::Nack { .. } => "nack",
        Message::Gossip { .. } => "gossip",
        Message::Join { .. } => "join",
        Message::Sync { .. } => "sync",
        Message::Rumors { .. } => "rumors",
        Message::Pull { .. } => "pull",
        Message::Aggregate { .. } => "aggregate",
        Message::Feedback { .. } => "feedback",
        Message::Verify { .. } => "verify",
        Message::Direct { .. } => "direct",
        Message::SignedRumors { .. } => "signed_rumors",
        Message::Announce { .. } => "announce",
        Message::Graft { .. } => "graft",
        Message::Prune => "prune",
    }
}

/// Pings still waiting for their ack, at most this many (pings to dead
/// members are never answered; the oldest entries go first).
const MAX_PENDING_PINGS: usize = 1024;

/// A transport that counts what passes through it for [`Metrics`]: each
/// frame is decoded (with the node's config, as the node will) to learn
/// its kind, and pings are matched to acks to time round trips. Wrap it
/// around a sealing transport, not inside one, so it sees plaintext.
pub struct Metered<T> {
    inner: T,
    config: Config,
    metrics: Arc<Metrics>,
    pings: Mutex<HashMap<(SocketAddr, u32), Instant>>,
}

impl<T> Metered<T> {
    /// Wraps `inner`, decoding frames with `config`.
    pub fn new(inner: T, config: Config, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            config,
            metrics,
            pings: Mutex::new(HashMap::new()),
        }
    }

    fn observe(&self, direction: &'static str, peer: SocketAddr, bytes: &[u8]) {
        let message = wire::decode(&self.config, bytes).ok().map(|(_, m)| m);
        let name = message.as_ref().map_or("undecodable", kind);
        self.metrics.frame(direction, name, bytes.len());
        let mut pings = self.pings.lock().unwrap_or_else(|e| e.into_inner());
        match (direction, message) {
            ("out", Some(Message::Ping { seq, .. })) => {
                if pings.len() >= MAX_PENDING_PINGS {
                    let cutoff = Instant::now() - Duration::from_secs(10);
                    pings.retain(|_, sent| *sent > cutoff);
                    if pings.len() >= MAX_PENDING_PINGS {
                        pings.clear();
                    }
                }
                pings.insert((peer, seq), Instant::now());
            }
            ("in", Some(Message::Ack { seq, .. })) => {
                if let Some(sent) = pings.remove(&(peer, seq)) {
                    self.metrics.probe_rtt.observe(sent.elapsed().as_secs_f64());
                }
            }
            _ => {}
        }
    }
}

#[gossip_agent::async_trait]
impl<T: Transport> Transport for Metered<T> {
    async fn send(&self, to: SocketAddr, bytes: &[u8]) -> Result<(), TransportError> {
        self.observe("out", to, bytes);
        self.inner.send(to, bytes).await
    }

    async fn recv(&self) -> Result<Incoming, TransportError> {
        let incoming = self.inner.recv().await?;
        if let Incoming::Frame { from, bytes } = &incoming {
            self.observe("in", *from, bytes);
        }
        Ok(incoming)
    }

    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    fn max_frame_len(&self) -> usize {
        self.inner.max_frame_len()
    }

    fn unfragmented_frame_len(&self) -> usize {
        self.inner.unfragmented_frame_len()
    }

    fn max_bulk_len(&self) -> usize {
        self.inner.max_bulk_len()
    }

    async fn send_bulk(&self, to: SocketAddr, body: Vec<u8>) -> Result<(), TransportError> {
        self.inner.send_bulk(to, body).await
    }

    fn stats(&self) -> TransportStats {
        self.inner.stats()
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}
