//! The partial-view overlay (`gossip_core::partial`): views form and
//! repair, broadcasts reach everyone, and lying peers are refused.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gossip_core::partial::{
    NeighbourDownReason, PartialConfig, PartialDecodeError, PartialEvent, PartialMessage,
    PartialNode,
};
use gossip_core::NodeId;
use proptest::prelude::*;

fn addr(i: usize) -> NodeId {
    NodeId::from(SocketAddr::from((
        [10, 0, (i / 250) as u8, (i % 250) as u8 + 1],
        7000,
    )))
}

fn index(id: NodeId) -> Option<usize> {
    match id.addr() {
        SocketAddr::V4(a) if a.port() == 7000 => {
            let o = a.ip().octets();
            Some(o[2] as usize * 250 + o[3] as usize - 1)
        }
        _ => None,
    }
}

#[allow(clippy::disallowed_methods)] // the test host, not the core, reads the clock once
fn start() -> Instant {
    Instant::now()
}

/// A tiny network: every frame takes 1 ms; `down` nodes drop what reaches
/// them.
struct Net {
    nodes: Vec<PartialNode>,
    down: Vec<bool>,
    now: Instant,
    queue: VecDeque<(Instant, usize, usize, Vec<u8>)>,
    delivered: Vec<Vec<[u8; 8]>>,
}

impl Net {
    fn new(n: usize, config: &PartialConfig) -> Self {
        let now = start();
        let nodes: Vec<PartialNode> = (0..n)
            .map(|i| PartialNode::new(addr(i), config.clone(), 1000 + i as u64, now).unwrap())
            .collect();
        let mut net = Self {
            nodes,
            down: vec![false; n],
            now,
            queue: VecDeque::new(),
            delivered: vec![Vec::new(); n],
        };
        for i in 1..n {
            net.nodes[i].join(now, &[addr(i / 2)]);
            net.collect(i);
        }
        net
    }

    fn collect(&mut self, i: usize) {
        while let Some((to, bytes)) = self.nodes[i].poll_transmit() {
            if let Some(j) = index(to) {
                self.queue
                    .push_back((self.now + Duration::from_millis(1), i, j, bytes));
            }
        }
        while let Some(event) = self.nodes[i].poll_event() {
            if let PartialEvent::Delivered { id, .. } = event {
                self.delivered[i].push(id);
            }
        }
    }

    /// Runs for `d` in 1 ms steps.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(1);
            while self.queue.front().is_some_and(|f| f.0 <= self.now) {
                let (_, from, to, bytes) = self.queue.pop_front().unwrap();
                if self.down[to] {
                    continue;
                }
                self.nodes[to]
                    .handle_frame(self.now, addr(from), &bytes)
                    .unwrap();
                self.collect(to);
            }
            for i in 0..self.nodes.len() {
                if !self.down[i] && self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now) {
                    self.nodes[i].handle_timeout(self.now);
                    self.collect(i);
                }
            }
        }
    }

    fn up(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|i| !self.down[*i])
    }
}

