//! The rumors a node holds, bounded, with a per-origin digest.

use std::collections::{BTreeMap, VecDeque};

use crate::id::{MessageId, NodeId};
use crate::strategy::{Digest, Rumor};

/// One held rumor: what it carries and how it came.
struct Held {
    payload: Vec<u8>,
    hops: u16,
    /// The origin's signature over the rumor, kept to relay it.
    signature: Option<Vec<u8>>,
}

/// Per origin life: what has been held.
#[derive(Clone, Copy)]
struct Head {
    /// Every sequence up to this one has been held.
    through: u64,
    /// The highest sequence held.
    highest: u64,
}

/// A stored rumor, as [`RumorStore::get`] lends it.
pub(crate) struct Stored<'a> {
    pub payload: &'a [u8],
    pub signature: Option<&'a [u8]>,
}

/// Payloads of the rumors a node holds, oldest evicted first beyond
/// `capacity`. Knowledge outlives eviction up to each origin's contiguous
/// head, so an evicted rumor that comes back is not delivered twice.
///
/// An id may also be known without a payload: an id this node refused to
/// take as a rumor but must not take again nor ask for (a forgery naming
/// this node as origin). Such entries count against `capacity` like the
/// others, are covered by digests and are never sent.
pub(crate) struct RumorStore {
    entries: BTreeMap<MessageId, Option<Held>>,
    order: VecDeque<MessageId>,
    heads: BTreeMap<(NodeId, u64), Head>,
    /// Entries that hold a payload.
    with_payload: usize,
    capacity: usize,
}

