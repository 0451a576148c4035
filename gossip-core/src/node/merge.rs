//! Merging claims into the view and following what changed.

use super::*;
use crate::membership::Metadata;

impl<S: Strategy, A: Aggregate> Node<S, A> {
    // ----- state merging -------------------------------------------------

    /// Takes the records of one frame, by the rules of who may say what
    /// (see [`apply_record`](Self::apply_record)).
    pub(super) fn apply_records(
        &mut self,
        now: Instant,
        source: &Source,
        records: Vec<MemberRecord>,
    ) {
        for record in records {
            let version = (record.generation, record.incarnation);
            self.apply_record(now, source, record.id, version, record.status, true);
        }
    }

    /// Takes one claim that `source` makes about `id`:
    ///
    /// - about this node, from anyone who was ever a member (or a seed):
    ///   refuted if it says we are down, so refutation is always possible;
    /// - about the sender itself: its own word, which alone may announce a
    ///   departure, a new life or new metadata (a new address still
    ///   proves itself first);
    /// - about a third member, from a live member or a seed only, and
    ///   weighed by [`merge_reported`](Self::merge_reported);
    /// - anything else is ignored and counted.
    pub(super) fn apply_record(
        &mut self,
        now: Instant,
        source: &Source,
        id: NodeId,
        version: Version,
        claim: Status,
        first_hand: bool,
    ) {
        if id == self.local.id {
            if source.known || source.vouches() {
                self.claim_about_self(version, &claim);
            } else {
                self.outbox.stats.claims_ignored += 1;
            }
        } else if id == source.sender {
            match claim {
                Status::Alive { metadata } if !self.view.knows(&id) => {
                    self.challenge(now, id, version, metadata, None, first_hand);
                }
                claim => self.merge(now, id, version, claim, first_hand),
            }
        } else if source.vouches() {
            self.merge_reported(now, source.sender, id, version, claim, first_hand);
        } else {
            self.outbox.stats.claims_ignored += 1;
        }
    }

    /// Weighs what `reporter`, a live member or a seed, says of another
    /// member `id`:
    ///
    /// - that it is alive: taken within the life we know it in (a
    ///   refutation, or new metadata, spreads that way); a new member, a new
    ///   life, or a member we hold down coming back is only taken from the
    ///   member's own answer to a challenge;
    /// - that it is suspect, dead or departed: only a suspicion, within
    ///   the life we know it in, which the member can refute. A departure
    ///   that is not refuted is recorded as a departure when the suspicion
    ///   ends. It confirms a running suspicion only if the reporter is the
    ///   suspecter it names.
    pub(super) fn merge_reported(
        &mut self,
        now: Instant,
        reporter: NodeId,
        id: NodeId,
        version: Version,
        claim: Status,
        first_hand: bool,
    ) {
        let held = self.view.get(&id).map(|e| (e.version(), e.liveness));
        match claim {
            Status::Alive { metadata } => match held {
                // Until a seed's answer came, that answer is how a joining
                // node learns the members: challenging each one named
                // meanwhile would cost one challenge per pair of members
                // in a cold start.
                None if !self.local.seeded => self.outbox.stats.claims_ignored += 1,
                None => self.challenge(now, id, version, metadata, None, first_hand),
                Some((known, liveness))
                    if crate::membership::is_live(liveness) && version.0 == known.0 =>
                {
                    self.merge(now, id, version, Status::Alive { metadata }, first_hand);
                }
                Some((known, _)) if version > known => {
                    self.challenge(now, id, version, metadata, None, first_hand);
                }
                Some(_) => {}
            },
            Status::Suspect { by } | Status::Dead { by } => {
                if !self.reported_down_applies(held, version) {
                    return;
                }
                // A confirmation counts only from the suspecter itself, a
                // live member speaking in its own frame: relayed
                // suspicions are not independent evidence, and one frame
                // naming many suspecters counts once at most.
                let confirms = first_hand && by == reporter;
                self.merge_weighed(
                    now,
                    id,
                    version,
                    Status::Suspect { by },
                    first_hand,
                    confirms,
                );
                if confirms && matches!(claim, Status::Dead { .. }) {
                    // A member that declares the death itself has already
                    // waited out a suspicion of its own: ours shrinks to its
                    // minimum, which still leaves the member that long to
                    // refute.
                    if let Some(deadline) = self.view.hasten(&id) {
                        self.timers.arm(Timer::Suspicion(id), deadline);
                    }
                }
            }
            Status::Left => {
                if !self.reported_down_applies(held, version) {
                    return;
                }
                self.merge_weighed(
                    now,
                    id,
                    version,
                    Status::Suspect { by: reporter },
                    first_hand,
                    false,
                );
                if self.view.liveness(&id) == Some(Liveness::Suspect) {
                    self.view.mark_leaving(&id);
                }
            }
        }
    }

