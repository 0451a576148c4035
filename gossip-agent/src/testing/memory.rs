//! An in-memory network: agents in one process without sockets.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use gossip_transport::{async_trait, Incoming, Transport, TransportError, TransportStats};
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
            unfragmented_frame_len: max_frame_len,
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
    unfragmented_frame_len: usize,
    switch: Arc<Mutex<Switch>>,
    inbox: tokio::sync::Mutex<mpsc::Receiver<(SocketAddr, Vec<u8>)>>,
    counters: Mutex<TransportStats>,
}

impl MemoryTransport {
    /// Makes this endpoint claim to carry only frames of up to `len` bytes
    /// unfragmented (at most its `max_frame_len`), as a datagram transport
    /// with a stream fallback would; frames are still delivered whole. For
    /// testing how a driver treats such transports without sockets.
    pub fn with_unfragmented_frame_len(mut self, len: usize) -> Self {
        self.unfragmented_frame_len = len.min(self.max_frame_len);
        self
    }
}

impl std::fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTransport")
            .field("addr", &self.addr)
            .field("max_frame_len", &self.max_frame_len)
            .field("unfragmented_frame_len", &self.unfragmented_frame_len)
            .finish_non_exhaustive()
    }
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        if let Ok(mut switch) = self.switch.lock() {
            switch.endpoints.remove(&self.addr);
        }
    }
}

#[async_trait]
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

    fn unfragmented_frame_len(&self) -> usize {
        self.unfragmented_frame_len
    }

    fn stats(&self) -> TransportStats {
        *self.counters.lock().expect("counters lock")
    }
}
