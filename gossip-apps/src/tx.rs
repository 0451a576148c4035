//! Transactions: small, high-rate broadcasts, deduplicated by their
//! SHA-256.
//!
//! A transaction is opaque bytes, at most [`TxConfig::max_tx_bytes`]. A
//! node that submits one broadcasts it once, as its [`Channel::Tx`] byte
//! followed by the bytes themselves: nothing else travels with it, so the
//! only overhead on the wire is the rumor's own (its id, hops and length,
//! about 20 bytes) and the frame header. The node's dissemination strategy
//! does the rest; choose a tree ([`gossip_strategies::Plumtree`]), whose
//! lazy announcements are batched once per round and grouped by origin on
//! the wire (see `gossip_core::wire::IdGroupsLen`), so that an announced
//! transaction costs a few bytes per link instead of its payload.
//!
//! **Deduplication.** Rumors are deduplicated by id by the node already;
//! the same transaction submitted at two nodes travels as two rumors with
//! two ids. This application keys what it has seen by the transaction's
//! SHA-256, so either copy is delivered once per node and the other is
//! counted as a duplicate; a transaction submitted again where it was seen
//! is not broadcast again.
//!
//! **Bounds.** The mempool keeps at most [`TxConfig::max_mempool`]
//! transactions and [`TxConfig::max_mempool_bytes`] bytes, the oldest
//! leaving first; the set of hashes seen keeps
//! [`TxConfig::max_seen`]; undelivered events [`TxConfig::max_events`].
//! A payload on the transaction channel that is empty or longer than
//! `max_tx_bytes` is refused and counted.
//!
//! [`gossip_strategies::Plumtree`]: https://docs.rs/gossip-strategies

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use gossip_core::{CommandError, Event, MessageId, NodeId};
use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};

use crate::{Application, Channel, Cluster};

/// A transaction's identity: the SHA-256 of its bytes.
pub type TxHash = [u8; 32];

/// Transaction settings. Every limit bounds what a flood of transactions,
/// honest or not, can make a node hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TxConfig {
    /// Largest transaction submitted or accepted, bytes. Default 1,024
    /// (Bitcoin's typical transaction is 250 to 600 bytes); it must also
    /// fit one broadcast, one byte of channel tag included.
    pub max_tx_bytes: usize,
    /// Transactions kept in the mempool; the oldest leave first. Default
    /// 100,000 (100 s at 1,000 transactions per second).
    pub max_mempool: usize,
    /// Bytes of transactions kept in the mempool; the oldest leave first.
    /// Default 64 MiB.
    pub max_mempool_bytes: usize,
    /// Hashes remembered to recognise duplicates; the oldest are forgotten
    /// first (a transaction submitted again after that is relayed again).
    /// Default 400,000: four times the mempool.
    pub max_seen: usize,
    /// Deliveries kept until taken with [`Tx::poll_event`]; the oldest go
    /// first and are counted in [`TxStats::events_dropped`]. Default
    /// 100,000.
    pub max_events: usize,
}

impl Default for TxConfig {
    fn default() -> Self {
        Self {
            max_tx_bytes: 1024,
            max_mempool: 100_000,
            max_mempool_bytes: 64 << 20,
            max_seen: 400_000,
            max_events: 100_000,
        }
    }
}

/// Why [`Tx::submit`] refused a transaction.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// The transaction is empty.
    #[error("empty transaction")]
    Empty,
    /// The transaction is larger than [`TxConfig::max_tx_bytes`] or than
    /// a broadcast can carry.
    #[error("transaction of {len} bytes is above the limit of {max}")]
    TooLarge {
        /// The transaction's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The node refused the broadcast.
    #[error("the node refused the broadcast: {0}")]
    Refused(#[from] CommandError),
}

/// What [`Tx::submit`] did with a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Submitted {
    /// Broadcast as this rumor.
    Broadcast {
        /// The transaction's hash.
        hash: TxHash,
        /// The broadcast carrying it.
        id: MessageId,
    },
    /// Already seen here (submitted or delivered before): not broadcast
    /// again.
    AlreadyKnown {
        /// The transaction's hash.
        hash: TxHash,
    },
}

