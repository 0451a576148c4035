//! The sealed frame format.
//!
//! ```text
//! +---------+--------+----------+--------------------------+---------+
//! | version | key id | nonce    | ciphertext (gossip frame) | tag     |
//! | 1 byte  | 2      | 12 bytes | as long as the frame      | 16      |
//! +---------+--------+----------+--------------------------+---------+
//! ```
//!
//! The AEAD is ChaCha20-Poly1305. Its associated data is the version, the
//! key id and the cluster label, so a frame re-labelled, re-versioned or
//! moved to another cluster that shares the key fails to open. The whole
//! gossip frame, header included, is the plaintext, so the sender, the
//! generation and the label in the header are authenticated too.
//!
//! Nonces come from one sequence per process: 32 bits drawn from the
//! operating system when the process first seals, then a 64-bit counter
//! that also starts at a random value. Within a process no nonce repeats
//! (the counter does not wrap in any feasible number of frames); across
//! restarts, and across the nodes that share a key, two lives repeat one
//! only if their 32-bit prefixes are equal and their counter ranges
//! overlap, about 2^-62 per pair of lives for a billion frames each. The
//! nonce needs nothing persisted, and at 12 bytes (not XChaCha's 24) the
//! seal keeps an idle cluster under 120 bytes per node per second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use thiserror::Error;

use crate::key::{os_random, KeyId, RandomError, KEY_ID_LEN};
use crate::keyring::Keyring;

/// The first byte of every sealed frame. Its top bit is set, so it never
/// equals a plaintext gossip frame's protocol version (small numbers), and
/// a receiver tells an unsealed frame from a sealed one of another version.
pub const SEAL_VERSION: u8 = 0x81;

/// Bytes of the nonce.
pub const NONCE_LEN: usize = 12;

/// Bytes of the authentication tag.
pub const TAG_LEN: usize = 16;

/// Bytes before the ciphertext: version, key id, nonce.
pub const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

/// Bytes sealing adds to a frame: a node's `max_message_size` must leave
/// this much room under the datagram budget.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

const _: () = assert!(OVERHEAD == 31);

/// The process's nonce sequence: a random prefix and a counter.
struct NonceSequence {
    prefix: [u8; 4],
    next: AtomicU64,
}

static NONCES: OnceLock<NonceSequence> = OnceLock::new();

/// The next nonce of this process's sequence.
fn next_nonce() -> Result<[u8; NONCE_LEN], RandomError> {
    let sequence = match NONCES.get() {
        Some(sequence) => sequence,
        None => {
            let mut prefix = [0u8; 4];
            os_random(&mut prefix)?;
            let mut start = [0u8; 8];
            os_random(&mut start)?;
            // Two threads may draw at once; one sequence wins and both use it.
            let _ = NONCES.set(NonceSequence {
                prefix,
                next: AtomicU64::new(u64::from_le_bytes(start)),
            });
            NONCES.get().expect("just set")
        }
    };
    let counter = sequence.next.fetch_add(1, Ordering::Relaxed);
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..4].copy_from_slice(&sequence.prefix);
    nonce[4..].copy_from_slice(&counter.to_le_bytes());
    Ok(nonce)
}

/// Why a sealed frame was refused. Each leaves the receiver unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Shorter than the seal's header and tag.
    #[error("frame of {len} bytes is shorter than the {OVERHEAD}-byte seal")]
    Truncated {
        /// The frame's length.
        len: usize,
    },
    /// Not sealed: a plaintext gossip frame, or any bytes that do not start
    /// like a sealed frame.
    #[error("frame is not sealed (first byte {first:#04x})")]
    Unsealed {
        /// The frame's first byte.
        first: u8,
    },
    /// Sealed by a version of this format this build does not speak.
    #[error("sealed frame of unknown version {0:#04x}")]
    UnknownVersion(u8),
    /// Sealed with a key this ring does not hold.
    #[error("frame sealed with key {0}, which is not in the keyring")]
    UnknownKey(KeyId),
    /// Did not authenticate under the key it names: altered on the way,
    /// forged, or sealed for another cluster label.
    #[error("frame sealed with key {0} fails authentication (tampered, forged or another cluster label)")]
    Forged(KeyId),
}

/// Why a frame could not be sealed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SealError {
    /// No nonce could be drawn.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The cipher refused (a frame far beyond any datagram).
    #[error("the cipher refused a frame of {0} bytes")]
    Cipher(usize),
}

