//! A dissemination strategy of your own, run by agents on the in-memory
//! network: five nodes join, node 0 broadcasts, everyone delivers.
//!
//! The strategy, `PushThenPull`, pushes each new rumor to a few random
//! peers until it has travelled `max_hops` relays, and every few rounds
//! asks one random peer for whatever it lacks, which repairs what the
//! pushes missed. A strategy never sees bytes or sockets: the node it runs
//! in stores payloads, packs frames and picks peers through [`Host`].
//!
//! ```sh
//! cargo run -p gossip-agent --example custom_strategy
//! ```

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use gossip_agent::testing::MemoryNetwork;
use gossip_agent::{Agent, AgentConfig, AgentHandle};
use gossip_core::{Config, Digest, Event, Generation, GossipMessage, Host, Node, NodeId};
use gossip_core::{Rumor, Strategy};

/// Push to `fanout` peers for `max_hops` relays; pull every `pull_every` rounds.
#[derive(Clone, Debug)]
pub struct PushThenPull {
    fanout: usize,
    max_hops: u16,
    pull_every: u32,
    rounds: u32,
}

impl Strategy for PushThenPull {
    fn on_rumor<H: Host>(&mut self, host: &mut H, rumor: Rumor, _from: Option<NodeId>) {
        if rumor.hops >= self.max_hops {
            return;
        }
        let mut peers = Vec::with_capacity(self.fanout);
        host.sample_peers(self.fanout, &mut peers);
        for peer in peers {
            let rumors = vec![rumor];
            host.send(peer, GossipMessage::Push { rumors });
        }
    }

    fn on_pull<H: Host>(&mut self, host: &mut H, from: NodeId, digest: &Digest, _back: bool) {
        let mut missing = Vec::new();
        host.missing_from(digest, &mut missing);
        if !missing.is_empty() {
            host.send(from, GossipMessage::Push { rumors: missing });
        }
    }

    fn on_round<H: Host>(&mut self, host: &mut H) {
        self.rounds = self.rounds.wrapping_add(1);
        let mut peer = Vec::with_capacity(1);
        if self.rounds % self.pull_every == 0 {
            host.sample_peers(1, &mut peer);
        }
        for to in peer {
            let digest = host.digest();
            host.send(
                to,
                GossipMessage::Pull {
                    digest,
                    reciprocate: false,
                },
            );
        }
    }

    // The periodic pull needs rounds even when nothing is being pushed.
    fn wants_rounds(&self) -> bool {
        true
    }
}

const NODES: usize = 5;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 7000 + i as u16))
}

/// Starts the nodes, broadcasts from node 0, and returns how many others
/// delivered it within a few seconds.
pub async fn run() -> Result<usize, Box<dyn Error>> {
    let network = MemoryNetwork::new();
    let mut agents: Vec<AgentHandle<PushThenPull>> = Vec::new();
    for i in 0..NODES {
        let strategy = PushThenPull {
            fanout: 2,
            max_hops: 3,
            pull_every: 5,
            rounds: 0,
        };
        let node = Node::with_strategy(
            Config::lan(NODES),
            NodeId::new(addr(i)),
            Generation(1),
            i as u64,
            strategy,
        )?;
        let transport = network.bind(addr(i), 1400)?;
        agents.push(Agent::spawn(node, transport, AgentConfig::default())?);
    }
    let mut subscriptions: Vec<_> = agents.iter().map(AgentHandle::subscribe).collect();
    for (i, agent) in agents.iter().enumerate() {
        agent
            .join(if i == 0 { vec![] } else { vec![addr(0)] })
            .await?;
    }
    // Give the joins a moment to spread: a rumor goes to known peers only.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = agents[0]
        .broadcast(b"made by my own strategy".to_vec())
        .await?;
    println!("node 0 broadcast {sent:?}");

    let mut delivered = 0;
    for (i, events) in subscriptions.iter_mut().enumerate().skip(1) {
        let arrived = tokio::time::timeout(Duration::from_secs(5), async {
            while let Ok(event) = events.recv().await {
                if let Event::Delivered { id, payload } = event {
                    if id == sent {
                        return Some(payload);
                    }
                }
            }
            None
        })
        .await;
        if let Ok(Some(payload)) = arrived {
            println!("node {i} delivered {:?}", String::from_utf8_lossy(&payload));
            delivered += 1;
        } else {
            println!("node {i} did not deliver within 5 s");
        }
    }
    // One after another, each leave would linger while its farewell spreads.
    let leaving: Vec<_> = agents
        .into_iter()
        .map(|agent| tokio::spawn(async move { agent.leave().await }))
        .collect();
    for left in leaving {
        left.await??;
    }
    Ok(delivered)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let delivered = run().await?;
    println!("{delivered} of {} other nodes delivered", NODES - 1);
    Ok(())
}
