//! The Agent driving real `Node`s over the in-memory network, on tokio's
//! paused clock: minutes of cluster time run in milliseconds, and the same
//! scenario runs again through the fault-injecting wrapper.

use std::time::Duration;

use gossip_agent::testing::{Faults, Faulty, MemoryNetwork};
use gossip_agent::{Agent, AgentConfig, AgentError, AgentHandle, Transport};
use gossip_core::{Config, Event, Generation, Node, NodeId};
use gossip_strategies::RumorMongering;
use tokio::sync::broadcast::Receiver;

use crate::common;
use common::{addr, await_event, await_live};

fn spawn_node(transport: impl Transport + 'static, seed: u64) -> AgentHandle<RumorMongering> {
    let id = NodeId::new(transport.local_addr());
    let node = Node::with_strategy(
        Config::lan(8),
        id,
        Generation(1),
        seed,
        RumorMongering::default(),
    )
    .unwrap();
    Agent::spawn(node, transport, AgentConfig::default()).unwrap()
}

struct Cluster {
    network: MemoryNetwork,
    agents: Vec<AgentHandle<RumorMongering>>,
    events: Vec<Receiver<Event>>,
}

async fn start(n: usize, faults: Option<Faults>) -> Cluster {
    let network = MemoryNetwork::new();
    let mut agents = Vec::new();
    let mut events = Vec::new();
    for i in 0..n {
        let transport = network.bind(addr(i), 1400).unwrap();
        let agent = match faults {
            Some(faults) => spawn_node(Faulty::new(transport, faults, i as u64).unwrap(), i as u64),
            None => spawn_node(transport, i as u64),
        };
        events.push(agent.subscribe());
        let seeds = if i == 0 { vec![] } else { vec![addr(0)] };
        agent.join(seeds).await.unwrap();
        agents.push(agent);
    }
    Cluster {
        network,
        agents,
        events,
    }
}

async fn scenario(faults: Option<Faults>) {
    let n = 8;
    let mut cluster = start(n, faults).await;
    await_live(&cluster.agents, n, Duration::from_secs(30)).await;

    // A broadcast reaches every other node exactly once.
    let id = cluster.agents[3]
        .broadcast(b"hello".to_vec())
        .await
        .unwrap();
    for (i, events) in cluster.events.iter_mut().enumerate() {
        if i == 3 {
            continue;
        }
        await_event(events, Duration::from_secs(30), |e| {
            matches!(e, Event::Delivered { id: got, payload } if *got == id && payload == b"hello")
        })
        .await;
    }

    // A crash (no farewell) is detected by everyone else.
    let crashed = cluster.agents[5].id();
    cluster.agents[5].abort();
    cluster.agents[5].wait().await;
    for (i, events) in cluster.events.iter_mut().enumerate() {
        if i == 5 {
            continue;
        }
        await_event(
            events,
            Duration::from_secs(60),
            |e| matches!(e, Event::MemberDown(m) if m.id.addr() == crashed),
        )
        .await;
    }

    // A graceful leave is seen as a leave, not a death.
    let leaving = cluster.agents[6].id();
    cluster.agents[6].shutdown().await.unwrap();
    for (i, events) in cluster.events.iter_mut().enumerate() {
        if i == 5 || i == 6 {
            continue;
        }
        await_event(
            events,
            Duration::from_secs(30),
            |e| matches!(e, Event::MemberLeft(m) if m.id.addr() == leaving),
        )
        .await;
    }
    let stopped = cluster.agents[6].members().await;
    assert!(matches!(stopped, Err(AgentError::Stopped)));
    drop(cluster.network);
}

#[tokio::test(start_paused = true)]
async fn join_broadcast_crash_and_leave_over_memory() {
    scenario(None).await;
}

#[tokio::test(start_paused = true)]
async fn the_same_scenario_survives_loss_delay_duplication_and_reordering() {
    scenario(Some(Faults {
        loss: 0.1,
        duplicate: 0.05,
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(20),
    }))
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_isolated_node_is_declared_dead_and_rejoins_after_healing() {
    let n = 5;
    let mut cluster = start(n, None).await;
    await_live(&cluster.agents, n, Duration::from_secs(30)).await;
    let cut = cluster.agents[2].id();
    cluster.network.isolate(cut);
    await_event(
        &mut cluster.events[0],
        Duration::from_secs(60),
        |e| matches!(e, Event::MemberDown(m) if m.id.addr() == cut),
    )
    .await;
    cluster.network.reconnect(cut);
    await_live(&cluster.agents, n, Duration::from_secs(60)).await;
}

#[tokio::test]
async fn spawn_refuses_a_node_whose_frames_the_transport_cannot_carry() {
    let network = MemoryNetwork::new();
    let transport = network.bind(addr(0), 512).unwrap();
    let node = Node::new(Config::lan(8), NodeId::new(addr(0)), Generation(1), 1).unwrap();
    assert!(matches!(
        Agent::spawn(node, transport, AgentConfig::default()),
        Err(AgentError::FrameTooLarge { .. })
    ));
}

#[tokio::test]
async fn spawn_refuses_a_node_whose_identity_is_not_the_transport_address() {
    let network = MemoryNetwork::new();
    let transport = network.bind(addr(0), 1400).unwrap();
    let node = Node::new(Config::lan(8), NodeId::new(addr(1)), Generation(1), 1).unwrap();
    assert!(matches!(
        Agent::spawn(node, transport, AgentConfig::default()),
        Err(AgentError::AddressMismatch { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn commands_on_a_node_that_has_not_joined_are_refused_with_the_core_error() {
    let network = MemoryNetwork::new();
    let agent = spawn_node(network.bind(addr(0), 1400).unwrap(), 1);
    let refused = agent.broadcast(b"x".to_vec()).await.unwrap_err();
    assert!(matches!(
        refused,
        AgentError::Command(gossip_core::CommandError::NotStarted)
    ));
    agent.join(vec![]).await.unwrap();
    let twice = agent.join(vec![]).await.unwrap_err();
    assert!(matches!(
        twice,
        AgentError::Command(gossip_core::CommandError::AlreadyStarted)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_boxed_transport_drives_a_node_like_a_concrete_one() {
    let network = MemoryNetwork::new();
    let a: Box<dyn Transport> = Box::new(network.bind(addr(0), 1400).unwrap());
    let b: Box<dyn Transport> = Box::new(network.bind(addr(1), 1400).unwrap());
    let a = spawn_node(a, 1);
    let b = spawn_node(b, 2);
    a.join(vec![]).await.unwrap();
    b.join(vec![addr(0)]).await.unwrap();
    await_live(&[a, b], 2, Duration::from_secs(10)).await;
}

#[tokio::test(start_paused = true)]
async fn shutting_down_a_node_that_never_joined_returns() {
    let network = MemoryNetwork::new();
    let agent = spawn_node(network.bind(addr(0), 1400).unwrap(), 1);
    tokio::time::timeout(Duration::from_secs(5), agent.shutdown())
        .await
        .expect("shutdown returns")
        .expect("nothing to announce is not an error");
    assert!(matches!(agent.members().await, Err(AgentError::Stopped)));
    // Waiting again, from any handle, returns at once.
    agent.clone().wait().await;
}
