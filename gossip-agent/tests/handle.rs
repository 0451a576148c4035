//! The handle's command surface: every `Node` command and query reachable
//! through the one generic command, on the in-memory network and tokio's
//! paused clock.

use std::time::Duration;

use gossip_agent::testing::MemoryNetwork;
use gossip_agent::{Agent, AgentConfig, AgentError, AgentHandle};
use gossip_aggregate::{Function, Input, PushPull};
use gossip_core::{CommandError, Config, Event, Generation, Liveness, NoStrategy, Node, NodeId};
use gossip_strategies::RumorMongering;

use crate::common;
use common::{addr, await_event, await_live};

type Averaging = AgentHandle<NoStrategy, PushPull>;

/// `n` nodes averaging their inputs `inputs[i]` with push-pull, joined
/// through the first. The network must outlive the agents.
async fn averaging_cluster(network: &MemoryNetwork, inputs: &[f64]) -> Vec<Averaging> {
    let mut agents = Vec::new();
    for (i, &value) in inputs.iter().enumerate() {
        let transport = network.bind(addr(i), 1400).unwrap();
        let aggregate = PushPull::new(
            Function::Average,
            Input {
                value,
                leader: i == 0,
            },
            None,
        );
        let node = Node::with_parts(
            Config::lan(8),
            NodeId::new(addr(i)),
            Generation(1),
            i as u64,
            NoStrategy,
            aggregate,
        )
        .unwrap();
        let agent = Agent::spawn(node, transport, AgentConfig::default()).unwrap();
        let seeds = if i == 0 { vec![] } else { vec![addr(0)] };
        agent.join(seeds).await.unwrap();
        agents.push(agent);
    }
    agents
}

