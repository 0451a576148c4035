//! One key's state: its value or tombstone and the version that set it.

use serde::{Deserialize, Serialize};

use super::hash::{entry_digest, key_hash};
use super::version::Version;

/// A key's stored state: a value, or a tombstone (`value: None`) that
/// remembers the deletion until it is collected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The key's bytes.
    pub key: Vec<u8>,
    /// The version of the write or deletion.
    pub version: Version,
    /// The value, or `None` for a deletion.
    pub value: Option<Vec<u8>>,
}

impl Entry {
    /// Whether the entry is a deletion.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// The key's place in the digest tree.
    pub fn hash(&self) -> u64 {
        key_hash(&self.key)
    }

    /// A digest of key, version and value: two nodes hold the same state
    /// for a key when the digests are equal.
    pub fn digest(&self) -> u64 {
        entry_digest(&self.key, self.version, self.value.as_deref())
    }

    /// Whether this entry wins over `other` for the same key: the later
    /// version, and on equal versions (only a lying writer makes them) the
    /// larger digest, so that every node picks the same one.
    pub fn supersedes(&self, other: &Entry) -> bool {
        (self.version, self.digest()) > (other.version, other.digest())
    }

    /// Bytes of key and value, the data a write carries.
    pub fn data_len(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, Vec::len)
    }
}
