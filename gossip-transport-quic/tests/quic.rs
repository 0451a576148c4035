//! The QUIC transport on real loopback sockets.

use std::time::Duration;

use gossip_transport::{Incoming, Transport, TransportError};
use gossip_transport_quic::{ClusterCa, Identity, QuicConfig, QuicTransport};

fn loopback_identity(ca: &ClusterCa) -> Identity {
    ca.issue(&["127.0.0.1".parse().unwrap()], &[]).unwrap()
}

async fn endpoint(identity: Identity, config: QuicConfig) -> QuicTransport {
    QuicTransport::bind("127.0.0.1:0".parse().unwrap(), identity, config)
        .await
        .unwrap()
}

async fn next(transport: &QuicTransport, within: Duration) -> Option<Incoming> {
    tokio::time::timeout(within, transport.recv())
        .await
        .ok()
        .map(|r| r.expect("recv"))
}

#[tokio::test]
async fn small_frames_go_as_datagrams_and_large_ones_on_streams_both_ways() {
    let ca = ClusterCa::generate().unwrap();
    let a = endpoint(loopback_identity(&ca), QuicConfig::default()).await;
    let b = endpoint(loopback_identity(&ca), QuicConfig::default()).await;
    let small = vec![1u8; 200];
    let large = vec![2u8; 20_000];
    a.send(b.local_addr(), &small).await.unwrap();
    a.send(b.local_addr(), &large).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        match next(&b, Duration::from_secs(5))
            .await
            .expect("frames arrive")
        {
            Incoming::Frame { from, bytes } => {
                assert_eq!(from, a.local_addr());
                got.push(bytes);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    got.sort_by_key(Vec::len);
    assert_eq!(got, vec![small.clone(), large]);
    // B answers over the connection A opened: still one connection each.
    b.send(a.local_addr(), &small).await.unwrap();
    assert!(matches!(
        next(&a, Duration::from_secs(5)).await,
        Some(Incoming::Frame { from, .. }) if from == b.local_addr()
    ));
    assert_eq!(a.connection_count(), 1);
    assert_eq!(b.connection_count(), 1);
    assert!(a.stats().bytes_sent > 20_000, "stream bytes are counted");
}

#[tokio::test]
async fn frames_over_the_limit_are_refused() {
    let ca = ClusterCa::generate().unwrap();
    let config = QuicConfig {
        max_frame_len: 1000,
        ..QuicConfig::default()
    };
    let a = endpoint(loopback_identity(&ca), config).await;
    let error = a
        .send("127.0.0.1:9".parse().unwrap(), &[0u8; 1001])
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        TransportError::TooLarge {
            len: 1001,
            max: 1000
        }
    ));
}

#[tokio::test]
async fn a_peer_outside_the_cluster_root_is_refused_both_ways() {
    let cluster = ClusterCa::generate().unwrap();
    let stranger_root = ClusterCa::generate().unwrap();
    let member = endpoint(loopback_identity(&cluster), QuicConfig::default()).await;
    let stranger = endpoint(loopback_identity(&stranger_root), QuicConfig::default()).await;

    // The stranger's frames never reach the member...
    stranger
        .send(member.local_addr(), b"let me in")
        .await
        .unwrap();
    match next(&member, Duration::from_millis(1500)).await {
        None => {}
        Some(Incoming::Unreachable(_)) => {}
        Some(frame) => panic!("a stranger's frame got through: {frame:?}"),
    }
    // ...and the member dialling the stranger fails the handshake and
    // reports it unreachable.
    member.send(stranger.local_addr(), b"hello?").await.unwrap();
    let mut reported = false;
    for _ in 0..10 {
        match next(&member, Duration::from_secs(3)).await {
            Some(Incoming::Unreachable(peer)) if peer == stranger.local_addr() => {
                reported = true;
                break;
            }
            Some(Incoming::Frame { .. }) => panic!("no frame can arrive from a stranger"),
            _ => {}
        }
    }
    assert!(reported, "the failed handshake is reported");
    assert_eq!(member.connection_count(), 0);
}

