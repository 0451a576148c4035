//! The plug-in host: the dissemination strategy and the aggregate, with the
//! rumor store they share, and what they may borrow of the node.
//!
//! A callback gets a [`Hosted`] that borrows only the parts plug-ins need
//! (identity, randomness, live peers, the store, the outbox), so the
//! plug-ins themselves stay in place while they run.

use std::net::SocketAddr;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::aggregate::{Aggregate, AggregateHost};
use crate::config::Config;
use crate::id::{MessageId, NodeId};
use crate::membership::Peers;
use crate::signing::RumorSigner;
use crate::store::RumorStore;
use crate::strategy::{Digest, GossipMessage, Host, Rumor, Strategy};
use crate::wire::{self, Header, Message, SignedRumor, WireRumor};

use super::outbox::Outbox;

/// The parts of the node a plug-in callback borrows.
pub(crate) struct Lent<'a> {
    pub header: Header<'a>,
    pub config: &'a Config,
    pub rng: &'a mut ChaCha8Rng,
    pub peers: Peers<'a>,
    pub outbox: &'a mut Outbox,
}

/// The strategy, the aggregate and what they keep beside them.
pub(crate) struct Plugins<S, A> {
    pub strategy: S,
    pub aggregate: A,
    pub store: RumorStore,
    /// Sequence number of this node's latest broadcast in this generation.
    pub broadcast_seq: u64,
    /// Signs this node's rumors and verifies others', if installed.
    pub signer: Option<Box<dyn RumorSigner>>,
    /// The estimate last reported as an event.
    last_estimate: Option<f64>,
}

impl<S: Strategy, A: Aggregate> Plugins<S, A> {
    pub(crate) fn new(strategy: S, aggregate: A, store: RumorStore) -> Self {
        Self {
            strategy,
            aggregate,
            store,
            broadcast_seq: 0,
            signer: None,
            last_estimate: None,
        }
    }

    /// Whether the round timer matters to anyone.
    pub(crate) fn wants_rounds(&self) -> bool {
        A::ENABLED || self.strategy.wants_rounds()
    }

    /// Runs one strategy callback; returns the bytes it sent.
    pub(crate) fn run_strategy(
        &mut self,
        lent: Lent<'_>,
        callback: impl FnOnce(&mut S, &mut Hosted<'_, '_>),
    ) -> usize {
        let mut hosted = Hosted::new(lent, &self.store, A::SHARE_TYPE);
        callback(&mut self.strategy, &mut hosted);
        hosted.sent
    }

    /// Runs one aggregate callback; returns the estimate if it changed.
    pub(crate) fn run_aggregate(
        &mut self,
        lent: Lent<'_>,
        callback: impl FnOnce(&mut A, &mut Hosted<'_, '_>),
    ) -> Option<f64> {
        let mut hosted = Hosted::new(lent, &self.store, A::SHARE_TYPE);
        callback(&mut self.aggregate, &mut hosted);
        let estimate = self.aggregate.estimate();
        let value = estimate.filter(|_| estimate != self.last_estimate)?;
        self.last_estimate = estimate;
        Some(value)
    }

    /// A member left the view.
    pub(crate) fn peer_down(&mut self, peer: NodeId) {
        self.strategy.on_peer_down(peer);
        self.aggregate.on_peer_down(peer);
    }
}

/// The node as a plug-in sees it for the length of one callback.
pub(crate) struct Hosted<'a, 'b> {
    lent: Lent<'a>,
    store: &'b RumorStore,
    share_type: u32,
    /// Bytes of frames this callback queued.
    sent: usize,
    /// The last announcement this callback encoded (its ids in canonical
    /// order) and its frames: a strategy announces the same ids to every
    /// lazy link, and the frames do not depend on the receiver.
    announced: Option<(Vec<MessageId>, Vec<Vec<u8>>)>,
}

impl<'a, 'b> Hosted<'a, 'b> {
    fn new(lent: Lent<'a>, store: &'b RumorStore, share_type: u32) -> Self {
        Self {
            lent,
            store,
            share_type,
            sent: 0,
            announced: None,
        }
    }

