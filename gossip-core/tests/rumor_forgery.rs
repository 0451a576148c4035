//! A live member that lies about rumors: it forges rumors in another
//! member's name to take that member's next sequence numbers, and claims
//! sequence numbers far ahead. Clusters run in the simulator with rumor
//! mongering; the liar is a real member whose address the forged frames
//! come from (so every node takes them as that member's word).

use crate::common::base_instant;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::time::Duration;

use gossip_core::wire::{self, Header, Message, SignedRumor, WireRumor, PROTOCOL_VERSION};
use gossip_core::{
    signed_bytes, Config, Event, Generation, Incarnation, MessageId, Node, NodeId, RumorSigner,
};
use gossip_sim::{LinkModel, Origin, Simulator};
use gossip_strategies::RumorMongering;

const N: usize = 8;
/// The member whose sequence numbers are attacked.
const X: usize = 1;
/// The lying member.
const LIAR: usize = 2;

fn cluster(config: Config, seed: u64) -> Simulator<RumorMongering> {
    Simulator::builder(N, config)
        .seed(seed)
        .link(LinkModel::fixed(Duration::from_millis(1)))
        .strategy(RumorMongering::default())
        .record(true)
        .build()
}

fn joined(mut sim: Simulator<RumorMongering>) -> Simulator<RumorMongering> {
    sim.start_all();
    sim.run_for(Duration::from_secs(5), &mut ());
    assert!(sim.all_running_see(N), "the cluster formed");
    sim
}

/// A frame from member `from` of `sim`, in its real life and incarnation.
fn frame_from(sim: &Simulator<RumorMongering>, from: usize, message: &Message) -> Vec<u8> {
    let me = sim.node(from).unwrap().members().next().unwrap();
    let header = Header {
        version: PROTOCOL_VERSION,
        label: "",
        sender: me.id,
        generation: me.generation,
        incarnation: me.incarnation,
    };
    wire::encode(&header, message)
}

fn forged_id(sim: &Simulator<RumorMongering>, sequence: u64) -> MessageId {
    MessageId {
        origin: sim.id(X),
        generation: 0,
        sequence,
    }
}

fn rumor(id: MessageId, payload: &[u8]) -> WireRumor {
    WireRumor {
        id,
        hops: 0,
        payload: payload.to_vec(),
    }
}

/// The liar sends `message` to every node but itself and those in `spare`.
fn lie_to_all(sim: &mut Simulator<RumorMongering>, message: &Message, spare: &[usize]) {
    let bytes = frame_from(sim, LIAR, message);
    let from = sim.addr(LIAR);
    for to in (0..N).filter(|&i| i != LIAR && !spare.contains(&i)) {
        sim.inject(to, from, &bytes, &mut ())
            .expect("running")
            .expect("a well-formed frame from a member is taken");
    }
}

/// Nodes that delivered `payload` (under any id), with the ids.
fn deliveries(sim: &Simulator<RumorMongering>, payload: &[u8]) -> BTreeMap<usize, Vec<MessageId>> {
    let mut out: BTreeMap<usize, Vec<MessageId>> = BTreeMap::new();
    for record in sim.events() {
        if let Event::Delivered { id, payload: p } = &record.event {
            if p == payload {
                out.entry(record.node).or_default().push(*id);
            }
        }
    }
    out
}

fn everyone_but(x: usize) -> Vec<usize> {
    (0..N).filter(|&i| i != x).collect()
}

