//! Encoding frames and lending parts to the plug-ins.

use super::*;

/// The four bytes of the view hash a ping carries: enough to notice that
/// two views differ (a miss is one in four billion, and the next ping to
/// another member catches it), half the bytes of the whole hash.
pub(super) fn short_hash(hash: u64) -> [u8; 4] {
    let folded = (hash ^ (hash >> 32)) as u32;
    folded.to_le_bytes()
}

impl<S: Strategy, A: Aggregate> Node<S, A> {
    // ----- sending -------------------------------------------------------

    /// Sends a message built by `make`, filling the rest of the frame with
    /// pending updates (after `first`, if given).
    pub(super) fn send_with_updates(
        &mut self,
        to: SocketAddr,
        first: Option<MemberRecord>,
        make: impl Fn(Vec<MemberRecord>) -> Message,
    ) {
        let limit = retransmit_limit(self.config.retransmit_mult.get(), self.live_member_count());
        let header = self.local.header(&self.config);
        self.outbox.push_with_updates(
            &header,
            self.config.max_message_size.get(),
            to,
            first,
            &mut self.pending,
            limit,
            make,
        );
    }

    pub(super) fn send_ping(&mut self, to: SocketAddr, seq: u32) {
        let view_hash = short_hash(self.view.hash());
        // Probing a member we suspect or believe dead: carry that claim, so the
        // member can refute it even if every gossiped copy was lost.
        let target = NodeId::new(to);
        let verdict = matches!(
            self.view.liveness(&target),
            Some(Liveness::Suspect | Liveness::Dead)
        )
        .then(|| self.view.record_of(target, self.local.id));
        if !self.view.is_live(&target) {
            // A member we hold dead gets only our verdict: news is for
            // members, and its retransmissions are not spent on others.
            let message = Message::Ping {
                seq,
                view_hash,
                updates: verdict.into_iter().collect(),
            };
            let header = self.local.header(&self.config);
            self.outbox.push_frame(&header, to, &message);
            return;
        }
        self.send_with_updates(to, verdict, |updates| Message::Ping {
            seq,
            view_hash,
            updates,
        });
    }

    pub(super) fn send_join(&mut self) {
        self.local.join_attempts = self.local.join_attempts.saturating_add(1);
        let message = self.local.join_request();
        let header = self.local.header(&self.config);
        for &seed in &self.local.seeds {
            self.outbox.push_frame(&header, seed, &message);
        }
    }

    /// Sends this node's whole view, split into as many frames as needed.
    /// With `reply`, every frame asks the receiver for what it knows better
    /// in that frame's id range. Every frame carries `nonce` (see
    /// [`Message::Sync`]).
    pub(super) fn send_state(&mut self, to: SocketAddr, reply: bool, nonce: u32) {
        let mut view: Vec<SyncEntry> = core::iter::once(self.local.sync_entry())
            .chain(self.view.sync_entries())
            .collect();
        view.sort_unstable_by_key(|m| m.id);
        self.pack_state(to, reply, nonce, view, (None, None));
    }

    /// Packs `view` (sorted by id) into sync frames and charges the bytes
    /// to the reply budget.
    pub(super) fn pack_state(
        &mut self,
        to: SocketAddr,
        reply: bool,
        nonce: u32,
        view: Vec<SyncEntry>,
        range: sync::Range,
    ) {
        let header = self.local.header(&self.config);
        let max = self.config.max_message_size.get();
        let sent = sync::pack(
            &mut self.outbox,
            &header,
            max,
            to,
            reply,
            nonce,
            view,
            range,
        );
        self.sync.charge(to, sent);
    }

    // ----- plug-ins ------------------------------------------------------

    /// Runs one strategy callback with the parts it may borrow; returns the
    /// bytes it sent.
    pub(super) fn run_strategy(
        &mut self,
        callback: impl FnOnce(&mut S, &mut Hosted<'_, '_>),
    ) -> usize {
        let (plugins, lent) = self.lend();
        plugins.run_strategy(lent, callback)
    }

    /// Runs one aggregate callback, then reports a changed estimate.
    pub(super) fn run_aggregate(&mut self, callback: impl FnOnce(&mut A, &mut Hosted<'_, '_>)) {
        let (plugins, lent) = self.lend();
        if let Some(value) = plugins.run_aggregate(lent, callback) {
            self.outbox.event(Event::Estimate(value));
        }
    }

    /// The plug-ins, and the parts of the node they may borrow.
    fn lend(&mut self) -> (&mut Plugins<S, A>, Lent<'_>) {
        let lent = Lent {
            header: self.local.header(&self.config),
            config: &self.config,
            rng: &mut self.rng,
            peers: self.view.live(),
            outbox: &mut self.outbox,
        };
        (&mut self.plugins, lent)
    }
}
