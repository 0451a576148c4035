//! The discrete-event simulator: real [`Node`]s exchanging real encoded frames
//! over a modelled network, in virtual time.

use core::cmp::Reverse;
use core::time::Duration;
use std::collections::{BTreeSet, BinaryHeap};
use std::net::SocketAddr;
use std::time::Instant;

use gossip_core::{
    Aggregate, CommandError, Config, Event, Generation, Liveness, Member, MessageId, NoAggregate,
    NoStrategy, Node, NodeId, RecvError, Strategy,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::address::Addressing;
use crate::trace::{EventRecord, Fate, FrameRecord, Origin, Trace};

/// One-way latency of a link.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Latency {
    /// Always the same.
    Fixed(Duration),
    /// Uniform between the bounds.
    Uniform {
        /// Shortest delay.
        min: Duration,
        /// Longest delay.
        max: Duration,
    },
}

impl Latency {
    fn sample(&self, rng: &mut ChaCha8Rng) -> Duration {
        match *self {
            Latency::Fixed(d) => d,
            Latency::Uniform { min, max } => {
                if max <= min {
                    min
                } else {
                    min + (max - min).mul_f64(rng.random::<f64>())
                }
            }
        }
    }
}

/// How the simulated network treats each frame.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkModel {
    /// One-way latency.
    pub latency: Latency,
    /// Probability a frame is lost.
    pub loss: f64,
    /// Probability a frame is delivered twice (independent latencies).
    pub duplicate: f64,
    /// Probability a frame is held back by up to `reorder_delay` extra, so
    /// that later frames overtake it.
    pub reorder: f64,
    /// Largest extra delay of a reordered frame.
    pub reorder_delay: Duration,
}

impl Default for LinkModel {
    /// A quiet data-centre network: 0.2 to 1 ms one way, no faults.
    fn default() -> Self {
        Self {
            latency: Latency::Uniform {
                min: Duration::from_micros(200),
                max: Duration::from_millis(1),
            },
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(20),
        }
    }
}

impl LinkModel {
    /// Every frame arrives exactly `latency` after it was sent, no faults:
    /// for tests that reason about exact instants.
    pub fn fixed(latency: Duration) -> Self {
        Self {
            latency: Latency::Fixed(latency),
            ..Self::default()
        }
    }
}

/// Receives what happens inside a simulation, for measurements.
pub trait Observer {
    /// Node `node` emitted `event` at virtual time `at`.
    fn on_event(&mut self, at: Duration, node: usize, event: &Event) {
        let _ = (at, node, event);
    }
    /// Node `from` sent `bytes` to `to` at `at`.
    fn on_transmit(&mut self, at: Duration, from: usize, to: SocketAddr, bytes: &[u8]) {
        let _ = (at, from, to, bytes);
    }
}

/// An observer that ignores everything.
impl Observer for () {}

/// Who moves a simulation forward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Drive {
    /// The simulator: frames cross the [`LinkModel`] and arrive by
    /// themselves, timers fire at their deadlines (`run_until`, `step`).
    #[default]
    Scheduled,
    /// The caller: frames wait in [`Simulator::held`] until taken, nodes are
    /// ticked only through [`Simulator::tick`] or [`Simulator::command`], and
    /// the clock only moves when told. For fuzzing, where the input picks
    /// which frame arrives, damaged or not, and when time passes.
    Manual,
}

/// A frame waiting for the caller under [`Drive::Manual`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldFrame {
    /// Index of the node that sent it.
    pub from: usize,
    /// Destination address (possibly no node's).
    pub to: SocketAddr,
    /// The encoded frame.
    pub bytes: Vec<u8>,
}

/// Who sent a frame in flight: a node by index, or another address kept
/// in [`Simulator::senders`] (an outsider's), so that a queued frame
/// carries a few bytes rather than a socket address. At a join storm the
/// queue holds a frame or so per member per node.
#[derive(Clone, Copy)]
enum Sender {
    Node(u32),
    Other(u32),
}

enum Action {
    Deliver {
        /// The encoded frame, without spare capacity.
        bytes: Box<[u8]>,
        to: u32,
        from: Sender,
        /// Index of its [`FrameRecord`] when recording.
        record: Option<u32>,
        /// Sent by an outsider ([`Simulator::send_as_outsider`]): counted in
        /// [`OutsiderStats`], not in [`NetStats`].
        outsider: bool,
    },
    Wake {
        node: u32,
    },
}

struct Scheduled {
    at: u64,
    seq: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct SimNode<S, A> {
    node: Option<Node<S, A>>,
    generation: u64,
    scheduled_wake: Option<u64>,
    group: u32,
    inbound_delay: Duration,
}

/// Counters of the simulated network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetStats {
    /// Frames handed to the network.
    pub frames_sent: u64,
    /// Bytes in those frames.
    pub bytes_sent: u64,
    /// Frames lost to the loss model.
    pub frames_lost: u64,
    /// Frames dropped by a partition or because the receiver was down.
    pub frames_blocked: u64,
    /// Frames that reached a node.
    pub frames_delivered: u64,
    /// Frames the receiving node refused with a `RecvError`.
    pub frames_refused: u64,
}

