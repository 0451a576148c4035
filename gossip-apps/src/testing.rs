//! A recording [`Cluster`] for unit tests.

use std::time::Instant;

use gossip_core::{CommandError, Generation, Incarnation, Liveness, Member, MessageId, NodeId};

use crate::Cluster;

pub(crate) fn id(port: u16) -> NodeId {
    NodeId::new(([127, 0, 0, 1], port).into())
}

pub(crate) fn member(port: u16, liveness: Liveness) -> Member {
    Member::new(
        id(port),
        Generation(1),
        Incarnation(0),
        liveness,
        Vec::new(),
    )
}

/// Node `me` with a fixed member table; records broadcasts.
pub(crate) struct FakeCluster {
    pub me: NodeId,
    pub members: Vec<Member>,
    pub broadcasts: Vec<Vec<u8>>,
}

impl FakeCluster {
    pub fn new(me: u16, ports: impl IntoIterator<Item = u16>) -> Self {
        Self {
            me: id(me),
            members: ports
                .into_iter()
                .map(|p| member(p, Liveness::Alive))
                .collect(),
            broadcasts: Vec::new(),
        }
    }
}

impl Cluster for FakeCluster {
    fn me(&self) -> NodeId {
        self.me
    }
    fn members(&self) -> Vec<Member> {
        self.members.clone()
    }
    fn broadcast(&mut self, _now: Instant, payload: &[u8]) -> Result<MessageId, CommandError> {
        self.broadcasts.push(payload.to_vec());
        Ok(MessageId {
            origin: self.me,
            generation: 1,
            sequence: self.broadcasts.len() as u64,
        })
    }
    fn send_direct(&mut self, _: Instant, _: NodeId, _: &[u8]) -> Result<(), CommandError> {
        Ok(())
    }
    fn max_broadcast_len(&self) -> usize {
        1000
    }
    fn max_direct_len(&self) -> usize {
        1000
    }
}
