//! Merging claims into the view and following what changed.

use super::*;

impl<S: Strategy, A: Aggregate> Node<S, A> {
    // ----- state merging -------------------------------------------------

    pub(super) fn apply_records(&mut self, now: Instant, records: Vec<MemberRecord>) {
        for record in records {
            let version = (record.generation, record.incarnation);
            self.merge(now, record.id, version, record.status, true);
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
        if id == self.local.id {
            self.claim_about_self(version, &claim);
            return;
        }
        let weighing = Weighing {
            first_hand,
            live_count: self.live_member_count(),
        };
        let change = match self
            .view
            .apply(now, &self.config, id, version, &claim, &weighing)
        {
            Ok(Some(change)) => change,
            Ok(None) => return,
            Err(view::Full) => {
                self.outbox.stats.members_dropped += 1;
                return;
            }
        };
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
            let live = self.view.live().len();
            self.detector.add_candidate(id, live, &mut self.rng);
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
        self.enqueue(MemberRecord {
            id: self.local.id,
            generation: self.local.generation,
            incarnation: self.local.incarnation,
            status: Status::Alive {
                metadata: self.local.metadata.clone(),
            },
        });
    }
}
