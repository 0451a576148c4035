//! Building blocks of the membership view: member entries, suspicions, the
//! view hash and the sets of members with O(1) random choice.

use core::hash::{BuildHasher, BuildHasherDefault, Hasher};
use core::time::Duration;
use std::net::SocketAddr;
use std::time::Instant;

use hashbrown::HashTable;
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

/// A member's metadata without a heap allocation or a `Vec`'s three words
/// when it is empty (the common case): one pointer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Metadata(Option<Box<Box<[u8]>>>);

impl Metadata {
    pub fn new(bytes: &[u8]) -> Self {
        Self((!bytes.is_empty()).then(|| Box::new(Box::from(bytes))))
    }

    pub fn as_slice(&self) -> &[u8] {
        self.0.as_deref().map_or(&[], |b| b)
    }

    pub fn to_vec(&self) -> Vec<u8> {
        self.as_slice().to_vec()
    }
}

/// What an entry keeps beyond its version and liveness; a suspect has a
/// suspicion, a dead or departed member the time it went down, the others
/// neither.
#[derive(Clone, Debug)]
enum Aux {
    Suspicion(Suspicion),
    DownSince(Instant),
}

/// The rare parts of an entry, boxed together behind one pointer: a live
/// member without metadata (most of them) allocates nothing and pays eight
/// bytes, not sixteen.
#[derive(Clone, Debug, Default)]
struct Extra {
    aux: Option<Aux>,
    metadata: Box<[u8]>,
}

/// Which index set of the view holds an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SetKind {
    None,
    Live,
    Dead,
}

/// Whether a slot of the table holds a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    /// A member of the table.
    Occupied,
    /// A forgotten member whose slot still answers to its id, until
    /// [`MemberTable::recycle`]: holders of slot numbers (the probe order)
    /// never see a slot change hands under them.
    Vacant,
    /// Unused, on the free list.
    Free,
}

/// Marks an IPv6 identity in [`Entry::addr`]; its address sits in the
/// table's side map.
const V6_TAG: u64 = 1 << 48;

/// An IPv4 identity packed into 48 bits, or [`V6_TAG`].
fn pack(id: &NodeId) -> u64 {
    match id.addr() {
        SocketAddr::V4(a) => (u64::from(u32::from(*a.ip())) << 16) | u64::from(a.port()),
        SocketAddr::V6(_) => V6_TAG,
    }
}

/// What one node knows about one other member: one slot of the
/// [`MemberTable`], 40 bytes with the identity packed in and nothing on the
/// heap for a live member without metadata.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The member's address packed by [`pack`].
    addr: u64,
    pub generation: Generation,
    /// Suspicion or time down, and metadata: `None` when neither.
    extra: Option<Box<Extra>>,
    pub incarnation: Incarnation,
    /// Position in the index set named by `set`.
    pos: u32,
    pub liveness: Liveness,
    set: SetKind,
    state: SlotState,
    /// Whether the forget queue holds an entry for this member.
    pub forget_queued: bool,
}

impl Entry {
    pub fn version(&self) -> Version {
        (self.generation, self.incarnation)
    }

    fn aux(&self) -> Option<&Aux> {
        self.extra.as_deref().and_then(|e| e.aux.as_ref())
    }

    pub fn suspicion(&self) -> Option<&Suspicion> {
        match self.aux() {
            Some(Aux::Suspicion(s)) => Some(s),
            _ => None,
        }
    }

    pub fn suspicion_mut(&mut self) -> Option<&mut Suspicion> {
        match self.extra.as_deref_mut().and_then(|e| e.aux.as_mut()) {
            Some(Aux::Suspicion(s)) => Some(s),
            _ => None,
        }
    }

    /// When the entry last became dead or left (drives forgetting).
    pub fn down_since(&self) -> Option<Instant> {
        match self.aux() {
            Some(Aux::DownSince(at)) => Some(*at),
            _ => None,
        }
    }

    /// The member's metadata (empty if it has none).
    pub fn metadata(&self) -> &[u8] {
        self.extra.as_deref().map_or(&[], |e| &e.metadata)
    }

    /// Replaces the member's metadata.
    pub fn set_metadata(&mut self, metadata: &[u8]) {
        self.extra_mut().metadata = Box::from(metadata);
        self.drop_empty_extra();
    }

    /// Neither suspected nor down.
    pub fn clear_aux(&mut self) {
        if let Some(extra) = self.extra.as_deref_mut() {
            extra.aux = None;
        }
        self.drop_empty_extra();
    }

    pub fn set_suspicion(&mut self, suspicion: Suspicion) {
        self.extra_mut().aux = Some(Aux::Suspicion(suspicion));
    }

