//! `AppSim`: applications beside simulated nodes get their node's events,
//! wake at their deadlines and reach other members through direct messages
//! and broadcasts.

use std::time::{Duration, Instant};

use gossip_apps::{Application, Channel, Cluster};
use gossip_core::{Config, Event, NodeId};
use gossip_sim::{AppSim, LinkModel, Simulator};

/// Every second, node 0's application sends "ping" to every live member;
/// each answers "pong". Everyone counts what it got.
#[derive(Default)]
struct Echo {
    next: Option<Instant>,
    pings: u32,
    pongs: Vec<NodeId>,
}

impl Application for Echo {
    fn handle_event(&mut self, now: Instant, event: &Event, cluster: &mut dyn Cluster) {
        if let Event::Direct { from, payload } = event {
            match Channel::Kv.open(payload) {
                Some(b"ping") => {
                    self.pings += 1;
                    cluster
                        .send_direct(now, *from, &Channel::Kv.wrap(b"pong"))
                        .unwrap();
                }
                Some(b"pong") => self.pongs.push(*from),
                _ => {}
            }
        }
        if self.next.is_none() && cluster.me().addr().port() != 0 {
            self.next = Some(now + Duration::from_secs(1));
        }
    }

    fn handle_timeout(&mut self, now: Instant, cluster: &mut dyn Cluster) {
        self.next = Some(now + Duration::from_secs(1));
        if cluster.me() == gossip_core::NodeId::new(gossip_sim::node_addr(0)) {
            for member in cluster.members() {
                if member.liveness == gossip_core::Liveness::Alive && member.id != cluster.me() {
                    cluster
                        .send_direct(now, member.id, &Channel::Kv.wrap(b"ping"))
                        .unwrap();
                }
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }
}

#[test]
fn applications_talk_through_their_nodes_in_virtual_time() {
    let mut sim = Simulator::new(5, 7, Config::default(), LinkModel::default());
    sim.start_all();
    let apps = (0..5).map(|_| Echo::default()).collect();
    let mut apps = AppSim::new(sim, apps);
    apps.run_until(Duration::from_secs(20), &mut ());
    let pongs = &apps.app(0).pongs;
    for i in 1..5 {
        let from = NodeId::new(gossip_sim::node_addr(i));
        assert!(
            pongs.iter().filter(|&&p| p == from).count() >= 5,
            "node {i} answered too few pings"
        );
        assert!(apps.app(i).pings >= 5);
    }
    assert_eq!(apps.app(0).pings, 0);

    // A crashed node's application hears nothing more.
    apps.crash(3);
    let before = apps.app(3).pings;
    apps.run_for(Duration::from_secs(10), &mut ());
    assert_eq!(apps.app(3).pings, before);
}