/// The associated data: everything outside the ciphertext that must not
/// change, plus the label that says which cluster the frame is for.
fn associated_data(version: u8, id: KeyId, label: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(1 + KEY_ID_LEN + label.len());
    ad.push(version);
    ad.extend_from_slice(&id.0);
    ad.extend_from_slice(label);
    ad
}

impl Keyring {
    /// Seals `frame` for the cluster `label` with the primary key.
    pub fn seal(&self, label: &[u8], frame: &[u8]) -> Result<Vec<u8>, SealError> {
        let key = self.primary();
        let nonce = next_nonce()?;
        let mut out = Vec::with_capacity(frame.len() + OVERHEAD);
        out.push(SEAL_VERSION);
        out.extend_from_slice(&key.id().0);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(frame);
        let cipher = ChaCha20Poly1305::new(key.bytes().into());
        let tag = cipher
            .encrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                &associated_data(SEAL_VERSION, key.id(), label),
                &mut out[HEADER_LEN..],
            )
            .map_err(|_| SealError::Cipher(frame.len()))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens a sealed frame for the cluster `label`, returning the gossip
    /// frame. Copies the input once; see [`open_in_place`](Self::open_in_place).
    pub fn open(&self, label: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        // Check the cheap refusals before copying anything.
        parse_header(sealed)?;
        let mut buf = sealed.to_vec();
        self.open_in_place(label, &mut buf)?;
        Ok(buf)
    }

    /// Opens a sealed frame held in `buf`, leaving the gossip frame in it.
    /// Allocates nothing beyond the label's associated data; on error `buf`
    /// holds the bytes it held (so a caller may log or count them).
    ///
    /// Cost for untrusted input: a header check, then one authentication
    /// pass per ring key with the frame's key id (one, unless ids collide).
    pub fn open_in_place(&self, label: &[u8], buf: &mut Vec<u8>) -> Result<(), OpenError> {
        let (id, nonce) = parse_header(buf)?;
        let ad = associated_data(SEAL_VERSION, id, label);
        let body_end = buf.len() - TAG_LEN;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&buf[body_end..]);
        let mut known = false;
        for key in self.keys().iter().filter(|k| k.id() == id) {
            known = true;
            let cipher = ChaCha20Poly1305::new(key.bytes().into());
            // The tag is checked before anything is decrypted, so a failed
            // attempt leaves the ciphertext intact for the next key.
            if cipher
                .decrypt_in_place_detached(
                    Nonce::from_slice(&nonce),
                    &ad,
                    &mut buf[HEADER_LEN..body_end],
                    (&tag).into(),
                )
                .is_ok()
            {
                buf.truncate(body_end);
                buf.drain(..HEADER_LEN);
                return Ok(());
            }
        }
        Err(if known {
            OpenError::Forged(id)
        } else {
            OpenError::UnknownKey(id)
        })
    }
}