#[test]
fn views_form_broadcasts_reach_everyone_along_a_tree_and_runs_replay() {
    let run = || {
        let mut net = Net::new(60, &PartialConfig::default());
        net.run(Duration::from_secs(15));
        for i in 0..60 {
            let active = net.nodes[i].active().count();
            assert!(
                (2..=5).contains(&active),
                "node {i} has {active} neighbours"
            );
            // Links are symmetric.
            for peer in net.nodes[i].active() {
                let j = index(peer).unwrap();
                assert!(
                    net.nodes[j].active().any(|p| p == addr(i)),
                    "{i} -> {j} one-way"
                );
            }
        }
        // Warm the tree, then count payload pushes of ten broadcasts.
        for k in 0..5 {
            net.nodes[k].broadcast(net.now, b"warm").unwrap();
            net.collect(k);
            net.run(Duration::from_millis(500));
        }
        let before: u64 = net.nodes.iter().map(|n| n.stats().gossip_sent).sum();
        let mut ids = Vec::new();
        for k in 0..10 {
            ids.push(net.nodes[k * 5].broadcast(net.now, b"payload").unwrap());
            net.collect(k * 5);
            net.run(Duration::from_millis(500));
        }
        for (i, got) in net.delivered.iter().enumerate() {
            for (k, id) in ids.iter().enumerate() {
                assert!(
                    got.contains(id) || i == k * 5,
                    "node {i} missed broadcast {k}"
                );
            }
        }
        let sent: u64 = net.nodes.iter().map(|n| n.stats().gossip_sent).sum::<u64>() - before;
        let per_node = sent as f64 / 10.0 / 60.0;
        assert!(
            per_node < 1.3,
            "{per_node} payload copies per node per broadcast"
        );
        net.nodes
            .iter()
            .map(|n| n.stats().clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run(), "same seeds, same inputs: same run");
}

#[test]
fn a_crashed_neighbour_is_replaced_and_broadcasts_reach_the_survivors() {
    let mut net = Net::new(60, &PartialConfig::default());
    // Long enough for a few shuffles to fill the passive views.
    net.run(Duration::from_secs(40));
    for i in (0..60).step_by(3) {
        net.down[i] = true;
    }
    net.run(Duration::from_secs(8));
    for i in net.up().collect::<Vec<_>>() {
        let active: Vec<NodeId> = net.nodes[i].active().collect();
        assert!(
            !active.is_empty(),
            "node {i} isolated; passive {:?}",
            net.nodes[i].passive()
        );
        for peer in active {
            assert!(
                !net.down[index(peer).unwrap()],
                "node {i} still links to a crashed node"
            );
        }
    }
    let id = net.nodes[1].broadcast(net.now, b"after").unwrap();
    net.collect(1);
    net.run(Duration::from_secs(2));
    for i in net.up().filter(|i| *i != 1).collect::<Vec<_>>() {
        assert!(net.delivered[i].contains(&id), "survivor {i} missed it");
    }
}

/// One node with neighbours 1 and 2; node 9 is a stranger.
fn node_with_two_neighbours() -> (PartialNode, Instant) {
    let now = start();
    let mut node = PartialNode::new(addr(0), PartialConfig::default(), 7, now).unwrap();
    for i in [1, 2] {
        node.handle_frame(now, addr(i), &PartialMessage::Join.encode(""))
            .unwrap();
    }
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
    assert_eq!(node.active().count(), 2);
    (node, now)
}

/// The events a node queued, drained.
fn events(node: &mut PartialNode) -> Vec<PartialEvent> {
    std::iter::from_fn(|| node.poll_event()).collect()
}

/// A neighbour that stops answering is dropped as `Silent` (the overlay's
/// failure detection) after `dead_after`, not before; one that says it
/// disconnects is dropped as `Disconnected`.
#[test]
fn a_silent_neighbour_is_reported_dead_and_a_disconnect_is_not() {
    let (mut node, now) = node_with_two_neighbours();
    let config = PartialConfig::default();
    // Neighbour 2 keeps talking; neighbour 1 says nothing.
    let mut t = now;
    while t < now + config.dead_after - Duration::from_millis(300) {
        t += Duration::from_millis(250);
        node.handle_frame(t, addr(2), &PartialMessage::Pong.encode(""))
            .unwrap();
        node.handle_timeout(t);
    }
    assert!(!events(&mut node)
        .iter()
        .any(|e| matches!(e, PartialEvent::NeighbourDown { .. })));
    // It was pinged meanwhile.
    let pings: Vec<NodeId> = std::iter::from_fn(|| node.poll_transmit())
        .filter(|(_, f)| *f == PartialMessage::Ping.encode(""))
        .map(|(to, _)| to)
        .collect();
    assert!(pings.contains(&addr(1)) && !pings.contains(&addr(2)));
    t = now + config.dead_after;
    node.handle_frame(t, addr(2), &PartialMessage::Pong.encode(""))
        .unwrap();
    node.handle_timeout(t);
    assert_eq!(
        events(&mut node),
        vec![PartialEvent::NeighbourDown {
            id: addr(1),
            reason: NeighbourDownReason::Silent
        }]
    );
    assert!(!node.passive().contains(&addr(1)));
    node.handle_frame(t, addr(2), &PartialMessage::Disconnect.encode(""))
        .unwrap();
    assert!(events(&mut node).contains(&PartialEvent::NeighbourDown {
        id: addr(2),
        reason: NeighbourDownReason::Disconnected
    }));
    assert_eq!(node.active().count(), 0);
}

/// A leaving node tells each neighbour, empties its views and is silent
/// from then on, whatever reaches it.
#[test]
fn a_leaving_node_disconnects_its_neighbours_and_falls_silent() {
    let (mut node, now) = node_with_two_neighbours();
    node.leave();
    let sent: Vec<(NodeId, Vec<u8>)> = std::iter::from_fn(|| node.poll_transmit()).collect();
    let disconnect = PartialMessage::Disconnect.encode("");
    assert_eq!(
        sent,
        vec![(addr(1), disconnect.clone()), (addr(2), disconnect)]
    );
    let downs = events(&mut node);
    assert_eq!(downs.len(), 2);
    assert!(downs.iter().all(|e| matches!(
        e,
        PartialEvent::NeighbourDown {
            reason: NeighbourDownReason::Left,
            ..
        }
    )));
    assert!(node.has_left() && node.poll_timeout().is_none());
    // A join, a rejoin attempt and timers change nothing.
    node.handle_frame(now, addr(3), &PartialMessage::Join.encode(""))
        .unwrap();
    node.join(now, &[addr(4)]);
    node.handle_timeout(now + Duration::from_secs(60));
    assert_eq!(node.active().count(), 0);
    assert!(node.poll_transmit().is_none() && node.poll_event().is_none());
}

#[test]
fn a_stranger_cannot_push_payloads_walks_shuffles_or_grafts() {
    let (mut node, now) = node_with_two_neighbours();
    let stranger = addr(9);
    let refused = |node: &PartialNode| node.stats().refused;
    let start = refused(&node);
    let forged = [
        PartialMessage::Gossip {
            id: [1; 8],
            hops: 0,
            payload: b"forged".to_vec(),
        },
        PartialMessage::IHave { ids: vec![[2; 8]] },
        PartialMessage::Graft { ids: vec![[3; 8]] },
        PartialMessage::ForwardJoin {
            joiner: addr(50),
            ttl: 0,
        },
        PartialMessage::Shuffle {
            origin: stranger,
            ttl: 0,
            nonce: 1,
            sample: vec![addr(51)],
        },
        PartialMessage::ShuffleReply {
            nonce: 1,
            sample: vec![addr(52)],
        },
        PartialMessage::NeighbourReply { accepted: true },
        PartialMessage::Disconnect,
        PartialMessage::Prune,
    ];
    for m in &forged {
        node.handle_frame(now, stranger, &m.encode("")).unwrap();
    }
    assert_eq!(refused(&node) - start, forged.len() as u64);
    assert!(
        node.poll_event().is_none(),
        "nothing delivered, no neighbour change"
    );
    assert!(node.poll_transmit().is_none(), "nothing sent");
    assert_eq!(node.missing(), 0);
    let active: Vec<NodeId> = node.active().collect();
    assert_eq!(active, vec![addr(1), addr(2)]);
    assert!(node.passive().is_empty(), "no address injected");
}

#[test]
fn a_strangers_accept_fills_only_free_room_and_joins_are_rate_limited() {
    let config = PartialConfig::default();
    let (mut node, now) = node_with_two_neighbours();
    // Accepts from strangers fill the three free slots, never more.
    for i in 10..20 {
        node.handle_frame(now, addr(i), &PartialMessage::JoinAccept.encode(""))
            .unwrap();
    }
    assert_eq!(node.active().count(), config.active_size);
    assert!(node.active().any(|p| p == addr(1)) && node.active().any(|p| p == addr(2)));
    // A flood of joins from many addresses in one instant: at most the
    // bucket's burst of them changes the view.
    let mut ups = 0;
    while node.poll_event().is_some() {}
    for i in 100..1100 {
        node.handle_frame(now, addr(i), &PartialMessage::Join.encode(""))
            .unwrap();
        while let Some(e) = node.poll_event() {
            ups += usize::from(matches!(e, PartialEvent::NeighbourUp(_)));
        }
    }
    assert!(
        ups as f64 <= config.joins_per_s,
        "{ups} joins taken in one instant"
    );
    // Walks the flood started are bounded by the same budget.
    let frames = std::iter::from_fn(|| node.poll_transmit()).count();
    assert!(
        frames <= (ups + 1) * (config.active_size + 2),
        "{frames} frames sent"
    );
}

#[test]
fn grafts_from_a_neighbour_cannot_draw_more_than_its_budget() {
    let config = PartialConfig {
        graft_reply_bytes_per_s: 64 * 1024,
        ..PartialConfig::default()
    };
    let now = start();
    let mut node = PartialNode::new(addr(0), config.clone(), 7, now).unwrap();
    node.handle_frame(now, addr(1), &PartialMessage::Join.encode(""))
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(node.broadcast(now, &[0u8; 1000]).unwrap());
    }
    while node.poll_transmit().is_some() {}
    let mut bytes = 0;
    for _ in 0..50 {
        node.handle_frame(
            now,
            addr(1),
            &PartialMessage::Graft { ids: ids.clone() }.encode(""),
        )
        .unwrap();
        while let Some((_, frame)) = node.poll_transmit() {
            bytes += frame.len();
        }
    }
    assert!(bytes > 0, "a graft is answered");
    assert!(
        bytes <= 64 * 1024,
        "{bytes} bytes answered within one instant"
    );
}

