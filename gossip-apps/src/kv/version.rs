//! Versions: a hybrid logical clock stamp with the writer's tag as the
//! tie-break, and the clock that makes them.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Bits of a stamp below the milliseconds: the logical counter.
const LOGICAL_BITS: u32 = 16;

/// The version of one write or deletion. Versions are totally ordered: by
/// hybrid-logical-clock stamp, then by the writer's tag, so every node
/// picks the same winner among concurrent writes (last writer wins).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Version {
    /// Hybrid logical clock stamp: wall-clock milliseconds since the Unix
    /// epoch shifted left by 16 bits, plus a logical counter.
    pub stamp: u64,
    /// The writer's tag ([`node_tag`](crate::kv::node_tag) of its id).
    pub origin: u64,
}

impl Version {
    /// The wall-clock milliseconds of the stamp.
    pub fn millis(self) -> u64 {
        self.stamp >> LOGICAL_BITS
    }

    /// The first stamp of millisecond `ms`.
    pub fn stamp_of(ms: u64) -> u64 {
        ms.saturating_mul(1 << LOGICAL_BITS)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}@{:016x}",
            self.millis(),
            self.stamp & ((1 << LOGICAL_BITS) - 1),
            self.origin
        )
    }
}

/// Wall time as the host gives it: an [`Instant`] and the Unix time in
/// milliseconds at that instant. The state machine never reads a clock;
/// wall time at `now` is `unix_ms + (now - at)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    /// The instant the pair was read at.
    pub at: Instant,
    /// Milliseconds since the Unix epoch at `at`.
    pub unix_ms: u64,
}

impl WallClock {
    /// Wall milliseconds at `now`.
    pub fn millis(&self, now: Instant) -> u64 {
        if now >= self.at {
            self.unix_ms
                .saturating_add((now - self.at).as_millis() as u64)
        } else {
            self.unix_ms
                .saturating_sub((self.at - now).as_millis() as u64)
        }
    }
}

/// A hybrid logical clock: stamps follow wall time, never go backwards and
/// stay ahead of every stamp observed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hlc {
    last: u64,
}

impl Hlc {
    /// The last stamp issued or observed.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// A new stamp, later than every earlier one, at wall time `wall_ms`.
    pub fn tick(&mut self, wall_ms: u64) -> u64 {
        self.last = self.last.saturating_add(1).max(Version::stamp_of(wall_ms));
        self.last
    }

    /// Takes note of a stamp seen in a write (already checked against the
    /// skew bound by the caller).
    pub fn observe(&mut self, stamp: u64) {
        self.last = self.last.max(stamp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_grow_and_follow_wall_time() {
        let mut hlc = Hlc::default();
        let a = hlc.tick(1000);
        let b = hlc.tick(1000);
        let c = hlc.tick(999);
        assert!(a < b && b < c);
        assert_eq!(
            Version {
                stamp: a,
                origin: 0
            }
            .millis(),
            1000
        );
        hlc.observe(Version::stamp_of(5000));
        assert!(hlc.tick(1000) > Version::stamp_of(5000));
    }

    #[test]
    fn ties_break_by_origin() {
        let a = Version {
            stamp: 7,
            origin: 1,
        };
        let b = Version {
            stamp: 7,
            origin: 2,
        };
        assert!(b > a);
    }

    #[test]
    fn wall_clock_counts_from_its_pair() {
        let at = Instant::now();
        let wall = WallClock {
            at,
            unix_ms: 10_000,
        };
        assert_eq!(
            wall.millis(at + std::time::Duration::from_millis(5)),
            10_005
        );
    }
}
