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
//! different tree for each payload, and a node asked for a body it is
//! still fetching holds the request and serves it once its own copy is
//! verified. The tree needs no messages of its own and no help from the
//! strategy: Plumtree's tree would serve too, but the core does not tell
//! applications which peer a broadcast came from, and a tree computed from
//! the view spreads uploads evenly, where Plumtree's follows whoever was
//! fastest. Views that differ a little only move a node to another parent;
//! every node serves anyone who asks.
//!
//! **Which path the bytes take.** If the host has a bulk path
//! ([`Cluster::send_bulk`]; the agent over QUIC has one, a stream per
//! body), the provider sends the whole body on it at once. Otherwise
//! (UDP, the simulator) the body travels in *pieces* as direct messages,
//! each one frame, requested [`FetchConfig::window_bytes`] at a time: the
//! requester asks for the next window once the last one is in, and asks
//! again for what is missing after [`FetchConfig::piece_timeout`] without
//! a piece. That window is the flow control: a provider never sends more
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
    /// queue below. Default 4 (the tree's fanout: a node's children).
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
    /// Default 4; at least 1.
    pub tree_fanout: usize,
    /// A provider that sends nothing useful for this long is abandoned for
    /// the next; also how long a request waits here and a served peer
    /// holds its slot without saying it is done. Default 3 s.
    pub fetch_timeout: Duration,
    /// Providers tried per payload before it is given up. Default 8.
    pub max_attempts: usize,
    /// Pieces path: bytes asked for at once (the flow-control window).
    /// Default 64 KiB.
    pub window_bytes: u32,
    /// Pieces path: without a piece for this long, what is missing of the
    /// window is asked for again. Default 250 ms.
    pub piece_timeout: Duration,
    /// Use the host's bulk path when it has one (default); `false` sends
    /// pieces as direct messages even then.
    pub use_bulk_path: bool,
    /// Delivered payloads kept until taken with [`Fetch::poll_event`]; the
    /// oldest go first. Default 64.
    pub max_events: usize,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            max_payload_bytes: 4 << 20,
            max_meta_len: 512,
            max_fetches: 8,
            max_pending_offers: 64,
            max_serving: 4,
            max_queued_requests: 256,
            max_held: 16,
            hold_time: Duration::from_secs(60),
            tree_fanout: 4,
            fetch_timeout: Duration::from_secs(3),
            max_attempts: 8,
            window_bytes: 64 << 10,
            piece_timeout: Duration::from_millis(250),
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
/// broadcasts, the rest as direct messages; bodies on the bulk path are
/// the tag, the payload's id and the raw bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Msg {
    Offer {
        len: u64,
        sha256: [u8; 32],
        meta: Vec<u8>,
    },
    /// Send me this payload: whole on the bulk path (`part` `None`), or
    /// these bytes as pieces.
    Want { id: MessageId, part: Option<Part> },
    Piece {
        id: MessageId,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// I do not have (and will not have) this payload.
    Missing { id: MessageId },
    /// I have it, or gave up on you: free my slot and my waiting request.
    Done { id: MessageId },
}

/// A byte range of a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Part {
    offset: u64,
    len: u32,
}

/// What a piece's message adds to its bytes at most: tag, variant, the id
/// (an IPv6 node id of 19 bytes and two varints of up to 10), the offset
/// (up to 10) and the length prefix (up to 3).
const PIECE_OVERHEAD: usize = 1 + 1 + 19 + 10 + 10 + 10 + 3;

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
    /// Peers being served, until when their slot lasts.
    serving: BTreeMap<NodeId, Instant>,
}

/// A request that waits: for the payload, its offer, or a serving slot.
#[derive(Clone, Copy, Debug)]
struct Request {
    id: MessageId,
    from: NodeId,
    part: Option<Part>,
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
}

/// How the body comes.
#[derive(Debug)]
enum Transfer {
    /// Whole, on the bulk path.
    Whole,
    /// In pieces, a window at a time.
    Pieces {
        buf: Vec<u8>,
        have: Coverage,
        /// End of the window asked for.
        asked_end: u64,
        /// When to ask again for what is missing.
        resend_at: Instant,
    },
}

