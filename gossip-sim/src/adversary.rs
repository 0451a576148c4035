//! An outsider that attacks a running cluster with forged, well-formed
//! frames (issue 11's adversary).
//!
//! The attacker runs no [`Node`](gossip_core::Node). It sits at its own
//! simulated address ([`ATTACKER_ADDR`]), encodes every frame with the real
//! wire encoder, sends them through the modelled network with
//! [`Simulator::send_as_outsider`](crate::Simulator::send_as_outsider) and
//! reads what nodes send to its address. It may put anything in a frame's
//! header (any sender, generation, incarnation), but the simulated network
//! does not spoof source addresses: every forged frame arrives from
//! [`ATTACKER_ADDR`], so whatever a node answers to the frame's source comes
//! back to the attacker. An attacker that spoofs source addresses is a
//! separate, stronger one that this simulator does not model.
//!
//! Besides its inbox, the attacker is granted what an eavesdropper on
//! unsealed traffic sees in every header: each member's current generation
//! and incarnation (read from the simulator through the `sniff` argument of
//! [`Adversary::next_frame`]). Message ids of rumors it learns only from
//! frames sent to its own address.

use core::time::Duration;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use gossip_core::wire::{self, Header, MemberRecord, Message, Status, WireRumor};
use gossip_core::{Config, Digest, Generation, Incarnation, MessageId, NodeId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::net::OutsiderFrame;

/// Where the attacker sends from and receives: a TEST-NET-2 address on a
/// port no simulated node uses, so it never names a member.
pub const ATTACKER_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 66), 6666));

/// The third party a [`AdversaryKind::Reflect`] attack names as the sender
/// of its requests (TEST-NET-3; no node listens there).
pub const VICTIM_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 7946));

/// What the attacker tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdversaryKind {
    /// `Gossip` frames, under a real member's name, claiming a random member
    /// `Dead`: half at its current version, half at absurd ones (generation
    /// `u64::MAX`, incarnation `u32::MAX`, the next generation).
    ForgeDead,
    /// The same with `Left`.
    ForgeLeft,
    /// `Gossip` frames claiming real members `Alive` at
    /// `(u64::MAX, u32::MAX)` with forged metadata, and never-existing
    /// members `Alive`.
    ForgeAlive,
    /// `Join` frames, each naming a fresh fake member as its sender.
    JoinFlood,
    /// `Ping` and `PingReq` frames naming real and fake targets, under real
    /// and fake senders, with forged `Dead` and fake `Alive` updates
    /// piggybacked.
    PingFlood,
    /// `Join` and `Sync { reply: true }` over the whole id range with no
    /// entries, naming [`VICTIM_ADDR`] as their sender: requests that draw
    /// big answers. Answers to the source go to the attacker (no spoofing),
    /// traffic to the named sender goes to the victim.
    Reflect,
    /// `Rumors` frames forging real origins' next message ids (and very high
    /// ones), `Feedback` frames naming real rumors to cool them, and `Pull`
    /// frames with an empty digest from the attacker's own address to learn
    /// the real ids.
    RumorForge,
}

impl AdversaryKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [Self; 7] = [
        Self::ForgeDead,
        Self::ForgeLeft,
        Self::ForgeAlive,
        Self::JoinFlood,
        Self::PingFlood,
        Self::Reflect,
        Self::RumorForge,
    ];

    /// The kind's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::ForgeDead => "forge-dead",
            Self::ForgeLeft => "forge-left",
            Self::ForgeAlive => "forge-alive",
            Self::JoinFlood => "join-flood",
            Self::PingFlood => "ping-flood",
            Self::Reflect => "reflect",
            Self::RumorForge => "rumor-forge",
        }
    }
}

/// One attack within a [`MembershipScenario`](crate::MembershipScenario).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdversarySpec {
    /// What is tried.
    pub kind: AdversaryKind,
    /// Frames per simulated second, evenly spaced.
    pub rate: f64,
    /// When the first frame is sent.
    pub start: Duration,
    /// When the attack ends (no frame at or after it).
    pub stop: Duration,
}

impl AdversarySpec {
    /// `kind` at `rate` frames per second from `start` until `stop`.
    pub fn new(kind: AdversaryKind, rate: f64, start: Duration, stop: Duration) -> Self {
        Self {
            kind,
            rate,
            start,
            stop,
        }
    }

