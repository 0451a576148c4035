//! Transports for tests: an in-memory network and a fault-injecting wrapper.
//!
//! Kernel traffic shaping is not always available, so loss, delay,
//! duplication and reordering are injected in-process by [`Faulty`], which
//! wraps any [`Transport`]. [`MemoryNetwork`] connects nodes in one process
//! without sockets, and with tokio's paused clock a whole cluster's minutes
//! run in milliseconds.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gossip_core::{Incoming, Transport, TransportError, TransportStats};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc;

/// Frames queued per in-memory endpoint before further frames are dropped,
/// as a full socket buffer would.
pub const DEFAULT_QUEUE_LEN: usize = 1024;

#[derive(Default)]
struct Switch {
    endpoints: HashMap<SocketAddr, mpsc::Sender<(SocketAddr, Vec<u8>)>>,
    isolated: HashSet<SocketAddr>,
}

/// A set of in-memory endpoints that can send each other frames.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    switch: Arc<Mutex<Switch>>,
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// An endpoint at `addr` carrying frames of up to `max_frame_len` bytes.
    /// Fails if the address is taken.
    pub fn bind(
        &self,
        addr: SocketAddr,
        max_frame_len: usize,
    ) -> Result<MemoryTransport, TransportError> {
        let (tx, rx) = mpsc::channel(DEFAULT_QUEUE_LEN);
        let mut switch = self.switch.lock().expect("switch lock");
        if switch.endpoints.contains_key(&addr) {
            return Err(TransportError::Io(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{addr} is already bound"),
            )));
        }
        switch.endpoints.insert(addr, tx);
        Ok(MemoryTransport {
            addr,
            max_frame_len,
            switch: Arc::clone(&self.switch),
            inbox: tokio::sync::Mutex::new(rx),
            counters: Mutex::new(TransportStats::default()),
        })
    }

    /// Cuts `addr` off: nothing it sends arrives and nothing reaches it,
    /// until [`reconnect`](Self::reconnect).
    pub fn isolate(&self, addr: SocketAddr) {
        self.switch
            .lock()
            .expect("switch lock")
            .isolated
            .insert(addr);
    }

    /// Undoes [`isolate`](Self::isolate).
    pub fn reconnect(&self, addr: SocketAddr) {
        self.switch
            .lock()
            .expect("switch lock")
            .isolated
            .remove(&addr);
    }
}

/// One endpoint of a [`MemoryNetwork`]. Dropping it unbinds the address.
pub struct MemoryTransport {
    addr: SocketAddr,
    max_frame_len: usize,
    switch: Arc<Mutex<Switch>>,
    inbox: tokio::sync::Mutex<mpsc::Receiver<(SocketAddr, Vec<u8>)>>,
    counters: Mutex<TransportStats>,
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        if let Ok(mut switch) = self.switch.lock() {
            switch.endpoints.remove(&self.addr);
        }
    }
}

#[async_trait::async_trait]
impl Transport for MemoryTransport {
    async fn send(&self, to: SocketAddr, bytes: &[u8]) -> Result<(), TransportError> {
        if bytes.len() > self.max_frame_len {
            return Err(TransportError::TooLarge {
                len: bytes.len(),
                max: self.max_frame_len,
            });
        }
        let delivered = {
            let switch = self.switch.lock().expect("switch lock");
            let cut = switch.isolated.contains(&self.addr) || switch.isolated.contains(&to);
            match switch.endpoints.get(&to) {
                Some(endpoint) if !cut => endpoint.try_send((self.addr, bytes.to_vec())).is_ok(),
                _ => false,
            }
        };
        let mut counters = self.counters.lock().expect("counters lock");
        counters.packets_sent += 1;
        counters.bytes_sent += bytes.len() as u64;
        if !delivered {
            counters.frames_dropped += 1;
        }
        Ok(())
    }

    async fn recv(&self) -> Result<Incoming, TransportError> {
        // Only the driver's task receives, so the lock is never contended;
        // `mpsc::Receiver::recv` is cancellation safe.
        let mut inbox = self.inbox.lock().await;
        let (from, bytes) = inbox.recv().await.ok_or(TransportError::Closed)?;
        let mut counters = self.counters.lock().expect("counters lock");
        counters.packets_received += 1;
        counters.bytes_received += bytes.len() as u64;
        Ok(Incoming::Frame { from, bytes })
    }

    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    fn stats(&self) -> TransportStats {
        *self.counters.lock().expect("counters lock")
    }
}

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

#[async_trait::async_trait]
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

    fn stats(&self) -> TransportStats {
        let mut stats = self.inner.stats();
        stats.frames_dropped += *self.dropped.lock().expect("counter lock");
        stats
    }

    async fn close(&self) {
        self.inner.close().await
    }
}
