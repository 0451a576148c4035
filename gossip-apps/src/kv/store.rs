//! [`Kv`]: the replicated store's state machine.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use gossip_core::{Event, Liveness, NodeId};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::{KvConfig, KvConfigError, KvError, KvEvent, KvStats};
use super::entry::Entry;
use super::gc::{Guards, Outbox, TombstoneId, Tracked, Tracker};
use super::hash::node_tag;
use super::index::{node_range, to_wire, valid_node, Index, MAX_DEPTH};
use super::storage::{Storage, StoreOp};
use super::sync::{Budgets, CatchUp, Exchange};
use super::version::{Hlc, Version, WallClock};
use super::wire::{entry_len, Cursor, KvMessage};
use crate::{Application, Channel, Cluster};

/// Bookkeeping key: wall milliseconds of the last completed exchange.
const META_CONTACT: &str = "last_contact_ms";
/// Bookkeeping key prefix: the collection horizon of one bucket.
const META_HORIZON: &str = "gc_horizon/";
/// Bytes of a message's own fields around its list (tag, variant,
/// session, lengths), kept free when packing a frame.
const MESSAGE_OVERHEAD: usize = 32;
/// Most tree nodes in one `Children` or `Expand` (16 digests of 8 bytes
/// each fit a frame eight times).
const NODES_PER_MESSAGE: usize = 8;
/// Largest encoding of one [`TombstoneId`] (three varint `u64`s).
const TOMBSTONE_ID_LEN: usize = 30;

/// What a guard makes of an entry for a key not held.
enum Guarded {
    /// Refused silently.
    Refuse,
    /// Refused, and the sender gets the collected tombstone.
    Answer,
    /// Newer than the guard (or the deleter is gone): the guard goes.
    Superseded,
}

/// Which outbox a tombstone id goes to.
#[derive(Clone, Copy, Debug)]
enum Queue {
    /// An acknowledgement to the deleter of this tag.
    Ack(u64),
    /// A request to acknowledge, to this peer.
    Request(NodeId),
    /// A collect notice, to this peer.
    Collect(NodeId),
}

/// Where a replicated entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Rumor,
    Peer(NodeId),
    /// A catch-up page.
    Page(NodeId),
    Local,
}

/// A replicated key-value store beside one node.
///
/// Semantics: last writer wins by [`Version`] (hybrid logical clock stamp,
/// then writer tag), so concurrent writes converge on the same winner
/// everywhere. A deletion is a tombstone with a version, collected once
/// every member alive at the deletion has acknowledged it (a guard of key
/// hash and version stays until the grace), or after
/// [`KvConfig::tombstone_grace`] (see the [module](super) documentation). A write is applied locally at once (the
/// writer reads its own writes), spread by rumor, and repaired by
/// anti-entropy over a digest tree; a node that starts with an empty or old
/// store first catches up on what changed in bounded pages from up to
/// [`KvConfig::catch_up_peers`] members, reading and writing meanwhile.
///
/// Deleted keys never come back: a node that holds no entry for a key
/// refuses entries older than the grace period for it (its tombstone may
/// have been collected) and answers the sender with a newer tombstone; a
/// node that was away longer than the grace drops its entries older than
/// the grace before it catches up. The cost: a write that reached nobody
/// for a whole grace period is lost.
pub struct Kv<St: Storage> {
    config: KvConfig,
    me: NodeId,
    tag: u64,
    storage: St,
    wall: WallClock,
    hlc: Hlc,
    rng: ChaCha8Rng,
    index: Index,
    events: VecDeque<KvEvent>,
    next_sync: Option<Instant>,
    exchanges: BTreeMap<u32, Exchange>,
    catch_up: Option<CatchUp>,
    catch_up_from: Cursor,
    budgets: Budgets,
    last_contact_ms: Option<u64>,
    persisted_contact_ms: Option<u64>,
    /// Whether entries older than the grace are taken for keys not held:
    /// only while a node that started empty, or dropped its old entries
    /// after a long absence, catches up.
    trust_old: bool,
    /// Per key-hash bucket, the newest tombstone stamp collected there
    /// ([`KvConfig::horizon_buckets`]).
    horizon: Vec<u64>,
    /// Early collection: guards of tombstones collected on their
    /// deleter's notice, this node's deletions awaiting acknowledgements,
    /// and what waits for the next batch.
    guards: Guards,
    tracker: Tracker,
    acks: Outbox<u64>,
    requests: Outbox<NodeId>,
    collects: Outbox<NodeId>,
    next_flush: Option<Instant>,
    /// Members as of the last refresh: tag to id for live ones, tag to
    /// liveness for all, and a memo of tags.
    roster: Roster,
    stats: KvStats,
}

/// The member table as the early collection needs it, refreshed at most
/// once per batch interval (tags are hashes of ids' text: memoised).
#[derive(Default)]
struct Roster {
    at: Option<Instant>,
    live: BTreeMap<u64, NodeId>,
    state: BTreeMap<u64, Liveness>,
    tags: BTreeMap<NodeId, u64>,
}

impl Roster {
    fn tag(&mut self, id: NodeId) -> u64 {
        *self.tags.entry(id).or_insert_with(|| node_tag(&id))
    }

    fn refresh(&mut self, me: NodeId, cluster: &dyn Cluster) {
        let members = cluster.members();
        let mut tags = BTreeMap::new();
        self.live.clear();
        self.state.clear();
        for m in members {
            let tag = self
                .tags
                .get(&m.id)
                .copied()
                .unwrap_or_else(|| node_tag(&m.id));
            tags.insert(m.id, tag);
            if m.id == me {
                continue;
            }
            self.state.insert(tag, m.liveness);
            if m.liveness == Liveness::Alive {
                self.live.insert(tag, m.id);
            }
        }
        tags.insert(me, node_tag(&me));
        self.tags = tags;
    }
}