    /// Checks that the attack is runnable.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 1e6) {
            return Err("the adversary rate must be within (0, 1000000] frames/s".into());
        }
        if self.stop <= self.start {
            return Err("the adversary must stop after it starts".into());
        }
        Ok(())
    }

    /// Virtual time of frame `k` (from 0): `start + k / rate`.
    pub fn frame_time(&self, k: u64) -> Duration {
        self.start + Duration::from_nanos((k as f64 * 1e9 / self.rate).round() as u64)
    }
}

/// Payload of every forged rumor.
pub const FORGED_PAYLOAD: &[u8] = b"forged";

/// How many recent real rumor ids the attacker remembers and names in one
/// `Feedback` (64 ids of loopback origins take about 700 bytes, within a
/// 1400-byte frame).
const RECENT_IDS: usize = 64;

/// The attacker's state: its random source, what it learned, what it sent.
pub struct Adversary {
    kind: AdversaryKind,
    nodes: usize,
    config: Config,
    addr_of: Box<dyn Fn(usize) -> SocketAddr>,
    rng: ChaCha8Rng,
    /// Per origin life: the highest sequence the attacker saw a real rumor
    /// carry.
    heads: BTreeMap<(NodeId, u64), u64>,
    /// Recently seen real rumor ids, oldest first.
    recent: Vec<MessageId>,
    sent: u64,
    /// Frames read from the attacker's inbox.
    pub frames_read: u64,
    /// Bytes in those frames.
    pub bytes_read: u64,
}

impl Adversary {
    /// An attacker of kind `kind` against a cluster of `nodes` members
    /// running `config`, member `i` listening at `addr_of(i)`, drawing every
    /// choice from `seed`.
    pub fn new(
        kind: AdversaryKind,
        nodes: usize,
        config: Config,
        addr_of: impl Fn(usize) -> SocketAddr + 'static,
        seed: u64,
    ) -> Self {
        Self {
            kind,
            nodes,
            config,
            addr_of: Box::new(addr_of),
            rng: ChaCha8Rng::seed_from_u64(seed),
            heads: BTreeMap::new(),
            recent: Vec::new(),
            sent: 0,
            frames_read: 0,
            bytes_read: 0,
        }
    }

    /// The kind of attack.
    pub fn kind(&self) -> AdversaryKind {
        self.kind
    }

    /// Frames built so far.
    pub fn frames_built(&self) -> u64 {
        self.sent
    }

    /// Reads a frame a node sent to the attacker: rumors teach it real
    /// message ids and sequence heads.
    pub fn read(&mut self, frame: &OutsiderFrame) {
        self.frames_read += 1;
        self.bytes_read += frame.bytes.len() as u64;
        let Ok((_, Message::Rumors { items })) = wire::decode(&self.config, &frame.bytes) else {
            return;
        };
        for item in items {
            // Its own forgeries coming back teach it nothing.
            if item.payload == FORGED_PAYLOAD || !self.is_member(item.id.origin) {
                continue;
            }
            let id = item.id;
            let head = self.heads.entry((id.origin, id.generation)).or_insert(0);
            *head = (*head).max(id.sequence);
            if !self.recent.contains(&id) {
                if self.recent.len() == RECENT_IDS {
                    self.recent.remove(0);
                }
                self.recent.push(id);
            }
        }
    }

    fn is_member(&self, id: NodeId) -> bool {
        (0..self.nodes).any(|i| (self.addr_of)(i) == id.addr())
    }

    /// The next frame: the index of the member it is sent to and its bytes.
    /// `sniff(i)` is member `i`'s current generation and incarnation if it
    /// runs.
    ///
    /// Half the frames name the attacker's own address as their sender
    /// (the rest name whoever the kind impersonates): a node refuses a
    /// frame whose sender is not its source address, so only the half sent
    /// as itself reaches the rules behind that check.
    pub fn next_frame(
        &mut self,
        sniff: impl Fn(usize) -> Option<(Generation, Incarnation)>,
    ) -> (usize, Vec<u8>) {
        let (to, bytes) = self.forged_frame(sniff);
        if !self.rng.random_bool(0.5) {
            return (to, bytes);
        }
        match wire::decode(&self.config, &bytes) {
            Ok((header, message)) => {
                let own = Header {
                    sender: NodeId::new(ATTACKER_ADDR),
                    ..header
                };
                (to, wire::encode(&own, &message))
            }
            Err(_) => (to, bytes),
        }
    }

