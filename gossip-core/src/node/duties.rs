//! What the node does when its timers fire: probing, gossip rounds, dead probes, join retries.

use super::*;

impl<S: Strategy, A: Aggregate> Node<S, A> {
    // ----- timers ----------------------------------------------------------

    pub(super) fn fire(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::ProbeDirect => self.ask_helpers(),
            Timer::ProbeEnd => self.end_probe(now),
            Timer::Probe => self.start_probe(now),
            Timer::Gossip => self.gossip_round(now),
            Timer::Round => {
                if self.local.phase == Phase::Running {
                    self.timers
                        .arm(Timer::Round, now + self.config.gossip_interval);
                    if self.plugins.strategy.wants_rounds() {
                        self.run_strategy(|strategy, host| strategy.on_round(host));
                    }
                    if A::ENABLED {
                        self.run_aggregate(|aggregate, host| aggregate.on_round(host));
                    }
                }
            }
            Timer::DeadProbe => {
                self.timers
                    .arm(Timer::DeadProbe, now + self.config.dead_probe_interval);
                if let Some(target) = self.view.dead().choose(&mut self.rng) {
                    self.outbox.stats.dead_probes_sent += 1;
                    let seq = self.detector.next_seq(&mut self.rng);
                    self.send_ping(target.addr(), seq);
                }
            }
            Timer::Join => {
                if self.local.seed_wait_until.is_some_and(|t| t <= now) {
                    // No seed answered in time: learn members from anyone.
                    self.local.seeded = true;
                }
                if !self.local.seeded {
                    self.send_join();
                    self.timers.arm(Timer::Join, now + self.join_retry_wait());
                }
            }
            Timer::JoinAnswers => self.send_join_answers(now),
            Timer::Suspicion(id) => {
                if self.view.suspicion_deadline(&id).is_some_and(|t| t <= now) {
                    self.declare_dead(now, id);
                }
            }
            Timer::Remind(id) => {
                if self.view.liveness(&id) == Some(Liveness::Suspect) {
                    self.outbox.stats.reminders_sent += 1;
                    let seq = self.detector.next_seq(&mut self.rng);
                    self.send_ping(id.addr(), seq);
                }
            }
            Timer::Nack(seq) => {
                if let Some((origin, origin_seq)) = self.detector.nack_due(seq) {
                    self.send_with_updates(origin, None, |updates| Message::Nack {
                        seq: origin_seq,
                        updates,
                    });
                }
            }
            Timer::ForgetIndirect(seq) => self.detector.forget_indirect(seq),
            Timer::Candidate(id) => match self.candidates.timed_out(&id, now) {
                Timeout::Resend(seq) => self.send_challenge(now, id, seq),
                Timeout::Wait(until) => self.timers.arm(Timer::Candidate(id), until),
                Timeout::Expired => self.outbox.stats.candidates_dropped += 1,
                Timeout::Gone => {}
            },
            Timer::Forget => {
                self.view.forget_due(now, self.config.dead_retention);
                self.timers.set(Timer::Forget, self.view.next_forget());
            }
        }
    }

    // ----- probing -------------------------------------------------------

    pub(super) fn start_probe(&mut self, now: Instant) {
        let schedule = ProbeSchedule::new(now, &self.config, self.detector.health_scale());
        self.timers.arm(Timer::Probe, schedule.end);
        let Some(target) = self.detector.next_target(&mut self.view, &mut self.rng) else {
            self.detector.cancel();
            self.timers.disarm(Timer::ProbeDirect);
            self.timers.disarm(Timer::ProbeEnd);
            return;
        };
        let generation = self
            .view
            .get(&target)
            .map_or(self.local.generation, |e| e.version().0);
        let seq = self.detector.start(target, generation, &mut self.rng);
        self.timers
            .arm(Timer::ProbeDirect, schedule.direct_deadline);
        self.timers.arm(Timer::ProbeEnd, schedule.end);
        self.outbox.stats.probes_sent += 1;
        self.send_ping(target.addr(), seq);
    }

    /// The direct ping timed out: ask `k` helpers to probe the target.
    pub(super) fn ask_helpers(&mut self) {
        let count = self.config.indirect_probes as usize;
        let Some((target, seq, helpers)) =
            self.detector
                .ask_helpers(self.view.live(), count, &mut self.rng)
        else {
            return;
        };
        for helper in helpers {
            self.send_with_updates(helper.addr(), None, |updates| Message::PingReq {
                seq,
                target,
                updates,
            });
        }
    }

    /// The probe's time is up; without an ack its target becomes a suspect.
    pub(super) fn end_probe(&mut self, now: Instant) {
        self.timers.disarm(Timer::ProbeDirect);
        let Some((probe, missed)) = self.detector.finish() else {
            return;
        };
        self.outbox.stats.probes_failed += 1;
        // Lifeguard: missing nacks mean our own network or process is slow,
        // so back off before accusing others.
        self.detector
            .adjust_health(i64::from(missed), self.config.max_local_health);
        let same_life = self
            .view
            .get(&probe.target)
            .is_some_and(|e| e.version().0 == probe.generation);
        if !same_life {
            // The member restarted while we probed its former life.
            return;
        }
        self.suspect(now, probe.target);
        // A helper's nack says its own ping to the target went unanswered:
        // an independent failed probe, so it confirms the suspicion at once
        // instead of waiting for other members to happen to probe it.
        if let Some(entry) = self.view.get(&probe.target) {
            if entry.liveness == Liveness::Suspect {
                let version = entry.version();
                for helper in probe.nacked {
                    self.merge(
                        now,
                        probe.target,
                        version,
                        Status::Suspect { by: helper },
                        true,
                    );
                }
            }
        }
    }

    /// This node failed to reach `id` (or was told it is unreachable).
    pub(super) fn suspect(&mut self, now: Instant, id: NodeId) {
        let Some(entry) = self
            .view
            .get(&id)
            .filter(|e| crate::membership::is_live(e.liveness))
        else {
            return;
        };
        let version = entry.version();
        self.outbox.stats.suspicions_raised += 1;
        let by = self.local.id;
        self.merge(now, id, version, Status::Suspect { by }, true);
        let (min, _) = suspicion_bounds(&self.config, self.live_member_count());
        self.timers.arm(Timer::Remind(id), now + min / 2);
    }

    /// A suspicion ran out: declare the member dead (or departed, if the
    /// suspicion began with a report that it left) and tell the others.
    pub(super) fn declare_dead(&mut self, now: Instant, id: NodeId) {
        let version = self.view.get(&id).expect("suspect is known").version();
        let by = self.local.id;
        let status = if self.view.is_leaving(&id) {
            Status::Left
        } else {
            self.outbox.stats.members_declared_dead += 1;
            Status::Dead { by }
        };
        self.merge(now, id, version, status.clone(), true);
        debug_assert!(matches!(
            self.view.liveness(&id),
            Some(Liveness::Dead | Liveness::Left)
        ));
        // Queued even when the merge already queued it: the declaration
        // counts as fresh news again.
        self.enqueue(MemberRecord {
            id,
            generation: version.0,
            incarnation: version.1,
            status,
        });
    }

    // ----- dissemination -------------------------------------------------

    pub(super) fn enqueue(&mut self, record: MemberRecord) {
        if self
            .pending
            .push(record, self.config.max_pending_updates.get())
        {
            self.outbox.stats.updates_dropped += 1;
        }
    }

    pub(super) fn gossip_round(&mut self, now: Instant) {
        self.timers
            .arm(Timer::Gossip, now + self.config.gossip_interval);
        if self.pending.is_empty() {
            return;
        }
        let targets =
            self.view
                .live()
                .choose_many(&mut self.rng, self.config.gossip_fanout as usize, &[]);
        if targets.is_empty() && self.local.phase == Phase::Departed {
            // Nobody is left to tell: the farewell is moot.
            self.pending = UpdateQueue::default();
        }
        for target in targets {
            if self.pending.is_empty() {
                break;
            }
            self.outbox.stats.gossip_sent += 1;
            self.send_with_updates(target.addr(), None, |updates| Message::Gossip { updates });
        }
    }

    /// Whether the reply budgets allow a state answer to `to` now.
    pub(super) fn allow_state_reply(&mut self, now: Instant, to: SocketAddr) -> bool {
        let allowed = self.sync.allow(now, &self.config, to);
        if !allowed {
            self.outbox.stats.state_replies_throttled += 1;
        }
        allowed
    }

    pub(super) fn maybe_start_sync(&mut self, now: Instant, peer: SocketAddr) {
        // Until its seed answers, a joining node's view is its seed's answer
        // on the way: a sync now would bring the same members again, from
        // a member whose word on them is not taken yet.
        if !self.local.seeded
            || !self.sync.may_start(now, &self.config)
            || !self.allow_state_reply(now, peer)
        {
            return;
        }
        self.sync.started(now, &self.config);
        self.outbox.stats.syncs_started += 1;
        // A seed's answer to our own nonce names members on the seed's
        // word; anyone else's answer is checked claim by claim, so its
        // nonce only has to be fresh.
        let nonce = if self.local.seeds.contains(&peer) {
            self.local.seed_nonce
        } else {
            self.rng.random()
        };
        self.send_state(peer, true, nonce);
    }

    /// How long to wait before asking the seeds again after the join just
    /// sent (see `Local::join_attempts`).
    pub(super) fn join_retry_wait(&self) -> Duration {
        let doublings = self.local.join_attempts.saturating_sub(1).min(3);
        self.config.join_retry_interval * (1 << doublings)
    }

    /// Queues the answer to `id`'s join, which carried `nonce` (see
    /// [`JoinAnswers`]).
    pub(super) fn queue_join_answer(&mut self, now: Instant, id: NodeId, nonce: u32) {
        self.join_answers.push(id, nonce);
        self.timers
            .arm_no_later_than(Timer::JoinAnswers, now + self.config.join_answer_delay);
    }

    /// Sends the waiting join answers, oldest first, while the reply budget
    /// allows; the rest wait another `join_answer_delay`.
    pub(super) fn send_join_answers(&mut self, now: Instant) {
        while let Some((id, nonce)) = self.join_answers.front() {
            if !self.view.is_live(&id) {
                self.join_answers.pop();
                continue;
            }
            if !self.allow_state_reply(now, id.addr()) {
                self.timers
                    .arm(Timer::JoinAnswers, now + self.config.join_answer_delay);
                return;
            }
            self.join_answers.pop();
            self.outbox.stats.joins_answered += 1;
            self.send_state(id.addr(), false, nonce);
        }
    }
}
