//! The failure detector: whom to probe next, the probe in flight, probes
//! run on behalf of others, and Lifeguard's local health.
//!
//! It decides and remembers; the node sends the pings and turns a failed
//! probe into a suspicion.

use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::Config;
use crate::id::{Generation, NodeId};
use crate::membership::{FastMap, Peers, Slot};

use super::view::View;

/// The probe this node has in flight.
#[derive(Debug)]
pub(crate) struct Probe {
    pub target: NodeId,
    /// The life of the target probed: a failure says nothing of a later
    /// one (the member may have restarted while the probe ran).
    pub generation: Generation,
    pub seq: u32,
    /// Helpers asked to probe indirectly; each nack counts once, and only
    /// from one of them.
    pub helpers: Vec<NodeId>,
    pub nacked: Vec<NodeId>,
    pub acked: bool,
}

/// A probe this node runs on behalf of another member.
#[derive(Debug)]
pub(crate) struct IndirectRequest {
    pub origin: SocketAddr,
    pub origin_seq: u32,
    /// Only its ack counts.
    target: NodeId,
    nacked: bool,
}

/// What an ack answered.
pub(crate) enum Acked {
    /// Our own probe: nothing more to do.
    OwnProbe,
    /// A ping we sent for another member: forward the ack to it.
    Forward(IndirectRequest),
    /// Nothing we are waiting for (late, duplicate or forged).
    Unknown,
}

/// SWIM probing with Lifeguard's local health.
#[derive(Debug, Default)]
pub(crate) struct FailureDetector {
    /// Members in the order this round probes them, by their slots in the
    /// view (which the view gives to nobody else until this order is
    /// rebuilt: see [`View::recycle`]).
    order: Vec<Slot>,
    cursor: usize,
    probe: Option<Probe>,
    indirect: FastMap<u32, IndirectRequest>,
    local_health: u32,
}

impl FailureDetector {
    /// Lifeguard's local health: 0 is healthy; each step stretches probe
    /// periods and timeouts by one more multiple.
    pub(crate) fn local_health(&self) -> u32 {
        self.local_health
    }

    /// How many times the configured period a probe takes now.
    pub(crate) fn health_scale(&self) -> u32 {
        1 + self.local_health
    }

    /// Moves local health by `delta`, within `0..=max`.
    pub(crate) fn adjust_health(&mut self, delta: i64, max: u32) {
        let next = (i64::from(self.local_health) + delta).clamp(0, i64::from(max));
        self.local_health = next as u32;
    }

    /// A fresh sequence number for a ping: random, so that nobody but the
    /// address pinged (which sees it) can produce a matching ack, and
    /// distinct from every sequence number still awaited.
    pub(crate) fn next_seq(&mut self, rng: &mut ChaCha8Rng) -> u32 {
        loop {
            let seq = rng.random::<u32>();
            let in_use = self.probe.as_ref().is_some_and(|p| p.seq == seq)
                || self.indirect.contains_key(&seq);
            if !in_use {
                return seq;
            }
        }
    }

    /// A member in `slot` became live: it joins this round at a random
    /// place still ahead.
    pub(crate) fn add_candidate(&mut self, slot: Slot, view: &mut View, rng: &mut ChaCha8Rng) {
        if self.order.len() > 2 * view.live().len() + 16 {
            // Members that flap would otherwise pile up duplicates here.
            self.order.clear();
            view.recycle();
            self.cursor = 0;
        }
        self.order.push(slot);
        let len = self.order.len();
        let swap_with = rng.random_range(self.cursor.min(len - 1)..len);
        self.order.swap(swap_with, len - 1);
    }

    /// The next member to probe. SWIM's round-robin over a shuffled list
    /// bounds the time until every member is probed, unlike independent
    /// random picks.
    pub(crate) fn next_target(&mut self, view: &mut View, rng: &mut ChaCha8Rng) -> Option<NodeId> {
        for _ in 0..2 {
            while self.cursor < self.order.len() {
                let candidate = self.order[self.cursor];
                self.cursor += 1;
                if view.is_live_at(candidate) {
                    return Some(view.id_at(candidate));
                }
            }
            self.order.clear();
            // The order names no forgotten member now.
            view.recycle();
            self.order.extend_from_slice(view.live().slots());
            shuffle(rng, &mut self.order);
            self.cursor = 0;
            if self.order.is_empty() {
                return None;
            }
        }
        None
    }

