//! Partial-view agents (`PartialAgent`: HyParView + Plumtree) on real UDP
//! sockets on loopback: they join through one contact, a broadcast reaches
//! everyone, crashed agents are found by the overlay's pings and dropped,
//! and a later broadcast still reaches every survivor.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use gossip_agent::{AgentConfig, PartialAgent, PartialAgentHandle, Transport};
use gossip_core::partial::{
    BroadcastId, NeighbourDownReason, PartialConfig, PartialEvent, PartialNode,
};
use gossip_core::NodeId;
use gossip_transport_udp::UdpTransport;
use tokio::sync::broadcast::Receiver;

/// Timers a few times faster than the defaults, so crashes are found
/// within about a second.
fn quick() -> PartialConfig {
    PartialConfig {
        ping_interval: Duration::from_millis(200),
        dead_after: Duration::from_secs(1),
        neighbour_timeout: Duration::from_millis(300),
        join_retry: Duration::from_millis(200),
        shuffle_interval: Duration::from_millis(500),
        ..PartialConfig::default()
    }
}

async fn start(n: usize) -> Vec<PartialAgentHandle> {
    let mut agents = Vec::new();
    for i in 0..n {
        let transport = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), 1400)
            .await
            .unwrap();
        let node = PartialNode::new(
            NodeId::new(transport.local_addr()),
            quick(),
            i as u64 + 1,
            std::time::Instant::now(),
        )
        .unwrap();
        agents.push(PartialAgent::spawn(node, transport, AgentConfig::default()).unwrap());
    }
    let contact = agents[0].id();
    agents[0].join(Vec::new()).await.unwrap();
    for agent in &agents[1..] {
        agent.join(vec![contact]).await.unwrap();
    }
    agents
}

/// Whether the active views of `agents` link them all, and only to each
/// other.
async fn connected(agents: &[PartialAgentHandle]) -> bool {
    let ids: BTreeSet<SocketAddr> = agents.iter().map(|a| a.id()).collect();
    let mut links: BTreeMap<SocketAddr, Vec<SocketAddr>> = BTreeMap::new();
    for agent in agents {
        let active = agent.active().await.unwrap();
        if active.is_empty() || active.iter().any(|peer| !ids.contains(peer)) {
            return false;
        }
        links.insert(agent.id(), active);
    }
    let mut seen = BTreeSet::from([agents[0].id()]);
    let mut todo = vec![agents[0].id()];
    while let Some(next) = todo.pop() {
        for peer in &links[&next] {
            if seen.insert(*peer) {
                todo.push(*peer);
            }
        }
    }
    seen.len() == agents.len()
}

