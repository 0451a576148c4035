//! Leader election derived from the membership view.
//!
//! [`LeaderElection`] is an [`Application`]: every node runs one, and each
//! picks its leader by the same deterministic [`Rule`] over the live
//! members of its own view (the highest `priority` among live candidates of
//! the configured `role`, the lowest id breaking ties). The view is the
//! core's authenticated membership: a member is admitted only after it
//! answers a challenge at its address, and only a member changes its own
//! metadata, so a forged frame cannot put a phantom at the head of the
//! order.
//!
//! **Terms.** A node that finds itself leader takes a term one above every
//! term it has seen and broadcasts it on [`Channel::Leader`](crate::Channel::Leader); it announces
//! again every [`announce_interval`](LeaderConfig::announce_interval), when
//! a member comes up, and when it hears another member claim a term at
//! least as high (taking a higher one). Every node shows the highest term
//! its leader announced; the shown term never goes down. Downstream
//! systems refuse actions stamped with a term below the highest they saw
//! (fencing).
//!
//! **Quorum.** [`Quorum`] holds the last *agreed* membership, an alive
//! set that stayed unchanged for [`settle`](LeaderConfig::settle) and was
//! adopted while this node saw a majority of the set before it.
//! `has_quorum` says whether this node sees a majority of it now; for the
//! candidate that is proven by a [`Lease`]: a majority acknowledged its
//! heartbeats within [`lease`](LeaderConfig::lease), each member
//! acknowledging one candidate at a time ([`Vote`]). In
//! [`quorum_mode`](LeaderConfig::quorum_mode) a node without quorum names
//! no leader and does not lead, so at most one side of a split has a
//! leader holding quorum.

mod lease;
mod quorum;
mod rule;
mod term;

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use gossip_core::{Event, Liveness, NodeId};

pub use lease::{Beat, Lease, Vote};
pub use quorum::Quorum;
pub use rule::{Rule, Tags};
pub use term::{decode_announcement, encode_announcement, Terms};

use crate::view::MemberView;
use crate::{Application, Cluster};

/// How leader election behaves. Every limit has a default.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaderConfig {
    /// Only members whose metadata says `role=<this>` may lead. Default
    /// `None`: every member may.
    pub role: Option<String>,
    /// Whether a suspected member still counts as live for the leader
    /// rule. Default `true`: leadership moves when a member is declared
    /// down, not on every missed probe. (The quorum counts alive members
    /// only, whatever this says.)
    pub suspect_is_live: bool,
    /// Refuse leadership without quorum: a node that does not see a
    /// majority of the agreed membership names no leader. Default `false`.
    pub quorum_mode: bool,
    /// How long a live set must stay unchanged to become the agreed
    /// membership. Default 10 s (a few suspicion timeouts on a LAN).
    pub settle: Duration,
    /// A quorum is never fewer than this many members, and a node keeps
    /// adopting live sets until one reaches it (`bootstrap-expect`).
    /// Default 1.
    pub min_quorum: usize,
    /// How long an acknowledgement of a heartbeat counts toward the
    /// leader's quorum. Default 3 s (three heartbeats: one lost one does
    /// not cost the lease).
    pub lease: Duration,
    /// Extra wait, beyond `lease`, before a member acknowledges a
    /// different candidate than the last one it acknowledged: covers the
    /// acknowledgement's time in flight. Default 1 s.
    pub lease_margin: Duration,
    /// How often a candidate sends heartbeats to the agreed members.
    /// Default 1 s.
    pub heartbeat_interval: Duration,
    /// How often a leader re-announces its term. Default 10 s.
    pub announce_interval: Duration,
    /// Least time between two announcements. Default 1 s.
    pub announce_min_gap: Duration,
    /// Events kept until polled; the oldest is dropped beyond. Default 1024.
    pub max_events: usize,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        Self {
            role: None,
            suspect_is_live: true,
            quorum_mode: false,
            settle: Duration::from_secs(10),
            min_quorum: 1,
            lease: Duration::from_secs(3),
            lease_margin: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(1),
            announce_interval: Duration::from_secs(10),
            announce_min_gap: Duration::from_secs(1),
            max_events: 1024,
        }
    }
}