/// Traffic between the nodes and outsiders: addresses registered with
/// [`Simulator::add_outsider`] that run no node (an attacker). Kept apart
/// from [`NetStats`], which counts the cluster's own frames.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutsiderStats {
    /// Frames outsiders put on the network.
    pub frames_sent: u64,
    /// Bytes in those frames.
    pub bytes_sent: u64,
    /// Of those, frames handed to a running node.
    pub frames_delivered: u64,
    /// Bytes in the delivered frames.
    pub bytes_delivered: u64,
    /// Delivered frames the node refused with a `RecvError`.
    pub frames_refused: u64,
    /// Frames lost to the loss model or dropped because the receiver was
    /// down.
    pub frames_dropped: u64,
    /// Frames nodes sent to an outsider's address (kept for it to read).
    pub frames_captured: u64,
    /// Bytes in those frames.
    pub bytes_captured: u64,
}

/// A frame a node sent to an outsider's address, as the outsider reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutsiderFrame {
    /// Virtual time it was sent.
    pub at: Duration,
    /// Index of the node that sent it.
    pub from: usize,
    /// The outsider address it was sent to.
    pub to: SocketAddr,
    /// The encoded frame.
    pub bytes: Vec<u8>,
}

/// Builds a [`Simulator`]; every setting has a default, so only what a run
/// cares about needs naming.
///
/// ```
/// use std::time::Duration;
/// use gossip_sim::{Fate, Latency, LinkModel, Simulator};
///
/// let link = LinkModel {
///     latency: Latency::Fixed(Duration::from_millis(1)),
///     ..LinkModel::default()
/// };
/// let mut sim = Simulator::builder(3, gossip_core::Config::default())
///     .link(link)
///     .node_seeds([7, 8, 9])
///     .record(true)
///     .build();
/// sim.start_all();
/// assert_eq!(sim.frames().len(), 2, "nodes 1 and 2 ask node 0 to join");
/// sim.run_until(Duration::from_millis(1), &mut ());
/// assert!(sim.frames()[..2].iter().all(|f| f.fate == Fate::Delivered));
/// ```
pub struct SimBuilder<S = NoStrategy, A = NoAggregate> {
    nodes: usize,
    seed: u64,
    config: Config,
    link: LinkModel,
    prototype: S,
    make_aggregate: Box<dyn Fn(usize) -> A>,
    addressing: Addressing,
    node_seeds: Vec<u64>,
    first_generation: u64,
    drive: Drive,
    record: bool,
}

impl SimBuilder {
    fn new(nodes: usize, config: Config) -> Self {
        Self {
            nodes,
            seed: 0,
            config,
            link: LinkModel::default(),
            prototype: NoStrategy,
            make_aggregate: Box::new(|_| NoAggregate),
            addressing: Addressing::Loopback,
            node_seeds: Vec::new(),
            first_generation: 0,
            drive: Drive::Scheduled,
            record: false,
        }
    }
}

impl<S, A> SimBuilder<S, A> {
    /// Seed of every random choice (default 0): the network's, and each
    /// node's unless [`node_seeds`](Self::node_seeds) names it.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The network model (default [`LinkModel::default`]).
    pub fn link(mut self, link: LinkModel) -> Self {
        self.link = link;
        self
    }

    /// Where nodes listen (default [`Addressing::Loopback`]).
    pub fn addressing(mut self, addressing: Addressing) -> Self {
        self.addressing = addressing;
        self
    }

    /// Seeds of the nodes' first lives, node 0 first; nodes past the list
    /// (and every restart) derive theirs from the simulation seed.
    pub fn node_seeds(mut self, seeds: impl IntoIterator<Item = u64>) -> Self {
        self.node_seeds = seeds.into_iter().collect();
        self
    }

    /// Generation of every node's first life (default 0); each
    /// [`restart`](Simulator::restart) adds one.
    pub fn first_generation(mut self, generation: u64) -> Self {
        self.first_generation = generation;
        self
    }

    /// Who moves the simulation forward (default [`Drive::Scheduled`]).
    pub fn drive(mut self, drive: Drive) -> Self {
        self.drive = drive;
        self
    }

