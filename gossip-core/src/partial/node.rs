//! The partial-view node: HyParView's views with a broadcast tree over the
//! active one.

// Ordered maps: deterministic iteration, and no hash collisions a peer
// could aim for with chosen ids.
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::{PartialConfig, PartialConfigError};
use super::wire::{BroadcastId, PartialDecodeError, PartialMessage};
use crate::NodeId;

/// What a [`PartialNode`] tells its host.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PartialEvent {
    /// A node entered the active view.
    NeighbourUp(NodeId),
    /// A node left the active view; `reason` says why. A
    /// [`Silent`](NeighbourDownReason::Silent) neighbour is this overlay's
    /// failure detection: nothing came from it for
    /// [`dead_after`](super::PartialConfig::dead_after), pings included.
    NeighbourDown {
        /// The former neighbour.
        id: NodeId,
        /// Why it left the active view.
        reason: NeighbourDownReason,
    },
    /// A broadcast arrived for the first time.
    Delivered {
        /// Its id.
        id: BroadcastId,
        /// Hops from its origin.
        hops: u16,
        /// The payload.
        payload: Vec<u8>,
    },
}

/// Why a neighbour left the active view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NeighbourDownReason {
    /// Nothing came from it for `dead_after`, pings unanswered: taken for
    /// crashed or cut off, and dropped from the passive view too.
    Silent,
    /// It said it dropped this node (it left, or made room for another);
    /// kept in the passive view.
    Disconnected,
    /// This node dropped it to make room for another; kept in the passive
    /// view.
    Replaced,
    /// This node left the overlay ([`PartialNode::leave`]).
    Left,
}

/// Why a broadcast was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PartialBroadcastError {
    /// Longer than `max_payload_len`.
    #[error("payload of {len} bytes exceeds {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Counters of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartialStats {
    /// Frames sent.
    pub frames_sent: u64,
    /// Frame bytes sent.
    pub bytes_sent: u64,
    /// Payload pushes sent (`Gossip` frames).
    pub gossip_sent: u64,
    /// Bytes of `IHave` frames sent.
    pub ihave_bytes_sent: u64,
    /// Ids announced in `IHave` frames.
    pub ids_announced: u64,
    /// Copies of payloads received that were already seen.
    pub duplicates: u64,
    /// Frames refused: undecodable, of another cluster, or from a node
    /// not allowed to send them.
    pub refused: u64,
    /// Of the refused frames, those labelled for another cluster
    /// ([`PartialDecodeError::WrongCluster`]): another overlay shares the
    /// network, or a node was started with the wrong label.
    pub wrong_cluster: u64,
    /// Grafts sent.
    pub grafts_sent: u64,
}

#[derive(Clone, Debug)]
struct Neighbour {
    id: NodeId,
    /// Last time anything came from it.
    heard: Instant,
    /// When it was last pinged.
    pinged: Option<Instant>,
    /// Payloads are pushed to it (a tree link) rather than announced.
    eager: bool,
    /// Graft answer budget: tokens and when they were counted.
    budget: (f64, Instant),
}

#[derive(Clone, Debug)]
struct Missing {
    announcers: Vec<NodeId>,
    deadline: Instant,
}

#[derive(Clone, Debug)]
struct Shuffle {
    nonce: u32,
    sent: Vec<NodeId>,
    deadline: Instant,
}

