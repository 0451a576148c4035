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
//! Tombstones are collected in one of two ways.
//!
//! **Early, by acknowledgement.** The deleter remembers which members were
//! alive at the deletion (at most [`KvConfig::max_tracked_tombstones`]
//! deletions; beyond it the grace alone applies). Every node that applies
//! a tombstone from a peer acknowledges it to its deleter
//! ([`KvMessage::Ack`], batched every [`KvConfig::ack_interval`], at most
//! [`KvConfig::ack_frames`] frames per destination, from an outbox of at
//! most [`KvConfig::max_pending_acks`] ids); the deleter asks members that
//! have not acknowledged again every [`KvConfig::ack_retry`]
//! ([`KvMessage::AckRequest`]). Members that left stop being awaited; if
//! one dies before acknowledging, the tombstone waits for the grace. Once
//! every member alive at the deletion that is still a member has
//! acknowledged, the deleter collects the tombstone and sends a
//! [`KvMessage::Collect`] notice to them. A notice counts only from the
//! deleter itself (the tombstone's version names its tag); it removes what
//! the receiver holds for the key at or below the deletion's version and
//! leaves a *guard*: the key's hash and the deletion's version, outside
//! the digest tree, persisted, until the grace. An entry for a key not held
//! that is not newer than its guard is refused, and its sender gets the
//! collected tombstone back. A node that still holds the tombstone itself
//! (it missed the notice, or was away) meets a collected node in
//! anti-entropy; the collected node asks it to acknowledge, the deleter
//! answers the acknowledgement with a notice, and both agree again. If the
//! deleter is gone, the collected node takes the tombstone back instead,
//! so no digest difference outlives the exchange.
//!
//! **After [`KvConfig::tombstone_grace`].** Tombstones and guards older
//! than the grace are collected everywhere, raising a per-bucket horizon
//! ([`KvConfig::horizon_buckets`]). A node without an entry for a key
//! refuses entries for it older than the grace (they may be deleted keys
//! whose tombstones are gone) and answers the sender with a newer
//! tombstone, so such stragglers converge to deleted; a node that was out
//! of touch longer than the grace drops its own entries older than the
//! grace and pulls again what the others still hold.
//!
//! Why no deleted key comes back. Until the grace, every node that applied
//! the deletion refuses older values for the key: with the tombstone, or,
//! once collected, with the guard, which refuses exactly what the
//! tombstone refused and answers with it, so an old value brought back by
//! a member that was away, partitioned, restarted or not yet joined at
//! the deletion is turned back into the deletion wherever it arrives, and
//! the acknowledgements decide only when the tombstone stops being
//! *pushed* by anti-entropy. Early collection needs them so that a member
//! that was alive at the deletion and never applied it does not keep an
//! older value that nobody pushes against: every such member holds the
//! tombstone before anyone collects it. A member that was not alive at the
//! deletion may return with an older value; its first exchange with any
//! node holding the tombstone or the guard converts it. After the grace,
//! the grace rules above take over: the guard's end raises the bucket
//! horizon, as a tombstone's collection does. The notice cannot be forged
//! by another member (only the deleter's own frames count, and the deleter
//! could delete the key anyway), and a notice, request or acknowledgement
//! for something not held is ignored, so lying frames cost bounded work
//! and no memory beyond the outboxes. The price: a write nobody received
//! for a whole grace period is lost, and keys whose 64-bit hashes collide
//! share a guard (an older write of the other key is then refused until
//! the grace).
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
mod gc;
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
pub use gc::TombstoneId;
pub use hash::{key_hash, node_tag};
#[cfg(feature = "redb")]
pub use redb_storage::{RedbError, RedbStorage};
pub use storage::{Infallible, MemoryStorage, Storage, StoreOp};
pub use store::{Kv, KvSetupError};
pub use version::{Hlc, Version, WallClock};
pub use wire::{Cursor, DecodeError, KvMessage};

#[cfg(test)]
mod tests;
