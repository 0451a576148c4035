//! Property tests for the wire codec and for `Node::handle_message` robustness.
//!
//! - `decode(encode(header, message)) == (header, message)` for every
//!   `wire::Message` variant, with IPv4 and IPv6 ids, every `Status` and
//!   `Liveness`, and metadata up to `max_metadata_len`; `encoded_len` is exact;
//!   every strict prefix and every extension of a frame is refused.
//! - Arbitrary bytes and random mutations of valid frames never panic a
//!   started node, are accepted exactly when `wire::decode` accepts them, and
//!   when refused change nothing but the error counter.

use crate::common;
use crate::common::base_instant;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::num::NonZeroUsize;

use proptest::prelude::*;
use proptest::sample::Index;

use gossip_core::wire::{
    self, Header, MemberRecord, Message, SignedRumor, Status, SyncEntry, WireRumor,
};
use gossip_core::{
    Config, Digest, Generation, Incarnation, MessageId, Node, NodeId, RecvError, MAX_LABEL_LEN,
};
use gossip_core::{Liveness, Member};
use gossip_sim::check::Snapshot;
use gossip_sim::node_addr as addr;

/// Identity of node `i`.
fn id(i: usize) -> NodeId {
    NodeId::new(addr(i))
}

const CASES: u32 = 256;
/// Records per generated list: large enough to exercise packing, small
/// enough that frames stay far below the 65 507-byte ceiling.
const MAX_LIST: usize = 8;

fn node_id() -> impl Strategy<Value = NodeId> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| NodeId::new(SocketAddr::from((Ipv4Addr::from(ip), port)))),
        // Flow info and scope id are not part of the wire identity.
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| NodeId::new(SocketAddr::V6(
            SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0)
        ))),
    ]
}

