//! Fuzzes sequences of operations on a small cluster of 2-4 nodes.
//!
//! The input (decoded with `arbitrary`) picks a configuration (cluster label,
//! frame size down to the smallest valid one, metadata limit, member and
//! update-queue capacities, fan-outs, retention and state-reply budget; the
//! same for every node), the addressing (IPv4 or IPv6, two- or three-byte
//! port varints, small, epoch-millisecond or huge generations), how each
//! node starts (founder, joining through another node, or idle), and then a
//! sequence of operations on a virtual clock (one base `Instant` plus an
//! offset that only grows): advance time by a bounded amount (or to the
//! earliest deadline) and run `handle_timeout` on every node; deliver a pending frame, optionally
//! mutated by a few byte flips or a truncation; deliver everything pending;
//! drop a pending frame; inject raw fuzz bytes; inject a well-formed frame
//! with fuzz-chosen header and message (piggybacked claims, sync entries,
//! ping-reqs, acks with guessable sequence numbers); `join` a node;
//! `leave`; `set_metadata` with fuzz bytes; `peer_unreachable`; and restart
//! a node as a new generation at the same address.
//!
//! The nodes, their clock and the frames in flight live in gossip-sim's
//! simulator under `Drive::Manual`; this target decodes the input into
//! operations on it and keeps the oracle (each node's phase and generation).
//!
//! Checks, after every step and on every node:
//! - nothing panics (including gossip-core's debug assertions);
//! - every frame a node emits is at most `max_message_size` bytes, decodes
//!   under its sender's config, and carries its sender's id;
//! - an unmodified frame delivered between nodes (which share one config) is
//!   accepted, unless the receiver has left or the frame came back to its own
//!   sender's address;
//! - a refused frame changes nothing but the `recv_errors` counter (members,
//!   live count, other stats, `poll_timeout`, view hash, no transmit or event);
//! - `members()` starts with the node's own id, lists no member twice, holds
//!   no metadata above `max_metadata_len` and at most `max_members` entries;
//!   `live_member_count() <= members().count()`, and in fact equals the number
//!   of members listed alive or suspect;
//! - after `handle_timeout(now)`, `poll_timeout()` is `None` or later than
//!   `now`; `handle_timeout` before the deadline changes nothing;
//! - commands return what their documentation promises: `set_metadata` with
//!   too-long metadata returns `MetadataTooLong` and changes nothing, `join`
//!   and `leave` succeed exactly in the phases that allow them;
//! - events are never about the node itself and carry a liveness matching
//!   their kind.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use arbitrary::Arbitrary;
use gossip_core::wire::{
    self, Header, MemberRecord, Message, Status, SyncEntry as WireMember, PROTOCOL_VERSION,
};
use gossip_core::{
    CommandError, Config, ConfigError, Generation, Incarnation, Liveness, Node, NodeId, RecvError,
};
use gossip_sim::check::{check_view, handle_checked, timeout_checked, Invariants, Snapshot};
use gossip_sim::{Drive, HeldFrame, Simulator};
use libfuzzer_sys::fuzz_target;

/// Addresses fuzz-chosen ids map to: the nodes' own plus a few strangers.
const ADDRESSES: u16 = 6;
const MAX_OPS: usize = 200;
const MAX_IN_FLIGHT: usize = 512;
const MAX_FLIPS: usize = 4;
/// Frames delivered at most by one `DeliverAll`.
const DELIVER_ALL_LIMIT: usize = 128;
/// Largest jump of `AdvanceToDeadline`.
const MAX_JUMP: Duration = Duration::from_secs(2 * 3600);

#[derive(Arbitrary, Debug)]
struct Knobs {
    label_len: u8,
    metadata_limit: MetadataLimit,
    frame_size: FrameSize,
    max_members: u8,
    max_pending_updates: u8,
    indirect_probes: u8,
    gossip_fanout: u8,
    max_local_health: u8,
    retransmit_mult: u8,
    dead_retention_s: u8,
    dead_probe_interval_ms: u16,
    small_reply_budget: bool,
    addressing: Addressing,
}

/// `max_metadata_len`.
#[derive(Arbitrary, Debug)]
enum MetadataLimit {
    /// 0..=255 bytes.
    Bytes(u8),
    /// The largest limit a 256-byte frame (the smallest allowed) can carry
    /// under this label: the tightest valid configuration.
    FillSmallestFrame,
}