/// A node of a partial-view overlay: HyParView membership (Leitão, Pereira
/// and Rodrigues, 2007) with Plumtree broadcast (Leitão, Pereira and
/// Rodrigues, 2007) over its active view.
///
/// Each node knows a handful of neighbours (the *active view*, watched by
/// pings and refilled from the *passive view* when one falls silent) and a
/// reserve of addresses kept fresh by periodic shuffles. Memory and
/// background traffic per node do not grow with the cluster: this is the
/// membership for clusters beyond what full views serve. Broadcasts are
/// pushed along a spanning tree of the active links and announced by id on
/// the others; a missing id is grafted from an announcer.
///
/// Sans-IO like [`Node`](crate::Node): the host passes time, frames and
/// timeouts in and takes frames and events out. Randomness comes from a
/// seeded generator, so the same inputs give the same outputs.
///
/// ```
/// use std::time::Instant;
/// use gossip_core::partial::{PartialConfig, PartialNode};
/// use gossip_core::NodeId;
///
/// let a: NodeId = "10.0.0.1:7946".parse::<std::net::SocketAddr>().unwrap().into();
/// let b: NodeId = "10.0.0.2:7946".parse::<std::net::SocketAddr>().unwrap().into();
/// let now = Instant::now();
/// let mut na = PartialNode::new(a, PartialConfig::default(), 1, now).unwrap();
/// let mut nb = PartialNode::new(b, PartialConfig::default(), 2, now).unwrap();
/// nb.join(now, &[a]);
/// // Carry frames until both are quiet.
/// for _ in 0..4 {
///     while let Some((to, frame)) = nb.poll_transmit() {
///         assert_eq!(to, a);
///         na.handle_frame(now, b, &frame).unwrap();
///     }
///     while let Some((to, frame)) = na.poll_transmit() {
///         assert_eq!(to, b);
///         nb.handle_frame(now, a, &frame).unwrap();
///     }
/// }
/// assert_eq!(na.active().collect::<Vec<_>>(), vec![b]);
/// assert_eq!(nb.active().collect::<Vec<_>>(), vec![a]);
/// ```
#[derive(Debug)]
pub struct PartialNode {
    me: NodeId,
    config: PartialConfig,
    rng: ChaCha8Rng,
    active: Vec<Neighbour>,
    passive: Vec<NodeId>,
    contacts: Vec<NodeId>,
    next_join: Option<Instant>,
    /// An outstanding request to become someone's neighbour.
    asking: Option<(NodeId, Instant)>,
    /// Neighbour requests refused in a row.
    refusals: u32,
    shuffle: Option<Shuffle>,
    next_shuffle: Instant,
    next_ping_check: Instant,
    join_tokens: (f64, Instant),
    seen: BTreeSet<BroadcastId>,
    seen_order: VecDeque<BroadcastId>,
    held: BTreeMap<BroadcastId, (u16, Vec<u8>)>,
    /// Held ids in arrival order, with when they arrived.
    held_order: VecDeque<(BroadcastId, Instant)>,
    missing: BTreeMap<BroadcastId, Missing>,
    next_graft_check: Option<Instant>,
    lazy: Vec<(NodeId, BroadcastId)>,
    next_announce: Option<Instant>,
    out: VecDeque<(NodeId, Vec<u8>)>,
    events: VecDeque<PartialEvent>,
    stats: PartialStats,
    /// Set by [`leave`](Self::leave).
    left: bool,
}

