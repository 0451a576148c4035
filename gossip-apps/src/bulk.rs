//! Payloads larger than a frame: split into chunks that travel as ordinary
//! broadcasts, reassembled and checked against their SHA-256 before
//! delivery.
//!
//! A payload of `n` bytes becomes one *header* broadcast (length, chunk
//! count, SHA-256) followed by `ceil(n / chunk)` *chunk* broadcasts, each
//! as large as a broadcast may be. The chunks are rumors like any other, so
//! they inherit what the node already does for rumors: deduplication, the
//! dissemination strategy's repair (a tree strategy grafts lost chunks from
//! the peers that announced them, anti-entropy pulls what is still
//! missing), the origin's authority over its own message ids, and origin
//! signatures when signing is on.
//!
//! **Choose a tree strategy** ([`gossip_strategies::Plumtree`] in the
//! `gossip-strategies` crate) for bulk payloads: each chunk then crosses
//! each node about once, so a node sends about `1.0x` the payload plus
//! chunk headers and announcements. Rumor mongering would send each chunk
//! several times.
//!
//! The origin sends its chunks in paced bursts
//! ([`BulkConfig::burst_chunks`] every [`BulkConfig::burst_interval`]), so
//! that a megabyte does not land in every socket buffer at once.
//!
//! **Lying peers.** Nothing is delivered until the whole payload hashes to
//! the header's SHA-256 (a mismatch is counted and the payload dropped).
//! Announced lengths are capped ([`BulkConfig::max_payload_bytes`]), so are
//! the payloads assembled at once ([`BulkConfig::max_assemblies`]) and the
//! chunks held before their header arrives
//! ([`BulkConfig::max_early_bytes`]); an assembly that does not complete
//! within [`BulkConfig::assembly_timeout`] is dropped.
//!
//! [`gossip_strategies::Plumtree`]: https://docs.rs/gossip-strategies

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use gossip_core::{CommandError, Event, MessageId, NodeId};
use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};

use crate::{Application, Channel, Cluster};

/// Bulk payload settings. Every limit bounds what a lying peer can make a
/// node hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkConfig {
    /// Largest payload sent or assembled. Default 4 MiB.
    pub max_payload_bytes: u64,
    /// Payloads assembled at once; a header beyond it is ignored (its
    /// payload is lost here unless anti-entropy brings the header again
    /// later). Default 16.
    pub max_assemblies: usize,
    /// Bytes of chunks held whose header has not arrived yet; the oldest
    /// go first. Default 8 MiB.
    pub max_early_bytes: usize,
    /// An assembly still incomplete this long after its header arrived is
    /// dropped. Default 60 s.
    pub assembly_timeout: Duration,
    /// Chunks the origin broadcasts per burst. Default 8: 8 chunks of
    /// about 1.3 kB every 2 ms, about 5 MB/s. With 100 nodes in one
    /// process on two cores (`bench-net`), faster origins only filled
    /// socket buffers: 64 per burst took 3.6x the payload in bytes per
    /// node and a p95 of 10.4 s for 1 MiB, 8 took 2.0x and 6.0 s.
    pub burst_chunks: usize,
    /// Time between the origin's bursts. Default 2 ms.
    pub burst_interval: Duration,
    /// Delivered payloads kept until taken with
    /// [`Bulk::poll_event`]; the oldest go first. Default 64.
    pub max_events: usize,
}

impl Default for BulkConfig {
    fn default() -> Self {
        Self {
            max_payload_bytes: 4 << 20,
            max_assemblies: 16,
            max_early_bytes: 8 << 20,
            assembly_timeout: Duration::from_secs(60),
            burst_chunks: 8,
            burst_interval: Duration::from_millis(2),
            max_events: 64,
        }
    }
}

/// Why [`Bulk::send`] refused a payload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BulkError {
    /// The payload is larger than [`BulkConfig::max_payload_bytes`].
    #[error("payload of {len} bytes is above the limit of {max}")]
    TooLarge {
        /// The payload's length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The node refused the header's broadcast.
    #[error("the node refused the broadcast: {0}")]
    Refused(#[from] CommandError),
    /// The node's broadcasts are too small to carry a chunk.
    #[error("broadcasts of {0} bytes cannot carry a chunk")]
    FrameTooSmall(usize),
}

/// A bulk payload's identity: the id of its header broadcast.
pub type BulkId = MessageId;

/// What happened to a bulk payload.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkEvent {
    /// Every chunk arrived and the payload matches its header's SHA-256.
    Delivered {
        /// Which payload.
        id: BulkId,
        /// The payload.
        payload: Vec<u8>,
    },
}

