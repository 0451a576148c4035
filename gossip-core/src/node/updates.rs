//! Membership updates waiting to be piggybacked, and how often each is sent.

use core::cmp::Reverse;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use crate::id::{Generation, Incarnation, NodeId};
use crate::membership::{IdMap, Metadata};
use crate::wire::{encoded_len, MemberRecord, Status};

/// How many times an update is sent before it retires: `mult * ceil(log10(n + 1))`
/// for `live_count` members (SWIM's infection-style bound).
pub(crate) fn retransmit_limit(mult: u32, live_count: usize) -> u32 {
    let n = live_count as f64 + 1.0;
    mult * (n.log10().ceil().max(1.0) as u32)
}

/// A member id in eight bytes when it is IPv4 (the usual case), whole
/// and boxed otherwise: a cold start queues news about every member on
/// every node at once, so each byte here is paid members squared times.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PackedId {
    V4(u64),
    Wide(Box<NodeId>),
}

impl PackedId {
    fn new(id: NodeId) -> Self {
        match id.addr() {
            SocketAddr::V4(a) => {
                Self::V4((u64::from(u32::from(*a.ip())) << 16) | u64::from(a.port()))
            }
            SocketAddr::V6(_) => Self::Wide(Box::new(id)),
        }
    }

    fn id(&self) -> NodeId {
        match self {
            Self::V4(packed) => {
                let ip = Ipv4Addr::from((packed >> 16) as u32);
                NodeId::new(SocketAddr::from((ip, *packed as u16)))
            }
            Self::Wide(id) => **id,
        }
    }
}

/// A queued [`MemberRecord`] in about half its size.
#[derive(Clone, Debug)]
enum PackedStatus {
    Alive(Metadata),
    Suspect(PackedId),
    Dead(PackedId),
    Left,
}

struct Queued {
    id: PackedId,
    generation: Generation,
    incarnation: Incarnation,
    status: PackedStatus,
    /// Sequence number of the push: newer news goes first among equals.
    order: u64,
    encoded_len: u32,
    transmits: u32,
    /// The news that a member joined (see [`UpdateQueue::heard_again`]).
    join: bool,
}

impl Queued {
    fn new(record: MemberRecord, order: u64) -> Self {
        let encoded_len = u32::try_from(encoded_len(&record)).unwrap_or(u32::MAX);
        let status = match record.status {
            Status::Alive { metadata } => PackedStatus::Alive(Metadata::new(&metadata)),
            Status::Suspect { by } => PackedStatus::Suspect(PackedId::new(by)),
            Status::Dead { by } => PackedStatus::Dead(PackedId::new(by)),
            Status::Left => PackedStatus::Left,
        };
        Self {
            id: PackedId::new(record.id),
            generation: record.generation,
            incarnation: record.incarnation,
            status,
            order,
            encoded_len,
            transmits: 0,
            join: false,
        }
    }

    fn record(&self) -> MemberRecord {
        let status = match &self.status {
            PackedStatus::Alive(metadata) => Status::Alive {
                metadata: metadata.to_vec(),
            },
            PackedStatus::Suspect(by) => Status::Suspect { by: by.id() },
            PackedStatus::Dead(by) => Status::Dead { by: by.id() },
            PackedStatus::Left => Status::Left,
        };
        MemberRecord {
            id: self.id.id(),
            generation: self.generation,
            incarnation: self.incarnation,
            status,
        }
    }

    /// Where the entry sits in the send order: fewest transmissions first,
    /// then newest.
    fn rank(&self) -> Rank {
        (self.transmits, Reverse(self.order))
    }
}

/// Position in the send order; `order` is unique, so ranks are too.
type Rank = (u32, Reverse<u64>);

/// Membership updates waiting to be piggybacked, at most one per member.
///
/// Updates sent the fewest times go first and, among those, the newest:
/// fresh news spreads fastest, and an update leaves the queue after the
/// retransmit limit.
///
/// Entries sit densely in a vector; the member index and the send order
/// name them by position (four bytes) rather than by id.
#[derive(Default)]
pub(crate) struct UpdateQueue {
    entries: Vec<Queued>,
    by_member: IdMap<u32>,
    order: BTreeMap<Rank, u32>,
    next_order: u64,
}

impl UpdateQueue {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Queues `record`, replacing any older update about the same member.
    /// Returns whether an update had to be dropped to respect `capacity`.
    pub(crate) fn push(&mut self, record: MemberRecord, capacity: usize) -> bool {
        let id = record.id;
        self.remove(&id);
        let order = self.next_order;
        self.next_order += 1;
        let queued = Queued::new(record, order);
        let at = self.entries.len() as u32;
        self.order.insert(queued.rank(), at);
        self.entries.push(queued);
        self.by_member.insert(id, at);
        if self.entries.len() > capacity {
            if let Some((_, &victim)) = self.order.last_key_value() {
                let victim = self.entries[victim as usize].id.id();
                self.remove(&victim);
            }
            return true;
        }
        false
    }

    fn remove(&mut self, id: &NodeId) {
        if let Some(at) = self.by_member.remove(id) {
            self.remove_at(at);
        }
    }