    fn push_frame(&mut self, to: SocketAddr, message: &Message) {
        self.sent += self.lent.outbox.push_frame(&self.lent.header, to, message);
    }

    /// Encodes a strategy's message, attaching payloads and splitting it
    /// into as many frames as the budget needs.
    fn send_gossip(&mut self, to: NodeId, message: GossipMessage) {
        match message {
            GossipMessage::Push { rumors } => {
                // Rumors go with their origin's signature when they have
                // one, in their own message kind, so that unsigned ones pay
                // nothing for signing.
                let mut unsigned = Vec::new();
                let mut signed = Vec::new();
                for r in &rumors {
                    let Some(stored) = self.store.get(r.id) else {
                        continue;
                    };
                    let rumor = WireRumor {
                        id: r.id,
                        hops: r.hops,
                        payload: stored.payload.to_vec(),
                    };
                    match stored.signature {
                        Some(signature) => signed.push(SignedRumor {
                            rumor,
                            signature: signature.to_vec(),
                        }),
                        None => unsigned.push(rumor),
                    }
                }
                self.lent.outbox.stats.rumors_sent += (unsigned.len() + signed.len()) as u64;
                if !unsigned.is_empty() {
                    self.push_rumors(to.addr(), unsigned, false, |items| Message::Rumors {
                        items,
                    });
                }
                if !signed.is_empty() {
                    self.push_rumors(to.addr(), signed, true, |items| Message::SignedRumors {
                        items,
                    });
                }
            }
            GossipMessage::Pull {
                digest,
                reciprocate,
            } => {
                // A digest too long for one frame is cut: the peer then sends
                // a little more than needed, never less than asked.
                let mut heads = digest.heads;
                let bare = wire::encoded_len(&(
                    &self.lent.header,
                    Message::Pull {
                        reciprocate,
                        digest: Digest::default(),
                    },
                )) + 2;
                let room = self.lent.config.max_message_size.get().saturating_sub(bare);
                let mut used = 0;
                heads.retain(|head| {
                    used += wire::encoded_len(head);
                    used <= room
                });
                self.push_frame(
                    to.addr(),
                    &Message::Pull {
                        reciprocate,
                        digest: Digest { heads },
                    },
                );
            }
            GossipMessage::Feedback { known } => {
                self.push_packed(to.addr(), known, |known| Message::Feedback { known });
            }
            GossipMessage::Announce { mut ids } => {
                let before = self.sent;
                wire::canonical_ids(&mut ids);
                self.lent.outbox.stats.announcements_sent += ids.len() as u64;
                match self.announced.take() {
                    Some((same, frames)) if same == ids => {
                        for bytes in &frames {
                            self.sent += self.lent.outbox.push_encoded(to.addr(), bytes.clone());
                        }
                        self.announced = Some((same, frames));
                    }
                    _ => {
                        let first = self.lent.outbox.queued();
                        self.push_ids(to.addr(), ids.clone(), |ids| Message::Announce { ids });
                        let frames = self.lent.outbox.copy_queued_from(first);
                        self.announced = Some((ids, frames));
                    }
                }
                self.lent.outbox.stats.announce_bytes_sent += (self.sent - before) as u64;
            }
            GossipMessage::Graft { mut ids } => {
                wire::canonical_ids(&mut ids);
                self.push_ids(to.addr(), ids, |ids| Message::Graft { ids });
            }
            GossipMessage::Prune => self.push_frame(to.addr(), &Message::Prune),
        }
    }

