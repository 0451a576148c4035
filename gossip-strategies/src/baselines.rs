//! The baselines gossip is measured against.

use gossip_core::{GossipMessage, Host, NodeId, Rumor, Strategy};
use serde::{Deserialize, Serialize};

fn send_to_all<H: Host>(host: &mut H, rumor: Rumor) {
    let mut peers = Vec::new();
    host.all_peers(&mut peers);
    for peer in peers {
        host.send(
            peer,
            GossipMessage::Push {
                rumors: vec![rumor],
            },
        );
    }
}

/// Eager reliable broadcast: every node relays a rumor to every other node
/// the first time it receives it.
///
/// Exactly `N (N - 1)` transmissions per broadcast and one hop of latency:
/// it survives any failure pattern that leaves the survivors connected, and
/// its quadratic cost is why gossip exists. Fine for a handful of nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flood;

impl Strategy for Flood {
    fn on_rumor<H: Host>(&mut self, host: &mut H, rumor: Rumor, _from: Option<NodeId>) {
        send_to_all(host, rumor);
    }
}

/// Point-to-point: the origin sends the rumor to every member itself; nobody
/// relays.
///
/// `N - 1` transmissions, all from one node, one hop of latency. Lost
/// messages are not repaired, and the origin's uplink carries the whole
/// load, so it scales only as far as one sender does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Direct;

impl Strategy for Direct {
    fn on_rumor<H: Host>(&mut self, host: &mut H, rumor: Rumor, from: Option<NodeId>) {
        if from.is_none() {
            send_to_all(host, rumor);
        }
    }
}

/// Central coordinator (the Zookeeper-style design): the origin hands every
/// update to `coordinator`, which sends it to all members.
///
/// `N` transmissions, two hops, trivially ordered, and a single point of
/// failure: once the coordinator is down, nothing more is delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Central {
    /// The member every update goes through.
    pub coordinator: NodeId,
}

impl Strategy for Central {
    fn on_rumor<H: Host>(&mut self, host: &mut H, rumor: Rumor, from: Option<NodeId>) {
        if host.me() == self.coordinator {
            send_to_all(host, rumor);
        } else if from.is_none() {
            host.send(
                self.coordinator,
                GossipMessage::Push {
                    rumors: vec![rumor],
                },
            );
        }
    }
}
