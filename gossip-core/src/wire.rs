//! The wire format: a small header followed by one postcard-encoded message.
//!
//! ```text
//! +---------+---------------+--------+------------+-------------+----------------+
//! | version | cluster label | sender | generation | incarnation | message (enum) |
//! |  1 byte | varint + utf8 | addr   | varint u64 | varint u32  | postcard       |
//! +---------+---------------+--------+------------+-------------+----------------+
//! ```
//!
//! Decoding checks the size before anything else, reads the version byte
//! before decoding further, rejects trailing bytes, and never pre-allocates
//! more than a few elements ahead of what the frame actually holds.

use core::fmt;
use core::marker::PhantomData;
use std::net::{Ipv4Addr, SocketAddr};

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::RecvError;
use crate::id::{Generation, Incarnation, MessageId, NodeId};
use crate::member::Liveness;
use crate::strategy::Digest;

/// The protocol version this build speaks.
/// (2: aggregate shares carry their type; 3: probe sequence numbers are
/// random and travel as four fixed bytes, and `Verify` asks an address to
/// prove it is the member it is said to be; 4: announced and grafted rumor
/// ids travel grouped by origin life with delta-encoded sequence numbers,
/// see [`IdGroupsLen`]; 5: `Join` and `Sync` carry a nonce that state
/// answers echo, so that a seed's answer can be told from a forgery, and
/// a sync frame's ids travel as steps from the one before: one or two
/// bytes for members that share a port and nearby addresses; 6: the
/// origin of each id group travels as a step from the previous group's,
/// see [`IdGroupsLen`].)
pub const PROTOCOL_VERSION: u8 = 6;

/// Largest encoding of a [`NodeId`]: family tag, 16 address bytes, 2-byte port.
pub(crate) const MAX_NODE_ID_LEN: usize = 1 + 16 + 2;
/// Largest varint encodings of u64, u32 and u16 in postcard.
const MAX_VARINT_U64: usize = 10;
const MAX_VARINT_U32: usize = 5;
const MAX_VARINT_U16: usize = 3;

/// Bytes one rumor adds to a frame besides its payload, at most: message
/// tag, element count, [`MessageId`], hops and the payload's length prefix.
pub const RUMOR_OVERHEAD: usize =
    1 + MAX_VARINT_U16 + MAX_NODE_ID_LEN + 2 * MAX_VARINT_U64 + MAX_VARINT_U16 + MAX_VARINT_U32;

/// Bytes a signature of `len` bytes adds to a rumor on the wire
/// ([`SignedRumor`]): its length prefix and itself. Unsigned rumors carry
/// none.
pub const fn signature_overhead(len: usize) -> usize {
    let mut prefix = 1;
    let mut n = len;
    while n >= 0x80 {
        n >>= 7;
        prefix += 1;
    }
    prefix + len
}

/// Bytes a sync frame adds besides its header and its entries, at most:
/// message tag, reply flag, nonce, both id bounds, a three-byte element
/// count and the zero step before an entry's id written in full.
/// No other message that carries member records has more fixed fields, so a
/// frame of header budget, this and one [`max_record_len`] holds any of them.
pub(crate) const SYNC_OVERHEAD: usize = 1 + 1 + 4 + 2 * (1 + MAX_NODE_ID_LEN) + MAX_VARINT_U16 + 1;

/// Bytes the header can take at most under `config`: payload budgets subtract it.
pub fn header_budget(config: &Config) -> usize {
    1 + MAX_VARINT_U16
        + config.cluster_label.len()
        + MAX_NODE_ID_LEN
        + MAX_VARINT_U64
        + MAX_VARINT_U32
}

/// Largest encoding of one member record or state entry under `config`.
pub fn max_record_len(config: &Config) -> usize {
    MAX_NODE_ID_LEN
        + MAX_VARINT_U64
        + MAX_VARINT_U32
        + 1
        + MAX_NODE_ID_LEN.max(MAX_VARINT_U16 + config.max_metadata_len)
}

/// The fixed part of every frame: who sent it, in which life, for which cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header<'a> {
    /// Always [`PROTOCOL_VERSION`] when sent by this build.
    pub version: u8,
    /// The sender's cluster label.
    pub label: &'a str,
    /// The sender.
    pub sender: NodeId,
    /// The sender's generation.
    pub generation: Generation,
    /// The sender's incarnation when it sent the frame.
    pub incarnation: Incarnation,
}

/// What a piggybacked membership update says about a member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// The member is alive and carries this metadata.
    Alive {
        /// Application metadata, at most `max_metadata_len` bytes.
        #[serde(deserialize_with = "bounded_vec")]
        metadata: Vec<u8>,
    },
    /// `by` failed to reach the member and suspects it.
    Suspect {
        /// The suspecting member.
        by: NodeId,
    },
    /// `by` declared the member dead after its suspicion timed out.
    Dead {
        /// The declaring member.
        by: NodeId,
    },
    /// The member announced that it leaves.
    Left,
}

/// One membership update, as piggybacked on protocol messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The member the update is about.
    pub id: NodeId,
    /// Its generation.
    pub generation: Generation,
    /// Its incarnation.
    pub incarnation: Incarnation,
    /// What is claimed.
    pub status: Status,
}

