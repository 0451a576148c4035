//! The task that owns a partial-view node: [`PartialAgent::spawn`] and the
//! loop it runs.
//!
//! The same shape as [`Agent`](crate::Agent)'s loop: one task owns the
//! [`PartialNode`], `select!`s over the transport, the node's next
//! deadline and commands from handles, then sends what the node queued
//! and publishes its events. There are no hosted applications and no bulk
//! bodies: the overlay knows only its neighbours, which is not the
//! membership those need.

use std::collections::BTreeMap;

use gossip_core::partial::{PartialDecodeError, PartialEvent, PartialNode};
use gossip_core::NodeId;
use gossip_transport::{Incoming, Transport, TransportError};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::driver::{check_transport, now, recv_ready, sleep_until, RecvFailures};
use crate::{AgentConfig, AgentError, PartialAgentHandle};

/// What a job sees while it runs on the agent's task.
pub(crate) struct PartialScope<'a> {
    pub(crate) node: &'a mut PartialNode,
    pub(crate) now: std::time::Instant,
    pub(crate) transport: &'a dyn Transport,
    pub(crate) send_errors: u64,
    pub(crate) refused: &'a BTreeMap<&'static str, u64>,
}

/// One command from a handle, erased to a closure (as the full-view
/// agent's are).
pub(crate) type PartialJob = Box<dyn for<'a> FnOnce(PartialScope<'a>) + Send>;

/// What handles send the driver.
pub(crate) enum PartialCommand {
    /// Run a closure on the node, then send and publish what it queued.
    Run(PartialJob),
    /// Leave the overlay, send the farewells, close the transport, stop.
    Shutdown(oneshot::Sender<()>),
}

/// The driver of a [`PartialNode`] (HyParView views with a Plumtree
/// broadcast tree). Build one with [`PartialAgent::spawn`]; it runs until
/// shut down.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use gossip_agent::{AgentConfig, PartialAgent, Transport};
/// use gossip_core::partial::{PartialConfig, PartialEvent, PartialNode};
/// use gossip_core::NodeId;
/// use gossip_transport_udp::UdpTransport;
///
/// let transport = UdpTransport::bind("127.0.0.1:7946".parse()?, 1400).await?;
/// let node = PartialNode::new(
///     NodeId::new(transport.local_addr()),
///     PartialConfig::default(),
///     42,
///     std::time::Instant::now(),
/// )?;
/// let agent = PartialAgent::spawn(node, transport, AgentConfig::default())?;
/// agent.join(vec!["127.0.0.1:7947".parse()?]).await?;
/// agent.broadcast(b"hello".to_vec()).await?;
/// let mut events = agent.subscribe();
/// while let Ok(event) = events.recv().await {
///     if let PartialEvent::Delivered { payload, .. } = event {
///         println!("{payload:?}");
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PartialAgent;

impl PartialAgent {
    /// Starts a task that drives `node` over `transport` on the current
    /// tokio runtime. The node is not started: call
    /// [`PartialAgentHandle::join`] (with no contacts to be the first
    /// node, which others join through).
    ///
    /// Refuses a node whose `max_frame_len` exceeds what the transport
    /// carries unfragmented, or whose identity is not the transport's
    /// address, as [`Agent::spawn`](crate::Agent::spawn) does.
    /// `leave_linger` and `max_frames_per_flush` of `config` apply as
    /// there; a shutdown needs no linger (the farewells are single
    /// frames to the neighbours, sent before the transport closes).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn spawn<T>(
        node: PartialNode,
        transport: T,
        config: AgentConfig,
    ) -> Result<PartialAgentHandle, AgentError>
    where
        T: Transport + 'static,
    {
        let id = node.id().addr();
        check_transport(id, node.config().max_frame_len, &transport)?;
        let (commands, command_rx) = mpsc::channel(config.command_capacity.max(1));
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        let driver = PartialDriver {
            node,
            transport,
            events: events.clone(),
            max_frames_per_flush: config.max_frames_per_flush.max(1),
            send_errors: 0,
            refused: BTreeMap::new(),
        };
        let (stopped_tx, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            driver.run(command_rx).await;
            let _ = stopped_tx.send(true);
        })
        .abort_handle();
        Ok(PartialAgentHandle::new(id, commands, events, task, stopped))
    }
}

