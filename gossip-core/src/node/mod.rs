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

mod admission;
mod detector;
mod duties;
mod handlers;
mod host;
mod merge;
mod outbox;
mod send;
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
use crate::signing::{RumorSigner, MAX_SIGNATURE_LEN};
use crate::stats::Stats;
use crate::store::RumorStore;
use crate::strategy::{NoStrategy, Rumor, Strategy};
use crate::wire::{self, Header, MemberRecord, Message, Status, SyncEntry, PROTOCOL_VERSION};

use admission::{Candidate, Candidates, Proposal, Timeout};
use detector::{Acked, FailureDetector, ProbeSchedule};
use host::{Hosted, Lent, Plugins};
use outbox::Outbox;
use send::short_hash;
use sync::{JoinAnswers, StateSync};
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
    /// A live member sent this node an application message with
    /// [`Node::send_direct`]. Strangers' direct messages are ignored (and
    /// counted in [`Stats::claims_ignored`]).
    Direct {
        /// The member that sent it (the frame's proven source address).
        from: NodeId,
        /// The application's bytes.
        payload: Vec<u8>,
    },
    /// A broadcast of this node was sent again under a new id: a lying
    /// member had taken its id first with another payload, so the nodes
    /// that took the forgery dropped the real one as a duplicate. Nodes
    /// that got the real one first deliver its payload a second time, under
    /// `new` (see [`Stats::rumors_reissued`]).
    Reissued {
        /// The id [`Node::broadcast`] returned, taken by the forgery.
        old: MessageId,
        /// The id the payload travels under now.
        new: MessageId,
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
    /// The nonce our joins and our sync requests to seeds carry: a state
    /// answer echoing it comes from a seed we asked (see
    /// [`Node::on_sync`]).
    seed_nonce: u32,
    /// A seed's answer came (or this node founded the cluster, or gave up
    /// waiting at `seed_wait_until`): from now on the node learns members
    /// from anyone, challenging each new one. Before, it takes no claim
    /// about third members and challenges no stranger, as the seed's
    /// answer will name them all.
    seeded: bool,
    /// When a node still waiting for its seed's answer stops waiting.
    seed_wait_until: Option<Instant>,
    /// Join requests sent so far: each retry waits twice as long as the
    /// last, up to eight `join_retry_interval`s, since a seed holds the
    /// answer in its queue and a retry only helps when a frame was lost.
    join_attempts: u32,
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

    /// This node's own word about itself, as a piggyback record.
    fn record(&self, status: Status) -> MemberRecord {
        MemberRecord {
            id: self.id,
            generation: self.generation,
            incarnation: self.incarnation,
            status,
        }
    }

    /// This node's own record as alive, with its metadata.
    fn alive_record(&self) -> MemberRecord {
        self.record(Status::Alive {
            metadata: self.metadata.clone(),
        })
    }

    /// The join request this node sends its seeds (and addresses it
    /// contacts): its metadata, and the nonce their answers must echo.
    fn join_request(&self) -> Message {
        Message::Join {
            nonce: self.seed_nonce,
            metadata: self.metadata.clone(),
        }
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
    candidates: Candidates,
    join_answers: JoinAnswers,
    plugins: Plugins<S, A>,
    outbox: Outbox,
}

/// Who sent a frame, as far as this node can tell. The sender's address is
/// the frame's source address (checked before anything else), so
/// `sender` speaks for itself; whether it may speak for others depends on
/// what this node holds of it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Source {
    /// The sender.
    sender: NodeId,
    /// The sender's version, as its header states.
    version: Version,
    /// The sender is a live member here: it may vouch for others, gossip,
    /// relay rumors and ask for state.
    member: bool,
    /// The sender is in the table in any state: it was a member once, so
    /// its word about this node is heard (a member that believes us dead
    /// must be able to make us refute).
    known: bool,
    /// The sender is a seed this node asked to join: its answer is
    /// believed like a member's.
    seed: bool,
}

impl Source {
    /// Whether the sender's claims about others count.
    fn vouches(&self) -> bool {
        self.member || self.seed
    }
}

impl<S: Strategy, A: Aggregate> Node<S, A> {
    /// Whether a claim from `source` that a member exists which we do not
    /// know should be challenged: always once a seed's answer came, and
    /// before only for a seed's own word about itself.
    fn learns_from(&self, source: &Source) -> bool {
        self.local.seeded || source.seed
    }
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
            seed_nonce: 0,
            seeded: false,
            seed_wait_until: None,
            join_attempts: 0,
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
            candidates: Candidates::default(),
            join_answers: JoinAnswers::default(),
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

