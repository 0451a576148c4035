//! The node's one timer table.
//!
//! Every deadline the node keeps lives here, keyed by [`Timer`]: a timer is
//! either armed (at one instant) or not, so re-arming replaces, disarming
//! is one removal, and [`poll_timeout`](super::Node::poll_timeout) reads the
//! earliest entry instead of asking every part for its own deadline.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use crate::id::NodeId;
use crate::membership::FastMap;

/// What a deadline is for.
///
/// Due timers fire in protocol order ([`Timer::DUTIES`] first, then the
/// per-member and per-request timers by deadline, then [`Timer::Forget`]);
/// the declaration order breaks ties between timers due at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Timer {
    /// The direct ping of the current probe times out: ask helpers.
    ProbeDirect,
    /// The current probe ends: a probe without an ack becomes a suspicion.
    ProbeEnd,
    /// The next protocol period starts: probe the next member.
    Probe,
    /// Gossip pending membership updates to a few members.
    Gossip,
    /// A dissemination and aggregation round.
    Round,
    /// Ping one member believed dead, to notice a healed partition.
    DeadProbe,
    /// Ask the seeds again until one answers the join.
    Join,
    /// Send the join answers waiting, as the reply budget allows.
    JoinAnswers,
    /// A suspicion of this member times out.
    Suspicion(NodeId),
    /// Ping a member we suspect once more, carrying the suspicion, in case
    /// every gossiped copy of it was lost.
    Remind(NodeId),
    /// The target of an indirect probe we run for another member stayed
    /// silent: answer the requester with a nack.
    Nack(u32),
    /// Drop the record of an indirect probe we ran for another member.
    ForgetIndirect(u32),
    /// A candidate's time to answer its challenge ends.
    Candidate(NodeId),
    /// The oldest dead member reaches the end of its retention.
    Forget,
}

impl Timer {
    /// The node's periodic duties, in the order one protocol period runs
    /// them when several are due: finish the probe in flight, start the
    /// next, gossip, run a round, probe the dead, retry the join, answer
    /// joins.
    pub(crate) const DUTIES: [Timer; 8] = [
        Timer::ProbeDirect,
        Timer::ProbeEnd,
        Timer::Probe,
        Timer::Gossip,
        Timer::Round,
        Timer::DeadProbe,
        Timer::Join,
        Timer::JoinAnswers,
    ];

    /// Whether each arming adds a deadline instead of replacing the last.
    ///
    /// A suspicion whose deadline moves, or a member suspected again, keeps
    /// its earlier deadlines: each fires and checks whether the suspicion is
    /// due (or the member still suspect) then. Every deadline is also a
    /// wake-up that runs any duty left due, so keeping them keeps the
    /// schedule the protocol has always had.
    pub(crate) fn stacks(self) -> bool {
        matches!(self, Timer::Suspicion(_) | Timer::Remind(_))
    }

    /// Whether the timer still runs after a graceful leave: a departed node
    /// only finishes spreading its farewell and forgets the dead.
    pub(crate) fn survives_leave(self) -> bool {
        matches!(self, Timer::Gossip | Timer::Forget)
    }
}

/// Slots of the timers that exist once per node: the duties, then forgetting.
const SLOTS: usize = Timer::DUTIES.len() + 1;

/// Armed timers. The node's own timers (duties and forgetting) sit in fixed
/// slots, since they are re-armed every period; per-member and per-request
/// timers are ordered by deadline, each at most once except those that
/// [stack](Timer::stacks).
///
/// A join can leave a timer per candidate member armed, so keyed timers are
/// kept packed into eight bytes ([`Packed`]) where they can be: those of
/// members with IPv4 addresses and those of requests. The others (members
/// with IPv6 addresses) are kept whole beside them.
#[derive(Debug, Default)]
pub(crate) struct TimerTable {
    slots: [Option<Instant>; SLOTS],
    keyed: BTreeSet<(Instant, Packed)>,
    /// The deadline of each armed packed timer that does not stack.
    unique: FastMap<Packed, Instant>,
    /// Keyed timers that do not pack.
    wide: BTreeSet<(Instant, Timer)>,
    /// The deadline of each armed wide timer that does not stack.
    wide_unique: FastMap<Timer, Instant>,
}

/// A keyed timer packed into a `u64` that orders as the [`Timer`] does:
/// the variant's rank in the top byte, then the member's IPv4 address and
/// port (which order as a `SocketAddr` of that family does) or the
/// request's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Packed(u64);

