//! State synchronisation: bulk exchange of views, under a byte budget.
//!
//! A join answer or a sync reply can be many frames for a one-frame
//! request, so every such answer draws on one token bucket of bytes
//! ([`StateSync::allow`] before, [`StateSync::charge`] after): without it a
//! forged source address would turn the node into an amplifier.

use std::net::SocketAddr;
use std::time::Instant;

use crate::config::Config;
use crate::id::NodeId;
use crate::membership::{is_live, rank, FastMap, Version};
use crate::wire::{self, Header, Message, SyncEntry};

use super::outbox::Outbox;

/// An id range `(after, through]`; `None` leaves that end open.
pub(crate) type Range = (Option<NodeId>, Option<NodeId>);

/// A token bucket of reply bytes.
#[derive(Debug, Default, Clone, Copy)]
struct Bucket {
    /// Bytes that may still be sent now (may go negative).
    tokens: f64,
    refilled_at: Option<Instant>,
}

impl Bucket {
    /// Refills up to `now` at `rate` bytes a second, capped at `burst`; a
    /// new bucket starts full.
    fn refill(&mut self, now: Instant, rate: u64, burst: u64) {
        let burst = burst as f64;
        self.tokens = match self.refilled_at {
            Some(at) => (self.tokens
                + now.saturating_duration_since(at).as_secs_f64() * rate as f64)
                .min(burst),
            None => burst,
        };
        self.refilled_at = Some(now);
    }
}

/// The reply budget and the pace of syncs this node starts.
///
/// Every state reply draws on the node-wide bucket and on its
/// destination's own: one member asking again and again cannot take the
/// whole budget from the others. The per-destination buckets are bounded
/// by `max_reply_sources`; the one refilled longest ago makes room.
#[derive(Debug, Default)]
pub(crate) struct StateSync {
    global: Bucket,
    sources: FastMap<SocketAddr, Bucket>,
    /// No sync is started before this.
    next_start_at: Option<Instant>,
    /// The table size last observed, and since when it has not grown.
    view_len: usize,
    settled_since: Option<Instant>,
    /// When this node last started a sync (or first observed its view).
    last_started_at: Option<Instant>,
}

impl StateSync {
    /// Refills the buckets up to `now`; whether a state reply to `to` may
    /// be sent.
    pub(crate) fn allow(&mut self, now: Instant, config: &Config, to: SocketAddr) -> bool {
        self.global.refill(
            now,
            config.state_reply_bytes_per_s,
            config.state_reply_burst_bytes,
        );
        if !self.sources.contains_key(&to) && self.sources.len() >= config.max_reply_sources.get() {
            // Bounded by configuration, and only when a new destination
            // arrives while the table is full.
            let stalest = self
                .sources
                .iter()
                .min_by_key(|(addr, b)| (b.refilled_at, **addr))
                .map(|(addr, _)| *addr);
            if let Some(addr) = stalest {
                self.sources.remove(&addr);
            }
        }
        let source = self.sources.entry(to).or_default();
        source.refill(
            now,
            config.source_reply_bytes_per_s,
            config.source_reply_burst_bytes,
        );
        self.global.tokens > 0.0 && source.tokens > 0.0
    }

    /// Takes `bytes` of replies sent to `to` out of the buckets.
    pub(crate) fn charge(&mut self, to: SocketAddr, bytes: usize) {
        self.global.tokens -= bytes as f64;
        if let Some(source) = self.sources.get_mut(&to) {
            source.tokens -= bytes as f64;
        }
    }

    /// Notes how many members this node's table holds at `now`, to tell
    /// a view still growing (members still joining) from a settled one.
    /// Only growth counts: suspicions, refutations and deaths change the
    /// view hash, and a sync is what repairs them.
    pub(crate) fn observe(&mut self, now: Instant, len: usize) {
        if self.settled_since.is_none() || len > self.view_len {
            self.settled_since = Some(now);
        }
        self.view_len = len;
        self.last_started_at.get_or_insert(now);
    }