/// A payload being fetched.
#[derive(Debug)]
struct Fetching {
    offer: Offer,
    /// Providers still to try, in order.
    candidates: VecDeque<NodeId>,
    /// The provider asked now.
    provider: NodeId,
    /// Providers asked so far (a late body from one is welcome).
    asked: Vec<NodeId>,
    /// When the provider is abandoned unless it makes progress.
    deadline: Instant,
    transfer: Transfer,
}

/// Payloads larger than a frame, fetched from peers (see the
/// [module](self) docs).
pub struct Fetch {
    config: FetchConfig,
    validator: Option<Validator>,
    fetching: BTreeMap<MessageId, Fetching>,
    pending: VecDeque<Offer>,
    held: BTreeMap<MessageId, Held>,
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
        if offer.len > self.config.max_payload_bytes || offer.meta.len() > self.config.max_meta_len
        {
            self.stats.refused += 1;
            self.refuse(now, id, cluster);
            return;
        }
        if self.knows(id) {
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
        let (waiting, rest): (Vec<Request>, Vec<Request>) =
            self.requests.drain(..).partition(|r| r.id == id);
        self.requests = rest;
        for request in waiting {
            let _ = cluster.send_direct(now, request.from, &encode(&Msg::Missing { id }));
        }
    }

    /// Starts fetching `offer` from the first provider in its tree.
    fn start(&mut self, now: Instant, offer: Offer, cluster: &mut dyn Cluster) {
        let candidates = providers(cluster, offer.id, self.config.tree_fanout)
            .into_iter()
            .take(self.config.max_attempts.max(1))
            .collect();
        let transfer = self.transfer_for(&offer, now, cluster);
        let id = offer.id;
        self.fetching.insert(
            id,
            Fetching {
                offer,
                candidates,
                provider: id.origin,
                asked: Vec::new(),
                deadline: now,
                transfer,
            },
        );
        self.next_provider(now, id, cluster);
    }

    fn transfer_for(&self, offer: &Offer, now: Instant, cluster: &dyn Cluster) -> Transfer {
        let body_len = body_overhead() + offer.len as usize;
        if self.config.use_bulk_path && cluster.max_bulk_len() >= body_len {
            Transfer::Whole
        } else {
            Transfer::Pieces {
                buf: vec![0; offer.len as usize],
                have: Coverage::default(),
                asked_end: 0,
                resend_at: now,
            }
        }
    }