#[test]
fn bad_frames_are_refused_with_a_reason() {
    let config = PartialConfig::default();
    let decode = |b: &[u8]| PartialMessage::decode(b, &config);
    assert_eq!(decode(&[]), Err(PartialDecodeError::Empty));
    assert_eq!(decode(&[0x01, 0]), Err(PartialDecodeError::Version(1)));
    let mut trailing = PartialMessage::Ping.encode("");
    trailing.push(0);
    assert_eq!(decode(&trailing), Err(PartialDecodeError::TrailingBytes(1)));
    let long = vec![0x51; config.max_frame_len + 1];
    assert!(matches!(
        decode(&long),
        Err(PartialDecodeError::TooLong { .. })
    ));
    let many = PartialMessage::IHave {
        ids: vec![[0; 8]; config.max_ids + 1],
    }
    .encode("");
    assert!(matches!(
        PartialMessage::decode(
            &many,
            &PartialConfig {
                max_frame_len: 4096,
                ..config.clone()
            }
        ),
        Err(PartialDecodeError::TooMany { what: "ids", .. })
    ));
    let sample = PartialMessage::ShuffleReply {
        nonce: 0,
        sample: vec![addr(1); config.max_sample() + 1],
    }
    .encode("");
    assert!(matches!(
        decode(&sample),
        Err(PartialDecodeError::TooMany { what: "sample", .. })
    ));
    // An id costs eight bytes on the wire.
    let one = PartialMessage::IHave { ids: vec![[7; 8]] }.encode("").len();
    let hundred = PartialMessage::IHave {
        ids: vec![[7; 8]; 100],
    }
    .encode("")
    .len();
    assert_eq!(hundred - one, 99 * 8);
}