impl Status {
    /// The liveness this claim asserts.
    pub fn liveness(&self) -> Liveness {
        match self {
            Status::Alive { .. } => Liveness::Alive,
            Status::Suspect { .. } => Liveness::Suspect,
            Status::Dead { .. } => Liveness::Dead,
            Status::Left => Liveness::Left,
        }
    }
}

/// One member's state in a state-synchronisation frame.
///
/// The same fields as the public [`Member`](crate::Member), kept apart so
/// that the view type can grow without changing the protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncEntry {
    /// The member.
    pub id: NodeId,
    /// Its generation.
    pub generation: Generation,
    /// Its incarnation.
    pub incarnation: Incarnation,
    /// Its liveness in the sender's view.
    pub liveness: Liveness,
    /// Its metadata.
    #[serde(deserialize_with = "bounded_vec")]
    pub metadata: Vec<u8>,
}

impl From<crate::Member> for SyncEntry {
    fn from(member: crate::Member) -> Self {
        Self {
            id: member.id,
            generation: member.generation,
            incarnation: member.incarnation,
            liveness: member.liveness,
            metadata: member.metadata,
        }
    }
}

/// An application rumor on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRumor {
    /// Which broadcast.
    pub id: MessageId,
    /// Relays between the origin and the sender.
    pub hops: u16,
    /// The application's bytes.
    #[serde(with = "byte_string")]
    pub payload: Vec<u8>,
}

/// A rumor with its origin's signature, sent only by nodes that sign
/// (see [`RumorSigner`](crate::RumorSigner)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRumor {
    /// The rumor.
    pub rumor: WireRumor,
    /// The origin's signature over the rumor's id and payload, at most
    /// [`MAX_SIGNATURE_LEN`](crate::MAX_SIGNATURE_LEN) bytes.
    #[serde(with = "byte_string")]
    pub signature: Vec<u8>,
}

/// A protocol message. Lists of records always come last so that the encoder
/// can predict a frame's length exactly while packing it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// SWIM probe. `view_hash` summarises the sender's view so that a
    /// difference triggers a state synchronisation.
    Ping {
        /// Probe sequence number, echoed by the ack: drawn at random, so
        /// that only the address pinged can answer.
        #[serde(with = "fixed_u32")]
        seq: u32,
        /// Summary of the sender's membership view.
        view_hash: [u8; 4],
        /// Piggybacked updates.
        #[serde(deserialize_with = "bounded_vec")]
        updates: Vec<MemberRecord>,
    },
    /// Answer to a ping, or forwarded by a helper for an indirect probe.
    Ack {
        /// Sequence number of the probe being answered.
        #[serde(with = "fixed_u32")]
        seq: u32,
        /// Piggybacked updates.
        #[serde(deserialize_with = "bounded_vec")]
        updates: Vec<MemberRecord>,
    },
    /// Asks the receiver to probe `target` and forward the ack.
    PingReq {
        /// The requester's probe sequence number.
        #[serde(with = "fixed_u32")]
        seq: u32,
        /// Member to probe.
        target: NodeId,
        /// Piggybacked updates.
        #[serde(deserialize_with = "bounded_vec")]
        updates: Vec<MemberRecord>,
    },
    /// A helper could not reach the target in time (Lifeguard): the requester
    /// learns that its own network path works.
    Nack {
        /// The requester's probe sequence number.
        #[serde(with = "fixed_u32")]
        seq: u32,
        /// Piggybacked updates.
        #[serde(deserialize_with = "bounded_vec")]
        updates: Vec<MemberRecord>,
    },
    /// Pure dissemination of membership updates.
    Gossip {
        /// The updates.
        #[serde(deserialize_with = "bounded_vec")]
        updates: Vec<MemberRecord>,
    },
    /// A new member asks to join; the header names it. Answered by `Sync`
    /// frames echoing `nonce`.
    Join {
        /// Drawn at random by the joiner and echoed by the seed's answer:
        /// only a node that received the request can answer it, so the
        /// joiner may take the members the answer lists on the seed's word.
        #[serde(with = "fixed_u32")]
        nonce: u32,
        /// The joiner's metadata.
        #[serde(deserialize_with = "bounded_vec")]
        metadata: Vec<u8>,
    },
    /// A slice of the sender's view: every member it knows whose id lies in
    /// `(after, through]` (`None`: unbounded), sorted by id. With `reply`
    /// set, the receiver answers with the members of that range it knows
    /// better than the sender, or that the sender does not list.
    Sync {
        /// Whether the receiver should answer with what the sender lacks.
        reply: bool,
        /// With `reply`, drawn at random by the sender; in an answer, the
        /// nonce of the request (or `Join`) it answers.
        #[serde(with = "fixed_u32")]
        nonce: u32,
        /// Exclusive lower bound of the ids this frame covers.
        after: Option<NodeId>,
        /// Inclusive upper bound of the ids this frame covers.
        through: Option<NodeId>,
        /// Member states, each id written as a step from the one before
        /// (the same port and an address a few above: one byte).
        #[serde(with = "sync_entries")]
        entries: Vec<SyncEntry>,
    },
    /// Application rumors, pushed or sent in answer to a pull.
    Rumors {
        /// The rumors with their payloads.
        #[serde(deserialize_with = "bounded_vec")]
        items: Vec<WireRumor>,
    },
    /// Asks for the rumors `digest` does not cover.
    Pull {
        /// Whether the receiver should pull back in turn.
        reciprocate: bool,
        /// What the sender holds.
        digest: Digest,
    },
    /// A share of the aggregation algorithm, postcard-encoded by its type.
    Aggregate {
        /// The sender's [`Aggregate::SHARE_TYPE`](crate::Aggregate::SHARE_TYPE):
        /// a node running another aggregate refuses the share instead of
        /// decoding it as its own.
        share_type: u32,
        /// The encoded share.
        #[serde(deserialize_with = "bounded_vec")]
        share: Vec<u8>,
    },
    /// The sender already held these rumors.
    Feedback {
        /// Rumors that were duplicates.
        #[serde(deserialize_with = "bounded_vec")]
        known: Vec<MessageId>,
    },
    /// Asks the receiver to prove that it is the member at its address, in
    /// the life the header of its answer states: it answers with an
    /// [`Ack`](Message::Ack) echoing `seq` whose first update is its own
    /// record. A new address becomes a member only after such an answer.
    Verify {
        /// Random challenge, echoed by the ack.
        #[serde(with = "fixed_u32")]
        seq: u32,
    },
    /// An application's message to one member (see
    /// [`Node::send_direct`](crate::Node::send_direct)): the seam that
    /// applications over the core (a replicated store's repair, for one)
    /// use for requests and answers that are not broadcasts.
    Direct {
        /// The application's bytes.
        #[serde(with = "byte_string")]
        payload: Vec<u8>,
    },
    /// Application rumors with their origins' signatures: what
    /// [`Rumors`](Message::Rumors) carries when signing is on. A separate
    /// variant, so that unsigned rumors pay no byte for the feature.
    SignedRumors {
        /// The rumors with their payloads and signatures.
        #[serde(deserialize_with = "bounded_vec")]
        items: Vec<SignedRumor>,
    },
    /// Ids of rumors the sender holds, without payloads: a tree strategy's
    /// lazy announcement (Plumtree's `IHave`).
    Announce {
        /// The rumors announced (grouped on the wire, see [`IdGroupsLen`]).
        #[serde(with = "id_groups")]
        ids: Vec<MessageId>,
    },
    /// Asks the receiver to push to the sender eagerly from now on, and to
    /// send these rumors if it holds them (Plumtree's `Graft`).
    Graft {
        /// The rumors wanted (none: only the link; grouped on the wire, see
        /// [`IdGroupsLen`]).
        #[serde(with = "id_groups")]
        ids: Vec<MessageId>,
    },
    /// Asks the receiver to stop pushing to the sender eagerly (Plumtree's
    /// `Prune`).
    Prune,
}

