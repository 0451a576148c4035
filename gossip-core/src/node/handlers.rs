//! Handlers of each kind of received message.

use super::*;

/// What walking one member of the table for a sync request costs, in
/// bytes of the requester's reply budget.
const SYNC_WORK_BYTES_PER_MEMBER: usize = 2;

impl<S: Strategy, A: Aggregate> Node<S, A> {
    // ----- message handlers ------------------------------------------------

    /// Whether `source` is a live member; counts the frame as ignored if not.
    pub(super) fn counts_as_member(&mut self, source: &Source) -> bool {
        if !source.member {
            self.outbox.stats.claims_ignored += 1;
        }
        source.member
    }

    pub(super) fn on_ping(
        &mut self,
        now: Instant,
        source: &Source,
        seq: u32,
        view_hash: [u8; 4],
        updates: Vec<MemberRecord>,
    ) {
        self.apply_records(now, source, updates);
        let from = source.sender.addr();
        if !source.member {
            // A stranger (or a member we hold down) gets a bare answer: no
            // piggybacked news, so a ping cannot draw more than about its
            // own size, and nobody outside spends our retransmissions. A
            // member we believe down also hears our verdict, so that it
            // can refute it.
            let verdict = source
                .known
                .then(|| self.view.record_of(source.sender, self.local.id));
            let message = Message::Ack {
                seq,
                updates: verdict.into_iter().collect(),
            };
            let header = self.local.header(&self.config);
            self.outbox.push_frame(&header, from, &message);
            return;
        }
        // A member we suspect is talking to us: tell it so first, so it can
        // refute at once instead of waiting for gossip (whose bounded
        // retransmissions may all have been lost).
        let verdict = self
            .view
            .get(&source.sender)
            .is_some_and(|e| e.liveness == Liveness::Suspect && e.version() >= source.version)
            .then(|| self.view.record_of(source.sender, self.local.id));
        self.send_with_updates(from, verdict, |updates| Message::Ack { seq, updates });
        if view_hash != short_hash(self.view.hash()) {
            self.maybe_start_sync(now, from);
        }
    }

    pub(super) fn on_ack(
        &mut self,
        now: Instant,
        source: &Source,
        seq: u32,
        updates: Vec<MemberRecord>,
    ) {
        // An answer to a challenge proves its sender first, so that what it
        // says of itself in the same frame is heard as a member's word.
        if let Some(candidate) = self.candidates.prove(source.sender, seq) {
            self.timers.disarm(Timer::Candidate(source.sender));
            self.admit(now, source, candidate, updates.first());
        }
        let source = Source {
            member: self.view.is_live(&source.sender),
            known: self.view.knows(&source.sender),
            ..*source
        };
        self.apply_records(now, &source, updates);
        match self
            .detector
            .ack(seq, source.sender, self.config.max_local_health)
        {
            Acked::OwnProbe => self.timers.disarm(Timer::ProbeDirect),
            Acked::Forward(request) => {
                self.send_with_updates(request.origin, None, |updates| Message::Ack {
                    seq: request.origin_seq,
                    updates,
                });
            }
            Acked::Unknown => {}
        }
    }

    pub(super) fn on_ping_req(&mut self, now: Instant, source: &Source, seq: u32, target: NodeId) {
        // Probing on request only live members, for live members: otherwise
        // anyone could aim this node's pings at any address. Declining is
        // not a fault of the frame: the requester may simply know a member
        // we have not heard of yet.
        if !source.member || !self.view.is_live(&target) {
            self.outbox.stats.probe_requests_declined += 1;
            return;
        }
        let Some(my_seq) = self.detector.start_indirect(
            source.sender.addr(),
            seq,
            target,
            self.config.max_indirect_probes.get(),
            &mut self.rng,
        ) else {
            self.outbox.stats.probe_requests_declined += 1;
            return;
        };
        // Lifeguard: answer with a nack well before the requester's own
        // deadline if the target stays silent.
        self.timers.arm(
            Timer::Nack(my_seq),
            now + self.config.probe_timeout.mul_f64(0.8),
        );
        self.timers.arm(
            Timer::ForgetIndirect(my_seq),
            now + self.config.probe_interval,
        );
        self.outbox.stats.indirect_pings_sent += 1;
        self.send_ping(target.addr(), my_seq);
    }