impl PartialNode {
    /// A node at `me` with no neighbours yet; `seed` fixes its random
    /// choices.
    pub fn new(
        me: NodeId,
        config: PartialConfig,
        seed: u64,
        now: Instant,
    ) -> Result<Self, PartialConfigError> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Spread the shuffles of nodes started together.
        let first_shuffle = config.shuffle_interval.mul_f64(rng.random::<f64>());
        Ok(Self {
            me,
            rng,
            active: Vec::new(),
            passive: Vec::new(),
            contacts: Vec::new(),
            next_join: None,
            asking: None,
            refusals: 0,
            shuffle: None,
            next_shuffle: now + first_shuffle,
            next_ping_check: now + config.ping_interval,
            join_tokens: (config.joins_per_s, now),
            seen: BTreeSet::new(),
            seen_order: VecDeque::new(),
            held: BTreeMap::new(),
            held_order: VecDeque::new(),
            missing: BTreeMap::new(),
            next_graft_check: None,
            lazy: Vec::new(),
            next_announce: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: PartialStats::default(),
            left: false,
            config,
        })
    }

    /// This node's address.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The settings it runs with.
    pub fn config(&self) -> &PartialConfig {
        &self.config
    }

    /// The active view: the neighbours payloads travel to.
    pub fn active(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.active.iter().map(|n| n.id)
    }

    /// The passive view: the reserve.
    pub fn passive(&self) -> &[NodeId] {
        &self.passive
    }

    /// Active neighbours payloads are pushed to (tree links).
    pub fn eager(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.active.iter().filter(|n| n.eager).map(|n| n.id)
    }

    /// The counters.
    pub fn stats(&self) -> &PartialStats {
        &self.stats
    }

    /// Ids announced but not received yet.
    pub fn missing(&self) -> usize {
        self.missing.len()
    }

    /// Payloads held for grafts.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Joins the overlay through `contacts` (tried in turn until a
    /// neighbour answers).
    pub fn join(&mut self, now: Instant, contacts: &[NodeId]) {
        if self.left {
            return;
        }
        self.contacts = contacts.iter().copied().filter(|c| *c != self.me).collect();
        self.next_join = Some(now);
        self.retry_join(now);
    }

    /// Leaves the overlay: tells every active neighbour
    /// ([`Disconnect`](PartialMessage::Disconnect)), so they refill their
    /// views at once instead of after `dead_after`, and forgets its views
    /// and contacts. From then on the node sends nothing, ignores frames
    /// and has no timeout; a leave is final.
    pub fn leave(&mut self) {
        let neighbours: Vec<NodeId> = self.active().collect();
        for id in neighbours {
            self.send(id, &PartialMessage::Disconnect);
            self.remove_active(id, NeighbourDownReason::Left);
        }
        self.passive.clear();
        self.contacts.clear();
        self.next_join = None;
        self.asking = None;
        self.shuffle = None;
        self.missing.clear();
        self.next_graft_check = None;
        self.lazy.clear();
        self.next_announce = None;
        self.left = true;
    }

    /// Whether [`leave`](Self::leave) was called.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// Broadcasts `payload` to every node of the overlay.
    pub fn broadcast(
        &mut self,
        now: Instant,
        payload: &[u8],
    ) -> Result<BroadcastId, PartialBroadcastError> {
        if payload.len() > self.config.max_payload_len {
            return Err(PartialBroadcastError::TooLarge {
                len: payload.len(),
                max: self.config.max_payload_len,
            });
        }
        let id: BroadcastId = self.rng.random();
        self.remember(now, id, 0, payload.to_vec());
        self.spread(now, None, id, 0, payload);
        Ok(id)
    }

    /// The next frame to send and its destination.
    pub fn poll_transmit(&mut self) -> Option<(NodeId, Vec<u8>)> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<PartialEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.left {
            return None;
        }
        [
            Some(self.next_shuffle),
            Some(self.next_ping_check),
            self.next_join,
            self.asking.map(|(_, d)| d),
            self.next_graft_check,
            self.next_announce,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Handles a frame `from` a peer (its source address). Undecodable
    /// frames are refused with the reason; frames a sender is not entitled
    /// to send are dropped and counted.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        from: NodeId,
        bytes: &[u8],
    ) -> Result<(), PartialDecodeError> {
        let message = match PartialMessage::decode(bytes, &self.config) {
            Ok(m) => m,
            Err(e) => {
                self.stats.refused += 1;
                if e == PartialDecodeError::WrongCluster {
                    self.stats.wrong_cluster += 1;
                }
                return Err(e);
            }
        };
        if from == self.me || self.left {
            self.stats.refused += 1;
            return Ok(());
        }
        let neighbour = self.active.iter().position(|n| n.id == from);
        if let Some(i) = neighbour {
            self.active[i].heard = now;
            self.active[i].pinged = None;
        }
        let is_neighbour = neighbour.is_some();
        match message {
            PartialMessage::Join => self.on_join(now, from),
            PartialMessage::ForwardJoin { joiner, ttl } if is_neighbour => {
                self.on_forward_join(now, from, joiner, ttl)
            }
            PartialMessage::JoinAccept => self.on_join_accept(now, from),
            PartialMessage::Neighbour { urgent } => self.on_neighbour(now, from, urgent),
            PartialMessage::NeighbourReply { accepted } => {
                self.on_neighbour_reply(now, from, accepted)
            }
            PartialMessage::Disconnect if is_neighbour => {
                self.remove_active(from, NeighbourDownReason::Disconnected);
                self.add_passive(from);
            }
            PartialMessage::Shuffle {
                origin,
                ttl,
                nonce,
                sample,
            } if is_neighbour => self.on_shuffle(from, origin, ttl, nonce, sample),
            PartialMessage::ShuffleReply { nonce, sample } => self.on_shuffle_reply(nonce, sample),
            PartialMessage::Ping => self.send(from, &PartialMessage::Pong),
            PartialMessage::Pong => {}
            PartialMessage::Gossip { id, hops, payload } if is_neighbour => {
                self.on_gossip(now, from, id, hops, payload)
            }
            PartialMessage::IHave { ids } if is_neighbour => self.on_ihave(now, from, ids),
            PartialMessage::Graft { ids } if is_neighbour => self.on_graft(now, from, ids),
            PartialMessage::Prune if is_neighbour => self.set_eager(from, false),
            // Everything else needs an active link.
            _ => self.stats.refused += 1,
        }
        Ok(())
    }

    /// Runs what is due at `now`: joins, failure checks, refills,
    /// shuffles, grafts and announcements.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.left {
            return;
        }
        if self.next_join.is_some_and(|t| t <= now) {
            self.retry_join(now);
        }
        if self.asking.is_some_and(|(_, d)| d <= now) {
            // No answer: that address is probably gone.
            if let Some((peer, _)) = self.asking.take() {
                self.passive.retain(|p| *p != peer);
            }
        }
        if self.next_ping_check <= now {
            self.check_neighbours(now);
            self.next_ping_check = now + self.config.ping_interval / 4;
        }
        if self.shuffle.as_ref().is_some_and(|s| s.deadline <= now) {
            self.shuffle = None;
        }
        if self.next_shuffle <= now {
            self.start_shuffle(now);
            self.next_shuffle = now + self.config.shuffle_interval;
        }
        if self.next_graft_check.is_some_and(|t| t <= now) {
            self.graft_missing(now);
        }
        if self.next_announce.is_some_and(|t| t <= now) {
            self.flush_announcements();
        }
        self.refill(now);
    }

    // ----- views ---------------------------------------------------------

    fn retry_join(&mut self, now: Instant) {
        if !self.active.is_empty() || self.contacts.is_empty() {
            self.next_join = None;
            return;
        }
        let contact = self.contacts[self.rng.random_range(0..self.contacts.len())];
        self.send(contact, &PartialMessage::Join);
        self.next_join = Some(now + self.config.join_retry);
    }

    fn take_join_token(&mut self, now: Instant) -> bool {
        let rate = self.config.joins_per_s;
        let (tokens, at) = &mut self.join_tokens;
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + elapsed * rate).min(rate);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn on_join(&mut self, now: Instant, from: NodeId) {
        if self.is_active(from) {
            // A repeated join (our accept was lost): accept again.
            self.send(from, &PartialMessage::JoinAccept);
            return;
        }
        if !self.take_join_token(now) {
            self.stats.refused += 1;
            return;
        }
        self.add_active(now, from);
        self.send(from, &PartialMessage::JoinAccept);
        let walk = PartialMessage::ForwardJoin {
            joiner: from,
            ttl: self.config.active_walk,
        };
        let others: Vec<NodeId> = self.active().filter(|n| *n != from).collect();
        for n in others {
            self.send(n, &walk);
        }
    }

    fn on_forward_join(&mut self, now: Instant, from: NodeId, joiner: NodeId, ttl: u8) {
        if joiner == self.me || self.is_active(joiner) {
            return;
        }
        if ttl == 0 || self.active.len() <= 1 {
            if !self.take_join_token(now) {
                self.stats.refused += 1;
                return;
            }
            self.add_active(now, joiner);
            self.send(joiner, &PartialMessage::JoinAccept);
            return;
        }
        if ttl == self.config.passive_walk {
            self.add_passive(joiner);
        }
        let next = self.random_active_except(&[from, joiner]);
        match next {
            Some(next) => self.send(
                next,
                &PartialMessage::ForwardJoin {
                    joiner,
                    ttl: ttl - 1,
                },
            ),
            None => {
                if self.take_join_token(now) {
                    self.add_active(now, joiner);
                    self.send(joiner, &PartialMessage::JoinAccept);
                }
            }
        }
    }

    fn on_join_accept(&mut self, now: Instant, from: NodeId) {
        if self.is_active(from) {
            return;
        }
        // Taken only into free room: a stranger's accept never pushes a
        // neighbour out.
        if self.active.len() < self.config.active_size {
            self.add_active(now, from);
            if self.asking.is_some_and(|(p, _)| p == from) {
                self.asking = None;
            }
        } else {
            self.add_passive(from);
        }
    }

    fn on_neighbour(&mut self, now: Instant, from: NodeId, urgent: bool) {
        if self.is_active(from) {
            self.send(from, &PartialMessage::NeighbourReply { accepted: true });
            return;
        }
        let room = self.active.len() < self.config.active_size;
        let accepted = (room || urgent) && self.take_join_token(now);
        if accepted {
            self.add_active(now, from);
        } else {
            self.stats.refused += u64::from(!room && urgent);
        }
        self.send(from, &PartialMessage::NeighbourReply { accepted });
    }

    fn on_neighbour_reply(&mut self, now: Instant, from: NodeId, accepted: bool) {
        if self.asking.map(|(p, _)| p) != Some(from) {
            // Not asked: a stranger cannot make itself a neighbour.
            self.stats.refused += 1;
            return;
        }
        self.asking = None;
        if accepted {
            self.refusals = 0;
        } else {
            self.refusals = self.refusals.saturating_add(1);
        }
        if accepted && !self.is_active(from) {
            if self.active.len() < self.config.active_size {
                self.add_active(now, from);
            } else {
                // Filled meanwhile: tell it we are not linking after all.
                self.send(from, &PartialMessage::Disconnect);
            }
        }
    }

    fn refill(&mut self, now: Instant) {
        if self.active.len() >= self.config.active_size || self.asking.is_some() {
            return;
        }
        let candidates: Vec<NodeId> = self
            .passive
            .iter()
            .copied()
            .filter(|p| !self.is_active(*p))
            .collect();
        let Some(&peer) = candidates.choose(&mut self.rng) else {
            return;
        };
        // Urgent with fewer than half the view, or refused repeatedly with
        // two or more slots free. A node one short of full never is: the
        // neighbour an urgent request evicts is left one short, and must
        // not evict in turn, or the overlay would churn for ever.
        let free = self.config.active_size - self.active.len();
        let urgent = self.active.len() * 2 < self.config.active_size
            || (free >= 2 && self.refusals >= self.config.urgent_after_refusals);
        self.send(peer, &PartialMessage::Neighbour { urgent });
        self.asking = Some((peer, now + self.config.neighbour_timeout));
    }

    fn check_neighbours(&mut self, now: Instant) {
        let mut dead = Vec::new();
        let mut ping = Vec::new();
        for n in &mut self.active {
            let quiet = now.saturating_duration_since(n.heard);
            if quiet >= self.config.dead_after {
                dead.push(n.id);
            } else if quiet >= self.config.ping_interval
                && n.pinged
                    .is_none_or(|t| now.saturating_duration_since(t) >= self.config.ping_interval)
            {
                n.pinged = Some(now);
                ping.push(n.id);
            }
        }
        for id in dead {
            self.remove_active(id, NeighbourDownReason::Silent);
            // A silent node is not kept in reserve either.
            self.passive.retain(|p| *p != id);
        }
        for id in ping {
            self.send(id, &PartialMessage::Ping);
        }
    }

    fn start_shuffle(&mut self, now: Instant) {
        let Some(target) = self.random_active_except(&[]) else {
            return;
        };
        let mut sample = vec![self.me];
        let mut active: Vec<NodeId> = self.active().filter(|n| *n != target).collect();
        active.shuffle(&mut self.rng);
        sample.extend(active.into_iter().take(self.config.shuffle_active));
        let mut passive = self.passive.clone();
        passive.shuffle(&mut self.rng);
        sample.extend(passive.into_iter().take(self.config.shuffle_passive));
        let nonce = self.rng.random();
        self.shuffle = Some(Shuffle {
            nonce,
            sent: sample[1..].to_vec(),
            deadline: now + self.config.shuffle_interval,
        });
        self.send(
            target,
            &PartialMessage::Shuffle {
                origin: self.me,
                ttl: self.config.active_walk,
                nonce,
                sample,
            },
        );
    }

    fn on_shuffle(
        &mut self,
        from: NodeId,
        origin: NodeId,
        ttl: u8,
        nonce: u32,
        sample: Vec<NodeId>,
    ) {
        if origin == self.me {
            return;
        }
        if ttl > 0 && self.active.len() > 1 {
            if let Some(next) = self.random_active_except(&[from, origin]) {
                self.send(
                    next,
                    &PartialMessage::Shuffle {
                        origin,
                        ttl: ttl - 1,
                        nonce,
                        sample,
                    },
                );
                return;
            }
        }
        let mut reply = self.passive.clone();
        reply.shuffle(&mut self.rng);
        reply.truncate(sample.len());
        self.send(
            origin,
            &PartialMessage::ShuffleReply {
                nonce,
                sample: reply,
            },
        );
        self.integrate(sample, &[]);
    }

    fn on_shuffle_reply(&mut self, nonce: u32, sample: Vec<NodeId>) {
        match self.shuffle.take() {
            Some(s) if s.nonce == nonce => self.integrate(sample, &s.sent),
            other => {
                // Unasked: ignored, and an outstanding shuffle stays open.
                self.shuffle = other;
                self.stats.refused += 1;
            }
        }
    }

    /// Takes `sample` into the passive view, making room by dropping first
    /// what this node sent away (`sent`), then at random.
    fn integrate(&mut self, sample: Vec<NodeId>, sent: &[NodeId]) {
        let mut sent: Vec<NodeId> = sent.to_vec();
        for id in sample {
            if id == self.me || self.is_active(id) || self.passive.contains(&id) {
                continue;
            }
            if self.passive.len() >= self.config.passive_size {
                let victim = match sent.pop() {
                    Some(s) if self.passive.contains(&s) => Some(s),
                    _ => self.passive.choose(&mut self.rng).copied(),
                };
                if let Some(v) = victim {
                    self.passive.retain(|p| *p != v);
                }
            }
            if self.passive.len() < self.config.passive_size {
                self.passive.push(id);
            }
        }
    }

    fn add_active(&mut self, now: Instant, id: NodeId) {
        if id == self.me || self.is_active(id) {
            return;
        }
        if self.active.len() >= self.config.active_size {
            let victim = self.active[self.rng.random_range(0..self.active.len())].id;
            self.send(victim, &PartialMessage::Disconnect);
            self.remove_active(victim, NeighbourDownReason::Replaced);
            self.add_passive(victim);
        }
        self.passive.retain(|p| *p != id);
        self.active.push(Neighbour {
            id,
            heard: now,
            pinged: None,
            eager: true,
            budget: (self.config.graft_reply_bytes_per_s as f64, now),
        });
        self.next_join = None;
        self.events.push_back(PartialEvent::NeighbourUp(id));
        self.announce_recent(now, id);
    }

    /// Announces to a new neighbour what arrived within
    /// `reannounce_window`, newest first, at most `max_ids`: a broadcast
    /// under way while links were failing (its origin lost every
    /// neighbour, say) still crosses the new link, which grafts it.
    fn announce_recent(&mut self, now: Instant, peer: NodeId) {
        let window = self.config.reannounce_window;
        if window.is_zero() {
            return;
        }
        let recent: Vec<BroadcastId> = self
            .held_order
            .iter()
            .rev()
            .take_while(|(_, at)| now.saturating_duration_since(*at) <= window)
            .take(self.config.max_ids)
            .map(|(id, _)| *id)
            .collect();
        if recent.is_empty() {
            return;
        }
        self.lazy.extend(recent.into_iter().map(|id| (peer, id)));
        if self.next_announce.is_none() {
            self.next_announce = Some(now + self.config.announce_interval);
        }
    }

    fn remove_active(&mut self, id: NodeId, reason: NeighbourDownReason) {
        let before = self.active.len();
        self.active.retain(|n| n.id != id);
        if self.active.len() < before {
            self.lazy.retain(|(p, _)| *p != id);
            self.events
                .push_back(PartialEvent::NeighbourDown { id, reason });
            if self.active.is_empty() && !self.contacts.is_empty() && self.passive.is_empty() {
                // Alone with no reserve: start over through the contacts.
                self.next_join = Some(self.next_ping_check);
            }
        }
    }

    fn add_passive(&mut self, id: NodeId) {
        if id == self.me || self.is_active(id) || self.passive.contains(&id) {
            return;
        }
        if self.passive.len() >= self.config.passive_size {
            let i = self.rng.random_range(0..self.passive.len());
            self.passive.swap_remove(i);
        }
        self.passive.push(id);
    }

    fn is_active(&self, id: NodeId) -> bool {
        self.active.iter().any(|n| n.id == id)
    }

    fn random_active_except(&mut self, except: &[NodeId]) -> Option<NodeId> {
        let choices: Vec<NodeId> = self.active().filter(|n| !except.contains(n)).collect();
        choices.choose(&mut self.rng).copied()
    }

    // ----- broadcast tree -------------------------------------------------

    fn remember(&mut self, now: Instant, id: BroadcastId, hops: u16, payload: Vec<u8>) {
        if self.seen.insert(id) {
            self.seen_order.push_back(id);
            while self.seen_order.len() > self.config.max_seen {
                if let Some(old) = self.seen_order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
        if self.held.insert(id, (hops, payload)).is_none() {
            self.held_order.push_back((id, now));
            while self.held_order.len() > self.config.max_held {
                if let Some((old, _)) = self.held_order.pop_front() {
                    self.held.remove(&old);
                }
            }
        }
    }

    /// Pushes a payload to the tree links and queues its announcement on
    /// the others, `from` excepted.
    fn spread(
        &mut self,
        now: Instant,
        from: Option<NodeId>,
        id: BroadcastId,
        hops: u16,
        payload: &[u8],
    ) {
        let message = PartialMessage::Gossip {
            id,
            hops,
            payload: payload.to_vec(),
        };
        let frame = message.encode(&self.config.cluster_label);
        let links: Vec<(NodeId, bool)> = self
            .active
            .iter()
            .filter(|n| Some(n.id) != from)
            .map(|n| (n.id, n.eager))
            .collect();
        for (peer, eager) in links {
            if eager {
                self.stats.gossip_sent += 1;
                self.push_frame(peer, frame.clone());
            } else {
                self.lazy.push((peer, id));
            }
        }
        if !self.lazy.is_empty() && self.next_announce.is_none() {
            self.next_announce = Some(now + self.config.announce_interval);
        }
    }

    fn on_gossip(
        &mut self,
        now: Instant,
        from: NodeId,
        id: BroadcastId,
        hops: u16,
        payload: Vec<u8>,
    ) {
        if self.seen.contains(&id) {
            // A second copy: this link is redundant in the tree.
            self.stats.duplicates += 1;
            self.set_eager(from, false);
            self.send(from, &PartialMessage::Prune);
            return;
        }
        self.missing.remove(&id);
        // The link that brought the first copy is a tree link.
        self.set_eager(from, true);
        let hops = hops.saturating_add(1);
        self.remember(now, id, hops, payload.clone());
        self.spread(now, Some(from), id, hops, &payload);
        self.events
            .push_back(PartialEvent::Delivered { id, hops, payload });
    }

    fn on_ihave(&mut self, now: Instant, from: NodeId, ids: Vec<BroadcastId>) {
        for id in ids {
            if self.seen.contains(&id) {
                continue;
            }
            if let Some(m) = self.missing.get_mut(&id) {
                if m.announcers.len() < self.config.max_announcers && !m.announcers.contains(&from)
                {
                    m.announcers.push(from);
                }
                continue;
            }
            if self.missing.len() >= self.config.max_missing {
                continue;
            }
            let deadline = now + self.config.graft_after;
            self.missing.insert(
                id,
                Missing {
                    announcers: vec![from],
                    deadline,
                },
            );
            if self.next_graft_check.is_none_or(|t| t > deadline) {
                self.next_graft_check = Some(deadline);
            }
        }
    }

    fn graft_missing(&mut self, now: Instant) {
        let mut grafts: BTreeMap<NodeId, Vec<BroadcastId>> = BTreeMap::new();
        let mut given_up = Vec::new();
        let due: Vec<BroadcastId> = self
            .missing
            .iter()
            .filter(|(_, m)| m.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let active: Vec<NodeId> = self.active().collect();
            let Some(m) = self.missing.get_mut(&id) else {
                continue;
            };
            m.announcers.retain(|a| active.contains(a));
            if m.announcers.is_empty() {
                given_up.push(id);
                continue;
            }
            let peer = m.announcers.remove(0);
            // Asked again later from the next announcer if still missing;
            // the one asked stays last in line.
            m.announcers.push(peer);
            m.deadline = now + self.config.graft_after;
            grafts.entry(peer).or_default().push(id);
        }
        for id in given_up {
            self.missing.remove(&id);
        }
        for (peer, mut ids) in grafts {
            self.set_eager(peer, true);
            while !ids.is_empty() {
                let rest = ids.split_off(ids.len().min(self.config.max_ids));
                self.stats.grafts_sent += 1;
                self.send(peer, &PartialMessage::Graft { ids });
                ids = rest;
            }
        }
        self.next_graft_check = self.missing.values().map(|m| m.deadline).min();
    }

    fn on_graft(&mut self, now: Instant, from: NodeId, ids: Vec<BroadcastId>) {
        self.set_eager(from, true);
        let rate = self.config.graft_reply_bytes_per_s as f64;
        for id in ids {
            let Some((hops, payload)) = self.held.get(&id).cloned() else {
                continue;
            };
            let frame =
                PartialMessage::Gossip { id, hops, payload }.encode(&self.config.cluster_label);
            let Some(n) = self.active.iter_mut().find(|n| n.id == from) else {
                return;
            };
            let (tokens, at) = &mut n.budget;
            *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * rate).min(rate);
            *at = now;
            if *tokens < frame.len() as f64 {
                self.stats.refused += 1;
                return;
            }
            *tokens -= frame.len() as f64;
            self.stats.gossip_sent += 1;
            self.push_frame(from, frame);
        }
    }

    fn set_eager(&mut self, peer: NodeId, eager: bool) {
        if let Some(n) = self.active.iter_mut().find(|n| n.id == peer) {
            n.eager = eager;
        }
    }

    fn flush_announcements(&mut self) {
        self.next_announce = None;
        let mut by_peer: Vec<(NodeId, Vec<BroadcastId>)> = Vec::new();
        for (peer, id) in std::mem::take(&mut self.lazy) {
            match by_peer.iter_mut().find(|(p, _)| *p == peer) {
                Some((_, ids)) => ids.push(id),
                None => by_peer.push((peer, vec![id])),
            }
        }
        for (peer, mut ids) in by_peer {
            if !self.is_active(peer) {
                continue;
            }
            while !ids.is_empty() {
                let rest = ids.split_off(ids.len().min(self.config.max_ids));
                self.stats.ids_announced += ids.len() as u64;
                let frame = PartialMessage::IHave { ids }.encode(&self.config.cluster_label);
                self.stats.ihave_bytes_sent += frame.len() as u64;
                self.push_frame(peer, frame);
                ids = rest;
            }
        }
    }

    // ----- output ---------------------------------------------------------

    fn send(&mut self, to: NodeId, message: &PartialMessage) {
        self.push_frame(to, message.encode(&self.config.cluster_label));
    }

    fn push_frame(&mut self, to: NodeId, frame: Vec<u8>) {
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += frame.len() as u64;
        self.out.push_back((to, frame));
    }
}