impl Packed {
    /// Ranks of the keyed variants, in declaration order.
    const SUSPICION: u64 = 1;
    const REMIND: u64 = 2;
    const NACK: u64 = 3;
    const FORGET_INDIRECT: u64 = 4;
    const CANDIDATE: u64 = 5;

    fn new(timer: Timer) -> Option<Self> {
        let member = |rank: u64, id: NodeId| match id.addr() {
            SocketAddr::V4(a) => Some(Self(
                rank << 56 | u64::from(u32::from(*a.ip())) << 16 | u64::from(a.port()),
            )),
            SocketAddr::V6(_) => None,
        };
        match timer {
            Timer::Suspicion(id) => member(Self::SUSPICION, id),
            Timer::Remind(id) => member(Self::REMIND, id),
            Timer::Nack(seq) => Some(Self(Self::NACK << 56 | u64::from(seq))),
            Timer::ForgetIndirect(seq) => Some(Self(Self::FORGET_INDIRECT << 56 | u64::from(seq))),
            Timer::Candidate(id) => member(Self::CANDIDATE, id),
            _ => None,
        }
    }

    fn timer(self) -> Timer {
        let payload = self.0 & ((1 << 56) - 1);
        let id = || {
            let ip = Ipv4Addr::from((payload >> 16) as u32);
            NodeId::new(SocketAddr::from((ip, payload as u16)))
        };
        match self.0 >> 56 {
            Self::SUSPICION => Timer::Suspicion(id()),
            Self::REMIND => Timer::Remind(id()),
            Self::NACK => Timer::Nack(payload as u32),
            Self::FORGET_INDIRECT => Timer::ForgetIndirect(payload as u32),
            _ => Timer::Candidate(id()),
        }
    }
}

impl Timer {
    /// The fixed slot of a timer that exists once per node.
    fn slot(self) -> Option<usize> {
        Some(match self {
            Timer::ProbeDirect => 0,
            Timer::ProbeEnd => 1,
            Timer::Probe => 2,
            Timer::Gossip => 3,
            Timer::Round => 4,
            Timer::DeadProbe => 5,
            Timer::Join => 6,
            Timer::JoinAnswers => 7,
            Timer::Forget => 8,
            Timer::Suspicion(_)
            | Timer::Remind(_)
            | Timer::Nack(_)
            | Timer::ForgetIndirect(_)
            | Timer::Candidate(_) => return None,
        })
    }

    /// The timer in slot `i`.
    fn in_slot(i: usize) -> Timer {
        Timer::DUTIES.get(i).copied().unwrap_or(Timer::Forget)
    }
}

impl TimerTable {
    /// Arms `timer` at `at`, replacing any earlier arming unless it stacks.
    pub(crate) fn arm(&mut self, timer: Timer, at: Instant) {
        if let Some(i) = timer.slot() {
            self.slots[i] = Some(at);
            return;
        }
        let Some(packed) = Packed::new(timer) else {
            if !timer.stacks() {
                if let Some(old) = self.wide_unique.insert(timer, at) {
                    self.wide.remove(&(old, timer));
                }
            }
            self.wide.insert((at, timer));
            return;
        };
        if !timer.stacks() {
            if let Some(old) = self.unique.insert(packed, at) {
                self.keyed.remove(&(old, packed));
            }
        }
        self.keyed.insert((at, packed));
    }

    /// Arms `timer` at `at`, or disarms it when `at` is `None`.
    pub(crate) fn set(&mut self, timer: Timer, at: Option<Instant>) {
        match at {
            Some(at) => self.arm(timer, at),
            None => self.disarm(timer),
        }
    }

    /// Brings `timer` forward to `at` if it is later or not armed.
    pub(crate) fn arm_no_later_than(&mut self, timer: Timer, at: Instant) {
        if self.deadline(timer).is_none_or(|t| t > at) {
            self.arm(timer, at);
        }
    }

    /// Disarms `timer` if it is armed (every arming, if it stacks).
    pub(crate) fn disarm(&mut self, timer: Timer) {
        if let Some(i) = timer.slot() {
            self.slots[i] = None;
        } else if let Some(packed) = Packed::new(timer) {
            if let Some(old) = self.unique.remove(&packed) {
                self.keyed.remove(&(old, packed));
                self.give_back_room();
            } else if timer.stacks() {
                self.keyed.retain(|&(_, t)| t != packed);
            }
        } else if let Some(old) = self.wide_unique.remove(&timer) {
            self.wide.remove(&(old, timer));
        } else if timer.stacks() {
            self.wide.retain(|&(_, t)| t != timer);
        }
    }

