//! The entries in memory, ordered by key hash, with what the digest tree
//! needs: the root digest kept up to date on every change, child digests
//! and counts computed from a range scan, and tombstones ordered by age
//! for collection.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use super::entry::Entry;
use super::hash::key_hash;
use super::wire::Digests;

/// Depth of the digest tree's leaves: 16 children per node, so the leaves
/// are the 65,536 values of a key hash's top 16 bits.
pub const MAX_DEPTH: u8 = 4;

/// The key-hash range `lo..=hi` of tree node `(depth, prefix)`.
pub fn node_range(depth: u8, prefix: u16) -> (u64, u64) {
    if depth == 0 {
        return (0, u64::MAX);
    }
    let shift = 64 - 4 * u32::from(depth);
    let lo = u64::from(prefix) << shift;
    (lo, lo | ((1u64 << shift) - 1))
}

/// Whether `(depth, prefix)` names a tree node.
pub fn valid_node(depth: u8, prefix: u16) -> bool {
    depth <= MAX_DEPTH && (depth == MAX_DEPTH || u32::from(prefix) < (1u32 << (4 * depth)))
}

#[derive(Clone, Debug)]
struct Slot {
    entry: Entry,
    digest: u64,
}

/// Every entry a node holds, tombstones included.
#[derive(Clone, Debug, Default)]
pub struct Index {
    slots: BTreeMap<(u64, Vec<u8>), Slot>,
    root: u64,
    /// Tombstones by `(stamp, hash, key)`, oldest first.
    tombstones: BTreeSet<(u64, u64, Vec<u8>)>,
    /// Key and value bytes of every entry.
    data_bytes: usize,
}

impl Index {
    /// Entries held, tombstones included.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Tombstones held.
    pub fn tombstones(&self) -> usize {
        self.tombstones.len()
    }

    /// Key and value bytes held, tombstones' keys included.
    pub fn data_bytes(&self) -> usize {
        self.data_bytes
    }

    /// The root digest: the wrapping sum of every entry's digest.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// The entry for `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.slots
            .get(&(key_hash(key), key.to_vec()))
            .map(|s| &s.entry)
    }

    /// Stores `entry`, returning the one it replaced.
    pub fn insert(&mut self, entry: Entry) -> Option<Entry> {
        let hash = entry.hash();
        let digest = entry.digest();
        let old = self.remove_inner(hash, &entry.key);
        self.root = self.root.wrapping_add(digest);
        self.data_bytes += entry.data_len();
        if entry.is_tombstone() {
            self.tombstones
                .insert((entry.version.stamp, hash, entry.key.clone()));
        }
        self.slots
            .insert((hash, entry.key.clone()), Slot { entry, digest });
        old
    }

    /// Forgets `key`, returning its entry.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        self.remove_inner(key_hash(key), key)
    }

    fn remove_inner(&mut self, hash: u64, key: &[u8]) -> Option<Entry> {
        let slot = self.slots.remove(&(hash, key.to_vec()))?;
        self.root = self.root.wrapping_sub(slot.digest);
        self.data_bytes -= slot.entry.data_len();
        if slot.entry.is_tombstone() {
            self.tombstones
                .remove(&(slot.entry.version.stamp, hash, key.to_vec()));
        }
        Some(slot.entry)
    }

    /// Keys of tombstones whose stamp is below `stamp`, oldest first.
    pub fn tombstones_before(&self, stamp: u64) -> Vec<Vec<u8>> {
        self.tombstones
            .iter()
            .take_while(|(s, _, _)| *s < stamp)
            .map(|(_, _, k)| k.clone())
            .collect()
    }

    /// Every entry, in hash order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.slots.values().map(|s| &s.entry)
    }

    /// Entries with key hash in `lo..=hi`, with their digests, in hash order.
    pub fn range(&self, lo: u64, hi: u64) -> impl Iterator<Item = (&Entry, u64)> + '_ {
        self.slots
            .range((Bound::Included((lo, Vec::new())), Bound::Unbounded))
            .take_while(move |((h, _), _)| *h <= hi)
            .map(|(_, s)| (&s.entry, s.digest))
    }

    /// Digests and entry counts of the 16 children of `(depth, prefix)`
    /// (`depth < MAX_DEPTH`).
    pub fn children(&self, depth: u8, prefix: u16) -> ([u64; 16], [usize; 16]) {
        let (lo, hi) = node_range(depth, prefix);
        let shift = 64 - 4 * (u32::from(depth) + 1);
        let mut digests = [0u64; 16];
        let mut counts = [0usize; 16];
        for ((hash, _), slot) in self
            .slots
            .range((Bound::Included((lo, Vec::new())), Bound::Unbounded))
            .take_while(|((h, _), _)| *h <= hi)
        {
            let child = ((hash >> shift) & 15) as usize;
            digests[child] = digests[child].wrapping_add(slot.digest);
            counts[child] += 1;
        }
        (digests, counts)
    }
}

/// Digests as they travel.
pub fn to_wire(digests: &[u64; 16]) -> Digests {
    let mut out = [[0u8; 8]; 16];
    for (o, d) in out.iter_mut().zip(digests) {
        *o = d.to_le_bytes();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Version;

    fn entry(key: &str, stamp: u64, value: Option<&str>) -> Entry {
        Entry {
            key: key.as_bytes().to_vec(),
            version: Version { stamp, origin: 1 },
            value: value.map(|v| v.as_bytes().to_vec()),
        }
    }

    #[test]
    fn the_root_is_the_same_whatever_the_order_of_changes() {
        let mut a = Index::default();
        let mut b = Index::default();
        a.insert(entry("x", 1, Some("1")));
        a.insert(entry("y", 2, Some("2")));
        a.insert(entry("x", 3, None));
        b.insert(entry("y", 2, Some("2")));
        b.insert(entry("x", 3, None));
        assert_eq!(a.root(), b.root());
        assert_eq!(a.tombstones(), 1);
        let (da, ca) = a.children(0, 0);
        assert_eq!(da, b.children(0, 0).0);
        assert_eq!(ca.iter().sum::<usize>(), 2);
        a.remove(b"x");
        assert_eq!(a.tombstones(), 0);
        assert_ne!(a.root(), b.root());
    }

    #[test]
    fn node_ranges_nest() {
        assert_eq!(node_range(0, 0), (0, u64::MAX));
        let (lo, hi) = node_range(1, 15);
        assert_eq!(lo, 0xf000_0000_0000_0000);
        assert_eq!(hi, u64::MAX);
        assert!(valid_node(4, u16::MAX));
        assert!(!valid_node(1, 16));
        assert!(!valid_node(5, 0));
    }
}
