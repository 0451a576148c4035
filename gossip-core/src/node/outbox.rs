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
