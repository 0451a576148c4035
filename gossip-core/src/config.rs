//! Protocol configuration.

use core::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use core::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::wire;

/// Tunables of a [`Node`](crate::Node).
///
/// Every field is public, has a default (see [`Config::default`], which equals
/// [`Config::lan`] for a 100-member cluster) and is checked by
/// [`Config::validate`], which [`Node::new`](crate::Node::new) calls.
///
/// ```
/// use gossip_core::Config;
/// let mut config = Config::lan(500);
/// config.cluster_label = "payments".into();
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Config {
    /// Frames whose label differs are rejected, so two clusters sharing a
    /// network cannot merge by accident. At most [`MAX_LABEL_LEN`] bytes.
    /// Default: empty.
    pub cluster_label: String,
    /// Largest frame the node sends or accepts, in bytes, header included.
    /// Default 1400: fits a 1500-byte Ethernet MTU after IPv6 and UDP headers
    /// with room for tunnels. Range 256..=65507 (the UDP maximum).
    pub max_message_size: NonZeroUsize,
    /// Time between two probes started by this node (SWIM's protocol period),
    /// before local-health scaling. Default 1 s, as in SWIM's evaluation.
    pub probe_interval: Duration,
    /// How long a direct probe waits for its ack before asking helpers,
    /// before local-health scaling. Must be below `probe_interval`.
    /// Default 500 ms: ample for a LAN round trip, half the period left for
    /// the indirect probes.
    pub probe_timeout: Duration,
    /// Members asked to probe a target indirectly after a direct probe failed
    /// (SWIM's k). Also the number of independent suspicions that shrink a
    /// suspicion timeout to its minimum. Default 3.
    pub indirect_probes: u32,
    /// Minimum suspicion timeout as a multiple of
    /// `probe_interval * max(2, log10(live members))`. Default 0.75: 1.5 s up
    /// to 100 members and 2.25 s at 1000 with a 1 s period (Lifeguard's
    /// confirmations make short minimums safe; see the README's figures).
    pub suspicion_min_mult: f64,
    /// Maximum suspicion timeout, as a multiple of the minimum. A suspicion
    /// starts at the maximum and shrinks towards the minimum as independent
    /// members confirm it (Lifeguard). Default 3.0.
    pub suspicion_max_mult: f64,
    /// Each membership update is piggybacked at most
    /// `retransmit_mult * ceil(log10(live members + 1))` times by each member,
    /// the infection-style bound that reaches everyone with high
    /// probability. Default 4.
    pub retransmit_mult: NonZeroU32,
    /// Time between two rounds of pure gossip. A round sends only when
    /// membership updates are waiting, so an idle cluster pays nothing for
    /// it. Default 200 ms.
    pub gossip_interval: Duration,
    /// Members a gossip round sends to. Default 3.
    pub gossip_fanout: u32,
    /// Least time between two state synchronisations this node starts. A
    /// sync starts when a ping carries a view hash that differs from ours.
    /// Default 2 s.
    pub sync_interval: Duration,
    /// How long this node's member table must stop growing before it
    /// starts a state sync. While members are still joining (a cold start)
    /// every view differs from every other and keeps growing, and gossip
    /// is already bringing the news: a sync then would send the whole view
    /// for little. Suspicions, refutations and deaths do not hold syncs
    /// back. Zero syncs as soon as hashes differ. Default 0 (off): at 5 s
    /// it cut a 3000-node cold start's first minute by only 9% (5,287 to
    /// 4,796 B/node/s), tripled that start's join p99 (4.25 to 14.4 s) and
    /// slowed a restarted key-value node's catch-up from 2.09 to 3.59 s
    /// (`sim kv --nodes 100`), because a returning node's table grows too.
    pub sync_quiet_period: Duration,
    /// Longest a node waits for its table to stop growing before it starts
    /// a sync anyway, so that a view which never settles (constant joins)
    /// is still repaired. Counted from the last sync this node started.
    /// Must be at least `sync_interval`. Default 60 s.
    pub sync_max_deferral: Duration,
    /// Sustained rate, in bytes per second, of bulk state this node sends in
    /// answer to join and sync requests. A few-byte request draws a reply of
    /// many frames, so this bounds how far a forged request can amplify.
    /// Default 2 MiB/s: about 120 full answers a second at 1000 members.
    pub state_reply_bytes_per_s: u64,
    /// Burst allowance of the same budget, in bytes. Default 8 MiB, enough
    /// for a seed to answer a simultaneous start of 1000 members.
    pub state_reply_burst_bytes: u64,
    /// Time between two probes of a member believed dead, so that a healed
    /// partition merges without anyone calling `join` again. Zero disables.
    /// Default 5 s.
    pub dead_probe_interval: Duration,
    /// How long dead and departed members are remembered (and dead ones
    /// re-probed) before they are forgotten. Default 1 hour.
    pub dead_retention: Duration,
    /// Time between the first join attempts while no seed has answered;
    /// each later wait doubles, up to eight times this. Default 1 s.
    pub join_retry_interval: Duration,
    /// How long a seed holds a join before answering it with its member
    /// list. Members that start together (a cold start) then get one list
    /// naming each other, instead of the early ones learning each later
    /// one as news and challenging it: that costs a challenge per pair of
    /// members. Answers then leave as fast as the state reply budget
    /// allows, oldest first, and one that finds the budget spent is tried
    /// again after this long. Default 250 ms.
    pub join_answer_delay: Duration,
    /// How long a joining node waits for a seed's answer before it learns
    /// members from anyone (challenging each), counted from the join or
    /// from the seed's last answer to one of our probes: a seed that is up
    /// still holds our answer in its queue. Until the answer, the node
    /// takes no claim about a third member and challenges no stranger: the
    /// answer names them all on the seed's word. Default 60 s.
    pub seed_answer_wait: Duration,
    /// Most members (alive, suspect, dead or departed) kept in the view;
    /// updates about further members are dropped and counted. Default 65 536.
    pub max_members: NonZeroUsize,
    /// Largest metadata a member may carry, in bytes. Default 128.
    pub max_metadata_len: usize,
    /// Most membership updates waiting to be piggybacked; beyond it the
    /// most-transmitted ones are dropped first. Default 8192.
    pub max_pending_updates: NonZeroUsize,
    /// Most application rumors whose payloads are kept for relaying and
    /// answering pulls; the oldest go first. Default 4096.
    pub max_stored_messages: NonZeroUsize,
    /// Upper bound of the Lifeguard local-health multiplier: probe interval
    /// and probe timeout are scaled by up to `1 + max_local_health` while this
    /// node itself seems slow. Default 8.
    pub max_local_health: u32,
    /// Most addresses waiting to prove, by answering a
    /// `Verify` challenge, that they are the members a claim
    /// names. A new member, a member's new life and the revival of a member
    /// believed down are only taken from the member's own answer; claims
    /// beyond this bound are dropped (and learned again later from gossip
    /// or state sync). Default 4096: a node joining a cluster of a few
    /// thousand verifies all of them at once.
    pub max_candidates: NonZeroUsize,
    /// How long a claim waits for its member's answer to the challenge
    /// before it is dropped. Generous, so that a member on a slow path is
    /// still admitted; the claims are bounded by `max_candidates` anyway.
    /// Default 5 s.
    pub verify_timeout: Duration,
    /// Most probes this node runs at once on behalf of other members
    /// (`PingReq`); further requests are declined and counted. Default 64.
    pub max_indirect_probes: NonZeroUsize,
    /// Sustained rate, in bytes per second, of state replies to any one
    /// member, on top of the node-wide `state_reply_bytes_per_s`: one
    /// member asking again and again cannot take the whole budget.
    /// Default 256 KiB/s.
    pub source_reply_bytes_per_s: u64,
    /// Burst allowance of each member's reply budget, in bytes. Default
    /// 1 MiB: two full answers at 30,000 members.
    pub source_reply_burst_bytes: u64,
    /// Most members whose reply budget is tracked at once; the one idle
    /// longest is forgotten first (and starts again with a full burst).
    /// Default 1024.
    pub max_reply_sources: NonZeroUsize,
    /// Largest step, in sequence numbers, by which a rumor may run ahead of
    /// the highest one this node holds from the same origin life. A rumor
    /// further ahead is refused and counted
    /// ([`Stats::rumors_refused_gap`](crate::Stats::rumors_refused_gap)),
    /// so that a lying member cannot claim an origin's sequence numbers up
    /// to the end of their range in one frame. A node that holds nothing
    /// from an origin life takes any sequence (a late joiner must). Honest
    /// origins stay within it unless one sends more broadcasts than this
    /// between two that reach a node. Default 65 536, from `max_stored_messages`
    /// (4096) times 16: far more than a node could hold of one origin's
    /// burst anyway.
    pub max_sequence_gap: NonZeroU64,
    /// Whether a rumor for a member joins a rumor frame already queued for
    /// it and not yet taken by the host ([`Node::poll_transmit`](crate::Node::poll_transmit)),
    /// within `max_message_size` and up to 127 rumors per frame: one
    /// header and one datagram for several rumors. It pays off for hosts
    /// that take several inputs before sending (the tokio agent handles
    /// every frame already waiting on its socket first), under streams of
    /// small broadcasts. Per member, frames keep their order. Default
    /// false, so that one input gives the frames it always gave (the
    /// simulator's reference figures); `bench-net` turns it on.
    pub coalesce_rumors: bool,
}

