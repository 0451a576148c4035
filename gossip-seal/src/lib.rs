//! Sealed gossip frames: authenticated encryption for datagram transports.
//!
//! Without sealing, anyone who can send a datagram to a node can speak for
//! any member. With it, a node accepts only frames sealed by a key in its
//! [`Keyring`]: an outsider without a key can neither read the cluster's
//! frames nor inject, alter or replay one into another cluster label.
//! Sealing says "someone holding a cluster key sent this"; it does not stop
//! a key holder from lying in what it seals, and it does not stop an
//! outsider from replaying a captured sealed frame verbatim (the core's
//! duplicate and freshness rules handle replays).
//!
//! - [`Key`]: 32 random bytes, written as one hex line; its public
//!   [`KeyId`] names it in frames and logs.
//! - [`Keyring`]: the primary key seals, every key opens; rotation is
//!   add, make primary, remove, each step done on every node before the next.
//! - [`Sealed`]: wraps any [`gossip_transport::Transport`], sealing on send
//!   and refusing (with counters) what does not open on receive; its
//!   [`KeyringHandle`] lets the running program swap keys.
//!
//! ```
//! use gossip_seal::{Key, Keyring, OpenError};
//!
//! let ring = Keyring::new(Key::generate()?);
//! let sealed = ring.seal(b"my-cluster", b"a gossip frame")?;
//! assert_eq!(ring.open(b"my-cluster", &sealed)?, b"a gossip frame");
//!
//! let stranger = Keyring::new(Key::generate()?);
//! assert!(matches!(stranger.open(b"my-cluster", &sealed), Err(OpenError::UnknownKey(_))));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`RumorKeys`] is the other half of trust among key holders: Ed25519
//! signatures over each rumor's id and payload (a
//! [`gossip_core::RumorSigner`]), so that an insider cannot forge a rumor
//! in another member's name.
//!
//! The frame format is described in the [`frame`] module.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod frame;
mod key;
mod keyring;
mod signing;
mod transport;

pub use frame::{OpenError, SealError, HEADER_LEN, NONCE_LEN, OVERHEAD, SEAL_VERSION, TAG_LEN};
pub use key::{Key, KeyId, KeyParseError, RandomError, KEY_ID_LEN, KEY_LEN};
pub use keyring::{Keyring, KeyringError, KeyringFileError, KeyringHandle};
pub use signing::{PublicKey, RumorKeys, SigningKey, PUBLIC_KEY_LEN, SEED_LEN, SIGNATURE_LEN};
pub use transport::{SealStats, SealStatsHandle, Sealed};
