//! One sealing key and its public fingerprint.

use std::fmt;

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::OsRng;
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

/// Bytes in a key.
pub const KEY_LEN: usize = 32;

/// Bytes of the key id carried in every sealed frame.
pub const KEY_ID_LEN: usize = 2;

/// Domain separation for the key id hash, so the id of a key is never the
/// hash some other protocol computes over the same 32 bytes.
const KEY_ID_DOMAIN: &[u8] = b"gossip-seal key id v1\0";

/// The public fingerprint of a [`Key`]: the first four bytes of a SHA-256
/// over the key. Frames carry it so a receiver tries only the key that
/// sealed them, and operators can tell keys apart in logs without seeing
/// them. It is not secret, and not unique: two keys may share an id (one
/// chance in 2^32), in which case opening tries both.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A 256-bit ChaCha20-Poly1305 key.
///
/// Its `Debug` shows only the [`KeyId`]; the secret leaves only through
/// [`to_hex`](Self::to_hex), which a program calls to write a key file.
/// Its bytes are wiped from memory when it is dropped (so are the
/// ciphers made from it, by `chacha20poly1305` itself).
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    bytes: [u8; KEY_LEN],
    id: KeyId,
}

/// The operating system's random generator failed.
#[derive(Debug, Error)]
#[error("the operating system's random generator failed: {0}")]
pub struct RandomError(String);

impl RandomError {
    pub(crate) fn new(error: impl fmt::Display) -> Self {
        Self(error.to_string())
    }
}

/// Fills `buf` from the operating system's random generator.
pub(crate) fn os_random(buf: &mut [u8]) -> Result<(), RandomError> {
    OsRng.try_fill_bytes(buf).map_err(RandomError::new)
}

/// Why a line is not a key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyParseError {
    /// The text is not 64 hex digits long.
    #[error("a key is {expected} hex digits, got {found} characters")]
    Length {
        /// Hex digits a key has.
        expected: usize,
        /// Characters found.
        found: usize,
    },
    /// A character is not a hex digit.
    #[error("character {position} ({found:?}) is not a hex digit")]
    NotHex {
        /// One-based position of the character.
        position: usize,
        /// The character.
        found: char,
    },
}

impl Key {
    /// A key of the given bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let mut input = Zeroizing::new(Vec::with_capacity(KEY_ID_DOMAIN.len() + KEY_LEN));
        input.extend_from_slice(KEY_ID_DOMAIN);
        input.extend_from_slice(&bytes);
        let hash = ring::digest::digest(&ring::digest::SHA256, &input);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&hash.as_ref()[..KEY_ID_LEN]);
        Self {
            bytes,
            id: KeyId(id),
        }
    }

    /// A new key from the operating system's random generator.
    pub fn generate() -> Result<Self, RandomError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        os_random(bytes.as_mut())?;
        Ok(Self::from_bytes(*bytes))
    }

    /// Parses 64 hex digits (either case), surrounding whitespace ignored.
    pub fn from_hex(text: &str) -> Result<Self, KeyParseError> {
        let text = text.trim();
        if text.len() != 2 * KEY_LEN || !text.is_ascii() {
            return Err(KeyParseError::Length {
                expected: 2 * KEY_LEN,
                found: text.chars().count(),
            });
        }
        let digit = |position: usize, c: u8| {
            (c as char)
                .to_digit(16)
                .map(|d| d as u8)
                .ok_or(KeyParseError::NotHex {
                    position: position + 1,
                    found: c as char,
                })
        };
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
            bytes[i] = digit(2 * i, pair[0])? << 4 | digit(2 * i + 1, pair[1])?;
        }
        Ok(Self::from_bytes(*bytes))
    }

    /// The key as 64 lowercase hex digits: the line a key file holds,
    /// wiped from memory when dropped.
    pub fn to_hex(&self) -> Zeroizing<String> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = Zeroizing::new(String::with_capacity(2 * KEY_LEN));
        for byte in self.bytes {
            text.push(DIGITS[usize::from(byte >> 4)] as char);
            text.push(DIGITS[usize::from(byte & 0xf)] as char);
        }
        text
    }

    /// The key's public fingerprint.
    pub fn id(&self) -> KeyId {
        self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key {{ id: {}, .. }}", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_debug_hides_the_secret() {
        let key = Key::generate().unwrap();
        let hex = key.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(Key::from_hex(&hex).unwrap(), key);
        assert_eq!(Key::from_hex(&hex.to_uppercase()).unwrap(), key);
        let debug = format!("{key:?}");
        assert!(!debug.contains(&hex[..8]), "{debug}");
        assert!(debug.contains(&key.id().to_string()));
    }

    #[test]
    fn two_generated_keys_differ() {
        assert_ne!(Key::generate().unwrap(), Key::generate().unwrap());
    }

    #[test]
    fn bad_hex_is_a_typed_error() {
        assert_eq!(
            Key::from_hex("abc"),
            Err(KeyParseError::Length {
                expected: 64,
                found: 3
            })
        );
        let mut text = "0".repeat(64);
        text.replace_range(9..10, "g");
        assert_eq!(
            Key::from_hex(&text),
            Err(KeyParseError::NotHex {
                position: 10,
                found: 'g'
            })
        );
        // Multi-byte characters count as characters, not bytes.
        assert!(matches!(
            Key::from_hex(&"é".repeat(32)),
            Err(KeyParseError::Length { found: 32, .. })
        ));
    }
}