/// Checks length and version; returns the key id and nonce.
fn parse_header(sealed: &[u8]) -> Result<(KeyId, [u8; NONCE_LEN]), OpenError> {
    let Some(&first) = sealed.first() else {
        return Err(OpenError::Truncated { len: 0 });
    };
    if first & 0x80 == 0 {
        return Err(OpenError::Unsealed { first });
    }
    if first != SEAL_VERSION {
        return Err(OpenError::UnknownVersion(first));
    }
    if sealed.len() < OVERHEAD {
        return Err(OpenError::Truncated { len: sealed.len() });
    }
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&sealed[1..1 + KEY_ID_LEN]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[1 + KEY_ID_LEN..HEADER_LEN]);
    Ok((KeyId(id), nonce))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::key::Key;

    const LABEL: &[u8] = b"payments";

    fn ring(byte: u8) -> Keyring {
        Keyring::new(Key::from_bytes([byte; 32]))
    }

    /// A plaintext gossip frame as gossip-core encodes it (protocol
    /// version first).
    fn plain_frame() -> Vec<u8> {
        let mut frame = vec![2u8, 8];
        frame.extend_from_slice(LABEL);
        frame.extend_from_slice(&[0, 127, 0, 0, 1, 0x9a, 0x3e, 1, 0, 3]);
        frame
    }

    #[test]
    fn round_trip_and_layout() {
        let ring = ring(1);
        let frame = plain_frame();
        let sealed = ring.seal(LABEL, &frame).unwrap();
        assert_eq!(sealed.len(), frame.len() + OVERHEAD);
        assert_eq!(sealed[0], SEAL_VERSION);
        assert_eq!(&sealed[1..1 + KEY_ID_LEN], &ring.primary().id().0);
        // The frame is not visible in clear.
        assert!(!sealed.windows(LABEL.len()).any(|w| w == LABEL));
        assert_eq!(ring.open(LABEL, &sealed).unwrap(), frame);
        // Two seals of one frame differ (fresh nonce).
        assert_ne!(ring.seal(LABEL, &frame).unwrap(), sealed);
        // An empty frame seals and opens too.
        assert_eq!(
            ring.open(LABEL, &ring.seal(LABEL, &[]).unwrap()).unwrap(),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn every_ring_key_opens_only_the_primary_seals() {
        let mut ring = ring(1);
        let old = ring.seal(LABEL, b"old").unwrap();
        ring.add(Key::from_bytes([2; 32])).unwrap();
        assert_eq!(
            ring.seal(LABEL, b"x").unwrap()[1..1 + KEY_ID_LEN],
            ring.keys()[0].id().0
        );
        ring.set_primary(Key::from_bytes([2; 32]).id()).unwrap();
        let new = ring.seal(LABEL, b"new").unwrap();
        assert_eq!(new[1..1 + KEY_ID_LEN], Key::from_bytes([2; 32]).id().0);
        assert_eq!(ring.open(LABEL, &old).unwrap(), b"old");
        assert_eq!(ring.open(LABEL, &new).unwrap(), b"new");
    }

    #[test]
    fn wrong_key_is_unknown_key() {
        let sealed = ring(1).seal(LABEL, b"frame").unwrap();
        assert_eq!(
            ring(2).open(LABEL, &sealed),
            Err(OpenError::UnknownKey(ring(1).primary().id()))
        );
    }

    #[test]
    fn a_key_id_collision_still_fails_authentication() {
        // A forger who copies a real key id but holds another key.
        let mut sealed = ring(2).seal(LABEL, b"frame").unwrap();
        sealed[1..1 + KEY_ID_LEN].copy_from_slice(&ring(1).primary().id().0);
        assert_eq!(
            ring(1).open(LABEL, &sealed),
            Err(OpenError::Forged(ring(1).primary().id()))
        );
    }

    #[test]
    fn every_tampered_byte_is_refused() {
        let ring = ring(1);
        let sealed = ring.seal(LABEL, &plain_frame()).unwrap();
        for at in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[at] ^= 0x01;
            let err = ring.open(LABEL, &bad).unwrap_err();
            match at {
                0 => assert_eq!(err, OpenError::UnknownVersion(SEAL_VERSION ^ 1)),
                1..=KEY_ID_LEN => assert!(matches!(err, OpenError::UnknownKey(_)), "{at}: {err}"),
                _ => assert_eq!(err, OpenError::Forged(ring.primary().id()), "byte {at}"),
            }
        }
    }

    #[test]
    fn truncated_unsealed_and_other_label_are_refused() {
        let ring = ring(1);
        let sealed = ring.seal(LABEL, b"frame").unwrap();
        for len in 0..sealed.len() {
            let err = ring.open(LABEL, &sealed[..len]).unwrap_err();
            if len < OVERHEAD {
                assert_eq!(err, OpenError::Truncated { len });
            } else {
                assert_eq!(err, OpenError::Forged(ring.primary().id()));
            }
        }
        assert_eq!(
            ring.open(LABEL, &plain_frame()),
            Err(OpenError::Unsealed { first: 2 })
        );
        assert_eq!(
            ring.open(b"other", &sealed),
            Err(OpenError::Forged(ring.primary().id()))
        );
        assert_eq!(
            ring.open(b"", &sealed),
            Err(OpenError::Forged(ring.primary().id()))
        );
    }

    #[test]
    fn a_failed_open_in_place_leaves_the_buffer_as_it_was() {
        let mut sealed = ring(1).seal(LABEL, b"frame").unwrap();
        *sealed.last_mut().unwrap() ^= 1;
        let mut buf = sealed.clone();
        assert!(ring(1).open_in_place(LABEL, &mut buf).is_err());
        assert_eq!(buf, sealed);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_open(bytes in proptest::collection::vec(any::<u8>(), 0..2000),
                                            with_real_id: bool) {
            let ring = ring(1);
            let mut bytes = bytes;
            // Half the cases name the ring's key, so the cipher runs on
            // arbitrary nonces, ciphertexts and tags.
            if with_real_id && bytes.len() >= OVERHEAD {
                bytes[0] = SEAL_VERSION;
                bytes[1..1 + KEY_ID_LEN].copy_from_slice(&ring.primary().id().0);
            }
            let result = ring.open(LABEL, &bytes);
            prop_assert!(result.is_err());
        }
    }
}