    pub fn set_down_since(&mut self, at: Instant) {
        self.extra_mut().aux = Some(Aux::DownSince(at));
    }

    fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// Frees the box once it holds nothing.
    fn drop_empty_extra(&mut self) {
        if self
            .extra
            .as_deref()
            .is_some_and(|e| e.aux.is_none() && e.metadata.is_empty())
        {
            self.extra = None;
        }
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

/// A map keyed by member id that stores an IPv4 member's key in eight
/// bytes rather than a `NodeId`'s 32 (IPv6 members' ids whole, beside).
/// Lookups only, like [`FastMap`]: never iterated.
#[derive(Debug)]
pub(crate) struct IdMap<V> {
    v4: FastMap<u64, V>,
    wide: FastMap<NodeId, V>,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        Self {
            v4: FastMap::default(),
            wide: FastMap::default(),
        }
    }
}

impl<V> IdMap<V> {
    pub fn get(&self, id: &NodeId) -> Option<&V> {
        match pack(id) {
            V6_TAG => self.wide.get(id),
            key => self.v4.get(&key),
        }
    }

    pub fn get_mut(&mut self, id: &NodeId) -> Option<&mut V> {
        match pack(id) {
            V6_TAG => self.wide.get_mut(id),
            key => self.v4.get_mut(&key),
        }
    }

    pub fn insert(&mut self, id: NodeId, value: V) -> Option<V> {
        match pack(&id) {
            V6_TAG => self.wide.insert(id, value),
            key => self.v4.insert(key, value),
        }
    }

    pub fn remove(&mut self, id: &NodeId) -> Option<V> {
        match pack(id) {
            V6_TAG => self.wide.remove(id),
            key => self.v4.remove(&key),
        }
    }

    pub fn contains_key(&self, id: &NodeId) -> bool {
        self.get(id).is_some()
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.wide.len()
    }

    pub fn clear(&mut self) {
        self.v4.clear();
        self.wide.clear();
    }

    /// Entries the map holds room for.
    pub fn capacity(&self) -> usize {
        self.v4.capacity() + self.wide.capacity()
    }

    /// Gives back the room of entries removed since the map was largest.
    pub fn shrink_to_fit(&mut self) {
        self.v4.shrink_to_fit();
        self.wide.shrink_to_fit();
    }
}

/// Hash of a member id for the table's index.
fn id_hash(id: &NodeId) -> u64 {
    BuildHasherDefault::<MixHasher>::default().hash_one(id)
}

/// Number of a slot in the [`MemberTable`]: how the view's index sets and
/// the probe order name members, in four bytes rather than a `NodeId`'s 32.
pub(crate) type Slot = u32;

/// Every member this node knows except itself.
///
/// Entries sit in a vector of slots; an open-addressing index of slot
/// numbers finds a member by id (about five bytes a member). The address
/// lives packed in its slot (IPv6 ones beside, in a small map). Iteration
/// that reaches the output goes through [`MemberTable::sorted`], so it never
/// depends on slot numbers or the index's layout.
#[derive(Default)]
pub(crate) struct MemberTable {
    slots: Vec<Entry>,
    /// Addresses of the slots holding IPv6 members.
    v6: FastMap<Slot, SocketAddr>,
    /// Occupied and vacant slots by their member's id.
    index: HashTable<Slot>,
    /// Slots that became vacant since the last [`recycle`](Self::recycle).
    vacant: Vec<Slot>,
    free: Vec<Slot>,
    len: usize,
}

impl MemberTable {
    /// Members in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The id of the member in `slot` (occupied or vacant).
    pub fn id(&self, slot: Slot) -> NodeId {
        id_of(&self.slots, &self.v6, slot)
    }

    /// Whether `slot` holds `id`.
    fn holds(&self, slot: Slot, id: &NodeId) -> bool {
        let packed = pack(id);
        self.slots[slot as usize].addr == packed
            && (packed != V6_TAG || self.v6.get(&slot) == Some(&id.addr()))
    }

    /// The slot answering to `id`, occupied or vacant.
    fn find(&self, id: &NodeId) -> Option<Slot> {
        self.index
            .find(id_hash(id), |&s| self.holds(s, id))
            .copied()
    }

    /// The slot of the member `id`, if it is in the table.
    pub fn slot_of(&self, id: &NodeId) -> Option<Slot> {
        self.find(id)
            .filter(|&s| self.slots[s as usize].state == SlotState::Occupied)
    }

    /// The entry in `slot`, if it holds a member.
    pub fn at(&self, slot: Slot) -> Option<&Entry> {
        self.slots
            .get(slot as usize)
            .filter(|e| e.state == SlotState::Occupied)
    }

    pub fn get(&self, id: &NodeId) -> Option<&Entry> {
        self.slot_of(id).map(|s| &self.slots[s as usize])
    }