    /// Whether a third party's report that a member is down bears on what
    /// we hold: only about a live member, within the life we know it in,
    /// and not about an older incarnation.
    fn reported_down_applies(&self, held: Option<(Version, Liveness)>, version: Version) -> bool {
        held.is_some_and(|(known, liveness)| {
            crate::membership::is_live(liveness) && version.0 == known.0 && version >= known
        })
    }

    /// Challenges the address of `id` to prove a claim that it is a member
    /// at `version` with `metadata` (and, with `answer_join`, to be
    /// answered with our state echoing that nonce once it has; with `news`,
    /// to be passed on once proven).
    pub(super) fn challenge(
        &mut self,
        now: Instant,
        id: NodeId,
        version: Version,
        metadata: Vec<u8>,
        answer_join: Option<u32>,
        news: bool,
    ) {
        let max = self.config.max_candidates.get();
        let expires = now + self.config.verify_timeout;
        let rng = &mut self.rng;
        let claim = Candidate {
            seq: 0,
            version,
            metadata: Metadata::new(&metadata),
            answer_join,
            news,
            expires,
            sent: 0,
        };
        let proposal = self.candidates.propose(id, claim, max, || rng.random());
        match proposal {
            Proposal::Challenge(seq) => {
                self.outbox.stats.verifications_sent += 1;
                self.send_challenge(now, id, seq);
            }
            // The member asks to join again: its challenge may have been
            // lost. Asking once per join it sends keeps the answer as small
            // as the request.
            Proposal::Waiting(seq) if answer_join.is_some() => self.send_challenge(now, id, seq),
            Proposal::Waiting(_) => {}
            Proposal::Full => self.outbox.stats.candidates_dropped += 1,
        }
    }

    /// Sends (or sends again) the challenge `seq` to `id`, to be asked again
    /// after a probe timeout if unanswered: a lost frame must not keep a
    /// member out for a whole `verify_timeout`.
    pub(super) fn send_challenge(&mut self, now: Instant, id: NodeId, seq: u32) {
        self.timers
            .arm(Timer::Candidate(id), now + self.config.probe_timeout);
        let header = self.local.header(&self.config);
        self.outbox
            .push_frame(&header, id.addr(), &Message::Verify { seq });
    }

    /// A candidate answered its challenge: its address is its own. It
    /// becomes a member in the life its answer states, with the metadata
    /// its own record gives (or the claim's, if the answer carried no
    /// record and states the claimed version).
    pub(super) fn admit(
        &mut self,
        now: Instant,
        source: &Source,
        candidate: Candidate,
        first: Option<&MemberRecord>,
    ) {
        let id = source.sender;
        let own = first.and_then(|record| match &record.status {
            Status::Alive { metadata }
                if record.id == id && (record.generation, record.incarnation) == source.version =>
            {
                Some(metadata.clone())
            }
            _ => None,
        });
        let Some(metadata) = own
            .or_else(|| (candidate.version == source.version).then(|| candidate.metadata.to_vec()))
        else {
            self.outbox.stats.candidates_dropped += 1;
            return;
        };
        self.outbox.stats.candidates_proven += 1;
        let news = candidate.news;
        self.merge(now, id, source.version, Status::Alive { metadata }, news);
        if let Some(nonce) = candidate.answer_join {
            if self.view.is_live(&id) {
                self.queue_join_answer(now, id, nonce);
            }
        }
    }

    /// Merges one claim into the view and carries out what follows from
    /// the change: events, timers, probing, plug-ins, and passing the news
    /// on (`first_hand`: the claim came as news rather than bulk state).
    pub(super) fn merge(
        &mut self,
        now: Instant,
        id: NodeId,
        version: Version,
        claim: Status,
        first_hand: bool,
    ) {
        self.merge_weighed(now, id, version, claim, first_hand, first_hand);
    }