    /// Packs rumor ids (in [`wire::canonical_ids`] order) greedily into
    /// frames of `wrap(ids)`, to the byte: on the wire they are grouped by
    /// origin, so an id costs what it adds to its group. No ids make one
    /// bare frame: a tree strategy's link request (a graft) or its
    /// acknowledgement (an announcement).
    fn push_ids(
        &mut self,
        to: SocketAddr,
        ids: Vec<MessageId>,
        wrap: impl Fn(Vec<MessageId>) -> Message,
    ) {
        let empty = wire::IdGroupsLen::new();
        let bare = wire::encoded_len(&(&self.lent.header, wrap(Vec::new()))) - empty.len();
        let budget = self.lent.config.max_message_size.get();
        let mut batch = Vec::new();
        let mut size = empty.clone();
        let flush = |hosted: &mut Self, batch: Vec<MessageId>, size: &wire::IdGroupsLen| {
            let before = hosted.sent;
            hosted.push_frame(to, &wrap(batch));
            debug_assert_eq!(hosted.sent - before, bare + size.len(), "sized to the byte");
        };
        for id in ids {
            if bare + size.len() + size.cost(id) > budget && !batch.is_empty() {
                flush(self, core::mem::take(&mut batch), &size);
                size = empty.clone();
            }
            size.add(id);
            batch.push(id);
        }
        // The last batch; empty only when `ids` was.
        flush(self, batch, &size);
    }

    /// Packs rumors (`signed` or not) into frames like
    /// [`push_packed`](Self::push_packed); with
    /// [`Config::coalesce_rumors`], they first join the rumor frame still
    /// queued for `to`, and the last frame stays open for later ones.
    fn push_rumors<T: serde::Serialize>(
        &mut self,
        to: SocketAddr,
        items: Vec<T>,
        signed: bool,
        wrap: impl Fn(Vec<T>) -> Message,
    ) {
        if !self.lent.config.coalesce_rumors {
            self.push_packed(to, items, wrap);
            return;
        }
        let max = self.lent.config.max_message_size.get();
        let mut rest = Vec::new();
        for item in items {
            if rest.is_empty() {
                if let Some(added) = self.lent.outbox.join_rumors(to, signed, &item, max) {
                    self.sent += added;
                    continue;
                }
            }
            rest.push(item);
        }
        if rest.is_empty() {
            return;
        }
        // The element count follows the header and the message's tag.
        let count_at = wire::encoded_len(&(&self.lent.header, wrap(Vec::new()))) - 1;
        let last = self.push_packed(to, rest, wrap);
        self.lent.outbox.open_rumors(to, signed, count_at, last);
    }

    /// Packs `items` greedily into frames of `wrap(items)`; returns how many
    /// went into the last frame.
    fn push_packed<T: serde::Serialize>(
        &mut self,
        to: SocketAddr,
        items: Vec<T>,
        wrap: impl Fn(Vec<T>) -> Message,
    ) -> usize {
        let bare = wire::encoded_len(&(&self.lent.header, wrap(Vec::new()))) + 2;
        let budget = self.lent.config.max_message_size.get();
        let mut batch = Vec::new();
        let mut used = bare;
        for item in items {
            let len = wire::encoded_len(&item);
            if used + len > budget && !batch.is_empty() {
                self.push_frame(to, &wrap(core::mem::take(&mut batch)));
                used = bare;
            }
            used += len;
            batch.push(item);
        }
        let last = batch.len();
        if !batch.is_empty() {
            self.push_frame(to, &wrap(batch));
        }
        last
    }
}

/// The aggregate sees the same node, peers and randomness as the strategy.
impl<T: serde::Serialize> AggregateHost<T> for Hosted<'_, '_> {
    fn me(&self) -> NodeId {
        Host::me(self)
    }

    fn random(&mut self) -> f64 {
        Host::random(self)
    }

    fn sample_peers(&mut self, count: usize, out: &mut Vec<NodeId>) {
        Host::sample_peers(self, count, out);
    }

    fn send(&mut self, to: NodeId, share: T) {
        let share = postcard::to_allocvec(&share).expect("encoding into a Vec cannot fail");
        self.lent.outbox.stats.shares_sent += 1;
        let message = Message::Aggregate {
            share_type: self.share_type,
            share,
        };
        self.push_frame(to.addr(), &message);
    }
}

impl Host for Hosted<'_, '_> {
    fn me(&self) -> NodeId {
        self.lent.header.sender
    }

    fn random(&mut self) -> f64 {
        self.lent.rng.random()
    }