impl Submitted {
    /// The transaction's hash.
    pub fn hash(&self) -> TxHash {
        match self {
            Submitted::Broadcast { hash, .. } | Submitted::AlreadyKnown { hash } => *hash,
        }
    }
}

/// What happened to a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxEvent {
    /// A transaction first seen here arrived from another node.
    Delivered {
        /// Its hash.
        hash: TxHash,
        /// The node that broadcast the copy that arrived first.
        origin: NodeId,
        /// When it arrived.
        at: Instant,
        /// The transaction.
        tx: Vec<u8>,
    },
}

/// Counters of what the application did and refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TxStats {
    /// Transactions this node broadcast.
    pub submitted: u64,
    /// Submissions of transactions already seen here (not broadcast).
    pub already_known: u64,
    /// Transactions delivered from other nodes, each once.
    pub delivered: u64,
    /// Copies that arrived for a transaction already seen (the same bytes
    /// broadcast by another node, or submitted here).
    pub duplicates: u64,
    /// Payloads on the transaction channel refused as empty or too long.
    pub refused: u64,
    /// Transactions that left the mempool to respect its bounds.
    pub evicted: u64,
    /// Events dropped because nobody took them in time.
    pub events_dropped: u64,
}

/// The hashes seen, bounded, oldest forgotten first. Hashed sets: every
/// delivery and every copy looks one up, nothing iterates them (the order
/// of forgetting is `order`'s), and their keyed hasher leaves a flood of
/// chosen transactions no way to pile them into one bucket.
#[derive(Clone, Debug, Default)]
struct Seen {
    set: HashSet<TxHash>,
    order: VecDeque<TxHash>,
}

