//! What the node has for its host: frames to send, events, and the
//! counters of both.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::stats::Stats;
use crate::wire::{self, Header, MemberRecord, Message};

use super::updates::UpdateQueue;
use super::{Event, Transmit};

/// Frames and events waiting to be polled, and the node's counters.
#[derive(Default)]
pub(crate) struct Outbox {
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Counters; parts of the node count their own work here.
    pub(crate) stats: Stats,
}

impl Outbox {
    /// Encodes and queues one frame; returns its length.
    pub(crate) fn push_frame(
        &mut self,
        header: &Header<'_>,
        to: SocketAddr,
        message: &Message,
    ) -> usize {
        let bytes = wire::encode(header, message);
        let len = bytes.len();
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += len as u64;
        self.transmits.push_back(Transmit { to, bytes });
        len
    }

    /// Queues a message built by `make`, filling the rest of the frame
    /// (`max` bytes) with pending updates, after `first` if given. Each
    /// update taken counts one transmission towards `limit`.
    #[allow(clippy::too_many_arguments)] // each is a distinct input of one packing decision
    pub(crate) fn push_with_updates(
        &mut self,
        header: &Header<'_>,
        max: usize,
        to: SocketAddr,
        first: Option<MemberRecord>,
        pending: &mut UpdateQueue,
        limit: u32,
        make: impl Fn(Vec<MemberRecord>) -> Message,
    ) {
        let bare = wire::encoded_len(&(header, make(Vec::new())));
        let mut updates = Vec::new();
        let mut used = bare;
        if let Some(record) = first {
            used += wire::encoded_len(&record);
            updates.push(record);
        }
        // Two spare bytes: the element count's varint may grow from one byte
        // to three (room for 2^21 updates, far more than fit in a frame).
        let budget = max.saturating_sub(used + 2);
        updates.extend(pending.take(budget, limit));
        let len = self.push_frame(header, to, &make(updates));
        debug_assert!(len <= max);
    }

    /// Queues an event for the application.
    pub(crate) fn event(&mut self, event: Event) {
        self.events.push_back(event);
    }

    /// The next frame to send.
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::id::{Generation, Incarnation, NodeId};
    use crate::wire::{Status, PROTOCOL_VERSION};
    use std::net::SocketAddr;

    fn id(n: u16) -> NodeId {
        NodeId::new(SocketAddr::from(([127, 0, 0, 1], n)))
    }

    fn header() -> Header<'static> {
        Header {
            version: PROTOCOL_VERSION,
            label: "",
            sender: id(1),
            generation: Generation(1),
            incarnation: Incarnation(0),
        }
    }

    fn alive(n: u16, metadata_len: usize) -> MemberRecord {
        MemberRecord {
            id: id(n),
            generation: Generation(1),
            incarnation: Incarnation(0),
            status: Status::Alive {
                metadata: vec![7; metadata_len],
            },
        }
    }

    #[test]
    fn frames_are_filled_with_updates_up_to_the_budget_and_counted() {
        let mut pending = UpdateQueue::default();
        for n in 2..60 {
            pending.push(alive(n, 40), 100);
        }
        let mut outbox = Outbox::default();
        let to = SocketAddr::from(([127, 0, 0, 1], 9));
        let gossip = |updates| Message::Gossip { updates };
        outbox.push_with_updates(&header(), 300, to, None, &mut pending, 1, gossip);
        let frame = outbox.poll_transmit().expect("one frame");
        assert!(frame.bytes.len() <= 300, "{} bytes", frame.bytes.len());
        let Message::Gossip { updates } = wire::decode(&Config::default(), &frame.bytes).unwrap().1
        else {
            panic!("a gossip frame");
        };
        assert!(updates.len() > 1, "the frame carries several updates");
        assert_eq!(
            pending.len(),
            58 - updates.len(),
            "with a limit of one, every update sent retires"
        );
        assert_eq!(outbox.stats.frames_sent, 1);
        assert_eq!(outbox.stats.bytes_sent, frame.bytes.len() as u64);
        assert_eq!(outbox.poll_transmit(), None);
    }

    #[test]
    fn the_first_record_always_leads() {
        let mut pending = UpdateQueue::default();
        pending.push(alive(2, 0), 100);
        let mut outbox = Outbox::default();
        let to = SocketAddr::from(([127, 0, 0, 1], 9));
        let first = alive(3, 0);
        let ack = |updates| Message::Ack { seq: 5, updates };
        outbox.push_with_updates(
            &header(),
            1400,
            to,
            Some(first.clone()),
            &mut pending,
            3,
            ack,
        );
        let frame = outbox.poll_transmit().unwrap();
        let Message::Ack { seq, updates } =
            wire::decode(&Config::default(), &frame.bytes).unwrap().1
        else {
            panic!("an ack");
        };
        assert_eq!(seq, 5);
        assert_eq!(updates, vec![first, alive(2, 0)]);
        assert_eq!(pending.len(), 1, "sent once of three times, still queued");
    }
}