/// Bytes a [`Message::Direct`] adds besides its header and its payload, at
/// most: the message tag and a length of up to three bytes.
pub const DIRECT_OVERHEAD: usize = 1 + MAX_VARINT_U16;

/// Sequence numbers travel as four little-endian bytes: they are random,
/// so a varint would take five bytes for most of them.
mod fixed_u32 {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &u32, serializer: S) -> Result<S::Ok, S::Error> {
        value.to_le_bytes().serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
        <[u8; 4]>::deserialize(deserializer).map(u32::from_le_bytes)
    }
}

/// Encodes one frame.
pub fn encode(header: &Header<'_>, message: &Message) -> Vec<u8> {
    // Sized first (a pass that copies no payload), so that the frame is
    // allocated once instead of grown while its payloads are copied in.
    let out = Vec::with_capacity(encoded_len(&(header, message)));
    postcard::to_extend(&(header, message), out).expect("encoding into a Vec cannot fail")
}

/// Encoded length of one value, used to pack frames exactly.
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
        .expect("sizing cannot fail")
}

/// Length of postcard's varint encoding of a collection length.
pub fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

/// Decodes an aggregate's share from the bytes of a [`Message::Aggregate`].
pub fn decode_share<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, RecvError> {
    postcard::from_bytes(bytes).map_err(|_| RecvError::Malformed("aggregate share"))
}