    /// Answers a challenge: an ack echoing it, carrying our own record so
    /// that the challenger learns our life and metadata from us. To an
    /// address that is not a member (nor a seed of ours) the record goes
    /// only if the answer stays within about three times the challenge's
    /// size; otherwise the ack is bare.
    pub(super) fn on_verify(&mut self, source: &Source, seq: u32, request_len: usize) {
        let own = self.local.alive_record();
        let header = self.local.header(&self.config);
        let with_record = Message::Ack {
            seq,
            updates: vec![own],
        };
        let proven = source.known || source.seed;
        let fits = wire::encoded_len(&(&header, &with_record)) <= 3 * request_len;
        let message = if proven || fits {
            with_record
        } else {
            Message::Ack {
                seq,
                updates: Vec::new(),
            }
        };
        self.outbox
            .push_frame(&header, source.sender.addr(), &message);
    }

    /// A member asks to join. A live member (restarted, or asking again)
    /// gets our state at once; anyone else first proves its address, and is
    /// answered once it has.
    pub(super) fn on_join(&mut self, now: Instant, source: &Source, metadata: Vec<u8>) {
        let id = source.sender;
        if !self.view.knows(&id) {
            self.challenge(now, id, source.version, metadata, true, true);
            return;
        }
        // Its own word, from its own address: a member we knew may come
        // back, in this life or a new one.
        self.merge(now, id, source.version, Status::Alive { metadata }, true);
        if self.view.is_live(&id) {
            self.answer_join(now, id.addr());
        }
    }

    /// Sends our state to a member that joined.
    pub(super) fn answer_join(&mut self, now: Instant, to: SocketAddr) {
        if self.allow_state_reply(now, to) {
            self.outbox.stats.joins_answered += 1;
            self.send_state(to, false);
        }
    }

    /// A rumor must fit a frame of ours too, or relaying it would produce a
    /// frame every peer refuses.
    pub(super) fn check_rumors(&self, items: &[wire::WireRumor]) -> Result<(), RecvError> {
        let max = self.max_payload_len();
        match items.iter().find(|item| item.payload.len() > max) {
            Some(item) => Err(RecvError::PayloadTooLarge {
                len: item.payload.len(),
                max,
            }),
            None => Ok(()),
        }
    }

    pub(super) fn on_rumors(&mut self, sender: NodeId, items: Vec<wire::WireRumor>) {
        for item in items {
            let rumor = Rumor {
                id: item.id,
                hops: item.hops.saturating_add(1),
            };
            if self
                .plugins
                .store
                .insert(item.id, item.payload.clone(), rumor.hops)
            {
                self.outbox.stats.rumors_delivered += 1;
                self.outbox.event(Event::Delivered {
                    id: item.id,
                    payload: item.payload,
                });
                self.run_strategy(|strategy, host| strategy.on_rumor(host, rumor, Some(sender)));
            } else {
                self.outbox.stats.rumors_duplicate += 1;
                self.run_strategy(|strategy, host| strategy.on_duplicate(host, rumor, sender));
            }
        }
    }

    pub(super) fn on_sync(
        &mut self,
        now: Instant,
        source: &Source,
        reply: bool,
        range: sync::Range,
        entries: Vec<SyncEntry>,
    ) {
        if !source.vouches() {
            // A stranger's view is not ours to take, nor is it owed ours.
            self.outbox.stats.claims_ignored += 1;
            return;
        }
        // Only an answer from a seed we asked, or from a member we already
        // hold live, completes a join: a stranger's view must not stop the
        // join retries.
        self.local.joined = true;
        // What the sender listed, to answer with only what it lacks.
        let listed = if reply {
            sync::listed(&entries)
        } else {
            Vec::new()
        };
        for entry in entries {
            let version = (entry.generation, entry.incarnation);
            let claim = match entry.liveness {
                Liveness::Alive => Status::Alive {
                    metadata: entry.metadata,
                },
                Liveness::Suspect => Status::Suspect { by: source.sender },
                Liveness::Dead => Status::Dead { by: source.sender },
                Liveness::Left => Status::Left,
            };
            self.apply_record(now, source, entry.id, version, claim, false);
        }
        let to = source.sender.addr();
        if reply && source.member && self.allow_state_reply(now, to) {
            if range.0.is_none() {
                self.outbox.stats.syncs_answered += 1;
            }
            let own = self.local.sync_entry();
            let missing = sync::missing(
                core::iter::once(own).chain(self.view.sync_entries()),
                range,
                &listed,
            );
            if !missing.is_empty() {
                self.pack_state(to, false, missing, range);
            }
            // Finding what the asker lacks walks the whole table, however
            // little it lacks: charge that work as if it were bytes, so a
            // member asking for narrow ranges over and over is held to its
            // budget too.
            let work = SYNC_WORK_BYTES_PER_MEMBER * self.view.len();
            self.sync.charge(to, work);
        }
    }
}
