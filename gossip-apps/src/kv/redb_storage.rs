//! [`RedbStorage`]: the store's entries in a redb database file.

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};

use super::entry::Entry;
use super::storage::{Storage, StoreOp};
use super::version::Version;

/// Key bytes to the postcard encoding of the whole [`Entry`].
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv_entries");
/// Guards of tombstones collected early: key hash to `(stamp, origin)`.
const GUARDS: TableDefinition<u64, (u64, u64)> = TableDefinition::new("kv_guards");
/// Bookkeeping values.
const META: TableDefinition<&str, u64> = TableDefinition::new("kv_meta");

/// What a redb storage operation can report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedbError {
    /// The database failed.
    #[error(transparent)]
    Database(#[from] Box<redb::Error>),
    /// A stored row does not decode (the file was changed by something else).
    #[error("a stored entry does not decode")]
    Corrupt,
}

fn db<E: Into<redb::Error>>(e: E) -> RedbError {
    RedbError::Database(Box::new(e.into()))
}

/// Entries in a redb database: every batch one durable transaction, so a
/// process killed at any point restarts with the batches it committed.
pub struct RedbStorage {
    db: Database,
}

impl std::fmt::Debug for RedbStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStorage").finish_non_exhaustive()
    }
}

impl RedbStorage {
    /// Opens the database at `path`, creating it and its tables if needed.
    pub fn open(path: &Path) -> Result<Self, RedbError> {
        let database = Database::create(path).map_err(db)?;
        let txn = database.begin_write().map_err(db)?;
        txn.open_table(ENTRIES).map_err(db)?;
        txn.open_table(META).map_err(db)?;
        txn.open_table(GUARDS).map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(Self { db: database })
    }
}

impl Storage for RedbStorage {
    type Error = RedbError;

    fn load(&mut self) -> Result<Vec<Entry>, RedbError> {
        let txn = self.db.begin_read().map_err(db)?;
        let table = txn.open_table(ENTRIES).map_err(db)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db)? {
            let (_, value) = row.map_err(db)?;
            let entry: Entry =
                postcard::from_bytes(value.value()).map_err(|_| RedbError::Corrupt)?;
            out.push(entry);
        }
        Ok(out)
    }

    fn load_guards(&mut self) -> Result<Vec<(u64, Version)>, RedbError> {
        let txn = self.db.begin_read().map_err(db)?;
        let table = txn.open_table(GUARDS).map_err(db)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db)? {
            let (hash, value) = row.map_err(db)?;
            let (stamp, origin) = value.value();
            out.push((hash.value(), Version { stamp, origin }));
        }
        Ok(out)
    }

    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), RedbError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut table = txn.open_table(ENTRIES).map_err(db)?;
            let mut guards = txn.open_table(GUARDS).map_err(db)?;
            for op in ops {
                match op {
                    StoreOp::Put(entry) => {
                        let bytes = postcard::to_allocvec(entry).map_err(|_| RedbError::Corrupt)?;
                        table
                            .insert(entry.key.as_slice(), bytes.as_slice())
                            .map_err(db)?;
                    }
                    StoreOp::Remove(key) => {
                        table.remove(key.as_slice()).map_err(db)?;
                    }
                    StoreOp::Guard { hash, version } => {
                        guards
                            .insert(*hash, (version.stamp, version.origin))
                            .map_err(db)?;
                    }
                    StoreOp::Unguard(hash) => {
                        guards.remove(*hash).map_err(db)?;
                    }
                }
            }
        }
        txn.commit().map_err(db)
    }

    fn meta(&mut self, name: &str) -> Result<Option<u64>, RedbError> {
        let txn = self.db.begin_read().map_err(db)?;
        let table = txn.open_table(META).map_err(db)?;
        Ok(table.get(name).map_err(db)?.map(|v| v.value()))
    }

    fn set_meta(&mut self, name: &str, value: u64) -> Result<(), RedbError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut table = txn.open_table(META).map_err(db)?;
            table.insert(name, value).map_err(db)?;
        }
        txn.commit().map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Version;

    #[test]
    fn entries_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("gossip-kv-redb-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let entry = |k: &str, v: Option<&str>| Entry {
            key: k.as_bytes().to_vec(),
            version: Version {
                stamp: 9,
                origin: 1,
            },
            value: v.map(|v| v.as_bytes().to_vec()),
        };
        {
            let mut s = RedbStorage::open(&dir).unwrap();
            s.apply(&[
                StoreOp::Put(entry("a", Some("1"))),
                StoreOp::Put(entry("b", None)),
                StoreOp::Put(entry("c", Some("3"))),
                StoreOp::Remove(b"c".to_vec()),
                StoreOp::Guard {
                    hash: 7,
                    version: Version {
                        stamp: 3,
                        origin: 4,
                    },
                },
                StoreOp::Guard {
                    hash: 8,
                    version: Version {
                        stamp: 5,
                        origin: 6,
                    },
                },
                StoreOp::Unguard(8),
            ])
            .unwrap();
            s.set_meta("m", 42).unwrap();
        }
        let mut s = RedbStorage::open(&dir).unwrap();
        let mut loaded = s.load().unwrap();
        loaded.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(loaded, vec![entry("a", Some("1")), entry("b", None)]);
        assert_eq!(s.meta("m").unwrap(), Some(42));
        assert_eq!(
            s.load_guards().unwrap(),
            vec![(
                7,
                Version {
                    stamp: 3,
                    origin: 4
                }
            )]
        );
        assert_eq!(s.meta("none").unwrap(), None);
        drop(s);
        let _ = std::fs::remove_file(&dir);
    }
}