#[tokio::test]
async fn a_certificate_for_another_address_is_refused() {
    let ca = ClusterCa::generate().unwrap();
    let a = endpoint(loopback_identity(&ca), QuicConfig::default()).await;
    // B's certificate names 10.9.9.9, not the loopback address A dials.
    let b = endpoint(
        ca.issue(&["10.9.9.9".parse().unwrap()], &[]).unwrap(),
        QuicConfig::default(),
    )
    .await;
    a.send(b.local_addr(), b"x").await.unwrap();
    assert!(matches!(
        next(&a, Duration::from_secs(5)).await,
        Some(Incoming::Unreachable(peer)) if peer == b.local_addr()
    ));
    assert!(next(&b, Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn a_dead_peer_is_reported_unreachable() {
    let ca = ClusterCa::generate().unwrap();
    let config = QuicConfig {
        connect_timeout: Duration::from_millis(500),
        ..QuicConfig::default()
    };
    let a = endpoint(loopback_identity(&ca), config).await;
    // Nothing listens here.
    let nobody = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = nobody.local_addr().unwrap();
    drop(nobody);
    a.send(dead, b"anyone?").await.unwrap();
    assert_eq!(
        next(&a, Duration::from_secs(5)).await,
        Some(Incoming::Unreachable(dead))
    );
    assert!(a.stats().frames_dropped >= 1);
}

#[tokio::test]
async fn frames_to_more_peers_than_the_limit_are_dropped_and_counted() {
    let ca = ClusterCa::generate().unwrap();
    let config = QuicConfig {
        max_connections: 2,
        connect_timeout: Duration::from_millis(200),
        ..QuicConfig::default()
    };
    let a = endpoint(loopback_identity(&ca), config).await;
    for port in 1..=5u16 {
        let to = std::net::SocketAddr::from(([127, 0, 0, 1], 40_000 + port));
        a.send(to, b"x").await.unwrap();
    }
    // Two peers get a queue; the three others' frames are dropped at once.
    assert_eq!(a.peer_queue_count(), 2);
    assert!(a.stats().frames_dropped >= 3);
}

#[tokio::test]
async fn a_dialler_whose_certificate_is_not_under_the_root_is_refused_by_the_server() {
    let cluster = ClusterCa::generate().unwrap();
    let foreign = ClusterCa::generate().unwrap();
    let member = endpoint(loopback_identity(&cluster), QuicConfig::default()).await;
    // The stranger trusts the cluster root, so it accepts the member's
    // certificate; only the member's check of the stranger's own
    // certificate can keep it out.
    let mut stranger_identity = loopback_identity(&foreign);
    stranger_identity.trust_root = cluster.certificate().clone();
    let stranger = endpoint(stranger_identity, QuicConfig::default()).await;
    stranger
        .send(member.local_addr(), b"let me in")
        .await
        .unwrap();
    assert!(
        next(&member, Duration::from_millis(1500)).await.is_none(),
        "nothing from the stranger reaches the member"
    );
    assert_eq!(member.connection_count(), 0);
}

#[tokio::test]
async fn a_dialler_whose_certificate_names_another_address_is_refused_by_the_server() {
    let ca = ClusterCa::generate().unwrap();
    let member = endpoint(loopback_identity(&ca), QuicConfig::default()).await;
    // Under the right root, but issued for 10.9.9.9 while dialling from
    // 127.0.0.1.
    let elsewhere = endpoint(
        ca.issue(&["10.9.9.9".parse().unwrap()], &[]).unwrap(),
        QuicConfig::default(),
    )
    .await;
    elsewhere.send(member.local_addr(), b"x").await.unwrap();
    match next(&member, Duration::from_millis(1500)).await {
        None => {}
        Some(Incoming::Unreachable(_)) => {}
        Some(frame) => panic!("a frame got through: {frame:?}"),
    }
    assert_eq!(member.connection_count(), 0);
}

#[tokio::test]
async fn close_sends_what_is_queued_before_shutting_down() {
    let ca = ClusterCa::generate().unwrap();
    let a = endpoint(loopback_identity(&ca), QuicConfig::default()).await;
    let b = endpoint(loopback_identity(&ca), QuicConfig::default()).await;
    // The first frame still waits for the handshake when close is called.
    a.send(b.local_addr(), b"farewell").await.unwrap();
    a.close().await;
    assert!(matches!(
        next(&b, Duration::from_secs(5)).await,
        Some(Incoming::Frame { bytes, .. }) if bytes == b"farewell"
    ));
}
