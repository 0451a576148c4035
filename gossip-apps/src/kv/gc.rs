//! Early collection of tombstones by acknowledgement: the bookkeeping.
//!
//! - [`Guards`]: what is left of a tombstone collected early, its key hash
//!   and version, kept until the grace so that older values stay refused;
//! - [`Tracker`]: this node's own recent deletions and the members, alive
//!   at the deletion, that have not acknowledged them yet;
//! - [`Outbox`]: acknowledgements, requests and collect notices waiting
//!   for the next flush, bounded in total.
//!
//! The protocol itself lives in the store; see the module documentation of
//! [`kv`](super) for it and its safety argument.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::version::Version;

/// Names one tombstone on the wire: its key's hash and its version (whose
/// `origin` is the deleter's tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TombstoneId {
    /// The key's hash ([`key_hash`](super::key_hash)).
    pub hash: u64,
    /// The deletion's version.
    pub version: Version,
}

/// Tombstones collected early, by key hash: an entry for a key not held
/// whose version is not newer than its guard is refused, as its tombstone
/// would have refused it, until the grace ends.
#[derive(Clone, Debug, Default)]
pub struct Guards {
    by_hash: BTreeMap<u64, Version>,
    /// `(stamp, hash)`, oldest first, for expiry.
    by_age: BTreeSet<(u64, u64)>,
}

impl Guards {
    /// Guards held.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// The guard of `hash`.
    pub fn get(&self, hash: u64) -> Option<Version> {
        self.by_hash.get(&hash).copied()
    }

    /// Guards `hash` up to `version` (the newer of two guards of one hash
    /// is kept: hashes of distinct keys may collide); returns the version
    /// now guarded.
    pub fn insert(&mut self, hash: u64, version: Version) -> Version {
        if let Some(old) = self.by_hash.get(&hash).copied() {
            if old >= version {
                return old;
            }
            self.by_age.remove(&(old.stamp, hash));
        }
        self.by_hash.insert(hash, version);
        self.by_age.insert((version.stamp, hash));
        version
    }

    /// Forgets the guard of `hash`.
    pub fn remove(&mut self, hash: u64) -> Option<Version> {
        let old = self.by_hash.remove(&hash)?;
        self.by_age.remove(&(old.stamp, hash));
        Some(old)
    }

    /// Hashes and versions of the guards stamped before `stamp`.
    pub fn before(&self, stamp: u64) -> Vec<(u64, Version)> {
        self.by_age
            .iter()
            .take_while(|(s, _)| *s < stamp)
            .map(|&(_, h)| (h, self.by_hash[&h]))
            .collect()
    }
}

/// One of this node's deletions whose acknowledgements it awaits.
#[derive(Clone, Debug)]
pub struct Tracked {
    /// The deleted key.
    pub key: Vec<u8>,
    /// Tags of the members alive at the deletion, with whether each has
    /// acknowledged, sorted by tag.
    pub members: Vec<(u64, bool)>,
    /// When the members that have not acknowledged are asked again.
    pub next_ask: Instant,
}

impl Tracked {
    /// Takes `tag`'s acknowledgement; whether it was awaited.
    pub fn ack(&mut self, tag: u64) -> bool {
        match self.members.binary_search_by_key(&tag, |m| m.0) {
            Ok(i) if !self.members[i].1 => {
                self.members[i].1 = true;
                true
            }
            _ => false,
        }
    }

    /// Tags that have not acknowledged.
    pub fn waiting(&self) -> impl Iterator<Item = u64> + '_ {
        self.members.iter().filter(|m| !m.1).map(|m| m.0)
    }

    /// Tags that have acknowledged.
    pub fn acked(&self) -> impl Iterator<Item = u64> + '_ {
        self.members.iter().filter(|m| m.1).map(|m| m.0)
    }

    /// Stops waiting for `tag` (it left the cluster).
    pub fn forget(&mut self, tag: u64) {
        self.members.retain(|m| m.0 != tag);
    }
}

/// This node's deletions being tracked, at most
/// [`KvConfig::max_tracked_tombstones`](super::KvConfig::max_tracked_tombstones).
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    /// By tombstone.
    pub tracked: BTreeMap<TombstoneId, Tracked>,
}

/// Tombstone ids queued for one peer or deleter, with a bound on the
/// total across all of them.
#[derive(Clone, Debug)]
pub struct Outbox<K: Ord> {
    queues: BTreeMap<K, BTreeSet<TombstoneId>>,
    total: usize,
}

impl<K: Ord> Default for Outbox<K> {
    fn default() -> Self {
        Self {
            queues: BTreeMap::new(),
            total: 0,
        }
    }
}

impl<K: Ord + Clone> Outbox<K> {
    /// Queues `id` for `to`; false if the outbox holds `max` ids already
    /// (the id is dropped).
    pub fn push(&mut self, to: K, id: TombstoneId, max: usize) -> bool {
        if self.total >= max {
            return false;
        }
        if self.queues.entry(to).or_default().insert(id) {
            self.total += 1;
        }
        true
    }

    /// Ids queued in total.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Takes at most `max` ids of every destination, oldest key first.
    pub fn take(&mut self, max: usize) -> Vec<(K, Vec<TombstoneId>)> {
        let mut out = Vec::new();
        for (to, queue) in self.queues.iter_mut() {
            let ids: Vec<TombstoneId> = queue.iter().take(max).copied().collect();
            for id in &ids {
                queue.remove(id);
            }
            self.total -= ids.len();
            out.push((to.clone(), ids));
        }
        self.queues.retain(|_, q| !q.is_empty());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(stamp: u64) -> Version {
        Version { stamp, origin: 1 }
    }

    #[test]
    fn guards_keep_the_newest_version_and_expire_oldest_first() {
        let mut g = Guards::default();
        g.insert(1, v(10));
        assert_eq!(g.insert(1, v(5)), v(10));
        g.insert(2, v(20));
        g.insert(1, v(30));
        assert_eq!(g.get(1), Some(v(30)));
        assert_eq!(g.before(25), vec![(2, v(20))]);
        assert_eq!(g.remove(2), Some(v(20)));
        assert_eq!(g.len(), 1);
        assert!(g.before(25).is_empty());
    }

    #[test]
    fn the_outbox_is_bounded_in_total_and_paced_per_destination() {
        let mut o: Outbox<u64> = Outbox::default();
        let id = |h| TombstoneId {
            hash: h,
            version: v(1),
        };
        for h in 0..6 {
            assert!(o.push(h % 2, id(h), 6));
        }
        assert!(!o.push(0, id(99), 6));
        assert!(!o.push(1, id(98), 6));
        assert_eq!(o.len(), 6);
        let first = o.take(2);
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|(_, ids)| ids.len() == 2));
        assert_eq!(o.len(), 2);
        assert!(o.push(0, id(99), 6));
        o.take(2);
        o.take(2);
        assert!(o.is_empty());
    }

    #[test]
    fn tracked_members_acknowledge_once() {
        let mut t = Tracked {
            key: b"k".to_vec(),
            members: vec![(1, false), (5, false), (9, false)],
            next_ask: Instant::now(),
        };
        assert!(t.ack(5));
        assert!(!t.ack(5));
        assert!(!t.ack(7));
        t.forget(9);
        assert_eq!(t.waiting().collect::<Vec<_>>(), vec![1]);
        assert_eq!(t.acked().collect::<Vec<_>>(), vec![5]);
    }
}
