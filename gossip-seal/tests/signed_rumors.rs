//! Ed25519 rumor signatures in a simulated cluster: a member that forges
//! rumors in another member's name, signed with its own key or tampered
//! from a real one, gets none of them delivered; the real rumors reach
//! every node.

use std::time::Duration;

use gossip_core::wire::{self, Header, Message, SignedRumor, WireRumor, PROTOCOL_VERSION};
use gossip_core::{Config, Event, MessageId, RumorSigner};
use gossip_seal::{RumorKeys, SigningKey, SEED_LEN, SIGNATURE_LEN};
use gossip_sim::{LinkModel, Simulator};
use gossip_strategies::RumorMongering;

const N: usize = 6;
const X: usize = 1;
const LIAR: usize = 2;

fn key(i: usize) -> SigningKey {
    SigningKey::from_seed([i as u8 + 1; SEED_LEN])
}

fn keys_of(sim: &Simulator<RumorMongering>, i: usize) -> RumorKeys {
    let mut keys = RumorKeys::new(sim.id(i), key(i));
    for j in 0..N {
        keys.trust(sim.id(j), key(j).public_key());
    }
    keys
}

#[test]
fn ed25519_signed_cluster_delivers_real_rumors_only() {
    let mut sim = Simulator::builder(N, Config::lan(N))
        .seed(21)
        .link(LinkModel::fixed(Duration::from_millis(1)))
        .strategy(RumorMongering::default())
        .record(true)
        .build();
    for i in 0..N {
        let keys = keys_of(&sim, i);
        let node = sim.node_mut(i).unwrap();
        let before = node.max_payload_len();
        node.set_rumor_signer(Box::new(keys)).unwrap();
        assert_eq!(node.max_payload_len(), before - 1 - SIGNATURE_LEN);
    }
    sim.start_all();
    sim.run_for(Duration::from_secs(5), &mut ());
    assert!(sim.all_running_see(N));

    // The liar's own key signs a rumor in X's name; a second copy carries
    // a real signature of X (over another payload) with a tampered payload.
    let liar_keys = keys_of(&sim, LIAR);
    let x_keys = keys_of(&sim, X);
    let origin = sim.id(X);
    let id = |sequence| MessageId {
        origin,
        generation: 0,
        sequence,
    };
    let item = |id: MessageId, payload: &[u8], signature: Vec<u8>| SignedRumor {
        rumor: WireRumor {
            id,
            hops: 0,
            payload: payload.to_vec(),
        },
        signature,
    };
    let items = vec![
        item(id(1), b"forged", liar_keys.sign(id(1), b"forged")),
        item(id(2), b"tampered", x_keys.sign(id(2), b"original")),
    ];
    let liar = sim.node(LIAR).unwrap().members().next().unwrap();
    let header = Header {
        version: PROTOCOL_VERSION,
        label: "",
        sender: liar.id,
        generation: liar.generation,
        incarnation: liar.incarnation,
    };
    let bytes = wire::encode(&header, &Message::SignedRumors { items });
    for to in (0..N).filter(|&i| i != LIAR && i != X) {
        let from = sim.addr(LIAR);
        sim.inject(to, from, &bytes, &mut ())
            .unwrap()
            .expect("taken from a member");
    }
    let first = sim.broadcast(X, b"real", &mut ()).unwrap();
    let second = sim.broadcast(X, b"original", &mut ()).unwrap();
    assert_eq!((first, second), (id(1), id(2)));
    sim.run_for(Duration::from_secs(20), &mut ());

    let delivered = |payload: &[u8]| -> Vec<usize> {
        let mut nodes: Vec<usize> = sim
            .events()
            .iter()
            .filter(|r| matches!(&r.event, Event::Delivered { payload: p, .. } if p == payload))
            .map(|r| r.node)
            .collect();
        nodes.sort_unstable();
        nodes
    };
    assert!(delivered(b"forged").is_empty());
    assert!(delivered(b"tampered").is_empty());
    let everyone_but_x: Vec<usize> = (0..N).filter(|&i| i != X).collect();
    assert_eq!(delivered(b"real"), everyone_but_x);
    assert_eq!(delivered(b"original"), everyone_but_x);
    for i in everyone_but_x.into_iter().filter(|&i| i != LIAR) {
        assert_eq!(sim.node(i).unwrap().stats().rumors_refused_signature, 2);
    }
}
