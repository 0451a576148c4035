//! The store's configuration, errors, events and counters.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::version::Version;

/// Limits and timers of a [`Kv`](super::Kv). Every limit that bounds what a
/// peer can make this node hold, send or do is here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KvConfig {
    /// Largest key, bytes. Default 256.
    pub max_key_len: usize,
    /// Largest value, bytes. Default 1024; a write must also fit one
    /// broadcast (`Cluster::max_broadcast_len`).
    pub max_value_len: usize,
    /// Largest store message accepted, bytes. Default 65,536 (frames are
    /// smaller; this bounds hosts with bigger ones).
    pub max_message_len: usize,
    /// How often this node starts an anti-entropy exchange with one random
    /// live member. Default 1 s: an idle cluster pays one root digest and
    /// one answer per node per interval.
    pub sync_interval: Duration,
    /// How long an exchange or a catch-up request may wait for its
    /// answers. Default 500 ms.
    pub request_timeout: Duration,
    /// Most exchanges this node has open at once. Default 4.
    pub max_exchanges: usize,
    /// A differing tree node with at most this many entries here is
    /// compared entry by entry instead of descending. Default 8.
    pub leaf_entries: usize,
    /// Bytes per second this node answers one peer with (token bucket,
    /// burst of one second), so no member can make it ship its store over
    /// and over. Default 1 MiB.
    pub reply_bytes_per_s: u64,
    /// Most peers whose answer budget is tracked; the oldest is forgotten
    /// beyond it. Default 4096.
    pub max_budget_peers: usize,
    /// A tombstone is collected this long after the deletion; a node away
    /// longer than this drops its old entries on return and pulls them
    /// again. Default 24 h.
    pub tombstone_grace: Duration,
    /// Writes stamped further than this in the future are refused.
    /// Default 60 s.
    pub max_clock_skew: Duration,
    /// A restarted node catches up on versions newer than its last
    /// contact less this margin (writers' clocks may lag; what falls
    /// before it is left to anti-entropy). Default 5 s.
    pub catch_up_margin: Duration,
    /// Catch-up streams (disjoint key-hash ranges pulled in parallel).
    /// Default 128: a page is one frame, so a stream moves one frame per
    /// round trip, and 10^4 changed keys of 100 bytes take about eight
    /// round trips per stream at 128 streams (64 at the former 16).
    pub catch_up_streams: u16,
    /// Shortest wait for a catch-up page before the stream asks again.
    /// The wait adapts to the measured round trip (smoothed round trip
    /// plus four deviations, at most `request_timeout`), so that one lost
    /// page costs a few round trips, not half a second. Default 50 ms.
    pub catch_up_min_timeout: Duration,
    /// Most peers a catch-up pulls from at once. Default 4.
    pub catch_up_peers: usize,
    /// Key-hash buckets of the collection horizon: for each bucket the
    /// newest tombstone version this node ever collected there, persisted.
    /// An entry for a key not held that is not newer than its bucket's
    /// horizon is refused, even while catching up after a long absence
    /// (it may be a value this node deleted). More buckets refuse fewer
    /// old entries of other keys; each costs 8 bytes. Default 1024.
    pub horizon_buckets: u16,
    /// Most change events kept unpolled; older ones are dropped and
    /// counted. Default 65,536.
    pub max_events: usize,
    /// Most of this node's own deletions whose acknowledgements it tracks
    /// at once, for early collection; a deletion beyond it waits for the
    /// grace. Each costs about 16 bytes per member alive at the deletion
    /// (16 KiB per tombstone at 1,000 members). 0 turns early collection
    /// off. Default 1024.
    pub max_tracked_tombstones: usize,
    /// Most acknowledgements, requests for them and collect notices
    /// queued to send, all destinations together; more are dropped and
    /// counted (a dropped acknowledgement delays a collection until the
    /// deleter asks again, or the grace). Default 65,536.
    pub max_pending_acks: usize,
    /// Acknowledgements and collect notices are sent in batches this
    /// often. Default 200 ms.
    pub ack_interval: Duration,
    /// Frames of acknowledgements, requests or notices one destination
    /// gets per batch at most (the rest waits for the next). Default 4.
    pub ack_frames: usize,
    /// A deleter asks the members that have not acknowledged a deletion
    /// again this often (acknowledgements get lost). Default 1 s.
    pub ack_retry: Duration,
}

impl Default for KvConfig {
    fn default() -> Self {
        Self {
            max_key_len: 256,
            max_value_len: 1024,
            max_message_len: 65_536,
            sync_interval: Duration::from_secs(1),
            request_timeout: Duration::from_millis(500),
            max_exchanges: 4,
            leaf_entries: 8,
            reply_bytes_per_s: 1 << 20,
            max_budget_peers: 4096,
            tombstone_grace: Duration::from_secs(24 * 3600),
            max_clock_skew: Duration::from_secs(60),
            catch_up_margin: Duration::from_secs(5),
            catch_up_streams: 128,
            catch_up_min_timeout: Duration::from_millis(50),
            catch_up_peers: 4,
            horizon_buckets: 1024,
            max_events: 65_536,
            max_tracked_tombstones: 1024,
            max_pending_acks: 65_536,
            ack_interval: Duration::from_millis(200),
            ack_frames: 4,
            ack_retry: Duration::from_secs(1),
        }
    }
}

