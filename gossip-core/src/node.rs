//! The sans-IO node: SWIM membership with Lifeguard extensions.

use core::time::Duration;
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::aggregate::{Aggregate, AggregateHost, NoAggregate};
use crate::config::Config;
use crate::error::{CommandError, ConfigError, RecvError};
use crate::id::{Generation, Incarnation, MessageId, NodeId};
use crate::membership::{
    is_live, member_hash, rank, Entry, FastMap, IndexedSet, MemberTable, Suspicion, UpdateQueue,
    Version,
};
use crate::stats::Stats;
use crate::store::RumorStore;
use crate::strategy::{Digest, GossipMessage, Host, NoStrategy, Rumor, Strategy};
use crate::wire::{
    self, Header, Liveness, Member, MemberRecord, Message, Status, WireRumor, PROTOCOL_VERSION,
};

/// A datagram the host must send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination address.
    pub to: SocketAddr,
    /// The encoded frame, at most `max_message_size` bytes.
    pub bytes: Vec<u8>,
}

/// Something the application may want to know about.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A member joined, came back to life, or restarted as a new generation.
    MemberUp(Member),
    /// A member failed a probe and is suspected; it may still refute.
    MemberSuspect(Member),
    /// A member was declared dead.
    MemberDown(Member),
    /// A member left gracefully.
    MemberLeft(Member),
    /// A live member changed its metadata or cleared a suspicion.
    MemberUpdated(Member),
    /// The aggregate's estimate changed (see [`Node::with_parts`]).
    Estimate(f64),
    /// An application broadcast reached this node for the first time.
    Delivered {
        /// Which broadcast.
        id: MessageId,
        /// The application's bytes.
        payload: Vec<u8>,
    },
}

/// A claim about a member, normalised from piggybacked updates and state
/// synchronisation entries.
#[derive(Clone, Debug)]
enum Claim {
    Alive(Vec<u8>),
    Suspect(NodeId),
    Dead(NodeId),
    Left,
}

impl Claim {
    fn liveness(&self) -> Liveness {
        match self {
            Claim::Alive(_) => Liveness::Alive,
            Claim::Suspect(_) => Liveness::Suspect,
            Claim::Dead(_) => Liveness::Dead,
            Claim::Left => Liveness::Left,
        }
    }
}

/// Lifecycle of the local node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Created; `join` not called yet.
    Idle,
    /// Running the protocol.
    Running,
    /// Announced its departure; only finishes spreading that news.
    Departed,
}

/// The probe this node has in flight.
#[derive(Debug)]
struct Probe {
    target: NodeId,
    seq: u32,
    /// When the direct ping times out and helpers are asked.
    direct_deadline: Instant,
    /// When the probe ends (the next probe starts then).
    end: Instant,
    indirect_sent: bool,
    /// Helpers asked to probe indirectly; each nack counts once, and only
    /// from one of them.
    helpers: Vec<NodeId>,
    nacked: Vec<NodeId>,
    acked: bool,
}

/// A probe this node runs on behalf of another member.
#[derive(Debug)]
struct IndirectRequest {
    origin: SocketAddr,
    origin_seq: u32,
    nacked: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Suspicion(NodeId),
    /// Ping a member we suspect once more, carrying the suspicion, in case
    /// every gossiped copy of it was lost.
    Remind(NodeId),
    Nack(u32),
    ForgetIndirect(u32),
}

/// One cluster member's protocol state machine.
///
/// It never reads a clock, never touches a socket and draws randomness only
/// from its own seeded ChaCha8 generator: the host feeds it time and bytes and
/// sends what it returns. The same seed and inputs give the same outputs.
///
/// ```
/// use std::time::{Duration, Instant};
/// use gossip_core::{Config, Generation, Node, NodeId};
///
/// let a_addr = "127.0.0.1:7001".parse().unwrap();
/// let b_addr = "127.0.0.1:7002".parse().unwrap();
/// let mut a = Node::new(Config::default(), NodeId::new(a_addr), Generation(1), 1).unwrap();
/// let mut b = Node::new(Config::default(), NodeId::new(b_addr), Generation(1), 2).unwrap();
/// let now = Instant::now();
/// a.join(now, &[]).unwrap();
/// b.join(now, &[a_addr]).unwrap();
/// // Shuttle frames between the two until both are quiet.
/// while let Some(t) = b.poll_transmit().or_else(|| a.poll_transmit()) {
///     let (to, from) = if t.to == a_addr { (&mut a, b_addr) } else { (&mut b, a_addr) };
///     to.handle_message(now, from, &t.bytes).unwrap();
/// }
/// assert_eq!(a.live_member_count(), 2);
/// assert_eq!(b.live_member_count(), 2);
/// ```
pub struct Node<S = NoStrategy, A = NoAggregate> {
    config: Config,
    me: NodeId,
    generation: Generation,
    incarnation: Incarnation,
    metadata: Vec<u8>,
    rng: ChaCha8Rng,
    phase: Phase,
    joined: bool,
    seeds: Vec<SocketAddr>,

    members: MemberTable,
    live: IndexedSet,
    dead: IndexedSet,
    view_hash: u64,

    probe_order: Vec<NodeId>,
    probe_cursor: usize,
    probe: Option<Probe>,
    next_seq: u32,
    indirect: FastMap<u32, IndirectRequest>,
    local_health: u32,

    next_probe_at: Option<Instant>,
    next_gossip_at: Option<Instant>,
    next_dead_probe_at: Option<Instant>,
    next_join_at: Option<Instant>,
    sync_allowed_at: Option<Instant>,
    timers: BTreeSet<(Instant, Timer)>,
    forget_queue: VecDeque<(Instant, NodeId)>,

    /// Bytes of state replies this node may still send now (may go negative).
    reply_tokens: f64,
    reply_tokens_at: Option<Instant>,

    pending: UpdateQueue,

