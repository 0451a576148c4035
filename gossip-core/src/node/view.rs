//! The membership view: what this node believes about every other member.
//!
//! The view owns the member table, the live and dead sets, the view hash
//! and the queue of dead members to forget. [`View::apply`] merges one claim
//! and says what changed; the node decides what follows (events, timers,
//! probing, plug-ins, regossip), so the rules of merging read in one place.

use core::time::Duration;
use std::collections::VecDeque;
use std::time::Instant;

use crate::config::Config;
use crate::id::NodeId;
use crate::member::{Liveness, Member};
use crate::membership::{
    is_live, member_hash, rank, Entry, MemberTable, Peers, SetKind, Slot, SlotSet, Suspicion,
    Version,
};
use crate::wire::{MemberRecord, Status, SyncEntry};

/// What one merged claim changed in the view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ViewChange {
    /// A member we did not know joined the view, alive.
    Added,
    /// A dead or departed member is live again (and suspect, if `suspect`).
    Revived {
        /// Whether it came back under suspicion.
        suspect: bool,
    },
    /// A live member is now suspected.
    Suspected,
    /// A live member moved to a newer version, alive. `visible` when that
    /// cleared a suspicion or changed its metadata.
    Refreshed {
        /// Whether the application should hear of it.
        visible: bool,
    },
    /// Another member independently confirmed a running suspicion; its
    /// deadline moved closer.
    Confirmed,
    /// The member was declared dead.
    Died,
    /// The member left.
    Left,
}

impl ViewChange {
    /// Whether the member became live with this change.
    pub(crate) fn came_up(self) -> bool {
        matches!(self, ViewChange::Added | ViewChange::Revived { .. })
    }

    /// Whether the member stopped being live with this change.
    pub(crate) fn went_down(self) -> bool {
        matches!(self, ViewChange::Died | ViewChange::Left)
    }

    /// Whether the member's suspicion deadline was set or moved.
    pub(crate) fn moved_suspicion(self) -> bool {
        matches!(
            self,
            ViewChange::Suspected | ViewChange::Confirmed | ViewChange::Revived { suspect: true }
        )
    }
}

/// How a claim is weighed.
pub(crate) struct Weighing {
    /// The claim is first-hand news (piggybacked or our own), not bulk
    /// state: a suspicion then counts as an independent confirmation.
    pub first_hand: bool,
    /// Live members counting this node (suspicion timeouts scale with it).
    pub live_count: usize,
}

/// Every other member this node knows, with the indexes kept beside them.
pub(crate) struct View {
    table: MemberTable,
    live: SlotSet,
    dead: SlotSet,
    /// Wrapping sum of [`member_hash`] over live members, this node included.
    hash: u64,
    /// Members to forget once their retention ends, oldest first (one
    /// entry per member, however often it flaps).
    forget_queue: VecDeque<(Instant, NodeId)>,
}

impl View {
    /// An empty view whose hash counts this node at `own`.
    pub(crate) fn new(me: NodeId, own: Version) -> Self {
        Self {
            table: MemberTable::default(),
            live: SlotSet::new(SetKind::Live),
            dead: SlotSet::new(SetKind::Dead),
            hash: member_hash(me, own),
            forget_queue: VecDeque::new(),
        }
    }

    /// Summary of the view, compared with peers' to detect divergence.
    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    /// This node moved from version `old` to `new`.
    pub(crate) fn rehash_self(&mut self, me: NodeId, old: Version, new: Version) {
        self.hash = self
            .hash
            .wrapping_sub(member_hash(me, old))
            .wrapping_add(member_hash(me, new));
    }