    /// [`merge`](Self::merge), saying apart whether a suspicion claim
    /// `confirms` a running suspicion (only a suspecter's own word does).
    pub(super) fn merge_weighed(
        &mut self,
        now: Instant,
        id: NodeId,
        version: Version,
        claim: Status,
        first_hand: bool,
        confirms: bool,
    ) {
        if id == self.local.id {
            self.claim_about_self(version, &claim);
            return;
        }
        let weighing = Weighing {
            first_hand: confirms,
            live_count: self.live_member_count(),
        };
        let change = match self
            .view
            .apply(now, &self.config, id, version, &claim, &weighing)
        {
            Ok(Some(change)) => change,
            Ok(None) => {
                if first_hand && matches!(claim, Status::Alive { .. }) {
                    let limit = retransmit_limit(
                        self.config.retransmit_mult.get(),
                        self.live_member_count(),
                    );
                    self.pending.heard_again(id, version, limit);
                }
                return;
            }
            Err(view::Full) => {
                self.outbox.stats.members_dropped += 1;
                return;
            }
        };
        let joined = matches!(change, ViewChange::Added);
        self.follow(id, change);
        if first_hand {
            // Deaths and suspicions are passed on at once rather than at the
            // next gossip round: a death then reaches everyone at network
            // speed, and a suspicion reaches its subject while it can still
            // refute. Each node does this once per news, so the cost is one
            // early round per node per event.
            if matches!(claim, Status::Dead { .. } | Status::Suspect { .. })
                && self.local.phase == Phase::Running
            {
                self.timers.arm_no_later_than(Timer::Gossip, now);
            }
            self.enqueue(MemberRecord {
                id,
                generation: version.0,
                incarnation: version.1,
                status: claim,
            });
            if joined {
                self.pending.mark_join(id);
            }
        } else if !matches!(claim, Status::Alive { .. }) {
            // Learned from bulk state. Liveness news spreads by further syncs,
            // which cost nothing once views agree; but a suspicion must reach
            // its subject quickly so that it can refute in time.
            let record = self.view.record_of(id, self.local.id);
            self.enqueue(record);
        }
    }

    /// What follows from one change of the view, in the order the parts
    /// must hear of it.
    pub(super) fn follow(&mut self, id: NodeId, change: ViewChange) {
        if change.moved_suspicion() {
            let deadline = self.view.suspicion_deadline(&id).expect("suspected");
            self.timers.arm(Timer::Suspicion(id), deadline);
        }
        if change.came_up() {
            let slot = self.view.slot_of(&id).expect("a live member is known");
            self.detector
                .add_candidate(slot, &mut self.view, &mut self.rng);
        }
        if change.went_down() {
            self.plugins.peer_down(id);
            self.timers.set(Timer::Forget, self.view.next_forget());
        }
        let events: &[fn(Member) -> Event] = match change {
            ViewChange::Added | ViewChange::Revived { suspect: false } => &[Event::MemberUp],
            ViewChange::Revived { suspect: true } => &[Event::MemberUp, Event::MemberSuspect],
            ViewChange::Suspected => &[Event::MemberSuspect],
            ViewChange::Refreshed { visible: true } => &[Event::MemberUpdated],
            ViewChange::Died => &[Event::MemberDown],
            ViewChange::Left => &[Event::MemberLeft],
            ViewChange::Refreshed { visible: false } | ViewChange::Confirmed => &[],
        };
        for make in events {
            self.outbox.event(make(self.view.member(id)));
        }
    }

    pub(super) fn claim_about_self(&mut self, version: Version, claim: &Status) {
        if version.0 != self.local.generation || self.local.phase != Phase::Running {
            // News about an earlier life of this address, or we are leaving.
            return;
        }
        match claim {
            Status::Alive { .. } => {
                if version.1 > self.local.incarnation {
                    // Someone holds a newer incarnation of us than we do (we
                    // lost state?): move past it so our word wins again.
                    self.bump_incarnation(version.1);
                }
            }
            Status::Suspect { .. } | Status::Dead { .. } | Status::Left => {
                if version.1 >= self.local.incarnation {
                    self.outbox.stats.refutations += 1;
                    // Lifeguard: being suspected hints that we are the slow one.
                    self.detector.adjust_health(1, self.config.max_local_health);
                    self.bump_incarnation(version.1);
                }
            }
        }
    }

    /// Moves to the incarnation after `past` and announces it.
    pub(super) fn bump_incarnation(&mut self, past: Incarnation) {
        let old = self.local.version();
        let highest = past.max(self.local.incarnation);
        if highest.0 == u32::MAX {
            // Incarnations ran out (perhaps a forged claim at the last one,
            // which no refutation could beat): live on as the next
            // generation, which outranks every incarnation of this one. A
            // later restart picks a far larger generation anyway.
            self.local.generation = Generation(self.local.generation.0.saturating_add(1));
            self.local.incarnation = Incarnation(0);
            self.plugins.broadcast_seq = 0;
        } else {
            self.local.incarnation = highest.next();
        }
        self.view
            .rehash_self(self.local.id, old, self.local.version());
        let own = self.local.alive_record();
        self.enqueue(own);
    }
}