/// Waits until every agent's estimate is within 1e-6 of `target`.
async fn await_estimates(agents: &[Averaging], target: f64, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut estimates = Vec::new();
        for agent in agents {
            estimates.push(agent.estimate().await.unwrap());
        }
        let close = |e: &Option<f64>| e.is_some_and(|e| (e - target).abs() <= 1e-6 * target.abs());
        if estimates.iter().all(close) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "estimates {estimates:?} did not reach {target} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn set_aggregate_input_through_the_handle_moves_every_estimate() {
    let network = MemoryNetwork::new();
    let agents = averaging_cluster(&network, &[1.0, 2.0, 3.0, 4.0, 5.0]).await;
    await_live(&agents, 5, Duration::from_secs(30)).await;
    await_estimates(&agents, 3.0, Duration::from_secs(60)).await;

    // 5 -> 15 raises the mean by 2; push-pull carries the difference to all.
    let mut events = agents[1].subscribe();
    agents[4].set_aggregate_input(15.0).await.unwrap();
    await_estimates(&agents, 5.0, Duration::from_secs(60)).await;
    await_event(&mut events, Duration::from_secs(1), |e| {
        matches!(e, Event::Estimate(_))
    })
    .await;

    let refused = agents[0].set_aggregate_input(f64::NAN).await;
    assert!(matches!(
        refused,
        Err(AgentError::Command(CommandError::NonFiniteInput))
    ));
    // Through the generic command, the aggregate's own state is readable.
    let held = agents[0]
        .with_node(|node, _| node.aggregate().map(PushPull::mass))
        .await
        .unwrap();
    assert!(held.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_node_without_an_aggregate_refuses_an_input() {
    let network = MemoryNetwork::new();
    let transport = network.bind(addr(0), 1400).unwrap();
    let node = Node::new(Config::lan(8), NodeId::new(addr(0)), Generation(1), 1).unwrap();
    let agent = Agent::spawn(node, transport, AgentConfig::default()).unwrap();
    agent.join(vec![]).await.unwrap();
    assert!(matches!(
        agent.set_aggregate_input(1.0).await,
        Err(AgentError::Command(CommandError::NoAggregate))
    ));
    assert_eq!(agent.estimate().await.unwrap(), None);
}

type Gossiping = AgentHandle<RumorMongering>;

async fn gossip_cluster(network: &MemoryNetwork, n: usize) -> Vec<Gossiping> {
    let mut agents = Vec::new();
    for i in 0..n {
        let node = Node::with_strategy(
            Config::lan(8),
            NodeId::new(addr(i)),
            Generation(1),
            i as u64,
            RumorMongering::default(),
        )
        .unwrap();
        let transport = network.bind(addr(i), 1400).unwrap();
        let agent = Agent::spawn(node, transport, AgentConfig::default()).unwrap();
        assert!(!agent.is_joined().await.unwrap());
        let seeds = if i == 0 { vec![] } else { vec![addr(0)] };
        agent.join(seeds).await.unwrap();
        agents.push(agent);
    }
    agents
}

#[tokio::test(start_paused = true)]
async fn queries_answer_from_the_node_on_the_agents_task() {
    let network = MemoryNetwork::new();
    let agents = gossip_cluster(&network, 4).await;
    await_live(&agents, 4, Duration::from_secs(30)).await;
    for agent in &agents {
        assert!(agent.is_joined().await.unwrap());
        assert_eq!(agent.live_member_count().await.unwrap(), 4);
    }
    // Converged views hash alike (give the last updates a moment to settle).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let first = agents[0].view_hash().await.unwrap();
    for agent in &agents[1..] {
        assert_eq!(agent.view_hash().await.unwrap(), first);
    }
    let largest = agents[0].max_payload_len().await.unwrap();
    agents[0].broadcast(vec![1; largest]).await.unwrap();
    assert!(matches!(
        agents[0].broadcast(vec![1; largest + 1]).await,
        Err(AgentError::Command(_))
    ));
    let stats = agents[0].stats().await.unwrap();
    assert!(stats.transport.packets_sent > 0);
    assert_eq!(stats.send_errors, 0);
}

#[tokio::test(start_paused = true)]
async fn metadata_set_through_the_handle_reaches_the_others() {
    let network = MemoryNetwork::new();
    let agents = gossip_cluster(&network, 3).await;
    await_live(&agents, 3, Duration::from_secs(30)).await;
    let mut events = agents[2].subscribe();
    agents[0].set_metadata(b"zone=a".to_vec()).await.unwrap();
    let origin = agents[0].id();
    await_event(&mut events, Duration::from_secs(30), |e| {
        matches!(e, Event::MemberUpdated(m) if m.id.addr() == origin && m.metadata == b"zone=a")
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn peer_unreachable_through_the_handle_starts_a_suspicion() {
    let network = MemoryNetwork::new();
    let agents = gossip_cluster(&network, 3).await;
    await_live(&agents, 3, Duration::from_secs(30)).await;
    let mut events = agents[0].subscribe();
    let peer = agents[1].id();
    agents[0].peer_unreachable(NodeId::new(peer)).await.unwrap();
    // The event is published as soon as the command returns: the agent
    // drains events after every command.
    await_event(
        &mut events,
        Duration::from_millis(1),
        |e| matches!(e, Event::MemberSuspect(m) if m.id.addr() == peer),
    )
    .await;
    // The suspect is alive and refutes.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let members = agents[0].members().await.unwrap();
    assert!(members.iter().all(|m| m.liveness == Liveness::Alive));
}

#[tokio::test(start_paused = true)]
async fn leave_through_the_handle_is_seen_as_a_leave_and_stops_the_agent() {
    let network = MemoryNetwork::new();
    let agents = gossip_cluster(&network, 3).await;
    await_live(&agents, 3, Duration::from_secs(30)).await;
    let mut events = agents[0].subscribe();
    let leaving = agents[2].id();
    agents[2].leave().await.unwrap();
    assert!(agents[2].is_stopped());
    await_event(
        &mut events,
        Duration::from_secs(30),
        |e| matches!(e, Event::MemberLeft(m) if m.id.addr() == leaving),
    )
    .await;
    assert!(matches!(
        agents[2].with_node(|node, _| node.id()).await,
        Err(AgentError::Stopped)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_command_stops_the_agent_and_is_reported_as_stopped() {
    let network = MemoryNetwork::new();
    let agents = gossip_cluster(&network, 1).await;
    let outcome = agents[0]
        .with_node(|_, _| -> () { panic!("a bug in the application's closure") })
        .await;
    assert!(matches!(outcome, Err(AgentError::Stopped)));
    agents[0].wait().await;
    assert!(matches!(
        agents[0].members().await,
        Err(AgentError::Stopped)
    ));
}
