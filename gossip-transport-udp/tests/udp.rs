//! The UDP transport on real loopback sockets.

use std::net::SocketAddr;
use std::time::Duration;

use gossip_transport::{Incoming, Transport, TransportError};
use gossip_transport_udp::UdpTransport;

async fn recv_frame(transport: &UdpTransport) -> (SocketAddr, Vec<u8>) {
    match tokio::time::timeout(Duration::from_secs(5), transport.recv())
        .await
        .expect("a frame within 5 s")
        .expect("recv")
    {
        Incoming::Frame { from, bytes } => (from, bytes),
        other => panic!("unexpected {other:?}"),
    }
}

async fn round_trip(bind: &str) {
    let a = UdpTransport::bind(bind.parse().unwrap(), 1400)
        .await
        .unwrap();
    let b = UdpTransport::bind(bind.parse().unwrap(), 1400)
        .await
        .unwrap();
    a.send(b.local_addr(), b"hello").await.unwrap();
    let (from, bytes) = recv_frame(&b).await;
    assert_eq!(from, a.local_addr());
    assert_eq!(bytes, b"hello");
    assert_eq!(a.stats().packets_sent, 1);
    assert_eq!(a.stats().bytes_sent, 5);
    assert_eq!(b.stats().packets_received, 1);
}

#[tokio::test]
async fn frames_cross_ipv4_loopback() {
    round_trip("127.0.0.1:0").await;
}

#[tokio::test]
async fn frames_cross_ipv6_loopback() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: this machine has no IPv6 loopback");
        return;
    }
    round_trip("[::1]:0").await;
}

#[tokio::test]
async fn frames_over_budget_are_refused_on_send_and_dropped_on_receive() {
    let small = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), 100)
        .await
        .unwrap();
    let big = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), 1000)
        .await
        .unwrap();
    let error = small
        .send(big.local_addr(), &[0u8; 101])
        .await
        .expect_err("over budget");
    assert!(matches!(
        error,
        TransportError::TooLarge { len: 101, max: 100 }
    ));
    // A peer with a larger budget sends a datagram `small` must not accept;
    // the next, valid one still arrives.
    big.send(small.local_addr(), &[7u8; 500]).await.unwrap();
    big.send(small.local_addr(), &[9u8; 100]).await.unwrap();
    let (_, bytes) = recv_frame(&small).await;
    assert_eq!(bytes, vec![9u8; 100]);
    assert_eq!(small.stats().frames_dropped, 2, "one refused, one dropped");
}

#[tokio::test]
async fn a_budget_outside_udp_limits_is_refused() {
    for budget in [0, 70_000] {
        assert!(matches!(
            UdpTransport::bind("127.0.0.1:0".parse().unwrap(), budget).await,
            Err(TransportError::TooLarge { .. })
        ));
    }
}

#[tokio::test]
async fn recv_is_cancellation_safe() {
    let a = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), 1400)
        .await
        .unwrap();
    let b = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), 1400)
        .await
        .unwrap();
    // Race each receive against a timer that often wins first, dropping the
    // receive future part-way; every frame must still arrive once, in order.
    let mut got = Vec::new();
    for i in 0..50u8 {
        a.send(b.local_addr(), &[i]).await.unwrap();
        tokio::select! {
            received = b.recv() => match received.unwrap() {
                Incoming::Frame { bytes, .. } => got.extend(bytes),
                other => panic!("unexpected {other:?}"),
            },
            () = tokio::task::yield_now() => {}
        }
    }
    while got.len() < 50 {
        let (_, bytes) = recv_frame(&b).await;
        got.extend(bytes);
    }
    assert_eq!(got, (0..50u8).collect::<Vec<_>>());
}

#[tokio::test]
async fn sending_to_the_other_address_family_is_refused() {
    let a = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), 1400)
        .await
        .unwrap();
    let error = a.send("[::1]:9".parse().unwrap(), b"x").await.unwrap_err();
    assert!(matches!(error, TransportError::Unsupported(_)));
}