    /// Live (alive or suspect) members, in an order that depends only on
    /// the sequence of changes, so random choices among them replay.
    pub(crate) fn live(&self) -> Peers<'_> {
        self.live.peers(&self.table)
    }

    /// Members believed dead and still remembered.
    pub(crate) fn dead(&self) -> Peers<'_> {
        self.dead.peers(&self.table)
    }

    /// The slot of the member `id`, if known.
    pub(crate) fn slot_of(&self, id: &NodeId) -> Option<Slot> {
        self.table.slot_of(id)
    }

    /// The id of the member in `slot`.
    pub(crate) fn id_at(&self, slot: Slot) -> NodeId {
        self.table.id(slot)
    }

    /// Whether the member in `slot` is known and live.
    pub(crate) fn is_live_at(&self, slot: Slot) -> bool {
        self.table.at(slot).is_some_and(|e| is_live(e.liveness))
    }

    /// Lets forgotten members' slots go to newcomers: call only when no
    /// slot number kept outside the view can name a forgotten member.
    pub(crate) fn recycle(&mut self) {
        self.table.recycle();
    }

    /// What we know of `id`.
    pub(crate) fn get(&self, id: &NodeId) -> Option<&Entry> {
        self.table.get(id)
    }

    /// Members in the table, in any state.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether `id` is in the table.
    pub(crate) fn knows(&self, id: &NodeId) -> bool {
        self.table.contains_key(id)
    }

    /// Whether `id` is known and live.
    pub(crate) fn is_live(&self, id: &NodeId) -> bool {
        self.table.get(id).is_some_and(|e| is_live(e.liveness))
    }

    /// The liveness of `id`, if known.
    pub(crate) fn liveness(&self, id: &NodeId) -> Option<Liveness> {
        self.table.get(id).map(|e| e.liveness)
    }

    /// The suspicion deadline of `id`, if it is suspected.
    pub(crate) fn suspicion_deadline(&self, id: &NodeId) -> Option<Instant> {
        let entry = self.table.get(id)?;
        let suspicion = entry.suspicion()?;
        (entry.liveness == Liveness::Suspect).then_some(suspicion.deadline)
    }

    /// Brings the deadline of the running suspicion of `id` down to its
    /// minimum (counted from its start); returns the new deadline.
    pub(crate) fn hasten(&mut self, id: &NodeId) -> Option<Instant> {
        let entry = self.table.get_mut(id)?;
        if entry.liveness != Liveness::Suspect {
            return None;
        }
        let suspicion = entry.suspicion_mut()?;
        suspicion.deadline = suspicion.deadline.min(suspicion.started + suspicion.min);
        Some(suspicion.deadline)
    }

    /// Records that the running suspicion of `id` began with a report that
    /// it left.
    pub(crate) fn mark_leaving(&mut self, id: &NodeId) {
        if let Some(suspicion) = self.table.get_mut(id).and_then(|e| e.suspicion_mut()) {
            suspicion.leaving = true;
        }
    }

    /// Whether the running suspicion of `id` began with a report that it left.
    pub(crate) fn is_leaving(&self, id: &NodeId) -> bool {
        self.table
            .get(id)
            .and_then(Entry::suspicion)
            .is_some_and(|s| s.leaving)
    }

    /// When the next member is due to be forgotten.
    pub(crate) fn next_forget(&self) -> Option<Instant> {
        self.forget_queue.front().map(|&(at, _)| at)
    }

    /// Public view of one known member.
    pub(crate) fn member(&self, id: NodeId) -> Member {
        member_of(id, &self.table[&id])
    }

    /// Every known member in address order.
    pub(crate) fn members(&self) -> impl Iterator<Item = Member> + '_ {
        self.table
            .sorted()
            .into_iter()
            .map(|(id, slot)| member_of(id, self.table.entry(slot)))
    }

    /// Every known member as a state-sync entry, in address order.
    pub(crate) fn sync_entries(&self) -> impl Iterator<Item = SyncEntry> + '_ {
        self.members().map(SyncEntry::from)
    }

    /// The piggyback record that states what we believe of `id`; claims
    /// we make without naming someone else name `me`.
    pub(crate) fn record_of(&self, id: NodeId, me: NodeId) -> MemberRecord {
        let e = &self.table[&id];
        let status = match e.liveness {
            Liveness::Alive => Status::Alive {
                metadata: e.metadata().to_vec(),
            },
            Liveness::Suspect => Status::Suspect {
                by: e.suspicion().map_or(me, |s| s.confirmers[0]),
            },
            Liveness::Dead => Status::Dead { by: me },
            Liveness::Left => Status::Left,
        };
        MemberRecord {
            id,
            generation: e.generation,
            incarnation: e.incarnation,
            status,
        }
    }

    /// Merges one claim about another member into the view.
    ///
    /// A claim wins with a newer version, or with the same version and a
    /// stronger liveness; a first-hand suspicion of a member already
    /// suspected at that version confirms it. Claims of suspicion or death
    /// about a member we never knew are not worth keeping, and a full table
    /// (`max_members`) takes no newcomer: `Err(Full)` says so.
    pub(crate) fn apply(
        &mut self,
        now: Instant,
        config: &Config,
        id: NodeId,
        version: Version,
        claim: &Status,
        weighing: &Weighing,
    ) -> Result<Option<ViewChange>, Full> {
        let Some(entry) = self.table.get_mut(&id) else {
            let Status::Alive { metadata } = claim else {
                return Ok(None);
            };
            if self.table.len() >= config.max_members.get() - 1 && !self.evict_down() {
                return Err(Full);
            }
            let slot = self.table.insert(id, version, metadata);
            self.became_live(id, slot, version);
            return Ok(Some(ViewChange::Added));
        };
        let (known, liveness) = (entry.version(), entry.liveness);
        if version > known || (version == known && rank(claim.liveness()) > rank(liveness)) {
            return Ok(Some(self.adopt(now, config, id, version, claim, weighing)));
        }
        if version == known && liveness == Liveness::Suspect && weighing.first_hand {
            // (Bulk state does not say who suspected, so it never counts as
            // an independent confirmation.)
            if let Status::Suspect { by } = claim {
                let suspicion = entry.suspicion_mut().expect("suspect has a suspicion");
                if suspicion.confirm(*by, config.indirect_probes) {
                    return Ok(Some(ViewChange::Confirmed));
                }
            }
        }
        Ok(None)
    }

    /// Replaces a known member's state with a stronger claim.
    fn adopt(
        &mut self,
        now: Instant,
        config: &Config,
        id: NodeId,
        version: Version,
        claim: &Status,
        weighing: &Weighing,
    ) -> ViewChange {
        let slot = self.table.slot_of(&id).expect("known member");
        let entry = self.table.entry_mut(slot);
        let old_version = entry.version();
        let was_live = is_live(entry.liveness);
        let was_suspect = entry.liveness == Liveness::Suspect;
        entry.generation = version.0;
        entry.incarnation = version.1;
        entry.liveness = claim.liveness();
        let mut metadata_changed = false;
        match claim {
            Status::Alive { metadata } => {
                metadata_changed = entry.metadata() != metadata.as_slice();
                if metadata_changed {
                    entry.set_metadata(metadata);
                }
                entry.clear_aux();
            }
            Status::Suspect { by } => {
                let (min, max) = suspicion_bounds(config, weighing.live_count);
                entry.set_suspicion(Suspicion::new(now, *by, min, max));
            }
            Status::Dead { .. } | Status::Left => {
                entry.set_down_since(now);
            }
        }
        if was_live {
            self.hash = self.hash.wrapping_sub(member_hash(id, old_version));
        } else {
            self.dead.remove(&mut self.table, slot);
        }
        match claim {
            Status::Alive { .. } | Status::Suspect { .. } => {
                let suspect = matches!(claim, Status::Suspect { .. });
                if !was_live {
                    self.became_live(id, slot, version);
                    ViewChange::Revived { suspect }
                } else {
                    self.hash = self.hash.wrapping_add(member_hash(id, version));
                    if suspect {
                        ViewChange::Suspected
                    } else {
                        ViewChange::Refreshed {
                            visible: was_suspect || metadata_changed,
                        }
                    }
                }
            }
            Status::Dead { .. } => {
                // (Out of the live set first: an entry is in one set at most.)
                self.went_down(now, config, id, slot);
                self.dead.insert(&mut self.table, slot);
                ViewChange::Died
            }
            Status::Left => {
                self.went_down(now, config, id, slot);
                ViewChange::Left
            }
        }
    }

    fn became_live(&mut self, id: NodeId, slot: Slot, version: Version) {
        self.hash = self.hash.wrapping_add(member_hash(id, version));
        self.live.insert(&mut self.table, slot);
    }

    /// A member stopped being live: schedule its forgetting.
    fn went_down(&mut self, now: Instant, config: &Config, id: NodeId, slot: Slot) {
        self.live.remove(&mut self.table, slot);
        let entry = self.table.entry_mut(slot);
        if !entry.forget_queued {
            entry.forget_queued = true;
            self.forget_queue
                .push_back((now + config.dead_retention, id));
        }
    }

    /// Forgets the members whose retention ended by `now`.
    /// Forgets the member that went down longest ago, to make room for a
    /// live one in a full table; false if every member is live.
    fn evict_down(&mut self) -> bool {
        while let Some((_, id)) = self.forget_queue.pop_front() {
            let Some(slot) = self.table.slot_of(&id) else {
                continue;
            };
            let entry = self.table.entry_mut(slot);
            entry.forget_queued = false;
            if !is_live(entry.liveness) {
                self.dead.remove(&mut self.table, slot);
                self.table.remove(&id);
                return true;
            }
        }
        false
    }

    pub(crate) fn forget_due(&mut self, now: Instant, retention: Duration) {
        while let Some(&(at, id)) = self.forget_queue.front() {
            if at > now {
                break;
            }
            self.forget_queue.pop_front();
            let Some(slot) = self.table.slot_of(&id) else {
                continue;
            };
            let entry = self.table.entry_mut(slot);
            entry.forget_queued = false;
            match entry.down_since().filter(|_| !is_live(entry.liveness)) {
                Some(since) if since + retention <= now => {
                    self.dead.remove(&mut self.table, slot);
                    self.table.remove(&id);
                }
                // Went down again since this entry was queued: wait for the
                // retention of the latest departure.
                Some(since) => {
                    entry.forget_queued = true;
                    self.forget_queue.push_back((since + retention, id));
                }
                None => {}
            }
        }
    }
}