    pub fn get_mut(&mut self, id: &NodeId) -> Option<&mut Entry> {
        self.slot_of(id).map(|s| &mut self.slots[s as usize])
    }

    pub fn contains_key(&self, id: &NodeId) -> bool {
        self.slot_of(id).is_some()
    }

    /// Inserts a member not yet in the table, alive; returns its slot. A
    /// member forgotten since the last recycling gets its old slot back.
    pub fn insert(&mut self, id: NodeId, version: Version, metadata: &[u8]) -> Slot {
        let entry = Entry {
            addr: pack(&id),
            generation: version.0,
            extra: (!metadata.is_empty()).then(|| {
                Box::new(Extra {
                    aux: None,
                    metadata: Box::from(metadata),
                })
            }),
            incarnation: version.1,
            pos: 0,
            liveness: Liveness::Alive,
            set: SetKind::None,
            state: SlotState::Occupied,
            forget_queued: false,
        };
        self.len += 1;
        if let Some(slot) = self.find(&id) {
            debug_assert_eq!(self.slots[slot as usize].state, SlotState::Vacant);
            self.slots[slot as usize] = entry;
            return slot;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = entry;
                slot
            }
            None => {
                let slot = Slot::try_from(self.slots.len()).expect("fewer than 2^32 members");
                self.slots.push(entry);
                slot
            }
        };
        if pack(&id) == V6_TAG {
            self.v6.insert(slot, id.addr());
        }
        let (slots, v6) = (&self.slots, &self.v6);
        self.index
            .insert_unique(id_hash(&id), slot, |&s| id_hash(&id_of(slots, v6, s)));
        slot
    }

    /// Removes a member. Its slot keeps answering to its id until the next
    /// [`recycle`](Self::recycle).
    pub fn remove(&mut self, id: &NodeId) {
        if let Some(slot) = self.slot_of(id) {
            let entry = &mut self.slots[slot as usize];
            debug_assert_eq!(entry.set, SetKind::None);
            entry.state = SlotState::Vacant;
            entry.extra = None;
            self.len -= 1;
            self.vacant.push(slot);
        }
    }

    /// Frees the slots vacated since the last call, for other members to
    /// take. Only when nobody outside the view holds a slot number that
    /// may name them.
    pub fn recycle(&mut self) {
        for slot in core::mem::take(&mut self.vacant) {
            if self.slots[slot as usize].state != SlotState::Vacant {
                continue;
            }
            let id = self.id(slot);
            if let Ok(found) = self.index.find_entry(id_hash(&id), |&s| s == slot) {
                found.remove();
            }
            self.v6.remove(&slot);
            self.slots[slot as usize].state = SlotState::Free;
            self.free.push(slot);
        }
    }

    /// All members with their slots, in address order.
    pub fn sorted(&self) -> Vec<(NodeId, Slot)> {
        let mut all: Vec<_> = (0..self.slots.len() as Slot)
            .filter(|&s| self.slots[s as usize].state == SlotState::Occupied)
            .map(|s| (self.id(s), s))
            .collect();
        all.sort_unstable_by_key(|&(id, _)| id);
        all
    }

    /// The entry in an occupied `slot`.
    pub fn entry(&self, slot: Slot) -> &Entry {
        &self.slots[slot as usize]
    }

    pub fn entry_mut(&mut self, slot: Slot) -> &mut Entry {
        &mut self.slots[slot as usize]
    }
}

fn id_of(slots: &[Entry], v6: &FastMap<Slot, SocketAddr>, slot: Slot) -> NodeId {
    let packed = slots[slot as usize].addr;
    if packed == V6_TAG {
        return NodeId::new(v6[&slot]);
    }
    let ip = std::net::Ipv4Addr::from((packed >> 16) as u32);
    NodeId::new(SocketAddr::from((ip, packed as u16)))
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

/// A set of members with O(1) insert, remove and uniform random choice,
/// as slot numbers; each member's position is kept in its entry.
///
/// The vector's order depends only on the sequence of operations, so random
/// choices are reproducible.
#[derive(Debug)]
pub(crate) struct SlotSet {
    kind: SetKind,
    items: Vec<Slot>,
}

impl SlotSet {
    pub fn new(kind: SetKind) -> Self {
        Self {
            kind,
            items: Vec::new(),
        }
    }

    /// Adds the member in `slot`, unless the set holds it already.
    pub fn insert(&mut self, table: &mut MemberTable, slot: Slot) {
        let entry = table.entry_mut(slot);
        if entry.set == self.kind {
            return;
        }
        debug_assert_eq!(entry.set, SetKind::None);
        entry.set = self.kind;
        entry.pos = self.items.len() as u32;
        self.items.push(slot);
    }

    /// Removes the member in `slot`, if the set holds it.
    pub fn remove(&mut self, table: &mut MemberTable, slot: Slot) {
        let entry = table.entry_mut(slot);
        if entry.set != self.kind {
            return;
        }
        entry.set = SetKind::None;
        let pos = entry.pos as usize;
        self.items.swap_remove(pos);
        if let Some(&moved) = self.items.get(pos) {
            table.entry_mut(moved).pos = pos as u32;
        }
    }

    /// The set read through the table it indexes.
    pub fn peers<'a>(&'a self, table: &'a MemberTable) -> Peers<'a> {
        Peers {
            items: &self.items,
            table,
        }
    }
}

/// A [`SlotSet`] borrowed with its table: members by id.
#[derive(Clone, Copy)]
pub(crate) struct Peers<'a> {
    items: &'a [Slot],
    table: &'a MemberTable,
}