/// Decodes and validates one frame against `config`.
pub fn decode<'a>(config: &Config, bytes: &'a [u8]) -> Result<(Header<'a>, Message), RecvError> {
    let max = config.max_message_size.get();
    if bytes.len() > max {
        return Err(RecvError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let Some(&version) = bytes.first() else {
        return Err(RecvError::Empty);
    };
    if version != PROTOCOL_VERSION {
        return Err(RecvError::UnsupportedVersion(version));
    }
    let (header, rest): (Header<'a>, _) = postcard::take_from_bytes(bytes).map_err(malformed)?;
    if header.label != config.cluster_label {
        return Err(RecvError::WrongCluster);
    }
    let (message, rest): (Message, _) = postcard::take_from_bytes(rest).map_err(malformed)?;
    if !rest.is_empty() {
        return Err(RecvError::TrailingBytes(rest.len()));
    }
    check_metadata(config, &message)?;
    if let Message::SignedRumors { items } = &message {
        if items
            .iter()
            .any(|item| item.signature.len() > crate::signing::MAX_SIGNATURE_LEN)
        {
            return Err(RecvError::Malformed("signature too long"));
        }
    }
    Ok((header, message))
}

fn check_metadata(config: &Config, message: &Message) -> Result<(), RecvError> {
    let max = config.max_metadata_len;
    let too_long = |len: usize| {
        if len > max {
            Err(RecvError::MetadataTooLong { len, max })
        } else {
            Ok(())
        }
    };
    match message {
        Message::Ping { updates, .. }
        | Message::Ack { updates, .. }
        | Message::PingReq { updates, .. }
        | Message::Nack { updates, .. }
        | Message::Gossip { updates } => {
            updates.iter().try_for_each(|record| match &record.status {
                Status::Alive { metadata } => too_long(metadata.len()),
                _ => Ok(()),
            })
        }
        Message::Join { metadata, .. } => too_long(metadata.len()),
        Message::Sync { entries, .. } => entries
            .iter()
            .try_for_each(|entry| too_long(entry.metadata.len())),
        Message::Rumors { .. }
        | Message::SignedRumors { .. }
        | Message::Pull { .. }
        | Message::Feedback { .. }
        | Message::Announce { .. }
        | Message::Graft { .. }
        | Message::Prune
        | Message::Aggregate { .. }
        | Message::Verify { .. }
        | Message::Direct { .. } => Ok(()),
    }
}

fn malformed(error: postcard::Error) -> RecvError {
    RecvError::Malformed(match error {
        postcard::Error::DeserializeUnexpectedEnd => "truncated",
        postcard::Error::DeserializeBadVarint => "bad varint",
        postcard::Error::DeserializeBadBool => "bad bool",
        postcard::Error::DeserializeBadUtf8 => "bad utf-8",
        postcard::Error::DeserializeBadEnum => "unknown enum variant",
        _ => "invalid encoding",
    })
}

/// Opaque bytes (payloads, signatures) on the wire: a length, then the
/// bytes, exactly as postcard writes a sequence of `u8`, but copied as one
/// slice each way instead of a byte at a time. The decoder allocates what
/// the frame actually holds, never what a length prefix claims.
mod byte_string {
    use core::fmt;

    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
                Ok(bytes.to_vec())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<u8>, A::Error> {
                super::BoundedVisitor(core::marker::PhantomData).visit_seq(seq)
            }
        }
        deserializer.deserialize_bytes(BytesVisitor)
    }
}

/// Deserialises a sequence without trusting its announced length for
/// pre-allocation: the vector grows only as elements actually decode, so a
/// forged length prefix cannot make the node reserve memory.
pub(crate) fn bounded_vec<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_seq(BoundedVisitor(PhantomData))
}

/// Collects a sequence, growing only as its elements decode.
struct BoundedVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for BoundedVisitor<T> {
    type Value = Vec<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        const PREALLOCATE_AT_MOST: usize = 16;
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(PREALLOCATE_AT_MOST));
        while let Some(item) = seq.next_element()? {
            out.push(item);
        }
        Ok(out)
    }
}

/// How an entry's id follows the previous entry's id in a sync frame:
///
/// ```text
/// step  varint
///   0         the id follows in full (first entry, IPv6, or out of order)
///   2k+1      same port, IPv4 address k above the previous one (k >= 1)
///   2k        IPv4 (address, port) read as one 48-bit number, k above
///             the previous one (k >= 1)
/// ```
///
/// A state answer lists members sorted by id, and the members of one
/// cluster usually share a port and a few address bytes, so most ids take
/// one or two bytes instead of seven: the member list is most of what a
/// cold start sends.
fn id_step(previous: Option<NodeId>, id: NodeId) -> u64 {
    let (Some(SocketAddr::V4(before)), SocketAddr::V4(now)) =
        (previous.map(|p| p.addr()), id.addr())
    else {
        return 0;
    };
    let (ip_before, ip_now) = (u32::from(*before.ip()), u32::from(*now.ip()));
    if before.port() == now.port() && ip_now > ip_before {
        return u64::from(ip_now - ip_before) << 1 | 1;
    }
    let key = |ip: u32, port: u16| u64::from(ip) << 16 | u64::from(port);
    let (k_before, k_now) = (key(ip_before, before.port()), key(ip_now, now.port()));
    if k_now > k_before {
        (k_now - k_before) << 1
    } else {
        0
    }
}

/// The id `step` names after `previous` (see [`id_step`]); `None` if it
/// names none (no IPv4 id before, or beyond the address space).
fn id_after(previous: Option<NodeId>, step: u64) -> Option<NodeId> {
    let SocketAddr::V4(before) = previous?.addr() else {
        return None;
    };
    let ip_before = u64::from(u32::from(*before.ip()));
    let (ip, port) = if step & 1 == 1 {
        (ip_before.checked_add(step >> 1)?, before.port())
    } else {
        let key = (ip_before << 16 | u64::from(before.port())).checked_add(step >> 1)?;
        (key >> 16, key as u16)
    };
    let ip = u32::try_from(ip).ok()?;
    Some(NodeId::new(SocketAddr::from((Ipv4Addr::from(ip), port))))
}

/// Bytes `entry` takes in a sync frame right after an entry for
/// `previous` (`None`: first in its frame).
pub(crate) fn sync_entry_len(previous: Option<NodeId>, entry: &SyncEntry) -> usize {
    encoded_len(&PackedEntry {
        step: id_step(previous, entry.id),
        entry,
    })
}

/// One sync entry as it travels: its id's step, the id if the step is 0,
/// then the rest as [`SyncEntry`] writes it. A tuple in postcard carries no
/// length, so the two shapes need no tag of their own.
struct PackedEntry<'a> {
    step: u64,
    entry: &'a SyncEntry,
}