/// `max_message_size`.
#[derive(Arbitrary, Debug)]
enum FrameSize {
    /// The smallest size the rest of the config validates with.
    Smallest,
    /// The smallest plus a margin of up to 1599 bytes.
    Margin(u16),
    /// The default, 1400 bytes (or the smallest, if larger).
    Default,
}

/// How node addresses and generations look on the wire: IPv4 or IPv6, ports
/// whose varint takes two or three bytes, small or large generations. The
/// largest encodings matter for frame-size accounting.
#[derive(Arbitrary, Clone, Copy, Debug)]
struct Addressing {
    ipv6: bool,
    high_ports: bool,
    generations: GenerationBase,
}

#[derive(Arbitrary, Clone, Copy, Debug)]
enum GenerationBase {
    One,
    /// Milliseconds since the Unix epoch, as the reference node uses.
    EpochMillis,
    Huge,
}

impl Addressing {
    /// The simulator's address plan: node `i` at one IP, port `base + i`.
    fn plan(self) -> gossip_sim::Addressing {
        let ip = if self.ipv6 {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0xffff, 0xffff))
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        let first_port = if self.high_ports { 60_000 } else { 7000 };
        gossip_sim::Addressing::Ports { ip, first_port }
    }

    /// Address of node (or stranger) `i`.
    fn addr(self, i: u16) -> SocketAddr {
        self.plan().addr(usize::from(i))
    }

    /// Fuzz-chosen ids map to the nodes' own addresses plus a few strangers.
    fn node_id(self, n: u8) -> NodeId {
        NodeId::new(self.addr(u16::from(n) % ADDRESSES))
    }

    fn first_generation(self) -> u64 {
        match self.generations {
            GenerationBase::One => 1,
            GenerationBase::EpochMillis => 1_764_000_000_000,
            GenerationBase::Huge => u64::MAX - 64,
        }
    }

    /// A fuzz-chosen generation near the nodes' own ones, or an extreme.
    fn generation(self, n: u8) -> Generation {
        Generation(match n {
            255 => u64::MAX,
            254 => 0,
            n => self.first_generation().saturating_add(u64::from(n)),
        })
    }
}

impl Knobs {
    fn config(&self) -> Config {
        let mut c = Config::default();
        c.cluster_label = "c".repeat(usize::from(self.label_len) % 65);
        c.max_metadata_len = match self.metadata_limit {
            MetadataLimit::Bytes(n) => usize::from(n),
            MetadataLimit::FillSmallestFrame => {
                // Past 17 bytes each byte of limit adds one byte to the size
                // needed, so one probe finds the largest limit that fits.
                let mut probe = c.clone();
                probe.max_metadata_len = 1024;
                probe.max_message_size = NonZeroUsize::new(256).unwrap();
                match probe.validate() {
                    Err(ConfigError::MessageTooSmall { needed, .. }) => {
                        1024usize.saturating_sub(needed - 256)
                    }
                    other => panic!("a 1024-byte metadata limit fits 256 bytes: {other:?}"),
                }
            }
        };
        if self.max_members != 0 {
            c.max_members = NonZeroUsize::new(usize::from(self.max_members % 8) + 1).unwrap();
        }
        if self.max_pending_updates != 0 {
            c.max_pending_updates =
                NonZeroUsize::new(usize::from(self.max_pending_updates % 8) + 1).unwrap();
        }
        c.indirect_probes = u32::from(self.indirect_probes % 5);
        c.gossip_fanout = u32::from(self.gossip_fanout % 5);
        c.max_local_health = u32::from(self.max_local_health % 9);
        c.retransmit_mult = NonZeroU32::new(u32::from(self.retransmit_mult % 6) + 1).unwrap();
        if self.dead_retention_s != 0 {
            c.dead_retention = Duration::from_secs(u64::from(self.dead_retention_s % 60) + 1);
        }
        c.dead_probe_interval = Duration::from_millis(u64::from(self.dead_probe_interval_ms));
        if self.small_reply_budget {
            c.state_reply_bytes_per_s = 500;
            c.state_reply_burst_bytes = 1000;
        }
        // Smallest frame size this config allows, plus a fuzz-chosen margin.
        c.max_message_size = NonZeroUsize::new(256).unwrap();
        let smallest = match c.validate() {
            Ok(()) => 256,
            Err(ConfigError::MessageTooSmall { needed, .. }) => needed,
            Err(e) => panic!("harness built an invalid config: {e}"),
        };
        let size = match self.frame_size {
            FrameSize::Smallest => smallest,
            FrameSize::Margin(extra) => smallest + usize::from(extra) % 1600,
            FrameSize::Default => smallest.max(1400),
        }
        .min(65_507);
        c.max_message_size = NonZeroUsize::new(size).unwrap();
        c.validate().expect("harness config is valid");
        c
    }
}