/// A frame of another overlay, even one from an active neighbour's
/// address, is refused before its message is looked at: no delivery, no
/// view change, no answer; it is counted as `wrong_cluster`.
#[test]
fn a_frame_with_another_cluster_label_is_refused_and_counted() {
    let now = start();
    let config = PartialConfig {
        cluster_label: "blue".into(),
        ..PartialConfig::default()
    };
    let mut node = PartialNode::new(addr(0), config.clone(), 7, now).unwrap();
    node.handle_frame(now, addr(1), &PartialMessage::Join.encode("blue"))
        .unwrap();
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
    let forged = [
        PartialMessage::Join,
        PartialMessage::Ping,
        PartialMessage::Disconnect,
        PartialMessage::Gossip {
            id: [1; 8],
            hops: 0,
            payload: b"from the green overlay".to_vec(),
        },
        PartialMessage::Neighbour { urgent: true },
    ];
    for (i, m) in forged.iter().enumerate() {
        // The neighbour's own address and strangers alike; the unlabelled
        // frame of a node started without a label too.
        for label in ["green", "", "blu", "blue!"] {
            let from = if i % 2 == 0 { addr(1) } else { addr(20 + i) };
            assert_eq!(
                node.handle_frame(now, from, &m.encode(label)),
                Err(PartialDecodeError::WrongCluster)
            );
        }
    }
    let refused = (forged.len() * 4) as u64;
    assert_eq!(node.stats().wrong_cluster, refused);
    assert_eq!(node.stats().refused, refused);
    assert!(node.poll_transmit().is_none(), "nothing answered");
    assert!(node.poll_event().is_none(), "nothing delivered or changed");
    assert_eq!(node.active().collect::<Vec<_>>(), vec![addr(1)]);
    // The same frames with this overlay's label are taken.
    node.handle_frame(now, addr(1), &PartialMessage::Ping.encode("blue"))
        .unwrap();
    assert_eq!(
        node.poll_transmit(),
        Some((addr(1), PartialMessage::Pong.encode("blue")))
    );
    // A label that is not UTF-8 is another label, not a panic.
    let mut raw = vec![0x51, 4, 0xff, 0xfe, 0xfd, 0xfc];
    raw.extend_from_slice(&PartialMessage::Ping.encode("")[2..]);
    assert_eq!(
        node.handle_frame(now, addr(1), &raw),
        Err(PartialDecodeError::WrongCluster)
    );
    // A label length beyond the frame is malformed.
    assert_eq!(
        node.handle_frame(now, addr(1), &[0x51, 0x7f, b'b']),
        Err(PartialDecodeError::Malformed)
    );
}