/// Counters of what the application did and refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BulkStats {
    /// Payloads this node sent.
    pub sent: u64,
    /// Payloads delivered (assembled and verified), own ones excluded.
    pub delivered: u64,
    /// Payloads whose chunks did not hash to their header's SHA-256.
    pub hash_mismatches: u64,
    /// Headers or chunks refused as malformed or beyond a limit.
    pub refused: u64,
    /// Assemblies dropped incomplete after `assembly_timeout`.
    pub timed_out: u64,
}

const KIND_HEADER: u8 = 0;
const KIND_CHUNK: u8 = 1;
/// Tag, kind, the header's sequence (up to 10 bytes) and the chunk's index
/// (up to 5): what a chunk adds to its bytes.
const CHUNK_OVERHEAD: usize = 1 + 1 + 10 + 5;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Header {
    len: u64,
    chunks: u32,
    sha256: [u8; 32],
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ChunkHead {
    /// Sequence number of the payload's header broadcast.
    header: u64,
    index: u32,
}

/// A payload being put together.
#[derive(Clone, Debug)]
struct Assembly {
    header: Header,
    chunk_len: Option<usize>,
    parts: Vec<Option<Vec<u8>>>,
    received: u32,
    deadline: Instant,
}

/// Key of an assembly: the origin, its life and its header's sequence.
type Key = (NodeId, u64, u64);

/// A node's outgoing payload, chunks not yet broadcast.
#[derive(Clone, Debug)]
struct Outgoing {
    header: u64,
    chunk: usize,
    payload: Vec<u8>,
    next: u32,
    chunks: u32,
}

/// Bulk payloads over a node's broadcasts (see the [module](self) docs).
#[derive(Clone, Debug)]
pub struct Bulk {
    config: BulkConfig,
    assemblies: BTreeMap<Key, Assembly>,
    early: VecDeque<(Key, u32, Vec<u8>)>,
    early_bytes: usize,
    outgoing: VecDeque<Outgoing>,
    next_burst: Option<Instant>,
    events: VecDeque<BulkEvent>,
    stats: BulkStats,
}

impl Bulk {
    /// An application with `config`.
    pub fn new(config: BulkConfig) -> Self {
        Self {
            config,
            assemblies: BTreeMap::new(),
            early: VecDeque::new(),
            early_bytes: 0,
            outgoing: VecDeque::new(),
            next_burst: None,
            events: VecDeque::new(),
            stats: BulkStats::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &BulkConfig {
        &self.config
    }

    /// What the application counted.
    pub fn stats(&self) -> BulkStats {
        self.stats
    }

    /// Payloads being assembled.
    pub fn assembling(&self) -> usize {
        self.assemblies.len()
    }

    /// Takes the next event.
    pub fn poll_event(&mut self) -> Option<BulkEvent> {
        self.events.pop_front()
    }

    /// Sends `payload` to every node: its header at once, its chunks in
    /// paced bursts from now on.
    ///
    /// # Errors
    /// If the payload is above the limit, or the node refuses the header.
    pub fn send(
        &mut self,
        now: Instant,
        payload: Vec<u8>,
        cluster: &mut dyn Cluster,
    ) -> Result<BulkId, BulkError> {
        let len = payload.len() as u64;
        if len > self.config.max_payload_bytes {
            return Err(BulkError::TooLarge {
                len,
                max: self.config.max_payload_bytes,
            });
        }
        let room = cluster.max_broadcast_len();
        let chunk = room.saturating_sub(CHUNK_OVERHEAD);
        if chunk == 0 {
            return Err(BulkError::FrameTooSmall(room));
        }
        let chunks = payload.len().div_ceil(chunk) as u32;
        let header = Header {
            len,
            chunks,
            sha256: sha256(&payload),
        };
        let mut body = vec![Channel::Bulk.tag(), KIND_HEADER];
        body.extend(postcard::to_allocvec(&header).expect("encoding into a Vec cannot fail"));
        let id = cluster.broadcast(now, &body)?;
        self.stats.sent += 1;
        self.outgoing.push_back(Outgoing {
            header: id.sequence,
            chunk,
            payload,
            next: 0,
            chunks,
        });
        self.send_burst(now, cluster);
        Ok(id)
    }

    /// Broadcasts the next burst of chunks.
    fn send_burst(&mut self, now: Instant, cluster: &mut dyn Cluster) {
        let mut budget = self.config.burst_chunks.max(1);
        while budget > 0 {
            let Some(out) = self.outgoing.front_mut() else {
                break;
            };
            if out.next >= out.chunks {
                self.outgoing.pop_front();
                continue;
            }
            let start = out.next as usize * out.chunk;
            let end = (start + out.chunk).min(out.payload.len());
            let mut body = vec![Channel::Bulk.tag(), KIND_CHUNK];
            body.extend(
                postcard::to_allocvec(&ChunkHead {
                    header: out.header,
                    index: out.next,
                })
                .expect("encoding into a Vec cannot fail"),
            );
            body.extend_from_slice(&out.payload[start..end]);
            if cluster.broadcast(now, &body).is_err() {
                // The node cannot take more now (or at all): try again at
                // the next burst.
                break;
            }
            out.next += 1;
            budget -= 1;
        }
        self.outgoing.retain(|out| out.next < out.chunks);
        self.next_burst = (!self.outgoing.is_empty()).then(|| now + self.config.burst_interval);
    }

    fn on_delivered(&mut self, now: Instant, id: MessageId, body: &[u8]) {
        let Some((&kind, rest)) = body.split_first() else {
            self.stats.refused += 1;
            return;
        };
        match kind {
            KIND_HEADER => match postcard::from_bytes::<Header>(rest) {
                Ok(header) => self.on_header(now, id, header),
                Err(_) => self.stats.refused += 1,
            },
            KIND_CHUNK => match postcard::take_from_bytes::<ChunkHead>(rest) {
                Ok((head, bytes)) => {
                    let key = (id.origin, id.generation, head.header);
                    self.on_chunk(key, head.index, bytes.to_vec());
                }
                Err(_) => self.stats.refused += 1,
            },
            _ => self.stats.refused += 1,
        }
    }

    fn on_header(&mut self, now: Instant, id: MessageId, header: Header) {
        let key = (id.origin, id.generation, id.sequence);
        let plausible = header.len <= self.config.max_payload_bytes
            && u64::from(header.chunks) <= header.len.max(1)
            && (header.len == 0) == (header.chunks == 0);
        if !plausible
            || self.assemblies.contains_key(&key)
            || self.assemblies.len() >= self.config.max_assemblies
        {
            self.stats.refused += 1;
            return;
        }
        let chunks = header.chunks as usize;
        self.assemblies.insert(
            key,
            Assembly {
                header,
                chunk_len: None,
                parts: vec![None; chunks],
                received: 0,
                deadline: now + self.config.assembly_timeout,
            },
        );
        // Chunks that came before their header.
        let early: Vec<(Key, u32, Vec<u8>)> = {
            let (mine, rest): (Vec<_>, Vec<_>) =
                self.early.drain(..).partition(|(k, _, _)| *k == key);
            self.early = rest.into();
            mine
        };
        for (_, index, bytes) in early {
            self.early_bytes -= bytes.len();
            self.on_chunk(key, index, bytes);
        }
        self.complete(key);
    }

    fn on_chunk(&mut self, key: Key, index: u32, bytes: Vec<u8>) {
        let Some(assembly) = self.assemblies.get_mut(&key) else {
            // Its header may still be on its way.
            if bytes.len() > self.config.max_early_bytes {
                self.stats.refused += 1;
                return;
            }
            while self.early_bytes + bytes.len() > self.config.max_early_bytes {
                let Some((_, _, old)) = self.early.pop_front() else {
                    break;
                };
                self.early_bytes -= old.len();
                self.stats.refused += 1;
            }
            self.early_bytes += bytes.len();
            self.early.push_back((key, index, bytes));
            return;
        };
        let slot = index as usize;
        // Every chunk but the last has the same length.
        let last = slot + 1 == assembly.parts.len();
        let consistent = match assembly.chunk_len {
            Some(len) => {
                if last {
                    bytes.len() <= len
                } else {
                    bytes.len() == len
                }
            }
            None => !bytes.is_empty(),
        };
        if slot >= assembly.parts.len() || !consistent {
            self.stats.refused += 1;
            return;
        }
        if assembly.parts[slot].is_some() {
            return;
        }
        if !last {
            assembly.chunk_len = Some(bytes.len());
        }
        assembly.parts[slot] = Some(bytes);
        assembly.received += 1;
        self.complete(key);
    }

    /// Delivers the payload of `key` if every chunk is in.
    fn complete(&mut self, key: Key) {
        let done = self
            .assemblies
            .get(&key)
            .is_some_and(|a| a.received as usize == a.parts.len());
        if !done {
            return;
        }
        let Some(assembly) = self.assemblies.remove(&key) else {
            return;
        };
        let mut payload = Vec::with_capacity(assembly.header.len as usize);
        for part in assembly.parts.into_iter().flatten() {
            payload.extend_from_slice(&part);
        }
        if payload.len() as u64 != assembly.header.len || sha256(&payload) != assembly.header.sha256
        {
            self.stats.hash_mismatches += 1;
            return;
        }
        self.stats.delivered += 1;
        if self.events.len() >= self.config.max_events.max(1) {
            self.events.pop_front();
        }
        self.events.push_back(BulkEvent::Delivered {
            id: MessageId {
                origin: key.0,
                generation: key.1,
                sequence: key.2,
            },
            payload,
        });
    }

    fn expire(&mut self, now: Instant) {
        let before = self.assemblies.len();
        self.assemblies.retain(|_, a| a.deadline > now);
        self.stats.timed_out += (before - self.assemblies.len()) as u64;
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

impl Application for Bulk {
    fn handle_event(&mut self, now: Instant, event: &Event, cluster: &mut dyn Cluster) {
        if let Event::Delivered { id, payload } = event {
            if id.origin == cluster.me() {
                return;
            }
            if let Some(body) = Channel::Bulk.open(payload) {
                self.on_delivered(now, *id, body);
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant, cluster: &mut dyn Cluster) {
        if self.next_burst.is_some_and(|at| at <= now) {
            self.send_burst(now, cluster);
        }
        self.expire(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self.assemblies.values().map(|a| a.deadline).min();
        [self.next_burst, expiry].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{id, FakeCluster};

    fn origin_broadcasts(
        payload: &[u8],
        config: BulkConfig,
    ) -> (Vec<(MessageId, Vec<u8>)>, Instant) {
        let now = Instant::now();
        let mut cluster = FakeCluster::new(1, [1, 2]);
        let mut bulk = Bulk::new(config);
        bulk.send(now, payload.to_vec(), &mut cluster).unwrap();
        let mut at = now;
        while let Some(next) = bulk.poll_timeout() {
            at = next;
            bulk.handle_timeout(at, &mut cluster);
        }
        let out = cluster
            .broadcasts
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let id = MessageId {
                    origin: id(1),
                    generation: 1,
                    sequence: i as u64 + 1,
                };
                (id, b.clone())
            })
            .collect();
        (out, at)
    }

    fn deliver(bulk: &mut Bulk, now: Instant, rumors: &[(MessageId, Vec<u8>)]) {
        let mut cluster = FakeCluster::new(2, [1, 2]);
        for (id, payload) in rumors {
            let event = Event::Delivered {
                id: *id,
                payload: payload.clone(),
            };
            bulk.handle_event(now, &event, &mut cluster);
        }
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_payload_arrives_whole_in_any_order_and_only_once() {
        let data = payload(100_000);
        let (mut rumors, at) = origin_broadcasts(&data, BulkConfig::default());
        // FakeCluster's broadcasts may be 1,000 bytes or so: many chunks,
        // sent in paced bursts.
        assert!(rumors.len() > 50, "{} broadcasts", rumors.len());
        assert!(rumors.iter().all(|(_, b)| b.len() <= 1400));
        rumors.reverse(); // chunks first, header last
        let dup = rumors[3].clone();
        rumors.push(dup);
        let mut bulk = Bulk::new(BulkConfig::default());
        deliver(&mut bulk, at, &rumors);
        match bulk.poll_event() {
            Some(BulkEvent::Delivered { id, payload }) => {
                assert_eq!(id.sequence, 1, "named by its header");
                assert_eq!(payload, data);
            }
            other => panic!("{other:?}"),
        }
        assert!(bulk.poll_event().is_none());
        assert_eq!(bulk.stats().delivered, 1);
        assert_eq!(bulk.assembling(), 0);
    }

    #[test]
    fn the_origin_paces_its_chunks_in_bursts() {
        let config = BulkConfig {
            burst_chunks: 4,
            ..BulkConfig::default()
        };
        let now = Instant::now();
        let mut cluster = FakeCluster::new(1, [1, 2]);
        let mut bulk = Bulk::new(config.clone());
        bulk.send(now, payload(50_000), &mut cluster).unwrap();
        assert_eq!(cluster.broadcasts.len(), 1 + 4, "header and one burst");
        assert_eq!(bulk.poll_timeout(), Some(now + config.burst_interval));
        bulk.handle_timeout(now, &mut cluster);
        assert_eq!(cluster.broadcasts.len(), 5, "not before the deadline");
        bulk.handle_timeout(now + config.burst_interval, &mut cluster);
        assert_eq!(cluster.broadcasts.len(), 9);
    }

    #[test]
    fn a_tampered_chunk_fails_the_hash_and_nothing_is_delivered() {
        let data = payload(20_000);
        let (mut rumors, at) = origin_broadcasts(&data, BulkConfig::default());
        let last = rumors.len() - 1;
        let bytes = &mut rumors[last].1;
        let end = bytes.len() - 1;
        bytes[end] ^= 0xff;
        let mut bulk = Bulk::new(BulkConfig::default());
        deliver(&mut bulk, at, &rumors);
        assert!(bulk.poll_event().is_none());
        assert_eq!(bulk.stats().hash_mismatches, 1);
        assert_eq!(bulk.assembling(), 0);
    }

    #[test]
    fn lying_headers_and_chunks_are_bounded() {
        let now = Instant::now();
        let config = BulkConfig {
            max_assemblies: 2,
            max_early_bytes: 10_000,
            ..BulkConfig::default()
        };
        let mut bulk = Bulk::new(config.clone());
        let header = |len: u64, chunks: u32| {
            let mut body = vec![Channel::Bulk.tag(), KIND_HEADER];
            body.extend(
                postcard::to_allocvec(&Header {
                    len,
                    chunks,
                    sha256: [0; 32],
                })
                .unwrap(),
            );
            body
        };
        let rumor = |seq: u64, body: Vec<u8>| {
            (
                MessageId {
                    origin: id(9),
                    generation: 1,
                    sequence: seq,
                },
                body,
            )
        };
        // A header claiming a terabyte, one claiming more chunks than bytes,
        // then three plausible ones: only two assemblies start.
        let rumors = vec![
            rumor(1, header(1 << 40, 1 << 30)),
            rumor(2, header(10, 1000)),
            rumor(3, header(1000, 1)),
            rumor(4, header(1000, 1)),
            rumor(5, header(1000, 1)),
            rumor(6, vec![Channel::Bulk.tag(), 9, 9, 9]),
        ];
        deliver(&mut bulk, now, &rumors);
        assert_eq!(bulk.assembling(), 2);
        assert_eq!(bulk.stats().refused, 4);
        // Chunks for headers that never come: at most max_early_bytes held.
        let chunk = |header: u64, index: u32| {
            let mut body = vec![Channel::Bulk.tag(), KIND_CHUNK];
            body.extend(postcard::to_allocvec(&ChunkHead { header, index }).unwrap());
            body.extend(vec![0u8; 1000]);
            body
        };
        let early: Vec<_> = (0..100).map(|i| rumor(100 + i, chunk(50 + i, 0))).collect();
        deliver(&mut bulk, now, &early);
        assert!(bulk.early_bytes <= config.max_early_bytes);
        // Assemblies that never complete are dropped after the timeout.
        bulk.handle_timeout(now + config.assembly_timeout, &mut FakeCluster::new(2, [1]));
        assert_eq!(bulk.assembling(), 0);
        assert_eq!(bulk.stats().timed_out, 2);
        assert!(bulk.poll_event().is_none());
    }

    #[test]
    fn payloads_above_the_limit_are_refused() {
        let mut bulk = Bulk::new(BulkConfig {
            max_payload_bytes: 1000,
            ..BulkConfig::default()
        });
        let mut cluster = FakeCluster::new(1, [1]);
        assert!(matches!(
            bulk.send(Instant::now(), payload(1001), &mut cluster),
            Err(BulkError::TooLarge {
                len: 1001,
                max: 1000
            })
        ));
        assert!(cluster.broadcasts.is_empty());
    }
}