fn metadata(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

fn status(max: usize) -> impl Strategy<Value = Status> {
    prop_oneof![
        metadata(max).prop_map(|metadata| Status::Alive { metadata }),
        node_id().prop_map(|by| Status::Suspect { by }),
        node_id().prop_map(|by| Status::Dead { by }),
        Just(Status::Left),
    ]
}

fn generation() -> impl Strategy<Value = Generation> {
    any::<u64>().prop_map(Generation)
}

fn incarnation() -> impl Strategy<Value = Incarnation> {
    any::<u32>().prop_map(Incarnation)
}

fn record(max: usize) -> impl Strategy<Value = MemberRecord> {
    (node_id(), generation(), incarnation(), status(max)).prop_map(
        |(id, generation, incarnation, status)| MemberRecord {
            id,
            generation,
            incarnation,
            status,
        },
    )
}

fn liveness() -> impl Strategy<Value = Liveness> {
    prop_oneof![
        Just(Liveness::Alive),
        Just(Liveness::Suspect),
        Just(Liveness::Dead),
        Just(Liveness::Left),
    ]
}

fn member(max: usize) -> impl Strategy<Value = SyncEntry> {
    (
        node_id(),
        generation(),
        incarnation(),
        liveness(),
        metadata(max),
    )
        .prop_map(
            |(id, generation, incarnation, liveness, metadata)| SyncEntry {
                id,
                generation,
                incarnation,
                liveness,
                metadata,
            },
        )
}

fn updates(max: usize) -> impl Strategy<Value = Vec<MemberRecord>> {
    prop::collection::vec(record(max), 0..=MAX_LIST)
}

fn message_id() -> impl Strategy<Value = MessageId> {
    (node_id(), any::<u64>(), any::<u64>()).prop_map(|(origin, generation, sequence)| MessageId {
        origin,
        generation,
        sequence,
    })
}

/// Rumor ids as tree strategies announce them: few origins and lives, so
/// that they group, with sequences near the ends of their range too.
fn announced_ids() -> impl Strategy<Value = Vec<MessageId>> {
    let generation = prop_oneof![Just(0u64), Just(1), Just(u64::MAX), any::<u64>()];
    let sequence = prop_oneof![0..40u64, (u64::MAX - 40)..=u64::MAX, any::<u64>()];
    prop::collection::vec(
        (0..3usize, generation, sequence).prop_map(|(origin, generation, sequence)| MessageId {
            origin: id(origin),
            generation,
            sequence,
        }),
        0..=64,
    )
}

/// `ids` as they decode: in the wire's order, without repeats.
fn canonical(mut ids: Vec<MessageId>) -> Vec<MessageId> {
    wire::canonical_ids(&mut ids);
    ids
}

fn message(max: usize) -> impl Strategy<Value = Message> {
    prop_oneof![
        announced_ids().prop_map(|ids| Message::Announce {
            ids: canonical(ids)
        }),
        announced_ids().prop_map(|ids| Message::Graft {
            ids: canonical(ids)
        }),
        prop::collection::vec(
            (message_id(), any::<u16>(), metadata(max))
                .prop_map(|(id, hops, payload)| { WireRumor { id, hops, payload } }),
            0..=MAX_LIST
        )
        .prop_map(|items| Message::Rumors { items }),
        prop::collection::vec(
            (
                message_id(),
                any::<u16>(),
                metadata(max),
                prop::collection::vec(any::<u8>(), 0..=gossip_core::MAX_SIGNATURE_LEN)
            )
                .prop_map(|(id, hops, payload, signature)| SignedRumor {
                    rumor: WireRumor { id, hops, payload },
                    signature
                }),
            0..=MAX_LIST
        )
        .prop_map(|items| Message::SignedRumors { items }),
        (
            any::<bool>(),
            prop::collection::vec((node_id(), any::<u64>(), any::<u64>()), 0..=MAX_LIST)
        )
            .prop_map(|(reciprocate, heads)| Message::Pull {
                reciprocate,
                digest: Digest { heads }
            }),
        prop::collection::vec(message_id(), 0..=MAX_LIST)
            .prop_map(|known| Message::Feedback { known }),
        (any::<u32>(), any::<[u8; 4]>(), updates(max)).prop_map(|(seq, view_hash, updates)| {
            Message::Ping {
                seq,
                view_hash,
                updates,
            }
        }),
        (any::<u32>(), updates(max)).prop_map(|(seq, updates)| Message::Ack { seq, updates }),
        (any::<u32>(), node_id(), updates(max)).prop_map(|(seq, target, updates)| {
            Message::PingReq {
                seq,
                target,
                updates,
            }
        }),
        (any::<u32>(), updates(max)).prop_map(|(seq, updates)| Message::Nack { seq, updates }),
        updates(max).prop_map(|updates| Message::Gossip { updates }),
        (any::<u32>(), metadata(max))
            .prop_map(|(nonce, metadata)| Message::Join { nonce, metadata }),
        (
            any::<bool>(),
            any::<u32>(),
            prop::option::of(node_id()),
            prop::option::of(node_id()),
            prop::collection::vec(member(max), 0..=MAX_LIST)
        )
            .prop_map(|(reply, nonce, after, through, entries)| Message::Sync {
                reply,
                nonce,
                after,
                through,
                entries
            }),
    ]
}

/// A config accepting the largest frames, with `label` as cluster label.
fn roomy_config(label: String) -> Config {
    let mut config = Config::default();
    config.cluster_label = label;
    config.max_message_size = NonZeroUsize::new(65_507).expect("non-zero");
    config.validate().expect("valid");
    config
}

fn label() -> impl Strategy<Value = String> {
    // Multi-byte characters included; at most MAX_LABEL_LEN bytes.
    proptest::string::string_regex("[a-z0-9\\-é]{0,32}")
        .expect("regex")
        .prop_filter("label fits", |l| l.len() <= MAX_LABEL_LEN)
}

/// Header fields without the borrowed label.
fn header_parts() -> impl Strategy<Value = (NodeId, Generation, Incarnation)> {
    (node_id(), generation(), incarnation())
}

fn header<'a>(label: &'a str, parts: (NodeId, Generation, Incarnation)) -> Header<'a> {
    Header {
        version: wire::PROTOCOL_VERSION,
        label,
        sender: parts.0,
        generation: parts.1,
        incarnation: parts.2,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn encode_then_decode_round_trips(
        label in label(),
        parts in header_parts(),
        message in message(128),
    ) {
        let config = roomy_config(label);
        prop_assert_eq!(config.max_metadata_len, 128);
        let header = header(&config.cluster_label, parts);
        let bytes = wire::encode(&header, &message);
        prop_assert!(bytes.len() <= config.max_message_size.get());
        prop_assert_eq!(wire::encoded_len(&(&header, &message)), bytes.len());
        let (decoded_header, decoded_message) =
            wire::decode(&config, &bytes).expect("a valid frame decodes");
        prop_assert_eq!(decoded_header, header);
        prop_assert_eq!(decoded_message, message);
    }

    #[test]
    fn announced_ids_decode_grouped_and_are_sized_to_the_byte(
        ids in announced_ids(),
        graft in any::<bool>(),
    ) {
        let config = roomy_config(String::new());
        let header = header("", (id(9), Generation(1), Incarnation(0)));
        let wrap = |ids| if graft { Message::Graft { ids } } else { Message::Announce { ids } };
        let expected = canonical(ids.clone());
        let mut size = wire::IdGroupsLen::new();
        for &id in &expected {
            size.add(id);
        }
        let bytes = wire::encode(&header, &wrap(ids));
        let empty = wire::encoded_len(&(&header, wrap(Vec::new())));
        prop_assert_eq!(bytes.len(), empty - 1 + size.len());
        // Never more than one id per byte of the frame.
        prop_assert!(expected.len() <= bytes.len());
        let (_, decoded) = wire::decode(&config, &bytes).expect("a valid frame decodes");
        prop_assert_eq!(decoded, wrap(expected));
    }

    #[test]
    fn the_header_never_exceeds_its_budget(label in label(), parts in header_parts()) {
        let config = roomy_config(label);
        let header = header(&config.cluster_label, parts);
        let bytes = wire::encode(&header, &Message::Gossip { updates: Vec::new() });
        // One byte of message tag and one of empty-list length follow the header.
        prop_assert!(bytes.len() - 2 <= wire::header_budget(&config));
    }

    #[test]
    fn every_record_fits_its_budget(record in record(128), member in member(128)) {
        let config = Config::default();
        prop_assert!(wire::encoded_len(&record) <= wire::max_record_len(&config));
        prop_assert!(wire::encoded_len(&member) <= wire::max_record_len(&config));
    }

    #[test]
    fn prefixes_and_extensions_of_a_frame_are_refused(
        parts in header_parts(),
        message in message(128),
        cut in any::<Index>(),
        extra in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        let config = roomy_config(String::new());
        let bytes = wire::encode(&header("", parts), &message);
        let cut = cut.index(bytes.len());
        let prefix = wire::decode(&config, &bytes[..cut]);
        prop_assert!(prefix.is_err(), "prefix of {} bytes out of {} decoded", cut, bytes.len());
        let mut longer = bytes.clone();
        longer.extend_from_slice(&extra);
        prop_assert_eq!(
            wire::decode(&config, &longer),
            Err(RecvError::TrailingBytes(extra.len()))
        );
    }

    #[test]
    fn metadata_beyond_the_limit_is_refused(
        parts in header_parts(),
        excess in 1usize..64,
        as_update in any::<bool>(),
    ) {
        let config = roomy_config(String::new());
        let max = config.max_metadata_len;
        let metadata = vec![7u8; max + excess];
        let message = if as_update {
            Message::Gossip {
                updates: vec![MemberRecord {
                    id: parts.0,
                    generation: parts.1,
                    incarnation: parts.2,
                    status: Status::Alive { metadata },
                }],
            }
        } else {
            Message::Join { nonce: 0, metadata }
        };
        let bytes = wire::encode(&header("", parts), &message);
        prop_assert_eq!(
            wire::decode(&config, &bytes),
            Err(RecvError::MetadataTooLong { len: max + excess, max })
        );
    }

    #[test]
    fn another_label_is_refused(
        ours in label(),
        theirs in label(),
        parts in header_parts(),
        message in message(16),
    ) {
        prop_assume!(ours != theirs);
        let config = roomy_config(ours);
        let bytes = wire::encode(&header(&theirs, parts), &message);
        prop_assert_eq!(wire::decode(&config, &bytes), Err(RecvError::WrongCluster));
    }
}