impl RumorStore {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            order: VecDeque::new(),
            heads: BTreeMap::new(),
            with_payload: 0,
            capacity,
        }
    }

    pub fn has(&self, id: MessageId) -> bool {
        self.heads
            .get(&(id.origin, id.generation))
            .is_some_and(|head| id.sequence <= head.through)
            || self.entries.contains_key(&id)
    }

    /// The highest sequence held from `origin` in its life `generation`,
    /// if this node holds (or remembers) any.
    pub fn highest(&self, origin: NodeId, generation: u64) -> Option<u64> {
        self.heads.get(&(origin, generation)).map(|h| h.highest)
    }

    /// Stores a rumor first seen with `hops`; returns false if already held.
    pub fn insert(
        &mut self,
        id: MessageId,
        payload: Vec<u8>,
        hops: u16,
        signature: Option<Vec<u8>>,
    ) -> bool {
        self.put(
            id,
            Some(Held {
                payload,
                hops,
                signature,
            }),
        )
    }

    /// Records `id` as known without a payload; returns false if already held.
    pub fn insert_known(&mut self, id: MessageId) -> bool {
        self.put(id, None)
    }

    /// Drops the payload of `id` but keeps knowing the id; returns the
    /// payload it held.
    pub fn take_payload(&mut self, id: MessageId) -> Option<Vec<u8>> {
        let held = self.entries.get_mut(&id)?.take()?;
        self.with_payload -= 1;
        Some(held.payload)
    }

    fn put(&mut self, id: MessageId, held: Option<Held>) -> bool {
        if self.has(id) {
            return false;
        }
        self.with_payload += usize::from(held.is_some());
        self.entries.insert(id, held);
        self.order.push_back(id);
        let head = self
            .heads
            .entry((id.origin, id.generation))
            .or_insert(Head {
                through: 0,
                highest: 0,
            });
        head.highest = head.highest.max(id.sequence);
        while self.entries.contains_key(&MessageId {
            sequence: head.through.saturating_add(1),
            ..id
        }) && head.through < u64::MAX
        {
            head.through += 1;
        }
        while self.entries.len() > self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(Some(_)) = self.entries.remove(&oldest) {
                self.with_payload -= 1;
            }
        }
        if self.heads.len() > self.capacity {
            // Every origin a peer ever named would otherwise stay here
            // forever: forget the heads of origins we hold nothing from. A
            // forgotten old rumor that comes back is delivered again, the
            // price of bounded memory.
            let entries = &self.entries;
            self.heads.retain(|&(origin, generation), _| {
                let first = MessageId {
                    origin,
                    generation,
                    sequence: 0,
                };
                let last = MessageId {
                    sequence: u64::MAX,
                    ..first
                };
                entries.range(first..=last).next().is_some()
            });
        }
        true
    }

    pub fn get(&self, id: MessageId) -> Option<Stored<'_>> {
        self.entries.get(&id)?.as_ref().map(|held| Stored {
            payload: &held.payload,
            signature: held.signature.as_deref(),
        })
    }

    pub fn digest(&self) -> Digest {
        Digest {
            heads: self
                .heads
                .iter()
                .map(|(&(origin, generation), head)| (origin, generation, head.through))
                .collect(),
        }
    }

    pub fn missing_from(&self, digest: &Digest, out: &mut Vec<Rumor>) {
        out.extend(self.entries.iter().filter_map(|(&id, held)| {
            let held = held.as_ref()?;
            (!digest.covers(id)).then_some(Rumor {
                id,
                hops: held.hops,
            })
        }));
    }

    /// Payloads held.
    pub fn len(&self) -> usize {
        self.with_payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn id(sequence: u64) -> MessageId {
        MessageId {
            origin: NodeId::new("127.0.0.1:1".parse().unwrap()),
            generation: 1,
            sequence,
        }
    }

    #[test]
    fn heads_stay_bounded_whatever_origins_peers_name() {
        let mut store = RumorStore::new(8);
        for port in 1..1000u16 {
            let id = MessageId {
                origin: NodeId::new(SocketAddr::from(([127, 0, 0, 1], port))),
                generation: u64::from(port),
                sequence: 1,
            };
            store.insert(id, vec![0], 0, None);
        }
        assert_eq!(store.len(), 8);
        assert!(
            store.heads.len() <= 2 * 8 + 1,
            "{} heads",
            store.heads.len()
        );
    }

    #[test]
    fn digest_tracks_contiguous_heads_and_eviction_keeps_knowledge() {
        let mut store = RumorStore::new(2);
        assert!(store.insert(id(2), vec![2], 0, None));
        assert_eq!(store.digest().heads[0].2, 0, "1 is missing");
        assert!(store.insert(id(1), vec![1], 0, None));
        assert_eq!(store.digest().heads[0].2, 2);
        assert!(store.insert(id(3), vec![3], 0, None));
        assert_eq!(store.len(), 2, "capacity 2: rumor 2 was evicted (oldest)");
        assert!(store.has(id(2)), "evicted but still known: below the head");
        assert!(
            !store.insert(id(2), vec![2], 0, None),
            "not delivered twice"
        );
        let mut missing = Vec::new();
        store.missing_from(&Digest::default(), &mut missing);
        assert_eq!(missing.len(), 2);
        let digest = store.digest();
        assert!(digest.covers(id(3)) && !digest.covers(id(4)));
    }

    #[test]
    fn ids_known_without_payload_fill_the_head_but_are_never_sent() {
        let mut store = RumorStore::new(8);
        assert!(store.insert(id(1), vec![1], 0, None));
        assert!(store.insert_known(id(2)));
        assert!(store.insert(id(3), vec![3], 0, Some(vec![9; 4])));
        assert_eq!(store.digest().heads[0].2, 3, "the known id closes the gap");
        assert_eq!(store.highest(id(1).origin, 1), Some(3));
        assert_eq!(store.len(), 2, "two payloads");
        assert!(store.get(id(2)).is_none());
        assert_eq!(store.get(id(3)).unwrap().signature, Some(&[9u8; 4][..]));
        assert_eq!(store.take_payload(id(1)), Some(vec![1]));
        assert!(store.has(id(1)) && store.get(id(1)).is_none());
        assert_eq!(store.take_payload(id(1)), None, "taken once");
        assert_eq!(store.len(), 1);
        let mut missing = Vec::new();
        store.missing_from(&Digest::default(), &mut missing);
        assert_eq!(missing.iter().map(|r| r.id).collect::<Vec<_>>(), [id(3)]);
    }
}
