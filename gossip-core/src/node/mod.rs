//! The sans-IO node: a dispatcher over the parts of SWIM with Lifeguard.
//!
//! [`Node`] owns one value of each part and routes every input to them:
//!
//! | part | file | keeps |
//! | --- | --- | --- |
//! | [`View`](view::View) | `view.rs` | member table, live and dead sets, view hash, forget queue |
//! | [`FailureDetector`](detector::FailureDetector) | `detector.rs` | probe order, the probe in flight, probes for others, local health |
//! | [`StateSync`](sync::StateSync) | `sync.rs` | reply budget, sync pacing, packing of view slices |
//! | [`UpdateQueue`](updates::UpdateQueue) | `updates.rs` | membership updates to piggyback, retransmit limit |
//! | [`Outbox`](outbox::Outbox) | `outbox.rs` | frames, events, counters |
//! | [`TimerTable`](timers::TimerTable) | `timers.rs` | every deadline, keyed by [`Timer`](timers::Timer) |
//! | [`Plugins`](host::Plugins) | `host.rs` | strategy, aggregate, rumor store |
//!
//! The parts never call each other: the node reads what one part says
//! (a [`ViewChange`](view::ViewChange), a failed probe) and tells the
//! others what follows.

mod detector;
mod host;
mod outbox;
mod sync;
mod timers;
mod updates;
mod view;

use core::time::Duration;
use std::net::SocketAddr;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::aggregate::{Aggregate, NoAggregate};
use crate::config::Config;
use crate::error::{CommandError, ConfigError, RecvError};
use crate::id::{Generation, Incarnation, MessageId, NodeId};
use crate::member::{Liveness, Member};
use crate::membership::Version;
use crate::stats::Stats;
use crate::store::RumorStore;
use crate::strategy::{NoStrategy, Rumor, Strategy};
use crate::wire::{self, Header, MemberRecord, Message, Status, SyncEntry, PROTOCOL_VERSION};

use detector::{Acked, FailureDetector, ProbeSchedule};
use host::{Hosted, Lent, Plugins};
use outbox::Outbox;
use sync::StateSync;
use timers::{Timer, TimerTable};
use updates::{retransmit_limit, UpdateQueue};
use view::{suspicion_bounds, View, ViewChange, Weighing};

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

/// This node's own identity and lifecycle.
struct Local {
    id: NodeId,
    generation: Generation,
    incarnation: Incarnation,
    metadata: Vec<u8>,
    phase: Phase,
    joined: bool,
    seeds: Vec<SocketAddr>,
}

impl Local {
    fn version(&self) -> Version {
        (self.generation, self.incarnation)
    }

