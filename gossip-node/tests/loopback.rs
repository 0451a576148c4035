//! Agents on real loopback sockets, over UDP and QUIC: join, a broadcast
//! delivered to all, a crash detected, a leave seen; and the same over UDP
//! through the fault-injecting wrapper.

use std::time::Duration;

use gossip_agent::testing::Faults;
use gossip_node::cluster::{ClusterSpec, LocalCluster, TransportKind};
use gossip_node::run_agent::config_for;
use gossip_strategies::{AnyStrategy, RumorMongering};

const N: usize = 6;

async fn scenario(transport: TransportKind, faults: Option<Faults>) {
    let spec = ClusterSpec {
        nodes: N,
        transport,
        // 300 ms probes: quick, yet a busy 2-core machine answers in time.
        config: config_for(N, Duration::from_millis(300), transport),
        strategy: AnyStrategy::Rumor(RumorMongering::default()),
        seed: 7,
        bind: "127.0.0.1:0".parse().unwrap(),
        faults,
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

    let id = cluster.agents[2]
        .broadcast(b"hello".to_vec())
        .await
        .unwrap();
    assert!(
        cluster
            .wait_until(&cluster.others(&[2]), Duration::from_secs(20), |o| o
                .delivered
                .contains_key(&id))
            .await,
        "the broadcast reaches every other node"
    );

    let crashed = cluster.agents[4].id();
    let killed = tokio::time::Instant::now();
    cluster.agents[4].abort();
    cluster.agents[4].wait().await;
    assert!(
        cluster
            .wait_until(&cluster.others(&[4]), Duration::from_secs(30), |o| o
                .dead_since(crashed, killed)
                .is_some())
            .await,
        "the crash is detected by all"
    );

    let leaving = cluster.agents[5].id();
    let left_at = tokio::time::Instant::now();
    cluster.agents[5].shutdown().await.unwrap();
    assert!(
        cluster
            .wait_until(&cluster.others(&[4, 5]), Duration::from_secs(20), |o| o
                .left
                .contains(&leaving))
            .await,
        "the leave is seen by all"
    );
    let everyone_left = cluster.others(&[4, 5]);
    for &i in &everyone_left {
        let seen = cluster.observed[i].lock().unwrap();
        assert!(
            seen.dead_since(leaving, left_at).is_none(),
            "node {i} took the leave for a death"
        );
        // The origin does not deliver its own broadcast to itself.
        let expected = u64::from(i != 2);
        assert_eq!(seen.deliveries, expected, "node {i} delivered exactly once");
    }
    cluster.abort_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_cluster_joins_broadcasts_detects_a_crash_and_sees_a_leave() {
    scenario(TransportKind::Udp, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_cluster_joins_broadcasts_detects_a_crash_and_sees_a_leave() {
    scenario(TransportKind::Quic, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_cluster_does_the_same_through_loss_duplication_and_delay() {
    scenario(
        TransportKind::Udp,
        Some(Faults {
            loss: 0.05,
            duplicate: 0.05,
            delay: Duration::from_millis(2),
            jitter: Duration::from_millis(10),
        }),
    )
    .await;
}