    fn sample_peers(&mut self, count: usize, out: &mut Vec<NodeId>) {
        out.extend(self.lent.peers.choose_many(self.lent.rng, count, &[]));
    }

    fn all_peers(&mut self, out: &mut Vec<NodeId>) {
        out.extend(self.lent.peers.iter());
    }

    fn peer_count(&self) -> usize {
        self.lent.peers.len()
    }

    fn has(&self, id: MessageId) -> bool {
        self.store.has(id)
    }

    fn digest(&self) -> Digest {
        self.store.digest()
    }

    fn missing_from(&self, digest: &Digest, out: &mut Vec<Rumor>) {
        self.store.missing_from(digest, out);
    }

    fn send(&mut self, to: NodeId, message: GossipMessage) {
        self.send_gossip(to, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::share_type;
    use crate::id::{Generation, Incarnation};
    use crate::strategy::NoStrategy;
    use crate::wire::PROTOCOL_VERSION;
    use rand::SeedableRng;

    /// Sends its input to every peer each round; its estimate is its input.
    struct Shout(f64);

    impl Aggregate for Shout {
        type Share = f64;
        const SHARE_TYPE: u32 = share_type("tests/shout/1");

        fn on_round<H: AggregateHost<f64>>(&mut self, host: &mut H) {
            let mut peers = Vec::new();
            host.sample_peers(8, &mut peers);
            for peer in peers {
                host.send(peer, self.0);
            }
        }

        fn on_share<H: AggregateHost<f64>>(&mut self, _host: &mut H, _from: NodeId, _: f64) {}

        fn estimate(&self) -> Option<f64> {
            Some(self.0)
        }

        fn set_input(&mut self, value: f64) {
            self.0 = value;
        }
    }

    #[test]
    fn plug_ins_see_only_live_peers_and_estimates_are_reported_once() {
        let config = Config::default();
        let me = NodeId::new(SocketAddr::from(([127, 0, 0, 1], 1)));
        let header = Header {
            version: PROTOCOL_VERSION,
            label: "",
            sender: me,
            generation: Generation(1),
            incarnation: Incarnation(0),
        };
        let mut view = super::super::view::View::new(me, (Generation(1), Incarnation(0)));
        let weighing = super::super::view::Weighing {
            first_hand: true,
            live_count: 4,
        };
        #[allow(clippy::disallowed_methods)] // an arbitrary origin; time plays no part
        let now = std::time::Instant::now();
        for port in 2..5 {
            let peer = NodeId::new(SocketAddr::from(([127, 0, 0, 1], port)));
            let alive = wire::Status::Alive {
                metadata: Vec::new(),
            };
            let version = (Generation(1), Incarnation(0));
            view.apply(now, &config, peer, version, &alive, &weighing)
                .unwrap();
        }
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut outbox = Outbox::default();
        let mut plugins = Plugins::new(NoStrategy, Shout(1.0), RumorStore::new(16));
        let mut lend = |outbox: &mut Outbox, rng: &mut ChaCha8Rng| -> Option<f64> {
            let lent = Lent {
                header: header.clone(),
                config: &config,
                rng,
                peers: view.live(),
                outbox,
            };
            plugins.run_aggregate(lent, |aggregate, host| aggregate.on_round(host))
        };
        assert_eq!(lend(&mut outbox, &mut rng), Some(1.0), "first estimate");
        assert_eq!(lend(&mut outbox, &mut rng), None, "unchanged: not again");
        let mut sent_to = Vec::new();
        while let Some(transmit) = outbox.poll_transmit() {
            let Message::Aggregate {
                share_type: kind, ..
            } = wire::decode(&config, &transmit.bytes).unwrap().1
            else {
                panic!("only shares");
            };
            assert_eq!(kind, Shout::SHARE_TYPE, "shares carry their type");
            sent_to.push(transmit.to.port());
        }
        sent_to.sort_unstable();
        assert_eq!(sent_to, [2, 2, 3, 3, 4, 4], "every live peer, never itself");
        assert_eq!(outbox.stats.shares_sent, 6);
    }
}
