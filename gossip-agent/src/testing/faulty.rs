//! A wrapper that drops, duplicates, delays and reorders frames.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gossip_transport::{async_trait, Incoming, Transport, TransportError, TransportStats};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What [`Faulty`] does to outgoing frames.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    /// Probability that a frame is dropped.
    pub loss: f64,
    /// Probability that a frame is sent twice.
    pub duplicate: f64,
    /// Fixed delay before a frame leaves.
    pub delay: Duration,
    /// Extra delay, uniform in `[0, jitter)`; frames overtake each other.
    pub jitter: Duration,
}

impl Faults {
    /// Checks that probabilities are in `[0, 1]`.
    pub fn validate(&self) -> Result<(), TransportError> {
        for (name, p) in [("loss", self.loss), ("duplicate", self.duplicate)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(TransportError::Other(format!(
                    "fault probability {name} = {p} is outside [0, 1]"
                )));
            }
        }
        Ok(())
    }
}

/// Wraps a transport and drops, duplicates, delays and reorders what it
/// sends, with a seeded generator.
pub struct Faulty<T> {
    inner: Arc<T>,
    faults: Faults,
    rng: Mutex<ChaCha8Rng>,
    dropped: Mutex<u64>,
}

impl<T: Transport + 'static> Faulty<T> {
    /// Wraps `inner`. Delayed frames are sent from tasks on the current
    /// tokio runtime.
    pub fn new(inner: T, faults: Faults, seed: u64) -> Result<Self, TransportError> {
        faults.validate()?;
        Ok(Self {
            inner: Arc::new(inner),
            faults,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            dropped: Mutex::new(0),
        })
    }
}

#[async_trait]
impl<T: Transport + 'static> Transport for Faulty<T> {
    async fn send(&self, to: SocketAddr, bytes: &[u8]) -> Result<(), TransportError> {
        if bytes.len() > self.inner.max_frame_len() {
            return Err(TransportError::TooLarge {
                len: bytes.len(),
                max: self.inner.max_frame_len(),
            });
        }
        let (copies, delays) = {
            let mut rng = self.rng.lock().expect("rng lock");
            if rng.random::<f64>() < self.faults.loss {
                *self.dropped.lock().expect("counter lock") += 1;
                return Ok(());
            }
            let copies = if rng.random::<f64>() < self.faults.duplicate {
                2
            } else {
                1
            };
            let mut delays = [Duration::ZERO; 2];
            for delay in delays.iter_mut().take(copies) {
                *delay = self.faults.delay + self.faults.jitter.mul_f64(rng.random::<f64>());
            }
            (copies, delays)
        };
        for &delay in delays.iter().take(copies) {
            if delay.is_zero() {
                self.inner.send(to, bytes).await?;
            } else {
                let inner = Arc::clone(&self.inner);
                let bytes = bytes.to_vec();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = inner.send(to, &bytes).await;
                });
            }
        }
        Ok(())
    }

    async fn recv(&self) -> Result<Incoming, TransportError> {
        self.inner.recv().await
    }

    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    fn max_frame_len(&self) -> usize {
        self.inner.max_frame_len()
    }

    // Faults change what arrives, never how a frame travels.
    fn unfragmented_frame_len(&self) -> usize {
        self.inner.unfragmented_frame_len()
    }

    // The bulk path is reliable by contract: faults apply to frames only.
    fn max_bulk_len(&self) -> usize {
        self.inner.max_bulk_len()
    }

    async fn send_bulk(&self, to: SocketAddr, body: Vec<u8>) -> Result<(), TransportError> {
        self.inner.send_bulk(to, body).await
    }

    fn stats(&self) -> TransportStats {
        let mut stats = self.inner.stats();
        stats.frames_dropped += *self.dropped.lock().expect("counter lock");
        stats
    }

    async fn close(&self) {
        self.inner.close().await
    }
}