/// Two overlays with different labels on one network never link: their
/// joins and walks are refused both ways.
#[test]
fn two_overlays_with_different_labels_do_not_merge() {
    let now = start();
    let labelled = |label: &str| PartialConfig {
        cluster_label: label.into(),
        ..PartialConfig::default()
    };
    let mut a = PartialNode::new(addr(0), labelled("red"), 1, now).unwrap();
    let mut b = PartialNode::new(addr(1), labelled("black"), 2, now).unwrap();
    b.join(now, &[addr(0)]);
    let mut t = now;
    for _ in 0..50 {
        t += Duration::from_millis(100);
        while let Some((_, frame)) = b.poll_transmit() {
            assert_eq!(
                a.handle_frame(t, addr(1), &frame),
                Err(PartialDecodeError::WrongCluster)
            );
        }
        while let Some((_, frame)) = a.poll_transmit() {
            assert_eq!(
                b.handle_frame(t, addr(0), &frame),
                Err(PartialDecodeError::WrongCluster)
            );
        }
        a.handle_timeout(t);
        b.handle_timeout(t);
    }
    assert!(a.stats().wrong_cluster > 0);
    assert_eq!(a.active().count() + b.active().count(), 0);
    assert!(a.passive().is_empty() && b.passive().is_empty());
}

#[test]
fn a_cluster_label_longer_than_64_bytes_is_refused() {
    let long = PartialConfig {
        cluster_label: "x".repeat(65),
        ..PartialConfig::default()
    };
    let error = long.validate().unwrap_err();
    assert_eq!(error.field, "cluster_label");
    assert!(error.to_string().contains("64 bytes"), "{error}");
    let longest = PartialConfig {
        cluster_label: "x".repeat(64),
        ..PartialConfig::default()
    };
    longest.validate().unwrap();
    // The label is the only thing a frame grows by: its bytes and a
    // one-byte length.
    assert_eq!(
        PartialMessage::Ping.encode(&longest.cluster_label).len(),
        PartialMessage::Ping.encode("").len() + 64
    );
    assert_eq!(PartialMessage::Ping.encode(""), vec![0x51, 0, 8]);
}