/// A short, stable name for the kind of a [`PartialDecodeError`], for
/// counters and metric labels.
pub fn partial_error_kind(error: &PartialDecodeError) -> &'static str {
    match error {
        PartialDecodeError::Empty => "empty",
        PartialDecodeError::TooLong { .. } => "too_large",
        PartialDecodeError::Version(_) => "unsupported_version",
        PartialDecodeError::WrongCluster => "wrong_cluster",
        PartialDecodeError::Malformed => "malformed",
        PartialDecodeError::TrailingBytes(_) => "trailing_bytes",
        PartialDecodeError::TooMany { .. } => "too_many",
        // Kinds added to the core after this list.
        _ => "other",
    }
}

struct PartialDriver<T> {
    node: PartialNode,
    transport: T,
    events: broadcast::Sender<PartialEvent>,
    max_frames_per_flush: usize,
    send_errors: u64,
    /// Frames refused before the node saw them, by kind: undecodable (as
    /// [`partial_error_kind`] names them) and bulk bodies, which this
    /// overlay does not carry.
    refused: BTreeMap<&'static str, u64>,
}

impl<T: Transport + 'static> PartialDriver<T> {
    async fn run(mut self, mut commands: mpsc::Receiver<PartialCommand>) {
        let mut recv_failures = RecvFailures::default();
        let mut stopped: Option<oneshot::Sender<()>> = None;
        loop {
            let deadline = self.node.poll_timeout().map(Instant::from_std);
            tokio::select! {
                received = self.transport.recv() => match received {
                    Ok(input) => {
                        recv_failures.reset();
                        self.handle(input);
                        for _ in 1..self.max_frames_per_flush {
                            match recv_ready(&self.transport).await {
                                Some(Ok(input)) => self.handle(input),
                                // Errors and closing are left to the next
                                // receive of the loop.
                                _ => break,
                            }
                        }
                    }
                    Err(TransportError::Closed) => break,
                    Err(error) => recv_failures.failed(&error).await,
                },
                () = sleep_until(deadline) => self.node.handle_timeout(now()),
                command = commands.recv() => match command {
                    Some(PartialCommand::Run(job)) => job(PartialScope {
                        node: &mut self.node,
                        now: now(),
                        transport: &self.transport,
                        send_errors: self.send_errors,
                        refused: &self.refused,
                    }),
                    Some(PartialCommand::Shutdown(reply)) => {
                        self.node.leave();
                        stopped = Some(reply);
                        break;
                    }
                    // Every handle is gone: nobody can talk to the node
                    // any more, so say goodbye.
                    None => {
                        self.node.leave();
                        break;
                    }
                },
            }
            self.flush().await;
        }
        self.flush().await;
        // The farewells leave before the task ends (an abort, a crash,
        // never gets here).
        self.transport.close().await;
        if let Some(reply) = stopped {
            let _ = reply.send(());
        }
    }

    fn handle(&mut self, input: Incoming) {
        match input {
            Incoming::Frame { from, bytes } => {
                if let Err(error) = self.node.handle_frame(now(), NodeId::from(from), &bytes) {
                    tracing::debug!(%from, %error, "frame refused");
                    *self.refused.entry(partial_error_kind(&error)).or_default() += 1;
                }
            }
            // The overlay's own pings find a lost neighbour; a connection
            // transport's word for it would only be earlier.
            Incoming::Unreachable(peer) => tracing::debug!(%peer, "peer unreachable"),
            Incoming::Bulk { from, .. } => {
                tracing::debug!(%from, "bulk body refused: partial views carry none");
                *self.refused.entry("bulk").or_default() += 1;
            }
            other => tracing::debug!(?other, "unknown kind of input ignored"),
        }
    }

    /// Sends what the node queued and publishes its events.
    async fn flush(&mut self) {
        while let Some((to, bytes)) = self.node.poll_transmit() {
            if let Err(error) = self.transport.send(to.addr(), &bytes).await {
                self.send_errors += 1;
                tracing::debug!(%to, %error, "send failed");
            }
        }
        while let Some(event) = self.node.poll_event() {
            // No subscriber is not an error: events are offered, not owed.
            let _ = self.events.send(event);
        }
    }
}
