//! What a simulation did, frame by frame and event by event, for tests that
//! assert on it.

use core::time::Duration;
use std::net::SocketAddr;

use gossip_core::{Event, Member, RecvError};

/// What became of a recorded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Scheduled for delivery, not arrived yet.
    InFlight,
    /// The receiver accepted it.
    Delivered,
    /// The receiver refused it with this error.
    Refused(RecvError),
    /// Lost to the link model's loss rate.
    Lost,
    /// Dropped by a partition, a blocked link, a crashed receiver or an
    /// address no node listens at.
    Blocked,
    /// Waiting for the caller under [`Drive::Manual`](crate::Drive::Manual);
    /// the simulator does not follow it further.
    Held,
}

/// Where a recorded frame came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A node sent it.
    Sent,
    /// The network's second copy of the frame recorded just before.
    Duplicate,
    /// Handed to a node by [`Simulator::inject`](crate::Simulator::inject),
    /// under whatever sender address the caller chose.
    Injected,
}

/// One frame on the simulated network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameRecord {
    /// Virtual time it was sent (or injected).
    pub at: Duration,
    /// Sender address (forged ones included, for injected frames).
    pub from: SocketAddr,
    /// Destination address.
    pub to: SocketAddr,
    /// The encoded frame.
    pub bytes: Vec<u8>,
    /// Where it came from.
    pub origin: Origin,
    /// What became of it so far.
    pub fate: Fate,
}

/// One event a node emitted.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    /// Virtual time it was polled.
    pub at: Duration,
    /// Index of the node that emitted it.
    pub node: usize,
    /// The event.
    pub event: Event,
}

/// The kind of a membership event, for matching without its payload
/// (`Event` is `#[non_exhaustive]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `MemberUp`.
    Up,
    /// `MemberSuspect`.
    Suspect,
    /// `MemberDown`.
    Down,
    /// `MemberLeft`.
    Left,
    /// `MemberUpdated`.
    Updated,
    /// Anything that is not about a member (deliveries, estimates, ...).
    Other,
}

impl EventRecord {
    /// The kind of the event.
    pub fn kind(&self) -> EventKind {
        match self.event {
            Event::MemberUp(_) => EventKind::Up,
            Event::MemberSuspect(_) => EventKind::Suspect,
            Event::MemberDown(_) => EventKind::Down,
            Event::MemberLeft(_) => EventKind::Left,
            Event::MemberUpdated(_) => EventKind::Updated,
            _ => EventKind::Other,
        }
    }

    /// The member the event is about, for membership events.
    pub fn member(&self) -> Option<&Member> {
        event_member(&self.event)
    }
}

/// The member `event` is about, for membership events.
pub fn event_member(event: &Event) -> Option<&Member> {
    match event {
        Event::MemberUp(m)
        | Event::MemberSuspect(m)
        | Event::MemberDown(m)
        | Event::MemberLeft(m)
        | Event::MemberUpdated(m) => Some(m),
        _ => None,
    }
}

/// Every frame and event of a run, in the order they happened. Kept only
/// when asked for (see [`SimBuilder::record`](crate::SimBuilder::record)):
/// large runs would fill memory.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Trace {
    pub(crate) frames: Vec<FrameRecord>,
    pub(crate) events: Vec<EventRecord>,
}
