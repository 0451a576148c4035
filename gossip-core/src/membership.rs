//! Building blocks of the membership view: member entries, suspicions, the
//! view hash and the set of live members with O(1) random choice.

use core::hash::{BuildHasherDefault, Hasher};
use core::time::Duration;
use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;

use crate::id::{Generation, Incarnation, NodeId};
use crate::member::Liveness;

/// Ordering key of claims about a member: a newer life or a newer incarnation wins.
pub(crate) type Version = (Generation, Incarnation);

/// Precedence of claims with the same [`Version`]: stronger overrides weaker.
pub(crate) fn rank(liveness: Liveness) -> u8 {
    match liveness {
        Liveness::Alive => 0,
        Liveness::Suspect => 1,
        Liveness::Dead => 2,
        Liveness::Left => 3,
    }
}

/// Whether a member in this state still counts as part of the cluster.
pub(crate) fn is_live(liveness: Liveness) -> bool {
    matches!(liveness, Liveness::Alive | Liveness::Suspect)
}

/// A running suspicion (Lifeguard): it starts at the maximum timeout and
/// shrinks as independent members confirm it.
#[derive(Clone, Debug)]
pub(crate) struct Suspicion {
    /// Distinct members that suspect; the first is the originator.
    pub confirmers: Vec<NodeId>,
    pub started: Instant,
    pub min: Duration,
    pub max: Duration,
    pub deadline: Instant,
    /// The suspicion began with someone else's word that the member left:
    /// if the member does not refute it, it is recorded as departed rather
    /// than failed.
    pub leaving: bool,
}

impl Suspicion {
    pub fn new(now: Instant, by: NodeId, min: Duration, max: Duration) -> Self {
        Self {
            confirmers: vec![by],
            started: now,
            min,
            max,
            deadline: now + max,
            leaving: false,
        }
    }

    /// Records an independent confirmation; returns whether it was new. The
    /// deadline follows `max - (max - min) * ln(C + 1) / ln(K + 1)` for C
    /// confirmations out of K expected, never below `min`.
    pub fn confirm(&mut self, by: NodeId, expected: u32) -> bool {
        if expected == 0
            || self.confirmers.len() > expected as usize
            || self.confirmers.contains(&by)
        {
            return false;
        }
        self.confirmers.push(by);
        let confirmations = (self.confirmers.len() - 1) as f64;
        let fraction = (confirmations + 1.0).ln() / (f64::from(expected) + 1.0).ln();
        let span = self.max.saturating_sub(self.min).as_secs_f64();
        let timeout =
            (self.max.as_secs_f64() - span * fraction.min(1.0)).max(self.min.as_secs_f64());
        self.deadline = self.started + Duration::from_secs_f64(timeout);
        true
    }
}

/// What one node knows about one other member.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub generation: Generation,
    pub incarnation: Incarnation,
    pub liveness: Liveness,
    pub metadata: Vec<u8>,
    /// Boxed: most entries have none, and a small entry keeps the table dense.
    pub suspicion: Option<Box<Suspicion>>,
    /// When the entry last became dead or left (drives forgetting).
    pub down_since: Option<Instant>,
    /// Whether the forget queue holds an entry for this member.
    pub forget_queued: bool,
}

impl Entry {
    pub fn version(&self) -> Version {
        (self.generation, self.incarnation)
    }
}

/// Hash map with a fixed (unseeded) hasher: lookups only, never iterated
/// where the order could reach the output.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<MixHasher>>;

/// Multiply-rotate hashing with a full avalanche at the end. Members' addresses
/// often differ only in their last bits, which a bare multiply-rotate hash
/// (FxHash) leaves clustered in the low bits that pick hash-table buckets.
#[derive(Default, Clone, Copy)]
pub(crate) struct MixHasher(u64);

impl Hasher for MixHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    fn finish(&self) -> u64 {
        splitmix64(self.0)
    }
}

/// Every member this node knows except itself, in one hash map (one probe
/// per lookup: at a thousand members per node the simulator is bound by cache
/// misses). Iteration that reaches the output goes through
/// [`MemberTable::sorted`], so it never depends on the map's layout.
#[derive(Default)]
pub(crate) struct MemberTable {
    entries: FastMap<NodeId, Entry>,
}

impl MemberTable {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&self, id: &NodeId) -> Option<&Entry> {
        self.entries.get(id)
    }

    pub fn get_mut(&mut self, id: &NodeId) -> Option<&mut Entry> {
        self.entries.get_mut(id)
    }

    pub fn contains_key(&self, id: &NodeId) -> bool {
        self.entries.contains_key(id)
    }

    /// Inserts a member not yet in the table.
    pub fn insert(&mut self, id: NodeId, entry: Entry) {
        let previous = self.entries.insert(id, entry);
        debug_assert!(previous.is_none());
    }

    pub fn remove(&mut self, id: &NodeId) {
        self.entries.remove(id);
    }

    /// All members in address order.
    pub fn sorted(&self) -> Vec<(&NodeId, &Entry)> {
        let mut all: Vec<_> = self.entries.iter().collect();
        all.sort_unstable_by_key(|(id, _)| **id);
        all
    }
}

