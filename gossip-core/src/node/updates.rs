//! Membership updates waiting to be piggybacked, and how often each is sent.

use core::cmp::Reverse;
use std::collections::BTreeSet;

use crate::id::NodeId;
use crate::membership::FastMap;
use crate::wire::{encoded_len, MemberRecord};

/// How many times an update is sent before it retires: `mult * ceil(log10(n + 1))`
/// for `live_count` members (SWIM's infection-style bound).
pub(crate) fn retransmit_limit(mult: u32, live_count: usize) -> u32 {
    let n = live_count as f64 + 1.0;
    mult * (n.log10().ceil().max(1.0) as u32)
}

struct Queued {
    record: MemberRecord,
    encoded_len: usize,
    transmits: u32,
    order: u64,
    /// The news that a member joined (see [`UpdateQueue::heard_again`]).
    join: bool,
}

/// Membership updates waiting to be piggybacked, at most one per member.
///
/// Updates sent the fewest times go first and, among those, the newest:
/// fresh news spreads fastest, and an update leaves the queue after the
/// retransmit limit.
#[derive(Default)]
pub(crate) struct UpdateQueue {
    by_member: FastMap<NodeId, Queued>,
    order: BTreeSet<(u32, Reverse<u64>, NodeId)>,
    next_order: u64,
}

impl UpdateQueue {
    pub(crate) fn len(&self) -> usize {
        self.by_member.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_member.is_empty()
    }

    /// Queues `record`, replacing any older update about the same member.
    /// Returns whether an update had to be dropped to respect `capacity`.
    pub(crate) fn push(&mut self, record: MemberRecord, capacity: usize) -> bool {
        let id = record.id;
        self.remove(id);
        let order = self.next_order;
        self.next_order += 1;
        self.order.insert((0, Reverse(order), id));
        self.by_member.insert(
            id,
            Queued {
                encoded_len: encoded_len(&record),
                record,
                transmits: 0,
                order,
                join: false,
            },
        );
        if self.by_member.len() > capacity {
            if let Some(&(_, _, victim)) = self.order.last() {
                self.remove(victim);
            }
            return true;
        }
        false
    }

    fn remove(&mut self, id: NodeId) {
        if let Some(old) = self.by_member.remove(&id) {
            self.order.remove(&(old.transmits, Reverse(old.order), id));
        }
    }

    /// Marks the update queued about `id` as the news that it joined.
    pub(crate) fn mark_join(&mut self, id: NodeId) {
        if let Some(queued) = self.by_member.get_mut(&id) {
            queued.join = true;
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
        version: (crate::id::Generation, crate::id::Incarnation),
        limit: u32,
    ) {
        let Some(queued) = self.by_member.get_mut(&id) else {
            return;
        };
        let record = &queued.record;
        if !queued.join
            || (record.generation, record.incarnation) != version
            || !matches!(record.status, crate::wire::Status::Alive { .. })
        {
            return;
        }
        self.order
            .remove(&(queued.transmits, Reverse(queued.order), id));
        queued.transmits += 1;
        if queued.transmits >= limit {
            self.by_member.remove(&id);
        } else {
            self.order
                .insert((queued.transmits, Reverse(queued.order), id));
        }
    }

    /// Takes updates whose encodings fit in `budget` bytes, counting one
    /// transmission each and retiring those that reach `limit`.
    pub(crate) fn take(&mut self, budget: usize, limit: u32) -> Vec<MemberRecord> {
        let mut taken = Vec::new();
        let mut used = 0;
        let mut picked: Vec<(u32, Reverse<u64>, NodeId)> = Vec::new();
        // Smaller updates further on may still fit after one that did not,
        // but looking far ahead in a long queue costs more than it saves.
        const LOOKAHEAD_AFTER_MISS: usize = 8;
        let mut misses = 0;
        for key in &self.order {
            let queued = &self.by_member[&key.2];
            if used + queued.encoded_len > budget {
                misses += 1;
                if misses > LOOKAHEAD_AFTER_MISS {
                    break;
                }
                continue;
            }
            used += queued.encoded_len;
            picked.push(*key);
        }
        for key in picked {
            self.order.remove(&key);
            let id = key.2;
            let queued = self.by_member.get_mut(&id).expect("queued entry exists");
            taken.push(queued.record.clone());
            queued.transmits += 1;
            if queued.transmits >= limit {
                self.by_member.remove(&id);
            } else {
                self.order
                    .insert((queued.transmits, Reverse(queued.order), id));
            }
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