    /// When `timer` fires, if armed (for a stacking timer: never looked up).
    pub(crate) fn deadline(&self, timer: Timer) -> Option<Instant> {
        match (timer.slot(), Packed::new(timer)) {
            (Some(i), _) => self.slots[i],
            (None, Some(packed)) => self.unique.get(&packed).copied(),
            (None, None) => self.wide_unique.get(&timer).copied(),
        }
    }

    /// Disarms every timer for which `keep` is false.
    pub(crate) fn retain(&mut self, keep: impl Fn(Timer) -> bool) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if !keep(Timer::in_slot(i)) {
                *slot = None;
            }
        }
        self.keyed.retain(|&(_, packed)| keep(packed.timer()));
        self.unique.retain(|&packed, _| keep(packed.timer()));
        self.wide.retain(|&(_, timer)| keep(timer));
        self.wide_unique.retain(|&timer, _| keep(timer));
    }

    /// Disarms `timer` and says so if it is due at `now`.
    pub(crate) fn take_if_due(&mut self, timer: Timer, now: Instant) -> bool {
        let due = self.deadline(timer).is_some_and(|at| at <= now);
        if due {
            self.disarm(timer);
        }
        due
    }

    /// Disarms and returns the earliest per-member or per-request timer due
    /// at `now`.
    pub(crate) fn pop_due_keyed(&mut self, now: Instant) -> Option<Timer> {
        let (at, timer) = self.first_keyed().filter(|&(at, _)| at <= now)?;
        match Packed::new(timer) {
            Some(packed) => {
                self.keyed.remove(&(at, packed));
                if !timer.stacks() {
                    self.unique.remove(&packed);
                    self.give_back_room();
                }
            }
            None => {
                self.wide.remove(&(at, timer));
                if !timer.stacks() {
                    self.wide_unique.remove(&timer);
                }
            }
        }
        Some(timer)
    }

    /// A cold start arms a challenge timer for every member at once; once
    /// they are disarmed, the index gives back the room of that peak
    /// instead of keeping it for the node's life.
    fn give_back_room(&mut self) {
        if self.unique.capacity() > 64 && self.unique.len() * 4 < self.unique.capacity() {
            self.unique.shrink_to_fit();
        }
    }

    /// The earliest keyed timer, packed or not.
    fn first_keyed(&self) -> Option<(Instant, Timer)> {
        let packed = self.keyed.first().map(|&(at, p)| (at, p.timer()));
        match (packed, self.wide.first().copied()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether any timer is due at `now`.
    pub(crate) fn any_due(&self, now: Instant) -> bool {
        self.slots.iter().flatten().any(|&at| at <= now)
            || self.first_keyed().is_some_and(|(at, _)| at <= now)
    }

    /// The earliest deadline among the timers for which `wakes` is true.
    ///
    /// Some timers stay armed while they have nothing to do (gossip without
    /// news, for example): they keep their place in the schedule and fire
    /// when the node wakes for another reason, but do not wake it
    /// themselves.
    pub(crate) fn earliest(&self, wakes: impl Fn(Timer) -> bool) -> Option<Instant> {
        let own = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, at)| at.filter(|_| wakes(Timer::in_slot(i))));
        own.chain(self.first_keyed().map(|(at, _)| at)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;
    use std::net::SocketAddr;

    #[allow(clippy::disallowed_methods)] // an arbitrary origin; only differences matter
    fn origin() -> Instant {
        Instant::now()
    }

    #[test]
    fn rearming_replaces_and_due_timers_come_out_once() {
        let t0 = origin();
        let member = NodeId::new(SocketAddr::from(([127, 0, 0, 1], 1)));
        let mut table = TimerTable::default();
        table.arm(Timer::Gossip, t0 + Duration::from_secs(5));
        table.arm(Timer::Suspicion(member), t0 + Duration::from_secs(1));
        table.arm(Timer::Probe, t0 + Duration::from_secs(1));
        table.arm(Timer::Gossip, t0 + Duration::from_secs(1));
        assert_eq!(table.earliest(|_| true), Some(t0 + Duration::from_secs(1)));
        assert!(!table.any_due(t0), "nothing is due before its deadline");
        assert_eq!(table.pop_due_keyed(t0), None);
        let later = t0 + Duration::from_secs(1);
        assert!(table.any_due(later));
        assert!(!table.take_if_due(Timer::Join, later), "not armed");
        assert_eq!(table.pop_due_keyed(later), Some(Timer::Suspicion(member)));
        assert_eq!(table.pop_due_keyed(later), None);
        assert!(
            table.take_if_due(Timer::Gossip, later),
            "the re-armed gossip is due once"
        );
        assert!(!table.take_if_due(Timer::Gossip, later));
        assert!(table.take_if_due(Timer::Probe, later));
        assert!(!table.any_due(later));
        assert_eq!(table.earliest(|_| true), None);
    }

    #[test]
    fn packed_timers_order_as_timers_and_mix_with_wide_ones() {
        let v4 = |ip: [u8; 4], port| NodeId::new(SocketAddr::from((ip, port)));
        let v6 = NodeId::new("[2001:db8::1]:7".parse().unwrap());
        let timers = [
            Timer::Suspicion(v4([10, 0, 0, 2], 1)),
            Timer::Suspicion(v4([10, 0, 0, 1], 9)),
            Timer::Suspicion(v4([10, 0, 0, 1], 2)),
            Timer::Remind(v4([9, 0, 0, 1], 2)),
            Timer::Nack(7),
            Timer::Nack(u32::MAX),
            Timer::ForgetIndirect(0),
            Timer::Candidate(v4([255, 255, 255, 255], 65535)),
            Timer::Candidate(v4([0, 0, 0, 0], 0)),
        ];
        for a in timers {
            let packed = Packed::new(a).unwrap();
            assert_eq!(packed.timer(), a);
            for b in timers {
                assert_eq!(packed.cmp(&Packed::new(b).unwrap()), a.cmp(&b));
            }
        }
        assert_eq!(Packed::new(Timer::Candidate(v6)), None);
        let t0 = origin();
        let mut table = TimerTable::default();
        table.arm(Timer::Candidate(v6), t0);
        table.arm(Timer::Candidate(v4([10, 0, 0, 1], 1)), t0);
        table.arm(Timer::Suspicion(v6), t0);
        table.arm(Timer::Nack(3), t0 + Duration::from_secs(1));
        let due: Vec<Timer> =
            core::iter::from_fn(|| table.pop_due_keyed(t0 + Duration::from_secs(1))).collect();
        assert_eq!(
            due,
            [
                Timer::Suspicion(v6),
                Timer::Candidate(v4([10, 0, 0, 1], 1)),
                Timer::Candidate(v6),
                Timer::Nack(3)
            ]
        );
    }

    #[test]
    fn stacking_timers_keep_every_deadline() {
        let t0 = origin();
        let member = NodeId::new(SocketAddr::from(([127, 0, 0, 1], 1)));
        let mut table = TimerTable::default();
        table.arm(Timer::Remind(member), t0 + Duration::from_secs(2));
        table.arm(Timer::Remind(member), t0 + Duration::from_secs(1));
        let due: Vec<Timer> =
            core::iter::from_fn(|| table.pop_due_keyed(t0 + Duration::from_secs(2))).collect();
        assert_eq!(due, [Timer::Remind(member), Timer::Remind(member)]);
    }

    #[test]
    fn quiet_timers_do_not_wake_and_leave_disarms_structurally() {
        let t0 = origin();
        let mut table = TimerTable::default();
        table.arm(Timer::Gossip, t0);
        table.arm(Timer::Probe, t0 + Duration::from_secs(2));
        table.arm(Timer::Forget, t0 + Duration::from_secs(3));
        assert_eq!(
            table.earliest(|t| t != Timer::Gossip),
            Some(t0 + Duration::from_secs(2))
        );
        table.retain(Timer::survives_leave);
        assert_eq!(table.deadline(Timer::Probe), None);
        assert_eq!(table.deadline(Timer::Gossip), Some(t0));
        assert_eq!(
            table.deadline(Timer::Forget),
            Some(t0 + Duration::from_secs(3))
        );
        table.arm_no_later_than(Timer::Forget, t0 + Duration::from_secs(9));
        assert_eq!(
            table.deadline(Timer::Forget),
            Some(t0 + Duration::from_secs(3))
        );
        table.set(Timer::Forget, None);
        assert_eq!(table.earliest(|_| true), Some(t0));
    }
}
