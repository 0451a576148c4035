//! A replicated key-value store over gossip.
//!
//! Keys and values are bytes ([`KvConfig`] bounds them). Every write and
//! deletion carries a [`Version`]: a hybrid logical clock stamp (wall
//! milliseconds and a counter, never going backwards, ahead of every stamp
//! seen) and the writer's tag as tie-break, so the last writer wins and
//! concurrent writes converge on the same value on every node. A deletion
//! is a tombstone with its own version.
//!
//! How changes travel:
//! - a fresh write is applied at once on the writer (read your writes)
//!   and broadcast through the node's strategy ([`KvMessage::Write`]);
//! - anti-entropy repairs what rumors miss: every
//!   [`KvConfig::sync_interval`] a node sends one random live member the
//!   root of a digest tree over key hashes (16 children per node, four
//!   levels). Equal roots end the exchange, so an idle cluster pays two
//!   small frames per node per interval. Otherwise the pair descends only
//!   into differing children and compares the entries of differing leaves
//!   by digest, so a repair costs in proportion to the difference;
//! - a node that starts with an empty store, or restarts, first catches up
//!   on the entries whose versions are newer than its last contact (less
//!   the clock skew bound), in pages of one frame each, over
//!   [`KvConfig::catch_up_streams`] key-hash ranges pulled in parallel
//!   from up to [`KvConfig::catch_up_peers`] members. It reads and writes
//!   meanwhile: it never waits for a whole state.
//!
//! Tombstones are collected after [`KvConfig::tombstone_grace`]. A node
//! without an entry for a key refuses entries for it older than the grace
//! (they may be deleted keys whose tombstones are gone) and answers the
//! sender with a newer tombstone, so such stragglers converge to deleted;
//! a node that was out of touch longer than the grace drops its own
//! entries older than the grace and pulls again what the others still
//! hold. No deleted key comes back; the price is that a write nobody
//! received for a whole grace period is lost.
//!
//! Storage: the state machine holds every entry in memory and writes each
//! applied batch through a [`Storage`]. [`MemoryStorage`] serves tests and
//! the simulator; `RedbStorage` (feature `redb`) keeps the store in a
//! redb database. The database stays behind a feature so that the state
//! machine remains sans-IO: it compiles, tests and simulates without
//! files, and a host chooses where the bytes live.
//!
//! Every peer message may lie: decoding is bounded by
//! [`KvConfig::max_message_len`], entries are checked against the size
//! limits and the clock skew bound, answers are taken only inside the
//! exchange or catch-up request they answer, and what a node ships to one
//! peer is bounded by [`KvConfig::reply_bytes_per_s`].

mod config;
mod entry;
mod hash;
mod index;
#[cfg(feature = "redb")]
mod redb_storage;
mod storage;
mod store;
mod sync;
mod version;
mod wire;

pub use config::{KvConfig, KvConfigError, KvError, KvEvent, KvStats};
pub use entry::Entry;
pub use hash::{key_hash, node_tag};
#[cfg(feature = "redb")]
pub use redb_storage::{RedbError, RedbStorage};
pub use storage::{Infallible, MemoryStorage, Storage, StoreOp};
pub use store::{Kv, KvSetupError};
pub use version::{Hlc, Version, WallClock};
pub use wire::{Cursor, DecodeError, KvMessage};

#[cfg(test)]
mod tests;