impl Serialize for PackedEntry<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let e = self.entry;
        let mut t = serializer.serialize_tuple(6)?;
        t.serialize_element(&self.step)?;
        if self.step == 0 {
            t.serialize_element(&e.id)?;
        }
        t.serialize_element(&e.generation)?;
        t.serialize_element(&e.incarnation)?;
        t.serialize_element(&e.liveness)?;
        t.serialize_element(&Bytes(&e.metadata))?;
        t.end()
    }
}

/// Metadata bytes, written as a `Vec<u8>` field is (see [`byte_string`]).
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        byte_string::serialize(self.0, serializer)
    }
}

/// Metadata bytes read as a `Vec<u8>` field is, allocating only what the
/// frame holds (see [`byte_string`]).
struct BoundedBytes(Vec<u8>);

impl<'de> Deserialize<'de> for BoundedBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        byte_string::deserialize(deserializer).map(Self)
    }
}

/// The `serde(with)` module of [`Message::Sync`]'s entries.
mod sync_entries {
    use super::*;
    use serde::de::{DeserializeSeed, Error as _};
    use serde::ser::SerializeSeq;

    pub(super) fn serialize<S: serde::Serializer>(
        entries: &[SyncEntry],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(entries.len()))?;
        let mut previous = None;
        for entry in entries {
            seq.serialize_element(&PackedEntry {
                step: id_step(previous, entry.id),
                entry,
            })?;
            previous = Some(entry.id);
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<SyncEntry>, D::Error> {
        deserializer.deserialize_seq(Entries)
    }

    /// The list, growing only as its entries decode.
    struct Entries;

    impl<'de> Visitor<'de> for Entries {
        type Value = Vec<SyncEntry>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("sync entries")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out: Vec<SyncEntry> = Vec::new();
            while let Some(entry) = seq.next_element_seed(After(out.last().map(|e| e.id)))? {
                out.push(entry);
            }
            Ok(out)
        }
    }

    /// One entry, read knowing the id before it.
    struct After(Option<NodeId>);

    impl<'de> DeserializeSeed<'de> for After {
        type Value = SyncEntry;
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<SyncEntry, D::Error> {
            deserializer.deserialize_tuple(6, self)
        }
    }

    impl<'de> Visitor<'de> for After {
        type Value = SyncEntry;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sync entry")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SyncEntry, A::Error> {
            let missing = || A::Error::custom("truncated sync entry");
            let step: u64 = seq.next_element()?.ok_or_else(missing)?;
            let id = if step == 0 {
                seq.next_element()?.ok_or_else(missing)?
            } else {
                id_after(self.0, step).ok_or_else(|| A::Error::custom("bad id step"))?
            };
            let generation = seq.next_element()?.ok_or_else(missing)?;
            let incarnation = seq.next_element()?.ok_or_else(missing)?;
            let liveness = seq.next_element()?.ok_or_else(missing)?;
            let BoundedBytes(metadata) = seq.next_element()?.ok_or_else(missing)?;
            Ok(SyncEntry {
                id,
                generation,
                incarnation,
                liveness,
                metadata,
            })
        }
    }
}

/// Puts rumor ids in the order they travel in on the wire (by generation,
/// then origin, then sequence) and drops repeats: the order
/// [`IdGroupsLen`] and the encoder of announcements and grafts expect.
pub fn canonical_ids(ids: &mut Vec<MessageId>) {
    ids.sort_unstable_by_key(|id| (id.generation, id.origin, id.sequence));
    ids.dedup();
}

/// The exact encoded length of a list of rumor ids in an announcement or a
/// graft, grown one id at a time, so that a sender packs frames to the
/// byte.
///
/// **Encoding.** Tree strategies announce every rumor on every lazy link,
/// so ids dominate their cost. A full [`MessageId`] takes about 15 bytes
/// (a 7-byte address, a generation that is a start time in milliseconds,
/// a sequence number); on the wire the ids are instead grouped by origin
/// life:
///
/// ```text
/// groups: varint count, then per group
///   origin      varint step from the previous group's origin, then the
///               NodeId (7 bytes for IPv4) if the step is 0 (see
///               `origin_step` in this module)
///   generation  varint, the difference from the previous group's
///   first       varint, the group's first sequence number
///   gaps        varint count, then per further id: varint
///               (sequence - previous sequence - 1)
/// ```
///
/// Groups are sorted by generation and then origin, without repeats, and
/// sequence numbers within a group strictly increase, so the encoding is
/// canonical and consecutive sequence numbers cost one byte each; an
/// origin near the one before costs one to three bytes. A decoder
/// refuses any other order, and any sum that overflows, as malformed; it
/// produces at most one id per byte of the frame.
#[derive(Clone, Debug, Default)]
pub struct IdGroupsLen {
    len: usize,
    groups: usize,
    gaps: usize,
    last: Option<MessageId>,
}

impl IdGroupsLen {
    /// The length of an empty list.
    pub fn new() -> Self {
        Self {
            len: 1,
            ..Self::default()
        }
    }

    /// Bytes the list takes so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no id was added.
    pub fn is_empty(&self) -> bool {
        self.last.is_none()
    }

