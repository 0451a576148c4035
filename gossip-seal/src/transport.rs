//! [`Sealed`]: any transport, with every frame sealed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use gossip_transport::{async_trait, Incoming, Transport, TransportError, TransportStats};

use crate::frame::{OpenError, OVERHEAD};
use crate::keyring::KeyringHandle;

/// A transport that seals every frame it sends with the keyring's primary
/// key and opens every frame it receives with any key in the ring.
///
/// Frames that do not open (unsealed, unknown key, tampered, another
/// cluster label, too short) never reach the node: they are dropped,
/// counted in [`SealStats`] and in [`TransportStats::frames_refused`], and
/// logged at debug level. The frame limits it reports are the inner
/// transport's minus [`OVERHEAD`], so a driver that checks a node's
/// `max_message_size` against them refuses a node whose sealed frames
/// would not fit.
#[derive(Debug)]
pub struct Sealed<T> {
    inner: T,
    keyring: KeyringHandle,
    label: Vec<u8>,
    refused: Arc<Refused>,
}

#[derive(Debug, Default)]
struct Refused {
    unsealed: AtomicU64,
    unknown_key: AtomicU64,
    forged: AtomicU64,
    malformed: AtomicU64,
}

/// Frames a [`Sealed`] transport refused, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SealStats {
    /// Plaintext frames (or bytes that do not start like a sealed frame).
    pub unsealed: u64,
    /// Sealed with a key the ring does not hold.
    pub unknown_key: u64,
    /// Failed authentication: tampered, forged, or another cluster label.
    pub forged: u64,
    /// Too short, or a seal version this build does not speak.
    pub malformed: u64,
}

impl SealStats {
    /// Every refused frame.
    pub fn total(&self) -> u64 {
        self.unsealed + self.unknown_key + self.forged + self.malformed
    }
}

/// Reads a [`Sealed`] transport's refusal counters after the transport has
/// moved into a driver.
#[derive(Clone, Debug)]
pub struct SealStatsHandle(Arc<Refused>);

impl SealStatsHandle {
    /// The counters now.
    pub fn get(&self) -> SealStats {
        let r = &self.0;
        SealStats {
            unsealed: r.unsealed.load(Ordering::Relaxed),
            unknown_key: r.unknown_key.load(Ordering::Relaxed),
            forged: r.forged.load(Ordering::Relaxed),
            malformed: r.malformed.load(Ordering::Relaxed),
        }
    }
}

impl<T: Transport> Sealed<T> {
    /// Seals `inner`'s frames with `keyring` for the cluster `label` (the
    /// node's `cluster_label`: frames sealed for another label do not open).
    pub fn new(inner: T, keyring: KeyringHandle, label: impl Into<Vec<u8>>) -> Self {
        Self {
            inner,
            keyring,
            label: label.into(),
            refused: Arc::default(),
        }
    }

    /// The keyring this transport seals and opens with; changes made
    /// through it apply to the next frame.
    pub fn keyring(&self) -> &KeyringHandle {
        &self.keyring
    }

    /// Frames refused so far, by reason.
    pub fn seal_stats(&self) -> SealStats {
        self.seal_stats_handle().get()
    }

    /// A handle that keeps reading the refusal counters after the
    /// transport has moved into a driver.
    pub fn seal_stats_handle(&self) -> SealStatsHandle {
        SealStatsHandle(Arc::clone(&self.refused))
    }

    fn count(&self, error: &OpenError) {
        let r = &self.refused;
        let counter = match error {
            OpenError::Unsealed { .. } => &r.unsealed,
            OpenError::UnknownKey(_) => &r.unknown_key,
            OpenError::Forged(_) => &r.forged,
            _ => &r.malformed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl<T: Transport> Transport for Sealed<T> {
    async fn send(&self, to: SocketAddr, bytes: &[u8]) -> Result<(), TransportError> {
        let max = self.max_frame_len();
        if bytes.len() > max {
            return Err(TransportError::TooLarge {
                len: bytes.len(),
                max,
            });
        }
        let sealed = self
            .keyring
            .read(|ring| ring.seal(&self.label, bytes))
            .map_err(|e| TransportError::Other(e.to_string()))?;
        self.inner.send(to, &sealed).await
    }

    async fn recv(&self) -> Result<Incoming, TransportError> {
        loop {
            // Cancellation safe: the inner receive is, and nothing below
            // awaits, so a frame is either returned or never taken.
            match self.inner.recv().await? {
                Incoming::Frame { from, mut bytes } => {
                    match self
                        .keyring
                        .read(|ring| ring.open_in_place(&self.label, &mut bytes))
                    {
                        Ok(()) => return Ok(Incoming::Frame { from, bytes }),
                        Err(error) => {
                            self.count(&error);
                            tracing::debug!(%from, %error, "refused a frame");
                        }
                    }
                }
                other => return Ok(other),
            }
        }
    }

    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    fn max_frame_len(&self) -> usize {
        self.inner.max_frame_len().saturating_sub(OVERHEAD)
    }

    fn unfragmented_frame_len(&self) -> usize {
        self.inner.unfragmented_frame_len().saturating_sub(OVERHEAD)
    }

    fn stats(&self) -> TransportStats {
        let mut stats = self.inner.stats();
        stats.frames_refused += self.seal_stats().total();
        stats
    }

    async fn close(&self) {
        self.inner.close().await
    }
}