#[test]
fn a_broadcast_whose_id_a_liar_took_first_is_reissued_and_reaches_everyone() {
    let mut sim = joined(cluster(Config::lan(N), 11));
    // The liar takes X's next three ids everywhere but at X...
    let forged: Vec<WireRumor> = (1..=3)
        .map(|s| rumor(forged_id(&sim, s), b"forged"))
        .collect();
    lie_to_all(&mut sim, &Message::Rumors { items: forged }, &[X]);
    // ...before X broadcasts, so X's real rumor arrives as a duplicate.
    let sent = sim.broadcast(X, b"real", &mut ()).expect("X broadcasts");
    assert_eq!(sent.sequence, 1, "X had not heard of the forgery yet");
    sim.run_for(Duration::from_secs(30), &mut ());

    let real = deliveries(&sim, b"real");
    assert_eq!(
        real.keys().copied().collect::<Vec<_>>(),
        everyone_but(X),
        "the real payload reached every other node: {real:?}"
    );
    for (node, ids) in &real {
        assert!(
            ids.iter()
                .all(|id| id.origin == sim.id(X) && id.sequence > 3),
            "node {node} got the real payload under a fresh id: {ids:?}"
        );
    }
    let stats = sim.node(X).unwrap().stats();
    assert!(stats.own_rumors_forged >= 1, "{stats:?}");
    // Each forged id X hears of after using it costs one re-issue: at most
    // one per id the liar forged.
    let reissues: Vec<(MessageId, MessageId)> = sim
        .events()
        .iter()
        .filter(|r| r.node == X)
        .filter_map(|r| match r.event {
            Event::Reissued { old, new } => Some((old, new)),
            _ => None,
        })
        .collect();
    assert!((1..=3).contains(&reissues.len()), "{reissues:?}");
    assert_eq!(stats.rumors_reissued, reissues.len() as u64);
    assert_eq!(reissues[0].0, sent, "X reports the new id of its broadcast");
    assert!(
        reissues.windows(2).all(|w| w[0].1 == w[1].0),
        "{reissues:?}"
    );
    let last = reissues.last().unwrap().1;
    assert!(
        real.values().all(|ids| ids == &[last]),
        "every node delivered the real payload once, under its last id: {real:?}"
    );
    // X itself never takes a rumor in its own name that it did not send.
    assert!(!sim.events().iter().any(|r| r.node == X
        && matches!(&r.event, Event::Delivered { id, .. } if id.origin == sim.id(X))));
}

#[test]
fn an_origin_that_hears_the_forgery_first_skips_the_ids_it_claims() {
    let mut sim = joined(cluster(Config::lan(N), 12));
    let forged: Vec<WireRumor> = (1..=3)
        .map(|s| rumor(forged_id(&sim, s), b"forged"))
        .collect();
    lie_to_all(&mut sim, &Message::Rumors { items: forged }, &[]);
    assert_eq!(sim.node(X).unwrap().stats().own_rumors_forged, 3);
    let sent = sim.broadcast(X, b"real", &mut ()).unwrap();
    assert_eq!(sent.sequence, 4, "ids 1 to 3 were claimed");
    sim.run_for(Duration::from_secs(30), &mut ());
    let real = deliveries(&sim, b"real");
    assert_eq!(real.keys().copied().collect::<Vec<_>>(), everyone_but(X));
    assert!(real.values().all(|ids| ids == &[sent]), "{real:?}");
    assert_eq!(sim.node(X).unwrap().stats().rumors_reissued, 0);
    assert!(
        !deliveries(&sim, b"forged").contains_key(&X),
        "the origin does not deliver a forgery in its own name"
    );
}

#[test]
fn a_sequence_far_ahead_of_what_a_node_holds_is_refused() {
    let mut config = Config::lan(N);
    config.max_sequence_gap = NonZeroU64::new(16).unwrap();
    let mut sim = joined(cluster(config, 13));
    let sent = sim.broadcast(X, b"real", &mut ()).unwrap();
    sim.run_for(Duration::from_secs(10), &mut ());
    assert_eq!(deliveries(&sim, b"real").len(), N - 1);
    // Every node holds X's sequence 1: 1 + 16 is within the gap, 1 + 17
    // and the end of the range are not.
    let items = vec![
        rumor(forged_id(&sim, sent.sequence + 17), b"far"),
        rumor(forged_id(&sim, u64::MAX), b"far"),
        rumor(forged_id(&sim, sent.sequence + 16), b"near"),
    ];
    lie_to_all(&mut sim, &Message::Rumors { items }, &[]);
    sim.run_for(Duration::from_secs(10), &mut ());
    assert!(deliveries(&sim, b"far").is_empty(), "refused everywhere");
    let near = deliveries(&sim, b"near");
    assert!(near.len() >= N - 2, "within the gap it is taken: {near:?}");
    assert!(!near.contains_key(&X), "but never by X itself");
    for i in everyone_but(LIAR) {
        let stats = sim.node(i).unwrap().stats();
        assert!(stats.rumors_refused_gap >= 2, "node {i}: {stats:?}");
    }
    // X's own sequence space is untouched by the far claims.
    let next = sim.broadcast(X, b"next", &mut ()).unwrap();
    assert_eq!(next.sequence, 2, "17 was claimed, 2 was not");
}

