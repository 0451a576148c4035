//! Applications hosted by agents: each sees its node's events, wakes at
//! its deadline on the agent's task, and is reached through `with_app`.

use std::time::{Duration, Instant};

use gossip_agent::testing::MemoryNetwork;
use gossip_agent::{Agent, AgentConfig, AgentHandle};
use gossip_apps::{Application, Channel, Cluster};
use gossip_core::{Config, Event, Generation, Liveness, Node, NodeId};

use crate::common;
use common::{addr, await_live};

/// Once a second, pings every other live member directly; answers pings
/// with pongs and counts the pongs it gets.
struct Echo {
    next: Option<Instant>,
    pongs: u32,
}

impl Application for Echo {
    fn handle_event(&mut self, now: Instant, event: &Event, cluster: &mut dyn Cluster) {
        if let Event::Direct { from, payload } = event {
            match Channel::Kv.open(payload) {
                Some(b"ping") => {
                    let _ = cluster.send_direct(now, *from, &Channel::Kv.wrap(b"pong"));
                }
                Some(b"pong") => self.pongs += 1,
                _ => {}
            }
        }
        self.next.get_or_insert(now + Duration::from_secs(1));
    }

    fn handle_timeout(&mut self, now: Instant, cluster: &mut dyn Cluster) {
        self.next = Some(now + Duration::from_secs(1));
        for member in cluster.members() {
            if member.liveness == Liveness::Alive && member.id != cluster.me() {
                let _ = cluster.send_direct(now, member.id, &Channel::Kv.wrap(b"ping"));
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }
}

#[tokio::test(start_paused = true)]
async fn hosted_applications_exchange_direct_messages() {
    let network = MemoryNetwork::new();
    let mut agents: Vec<AgentHandle> = Vec::new();
    for i in 0..3 {
        let transport = network.bind(addr(i), 1400).unwrap();
        let node = Node::new(
            Config::lan(8),
            NodeId::new(addr(i)),
            Generation(1),
            i as u64,
        )
        .unwrap();
        let agent = Agent::spawn(node, transport, AgentConfig::default()).unwrap();
        agent
            .add_app(Echo {
                next: None,
                pongs: 0,
            })
            .await
            .unwrap();
        let seeds = if i == 0 { vec![] } else { vec![addr(0)] };
        agent.join(seeds).await.unwrap();
        agents.push(agent);
    }
    await_live(&agents, 3, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    for agent in &agents {
        let pongs = agent
            .with_app(|echo: &mut Echo, _, _| echo.pongs)
            .await
            .unwrap()
            .expect("the Echo application is hosted");
        // Two peers, about one ping each per second for ten seconds.
        assert!(pongs >= 10, "only {pongs} pongs");
    }
    // An application type the agent does not host is reported as absent.
    struct Absent;
    impl Application for Absent {
        fn handle_event(&mut self, _: Instant, _: &Event, _: &mut dyn Cluster) {}
        fn handle_timeout(&mut self, _: Instant, _: &mut dyn Cluster) {}
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
    }
    assert!(agents[0]
        .with_app(|_: &mut Absent, _, _| ())
        .await
        .unwrap()
        .is_none());
}
