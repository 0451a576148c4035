//! Deterministic multi-node stepping harness for `gossip-core` integration tests.
//!
//! No sleeps and no threads: a virtual clock (one base `Instant` captured once
//! plus a `Duration` offset), `N` nodes at `127.0.0.1:(7000 + i)`, a queue of
//! in-flight frames keyed by `(delivery time, sequence)` with a fixed latency,
//! and per-link blocking plus a crashed set. [`Sim::run_until`] repeatedly
//! delivers the earliest pending frame or fires the earliest node deadline,
//! draining `poll_transmit` and `poll_event` after every input. Every frame
//! sent and every event observed is logged for assertions.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gossip_core::{Config, Event, Generation, Liveness, Member, Node, NodeId, RecvError};

/// One-way latency of every link.
pub const LATENCY: Duration = Duration::from_millis(1);

/// Steps allowed at one virtual instant before the harness calls it a livelock.
const MAX_STEPS_AT_ONE_INSTANT: u32 = 100_000;

/// The origin of virtual time. Captured once per harness; nothing depends on
/// its value, only on offsets from it.
#[allow(clippy::disallowed_methods)] // the test host, not the core, reads the clock once
pub fn base_instant() -> Instant {
    Instant::now()
}

/// Address of node `i`.
pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::from((
        [127, 0, 0, 1],
        7000 + u16::try_from(i).expect("small index"),
    ))
}

/// Identity of node `i`.
pub fn id(i: usize) -> NodeId {
    NodeId::new(addr(i))
}

/// Seeds `base, base + 1, ...` for `n` nodes.
pub fn seeds(n: usize, base: u64) -> Vec<u64> {
    (0..n as u64).map(|i| base + i).collect()
}

/// A frame handed to the host by a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Virtual time it was polled.
    pub at: Duration,
    /// Sender address.
    pub from: SocketAddr,
    /// Destination address.
    pub to: SocketAddr,
    /// The encoded frame.
    pub bytes: Vec<u8>,
}

/// An event a node emitted.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// Virtual time it was polled.
    pub at: Duration,
    /// Index of the node that emitted it.
    pub observer: usize,
    /// The event.
    pub event: Event,
}

/// Short name of an event's kind (the enum is `#[non_exhaustive]`).
pub fn kind(event: &Event) -> &'static str {
    match event {
        Event::MemberUp(_) => "up",
        Event::MemberSuspect(_) => "suspect",
        Event::MemberDown(_) => "down",
        Event::MemberLeft(_) => "left",
        Event::MemberUpdated(_) => "updated",
        _ => "other",
    }
}

/// The member an event is about.
pub fn member(event: &Event) -> &Member {
    match event {
        Event::MemberUp(m)
        | Event::MemberSuspect(m)
        | Event::MemberDown(m)
        | Event::MemberLeft(m)
        | Event::MemberUpdated(m) => m,
        _ => panic!("unknown event kind {event:?}"),
    }
}

struct InFlight {
    from: usize,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// What the harness does next.
enum Action {
    Deliver,
    Tick(usize),
}

/// A deterministic cluster of [`Node`]s on a virtual clock.
pub struct Sim {
    base: Instant,
    now: Duration,
    nodes: Vec<Node>,
    crashed: BTreeSet<usize>,
    blocked: BTreeSet<(usize, usize)>,
    queue: BTreeMap<(Duration, u64), InFlight>,
    next_seq: u64,
    steps_at_now: u32,
    /// Every frame any node handed out, in order.
    pub sent: Vec<Sent>,
    /// Every event any node emitted, in order.
    pub events: Vec<Observed>,
    /// Every `handle_message` error, as (time, receiver, error).
    pub recv_errors: Vec<(Duration, usize, RecvError)>,
    /// Frames dropped by a block or a crash.
    pub dropped: u64,
}

impl Sim {
    /// `seeds.len()` nodes with `config`, generation 1, not started.
    pub fn new(config: &Config, seeds: &[u64]) -> Self {
        let nodes = seeds
            .iter()
            .enumerate()
            .map(|(i, &seed)| {
                Node::new(config.clone(), id(i), Generation(1), seed).expect("valid config")
            })
            .collect();
        Self {
            base: base_instant(),
            now: Duration::ZERO,
            nodes,
            crashed: BTreeSet::new(),
            blocked: BTreeSet::new(),
            queue: BTreeMap::new(),
            next_seq: 0,
            steps_at_now: 0,
            sent: Vec::new(),
            events: Vec::new(),
            recv_errors: Vec::new(),
            dropped: 0,
        }
    }