    /// Starts probing `target`; returns the ping's sequence number.
    pub(crate) fn start(
        &mut self,
        target: NodeId,
        generation: Generation,
        rng: &mut ChaCha8Rng,
    ) -> u32 {
        let seq = self.next_seq(rng);
        self.probe = Some(Probe {
            target,
            generation,
            seq,
            helpers: Vec::new(),
            nacked: Vec::new(),
            acked: false,
        });
        seq
    }

    /// Drops the probe in flight, if any, without judging its target.
    pub(crate) fn cancel(&mut self) {
        self.probe = None;
    }

    /// The direct ping went unanswered: remember the helpers asked. Returns
    /// the probe's target and sequence number, unless it was acked.
    pub(crate) fn ask_helpers(
        &mut self,
        live: Peers<'_>,
        count: usize,
        rng: &mut ChaCha8Rng,
    ) -> Option<(NodeId, u32, Vec<NodeId>)> {
        let probe = self.probe.as_mut().filter(|p| !p.acked)?;
        let helpers = live.choose_many(rng, count, &[probe.target]);
        probe.helpers.clone_from(&helpers);
        Some((probe.target, probe.seq, helpers))
    }

    /// The probe's time is up: returns it if it failed, with the number of
    /// helpers that did not even nack (Lifeguard counts those against our
    /// own health; without helpers, one).
    pub(crate) fn finish(&mut self) -> Option<(Probe, u32)> {
        let probe = self.probe.take().filter(|p| !p.acked)?;
        let missed = if probe.helpers.is_empty() {
            1
        } else {
            (probe.helpers.len() - probe.nacked.len()) as u32
        };
        Some((probe, missed))
    }

    /// An ack with `seq` arrived from `from`. It counts only from whom it
    /// can come: for our probe, the target or a helper we asked (which
    /// forwards the target's ack); for a probe we run for another member,
    /// that probe's target.
    pub(crate) fn ack(&mut self, seq: u32, from: NodeId, max_health: u32) -> Acked {
        if let Some(probe) = &mut self.probe {
            let answerable = from == probe.target || probe.helpers.contains(&from);
            if probe.seq == seq && !probe.acked && answerable {
                probe.acked = true;
                self.adjust_health(-1, max_health);
                return Acked::OwnProbe;
            }
        }
        match self.indirect.get(&seq) {
            Some(request) if request.target == from => {
                Acked::Forward(self.indirect.remove(&seq).expect("present"))
            }
            _ => Acked::Unknown,
        }
    }

    /// A nack for `seq` arrived from `sender`; it counts only from a helper
    /// of the current probe, once.
    pub(crate) fn nack(&mut self, seq: u32, sender: NodeId) {
        if let Some(probe) = &mut self.probe {
            if probe.seq == seq
                && probe.helpers.contains(&sender)
                && !probe.nacked.contains(&sender)
            {
                probe.nacked.push(sender);
            }
        }
    }

    /// Starts probing `target` for another member; returns our ping's
    /// sequence number, or `None` when `max` such probes already run.
    pub(crate) fn start_indirect(
        &mut self,
        origin: SocketAddr,
        origin_seq: u32,
        target: NodeId,
        max: usize,
        rng: &mut ChaCha8Rng,
    ) -> Option<u32> {
        if self.indirect.len() >= max {
            return None;
        }
        let seq = self.next_seq(rng);
        self.indirect.insert(
            seq,
            IndirectRequest {
                origin,
                origin_seq,
                target,
                nacked: false,
            },
        );
        Some(seq)
    }

    /// The indirect probe `seq` timed out: whom to nack, once.
    pub(crate) fn nack_due(&mut self, seq: u32) -> Option<(SocketAddr, u32)> {
        let request = self.indirect.get_mut(&seq).filter(|r| !r.nacked)?;
        request.nacked = true;
        Some((request.origin, request.origin_seq))
    }

    /// Drops the record of the indirect probe `seq`.
    pub(crate) fn forget_indirect(&mut self, seq: u32) {
        self.indirect.remove(&seq);
    }

    /// A departed node probes nobody and judges nobody.
    pub(crate) fn stop(&mut self) {
        self.probe = None;
        self.indirect.clear();
    }
}

/// When the phases of a probe started at `now` end, scaled by local health.
pub(crate) struct ProbeSchedule {
    /// When the direct ping times out and helpers are asked.
    pub direct_deadline: Instant,
    /// When the probe ends and the next one starts.
    pub end: Instant,
}