// ----- a node that holds nothing from an origin ---------------------------

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 7946))
}

fn lone_frame(i: u8, message: &Message) -> Vec<u8> {
    let header = Header {
        version: PROTOCOL_VERSION,
        label: "",
        sender: NodeId::new(addr(i)),
        generation: Generation(1),
        incarnation: Incarnation(0),
    };
    wire::encode(&header, message)
}

#[test]
fn a_late_joiner_takes_an_origins_rumors_at_any_sequence_then_holds_it_to_the_gap() {
    let now = base_instant();
    let mut config = Config::default();
    config.max_sequence_gap = NonZeroU64::new(16).unwrap();
    let mut node = Node::new(config, NodeId::new(addr(1)), Generation(1), 5).unwrap();
    node.join(now, &[]).unwrap();
    for i in [2, 3] {
        node.handle_message(
            now,
            addr(i),
            &lone_frame(
                i,
                &Message::Join {
                    nonce: 0,
                    metadata: vec![],
                },
            ),
        )
        .unwrap();
        common::answer_challenge(&mut node, now, addr(i), |m| lone_frame(i, m));
    }
    while node.poll_event().is_some() {}
    let of_three = |sequence| MessageId {
        origin: NodeId::new(addr(3)),
        generation: 1,
        sequence,
    };
    let relay = |items| lone_frame(2, &Message::Rumors { items });
    // Nothing held from member 3: a rumor deep into its sequence space is
    // taken (this node may simply have joined late).
    node.handle_message(now, addr(2), &relay(vec![rumor(of_three(1_000_000), b"a")]))
        .unwrap();
    // From then on, at most 16 ahead of the highest held.
    node.handle_message(
        now,
        addr(2),
        &relay(vec![
            rumor(of_three(1_000_017), b"b"),
            rumor(of_three(1_000_016), b"c"),
        ]),
    )
    .unwrap();
    let delivered: Vec<_> = core::iter::from_fn(|| node.poll_event())
        .filter_map(|e| match e {
            Event::Delivered { payload, .. } => Some(payload),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, [b"a".to_vec(), b"c".to_vec()]);
    assert_eq!(node.stats().rumors_refused_gap, 1);
}

use crate::common;

// ----- with signatures ------------------------------------------------------

/// A stand-in for a real signature scheme (gossip-seal's Ed25519 is tested
/// there): a keyed 64-bit FNV-1a hash, each member's key known to all
/// honest nodes, the liar knowing only its own. Enough to test that the
/// core refuses what does not verify; not a cryptographic signature.
struct KeyedHash {
    me: NodeId,
    keys: BTreeMap<NodeId, u64>,
}

fn keyed_hash(key: u64, id: MessageId, payload: &[u8]) -> Vec<u8> {
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ key;
    for byte in key
        .to_le_bytes()
        .into_iter()
        .chain(signed_bytes(id, payload))
    {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash.to_le_bytes().to_vec()
}

impl RumorSigner for KeyedHash {
    fn signature_len(&self) -> usize {
        8
    }
    fn sign(&self, id: MessageId, payload: &[u8]) -> Vec<u8> {
        keyed_hash(self.keys[&self.me], id, payload)
    }
    fn verify(&self, id: MessageId, payload: &[u8], signature: &[u8]) -> bool {
        self.keys
            .get(&id.origin)
            .is_some_and(|&key| keyed_hash(key, id, payload) == signature)
    }
}

fn key_of(i: usize) -> u64 {
    0x5eed_0000 + i as u64 * 7919
}

fn signed_cluster(seed: u64) -> Simulator<RumorMongering> {
    let mut sim = cluster(Config::lan(N), seed);
    let keys: BTreeMap<NodeId, u64> = (0..N).map(|i| (sim.id(i), key_of(i))).collect();
    for i in 0..N {
        let me = sim.id(i);
        let node = sim.node_mut(i).unwrap();
        let unsigned_max = node.max_payload_len();
        node.set_rumor_signer(Box::new(KeyedHash {
            me,
            keys: keys.clone(),
        }))
        .unwrap();
        assert_eq!(
            node.max_payload_len(),
            unsigned_max - 9,
            "the signature and its length prefix come off the payload budget"
        );
    }
    joined(sim)
}

#[test]
fn with_signatures_a_forgery_is_delivered_nowhere_and_the_real_rumor_everywhere() {
    let mut sim = signed_cluster(14);
    // The liar signs rumors in X's name with its own key, sends others
    // unsigned, everywhere but at X.
    let forged = |s: u64| {
        let id = forged_id(&sim, s);
        SignedRumor {
            rumor: rumor(id, b"forged"),
            signature: keyed_hash(key_of(LIAR), id, b"forged"),
        }
    };
    let signed = Message::SignedRumors {
        items: vec![forged(1), forged(2)],
    };
    lie_to_all(&mut sim, &signed, &[X]);
    let unsigned = Message::Rumors {
        items: vec![rumor(forged_id(&sim, 3), b"forged")],
    };
    lie_to_all(&mut sim, &unsigned, &[X]);
    let sent = sim.broadcast(X, b"real", &mut ()).unwrap();
    assert_eq!(sent.sequence, 1);
    sim.run_for(Duration::from_secs(20), &mut ());

    assert!(
        deliveries(&sim, b"forged").is_empty(),
        "no forgery delivered"
    );
    let real = deliveries(&sim, b"real");
    assert_eq!(real.keys().copied().collect::<Vec<_>>(), everyone_but(X));
    assert!(real.values().all(|ids| ids == &[sent]), "under its own id");
    for i in everyone_but(X).into_iter().filter(|&i| i != LIAR) {
        let stats = sim.node(i).unwrap().stats();
        assert_eq!(stats.rumors_refused_signature, 3, "node {i}: {stats:?}");
    }
    let x = sim.node(X).unwrap().stats();
    assert_eq!((x.own_rumors_forged, x.rumors_reissued), (0, 0));
    assert_eq!(relayed(&sim, b"forged"), 0, "nobody relayed a forgery");
    assert!(relayed(&sim, b"real") > 0);
}

/// Copies of rumors carrying `payload` that nodes sent (the liar's
/// injected frames not counted).
fn relayed(sim: &Simulator<RumorMongering>, payload: &[u8]) -> usize {
    let config = sim.node(0).unwrap().config().clone();
    sim.frames()
        .iter()
        .filter(|f| f.origin != Origin::Injected)
        .map(|f| match wire::decode(&config, &f.bytes) {
            Ok((_, Message::Rumors { items })) => {
                items.iter().filter(|r| r.payload == payload).count()
            }
            Ok((_, Message::SignedRumors { items })) => {
                items.iter().filter(|r| r.rumor.payload == payload).count()
            }
            _ => 0,
        })
        .sum()
}

#[test]
fn with_signatures_a_tampered_payload_or_a_missing_signature_is_refused() {
    let mut sim = signed_cluster(15);
    sim.broadcast(X, b"real", &mut ()).unwrap();
    // The liar relays X's next rumor before X does, with another payload
    // under X's real signature, and without any signature.
    let next = forged_id(&sim, 2);
    let next_signature = keyed_hash(key_of(X), next, b"second");
    let tampered = Message::SignedRumors {
        items: vec![SignedRumor {
            rumor: rumor(next, b"tampered"),
            signature: next_signature,
        }],
    };
    lie_to_all(&mut sim, &tampered, &[X]);
    lie_to_all(
        &mut sim,
        &Message::Rumors {
            items: vec![rumor(next, b"second")],
        },
        &[X],
    );
    let second = sim.broadcast(X, b"second", &mut ()).unwrap();
    assert_eq!(second, next);
    sim.run_for(Duration::from_secs(20), &mut ());
    assert!(deliveries(&sim, b"tampered").is_empty());
    for payload in [&b"real"[..], b"second"] {
        let got = deliveries(&sim, payload);
        assert_eq!(got.keys().copied().collect::<Vec<_>>(), everyone_but(X));
        assert!(got.values().all(|ids| ids.len() == 1), "once each: {got:?}");
    }
    for i in everyone_but(X).into_iter().filter(|&i| i != LIAR) {
        let stats = sim.node(i).unwrap().stats();
        assert_eq!(stats.rumors_refused_signature, 2, "node {i}: {stats:?}");
    }
    assert_eq!(relayed(&sim, b"tampered"), 0);
}