    /// The header of every frame this node sends.
    fn header<'a>(&self, config: &'a Config) -> Header<'a> {
        Header {
            version: PROTOCOL_VERSION,
            label: &config.cluster_label,
            sender: self.id,
            generation: self.generation,
            incarnation: self.incarnation,
        }
    }

    fn liveness(&self) -> Liveness {
        if self.phase == Phase::Departed {
            Liveness::Left
        } else {
            Liveness::Alive
        }
    }

    fn member(&self) -> Member {
        Member::new(
            self.id,
            self.generation,
            self.incarnation,
            self.liveness(),
            self.metadata.clone(),
        )
    }

    fn sync_entry(&self) -> SyncEntry {
        SyncEntry {
            id: self.id,
            generation: self.generation,
            incarnation: self.incarnation,
            liveness: self.liveness(),
            metadata: self.metadata.clone(),
        }
    }
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
    local: Local,
    rng: ChaCha8Rng,
    view: View,
    detector: FailureDetector,
    sync: StateSync,
    pending: UpdateQueue,
    timers: TimerTable,
    plugins: Plugins<S, A>,
    outbox: Outbox,
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
        let local = Local {
            id,
            generation,
            incarnation: Incarnation(0),
            metadata: Vec::new(),
            phase: Phase::Idle,
            joined: false,
            seeds: Vec::new(),
        };
        Ok(Self {
            view: View::new(id, local.version()),
            config,
            local,
            rng: ChaCha8Rng::seed_from_u64(seed),
            detector: FailureDetector::default(),
            sync: StateSync::default(),
            pending: UpdateQueue::default(),
            timers: TimerTable::default(),
            plugins: Plugins::new(strategy, aggregate, store),
            outbox: Outbox::default(),
        })
    }

    // ----- getters -------------------------------------------------------

    /// This node's identity.
    pub fn id(&self) -> NodeId {
        self.local.id
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters since creation.
    pub fn stats(&self) -> Stats {
        let mut stats = self.outbox.stats.clone();
        stats.local_health = self.detector.local_health();
        stats.pending_updates = self.pending.len() as u64;
        stats.stored_messages = self.plugins.store.len() as u64;
        stats
    }

    /// Every member this node knows, itself first, then the others in
    /// address order, including suspect, dead and departed ones still
    /// remembered.
    pub fn members(&self) -> impl Iterator<Item = Member> + '_ {
        core::iter::once(self.local.member()).chain(self.view.members())
    }

    /// Members currently alive or suspect, this node included (unless it left).
    pub fn live_member_count(&self) -> usize {
        self.view.live().len() + usize::from(self.local.phase != Phase::Departed)
    }

    /// Summary of this node's view, compared with peers' to detect divergence.
    pub fn view_hash(&self) -> u64 {
        self.view.hash()
    }

    /// Whether a seed (or any member) has answered the join, or this node
    /// founded the cluster.
    pub fn is_joined(&self) -> bool {
        self.local.joined
    }

    /// The aggregate's current estimate, if it has one.
    pub fn estimate(&self) -> Option<f64> {
        self.plugins.aggregate.estimate()
    }

    /// The aggregation algorithm's state (for inspection and simulation).
    pub fn aggregate(&self) -> Option<&A> {
        Some(&self.plugins.aggregate)
    }

    /// Largest payload [`broadcast`](Self::broadcast) accepts: one frame
    /// minus the header and the rumor's own fields.
    pub fn max_payload_len(&self) -> usize {
        self.config.max_message_size.get()
            - wire::header_budget(&self.config)
            - wire::RUMOR_OVERHEAD
    }

    // ----- commands ------------------------------------------------------

    /// Starts the protocol. With no seeds the node founds a cluster of one;
    /// otherwise it asks each seed for the member list and retries every
    /// `join_retry_interval` until one answers.
    pub fn join(&mut self, now: Instant, seeds: &[SocketAddr]) -> Result<(), CommandError> {
        match self.local.phase {
            Phase::Idle => {}
            Phase::Running => return Err(CommandError::AlreadyStarted),
            Phase::Departed => return Err(CommandError::Departed),
        }
        self.local.phase = Phase::Running;
        self.local.seeds = seeds
            .iter()
            .copied()
            .filter(|&s| s != self.local.id.addr())
            .collect();
        // Random phase offsets keep nodes started together from probing in lockstep.
        let jitter = |rng: &mut ChaCha8Rng, period: Duration| period.mul_f64(rng.random::<f64>());
        let probe_at = now + jitter(&mut self.rng, self.config.probe_interval);
        let gossip_at = now + jitter(&mut self.rng, self.config.gossip_interval);
        let round_at = now + jitter(&mut self.rng, self.config.gossip_interval);
        self.timers.arm(Timer::Probe, probe_at);
        self.timers.arm(Timer::Gossip, gossip_at);
        self.timers.arm(Timer::Round, round_at);
        if !self.config.dead_probe_interval.is_zero() {
            self.timers
                .arm(Timer::DeadProbe, now + self.config.dead_probe_interval);
        }
        if self.local.seeds.is_empty() {
            self.local.joined = true;
        } else {
            self.send_join();
            self.timers
                .arm(Timer::Join, now + self.config.join_retry_interval);
        }
        Ok(())
    }

    /// Announces a graceful departure. The node keeps gossiping the news until
    /// its retransmit limit, then goes quiet.
    pub fn leave(&mut self, now: Instant) -> Result<(), CommandError> {
        if self.local.phase != Phase::Running {
            return Err(CommandError::Departed);
        }
        self.bump_incarnation(self.local.incarnation);
        self.local.phase = Phase::Departed;
        // A departed node judges nobody: drop its probes, suspicions and
        // probes run for others, so only the farewell gossip remains.
        self.detector.stop();
        self.timers.retain(Timer::survives_leave);
        self.enqueue(MemberRecord {
            id: self.local.id,
            generation: self.local.generation,
            incarnation: self.local.incarnation,
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
        if self.local.phase == Phase::Departed {
            return Err(CommandError::Departed);
        }
        self.local.metadata = metadata;
        self.bump_incarnation(self.local.incarnation);
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
        match self.local.phase {
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
        self.plugins.broadcast_seq += 1;
        let id = MessageId {
            origin: self.local.id,
            generation: self.local.generation.0,
            sequence: self.plugins.broadcast_seq,
        };
        self.plugins.store.insert(id, payload.to_vec(), 0);
        self.outbox.stats.broadcasts += 1;
        self.run_strategy(|strategy, host| strategy.on_rumor(host, Rumor { id, hops: 0 }, None));
        Ok(id)
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
        if !A::ENABLED {
            return Err(CommandError::NoAggregate);
        }
        if !value.is_finite() {
            return Err(CommandError::NonFiniteInput);
        }
        self.run_aggregate(|aggregate, _host| aggregate.set_input(value));
        Ok(())
    }

    /// The transport lost its connection to `peer`: treat it as a failed
    /// probe and suspect it.
    pub fn peer_unreachable(&mut self, now: Instant, peer: NodeId) {
        if self.local.phase == Phase::Running {
            self.suspect(now, peer);
        }
    }

    // ----- outputs -------------------------------------------------------

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.poll_transmit()
    }

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.outbox.poll_event()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    /// `None` means no timer is armed (not started, or departed and quiet).
    ///
    /// Timers with nothing to do keep their deadline but do not wake the
    /// node: gossip without news or peers, dead probes without the dead,
    /// rounds without a plug-in that wants them.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let gossip_idle = self.pending.is_empty() || self.view.live().is_empty();
        let no_dead = self.view.dead().is_empty();
        let no_rounds = !self.plugins.wants_rounds();
        self.timers.earliest(|timer| match timer {
            Timer::Gossip => !gossip_idle,
            Timer::DeadProbe => !no_dead,
            Timer::Round => !no_rounds,
            _ => true,
        })
    }

    // ----- inputs --------------------------------------------------------

    /// Runs every timer due at `now`. Calling it early does nothing.
    ///
    /// Due periodic duties run first, in protocol order, then suspicions,
    /// reminders and indirect-probe timers by deadline (including those
    /// that come due while they run), then forgetting. A duty that another
    /// timer brings forward to `now` runs at the next call, which
    /// [`poll_timeout`](Self::poll_timeout) then asks for at once.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.local.phase == Phase::Idle {
            return;
        }
        for duty in Timer::DUTIES {
            if self.timers.take_if_due(duty, now) {
                self.fire(now, duty);
            }
        }
        while let Some(timer) = self.timers.pop_due(now, Timer::is_keyed) {
            self.fire(now, timer);
        }
        if self.timers.take_if_due(Timer::Forget, now) {
            self.fire(now, Timer::Forget);
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
        let stats = &mut self.outbox.stats;
        match &result {
            Ok(()) => {
                stats.frames_received += 1;
                stats.bytes_received += bytes.len() as u64;
            }
            Err(_) => stats.recv_errors += 1,
        }
        result
    }

    fn receive(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> Result<(), RecvError> {
        if self.local.phase == Phase::Departed {
            return Err(RecvError::Departed);
        }
        let (header, message) = wire::decode(&self.config, bytes)?;
        if header.sender == self.local.id {
            return Err(RecvError::FromSelf);
        }
        if let Message::Aggregate { share_type, .. } = message {
            if share_type != A::SHARE_TYPE {
                return Err(RecvError::ShareTypeMismatch {
                    expected: A::SHARE_TYPE,
                    got: share_type,
                });
            }
        }
        // The frame is fully validated: below, only an aggregate share that
        // does not decode as this node's share type can still fail, and it
        // fails before touching any state.
        if self.local.phase == Phase::Idle {
            return Ok(());
        }
        let sender = header.sender;
        let sender_version = (header.generation, header.incarnation);
        match message {
            Message::Ping {
                seq,
                view_hash,
                updates,
            } => self.on_ping(now, from, sender, sender_version, seq, view_hash, updates),
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
                self.on_ping_req(now, from, seq, target);
            }
            Message::Nack { seq, updates } => {
                self.apply_records(now, updates);
                self.detector.nack(seq, sender);
            }
            Message::Gossip { updates } => self.apply_records(now, updates),
            Message::Rumors { items } => self.on_rumors(sender, items)?,
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
                    let sent = self.run_strategy(|strategy, host| {
                        strategy.on_pull(host, sender, &digest, reciprocate)
                    });
                    self.sync.charge(sent);
                }
            }
            Message::Aggregate { share, .. } => {
                let share = wire::decode_share::<A::Share>(&share)?;
                self.outbox.stats.shares_received += 1;
                self.run_aggregate(|aggregate, host| aggregate.on_share(host, sender, share));
            }
            Message::Feedback { known } => {
                self.run_strategy(|strategy, host| strategy.on_feedback(host, sender, &known));
            }
            Message::Join { metadata } => {
                self.merge(
                    now,
                    sender,
                    sender_version,
                    Status::Alive { metadata },
                    true,
                );
                if self.allow_state_reply(now) {
                    self.outbox.stats.joins_answered += 1;
                    self.send_state(from, false);
                }
            }
            Message::Sync {
                reply,
                after,
                through,
                entries,
            } => self.on_sync(now, from, sender, reply, (after, through), entries),
        }
        Ok(())
    }

    // ----- message handlers ------------------------------------------------

    #[allow(clippy::too_many_arguments)] // the fields of one ping
    fn on_ping(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: NodeId,
        sender_version: Version,
        seq: u32,
        view_hash: [u8; 8],
        updates: Vec<MemberRecord>,
    ) {
        self.apply_records(now, updates);
        // A member we suspect or believe dead is talking to us: tell it
        // so first, so it can refute at once instead of waiting for
        // gossip (whose bounded retransmissions may all have been lost).
        let verdict = self
            .view
            .get(&sender)
            .is_some_and(|e| {
                matches!(e.liveness, Liveness::Suspect | Liveness::Dead)
                    && e.version() >= sender_version
            })
            .then(|| self.view.record_of(sender, self.local.id));
        self.send_with_updates(from, verdict, |updates| Message::Ack { seq, updates });
        if u64::from_le_bytes(view_hash) != self.view.hash() && from == sender.addr() {
            self.maybe_start_sync(now, from);
        }
    }

    fn on_ack(&mut self, seq: u32) {
        match self.detector.ack(seq, self.config.max_local_health) {
            Acked::OwnProbe => self.timers.disarm(Timer::ProbeDirect),
            Acked::Forward(request) => {
                self.send_with_updates(request.origin, None, |updates| Message::Ack {
                    seq: request.origin_seq,
                    updates,
                });
            }
            Acked::Unknown => {}
        }
    }

    fn on_ping_req(&mut self, now: Instant, from: SocketAddr, seq: u32, target: NodeId) {
        let my_seq = self.detector.start_indirect(from, seq);
        // Lifeguard: answer with a nack well before the requester's own
        // deadline if the target stays silent.
        self.timers.arm(
            Timer::Nack(my_seq),
            now + self.config.probe_timeout.mul_f64(0.8),
        );
        self.timers.arm(
            Timer::ForgetIndirect(my_seq),
            now + self.config.probe_interval,
        );
        self.outbox.stats.indirect_pings_sent += 1;
        self.send_ping(target.addr(), my_seq);
    }

    fn on_rumors(&mut self, sender: NodeId, items: Vec<wire::WireRumor>) -> Result<(), RecvError> {
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
            if self
                .plugins
                .store
                .insert(item.id, item.payload.clone(), rumor.hops)
            {
                self.outbox.stats.rumors_delivered += 1;
                self.outbox.event(Event::Delivered {
                    id: item.id,
                    payload: item.payload,
                });
                self.run_strategy(|strategy, host| strategy.on_rumor(host, rumor, Some(sender)));
            } else {
                self.outbox.stats.rumors_duplicate += 1;
                self.run_strategy(|strategy, host| strategy.on_duplicate(host, rumor, sender));
            }
        }
        Ok(())
    }

    fn on_sync(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: NodeId,
        reply: bool,
        range: sync::Range,
        entries: Vec<SyncEntry>,
    ) {
        self.local.joined = true;
        // What the sender listed, to answer with only what it lacks.
        let listed = if reply {
            sync::listed(&entries)
        } else {
            Vec::new()
        };
        for entry in entries {
            let version = (entry.generation, entry.incarnation);
            let claim = match entry.liveness {
                Liveness::Alive => Status::Alive {
                    metadata: entry.metadata.clone(),
                },
                // A death reported by bulk state is only a suspicion here:
                // the member gets the chance to refute it, so one stale view
                // (say, from across a healed partition) cannot kill healthy
                // members outright.
                Liveness::Suspect | Liveness::Dead => Status::Suspect { by: sender },
                Liveness::Left => Status::Left,
            };
            if entry.liveness == Liveness::Suspect
                && !self.view.knows(&entry.id)
                && entry.id != self.local.id
            {
                // Bulk state may introduce a member we never heard of in a
                // suspect state: learn it as alive first. (Dead strangers
                // are not worth learning, as with gossip.)
                let alive = Status::Alive {
                    metadata: entry.metadata,
                };
                self.merge(now, entry.id, version, alive, false);
            }
            self.merge(now, entry.id, version, claim, false);
        }
        if reply && self.allow_state_reply(now) {
            if range.0.is_none() {
                self.outbox.stats.syncs_answered += 1;
            }
            let own = self.local.sync_entry();
            let missing = sync::missing(
                core::iter::once(own).chain(self.view.sync_entries()),
                range,
                &listed,
            );
            if !missing.is_empty() {
                self.pack_state(from, false, missing, range);
            }
        }
    }

    // ----- timers ----------------------------------------------------------

    fn fire(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::ProbeDirect => self.ask_helpers(),
            Timer::ProbeEnd => self.end_probe(now),
            Timer::Probe => self.start_probe(now),
            Timer::Gossip => self.gossip_round(now),
            Timer::Round => {
                if self.local.phase == Phase::Running {
                    self.timers
                        .arm(Timer::Round, now + self.config.gossip_interval);
                    if self.plugins.strategy.wants_rounds() {
                        self.run_strategy(|strategy, host| strategy.on_round(host));
                    }
                    if A::ENABLED {
                        self.run_aggregate(|aggregate, host| aggregate.on_round(host));
                    }
                }
            }
            Timer::DeadProbe => {
                self.timers
                    .arm(Timer::DeadProbe, now + self.config.dead_probe_interval);
                if let Some(target) = self.view.dead().choose(&mut self.rng) {
                    self.outbox.stats.dead_probes_sent += 1;
                    let seq = self.detector.next_seq();
                    self.send_ping(target.addr(), seq);
                }
            }
            Timer::Join => {
                if !self.local.joined {
                    self.send_join();
                    self.timers
                        .arm(Timer::Join, now + self.config.join_retry_interval);
                }
            }
            Timer::Suspicion(id) => {
                if self.view.suspicion_deadline(&id).is_some_and(|t| t <= now) {
                    self.declare_dead(now, id);
                }
            }
            Timer::Remind(id) => {
                if self.view.liveness(&id) == Some(Liveness::Suspect) {
                    self.outbox.stats.reminders_sent += 1;
                    let seq = self.detector.next_seq();
                    self.send_ping(id.addr(), seq);
                }
            }
            Timer::Nack(seq) => {
                if let Some((origin, origin_seq)) = self.detector.nack_due(seq) {
                    self.send_with_updates(origin, None, |updates| Message::Nack {
                        seq: origin_seq,
                        updates,
                    });
                }
            }
            Timer::ForgetIndirect(seq) => self.detector.forget_indirect(seq),
            Timer::Forget => {
                self.view.forget_due(now, self.config.dead_retention);
                self.timers.set(Timer::Forget, self.view.next_forget());
            }
        }
    }

    // ----- probing -------------------------------------------------------

    fn start_probe(&mut self, now: Instant) {
        let schedule = ProbeSchedule::new(now, &self.config, self.detector.health_scale());
        self.timers.arm(Timer::Probe, schedule.end);
        let view = &self.view;
        let Some(target) =
            self.detector
                .next_target(view.live(), |id| view.is_live(id), &mut self.rng)
        else {
            self.detector.cancel();
            self.timers.disarm(Timer::ProbeDirect);
            self.timers.disarm(Timer::ProbeEnd);
            return;
        };
        let seq = self.detector.start(target);
        self.timers
            .arm(Timer::ProbeDirect, schedule.direct_deadline);
        self.timers.arm(Timer::ProbeEnd, schedule.end);
        self.outbox.stats.probes_sent += 1;
        self.send_ping(target.addr(), seq);
    }

    /// The direct ping timed out: ask `k` helpers to probe the target.
    fn ask_helpers(&mut self) {
        let count = self.config.indirect_probes as usize;
        let Some((target, seq, helpers)) =
            self.detector
                .ask_helpers(self.view.live(), count, &mut self.rng)
        else {
            return;
        };
        for helper in helpers {
            self.send_with_updates(helper.addr(), None, |updates| Message::PingReq {
                seq,
                target,
                updates,
            });
        }
    }

    /// The probe's time is up; without an ack its target becomes a suspect.
    fn end_probe(&mut self, now: Instant) {
        self.timers.disarm(Timer::ProbeDirect);
        let Some((probe, missed)) = self.detector.finish() else {
            return;
        };
        self.outbox.stats.probes_failed += 1;
        // Lifeguard: missing nacks mean our own network or process is slow,
        // so back off before accusing others.
        self.detector
            .adjust_health(i64::from(missed), self.config.max_local_health);
        self.suspect(now, probe.target);
        // A helper's nack says its own ping to the target went unanswered:
        // an independent failed probe, so it confirms the suspicion at once
        // instead of waiting for other members to happen to probe it.
        if let Some(entry) = self.view.get(&probe.target) {
            if entry.liveness == Liveness::Suspect {
                let version = entry.version();
                for helper in probe.nacked {
                    self.merge(
                        now,
                        probe.target,
                        version,
                        Status::Suspect { by: helper },
                        true,
                    );
                }
            }
        }
    }

    /// This node failed to reach `id` (or was told it is unreachable).
    fn suspect(&mut self, now: Instant, id: NodeId) {
        let Some(entry) = self.view.get(&id).filter(|_| self.view.is_live(&id)) else {
            return;
        };
        let version = entry.version();
        self.outbox.stats.suspicions_raised += 1;
        let by = self.local.id;
        self.merge(now, id, version, Status::Suspect { by }, true);
        let (min, _) = suspicion_bounds(&self.config, self.live_member_count());
        self.timers.arm(Timer::Remind(id), now + min / 2);
    }

    /// A suspicion ran out: declare the member dead and tell the others.
    fn declare_dead(&mut self, now: Instant, id: NodeId) {
        let version = self.view.get(&id).expect("suspect is known").version();
        self.outbox.stats.members_declared_dead += 1;
        let by = self.local.id;
        self.merge(now, id, version, Status::Dead { by }, true);
        debug_assert_eq!(self.view.liveness(&id), Some(Liveness::Dead));
        // Queued even when the merge already queued it: the declaration
        // counts as fresh news again.
        self.enqueue(MemberRecord {
            id,
            generation: version.0,
            incarnation: version.1,
            status: Status::Dead { by },
        });
    }

    // ----- dissemination -------------------------------------------------

    fn enqueue(&mut self, record: MemberRecord) {
        if self
            .pending
            .push(record, self.config.max_pending_updates.get())
        {
            self.outbox.stats.updates_dropped += 1;
        }
    }

    fn gossip_round(&mut self, now: Instant) {
        self.timers
            .arm(Timer::Gossip, now + self.config.gossip_interval);
        if self.pending.is_empty() {
            return;
        }
        let targets =
            self.view
                .live()
                .choose_many(&mut self.rng, self.config.gossip_fanout as usize, &[]);
        if targets.is_empty() && self.local.phase == Phase::Departed {
            // Nobody is left to tell: the farewell is moot.
            self.pending = UpdateQueue::default();
        }
        for target in targets {
            if self.pending.is_empty() {
                break;
            }
            self.outbox.stats.gossip_sent += 1;
            self.send_with_updates(target.addr(), None, |updates| Message::Gossip { updates });
        }
    }

    /// Whether the reply budget allows a state answer now.
    fn allow_state_reply(&mut self, now: Instant) -> bool {
        let allowed = self.sync.allow(now, &self.config);
        if !allowed {
            self.outbox.stats.state_replies_throttled += 1;
        }
        allowed
    }

    fn maybe_start_sync(&mut self, now: Instant, peer: SocketAddr) {
        if !self.sync.may_start(now) || !self.allow_state_reply(now) {
            return;
        }
        self.sync.started(now, &self.config);
        self.outbox.stats.syncs_started += 1;
        self.send_state(peer, true);
    }

    // ----- state merging -------------------------------------------------

    fn apply_records(&mut self, now: Instant, records: Vec<MemberRecord>) {
        for record in records {
            let version = (record.generation, record.incarnation);
            self.merge(now, record.id, version, record.status, true);
        }
    }

    /// Merges one claim into the view and carries out what follows from
    /// the change: events, timers, probing, plug-ins, and passing the news
    /// on (`first_hand`: the claim came as news rather than bulk state).
    fn merge(
        &mut self,
        now: Instant,
        id: NodeId,
        version: Version,
        claim: Status,
        first_hand: bool,
    ) {
        if id == self.local.id {
            self.claim_about_self(version, &claim);
            return;
        }
        let weighing = Weighing {
            first_hand,
            live_count: self.live_member_count(),
        };
        let change = match self
            .view
            .apply(now, &self.config, id, version, &claim, &weighing)
        {
            Ok(Some(change)) => change,
            Ok(None) => return,
            Err(view::Full) => {
                self.outbox.stats.members_dropped += 1;
                return;
            }
        };
        self.follow(id, change);
        if first_hand {
            // Deaths and suspicions are passed on at once rather than at the
            // next gossip round: a death then reaches everyone at network
            // speed, and a suspicion reaches its subject while it can still
            // refute. Each node does this once per news, so the cost is one
            // early round per node per event.
            if matches!(claim, Status::Dead { .. } | Status::Suspect { .. })
                && self.local.phase == Phase::Running
            {
                self.timers.arm_no_later_than(Timer::Gossip, now);
            }
            self.enqueue(MemberRecord {
                id,
                generation: version.0,
                incarnation: version.1,
                status: claim,
            });
        } else if !matches!(claim, Status::Alive { .. }) {
            // Learned from bulk state. Liveness news spreads by further syncs,
            // which cost nothing once views agree; but a suspicion must reach
            // its subject quickly so that it can refute in time.
            let record = self.view.record_of(id, self.local.id);
            self.enqueue(record);
        }
    }

    /// What follows from one change of the view, in the order the parts
    /// must hear of it.
    fn follow(&mut self, id: NodeId, change: ViewChange) {
        if change.moved_suspicion() {
            let deadline = self.view.suspicion_deadline(&id).expect("suspected");
            self.timers.arm(Timer::Suspicion(id), deadline);
        }
        if change.came_up() {
            let live = self.view.live().len();
            self.detector.add_candidate(id, live, &mut self.rng);
        }
        if change.went_down() {
            self.plugins.peer_down(id);
            self.timers.set(Timer::Forget, self.view.next_forget());
        }
        let events: &[fn(Member) -> Event] = match change {
            ViewChange::Added | ViewChange::Revived { suspect: false } => &[Event::MemberUp],
            ViewChange::Revived { suspect: true } => &[Event::MemberUp, Event::MemberSuspect],
            ViewChange::Suspected => &[Event::MemberSuspect],
            ViewChange::Refreshed { visible: true } => &[Event::MemberUpdated],
            ViewChange::Died => &[Event::MemberDown],
            ViewChange::Left => &[Event::MemberLeft],
            ViewChange::Refreshed { visible: false } | ViewChange::Confirmed => &[],
        };
        for make in events {
            self.outbox.event(make(self.view.member(id)));
        }
    }

    fn claim_about_self(&mut self, version: Version, claim: &Status) {
        if version.0 != self.local.generation || self.local.phase != Phase::Running {
            // News about an earlier life of this address, or we are leaving.
            return;
        }
        match claim {
            Status::Alive { .. } => {
                if version.1 > self.local.incarnation {
                    // Someone holds a newer incarnation of us than we do (we
                    // lost state?): move past it so our word wins again.
                    self.bump_incarnation(version.1);
                }
            }
            Status::Suspect { .. } | Status::Dead { .. } | Status::Left => {
                if version.1 >= self.local.incarnation {
                    self.outbox.stats.refutations += 1;
                    // Lifeguard: being suspected hints that we are the slow one.
                    self.detector.adjust_health(1, self.config.max_local_health);
                    self.bump_incarnation(version.1);
                }
            }
        }
    }

    /// Moves to the incarnation after `past` and announces it.
    fn bump_incarnation(&mut self, past: Incarnation) {
        let old = self.local.version();
        let highest = past.max(self.local.incarnation);
        if highest.0 == u32::MAX {
            // Incarnations ran out (perhaps a forged claim at the last one,
            // which no refutation could beat): live on as the next
            // generation, which outranks every incarnation of this one. A
            // later restart picks a far larger generation anyway.
            self.local.generation = Generation(self.local.generation.0.saturating_add(1));
            self.local.incarnation = Incarnation(0);
            self.plugins.broadcast_seq = 0;
        } else {
            self.local.incarnation = highest.next();
        }
        self.view
            .rehash_self(self.local.id, old, self.local.version());
        self.enqueue(MemberRecord {
            id: self.local.id,
            generation: self.local.generation,
            incarnation: self.local.incarnation,
            status: Status::Alive {
                metadata: self.local.metadata.clone(),
            },
        });
    }

    // ----- sending -------------------------------------------------------

    /// Sends a message built by `make`, filling the rest of the frame with
    /// pending updates (after `first`, if given).
    fn send_with_updates(
        &mut self,
        to: SocketAddr,
        first: Option<MemberRecord>,
        make: impl Fn(Vec<MemberRecord>) -> Message,
    ) {
        let limit = retransmit_limit(self.config.retransmit_mult.get(), self.live_member_count());
        let header = self.local.header(&self.config);
        self.outbox.push_with_updates(
            &header,
            self.config.max_message_size.get(),
            to,
            first,
            &mut self.pending,
            limit,
            make,
        );
    }

    fn send_ping(&mut self, to: SocketAddr, seq: u32) {
        let view_hash = self.view.hash().to_le_bytes();
        // Probing a member we suspect or believe dead: carry that claim, so the
        // member can refute it even if every gossiped copy was lost.
        let target = NodeId::new(to);
        let verdict = matches!(
            self.view.liveness(&target),
            Some(Liveness::Suspect | Liveness::Dead)
        )
        .then(|| self.view.record_of(target, self.local.id));
        self.send_with_updates(to, verdict, |updates| Message::Ping {
            seq,
            view_hash,
            updates,
        });
    }

    fn send_join(&mut self) {
        let message = Message::Join {
            metadata: self.local.metadata.clone(),
        };
        let header = self.local.header(&self.config);
        for &seed in &self.local.seeds {
            self.outbox.push_frame(&header, seed, &message);
        }
    }

    /// Sends this node's whole view, split into as many frames as needed.
    /// With `reply`, every frame asks the receiver for what it knows better
    /// in that frame's id range.
    fn send_state(&mut self, to: SocketAddr, reply: bool) {
        let mut view: Vec<SyncEntry> = core::iter::once(self.local.sync_entry())
            .chain(self.view.sync_entries())
            .collect();
        view.sort_unstable_by_key(|m| m.id);
        self.pack_state(to, reply, view, (None, None));
    }

    /// Packs `view` (sorted by id) into sync frames and charges the bytes
    /// to the reply budget.
    fn pack_state(
        &mut self,
        to: SocketAddr,
        reply: bool,
        view: Vec<SyncEntry>,
        range: sync::Range,
    ) {
        let header = self.local.header(&self.config);
        let max = self.config.max_message_size.get();
        let sent = sync::pack(&mut self.outbox, &header, max, to, reply, view, range);
        self.sync.charge(sent);
    }

    // ----- plug-ins ------------------------------------------------------

    /// Runs one strategy callback with the parts it may borrow; returns the
    /// bytes it sent.
    fn run_strategy(&mut self, callback: impl FnOnce(&mut S, &mut Hosted<'_, '_>)) -> usize {
        let lent = Lent {
            header: self.local.header(&self.config),
            config: &self.config,
            rng: &mut self.rng,
            peers: self.view.live(),
            outbox: &mut self.outbox,
        };
        self.plugins.run_strategy(lent, callback)
    }

    /// Runs one aggregate callback, then reports a changed estimate.
    fn run_aggregate(&mut self, callback: impl FnOnce(&mut A, &mut Hosted<'_, '_>)) {
        let lent = Lent {
            header: self.local.header(&self.config),
            config: &self.config,
            rng: &mut self.rng,
            peers: self.view.live(),
            outbox: &mut self.outbox,
        };
        if let Some(value) = self.plugins.run_aggregate(lent, callback) {
            self.outbox.event(Event::Estimate(value));
        }
    }
}