    /// The dissemination strategy, to read its own state and counters.
    pub fn strategy(&self) -> &S {
        &self.plugins.strategy
    }

    /// Counters since creation.
    pub fn stats(&self) -> Stats {
        let mut stats = self.outbox.stats.clone();
        stats.local_health = self.detector.local_health();
        stats.pending_updates = self.pending.len() as u64;
        stats.candidates_waiting = self.candidates.len() as u64;
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
    /// minus the header, the rumor's own fields and, with a
    /// [`RumorSigner`] installed, its signature.
    pub fn max_payload_len(&self) -> usize {
        self.max_unsigned_payload_len() - self.signature_overhead()
    }

    /// The largest payload of an unsigned rumor.
    fn max_unsigned_payload_len(&self) -> usize {
        self.config.max_message_size.get()
            - wire::header_budget(&self.config)
            - wire::RUMOR_OVERHEAD
    }

    /// What this node's signature adds to each of its rumors on the wire.
    fn signature_overhead(&self) -> usize {
        self.plugins
            .signer
            .as_ref()
            .map_or(0, |s| wire::signature_overhead(s.signature_len()))
    }

    // ----- plug-ins ------------------------------------------------------

    /// Installs `signer`: from now on this node signs the rumors it
    /// originates, sends every rumor with its origin's signature, and
    /// refuses (counting them in [`Stats::rumors_refused_signature`])
    /// rumors whose signature is missing or does not verify; those are
    /// never delivered, stored or relayed. Install it before
    /// [`join`](Self::join), on every node of the cluster. Without one (the
    /// default) rumors carry no signature.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] if the signer's
    /// [`signature_len`](RumorSigner::signature_len) is 0 or above
    /// [`MAX_SIGNATURE_LEN`]; nothing changes.
    pub fn set_rumor_signer(&mut self, signer: Box<dyn RumorSigner>) -> Result<(), ConfigError> {
        let len = signer.signature_len();
        if !(1..=MAX_SIGNATURE_LEN).contains(&len) {
            return Err(ConfigError::Invalid {
                field: "rumor signer",
                reason: "signature length must be within 1..=128 bytes",
            });
        }
        self.plugins.signer = Some(signer);
        Ok(())
    }

    /// Whether a [`RumorSigner`] is installed.
    pub fn signs_rumors(&self) -> bool {
        self.plugins.signer.is_some()
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
        self.local.seed_nonce = self.rng.random();
        if self.local.seeds.is_empty() {
            self.local.joined = true;
            self.local.seeded = true;
        } else {
            self.local.seed_wait_until = Some(now + self.config.seed_answer_wait);
            self.send_join();
            self.timers.arm(Timer::Join, now + self.join_retry_wait());
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
        self.candidates.clear();
        self.join_answers.clear();
        self.timers.retain(Timer::survives_leave);
        let farewell = self.local.record(Status::Left);
        // Only a member's own word says that it left (others take a
        // report of it as a suspicion), so tell every live member
        // ourselves, then keep gossiping the news for those who miss it.
        let header = self.local.header(&self.config);
        let message = Message::Gossip {
            updates: vec![farewell.clone()],
        };
        for member in self.view.live().iter() {
            self.outbox.push_frame(&header, member.addr(), &message);
        }
        self.enqueue(farewell);
        self.gossip_round(now);
        Ok(())
    }

    /// Asks the nodes at `addrs` to admit this running node: each gets one
    /// join request, answered like a seed's (a running node may so merge
    /// its cluster with another). Unlike [`join`](Self::join) nothing is
    /// retried here; the host repeats the call as it sees fit.
    pub fn contact(&mut self, _now: Instant, addrs: &[SocketAddr]) -> Result<(), CommandError> {
        match self.local.phase {
            Phase::Running => {}
            Phase::Idle => return Err(CommandError::NotStarted),
            Phase::Departed => return Err(CommandError::Departed),
        }
        let message = self.local.join_request();
        // The addresses asked become seeds: only a seed's (or a member's)
        // answer is believed, and the answer comes from a node this one
        // does not know yet.
        for &addr in addrs.iter().filter(|&&a| a != self.local.id.addr()) {
            if !self.local.seeds.contains(&addr) {
                self.local.seeds.push(addr);
            }
        }
        let header = self.local.header(&self.config);
        for &addr in addrs.iter().filter(|&&a| a != self.local.id.addr()) {
            self.outbox.push_frame(&header, addr, &message);
        }
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
        self.outbox.stats.broadcasts += 1;
        Ok(self.originate(payload.to_vec()))
    }

    /// Sends `payload` as this node's next rumor: under the next sequence
    /// number that no rumor this node holds (a forgery included) uses,
    /// signed if a signer is installed.
    fn originate(&mut self, payload: Vec<u8>) -> MessageId {
        let mut id = MessageId {
            origin: self.local.id,
            generation: self.local.generation.0,
            sequence: self.plugins.broadcast_seq,
        };
        // Sequence numbers a forgery claimed are skipped: each was taken
        // by one claim within `max_sequence_gap` of what this node holds,
        // so the loop is bounded by what the liars sent.
        loop {
            id.sequence = id.sequence.saturating_add(1);
            if !self.plugins.store.has(id) || id.sequence == u64::MAX {
                break;
            }
        }
        self.plugins.broadcast_seq = id.sequence;
        let signature = self
            .plugins
            .signer
            .as_ref()
            .map(|signer| signer.sign(id, &payload));
        self.plugins.store.insert(id, payload, 0, signature);
        self.run_strategy(|strategy, host| strategy.on_rumor(host, Rumor { id, hops: 0 }, None));
        id
    }

    /// Sends an application message to one live member, outside any
    /// dissemination strategy: the seam for applications that need requests
    /// and answers (a replicated store's repair, for one). The receiver sees
    /// [`Event::Direct`] if it holds this node as a live member. Delivery is
    /// best effort, like every datagram; the application retries.
    ///
    /// # Errors
    /// [`CommandError::NotStarted`] or [`CommandError::Departed`] outside a
    /// running node, [`CommandError::NotAMember`] if `to` is not a live
    /// member here, [`CommandError::PayloadTooLarge`] beyond
    /// [`Node::max_direct_len`]; on any error nothing is sent.
    pub fn send_direct(
        &mut self,
        _now: Instant,
        to: NodeId,
        payload: &[u8],
    ) -> Result<(), CommandError> {
        match self.local.phase {
            Phase::Idle => return Err(CommandError::NotStarted),
            Phase::Departed => return Err(CommandError::Departed),
            Phase::Running => {}
        }
        if to == self.local.id || !self.view.is_live(&to) {
            return Err(CommandError::NotAMember);
        }
        let max = self.max_direct_len();
        if payload.len() > max {
            return Err(CommandError::PayloadTooLarge {
                len: payload.len(),
                max,
            });
        }
        let header = self.local.header(&self.config);
        let message = Message::Direct {
            payload: payload.to_vec(),
        };
        self.outbox.push_frame(&header, to.addr(), &message);
        self.outbox.stats.directs_sent += 1;
        Ok(())
    }

    /// Largest payload [`send_direct`](Self::send_direct) accepts: one
    /// frame minus the header and the message's own fields.
    pub fn max_direct_len(&self) -> usize {
        self.config.max_message_size.get()
            - wire::header_budget(&self.config)
            - wire::DIRECT_OVERHEAD
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
    /// reminders and indirect-probe timers by deadline, then forgetting;
    /// a duty that one of them brings forward to `now` (a death passed on
    /// at once) runs in a further pass. On return nothing is due at `now`:
    /// [`poll_timeout`](Self::poll_timeout) lies in the future.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.local.phase == Phase::Idle {
            return;
        }
        while self.timers.any_due(now) {
            for duty in Timer::DUTIES {
                if self.timers.take_if_due(duty, now) {
                    self.fire(now, duty);
                }
            }
            while let Some(timer) = self.timers.pop_due_keyed(now) {
                self.fire(now, timer);
            }
            if self.timers.take_if_due(Timer::Forget, now) {
                self.fire(now, Timer::Forget);
            }
        }
        self.sync.observe(now, self.view.len());
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
        self.sync.observe(now, self.view.len());
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
        // Every claim a frame makes rests on who sent it, so the sender
        // must be the address the frame came from. (Over QUIC that address
        // is the one the peer's certificate names.)
        if from != header.sender.addr() {
            return Err(RecvError::SenderMismatch);
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
        let source = Source {
            sender,
            version: (header.generation, header.incarnation),
            member: self.view.is_live(&sender),
            known: self.view.knows(&sender),
            seed: self.local.seeds.contains(&from),
        };
        if source.known && !source.member {
            // A member we hold down speaks in a newer version than we hold:
            // it may have refuted our verdict. Ask it to prove it, which
            // also brings its own record.
            let held = self.view.get(&sender).expect("known");
            if source.version > held.version() {
                let metadata = held.metadata().to_vec();
                self.challenge(now, sender, source.version, metadata, None, true);
            }
        }
        if source.member
            && matches!(
                message,
                Message::Ping { .. } | Message::Gossip { .. } | Message::PingReq { .. }
            )
        {
            // A proven member probes or gossips to us: it holds us as a
            // member, so the join is done even if the seed's answer (paced
            // by its reply budget) has not come yet.
            self.local.joined = true;
        }
        if !source.known
            && self.learns_from(&source)
            && matches!(
                message,
                Message::Ping { .. } | Message::Gossip { .. } | Message::PingReq { .. }
            )
        {
            // A stranger that probes or gossips believes it is a member:
            // perhaps it is, and we missed its join. Ask it to prove it
            // (once: the claim then waits), so that membership becomes
            // mutual without waiting for a state sync.
            self.challenge(now, sender, source.version, Vec::new(), None, false);
        }
        match message {
            Message::Ping {
                seq,
                view_hash,
                updates,
            } => self.on_ping(now, &source, seq, view_hash, updates),
            Message::Ack { seq, updates } => self.on_ack(now, &source, seq, updates),
            Message::PingReq {
                seq,
                target,
                updates,
            } => {
                self.apply_records(now, &source, updates);
                self.on_ping_req(now, &source, seq, target);
            }
            Message::Nack { seq, updates } => {
                self.apply_records(now, &source, updates);
                self.detector.nack(seq, sender);
            }
            Message::Gossip { updates } => self.apply_records(now, &source, updates),
            Message::Verify { seq } => {
                self.on_verify(&source, seq, bytes.len());
                if !source.known && self.learns_from(&source) {
                    // Whoever challenges us claims to be a member: challenge
                    // it back, so that each side admits the other at about
                    // the same time.
                    let version = source.version;
                    self.challenge(now, sender, version, Vec::new(), None, false);
                }
            }
            Message::Join { nonce, metadata } => self.on_join(now, &source, nonce, metadata),
            Message::Sync {
                reply,
                nonce,
                after,
                through,
                entries,
            } => self.on_sync(now, &source, reply, nonce, (after, through), entries),
            // Only members take part in dissemination and aggregation: a
            // stranger's rumors, pulls, feedback and shares are ignored.
            // Shares are also taken from an address whose challenge is out
            // (one that is being admitted as this share arrives): mass-
            // conserving algorithms would otherwise lose what a new member
            // sends before both sides have admitted each other, and anyone
            // who can answer a challenge could become a member anyway.
            Message::Aggregate { share, .. } => {
                let share = wire::decode_share::<A::Share>(&share)?;
                let admitting = self.candidates.contains(&sender);
                if admitting || self.counts_as_member(&source) {
                    self.outbox.stats.shares_received += 1;
                    self.run_aggregate(|aggregate, host| aggregate.on_share(host, sender, share));
                }
            }
            Message::Rumors { items } => {
                let items: Vec<_> = items.into_iter().map(|item| (item, None)).collect();
                self.check_rumors(&items)?;
                if self.counts_as_member(&source) {
                    self.on_rumors(sender, items);
                }
            }
            Message::SignedRumors { items } => {
                let items: Vec<_> = items
                    .into_iter()
                    .map(|item| (item.rumor, Some(item.signature)))
                    .collect();
                self.check_rumors(&items)?;
                if self.counts_as_member(&source) {
                    self.on_rumors(sender, items);
                }
            }
            Message::Pull {
                digest,
                reciprocate,
            } => {
                // Answers may be large: within the same byte budgets as
                // state replies.
                if self.counts_as_member(&source) && self.allow_state_reply(now, from) {
                    let sent = self.run_strategy(|strategy, host| {
                        strategy.on_pull(host, sender, &digest, reciprocate)
                    });
                    self.sync.charge(from, sent);
                }
            }
            Message::Feedback { known } => {
                if self.counts_as_member(&source) {
                    self.run_strategy(|strategy, host| strategy.on_feedback(host, sender, &known));
                }
            }
            Message::Announce { ids } => {
                if self.counts_as_member(&source) {
                    self.run_strategy(|strategy, host| strategy.on_announce(host, sender, &ids));
                }
            }
            // A graft is answered with payloads: within the same per-source
            // byte budgets as pulls and state replies, so that asking for
            // many rumors cannot amplify.
            Message::Graft { ids } => {
                if self.counts_as_member(&source) && self.allow_state_reply(now, from) {
                    let sent =
                        self.run_strategy(|strategy, host| strategy.on_graft(host, sender, &ids));
                    self.sync.charge(from, sent);
                }
            }
            Message::Prune => {
                if self.counts_as_member(&source) {
                    self.run_strategy(|strategy, host| strategy.on_prune(host, sender));
                }
            }
            Message::Direct { payload } => {
                if self.counts_as_member(&source) {
                    self.outbox.stats.directs_received += 1;
                    self.outbox.event(Event::Direct {
                        from: sender,
                        payload,
                    });
                }
            }
        }
        Ok(())
    }
}