impl ProbeSchedule {
    pub(crate) fn new(now: Instant, config: &Config, scale: u32) -> Self {
        Self {
            direct_deadline: now + config.probe_timeout * scale,
            end: now + config.probe_interval * scale,
        }
    }
}

/// Fisher-Yates with the node's own generator (kept here so the exact
/// sequence of draws is part of this crate, not of a dependency's version).
fn shuffle(rng: &mut ChaCha8Rng, items: &mut [Slot]) {
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Incarnation;
    use crate::node::view::Weighing;
    use crate::wire::Status;
    use rand::SeedableRng;

    fn id(n: u16) -> NodeId {
        NodeId::new(SocketAddr::from(([127, 0, 0, 1], n)))
    }

    /// A view of members 1 to `n`, live.
    fn live(n: u16) -> View {
        let config = Config::default();
        let mut view = View::new(id(0), v0());
        let weighing = Weighing {
            first_hand: true,
            live_count: 10,
        };
        for i in 1..=n {
            view.apply(origin(), &config, id(i), v0(), &alive(), &weighing)
                .unwrap();
        }
        view
    }

    fn v0() -> (Generation, Incarnation) {
        (Generation(0), Incarnation(0))
    }

    fn alive() -> Status {
        Status::Alive {
            metadata: Vec::new(),
        }
    }

    #[allow(clippy::disallowed_methods)] // an arbitrary origin; only differences matter
    fn origin() -> Instant {
        Instant::now()
    }

    #[test]
    fn round_robin_probes_every_live_member_once_per_round() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut view = live(5);
        let mut detector = FailureDetector::default();
        let mut round: Vec<NodeId> = (0..5)
            .map(|_| detector.next_target(&mut view, &mut rng).unwrap())
            .collect();
        round.sort();
        assert_eq!(round, (1..=5).map(id).collect::<Vec<_>>());
        let weighing = Weighing {
            first_hand: true,
            live_count: 10,
        };
        let config = Config::default();
        for i in [1, 2, 4, 5] {
            let left = Status::Left;
            view.apply(origin(), &config, id(i), v0(), &left, &weighing)
                .unwrap();
        }
        assert_eq!(
            detector.next_target(&mut view, &mut rng),
            Some(id(3)),
            "members no longer live are skipped"
        );
    }

    #[test]
    fn acks_nacks_and_health_follow_the_probe() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let view = live(4);
        let mut detector = FailureDetector::default();
        let seq = detector.start(id(1), Generation(1), &mut rng);
        let (target, _, helpers) = detector.ask_helpers(view.live(), 2, &mut rng).unwrap();
        assert_eq!(target, id(1));
        assert!(!helpers.contains(&id(1)));
        detector.nack(seq, id(1));
        detector.nack(seq, helpers[0]);
        detector.nack(seq, helpers[0]);
        let (probe, missed) = detector.finish().expect("unacked probe fails");
        assert_eq!(probe.nacked, vec![helpers[0]], "one nack, from a helper");
        assert_eq!(missed, 1);

        detector.adjust_health(3, 8);
        let seq = detector.start(id(2), Generation(1), &mut rng);
        assert!(
            matches!(detector.ack(seq, id(3), 8), Acked::Unknown),
            "an ack from neither the target nor a helper does not count"
        );
        assert!(matches!(detector.ack(seq, id(2), 8), Acked::OwnProbe));
        assert_eq!(detector.local_health(), 2);
        assert!(detector.finish().is_none(), "an acked probe does not fail");

        let origin = "127.0.0.1:9".parse().unwrap();
        let mine = detector
            .start_indirect(origin, 41, id(4), 2, &mut rng)
            .expect("room for a request");
        assert_ne!(mine, seq, "sequence numbers awaited at once differ");
        assert!(detector
            .start_indirect(origin, 42, id(3), 2, &mut rng)
            .is_some());
        assert!(
            detector
                .start_indirect(origin, 43, id(2), 2, &mut rng)
                .is_none(),
            "requests beyond the bound are declined"
        );
        assert_eq!(detector.nack_due(mine).map(|(_, s)| s), Some(41));
        assert_eq!(detector.nack_due(mine), None, "one nack per request");
        assert!(
            matches!(detector.ack(mine, id(3), 8), Acked::Unknown),
            "only the target's ack is forwarded"
        );
        assert!(matches!(detector.ack(mine, id(4), 8), Acked::Forward(r) if r.origin_seq == 41));
        assert!(matches!(detector.ack(mine, id(4), 8), Acked::Unknown));
    }
}
