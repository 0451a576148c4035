//! The set of keys a node holds, its text format, and the handle a running
//! program swaps it through.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use thiserror::Error;

use crate::key::{Key, KeyId, KeyParseError};

/// The keys a node seals and opens with: the primary seals, every key
/// (the primary included) opens.
///
/// Rotation without downtime is three steps, each finished on every node
/// before the next starts: [`add`](Self::add) the new key, make it
/// primary with [`set_primary`](Self::set_primary), [`remove`](Self::remove)
/// the old one. At every moment each node opens what every other seals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyring {
    /// Never empty; the first key is the primary.
    keys: Vec<Key>,
}

/// Why a keyring change was refused; the ring is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The key is already in the ring.
    #[error("key {0} is already in the keyring")]
    Duplicate(KeyId),
    /// No key with this id is in the ring.
    #[error("no key {0} in the keyring")]
    Unknown(KeyId),
    /// The primary key cannot be removed: make another key primary first.
    #[error("key {0} is the primary; make another key primary before removing it")]
    RemovePrimary(KeyId),
}

/// Why a keyring file could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyringFileError {
    /// The file could not be read.
    #[error("reading keyring {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A line is not a key.
    #[error("keyring line {line}: {error}")]
    BadKey {
        /// One-based line number.
        line: usize,
        /// What is wrong with it.
        error: KeyParseError,
    },
    /// A line repeats a key of an earlier line.
    #[error("keyring line {line}: key {id} repeats line {first}")]
    Duplicate {
        /// One-based line number of the repetition.
        line: usize,
        /// One-based line number of the first occurrence.
        first: usize,
        /// The key's id.
        id: KeyId,
    },
    /// No line holds a key.
    #[error("the keyring holds no key (one hex key per line, the first is primary)")]
    Empty,
}

impl Keyring {
    /// A ring of one key, its primary.
    pub fn new(primary: Key) -> Self {
        Self {
            keys: vec![primary],
        }
    }

    /// A ring of one freshly generated key.
    pub fn generate() -> Result<Self, crate::RandomError> {
        Ok(Self::new(Key::generate()?))
    }

    /// The key that seals.
    pub fn primary(&self) -> &Key {
        &self.keys[0]
    }

    /// Every key, primary first.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Every key's id, primary first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(Key::id).collect()
    }

    /// Adds a key that opens but does not seal (rotation step 1).
    pub fn add(&mut self, key: Key) -> Result<(), KeyringError> {
        if self.keys.contains(&key) {
            return Err(KeyringError::Duplicate(key.id()));
        }
        self.keys.push(key);
        Ok(())
    }

    /// Makes the key with this id the one that seals (rotation step 2).
    /// The former primary keeps opening.
    pub fn set_primary(&mut self, id: KeyId) -> Result<(), KeyringError> {
        let at = self
            .keys
            .iter()
            .position(|k| k.id() == id)
            .ok_or(KeyringError::Unknown(id))?;
        // Keep the order of the others, so a key file written back lists
        // them as the operator did.
        let key = self.keys.remove(at);
        self.keys.insert(0, key);
        Ok(())
    }

    /// Removes a key that is not the primary (rotation step 3) and
    /// returns it.
    pub fn remove(&mut self, id: KeyId) -> Result<Key, KeyringError> {
        if self.primary().id() == id {
            return Err(KeyringError::RemovePrimary(id));
        }
        let at = self
            .keys
            .iter()
            .position(|k| k.id() == id)
            .ok_or(KeyringError::Unknown(id))?;
        Ok(self.keys.remove(at))
    }

    /// Parses the key file format: one hex key per line, the first is
    /// primary; blank lines and everything after a `#` are ignored.
    pub fn from_lines(text: &str) -> Result<Self, KeyringFileError> {
        let mut keys: Vec<(usize, Key)> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let content = line.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let key = Key::from_hex(content).map_err(|error| KeyringFileError::BadKey {
                line: line_no,
                error,
            })?;
            if let Some((first, _)) = keys.iter().find(|(_, k)| *k == key) {
                return Err(KeyringFileError::Duplicate {
                    line: line_no,
                    first: *first,
                    id: key.id(),
                });
            }
            keys.push((line_no, key));
        }
        if keys.is_empty() {
            return Err(KeyringFileError::Empty);
        }
        Ok(Self {
            keys: keys.into_iter().map(|(_, k)| k).collect(),
        })
    }

    /// Reads a key file (see [`from_lines`](Self::from_lines)).
    pub fn from_file(path: &Path) -> Result<Self, KeyringFileError> {
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            KeyringFileError::Io {
                path: path.to_path_buf(),
                source,
            }
        })?);
        Self::from_lines(&text)
    }

    /// The ring in the key file format, primary first, wiped from memory
    /// when dropped.
    pub fn to_lines(&self) -> zeroize::Zeroizing<String> {
        let mut lines = zeroize::Zeroizing::new(String::with_capacity(65 * self.keys.len()));
        for key in &self.keys {
            lines.push_str(&key.to_hex());
            lines.push('\n');
        }
        lines
    }
}