    /// A frame as the kind forges it, under the sender it impersonates.
    fn forged_frame(
        &mut self,
        sniff: impl Fn(usize) -> Option<(Generation, Incarnation)>,
    ) -> (usize, Vec<u8>) {
        self.sent += 1;
        let to = self.rng.random_range(0..self.nodes);
        let message_and_sender = match self.kind {
            AdversaryKind::ForgeDead | AdversaryKind::ForgeLeft => {
                let victim = self.other_than(to);
                let claimer = self.other_than_both(victim, to);
                let current = sniff(victim).unwrap_or((Generation(0), Incarnation(0)));
                let version = self.pick_version(current);
                let claimer_id = self.member_id(claimer);
                let status = if self.kind == AdversaryKind::ForgeDead {
                    Status::Dead { by: claimer_id }
                } else {
                    Status::Left
                };
                let record = MemberRecord {
                    id: self.member_id(victim),
                    generation: version.0,
                    incarnation: version.1,
                    status,
                };
                (
                    Message::Gossip {
                        updates: vec![record],
                    },
                    Some(claimer),
                )
            }
            AdversaryKind::ForgeAlive => {
                let claimer = self.other_than(to);
                let record = if self.rng.random_bool(0.5) {
                    let real = self.rng.random_range(0..self.nodes);
                    MemberRecord {
                        id: self.member_id(real),
                        generation: Generation(u64::MAX),
                        incarnation: Incarnation(u32::MAX),
                        status: Status::Alive {
                            metadata: self.forged_metadata(),
                        },
                    }
                } else {
                    self.fake_alive()
                };
                (
                    Message::Gossip {
                        updates: vec![record],
                    },
                    Some(claimer),
                )
            }
            AdversaryKind::JoinFlood => {
                let header_id = self.fake_id();
                return (
                    to,
                    self.encode_as(
                        header_id,
                        Default::default(),
                        Message::Join {
                            nonce: 0,
                            metadata: Vec::new(),
                        },
                    ),
                );
            }
            AdversaryKind::PingFlood => {
                let victim = self.other_than(to);
                let current = sniff(victim).unwrap_or((Generation(0), Incarnation(0)));
                let version = self.pick_version(current);
                let claimer = self.other_than_both(victim, to);
                let updates = vec![
                    MemberRecord {
                        id: self.member_id(victim),
                        generation: version.0,
                        incarnation: version.1,
                        status: Status::Dead {
                            by: self.member_id(claimer),
                        },
                    },
                    self.fake_alive(),
                ];
                let seq = self.rng.random();
                let message = if self.rng.random_bool(0.5) {
                    Message::Ping {
                        seq,
                        view_hash: self.rng.random(),
                        updates,
                    }
                } else {
                    let target = if self.rng.random_bool(0.5) {
                        let real = self.other_than(to);
                        self.member_id(real)
                    } else {
                        self.fake_id()
                    };
                    Message::PingReq {
                        seq,
                        target,
                        updates,
                    }
                };
                if self.rng.random_bool(0.5) {
                    (message, Some(claimer))
                } else {
                    let fake = self.fake_id();
                    return (to, self.encode_as(fake, Default::default(), message));
                }
            }
            AdversaryKind::Reflect => {
                let message = if self.rng.random_bool(0.5) {
                    Message::Join {
                        nonce: 0,
                        metadata: Vec::new(),
                    }
                } else {
                    Message::Sync {
                        reply: true,
                        nonce: 0,
                        after: None,
                        through: None,
                        entries: Vec::new(),
                    }
                };
                let victim = NodeId::new(VICTIM_ADDR);
                return (to, self.encode_as(victim, Default::default(), message));
            }
            AdversaryKind::RumorForge => return self.rumor_forge(to, &sniff),
        };
        let (message, sender) = message_and_sender;
        let sender = sender.expect("an impersonated member");
        let version = sniff(sender).unwrap_or((Generation(0), Incarnation(0)));
        let bytes = self.encode_as(self.member_id(sender), version, message);
        (to, bytes)
    }

