//! Over real UDP sockets on 127.0.0.1: an agent whose keyring lacks the
//! cluster key cannot join. Its frames are refused, it never sees the
//! others and they never see it; given the key at runtime, it joins.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gossip_agent::{Agent, AgentConfig, AgentHandle};
use gossip_core::{Config, Generation, Liveness, Node, NodeId};
use gossip_seal::{Key, Keyring, KeyringHandle, Sealed, OVERHEAD};
use gossip_strategies::RumorMongering;
use gossip_transport_udp::{UdpTransport, DEFAULT_MAX_DATAGRAM};

const LABEL: &str = "udp-seal";

async fn spawn(ring: KeyringHandle, seed: u64) -> (AgentHandle<RumorMongering>, SocketAddr) {
    let udp = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), DEFAULT_MAX_DATAGRAM)
        .await
        .unwrap();
    let addr = gossip_agent::Transport::local_addr(&udp);
    let mut config = Config::lan(8);
    config.cluster_label = LABEL.into();
    config.max_message_size = (DEFAULT_MAX_DATAGRAM - OVERHEAD).try_into().unwrap();
    config.probe_interval = Duration::from_millis(200);
    config.probe_timeout = Duration::from_millis(100);
    config.join_retry_interval = Duration::from_millis(200);
    let node = Node::with_strategy(
        config,
        NodeId::new(addr),
        Generation(1),
        seed,
        RumorMongering::default(),
    )
    .unwrap();
    let agent = Agent::spawn(node, Sealed::new(udp, ring, LABEL), AgentConfig::default()).unwrap();
    (agent, addr)
}

async fn alive(agent: &AgentHandle<RumorMongering>) -> Vec<SocketAddr> {
    agent
        .members()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.liveness == Liveness::Alive && m.id.addr() != agent.id())
        .map(|m| m.id.addr())
        .collect()
}

async fn wait_for(limit: Duration, mut done: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_the_cluster_key_cannot_join_until_given_it() {
    let cluster_key = Key::generate().unwrap();
    let ring = KeyringHandle::new(Keyring::new(cluster_key.clone()));
    let mut members = Vec::new();
    for seed in 0..3 {
        members.push(spawn(ring.clone(), seed).await);
    }
    members[0].0.join(vec![]).await.unwrap();
    for (agent, _) in &members[1..] {
        agent.join(vec![members[0].1]).await.unwrap();
    }
    assert!(
        wait_for(Duration::from_secs(10), async || {
            for (agent, _) in &members {
                if alive(agent).await.len() != 2 {
                    return false;
                }
            }
            true
        })
        .await,
        "the keyed members did not converge"
    );

    let stranger_ring = KeyringHandle::new(Keyring::generate().unwrap());
    let (stranger, stranger_addr) = spawn(stranger_ring.clone(), 9).await;
    stranger.join(vec![members[0].1]).await.unwrap();
    // Two seconds is ten probe intervals and ten join retries.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(alive(&stranger).await.is_empty());
    assert!(!stranger.is_joined().await.unwrap());
    for (agent, _) in &members {
        let members = agent.members().await.unwrap();
        assert!(
            members.iter().all(|m| m.id.addr() != stranger_addr),
            "a member saw the stranger"
        );
    }
    let refused = members[0].0.stats().await.unwrap().transport.frames_refused;
    assert!(refused > 0, "the seed refused none of the stranger's joins");

    // The same agent, handed the cluster key as primary, joins through
    // its own join retries: no restart, no new join command.
    stranger_ring.update(|r| {
        r.add(cluster_key.clone()).unwrap();
        r.set_primary(cluster_key.id()).unwrap();
    });
    assert!(
        wait_for(Duration::from_secs(10), async || alive(&stranger)
            .await
            .len()
            == 3)
        .await,
        "the stranger did not join once given the key"
    );
}
