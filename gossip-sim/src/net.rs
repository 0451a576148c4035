//! The discrete-event simulator: real [`Node`]s exchanging real encoded frames
//! over a modelled network, in virtual time.

use core::cmp::Reverse;
use core::time::Duration;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

use gossip_core::{
    Aggregate, CommandError, Config, Event, Generation, MessageId, NoAggregate, NoStrategy, Node,
    NodeId, Strategy,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Port every simulated node listens on (addresses differ by IP).
pub const SIM_PORT: u16 = 7946;

/// Address of simulated node `index`: 127.0.0.0/8 loopback addresses, so a
/// simulated address can never name a real remote host.
pub fn node_addr(index: usize) -> SocketAddr {
    let raw = u32::from(Ipv4Addr::new(127, 0, 0, 1)) + index as u32;
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(raw), SIM_PORT))
}

/// Inverse of [`node_addr`].
pub fn node_index(addr: SocketAddr) -> Option<usize> {
    match addr {
        SocketAddr::V4(a) if a.port() == SIM_PORT => {
            let base = u32::from(Ipv4Addr::new(127, 0, 0, 1));
            u32::from(*a.ip()).checked_sub(base).map(|i| i as usize)
        }
        _ => None,
    }
}

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

enum Action {
    Deliver {
        to: usize,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    Wake {
        node: usize,
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

/// A deterministic simulation of `n` nodes.
///
/// Node `i` listens at [`node_addr`]`(i)`. Everything random (latency, loss,
/// node seeds) derives from one seed, so a run is reproducible.
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
    stats: NetStats,
}

impl Simulator<NoStrategy> {
    /// Builds `n` membership-only nodes with `config`, not yet started.
    ///
    /// # Panics
    /// If `config` does not validate.
    pub fn new(n: usize, seed: u64, config: Config, link: LinkModel) -> Self {
        Self::with_strategy(n, seed, config, link, NoStrategy)
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
        Simulator::with_parts(n, seed, config, link, prototype, |_| NoAggregate)
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
        let mut sim = Self {
            make_aggregate: Box::new(make_aggregate),
            prototype,
            // The only clock read: an arbitrary origin for virtual time. Nodes
            // see only differences, so runs do not depend on it.
            epoch: Instant::now(),
            now: 0,
            seq: 0,
            seed,
            config,
            link,
            rng: ChaCha8Rng::seed_from_u64(seed),
            nodes: Vec::with_capacity(n),
            queue: BinaryHeap::new(),
            partitioned: false,
            stats: NetStats::default(),
        };
        for i in 0..n {
            let node = sim.make_node(i, 0);
            sim.nodes.push(SimNode {
                node: Some(node),
                generation: 0,
                scheduled_wake: None,
                group: 0,
                inbound_delay: Duration::ZERO,
            });
        }
        sim
    }

    fn make_node(&self, index: usize, generation: u64) -> Node<S, A> {
        let node_seed = splitmix(self.seed ^ splitmix(index as u64 ^ (generation << 40)));
        Node::with_parts(
            self.config.clone(),
            NodeId::new(node_addr(index)),
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

    /// Node `index`, unless it is crashed.
    pub fn node(&self, index: usize) -> Option<&Node<S, A>> {
        self.nodes.get(index).and_then(|n| n.node.as_ref())
    }

    /// Node `index` broadcasts `payload` now. `None` if it is crashed or
    /// the node refused (see [`Node::broadcast`]).
    pub fn broadcast(
        &mut self,
        index: usize,
        payload: &[u8],
        observer: &mut dyn Observer,
    ) -> Option<MessageId> {
        let now = self.instant(self.now());
        let id = self
            .nodes
            .get_mut(index)?
            .node
            .as_mut()?
            .broadcast(now, payload)
            .ok();
        self.drain(index, observer);
        id
    }

    /// Node `index` changes its aggregation input to `value` now (see
    /// [`Node::set_aggregate_input`]). `None` if it is crashed.
    pub fn set_aggregate_input(
        &mut self,
        index: usize,
        value: f64,
        observer: &mut dyn Observer,
    ) -> Option<Result<(), CommandError>> {
        let now = self.instant(self.now());
        let result = self
            .nodes
            .get_mut(index)?
            .node
            .as_mut()?
            .set_aggregate_input(now, value);
        self.drain(index, observer);
        Some(result)
    }

    /// Frames sent but not delivered yet, as `(receiver, sender, bytes)`,
    /// in no particular order. Those towards a crashed node or across a
    /// partition will be dropped on arrival; lost ones were never queued.
    pub fn in_flight(&self) -> impl Iterator<Item = (usize, SocketAddr, &[u8])> + '_ {
        self.queue
            .iter()
            .filter_map(|Reverse(item)| match &item.action {
                Action::Deliver { to, from, bytes } => Some((*to, *from, bytes.as_slice())),
                Action::Wake { .. } => None,
            })
    }

    /// Network counters.
    pub fn stats(&self) -> &NetStats {
        &self.stats
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
            vec![node_addr(0)]
        };
        let now = self.instant(self.now());
        if let Some(node) = self.nodes[index].node.as_mut() {
            node.join(now, &seeds).expect("fresh node joins");
        }
        self.drain(index, observer);
    }

    /// Crashes node `index`: it stops at once, silently, and frames to it are lost.
    pub fn crash(&mut self, index: usize) {
        let slot = &mut self.nodes[index];
        slot.node = None;
        slot.scheduled_wake = None;
    }

    /// Restarts a crashed node as a new process (next generation, empty
    /// state) that joins through node 0.
    pub fn restart(&mut self, index: usize, observer: &mut dyn Observer) {
        let generation = self.nodes[index].generation + 1;
        let node = self.make_node(index, generation);
        let slot = &mut self.nodes[index];
        slot.generation = generation;
        slot.node = Some(node);
        slot.scheduled_wake = None;
        self.start(index, observer);
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

    /// Whether nodes `a` and `b` are currently cut off from each other.
    pub fn is_cut(&self, a: usize, b: usize) -> bool {
        self.partitioned && self.nodes[a].group != self.nodes[b].group
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

    fn schedule(&mut self, at: u64, action: Action) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            action,
        }));
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
        }
        let wake = node.poll_timeout().map(|t| {
            let offset = t.saturating_duration_since(self.epoch).as_nanos() as u64;
            offset.max(self.now)
        });
        for transmit in sends {
            observer.on_transmit(at, index, transmit.to, &transmit.bytes);
            self.stats.frames_sent += 1;
            self.stats.bytes_sent += transmit.bytes.len() as u64;
            let Some(to) = node_index(transmit.to).filter(|&i| i < self.nodes.len()) else {
                self.stats.frames_blocked += 1;
                continue;
            };
            if self.is_cut(index, to) {
                self.stats.frames_blocked += 1;
                continue;
            }
            if self.rng.random::<f64>() < self.link.loss {
                self.stats.frames_lost += 1;
                continue;
            }
            let copies = if self.rng.random::<f64>() < self.link.duplicate {
                2
            } else {
                1
            };
            let mut payload = Some(transmit.bytes);
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
                self.schedule(
                    self.now + delay.as_nanos() as u64,
                    Action::Deliver { to, from, bytes },
                );
            }
        }
        if let Some(wake) = wake {
            let slot = &mut self.nodes[index];
            if slot.scheduled_wake.is_none_or(|s| wake < s) {
                slot.scheduled_wake = Some(wake);
                self.schedule(wake, Action::Wake { node: index });
            }
        }
    }

    /// Runs until virtual time `until`, reporting to `observer`.
    pub fn run_until(&mut self, until: Duration, observer: &mut dyn Observer) {
        let until = until.as_nanos() as u64;
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > until {
                break;
            }
            let Reverse(item) = self.queue.pop().expect("peeked");
            self.now = self.now.max(item.at);
            let now = self.instant(self.now());
            match item.action {
                Action::Deliver { to, from, bytes } => {
                    // A frame in flight when the partition started is lost too.
                    let sender = node_index(from).unwrap_or(usize::MAX);
                    if sender < self.nodes.len() && self.is_cut(sender, to) {
                        self.stats.frames_blocked += 1;
                        continue;
                    }
                    let Some(node) = self.nodes[to].node.as_mut() else {
                        self.stats.frames_blocked += 1;
                        continue;
                    };
                    self.stats.frames_delivered += 1;
                    if node.handle_message(now, from, &bytes).is_err() {
                        self.stats.frames_refused += 1;
                    }
                    self.drain(to, observer);
                }
                Action::Wake { node: index } => {
                    let slot = &mut self.nodes[index];
                    if slot.scheduled_wake != Some(item.at) {
                        continue; // superseded by an earlier wake-up
                    }
                    slot.scheduled_wake = None;
                    if let Some(node) = slot.node.as_mut() {
                        node.handle_timeout(now);
                    }
                    self.drain(index, observer);
                }
            }
        }
        self.now = self.now.max(until);
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