impl Seen {
    /// Records `hash`; false if it was seen already.
    fn insert(&mut self, hash: TxHash, max: usize) -> bool {
        if !self.set.insert(hash) {
            return false;
        }
        self.order.push_back(hash);
        while self.order.len() > max.max(1) {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    fn contains(&self, hash: &TxHash) -> bool {
        self.set.contains(hash)
    }
}

/// Transactions kept for whoever builds blocks from them, bounded by
/// count and bytes, oldest out first.
#[derive(Clone, Debug, Default)]
struct Mempool {
    txs: HashMap<TxHash, Vec<u8>>,
    order: VecDeque<TxHash>,
    bytes: usize,
}

impl Mempool {
    /// Adds `tx`; returns how many older transactions left to make room.
    fn insert(&mut self, hash: TxHash, tx: Vec<u8>, config: &TxConfig) -> u64 {
        if self.txs.contains_key(&hash) {
            return 0;
        }
        self.bytes += tx.len();
        self.txs.insert(hash, tx);
        self.order.push_back(hash);
        let mut evicted = 0;
        while self.txs.len() > config.max_mempool || self.bytes > config.max_mempool_bytes {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.txs.remove(&old) {
                self.bytes -= gone.len();
                evicted += 1;
            }
        }
        evicted
    }

    fn remove(&mut self, hash: &TxHash) -> Option<Vec<u8>> {
        let tx = self.txs.remove(hash)?;
        self.bytes -= tx.len();
        // Its place in `order` goes when it reaches the front, or here
        // once stale places outnumber live ones.
        if self.order.len() > 2 * self.txs.len() + 64 {
            let txs = &self.txs;
            self.order.retain(|h| txs.contains_key(h));
        }
        Some(tx)
    }
}

/// Transactions over a node's broadcasts (see the [module](self) docs).
#[derive(Clone, Debug, Default)]
pub struct Tx {
    config: TxConfig,
    seen: Seen,
    mempool: Mempool,
    events: VecDeque<TxEvent>,
    stats: TxStats,
}

impl Tx {
    /// An application with `config`.
    pub fn new(config: TxConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Its settings.
    pub fn config(&self) -> &TxConfig {
        &self.config
    }

    /// Broadcasts `tx` unless this node has seen it already, and keeps it
    /// in the mempool.
    pub fn submit(
        &mut self,
        now: Instant,
        tx: Vec<u8>,
        cluster: &mut dyn Cluster,
    ) -> Result<Submitted, TxError> {
        if tx.is_empty() {
            return Err(TxError::Empty);
        }
        let max = self
            .config
            .max_tx_bytes
            .min(cluster.max_broadcast_len().saturating_sub(1));
        if tx.len() > max {
            return Err(TxError::TooLarge { len: tx.len(), max });
        }
        let hash = hash_of(&tx);
        if self.seen.contains(&hash) {
            self.stats.already_known += 1;
            return Ok(Submitted::AlreadyKnown { hash });
        }
        let id = cluster.broadcast(now, &Channel::Tx.wrap(&tx))?;
        self.seen.insert(hash, self.config.max_seen);
        self.stats.evicted += self.mempool.insert(hash, tx, &self.config);
        self.stats.submitted += 1;
        Ok(Submitted::Broadcast { hash, id })
    }

    /// Whether the transaction with `hash` was seen here (and not forgotten
    /// since).
    pub fn has_seen(&self, hash: &TxHash) -> bool {
        self.seen.contains(hash)
    }

    /// The mempool's transaction with `hash`, if it holds it.
    pub fn get(&self, hash: &TxHash) -> Option<&[u8]> {
        self.mempool.txs.get(hash).map(Vec::as_slice)
    }

    /// Takes a transaction out of the mempool (included in a block, say);
    /// its hash stays seen, so it is not delivered again.
    pub fn remove(&mut self, hash: &TxHash) -> Option<Vec<u8>> {
        self.mempool.remove(hash)
    }

    /// Transactions in the mempool.
    pub fn mempool_len(&self) -> usize {
        self.mempool.txs.len()
    }

    /// Bytes of transactions in the mempool.
    pub fn mempool_bytes(&self) -> usize {
        self.mempool.bytes
    }

    /// The next delivery, oldest first.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    /// Counters.
    pub fn stats(&self) -> TxStats {
        self.stats
    }

    fn on_delivered(&mut self, now: Instant, origin: NodeId, payload: &[u8]) {
        let Some(tx) = Channel::Tx.open(payload) else {
            return;
        };
        if tx.is_empty() || tx.len() > self.config.max_tx_bytes {
            self.stats.refused += 1;
            return;
        }
        let hash = hash_of(tx);
        if !self.seen.insert(hash, self.config.max_seen) {
            self.stats.duplicates += 1;
            return;
        }
        self.stats.delivered += 1;
        self.stats.evicted += self.mempool.insert(hash, tx.to_vec(), &self.config);
        if self.events.len() >= self.config.max_events.max(1) {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(TxEvent::Delivered {
            hash,
            origin,
            at: now,
            tx: tx.to_vec(),
        });
    }
}

/// The SHA-256 of `tx`.
pub fn hash_of(tx: &[u8]) -> TxHash {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, tx).as_ref());
    out
}

impl Application for Tx {
    fn handle_event(&mut self, now: Instant, event: &Event, _cluster: &mut dyn Cluster) {
        if let Event::Delivered { id, payload } = event {
            self.on_delivered(now, id.origin, payload);
        }
    }

    fn handle_timeout(&mut self, _now: Instant, _cluster: &mut dyn Cluster) {}

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeCluster;

    fn delivered(origin: u16, sequence: u64, payload: Vec<u8>) -> Event {
        Event::Delivered {
            id: MessageId {
                origin: crate::testing::id(origin),
                generation: 1,
                sequence,
            },
            payload,
        }
    }

    #[allow(clippy::disallowed_methods)] // the test host reads the clock once
    fn now() -> Instant {
        Instant::now()
    }

    #[test]
    fn the_same_transaction_from_two_origins_is_delivered_once() {
        let now = now();
        let mut cluster = FakeCluster::new(1, []);
        let mut app = Tx::new(TxConfig::default());
        let tx = vec![7u8; 250];
        app.handle_event(now, &delivered(2, 1, Channel::Tx.wrap(&tx)), &mut cluster);
        app.handle_event(now, &delivered(3, 1, Channel::Tx.wrap(&tx)), &mut cluster);
        let Some(TxEvent::Delivered {
            hash,
            origin,
            tx: got,
            ..
        }) = app.poll_event()
        else {
            panic!("one delivery");
        };
        assert_eq!(
            (hash, origin, got),
            (hash_of(&tx), crate::testing::id(2), tx.clone())
        );
        assert_eq!(app.poll_event(), None, "the second copy is a duplicate");
        assert_eq!(app.stats().duplicates, 1);
        assert_eq!(app.get(&hash), Some(&tx[..]));
        // Submitting it here now broadcasts nothing.
        let submitted = app.submit(now, tx, &mut cluster).unwrap();
        assert_eq!(submitted, Submitted::AlreadyKnown { hash });
        assert!(cluster.broadcasts.is_empty());
    }

    #[test]
    fn submitted_transactions_are_broadcast_once_with_the_channel_tag() {
        let now = now();
        let mut cluster = FakeCluster::new(1, []);
        let mut app = Tx::new(TxConfig::default());
        let tx = b"pay 5 to bob".to_vec();
        let Submitted::Broadcast { hash, .. } = app.submit(now, tx.clone(), &mut cluster).unwrap()
        else {
            panic!("broadcast");
        };
        assert_eq!(hash, hash_of(&tx));
        assert_eq!(cluster.broadcasts, [Channel::Tx.wrap(&tx)]);
        // Its own copy coming back is not a delivery.
        let echo = delivered(1, 1, Channel::Tx.wrap(&tx));
        app.handle_event(now, &echo, &mut cluster);
        assert_eq!(app.poll_event(), None);
        assert_eq!(
            app.submit(now, Vec::new(), &mut cluster),
            Err(TxError::Empty)
        );
        assert!(matches!(
            app.submit(now, vec![0; 1025], &mut cluster),
            Err(TxError::TooLarge { len: 1025, .. })
        ));
        assert_eq!(cluster.broadcasts.len(), 1);
    }

    #[test]
    fn lying_payloads_and_floods_stay_within_the_bounds() {
        let now = now();
        let mut cluster = FakeCluster::new(1, []);
        let config = TxConfig {
            max_tx_bytes: 16,
            max_mempool: 4,
            max_mempool_bytes: 40,
            max_seen: 6,
            max_events: 3,
        };
        let mut app = Tx::new(config);
        // Empty, oversized and other channels' payloads.
        for payload in [
            Channel::Tx.wrap(&[]),
            Channel::Tx.wrap(&[1; 17]),
            Channel::Kv.wrap(&[1; 4]),
            Vec::new(),
        ] {
            app.handle_event(now, &delivered(2, 1, payload), &mut cluster);
        }
        assert_eq!(app.stats().refused, 2);
        assert_eq!(app.poll_event(), None);
        // A flood of distinct transactions.
        for n in 0..20u8 {
            let tx = vec![n; 12];
            app.handle_event(
                now,
                &delivered(2, u64::from(n) + 2, Channel::Tx.wrap(&tx)),
                &mut cluster,
            );
        }
        assert_eq!(app.stats().delivered, 20);
        assert!(app.mempool_len() <= 3, "40 bytes hold three of 12");
        assert!(app.mempool_bytes() <= 40);
        assert_eq!(app.stats().evicted, 17);
        assert_eq!(app.seen.set.len(), 6);
        assert_eq!(app.seen.order.len(), 6);
        assert_eq!(app.events.len(), 3);
        assert_eq!(app.stats().events_dropped, 17);
        // The newest are kept, the oldest forgotten.
        assert!(app.has_seen(&hash_of(&[19; 12])));
        assert!(!app.has_seen(&hash_of(&[0; 12])));
        let newest = hash_of(&[19; 12]);
        assert_eq!(app.remove(&newest), Some(vec![19; 12]));
        assert!(app.has_seen(&newest), "taken out, still seen");
    }
}
