//! Payloads larger than a frame, announced by id and hash and fetched from
//! a peer that has them: blocks of a megabyte, each crossing each node
//! about once.
//!
//! **How a payload travels.** Its origin broadcasts a small *offer* through
//! the node's strategy: the payload's length, its SHA-256 and a few bytes
//! of application metadata (a block header, say). The offer's broadcast id
//! names the payload. A node that receives the offer asks its application's
//! validation callback ([`Fetch::with_validator`]); if accepted, it asks one
//! provider for the body with a direct message, receives and checks it
//! against the SHA-256, delivers it ([`FetchEvent::Delivered`]), and from
//! then on serves it to whoever asks: relaying a block is serving it after
//! its header was validated.
//!
//! **Whom to ask.** Every node ranks the live members by a hash of the
//! member and the payload's id, with the origin first, and reads the
//! ranking as a tree of [`FetchConfig::tree_fanout`] children per node: it
//! asks its parent in that tree, then the parent's parent, up to the
//! origin, then any other member. Upload load thus spreads along a tree of
//! bounded degree (each node serves about `tree_fanout` copies), a
//! different tree for each payload. A node passes bytes on as they
//! arrive (cut-through): asked for a part it has not received yet, it
//! holds the request and serves it once the part is in, so a payload flows
//! down the tree in a pipeline instead of waiting at every level for the
//! whole. Each receiver checks the whole payload against the SHA-256
//! before delivering it, so bytes passed on unverified can cost a retry,
//! never a wrong delivery. The tree needs no messages of its own and no help from the
//! strategy: Plumtree's tree would serve too, but the core does not tell
//! applications which peer a broadcast came from, and a tree computed from
//! the view spreads uploads evenly, where Plumtree's follows whoever was
//! fastest. Views that differ a little only move a node to another parent;
//! every node serves anyone who asks.
//!
//! **Which path the bytes take.** If the host has a bulk path
//! ([`Cluster::send_bulk`]; the agent over QUIC has one, a stream per
//! body), the payload travels in *segments* of
//! [`FetchConfig::segment_bytes`], each one bulk body. Otherwise (UDP, the
//! simulator) it travels in *pieces*, direct messages of one frame each,
//! requested [`FetchConfig::window_bytes`] at a time. Requests travel as
//! direct messages, which may be lost: the bytes still missing are asked
//! for again after [`FetchConfig::piece_timeout`] without a piece, or
//! [`FetchConfig::segment_timeout`] without a segment. On both paths the
//! requester keeps two segments or windows asked for and asks for the next
//! as one completes; that is the flow control: a provider never sends more
//! than it was asked for. ([`crate::bulk`], which sends every chunk as a
//! broadcast, remains for hosts that want no request and answer.)
//!
//! **Lying and slow peers.** Nothing is delivered before the whole body
//! matches the offer's length and SHA-256. A provider whose body does not,
//! that says it has none, or that makes no progress for
//! [`FetchConfig::fetch_timeout`], is abandoned for the next one (at most
//! [`FetchConfig::max_attempts`]). Offers from a non-member are ignored;
//! so are pieces and bodies nobody asked that peer for. Every collection is
//! bounded by a [`FetchConfig`] field: payload length, metadata, fetches
//! and served transfers at once, offers and requests waiting, payloads
//! held for serving.
//!
//! Like every application it is sans-IO: the same code runs in the
//! simulator and in the agent.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use gossip_core::{CommandError, Event, Liveness, MessageId, NodeId};
use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};

use crate::{Application, Channel, Cluster};

/// Settings of [`Fetch`]. Every limit bounds what a lying peer can make a
/// node hold or do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchConfig {
    /// Largest payload sent or fetched; a larger offer is ignored. Default
    /// 4 MiB.
    pub max_payload_bytes: u64,
    /// Largest metadata an offer carries; it must also fit one broadcast
    /// with the offer's 45 bytes. Default 512.
    pub max_meta_len: usize,
    /// Payloads fetched at once; further accepted offers wait. Default 8.
    pub max_fetches: usize,
    /// Accepted offers waiting for a fetch to finish; beyond it an offer
    /// is dropped. Default 64.
    pub max_pending_offers: usize,
    /// Peers served at once per payload; further requests wait in the
    /// queue below. Default 8 (the tree's fanout: a node's children).
    pub max_serving: usize,
    /// Requests waiting (for a payload still being fetched here, for an
    /// offer not yet arrived, or for a serving slot), over all payloads;
    /// beyond it a request is answered "missing". Default 256.
    pub max_queued_requests: usize,
    /// Verified payloads kept for serving; the oldest goes first. Default
    /// 16.
    pub max_held: usize,
    /// How long a verified payload is kept for serving. Default 60 s.
    pub hold_time: Duration,
    /// Children per node in the tree that decides whom each node asks.
    /// Default 8; at least 1. A wider tree is shallower: 1 MiB to 100
    /// nodes over QUIC on loopback took p95 0.81 s at 8 and 1.03 s at 4
    /// (`bench-net --fetch-fanout F`), for the same bytes.
    pub tree_fanout: usize,
    /// A provider that sends nothing useful for this long is abandoned for
    /// the next; also how long a request waits here and a served peer
    /// holds its slot without saying it is done. Default 3 s.
    pub fetch_timeout: Duration,
    /// Providers tried per payload before it is given up. Default 8.
    pub max_attempts: usize,
    /// Pieces path: bytes asked for at once (the flow-control window; two
    /// windows are in flight). Default 64 KiB.
    pub window_bytes: u32,
    /// Bulk path: bytes of a segment, each one bulk body; two are in
    /// flight. Smaller segments let a node pass bytes on sooner (a node
    /// serves what it has received before its copy is complete), larger
    /// ones cost fewer streams. Default 128 KiB.
    pub segment_bytes: u32,
    /// Pieces path: without a piece for this long, what is missing of the
    /// window is asked for again. Default 250 ms.
    pub piece_timeout: Duration,
    /// Bulk path: without a segment for this long, the segments missing
    /// are asked for again from the same provider. A request travels as
    /// one unreliable frame; without this, a lost one would stall the
    /// fetch for [`fetch_timeout`](Self::fetch_timeout) and then cost a
    /// provider. A provider still waiting for the bytes itself merges the
    /// repeat with the request it holds; one already sending them sends
    /// them twice, so this stays well above a segment's transfer time.
    /// Default 1 s.
    pub segment_timeout: Duration,
    /// Use the host's bulk path when it has one (default); `false` sends
    /// pieces as direct messages even then.
    pub use_bulk_path: bool,
    /// Delivered payloads kept until taken with [`Fetch::poll_event`]; the
    /// oldest go first. Default 64.
    pub max_events: usize,
}

impl FetchConfig {
    /// Bytes asked for at once on either path.
    fn segment_len(&self, bulk: bool) -> u32 {
        if bulk {
            self.segment_bytes.max(1)
        } else {
            self.window_bytes.max(1)
        }
    }

