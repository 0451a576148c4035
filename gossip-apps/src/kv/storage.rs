//! Where the key-value store keeps its entries between restarts: the
//! [`Storage`] trait, and [`MemoryStorage`] for tests and simulations.
//!
//! The state machine holds every entry in memory and writes through to the
//! storage, in batches (one per message applied), so a storage with
//! transactions commits each batch atomically. The redb storage lives
//! behind the `redb` feature ([`RedbStorage`](super::RedbStorage)).

use std::collections::BTreeMap;

use super::entry::Entry;
use super::version::Version;

/// One change to the stored entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// Stores `entry` under its key, replacing what was there.
    Put(Entry),
    /// Forgets the key (a collected tombstone).
    Remove(Vec<u8>),
    /// Keeps the guard of a tombstone collected early: its key hash and
    /// version, replacing the hash's guard.
    Guard {
        /// The key's hash.
        hash: u64,
        /// The collected tombstone's version.
        version: Version,
    },
    /// Forgets the guard of a key hash (expired, or a newer write came).
    Unguard(u64),
}

/// Persistent storage of a store's entries and its few bookkeeping values.
pub trait Storage {
    /// What a failed storage operation reports.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Every stored entry, in any order (called once, at start).
    fn load(&mut self) -> Result<Vec<Entry>, Self::Error>;

    /// Every stored guard of a tombstone collected early, as
    /// `(key hash, version)`, in any order (called once, at start).
    fn load_guards(&mut self) -> Result<Vec<(u64, Version)>, Self::Error>;

    /// Applies `ops` in order, all or nothing.
    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), Self::Error>;

    /// A bookkeeping value stored under `name`.
    fn meta(&mut self, name: &str) -> Result<Option<u64>, Self::Error>;

    /// Stores a bookkeeping value under `name`.
    fn set_meta(&mut self, name: &str, value: u64) -> Result<(), Self::Error>;
}

/// Storage in memory: what a simulated node keeps across a simulated
/// restart (clone it before the crash, hand the clone to the new life).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryStorage {
    entries: BTreeMap<Vec<u8>, Entry>,
    guards: BTreeMap<u64, Version>,
    meta: BTreeMap<String, u64>,
}

impl MemoryStorage {
    /// Empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored entries, tombstones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Memory storage never fails.
#[derive(Debug, thiserror::Error)]
#[error("memory storage does not fail")]
pub struct Infallible;

impl Storage for MemoryStorage {
    type Error = Infallible;

    fn load(&mut self) -> Result<Vec<Entry>, Infallible> {
        Ok(self.entries.values().cloned().collect())
    }

    fn load_guards(&mut self) -> Result<Vec<(u64, Version)>, Infallible> {
        Ok(self.guards.iter().map(|(h, v)| (*h, *v)).collect())
    }

    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), Infallible> {
        for op in ops {
            match op {
                StoreOp::Put(entry) => {
                    self.entries.insert(entry.key.clone(), entry.clone());
                }
                StoreOp::Remove(key) => {
                    self.entries.remove(key);
                }
                StoreOp::Guard { hash, version } => {
                    self.guards.insert(*hash, *version);
                }
                StoreOp::Unguard(hash) => {
                    self.guards.remove(hash);
                }
            }
        }
        Ok(())
    }

    fn meta(&mut self, name: &str) -> Result<Option<u64>, Infallible> {
        Ok(self.meta.get(name).copied())
    }

    fn set_meta(&mut self, name: &str, value: u64) -> Result<(), Infallible> {
        self.meta.insert(name.to_string(), value);
        Ok(())
    }
}