    /// Whether to keep every frame and event ([`Simulator::frames`],
    /// [`Simulator::events`]); default off, as large runs would fill memory.
    pub fn record(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// Every node disseminates with a clone of `prototype`.
    pub fn strategy<S2>(self, prototype: S2) -> SimBuilder<S2, A> {
        SimBuilder {
            nodes: self.nodes,
            seed: self.seed,
            config: self.config,
            link: self.link,
            prototype,
            make_aggregate: self.make_aggregate,
            addressing: self.addressing,
            node_seeds: self.node_seeds,
            first_generation: self.first_generation,
            drive: self.drive,
            record: self.record,
        }
    }

    /// Node `i` computes the aggregate `make_aggregate(i)` builds (for its
    /// first life and every restart).
    pub fn aggregate<A2>(
        self,
        make_aggregate: impl Fn(usize) -> A2 + 'static,
    ) -> SimBuilder<S, A2> {
        SimBuilder {
            nodes: self.nodes,
            seed: self.seed,
            config: self.config,
            link: self.link,
            prototype: self.prototype,
            make_aggregate: Box::new(make_aggregate),
            addressing: self.addressing,
            node_seeds: self.node_seeds,
            first_generation: self.first_generation,
            drive: self.drive,
            record: self.record,
        }
    }
}

impl<S: Strategy + Clone, A: Aggregate> SimBuilder<S, A> {
    /// The simulator, its nodes built but not started.
    ///
    /// # Panics
    /// If the config does not validate.
    pub fn build(self) -> Simulator<S, A> {
        let mut sim = Simulator {
            make_aggregate: self.make_aggregate,
            prototype: self.prototype,
            // The only clock read: an arbitrary origin for virtual time. Nodes
            // see only differences, so runs do not depend on it.
            epoch: Instant::now(),
            now: 0,
            seq: 0,
            seed: self.seed,
            config: self.config,
            link: self.link,
            rng: ChaCha8Rng::seed_from_u64(self.seed),
            nodes: Vec::with_capacity(self.nodes),
            queue: BinaryHeap::new(),
            partitioned: false,
            blocked: BTreeSet::new(),
            stats: NetStats::default(),
            addressing: self.addressing,
            drive: self.drive,
            held: Vec::new(),
            trace: self.record.then(Trace::default),
            outsiders: BTreeSet::new(),
            outsider_inbox: Vec::new(),
            outsider_stats: OutsiderStats::default(),
            senders: Vec::new(),
        };
        for i in 0..self.nodes {
            let seed = self.node_seeds.get(i).copied();
            let node = sim.make_node(i, self.first_generation, seed);
            sim.nodes.push(SimNode {
                node: Some(node),
                generation: self.first_generation,
                scheduled_wake: None,
                group: 0,
                inbound_delay: Duration::ZERO,
            });
        }
        sim
    }
}

/// A deterministic simulation of `n` nodes.
///
/// Node `i` listens at its [`Addressing`]'s address `i` ([`node_addr`]`(i)`
/// by default). Everything random (latency, loss, node seeds) derives from
/// one seed, so a run is reproducible.
///
/// Inputs that take an [`Observer`] report to it every event and transmit
/// they cause; with [`SimBuilder::record`] the simulator also keeps them all
/// itself.
///
/// [`node_addr`]: crate::node_addr
///
/// ```
/// use std::time::Duration;
/// use gossip_sim::{LinkModel, Simulator};
///
/// let mut sim = Simulator::new(8, 42, gossip_core::Config::lan(8), LinkModel::default());
/// sim.start_all();
/// sim.run_until(Duration::from_secs(10), &mut ());
/// assert!((0..8).all(|i| sim.node(i).unwrap().live_member_count() == 8));
/// ```
pub struct Simulator<S = NoStrategy, A = NoAggregate> {
    /// Builds node `i`'s aggregate (for its first life and every restart).
    make_aggregate: Box<dyn Fn(usize) -> A>,
    epoch: Instant,
    prototype: S,
    now: u64,
    seq: u64,
    seed: u64,
    config: Config,
    link: LinkModel,
    rng: ChaCha8Rng,
    nodes: Vec<SimNode<S, A>>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    partitioned: bool,
    /// Directed links `(from, to)` that drop every frame.
    blocked: BTreeSet<(usize, usize)>,
    stats: NetStats,
    addressing: Addressing,
    drive: Drive,
    held: Vec<HeldFrame>,
    trace: Option<Trace>,
    /// Addresses of outsiders: frames to them are kept for them to read.
    outsiders: BTreeSet<SocketAddr>,
    /// Frames sent to outsiders and not read yet.
    outsider_inbox: Vec<OutsiderFrame>,
    outsider_stats: OutsiderStats,
    /// Source addresses of queued frames that are no node's own.
    senders: Vec<SocketAddr>,
}

impl Simulator<NoStrategy> {
    /// A builder for `n` membership-only nodes with `config`.
    pub fn builder(n: usize, config: Config) -> SimBuilder {
        SimBuilder::new(n, config)
    }