    /// `n` nodes with the default config and seeds `base_seed + i`, node 0
    /// founding the cluster and every other node joining through it.
    pub fn started(n: usize, base_seed: u64) -> Self {
        Self::started_with(&Config::default(), n, base_seed)
    }

    /// Like [`Sim::started`], with `config` for every node.
    pub fn started_with(config: &Config, n: usize, base_seed: u64) -> Self {
        let mut sim = Self::new(config, &seeds(n, base_seed));
        sim.join_all_via_first();
        sim
    }

    /// Node 0 founds the cluster; every other node joins with node 0 as seed.
    pub fn join_all_via_first(&mut self) {
        self.command(0, |node, now| node.join(now, &[]))
            .expect("join");
        for i in 1..self.nodes.len() {
            self.command(i, |node, now| node.join(now, &[addr(0)]))
                .expect("join");
        }
    }

    /// Number of nodes (crashed ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Current virtual time as an offset from the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Current virtual time as the `Instant` nodes are given.
    pub fn instant(&self) -> Instant {
        self.base + self.now
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Node `i`, mutably (outputs produced through this are not drained).
    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        &mut self.nodes[i]
    }

    /// Runs a command on node `i` at the current time, then drains its outputs.
    pub fn command<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> R {
        let now = self.instant();
        let result = f(&mut self.nodes[i], now);
        self.drain(i);
        result
    }

    /// Node `i` stops: it is no longer ticked and nothing reaches or leaves it.
    pub fn crash(&mut self, i: usize) {
        self.crashed.insert(i);
    }

    /// Whether node `i` is crashed.
    pub fn is_crashed(&self, i: usize) -> bool {
        self.crashed.contains(&i)
    }

    /// Replaces node `i` by `node` (a restarted process) and un-crashes it.
    pub fn replace(&mut self, i: usize, node: Node) {
        assert_eq!(
            node.id(),
            id(i),
            "a replacement listens at the same address"
        );
        self.nodes[i] = node;
        self.crashed.remove(&i);
    }

    /// Drops frames from `from` to `to` until unblocked.
    pub fn block(&mut self, from: usize, to: usize) {
        self.blocked.insert((from, to));
    }