// ----- handle_message robustness -----------------------------------------

/// A started node (founded alone, then joined by one peer) with drained queues.
fn victim(config: &Config) -> (Node, std::time::Instant) {
    let now = base_instant();
    let mut node = Node::new(config.clone(), id(0), Generation(1), 3).expect("valid");
    node.join(now, &[]).expect("join");
    let join = wire::encode(
        &Header {
            version: wire::PROTOCOL_VERSION,
            label: &config.cluster_label,
            sender: id(1),
            generation: Generation(1),
            incarnation: Incarnation(0),
        },
        &Message::Join {
            nonce: 0,
            metadata: b"peer".to_vec(),
        },
    );
    node.handle_message(now, addr(1), &join)
        .expect("peer joins");
    common::answer_challenge(&mut node, now, addr(1), |message| {
        wire::encode(
            &Header {
                version: wire::PROTOCOL_VERSION,
                label: &config.cluster_label,
                sender: id(1),
                generation: Generation(1),
                incarnation: Incarnation(0),
            },
            message,
        )
    });
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
    assert_eq!(node.live_member_count(), 2);
    (node, now)
}

/// Feeds `bytes` and checks the outcome against `wire::decode`'s verdict.
fn feed(
    config: &Config,
    node: &mut Node,
    now: std::time::Instant,
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    let before = Snapshot::of(node);
    let max_payload = node.max_payload_len();
    let expected = match wire::decode(config, bytes) {
        Err(e) => Err(e),
        Ok((header, _)) if header.sender == node.id() => Err(RecvError::FromSelf),
        // Every frame must come from the address of the sender it names.
        Ok((header, _)) if header.sender.addr() != addr(1) => Err(RecvError::SenderMismatch),
        // A rumor this node could not relay in one of its own frames.
        Ok((_, Message::Rumors { items }))
            if items.iter().any(|i| i.payload.len() > max_payload) =>
        {
            let len = items
                .iter()
                .find(|i| i.payload.len() > max_payload)
                .map_or(0, |i| i.payload.len());
            Err(RecvError::PayloadTooLarge {
                len,
                max: max_payload,
            })
        }
        // A signed one whose signature leaves too little room for it.
        Ok((_, Message::SignedRumors { items }))
            if items.iter().any(|i| {
                i.rumor.payload.len() + wire::signature_overhead(i.signature.len()) > max_payload
            }) =>
        {
            let item = items
                .iter()
                .find(|i| {
                    i.rumor.payload.len() + wire::signature_overhead(i.signature.len())
                        > max_payload
                })
                .expect("found above");
            Err(RecvError::PayloadTooLarge {
                len: item.rumor.payload.len(),
                max: max_payload - wire::signature_overhead(item.signature.len()),
            })
        }
        Ok(_) => Ok(()),
    };
    let result = node.handle_message(now, addr(1), bytes);
    prop_assert_eq!(&result, &expected);
    let mut after = Snapshot::of(node);
    if result.is_err() {
        prop_assert_eq!(after.stats.recv_errors, before.stats.recv_errors + 1);
        after.stats.recv_errors = before.stats.recv_errors;
        prop_assert_eq!(after, before);
        prop_assert_eq!(node.poll_transmit(), None);
        prop_assert_eq!(node.poll_event(), None);
    } else {
        prop_assert_eq!(
            after.stats.frames_received,
            before.stats.frames_received + 1
        );
        prop_assert_eq!(after.stats.recv_errors, before.stats.recv_errors);
        // The node itself always comes first and stays alive.
        prop_assert_eq!(after.members[0].id, node.id());
        prop_assert_eq!(after.members[0].liveness, Liveness::Alive);
        while node.poll_transmit().is_some() {}
        while node.poll_event().is_some() {}
    }
    Ok(())
}