#[derive(Arbitrary, Debug)]
enum Start {
    Found,
    JoinVia(u8),
    Idle,
}

/// Metadata: arbitrary bytes, or exactly at or just over the configured limit
/// (lengths that random byte vectors seldom reach).
#[derive(Arbitrary, Debug)]
enum FuzzMetadata {
    Bytes(Vec<u8>),
    Max(u8),
    OverMax(u8),
}

impl FuzzMetadata {
    fn bytes(self, max_len: usize) -> Vec<u8> {
        match self {
            FuzzMetadata::Bytes(bytes) => bytes,
            FuzzMetadata::Max(b) => vec![b; max_len],
            FuzzMetadata::OverMax(b) => vec![b; max_len + 1],
        }
    }
}

#[derive(Arbitrary, Debug)]
enum FuzzStatus {
    Alive(FuzzMetadata),
    Suspect(u8),
    Dead(u8),
    Left,
}

#[derive(Arbitrary, Debug)]
struct FuzzRecord {
    id: u8,
    generation: u8,
    incarnation: u8,
    status: FuzzStatus,
}

#[derive(Arbitrary, Debug)]
enum FuzzLiveness {
    Alive,
    Suspect,
    Dead,
    Left,
}

#[derive(Arbitrary, Debug)]
struct FuzzMember {
    id: u8,
    generation: u8,
    incarnation: u8,
    liveness: FuzzLiveness,
    metadata: FuzzMetadata,
}