    /// Drops every frame between a member of `a` and a member of `b`, both ways.
    pub fn partition(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.block(x, y);
                self.block(y, x);
            }
        }
    }

    /// Removes every link block.
    pub fn unblock_all(&mut self) {
        self.blocked.clear();
    }

    /// Index of the node listening at `addr`.
    pub fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.id().addr() == addr)
    }

    /// Indices of the nodes that are not crashed.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| !self.crashed.contains(i))
            .collect()
    }

    /// Runs until virtual time `t` (absolute offset); the clock ends at `t`.
    pub fn run_until(&mut self, t: Duration) {
        while self.step(t) {}
        if t > self.now {
            self.now = t;
            self.steps_at_now = 0;
        }
    }

    /// Runs for `d` more virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Runs until `done(self)` holds (checked before every step) or virtual
    /// time reaches `deadline`; returns the time it first held.
    pub fn run_until_cond(
        &mut self,
        deadline: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Option<Duration> {
        loop {
            if done(self) {
                return Some(self.now);
            }
            if !self.step(deadline) {
                self.now = self.now.max(deadline);
                return done(self).then_some(self.now);
            }
        }
    }

    /// Performs the earliest pending action due at or before `limit`.
    /// Frames win ties against timers; timers tie-break by node index.
    fn step(&mut self, limit: Duration) -> bool {
        let frame_at = self.queue.keys().next().map(|&(t, _)| t);
        let timer = self
            .running()
            .into_iter()
            .filter_map(|i| {
                self.nodes[i]
                    .poll_timeout()
                    .map(|at| (at.saturating_duration_since(self.base).max(self.now), i))
            })
            .min();
        let (at, action) = match (frame_at, timer) {
            (Some(f), Some((t, i))) if t < f => (t, Action::Tick(i)),
            (Some(f), _) => (f, Action::Deliver),
            (None, Some((t, i))) => (t, Action::Tick(i)),
            (None, None) => return false,
        };
        if at > limit {
            return false;
        }
        if at == self.now {
            self.steps_at_now += 1;
            assert!(
                self.steps_at_now < MAX_STEPS_AT_ONE_INSTANT,
                "livelock: {MAX_STEPS_AT_ONE_INSTANT} steps at {at:?} without time advancing"
            );
        } else {
            self.now = at;
            self.steps_at_now = 0;
        }
        match action {
            Action::Tick(i) => {
                let now = self.instant();
                self.nodes[i].handle_timeout(now);
                self.drain(i);
            }
            Action::Deliver => {
                let (_, frame) = self.queue.pop_first().expect("a frame is queued");
                self.deliver(frame);
            }
        }
        true
    }

    fn deliver(&mut self, frame: InFlight) {
        let Some(to) = self.index_of(frame.to) else {
            self.dropped += 1;
            return;
        };
        if self.crashed.contains(&frame.from)
            || self.crashed.contains(&to)
            || self.blocked.contains(&(frame.from, to))
        {
            self.dropped += 1;
            return;
        }
        let now = self.instant();
        if let Err(e) = self.nodes[to].handle_message(now, addr(frame.from), &frame.bytes) {
            self.recv_errors.push((self.now, to, e));
        }
        self.drain(to);
    }

    /// Moves node `i`'s queued transmits onto the wire and logs its events.
    fn drain(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].poll_transmit() {
            self.sent.push(Sent {
                at: self.now,
                from: addr(i),
                to: t.to,
                bytes: t.bytes.clone(),
            });
            let seq = self.next_seq;
            self.next_seq += 1;
            self.queue.insert(
                (self.now + LATENCY, seq),
                InFlight {
                    from: i,
                    to: t.to,
                    bytes: t.bytes,
                },
            );
        }
        while let Some(event) = self.nodes[i].poll_event() {
            self.events.push(Observed {
                at: self.now,
                observer: i,
                event,
            });
        }
    }

    // ----- queries --------------------------------------------------------

    /// Events emitted by `observer` about node `about`, as (time, kind, member).
    pub fn events_about(
        &self,
        observer: usize,
        about: usize,
    ) -> Vec<(Duration, &'static str, &Member)> {
        self.events
            .iter()
            .filter(|o| o.observer == observer && member(&o.event).id == id(about))
            .map(|o| (o.at, kind(&o.event), member(&o.event)))
            .collect()
    }

    /// Whether every running node counts exactly `n` live members.
    pub fn all_running_see(&self, n: usize) -> bool {
        self.running()
            .into_iter()
            .all(|i| self.nodes[i].live_member_count() == n)
    }

    /// How node `observer` currently sees node `about`.
    pub fn view_of(&self, observer: usize, about: usize) -> Option<Member> {
        self.nodes[observer].members().find(|m| m.id == id(about))
    }

    /// Liveness of `about` as seen by `observer`.
    pub fn liveness(&self, observer: usize, about: usize) -> Option<Liveness> {
        self.view_of(observer, about).map(|m| m.liveness)
    }
}

/// Everything observable about a node that a refused frame must not change.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    /// `members()`, collected.
    pub members: Vec<Member>,
    /// `stats()`.
    pub stats: gossip_core::Stats,
    /// `poll_timeout()`.
    pub timeout: Option<Instant>,
    /// `view_hash()`.
    pub view_hash: u64,
}

/// Takes a [`Snapshot`] of `node`.
pub fn snapshot(node: &Node) -> Snapshot {
    Snapshot {
        members: node.members().collect(),
        stats: node.stats(),
        timeout: node.poll_timeout(),
        view_hash: node.view_hash(),
    }
}
