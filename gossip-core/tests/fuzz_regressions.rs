//! Regressions found by the cargo-fuzz targets in `fuzz/` at the workspace root.
//!
//! Sync frames oversized at the smallest valid `max_message_size`: a sync
//! frame covering an id range bounded on both sides carries two ids (up to 21
//! bytes each for IPv6) on top of its header and at least one member, but
//! `Config::validate` only reserved 16 bytes for message fields besides the
//! header and one maximal record. With IPv6 identities, a `max_message_size`
//! at or near the smallest valid one and members carrying metadata near
//! `max_metadata_len`, a node emitted sync frames larger than
//! `max_message_size` (refused as `TooLarge` by every receiver, itself
//! included; in debug builds the `push_frame` size assertion panicked). The
//! fuzzer found it with three nodes answering a join; a forged sync request
//! with bounds triggers it from a single frame.

use crate::common;

use std::net::{Ipv6Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use gossip_core::wire::{self, Header, Message, PROTOCOL_VERSION};
use gossip_core::{Config, ConfigError, Generation, Incarnation, Node, NodeId};
use gossip_sim::check::check_frame;

/// `[2001:db8::ffff:ffff]:port`, an IPv6 identity (the longest on the wire).
fn v6(port: u16) -> NodeId {
    let ip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0xffff, 0xffff);
    NodeId::new(SocketAddr::from((ip, port)))
}

/// `config` with the smallest `max_message_size` it validates with.
fn at_smallest_frame(mut config: Config) -> Config {
    let mut size = 256;
    loop {
        config.max_message_size = NonZeroUsize::new(size).expect("non-zero");
        match config.validate() {
            Ok(()) => return config,
            Err(ConfigError::MessageTooSmall { needed, .. }) => size = needed,
            Err(e) => panic!("unexpected config error: {e}"),
        }
    }
}

#[allow(clippy::disallowed_methods)] // the test host, not the core, reads the clock once
fn base() -> Instant {
    Instant::now()
}

/// A frame from `sender` (generation `generation`, incarnation 0).
fn frame(config: &Config, sender: NodeId, generation: u64, message: &Message) -> Vec<u8> {
    let header = Header {
        version: PROTOCOL_VERSION,
        label: &config.cluster_label,
        sender,
        generation: Generation(generation),
        incarnation: Incarnation(0),
    };
    wire::encode(&header, message)
}

/// Drains `node`'s transmits, asserting each fits `max_message_size`,
/// decodes under the node's config and names it as sender (gossip-sim's
/// frame check); returns how many were sync frames.
fn drain_checked(node: &mut Node) -> usize {
    let config = node.config().clone();
    let mut syncs = 0;
    while let Some(t) = node.poll_transmit() {
        check_frame(&config, node.id(), &t.bytes);
        if matches!(
            wire::decode(&config, &t.bytes),
            Ok((_, Message::Sync { .. }))
        ) {
            syncs += 1;
        }
    }
    syncs
}

/// What the fuzzer found: three IPv6 members with epoch-millisecond
/// generations and metadata at the limit; the seed's answer to the third
/// join is a full view in three frames, the middle one bounded on both sides.
#[test]
fn join_answer_fits_smallest_valid_frame_with_ipv6_members() {
    let mut config = Config::default();
    config.max_metadata_len = 160;
    let config = at_smallest_frame(config);
    let generation = 1_764_000_000_000;
    let now = base();
    let seed_id = v6(7000);
    let mut seed = Node::new(config.clone(), seed_id, Generation(generation), 1).unwrap();
    seed.join(now, &[]).unwrap();
    seed.set_metadata(now, vec![1; config.max_metadata_len])
        .unwrap();
    drain_checked(&mut seed);
    for (i, port) in [7001, 7002].into_iter().enumerate() {
        let joiner = v6(port);
        let join = Message::Join {
            nonce: 0,
            metadata: vec![2; config.max_metadata_len],
        };
        let at = now + Duration::from_millis(1 + i as u64);
        seed.handle_message(
            at,
            joiner.addr(),
            &frame(&config, joiner, generation, &join),
        )
        .unwrap();
        common::answer_challenge(&mut seed, at, joiner.addr(), |m| {
            frame(&config, joiner, generation, m)
        });
        // The seed answers joins after `join_answer_delay`.
        drain_checked(&mut seed);
        seed.handle_timeout(at + config.join_answer_delay);
        // At this frame size each sync frame holds one member, so the answer
        // to the second join has a middle frame bounded on both sides.
        let syncs = drain_checked(&mut seed);
        assert!(syncs > i + 1, "{syncs} sync frames for {} members", i + 2);
    }
}

/// The same overflow from one forged frame: a sync request whose id range is
/// bounded on both sides and holds only the receiver, which carries maximal
/// metadata.
#[test]
fn bounded_sync_answer_fits_smallest_valid_frame() {
    let mut config = Config::default();
    config.max_metadata_len = 160;
    let config = at_smallest_frame(config);
    let now = base();
    let me = v6(60_000);
    let peer = v6(60_001);
    let mut node = Node::new(config.clone(), me, Generation(u64::MAX), 1).unwrap();
    node.join(now, &[]).unwrap();
    node.set_metadata(now, vec![7; config.max_metadata_len])
        .unwrap();
    drain_checked(&mut node);
    // Only a member is answered: the peer joins and proves its address.
    let join = Message::Join {
        nonce: 0,
        metadata: vec![],
    };
    node.handle_message(now, peer.addr(), &frame(&config, peer, u64::MAX, &join))
        .unwrap();
    common::answer_challenge(&mut node, now, peer.addr(), |m| {
        frame(&config, peer, u64::MAX, m)
    });
    drain_checked(&mut node);
    let ask = Message::Sync {
        reply: true,
        nonce: 0,
        after: Some(v6(1)),
        through: Some(me),
        entries: Vec::new(),
    };
    node.handle_message(
        now + Duration::from_millis(1),
        peer.addr(),
        &frame(&config, peer, u64::MAX, &ask),
    )
    .unwrap();
    assert_eq!(
        drain_checked(&mut node),
        1,
        "the node answers with its entry"
    );
}

/// The larger margin still lets the default config (128-byte metadata limit,
/// empty label) run at the smallest allowed frame size.
#[test]
fn default_metadata_limit_still_fits_the_smallest_frame() {
    let mut config = Config::default();
    config.max_message_size = NonZeroUsize::new(256).expect("non-zero");
    assert_eq!(config.validate(), Ok(()));
}