    /// Bytes `id` would add. Ids must come in [`canonical_ids`] order.
    pub fn cost(&self, id: MessageId) -> usize {
        match self.last {
            Some(last) if last.origin == id.origin && last.generation == id.generation => {
                let gap = id.sequence.saturating_sub(last.sequence).saturating_sub(1);
                varint_len(self.gaps + 1) - varint_len(self.gaps) + varint_u64_len(gap)
            }
            last => {
                let delta = id
                    .generation
                    .saturating_sub(last.map_or(0, |l| l.generation));
                let step = origin_step(last.map(|l| l.origin), id.origin);
                let origin = if step == 0 {
                    encoded_len(&id.origin)
                } else {
                    0
                };
                varint_len(self.groups + 1) - varint_len(self.groups)
                    + varint_u64_len(step)
                    + origin
                    + varint_u64_len(delta)
                    + varint_u64_len(id.sequence)
                    + 1
            }
        }
    }

    /// Adds `id` (in [`canonical_ids`] order).
    pub fn add(&mut self, id: MessageId) {
        self.len += self.cost(id);
        match self.last {
            Some(last) if last.origin == id.origin && last.generation == id.generation => {
                self.gaps += 1;
            }
            _ => {
                self.groups += 1;
                self.gaps = 0;
            }
        }
        self.last = Some(id);
    }
}

fn varint_u64_len(n: u64) -> usize {
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

/// How a group's origin follows the previous group's origin in an id
/// list (see [`IdGroupsLen`]):
///
/// ```text
/// step  varint
///   0         the origin follows in full (first group, IPv6, or the same
///             origin as the group before)
///   2z+1      same port, IPv4 address moved by zigzag(z)
///   2z        IPv4 (address, port) read as one 48-bit number, moved by
///             zigzag(z)
/// ```
///
/// zigzag maps 1, 2, 3, 4, ... to -1, +1, -2, +2, ...: groups are sorted
/// by generation first, so their origins come in no particular order, but
/// the members of one cluster usually share a port and a few address
/// bytes, and a move within them takes one to three bytes instead of the
/// seven of a full IPv4 id.
fn origin_step(previous: Option<NodeId>, origin: NodeId) -> u64 {
    let (Some(SocketAddr::V4(before)), SocketAddr::V4(now)) =
        (previous.map(|p| p.addr()), origin.addr())
    else {
        return 0;
    };
    let zigzag = |from: u64, to: u64| {
        let d = to as i64 - from as i64;
        ((d << 1) ^ (d >> 63)) as u64
    };
    let (ip_before, ip_now) = (u32::from(*before.ip()), u32::from(*now.ip()));
    if before.port() == now.port() && ip_now != ip_before {
        return zigzag(u64::from(ip_before), u64::from(ip_now)) << 1 | 1;
    }
    let key = |ip: u32, port: u16| u64::from(ip) << 16 | u64::from(port);
    match zigzag(key(ip_before, before.port()), key(ip_now, now.port())) {
        0 => 0,
        z => z << 1,
    }
}

/// The origin `step` names after `previous` (see [`origin_step`]); `None`
/// if it names none (no IPv4 origin before, no move, or beyond the
/// address space).
fn origin_after(previous: Option<NodeId>, step: u64) -> Option<NodeId> {
    let SocketAddr::V4(before) = previous?.addr() else {
        return None;
    };
    let z = step >> 1;
    // zigzag(z) < 2^49 in magnitude for any key move; larger is malformed.
    if z == 0 || z >> 50 != 0 {
        return None;
    }
    let d = (z >> 1) as i64 ^ -((z & 1) as i64);
    let ip_before = i64::from(u32::from(*before.ip()));
    let (ip, port) = if step & 1 == 1 {
        (ip_before + d, before.port())
    } else {
        let key = (ip_before << 16 | i64::from(before.port())) + d;
        if key < 0 {
            return None;
        }
        (key >> 16, key as u16)
    };
    let ip = u32::try_from(ip).ok()?;
    Some(NodeId::new(SocketAddr::from((Ipv4Addr::from(ip), port))))
}

/// One origin life's ids (see [`IdGroupsLen`]).
struct IdGroup {
    origin: NodeId,
    generation_delta: u64,
    first: u64,
    gaps: Vec<u64>,
}

/// An [`IdGroup`] as it travels: its origin's step from the previous
/// group's, the origin itself if the step is 0, then the rest.
struct PackedGroup<'a> {
    step: u64,
    group: &'a IdGroup,
}

impl Serialize for PackedGroup<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let g = self.group;
        let mut t = serializer.serialize_tuple(5)?;
        t.serialize_element(&self.step)?;
        if self.step == 0 {
            t.serialize_element(&g.origin)?;
        }
        t.serialize_element(&g.generation_delta)?;
        t.serialize_element(&g.first)?;
        t.serialize_element(&g.gaps)?;
        t.end()
    }
}

/// Serde for id lists of announcements and grafts (see [`IdGroupsLen`]).
mod id_groups {
    use serde::de::{DeserializeSeed, Error as _};
    use serde::ser::SerializeSeq;
    use serde::{Deserializer, Serializer};

    use super::*;

