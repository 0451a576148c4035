//! Key rotation while broadcasts run, on the in-memory network and
//! tokio's paused clock: five agents over `Sealed<MemoryTransport>`, each
//! with its own keyring, rotate in three steps (add everywhere, make
//! primary everywhere, remove the old key everywhere) one node at a time,
//! while one broadcast leaves every 250 ms. Every broadcast must reach every
//! node and no frame may be refused.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gossip_agent::testing::MemoryNetwork;
use gossip_agent::{Agent, AgentConfig, AgentError, AgentHandle};
use gossip_core::{Config, Event, Generation, Liveness, MessageId, Node, NodeId};
use gossip_seal::{Key, Keyring, KeyringHandle, Sealed, OVERHEAD};
use gossip_strategies::RumorMongering;

const LABEL: &str = "rotation";
const FRAME: usize = 1400;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 7000 + i as u16))
}

fn config() -> Config {
    let mut config = Config::lan(8);
    config.cluster_label = LABEL.into();
    // Room for the seal under the in-memory frame limit.
    config.max_message_size = (FRAME - OVERHEAD).try_into().unwrap();
    config
}

fn spawn(
    network: &MemoryNetwork,
    i: usize,
    ring: KeyringHandle,
    config: Config,
) -> Result<AgentHandle<RumorMongering>, AgentError> {
    let transport = Sealed::new(network.bind(addr(i), FRAME).unwrap(), ring, LABEL);
    let node = Node::with_strategy(
        config,
        NodeId::new(addr(i)),
        Generation(1),
        i as u64,
        RumorMongering::default(),
    )
    .unwrap();
    Agent::spawn(node, transport, AgentConfig::default())
}

/// Records every delivered broadcast of one agent.
fn record(agent: &AgentHandle<RumorMongering>) -> Arc<Mutex<HashSet<MessageId>>> {
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let mut events = agent.subscribe();
    let into = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            if let Event::Delivered { id, .. } = event {
                into.lock().unwrap().insert(id);
            }
        }
    });
    seen
}

async fn all_alive(agents: &[AgentHandle<RumorMongering>]) -> bool {
    for agent in agents {
        let members = agent.members().await.unwrap();
        let alive = members
            .iter()
            .filter(|m| m.liveness == Liveness::Alive)
            .count();
        if alive != agents.len() {
            return false;
        }
    }
    true
}

#[tokio::test(start_paused = true)]
async fn three_step_rotation_under_broadcast_loses_nothing() {
    let n = 5;
    let network = MemoryNetwork::new();
    let old = Key::generate().unwrap();
    let new = Key::generate().unwrap();
    let rings: Vec<KeyringHandle> = (0..n)
        .map(|_| KeyringHandle::new(Keyring::new(old.clone())))
        .collect();
    let agents: Vec<_> = (0..n)
        .map(|i| spawn(&network, i, rings[i].clone(), config()).unwrap())
        .collect();
    let seen: Vec<_> = agents.iter().map(record).collect();
    agents[0].join(vec![]).await.unwrap();
    for agent in &agents[1..] {
        agent.join(vec![addr(0)]).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !all_alive(&agents).await {
        assert!(tokio::time::Instant::now() < deadline, "no convergence");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Broadcast continuously from every node in turn until told to stop.
    let sent = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (agents, sent, stop) = (agents.clone(), Arc::clone(&sent), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut k = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let from = k % agents.len();
                let id = agents[from]
                    .broadcast(format!("b{k}").into_bytes())
                    .await
                    .unwrap();
                sent.lock().unwrap().push((from, id));
                k += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    // Each step on every node, one node at a time, before the next step:
    // between two nodes' changes the cluster runs with mixed rings.
    let pause = Duration::from_millis(700);
    for ring in &rings {
        ring.update(|r| r.add(new.clone())).unwrap();
        tokio::time::sleep(pause).await;
    }
    for ring in &rings {
        ring.update(|r| r.set_primary(new.id())).unwrap();
        tokio::time::sleep(pause).await;
    }
    for ring in &rings {
        ring.update(|r| r.remove(old.id())).unwrap();
        tokio::time::sleep(pause).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;

    let sent = sent.lock().unwrap().clone();
    assert!(sent.len() >= 30, "only {} broadcasts", sent.len());
    for (i, seen) in seen.iter().enumerate() {
        let seen = seen.lock().unwrap();
        let missing: Vec<_> = sent
            .iter()
            .filter(|(from, id)| *from != i && !seen.contains(id))
            .collect();
        assert!(
            missing.is_empty(),
            "node {i} missed {missing:?} of {}",
            sent.len()
        );
    }
    for (i, agent) in agents.iter().enumerate() {
        let stats = agent.stats().await.unwrap();
        assert_eq!(stats.transport.frames_refused, 0, "node {i} refused frames");
        assert_eq!(rings[i].read(|r| r.ids()), vec![new.id()]);
    }
    assert!(all_alive(&agents).await);
}

#[tokio::test(start_paused = true)]
async fn primary_switched_before_the_key_is_everywhere_is_refused() {
    // The control for the test above: skipping step 1 on one node makes
    // the others' frames unopenable there, and it counts them.
    let network = MemoryNetwork::new();
    let old = Key::generate().unwrap();
    let new = Key::generate().unwrap();
    let rings: Vec<KeyringHandle> = (0..3)
        .map(|_| KeyringHandle::new(Keyring::new(old.clone())))
        .collect();
    let agents: Vec<_> = (0..3)
        .map(|i| spawn(&network, i, rings[i].clone(), config()).unwrap())
        .collect();
    agents[0].join(vec![]).await.unwrap();
    for agent in &agents[1..] {
        agent.join(vec![addr(0)]).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(all_alive(&agents).await);
    for ring in &rings[..2] {
        ring.update(|r| {
            r.add(new.clone()).unwrap();
            r.set_primary(new.id()).unwrap();
        });
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let refused = agents[2].stats().await.unwrap().transport.frames_refused;
    assert!(refused > 0, "node 2 lacks the new key yet refused nothing");
}

#[tokio::test]
async fn a_node_whose_frames_would_not_fit_once_sealed_is_refused_at_spawn() {
    let network = MemoryNetwork::new();
    let ring = KeyringHandle::new(Keyring::generate().unwrap());
    let mut config = config();
    config.max_message_size = FRAME.try_into().unwrap();
    let error = spawn(&network, 0, ring, config).unwrap_err();
    assert!(
        error.to_string().contains(&(FRAME - OVERHEAD).to_string()),
        "{error}"
    );
}
