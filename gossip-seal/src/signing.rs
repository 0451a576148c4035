//! Ed25519 rumor origin signatures: a [`gossip_core::RumorSigner`] that
//! signs with this node's key and verifies with a table of trusted public
//! keys, one per member.
//!
//! Sealing frames ([`Keyring`](crate::Keyring)) proves that a frame comes
//! from someone holding the cluster key; it does not stop such an insider
//! from forging a rumor in another member's name. [`RumorKeys`] does: every
//! node signs the rumors it originates with its own [`SigningKey`], and
//! every node refuses rumors whose origin's signature is missing or wrong.
//!
//! ```
//! use gossip_core::{MessageId, NodeId, RumorSigner};
//! use gossip_seal::{RumorKeys, SigningKey};
//!
//! let a: NodeId = "10.0.0.1:7946".parse::<std::net::SocketAddr>()?.into();
//! let b: NodeId = "10.0.0.2:7946".parse::<std::net::SocketAddr>()?.into();
//! let (key_a, key_b) = (SigningKey::generate()?, SigningKey::generate()?);
//! let mut at_b = RumorKeys::new(b, key_b);
//! at_b.trust(a, key_a.public_key());
//! let at_a = RumorKeys::new(a, key_a);
//!
//! let id = MessageId { origin: a, generation: 1, sequence: 1 };
//! let signature = at_a.sign(id, b"hello");
//! assert!(at_b.verify(id, b"hello", &signature));
//! assert!(!at_b.verify(id, b"hullo", &signature));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;

use gossip_core::{signed_bytes, MessageId, NodeId, RumorSigner};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use crate::key::{os_random, Key, KeyParseError, RandomError};

/// Bytes in an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Bytes in an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Bytes in an Ed25519 secret seed.
pub const SEED_LEN: usize = 32;

/// A member's Ed25519 signing key, kept as its 32-byte seed.
///
/// Its `Debug` shows only the public key; the seed leaves only through
/// [`to_hex`](Self::to_hex), which a program calls to write a key file.
pub struct SigningKey {
    seed: [u8; SEED_LEN],
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// The key of a 32-byte seed.
    pub fn from_seed(seed: [u8; SEED_LEN]) -> Self {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .expect("every 32-byte seed is an Ed25519 key");
        Self { seed, pair }
    }

    /// A new key from the operating system's random generator.
    pub fn generate() -> Result<Self, RandomError> {
        let mut seed = [0u8; SEED_LEN];
        os_random(&mut seed)?;
        Ok(Self::from_seed(seed))
    }

    /// Parses the seed as 64 hex digits (either case), surrounding
    /// whitespace ignored.
    pub fn from_hex(text: &str) -> Result<Self, KeyParseError> {
        Ok(Self::from_seed(*Key::from_hex(text)?.bytes()))
    }

    /// The seed as 64 lowercase hex digits: the line a key file holds.
    pub fn to_hex(&self) -> String {
        hex(&self.seed)
    }

    /// The public key others verify this key's signatures with.
    pub fn public_key(&self) -> PublicKey {
        let mut bytes = [0u8; PUBLIC_KEY_LEN];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(bytes)
    }
}

impl Drop for SigningKey {
    /// Wipes this copy of the seed (`ring`'s key pair keeps its own).
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.seed);
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public {})", self.public_key())
    }
}

/// An Ed25519 public key: 32 bytes, written as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// Parses 64 hex digits (either case), surrounding whitespace ignored.
    pub fn from_hex(text: &str) -> Result<Self, KeyParseError> {
        Ok(Self(*Key::from_hex(text)?.bytes()))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// This node's signing key and the public keys it trusts, per member: a
/// [`RumorSigner`] to install with
/// [`Node::set_rumor_signer`](gossip_core::Node::set_rumor_signer).
///
/// A rumor verifies only if its origin is in the table and the signature
/// over [`signed_bytes`] is that key's. This node's own key is trusted for
/// its own id from the start.
pub struct RumorKeys {
    key: SigningKey,
    trusted: BTreeMap<NodeId, PublicKey>,
}

impl RumorKeys {
    /// Signs as `me` with `key`; trusts nobody else yet.
    pub fn new(me: NodeId, key: SigningKey) -> Self {
        let mut trusted = BTreeMap::new();
        trusted.insert(me, key.public_key());
        Self { key, trusted }
    }

    /// Trusts `key` for rumors originated by `member`, in place of any key
    /// trusted for it before.
    pub fn trust(&mut self, member: NodeId, key: PublicKey) -> &mut Self {
        self.trusted.insert(member, key);
        self
    }

    /// Stops trusting any key for `member`: its rumors are refused.
    pub fn distrust(&mut self, member: NodeId) -> Option<PublicKey> {
        self.trusted.remove(&member)
    }

    /// The key trusted for `member`, if any.
    pub fn trusted(&self, member: NodeId) -> Option<PublicKey> {
        self.trusted.get(&member).copied()
    }
}

impl fmt::Debug for RumorKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RumorKeys")
            .field("key", &self.key)
            .field("trusted", &self.trusted.len())
            .finish()
    }
}