impl KvConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), KvConfigError> {
        let bad = |field: &'static str, why: &'static str| Err(KvConfigError { field, why });
        if self.max_key_len == 0 {
            return bad("max_key_len", "must be positive");
        }
        if self.sync_interval.is_zero() {
            return bad("sync_interval", "must be positive");
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout", "must be positive");
        }
        if self.max_exchanges == 0 {
            return bad("max_exchanges", "must be positive");
        }
        if self.catch_up_streams == 0 {
            return bad("catch_up_streams", "must be positive");
        }
        if self.catch_up_min_timeout.is_zero() {
            return bad("catch_up_min_timeout", "must be positive");
        }
        if self.horizon_buckets == 0 {
            return bad("horizon_buckets", "must be positive");
        }
        if self.catch_up_peers == 0 {
            return bad("catch_up_peers", "must be positive");
        }
        if self.ack_interval.is_zero() {
            return bad("ack_interval", "must be positive");
        }
        if self.ack_retry.is_zero() {
            return bad("ack_retry", "must be positive");
        }
        if self.ack_frames == 0 {
            return bad("ack_frames", "must be positive");
        }
        if self.reply_bytes_per_s < 4096 {
            return bad("reply_bytes_per_s", "must be at least 4096");
        }
        if self.tombstone_grace < self.max_clock_skew * 2 {
            return bad("tombstone_grace", "must be at least twice max_clock_skew");
        }
        Ok(())
    }
}

/// A configuration field out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid KV configuration: {field} {why}")]
pub struct KvConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Why a local write was refused; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The key is empty or longer than `max_key_len`.
    #[error("key of {len} bytes: keys are 1 to {max} bytes")]
    BadKey {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value, or the write as a whole, is too large.
    #[error("write of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// One change applied to the store, local or replicated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvEvent {
    /// The key.
    pub key: Vec<u8>,
    /// The new value, or `None` for a deletion.
    pub value: Option<Vec<u8>>,
    /// The version now held.
    pub version: Version,
    /// When it was applied.
    pub at: Instant,
    /// Whether this node wrote it.
    pub local: bool,
}

/// Counters of one store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStats {
    /// Writes and deletions made here.
    pub local_writes: u64,
    /// Replicated changes applied.
    pub applied: u64,
    /// Replicated entries that were not newer than what is held.
    pub stale: u64,
    /// Entries refused: too large, empty key, or stamped too far ahead.
    pub refused_invalid: u64,
    /// Entries refused as older than the tombstone grace for keys not held
    /// (they may be deleted keys whose tombstones were collected).
    pub refused_old: u64,
    /// Messages that did not decode.
    pub malformed: u64,
    /// Answers to no exchange this node has open, or from the wrong peer.
    pub unsolicited: u64,
    /// Exchanges started.
    pub exchanges: u64,
    /// Exchanges that found equal roots.
    pub equal: u64,
    /// Exchanges completed after a repair.
    pub repaired: u64,
    /// Exchanges that timed out.
    pub timeouts: u64,
    /// Answers cut short by a peer's answer budget.
    pub throttled: u64,
    /// Catch-up pages received.
    pub pages: u64,
    /// Catch-ups completed.
    pub catch_ups: u64,
    /// Tombstones collected after the grace.
    pub collected: u64,
    /// Tombstones collected early, on the deleter's notice once every
    /// member alive at the deletion had acknowledged it.
    pub collected_early: u64,
    /// Guards of tombstones collected early that expired with the grace.
    pub guards_expired: u64,
    /// Entries refused as not newer than the guard of a tombstone
    /// collected early (answered with that tombstone).
    pub refused_collected: u64,
    /// Tombstone acknowledgements sent (one per tombstone).
    pub acks_sent: u64,
    /// Tombstone acknowledgements received.
    pub acks_received: u64,
    /// Acknowledgements, requests and notices naming a tombstone this
    /// node did not delete, does not track or does not hold.
    pub acks_ignored: u64,
    /// Collect notices from a member that is not the tombstone's deleter.
    pub collect_refused: u64,
    /// Acknowledgements, requests or notices dropped: the outbox was full
    /// ([`KvConfig::max_pending_acks`]).
    pub outbox_dropped: u64,
    /// Deletions left to the grace: a member alive at the deletion died
    /// before acknowledging, or the tracking limit was reached.
    pub tracking_given_up: u64,
    /// Entries refused for keys not held as no newer than a tombstone
    /// this node collected in the key's bucket (a possible resurrection).
    pub refused_horizon: u64,
    /// Old entries dropped on return after more than the grace away.
    pub dropped_stale: u64,
    /// Storage operations that failed.
    pub storage_errors: u64,
    /// Change events dropped unpolled.
    pub events_dropped: u64,
    /// Broadcasts the node refused.
    pub broadcast_errors: u64,
    /// Store payload bytes this node sent: its own broadcasts (once, not
    /// their relays) and direct messages.
    pub bytes_sent: u64,
    /// Store payload bytes received: deliveries and direct messages.
    pub bytes_received: u64,
}
