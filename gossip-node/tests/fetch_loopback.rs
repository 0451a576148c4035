//! Payloads larger than a frame (`gossip_apps::fetch`) between agents on
//! real loopback sockets: over QUIC in segments on streams, over UDP in
//! windowed pieces; every node delivers the payload, verified.

use std::time::Duration;

use gossip_apps::fetch::{Fetch, FetchConfig, FetchEvent};
use gossip_node::cluster::{ClusterSpec, LocalCluster, TransportKind};
use gossip_node::run_agent::config_for;
use gossip_strategies::{AnyStrategy, Plumtree};

const N: usize = 5;

async fn every_node_gets_a_payload(transport: TransportKind) {
    let spec = ClusterSpec {
        nodes: N,
        transport,
        config: config_for(N, Duration::from_millis(300), transport),
        strategy: AnyStrategy::Plumtree(Plumtree::default()),
        seed: 11,
        bind: "127.0.0.1:0".parse().unwrap(),
        faults: None,
        keyring: None,
    };
    let cluster = LocalCluster::start(&spec).await.unwrap();
    let everyone = cluster.others(&[]);
    assert!(
        cluster
            .wait_until(&everyone, Duration::from_secs(20), |o| o
                .converged_at
                .is_some())
            .await,
        "every node sees every other alive"
    );
    for agent in &cluster.agents {
        agent
            .add_app(Fetch::new(FetchConfig::default()))
            .await
            .unwrap();
    }
    // Far larger than a frame (and than QUIC's 64 KiB frame streams).
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let sent = payload.clone();
    let id = cluster.agents[1]
        .with_app::<Fetch, _, _>(move |app, node, now| app.send(now, sent, b"h".to_vec(), node))
        .await
        .unwrap()
        .expect("a fetch application")
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut got = vec![false; N];
    got[1] = true;
    while got.iter().any(|g| !g) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for (i, agent) in cluster.agents.iter().enumerate() {
            let expected = payload.clone();
            got[i] |= agent
                .with_app::<Fetch, _, _>(move |app, _, _| {
                    let mut ok = false;
                    while let Some(event) = app.poll_event() {
                        if let FetchEvent::Delivered { offer, payload } = event {
                            ok |= offer.id == id && payload == expected;
                        }
                    }
                    ok
                })
                .await
                .unwrap()
                .unwrap();
        }
    }
    assert!(got.iter().all(|g| *g), "delivered at {got:?}");
    cluster.abort_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_agents_fetch_a_payload_larger_than_a_frame_on_streams() {
    every_node_gets_a_payload(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_agents_fetch_a_payload_larger_than_a_frame_in_pieces() {
    every_node_gets_a_payload(TransportKind::Udp).await;
}