    /// The dissemination strategy; taken out while one of its callbacks runs.
    strategy: Option<S>,
    store: RumorStore,
    broadcast_seq: u64,
    next_round_at: Option<Instant>,
    /// The aggregation algorithm; taken out while one of its callbacks runs.
    aggregate: Option<A>,
    last_estimate: Option<f64>,

    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl Node<NoStrategy> {
    /// Creates a membership-only node that will listen as `id`, in its
    /// `generation`-th life, drawing randomness from a ChaCha8 generator
    /// seeded with `seed`.
    pub fn new(
        config: Config,
        id: NodeId,
        generation: Generation,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        Self::with_strategy(config, id, generation, seed, NoStrategy)
    }
}

impl<S: Strategy> Node<S> {
    /// Like [`Node::new`], disseminating broadcasts with `strategy`.
    pub fn with_strategy(
        config: Config,
        id: NodeId,
        generation: Generation,
        seed: u64,
        strategy: S,
    ) -> Result<Self, ConfigError> {
        Node::with_parts(config, id, generation, seed, strategy, NoAggregate)
    }
}

impl<S: Strategy, A: Aggregate> Node<S, A> {
    /// Like [`Node::with_strategy`], also computing `aggregate`; its
    /// estimates surface as [`Event::Estimate`].
    pub fn with_parts(
        config: Config,
        id: NodeId,
        generation: Generation,
        seed: u64,
        strategy: S,
        aggregate: A,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        if let SocketAddr::V6(v6) = id.addr() {
            if v6.scope_id() != 0 || v6.flowinfo() != 0 {
                // The wire carries address and port only: peers could not
                // reach a scoped address, nor would we recognise our own frames.
                return Err(ConfigError::UnsupportedAddress(id.addr()));
            }
        }
        let store = RumorStore::new(config.max_stored_messages.get());
        let mut node = Self {
            config,
            me: id,
            generation,
            incarnation: Incarnation(0),
            metadata: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            phase: Phase::Idle,
            joined: false,
            seeds: Vec::new(),
            members: MemberTable::default(),
            live: IndexedSet::default(),
            dead: IndexedSet::default(),
            view_hash: 0,
            probe_order: Vec::new(),
            probe_cursor: 0,
            probe: None,
            next_seq: 0,
            indirect: FastMap::default(),
            local_health: 0,
            next_probe_at: None,
            next_gossip_at: None,
            next_dead_probe_at: None,
            next_join_at: None,
            sync_allowed_at: None,
            timers: BTreeSet::new(),
            forget_queue: VecDeque::new(),
            reply_tokens: 0.0,
            reply_tokens_at: None,
            pending: UpdateQueue::default(),
            store,
            strategy: Some(strategy),
            broadcast_seq: 0,
            next_round_at: None,
            aggregate: Some(aggregate),
            last_estimate: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        };
        node.view_hash = member_hash(id, node.own_version());
        Ok(node)
    }

    // ----- getters -------------------------------------------------------

    /// This node's identity.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters since creation.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.local_health = self.local_health;
        stats.pending_updates = self.pending.len() as u64;
        stats.stored_messages = self.store.len() as u64;
        stats
    }

