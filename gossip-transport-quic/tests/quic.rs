//! The QUIC transport on real loopback sockets.

use std::time::{Duration, SystemTime};

use gossip_transport::{Incoming, Transport, TransportError};
use gossip_transport_quic::{
    ClusterCa, Identity, IdentityError, QuicConfig, QuicTransport, Validity, MAX_VALID_DAYS,
};

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

/// Days as a `Duration`, for certificate validity windows.
fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

fn loopback_identity_valid(
    ca: &ClusterCa,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Identity {
    ca.issue_with_validity(
        &["127.0.0.1".parse().unwrap()],
        &[],
        Validity {
            not_before,
            not_after,
        },
    )
    .unwrap()
}

/// Whether `from` reaches `to` (a frame arrives) within a few seconds.
async fn reaches(from: &QuicTransport, to: &QuicTransport) -> bool {
    from.send(to.local_addr(), b"hello").await.unwrap();
    loop {
        match next(to, Duration::from_millis(1500)).await {
            Some(Incoming::Frame { from: sender, .. }) => {
                assert_eq!(sender, from.local_addr());
                return true;
            }
            None => return false,
            Some(_) => continue,
        }
    }
}

/// Waits until `transport` reports `peer` unreachable.
async fn reports_unreachable(transport: &QuicTransport, peer: std::net::SocketAddr) -> bool {
    for _ in 0..10 {
        match next(transport, Duration::from_secs(3)).await {
            Some(Incoming::Unreachable(p)) if p == peer => return true,
            Some(Incoming::Frame { from, .. }) if from == peer => return false,
            None => return false,
            _ => {}
        }
    }
    false
}

/// An expired certificate, or one not valid yet, is refused by the server
/// it dials and by the client dialling it.
async fn refused_both_ways(not_before: SystemTime, not_after: SystemTime) {
    let ca = ClusterCa::generate().unwrap();
    let member = endpoint(loopback_identity(&ca), QuicConfig::default()).await;
    let stale = endpoint(
        loopback_identity_valid(&ca, not_before, not_after),
        QuicConfig::default(),
    )
    .await;
    // The stale node dials: the member's server side refuses its certificate.
    assert!(
        !reaches(&stale, &member).await,
        "the member took a frame from a bad certificate"
    );
    assert_eq!(member.connection_count(), 0);
    // The member dials: its client side refuses the stale server's certificate.
    member.send(stale.local_addr(), b"hello?").await.unwrap();
    assert!(reports_unreachable(&member, stale.local_addr()).await);
    assert!(next(&stale, Duration::from_millis(300)).await.is_none());
    assert_eq!(member.connection_count(), 0);
}

#[tokio::test]
async fn an_expired_certificate_is_refused_both_ways() {
    let now = SystemTime::now();
    refused_both_ways(now - days(30), now - days(1)).await;
}

#[tokio::test]
async fn a_certificate_not_valid_yet_is_refused_both_ways() {
    let now = SystemTime::now();
    refused_both_ways(now + days(1), now + days(30)).await;
}

#[tokio::test]
async fn a_certificate_within_its_validity_is_accepted_both_ways() {
    let ca = ClusterCa::generate().unwrap();
    let now = SystemTime::now();
    let a = endpoint(
        loopback_identity_valid(&ca, now - days(1), now + days(1)),
        QuicConfig::default(),
    )
    .await;
    let b = endpoint(
        ca.issue_with_validity(
            &["127.0.0.1".parse().unwrap()],
            &[],
            Validity::days_from_now(1).unwrap(),
        )
        .unwrap(),
        QuicConfig::default(),
    )
    .await;
    assert!(reaches(&a, &b).await);
    assert!(reaches(&b, &a).await);
}

#[tokio::test]
async fn validity_periods_outside_what_x509_can_say_are_refused_at_issue() {
    let ca = ClusterCa::generate().unwrap();
    let now = SystemTime::now();
    let ip = ["127.0.0.1".parse().unwrap()];
    let issue = |not_before, not_after| {
        ca.issue_with_validity(
            &ip,
            &[],
            Validity {
                not_before,
                not_after,
            },
        )
    };
    for (not_before, not_after) in [
        (now, now),
        (now + days(1), now),
        (SystemTime::UNIX_EPOCH - days(1), now),
        (now, now + days(3_000_000)),
    ] {
        assert!(matches!(
            issue(not_before, not_after),
            Err(IdentityError::Validity(_))
        ));
    }
    assert!(Validity::days_from_now(0).is_err());
    assert!(Validity::days_from_now(MAX_VALID_DAYS + 1).is_err());
    assert!(Validity::days_from_now(MAX_VALID_DAYS).is_ok());
}

#[tokio::test]
async fn connections_from_one_ip_beyond_the_cap_are_refused_until_one_ends() {
    let ca = ClusterCa::generate().unwrap();
    let server = endpoint(
        loopback_identity(&ca),
        QuicConfig {
            max_connections_per_ip: 2,
            ..QuicConfig::default()
        },
    )
    .await;
    // Every client is on 127.0.0.1: one IP, three nodes.
    let first = endpoint(loopback_identity(&ca), QuicConfig::default()).await;
    let second = endpoint(loopback_identity(&ca), QuicConfig::default()).await;
    let third = endpoint(loopback_identity(&ca), QuicConfig::default()).await;
    assert!(reaches(&first, &server).await);
    assert!(reaches(&second, &server).await);
    third
        .send(server.local_addr(), b"one too many")
        .await
        .unwrap();
    assert!(reports_unreachable(&third, server.local_addr()).await);
    assert_eq!(server.connection_count(), 2);
    // The refusal came after a Retry, so it names a proven address.
    assert!(server.retries_sent() >= 1);
    // When one of the two leaves, its slot is free again.
    first.close().await;
    drop(first);
    let mut admitted = false;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        if reaches(&third, &server).await {
            admitted = true;
            break;
        }
    }
    assert!(admitted, "a freed slot is given to the next connection");
}