impl RumorSigner for RumorKeys {
    fn signature_len(&self) -> usize {
        SIGNATURE_LEN
    }

    fn sign(&self, id: MessageId, payload: &[u8]) -> Vec<u8> {
        self.key
            .pair
            .sign(&signed_bytes(id, payload))
            .as_ref()
            .to_vec()
    }

    fn verify(&self, id: MessageId, payload: &[u8], signature: &[u8]) -> bool {
        let Some(key) = self.trusted.get(&id.origin) else {
            return false;
        };
        signature.len() == SIGNATURE_LEN
            && UnparsedPublicKey::new(&ED25519, key.0)
                .verify(&signed_bytes(id, payload), signature)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn node(i: u8) -> NodeId {
        NodeId::new(SocketAddr::from(([10, 0, 0, i], 7946)))
    }

    fn key(i: u8) -> SigningKey {
        SigningKey::from_seed([i; SEED_LEN])
    }

    fn id(origin: u8, sequence: u64) -> MessageId {
        MessageId {
            origin: node(origin),
            generation: 1,
            sequence,
        }
    }

    /// Node 2's keys, trusting node 1.
    fn at_two() -> RumorKeys {
        let mut keys = RumorKeys::new(node(2), key(2));
        keys.trust(node(1), key(1).public_key());
        keys
    }

    #[test]
    fn a_trusted_origins_signature_verifies_and_is_deterministic() {
        let one = RumorKeys::new(node(1), key(1));
        let signature = one.sign(id(1, 7), b"payload");
        assert_eq!(signature.len(), SIGNATURE_LEN);
        assert_eq!(
            signature,
            one.sign(id(1, 7), b"payload"),
            "Ed25519 is deterministic"
        );
        assert!(at_two().verify(id(1, 7), b"payload", &signature));
        assert!(
            one.verify(id(1, 7), b"payload", &signature),
            "own key trusted"
        );
    }

    #[test]
    fn tampered_payload_id_or_signature_fails() {
        let one = RumorKeys::new(node(1), key(1));
        let signature = one.sign(id(1, 7), b"payload");
        let two = at_two();
        assert!(!two.verify(id(1, 7), b"payloaD", &signature));
        assert!(
            !two.verify(id(1, 8), b"payload", &signature),
            "another sequence"
        );
        let mut other_life = id(1, 7);
        other_life.generation = 2;
        assert!(!two.verify(other_life, b"payload", &signature));
        let mut flipped = signature.clone();
        flipped[10] ^= 1;
        assert!(!two.verify(id(1, 7), b"payload", &flipped));
        assert!(!two.verify(id(1, 7), b"payload", &signature[..63]));
        assert!(!two.verify(id(1, 7), b"payload", &[]));
    }

    #[test]
    fn a_signature_in_another_members_name_fails() {
        // Node 3 is trusted by nobody; node 2 signs rumors naming node 1.
        let mut two = at_two();
        let forged_by_two = RumorKeys::new(node(2), key(2)).sign(id(1, 1), b"forged");
        assert!(!two.verify(id(1, 1), b"forged", &forged_by_two));
        let three = RumorKeys::new(node(3), key(3));
        let by_three = three.sign(id(3, 1), b"x");
        assert!(!two.verify(id(3, 1), b"x", &by_three), "untrusted origin");
        two.trust(node(3), key(3).public_key());
        assert!(two.verify(id(3, 1), b"x", &by_three));
        assert_eq!(two.distrust(node(3)), Some(key(3).public_key()));
        assert!(!two.verify(id(3, 1), b"x", &by_three));
    }

    #[test]
    fn keys_round_trip_through_hex_and_debug_hides_the_seed() {
        let key = key(5);
        let again = SigningKey::from_hex(&key.to_hex()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let public = PublicKey::from_hex(&key.public_key().to_string()).unwrap();
        assert_eq!(public, key.public_key());
        assert!(!format!("{key:?}").contains(&key.to_hex()));
        assert!(PublicKey::from_hex("zz").is_err());
        let generated = (
            SigningKey::generate().unwrap(),
            SigningKey::generate().unwrap(),
        );
        assert_ne!(generated.0.public_key(), generated.1.public_key());
    }
}
