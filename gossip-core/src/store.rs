//! The rumors a node holds, bounded, with a per-origin digest.

use std::collections::{BTreeMap, VecDeque};

use crate::id::{MessageId, NodeId};
use crate::strategy::{Digest, Rumor};

/// Payloads of the rumors a node holds, oldest evicted first beyond
/// `capacity`. Knowledge outlives eviction up to each origin's contiguous
/// head, so an evicted rumor that comes back is not delivered twice.
pub(crate) struct RumorStore {
    payloads: BTreeMap<MessageId, (Vec<u8>, u16)>,
    order: VecDeque<MessageId>,
    /// Per origin life: every sequence up to this value has been held.
    heads: BTreeMap<(NodeId, u64), u64>,
    capacity: usize,
}

impl RumorStore {
    pub fn new(capacity: usize) -> Self {
        Self {
            payloads: BTreeMap::new(),
            order: VecDeque::new(),
            heads: BTreeMap::new(),
            capacity,
        }
    }

    pub fn has(&self, id: MessageId) -> bool {
        self.heads
            .get(&(id.origin, id.generation))
            .is_some_and(|&through| id.sequence <= through)
            || self.payloads.contains_key(&id)
    }

    /// Stores a rumor first seen with `hops`; returns false if already held.
    pub fn insert(&mut self, id: MessageId, payload: Vec<u8>, hops: u16) -> bool {
        if self.has(id) {
            return false;
        }
        self.payloads.insert(id, (payload, hops));
        self.order.push_back(id);
        let head = self.heads.entry((id.origin, id.generation)).or_insert(0);
        while self.payloads.contains_key(&MessageId {
            sequence: *head + 1,
            ..id
        }) {
            *head += 1;
        }
        while self.payloads.len() > self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.payloads.remove(&oldest);
        }
        if self.heads.len() > self.capacity {
            // Every origin a peer ever named would otherwise stay here
            // forever: forget the heads of origins we hold nothing from. A
            // forgotten old rumor that comes back is delivered again, the
            // price of bounded memory.
            let payloads = &self.payloads;
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
                payloads.range(first..=last).next().is_some()
            });
        }
        true
    }

    pub fn get(&self, id: MessageId) -> Option<(&[u8], u16)> {
        self.payloads.get(&id).map(|(p, h)| (p.as_slice(), *h))
    }

    pub fn digest(&self) -> Digest {
        Digest {
            heads: self
                .heads
                .iter()
                .map(|(&(origin, generation), &through)| (origin, generation, through))
                .collect(),
        }
    }

    pub fn missing_from(&self, digest: &Digest, out: &mut Vec<Rumor>) {
        out.extend(
            self.payloads
                .iter()
                .filter(|(&id, _)| !digest.covers(id))
                .map(|(&id, &(_, hops))| Rumor { id, hops }),
        );
    }

    pub fn len(&self) -> usize {
        self.payloads.len()
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
            store.insert(id, vec![0], 0);
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
        assert!(store.insert(id(2), vec![2], 0));
        assert_eq!(store.digest().heads[0].2, 0, "1 is missing");
        assert!(store.insert(id(1), vec![1], 0));
        assert_eq!(store.digest().heads[0].2, 2);
        assert!(store.insert(id(3), vec![3], 0));
        assert_eq!(store.len(), 2, "capacity 2: rumor 2 was evicted (oldest)");
        assert!(store.has(id(2)), "evicted but still known: below the head");
        assert!(!store.insert(id(2), vec![2], 0), "not delivered twice");
        let mut missing = Vec::new();
        store.missing_from(&Digest::default(), &mut missing);
        assert_eq!(missing.len(), 2);
        let digest = store.digest();
        assert!(digest.covers(id(3)) && !digest.covers(id(4)));
    }
}