/// One edit of a frame.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1u8..).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        if let Mutation::Insert(_, b) = mutation {
            bytes.push(*b);
        }
        return;
    }
    let len = bytes.len();
    match mutation {
        Mutation::Flip(i, x) => bytes[i.index(len)] ^= x,
        Mutation::Set(i, b) => bytes[i.index(len)] = *b,
        Mutation::Insert(i, b) => bytes.insert(i.index(len + 1), *b),
        Mutation::Delete(i) => {
            bytes.remove(i.index(len));
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(len)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn arbitrary_bytes_never_panic_nor_change_state(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
    ) {
        let config = Config::default();
        let (mut node, now) = victim(&config);
        let members: Vec<Member> = node.members().collect();
        feed(&config, &mut node, now, &bytes)?;
        if node.stats().recv_errors == 1 {
            prop_assert_eq!(node.members().collect::<Vec<_>>(), members);
        }
    }

    #[test]
    fn bytes_behind_a_plausible_header_never_panic(
        tail in prop::collection::vec(any::<u8>(), 0..2000),
    ) {
        // Version byte and empty label first, so decoding gets past the checks
        // that reject almost all random input at once.
        let config = Config::default();
        let (mut node, now) = victim(&config);
        let mut bytes = vec![wire::PROTOCOL_VERSION, 0];
        bytes.extend(tail);
        feed(&config, &mut node, now, &bytes)?;
    }

    #[test]
    fn mutated_frames_never_panic_and_refusals_change_nothing(
        parts in header_parts(),
        message in message(128),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let config = roomy_config(String::new());
        let (mut node, now) = victim(&config);
        let mut bytes = wire::encode(&header("", parts), &message);
        for m in &mutations {
            apply(&mut bytes, m);
        }
        feed(&config, &mut node, now, &bytes)?;
    }

    #[test]
    fn valid_frames_from_peers_never_panic(
        parts in header_parts(),
        message in message(128),
    ) {
        // Unmutated arbitrary frames exercise every handler with nonsense
        // claims (unknown members, huge incarnations, claims about us...).
        let config = roomy_config(String::new());
        let (mut node, now) = victim(&config);
        let bytes = wire::encode(&header("", parts), &message);
        feed(&config, &mut node, now, &bytes)?;
        // Time may pass afterwards without panics either.
        for step in 1..=30u64 {
            node.handle_timeout(now + std::time::Duration::from_millis(200 * step));
            while node.poll_transmit().is_some() {}
            while node.poll_event().is_some() {}
        }
    }
}
