//! What the node has for its host: frames to send, events, and the
//! counters of both.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use crate::stats::Stats;
use crate::wire::{self, Header, MemberRecord, Message};

use super::updates::UpdateQueue;
use super::{Event, Transmit};

/// Frames and events waiting to be polled, and the node's counters.
#[derive(Default)]
pub(crate) struct Outbox {
    transmits: VecDeque<Transmit>,
    /// Frames taken by the host so far: `transmits[0]`'s place in the
    /// sequence of all frames queued.
    polled: u64,
    /// Per member, the rumor frame queued last for it that more rumors
    /// may still join (see `Config::coalesce_rumors`).
    open: BTreeMap<SocketAddr, OpenRumors>,
    events: VecDeque<Event>,
    /// Counters; parts of the node count their own work here.
    pub(crate) stats: Stats,
}

/// A queued rumor frame that more rumors may join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OpenRumors {
    /// Its place in the sequence of all frames queued.
    frame: u64,
    /// Whether it is a frame of signed rumors.
    signed: bool,
    /// Where its one-byte element count sits.
    count_at: usize,
}

/// Most rumors a joined frame carries: its count stays one byte.
const MAX_JOINED: u8 = 127;

impl Outbox {
    /// Encodes and queues one frame; returns its length. Rumors queued
    /// later for `to` no longer join an earlier frame, so that frames to
    /// one member keep their order.
    pub(crate) fn push_frame(
        &mut self,
        header: &Header<'_>,
        to: SocketAddr,
        message: &Message,
    ) -> usize {
        self.push_encoded(to, wire::encode(header, message))
    }

    /// Queues a frame already encoded (the same announcement for several
    /// members); returns its length. Like [`push_frame`](Self::push_frame),
    /// it closes the rumor frame open for `to`.
    pub(crate) fn push_encoded(&mut self, to: SocketAddr, bytes: Vec<u8>) -> usize {
        self.open.remove(&to);
        let len = bytes.len();
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += len as u64;
        self.transmits.push_back(Transmit { to, bytes });
        len
    }

    /// Frames queued and not yet polled.
    pub(crate) fn queued(&self) -> usize {
        self.transmits.len()
    }

    /// Copies of the frames queued after the first `from` still waiting.
    pub(crate) fn copy_queued_from(&self, from: usize) -> Vec<Vec<u8>> {
        self.transmits
            .iter()
            .skip(from)
            .map(|t| t.bytes.clone())
            .collect()
    }

    /// Lets later rumors for `to` join the frame just queued for it: a
    /// frame of `count` rumors (`signed` or not) whose element count is the
    /// byte at `count_at`.
    pub(crate) fn open_rumors(
        &mut self,
        to: SocketAddr,
        signed: bool,
        count_at: usize,
        count: usize,
    ) {
        let Some(last) = self.transmits.back() else {
            return;
        };
        if last.to != to
            || count >= usize::from(MAX_JOINED)
            || last.bytes.get(count_at) != Some(&(count as u8))
        {
            return;
        }
        let frame = self.polled + self.transmits.len() as u64 - 1;
        self.open.insert(
            to,
            OpenRumors {
                frame,
                signed,
                count_at,
            },
        );
    }

    /// Appends `item` (a rumor, `signed` or not, as its frame encodes it)
    /// to the open rumor frame for `to` if there is one of that kind with
    /// room within `max` bytes; returns the bytes added.
    pub(crate) fn join_rumors<T: serde::Serialize>(
        &mut self,
        to: SocketAddr,
        signed: bool,
        item: &T,
        max: usize,
    ) -> Option<usize> {
        let open = *self.open.get(&to)?;
        let index = open.frame.checked_sub(self.polled)?;
        let transmit = usize::try_from(index)
            .ok()
            .and_then(|i| self.transmits.get_mut(i))?;
        let len = wire::encoded_len(item);
        let count = transmit.bytes[open.count_at];
        if open.signed != signed || transmit.bytes.len() + len > max || count >= MAX_JOINED {
            return None;
        }
        transmit.bytes[open.count_at] = count + 1;
        let mut bytes = core::mem::take(&mut transmit.bytes);
        // Room for the whole frame at the first join, so that the rumors
        // joining after it do not move the frame again and again.
        bytes.reserve(max.saturating_sub(bytes.len()));
        transmit.bytes = postcard::to_extend(item, bytes).expect("encoding into a Vec cannot fail");
        self.stats.bytes_sent += len as u64;
        Some(len)
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
        let transmit = self.transmits.pop_front()?;
        self.polled += 1;
        if self.transmits.is_empty() {
            self.open.clear();
        }
        Some(transmit)
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