    fn rumor_forge(
        &mut self,
        to: usize,
        sniff: &impl Fn(usize) -> Option<(Generation, Incarnation)>,
    ) -> (usize, Vec<u8>) {
        let roll = self.rng.random_range(0..10u32);
        if roll == 0 {
            // Reconnaissance: the node answers with every rumor it holds,
            // to the attacker's own address (a Pull must come from the
            // address its header names).
            let message = Message::Pull {
                reciprocate: false,
                digest: Digest::default(),
            };
            return (
                to,
                self.encode_as(NodeId::new(ATTACKER_ADDR), Default::default(), message),
            );
        }
        let claimer = self.other_than(to);
        let claimer_version = sniff(claimer).unwrap_or((Generation(0), Incarnation(0)));
        let message = if roll <= 3 && !self.recent.is_empty() {
            Message::Feedback {
                known: self.recent.clone(),
            }
        } else {
            let origin = self.other_than(to);
            let origin_id = self.member_id(origin);
            let generation = sniff(origin).map_or(0, |(g, _)| g.0);
            let head = self
                .heads
                .get(&(origin_id, generation))
                .copied()
                .unwrap_or(0);
            // The origin's next real ids, so its next broadcasts look like
            // duplicates, and ids far ahead of anything real.
            let mut items: Vec<WireRumor> = (head + 1..=head + 6)
                .map(|sequence| WireRumor {
                    id: MessageId {
                        origin: origin_id,
                        generation,
                        sequence,
                    },
                    hops: 0,
                    payload: FORGED_PAYLOAD.to_vec(),
                })
                .collect();
            items.push(WireRumor {
                id: MessageId {
                    origin: origin_id,
                    generation,
                    sequence: u64::MAX - self.rng.random_range(0..1024u64),
                },
                hops: 0,
                payload: FORGED_PAYLOAD.to_vec(),
            });
            Message::Rumors { items }
        };
        (
            to,
            self.encode_as(self.member_id(claimer), claimer_version, message),
        )
    }

    /// A version to forge about a member whose current one is `current`:
    /// the current one half the time, else one of the absurd ones.
    fn pick_version(&mut self, current: (Generation, Incarnation)) -> (Generation, Incarnation) {
        match self.rng.random_range(0..6u32) {
            0..=2 => current,
            3 => (Generation(u64::MAX), Incarnation(u32::MAX)),
            4 => (current.0, Incarnation(u32::MAX)),
            _ => (Generation(current.0 .0.saturating_add(1)), Incarnation(0)),
        }
    }

    fn forged_metadata(&mut self) -> Vec<u8> {
        let len = self.config.max_metadata_len.min(16);
        (0..len).map(|_| self.rng.random()).collect()
    }

    fn fake_alive(&mut self) -> MemberRecord {
        MemberRecord {
            id: self.fake_id(),
            generation: Generation(0),
            incarnation: Incarnation(0),
            status: Status::Alive {
                metadata: self.forged_metadata(),
            },
        }
    }

    /// A member index other than `not` (the cluster has at least two).
    fn other_than(&mut self, not: usize) -> usize {
        let pick = self.rng.random_range(0..self.nodes - 1);
        if pick >= not {
            pick + 1
        } else {
            pick
        }
    }

    /// A member index other than `a` and `b` (the cluster has at least
    /// three), so that an impersonated sender is never the receiver itself.
    fn other_than_both(&mut self, a: usize, b: usize) -> usize {
        loop {
            let pick = self.rng.random_range(0..self.nodes);
            if pick != a && pick != b {
                return pick;
            }
        }
    }

    fn member_id(&self, index: usize) -> NodeId {
        NodeId::new((self.addr_of)(index))
    }

    /// A never-existing member: a random 10.0.0.0/8 address on the
    /// simulator's node port.
    fn fake_id(&mut self) -> NodeId {
        let host: u32 = self.rng.random_range(1..(1 << 24) - 1);
        let ip = Ipv4Addr::from((10u32 << 24) | host);
        NodeId::new(SocketAddr::V4(SocketAddrV4::new(ip, crate::SIM_PORT)))
    }

    fn encode_as(
        &self,
        sender: NodeId,
        version: (Generation, Incarnation),
        message: Message,
    ) -> Vec<u8> {
        let header = Header {
            version: wire::PROTOCOL_VERSION,
            label: &self.config.cluster_label,
            sender,
            generation: version.0,
            incarnation: version.1,
        };
        wire::encode(&header, &message)
    }
}