    /// Asks the next candidate, or gives the payload up if none is left.
    fn next_provider(&mut self, now: Instant, id: MessageId, cluster: &mut dyn Cluster) {
        let window = self.config.window_bytes.max(1);
        loop {
            let Some(fetch) = self.fetching.get_mut(&id) else {
                return;
            };
            let Some(provider) = fetch.candidates.pop_front() else {
                break;
            };
            let part = match &mut fetch.transfer {
                Transfer::Whole => None,
                Transfer::Pieces {
                    have,
                    asked_end,
                    resend_at,
                    ..
                } => {
                    let part = window_from(have.first_gap(), fetch.offer.len, window);
                    *asked_end = part.offset + u64::from(part.len);
                    *resend_at = now + self.config.piece_timeout;
                    Some(part)
                }
            };
            if cluster
                .send_direct(now, provider, &encode(&Msg::Want { id, part }))
                .is_ok()
            {
                fetch.provider = provider;
                if !fetch.asked.contains(&provider) {
                    fetch.asked.push(provider);
                }
                fetch.deadline = now + self.config.fetch_timeout;
                return;
            }
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
        // Frees our slot there, or our place in its queue.
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

    /// A body (whole, or the last piece) is in: verify, deliver, serve.
    fn finish(&mut self, now: Instant, id: MessageId, body: Vec<u8>, cluster: &mut dyn Cluster) {
        let Some(fetch) = self.fetching.get(&id) else {
            return;
        };
        let offer = &fetch.offer;
        if body.len() as u64 != offer.len || sha256(&body) != offer.sha256 {
            self.stats.hash_mismatches += 1;
            if let Some(fetch) = self.fetching.get_mut(&id) {
                if let Transfer::Pieces {
                    buf,
                    have,
                    asked_end,
                    ..
                } = &mut fetch.transfer
                {
                    // Which piece lied is unknown: start over elsewhere.
                    *buf = vec![0; fetch.offer.len as usize];
                    *have = Coverage::default();
                    *asked_end = 0;
                }
            }
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
            payload: body.clone(),
        });
        self.hold(now, fetch.offer, body, cluster);
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
                serving: BTreeMap::new(),
            },
        );
        self.serve_waiting(now, id, cluster);
    }

    /// Serves the requests waiting for `id`, as far as slots allow.
    fn serve_waiting(&mut self, now: Instant, id: MessageId, cluster: &mut dyn Cluster) {
        let (waiting, rest): (Vec<Request>, Vec<Request>) =
            self.requests.drain(..).partition(|r| r.id == id);
        self.requests = rest;
        for request in waiting {
            self.on_want(now, request.from, id, request.part, cluster);
        }
    }

    fn on_want(
        &mut self,
        now: Instant,
        from: NodeId,
        id: MessageId,
        part: Option<Part>,
        cluster: &mut dyn Cluster,
    ) {
        let Some(held) = self.held.get_mut(&id) else {
            if self.refused_ids.contains(&id) {
                let _ = cluster.send_direct(now, from, &encode(&Msg::Missing { id }));
            } else {
                // Being fetched here, or its offer is still on its way.
                self.queue(now, from, id, part, cluster);
            }
            return;
        };
        if !held.serving.contains_key(&from) && held.serving.len() >= self.config.max_serving {
            self.queue(now, from, id, part, cluster);
            return;
        }
        held.serving
            .insert(from, now + self.config.fetch_timeout);
        let served = match part {
            None => {
                let mut body = Vec::with_capacity(body_overhead() + held.body.len());
                body.push(Channel::Fetch.tag());
                body.extend(postcard::to_allocvec(&id).expect("encoding into a Vec cannot fail"));
                body.extend_from_slice(&held.body);
                match cluster.send_bulk(now, from, body) {
                    Ok(()) => held.body.len() as u64,
                    Err(_) => {
                        held.serving.remove(&from);
                        let _ = cluster.send_direct(now, from, &encode(&Msg::Missing { id }));
                        return;
                    }
                }
            }
            Some(part) => {
                let piece = cluster.max_direct_len().saturating_sub(PIECE_OVERHEAD).max(1);
                let start = part.offset.min(held.offer.len) as usize;
                let len = part.len.min(self.config.window_bytes.max(1)) as usize;
                let end = (start + len).min(held.body.len());
                let mut offset = start;
                while offset < end {
                    let stop = (offset + piece).min(end);
                    let msg = Msg::Piece {
                        id,
                        offset: offset as u64,
                        bytes: held.body[offset..stop].to_vec(),
                    };
                    if cluster.send_direct(now, from, &encode(&msg)).is_err() {
                        break;
                    }
                    offset = stop;
                }
                (offset - start) as u64
            }
        };
        self.stats.served += 1;
        self.stats.served_bytes += served;
    }

    fn queue(
        &mut self,
        now: Instant,
        from: NodeId,
        id: MessageId,
        part: Option<Part>,
        cluster: &mut dyn Cluster,
    ) {
        let expires = now + self.config.fetch_timeout;
        if let Some(request) = self
            .requests
            .iter_mut()
            .find(|r| r.id == id && r.from == from)
        {
            request.part = part;
            request.expires = expires;
            return;
        }
        if self.requests.len() >= self.config.max_queued_requests {
            self.stats.refused += 1;
            let _ = cluster.send_direct(now, from, &encode(&Msg::Missing { id }));
            return;
        }
        self.requests.push(Request {
            id,
            from,
            part,
            expires,
        });
    }

    fn on_done(&mut self, now: Instant, from: NodeId, id: MessageId, cluster: &mut dyn Cluster) {
        self.requests.retain(|r| !(r.id == id && r.from == from));
        if let Some(held) = self.held.get_mut(&id) {
            if held.serving.remove(&from).is_some() {
                self.serve_waiting(now, id, cluster);
            }
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

    fn on_piece(
        &mut self,
        now: Instant,
        from: NodeId,
        id: MessageId,
        offset: u64,
        bytes: &[u8],
        cluster: &mut dyn Cluster,
    ) {
        let window = self.config.window_bytes.max(1);
        let Some(fetch) = self.fetching.get_mut(&id) else {
            return;
        };
        let total = fetch.offer.len;
        let Transfer::Pieces {
            buf,
            have,
            asked_end,
            resend_at,
        } = &mut fetch.transfer
        else {
            self.stats.strangers_ignored += 1;
            return;
        };
        if fetch.provider != from {
            self.stats.strangers_ignored += 1;
            return;
        }
        let end = offset.saturating_add(bytes.len() as u64);
        if bytes.is_empty() || end > total {
            self.stats.refused += 1;
            return;
        }
        buf[offset as usize..end as usize].copy_from_slice(bytes);
        if have.add(offset, end) > 0 {
            fetch.deadline = now + self.config.fetch_timeout;
            *resend_at = now + self.config.piece_timeout;
        }
        if have.covered() == total {
            let body = std::mem::take(buf);
            self.finish(now, id, body, cluster);
            return;
        }
        let gap = have.first_gap();
        if gap >= *asked_end {
            // The window is in: ask for the next.
            let part = window_from(gap, total, window);
            *asked_end = part.offset + u64::from(part.len);
            let provider = fetch.provider;
            let _ = cluster.send_direct(now, provider, &encode(&Msg::Want { id, part: Some(part) }));
        }
    }

    fn on_body(&mut self, now: Instant, from: NodeId, body: &[u8], cluster: &mut dyn Cluster) {
        let Ok((id, bytes)) = postcard::take_from_bytes::<MessageId>(body) else {
            self.stats.refused += 1;
            return;
        };
        let asked = self.fetching.get(&id).is_some_and(|fetch| {
            matches!(fetch.transfer, Transfer::Whole) && fetch.asked.contains(&from)
        });
        if !asked {
            self.stats.strangers_ignored += 1;
            return;
        }
        let current = self.fetching.get(&id).is_some_and(|f| f.provider == from);
        if bytes.len() as u64 != self.fetching[&id].offer.len || sha256(bytes) != self.fetching[&id].offer.sha256 {
            self.stats.hash_mismatches += 1;
            if current {
                self.abandon(now, id, cluster);
            }
            return;
        }
        self.finish(now, id, bytes.to_vec(), cluster);
    }

    fn on_direct(&mut self, now: Instant, from: NodeId, body: &[u8], cluster: &mut dyn Cluster) {
        let Ok(msg) = postcard::from_bytes::<Msg>(body) else {
            self.stats.refused += 1;
            return;
        };
        match msg {
            Msg::Want { id, part } => {
                if part.is_some_and(|p| p.len == 0) {
                    self.stats.refused += 1;
                    return;
                }
                self.on_want(now, from, id, part, cluster)
            }
            Msg::Piece { id, offset, bytes } => self.on_piece(now, from, id, offset, &bytes, cluster),
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
        // Pieces lost on the way: ask again for what is missing.
        let window = self.config.window_bytes.max(1);
        for (&id, fetch) in self.fetching.iter_mut() {
            if let Transfer::Pieces {
                have,
                asked_end,
                resend_at,
                ..
            } = &mut fetch.transfer
            {
                if *resend_at <= now {
                    let part = window_from(have.first_gap(), fetch.offer.len, window);
                    *asked_end = part.offset + u64::from(part.len);
                    *resend_at = now + self.config.piece_timeout;
                    let _ = cluster.send_direct(
                        now,
                        fetch.provider,
                        &encode(&Msg::Want { id, part: Some(part) }),
                    );
                }
            }
        }
        // Served peers that never said they were done.
        let mut freed = Vec::new();
        for (&id, held) in self.held.iter_mut() {
            let before = held.serving.len();
            held.serving.retain(|_, until| *until > now);
            if held.serving.len() < before {
                freed.push(id);
            }
        }
        for id in freed {
            self.serve_waiting(now, id, cluster);
        }
        self.held.retain(|_, held| held.until > now);
        self.requests.retain(|r| r.expires > now);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let fetches = self.fetching.values().flat_map(|f| {
            let resend = match f.transfer {
                Transfer::Pieces { resend_at, .. } => Some(resend_at),
                Transfer::Whole => None,
            };
            [Some(f.deadline), resend]
        });
        let held = self
            .held
            .values()
            .flat_map(|h| std::iter::once(h.until).chain(h.serving.values().copied()))
            .map(Some);
        let requests = self.requests.iter().map(|r| Some(r.expires));
        fetches.chain(held).chain(requests).flatten().min()
    }
}

/// Bytes a bulk body adds to its payload at most: the tag and the id.
fn body_overhead() -> usize {
    1 + 19 + 10 + 10
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
            self.on_body(now, from, body, cluster);
        }
    }
}