    pub(super) fn serialize<S: Serializer>(
        ids: &[MessageId],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut ids = ids.to_vec();
        canonical_ids(&mut ids);
        let mut groups: Vec<IdGroup> = Vec::new();
        let mut last: Option<MessageId> = None;
        for id in ids {
            match (last, groups.last_mut()) {
                (Some(l), Some(group))
                    if l.origin == id.origin && l.generation == id.generation =>
                {
                    group.gaps.push(id.sequence - l.sequence - 1);
                }
                _ => groups.push(IdGroup {
                    origin: id.origin,
                    generation_delta: id.generation - last.map_or(0, |l| l.generation),
                    first: id.sequence,
                    gaps: Vec::new(),
                }),
            }
            last = Some(id);
        }
        let mut seq = serializer.serialize_seq(Some(groups.len()))?;
        let mut previous = None;
        for group in &groups {
            seq.serialize_element(&PackedGroup {
                step: origin_step(previous, group.origin),
                group,
            })?;
            previous = Some(group.origin);
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<MessageId>, D::Error> {
        deserializer.deserialize_seq(Groups)
    }

    /// The ids, growing only as their groups decode.
    struct Groups;

    impl<'de> Visitor<'de> for Groups {
        type Value = Vec<MessageId>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("id groups")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut ids: Vec<MessageId> = Vec::new();
            while let Some(group) =
                seq.next_element_seed(GroupAfter(ids.last().map(|id| id.origin)))?
            {
                let last = ids.last().copied();
                let previous = last.map_or(0, |l| l.generation);
                let generation = previous
                    .checked_add(group.generation_delta)
                    .ok_or_else(|| A::Error::custom("generation overflows"))?;
                if last.is_some_and(|l| (l.generation, l.origin) >= (generation, group.origin)) {
                    return Err(A::Error::custom("id groups out of order"));
                }
                let mut id = MessageId {
                    origin: group.origin,
                    generation,
                    sequence: group.first,
                };
                ids.push(id);
                for gap in group.gaps {
                    id.sequence = id
                        .sequence
                        .checked_add(gap)
                        .and_then(|s| s.checked_add(1))
                        .ok_or_else(|| A::Error::custom("sequence overflows"))?;
                    ids.push(id);
                }
            }
            Ok(ids)
        }
    }

    /// One group, read knowing the origin of the group before it.
    struct GroupAfter(Option<NodeId>);

    impl<'de> DeserializeSeed<'de> for GroupAfter {
        type Value = IdGroup;
        fn deserialize<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_tuple(5, self)
        }
    }

