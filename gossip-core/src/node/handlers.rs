//! Handlers of each kind of received message.

use super::*;

impl<S: Strategy, A: Aggregate> Node<S, A> {
    // ----- message handlers ------------------------------------------------

    #[allow(clippy::too_many_arguments)] // the fields of one ping
    pub(super) fn on_ping(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: NodeId,
        sender_version: Version,
        seq: u32,
        view_hash: [u8; 8],
        updates: Vec<MemberRecord>,
    ) {
        self.apply_records(now, updates);
        // A member we suspect or believe dead is talking to us: tell it
        // so first, so it can refute at once instead of waiting for
        // gossip (whose bounded retransmissions may all have been lost).
        let verdict = self
            .view
            .get(&sender)
            .is_some_and(|e| {
                matches!(e.liveness, Liveness::Suspect | Liveness::Dead)
                    && e.version() >= sender_version
            })
            .then(|| self.view.record_of(sender, self.local.id));
        self.send_with_updates(from, verdict, |updates| Message::Ack { seq, updates });
        if u64::from_le_bytes(view_hash) != self.view.hash() && from == sender.addr() {
            self.maybe_start_sync(now, from);
        }
    }

    pub(super) fn on_ack(&mut self, seq: u32, sender: NodeId) {
        match self.detector.ack(seq, sender, self.config.max_local_health) {
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

    pub(super) fn on_ping_req(&mut self, now: Instant, from: SocketAddr, seq: u32, target: NodeId) {
        let my_seq = self.detector.start_indirect(from, seq, target);
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

    pub(super) fn on_rumors(
        &mut self,
        sender: NodeId,
        items: Vec<wire::WireRumor>,
    ) -> Result<(), RecvError> {
        // A rumor must fit a frame of ours too, or relaying it would
        // produce a frame every peer refuses.
        let max = self.max_payload_len();
        if let Some(item) = items.iter().find(|item| item.payload.len() > max) {
            return Err(RecvError::PayloadTooLarge {
                len: item.payload.len(),
                max,
            });
        }
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
        Ok(())
    }

    pub(super) fn on_sync(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: NodeId,
        reply: bool,
        range: sync::Range,
        entries: Vec<SyncEntry>,
    ) {
        // Only an answer from a seed we asked, or from a member we already
        // hold live, completes a join: a stranger's view must not stop the
        // join retries.
        if self.local.seeds.contains(&from) || self.view.is_live(&sender) {
            self.local.joined = true;
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
                    metadata: entry.metadata.clone(),
                },
                // A death reported by bulk state is only a suspicion here:
                // the member gets the chance to refute it, so one stale view
                // (say, from across a healed partition) cannot kill healthy
                // members outright.
                Liveness::Suspect | Liveness::Dead => Status::Suspect { by: sender },
                Liveness::Left => Status::Left,
            };
            if entry.liveness == Liveness::Suspect
                && !self.view.knows(&entry.id)
                && entry.id != self.local.id
            {
                // Bulk state may introduce a member we never heard of in a
                // suspect state: learn it as alive first. (Dead strangers
                // are not worth learning, as with gossip.)
                let alive = Status::Alive {
                    metadata: entry.metadata,
                };
                self.merge(now, entry.id, version, alive, false);
            }
            self.merge(now, entry.id, version, claim, false);
        }
        if reply && self.allow_state_reply(now) {
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
                self.pack_state(from, false, missing, range);
            }
        }
    }
}