    /// Builds `n` membership-only nodes with `config`, not yet started.
    ///
    /// # Panics
    /// If `config` does not validate.
    pub fn new(n: usize, seed: u64, config: Config, link: LinkModel) -> Self {
        Self::builder(n, config).seed(seed).link(link).build()
    }
}

impl<S: Strategy + Clone> Simulator<S> {
    /// Builds `n` nodes with `config`, each disseminating with a clone of
    /// `prototype`, not yet started.
    ///
    /// # Panics
    /// If `config` does not validate.
    pub fn with_strategy(
        n: usize,
        seed: u64,
        config: Config,
        link: LinkModel,
        prototype: S,
    ) -> Self {
        Simulator::builder(n, config)
            .seed(seed)
            .link(link)
            .strategy(prototype)
            .build()
    }
}

impl<S: Strategy + Clone, A: Aggregate> Simulator<S, A> {
    /// Like [`Simulator::with_strategy`], node `i` also computing the
    /// aggregate `make_aggregate(i)` builds.
    ///
    /// # Panics
    /// If `config` does not validate.
    pub fn with_parts(
        n: usize,
        seed: u64,
        config: Config,
        link: LinkModel,
        prototype: S,
        make_aggregate: impl Fn(usize) -> A + 'static,
    ) -> Self {
        Simulator::builder(n, config)
            .seed(seed)
            .link(link)
            .strategy(prototype)
            .aggregate(make_aggregate)
            .build()
    }

    fn make_node(&self, index: usize, generation: u64, seed: Option<u64>) -> Node<S, A> {
        let node_seed = seed
            .unwrap_or_else(|| splitmix(self.seed ^ splitmix(index as u64 ^ (generation << 40))));
        Node::with_parts(
            self.config.clone(),
            NodeId::new(self.addressing.addr(index)),
            Generation(generation),
            node_seed,
            self.prototype.clone(),
            (self.make_aggregate)(index),
        )
        .expect("simulation config must validate")
    }

    /// Number of nodes (running or crashed).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the simulation has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Current virtual time since the start.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now)
    }

    /// The instant nodes see for virtual time `at`.
    pub fn instant(&self, at: Duration) -> Instant {
        self.epoch + at
    }

    /// Address of node `index`.
    pub fn addr(&self, index: usize) -> SocketAddr {
        self.addressing.addr(index)
    }

    /// Identity of node `index`.
    pub fn id(&self, index: usize) -> NodeId {
        NodeId::new(self.addr(index))
    }