impl core::ops::Index<&NodeId> for MemberTable {
    type Output = Entry;
    fn index(&self, id: &NodeId) -> &Entry {
        self.get(id).expect("member is in the table")
    }
}

/// Contribution of one live member to the view hash.
///
/// The hash of a view is the wrapping sum of its live members' contributions,
/// so it is updated in O(1) per change and does not depend on the order in
/// which members were learned. The mixing function is spelled out here rather
/// than taken from `std::hash`, because nodes built by different compilers must
/// agree on it.
pub(crate) fn member_hash(id: NodeId, version: Version) -> u64 {
    let mut h = Fnv::new();
    match id.addr() {
        SocketAddr::V4(a) => {
            h.write(&[4]);
            h.write(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            h.write(&[6]);
            h.write(&a.ip().octets());
        }
    }
    h.write(&id.addr().port().to_le_bytes());
    h.write(&version.0 .0.to_le_bytes());
    h.write(&version.1 .0.to_le_bytes());
    splitmix64(h.0)
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A set of members with O(1) insert, remove and uniform random choice.
///
/// The vector's order depends only on the sequence of operations, so random
/// choices are reproducible; the map is used for lookups only.
#[derive(Default, Debug)]
pub(crate) struct IndexedSet {
    items: Vec<NodeId>,
    positions: FastMap<NodeId, usize>,
}

impl IndexedSet {
    pub fn insert(&mut self, id: NodeId) {
        if self.positions.contains_key(&id) {
            return;
        }
        self.positions.insert(id, self.items.len());
        self.items.push(id);
    }

    pub fn remove(&mut self, id: NodeId) {
        if let Some(pos) = self.positions.remove(&id) {
            self.items.swap_remove(pos);
            if let Some(&moved) = self.items.get(pos) {
                self.positions.insert(moved, pos);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn as_slice(&self) -> &[NodeId] {
        &self.items
    }

    pub fn choose<R: Rng>(&self, rng: &mut R) -> Option<NodeId> {
        if self.items.is_empty() {
            None
        } else {
            Some(self.items[rng.random_range(0..self.items.len())])
        }
    }

    /// Up to `count` distinct members, none in `exclude`, chosen uniformly.
    pub fn choose_many<R: Rng>(
        &self,
        rng: &mut R,
        count: usize,
        exclude: &[NodeId],
    ) -> Vec<NodeId> {
        let mut chosen = Vec::with_capacity(count);
        if count == 0 || self.items.is_empty() {
            return chosen;
        }
        // Rejection sampling is O(count) when the set is large compared with
        // `count`; a bounded number of tries keeps small sets cheap too.
        let tries = count * 4 + 8;
        for _ in 0..tries {
            if chosen.len() == count {
                return chosen;
            }
            let candidate = self.items[rng.random_range(0..self.items.len())];
            if !exclude.contains(&candidate) && !chosen.contains(&candidate) {
                chosen.push(candidate);
            }
        }
        for &candidate in &self.items {
            if chosen.len() == count {
                break;
            }
            if !exclude.contains(&candidate) && !chosen.contains(&candidate) {
                chosen.push(candidate);
            }
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn id(n: u16) -> NodeId {
        NodeId::new(SocketAddr::from(([127, 0, 0, 1], n)))
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // an arbitrary origin; only differences matter
    fn suspicion_shrinks_with_confirmations() {
        let now = Instant::now();
        let mut s = Suspicion::new(now, id(1), Duration::from_secs(2), Duration::from_secs(6));
        assert_eq!(s.deadline, now + Duration::from_secs(6));
        assert!(s.confirm(id(2), 3));
        assert!(!s.confirm(id(2), 3), "the same confirmer counts once");
        assert_eq!(s.deadline, now + Duration::from_secs(4));
        assert!(s.confirm(id(3), 3));
        assert!(s.confirm(id(4), 3));
        assert_eq!(s.deadline, now + Duration::from_secs(2));
        assert!(
            !s.confirm(id(5), 3),
            "beyond K confirmations nothing changes"
        );
    }

    #[test]
    fn indexed_set_choices_are_distinct_and_exclude() {
        let mut set = IndexedSet::default();
        for n in 0..5 {
            set.insert(id(n));
        }
        set.remove(id(2));
        assert_eq!(set.len(), 4);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let chosen = set.choose_many(&mut rng, 3, &[id(0)]);
        assert_eq!(chosen.len(), 3);
        assert!(!chosen.contains(&id(0)) && !chosen.contains(&id(2)));
        let all = set.choose_many(&mut rng, 10, &[]);
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn view_hash_depends_on_version() {
        assert_ne!(
            member_hash(id(1), (Generation(0), Incarnation(0))),
            member_hash(id(1), (Generation(0), Incarnation(1)))
        );
    }
}