#[tokio::test]
async fn above_the_handshake_threshold_new_peers_prove_their_address_first() {
    let ca = ClusterCa::generate().unwrap();
    // Threshold 0: every new peer is asked for a Retry.
    let server = endpoint(
        loopback_identity(&ca),
        QuicConfig {
            retry_above_handshakes: 0,
            ..QuicConfig::default()
        },
    )
    .await;
    let client = endpoint(loopback_identity(&ca), QuicConfig::default()).await;
    assert!(
        reaches(&client, &server).await,
        "a Retry costs a round trip, not the connection"
    );
    assert_eq!(server.retries_sent(), 1);
    // Under the default threshold an idle node asks nobody.
    let relaxed = endpoint(loopback_identity(&ca), QuicConfig::default()).await;
    assert!(reaches(&client, &relaxed).await);
    assert_eq!(relaxed.retries_sent(), 0);
}

#[tokio::test]
async fn settings_without_room_for_a_connection_or_a_stream_are_refused_at_bind() {
    let ca = ClusterCa::generate().unwrap();
    for config in [
        QuicConfig {
            max_uni_streams: 0,
            ..QuicConfig::default()
        },
        QuicConfig {
            max_connections_per_ip: 0,
            ..QuicConfig::default()
        },
    ] {
        assert!(QuicTransport::bind(
            "127.0.0.1:0".parse().unwrap(),
            loopback_identity(&ca),
            config
        )
        .await
        .is_err());
    }
}

#[tokio::test]
async fn a_live_connection_ends_when_the_peer_certificate_expires_and_no_resumed_handshake_lets_it_back(
) {
    let ca = ClusterCa::generate().unwrap();
    let now = SystemTime::now();
    // Valid for two more seconds only (X.509 keeps whole seconds).
    let short = endpoint(
        loopback_identity_valid(&ca, now - days(1), now + Duration::from_secs(2)),
        QuicConfig::default(),
    )
    .await;
    let member = endpoint(
        loopback_identity(&ca),
        QuicConfig {
            certificate_recheck: Duration::from_millis(200),
            ..QuicConfig::default()
        },
    )
    .await;
    assert!(reaches(&short, &member).await, "accepted while valid");
    assert_eq!(member.connection_count(), 1);
    // Traffic keeps the connection busy, yet it ends once the certificate
    // has expired.
    let mut ended = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        short
            .send(member.local_addr(), b"still here")
            .await
            .unwrap();
        if member.connection_count() == 0 {
            ended = true;
            break;
        }
    }
    assert!(
        ended,
        "the member still holds a connection to an expired peer"
    );
    // And no new handshake lets it back in.
    while next(&member, Duration::from_millis(100)).await.is_some() {}
    assert!(!reaches(&short, &member).await);
}
