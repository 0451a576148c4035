//! `Node::contact`: a running node asks more addresses to admit it, one
//! join request each; refused before `join` and after `leave`.

use crate::common::base_instant;
use std::net::SocketAddr;
use std::time::Duration;

use gossip_core::wire::{self, Message};
use gossip_core::{CommandError, Config, Generation, Liveness, Node, NodeId};

fn node(port: u16) -> Node {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    Node::new(
        Config::default(),
        NodeId::new(addr),
        Generation(1),
        u64::from(port),
    )
    .unwrap()
}

fn drain(node: &mut Node) -> Vec<(SocketAddr, Message)> {
    let config = node.config().clone();
    std::iter::from_fn(|| node.poll_transmit())
        .map(|t| (t.to, wire::decode(&config, &t.bytes).unwrap().1))
        .collect()
}

#[test]
fn contact_sends_one_join_per_address_and_merges_two_founded_nodes() {
    let now = base_instant();
    let (mut a, mut b) = (node(7001), node(7002));
    assert_eq!(
        a.contact(now, &[b.id().addr()]),
        Err(CommandError::NotStarted)
    );
    a.join(now, &[]).unwrap();
    b.join(now, &[]).unwrap();
    drain(&mut a);
    drain(&mut b);

    // Its own address is skipped; each other address gets one join.
    let third: SocketAddr = "127.0.0.1:7003".parse().unwrap();
    a.contact(now, &[b.id().addr(), a.id().addr(), third])
        .unwrap();
    let sent = drain(&mut a);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        sent.iter()
            .all(|(to, m)| matches!(m, Message::Join { .. })
                && (*to == b.id().addr() || *to == third))
    );

    // b challenges a's address, a answers, b admits a and answers the join
    // with its view, from which a learns b (a challenges b in turn): the
    // two founded clusters start to merge.
    a.contact(now, &[b.id().addr()]).unwrap();
    let mut at = now;
    for _ in 0..20 {
        at += Duration::from_millis(1);
        let from_a: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
        let from_b: Vec<_> = std::iter::from_fn(|| b.poll_transmit()).collect();
        if from_a.is_empty() && from_b.is_empty() {
            break;
        }
        let (a_addr, b_addr) = (a.id().addr(), b.id().addr());
        for t in from_a.iter().filter(|t| t.to == b_addr) {
            b.handle_message(at, a_addr, &t.bytes).unwrap();
        }
        for t in from_b.iter().filter(|t| t.to == a_addr) {
            a.handle_message(at, b_addr, &t.bytes).unwrap();
        }
    }
    let later = at;
    assert!(
        a.members()
            .any(|m| m.id == b.id() && m.liveness == Liveness::Alive),
        "a learned b from its answer"
    );

    a.leave(later).unwrap();
    assert_eq!(a.contact(later, &[third]), Err(CommandError::Departed));
}