proptest! {
    #[test]
    fn random_bytes_never_panic_a_node(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let (mut node, now) = node_with_two_neighbours();
        let _ = node.handle_frame(now, addr(1), &bytes);
        let mut tagged = vec![0x51];
        tagged.extend_from_slice(&bytes);
        let _ = node.handle_frame(now, addr(1), &tagged);
        // Past this node's (empty) label, into the message.
        let mut labelled = vec![0x51, 0];
        labelled.extend_from_slice(&bytes);
        let _ = node.handle_frame(now, addr(1), &labelled);
        node.handle_timeout(now + Duration::from_secs(1));
    }

    /// Random labels and label lengths: a frame is taken exactly when its
    /// label is the node's, and never panics either way.
    #[test]
    fn only_the_nodes_own_label_is_taken(
        label in proptest::collection::vec(any::<u8>(), 0..80),
        claimed_len in any::<u8>(),
        lie in any::<bool>(),
    ) {
        let now = start();
        let config = PartialConfig {
            cluster_label: "overlay".into(),
            ..PartialConfig::default()
        };
        let mut node = PartialNode::new(addr(0), config, 7, now).unwrap();
        let mut frame = vec![0x51];
        frame.push(if lie { claimed_len } else { label.len() as u8 });
        frame.extend_from_slice(&label);
        frame.extend_from_slice(&PartialMessage::Ping.encode("")[2..]);
        let result = node.handle_frame(now, addr(1), &frame);
        if !lie {
            if label == b"overlay" {
                prop_assert_eq!(result, Ok(()));
            } else {
                prop_assert_eq!(result, Err(PartialDecodeError::WrongCluster));
            }
        } else if result.is_ok() {
            // A lying length can only be taken if it still spells the label.
            prop_assert!(frame[1] == 7 && &frame[2..9] == b"overlay");
        }
    }
}

#[test]
fn a_new_neighbour_is_told_recent_ids_and_old_ones_are_not_repeated() {
    let config = PartialConfig::default();
    let (mut node, now) = node_with_two_neighbours();
    let old = node.broadcast(now, b"old").unwrap();
    let later = now + config.reannounce_window + Duration::from_secs(1);
    let recent = node.broadcast(later, b"recent").unwrap();
    while node.poll_transmit().is_some() {}
    node.handle_frame(later, addr(3), &PartialMessage::Join.encode(""))
        .unwrap();
    node.handle_timeout(later + config.announce_interval);
    let announced: Vec<[u8; 8]> = std::iter::from_fn(|| node.poll_transmit())
        .filter(|(to, _)| *to == addr(3))
        .filter_map(|(_, frame)| match PartialMessage::decode(&frame, &config) {
            Ok(PartialMessage::IHave { ids }) => Some(ids),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(announced, vec![recent], "old id {old:?} left out");
}

#[test]
fn urgent_requests_from_strangers_are_rate_limited_and_pings_do_not_amplify() {
    let config = PartialConfig::default();
    let (mut node, now) = node_with_two_neighbours();
    let urgent = PartialMessage::Neighbour { urgent: true }.encode("");
    let mut ups = 0;
    for i in 100..1100 {
        node.handle_frame(now, addr(i), &urgent).unwrap();
        while let Some(e) = node.poll_event() {
            ups += usize::from(matches!(e, PartialEvent::NeighbourUp(_)));
        }
    }
    assert!(
        ups as f64 <= config.joins_per_s,
        "{ups} urgent requests taken in one instant"
    );
    assert_eq!(node.active().count(), config.active_size);
    while node.poll_transmit().is_some() {}
    // A stranger's ping gets one answer no larger than itself.
    let ping = PartialMessage::Ping.encode("");
    node.handle_frame(now, addr(2000), &ping).unwrap();
    let answers: Vec<(NodeId, Vec<u8>)> = std::iter::from_fn(|| node.poll_transmit()).collect();
    assert_eq!(answers.len(), 1);
    assert!(answers[0].1.len() <= ping.len());
}