#[derive(Arbitrary, Debug)]
enum FuzzMessage {
    Ping {
        seq: u8,
        view_hash: u64,
        updates: Vec<FuzzRecord>,
    },
    Ack {
        seq: u8,
        updates: Vec<FuzzRecord>,
    },
    PingReq {
        seq: u8,
        target: u8,
        updates: Vec<FuzzRecord>,
    },
    Nack {
        seq: u8,
        updates: Vec<FuzzRecord>,
    },
    Gossip {
        updates: Vec<FuzzRecord>,
    },
    Join {
        metadata: FuzzMetadata,
    },
    Sync {
        reply: bool,
        nonce: u32,
        after: Option<u8>,
        through: Option<u8>,
        entries: Vec<FuzzMember>,
    },
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Advance the clock by up to 65.5 s and tick every node.
    Advance {
        millis: u16,
    },
    /// Jump to the earliest deadline of any node and tick every node.
    AdvanceToDeadline,
    /// Deliver one in-flight frame, possibly damaged.
    Deliver {
        index: u8,
        flips: Vec<(u16, u8)>,
        truncate: Option<u16>,
    },
    /// Deliver in-flight frames, oldest first, until none is left (bounded).
    DeliverAll,
    /// Lose one in-flight frame.
    Drop {
        index: u8,
    },
    /// Hand raw bytes to a node.
    InjectRaw {
        to: u8,
        source: u8,
        bytes: Vec<u8>,
    },
    /// Hand a well-formed frame with fuzz-chosen content to a node.
    InjectMessage {
        to: u8,
        source: u8,
        sender: u8,
        generation: u8,
        incarnation: u8,
        wrong_label: bool,
        message: FuzzMessage,
    },
    Join {
        node: u8,
        seed: Option<u8>,
    },
    Leave {
        node: u8,
    },
    SetMetadata {
        node: u8,
        metadata: FuzzMetadata,
    },
    PeerUnreachable {
        node: u8,
        peer: u8,
    },
    /// Replace a node by a new process (next generation) at the same address.
    Restart {
        node: u8,
        seed: Option<u8>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    knobs: Knobs,
    node_count: u8,
    rng_seed: u64,
    starts: [Start; 4],
    ops: Vec<Op>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Running,
    Departed,
}

/// The nodes on gossip-sim's simulator under [`Drive::Manual`]: the input
/// picks which held frame arrives (damaged or not) and when time passes.
struct Cluster {
    config: Config,
    addressing: Addressing,
    base_seed: u64,
    sim: Simulator,
    /// Checks every frame and event the nodes emit.
    checks: Invariants,
    phases: Vec<Phase>,
    generations: Vec<u64>,
    restarts: u64,
}

/// Small values, with the top two mapped to the largest (saturation edges).
fn incarnation(n: u8) -> Incarnation {
    Incarnation(match n {
        255 => u32::MAX,
        254 => u32::MAX - 1,
        n => u32::from(n),
    })
}

/// What turning fuzz choices into wire values depends on.
#[derive(Clone, Copy)]
struct Ctx {
    a: Addressing,
    max_metadata_len: usize,
}

fn record(cx: Ctx, r: FuzzRecord) -> MemberRecord {
    let a = cx.a;
    MemberRecord {
        id: a.node_id(r.id),
        generation: a.generation(r.generation),
        incarnation: incarnation(r.incarnation),
        status: match r.status {
            FuzzStatus::Alive(metadata) => Status::Alive {
                metadata: metadata.bytes(cx.max_metadata_len),
            },
            FuzzStatus::Suspect(by) => Status::Suspect { by: a.node_id(by) },
            FuzzStatus::Dead(by) => Status::Dead { by: a.node_id(by) },
            FuzzStatus::Left => Status::Left,
        },
    }
}

fn records(cx: Ctx, rs: Vec<FuzzRecord>) -> Vec<MemberRecord> {
    rs.into_iter().take(64).map(|r| record(cx, r)).collect()
}

fn message(cx: Ctx, m: FuzzMessage) -> Message {
    let a = cx.a;
    match m {
        FuzzMessage::Ping {
            seq,
            view_hash,
            updates,
        } => Message::Ping {
            seq: u32::from(seq),
            view_hash: (view_hash as u32).to_le_bytes(),
            updates: records(cx, updates),
        },
        FuzzMessage::Ack { seq, updates } => Message::Ack {
            seq: u32::from(seq),
            updates: records(cx, updates),
        },
        FuzzMessage::PingReq {
            seq,
            target,
            updates,
        } => Message::PingReq {
            seq: u32::from(seq),
            target: a.node_id(target),
            updates: records(cx, updates),
        },
        FuzzMessage::Nack { seq, updates } => Message::Nack {
            seq: u32::from(seq),
            updates: records(cx, updates),
        },
        FuzzMessage::Gossip { updates } => Message::Gossip {
            updates: records(cx, updates),
        },
        FuzzMessage::Join { metadata } => Message::Join {
            nonce: 0,
            metadata: metadata.bytes(cx.max_metadata_len),
        },
        FuzzMessage::Sync {
            reply,
            nonce,
            after,
            through,
            entries,
        } => Message::Sync {
            reply,
            nonce,
            after: after.map(|n| a.node_id(n)),
            through: through.map(|n| a.node_id(n)),
            entries: entries
                .into_iter()
                .take(64)
                .map(|e| WireMember {
                    id: a.node_id(e.id),
                    generation: a.generation(e.generation),
                    incarnation: incarnation(e.incarnation),
                    liveness: match e.liveness {
                        FuzzLiveness::Alive => Liveness::Alive,
                        FuzzLiveness::Suspect => Liveness::Suspect,
                        FuzzLiveness::Dead => Liveness::Dead,
                        FuzzLiveness::Left => Liveness::Left,
                    },
                    metadata: e.metadata.bytes(cx.max_metadata_len),
                })
                .collect(),
        },
    }
}

impl Cluster {
    fn pick(&self, n: u8) -> usize {
        usize::from(n) % self.sim.len()
    }

    fn seed_addrs(&self, seed: Option<u8>) -> Vec<SocketAddr> {
        seed.map(|s| vec![self.addressing.node_id(s).addr()])
            .unwrap_or_default()
    }