/// What one node believes about leadership.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaderStatus {
    /// The leader this node follows; `None` if no live member may lead (or,
    /// in quorum mode, this node lacks quorum).
    pub leader: Option<NodeId>,
    /// The highest term announced by this node's leader (never goes down).
    pub term: u64,
    /// Whether the current leader itself announced `term` (false for a
    /// moment after a change of leader, until its announcement arrives).
    pub term_confirmed: bool,
    /// Whether this node sees a majority of the agreed membership: for
    /// the candidate the rule names, a majority acknowledged its
    /// heartbeats within the lease; for others, a majority is alive in
    /// its view.
    pub has_quorum: bool,
    /// Whether this node is the leader.
    pub is_leader: bool,
    /// Whether leadership needs quorum.
    pub quorum_mode: bool,
    /// Live members in this node's view, itself included.
    pub live: usize,
    /// Size of the agreed membership.
    pub agreed: usize,
    /// Live agreed members a quorum needs.
    pub quorum_needed: usize,
}

/// A change in what this node believes about leadership.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaderEvent {
    /// The leader, the term or the quorum flag changed.
    Changed {
        /// The leader now.
        leader: Option<NodeId>,
        /// The term now.
        term: u64,
        /// Whether this node has quorum now.
        has_quorum: bool,
    },
}

/// One node's leader election state machine (see the [module](self) docs).
#[derive(Clone, Debug)]
pub struct LeaderElection {
    config: LeaderConfig,
    rule: Rule,
    view: MemberView,
    quorum: Quorum,
    terms: Terms,
    me: Option<NodeId>,
    leader: Option<NodeId>,
    /// The term this node leads with, while it leads.
    my_term: Option<u64>,
    next_announce: Option<Instant>,
    last_announce: Option<Instant>,
    events: VecDeque<LeaderEvent>,
    last: Option<(Option<NodeId>, u64, bool)>,
    announcements_sent: u64,
    /// The member the rule names in this view, quorum aside.
    candidate: Option<NodeId>,
    has_quorum: bool,
    vote: Vote,
    lease: Lease,
    lease_until: Option<Instant>,
    next_heartbeat: Option<Instant>,
}