/// A keyring shared between a running [`Sealed`](crate::Sealed) transport
/// and whatever changes it (a signal handler reloading the key file, an
/// admin command), so keys change without a restart.
///
/// Clones share one ring. Each operation holds the lock only while it
/// runs, never across an `.await`.
#[derive(Clone, Debug)]
pub struct KeyringHandle {
    ring: Arc<RwLock<Keyring>>,
}

impl KeyringHandle {
    /// A handle to `ring`.
    pub fn new(ring: Keyring) -> Self {
        Self {
            ring: Arc::new(RwLock::new(ring)),
        }
    }

    /// Runs `f` on the ring, read-only.
    pub fn read<R>(&self, f: impl FnOnce(&Keyring) -> R) -> R {
        // A panic elsewhere while holding the lock cannot leave a ring
        // half-changed (every change is one Vec operation), so a poisoned
        // lock still holds a valid ring.
        f(&self.ring.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Runs `f` on the ring, which it may change.
    pub fn update<R>(&self, f: impl FnOnce(&mut Keyring) -> R) -> R {
        f(&mut self.ring.write().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the whole ring (a reloaded key file) and returns the old one.
    pub fn replace(&self, ring: Keyring) -> Keyring {
        self.update(|current| std::mem::replace(current, ring))
    }

    /// A copy of the ring as it is now.
    pub fn snapshot(&self) -> Keyring {
        self.read(Keyring::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Key {
        Key::from_bytes([byte; 32])
    }

    #[test]
    fn rotation_steps_and_their_refusals() {
        let mut ring = Keyring::new(key(1));
        assert_eq!(ring.add(key(1)), Err(KeyringError::Duplicate(key(1).id())));
        ring.add(key(2)).unwrap();
        assert_eq!(ring.primary(), &key(1));
        assert_eq!(
            ring.set_primary(key(3).id()),
            Err(KeyringError::Unknown(key(3).id()))
        );
        ring.set_primary(key(2).id()).unwrap();
        assert_eq!(ring.primary(), &key(2));
        assert_eq!(
            ring.remove(key(2).id()),
            Err(KeyringError::RemovePrimary(key(2).id()))
        );
        assert_eq!(ring.remove(key(1).id()).unwrap(), key(1));
        assert_eq!(ring.keys(), &[key(2)]);
    }

    #[test]
    fn file_format_comments_blank_lines_and_errors_name_the_line() {
        let text = format!(
            "# cluster keys\n\n{}  # new primary\n  {}\n",
            key(7).to_hex().as_str(),
            key(8).to_hex().as_str()
        );
        let ring = Keyring::from_lines(&text).unwrap();
        assert_eq!(ring.ids(), vec![key(7).id(), key(8).id()]);
        assert_eq!(Keyring::from_lines(&ring.to_lines()).unwrap(), ring);

        let bad = format!("{}\n# ok\nnot-a-key\n", key(7).to_hex().as_str());
        let err = Keyring::from_lines(&bad).unwrap_err();
        assert!(
            matches!(err, KeyringFileError::BadKey { line: 3, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("line 3"), "{err}");

        let dup = format!(
            "{}\n\n{}\n",
            key(7).to_hex().as_str(),
            key(7).to_hex().as_str()
        );
        assert!(matches!(
            Keyring::from_lines(&dup),
            Err(KeyringFileError::Duplicate {
                line: 3,
                first: 1,
                ..
            })
        ));
        assert!(matches!(
            Keyring::from_lines("# nothing\n\n"),
            Err(KeyringFileError::Empty)
        ));
    }

    #[test]
    fn handle_clones_share_one_ring() {
        let handle = KeyringHandle::new(Keyring::new(key(1)));
        let other = handle.clone();
        other.update(|ring| ring.add(key(2))).unwrap();
        assert_eq!(handle.read(|ring| ring.keys().len()), 2);
        let old = handle.replace(Keyring::new(key(3)));
        assert_eq!(old.keys().len(), 2);
        assert_eq!(other.snapshot().primary(), &key(3));
    }
}
