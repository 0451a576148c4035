//! Settings of a partial-view node.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::MAX_LABEL_LEN;

/// Why a [`PartialConfig`] was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("partial view config: {field} {why}")]
pub struct PartialConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Settings of a [`PartialNode`](super::PartialNode). Every limit bounds
/// what a lying peer can make a node hold or send.
///
/// With serde (a config file's `[partial]` table), every field is
/// optional and takes its default when absent; unknown fields are
/// refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PartialConfig {
    /// The overlay's name, carried in every frame: frames with another
    /// label are refused ([`PartialDecodeError::WrongCluster`]), so two
    /// overlays sharing a network cannot merge by accident. At most
    /// [`MAX_LABEL_LEN`] bytes; default empty.
    ///
    /// [`PartialDecodeError::WrongCluster`]: super::PartialDecodeError::WrongCluster
    pub cluster_label: String,
    /// Neighbours kept in the active view (the links that carry payloads
    /// and are watched for failure). Default 5; the paper uses log10(N) + 1.
    pub active_size: usize,
    /// Addresses kept in the passive view (the reserve active links are
    /// refilled from). Default 30.
    pub passive_size: usize,
    /// Length of a join's random walk (ARWL in the paper). Default 6.
    pub active_walk: u8,
    /// The hop of a join's walk at which the joiner also enters a passive
    /// view (PRWL in the paper). Default 3.
    pub passive_walk: u8,
    /// How often a node swaps a sample of its views with a random node at
    /// the end of a walk. Default 10 s.
    pub shuffle_interval: Duration,
    /// Active neighbours in a shuffle sample. Default 3.
    pub shuffle_active: usize,
    /// Passive addresses in a shuffle sample. Default 4.
    pub shuffle_passive: usize,
    /// A neighbour nothing was heard from this long is pinged. Default 1 s.
    pub ping_interval: Duration,
    /// A neighbour nothing was heard from this long is dropped from the
    /// active view and replaced from the passive one. Default 3 s.
    pub dead_after: Duration,
    /// How long a request to become a neighbour waits for its answer
    /// before the next passive address is tried. Default 1 s.
    pub neighbour_timeout: Duration,
    /// A node with two or more free active slots that was refused this
    /// many times in a row while asking to become a neighbour asks
    /// urgently (which a full active view makes room for), as does a node
    /// with fewer than half its active view: otherwise a few nodes left
    /// only with each other after a mass crash could stay a separate
    /// island while every node they know has a full view. Default 3.
    pub urgent_after_refusals: u32,
    /// How often a joining node with no neighbour yet asks its contacts
    /// again. Default 1 s.
    pub join_retry: Duration,
    /// Joins and promotion requests accepted per second (a token bucket
    /// with a burst of as many): a flood of them from many addresses cannot
    /// churn the active view faster. Default 20.
    pub joins_per_s: f64,
    /// An id announced but not received this long is grafted from its
    /// announcer. Default 100 ms.
    pub graft_after: Duration,
    /// A new neighbour is told the ids that arrived this recently (at
    /// most `max_ids`), so that a broadcast under way while links failed
    /// still reaches the other side. Zero turns it off. Default 10 s.
    pub reannounce_window: Duration,
    /// Announcements are batched and sent this often. Default 20 ms.
    pub announce_interval: Duration,
    /// Most ids in one announcement or graft. Default 128.
    pub max_ids: usize,
    /// Announcers remembered per missing id (each grafted in turn).
    /// Default 4.
    pub max_announcers: usize,
    /// Ids awaited at once; announcements of further ids are ignored until
    /// some arrive or are given up. Default 1024.
    pub max_missing: usize,
    /// Payloads held to answer grafts; the oldest go first. Default 4096.
    pub max_held: usize,
    /// Ids remembered as seen, so that duplicates are recognised and not
    /// delivered twice; the oldest are forgotten first. Default 65,536.
    pub max_seen: usize,
    /// Bytes of graft answers one neighbour can draw per second (a token
    /// bucket with a burst of as many). Default 1 MiB.
    pub graft_reply_bytes_per_s: u64,
    /// Largest broadcast payload. Default 1,024.
    pub max_payload_len: usize,
    /// Largest frame sent or accepted. Default 1,400.
    pub max_frame_len: usize,
}

impl Default for PartialConfig {
    fn default() -> Self {
        Self {
            cluster_label: String::new(),
            active_size: 5,
            passive_size: 30,
            active_walk: 6,
            passive_walk: 3,
            shuffle_interval: Duration::from_secs(10),
            shuffle_active: 3,
            shuffle_passive: 4,
            ping_interval: Duration::from_secs(1),
            dead_after: Duration::from_secs(3),
            neighbour_timeout: Duration::from_secs(1),
            urgent_after_refusals: 3,
            join_retry: Duration::from_secs(1),
            joins_per_s: 20.0,
            graft_after: Duration::from_millis(100),
            reannounce_window: Duration::from_secs(10),
            announce_interval: Duration::from_millis(20),
            max_ids: 128,
            max_announcers: 4,
            max_missing: 1024,
            max_held: 4096,
            max_seen: 65_536,
            graft_reply_bytes_per_s: 1 << 20,
            max_payload_len: 1024,
            max_frame_len: 1400,
        }
    }
}

impl PartialConfig {
    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), PartialConfigError> {
        let bad = |field, why| Err(PartialConfigError { field, why });
        if self.cluster_label.len() > MAX_LABEL_LEN {
            return bad("cluster_label", "must be at most 64 bytes");
        }
        if self.active_size == 0 {
            return bad("active_size", "must be positive");
        }
        if self.passive_walk > self.active_walk {
            return bad("passive_walk", "must not exceed active_walk");
        }
        if self.ping_interval.is_zero() || self.dead_after <= self.ping_interval {
            return bad("dead_after", "must exceed a positive ping_interval");
        }
        for (field, d) in [
            ("shuffle_interval", self.shuffle_interval),
            ("neighbour_timeout", self.neighbour_timeout),
            ("join_retry", self.join_retry),
            ("graft_after", self.graft_after),
            ("announce_interval", self.announce_interval),
        ] {
            if d.is_zero() {
                return bad(field, "must be positive");
            }
        }
        if self.joins_per_s.is_nan() || self.joins_per_s <= 0.0 {
            return bad("joins_per_s", "must be positive");
        }
        if self.max_ids == 0 || self.max_announcers == 0 || self.max_seen == 0 {
            return bad(
                "max_ids",
                "max_ids, max_announcers and max_seen must be positive",
            );
        }
        // Each frame starts with the version byte and the label; the
        // slack below covers the version byte and the label's one-byte
        // length, not the label itself.
        let header = self.cluster_label.len();
        // An announcement of max_ids ids must fit a frame.
        if header + self.max_ids * 8 + 16 > self.max_frame_len {
            return bad("max_ids", "eight bytes per id must fit max_frame_len");
        }
        if header + self.max_payload_len + 32 > self.max_frame_len {
            return bad(
                "max_payload_len",
                "a payload and its header must fit max_frame_len",
            );
        }
        // A shuffle sample of IPv6 addresses must fit a frame.
        if header + (1 + self.shuffle_active + self.shuffle_passive) * 19 + 32 > self.max_frame_len
        {
            return bad("shuffle_passive", "a shuffle sample must fit max_frame_len");
        }
        Ok(())
    }

    /// Most addresses a shuffle sample may carry (the sender itself
    /// included).
    pub fn max_sample(&self) -> usize {
        1 + self.shuffle_active + self.shuffle_passive
    }
}