impl LeaderElection {
    /// A state machine with `config`; it reads the node's member table at
    /// its first event or wake-up.
    pub fn new(config: LeaderConfig) -> Self {
        Self {
            rule: Rule {
                role: config.role.clone(),
                suspect_is_live: config.suspect_is_live,
            },
            quorum: Quorum::new(config.settle, config.min_quorum),
            config,
            view: MemberView::default(),
            terms: Terms::default(),
            me: None,
            leader: None,
            my_term: None,
            next_announce: None,
            last_announce: None,
            events: VecDeque::new(),
            last: None,
            announcements_sent: 0,
            candidate: None,
            has_quorum: false,
            vote: Vote::default(),
            lease: Lease::default(),
            lease_until: None,
            next_heartbeat: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LeaderConfig {
        &self.config
    }

    /// The leader this node follows.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The term shown (see [`LeaderStatus::term`]).
    pub fn term(&self) -> u64 {
        self.terms.shown()
    }

    /// Whether this node sees a majority of the agreed membership (see
    /// [`LeaderStatus::has_quorum`]).
    pub fn has_quorum(&self) -> bool {
        self.has_quorum
    }

    /// Whether this node leads.
    pub fn is_leader(&self) -> bool {
        self.me.is_some() && self.leader == self.me
    }

    /// Announcements this node has broadcast.
    pub fn announcements_sent(&self) -> u64 {
        self.announcements_sent
    }

    /// Everything at once, for an API.
    pub fn status(&self) -> LeaderStatus {
        let live = self.view.iter().filter(|m| self.rule.is_live(m)).count();
        LeaderStatus {
            leader: self.leader,
            term: self.terms.shown(),
            term_confirmed: self.terms.confirmed_for(self.leader),
            has_quorum: self.has_quorum,
            is_leader: self.is_leader(),
            quorum_mode: self.config.quorum_mode,
            live,
            agreed: self.quorum.agreed().len(),
            quorum_needed: self.quorum.needed(),
        }
    }

    /// Recomputes everything from the node's table at `now`: for a host
    /// that asks before the first event (a lone node hears none).
    pub fn refresh(&mut self, now: Instant, cluster: &mut dyn Cluster) {
        self.update(now, cluster);
    }

    /// The next change not yet polled.
    pub fn poll_event(&mut self) -> Option<LeaderEvent> {
        self.events.pop_front()
    }

    /// The members that count toward a quorum: alive only, never
    /// suspected, so a leader cut off from the majority loses its quorum
    /// on the first suspicions, before the other side can declare it down
    /// and elect another.
    fn quorum_set(&self) -> BTreeSet<NodeId> {
        self.view
            .iter()
            .filter(|m| m.liveness == Liveness::Alive)
            .map(|m| m.id)
            .collect()
    }

    /// Recomputes leader, quorum and term after any input.
    fn update(&mut self, now: Instant, cluster: &mut dyn Cluster) {
        self.view.load(cluster);
        let me = *self.me.get_or_insert_with(|| cluster.me());
        let live = self.quorum_set();
        self.quorum.observe(now, live);
        let candidate = self.rule.leader(self.view.iter());
        self.candidate = candidate;
        if candidate == Some(me) {
            self.heartbeat_if_due(now, me, cluster);
            let lease = self.config.lease;
            let ends: Option<Vec<Instant>> = self
                .quorum
                .sets()
                .into_iter()
                .map(|(set, needed)| self.lease.holds_until(now, set, needed, lease))
                .collect();
            self.lease_until = ends.and_then(|ends| ends.into_iter().min());
            self.has_quorum = self.lease_until.is_some();
        } else {
            self.next_heartbeat = None;
            self.lease.clear();
            self.lease_until = None;
            self.has_quorum = self.quorum.has_quorum();
        }
        self.leader = if self.config.quorum_mode && !self.has_quorum {
            None
        } else {
            candidate
        };
        if self.leader == Some(me) {
            if self.my_term.is_none() {
                self.my_term = Some(self.terms.take(me));
                self.announce_soon(now);
            }
        } else {
            self.my_term = None;
            self.next_announce = None;
            self.terms.follow(self.leader);
        }
        self.announce_if_due(now, cluster);
        let state = (self.leader, self.terms.shown(), self.has_quorum);
        if self.last != Some(state) {
            self.last = Some(state);
            if self.events.len() >= self.config.max_events.max(1) {
                self.events.pop_front();
            }
            self.events.push_back(LeaderEvent::Changed {
                leader: state.0,
                term: state.1,
                has_quorum: state.2,
            });
        }
    }

    /// Sends heartbeats to the agreed members this view holds live, and
    /// acknowledges itself, when their time has come.
    fn heartbeat_if_due(&mut self, now: Instant, me: NodeId, cluster: &mut dyn Cluster) {
        if self.next_heartbeat.is_some_and(|due| due > now) {
            return;
        }
        self.next_heartbeat = Some(now + self.config.heartbeat_interval);
        if self.vote.grant(me, now, self.vote_wait()) {
            self.lease.ack(me, now);
        }
        let beat = Beat::Heartbeat.encode();
        let targets: BTreeSet<NodeId> = self
            .quorum
            .sets()
            .into_iter()
            .flat_map(|(set, _)| set.iter().copied())
            .collect();
        for id in targets {
            if id != me && self.view.get(&id).is_some_and(|m| self.rule.is_live(m)) {
                // A member gone meanwhile refuses; its ack is just missing.
                let _ = cluster.send_direct(now, id, &beat);
            }
        }
    }

    fn vote_wait(&self) -> Duration {
        self.config.lease + self.config.lease_margin
    }

    fn on_beat(&mut self, now: Instant, from: NodeId, beat: Beat, cluster: &mut dyn Cluster) {
        match beat {
            Beat::Heartbeat => {
                let named = self.rule.leader(self.view.iter());
                if named == Some(from) && self.vote.grant(from, now, self.vote_wait()) {
                    let _ = cluster.send_direct(now, from, &Beat::Ack.encode());
                }
            }
            Beat::Ack => {
                if self.candidate.is_some() && self.candidate == self.me {
                    self.lease.ack(from, now);
                }
            }
        }
    }

    /// Plans an announcement as soon as the minimum gap allows.
    fn announce_soon(&mut self, now: Instant) {
        let earliest = self
            .last_announce
            .map_or(now, |last| (last + self.config.announce_min_gap).max(now));
        self.next_announce = Some(self.next_announce.map_or(earliest, |n| n.min(earliest)));
    }

    fn announce_if_due(&mut self, now: Instant, cluster: &mut dyn Cluster) {
        let (Some(term), Some(due)) = (self.my_term, self.next_announce) else {
            return;
        };
        if due > now {
            return;
        }
        // A node that cannot broadcast yet (not joined) tries again later.
        if cluster.broadcast(now, &encode_announcement(term)).is_ok() {
            self.announcements_sent += 1;
        }
        self.last_announce = Some(now);
        self.next_announce = Some(now + self.config.announce_interval);
    }

    fn on_announcement(&mut self, now: Instant, from: NodeId, term: u64) {
        // Only a live member's word counts (the core takes rumors only from
        // live members' frames; this also drops news from one since gone).
        if Some(from) == self.me || !self.view.is_alive(&from) {
            return;
        }
        self.terms.record(from, term, self.leader);
        if let Some(mine) = self.my_term {
            if term >= mine {
                // Another member claims leadership at our term or above
                // (views differ, or a split healed): lead with a higher one.
                let me = self.me.expect("set once leading");
                self.my_term = Some(self.terms.take(me));
                self.announce_soon(now);
            }
        }
    }
}

impl Application for LeaderElection {
    fn handle_event(&mut self, now: Instant, event: &Event, cluster: &mut dyn Cluster) {
        self.view.load(cluster);
        match event {
            Event::Direct { from, payload } => {
                let Some(beat) = Beat::decode(payload) else {
                    return;
                };
                self.on_beat(now, *from, beat, cluster);
            }
            Event::Delivered { id, payload } => {
                let Some(term) = decode_announcement(payload) else {
                    return;
                };
                self.on_announcement(now, id.origin, term);
            }
            other => {
                if let Some(member) = self.view.apply(other) {
                    match member.liveness {
                        Liveness::Alive
                            if matches!(other, Event::MemberUp(_)) && self.my_term.is_some() =>
                        {
                            self.announce_soon(now);
                        }
                        Liveness::Dead | Liveness::Left => {
                            let id = member.id;
                            self.terms.forget(&id);
                        }
                        _ => {}
                    }
                } else {
                    return;
                }
            }
        }
        self.update(now, cluster);
    }

    fn handle_timeout(&mut self, now: Instant, cluster: &mut dyn Cluster) {
        self.update(now, cluster);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let announce = self.my_term.and(self.next_announce);
        [
            announce,
            self.quorum.poll_timeout(),
            self.next_heartbeat,
            self.lease_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{id, member, FakeCluster};
    use gossip_core::MessageId;

    fn delivered(origin: u16, term: u64) -> Event {
        Event::Delivered {
            id: MessageId {
                origin: id(origin),
                generation: 1,
                sequence: term,
            },
            payload: encode_announcement(term),
        }
    }

    #[test]
    fn the_lowest_node_leads_announces_and_others_follow_its_term() {
        let t0 = Instant::now();
        // Node 1 is the lowest: it leads and announces term 1.
        let mut c1 = FakeCluster::new(1, 1..=3);
        let mut e1 = LeaderElection::new(LeaderConfig::default());
        e1.refresh(t0, &mut c1);
        assert!(e1.is_leader());
        assert_eq!(e1.term(), 1);
        assert_eq!(c1.broadcasts, vec![encode_announcement(1)]);
        assert_eq!(
            e1.poll_event(),
            Some(LeaderEvent::Changed {
                leader: Some(id(1)),
                term: 1,
                has_quorum: false
            })
        );

        // Node 2 follows; the term arrives with the announcement.
        let mut c2 = FakeCluster::new(2, 1..=3);
        let mut e2 = LeaderElection::new(LeaderConfig::default());
        e2.refresh(t0, &mut c2);
        assert_eq!((e2.leader(), e2.term()), (Some(id(1)), 0));
        e2.handle_event(t0, &delivered(1, 1), &mut c2);
        assert_eq!(e2.term(), 1);
        assert!(e2.status().term_confirmed);
        assert!(c2.broadcasts.is_empty());

        // 1 goes down: 2 leads with a higher term and announces it.
        let t1 = t0 + Duration::from_secs(1);
        e2.handle_event(t1, &Event::MemberDown(member(1, Liveness::Dead)), &mut c2);
        assert!(e2.is_leader());
        assert_eq!(e2.term(), 2);
        assert_eq!(c2.broadcasts, vec![encode_announcement(2)]);
        // The leader re-announces at its interval (heartbeats between).
        let mut at = t1;
        while at < t1 + Duration::from_secs(10) {
            at = e2.poll_timeout().unwrap();
            e2.handle_timeout(at, &mut c2);
        }
        assert_eq!(c2.broadcasts.len(), 2);
    }

    #[test]
    fn a_rival_claim_makes_the_leader_take_a_higher_term() {
        let t0 = Instant::now();
        let mut c = FakeCluster::new(1, 1..=3);
        let mut e = LeaderElection::new(LeaderConfig::default());
        e.refresh(t0, &mut c);
        assert_eq!(e.term(), 1);
        // Node 3 (a healed side's leader) claims term 5.
        e.handle_event(t0, &delivered(3, 5), &mut c);
        assert_eq!(e.term(), 6);
        // The gap delays the second announcement by a second.
        assert_eq!(c.broadcasts.len(), 1);
        let due = e.poll_timeout().unwrap();
        assert_eq!(due, t0 + Duration::from_secs(1));
        e.handle_timeout(due, &mut c);
        assert_eq!(c.broadcasts.last(), Some(&encode_announcement(6)));
    }

    #[test]
    fn announcements_from_non_members_are_ignored() {
        let t0 = Instant::now();
        let mut c = FakeCluster::new(2, 1..=3);
        let mut e = LeaderElection::new(LeaderConfig::default());
        e.refresh(t0, &mut c);
        e.handle_event(t0, &delivered(9, 1_000), &mut c);
        e.handle_event(t0, &delivered(1, 3), &mut c);
        assert_eq!(e.term(), 3);
        assert_eq!(e.terms.highest_seen(), 3, "the stranger's term is not seen");
    }

    #[test]
    fn quorum_mode_refuses_leadership_on_a_minority_side() {
        let t0 = Instant::now();
        let config = LeaderConfig {
            quorum_mode: true,
            settle: Duration::from_secs(5),
            ..LeaderConfig::default()
        };
        let mut c = FakeCluster::new(1, 1..=5);
        let mut e = LeaderElection::new(config);
        e.refresh(t0, &mut c);
        assert_eq!(e.leader(), None, "nothing agreed yet");
        let t = t0 + Duration::from_secs(5);
        e.handle_timeout(t, &mut c);
        assert_eq!(e.quorum.agreed().len(), 5);
        assert_eq!(e.leader(), None, "no acknowledgements yet");
        for p in [2, 3] {
            let ack = Event::Direct {
                from: id(p),
                payload: Beat::Ack.encode(),
            };
            e.handle_event(t, &ack, &mut c);
        }
        assert!(e.is_leader() && e.has_quorum());
        // The lease runs out without fresh acknowledgements.
        let until = e.lease_until.unwrap();
        assert_eq!(until, t + Duration::from_secs(3));
        // Nodes 3, 4 and 5 go down: 1 and 2 are a minority of 5.
        let t1 = t0 + Duration::from_secs(20);
        for p in 3..=5 {
            e.handle_event(t1, &Event::MemberDown(member(p, Liveness::Dead)), &mut c);
        }
        assert!(!e.has_quorum());
        assert_eq!(e.leader(), None);
        assert!(!e.is_leader());
        assert_eq!(
            e.quorum.poll_timeout(),
            None,
            "a minority never adopts its set"
        );
    }
}