/// Longest accepted cluster label, in bytes.
pub const MAX_LABEL_LEN: usize = 64;

impl Default for Config {
    fn default() -> Self {
        Self::lan(100)
    }
}

impl Config {
    /// Defaults for a data-centre network with about `cluster_size` members.
    pub fn lan(cluster_size: usize) -> Self {
        let max_members = cluster_size.saturating_mul(4).max(65_536);
        Self {
            cluster_label: String::new(),
            max_message_size: NonZeroUsize::new(1400).expect("non-zero"),
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_probes: 3,
            suspicion_min_mult: 0.75,
            suspicion_max_mult: 3.0,
            retransmit_mult: NonZeroU32::new(4).expect("non-zero"),
            gossip_interval: Duration::from_millis(200),
            gossip_fanout: 3,
            sync_interval: Duration::from_secs(2),
            sync_quiet_period: Duration::ZERO,
            sync_max_deferral: Duration::from_secs(60),
            state_reply_bytes_per_s: 2 << 20,
            state_reply_burst_bytes: 8 << 20,
            dead_probe_interval: Duration::from_secs(5),
            dead_retention: Duration::from_secs(3600),
            join_retry_interval: Duration::from_secs(1),
            join_answer_delay: Duration::from_millis(250),
            seed_answer_wait: Duration::from_secs(60),
            max_members: NonZeroUsize::new(max_members).expect("non-zero"),
            max_metadata_len: 128,
            max_pending_updates: NonZeroUsize::new(8192).expect("non-zero"),
            max_stored_messages: NonZeroUsize::new(4096).expect("non-zero"),
            max_local_health: 8,
            max_candidates: NonZeroUsize::new(4096).expect("non-zero"),
            verify_timeout: Duration::from_secs(5),
            max_indirect_probes: NonZeroUsize::new(64).expect("non-zero"),
            source_reply_bytes_per_s: 256 << 10,
            source_reply_burst_bytes: 1 << 20,
            max_reply_sources: NonZeroUsize::new(1024).expect("non-zero"),
            max_sequence_gap: NonZeroU64::new(1 << 16).expect("non-zero"),
            coalesce_rumors: false,
        }
    }