    /// Runs `f` on node `i` now; its output goes through the checks.
    fn on<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, std::time::Instant) -> R) -> R {
        self.sim
            .command(i, f, &mut self.checks)
            .expect("nodes never crash here")
    }

    /// Checks every node's view; the network loses the oldest frames when
    /// congested.
    fn settle(&mut self) {
        for i in 0..self.sim.len() {
            check_view(self.sim.node(i).expect("nodes never crash here"));
        }
        while self.sim.held().len() > MAX_IN_FLIGHT {
            self.sim.take_held(0);
        }
    }

    fn tick_all(&mut self) {
        for i in 0..self.sim.len() {
            // Each node's output is drained before the next is ticked: the
            // next node's "early call changes nothing" check must not see it.
            self.on(i, timeout_checked);
        }
    }

    /// Delivers held frame `index`, damaged by `damage` if given.
    fn deliver(&mut self, index: usize, damage: Option<(&[(u16, u8)], Option<u16>)>) {
        let HeldFrame { from, to, bytes } = self.sim.take_held(index).expect("index in range");
        let Some(receiver) = self.sim.index_of(to) else {
            return; // addressed to a stranger
        };
        let mut frame = bytes.clone();
        if let Some((flips, truncate)) = damage {
            for &(pos, xor) in flips.iter().take(MAX_FLIPS) {
                if !frame.is_empty() {
                    let len = frame.len();
                    frame[usize::from(pos) % len] ^= xor;
                }
            }
            if let Some(t) = truncate {
                frame.truncate(usize::from(t) % (frame.len() + 1));
            }
        }
        let source = self.sim.addr(from);
        let result = self.on(receiver, |node, now| {
            handle_checked(node, now, source, &frame)
        });
        if frame == bytes {
            let acceptable = match &result {
                Ok(()) => true,
                Err(RecvError::Departed) => self.phases[receiver] == Phase::Departed,
                Err(RecvError::FromSelf) => receiver == from,
                Err(_) => false,
            };
            assert!(
                acceptable,
                "node {receiver} refused an intact frame from node {from}: {result:?} \
                 ({} bytes: {frame:02x?})",
                frame.len()
            );
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Advance { millis } => {
                self.sim
                    .run_for(Duration::from_millis(u64::from(millis)), &mut self.checks);
                self.tick_all();
            }
            Op::AdvanceToDeadline => {
                let now = self.sim.now();
                if let Some(t) = self.sim.next_deadline() {
                    if t > now {
                        self.sim
                            .run_until(now + (t - now).min(MAX_JUMP), &mut self.checks);
                    }
                }
                self.tick_all();
            }
            Op::Deliver {
                index,
                flips,
                truncate,
            } => {
                if !self.sim.held().is_empty() {
                    let index = usize::from(index) % self.sim.held().len();
                    let damage = (!flips.is_empty() || truncate.is_some())
                        .then_some((flips.as_slice(), truncate));
                    self.deliver(index, damage);
                }
            }
            Op::DeliverAll => {
                for _ in 0..DELIVER_ALL_LIMIT {
                    if self.sim.held().is_empty() {
                        break;
                    }
                    self.deliver(0, None);
                    self.settle();
                }
            }
            Op::Drop { index } => {
                if !self.sim.held().is_empty() {
                    let index = usize::from(index) % self.sim.held().len();
                    self.sim.take_held(index);
                }
            }
            Op::InjectRaw { to, source, bytes } => {
                let i = self.pick(to);
                let source = self.addressing.node_id(source).addr();
                let _ = self.on(i, |node, now| handle_checked(node, now, source, &bytes));
            }
            Op::InjectMessage {
                to,
                source,
                sender,
                generation: g,
                incarnation: inc,
                wrong_label,
                message: m,
            } => {
                let i = self.pick(to);
                let label = if wrong_label {
                    format!("{}x", self.config.cluster_label)
                } else {
                    self.config.cluster_label.clone()
                };
                let header = Header {
                    version: PROTOCOL_VERSION,
                    label: &label,
                    sender: self.addressing.node_id(sender),
                    generation: self.addressing.generation(g),
                    incarnation: incarnation(inc),
                };
                let cx = Ctx {
                    a: self.addressing,
                    max_metadata_len: self.config.max_metadata_len,
                };
                let bytes = wire::encode(&header, &message(cx, m));
                let source = self.addressing.node_id(source).addr();
                let _ = self.on(i, |node, now| handle_checked(node, now, source, &bytes));
            }
            Op::Join { node, seed } => {
                let i = self.pick(node);
                let seeds = self.seed_addrs(seed);
                let result = self.on(i, |node, now| node.join(now, &seeds));
                match self.phases[i] {
                    Phase::Idle => {
                        assert_eq!(result, Ok(()));
                        self.phases[i] = Phase::Running;
                    }
                    Phase::Running => assert_eq!(result, Err(CommandError::AlreadyStarted)),
                    Phase::Departed => assert_eq!(result, Err(CommandError::Departed)),
                }
            }
            Op::Leave { node } => {
                let i = self.pick(node);
                let result = self.on(i, |node, now| node.leave(now));
                if self.phases[i] == Phase::Running {
                    assert_eq!(result, Ok(()));
                    self.phases[i] = Phase::Departed;
                    let own = self.sim.node(i).and_then(|n| n.members().next());
                    assert_eq!(own.expect("self listed").liveness, Liveness::Left);
                } else {
                    assert!(
                        result.is_err(),
                        "leave succeeded in phase {:?}",
                        self.phases[i]
                    );
                }
            }
            Op::SetMetadata { node, metadata } => {
                let i = self.pick(node);
                let max = self.config.max_metadata_len;
                let metadata = metadata.bytes(max);
                let len = metadata.len();
                let wanted = metadata.clone();
                let (result, own) = self.on(i, |node, now| {
                    let before = Snapshot::of(node);
                    let result = node.set_metadata(now, metadata);
                    if result.is_err() {
                        assert_eq!(
                            Snapshot::of(node),
                            before,
                            "set_metadata failed but changed the node"
                        );
                        assert!(node.poll_transmit().is_none());
                    }
                    (result, node.members().next().expect("self listed").metadata)
                });
                if len > max {
                    assert_eq!(result, Err(CommandError::MetadataTooLong { len, max }));
                } else if self.phases[i] == Phase::Departed {
                    assert_eq!(result, Err(CommandError::Departed));
                } else {
                    assert_eq!(result, Ok(()));
                    assert_eq!(own, wanted, "set_metadata did not take effect");
                }
            }
            Op::PeerUnreachable { node, peer } => {
                let i = self.pick(node);
                let peer = self.addressing.node_id(peer);
                self.on(i, |node, now| node.peer_unreachable(now, peer));
            }
            Op::Restart { node, seed } => {
                let i = self.pick(node);
                // A new life must use a larger generation than any before.
                let Some(next) = self.generations[i].checked_add(1) else {
                    return;
                };
                self.generations[i] = next;
                self.restarts += 1;
                let fresh = Node::new(
                    self.config.clone(),
                    NodeId::new(self.addressing.addr(i as u16)),
                    Generation(self.generations[i]),
                    self.base_seed.wrapping_add(1000 + self.restarts),
                )
                .expect("valid config");
                self.sim.replace(i, fresh);
                let seeds = self.seed_addrs(seed);
                self.on(i, |node, now| node.join(now, &seeds))
                    .expect("fresh node joins");
                self.phases[i] = Phase::Running;
            }
        }
        self.settle();
    }
}