    /// Index of the node listening at `addr`, if one does.
    pub fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.addressing
            .index(addr)
            .filter(|&i| i < self.nodes.len())
    }

    /// Node `index`, unless it is crashed.
    pub fn node(&self, index: usize) -> Option<&Node<S, A>> {
        self.nodes.get(index).and_then(|n| n.node.as_ref())
    }

    /// Node `index`, mutably, unless it is crashed. Outputs produced through
    /// it stay in the node's queues (for tests of the queues themselves);
    /// [`command`](Self::command) drains them onto the network.
    pub fn node_mut(&mut self, index: usize) -> Option<&mut Node<S, A>> {
        self.nodes.get_mut(index).and_then(|n| n.node.as_mut())
    }

    /// Indices of the nodes that are not crashed.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].node.is_some())
            .collect()
    }

    /// Runs `f` on node `index` at the current time, then sends its
    /// transmits and reports its events. `None` if the node is crashed.
    pub fn command<R>(
        &mut self,
        index: usize,
        f: impl FnOnce(&mut Node<S, A>, Instant) -> R,
        observer: &mut dyn Observer,
    ) -> Option<R> {
        let now = self.instant(self.now());
        let result = f(self.nodes.get_mut(index)?.node.as_mut()?, now);
        self.drain(index, observer);
        Some(result)
    }

    /// Node `index` handles a timeout now, whether or not one is due (an
    /// early tick must do nothing). `false` if it is crashed.
    pub fn tick(&mut self, index: usize, observer: &mut dyn Observer) -> bool {
        self.command(index, |node, now| node.handle_timeout(now), observer)
            .is_some()
    }

    /// Hands `bytes` to node `to` now as if sent from `from` (any address,
    /// a forged one included), bypassing the network. `None` if the node is
    /// crashed. Not counted in [`NetStats`]; recorded as [`Origin::Injected`].
    pub fn inject(
        &mut self,
        to: usize,
        from: SocketAddr,
        bytes: &[u8],
        observer: &mut dyn Observer,
    ) -> Option<Result<(), RecvError>> {
        let to_addr = self.addr(to);
        let record = self.record_frame(from, to_addr, bytes, Origin::Injected, Fate::InFlight);
        let result = self.command(
            to,
            |node, now| node.handle_message(now, from, bytes),
            observer,
        );
        let fate = result.as_ref().map_or(Fate::Blocked, outcome);
        self.set_fate(record, fate);
        result
    }

    /// Node `index` broadcasts `payload` now. `None` if it is crashed or
    /// the node refused (see [`Node::broadcast`]).
    pub fn broadcast(
        &mut self,
        index: usize,
        payload: &[u8],
        observer: &mut dyn Observer,
    ) -> Option<MessageId> {
        self.command(
            index,
            |node, now| node.broadcast(now, payload).ok(),
            observer,
        )
        .flatten()
    }

    /// Node `index` changes its aggregation input to `value` now (see
    /// [`Node::set_aggregate_input`]). `None` if it is crashed.
    pub fn set_aggregate_input(
        &mut self,
        index: usize,
        value: f64,
        observer: &mut dyn Observer,
    ) -> Option<Result<(), CommandError>> {
        self.command(
            index,
            |node, now| node.set_aggregate_input(now, value),
            observer,
        )
    }

    /// Frames sent but not delivered yet, as `(receiver, sender, bytes)`,
    /// in no particular order. Those towards a crashed node or across a
    /// partition will be dropped on arrival; lost ones were never queued.
    pub fn in_flight(&self) -> impl Iterator<Item = (usize, SocketAddr, &[u8])> + '_ {
        self.queue
            .iter()
            .filter_map(|Reverse(item)| match &item.action {
                Action::Deliver {
                    to, from, bytes, ..
                } => Some((*to as usize, self.sender_addr(*from), &bytes[..])),
                Action::Wake { .. } => None,
            })
    }

    /// Frames waiting for the caller under [`Drive::Manual`], oldest first.
    pub fn held(&self) -> &[HeldFrame] {
        &self.held
    }

    /// Removes held frame `k` (to deliver it with [`inject`](Self::inject),
    /// damaged or not, or to lose it).
    pub fn take_held(&mut self, k: usize) -> Option<HeldFrame> {
        (k < self.held.len()).then(|| self.held.remove(k))
    }

    /// Network counters.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// Every frame so far, in the order sent; empty unless recording
    /// ([`SimBuilder::record`]).
    pub fn frames(&self) -> &[FrameRecord] {
        self.trace.as_ref().map_or(&[], |t| &t.frames)
    }

    /// Every event so far, in the order emitted; empty unless recording.
    pub fn events(&self) -> &[EventRecord] {
        self.trace.as_ref().map_or(&[], |t| &t.events)
    }

    /// Starts every node now: node 0 founds the cluster, the others join
    /// through it.
    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i, &mut ());
        }
    }

    fn start(&mut self, index: usize, observer: &mut dyn Observer) {
        let seeds = if index == 0 {
            vec![]
        } else {
            vec![self.addr(0)]
        };
        let now = self.instant(self.now());
        if let Some(node) = self.nodes[index].node.as_mut() {
            node.join(now, &seeds).expect("fresh node joins");
        }
        self.drain(index, observer);
    }

    /// Crashes node `index`: it stops at once, silently, and frames to it are
    /// lost (frames it sent before are still delivered).
    pub fn crash(&mut self, index: usize) {
        let slot = &mut self.nodes[index];
        slot.node = None;
        slot.scheduled_wake = None;
    }

    /// Restarts a crashed node as a new process (next generation, empty
    /// state) that joins through node 0.
    pub fn restart(&mut self, index: usize, observer: &mut dyn Observer) {
        let generation = self.nodes[index].generation + 1;
        let node = self.make_node(index, generation, None);
        let slot = &mut self.nodes[index];
        slot.generation = generation;
        slot.node = Some(node);
        slot.scheduled_wake = None;
        self.start(index, observer);
    }

    /// Puts `node`, built by the caller (its own seed, generation or
    /// config), in slot `index` in place of whatever ran there, crashed or
    /// not. It is not started: join it with [`command`](Self::command).
    ///
    /// # Panics
    /// If `node` does not listen at [`addr`](Self::addr)`(index)`.
    pub fn replace(&mut self, index: usize, node: Node<S, A>) {
        assert_eq!(
            node.id().addr(),
            self.addr(index),
            "a replacement listens at its slot's address"
        );
        let generation = node.members().next().map_or(0, |m| m.generation.0);
        let slot = &mut self.nodes[index];
        slot.generation = generation;
        slot.node = Some(node);
        slot.scheduled_wake = None;
    }

    /// Splits the network: frames between nodes of different groups are
    /// dropped until [`heal`](Self::heal). `group_of(i)` names node i's group.
    pub fn partition(&mut self, group_of: impl Fn(usize) -> u32) {
        for (i, slot) in self.nodes.iter_mut().enumerate() {
            slot.group = group_of(i);
        }
        self.partitioned = true;
    }

    /// Ends a partition.
    pub fn heal(&mut self) {
        self.partitioned = false;
    }

    /// Whether nodes `a` and `b` are currently cut off from each other by a
    /// partition.
    pub fn is_cut(&self, a: usize, b: usize) -> bool {
        self.partitioned && self.nodes[a].group != self.nodes[b].group
    }

    /// Drops every frame from `from` to `to` (one direction) until unblocked;
    /// frames already on the way are dropped on arrival.
    pub fn block(&mut self, from: usize, to: usize) {
        self.blocked.insert((from, to));
    }

    /// Blocks both directions between `a` and `b`.
    pub fn block_pair(&mut self, a: usize, b: usize) {
        self.block(a, b);
        self.block(b, a);
    }

    /// Lets frames from `from` to `to` through again.
    pub fn unblock(&mut self, from: usize, to: usize) {
        self.blocked.remove(&(from, to));
    }

    /// Lets every blocked link through again (partitions are separate: see
    /// [`heal`](Self::heal)).
    pub fn unblock_all(&mut self) {
        self.blocked.clear();
    }

    /// Whether frames from `from` to `to` are dropped now, by a partition or
    /// a blocked link.
    pub fn is_blocked(&self, from: usize, to: usize) -> bool {
        self.is_cut(from, to) || self.blocked.contains(&(from, to))
    }

    /// Makes node `index` slow: every frame it receives is processed `delay`
    /// late (its timers and sends are unaffected).
    pub fn set_inbound_delay(&mut self, index: usize, delay: Duration) {
        self.nodes[index].inbound_delay = delay;
    }

    /// Changes the link model from now on.
    pub fn set_link(&mut self, link: LinkModel) {
        self.link = link;
    }

    /// How a queued frame names its source address `from`.
    fn sender(&mut self, from: SocketAddr) -> Sender {
        if let Some(i) = self.index_of(from).filter(|&i| self.addr(i) == from) {
            return Sender::Node(i as u32);
        }
        let k = match self.senders.iter().position(|&a| a == from) {
            Some(k) => k,
            None => {
                self.senders.push(from);
                self.senders.len() - 1
            }
        };
        Sender::Other(k as u32)
    }

    /// The source address a queued frame names.
    fn sender_addr(&self, sender: Sender) -> SocketAddr {
        match sender {
            Sender::Node(i) => self.addr(i as usize),
            Sender::Other(k) => self.senders[k as usize],
        }
    }

    fn schedule(&mut self, at: u64, action: Action) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            action,
        }));
    }

    /// Appends a frame to the trace, if recording; returns its index.
    fn record_frame(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        bytes: &[u8],
        origin: Origin,
        fate: Fate,
    ) -> Option<usize> {
        let at = self.now();
        let trace = self.trace.as_mut()?;
        trace.frames.push(FrameRecord {
            at,
            from,
            to,
            bytes: bytes.to_vec(),
            origin,
            fate,
        });
        Some(trace.frames.len() - 1)
    }

    fn set_fate(&mut self, record: Option<usize>, fate: Fate) {
        if let (Some(trace), Some(k)) = (self.trace.as_mut(), record) {
            trace.frames[k].fate = fate;
        }
    }

    /// Takes every output of node `index` and reschedules its wake-up.
    fn drain(&mut self, index: usize, observer: &mut dyn Observer) {
        let at = self.now();
        let Some(node) = self.nodes[index].node.as_mut() else {
            return;
        };
        let from = node.id().addr();
        let mut sends = Vec::new();
        while let Some(transmit) = node.poll_transmit() {
            sends.push(transmit);
        }
        while let Some(event) = node.poll_event() {
            observer.on_event(at, index, &event);
            if let Some(trace) = self.trace.as_mut() {
                trace.events.push(EventRecord {
                    at,
                    node: index,
                    event,
                });
            }
        }
        let wake = node.poll_timeout().map(|t| {
            let offset = t.saturating_duration_since(self.epoch).as_nanos() as u64;
            offset.max(self.now)
        });
        for transmit in sends {
            observer.on_transmit(at, index, transmit.to, &transmit.bytes);
            self.stats.frames_sent += 1;
            self.stats.bytes_sent += transmit.bytes.len() as u64;
            if self.drive == Drive::Manual {
                self.record_frame(from, transmit.to, &transmit.bytes, Origin::Sent, Fate::Held);
                self.held.push(HeldFrame {
                    from: index,
                    to: transmit.to,
                    bytes: transmit.bytes,
                });
                continue;
            }
            self.send(index, from, transmit.to, transmit.bytes);
        }
        if self.drive == Drive::Manual {
            return; // the caller fires timers
        }
        if let Some(wake) = wake {
            let slot = &mut self.nodes[index];
            if slot.scheduled_wake.is_none_or(|s| wake < s) {
                slot.scheduled_wake = Some(wake);
                self.schedule(wake, Action::Wake { node: index as u32 });
            }
        }
    }

    /// Puts one frame of node `index` on the modelled network.
    fn send(&mut self, index: usize, from: SocketAddr, to_addr: SocketAddr, bytes: Vec<u8>) {
        let Some(to) = self.index_of(to_addr) else {
            if self.outsiders.contains(&to_addr) {
                self.outsider_stats.frames_captured += 1;
                self.outsider_stats.bytes_captured += bytes.len() as u64;
                self.record_frame(from, to_addr, &bytes, Origin::Sent, Fate::Delivered);
                self.outsider_inbox.push(OutsiderFrame {
                    at: self.now(),
                    from: index,
                    to: to_addr,
                    bytes,
                });
                return;
            }
            self.stats.frames_blocked += 1;
            self.record_frame(from, to_addr, &bytes, Origin::Sent, Fate::Blocked);
            return;
        };
        if self.is_blocked(index, to) {
            self.stats.frames_blocked += 1;
            self.record_frame(from, to_addr, &bytes, Origin::Sent, Fate::Blocked);
            return;
        }
        if self.rng.random::<f64>() < self.link.loss {
            self.stats.frames_lost += 1;
            self.record_frame(from, to_addr, &bytes, Origin::Sent, Fate::Lost);
            return;
        }
        let copies = if self.rng.random::<f64>() < self.link.duplicate {
            2
        } else {
            1
        };
        let mut payload = Some(bytes.into_boxed_slice());
        for copy in 0..copies {
            let mut delay = self.link.latency.sample(&mut self.rng);
            if self.rng.random::<f64>() < self.link.reorder {
                delay += self.link.reorder_delay.mul_f64(self.rng.random::<f64>());
            }
            delay += self.nodes[to].inbound_delay;
            let bytes = if copy + 1 == copies {
                payload.take().expect("last copy takes the payload")
            } else {
                payload.clone().expect("payload kept for the last copy")
            };
            let origin = if copy == 0 {
                Origin::Sent
            } else {
                Origin::Duplicate
            };
            let record = self.record_frame(from, to_addr, &bytes, origin, Fate::InFlight);
            let sender = self.sender(from);
            self.schedule(
                self.now + delay.as_nanos() as u64,
                Action::Deliver {
                    to: to as u32,
                    from: sender,
                    bytes,
                    record: record.map(|k| k as u32),
                    outsider: false,
                },
            );
        }
    }

    /// Registers `addr` as an outsider's: a party that runs no node but
    /// sends frames with [`send_as_outsider`](Self::send_as_outsider) and
    /// reads, with [`take_outsider_frames`](Self::take_outsider_frames),
    /// what nodes send to `addr`.
    ///
    /// # Panics
    /// If a node of this simulation listens at `addr`.
    pub fn add_outsider(&mut self, addr: SocketAddr) {
        assert!(
            self.index_of(addr).is_none(),
            "an outsider cannot share a node's address"
        );
        self.outsiders.insert(addr);
    }

    /// Puts a frame from outsider address `from` to node `to` on the
    /// modelled network: it is lost at the link's loss rate and arrives
    /// after the link's latency (plus the receiver's inbound delay), with
    /// `from` as its source address. The network does not let outsiders
    /// spoof source addresses, and partitions and blocked links only cut
    /// nodes from nodes. Counted in [`outsider_stats`](Self::outsider_stats).
    pub fn send_as_outsider(&mut self, from: SocketAddr, to: usize, bytes: Vec<u8>) {
        self.outsider_stats.frames_sent += 1;
        self.outsider_stats.bytes_sent += bytes.len() as u64;
        let to_addr = self.addr(to);
        if self.rng.random::<f64>() < self.link.loss {
            self.outsider_stats.frames_dropped += 1;
            self.record_frame(from, to_addr, &bytes, Origin::Injected, Fate::Lost);
            return;
        }
        let mut delay = self.link.latency.sample(&mut self.rng);
        if self.rng.random::<f64>() < self.link.reorder {
            delay += self.link.reorder_delay.mul_f64(self.rng.random::<f64>());
        }
        delay += self.nodes[to].inbound_delay;
        let record = self.record_frame(from, to_addr, &bytes, Origin::Injected, Fate::InFlight);
        let sender = self.sender(from);
        self.schedule(
            self.now + delay.as_nanos() as u64,
            Action::Deliver {
                to: to as u32,
                from: sender,
                bytes: bytes.into_boxed_slice(),
                record: record.map(|k| k as u32),
                outsider: true,
            },
        );
    }

    /// Takes the frames nodes sent to outsider addresses since the last
    /// call, oldest first.
    pub fn take_outsider_frames(&mut self) -> Vec<OutsiderFrame> {
        core::mem::take(&mut self.outsider_inbox)
    }

    /// Counters of the traffic between nodes and outsiders.
    pub fn outsider_stats(&self) -> &OutsiderStats {
        &self.outsider_stats
    }

    /// Runs the earliest scheduled action due at or before `until`,
    /// reporting to `observer`; `false` if there is none (the clock then
    /// stays where it was).
    pub fn step(&mut self, until: Duration, observer: &mut dyn Observer) -> bool {
        self.step_nanos(until.as_nanos() as u64, observer)
    }

    fn step_nanos(&mut self, until: u64, observer: &mut dyn Observer) -> bool {
        match self.queue.peek() {
            Some(Reverse(next)) if next.at <= until => {}
            _ => return false,
        }
        let Reverse(item) = self.queue.pop().expect("peeked");
        self.now = self.now.max(item.at);
        let now = self.instant(self.now());
        match item.action {
            Action::Deliver {
                to,
                from,
                bytes,
                record,
                outsider,
            } => {
                let (to, from) = (to as usize, self.sender_addr(from));
                let record = record.map(|k| k as usize);
                // A frame in flight when the partition started is lost too.
                let sender = self.index_of(from);
                if sender.is_some_and(|s| self.is_blocked(s, to)) {
                    self.stats.frames_blocked += 1;
                    self.set_fate(record, Fate::Blocked);
                    return true;
                }
                let Some(node) = self.nodes[to].node.as_mut() else {
                    if outsider {
                        self.outsider_stats.frames_dropped += 1;
                    } else {
                        self.stats.frames_blocked += 1;
                    }
                    self.set_fate(record, Fate::Blocked);
                    return true;
                };
                let result = node.handle_message(now, from, &bytes);
                if outsider {
                    self.outsider_stats.frames_delivered += 1;
                    self.outsider_stats.bytes_delivered += bytes.len() as u64;
                    if result.is_err() {
                        self.outsider_stats.frames_refused += 1;
                    }
                } else {
                    self.stats.frames_delivered += 1;
                    if result.is_err() {
                        self.stats.frames_refused += 1;
                    }
                }
                self.set_fate(record, outcome(&result));
                self.drain(to, observer);
            }
            Action::Wake { node: index } => {
                let index = index as usize;
                let slot = &mut self.nodes[index];
                if slot.scheduled_wake != Some(item.at) {
                    return true; // superseded by an earlier wake-up
                }
                slot.scheduled_wake = None;
                if let Some(node) = slot.node.as_mut() {
                    node.handle_timeout(now);
                    // The core's timer contract, checked on every wake-up of
                    // every simulation that runs with debug assertions.
                    debug_assert!(
                        node.poll_timeout().is_none_or(|t| t > now),
                        "after handle_timeout, poll_timeout is still due"
                    );
                }
                self.drain(index, observer);
            }
        }
        true
    }

    /// Runs until virtual time `until`, reporting to `observer`; the clock
    /// ends at `until` (under [`Drive::Manual`] it only moves the clock).
    pub fn run_until(&mut self, until: Duration, observer: &mut dyn Observer) {
        let until = until.as_nanos() as u64;
        while self.step_nanos(until, observer) {}
        self.now = self.now.max(until);
    }

    /// Runs for `d` more virtual time.
    pub fn run_for(&mut self, d: Duration, observer: &mut dyn Observer) {
        self.run_until(self.now() + d, observer);
    }

    /// Runs until `done(self)` holds (checked before every step) or virtual
    /// time reaches `deadline`; returns the time it first held, if it did.
    pub fn run_until_cond(
        &mut self,
        deadline: Duration,
        observer: &mut dyn Observer,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Option<Duration> {
        loop {
            if done(self) {
                return Some(self.now());
            }
            if !self.step(deadline, observer) {
                self.now = self.now.max(deadline.as_nanos() as u64);
                return done(self).then(|| self.now());
            }
        }
    }

    /// Runs until no frame is in flight any more (timers due meanwhile fire
    /// too), or until virtual time `limit`; returns whether the network went
    /// quiet. Nodes always have timers, so this is the nearest a running
    /// cluster comes to quiescence.
    pub fn run_until_quiet(&mut self, limit: Duration, observer: &mut dyn Observer) -> bool {
        self.run_until_cond(limit, observer, |s| s.in_flight().next().is_none())
            .is_some()
    }

    /// The earliest deadline of any running node, as virtual time (never
    /// before now).
    pub fn next_deadline(&self) -> Option<Duration> {
        self.nodes
            .iter()
            .filter_map(|slot| slot.node.as_ref()?.poll_timeout())
            .min()
            .map(|t| t.saturating_duration_since(self.epoch).max(self.now()))
    }

    // ----- views, for assertions ---------------------------------------------

    /// Events node `observer` emitted about node `about`, in order (empty
    /// unless recording).
    pub fn events_about(&self, observer: usize, about: usize) -> Vec<&EventRecord> {
        let id = self.id(about);
        self.events()
            .iter()
            .filter(|e| e.node == observer && e.member().is_some_and(|m| m.id == id))
            .collect()
    }

    /// How running node `observer` currently sees node `about`.
    pub fn view_of(&self, observer: usize, about: usize) -> Option<Member> {
        let id = self.id(about);
        self.node(observer)?.members().find(|m| m.id == id)
    }

    /// Liveness of `about` as running node `observer` sees it.
    pub fn liveness(&self, observer: usize, about: usize) -> Option<Liveness> {
        self.view_of(observer, about).map(|m| m.liveness)
    }

    /// Whether every running node counts exactly `n` live members.
    pub fn all_running_see(&self, n: usize) -> bool {
        self.nodes
            .iter()
            .filter_map(|slot| slot.node.as_ref())
            .all(|node| node.live_member_count() == n)
    }
}

/// The fate of a frame the receiver handled.
fn outcome(result: &Result<(), RecvError>) -> Fate {
    match result {
        Ok(()) => Fate::Delivered,
        Err(e) => Fate::Refused(e.clone()),
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
