//! Handlers of each kind of received message.

use super::*;

/// A rumor as received, with its signature if it carried one.
pub(super) type ReceivedRumor = (wire::WireRumor, Option<Vec<u8>>);

/// What became of a rumor naming this node as its origin.
enum OwnRumor {
    /// Refused: too far ahead, or its signature does not verify.
    Refused,
    /// This node's own rumor coming back, or an id already settled.
    Duplicate,
    /// A forgery, recorded; with the real payload whose id it took, if any.
    Forged(Option<Vec<u8>>),
}

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
            Acked::OwnProbe => {
                self.timers.disarm(Timer::ProbeDirect);
                if !self.local.seeded && source.seed {
                    // Our seed answers our probes, so it is up and our join
                    // answer waits in its queue (a cold start of thousands
                    // is paced by its reply budget): keep waiting for it.
                    // Only the seed can echo our probe's random number.
                    self.local.seed_wait_until = Some(now + self.config.seed_answer_wait);
                }
            }
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
    /// has its answer queued at once; anyone else first proves its address,
    /// and is queued once it has. The answer echoes `nonce`.
    pub(super) fn on_join(&mut self, now: Instant, source: &Source, nonce: u32, metadata: Vec<u8>) {
        let id = source.sender;
        if !self.view.knows(&id) {
            self.challenge(now, id, source.version, metadata, Some(nonce), true);
            return;
        }
        // Its own word, from its own address: a member we knew may come
        // back, in this life or a new one.
        self.merge(now, id, source.version, Status::Alive { metadata }, true);
        if self.view.is_live(&id) {
            self.queue_join_answer(now, id, nonce);
        }
    }

    /// A rumor must fit a frame of ours too, or relaying it would produce a
    /// frame every peer refuses. A signed rumor's signature takes its share.
    pub(super) fn check_rumors(&self, items: &[ReceivedRumor]) -> Result<(), RecvError> {
        let room = self.max_unsigned_payload_len();
        for (item, signature) in items {
            let overhead = signature
                .as_ref()
                .map_or(0, |s| wire::signature_overhead(s.len()));
            let max = room.saturating_sub(overhead);
            if item.payload.len() > max {
                return Err(RecvError::PayloadTooLarge {
                    len: item.payload.len(),
                    max,
                });
            }
        }
        Ok(())
    }

    /// Whether `id` runs more than `max_sequence_gap` ahead of the highest
    /// sequence held from its origin life (never, if none is held).
    fn too_far_ahead(&self, id: MessageId) -> bool {
        let gap = self.config.max_sequence_gap.get();
        self.plugins
            .store
            .highest(id.origin, id.generation)
            .is_some_and(|highest| id.sequence > highest.saturating_add(gap))
    }

    /// Whether the rumor's signature is its origin's, when this node
    /// checks signatures at all.
    fn signature_holds(&self, id: MessageId, payload: &[u8], signature: Option<&[u8]>) -> bool {
        match &self.plugins.signer {
            None => true,
            Some(signer) => signature.is_some_and(|s| signer.verify(id, payload, s)),
        }
    }

    pub(super) fn on_rumors(&mut self, sender: NodeId, items: Vec<ReceivedRumor>) {
        let mut reissue = Vec::new();
        for (item, signature) in items {
            let rumor = Rumor {
                id: item.id,
                hops: item.hops.saturating_add(1),
            };
            let id = item.id;
            let own = id.origin == self.local.id && id.generation >= self.local.generation.0;
            if own {
                match self.on_own_rumor(&item, signature.as_deref()) {
                    OwnRumor::Refused => {}
                    OwnRumor::Duplicate => {
                        self.outbox.stats.rumors_duplicate += 1;
                        self.run_strategy(|strategy, host| {
                            strategy.on_duplicate(host, rumor, sender)
                        });
                    }
                    OwnRumor::Forged(real) => {
                        // Held now (without a payload): tell the strategy
                        // it is old news here, so the sender cools it.
                        self.run_strategy(|strategy, host| {
                            strategy.on_duplicate(host, rumor, sender)
                        });
                        reissue.extend(real.map(|payload| (id, payload)));
                    }
                }
                continue;
            }
            if self.plugins.store.has(id) {
                self.outbox.stats.rumors_duplicate += 1;
                self.run_strategy(|strategy, host| strategy.on_duplicate(host, rumor, sender));
                continue;
            }
            if self.too_far_ahead(id) {
                self.outbox.stats.rumors_refused_gap += 1;
                continue;
            }
            if !self.signature_holds(id, &item.payload, signature.as_deref()) {
                self.outbox.stats.rumors_refused_signature += 1;
                continue;
            }
            self.plugins
                .store
                .insert(id, item.payload.clone(), rumor.hops, signature);
            self.outbox.stats.rumors_delivered += 1;
            self.outbox.event(Event::Delivered {
                id,
                payload: item.payload,
            });
            self.run_strategy(|strategy, host| strategy.on_rumor(host, rumor, Some(sender)));
        }
        // Every claim of the frame is recorded before the real payloads go
        // out again, so that none of them lands on an id the same frame
        // forged.
        for (old, payload) in reissue {
            let new = self.originate(payload);
            self.outbox.stats.rumors_reissued += 1;
            self.outbox.event(Event::Reissued { old, new });
        }
    }

    /// A rumor that names this node as its origin, in its current life or
    /// a later one. This node is the authority over its own sequence
    /// numbers: it never delivers nor relays such a rumor unless it sent
    /// it. A forgery's id is recorded (so that this node's next broadcast
    /// skips it and digests cover it); a real payload whose id the forgery
    /// took is returned, to be sent again under a fresh id.
    fn on_own_rumor(&mut self, item: &wire::WireRumor, signature: Option<&[u8]>) -> OwnRumor {
        let id = item.id;
        let stats = &mut self.outbox.stats;
        if id.generation > self.local.generation.0 {
            // A life this process has not started: nobody could have
            // broadcast in it. Nothing to record; the life that starts it
            // is another process, which hears of the forgery itself.
            stats.own_rumors_forged += 1;
            return OwnRumor::Refused;
        }
        if id.sequence <= self.plugins.broadcast_seq {
            match self.plugins.store.get(id) {
                Some(stored) if stored.payload == item.payload.as_slice() => {
                    return OwnRumor::Duplicate;
                }
                Some(_) => {}
                // Taken already, or evicted: nothing left to compare with
                // or to send again.
                None => {
                    self.plugins.store.insert_known(id);
                    return OwnRumor::Duplicate;
                }
            }
        } else if self.plugins.store.has(id) {
            return OwnRumor::Duplicate; // a forgery already recorded
        } else if self.too_far_ahead(id) {
            self.outbox.stats.rumors_refused_gap += 1;
            return OwnRumor::Refused;
        }
        // With signatures on, a claim that does not verify changes
        // nothing here (and no honest node took it either).
        if !self.signature_holds(id, &item.payload, signature) {
            self.outbox.stats.rumors_refused_signature += 1;
            return OwnRumor::Refused;
        }
        self.outbox.stats.own_rumors_forged += 1;
        let real = self.plugins.store.take_payload(id);
        self.plugins.store.insert_known(id);
        OwnRumor::Forged(real)
    }

    /// A slice of `source`'s view.
    ///
    /// An answer from a seed that echoes the nonce of our own join or sync
    /// request names members on the seed's word: those we do not know are
    /// admitted without a challenge each. Only the seed (the operator named
    /// it) or a node that saw our request can produce such an answer, so an
    /// address forger cannot add anyone this way. Everything else is
    /// weighed claim by claim, as gossip is: a new member still proves its
    /// own address.
    pub(super) fn on_sync(
        &mut self,
        now: Instant,
        source: &Source,
        reply: bool,
        nonce: u32,
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
        let seed_answer = !reply && source.seed && nonce == self.local.seed_nonce;
        if seed_answer {
            self.local.seeded = true;
        }
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
            let vouched = seed_answer
                && matches!(claim, Status::Alive { .. })
                && entry.id != self.local.id
                && !self.view.knows(&entry.id);
            if vouched {
                self.outbox.stats.members_vouched += 1;
                self.merge(now, entry.id, version, claim, false);
            } else {
                self.apply_record(now, source, entry.id, version, claim, false);
            }
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
                self.pack_state(to, false, nonce, missing, range);
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