    /// Whether a sync may start at `now`: one `sync_interval` after the
    /// last, and only once this node's view has held still for
    /// `sync_quiet_period` (while it still grows, gossip is still
    /// bringing the news a sync would, at a fraction of the bytes), unless
    /// no sync has started for `sync_max_deferral`.
    pub(crate) fn may_start(&self, now: Instant, config: &Config) -> bool {
        let paced = self.next_start_at.is_none_or(|t| t <= now);
        let settled = self
            .settled_since
            .is_none_or(|t| now.saturating_duration_since(t) >= config.sync_quiet_period);
        let overdue = self
            .last_started_at
            .is_some_and(|t| now.saturating_duration_since(t) >= config.sync_max_deferral);
        paced && (settled || overdue)
    }

    /// A sync started at `now`.
    pub(crate) fn started(&mut self, now: Instant, config: &Config) {
        self.next_start_at = Some(now + config.sync_interval);
        self.last_started_at = Some(now);
    }
}

/// Join answers waiting to be sent, oldest first, each with the nonce its
/// request carried.
///
/// A seed does not answer a join at once: it waits `join_answer_delay`
/// so that the members joining together (a cold start) all get one
/// answer listing each other, instead of the early ones learning the late
/// ones as news, one challenge per pair. Answers then leave as fast as the
/// reply budget allows, oldest first; one that does not fit waits for the
/// budget to refill instead of being dropped, so that a cold start is
/// paced rather than retried. A member asking again while it waits is
/// queued once, with its latest nonce. Every entry is a live member of the
/// view, so the queue is bounded by `max_members`.
#[derive(Debug, Default)]
pub(crate) struct JoinAnswers {
    order: std::collections::VecDeque<NodeId>,
    nonces: FastMap<NodeId, u32>,
}

impl JoinAnswers {
    /// Queues an answer to `id`'s join, which carried `nonce` (once: a
    /// member already waiting keeps its place and takes the new nonce).
    pub(crate) fn push(&mut self, id: NodeId, nonce: u32) {
        if self.nonces.insert(id, nonce).is_none() {
            self.order.push_back(id);
        }
    }

    /// The oldest waiting answer, without taking it.
    pub(crate) fn front(&self) -> Option<(NodeId, u32)> {
        let id = *self.order.front()?;
        Some((id, self.nonces[&id]))
    }

    /// Takes the oldest waiting answer.
    pub(crate) fn pop(&mut self) -> Option<(NodeId, u32)> {
        let id = self.order.pop_front()?;
        let nonce = self.nonces.remove(&id).expect("queued ids have a nonce");
        if self.order.is_empty() {
            // A cold start queues every member at once: give that room back.
            self.order.shrink_to_fit();
            self.nonces.shrink_to_fit();
        }
        Some((id, nonce))
    }

    /// A departed node answers nobody.
    pub(crate) fn clear(&mut self) {
        self.order.clear();
        self.nonces.clear();
    }
}

/// What a sync frame listed, sorted by id, to answer with only what its
/// sender lacks: `(id, version, rank of liveness)`.
pub(crate) fn listed(entries: &[SyncEntry]) -> Vec<(NodeId, Version, u8)> {
    let mut listed: Vec<_> = entries
        .iter()
        .map(|e| (e.id, (e.generation, e.incarnation), rank(e.liveness)))
        .collect();
    listed.sort_unstable();
    listed
}

/// The entries of `view` in `range` that we know in a newer or stronger
/// state than `listed` says, and live ones it lacks, sorted by id.
pub(crate) fn missing(
    view: impl Iterator<Item = SyncEntry>,
    range: Range,
    listed: &[(NodeId, Version, u8)],
) -> Vec<SyncEntry> {
    let (after, through) = range;
    let mut missing: Vec<SyncEntry> = view
        .filter(|m| after.is_none_or(|a| m.id > a) && through.is_none_or(|t| m.id <= t))
        .filter(|m| match listed.binary_search_by_key(&m.id, |l| l.0) {
            Ok(i) => {
                let (_, version, strength) = listed[i];
                ((m.generation, m.incarnation), rank(m.liveness)) > (version, strength)
            }
            // Dead or departed strangers would be ignored anyway.
            Err(_) => is_live(m.liveness),
        })
        .collect();
    missing.sort_unstable_by_key(|m| m.id);
    missing
}

