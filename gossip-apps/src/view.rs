//! A copy of the node's member table kept current from membership events,
//! so applications need not list every member on every event.

use std::collections::BTreeMap;

use gossip_core::{Event, Liveness, Member, NodeId};

use crate::Cluster;

/// The members one node knows, by id, as its events last described them.
#[derive(Clone, Debug, Default)]
pub(crate) struct MemberView {
    members: BTreeMap<NodeId, Member>,
    loaded: bool,
}

impl MemberView {
    /// Loads the node's table the first time; later calls do nothing.
    pub(crate) fn load(&mut self, cluster: &dyn Cluster) {
        if !self.loaded {
            self.loaded = true;
            for member in cluster.members() {
                self.members.insert(member.id, member);
            }
        }
    }

    /// Applies a membership event; returns the member it changed, if any.
    pub(crate) fn apply(&mut self, event: &Event) -> Option<&Member> {
        let member = match event {
            Event::MemberUp(m)
            | Event::MemberSuspect(m)
            | Event::MemberDown(m)
            | Event::MemberLeft(m)
            | Event::MemberUpdated(m) => m,
            _ => return None,
        };
        self.members.insert(member.id, member.clone());
        self.members.get(&member.id)
    }

    /// Every known member, in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// The member `id`, if known.
    pub(crate) fn get(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    /// Whether `id` is known and answers probes.
    pub(crate) fn is_alive(&self, id: &NodeId) -> bool {
        self.get(id).is_some_and(|m| m.liveness == Liveness::Alive)
    }
}