impl<St: Storage> Kv<St> {
    /// A store for node `me`, loading what `storage` holds. `wall` gives
    /// wall time (for version stamps and tombstone ages), `seed` the
    /// random choices (peers, exchange numbers).
    ///
    /// A node whose storage says it was last in contact longer ago than
    /// the tombstone grace drops its entries older than the grace, and
    /// catches up on everything; otherwise it catches up on what changed
    /// since its last contact (less the clock skew bound).
    pub fn new(
        me: NodeId,
        config: KvConfig,
        mut storage: St,
        wall: WallClock,
        seed: u64,
        now: Instant,
    ) -> Result<Self, KvSetupError<St::Error>> {
        config.validate().map_err(KvSetupError::Config)?;
        let loaded = storage.load().map_err(KvSetupError::Storage)?;
        let last_contact_ms = storage.meta(META_CONTACT).map_err(KvSetupError::Storage)?;
        let mut this = Self {
            tag: node_tag(&me),
            me,
            storage,
            wall,
            hlc: Hlc::default(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            index: Index::default(),
            events: VecDeque::new(),
            next_sync: None,
            exchanges: BTreeMap::new(),
            catch_up: None,
            catch_up_from: Cursor::default(),
            budgets: Budgets::default(),
            last_contact_ms,
            persisted_contact_ms: last_contact_ms,
            trust_old: false,
            horizon: Vec::new(),
            guards: Guards::default(),
            tracker: Tracker::default(),
            acks: Outbox::default(),
            requests: Outbox::default(),
            collects: Outbox::default(),
            next_flush: None,
            roster: Roster::default(),
            stats: KvStats::default(),
            config,
        };
        for (hash, version) in this.storage.load_guards().map_err(KvSetupError::Storage)? {
            this.hlc.observe(version.stamp);
            this.guards.insert(hash, version);
        }
        for b in 0..this.config.horizon_buckets {
            let stamp = this
                .storage
                .meta(&format!("{META_HORIZON}{b}"))
                .map_err(KvSetupError::Storage)?;
            this.horizon.push(stamp.unwrap_or(0));
        }
        for entry in loaded {
            this.hlc.observe(entry.version.stamp);
            this.index.insert(entry);
        }
        let wall_ms = this.wall.millis(now);
        let margin = this.config.catch_up_margin.as_millis() as u64;
        let from = match last_contact_ms {
            Some(contact) if wall_ms.saturating_sub(contact) > this.grace_ms() => {
                this.drop_old(now);
                this.trust_old = true;
                0
            }
            Some(contact) => Version::stamp_of(contact.saturating_sub(margin)),
            None => {
                this.trust_old = this.index.is_empty();
                0
            }
        };
        this.start_catch_up(from);
        Ok(this)
    }

    // ----- queries ---------------------------------------------------

    /// The live value of `key` and its version.
    pub fn get(&self, key: &[u8]) -> Option<(&[u8], Version)> {
        let entry = self.index.get(key)?;
        Some((entry.value.as_deref()?, entry.version))
    }

    /// The entry for `key`, tombstone included.
    pub fn entry(&self, key: &[u8]) -> Option<&Entry> {
        self.index.get(key)
    }

    /// Live entries whose key starts with `prefix`, in key order, at most
    /// `limit` (a scan of the whole store).
    pub fn list(&self, prefix: &[u8], limit: usize) -> Vec<Entry> {
        let mut out: Vec<Entry> = self
            .index
            .iter()
            .filter(|e| !e.is_tombstone() && e.key.starts_with(prefix))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.truncate(limit);
        out
    }

    /// Entries held, tombstones included.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Live keys held.
    pub fn live(&self) -> usize {
        self.index.len() - self.index.tombstones()
    }

    /// Tombstones held.
    pub fn tombstones(&self) -> usize {
        self.index.tombstones()
    }

    /// Key and value bytes held (tombstones' keys included).
    pub fn stored_bytes(&self) -> usize {
        self.index.data_bytes()
    }

    /// The root digest: equal on two nodes that hold the same entries.
    pub fn root(&self) -> u64 {
        self.index.root()
    }

    /// Guards of tombstones collected early, held until the grace.
    pub fn guards(&self) -> usize {
        self.guards.len()
    }

    /// This node's deletions awaiting acknowledgements.
    pub fn tracked(&self) -> usize {
        self.tracker.tracked.len()
    }

    /// Acknowledgements, requests and collect notices waiting to be sent.
    pub fn outbox(&self) -> usize {
        self.acks.len() + self.requests.len() + self.collects.len()
    }

    /// Whether a catch-up is under way.
    pub fn catching_up(&self) -> bool {
        self.catch_up.is_some()
    }

    /// The counters.
    pub fn stats(&self) -> &KvStats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &KvConfig {
        &self.config
    }

    /// The storage (to inspect; writes go through the store).
    pub fn storage(&self) -> &St {
        &self.storage
    }

    /// The next change event, oldest first.
    pub fn poll_event(&mut self) -> Option<KvEvent> {
        self.events.pop_front()
    }

    // ----- commands ----------------------------------------------------

    /// Writes `value` under `key`: applied here at once, then spread.
    pub fn put(
        &mut self,
        now: Instant,
        key: &[u8],
        value: &[u8],
        cluster: &mut dyn Cluster,
    ) -> Result<Version, KvError> {
        if value.len() > self.config.max_value_len {
            return Err(KvError::TooLarge {
                len: value.len(),
                max: self.config.max_value_len,
            });
        }
        self.write(now, key, Some(value.to_vec()), cluster)
    }

    /// Deletes `key` (a tombstone, spread like a write).
    pub fn delete(
        &mut self,
        now: Instant,
        key: &[u8],
        cluster: &mut dyn Cluster,
    ) -> Result<Version, KvError> {
        self.write(now, key, None, cluster)
    }

    fn write(
        &mut self,
        now: Instant,
        key: &[u8],
        value: Option<Vec<u8>>,
        cluster: &mut dyn Cluster,
    ) -> Result<Version, KvError> {
        if key.is_empty() || key.len() > self.config.max_key_len {
            return Err(KvError::BadKey {
                len: key.len(),
                max: self.config.max_key_len,
            });
        }
        let stamp = self.hlc.tick(self.wall.millis(now));
        let entry = Entry {
            key: key.to_vec(),
            version: Version {
                stamp,
                origin: self.tag,
            },
            value,
        };
        let version = entry.version;
        let payload = Channel::Kv.wrap(&KvMessage::Write(entry.clone()).encode());
        let max = cluster.max_broadcast_len().min(cluster.max_direct_len());
        if payload.len() > max {
            return Err(KvError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        self.stats.local_writes += 1;
        let deletion = entry.is_tombstone().then(|| entry.key.clone());
        self.apply_all(now, vec![entry], Source::Local, cluster);
        if let Some(key) = deletion {
            self.track(now, key, version, cluster);
        }
        if cluster.broadcast(now, &payload).is_err() {
            // Anti-entropy spreads it instead.
            self.stats.broadcast_errors += 1;
        } else {
            self.stats.bytes_sent += payload.len() as u64;
        }
        Ok(version)
    }

    // ----- applying ----------------------------------------------------

    /// Applies `entry` as if a catch-up page brought it, bypassing nothing but the
    /// grace check (tests plant stragglers with it).
    #[cfg(test)]
    pub(crate) fn apply_all_for_test(
        &mut self,
        now: Instant,
        entry: Entry,
        cluster: &mut dyn Cluster,
    ) {
        let trust = std::mem::replace(&mut self.trust_old, true);
        let me = self.me;
        self.apply_all(now, vec![entry], Source::Page(me), cluster);
        self.trust_old = trust;
    }

    fn grace_ms(&self) -> u64 {
        self.config.tombstone_grace.as_millis() as u64
    }

    /// Applies `entries` from `source`, persisting the changes in one
    /// batch; entries refused as too old from a peer are answered with a
    /// newer tombstone.
    fn apply_all(
        &mut self,
        now: Instant,
        entries: Vec<Entry>,
        source: Source,
        cluster: &mut dyn Cluster,
    ) {
        let wall_ms = self.wall.millis(now);
        let skew_ms = self.config.max_clock_skew.as_millis() as u64;
        let mut ops = Vec::new();
        let mut answer = Vec::new();
        for entry in entries {
            let bad_len = entry.key.is_empty()
                || entry.key.len() > self.config.max_key_len
                || entry
                    .value
                    .as_ref()
                    .is_some_and(|v| v.len() > self.config.max_value_len);
            if bad_len || entry.version.millis() > wall_ms.saturating_add(skew_ms) {
                self.stats.refused_invalid += 1;
                continue;
            }
            let peer = match source {
                Source::Peer(p) | Source::Page(p) => Some(p),
                Source::Rumor | Source::Local => None,
            };
            let hash = entry.hash();
            if let (None, Some(guard)) = (self.index.get(&entry.key), self.guards.get(hash)) {
                self.refresh_roster(now, cluster, false);
                match self.guarded(hash, entry.version, entry.is_tombstone(), guard, peer) {
                    Guarded::Refuse => {
                        self.stats.refused_collected += 1;
                        continue;
                    }
                    Guarded::Answer => {
                        // An older value, or an older deletion: the peer
                        // gets the collected tombstone back.
                        self.stats.refused_collected += 1;
                        answer.push(Entry {
                            key: entry.key,
                            version: guard,
                            value: None,
                        });
                        continue;
                    }
                    Guarded::Superseded => {
                        self.guards.remove(hash);
                        ops.push(StoreOp::Unguard(hash));
                    }
                }
            }
            let held = self.index.get(&entry.key);
            if held.is_none() && entry.version.stamp <= self.horizon[self.bucket(entry.hash())] {
                // This node collected a tombstone at least as new in the
                // key's bucket: the entry may be a value it deleted.
                self.stats.refused_horizon += 1;
                continue;
            }
            // Entries older than the grace are taken for keys not held
            // only from catch-up pages while catching up after a long
            // absence: a rumor that old is a late relay of a write whose
            // deletion may have been collected.
            let trust_old = self.trust_old && matches!(source, Source::Page(_));
            match held {
                Some(old) if !entry.supersedes(old) => {
                    if source != Source::Local {
                        self.stats.stale += 1;
                    }
                    continue;
                }
                None if !trust_old
                    && entry.version.millis().saturating_add(self.grace_ms()) < wall_ms =>
                {
                    self.stats.refused_old += 1;
                    if !entry.is_tombstone() {
                        answer.push(Entry {
                            key: entry.key,
                            version: Version {
                                stamp: entry.version.stamp.saturating_add(1),
                                origin: self.tag,
                            },
                            value: None,
                        });
                    }
                    continue;
                }
                _ => {}
            }
            self.hlc.observe(entry.version.stamp);
            if source != Source::Local {
                self.stats.applied += 1;
            }
            self.push_event(KvEvent {
                key: entry.key.clone(),
                value: entry.value.clone(),
                version: entry.version,
                at: now,
                local: source == Source::Local,
            });
            if entry.is_tombstone() && source != Source::Local && entry.version.origin != self.tag {
                // Acknowledged to the deleter with the next batch.
                let id = TombstoneId {
                    hash,
                    version: entry.version,
                };
                self.queue(Queue::Ack(entry.version.origin), id);
            }
            ops.push(StoreOp::Put(entry.clone()));
            self.index.insert(entry);
        }
        self.persist(&ops);
        if let (Source::Peer(peer) | Source::Page(peer), false) = (source, answer.is_empty()) {
            self.send_entries(now, peer, 0, answer, usize::MAX, cluster);
        }
    }

    /// What to do with an entry for a key not held whose hash has a guard.
    fn guarded(
        &mut self,
        hash: u64,
        version: Version,
        tombstone: bool,
        guard: Version,
        peer: Option<NodeId>,
    ) -> Guarded {
        if version > guard {
            return Guarded::Superseded;
        }
        let Some(peer) = peer else {
            return Guarded::Refuse;
        };
        if !(tombstone && version == guard) {
            return Guarded::Answer;
        }
        // The peer still holds the very tombstone collected here.
        let id = TombstoneId {
            hash,
            version: guard,
        };
        if guard.origin == self.tag {
            // This node deleted it: the peer may collect it too.
            self.queue(Queue::Collect(peer), id);
            return Guarded::Refuse;
        }
        if self.roster.live.contains_key(&guard.origin) {
            // It acknowledges to the deleter, who answers with a notice.
            self.queue(Queue::Request(peer), id);
            return Guarded::Refuse;
        }
        // The deleter is gone: no notice will come for the peer. Hold
        // the tombstone again until the grace, so both agree.
        Guarded::Superseded
    }

    fn persist(&mut self, ops: &[StoreOp]) {
        if !ops.is_empty() && self.storage.apply(ops).is_err() {
            self.stats.storage_errors += 1;
        }
    }

    fn push_event(&mut self, event: KvEvent) {
        if self.events.len() >= self.config.max_events {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    /// Collects tombstones older than the grace (not while catching up
    /// after a long absence: they guard against old values pulled back).
    /// Nor while this node has been out of touch for longer than the
    /// grace: its tombstones are what keeps its deletions alive when it
    /// meets peers holding the old values again.
    fn collect(&mut self, now: Instant) {
        let wall = self.wall.millis(now);
        let out_of_touch = self
            .last_contact_ms
            .is_some_and(|c| wall.saturating_sub(c) > self.grace_ms());
        if self.trust_old || out_of_touch {
            return;
        }
        let horizon = self.wall.millis(now).saturating_sub(self.grace_ms());
        let keys = self.index.tombstones_before(Version::stamp_of(horizon));
        let expired = self.guards.before(Version::stamp_of(horizon));
        if keys.is_empty() && expired.is_empty() {
            return;
        }
        let mut ops = Vec::with_capacity(keys.len() + expired.len());
        let mut raised = BTreeSet::new();
        for (hash, version) in expired {
            // The guard's end is its tombstone's collection by the grace.
            let b = self.bucket(hash);
            if version.stamp > self.horizon[b] {
                self.horizon[b] = version.stamp;
                raised.insert(b);
            }
            self.guards.remove(hash);
            self.stats.guards_expired += 1;
            ops.push(StoreOp::Unguard(hash));
        }
        for key in keys {
            if let Some(entry) = self.index.get(&key) {
                let b = self.bucket(entry.hash());
                if entry.version.stamp > self.horizon[b] {
                    self.horizon[b] = entry.version.stamp;
                    raised.insert(b);
                }
            }
            self.index.remove(&key);
            self.stats.collected += 1;
            ops.push(StoreOp::Remove(key));
        }
        // The horizon first: a crash in between leaves it ahead of the
        // removals, which only refuses more.
        for b in raised {
            if self
                .storage
                .set_meta(&format!("{META_HORIZON}{b}"), self.horizon[b])
                .is_err()
            {
                self.stats.storage_errors += 1;
            }
        }
        self.persist(&ops);
    }

    /// The horizon bucket of a key hash.
    fn bucket(&self, hash: u64) -> usize {
        ((hash >> 32) % u64::from(self.config.horizon_buckets)) as usize
    }

    /// Drops every live entry older than the grace (after a long
    /// absence: they may be keys deleted meanwhile whose tombstones are
    /// gone). Tombstones stay until the catch-up is over, so that what
    /// this node deleted stays deleted.
    fn drop_old(&mut self, now: Instant) {
        let horizon = self.wall.millis(now).saturating_sub(self.grace_ms());
        let old: Vec<Vec<u8>> = self
            .index
            .iter()
            .filter(|e| !e.is_tombstone() && e.version.millis() < horizon)
            .map(|e| e.key.clone())
            .collect();
        let mut ops = Vec::with_capacity(old.len());
        for key in old {
            self.index.remove(&key);
            self.stats.dropped_stale += 1;
            ops.push(StoreOp::Remove(key));
        }
        self.persist(&ops);
    }

    fn start_catch_up(&mut self, from_stamp: u64) {
        self.catch_up_from = Cursor {
            version: Version {
                stamp: from_stamp,
                origin: 0,
            },
            hash: 0,
        };
        self.catch_up = Some(CatchUp::new(
            self.config.catch_up_streams,
            self.catch_up_from,
        ));
    }

    fn contact(&mut self, now: Instant) {
        let ms = self.wall.millis(now);
        self.last_contact_ms = Some(ms);
        // Persisted at most every 5 s: a restart catches up from a little
        // earlier than needed, never later.
        if self
            .persisted_contact_ms
            .is_none_or(|p| ms.saturating_sub(p) >= 5_000)
        {
            if self.storage.set_meta(META_CONTACT, ms).is_err() {
                self.stats.storage_errors += 1;
            }
            self.persisted_contact_ms = Some(ms);
        }
    }

    // ----- early collection ------------------------------------------------

    /// Queues `id` for the next batch, counting it if the outbox is full.
    fn queue(&mut self, to: Queue, id: TombstoneId) {
        let max = self.config.max_pending_acks;
        let queued = match to {
            Queue::Ack(tag) => self.acks.push(tag, id, max),
            Queue::Request(peer) => self.requests.push(peer, id, max),
            Queue::Collect(peer) => self.collects.push(peer, id, max),
        };
        if !queued {
            self.stats.outbox_dropped += 1;
        }
    }

    /// Arms the batch timer if anything waits for it.
    fn arm_flush(&mut self, now: Instant) {
        let pending = !(self.tracker.tracked.is_empty()
            && self.acks.is_empty()
            && self.requests.is_empty()
            && self.collects.is_empty());
        if pending && self.next_flush.is_none() {
            self.next_flush = Some(now + self.config.ack_interval);
        }
    }

    /// Starts awaiting the acknowledgements of this node's deletion of
    /// `key` from every member alive now.
    fn track(&mut self, now: Instant, key: Vec<u8>, version: Version, cluster: &dyn Cluster) {
        if self.config.max_tracked_tombstones == 0 {
            return;
        }
        if self.tracker.tracked.len() >= self.config.max_tracked_tombstones {
            self.stats.tracking_given_up += 1;
            return;
        }
        self.refresh_roster(now, cluster, true);
        let members: Vec<(u64, bool)> = self.roster.live.keys().map(|&t| (t, false)).collect();
        let id = TombstoneId {
            hash: super::hash::key_hash(&key),
            version,
        };
        self.tracker.tracked.insert(
            id,
            Tracked {
                key,
                members,
                next_ask: now + self.config.ack_retry,
            },
        );
        self.arm_flush(now);
    }

    /// Re-reads the member table if it is older than a batch interval
    /// (or `force`).
    fn refresh_roster(&mut self, now: Instant, cluster: &dyn Cluster, force: bool) {
        let fresh = self
            .roster
            .at
            .is_some_and(|at| now < at + self.config.ack_interval);
        if force || !fresh {
            self.roster.refresh(self.me, cluster);
            self.roster.at = Some(now);
        }
    }

    /// Replaces whatever this node holds for `id`'s key hash at or below
    /// its version by the guard: the tombstone is collected.
    fn collect_early(&mut self, now: Instant, id: TombstoneId) -> bool {
        let victims: Vec<Entry> = self
            .index
            .range(id.hash, id.hash)
            .map(|(e, _)| e)
            .filter(|e| e.version <= id.version)
            .cloned()
            .collect();
        if victims.is_empty() {
            return false;
        }
        let mut ops = Vec::with_capacity(victims.len() + 1);
        for entry in victims {
            if !entry.is_tombstone() {
                // A value older than the deletion, never replaced here by
                // its tombstone: it is deleted now.
                self.push_event(KvEvent {
                    key: entry.key.clone(),
                    value: None,
                    version: id.version,
                    at: now,
                    local: false,
                });
            }
            self.index.remove(&entry.key);
            ops.push(StoreOp::Remove(entry.key));
        }
        let version = self.guards.insert(id.hash, id.version);
        ops.push(StoreOp::Guard {
            hash: id.hash,
            version,
        });
        self.stats.collected_early += 1;
        self.persist(&ops);
        true
    }

    /// Tombstone ids of a message, at most what one message may carry.
    fn bounded(&self, ids: Vec<TombstoneId>) -> impl Iterator<Item = TombstoneId> {
        ids.into_iter().take(self.config.max_message_len / 3)
    }

    fn on_ack(&mut self, now: Instant, from: NodeId, ids: Vec<TombstoneId>, cluster: &dyn Cluster) {
        self.refresh_roster(now, cluster, false);
        let tag = self.roster.tag(from);
        let member = self.roster.live.contains_key(&tag);
        for id in self.bounded(ids) {
            self.stats.acks_received += 1;
            if id.version.origin != self.tag || !member {
                self.stats.acks_ignored += 1;
                continue;
            }
            if let Some(tracked) = self.tracker.tracked.get_mut(&id) {
                if !tracked.ack(tag) {
                    self.stats.acks_ignored += 1;
                }
                continue;
            }
            if self.guards.get(id.hash) == Some(id.version) {
                // Collected already: the peer is a straggler.
                self.queue(Queue::Collect(from), id);
            } else {
                self.stats.acks_ignored += 1;
            }
        }
    }

    fn on_ack_request(
        &mut self,
        now: Instant,
        from: NodeId,
        ids: Vec<TombstoneId>,
        cluster: &dyn Cluster,
    ) {
        self.refresh_roster(now, cluster, false);
        let tag = self.roster.tag(from);
        if !self.roster.live.contains_key(&tag) {
            self.stats.acks_ignored += 1;
            return;
        }
        for id in self.bounded(ids) {
            let holds = self.index.range(id.hash, id.hash).any(|(e, _)| {
                e.version > id.version || (e.version == id.version && e.is_tombstone())
            });
            if holds && id.version.origin != self.tag {
                self.queue(Queue::Ack(id.version.origin), id);
            } else {
                self.stats.acks_ignored += 1;
            }
        }
    }

    fn on_collect(
        &mut self,
        now: Instant,
        from: NodeId,
        ids: Vec<TombstoneId>,
        cluster: &dyn Cluster,
    ) {
        self.refresh_roster(now, cluster, false);
        let tag = self.roster.tag(from);
        let limit = self
            .wall
            .millis(now)
            .saturating_add(self.config.max_clock_skew.as_millis() as u64);
        for id in self.bounded(ids) {
            // Only the deleter's own word counts.
            if id.version.origin != tag || id.version.millis() > limit {
                self.stats.collect_refused += 1;
                continue;
            }
            if !self.collect_early(now, id) {
                self.stats.acks_ignored += 1;
            }
        }
    }

    /// Sends what waits in the outboxes, at most
    /// [`KvConfig::ack_frames`] frames per destination, and moves this
    /// node's tracked deletions on: collected when every member alive at
    /// the deletion has acknowledged, asked again, or left to the grace.
    fn flush(&mut self, now: Instant, cluster: &mut dyn Cluster) {
        self.refresh_roster(now, cluster, true);
        let cut = Version::stamp_of(self.wall.millis(now).saturating_sub(self.grace_ms()));
        let mut done = Vec::new();
        let mut ask = Vec::new();
        for (id, tracked) in self.tracker.tracked.iter_mut() {
            let held = self
                .index
                .get(&tracked.key)
                .is_some_and(|e| e.is_tombstone() && e.version == id.version);
            if !held || id.version.stamp < cut {
                // Overwritten, or the grace collects it.
                done.push((*id, false));
                continue;
            }
            let waiting: Vec<u64> = tracked.waiting().collect();
            let mut died = false;
            for tag in waiting {
                match self.roster.state.get(&tag) {
                    None | Some(Liveness::Left) => tracked.forget(tag),
                    Some(Liveness::Dead) => died = true,
                    Some(_) => {}
                }
            }
            if died {
                // It may come back with an older value: the grace decides.
                self.stats.tracking_given_up += 1;
                done.push((*id, false));
            } else if tracked.waiting().next().is_none() {
                done.push((*id, true));
            } else if tracked.next_ask <= now {
                tracked.next_ask = now + self.config.ack_retry;
                for tag in tracked.waiting() {
                    if let Some(&peer) = self.roster.live.get(&tag) {
                        ask.push((peer, *id));
                    }
                }
            }
        }
        for (peer, id) in ask {
            self.queue(Queue::Request(peer), id);
        }
        for (id, complete) in done {
            let Some(tracked) = self.tracker.tracked.remove(&id) else {
                continue;
            };
            if !complete || !self.collect_early(now, id) {
                continue;
            }
            let peers: Vec<NodeId> = tracked
                .acked()
                .filter_map(|tag| self.roster.live.get(&tag).copied())
                .collect();
            for peer in peers {
                self.queue(Queue::Collect(peer), id);
            }
        }
        let per_frame = (Self::frame_room(cluster) / TOMBSTONE_ID_LEN).max(1);
        let per_flush = per_frame.saturating_mul(self.config.ack_frames);
        for (tag, ids) in self.acks.take(per_flush) {
            // A deleter no longer alive collects nothing early.
            if let Some(&deleter) = self.roster.live.get(&tag) {
                self.stats.acks_sent += ids.len() as u64;
                for chunk in ids.chunks(per_frame) {
                    let message = KvMessage::Ack {
                        tombstones: chunk.to_vec(),
                    };
                    self.send(now, deleter, &message, cluster);
                }
            }
        }
        for (peer, ids) in self.requests.take(per_flush) {
            for chunk in ids.chunks(per_frame) {
                let message = KvMessage::AckRequest {
                    tombstones: chunk.to_vec(),
                };
                self.send(now, peer, &message, cluster);
            }
        }
        for (peer, ids) in self.collects.take(per_flush) {
            for chunk in ids.chunks(per_frame) {
                let message = KvMessage::Collect {
                    tombstones: chunk.to_vec(),
                };
                self.send(now, peer, &message, cluster);
            }
        }
        self.next_flush = None;
        self.arm_flush(now);
    }

    // ----- sending -------------------------------------------------------

    fn send(&mut self, now: Instant, to: NodeId, message: &KvMessage, cluster: &mut dyn Cluster) {
        let payload = Channel::Kv.wrap(&message.encode());
        self.stats.bytes_sent += payload.len() as u64;
        // A peer that left meanwhile: the exchange times out.
        let _ = cluster.send_direct(now, to, &payload);
    }

    /// Room for a message's list in one frame.
    fn frame_room(cluster: &dyn Cluster) -> usize {
        cluster
            .max_direct_len()
            .saturating_sub(MESSAGE_OVERHEAD + 1)
    }

    /// Sends `entries` to `to` in frames, within `budget` bytes; returns
    /// the bytes sent.
    fn send_entries(
        &mut self,
        now: Instant,
        to: NodeId,
        session: u32,
        entries: Vec<Entry>,
        budget: usize,
        cluster: &mut dyn Cluster,
    ) -> usize {
        let room = Self::frame_room(cluster);
        let mut batch = Vec::new();
        let mut size = 0;
        let mut sent = 0;
        for entry in entries {
            let len = entry_len(&entry);
            if len > room {
                continue;
            }
            if sent + size + len > budget {
                self.stats.throttled += 1;
                break;
            }
            if size + len > room {
                sent += size;
                let full = std::mem::take(&mut batch);
                self.send(
                    now,
                    to,
                    &KvMessage::Entries {
                        session,
                        entries: full,
                    },
                    cluster,
                );
                size = 0;
            }
            size += len;
            batch.push(entry);
        }
        if !batch.is_empty() {
            sent += size;
            self.send(
                now,
                to,
                &KvMessage::Entries {
                    session,
                    entries: batch,
                },
                cluster,
            );
        }
        sent
    }

    fn live_peers(&self, cluster: &dyn Cluster) -> Vec<NodeId> {
        cluster
            .members()
            .into_iter()
            .filter(|m| m.liveness == Liveness::Alive && m.id != self.me)
            .map(|m| m.id)
            .collect()
    }

    fn budget(&mut self, now: Instant, peer: NodeId, want: usize) -> usize {
        self.budgets.take(
            peer,
            now,
            self.config.reply_bytes_per_s,
            want,
            self.config.max_budget_peers,
        )
    }

    // ----- anti-entropy: initiator ---------------------------------------

    fn start_exchange(&mut self, now: Instant, cluster: &mut dyn Cluster) {
        if self.exchanges.len() >= self.config.max_exchanges {
            return;
        }
        let peers = self.live_peers(cluster);
        let Some(&peer) = peers.choose(&mut self.rng) else {
            return;
        };
        let session = self.rng.random::<u32>();
        self.exchanges.insert(
            session,
            Exchange {
                peer,
                deadline: now + self.config.request_timeout,
                pending: 1,
            },
        );
        self.stats.exchanges += 1;
        let message = KvMessage::Root {
            session,
            digest: self.index.root().to_le_bytes(),
            count: self.index.len() as u64,
        };
        self.send(now, peer, &message, cluster);
    }

    /// The open exchange `session` with `from`, if there is one.
    fn exchange(&mut self, session: u32, from: NodeId) -> Option<&mut Exchange> {
        match self.exchanges.get_mut(&session) {
            Some(x) if x.peer == from => Some(x),
            _ => {
                self.stats.unsolicited += 1;
                None
            }
        }
    }

    /// One request of `session` is answered; the exchange ends with the
    /// last one.
    fn answered(&mut self, now: Instant, session: u32, more: u32) {
        let Some(x) = self.exchanges.get_mut(&session) else {
            return;
        };
        x.pending = x.pending - 1 + more;
        x.deadline = now + self.config.request_timeout;
        if x.pending == 0 {
            self.exchanges.remove(&session);
            self.stats.repaired += 1;
            self.contact(now);
        }
    }

    fn on_children(
        &mut self,
        now: Instant,
        from: NodeId,
        session: u32,
        nodes: Vec<(u8, u16, super::wire::Digests)>,
        cluster: &mut dyn Cluster,
    ) {
        if self.exchange(session, from).is_none() {
            return;
        }
        let mut expand = Vec::new();
        let mut pull = Vec::new();
        for (depth, prefix, theirs) in nodes.into_iter().take(NODES_PER_MESSAGE) {
            if !valid_node(depth, prefix) || depth >= MAX_DEPTH {
                continue;
            }
            let (mine, counts) = self.index.children(depth, prefix);
            for i in 0..16u16 {
                if mine[i as usize].to_le_bytes() == theirs[i as usize] {
                    continue;
                }
                let child = (depth + 1, prefix.wrapping_mul(16).wrapping_add(i));
                if child.0 == MAX_DEPTH || counts[i as usize] <= self.config.leaf_entries {
                    pull.push(child);
                } else {
                    expand.push(child);
                }
            }
        }
        let mut more = 0;
        for chunk in expand.chunks(NODES_PER_MESSAGE) {
            more += 1;
            let message = KvMessage::Expand {
                session,
                nodes: chunk.to_vec(),
            };
            self.send(now, from, &message, cluster);
        }
        // Pulls: the entries of each differing leaf, several leaves per
        // range when they fit a frame, a leaf split when it does not.
        let room = Self::frame_room(cluster);
        let per_frame = (room / 20).max(1);
        for (depth, prefix) in pull {
            let (lo, hi) = node_range(depth, prefix);
            let have: Vec<(u64, u64)> = self
                .index
                .range(lo, hi)
                .map(|(e, d)| (e.hash(), d))
                .collect();
            let mut start = lo;
            let mut i = 0;
            loop {
                let mut end = (i + per_frame).min(have.len());
                // Keys sharing a hash travel together.
                while end < have.len() && end > i && have[end].0 == have[end - 1].0 {
                    end += 1;
                }
                let last = end >= have.len();
                let range_hi = if last { hi } else { have[end - 1].0 };
                let message = KvMessage::Pull {
                    session,
                    lo: start,
                    hi: range_hi,
                    have: have[i..end]
                        .iter()
                        .map(|&(h, d)| (h, d.to_le_bytes()))
                        .collect(),
                };
                more += 1;
                self.send(now, from, &message, cluster);
                if last {
                    break;
                }
                start = range_hi + 1;
                i = end;
            }
        }
        self.answered(now, session, more);
    }

    // ----- anti-entropy: responder ---------------------------------------

    fn children_of(&self, nodes: &[(u8, u16)]) -> Vec<(u8, u16, super::wire::Digests)> {
        nodes
            .iter()
            .filter(|(d, p)| valid_node(*d, *p) && *d < MAX_DEPTH)
            .take(NODES_PER_MESSAGE)
            .map(|&(d, p)| (d, p, to_wire(&self.index.children(d, p).0)))
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn on_pull(
        &mut self,
        now: Instant,
        from: NodeId,
        session: u32,
        lo: u64,
        hi: u64,
        have: Vec<(u64, [u8; 8])>,
        cluster: &mut dyn Cluster,
    ) {
        if lo > hi {
            return;
        }
        let theirs: BTreeSet<(u64, u64)> = have
            .iter()
            .map(|&(h, d)| (h, u64::from_le_bytes(d)))
            .collect();
        let mut mine = BTreeSet::new();
        let mut give = Vec::new();
        for (entry, digest) in self.index.range(lo, hi) {
            let pair = (entry.hash(), digest);
            if !theirs.contains(&pair) {
                give.push(entry.clone());
            }
            mine.insert(pair);
        }
        let wants: BTreeSet<u64> = theirs
            .iter()
            .filter(|p| !mine.contains(p) && (lo..=hi).contains(&p.0))
            .map(|p| p.0)
            .collect();
        let want_bytes: usize = give.iter().map(entry_len).sum();
        let budget = self.budget(now, from, want_bytes);
        self.send_entries(now, from, session, give, budget, cluster);
        let message = KvMessage::Want {
            session,
            hashes: wants.into_iter().collect(),
        };
        self.send(now, from, &message, cluster);
    }

    fn on_want(
        &mut self,
        now: Instant,
        from: NodeId,
        session: u32,
        hashes: Vec<u64>,
        cluster: &mut dyn Cluster,
    ) {
        // A want ends a pull this node sent, or asks this node, which sent
        // a pull, for entries; either way it is answered only inside an
        // open exchange with that peer.
        if self.exchange(session, from).is_none() {
            return;
        }
        let mut give = Vec::new();
        for hash in hashes.iter().take(self.config.max_message_len / 8) {
            give.extend(self.index.range(*hash, *hash).map(|(e, _)| e.clone()));
        }
        let want_bytes: usize = give.iter().map(entry_len).sum();
        let budget = self.budget(now, from, want_bytes);
        self.send_entries(now, from, session, give, budget, cluster);
        self.answered(now, session, 0);
    }

    // ----- catch-up -----------------------------------------------------

    fn drive_catch_up(&mut self, now: Instant, cluster: &mut dyn Cluster) {
        let Some(catch_up) = self.catch_up.as_ref() else {
            return;
        };
        if catch_up.done() {
            self.catch_up = None;
            self.trust_old = false;
            self.stats.catch_ups += 1;
            self.contact(now);
            return;
        }
        let mut peers = self.live_peers(cluster);
        if peers.is_empty() {
            // Nobody to ask: requests that timed out are forgotten, so no
            // deadline stays due; a member coming up or the next sync
            // tick drives the catch-up again.
            if let Some(catch_up) = self.catch_up.as_mut() {
                for stream in &mut catch_up.streams {
                    if stream.asked.is_some_and(|(_, _, d)| d <= now) {
                        stream.asked = None;
                    }
                }
            }
            return;
        }
        // A few peers, chosen at random once per call.
        let k = self.config.catch_up_peers.min(peers.len());
        let (chosen, _) = peers.partial_shuffle(&mut self.rng, k);
        let chosen = chosen.to_vec();
        let mut requests = Vec::new();
        let catch_up = self.catch_up.as_mut().expect("checked above");
        let timeout = catch_up.rtt.timeout(
            self.config.catch_up_min_timeout,
            self.config.request_timeout,
        );
        for (i, stream) in catch_up.streams.iter_mut().enumerate() {
            if stream.done {
                continue;
            }
            let due = match stream.asked {
                None => true,
                Some((_, _, deadline)) => deadline <= now,
            };
            if !due {
                continue;
            }
            let peer = chosen[i % chosen.len()];
            let session = self.rng.random::<u32>();
            stream.asked = Some((peer, session, now + timeout));
            stream.sent = Some(now);
            requests.push((
                peer,
                KvMessage::Since {
                    session,
                    after: stream.cursor,
                    lo: stream.lo,
                    hi: stream.hi,
                },
            ));
        }
        for (peer, message) in requests {
            self.send(now, peer, &message, cluster);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_since(
        &mut self,
        now: Instant,
        from: NodeId,
        session: u32,
        after: Cursor,
        lo: u16,
        hi: u16,
        cluster: &mut dyn Cluster,
    ) {
        if lo > hi {
            return;
        }
        let room = Self::frame_room(cluster);
        let (range_lo, _) = node_range(MAX_DEPTH, lo);
        let (_, range_hi) = node_range(MAX_DEPTH, hi);
        let mut candidates: Vec<(Cursor, &Entry)> = self
            .index
            .range(range_lo, range_hi)
            .map(|(e, _)| {
                (
                    Cursor {
                        version: e.version,
                        hash: e.hash(),
                    },
                    e,
                )
            })
            .filter(|(c, _)| *c > after)
            .collect();
        candidates.sort_by_key(|c| c.0);
        let mut entries = Vec::new();
        let mut size = 0;
        let mut more = false;
        for (_, entry) in &candidates {
            let len = entry_len(entry);
            if size + len > room {
                more = true;
                break;
            }
            size += len;
            entries.push((*entry).clone());
        }
        // Keys sharing a version and hash stay together across pages: cut
        // before a group that would straddle the page boundary.
        if more {
            while entries.len() > 1 {
                let n = entries.len();
                let last = Cursor {
                    version: entries[n - 1].version,
                    hash: entries[n - 1].hash(),
                };
                if candidates[n].0 == last {
                    entries.pop();
                } else {
                    break;
                }
            }
        }
        let granted = self.budget(now, from, size);
        if granted < size {
            // Out of budget for this peer: no answer; it asks again later.
            self.stats.throttled += 1;
            return;
        }
        let message = KvMessage::Page {
            session,
            entries,
            more,
        };
        self.send(now, from, &message, cluster);
    }

    fn on_page(
        &mut self,
        now: Instant,
        from: NodeId,
        session: u32,
        entries: Vec<Entry>,
        more: bool,
        cluster: &mut dyn Cluster,
    ) {
        let Some(catch_up) = self.catch_up.as_mut() else {
            self.stats.unsolicited += 1;
            return;
        };
        let Some(stream) = catch_up
            .streams
            .iter_mut()
            .find(|s| matches!(s.asked, Some((p, n, _)) if p == from && n == session))
        else {
            self.stats.unsolicited += 1;
            return;
        };
        // Only entries of the stream's range, after its cursor, count.
        let (lo, _) = node_range(MAX_DEPTH, stream.lo);
        let (_, hi) = node_range(MAX_DEPTH, stream.hi);
        let mut last = stream.cursor;
        let mut accepted = Vec::with_capacity(entries.len());
        for entry in entries {
            let cursor = Cursor {
                version: entry.version,
                hash: entry.hash(),
            };
            if cursor > last && (lo..=hi).contains(&cursor.hash) {
                last = cursor;
                accepted.push(entry);
            }
        }
        stream.asked = None;
        if let Some(sent) = stream.sent.take() {
            catch_up.rtt.sample(now.saturating_duration_since(sent));
        }
        if accepted.is_empty() && more {
            // A page that moved nothing forward: ask someone else later.
            stream.asked = Some((from, 0, now + self.config.request_timeout));
        } else {
            stream.cursor = last;
            stream.done = !more;
        }
        self.stats.pages += 1;
        self.apply_all(now, accepted, Source::Page(from), cluster);
        self.drive_catch_up(now, cluster);
    }

    // ----- dispatch -------------------------------------------------------

    fn on_direct(&mut self, now: Instant, from: NodeId, body: &[u8], cluster: &mut dyn Cluster) {
        self.stats.bytes_received += body.len() as u64 + 1;
        let message = match KvMessage::decode(body, self.config.max_message_len) {
            Ok(m) => m,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        match message {
            KvMessage::Write(entry) => {
                self.apply_all(now, vec![entry], Source::Peer(from), cluster)
            }
            KvMessage::Root {
                session, digest, ..
            } => {
                if self.catch_up.is_some() {
                    // Catching up: no tree exchanges until done.
                    return;
                }
                if digest == self.index.root().to_le_bytes() {
                    self.contact(now);
                    self.send(now, from, &KvMessage::Equal { session }, cluster);
                } else {
                    let nodes = self.children_of(&[(0, 0)]);
                    let message = KvMessage::Children { session, nodes };
                    let len = message.encode().len();
                    if self.budget(now, from, len) == len {
                        self.send(now, from, &message, cluster);
                    } else {
                        self.stats.throttled += 1;
                    }
                }
            }
            KvMessage::Equal { session } => {
                if self.exchange(session, from).is_some() {
                    self.exchanges.remove(&session);
                    self.stats.equal += 1;
                    self.contact(now);
                }
            }
            KvMessage::Children { session, nodes } => {
                self.on_children(now, from, session, nodes, cluster)
            }
            KvMessage::Expand { session, nodes } => {
                let nodes = self.children_of(&nodes);
                let message = KvMessage::Children { session, nodes };
                let len = message.encode().len();
                if self.budget(now, from, len) == len {
                    self.send(now, from, &message, cluster);
                } else {
                    self.stats.throttled += 1;
                }
            }
            KvMessage::Pull {
                session,
                lo,
                hi,
                have,
            } => self.on_pull(now, from, session, lo, hi, have, cluster),
            KvMessage::Want { session, hashes } => {
                self.on_want(now, from, session, hashes, cluster)
            }
            KvMessage::Entries { entries, .. } => {
                self.apply_all(now, entries, Source::Peer(from), cluster)
            }
            KvMessage::Since {
                session,
                after,
                lo,
                hi,
            } => self.on_since(now, from, session, after, lo, hi, cluster),
            KvMessage::Page {
                session,
                entries,
                more,
            } => self.on_page(now, from, session, entries, more, cluster),
            KvMessage::Ack { tombstones } => self.on_ack(now, from, tombstones, cluster),
            KvMessage::AckRequest { tombstones } => {
                self.on_ack_request(now, from, tombstones, cluster)
            }
            KvMessage::Collect { tombstones } => self.on_collect(now, from, tombstones, cluster),
        }
    }
}

/// Why a store could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvSetupError<E: std::error::Error + 'static> {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(KvConfigError),
    /// The storage failed to load.
    #[error("loading the store: {0}")]
    Storage(#[source] E),
}

impl<St: Storage + 'static> Application for Kv<St> {
    fn handle_event(&mut self, now: Instant, event: &Event, cluster: &mut dyn Cluster) {
        match event {
            Event::Delivered { payload, .. } => {
                let Some(body) = Channel::Kv.open(payload) else {
                    return;
                };
                self.stats.bytes_received += payload.len() as u64;
                match KvMessage::decode(body, self.config.max_message_len) {
                    Ok(KvMessage::Write(entry)) => {
                        self.apply_all(now, vec![entry], Source::Rumor, cluster)
                    }
                    _ => self.stats.malformed += 1,
                }
            }
            Event::Direct { from, payload } => {
                if let Some(body) = Channel::Kv.open(payload) {
                    self.on_direct(now, *from, body, cluster);
                }
            }
            Event::MemberUp(_) if self.catch_up.is_some() => {
                self.drive_catch_up(now, cluster);
            }
            _ => {}
        }
        if self.next_sync.is_none() {
            let jitter = self.config.sync_interval.mul_f64(self.rng.random::<f64>());
            self.next_sync = Some(now + jitter);
        }
        self.arm_flush(now);
    }

    fn handle_timeout(&mut self, now: Instant, cluster: &mut dyn Cluster) {
        let timeouts: Vec<u32> = self
            .exchanges
            .iter()
            .filter(|(_, x)| x.deadline <= now)
            .map(|(s, _)| *s)
            .collect();
        for session in timeouts {
            self.exchanges.remove(&session);
            self.stats.timeouts += 1;
        }
        if self.catch_up.is_some() {
            self.drive_catch_up(now, cluster);
        }
        if self.next_flush.is_some_and(|t| t <= now) {
            self.flush(now, cluster);
        }
        if self.next_sync.is_some_and(|t| t <= now) {
            self.next_sync = Some(now + self.config.sync_interval);
            self.collect(now);
            let wall = self.wall.millis(now);
            let away = self
                .last_contact_ms
                .is_some_and(|c| wall.saturating_sub(c) > self.grace_ms());
            if away && self.catch_up.is_none() && !self.live_peers(cluster).is_empty() {
                // Out of touch for longer than the grace while running (a
                // partition of one): what it holds may be deleted keys.
                self.drop_old(now);
                self.trust_old = true;
                self.start_catch_up(0);
                self.drive_catch_up(now, cluster);
            } else if self.catch_up.is_none() {
                self.start_exchange(now, cluster);
            }
        }
        self.arm_flush(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let exchanges = self.exchanges.values().map(|x| x.deadline).min();
        let streams = self.catch_up.as_ref().and_then(|c| {
            c.streams
                .iter()
                .filter(|s| !s.done)
                .filter_map(|s| s.asked.map(|(_, _, d)| d))
                .min()
        });
        [self.next_sync, exchanges, streams, self.next_flush]
            .into_iter()
            .flatten()
            .min()
    }
}
