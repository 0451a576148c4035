//! The node's one timer table.
//!
//! Every deadline the node keeps lives here, keyed by [`Timer`]: a timer is
//! either armed (at one instant) or not, so re-arming replaces, disarming
//! is one removal, and [`poll_timeout`](super::Node::poll_timeout) reads the
//! earliest entry instead of asking every part for its own deadline.

use std::collections::BTreeSet;
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
    /// next, gossip, run a round, probe the dead, retry the join.
    pub(crate) const DUTIES: [Timer; 7] = [
        Timer::ProbeDirect,
        Timer::ProbeEnd,
        Timer::Probe,
        Timer::Gossip,
        Timer::Round,
        Timer::DeadProbe,
        Timer::Join,
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
#[derive(Debug, Default)]
pub(crate) struct TimerTable {
    slots: [Option<Instant>; SLOTS],
    keyed: BTreeSet<(Instant, Timer)>,
    /// The deadline of each armed keyed timer that does not stack.
    unique: FastMap<Timer, Instant>,
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
            Timer::Forget => 7,
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
        if !timer.stacks() {
            if let Some(old) = self.unique.insert(timer, at) {
                self.keyed.remove(&(old, timer));
            }
        }
        self.keyed.insert((at, timer));
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
        } else if let Some(old) = self.unique.remove(&timer) {
            self.keyed.remove(&(old, timer));
        } else if timer.stacks() {
            self.keyed.retain(|&(_, t)| t != timer);
        }
    }

    /// When `timer` fires, if armed (for a stacking timer: never looked up).
    pub(crate) fn deadline(&self, timer: Timer) -> Option<Instant> {
        match timer.slot() {
            Some(i) => self.slots[i],
            None => self.unique.get(&timer).copied(),
        }
    }

    /// Disarms every timer for which `keep` is false.
    pub(crate) fn retain(&mut self, keep: impl Fn(Timer) -> bool) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if !keep(Timer::in_slot(i)) {
                *slot = None;
            }
        }
        self.keyed.retain(|&(_, timer)| keep(timer));
        self.unique.retain(|&timer, _| keep(timer));
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
        let &(at, timer) = self.keyed.first().filter(|&&(at, _)| at <= now)?;
        self.keyed.remove(&(at, timer));
        if !timer.stacks() {
            self.unique.remove(&timer);
        }
        Some(timer)
    }

    /// Whether any timer is due at `now`.
    pub(crate) fn any_due(&self, now: Instant) -> bool {
        self.slots.iter().flatten().any(|&at| at <= now)
            || self.keyed.first().is_some_and(|&(at, _)| at <= now)
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
        own.chain(self.keyed.first().map(|&(at, _)| at)).min()
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