/// Packs `view` (sorted by id) into sync frames of at most `max` bytes and
/// returns the bytes queued. Each frame covers the ids after the previous
/// frame's last one through its own last one; the first and last frames
/// extend to the ends of `range`. With `reply`, every frame asks the
/// receiver for what it knows better in that frame's range. Every frame
/// carries `nonce`: a request's own, or the one of the request answered.
#[allow(clippy::too_many_arguments)] // one frame's fields, each needed
pub(crate) fn pack(
    outbox: &mut Outbox,
    header: &Header<'_>,
    max: usize,
    to: SocketAddr,
    reply: bool,
    nonce: u32,
    view: Vec<SyncEntry>,
    range: Range,
) -> usize {
    // Frame overhead with both bounds absent, plus room for the largest
    // bounds and a three-byte element count.
    let bare = wire::encoded_len(&(
        header,
        Message::Sync {
            reply,
            nonce,
            after: None,
            through: None,
            entries: Vec::new(),
        },
    )) + 2 * wire::MAX_NODE_ID_LEN
        + 2;
    let mut sent = 0;
    let mut entries: Vec<SyncEntry> = Vec::new();
    let mut used = bare;
    let mut after = range.0;
    let mut view = view.into_iter().peekable();
    while let Some(member) = view.next() {
        // Each id travels as a step from the one before it in its frame.
        let previous = entries.last().map(|m: &SyncEntry| m.id);
        used += wire::sync_entry_len(previous, &member);
        let last = member.id;
        entries.push(member);
        let through = match view.peek() {
            Some(next) if used + wire::sync_entry_len(Some(last), next) <= max => continue,
            Some(_) => entries.last().map(|m| m.id),
            None => range.1,
        };
        let message = Message::Sync {
            reply,
            nonce,
            after,
            through,
            entries: core::mem::take(&mut entries),
        };
        sent += outbox.push_frame(header, to, &message);
        after = through;
        used = bare;
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{Generation, Incarnation};
    use crate::member::Liveness;
    use core::time::Duration;

    #[allow(clippy::disallowed_methods)] // an arbitrary origin; only differences matter
    fn origin() -> Instant {
        Instant::now()
    }

    fn entry(port: u16, incarnation: u32, liveness: Liveness) -> SyncEntry {
        SyncEntry {
            id: NodeId::new(SocketAddr::from(([127, 0, 0, 1], port))),
            generation: Generation(1),
            incarnation: Incarnation(incarnation),
            liveness,
            metadata: Vec::new(),
        }
    }

    #[test]
    fn budget_refills_at_its_rate_and_charges_what_was_sent() {
        let (now, mut config) = (origin(), Config::default());
        config.state_reply_bytes_per_s = 1000;
        config.state_reply_burst_bytes = 2000;
        let (a, b) = (
            entry(1, 0, Liveness::Alive).id.addr(),
            entry(2, 0, Liveness::Alive).id.addr(),
        );
        let mut sync = StateSync::default();
        assert!(sync.allow(now, &config, a), "starts full");
        sync.charge(a, 2500);
        assert!(!sync.allow(now, &config, b), "overdrawn");
        assert!(!sync.allow(now + Duration::from_millis(400), &config, b));
        assert!(sync.allow(now + Duration::from_millis(600), &config, b));
        assert!(sync.may_start(now, &config));
        sync.started(now, &config);
        assert!(!sync.may_start(now, &config));
        assert!(sync.may_start(now + config.sync_interval, &config));
    }

    #[test]
    fn no_sync_while_the_view_still_grows_unless_overdue() {
        let (now, mut config) = (origin(), Config::default());
        config.sync_interval = Duration::from_secs(1);
        config.sync_quiet_period = Duration::from_secs(5);
        config.sync_max_deferral = Duration::from_secs(30);
        let mut sync = StateSync::default();
        let at = |s: u64| now + Duration::from_secs(s);
        sync.observe(at(0), 1);
        assert!(!sync.may_start(at(1), &config), "the view just changed");
        sync.observe(at(4), 2);
        assert!(!sync.may_start(at(8), &config), "changed again at 4 s");
        sync.observe(at(9), 2);
        assert!(sync.may_start(at(9), &config), "unchanged since 4 s");
        sync.started(at(9), &config);
        sync.observe(at(10), 1);
        assert!(
            sync.may_start(at(11), &config),
            "a shrinking table is not growth"
        );
        // A view that never settles still syncs once per deferral.
        for s in 10..39 {
            sync.observe(at(s), s as usize);
            assert!(!sync.may_start(at(s), &config));
        }
        sync.observe(at(39), 39);
        assert!(sync.may_start(at(39), &config), "overdue");
    }

    #[test]
    fn one_destination_cannot_spend_the_others_budget() {
        let (now, mut config) = (origin(), Config::default());
        config.state_reply_bytes_per_s = 10_000;
        config.state_reply_burst_bytes = 10_000;
        config.source_reply_bytes_per_s = 100;
        config.source_reply_burst_bytes = 1000;
        config.max_reply_sources = core::num::NonZeroUsize::new(2).unwrap();
        let addr = |port| entry(port, 0, Liveness::Alive).id.addr();
        let mut sync = StateSync::default();
        assert!(sync.allow(now, &config, addr(1)));
        sync.charge(addr(1), 1500);
        assert!(
            !sync.allow(now, &config, addr(1)),
            "its own bucket is spent"
        );
        assert!(sync.allow(now, &config, addr(2)), "another's is not");
        // A third destination evicts the stalest bucket, bounded at two.
        let later = now + Duration::from_millis(1);
        assert!(sync.allow(later, &config, addr(3)));
        sync.charge(addr(3), 10);
        assert_eq!(sync.sources.len(), 2);
    }

    #[test]
    fn answers_only_what_the_asker_lacks_within_its_range() {
        let ours = vec![
            entry(1, 0, Liveness::Alive),
            entry(2, 3, Liveness::Alive),
            entry(3, 0, Liveness::Dead),
            entry(4, 0, Liveness::Alive),
        ];
        let theirs = listed(&[entry(2, 1, Liveness::Alive), entry(1, 0, Liveness::Alive)]);
        let range = (None, Some(entry(3, 0, Liveness::Alive).id));
        let answer: Vec<u16> = missing(ours.into_iter(), range, &theirs)
            .iter()
            .map(|e| e.id.addr().port())
            .collect();
        assert_eq!(
            answer,
            [2],
            "newer 2 only: 1 is known, 3 is a dead stranger, 4 out of range"
        );
    }

    #[test]
    fn packing_covers_the_whole_range_in_frames_that_fit() {
        let config = Config::default();
        let header = Header {
            version: wire::PROTOCOL_VERSION,
            label: "",
            sender: entry(9, 0, Liveness::Alive).id,
            generation: Generation(1),
            incarnation: Incarnation(0),
        };
        let view: Vec<SyncEntry> = (1..=200).map(|p| entry(p, 0, Liveness::Alive)).collect();
        let mut outbox = Outbox::default();
        let to = "127.0.0.1:9".parse().unwrap();
        let sent = pack(&mut outbox, &header, 300, to, true, 77, view, (None, None));
        let mut frames = Vec::new();
        while let Some(t) = outbox.poll_transmit() {
            assert!(t.bytes.len() <= 300);
            frames.push(wire::decode(&config, &t.bytes).unwrap().1);
        }
        assert_eq!(sent as u64, outbox.stats.bytes_sent);
        assert!(frames.len() > 1);
        let mut covered = 0;
        let mut previous_through = None;
        for frame in &frames {
            let Message::Sync {
                after,
                through,
                entries,
                reply,
                nonce,
            } = frame
            else {
                panic!("only sync frames");
            };
            assert!(reply);
            assert_eq!(*nonce, 77, "every frame carries the nonce");
            assert_eq!(*after, previous_through, "ranges are contiguous");
            previous_through = *through;
            covered += entries.len();
        }
        assert_eq!(previous_through, None, "the last frame runs to the end");
        assert_eq!(covered, 200);
    }
}