    /// Every member this node knows, itself first, then the others in
    /// address order, including suspect, dead and departed ones still
    /// remembered.
    pub fn members(&self) -> impl Iterator<Item = Member> + '_ {
        core::iter::once(self.own_member()).chain(self.members.sorted().into_iter().map(
            |(&id, e)| Member {
                id,
                generation: e.generation,
                incarnation: e.incarnation,
                liveness: e.liveness,
                metadata: e.metadata.clone(),
            },
        ))
    }

    /// Members currently alive or suspect, this node included (unless it left).
    pub fn live_member_count(&self) -> usize {
        self.live.len() + usize::from(self.phase != Phase::Departed)
    }

    /// Summary of this node's view, compared with peers' to detect divergence.
    pub fn view_hash(&self) -> u64 {
        self.view_hash
    }

    /// Whether a seed (or any member) has answered the join, or this node
    /// founded the cluster.
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    // ----- commands ------------------------------------------------------

    /// Starts the protocol. With no seeds the node founds a cluster of one;
    /// otherwise it asks each seed for the member list and retries every
    /// `join_retry_interval` until one answers.
    pub fn join(&mut self, now: Instant, seeds: &[SocketAddr]) -> Result<(), CommandError> {
        match self.phase {
            Phase::Idle => {}
            Phase::Running => return Err(CommandError::AlreadyStarted),
            Phase::Departed => return Err(CommandError::Departed),
        }
        self.phase = Phase::Running;
        self.seeds = seeds
            .iter()
            .copied()
            .filter(|&s| s != self.me.addr())
            .collect();
        // Random phase offsets keep nodes started together from probing in lockstep.
        let jitter = |rng: &mut ChaCha8Rng, period: Duration| period.mul_f64(rng.random::<f64>());
        self.next_probe_at = Some(now + jitter(&mut self.rng, self.config.probe_interval));
        self.next_gossip_at = Some(now + jitter(&mut self.rng, self.config.gossip_interval));
        self.next_round_at = Some(now + jitter(&mut self.rng, self.config.gossip_interval));
        if !self.config.dead_probe_interval.is_zero() {
            self.next_dead_probe_at = Some(now + self.config.dead_probe_interval);
        }
        if self.seeds.is_empty() {
            self.joined = true;
        } else {
            self.send_join();
            self.next_join_at = Some(now + self.config.join_retry_interval);
        }
        Ok(())
    }

    /// Announces a graceful departure. The node keeps gossiping the news until
    /// its retransmit limit, then goes quiet.
    pub fn leave(&mut self, now: Instant) -> Result<(), CommandError> {
        if self.phase != Phase::Running {
            return Err(CommandError::Departed);
        }
        self.bump_incarnation(self.incarnation);
        self.phase = Phase::Departed;
        self.probe = None;
        self.next_probe_at = None;
        self.next_dead_probe_at = None;
        self.next_join_at = None;
        self.next_round_at = None;
        // A departed node judges nobody: drop pending suspicions and probes
        // run for others, so only the farewell gossip remains.
        self.timers.clear();
        self.indirect.clear();
        self.enqueue(MemberRecord {
            id: self.me,
            generation: self.generation,
            incarnation: self.incarnation,
            status: Status::Left,
        });
        // Tell a few members right away rather than at the next gossip round.
        self.gossip_round(now);
        Ok(())
    }

    /// Publishes new metadata for this node, at most `max_metadata_len` bytes.
    pub fn set_metadata(&mut self, _now: Instant, metadata: Vec<u8>) -> Result<(), CommandError> {
        if metadata.len() > self.config.max_metadata_len {
            return Err(CommandError::MetadataTooLong {
                len: metadata.len(),
                max: self.config.max_metadata_len,
            });
        }
        if self.phase == Phase::Departed {
            return Err(CommandError::Departed);
        }
        self.metadata = metadata;
        self.bump_incarnation(self.incarnation);
        Ok(())
    }

    /// Sends an application payload to the cluster through the strategy.
    /// The payload must fit one frame (see [`Node::max_payload_len`]).
    /// Without a strategy ([`NoStrategy`]) it returns
    /// [`CommandError::NoStrategy`]; on any error nothing changes.
    pub fn broadcast(&mut self, _now: Instant, payload: &[u8]) -> Result<MessageId, CommandError> {
        if !S::ENABLED {
            return Err(CommandError::NoStrategy);
        }
        match self.phase {
            Phase::Idle => return Err(CommandError::NotStarted),
            Phase::Departed => return Err(CommandError::Departed),
            Phase::Running => {}
        }
        let max = self.max_payload_len();
        if payload.len() > max {
            return Err(CommandError::PayloadTooLarge {
                len: payload.len(),
                max,
            });
        }
        self.broadcast_seq += 1;
        let id = MessageId {
            origin: self.me,
            generation: self.generation.0,
            sequence: self.broadcast_seq,
        };
        self.store.insert(id, payload.to_vec(), 0);
        self.stats.broadcasts += 1;
        self.run_strategy(|strategy, host| strategy.on_rumor(host, Rumor { id, hops: 0 }, None));
        Ok(id)
    }

    /// Largest payload [`broadcast`](Self::broadcast) accepts: one frame
    /// minus the header and the rumor's own fields.
    pub fn max_payload_len(&self) -> usize {
        self.config.max_message_size.get()
            - wire::header_budget(&self.config)
            - wire::RUMOR_OVERHEAD
    }

    /// The transport lost its connection to `peer`: treat it as a failed
    /// probe and suspect it.
    pub fn peer_unreachable(&mut self, now: Instant, peer: NodeId) {
        if self.phase == Phase::Running {
            self.suspect(now, peer);
        }
    }

    // ----- outputs -------------------------------------------------------

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    /// `None` means no timer is armed (not started, or departed and quiet).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
        };
        consider(self.next_probe_at);
        if let Some(probe) = &self.probe {
            if !probe.acked && !probe.indirect_sent {
                consider(Some(probe.direct_deadline));
            }
            consider(Some(probe.end));
        }
        if !self.pending.is_empty() && !self.live.is_empty() {
            consider(self.next_gossip_at);
        }
        if !self.dead.is_empty() {
            consider(self.next_dead_probe_at);
        }
        if A::ENABLED || self.strategy.as_ref().is_some_and(Strategy::wants_rounds) {
            consider(self.next_round_at);
        }
        consider(self.next_join_at);
        consider(self.timers.first().map(|&(t, _)| t));
        consider(self.forget_queue.front().map(|&(t, _)| t));
        earliest
    }

    // ----- inputs --------------------------------------------------------

    /// Runs every timer due at `now`. Calling it early does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Idle {
            return;
        }
        self.advance_probe(now);
        if self.next_probe_at.is_some_and(|t| t <= now) {
            self.start_probe(now);
        }
        if self.next_gossip_at.is_some_and(|t| t <= now) {
            self.gossip_round(now);
        }
        if self.next_round_at.is_some_and(|t| t <= now) && self.phase == Phase::Running {
            self.next_round_at = Some(now + self.config.gossip_interval);
            if self.strategy.as_ref().is_some_and(Strategy::wants_rounds) {
                self.run_strategy(|strategy, host| strategy.on_round(host));
            }
            if A::ENABLED {
                self.run_aggregate(|aggregate, host| aggregate.on_round(host));
            }
        }
        if self.next_dead_probe_at.is_some_and(|t| t <= now) {
            self.next_dead_probe_at = Some(now + self.config.dead_probe_interval);
            if let Some(target) = self.dead.choose(&mut self.rng) {
                self.stats.dead_probes_sent += 1;
                let seq = self.next_seq();
                self.send_ping(target.addr(), seq);
            }
        }
        if self.next_join_at.is_some_and(|t| t <= now) {
            if self.joined {
                self.next_join_at = None;
            } else {
                self.send_join();
                self.next_join_at = Some(now + self.config.join_retry_interval);
            }
        }
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.fire(now, timer);
        }
        while let Some(&(at, id)) = self.forget_queue.front() {
            if at > now {
                break;
            }
            self.forget_queue.pop_front();
            let retention = self.config.dead_retention;
            let Some(entry) = self.members.get_mut(&id) else {
                continue;
            };
            entry.forget_queued = false;
            match entry.down_since.filter(|_| !is_live(entry.liveness)) {
                Some(since) if since + retention <= now => {
                    self.members.remove(&id);
                    self.dead.remove(id);
                }
                // Went down again since this entry was queued: wait for the
                // retention of the latest departure.
                Some(since) => {
                    entry.forget_queued = true;
                    self.forget_queue.push_back((since + retention, id));
                }
                None => {}
            }
        }
    }

    /// Processes one received frame. `from` is the transport's source
    /// address, where answers go. On error nothing but the error counter
    /// changes.
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), RecvError> {
        let result = self.receive(now, from, bytes);
        match &result {
            Ok(()) => {
                self.stats.frames_received += 1;
                self.stats.bytes_received += bytes.len() as u64;
            }
            Err(_) => self.stats.recv_errors += 1,
        }
        result
    }

    fn receive(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> Result<(), RecvError> {
        if self.phase == Phase::Departed {
            return Err(RecvError::Departed);
        }
        let (header, message) = wire::decode(&self.config, bytes)?;
        if header.sender == self.me {
            return Err(RecvError::FromSelf);
        }
        // The frame is fully validated: below, only an aggregate share that
        // does not decode as this node's share type can still fail, and it
        // fails before touching any state.
        if self.phase == Phase::Idle {
            return Ok(());
        }
        let sender = header.sender;
        match message {
            Message::Ping {
                seq,
                view_hash,
                updates,
            } => {
                self.apply_records(now, updates);
                // A member we suspect or believe dead is talking to us: tell it
                // so first, so it can refute at once instead of waiting for
                // gossip (whose bounded retransmissions may all have been lost).
                let verdict = self
                    .members
                    .get(&sender)
                    .is_some_and(|e| {
                        matches!(e.liveness, Liveness::Suspect | Liveness::Dead)
                            && e.version() >= (header.generation, header.incarnation)
                    })
                    .then(|| self.record_of(sender));
                self.send_with_updates(from, verdict, |updates| Message::Ack { seq, updates });
                if u64::from_le_bytes(view_hash) != self.view_hash && from == sender.addr() {
                    self.maybe_start_sync(now, from);
                }
            }
            Message::Ack { seq, updates } => {
                self.apply_records(now, updates);
                self.on_ack(seq);
            }
            Message::PingReq {
                seq,
                target,
                updates,
            } => {
                self.apply_records(now, updates);
                let my_seq = self.next_seq();
                self.indirect.insert(
                    my_seq,
                    IndirectRequest {
                        origin: from,
                        origin_seq: seq,
                        nacked: false,
                    },
                );
                // Lifeguard: answer with a nack well before the requester's
                // own deadline if the target stays silent.
                let nack_at = now + self.config.probe_timeout.mul_f64(0.8);
                self.timers.insert((nack_at, Timer::Nack(my_seq)));
                self.timers.insert((
                    now + self.config.probe_interval,
                    Timer::ForgetIndirect(my_seq),
                ));
                self.stats.indirect_pings_sent += 1;
                self.send_ping(target.addr(), my_seq);
            }
            Message::Nack { seq, updates } => {
                self.apply_records(now, updates);
                if let Some(probe) = &mut self.probe {
                    if probe.seq == seq
                        && probe.helpers.contains(&sender)
                        && !probe.nacked.contains(&sender)
                    {
                        probe.nacked.push(sender);
                    }
                }
            }
            Message::Gossip { updates } => self.apply_records(now, updates),
            Message::Rumors { items } => {
                // A rumor must fit a frame of ours too, or relaying it would
                // produce a frame every peer refuses.
                let max = self.max_payload_len();
                if let Some(item) = items.iter().find(|item| item.payload.len() > max) {
                    return Err(RecvError::PayloadTooLarge {
                        len: item.payload.len(),
                        max,
                    });
                }
                for item in items {
                    let rumor = Rumor {
                        id: item.id,
                        hops: item.hops.saturating_add(1),
                    };
                    if self.store.insert(item.id, item.payload.clone(), rumor.hops) {
                        self.stats.rumors_delivered += 1;
                        self.events.push_back(Event::Delivered {
                            id: item.id,
                            payload: item.payload,
                        });
                        self.run_strategy(|strategy, host| {
                            strategy.on_rumor(host, rumor, Some(sender))
                        });
                    } else {
                        self.stats.rumors_duplicate += 1;
                        self.run_strategy(|strategy, host| {
                            strategy.on_duplicate(host, rumor, sender)
                        });
                    }
                }
            }
            Message::Pull {
                digest,
                reciprocate,
            } => {
                // Answers go to the claimed sender, and may be large: answer
                // only a request that comes from that very address, within
                // the same byte budget as state replies, so a forged request
                // cannot aim a node's whole store at a third party.
                if from != sender.addr() {
                    return Err(RecvError::SenderMismatch);
                }
                if self.allow_state_reply(now) {
                    let sent_before = self.stats.bytes_sent;
                    self.run_strategy(|strategy, host| {
                        strategy.on_pull(host, sender, &digest, reciprocate)
                    });
                    self.reply_tokens -= (self.stats.bytes_sent - sent_before) as f64;
                }
            }
            Message::Aggregate { share } => {
                let share = wire::decode_share::<A::Share>(&share)?;
                self.stats.shares_received += 1;
                self.run_aggregate(|aggregate, host| aggregate.on_share(host, sender, share));
            }
            Message::Feedback { known } => {
                self.run_strategy(|strategy, host| strategy.on_feedback(host, sender, &known));
            }
            Message::Join { metadata } => {
                let version = (header.generation, header.incarnation);
                self.apply_claim(now, sender, version, Claim::Alive(metadata), true);
                if self.allow_state_reply(now) {
                    self.stats.joins_answered += 1;
                    self.send_state(from, false);
                }
            }
            Message::Sync {
                reply,
                after,
                through,
                entries,
            } => {
                self.joined = true;
                // What the sender listed, to answer with only what it lacks.
                let mut listed: Vec<(NodeId, Version, u8)> = if reply {
                    entries
                        .iter()
                        .map(|e| (e.id, (e.generation, e.incarnation), rank(e.liveness)))
                        .collect()
                } else {
                    Vec::new()
                };
                listed.sort_unstable();
                for entry in entries {
                    let claim = match entry.liveness {
                        Liveness::Alive => Claim::Alive(entry.metadata.clone()),
                        Liveness::Suspect => Claim::Suspect(sender),
                        // A death reported by bulk state is only a suspicion
                        // here: the member gets the chance to refute it, so one
                        // stale view (say, from across a healed partition)
                        // cannot kill healthy members outright.
                        Liveness::Dead => Claim::Suspect(sender),
                        Liveness::Left => Claim::Left,
                    };
                    let version = (entry.generation, entry.incarnation);
                    if entry.liveness == Liveness::Suspect {
                        // Bulk state may introduce a member we never heard of
                        // in a suspect state: learn it as alive first. (Dead
                        // strangers are not worth learning, as with gossip.)
                        if !self.members.contains_key(&entry.id) && entry.id != self.me {
                            self.apply_claim(
                                now,
                                entry.id,
                                version,
                                Claim::Alive(entry.metadata),
                                false,
                            );
                        }
                    }
                    self.apply_claim(now, entry.id, version, claim, false);
                }
                if reply && self.allow_state_reply(now) {
                    if after.is_none() {
                        self.stats.syncs_answered += 1;
                    }
                    self.send_missing_state(from, (after, through), &listed);
                }
            }
        }
        Ok(())
    }

    // ----- probing -------------------------------------------------------

    fn health_scale(&self) -> u32 {
        1 + self.local_health
    }

    fn adjust_health(&mut self, delta: i64) {
        let next = (i64::from(self.local_health) + delta)
            .clamp(0, i64::from(self.config.max_local_health));
        self.local_health = next as u32;
    }

    fn next_seq(&mut self) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    fn next_probe_target(&mut self) -> Option<NodeId> {
        // SWIM's round-robin over a shuffled list bounds the time until every
        // member is probed, unlike independent random picks.
        for _ in 0..2 {
            while self.probe_cursor < self.probe_order.len() {
                let candidate = self.probe_order[self.probe_cursor];
                self.probe_cursor += 1;
                if self
                    .members
                    .get(&candidate)
                    .is_some_and(|e| is_live(e.liveness))
                {
                    return Some(candidate);
                }
            }
            self.probe_order.clear();
            self.probe_order.extend_from_slice(self.live.as_slice());
            shuffle(&mut self.rng, &mut self.probe_order);
            self.probe_cursor = 0;
            if self.probe_order.is_empty() {
                return None;
            }
        }
        None
    }

    fn start_probe(&mut self, now: Instant) {
        let scale = self.health_scale();
        let period = self.config.probe_interval * scale;
        self.next_probe_at = Some(now + period);
        let Some(target) = self.next_probe_target() else {
            self.probe = None;
            return;
        };
        let seq = self.next_seq();
        self.probe = Some(Probe {
            target,
            seq,
            direct_deadline: now + self.config.probe_timeout * scale,
            end: now + period,
            indirect_sent: false,
            helpers: Vec::new(),
            nacked: Vec::new(),
            acked: false,
        });
        self.stats.probes_sent += 1;
        self.send_ping(target.addr(), seq);
    }

    fn advance_probe(&mut self, now: Instant) {
        let Some(probe) = &mut self.probe else { return };
        if !probe.acked && !probe.indirect_sent && probe.direct_deadline <= now {
            probe.indirect_sent = true;
            let (target, seq) = (probe.target, probe.seq);
            let helpers = self.live.choose_many(
                &mut self.rng,
                self.config.indirect_probes as usize,
                &[target],
            );
            if let Some(probe) = &mut self.probe {
                probe.helpers.clone_from(&helpers);
            }
            for helper in helpers {
                self.send_with_updates(helper.addr(), None, |updates| Message::PingReq {
                    seq,
                    target,
                    updates,
                });
            }
        }
        let Some(probe) = &self.probe else { return };
        if probe.end > now {
            return;
        }
        let probe = self.probe.take().expect("probe present");
        if probe.acked {
            return;
        }
        self.stats.probes_failed += 1;
        // Lifeguard: missing nacks mean our own network or process is slow,
        // so back off before accusing others. Without helpers, count one.
        let missed = if probe.helpers.is_empty() {
            1
        } else {
            (probe.helpers.len() - probe.nacked.len()) as u32
        };
        self.adjust_health(i64::from(missed));
        self.suspect(now, probe.target);
        // A helper's nack says its own ping to the target went unanswered:
        // an independent failed probe, so it confirms the suspicion at once
        // instead of waiting for other members to happen to probe it.
        if let Some(entry) = self.members.get(&probe.target) {
            if entry.liveness == Liveness::Suspect {
                let version = entry.version();
                for helper in probe.nacked {
                    self.apply_claim(now, probe.target, version, Claim::Suspect(helper), true);
                }
            }
        }
    }

    fn on_ack(&mut self, seq: u32) {
        if let Some(probe) = &mut self.probe {
            if probe.seq == seq && !probe.acked {
                probe.acked = true;
                self.adjust_health(-1);
                return;
            }
        }
        if let Some(request) = self.indirect.remove(&seq) {
            self.send_with_updates(request.origin, None, |updates| Message::Ack {
                seq: request.origin_seq,
                updates,
            });
        }
    }

    fn fire(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Suspicion(id) => {
                let due = self.members.get(&id).and_then(|e| {
                    e.suspicion
                        .as_ref()
                        .filter(|s| e.liveness == Liveness::Suspect && s.deadline <= now)
                        .map(|_| e.version())
                });
                if let Some(version) = due {
                    self.stats.members_declared_dead += 1;
                    let record = MemberRecord {
                        id,
                        generation: version.0,
                        incarnation: version.1,
                        status: Status::Dead { by: self.me },
                    };
                    self.apply_claim(now, id, version, Claim::Dead(self.me), true);
                    debug_assert!(self
                        .members
                        .get(&id)
                        .is_some_and(|e| e.liveness == Liveness::Dead));
                    self.enqueue(record);
                }
            }
            Timer::Nack(seq) => {
                if let Some(request) = self.indirect.get_mut(&seq) {
                    if !request.nacked {
                        request.nacked = true;
                        let (origin, origin_seq) = (request.origin, request.origin_seq);
                        self.send_with_updates(origin, None, |updates| Message::Nack {
                            seq: origin_seq,
                            updates,
                        });
                    }
                }
            }
            Timer::Remind(id) => {
                if self
                    .members
                    .get(&id)
                    .is_some_and(|e| e.liveness == Liveness::Suspect)
                {
                    self.stats.reminders_sent += 1;
                    let seq = self.next_seq();
                    self.send_ping(id.addr(), seq);
                }
            }
            Timer::ForgetIndirect(seq) => {
                self.indirect.remove(&seq);
            }
        }
    }

    /// This node failed to reach `id` (or was told it is unreachable).
    fn suspect(&mut self, now: Instant, id: NodeId) {
        let Some(entry) = self.members.get(&id) else {
            return;
        };
        if !is_live(entry.liveness) {
            return;
        }
        let version = entry.version();
        self.stats.suspicions_raised += 1;
        self.apply_claim(now, id, version, Claim::Suspect(self.me), true);
        let (min, _) = self.suspicion_bounds(self.live_member_count());
        self.timers.insert((now + min / 2, Timer::Remind(id)));
    }

    // ----- dissemination -------------------------------------------------

    fn retransmit_limit(&self) -> u32 {
        let n = self.live_member_count() as f64 + 1.0;
        self.config.retransmit_mult.get() * (n.log10().ceil().max(1.0) as u32)
    }

    fn enqueue(&mut self, record: MemberRecord) {
        if self
            .pending
            .push(record, self.config.max_pending_updates.get())
        {
            self.stats.updates_dropped += 1;
        }
    }

    fn gossip_round(&mut self, now: Instant) {
        self.next_gossip_at = Some(now + self.config.gossip_interval);
        if self.pending.is_empty() {
            return;
        }
        let targets = self
            .live
            .choose_many(&mut self.rng, self.config.gossip_fanout as usize, &[]);
        if targets.is_empty() && self.phase == Phase::Departed {
            // Nobody is left to tell: the farewell is moot.
            self.pending = UpdateQueue::default();
        }
        for target in targets {
            if self.pending.is_empty() {
                break;
            }
            self.stats.gossip_sent += 1;
            self.send_with_updates(target.addr(), None, |updates| Message::Gossip { updates });
        }
    }

    /// Token bucket over the bytes of bulk state answers (join and sync
    /// replies): a small request can draw a reply of many frames, so without
    /// a bound a forged source address would turn the node into an amplifier.
    fn allow_state_reply(&mut self, now: Instant) -> bool {
        let rate = self.config.state_reply_bytes_per_s as f64;
        let burst = self.config.state_reply_burst_bytes as f64;
        self.reply_tokens = match self.reply_tokens_at {
            Some(at) => (self.reply_tokens
                + now.saturating_duration_since(at).as_secs_f64() * rate)
                .min(burst),
            None => burst,
        };
        self.reply_tokens_at = Some(now);
        if self.reply_tokens > 0.0 {
            true
        } else {
            self.stats.state_replies_throttled += 1;
            false
        }
    }

    fn maybe_start_sync(&mut self, now: Instant, peer: SocketAddr) {
        if self.sync_allowed_at.is_some_and(|t| t > now) || !self.allow_state_reply(now) {
            return;
        }
        self.sync_allowed_at = Some(now + self.config.sync_interval);
        self.stats.syncs_started += 1;
        self.send_state(peer, true);
    }

    // ----- state merging -------------------------------------------------

    fn apply_records(&mut self, now: Instant, records: Vec<MemberRecord>) {
        for record in records {
            let version = (record.generation, record.incarnation);
            let claim = match record.status {
                Status::Alive { metadata } => Claim::Alive(metadata),
                Status::Suspect { by } => Claim::Suspect(by),
                Status::Dead { by } => Claim::Dead(by),
                Status::Left => Claim::Left,
            };
            self.apply_claim(now, record.id, version, claim, true);
        }
    }

    /// Merges one claim into the view, emitting events and queueing the news
    /// for further dissemination when it changed something (`regossip`).
    fn apply_claim(
        &mut self,
        now: Instant,
        id: NodeId,
        version: Version,
        claim: Claim,
        regossip: bool,
    ) {
        if id == self.me {
            self.claim_about_self(version, &claim);
            return;
        }
        let current = self.members.get(&id).map(|e| (e.version(), e.liveness));
        let changed = match current {
            None => {
                let Claim::Alive(metadata) = &claim else {
                    // Death or suspicion of a member we never knew is not worth keeping.
                    return;
                };
                if self.members.len() >= self.config.max_members.get() - 1 {
                    self.stats.members_dropped += 1;
                    return;
                }
                self.members.insert(
                    id,
                    Entry {
                        generation: version.0,
                        incarnation: version.1,
                        liveness: Liveness::Alive,
                        metadata: metadata.clone(),
                        suspicion: None,
                        down_since: None,
                        forget_queued: false,
                    },
                );
                self.became_live(id, version);
                self.emit(id, Event::MemberUp);
                true
            }
            Some((known, liveness)) => {
                if version > known || (version == known && rank(claim.liveness()) > rank(liveness))
                {
                    self.adopt(now, id, version, &claim);
                    true
                } else if version == known && liveness == Liveness::Suspect && regossip {
                    // (Bulk state does not say who suspected, so it never
                    // counts as an independent confirmation.)
                    if let Claim::Suspect(by) = claim {
                        let expected = self.config.indirect_probes;
                        let entry = self.members.get_mut(&id).expect("known member");
                        let suspicion = entry.suspicion.as_mut().expect("suspect has a suspicion");
                        let confirmed = suspicion.confirm(by, expected);
                        let deadline = suspicion.deadline;
                        if confirmed {
                            self.timers.insert((deadline, Timer::Suspicion(id)));
                        }
                        confirmed
                    } else {
                        false
                    }
                } else {
                    false
                }
            }
        };
        if changed && regossip {
            // Deaths and suspicions are passed on at once rather than at the
            // next gossip round: a death then reaches everyone at network
            // speed, and a suspicion reaches its subject while it can still
            // refute. Each node does this once per news, so the cost is one
            // early round per node per event.
            if matches!(claim, Claim::Dead(_) | Claim::Suspect(_)) && self.phase == Phase::Running {
                self.next_gossip_at = Some(self.next_gossip_at.map_or(now, |t| t.min(now)));
            }
            let status = match claim {
                Claim::Alive(metadata) => Status::Alive { metadata },
                Claim::Suspect(by) => Status::Suspect { by },
                Claim::Dead(by) => Status::Dead { by },
                Claim::Left => Status::Left,
            };
            self.enqueue(MemberRecord {
                id,
                generation: version.0,
                incarnation: version.1,
                status,
            });
        } else if changed && !matches!(claim, Claim::Alive(_)) {
            // Learned from bulk state. Liveness news spreads by further syncs,
            // which cost nothing once views agree; but a suspicion must reach
            // its subject quickly so that it can refute in time.
            let record = self.record_of(id);
            self.enqueue(record);
        }
    }

    fn record_of(&self, id: NodeId) -> MemberRecord {
        let e = &self.members[&id];
        let status = match e.liveness {
            Liveness::Alive => Status::Alive {
                metadata: e.metadata.clone(),
            },
            Liveness::Suspect => Status::Suspect {
                by: e.suspicion.as_ref().map_or(self.me, |s| s.confirmers[0]),
            },
            Liveness::Dead => Status::Dead { by: self.me },
            Liveness::Left => Status::Left,
        };
        MemberRecord {
            id,
            generation: e.generation,
            incarnation: e.incarnation,
            status,
        }
    }

    /// Replaces a known member's state with a stronger claim.
    fn adopt(&mut self, now: Instant, id: NodeId, version: Version, claim: &Claim) {
        let live_count = self.live_member_count();
        let (min, max) = self.suspicion_bounds(live_count);
        let entry = self.members.get_mut(&id).expect("known member");
        let old_version = entry.version();
        let was_live = is_live(entry.liveness);
        let was_suspect = entry.liveness == Liveness::Suspect;
        entry.generation = version.0;
        entry.incarnation = version.1;
        entry.liveness = claim.liveness();
        let mut metadata_changed = false;
        match claim {
            Claim::Alive(metadata) => {
                metadata_changed = entry.metadata != *metadata;
                entry.metadata.clone_from(metadata);
                entry.suspicion = None;
                entry.down_since = None;
            }
            Claim::Suspect(by) => {
                let suspicion = Box::new(Suspicion::new(now, *by, min, max));
                self.timers
                    .insert((suspicion.deadline, Timer::Suspicion(id)));
                entry.suspicion = Some(suspicion);
                entry.down_since = None;
            }
            Claim::Dead(_) | Claim::Left => {
                entry.suspicion = None;
                entry.down_since = Some(now);
            }
        }
        if was_live {
            self.view_hash = self.view_hash.wrapping_sub(member_hash(id, old_version));
        } else {
            self.dead.remove(id);
        }
        match claim {
            Claim::Alive(_) | Claim::Suspect(_) => {
                if was_live {
                    self.view_hash = self.view_hash.wrapping_add(member_hash(id, version));
                } else {
                    self.became_live(id, version);
                    self.emit(id, Event::MemberUp);
                }
                match claim {
                    Claim::Suspect(_) => self.emit(id, Event::MemberSuspect),
                    _ if was_live && (was_suspect || metadata_changed) => {
                        self.emit(id, Event::MemberUpdated)
                    }
                    _ => {}
                }
            }
            Claim::Dead(_) => {
                self.dead.insert(id);
                self.went_down(now, id);
                self.emit(id, Event::MemberDown);
            }
            Claim::Left => {
                self.went_down(now, id);
                self.emit(id, Event::MemberLeft);
            }
        }
    }

    /// A member stopped being live: tell the plug-ins and schedule its
    /// forgetting (one queue entry per member, however often it flaps).
    fn went_down(&mut self, now: Instant, id: NodeId) {
        self.live.remove(id);
        if let Some(strategy) = self.strategy.as_mut() {
            strategy.on_peer_down(id);
        }
        if let Some(aggregate) = self.aggregate.as_mut() {
            aggregate.on_peer_down(id);
        }
        let entry = self.members.get_mut(&id).expect("known member");
        if !entry.forget_queued {
            entry.forget_queued = true;
            self.forget_queue
                .push_back((now + self.config.dead_retention, id));
        }
    }

    fn became_live(&mut self, id: NodeId, version: Version) {
        self.view_hash = self.view_hash.wrapping_add(member_hash(id, version));
        self.live.insert(id);
        // Put the newcomer at a random place among the members not yet probed
        // this round, so it is probed within one round.
        if self.probe_order.len() > 2 * self.live.len() + 16 {
            // Members that flap would otherwise pile up duplicates here.
            self.probe_order.clear();
            self.probe_cursor = 0;
        }
        self.probe_order.push(id);
        let len = self.probe_order.len();
        let swap_with = self.rng.random_range(self.probe_cursor.min(len - 1)..len);
        self.probe_order.swap(swap_with, len - 1);
    }

    fn suspicion_bounds(&self, live_count: usize) -> (Duration, Duration) {
        // Below 100 members there are too few independent confirmations to
        // justify shorter timeouts, so small clusters are treated as 100.
        let scale = (live_count.max(1) as f64).log10().max(2.0);
        let min = self
            .config
            .probe_interval
            .mul_f64(self.config.suspicion_min_mult * scale);
        (min, min.mul_f64(self.config.suspicion_max_mult))
    }

    fn claim_about_self(&mut self, version: Version, claim: &Claim) {
        if version.0 != self.generation || self.phase != Phase::Running {
            // News about an earlier life of this address, or we are leaving.
            return;
        }
        match claim {
            Claim::Alive(_) => {
                if version.1 > self.incarnation {
                    // Someone holds a newer incarnation of us than we do (we
                    // lost state?): move past it so our word wins again.
                    self.bump_incarnation(version.1);
                }
            }
            Claim::Suspect(_) | Claim::Dead(_) | Claim::Left => {
                if version.1 >= self.incarnation {
                    self.stats.refutations += 1;
                    // Lifeguard: being suspected hints that we are the slow one.
                    self.adjust_health(1);
                    self.bump_incarnation(version.1);
                }
            }
        }
    }

    /// Moves to the incarnation after `past` and announces it.
    fn bump_incarnation(&mut self, past: Incarnation) {
        let old = self.own_version();
        let highest = past.max(self.incarnation);
        if highest.0 == u32::MAX {
            // Incarnations ran out (perhaps a forged claim at the last one,
            // which no refutation could beat): live on as the next
            // generation, which outranks every incarnation of this one. A
            // later restart picks a far larger generation anyway.
            self.generation = Generation(self.generation.0.saturating_add(1));
            self.incarnation = Incarnation(0);
            self.broadcast_seq = 0;
        } else {
            self.incarnation = highest.next();
        }
        self.view_hash = self
            .view_hash
            .wrapping_sub(member_hash(self.me, old))
            .wrapping_add(member_hash(self.me, self.own_version()));
        self.enqueue(MemberRecord {
            id: self.me,
            generation: self.generation,
            incarnation: self.incarnation,
            status: Status::Alive {
                metadata: self.metadata.clone(),
            },
        });
    }

    fn own_version(&self) -> Version {
        (self.generation, self.incarnation)
    }

    fn own_member(&self) -> Member {
        Member {
            id: self.me,
            generation: self.generation,
            incarnation: self.incarnation,
            liveness: if self.phase == Phase::Departed {
                Liveness::Left
            } else {
                Liveness::Alive
            },
            metadata: self.metadata.clone(),
        }
    }

    fn emit(&mut self, id: NodeId, make: fn(Member) -> Event) {
        let e = &self.members[&id];
        let member = Member {
            id,
            generation: e.generation,
            incarnation: e.incarnation,
            liveness: e.liveness,
            metadata: e.metadata.clone(),
        };
        self.events.push_back(make(member));
    }

    // ----- encoding ------------------------------------------------------

    fn header(&self) -> Header<'_> {
        Header {
            version: PROTOCOL_VERSION,
            label: &self.config.cluster_label,
            sender: self.me,
            generation: self.generation,
            incarnation: self.incarnation,
        }
    }

    fn push_frame(&mut self, to: SocketAddr, message: &Message) {
        let bytes = wire::encode(&self.header(), message);
        debug_assert!(bytes.len() <= self.config.max_message_size.get());
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        self.transmits.push_back(Transmit { to, bytes });
    }

    /// Sends a message built by `make`, filling the rest of the frame with
    /// pending updates (after `first`, if given).
    fn send_with_updates(
        &mut self,
        to: SocketAddr,
        first: Option<MemberRecord>,
        make: impl Fn(Vec<MemberRecord>) -> Message,
    ) {
        let bare = wire::encoded_len(&(self.header(), make(Vec::new())));
        let mut updates = Vec::new();
        let mut used = bare;
        if let Some(record) = first {
            used += wire::encoded_len(&record);
            updates.push(record);
        }
        // Two spare bytes: the element count's varint may grow from one byte
        // to three (room for 2^21 updates, far more than fit in a frame).
        let budget = self.config.max_message_size.get().saturating_sub(used + 2);
        let limit = self.retransmit_limit();
        updates.extend(self.pending.take(budget, limit));
        self.push_frame(to, &make(updates));
    }

    fn send_ping(&mut self, to: SocketAddr, seq: u32) {
        let view_hash = self.view_hash.to_le_bytes();
        // Probing a member we suspect or believe dead: carry that claim, so the
        // member can refute it even if every gossiped copy was lost.
        let target = NodeId::new(to);
        let verdict = self
            .members
            .get(&target)
            .is_some_and(|e| matches!(e.liveness, Liveness::Suspect | Liveness::Dead))
            .then(|| self.record_of(target));
        self.send_with_updates(to, verdict, |updates| Message::Ping {
            seq,
            view_hash,
            updates,
        });
    }

    fn send_join(&mut self) {
        let message = Message::Join {
            metadata: self.metadata.clone(),
        };
        for seed in self.seeds.clone() {
            self.push_frame(seed, &message);
        }
    }

    /// Sends this node's whole view, split into as many frames as needed.
    /// With `reply`, every frame asks the receiver for what it knows better
    /// in that frame's id range.
    fn send_state(&mut self, to: SocketAddr, reply: bool) {
        let mut view: Vec<Member> = self.members().collect();
        view.sort_unstable_by_key(|m| m.id);
        self.send_sorted_state(to, reply, view, (None, None));
    }

    /// Answers a sync frame covering `range`: the members of that range this
    /// node knows in a newer or stronger state than `listed` (sorted by id)
    /// says, and live members `listed` lacks.
    fn send_missing_state(
        &mut self,
        to: SocketAddr,
        range: (Option<NodeId>, Option<NodeId>),
        listed: &[(NodeId, Version, u8)],
    ) {
        let (after, through) = range;
        let mut missing: Vec<Member> = self
            .members()
            .filter(|m| after.is_none_or(|a| m.id > a) && through.is_none_or(|t| m.id <= t))
            .filter(|m| match listed.binary_search_by_key(&m.id, |l| l.0) {
                Ok(i) => {
                    let (_, version, strength) = listed[i];
                    ((m.generation, m.incarnation), rank(m.liveness)) > (version, strength)
                }
                // Dead or departed strangers would be ignored anyway.
                Err(_) => is_live(m.liveness),
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        missing.sort_unstable_by_key(|m| m.id);
        self.send_sorted_state(to, false, missing, range);
    }

    /// Packs `view` (sorted by id) into sync frames. Each frame covers the
    /// ids after the previous frame's last one through its own last one; the
    /// first and last frames extend to the ends of `range`.
    fn send_sorted_state(
        &mut self,
        to: SocketAddr,
        reply: bool,
        view: Vec<Member>,
        range: (Option<NodeId>, Option<NodeId>),
    ) {
        let sent_before = self.stats.bytes_sent;
        let budget = self.config.max_message_size.get();
        // Frame overhead with both bounds absent, plus room for the largest
        // bounds and a three-byte element count.
        let bare = wire::encoded_len(&(
            self.header(),
            Message::Sync {
                reply,
                after: None,
                through: None,
                entries: Vec::new(),
            },
        )) + 2 * wire::MAX_NODE_ID_LEN
            + 2;
        let mut entries: Vec<Member> = Vec::new();
        let mut used = bare;
        let mut after = range.0;
        let mut view = view.into_iter().peekable();
        while let Some(member) = view.next() {
            used += wire::encoded_len(&member);
            entries.push(member);
            let through = match view.peek() {
                Some(next) if used + wire::encoded_len(next) <= budget => continue,
                Some(_) => entries.last().map(|m| m.id),
                None => range.1,
            };
            let message = Message::Sync {
                reply,
                after,
                through,
                entries: core::mem::take(&mut entries),
            };
            self.push_frame(to, &message);
            after = through;
            used = bare;
        }
        self.reply_tokens -= (self.stats.bytes_sent - sent_before) as f64;
    }
}

impl<S: Strategy, A: Aggregate> Node<S, A> {
    /// Runs one strategy callback with this node as its host.
    fn run_strategy(&mut self, callback: impl FnOnce(&mut S, &mut Hosted<'_, S, A>)) {
        if let Some(mut strategy) = self.strategy.take() {
            callback(&mut strategy, &mut Hosted { node: self });
            self.strategy = Some(strategy);
        }
    }

    /// Runs one aggregate callback with this node as its host, then reports
    /// a changed estimate.
    fn run_aggregate(&mut self, callback: impl FnOnce(&mut A, &mut Hosted<'_, S, A>)) {
        if let Some(mut aggregate) = self.aggregate.take() {
            callback(&mut aggregate, &mut Hosted { node: self });
            let estimate = aggregate.estimate();
            self.aggregate = Some(aggregate);
            if let Some(value) = estimate.filter(|_| estimate != self.last_estimate) {
                self.last_estimate = estimate;
                self.events.push_back(Event::Estimate(value));
            }
        }
    }

    /// Changes this node's aggregation input to `value` (see
    /// [`Aggregate::set_input`] for when each algorithm shows the change).
    /// A changed estimate surfaces as [`Event::Estimate`].
    ///
    /// # Errors
    /// [`CommandError::NoAggregate`] if this node computes no aggregate,
    /// [`CommandError::NonFiniteInput`] if `value` is a NaN or an infinity;
    /// either way nothing changes.
    pub fn set_aggregate_input(&mut self, _now: Instant, value: f64) -> Result<(), CommandError> {
        if !A::ENABLED || self.aggregate.is_none() {
            return Err(CommandError::NoAggregate);
        }
        if !value.is_finite() {
            return Err(CommandError::NonFiniteInput);
        }
        self.run_aggregate(|aggregate, _host| aggregate.set_input(value));
        Ok(())
    }

    /// The aggregate's current estimate, if it has one.
    pub fn estimate(&self) -> Option<f64> {
        self.aggregate.as_ref().and_then(Aggregate::estimate)
    }

    /// The aggregation algorithm's state (for inspection and simulation).
    pub fn aggregate(&self) -> Option<&A> {
        self.aggregate.as_ref()
    }

    /// Encodes a strategy's message, attaching payloads and splitting it
    /// into as many frames as the budget needs.
    fn send_gossip(&mut self, to: NodeId, message: GossipMessage) {
        match message {
            GossipMessage::Push { rumors } => {
                let items: Vec<WireRumor> = rumors
                    .iter()
                    .filter_map(|r| {
                        self.store.get(r.id).map(|(payload, _)| WireRumor {
                            id: r.id,
                            hops: r.hops,
                            payload: payload.to_vec(),
                        })
                    })
                    .collect();
                self.stats.rumors_sent += items.len() as u64;
                self.push_packed(to.addr(), items, |items| Message::Rumors { items });
            }
            GossipMessage::Pull {
                digest,
                reciprocate,
            } => {
                // A digest too long for one frame is cut: the peer then sends
                // a little more than needed, never less than asked.
                let mut heads = digest.heads;
                let bare = wire::encoded_len(&(
                    self.header(),
                    Message::Pull {
                        reciprocate,
                        digest: Digest::default(),
                    },
                )) + 2;
                let room = self.config.max_message_size.get().saturating_sub(bare);
                let mut used = 0;
                heads.retain(|head| {
                    used += wire::encoded_len(head);
                    used <= room
                });
                self.push_frame(
                    to.addr(),
                    &Message::Pull {
                        reciprocate,
                        digest: Digest { heads },
                    },
                );
            }
            GossipMessage::Feedback { known } => {
                self.push_packed(to.addr(), known, |known| Message::Feedback { known });
            }
        }
    }

    /// Packs `items` greedily into frames of `wrap(items)`.
    fn push_packed<T: serde::Serialize>(
        &mut self,
        to: SocketAddr,
        items: Vec<T>,
        wrap: impl Fn(Vec<T>) -> Message,
    ) {
        let bare = wire::encoded_len(&(self.header(), wrap(Vec::new()))) + 2;
        let budget = self.config.max_message_size.get();
        let mut batch = Vec::new();
        let mut used = bare;
        for item in items {
            let len = wire::encoded_len(&item);
            if used + len > budget && !batch.is_empty() {
                self.push_frame(to, &wrap(core::mem::take(&mut batch)));
                used = bare;
            }
            used += len;
            batch.push(item);
        }
        if !batch.is_empty() {
            self.push_frame(to, &wrap(batch));
        }
    }
}

/// A node lent to its strategy for the length of one callback.
struct Hosted<'a, S, A> {
    node: &'a mut Node<S, A>,
}

/// The aggregate sees the same node, peers and randomness as the strategy.
impl<S: Strategy, A: Aggregate> AggregateHost<A::Share> for Hosted<'_, S, A> {
    fn me(&self) -> NodeId {
        Host::me(self)
    }

    fn random(&mut self) -> f64 {
        Host::random(self)
    }

    fn sample_peers(&mut self, count: usize, out: &mut Vec<NodeId>) {
        Host::sample_peers(self, count, out);
    }

    fn send(&mut self, to: NodeId, share: A::Share) {
        let share = postcard::to_allocvec(&share).expect("encoding into a Vec cannot fail");
        self.node.stats.shares_sent += 1;
        self.node
            .push_frame(to.addr(), &Message::Aggregate { share });
    }
}

impl<S: Strategy, A: Aggregate> Host for Hosted<'_, S, A> {
    fn me(&self) -> NodeId {
        self.node.me
    }

    fn random(&mut self) -> f64 {
        self.node.rng.random()
    }

    fn sample_peers(&mut self, count: usize, out: &mut Vec<NodeId>) {
        out.extend(self.node.live.choose_many(&mut self.node.rng, count, &[]));
    }

    fn all_peers(&mut self, out: &mut Vec<NodeId>) {
        out.extend_from_slice(self.node.live.as_slice());
    }

    fn peer_count(&self) -> usize {
        self.node.live.len()
    }

    fn has(&self, id: MessageId) -> bool {
        self.node.store.has(id)
    }

    fn digest(&self) -> Digest {
        self.node.store.digest()
    }

    fn missing_from(&self, digest: &Digest, out: &mut Vec<Rumor>) {
        self.node.store.missing_from(digest, out);
    }

    fn send(&mut self, to: NodeId, message: GossipMessage) {
        self.node.send_gossip(to, message);
    }
}

/// Fisher-Yates with the node's own generator (kept here so the exact
/// sequence of draws is part of this crate, not of a dependency's version).
fn shuffle(rng: &mut ChaCha8Rng, items: &mut [NodeId]) {
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
}
