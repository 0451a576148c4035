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
use crate::membership::{is_live, rank, Version};
use crate::wire::{self, Header, Message, SyncEntry};

use super::outbox::Outbox;

/// An id range `(after, through]`; `None` leaves that end open.
pub(crate) type Range = (Option<NodeId>, Option<NodeId>);

/// The reply budget and the pace of syncs this node starts.
#[derive(Debug, Default)]
pub(crate) struct StateSync {
    /// Bytes of state replies this node may still send now (may go negative).
    tokens: f64,
    refilled_at: Option<Instant>,
    /// No sync is started before this.
    next_start_at: Option<Instant>,
}

impl StateSync {
    /// Refills the bucket up to `now`; whether a state reply may be sent.
    pub(crate) fn allow(&mut self, now: Instant, config: &Config) -> bool {
        let rate = config.state_reply_bytes_per_s as f64;
        let burst = config.state_reply_burst_bytes as f64;
        self.tokens = match self.refilled_at {
            Some(at) => {
                (self.tokens + now.saturating_duration_since(at).as_secs_f64() * rate).min(burst)
            }
            None => burst,
        };
        self.refilled_at = Some(now);
        self.tokens > 0.0
    }

    /// Takes `bytes` of replies sent out of the bucket.
    pub(crate) fn charge(&mut self, bytes: usize) {
        self.tokens -= bytes as f64;
    }

    /// Whether the pace allows starting a sync at `now`; if so, the next
    /// may start one `sync_interval` later.
    pub(crate) fn may_start(&self, now: Instant) -> bool {
        self.next_start_at.is_none_or(|t| t <= now)
    }

    /// A sync started at `now`.
    pub(crate) fn started(&mut self, now: Instant, config: &Config) {
        self.next_start_at = Some(now + config.sync_interval);
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
/// receiver for what it knows better in that frame's range.
pub(crate) fn pack(
    outbox: &mut Outbox,
    header: &Header<'_>,
    max: usize,
    to: SocketAddr,
    reply: bool,
    view: Vec<SyncEntry>,
    range: Range,
) -> usize {
    // Frame overhead with both bounds absent, plus room for the largest
    // bounds and a three-byte element count.
    let bare = wire::encoded_len(&(
        header,
        Message::Sync {
            reply,
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
        used += wire::encoded_len(&member);
        entries.push(member);
        let through = match view.peek() {
            Some(next) if used + wire::encoded_len(next) <= max => continue,
            Some(_) => entries.last().map(|m| m.id),
            None => range.1,
        };
        let message = Message::Sync {
            reply,
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
        let mut sync = StateSync::default();
        assert!(sync.allow(now, &config), "starts full");
        sync.charge(2500);
        assert!(!sync.allow(now, &config), "overdrawn");
        assert!(!sync.allow(now + Duration::from_millis(400), &config));
        assert!(sync.allow(now + Duration::from_millis(600), &config));
        assert!(sync.may_start(now));
        sync.started(now, &config);
        assert!(!sync.may_start(now));
        assert!(sync.may_start(now + config.sync_interval));
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
        let sent = pack(&mut outbox, &header, 300, to, true, view, (None, None));
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
            } = frame
            else {
                panic!("only sync frames");
            };
            assert!(reply);
            assert_eq!(*after, previous_through, "ranges are contiguous");
            previous_through = *through;
            covered += entries.len();
        }
        assert_eq!(previous_through, None, "the last frame runs to the end");
        assert_eq!(covered, 200);
    }
}
