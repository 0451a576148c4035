//! Leases: the proof a leader holds quorum now, not only in its view.
//!
//! A view can be stale: an isolated node whose probing slowed down may
//! still list most members alive. So a candidate sends heartbeats
//! directly to every agreed member and counts the acknowledgements of the
//! last [`lease`](super::LeaderConfig::lease); it holds quorum while a
//! majority of the agreed set acknowledged within that time. A member
//! acknowledges only the candidate its own view names, and not another
//! one until `lease + lease_margin` after its last acknowledgement to the
//! previous one ([`Vote`]), so no acknowledgement counts for two leaders
//! at once and two leases over one agreed set never overlap.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use gossip_core::NodeId;

use crate::Channel;

const HEARTBEAT: u8 = 2;
const ACK: u8 = 3;

/// A leader-channel direct message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Beat {
    /// "I am your leader; acknowledge."
    Heartbeat,
    /// "You are my leader."
    Ack,
}

impl Beat {
    /// The payload.
    pub fn encode(self) -> Vec<u8> {
        Channel::Leader.wrap(&[match self {
            Beat::Heartbeat => HEARTBEAT,
            Beat::Ack => ACK,
        }])
    }

    /// The beat a payload carries.
    pub fn decode(payload: &[u8]) -> Option<Self> {
        match Channel::Leader.open(payload)? {
            [HEARTBEAT] => Some(Beat::Heartbeat),
            [ACK] => Some(Beat::Ack),
            _ => None,
        }
    }
}

/// A member's promise: whom it acknowledged last, and when.
#[derive(Clone, Debug, Default)]
pub struct Vote {
    last: Option<(NodeId, Instant)>,
}

impl Vote {
    /// Whether to acknowledge `candidate` at `now` (and if so, remember
    /// it): yes for the same one, or for another once `wait` has passed
    /// since the last acknowledgement.
    pub fn grant(&mut self, candidate: NodeId, now: Instant, wait: Duration) -> bool {
        let ok = match self.last {
            None => true,
            Some((who, at)) => who == candidate || now >= at + wait,
        };
        if ok {
            self.last = Some((candidate, now));
        }
        ok
    }
}

/// A candidate's acknowledgements.
#[derive(Clone, Debug, Default)]
pub struct Lease {
    acks: BTreeMap<NodeId, Instant>,
}

impl Lease {
    /// `from` acknowledged at `now`.
    pub fn ack(&mut self, from: NodeId, now: Instant) {
        self.acks.insert(from, now);
    }

    /// Forgets every acknowledgement (leadership lost).
    pub fn clear(&mut self) {
        self.acks.clear();
    }

    /// When the lease over `agreed` (needing `needed` members) ends, if it
    /// is held at `now`: the `needed`-th most recent acknowledgement plus
    /// `lease`.
    pub fn holds_until(
        &self,
        now: Instant,
        agreed: &BTreeSet<NodeId>,
        needed: usize,
        lease: Duration,
    ) -> Option<Instant> {
        if needed == 0 {
            return None;
        }
        let mut times: Vec<Instant> = agreed
            .iter()
            .filter_map(|id| self.acks.get(id))
            .map(|&at| at + lease)
            .filter(|&until| until > now)
            .collect();
        if times.len() < needed {
            return None;
        }
        times.sort_unstable_by(|a, b| b.cmp(a));
        Some(times[needed - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::id;

    #[test]
    fn beats_round_trip() {
        for beat in [Beat::Heartbeat, Beat::Ack] {
            assert_eq!(Beat::decode(&beat.encode()), Some(beat));
        }
        assert_eq!(Beat::decode(&Channel::Leader.wrap(&[9])), None);
        assert_eq!(Beat::decode(&Channel::Kv.wrap(&[ACK])), None);
    }

    #[test]
    fn a_vote_moves_to_another_candidate_only_after_the_wait() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(4);
        let mut vote = Vote::default();
        assert!(vote.grant(id(1), t0, wait));
        assert!(vote.grant(id(1), t0 + Duration::from_secs(1), wait));
        assert!(!vote.grant(id(2), t0 + Duration::from_secs(3), wait));
        assert!(vote.grant(id(2), t0 + Duration::from_secs(5), wait));
        assert!(!vote.grant(id(1), t0 + Duration::from_secs(6), wait));
    }

    #[test]
    fn a_lease_lasts_while_a_majority_acknowledged_recently() {
        let t0 = Instant::now();
        let lease = Duration::from_secs(3);
        let agreed: BTreeSet<_> = (1..=5).map(id).collect();
        let mut l = Lease::default();
        l.ack(id(1), t0);
        l.ack(id(2), t0 + Duration::from_secs(1));
        assert_eq!(l.holds_until(t0, &agreed, 3, lease), None);
        l.ack(id(9), t0 + Duration::from_secs(1)); // not agreed
        l.ack(id(3), t0 + Duration::from_secs(2));
        let now = t0 + Duration::from_secs(2);
        assert_eq!(l.holds_until(now, &agreed, 3, lease), Some(t0 + lease));
        assert_eq!(l.holds_until(t0 + lease, &agreed, 3, lease), None);
    }
}
