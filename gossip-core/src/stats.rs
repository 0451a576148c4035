//! Counters a node keeps about itself.

use serde::{Deserialize, Serialize};

/// Counters since the node was created, read with [`Node::stats`](crate::Node::stats).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Frames handed to the host for sending.
    pub frames_sent: u64,
    /// Bytes in those frames (transport headers not included).
    pub bytes_sent: u64,
    /// Frames accepted by `handle_message`.
    pub frames_received: u64,
    /// Bytes in accepted frames.
    pub bytes_received: u64,
    /// Frames refused by `handle_message` (any [`RecvError`](crate::RecvError)).
    pub recv_errors: u64,
    /// Direct probes started.
    pub probes_sent: u64,
    /// Probes that got no ack, directly or through helpers.
    pub probes_failed: u64,
    /// Pings sent on behalf of another member's indirect probe.
    pub indirect_pings_sent: u64,
    /// Pings sent to members believed dead, to notice healed partitions.
    pub dead_probes_sent: u64,
    /// Suspicions this node raised itself.
    pub suspicions_raised: u64,
    /// Extra pings sent to members this node suspects, carrying the suspicion.
    pub reminders_sent: u64,
    /// Members this node declared dead when their suspicion timed out.
    pub members_declared_dead: u64,
    /// Times this node refuted a suspicion or death claim about itself.
    pub refutations: u64,
    /// Gossip frames sent.
    pub gossip_sent: u64,
    /// State synchronisations this node started.
    pub syncs_started: u64,
    /// State synchronisations this node answered.
    pub syncs_answered: u64,
    /// Join requests this node answered.
    pub joins_answered: u64,
    /// Requests to probe an address that is not a member this node knows,
    /// declined (so nobody can aim this node's pings at any address).
    pub probe_requests_declined: u64,
    /// Member records and requests ignored because their frame came from
    /// an address that is not a live member (nor a seed we asked): only
    /// members vouch for others, gossip, relay rumors or ask for state.
    pub claims_ignored: u64,
    /// Challenges (`Verify`) sent to addresses claimed to be members, or
    /// to be members in a new life or alive again.
    pub verifications_sent: u64,
    /// Claims proven by their member's answer to a challenge.
    pub candidates_proven: u64,
    /// Claims dropped: the member did not answer its challenge in time,
    /// or `max_candidates` claims were already waiting.
    pub candidates_dropped: u64,
    /// Members admitted on a seed's word: named in its answer to our own
    /// join or sync request (see `Config::join_answer_delay`).
    pub members_vouched: u64,
    /// Join or sync requests left unanswered because the state-reply byte
    /// budget was spent.
    pub state_replies_throttled: u64,
    /// Updates dropped because the pending queue was full.
    pub updates_dropped: u64,
    /// New members ignored because `max_members` was reached.
    pub members_dropped: u64,
    /// Application broadcasts originated here.
    pub broadcasts: u64,
    /// Rumors delivered here for the first time (from others).
    pub rumors_delivered: u64,
    /// Rumors received that were already held.
    pub rumors_duplicate: u64,
    /// Rumors sent (each copy counts).
    pub rumors_sent: u64,
    /// Rumor ids announced without payload (a tree strategy's lazy
    /// announcements, [`GossipMessage::Announce`](crate::GossipMessage::Announce)).
    pub announcements_sent: u64,
    /// Bytes of the frames that carried those announcements.
    pub announce_bytes_sent: u64,
    /// Application direct messages sent ([`Node::send_direct`](crate::Node::send_direct)).
    pub directs_sent: u64,
    /// Application direct messages received from live members.
    pub directs_received: u64,
    /// Rumors received that name this node as their origin, in its current
    /// life or a later one, which it never sent: a sequence number it had
    /// not used, or another payload than its own under one it had. Each id
    /// counts once. Such rumors are forgeries by a lying member (or a relay
    /// of one); they are never delivered here nor relayed by this node.
    pub own_rumors_forged: u64,
    /// Broadcasts of this node sent again under a fresh sequence number
    /// because a forgery had taken their id first (see
    /// [`Event::Reissued`](crate::Event::Reissued)).
    pub rumors_reissued: u64,
    /// Rumors refused because their sequence number ran more than
    /// `max_sequence_gap` ahead of the highest held from their origin life.
    pub rumors_refused_gap: u64,
    /// Rumors refused because their origin's signature was missing or did
    /// not verify (only with a [`RumorSigner`](crate::RumorSigner) installed).
    pub rumors_refused_signature: u64,
    /// Aggregation shares sent.
    pub shares_sent: u64,
    /// Aggregation shares received.
    pub shares_received: u64,
    /// Rumor payloads held right now.
    pub stored_messages: u64,
    /// Updates waiting to be piggybacked right now.
    pub pending_updates: u64,
    /// Claims waiting for their member's answer to a challenge right now.
    pub candidates_waiting: u64,
    /// Current Lifeguard local-health multiplier (0 = healthy).
    pub local_health: u32,
}

impl Stats {
    /// Adds `other`'s counters to these (for cluster-wide totals).
    pub fn accumulate(&mut self, other: &Stats) {
        self.frames_sent += other.frames_sent;
        self.bytes_sent += other.bytes_sent;
        self.frames_received += other.frames_received;
        self.bytes_received += other.bytes_received;
        self.recv_errors += other.recv_errors;
        self.probes_sent += other.probes_sent;
        self.probes_failed += other.probes_failed;
        self.indirect_pings_sent += other.indirect_pings_sent;
        self.dead_probes_sent += other.dead_probes_sent;
        self.suspicions_raised += other.suspicions_raised;
        self.reminders_sent += other.reminders_sent;
        self.members_declared_dead += other.members_declared_dead;
        self.refutations += other.refutations;
        self.gossip_sent += other.gossip_sent;
        self.syncs_started += other.syncs_started;
        self.syncs_answered += other.syncs_answered;
        self.joins_answered += other.joins_answered;
        self.probe_requests_declined += other.probe_requests_declined;
        self.claims_ignored += other.claims_ignored;
        self.verifications_sent += other.verifications_sent;
        self.candidates_proven += other.candidates_proven;
        self.candidates_dropped += other.candidates_dropped;
        self.members_vouched += other.members_vouched;
        self.state_replies_throttled += other.state_replies_throttled;
        self.updates_dropped += other.updates_dropped;
        self.members_dropped += other.members_dropped;
        self.broadcasts += other.broadcasts;
        self.rumors_delivered += other.rumors_delivered;
        self.rumors_duplicate += other.rumors_duplicate;
        self.rumors_sent += other.rumors_sent;
        self.announcements_sent += other.announcements_sent;
        self.announce_bytes_sent += other.announce_bytes_sent;
        self.own_rumors_forged += other.own_rumors_forged;
        self.rumors_reissued += other.rumors_reissued;
        self.rumors_refused_gap += other.rumors_refused_gap;
        self.rumors_refused_signature += other.rumors_refused_signature;
        self.shares_sent += other.shares_sent;
        self.shares_received += other.shares_received;
        self.stored_messages += other.stored_messages;
        self.pending_updates += other.pending_updates;
        self.candidates_waiting += other.candidates_waiting;
        self.local_health += other.local_health;
    }
}
