//! The store's messages, postcard-encoded after the [`Channel::Kv`] tag.
//! Every field that sizes an allocation is checked after decoding against
//! the receiver's [`KvConfig`](super::KvConfig) limits, and the input's
//! length against `max_message_len` before.
//!
//! [`Channel::Kv`]: crate::Channel::Kv

use serde::{Deserialize, Serialize};

use super::entry::Entry;
use super::gc::TombstoneId;
use super::version::Version;

/// Children of one tree node: 16 digests, fixed width.
pub type Digests = [[u8; 8]; 16];

/// A position in a catch-up stream: entries are sent in (version, hash)
/// order, and a page resumes after the last one sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    /// Version of the last entry sent.
    pub version: Version,
    /// Key hash of the last entry sent.
    pub hash: u64,
}

/// One message of the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvMessage {
    /// A fresh write or deletion, spread by rumor.
    Write(Entry),
    /// Anti-entropy opens: the initiator's root digest and entry count.
    Root {
        /// The initiator's exchange number.
        session: u32,
        /// Sum of every entry digest.
        digest: [u8; 8],
        /// Entries held, tombstones included.
        count: u64,
    },
    /// The responder's root equals the initiator's: nothing to repair.
    Equal {
        /// The exchange.
        session: u32,
    },
    /// The responder's digests of the children of tree nodes.
    Children {
        /// The exchange.
        session: u32,
        /// `(depth, prefix, digests of its 16 children)`.
        nodes: Vec<(u8, u16, Digests)>,
    },
    /// The initiator asks for the children of tree nodes that differ.
    Expand {
        /// The exchange.
        session: u32,
        /// `(depth, prefix)` of each node.
        nodes: Vec<(u8, u16)>,
    },
    /// The initiator's entries in hash range `lo..=hi`, as
    /// `(key hash, entry digest)`; the responder sends what the initiator
    /// lacks and asks for what it lacks itself.
    Pull {
        /// The exchange.
        session: u32,
        /// First key hash of the range.
        lo: u64,
        /// Last key hash of the range.
        hi: u64,
        /// The initiator's entries in the range.
        have: Vec<(u64, [u8; 8])>,
    },
    /// Asks for every entry whose key has one of these hashes.
    Want {
        /// The exchange.
        session: u32,
        /// Key hashes.
        hashes: Vec<u64>,
    },
    /// Entries, answering a pull or a want.
    Entries {
        /// The exchange.
        session: u32,
        /// The entries.
        entries: Vec<Entry>,
    },
    /// Catch-up: asks for entries with versions after `after` whose key
    /// hash's top 16 bits lie in `lo..=hi`, in (version, hash) order.
    Since {
        /// The stream's request number.
        session: u32,
        /// Resume after this position.
        after: Cursor,
        /// First top-16-bit bucket of the stream.
        lo: u16,
        /// Last top-16-bit bucket of the stream.
        hi: u16,
    },
    /// One page of a catch-up stream; `more` says whether to ask again.
    Page {
        /// The request answered.
        session: u32,
        /// Entries after the request's cursor, in order.
        entries: Vec<Entry>,
        /// Whether entries remain after the last one.
        more: bool,
    },
    /// To a tombstone's deleter: this node holds these tombstones (or
    /// newer entries for their keys).
    Ack {
        /// The tombstones.
        tombstones: Vec<TombstoneId>,
    },
    /// Asks the receiver to acknowledge these tombstones to their
    /// deleters if it holds them: sent by a deleter to members that have
    /// not acknowledged, and by a node that collected a tombstone to a
    /// peer that still holds it.
    AckRequest {
        /// The tombstones.
        tombstones: Vec<TombstoneId>,
    },
    /// From a tombstone's deleter only: every member alive at the deletion
    /// holds it, collect it (keep only its guard until the grace).
    Collect {
        /// The tombstones.
        tombstones: Vec<TombstoneId>,
    },
}

/// Why bytes are not a store message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Longer than `max_message_len`.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a well-formed message.
    #[error("malformed store message")]
    Malformed,
}

impl KvMessage {
    /// The message's encoding (without the channel tag).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("store messages always encode")
    }

    /// Decodes `bytes` of at most `max` bytes. Never panics; allocations
    /// are bounded by the input's length.
    pub fn decode(bytes: &[u8], max: usize) -> Result<Self, DecodeError> {
        if bytes.len() > max {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max,
            });
        }
        let (message, rest) =
            postcard::take_from_bytes(bytes).map_err(|_| DecodeError::Malformed)?;
        if !rest.is_empty() {
            return Err(DecodeError::Malformed);
        }
        Ok(message)
    }
}

/// Encoded size of an entry inside a message (postcard, exact).
pub fn entry_len(entry: &Entry) -> usize {
    postcard::to_allocvec(entry).map_or(usize::MAX, |v| v.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_round_trip_and_trailing_bytes_are_refused() {
        let m = KvMessage::Write(Entry {
            key: b"k".to_vec(),
            version: Version {
                stamp: 5,
                origin: 9,
            },
            value: Some(b"v".to_vec()),
        });
        let bytes = m.encode();
        assert_eq!(KvMessage::decode(&bytes, 1000), Ok(m));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            KvMessage::decode(&longer, 1000),
            Err(DecodeError::Malformed)
        );
        assert!(matches!(
            KvMessage::decode(&bytes, 2),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = KvMessage::decode(&bytes, 1400);
        }

        #[test]
        fn a_huge_declared_length_is_refused(n in 1_000_000u64..u64::MAX / 2) {
            // Variant `Want`, session 0, then a vector length far beyond the input.
            let mut bytes = vec![6u8, 0];
            let mut n = n;
            while n >= 0x80 { bytes.push((n as u8) | 0x80); n >>= 7; }
            bytes.push(n as u8);
            prop_assert_eq!(KvMessage::decode(&bytes, 1400), Err(DecodeError::Malformed));
        }
    }
}