    /// How long a fetch on either path waits without bytes before it asks
    /// again for what is missing.
    fn resend_after(&self, bulk: bool) -> Duration {
        if bulk {
            self.segment_timeout
        } else {
            self.piece_timeout
        }
    }
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            max_payload_bytes: 4 << 20,
            max_meta_len: 512,
            max_fetches: 8,
            max_pending_offers: 64,
            max_serving: 8,
            max_queued_requests: 256,
            max_held: 16,
            hold_time: Duration::from_secs(60),
            tree_fanout: 8,
            fetch_timeout: Duration::from_secs(3),
            max_attempts: 8,
            window_bytes: 64 << 10,
            segment_bytes: 128 << 10,
            piece_timeout: Duration::from_millis(250),
            segment_timeout: Duration::from_secs(1),
            use_bulk_path: true,
            max_events: 64,
        }
    }
}

/// A payload's description, as its offer carries it: what a validation
/// callback decides on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The payload's id: its offer's broadcast id.
    pub id: MessageId,
    /// The payload's length in bytes.
    pub len: u64,
    /// The payload's SHA-256.
    pub sha256: [u8; 32],
    /// The application's metadata (a block header, for one).
    pub meta: Vec<u8>,
}

/// The application's say on an offer before its payload is fetched: `true`
/// fetches (and then serves) it, `false` ignores it.
pub type Validator = Box<dyn FnMut(&Offer) -> bool + Send>;

/// Why [`Fetch::send`] refused a payload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The payload is larger than [`FetchConfig::max_payload_bytes`].
    #[error("payload of {len} bytes is above the limit of {max}")]
    TooLarge {
        /// The payload's length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The metadata is longer than [`FetchConfig::max_meta_len`].
    #[error("metadata of {len} bytes is above the limit of {max}")]
    MetaTooLong {
        /// The metadata's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The node refused the offer's broadcast.
    #[error("the node refused the offer: {0}")]
    Refused(#[from] CommandError),
}

/// What happened to a fetched payload.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchEvent {
    /// The payload arrived and matches its offer's SHA-256.
    Delivered {
        /// Which payload, with its metadata.
        offer: Offer,
        /// The payload.
        payload: Vec<u8>,
    },
    /// Every provider tried failed; the payload was given up.
    Failed {
        /// Which payload.
        id: MessageId,
    },
}

/// Counters of what the application did and refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FetchStats {
    /// Payloads this node offered.
    pub sent: u64,
    /// Payloads fetched, verified and delivered.
    pub delivered: u64,
    /// Bodies that did not match their offer's length and SHA-256.
    pub hash_mismatches: u64,
    /// Providers abandoned: wrong body, "missing", or no progress in time.
    pub providers_abandoned: u64,
    /// Payloads given up after every provider failed.
    pub failed: u64,
    /// Offers the validation callback refused.
    pub rejected: u64,
    /// Offers from non-members, and pieces or bodies nobody asked that
    /// peer for.
    pub strangers_ignored: u64,
    /// Messages refused as malformed or beyond a limit.
    pub refused: u64,
    /// Bodies (whole, on the bulk path) or windows of pieces served.
    pub served: u64,
    /// Bytes of payload served.
    pub served_bytes: u64,
}

/// The messages, after the [`Channel::Fetch`] tag. Offers travel as
/// broadcasts, the rest as direct messages; segments on the bulk path are
/// the tag, the payload's id and offset, and the raw bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Msg {
    Offer {
        len: u64,
        sha256: [u8; 32],
        meta: Vec<u8>,
    },
    /// Send me these bytes of this payload: as one segment on the bulk
    /// path (`bulk`), or as pieces.
    Want {
        id: MessageId,
        part: Part,
        bulk: bool,
    },
    Piece {
        id: MessageId,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// I do not have (and will not have) this payload.
    Missing { id: MessageId },
    /// I have it, or gave up on you: free my slot and my waiting requests.
    Done { id: MessageId },
}

/// A byte range of a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Part {
    offset: u64,
    len: u32,
}

