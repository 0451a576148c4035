//! Bookkeeping of exchanges: the ones this node opened, its catch-up
//! streams, and the answer budget of each peer.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gossip_core::NodeId;

use super::wire::Cursor;

/// An anti-entropy exchange this node opened.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// The peer asked.
    pub peer: NodeId,
    /// When it is given up.
    pub deadline: Instant,
    /// Requests not answered yet.
    pub pending: u32,
}

/// One catch-up stream: a key-hash range pulled page by page.
#[derive(Clone, Debug)]
pub struct Stream {
    /// First top-16-bit bucket.
    pub lo: u16,
    /// Last top-16-bit bucket.
    pub hi: u16,
    /// Resume after this position.
    pub cursor: Cursor,
    /// The peer asked, the request's number and its deadline, while one
    /// is out.
    pub asked: Option<(NodeId, u32, Instant)>,
    /// When the request out was sent (for the round-trip estimate).
    pub sent: Option<Instant>,
    /// Whether the range is complete.
    pub done: bool,
}

/// A catch-up: every stream pulls entries newer than the start cursor.
#[derive(Clone, Debug)]
pub struct CatchUp {
    /// The streams, covering every key hash.
    pub streams: Vec<Stream>,
    /// How long pages take to come back.
    pub rtt: RoundTrip,
}

/// A smoothed round-trip estimate and the retransmission wait derived
/// from it (the classic smoothed mean plus four mean deviations).
#[derive(Clone, Copy, Debug, Default)]
pub struct RoundTrip {
    smoothed: Option<Duration>,
    deviation: Duration,
}

impl RoundTrip {
    /// Takes one measured round trip into the estimate.
    pub fn sample(&mut self, rtt: Duration) {
        match self.smoothed {
            None => {
                self.smoothed = Some(rtt);
                self.deviation = rtt / 2;
            }
            Some(s) => {
                let error = rtt.abs_diff(s);
                self.deviation = (self.deviation * 3 + error) / 4;
                self.smoothed = Some((s * 7 + rtt) / 8);
            }
        }
    }

    /// How long to wait for an answer: the estimate plus four deviations
    /// within `[min, max]`; `max` before any sample.
    pub fn timeout(&self, min: Duration, max: Duration) -> Duration {
        match self.smoothed {
            None => max,
            Some(s) => (s + self.deviation * 4).clamp(min, max.max(min)),
        }
    }
}

impl CatchUp {
    /// `n` streams over the 65,536 top-16-bit buckets, from `cursor`.
    pub fn new(n: u16, cursor: Cursor) -> Self {
        let n = u32::from(n.max(1));
        let streams = (0..n)
            .map(|i| Stream {
                lo: ((i << 16) / n) as u16,
                hi: ((((i + 1) << 16) / n) - 1) as u16,
                cursor,
                asked: None,
                sent: None,
                done: false,
            })
            .collect();
        Self {
            streams,
            rtt: RoundTrip::default(),
        }
    }

    /// Whether every stream is complete.
    pub fn done(&self) -> bool {
        self.streams.iter().all(|s| s.done)
    }
}

/// Token buckets of answer bytes, one per peer, bounded in number.
#[derive(Clone, Debug, Default)]
pub struct Budgets {
    buckets: BTreeMap<NodeId, (f64, Instant)>,
}

impl Budgets {
    /// Takes up to `want` bytes of `peer`'s budget at `now` and returns
    /// what was granted (`rate` bytes per second, burst `rate`).
    pub fn take(
        &mut self,
        peer: NodeId,
        now: Instant,
        rate: u64,
        want: usize,
        max_peers: usize,
    ) -> usize {
        if !self.buckets.contains_key(&peer) && self.buckets.len() >= max_peers.max(1) {
            // Forget the peer seen least recently.
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(id, _)| *id)
            {
                self.buckets.remove(&oldest);
            }
        }
        let rate = rate as f64;
        let (tokens, at) = self.buckets.entry(peer).or_insert((rate, now));
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + elapsed * rate).min(rate);
        *at = now;
        let granted = (want as f64).min(*tokens).max(0.0);
        *tokens -= granted;
        granted as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_follows_the_measured_round_trip_within_its_bounds() {
        let min = Duration::from_millis(50);
        let max = Duration::from_millis(500);
        let mut rtt = RoundTrip::default();
        assert_eq!(
            rtt.timeout(min, max),
            max,
            "no sample yet: the longest wait"
        );
        for _ in 0..50 {
            rtt.sample(Duration::from_millis(2));
        }
        assert_eq!(rtt.timeout(min, max), min, "a fast peer: the floor");
        for _ in 0..50 {
            rtt.sample(Duration::from_millis(100));
        }
        let t = rtt.timeout(min, max);
        assert!(t >= Duration::from_millis(100) && t < max, "{t:?}");
        for _ in 0..50 {
            rtt.sample(Duration::from_secs(5));
        }
        assert_eq!(rtt.timeout(min, max), max, "a slow peer: the ceiling");
    }
}