async fn await_connected(agents: &[PartialAgentHandle], why: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !connected(agents).await {
        assert!(tokio::time::Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn await_delivery(events: &mut Receiver<PartialEvent>, id: BroadcastId, payload: &[u8]) {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await.expect("event stream open") {
                PartialEvent::Delivered {
                    id: got,
                    payload: p,
                    ..
                } if got == id => {
                    assert_eq!(p, payload);
                    return;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the broadcast arrives within 5 s");
}

/// The reasons of every `NeighbourDown` `events` holds now, by former
/// neighbour.
fn downs(events: &mut Receiver<PartialEvent>) -> BTreeMap<SocketAddr, Vec<NeighbourDownReason>> {
    let mut out: BTreeMap<SocketAddr, Vec<NeighbourDownReason>> = BTreeMap::new();
    while let Ok(event) = events.try_recv() {
        if let PartialEvent::NeighbourDown { id, reason } = event {
            out.entry(id.addr()).or_default().push(reason);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_agents_on_udp_broadcast_and_drop_crashed_neighbours() {
    let agents = start(16).await;
    await_connected(&agents, "the overlay did not connect").await;
    for agent in &agents {
        let active = agent.active().await.unwrap().len();
        assert!((1..=5).contains(&active), "{active} neighbours");
    }

    let mut events: Vec<_> = agents.iter().map(|a| a.subscribe()).collect();
    let id = agents[3].broadcast(b"first".to_vec()).await.unwrap();
    for (i, events) in events.iter_mut().enumerate() {
        if i != 3 {
            await_delivery(events, id, b"first").await;
        }
    }

    // Four crash (their tasks and sockets vanish without a word); one
    // leaves gracefully.
    let crashed: BTreeSet<usize> = [1, 6, 10, 14].into();
    let mut views_before = Vec::new();
    for agent in &agents {
        views_before.push(agent.active().await.unwrap());
    }
    for i in &crashed {
        agents[*i].abort();
    }
    agents[8].shutdown().await.unwrap();
    assert!(agents[8].is_stopped());
    let gone: BTreeSet<SocketAddr> = crashed
        .iter()
        .chain(&[8])
        .map(|i| agents[*i].id())
        .collect();
    let survivors: Vec<usize> = (0..agents.len())
        .filter(|i| !crashed.contains(i) && *i != 8)
        .collect();
    let alive: Vec<PartialAgentHandle> = survivors.iter().map(|i| agents[*i].clone()).collect();
    await_connected(
        &alive,
        "the survivors' views did not drop the departed and reconnect",
    )
    .await;

    // Each survivor saw every departed neighbour go: a crashed one as
    // silent (the pings' verdict), the one that left as disconnected (or,
    // either, as replaced: a view may make room for a node that asks
    // urgently at any time).
    let (mut silent, mut disconnected) = (0, 0);
    for i in &survivors {
        let downs = downs(&mut events[*i]);
        for peer in views_before[*i].iter().filter(|p| gone.contains(p)) {
            let reasons = downs.get(peer).cloned().unwrap_or_default();
            let left = *peer == agents[8].id();
            for reason in &reasons {
                match reason {
                    NeighbourDownReason::Silent if !left => silent += 1,
                    NeighbourDownReason::Disconnected if left => disconnected += 1,
                    NeighbourDownReason::Replaced => {}
                    other => panic!("survivor {i} dropped {peer} as {other:?}"),
                }
            }
            assert!(!reasons.is_empty(), "survivor {i} never dropped {peer}");
        }
    }
    assert!(silent > 0, "no crashed neighbour was found silent");
    let had_leaver = survivors
        .iter()
        .any(|i| views_before[*i].contains(&agents[8].id()));
    assert!(!had_leaver || disconnected > 0);

    let id = agents[survivors[2]]
        .broadcast(b"after".to_vec())
        .await
        .unwrap();
    for i in &survivors {
        if *i != survivors[2] {
            await_delivery(&mut events[*i], id, b"after").await;
        }
    }
    let stats = agents[0].stats().await.unwrap();
    assert!(stats.node.frames_sent > 0 && stats.transport.packets_sent > 0);
    assert!(stats.refused.is_empty(), "{:?}", stats.refused);
    for i in &survivors {
        agents[*i].shutdown().await.unwrap();
    }
}

/// A payload over the node's limit is refused with a typed error, and a
/// node whose frames do not fit the transport is refused at start.
#[tokio::test]
async fn oversized_payloads_and_frames_are_refused() {
    let agents = start(1).await;
    let max = agents[0].max_payload_len().await.unwrap();
    let error = agents[0].broadcast(vec![0; max + 1]).await.unwrap_err();
    assert!(
        matches!(error, gossip_agent::AgentError::PartialBroadcast(_)),
        "{error}"
    );
    let transport = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), 600)
        .await
        .unwrap();
    let node = PartialNode::new(
        NodeId::new(transport.local_addr()),
        PartialConfig::default(),
        1,
        std::time::Instant::now(),
    )
    .unwrap();
    let refused = PartialAgent::spawn(node, transport, AgentConfig::default()).unwrap_err();
    assert!(
        matches!(refused, gossip_agent::AgentError::FrameTooLarge { .. }),
        "{refused}"
    );
}