fuzz_target!(|input: Input| {
    let config = input.knobs.config();
    let addressing = input.knobs.addressing;
    let first_generation = addressing.first_generation();
    let n = usize::from(input.node_count % 3) + 2;
    let sim = Simulator::builder(n, config.clone())
        .addressing(addressing.plan())
        .node_seeds((0..n as u64).map(|i| input.rng_seed.wrapping_add(i)))
        .first_generation(first_generation)
        .drive(Drive::Manual)
        .build();
    let mut cluster = Cluster {
        checks: Invariants::new(config.clone(), addressing.plan()),
        config,
        addressing,
        base_seed: input.rng_seed,
        sim,
        phases: vec![Phase::Idle; n],
        generations: vec![first_generation; n],
        restarts: 0,
    };
    for (i, start) in input.starts.iter().take(n).enumerate() {
        let seeds = match start {
            Start::Found => Vec::new(),
            Start::JoinVia(s) => vec![addressing.addr(u16::from(*s) % n as u16)],
            Start::Idle => continue,
        };
        cluster
            .on(i, |node, now| node.join(now, &seeds))
            .expect("fresh node joins");
        cluster.phases[i] = Phase::Running;
    }
    cluster.settle();
    for op in input.ops.into_iter().take(MAX_OPS) {
        cluster.apply(op);
    }
});
