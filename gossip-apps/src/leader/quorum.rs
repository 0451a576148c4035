//! `has_quorum`: whether this node sees a majority of the last agreed
//! membership.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use gossip_core::NodeId;

/// The last agreed membership and the quorum it defines.
///
/// The *agreed* set is the live set this node last saw stay unchanged for
/// `settle`, adopted only while this node held a quorum of the set before
/// it (or, the very first time, from nothing). So the agreed set shrinks
/// only on the side of a split that keeps a majority: a minority side
/// keeps the old, larger set and cannot reach a majority of it, and two
/// disjoint sides of a cluster that agreed on one set can never both hold
/// a quorum.
#[derive(Clone, Debug)]
pub struct Quorum {
    settle: Duration,
    min_quorum: usize,
    agreed: BTreeSet<NodeId>,
    /// The agreed set before the last change: a quorum needs a majority
    /// of both, since other nodes may not have adopted the new one yet.
    previous: BTreeSet<NodeId>,
    /// The live set as last observed, and since when it is unchanged.
    live: BTreeSet<NodeId>,
    live_since: Option<Instant>,
}

impl Quorum {
    /// No agreed membership yet. A live set must stay unchanged for
    /// `settle` to be agreed; a quorum is never fewer than `min_quorum`
    /// members.
    pub fn new(settle: Duration, min_quorum: usize) -> Self {
        Self {
            settle,
            min_quorum,
            agreed: BTreeSet::new(),
            previous: BTreeSet::new(),
            live: BTreeSet::new(),
            live_since: None,
        }
    }

    /// The last agreed membership (empty before the first agreement).
    pub fn agreed(&self) -> &BTreeSet<NodeId> {
        &self.agreed
    }

    /// How many live members a quorum needs: a strict majority of the
    /// agreed set, at least `min_quorum`.
    pub fn needed(&self) -> usize {
        Self::majority(&self.agreed, self.min_quorum)
    }

    fn majority(set: &BTreeSet<NodeId>, min_quorum: usize) -> usize {
        (set.len() / 2 + 1).max(min_quorum)
    }

    /// The sets a quorum needs a majority of, with the count each needs:
    /// the agreed set and the one before it (joint, as nodes adopt a new
    /// set at different times).
    pub fn sets(&self) -> Vec<(&BTreeSet<NodeId>, usize)> {
        let mut sets = vec![(&self.agreed, self.needed())];
        if !self.previous.is_empty() {
            sets.push((&self.previous, Self::majority(&self.previous, 1)));
        }
        sets
    }

    /// Whether the live set last observed holds a quorum of the agreed set
    /// (and of the one before it).
    pub fn has_quorum(&self) -> bool {
        !self.agreed.is_empty()
            && self
                .sets()
                .iter()
                .all(|(set, needed)| self.live.intersection(set).count() >= *needed)
    }

    /// The live set at `now`; adopts it as agreed once it has stayed
    /// unchanged for `settle` while this node held a quorum.
    pub fn observe(&mut self, now: Instant, live: BTreeSet<NodeId>) {
        if live != self.live || self.live_since.is_none() {
            self.live = live;
            self.live_since = Some(now);
        }
        self.settle_at(now);
    }

    /// Adopts the live set if its time has come.
    pub fn settle_at(&mut self, now: Instant) {
        let Some(since) = self.live_since else { return };
        if self.live == self.agreed || now < since + self.settle {
            return;
        }
        if self.bootstrapping() || self.has_quorum() {
            self.previous = std::mem::replace(&mut self.agreed, self.live.clone());
        }
    }

    /// Before the agreed set first reaches `min_quorum` members (or is
    /// first formed at all), any stable live set is adopted.
    fn bootstrapping(&self) -> bool {
        self.agreed.is_empty() || self.agreed.len() < self.min_quorum
    }

    /// When the live set would become agreed, if it is not yet.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let since = self.live_since?;
        let pending = self.live != self.agreed && (self.bootstrapping() || self.has_quorum());
        pending.then_some(since + self.settle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(range: std::ops::Range<u16>) -> BTreeSet<NodeId> {
        range
            .map(|p| NodeId::new(([127, 0, 0, 1], p).into()))
            .collect()
    }

    #[test]
    fn a_stable_live_set_becomes_agreed_and_a_minority_cannot_shrink_it() {
        let t0 = Instant::now();
        let settle = Duration::from_secs(5);
        let mut q = Quorum::new(settle, 1);
        q.observe(t0, ids(0..5));
        assert!(!q.has_quorum(), "nothing agreed yet");
        assert_eq!(q.poll_timeout(), Some(t0 + settle));
        q.settle_at(t0 + settle);
        assert_eq!(q.agreed().len(), 5);
        assert!(q.has_quorum());

        // A minority side: no quorum, and waiting does not change that.
        let mut minority = q.clone();
        minority.observe(t0 + settle * 2, ids(3..5));
        assert!(!minority.has_quorum());
        assert_eq!(minority.poll_timeout(), None);
        minority.settle_at(t0 + settle * 10);
        assert_eq!(minority.agreed().len(), 5);

        // The majority side keeps its quorum and shrinks the agreed set;
        // split again 2/1, its larger part holds a majority of the new set
        // but not of the one before, which other nodes may still hold.
        let mut majority = q.clone();
        majority.observe(t0 + settle * 2, ids(0..3));
        assert!(majority.has_quorum());
        majority.settle_at(t0 + settle * 3);
        assert_eq!(majority.agreed().len(), 3);
        majority.observe(t0 + settle * 4, ids(0..2));
        assert!(!majority.has_quorum(), "joint: 2 of the 5 before");
        majority.observe(t0 + settle * 4, ids(0..4));
        assert!(majority.has_quorum());
        majority.observe(t0 + settle * 4, ids(2..3));
        assert!(!majority.has_quorum());
    }

    #[test]
    fn min_quorum_is_a_floor() {
        let t0 = Instant::now();
        let mut q = Quorum::new(Duration::ZERO, 3);
        q.observe(t0, ids(0..2));
        assert_eq!(q.agreed().len(), 2);
        assert!(!q.has_quorum());
        // Still bootstrapping: the first set that reaches the floor is agreed.
        q.observe(t0, ids(0..3));
        assert_eq!(q.agreed().len(), 3);
        assert!(q.has_quorum());
        q.observe(t0, ids(0..2));
        assert!(!q.has_quorum());
        assert_eq!(q.agreed().len(), 3, "changes only while holding quorum");
    }
}