    /// Removes the entry at `at` (already gone from `by_member`), moving
    /// the last entry into its place.
    fn remove_at(&mut self, at: u32) {
        let old = self.entries.swap_remove(at as usize);
        self.order.remove(&old.rank());
        if let Some(moved) = self.entries.get(at as usize) {
            self.order.insert(moved.rank(), at);
            self.by_member.insert(moved.id.id(), at);
        }
        // A cold start fills the queue with news about every member; once
        // it drains, give the memory back rather than hold the peak.
        if self.entries.capacity() > 64 && self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to(self.entries.len() * 2);
            self.by_member.shrink_to_fit();
        }
    }

    /// Marks the update queued about `id` as the news that it joined.
    pub(crate) fn mark_join(&mut self, id: NodeId) {
        if let Some(&at) = self.by_member.get(&id) {
            self.entries[at as usize].join = true;
        }
    }

    /// The join news queued about `id`, an `Alive` record at `version`,
    /// was heard again from another member: count it as one transmission,
    /// as if we had sent it, retiring it at `limit`. In a cold start every
    /// member hears of every join many times over; news that others
    /// already tell us needs fewer copies from us (the counter variant of
    /// rumor mongering). Other news (refutations, suspicions, deaths,
    /// departures, other versions) is left alone: its every copy may be
    /// what saves a member.
    pub(crate) fn heard_again(
        &mut self,
        id: NodeId,
        version: (Generation, Incarnation),
        limit: u32,
    ) {
        let Some(&at) = self.by_member.get(&id) else {
            return;
        };
        let queued = &self.entries[at as usize];
        if !queued.join
            || (queued.generation, queued.incarnation) != version
            || !matches!(queued.status, PackedStatus::Alive(_))
        {
            return;
        }
        self.count_transmission(at, limit);
    }

    /// Counts one transmission of the entry at `at`, retiring it at `limit`.
    fn count_transmission(&mut self, at: u32, limit: u32) {
        let queued = &mut self.entries[at as usize];
        self.order.remove(&queued.rank());
        queued.transmits += 1;
        if queued.transmits >= limit {
            let id = queued.id.id();
            self.by_member.remove(&id);
            self.remove_at(at);
        } else {
            self.order.insert(queued.rank(), at);
        }
    }

    /// Takes updates whose encodings fit in `budget` bytes, counting one
    /// transmission each and retiring those that reach `limit`.
    pub(crate) fn take(&mut self, budget: usize, limit: u32) -> Vec<MemberRecord> {
        let mut used = 0;
        let mut picked: Vec<Rank> = Vec::new();
        // Smaller updates further on may still fit after one that did not,
        // but looking far ahead in a long queue costs more than it saves.
        const LOOKAHEAD_AFTER_MISS: usize = 8;
        let mut misses = 0;
        for (&rank, &at) in &self.order {
            let len = self.entries[at as usize].encoded_len as usize;
            if used + len > budget {
                misses += 1;
                if misses > LOOKAHEAD_AFTER_MISS {
                    break;
                }
                continue;
            }
            used += len;
            picked.push(rank);
        }
        let mut taken = Vec::with_capacity(picked.len());
        for rank in picked {
            // Positions move as entries retire, so look each up by rank.
            let at = self.order[&rank];
            taken.push(self.entries[at as usize].record());
            self.count_transmission(at, limit);
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{Generation, Incarnation};
    use crate::wire::Status;
    use std::net::SocketAddr;

    fn id(n: u16) -> NodeId {
        NodeId::new(SocketAddr::from(([127, 0, 0, 1], n)))
    }

    fn alive(n: u16) -> MemberRecord {
        MemberRecord {
            id: id(n),
            generation: Generation(0),
            incarnation: Incarnation(0),
            status: Status::Alive {
                metadata: Vec::new(),
            },
        }
    }

    #[test]
    fn queue_retires_updates_after_limit_and_prefers_fresh_ones() {
        let mut queue = UpdateQueue::default();
        queue.push(alive(1), 100);
        assert_eq!(queue.take(1000, 2).len(), 1);
        queue.push(alive(2), 100);
        // The fresh update (0 transmits) comes before the one sent once.
        let second = queue.take(1000, 2);
        assert_eq!(second[0].id, id(2));
        assert_eq!(second.len(), 2);
        assert_eq!(queue.len(), 1, "update 1 reached its limit of 2");
        assert_eq!(queue.take(1000, 2)[0].id, id(2));
        assert!(queue.is_empty());
    }

    #[test]
    fn queue_respects_byte_budget_and_capacity() {
        let mut queue = UpdateQueue::default();
        for n in 0..10 {
            queue.push(alive(n), 5);
        }
        assert_eq!(queue.len(), 5);
        let one = encoded_len(&alive(1));
        assert_eq!(queue.take(one * 2 + 1, 10).len(), 2);
    }

    #[test]
    fn join_news_heard_again_counts_as_sent_and_other_news_does_not() {
        let mut queue = UpdateQueue::default();
        let version = (Generation(0), Incarnation(0));
        queue.push(alive(4), 100);
        queue.heard_again(id(4), version, 1);
        assert_eq!(queue.len(), 1, "not marked as a join: untouched");
        queue.take(1000, 1);
        queue.push(alive(1), 100);
        queue.mark_join(id(1));
        let mut dead = alive(2);
        dead.status = Status::Dead { by: id(3) };
        queue.push(dead, 100);
        queue.mark_join(id(2));
        queue.heard_again(id(1), (Generation(0), Incarnation(1)), 2);
        queue.heard_again(id(2), version, 2);
        assert_eq!(queue.len(), 2, "another version, or a death: untouched");
        queue.heard_again(id(1), version, 2);
        assert_eq!(queue.take(1000, 2).len(), 2);
        assert_eq!(queue.len(), 1, "the alive record retired after 1 + 1");
        queue.heard_again(id(9), version, 2);
        assert_eq!(queue.len(), 1, "nothing queued: nothing happens");
    }

    #[test]
    fn retransmit_limit_grows_with_log_of_cluster_size() {
        assert_eq!(retransmit_limit(4, 0), 4);
        assert_eq!(retransmit_limit(4, 9), 4);
        assert_eq!(retransmit_limit(4, 10), 8);
        assert_eq!(retransmit_limit(4, 999), 12);
    }
}