    /// Defaults for members spread over a wide-area network: slower probing,
    /// longer timeouts and suspicion, same bandwidth shape.
    pub fn wan(cluster_size: usize) -> Self {
        Self {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            suspicion_min_mult: 2.0,
            retransmit_mult: NonZeroU32::new(5).expect("non-zero"),
            gossip_interval: Duration::from_millis(500),
            gossip_fanout: 4,
            sync_interval: Duration::from_secs(10),
            dead_probe_interval: Duration::from_secs(15),
            join_retry_interval: Duration::from_secs(3),
            ..Self::lan(cluster_size)
        }
    }

    /// Checks every field against its documented range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |field: &'static str, reason: &'static str| Err(ConfigError::Invalid { field, reason });
        if self.cluster_label.len() > MAX_LABEL_LEN {
            return invalid("cluster_label", "longer than 64 bytes");
        }
        let size = self.max_message_size.get();
        if !(256..=65_507).contains(&size) {
            return invalid("max_message_size", "must be within 256..=65507 bytes");
        }
        if self.probe_interval.is_zero() {
            return invalid("probe_interval", "must be positive");
        }
        if self.probe_timeout.is_zero() || self.probe_timeout >= self.probe_interval {
            return invalid("probe_timeout", "must be positive and below probe_interval");
        }
        if self.indirect_probes > 16 {
            return invalid("indirect_probes", "at most 16");
        }
        if !(self.suspicion_min_mult.is_finite() && self.suspicion_min_mult > 0.0) {
            return invalid("suspicion_min_mult", "must be a positive finite number");
        }
        if !(self.suspicion_max_mult.is_finite() && self.suspicion_max_mult >= 1.0) {
            return invalid("suspicion_max_mult", "must be finite and at least 1");
        }
        if self.gossip_interval.is_zero() {
            return invalid("gossip_interval", "must be positive");
        }
        if self.sync_max_deferral < self.sync_interval {
            return invalid("sync_max_deferral", "must be at least sync_interval");
        }
        if self.verify_timeout.is_zero() {
            return invalid("verify_timeout", "must be positive");
        }
        if self.join_retry_interval.is_zero() {
            return invalid("join_retry_interval", "must be positive");
        }
        if self.state_reply_bytes_per_s == 0 || self.state_reply_burst_bytes == 0 {
            return invalid(
                "state_reply_bytes_per_s",
                "the state-reply budget must be positive",
            );
        }
        if self.source_reply_bytes_per_s == 0 || self.source_reply_burst_bytes == 0 {
            return invalid(
                "source_reply_bytes_per_s",
                "each member's state-reply budget must be positive",
            );
        }
        if self.max_local_health > 64 {
            return invalid("max_local_health", "at most 64");
        }
        // A frame must hold its header plus at least one full-size member record,
        // or a member with maximal metadata could never be announced. The
        // packers always put one record in a frame, so this must hold for the
        // message with the most fixed fields: a sync frame bounded on both sides.
        let needed = wire::header_budget(self) + wire::max_record_len(self) + wire::SYNC_OVERHEAD;
        if needed > size {
            return Err(ConfigError::MessageTooSmall {
                needed,
                configured: size,
            });
        }
        Ok(())
    }
}
