//! Terms: the fencing token that only ever grows.

use std::collections::BTreeMap;

use gossip_core::NodeId;

use crate::Channel;

/// The format byte of a term announcement (after the [`Channel::Leader`] tag).
const ANNOUNCE_V1: u8 = 1;

/// Encodes "I lead with `term`" as a [`Channel::Leader`] payload.
pub fn encode_announcement(term: u64) -> Vec<u8> {
    let mut body = vec![ANNOUNCE_V1];
    body.extend_from_slice(&term.to_le_bytes());
    Channel::Leader.wrap(&body)
}

/// The term a [`Channel::Leader`] payload announces; `None` for other
/// channels and malformed bodies.
pub fn decode_announcement(payload: &[u8]) -> Option<u64> {
    let body = Channel::Leader.open(payload)?;
    match body.split_first() {
        Some((&ANNOUNCE_V1, rest)) => Some(u64::from_le_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

/// What one node knows of terms: the highest any live member announced,
/// each member's last announcement, and the term it shows, which never
/// goes down.
#[derive(Clone, Debug, Default)]
pub struct Terms {
    highest_seen: u64,
    announced: BTreeMap<NodeId, u64>,
    shown: u64,
    /// The leader whose announcement `shown` came from.
    shown_for: Option<NodeId>,
}

impl Terms {
    /// The term this node shows: the highest announced by a member while
    /// this node held it leader. Never goes down.
    pub fn shown(&self) -> u64 {
        self.shown
    }

    /// Whether `leader` itself announced the term shown.
    pub fn confirmed_for(&self, leader: Option<NodeId>) -> bool {
        leader.is_some() && self.shown_for == leader
    }

    /// The highest term any member announced (or this node took).
    pub fn highest_seen(&self) -> u64 {
        self.highest_seen
    }

    /// `from` announced `term`. `leader` is this node's leader now.
    pub fn record(&mut self, from: NodeId, term: u64, leader: Option<NodeId>) {
        self.highest_seen = self.highest_seen.max(term);
        let entry = self.announced.entry(from).or_insert(term);
        *entry = (*entry).max(term);
        self.follow(leader);
    }

    /// This node's leader is now `leader`: show its last announcement if
    /// that is not below what is shown.
    pub fn follow(&mut self, leader: Option<NodeId>) {
        let Some(leader) = leader else { return };
        if let Some(&term) = self.announced.get(&leader) {
            if term >= self.shown {
                self.shown = term;
                self.shown_for = Some(leader);
            }
        }
    }

    /// Forgets `member`'s announcements (it went down or left), so the
    /// table stays within the member count.
    pub fn forget(&mut self, member: &NodeId) {
        self.announced.remove(member);
    }

    /// This node `me` takes leadership: a term above every one it has seen.
    pub fn take(&mut self, me: NodeId) -> u64 {
        let term = self.highest_seen.saturating_add(1);
        self.record(me, term, Some(me));
        term
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(port: u16) -> NodeId {
        NodeId::new(([127, 0, 0, 1], port).into())
    }

    #[test]
    fn announcements_round_trip_and_reject_garbage() {
        assert_eq!(decode_announcement(&encode_announcement(42)), Some(42));
        assert_eq!(decode_announcement(&Channel::Kv.wrap(&[1; 9])), None);
        assert_eq!(decode_announcement(&Channel::Leader.wrap(&[1; 5])), None);
        assert_eq!(decode_announcement(&Channel::Leader.wrap(&[2; 9])), None);
    }

    #[test]
    fn the_shown_term_follows_the_leader_and_never_goes_down() {
        let mut terms = Terms::default();
        terms.record(id(1), 5, Some(id(1)));
        assert_eq!(terms.shown(), 5);
        // Another member's announcement raises only what is seen.
        terms.record(id(2), 7, Some(id(1)));
        assert_eq!((terms.shown(), terms.highest_seen()), (5, 7));
        // Leadership moves to 2, whose announcement came earlier.
        terms.follow(Some(id(2)));
        assert_eq!(terms.shown(), 7);
        assert!(terms.confirmed_for(Some(id(2))));
        // Back to 1, whose announced term is lower: the shown term stays.
        terms.follow(Some(id(1)));
        assert_eq!(terms.shown(), 7);
        assert!(!terms.confirmed_for(Some(id(1))));
        // 1 takes a term above every one seen.
        assert_eq!(terms.take(id(1)), 8);
        assert_eq!(terms.shown(), 8);
    }
}