impl Part {
    fn end(self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

/// What a piece's message adds to its bytes at most: tag, variant, the id
/// (an IPv6 node id of 19 bytes and two varints of up to 10), the offset
/// (up to 10) and the length prefix (up to 3).
const PIECE_OVERHEAD: usize = 1 + 1 + 19 + 10 + 10 + 10 + 3;

/// What a segment on the bulk path adds to its bytes at most: the tag, the
/// id and the offset.
const SEGMENT_OVERHEAD: usize = 1 + 19 + 10 + 10 + 10;

fn encode(msg: &Msg) -> Vec<u8> {
    let mut out = vec![Channel::Fetch.tag()];
    out.extend(postcard::to_allocvec(msg).expect("encoding into a Vec cannot fail"));
    out
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// A verified payload kept for serving.
#[derive(Debug)]
struct Held {
    offer: Offer,
    body: Vec<u8>,
    until: Instant,
}

/// A request that waits: for its bytes to arrive here (the payload is
/// being fetched, or its offer is on its way), or for a serving slot.
#[derive(Clone, Copy, Debug)]
struct Request {
    id: MessageId,
    from: NodeId,
    part: Part,
    bulk: bool,
    expires: Instant,
}

/// Byte ranges received so far, merged and in order.
#[derive(Clone, Debug, Default)]
struct Coverage(Vec<(u64, u64)>);

impl Coverage {
    /// Adds `[start, end)`; returns how many new bytes it covered.
    fn add(&mut self, start: u64, end: u64) -> u64 {
        let before = self.covered();
        self.0.push((start, end));
        self.0.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.0.len());
        for &(s, e) in &self.0 {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.0 = merged;
        self.covered() - before
    }

    fn covered(&self) -> u64 {
        self.0.iter().map(|(s, e)| e - s).sum()
    }

    /// The first byte not received.
    fn first_gap(&self) -> u64 {
        match self.0.first() {
            Some(&(0, end)) => end,
            _ => 0,
        }
    }

    /// The ranges below `end` not received yet, in order.
    fn gaps(&self, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut at = 0;
        for &(s, e) in &self.0 {
            if s >= end {
                break;
            }
            if s > at {
                out.push((at, s));
            }
            at = at.max(e);
        }
        if at < end {
            out.push((at, end));
        }
        out
    }

    /// Whether every byte of `part` is in.
    fn contains(&self, part: Part) -> bool {
        self.0
            .iter()
            .any(|&(s, e)| s <= part.offset && part.end() <= e)
    }
}

/// Bytes of a payload that arrived: a segment or a piece.
struct Arrival<'a> {
    from: NodeId,
    id: MessageId,
    offset: u64,
    bytes: &'a [u8],
    bulk: bool,
}

/// A payload being fetched. Its bytes are served on (unverified, cut
/// through) as they arrive: the receivers check the whole against the
/// SHA-256 as this node does.
#[derive(Debug)]
struct Fetching {
    offer: Offer,
    /// Providers still to try, in order.
    candidates: VecDeque<NodeId>,
    /// The provider asked now.
    provider: NodeId,
    /// Providers asked so far.
    asked: Vec<NodeId>,
    /// When the provider is abandoned unless it makes progress.
    deadline: Instant,
    /// Segments on the bulk path, or pieces in direct messages.
    bulk: bool,
    buf: Vec<u8>,
    have: Coverage,
    /// End of what was asked for.
    asked_end: u64,
    /// When to ask again for what is missing (see
    /// [`FetchConfig::piece_timeout`] and [`FetchConfig::segment_timeout`]).
    resend_at: Option<Instant>,
}

impl Fetching {
    /// Asks the current provider for `part`.
    fn ask(&self, now: Instant, part: Part, cluster: &mut dyn Cluster) {
        let want = Msg::Want {
            id: self.offer.id,
            part,
            bulk: self.bulk,
        };
        let _ = cluster.send_direct(now, self.provider, &encode(&want));
    }
}

/// Payloads larger than a frame, fetched from peers (see the
/// [module](self) docs).
pub struct Fetch {
    config: FetchConfig,
    validator: Option<Validator>,
    fetching: BTreeMap<MessageId, Fetching>,
    pending: VecDeque<Offer>,
    held: BTreeMap<MessageId, Held>,
    /// Peers served, per payload, until when their slot lasts.
    serving: BTreeMap<MessageId, BTreeMap<NodeId, Instant>>,
    /// Payloads refused or given up here, newest last: requests for them
    /// are answered "missing" at once.
    refused_ids: VecDeque<MessageId>,
    requests: Vec<Request>,
    events: VecDeque<FetchEvent>,
    stats: FetchStats,
}

impl std::fmt::Debug for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetch")
            .field("config", &self.config)
            .field("fetching", &self.fetching.len())
            .field("held", &self.held.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Fetch {
    /// An application with `config` that fetches every offer within its
    /// limits.
    pub fn new(config: FetchConfig) -> Self {
        Self {
            config,
            validator: None,
            fetching: BTreeMap::new(),
            pending: VecDeque::new(),
            held: BTreeMap::new(),
            serving: BTreeMap::new(),
            refused_ids: VecDeque::new(),
            requests: Vec::new(),
            events: VecDeque::new(),
            stats: FetchStats::default(),
        }
    }

    /// Fetches (and so relays) only the payloads whose offer `validator`
    /// accepts: a block is relayed once its header checks out.
    pub fn with_validator(mut self, validator: Validator) -> Self {
        self.validator = Some(validator);
        self
    }

    /// The settings.
    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// What the application counted.
    pub fn stats(&self) -> FetchStats {
        self.stats
    }

    /// Payloads being fetched now.
    pub fn fetching(&self) -> usize {
        self.fetching.len()
    }

    /// Accepted offers waiting for a fetch to finish.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Requests from peers waiting here.
    pub fn queued_requests(&self) -> usize {
        self.requests.len()
    }

    /// Payloads held for serving (own ones included).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Takes the next event.
    pub fn poll_event(&mut self) -> Option<FetchEvent> {
        self.events.pop_front()
    }

    /// Offers `payload` (with `meta`, which every node's validation
    /// callback sees) to every node, and serves it from now on.
    ///
    /// # Errors
    /// If the payload or the metadata is above its limit, or the node
    /// refuses the offer's broadcast.
    pub fn send(
        &mut self,
        now: Instant,
        payload: Vec<u8>,
        meta: Vec<u8>,
        cluster: &mut dyn Cluster,
    ) -> Result<MessageId, FetchError> {
        let len = payload.len() as u64;
        if len > self.config.max_payload_bytes {
            return Err(FetchError::TooLarge {
                len,
                max: self.config.max_payload_bytes,
            });
        }
        if meta.len() > self.config.max_meta_len {
            return Err(FetchError::MetaTooLong {
                len: meta.len(),
                max: self.config.max_meta_len,
            });
        }
        let sha256 = sha256(&payload);
        let msg = Msg::Offer {
            len,
            sha256,
            meta: meta.clone(),
        };
        let id = cluster.broadcast(now, &encode(&msg))?;
        self.stats.sent += 1;
        let offer = Offer {
            id,
            len,
            sha256,
            meta,
        };
        self.hold(now, offer, payload, cluster);
        Ok(id)
    }

    fn on_offer(&mut self, now: Instant, offer: Offer, cluster: &mut dyn Cluster) {
        let id = offer.id;
        if !is_live(cluster, id.origin) {
            self.stats.strangers_ignored += 1;
            return;
        }
        if self.knows(id) {
            return;
        }
        if offer.len > self.config.max_payload_bytes || offer.meta.len() > self.config.max_meta_len
        {
            self.stats.refused += 1;
            self.refuse(now, id, cluster);
            return;
        }
        if let Some(validator) = self.validator.as_mut() {
            if !validator(&offer) {
                self.stats.rejected += 1;
                self.refuse(now, id, cluster);
                return;
            }
        }
        if self.fetching.len() < self.config.max_fetches {
            self.start(now, offer, cluster);
        } else if self.pending.len() < self.config.max_pending_offers {
            self.pending.push_back(offer);
        } else {
            self.stats.refused += 1;
            self.refuse(now, id, cluster);
        }
    }

    fn knows(&self, id: MessageId) -> bool {
        self.fetching.contains_key(&id)
            || self.held.contains_key(&id)
            || self.pending.iter().any(|o| o.id == id)
            || self.refused_ids.contains(&id)
    }

    /// Records that `id` will not be had here and says so to whoever waits.
    fn refuse(&mut self, now: Instant, id: MessageId, cluster: &mut dyn Cluster) {
        if !self.refused_ids.contains(&id) {
            if self.refused_ids.len() >= self.config.max_queued_requests.max(1) {
                self.refused_ids.pop_front();
            }
            self.refused_ids.push_back(id);
        }
        let mut told = Vec::new();
        for request in self.take_requests(id) {
            if !told.contains(&request.from) {
                told.push(request.from);
                let _ = cluster.send_direct(now, request.from, &encode(&Msg::Missing { id }));
            }
        }
    }

    fn take_requests(&mut self, id: MessageId) -> Vec<Request> {
        let (waiting, rest): (Vec<Request>, Vec<Request>) =
            self.requests.drain(..).partition(|r| r.id == id);
        self.requests = rest;
        waiting
    }

    /// Starts fetching `offer` from the first provider in its tree.
    fn start(&mut self, now: Instant, offer: Offer, cluster: &mut dyn Cluster) {
        let candidates = providers(cluster, offer.id, self.config.tree_fanout)
            .into_iter()
            .take(self.config.max_attempts.max(1))
            .collect();
        let bulk = self.config.use_bulk_path
            && cluster.max_bulk_len() >= SEGMENT_OVERHEAD + self.config.segment_len(true) as usize;
        let id = offer.id;
        let len = offer.len as usize;
        self.fetching.insert(
            id,
            Fetching {
                offer,
                candidates,
                provider: id.origin,
                asked: Vec::new(),
                deadline: now,
                bulk,
                buf: vec![0; len],
                have: Coverage::default(),
                asked_end: 0,
                resend_at: None,
            },
        );
        self.next_provider(now, id, cluster);
    }

    /// Asks the current provider for more, keeping two segments (or
    /// windows) in flight.
    fn top_up(&mut self, now: Instant, id: MessageId, cluster: &mut dyn Cluster) {
        let Some(fetch) = self.fetching.get_mut(&id) else {
            return;
        };
        let segment = self.config.segment_len(fetch.bulk);
        let total = fetch.offer.len;
        let gap = fetch.have.first_gap();
        while fetch.asked_end < total && fetch.asked_end < gap + 2 * u64::from(segment) {
            let part = window_from(fetch.asked_end, total, segment);
            fetch.asked_end = part.end();
            if fetch.have.contains(part) {
                // Arrived already (a new provider is asked from the first
                // gap, and later parts may be in).
                continue;
            }
            fetch.ask(now, part, cluster);
        }
    }

    /// Asks the current provider again for exactly the bytes still missing
    /// of what was asked for: a lost piece costs its own bytes, not its
    /// window's, and a repeat of a request still held by the provider
    /// names the same part, so the provider merges the two.
    fn resend_missing(&mut self, now: Instant, id: MessageId, cluster: &mut dyn Cluster) {
        let Some(fetch) = self.fetching.get_mut(&id) else {
            return;
        };
        let segment = self.config.segment_len(fetch.bulk);
        fetch.resend_at = Some(now + self.config.resend_after(fetch.bulk));
        for (start, end) in fetch.have.gaps(fetch.asked_end) {
            let mut offset = start;
            while offset < end {
                let part = window_from(offset, end, segment);
                offset = part.end();
                fetch.ask(now, part, cluster);
            }
        }
    }

    /// Asks the next candidate, or gives the payload up if none is left.
    fn next_provider(&mut self, now: Instant, id: MessageId, cluster: &mut dyn Cluster) {
        loop {
            let Some(fetch) = self.fetching.get_mut(&id) else {
                return;
            };
            let Some(provider) = fetch.candidates.pop_front() else {
                break;
            };
            if !is_live(cluster, provider) {
                continue;
            }
            fetch.provider = provider;
            if !fetch.asked.contains(&provider) {
                fetch.asked.push(provider);
            }
            fetch.deadline = now + self.config.fetch_timeout;
            // Ask again for everything not yet in.
            fetch.asked_end = fetch.have.first_gap();
            fetch.resend_at = Some(now + self.config.resend_after(fetch.bulk));
            self.top_up(now, id, cluster);
            return;
        }
        // Nobody left to ask.
        if let Some(fetch) = self.fetching.remove(&id) {
            self.say_done(now, &fetch, cluster);
        }
        self.stats.failed += 1;
        self.push_event(FetchEvent::Failed { id });
        self.refuse(now, id, cluster);
        self.start_pending(now, cluster);
    }

    /// Drops the current provider of `id` (it lied, has none, or stalled)
    /// and asks the next.
    fn abandon(&mut self, now: Instant, id: MessageId, cluster: &mut dyn Cluster) {
        let Some(fetch) = self.fetching.get(&id) else {
            return;
        };
        self.stats.providers_abandoned += 1;
        // Frees our slot there, and our requests waiting in its queue.
        let _ = cluster.send_direct(now, fetch.provider, &encode(&Msg::Done { id }));
        self.next_provider(now, id, cluster);
    }

    fn say_done(&self, now: Instant, fetch: &Fetching, cluster: &mut dyn Cluster) {
        let id = fetch.offer.id;
        for &peer in &fetch.asked {
            let _ = cluster.send_direct(now, peer, &encode(&Msg::Done { id }));
        }
    }

    fn start_pending(&mut self, now: Instant, cluster: &mut dyn Cluster) {
        while self.fetching.len() < self.config.max_fetches {
            let Some(offer) = self.pending.pop_front() else {
                return;
            };
            self.start(now, offer, cluster);
        }
    }

    /// Bytes of `id` arrived from `from` at `offset`: store them, serve
    /// who waits for them, ask for more, and verify once all are in.
    fn on_bytes(&mut self, now: Instant, arrival: Arrival<'_>, cluster: &mut dyn Cluster) {
        let Arrival {
            from,
            id,
            offset,
            bytes,
            bulk,
        } = arrival;
        let Some(fetch) = self.fetching.get_mut(&id) else {
            // Not asked for, or no longer.
            self.stats.strangers_ignored += 1;
            return;
        };
        if fetch.provider != from || fetch.bulk != bulk {
            self.stats.strangers_ignored += 1;
            return;
        }
        let total = fetch.offer.len;
        let end = offset.saturating_add(bytes.len() as u64);
        if bytes.is_empty() || end > total {
            self.stats.refused += 1;
            return;
        }
        fetch.buf[offset as usize..end as usize].copy_from_slice(bytes);
        if fetch.have.add(offset, end) > 0 {
            fetch.deadline = now + self.config.fetch_timeout;
            fetch.resend_at = Some(now + self.config.resend_after(fetch.bulk));
        }
        if fetch.have.covered() == total {
            self.finish(now, id, cluster);
            return;
        }
        self.serve_waiting(now, id, cluster);
        self.top_up(now, id, cluster);
    }

    /// Every byte is in: verify, deliver, serve.
    fn finish(&mut self, now: Instant, id: MessageId, cluster: &mut dyn Cluster) {
        let Some(fetch) = self.fetching.get_mut(&id) else {
            return;
        };
        if sha256(&fetch.buf) != fetch.offer.sha256 {
            self.stats.hash_mismatches += 1;
            // Which bytes lied is unknown: start over with the next provider.
            fetch.have = Coverage::default();
            self.abandon(now, id, cluster);
            return;
        }
        let Some(fetch) = self.fetching.remove(&id) else {
            return;
        };
        self.say_done(now, &fetch, cluster);
        self.stats.delivered += 1;
        self.push_event(FetchEvent::Delivered {
            offer: fetch.offer.clone(),
            payload: fetch.buf.clone(),
        });
        self.hold(now, fetch.offer, fetch.buf, cluster);
        self.start_pending(now, cluster);
    }

    fn push_event(&mut self, event: FetchEvent) {
        if self.events.len() >= self.config.max_events.max(1) {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Keeps a verified payload for serving and serves who waits for it.
    fn hold(&mut self, now: Instant, offer: Offer, body: Vec<u8>, cluster: &mut dyn Cluster) {
        let id = offer.id;
        while self.held.len() >= self.config.max_held.max(1) {
            let oldest = self
                .held
                .iter()
                .min_by_key(|(id, h)| (h.until, **id))
                .map(|(id, _)| *id);
            match oldest {
                Some(old) => {
                    self.held.remove(&old);
                    self.serving.remove(&old);
                }
                None => break,
            }
        }
        self.held.insert(
            id,
            Held {
                offer,
                body,
                until: now + self.config.hold_time,
            },
        );
        self.serve_waiting(now, id, cluster);
    }

    /// Serves the requests waiting for `id`, as far as its bytes and the
    /// slots allow; the rest wait on.
    fn serve_waiting(&mut self, now: Instant, id: MessageId, cluster: &mut dyn Cluster) {
        if !self.requests.iter().any(|r| r.id == id) {
            return;
        }
        for request in self.take_requests(id) {
            self.on_want(now, request, cluster);
        }
    }

    /// The bytes of `part` of `id`, if this node has them (verified, or
    /// received while fetching).
    fn bytes_of(&self, id: MessageId, part: Part) -> Option<&[u8]> {
        let range = part.offset as usize..part.end() as usize;
        if let Some(held) = self.held.get(&id) {
            return held.body.get(range);
        }
        let fetch = self.fetching.get(&id)?;
        if fetch.have.contains(part) {
            fetch.buf.get(range)
        } else {
            None
        }
    }

    fn on_want(&mut self, now: Instant, request: Request, cluster: &mut dyn Cluster) {
        let Request {
            id,
            from,
            part,
            bulk,
            ..
        } = request;
        let Some(total) = self
            .held
            .get(&id)
            .map(|h| h.offer.len)
            .or_else(|| self.fetching.get(&id).map(|f| f.offer.len))
        else {
            if self.refused_ids.contains(&id) {
                let _ = cluster.send_direct(now, from, &encode(&Msg::Missing { id }));
            } else {
                // Its offer is still on its way, or waits for a fetch slot.
                self.queue(now, request, cluster);
            }
            return;
        };
        if part.end() > total || part.len > self.config.segment_len(bulk) {
            self.stats.refused += 1;
            return;
        }
        let slots = self.serving.entry(id).or_default();
        if !slots.contains_key(&from) && slots.len() >= self.config.max_serving {
            self.queue(now, request, cluster);
            return;
        }
        let Some(bytes) = self.bytes_of(id, part) else {
            // Not here yet: served when it arrives.
            self.queue(now, request, cluster);
            return;
        };
        let served = if bulk {
            let mut body = Vec::with_capacity(SEGMENT_OVERHEAD + bytes.len());
            body.push(Channel::Fetch.tag());
            body.extend(
                postcard::to_allocvec(&(id, part.offset)).expect("encoding into a Vec cannot fail"),
            );
            body.extend_from_slice(bytes);
            cluster.send_bulk(now, from, body).is_ok()
        } else {
            let piece = cluster
                .max_direct_len()
                .saturating_sub(PIECE_OVERHEAD)
                .max(1);
            let mut sent = true;
            for (i, chunk) in bytes.chunks(piece).enumerate() {
                let msg = Msg::Piece {
                    id,
                    offset: part.offset + (i * piece) as u64,
                    bytes: chunk.to_vec(),
                };
                if cluster.send_direct(now, from, &encode(&msg)).is_err() {
                    sent = false;
                    break;
                }
            }
            sent
        };
        if served {
            self.serving
                .entry(id)
                .or_default()
                .insert(from, now + self.config.fetch_timeout);
            self.stats.served += 1;
            self.stats.served_bytes += u64::from(part.len);
        } else {
            let _ = cluster.send_direct(now, from, &encode(&Msg::Missing { id }));
        }
    }

    fn queue(&mut self, now: Instant, request: Request, cluster: &mut dyn Cluster) {
        let expires = now + self.config.fetch_timeout;
        if let Some(waiting) = self
            .requests
            .iter_mut()
            .find(|r| r.id == request.id && r.from == request.from && r.part == request.part)
        {
            waiting.expires = expires;
            return;
        }
        if self.requests.len() >= self.config.max_queued_requests {
            self.stats.refused += 1;
            let id = request.id;
            let _ = cluster.send_direct(now, request.from, &encode(&Msg::Missing { id }));
            return;
        }
        self.requests.push(Request { expires, ..request });
    }

    fn on_done(&mut self, now: Instant, from: NodeId, id: MessageId, cluster: &mut dyn Cluster) {
        self.requests.retain(|r| !(r.id == id && r.from == from));
        let freed = self
            .serving
            .get_mut(&id)
            .is_some_and(|slots| slots.remove(&from).is_some());
        if freed {
            self.serve_waiting(now, id, cluster);
        }
    }

    fn on_missing(&mut self, now: Instant, from: NodeId, id: MessageId, cluster: &mut dyn Cluster) {
        if self
            .fetching
            .get(&id)
            .is_some_and(|fetch| fetch.provider == from)
        {
            self.abandon(now, id, cluster);
        }
    }

    fn on_segment(&mut self, now: Instant, from: NodeId, body: &[u8], cluster: &mut dyn Cluster) {
        let Ok(((id, offset), bytes)) = postcard::take_from_bytes::<(MessageId, u64)>(body) else {
            self.stats.refused += 1;
            return;
        };
        self.on_bytes(
            now,
            Arrival {
                from,
                id,
                offset,
                bytes,
                bulk: true,
            },
            cluster,
        );
    }

    fn on_direct(&mut self, now: Instant, from: NodeId, body: &[u8], cluster: &mut dyn Cluster) {
        let Ok(msg) = postcard::from_bytes::<Msg>(body) else {
            self.stats.refused += 1;
            return;
        };
        match msg {
            Msg::Want { id, part, bulk } => {
                if part.len == 0 {
                    self.stats.refused += 1;
                    return;
                }
                let request = Request {
                    id,
                    from,
                    part,
                    bulk,
                    expires: now,
                };
                self.on_want(now, request, cluster);
            }
            Msg::Piece { id, offset, bytes } => self.on_bytes(
                now,
                Arrival {
                    from,
                    id,
                    offset,
                    bytes: &bytes,
                    bulk: false,
                },
                cluster,
            ),
            Msg::Missing { id } => self.on_missing(now, from, id, cluster),
            Msg::Done { id } => self.on_done(now, from, id, cluster),
            Msg::Offer { .. } => self.stats.refused += 1,
        }
    }

    fn expire(&mut self, now: Instant, cluster: &mut dyn Cluster) {
        // Providers that made no progress in time.
        let stalled: Vec<MessageId> = self
            .fetching
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in stalled {
            self.abandon(now, id, cluster);
        }
        // Requests or pieces lost on the way: ask again for what is
        // missing.
        let resend: Vec<MessageId> = self
            .fetching
            .iter()
            .filter(|(_, f)| f.resend_at.is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in resend {
            self.resend_missing(now, id, cluster);
            self.top_up(now, id, cluster);
        }
        // Served peers that never said they were done.
        let mut freed = Vec::new();
        for (&id, slots) in self.serving.iter_mut() {
            let before = slots.len();
            slots.retain(|_, until| *until > now);
            if slots.len() < before {
                freed.push(id);
            }
        }
        self.serving.retain(|_, slots| !slots.is_empty());
        for id in freed {
            self.serve_waiting(now, id, cluster);
        }
        let before = self.held.len();
        self.held.retain(|_, held| held.until > now);
        if self.held.len() < before {
            let held = &self.held;
            let fetching = &self.fetching;
            self.serving
                .retain(|id, _| held.contains_key(id) || fetching.contains_key(id));
        }
        self.requests.retain(|r| r.expires > now);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let fetches = self
            .fetching
            .values()
            .flat_map(|f| [Some(f.deadline), f.resend_at]);
        let held = self.held.values().map(|h| Some(h.until));
        let slots = self
            .serving
            .values()
            .flat_map(|slots| slots.values().copied())
            .map(Some);
        let requests = self.requests.iter().map(|r| Some(r.expires));
        fetches
            .chain(held)
            .chain(slots)
            .chain(requests)
            .flatten()
            .min()
    }
}

/// The window of at most `window` bytes from `offset` of a payload of
/// `total` bytes.
fn window_from(offset: u64, total: u64, window: u32) -> Part {
    let len = (total.saturating_sub(offset)).min(u64::from(window)) as u32;
    Part { offset, len }
}

fn is_live(cluster: &dyn Cluster, id: NodeId) -> bool {
    cluster
        .members()
        .iter()
        .any(|m| m.id == id && matches!(m.liveness, Liveness::Alive | Liveness::Suspect))
}

/// Whom this node asks for payload `id`, in order: its ancestors in the
/// payload's tree (parent first, the origin last), then the other live
/// members in tree order.
fn providers(cluster: &dyn Cluster, id: MessageId, fanout: usize) -> Vec<NodeId> {
    let me = cluster.me();
    let mut ranked: Vec<NodeId> = cluster
        .members()
        .into_iter()
        .filter(|m| matches!(m.liveness, Liveness::Alive | Liveness::Suspect))
        .map(|m| m.id)
        .filter(|&n| n != id.origin)
        .collect();
    ranked.sort_by_key(|&n| (rank(n, id), n));
    ranked.dedup();
    ranked.insert(0, id.origin);
    let Some(mine) = ranked.iter().position(|&n| n == me) else {
        // This node does not see itself live: ask the origin.
        return vec![id.origin];
    };
    let fanout = fanout.max(1);
    let mut out = Vec::new();
    let mut at = mine;
    while at > 0 {
        at = (at - 1) / fanout;
        out.push(ranked[at]);
    }
    for (i, &n) in ranked.iter().enumerate() {
        if i != mine && !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// A member's place in payload `id`'s tree: FNV-1a over both, so that
/// every node computes the same order and each payload gets its own.
fn rank(member: NodeId, id: MessageId) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    let addr = |n: NodeId| match n.addr() {
        std::net::SocketAddr::V4(a) => (a.ip().to_ipv6_mapped().octets(), a.port()),
        std::net::SocketAddr::V6(a) => (a.ip().octets(), a.port()),
    };
    let (ip, port) = addr(member);
    eat(&ip);
    eat(&port.to_le_bytes());
    let (ip, port) = addr(id.origin);
    eat(&ip);
    eat(&port.to_le_bytes());
    eat(&id.generation.to_le_bytes());
    eat(&id.sequence.to_le_bytes());
    // A final mix, so that neighbouring ports do not rank together.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

impl Application for Fetch {
    fn handle_event(&mut self, now: Instant, event: &Event, cluster: &mut dyn Cluster) {
        match event {
            Event::Delivered { id, payload } => {
                if id.origin == cluster.me() {
                    return;
                }
                let Some(body) = Channel::Fetch.open(payload) else {
                    return;
                };
                match postcard::from_bytes::<Msg>(body) {
                    Ok(Msg::Offer { len, sha256, meta }) => {
                        let offer = Offer {
                            id: *id,
                            len,
                            sha256,
                            meta,
                        };
                        self.on_offer(now, offer, cluster);
                    }
                    _ => self.stats.refused += 1,
                }
            }
            Event::Direct { from, payload } => {
                if let Some(body) = Channel::Fetch.open(payload) {
                    self.on_direct(now, *from, body, cluster);
                }
            }
            _ => {}
        }
    }

    fn handle_timeout(&mut self, now: Instant, cluster: &mut dyn Cluster) {
        self.expire(now, cluster);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next_deadline()
    }

    fn handle_bulk(&mut self, now: Instant, from: NodeId, body: &[u8], cluster: &mut dyn Cluster) {
        if let Some(body) = Channel::Fetch.open(body) {
            self.on_segment(now, from, body, cluster);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{id as node, member};
    use gossip_core::Member;

    /// How a test node treats the requests it serves.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Behaviour {
        Honest,
        /// Flips a byte in everything it serves.
        Corrupt,
        /// Answers nothing.
        Stall,
    }

    enum Out {
        Broadcast(Vec<u8>),
        Direct(NodeId, Vec<u8>),
        Bulk(NodeId, Vec<u8>),
    }

    /// One node's view of the test network.
    struct Net {
        me: NodeId,
        members: Vec<Member>,
        bulk_len: usize,
        behaviour: Behaviour,
        out: Vec<Out>,
    }

    impl Net {
        fn corrupt(&self, mut bytes: Vec<u8>) -> Vec<u8> {
            if self.behaviour == Behaviour::Corrupt {
                if let Some(last) = bytes.last_mut() {
                    *last ^= 0xff;
                }
            }
            bytes
        }
    }

    impl Cluster for Net {
        fn me(&self) -> NodeId {
            self.me
        }
        fn members(&self) -> Vec<Member> {
            self.members.clone()
        }
        fn broadcast(&mut self, _: Instant, payload: &[u8]) -> Result<MessageId, CommandError> {
            self.out.push(Out::Broadcast(payload.to_vec()));
            Ok(MessageId {
                origin: self.me,
                generation: 1,
                sequence: self.out.len() as u64,
            })
        }
        fn send_direct(
            &mut self,
            _: Instant,
            to: NodeId,
            payload: &[u8],
        ) -> Result<(), CommandError> {
            let is_piece = matches!(
                Channel::Fetch
                    .open(payload)
                    .map(postcard::from_bytes::<Msg>),
                Some(Ok(Msg::Piece { .. }))
            );
            match (self.behaviour, is_piece) {
                (Behaviour::Stall, _) => {}
                (_, true) => {
                    let bytes = self.corrupt(payload.to_vec());
                    self.out.push(Out::Direct(to, bytes));
                }
                _ => self.out.push(Out::Direct(to, payload.to_vec())),
            }
            Ok(())
        }
        fn max_broadcast_len(&self) -> usize {
            1000
        }
        fn max_direct_len(&self) -> usize {
            1000
        }
        fn max_bulk_len(&self) -> usize {
            self.bulk_len
        }
        fn send_bulk(&mut self, _: Instant, to: NodeId, body: Vec<u8>) -> Result<(), CommandError> {
            if body.len() > self.bulk_len {
                return Err(CommandError::PayloadTooLarge {
                    len: body.len(),
                    max: self.bulk_len,
                });
            }
            if self.behaviour != Behaviour::Stall {
                let body = self.corrupt(body);
                self.out.push(Out::Bulk(to, body));
            }
            Ok(())
        }
    }

    /// Nodes on ports 1..=n, every one a member of every view; messages
    /// delivered in order, at once, unless dropped.
    struct TestNet {
        apps: Vec<Fetch>,
        nets: Vec<Net>,
        now: Instant,
        /// Drops every n-th direct piece (0: none).
        drop_every: usize,
        pieces_seen: usize,
        /// Drops every n-th request (`Want`) (0: none).
        drop_wants_every: usize,
        wants_seen: usize,
        delivered: Vec<Vec<(MessageId, Vec<u8>)>>,
    }

    impl TestNet {
        fn new(n: u16, bulk_len: usize, config: FetchConfig) -> Self {
            let members: Vec<Member> = (1..=n).map(|p| member(p, Liveness::Alive)).collect();
            Self {
                apps: (0..n).map(|_| Fetch::new(config.clone())).collect(),
                nets: (1..=n)
                    .map(|p| Net {
                        me: node(p),
                        members: members.clone(),
                        bulk_len,
                        behaviour: Behaviour::Honest,
                        out: Vec::new(),
                    })
                    .collect(),
                now: Instant::now(),
                drop_every: 0,
                pieces_seen: 0,
                drop_wants_every: 0,
                wants_seen: 0,
                delivered: vec![Vec::new(); n as usize],
            }
        }

        fn index(&self, id: NodeId) -> usize {
            self.nets
                .iter()
                .position(|n| n.me == id)
                .expect("a test node")
        }

        fn send(&mut self, from: usize, payload: &[u8]) -> MessageId {
            let (app, net) = (&mut self.apps[from], &mut self.nets[from]);
            let id = app
                .send(self.now, payload.to_vec(), b"meta".to_vec(), net)
                .unwrap();
            self.run();
            id
        }

        /// Delivers what is queued, then moves the clock to each deadline,
        /// until nothing is left to do.
        fn run(&mut self) {
            for _ in 0..10_000 {
                if self.pump() {
                    continue;
                }
                let next = self.apps.iter().filter_map(|a| a.poll_timeout()).min();
                let Some(at) = next else { return };
                self.now = self.now.max(at);
                for (app, net) in self.apps.iter_mut().zip(&mut self.nets) {
                    if app.poll_timeout().is_some_and(|d| d <= self.now) {
                        app.handle_timeout(self.now, net);
                    }
                }
                self.collect();
            }
            panic!("the test network did not settle");
        }

        /// Delivers every queued message once; whether there were any.
        fn pump(&mut self) -> bool {
            let mut any = false;
            for from in 0..self.nets.len() {
                let out = std::mem::take(&mut self.nets[from].out);
                let sender = self.nets[from].me;
                for item in out {
                    any = true;
                    match item {
                        Out::Broadcast(payload) => {
                            let event = Event::Delivered {
                                id: self.offer_id(from),
                                payload,
                            };
                            for to in 0..self.nets.len() {
                                if to != from {
                                    self.apps[to].handle_event(
                                        self.now,
                                        &event,
                                        &mut self.nets[to],
                                    );
                                }
                            }
                        }
                        Out::Direct(to, payload) => {
                            let msg = Channel::Fetch
                                .open(&payload)
                                .map(postcard::from_bytes::<Msg>);
                            let (seen, every) = match msg {
                                Some(Ok(Msg::Piece { .. })) => {
                                    (&mut self.pieces_seen, self.drop_every)
                                }
                                Some(Ok(Msg::Want { .. })) => {
                                    (&mut self.wants_seen, self.drop_wants_every)
                                }
                                _ => (&mut 0, 0),
                            };
                            if every > 0 {
                                *seen += 1;
                                if *seen % every == 0 {
                                    continue;
                                }
                            }
                            let to = self.index(to);
                            let event = Event::Direct {
                                from: sender,
                                payload,
                            };
                            self.apps[to].handle_event(self.now, &event, &mut self.nets[to]);
                        }
                        Out::Bulk(to, body) => {
                            let to = self.index(to);
                            self.apps[to].handle_bulk(self.now, sender, &body, &mut self.nets[to]);
                        }
                    }
                }
            }
            self.collect();
            any
        }

        /// The id `Net::broadcast` gave the offer: each test sends one.
        fn offer_id(&self, from: usize) -> MessageId {
            MessageId {
                origin: self.nets[from].me,
                generation: 1,
                sequence: 1,
            }
        }

        fn collect(&mut self) {
            for (i, app) in self.apps.iter_mut().enumerate() {
                while let Some(event) = app.poll_event() {
                    if let FetchEvent::Delivered { offer, payload } = event {
                        self.delivered[i].push((offer.id, payload));
                    }
                }
            }
        }
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn small() -> FetchConfig {
        FetchConfig {
            segment_bytes: 4096,
            window_bytes: 4096,
            // Trees a few levels deep even in these small networks, so
            // that nodes fetch from nodes other than the origin.
            tree_fanout: 4,
            max_serving: 4,
            ..FetchConfig::default()
        }
    }

    #[test]
    fn a_payload_reaches_every_node_once_over_the_bulk_path() {
        let mut net = TestNet::new(12, 1 << 20, small());
        let data = payload(50_000);
        let id = net.send(0, &data);
        for (i, got) in net.delivered.iter().enumerate().skip(1) {
            assert_eq!(got.len(), 1, "node {i}");
            assert_eq!(got[0], (id, data.clone()));
        }
        // Each node fetched it once: 11 copies served in all, spread
        // along the tree (no node serves more than its slots allow).
        let served: u64 = net.apps.iter().map(|a| a.stats().served_bytes).sum();
        assert_eq!(served, 11 * data.len() as u64);
        assert!(net.apps[0].stats().served_bytes < 11 * data.len() as u64);
        assert!(net.apps.iter().all(|a| a.stats().hash_mismatches == 0));
    }

    #[test]
    fn without_a_bulk_path_windowed_pieces_survive_loss() {
        let mut net = TestNet::new(6, 0, small());
        net.drop_every = 7;
        let data = payload(30_000);
        let id = net.send(2, &data);
        for (i, got) in net.delivered.iter().enumerate() {
            if i != 2 {
                assert_eq!(got.as_slice(), &[(id, data.clone())], "node {i}");
            }
        }
        // What is asked again is exactly what was lost (one piece in
        // seven, and some of the repeats), not whole windows.
        let served: u64 = net.apps.iter().map(|a| a.stats().served_bytes).sum();
        let once = 5 * data.len() as u64;
        assert!(served > once, "some pieces were served twice");
        assert!(served <= once * 13 / 10, "{served} bytes served for {once}");
    }

    #[test]
    fn lost_requests_on_the_bulk_path_are_asked_again_without_abandoning_the_provider() {
        let mut net = TestNet::new(12, 1 << 20, small());
        net.drop_wants_every = 5;
        let data = payload(50_000);
        let id = net.send(0, &data);
        for (i, got) in net.delivered.iter().enumerate().skip(1) {
            let once = got.len() == 1 && got[0] == (id, data.clone());
            assert!(once, "node {i} delivered {} payloads", got.len());
        }
        assert!(net.wants_seen >= 5, "some requests were lost");
        let stats = net.apps.iter().fold(FetchStats::default(), |mut all, app| {
            let s = app.stats();
            all.providers_abandoned += s.providers_abandoned;
            all.served_bytes += s.served_bytes;
            all
        });
        assert_eq!(
            stats.providers_abandoned, 0,
            "a lost request costs segment_timeout, not a provider"
        );
        // A lost request was never served: asking again sends nothing twice.
        assert_eq!(stats.served_bytes, 11 * data.len() as u64);
    }

    #[test]
    fn a_lying_provider_is_abandoned_for_the_next() {
        for bulk_len in [0, 1 << 20] {
            let mut net = TestNet::new(10, bulk_len, small());
            for liar in 1..10 {
                if liar % 2 == 1 {
                    net.nets[liar].behaviour = Behaviour::Corrupt;
                }
            }
            let data = payload(20_000);
            let id = net.send(0, &data);
            // Every node delivers the real payload, liars included (they
            // fetch honestly); nobody delivers a forgery.
            for (i, got) in net.delivered.iter().enumerate().skip(1) {
                assert_eq!(got.as_slice(), &[(id, data.clone())], "node {i}");
            }
            let stats =
                |f: fn(FetchStats) -> u64| net.apps.iter().map(|a| f(a.stats())).sum::<u64>();
            assert!(
                stats(|s| s.hash_mismatches) > 0,
                "some node was served lies"
            );
            assert!(stats(|s| s.providers_abandoned) > 0);
        }
    }

    #[test]
    fn a_stalling_provider_is_abandoned_after_the_timeout() {
        let mut net = TestNet::new(10, 1 << 20, small());
        for i in [1, 2, 3, 4] {
            net.nets[i].behaviour = Behaviour::Stall;
        }
        let start = net.now;
        let data = payload(20_000);
        let id = net.send(0, &data);
        for (i, got) in net.delivered.iter().enumerate().skip(5) {
            assert_eq!(got.as_slice(), &[(id, data.clone())], "node {i}");
        }
        let abandoned: u64 = net.apps.iter().map(|a| a.stats().providers_abandoned).sum();
        assert!(abandoned > 0);
        assert!(
            net.now >= start + small().fetch_timeout,
            "waited for the timeout"
        );
    }

    #[test]
    fn an_offer_from_a_non_member_is_ignored() {
        let mut net = TestNet::new(3, 1 << 20, small());
        let forged = encode(&Msg::Offer {
            len: 100,
            sha256: [0; 32],
            meta: Vec::new(),
        });
        let event = Event::Delivered {
            id: MessageId {
                origin: node(99),
                generation: 1,
                sequence: 1,
            },
            payload: forged,
        };
        net.apps[1].handle_event(net.now, &event, &mut net.nets[1]);
        assert_eq!(net.apps[1].stats().strangers_ignored, 1);
        assert_eq!(net.apps[1].fetching(), 0);
        assert!(net.nets[1].out.is_empty(), "nobody is asked for it");
        // A body nobody asked for is ignored too.
        let mut body = vec![Channel::Fetch.tag()];
        body.extend(postcard::to_allocvec(&(event_id(), 0u64)).unwrap());
        body.extend([1, 2, 3]);
        net.apps[1].handle_bulk(net.now, node(3), &body, &mut net.nets[1]);
        assert_eq!(net.apps[1].stats().strangers_ignored, 2);
    }

    fn event_id() -> MessageId {
        MessageId {
            origin: node(1),
            generation: 1,
            sequence: 1,
        }
    }

    fn offer_event(origin: u16, sequence: u64, len: u64, meta: usize) -> Event {
        Event::Delivered {
            id: MessageId {
                origin: node(origin),
                generation: 1,
                sequence,
            },
            payload: encode(&Msg::Offer {
                len,
                sha256: [0; 32],
                meta: vec![0; meta],
            }),
        }
    }

    #[test]
    fn limits_hold() {
        let config = FetchConfig {
            max_payload_bytes: 1000,
            max_meta_len: 10,
            max_fetches: 1,
            max_pending_offers: 1,
            max_queued_requests: 3,
            ..small()
        };
        let mut net = TestNet::new(3, 1 << 20, config.clone());
        let (app, cluster) = (&mut net.apps[1], &mut net.nets[1]);
        let now = net.now;
        // Above the payload or metadata limit: not fetched.
        app.handle_event(now, &offer_event(1, 1, 1001, 0), cluster);
        app.handle_event(now, &offer_event(1, 2, 10, 11), cluster);
        assert_eq!((app.fetching(), app.pending()), (0, 0));
        // One fetch at once, one waiting, the third dropped.
        for seq in 3..6 {
            app.handle_event(now, &offer_event(1, seq, 500, 0), cluster);
        }
        assert_eq!((app.fetching(), app.pending()), (1, 1));
        assert_eq!(app.stats().refused, 3);
        // Requests for payloads not (yet) known wait, within the bound;
        // beyond it they are answered "missing".
        cluster.out.clear();
        for seq in 10..20 {
            let want = encode(&Msg::Want {
                id: MessageId {
                    origin: node(1),
                    generation: 1,
                    sequence: seq,
                },
                part: Part {
                    offset: 0,
                    len: 100,
                },
                bulk: true,
            });
            let event = Event::Direct {
                from: node(3),
                payload: want,
            };
            app.handle_event(now, &event, cluster);
        }
        assert_eq!(app.queued_requests(), 3);
        let missing = cluster
            .out
            .iter()
            .filter(|o| matches!(o, Out::Direct(to, _) if *to == node(3)))
            .count();
        assert_eq!(missing, 7);
        // Sending above the limit is refused.
        assert!(matches!(
            app.send(now, payload(1001), Vec::new(), cluster),
            Err(FetchError::TooLarge {
                len: 1001,
                max: 1000
            })
        ));
        // Waiting requests expire.
        app.handle_timeout(now + config.fetch_timeout, cluster);
        assert_eq!(app.queued_requests(), 0);
    }

    #[test]
    fn an_offer_the_validator_refuses_is_neither_fetched_nor_served() {
        let mut net = TestNet::new(4, 1 << 20, small());
        net.apps[1] = Fetch::new(small()).with_validator(Box::new(|offer| offer.meta != b"meta"));
        let data = payload(10_000);
        net.send(0, &data);
        assert!(net.delivered[1].is_empty());
        assert_eq!(net.apps[1].stats().rejected, 1);
        assert_eq!(net.apps[1].stats().served, 0);
        // Everyone else still got it (from other providers if node 1 was
        // their parent: it answers "missing").
        assert!(net.delivered[2..].iter().all(|got| got.len() == 1));
    }
}