impl<'a> Peers<'a> {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The members' slots, in the set's order.
    pub fn slots(&self) -> &'a [Slot] {
        self.items
    }

    /// The members, in the set's order.
    pub fn iter(&self) -> impl Iterator<Item = NodeId> + 'a {
        let table = self.table;
        self.items.iter().map(move |&s| table.id(s))
    }

    pub fn choose<R: Rng>(&self, rng: &mut R) -> Option<NodeId> {
        if self.items.is_empty() {
            None
        } else {
            Some(
                self.table
                    .id(self.items[rng.random_range(0..self.items.len())]),
            )
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
            let candidate = self
                .table
                .id(self.items[rng.random_range(0..self.items.len())]);
            if !exclude.contains(&candidate) && !chosen.contains(&candidate) {
                chosen.push(candidate);
            }
        }
        for candidate in self.iter() {
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

    fn v0() -> Version {
        (Generation(0), Incarnation(0))
    }

    #[test]
    fn slot_set_choices_are_distinct_and_exclude() {
        let mut table = MemberTable::default();
        let mut set = SlotSet::new(SetKind::Live);
        for n in 0..5 {
            let slot = table.insert(id(n), v0(), &[]);
            set.insert(&mut table, slot);
        }
        let two = table.slot_of(&id(2)).unwrap();
        set.remove(&mut table, two);
        set.remove(&mut table, two);
        let peers = set.peers(&table);
        assert_eq!(peers.len(), 4);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let chosen = peers.choose_many(&mut rng, 3, &[id(0)]);
        assert_eq!(chosen.len(), 3);
        assert!(!chosen.contains(&id(0)) && !chosen.contains(&id(2)));
        let all = peers.choose_many(&mut rng, 10, &[]);
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn table_packs_ids_and_reuses_slots_only_after_recycling() {
        let v6: NodeId = NodeId::new("[2001:db8::1]:7946".parse().unwrap());
        let mut table = MemberTable::default();
        let a = table.insert(id(1), v0(), b"meta");
        let b = table.insert(v6, v0(), &[]);
        assert_eq!((table.id(a), table.id(b)), (id(1), v6));
        assert_eq!(table.get(&id(1)).unwrap().metadata(), b"meta");
        assert_eq!(table.sorted(), vec![(id(1), a), (v6, b)]);
        table.remove(&v6);
        assert!(!table.contains_key(&v6));
        assert_eq!(table.len(), 1);
        assert_eq!(table.insert(v6, v0(), &[]), b, "a vacant slot keeps its id");
        table.remove(&v6);
        table.recycle();
        let c = table.insert(id(3), v0(), &[]);
        assert_eq!(c, b, "a recycled slot is reused");
        assert_eq!(table.id(c), id(3));
        assert!(table.get(&v6).is_none());
        assert!(core::mem::size_of::<Entry>() <= 40);
    }

    #[test]
    fn id_map_keeps_both_families_apart() {
        let v6: NodeId = NodeId::new("[::ffff:127.0.0.1]:1".parse().unwrap());
        let mut map = IdMap::default();
        assert_eq!(map.insert(id(1), 'a'), None);
        assert_eq!(map.insert(v6, 'b'), None);
        assert_eq!(map.insert(id(1), 'c'), Some('a'));
        assert_eq!(
            (map.get(&id(1)), map.get(&v6), map.len()),
            (Some(&'c'), Some(&'b'), 2)
        );
        assert_eq!(map.remove(&v6), Some('b'));
        assert!(!map.contains_key(&v6) && map.get(&id(2)).is_none());
        map.clear();
        assert_eq!(map.len(), 0);
    }

    #[test]
    fn view_hash_depends_on_version() {
        assert_ne!(
            member_hash(id(1), (Generation(0), Incarnation(0))),
            member_hash(id(1), (Generation(0), Incarnation(1)))
        );
    }
}