/// What the application sees of a table entry.
fn member_of(id: NodeId, e: &Entry) -> Member {
    Member::new(
        id,
        e.generation,
        e.incarnation,
        e.liveness,
        e.metadata().to_vec(),
    )
}

/// The table is full: a newcomer was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Full;

/// Lifeguard's suspicion timeout bounds for a cluster of `live_count`.
pub(crate) fn suspicion_bounds(config: &Config, live_count: usize) -> (Duration, Duration) {
    // Below 100 members there are too few independent confirmations to
    // justify shorter timeouts, so small clusters are treated as 100.
    let scale = (live_count.max(1) as f64).log10().max(2.0);
    let min = config
        .probe_interval
        .mul_f64(config.suspicion_min_mult * scale);
    (min, min.mul_f64(config.suspicion_max_mult))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{Generation, Incarnation};
    use std::net::SocketAddr;

    fn id(n: u16) -> NodeId {
        NodeId::new(SocketAddr::from(([127, 0, 0, 1], n)))
    }

    fn v(generation: u64, incarnation: u32) -> Version {
        (Generation(generation), Incarnation(incarnation))
    }

    fn alive() -> Status {
        Status::Alive {
            metadata: Vec::new(),
        }
    }

    const FIRST_HAND: Weighing = Weighing {
        first_hand: true,
        live_count: 10,
    };

    #[allow(clippy::disallowed_methods)] // an arbitrary origin; only differences matter
    fn origin() -> Instant {
        Instant::now()
    }

    #[test]
    fn newer_or_stronger_claims_win_and_hash_follows_live_members() {
        let (now, config) = (origin(), Config::default());
        let me = id(1);
        let mut view = View::new(me, v(1, 0));
        let alone = view.hash();
        let apply = |view: &mut View, claim: &Status, version| {
            view.apply(now, &config, id(2), version, claim, &FIRST_HAND)
                .unwrap()
        };
        assert_eq!(
            apply(&mut view, &Status::Dead { by: me }, v(1, 0)),
            None,
            "a death of a stranger is not kept"
        );
        assert_eq!(apply(&mut view, &alive(), v(1, 0)), Some(ViewChange::Added));
        assert_ne!(view.hash(), alone);
        assert_eq!(apply(&mut view, &alive(), v(1, 0)), None, "old news");
        assert_eq!(
            apply(&mut view, &Status::Suspect { by: me }, v(1, 0)),
            Some(ViewChange::Suspected)
        );
        assert!(view.suspicion_deadline(&id(2)).is_some());
        assert_eq!(
            apply(&mut view, &Status::Suspect { by: id(3) }, v(1, 0)),
            Some(ViewChange::Confirmed)
        );
        assert_eq!(
            apply(&mut view, &alive(), v(1, 1)),
            Some(ViewChange::Refreshed { visible: true }),
            "a refutation clears the suspicion"
        );
        assert_eq!(
            apply(&mut view, &Status::Dead { by: me }, v(1, 1)),
            Some(ViewChange::Died)
        );
        assert_eq!(view.hash(), alone, "only live members count");
        assert_eq!(view.dead().iter().collect::<Vec<_>>(), vec![id(2)]);
        assert!(view.next_forget().is_some());
        assert_eq!(
            apply(&mut view, &alive(), v(2, 0)),
            Some(ViewChange::Revived { suspect: false })
        );
        assert!(view.dead().is_empty());
    }

    #[test]
    fn forgetting_waits_for_the_latest_departure_and_full_tables_refuse() {
        let (now, mut config) = (origin(), Config::default());
        config.max_members = core::num::NonZeroUsize::new(2).unwrap();
        let mut view = View::new(id(1), v(1, 0));
        view.apply(now, &config, id(2), v(1, 0), &alive(), &FIRST_HAND)
            .unwrap();
        assert_eq!(
            view.apply(now, &config, id(3), v(1, 0), &alive(), &FIRST_HAND),
            Err(Full)
        );
        view.apply(now, &config, id(2), v(1, 0), &Status::Left, &FIRST_HAND)
            .unwrap();
        let retention = config.dead_retention;
        view.forget_due(now + retention / 2, retention);
        assert!(view.knows(&id(2)));
        view.forget_due(now + retention, retention);
        assert!(!view.knows(&id(2)));
        assert_eq!(view.next_forget(), None);
    }
}