    impl<'de> Visitor<'de> for GroupAfter {
        type Value = IdGroup;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an id group")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let missing = || A::Error::custom("truncated id group");
            let step: u64 = seq.next_element()?.ok_or_else(missing)?;
            let origin = if step == 0 {
                seq.next_element()?.ok_or_else(missing)?
            } else {
                origin_after(self.0, step).ok_or_else(|| A::Error::custom("bad origin step"))?
            };
            // One encoding per list: a step where the encoder writes the
            // origin in full, or the reverse, is refused.
            if origin_step(self.0, origin) != step {
                return Err(A::Error::custom("origin step not canonical"));
            }
            let generation_delta = seq.next_element()?.ok_or_else(missing)?;
            let first = seq.next_element()?.ok_or_else(missing)?;
            let BoundedU64s(gaps) = seq.next_element()?.ok_or_else(missing)?;
            Ok(IdGroup {
                origin,
                generation_delta,
                first,
                gaps,
            })
        }
    }

    /// A list of varints, allocating only what the frame holds.
    struct BoundedU64s(Vec<u64>);

    impl<'de> Deserialize<'de> for BoundedU64s {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            bounded_vec(deserializer).map(Self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4], port: u16) -> NodeId {
        NodeId::new(SocketAddr::from((a, port)))
    }

    fn entry(id: NodeId) -> SyncEntry {
        SyncEntry {
            id,
            generation: Generation(1_764_000_000_000),
            incarnation: Incarnation(3),
            liveness: Liveness::Alive,
            metadata: vec![1, 2],
        }
    }

    #[test]
    fn sync_ids_travel_as_short_steps_and_come_back_whole() {
        let ids = [
            v4([10, 0, 0, 1], 7946),
            v4([10, 0, 0, 2], 7946),   // next address, same port
            v4([10, 0, 1, 200], 7946), // 454 addresses on
            v4([10, 0, 1, 200], 8000), // same address, another port
            v4([10, 0, 1, 201], 10),   // next address, lower port
            v4([9, 0, 0, 1], 7946),    // out of order: written whole
            NodeId::new("[::1]:7946".parse().unwrap()),
            v4([10, 0, 0, 1], 7946), // after IPv6: whole
        ];
        let steps: Vec<u64> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| id_step(i.checked_sub(1).map(|j| ids[j]), *id))
            .collect();
        assert_eq!(steps[0], 0, "the first id is written whole");
        assert_eq!(steps[1], 3, "one address on, same port: one byte");
        assert_eq!(steps[2], 454 << 1 | 1);
        assert_eq!(steps[3], (8000 - 7946) << 1);
        assert_ne!(steps[4], 0);
        assert_eq!(&steps[5..], [0, 0, 0]);
        for (i, &step) in steps.iter().enumerate().skip(1).filter(|(_, s)| **s != 0) {
            assert_eq!(id_after(Some(ids[i - 1]), step), Some(ids[i]), "step {i}");
        }
        let entries: Vec<SyncEntry> = ids.iter().map(|&id| entry(id)).collect();
        let message = Message::Sync {
            reply: false,
            nonce: 9,
            after: None,
            through: None,
            entries,
        };
        let encoded = postcard::to_allocvec(&message).unwrap();
        let decoded: Message = postcard::from_bytes(&encoded).unwrap();
        assert_eq!(decoded, message, "every shape comes back whole");
        let one = sync_entry_len(Some(ids[0]), &entry(ids[1]));
        let whole = sync_entry_len(None, &entry(ids[1]));
        assert_eq!(whole - one, 7, "a step saves the 7-byte IPv4 id");
    }

    #[test]
    fn group_origins_travel_as_signed_steps_and_come_back_whole() {
        let ids = [
            v4([10, 0, 0, 5], 7946),
            v4([10, 0, 0, 2], 7946),   // three addresses back, same port
            v4([10, 0, 0, 2], 40_000), // same address, a port far on
            v4([10, 0, 0, 2], 39_000), // a port back
            v4([10, 0, 0, 2], 39_000), // the same origin: written whole
            v4([0, 0, 0, 0], 0),       // far back
            NodeId::new("[::1]:7946".parse().unwrap()),
            v4([10, 0, 0, 1], 7946), // after IPv6: whole
        ];
        let steps: Vec<u64> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| origin_step(i.checked_sub(1).map(|j| ids[j]), *id))
            .collect();
        assert_eq!(steps[0], 0, "the first origin is written whole");
        assert_eq!(steps[1], 5 << 1 | 1, "-3 is zigzag 5: one byte");
        assert_eq!(steps[2], (32_054 << 1) << 1);
        assert_eq!(steps[3], (1000 * 2 - 1) << 1);
        assert_eq!(steps[4], 0);
        assert_ne!(steps[5], 0);
        assert_eq!(&steps[6..], [0, 0]);
        for (i, &step) in steps.iter().enumerate().skip(1).filter(|(_, s)| **s != 0) {
            assert_eq!(
                origin_after(Some(ids[i - 1]), step),
                Some(ids[i]),
                "step {i}"
            );
        }
        // Below the address space, above it, past any move, or with
        // nothing to step from: no origin.
        let low = Some(v4([0, 0, 0, 1], 0));
        assert_eq!(origin_after(low, 3 << 1 | 1), None, "address -2");
        assert_eq!(origin_after(low, 131_073 << 1), None, "key -65,537");
        let top = Some(v4([255, 255, 255, 255], 65_535));
        assert_eq!(origin_after(top, (2 << 1) << 1), None);
        assert_eq!(origin_after(top, (2 << 1) << 1 | 1), None);
        assert_eq!(origin_after(top, u64::MAX), None);
        assert_eq!(origin_after(None, 3), None);
        // An announcement of one id from each origin comes back whole and
        // costs what IdGroupsLen says, to the byte.
        let mut announced: Vec<MessageId> = ids
            .iter()
            .enumerate()
            .map(|(i, &origin)| MessageId {
                origin,
                generation: 7 + i as u64,
                sequence: 1,
            })
            .collect();
        canonical_ids(&mut announced);
        let message = Message::Announce {
            ids: announced.clone(),
        };
        let encoded = postcard::to_allocvec(&message).unwrap();
        let decoded: Message = postcard::from_bytes(&encoded).unwrap();
        assert_eq!(decoded, message);
        let mut len = IdGroupsLen::new();
        announced.iter().for_each(|&id| len.add(id));
        assert_eq!(len.len(), encoded.len() - 1, "the message tag aside");
    }

    #[test]
    fn a_step_naming_no_id_is_refused() {
        let config = Config::default();
        let header = Header {
            version: PROTOCOL_VERSION,
            label: "",
            sender: v4([10, 0, 0, 9], 1),
            generation: Generation(1),
            incarnation: Incarnation(0),
        };
        let sync = |entries: Vec<SyncEntry>| {
            encode(
                &header,
                &Message::Sync {
                    reply: false,
                    nonce: 0,
                    after: None,
                    through: None,
                    entries,
                },
            )
        };
        // A first entry written as a step has nothing to step from.
        let mut first = sync(vec![entry(v4([10, 0, 0, 1], 7946))]);
        let at = first.len()
            - encoded_len(&PackedEntry {
                step: 0,
                entry: &entry(v4([10, 0, 0, 1], 7946)),
            });
        first.splice(at..at + 1 + 8, [3u8]);
        assert!(matches!(
            decode(&config, &first),
            Err(RecvError::Malformed(_))
        ));
        // Steps past the last IPv4 address, or from an IPv6 id.
        let top = Some(v4([255, 255, 255, 255], 7946));
        assert_eq!(id_after(top, 3), None);
        assert_eq!(id_after(top, 2 * 65_536), None);
        assert_eq!(id_after(top, 2), Some(v4([255, 255, 255, 255], 7947)));
        assert_eq!(
            id_after(Some(NodeId::new("[::1]:1".parse().unwrap())), 3),
            None
        );
        assert_eq!(id_after(None, 3), None);
    }

    /// Byte strings keep the wire format of a sequence of `u8`: frames of
    /// earlier builds of this protocol version decode unchanged.
    #[test]
    fn byte_strings_encode_as_sequences_of_bytes() {
        for len in [0usize, 1, 127, 128, 300, 20_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let as_sequence = postcard::to_allocvec(&(7u8, &payload)).unwrap();
            let message = Message::Direct {
                payload: payload.clone(),
            };
            let encoded = postcard::to_allocvec(&message).unwrap();
            // The variant's tag, then the same bytes as the sequence.
            assert_eq!(encoded[1..], as_sequence[1..], "{len}");
            let decoded: Message = postcard::from_bytes(&encoded).unwrap();
            assert_eq!(decoded, message);
        }
    }
}
