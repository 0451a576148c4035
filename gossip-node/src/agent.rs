//! The generic tokio driver: runs one [`Node`] on one [`Transport`].
//!
//! An [`Agent`] owns its node outright (no `Arc<Mutex<Node>>`): a single task
//! `select!`s over the transport's receive, a sleep until the node's next
//! deadline, a command channel and shutdown. After every branch it sends
//! whatever the node queued and publishes the node's events. The
//! [`AgentHandle`] it returns is cheap to clone and is how the application
//! talks to the node.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use gossip_core::{Config, Generation, Node, NodeId, Transport};
//! use gossip_node::agent::{Agent, AgentConfig};
//! use gossip_strategies::RumorMongering;
//! use gossip_transport_udp::UdpTransport;
//!
//! let transport = UdpTransport::bind("127.0.0.1:7946".parse()?, 1400).await?;
//! let node = Node::with_strategy(
//!     Config::lan(100),
//!     NodeId::new(transport.local_addr()),
//!     Generation(1),
//!     42,
//!     RumorMongering::default(),
//! )?;
//! let agent = Agent::spawn(node, transport, AgentConfig::default())?;
//! agent.join(vec!["127.0.0.1:7947".parse()?]).await?;
//! agent.broadcast(b"hello".to_vec()).await?;
//! let mut events = agent.subscribe();
//! while let Ok(event) = events.recv().await {
//!     println!("{event:?}");
//! }
//! # Ok(()) }
//! ```
//!
//! Time comes from tokio's clock, so tests may pause and advance it.

use std::net::SocketAddr;
use std::time::Duration;

use gossip_core::{
    Aggregate, CommandError, Event, Incoming, Member, MessageId, Node, Stats, Strategy, Transport,
    TransportError, TransportStats,
};
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Settings of the driver itself (the protocol's are in the node's
/// [`Config`](gossip_core::Config)).
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Events kept for subscribers that fall behind; a slower subscriber
    /// loses the oldest and is told how many (tokio `broadcast` semantics).
    pub event_capacity: usize,
    /// Commands queued from handles before senders wait.
    pub command_capacity: usize,
    /// After a graceful leave, how long the agent keeps running so that the
    /// departure is gossiped, at most. It stops earlier once the node has
    /// nothing left to send.
    pub leave_linger: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            event_capacity: 4096,
            command_capacity: 256,
            leave_linger: Duration::from_secs(2),
        }
    }
}

/// Why an agent could not start or a command could not run.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The node's frames would not fit the transport.
    #[error("node max_message_size {node} exceeds the transport's frame limit {transport}")]
    FrameTooLarge {
        /// The node's `max_message_size`.
        node: usize,
        /// The transport's `max_frame_len`.
        transport: usize,
    },
    /// The node's identity is not the address the transport listens on, so
    /// peers would answer somewhere else.
    #[error("node id {node} differs from the transport's address {transport}")]
    AddressMismatch {
        /// The node's identity.
        node: SocketAddr,
        /// Where the transport listens.
        transport: SocketAddr,
    },
    /// The node refused the command.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The agent has stopped (shut down, crashed or aborted).
    #[error("the agent has stopped")]
    Stopped,
}

/// Counters of the node and its transport.
#[derive(Clone, Debug, Default)]
pub struct AgentStats {
    /// The node's protocol counters.
    pub node: Stats,
    /// What the transport put on the wire.
    pub transport: TransportStats,
    /// Frames the transport refused to send.
    pub send_errors: u64,
}

type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

enum Command {
    Join(Vec<SocketAddr>, oneshot::Sender<Result<(), CommandError>>),
    Broadcast(Vec<u8>, oneshot::Sender<Result<MessageId, CommandError>>),
    SetMetadata(Vec<u8>, oneshot::Sender<Result<(), CommandError>>),
    Members(oneshot::Sender<Vec<Member>>),
    Stats(oneshot::Sender<AgentStats>),
    Estimate(oneshot::Sender<Option<f64>>),
    Leave(oneshot::Sender<Result<(), CommandError>>),
}

/// The driver. Build one with [`Agent::spawn`]; it runs until shut down.
pub struct Agent;

impl Agent {
    /// Starts a task that drives `node` over `transport` on the current
    /// tokio runtime. The node is not started: call
    /// [`AgentHandle::join`] (with no seeds to found a cluster).
    ///
    /// Refuses a node whose frames exceed the transport's limit, or whose
    /// identity is not the transport's address (a transport bound to an
    /// unspecified address such as `0.0.0.0` only needs the same port).
    pub fn spawn<S, A, T>(
        node: Node<S, A>,
        transport: T,
        config: AgentConfig,
    ) -> Result<AgentHandle, AgentError>
    where
        S: Strategy + Send + 'static,
        A: Aggregate + Send + 'static,
        T: Transport + 'static,
    {
        let max_message = node.config().max_message_size.get();
        if max_message > transport.max_frame_len() {
            return Err(AgentError::FrameTooLarge {
                node: max_message,
                transport: transport.max_frame_len(),
            });
        }
        let local = transport.local_addr();
        let id = node.id().addr();
        let same_address = if local.ip().is_unspecified() {
            local.port() == id.port()
        } else {
            local == id
        };
        if !same_address {
            return Err(AgentError::AddressMismatch {
                node: id,
                transport: local,
            });
        }
        let (commands, command_rx) = mpsc::channel(config.command_capacity.max(1));
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        let driver = Driver {
            node,
            transport,
            events: events.clone(),
            leave_linger: config.leave_linger,
            send_errors: 0,
        };
        let (stopped_tx, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            driver.run(command_rx).await;
            let _ = stopped_tx.send(true);
        })
        .abort_handle();
        Ok(AgentHandle {
            id,
            commands,
            events,
            task,
            stopped,
        })
    }
}

struct Driver<S: Strategy, A: Aggregate, T> {
    node: Node<S, A>,
    transport: T,
    events: broadcast::Sender<Event>,
    leave_linger: Duration,
    send_errors: u64,
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl<S: Strategy, A: Aggregate, T: Transport> Driver<S, A, T> {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        // Set when a leave was asked for: run until the farewell is sent.
        let mut linger_until: Option<(Instant, Option<Reply<()>>)> = None;
        let mut consecutive_recv_errors = 0u32;
        loop {
            let deadline = self.node.poll_timeout().map(Instant::from_std);
            if let Some((until, _)) = &linger_until {
                if deadline.is_none() || Instant::now() >= *until {
                    break;
                }
            }
            let wake = match (deadline, &linger_until) {
                (Some(d), Some((until, _))) => Some(d.min(*until)),
                (d, _) => d,
            };
            tokio::select! {
                received = self.transport.recv() => match received {
                    Ok(Incoming::Frame { from, bytes }) => {
                        consecutive_recv_errors = 0;
                        if let Err(error) = self.node.handle_message(now(), from, &bytes) {
                            tracing::debug!(%from, %error, "frame refused");
                        }
                    }
                    Ok(Incoming::Unreachable(peer)) => {
                        self.node.peer_unreachable(now(), peer.into());
                    }
                    Err(TransportError::Closed) => break,
                    Err(error) => {
                        tracing::warn!(%error, "receive failed");
                        consecutive_recv_errors += 1;
                        // A socket that fails every time must not spin a core.
                        if consecutive_recv_errors > 3 {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                },
                () = sleep_until(wake) => self.node.handle_timeout(now()),
                command = commands.recv(), if linger_until.is_none() => match command {
                    Some(Command::Leave(reply)) => {
                        match self.node.leave(now()) {
                            Ok(()) => linger_until = Some((Instant::now() + self.leave_linger, Some(reply))),
                            // Never joined (or already left): there is
                            // nothing to announce, so stopping is all.
                            Err(_) => {
                                linger_until = Some((Instant::now(), Some(reply)));
                                break;
                            }
                        }
                    }
                    Some(command) => self.command(command),
                    // Every handle is gone: nobody can talk to the node any
                    // more, so say goodbye.
                    None => {
                        if self.node.leave(now()).is_err() {
                            break;
                        }
                        linger_until = Some((Instant::now() + self.leave_linger, None));
                    }
                },
            }
            self.flush().await;
        }
        self.flush().await;
        // A graceful stop: let the transport send what it still holds (the
        // last of the farewell). A crash (abort) never gets here.
        self.transport.close().await;
        if let Some((_, Some(reply))) = linger_until {
            let _ = reply.send(Ok(()));
        }
    }

    fn command(&mut self, command: Command) {
        let at = now();
        match command {
            Command::Join(seeds, reply) => {
                let _ = reply.send(self.node.join(at, &seeds));
            }
            Command::Broadcast(payload, reply) => {
                let _ = reply.send(self.node.broadcast(at, &payload));
            }
            Command::SetMetadata(metadata, reply) => {
                let _ = reply.send(self.node.set_metadata(at, metadata));
            }
            Command::Members(reply) => {
                let _ = reply.send(self.node.members().collect());
            }
            Command::Stats(reply) => {
                let _ = reply.send(AgentStats {
                    node: self.node.stats(),
                    transport: self.transport.stats(),
                    send_errors: self.send_errors,
                });
            }
            Command::Estimate(reply) => {
                let _ = reply.send(self.node.estimate());
            }
            Command::Leave(_) => unreachable!("handled by the loop"),
        }
    }

    /// Sends what the node queued and publishes its events.
    async fn flush(&mut self) {
        while let Some(transmit) = self.node.poll_transmit() {
            if let Err(error) = self.transport.send(transmit.to, &transmit.bytes).await {
                self.send_errors += 1;
                tracing::debug!(to = %transmit.to, %error, "send failed");
            }
        }
        while let Some(event) = self.node.poll_event() {
            // No subscriber is not an error: events are offered, not owed.
            let _ = self.events.send(event);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A cloneable handle to a running [`Agent`].
#[derive(Clone)]
pub struct AgentHandle {
    id: SocketAddr,
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    task: AbortHandle,
    stopped: watch::Receiver<bool>,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle").field("id", &self.id).finish()
    }
}

impl AgentHandle {
    /// The node's identity (its transport address).
    pub fn id(&self) -> SocketAddr {
        self.id
    }

    async fn ask<R>(
        &self,
        make: impl FnOnce(oneshot::Sender<R>) -> Command,
    ) -> Result<R, AgentError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| AgentError::Stopped)?;
        answer.await.map_err(|_| AgentError::Stopped)
    }

    /// Starts the node: joins through `seeds`, or founds a cluster when
    /// `seeds` is empty.
    pub async fn join(&self, seeds: Vec<SocketAddr>) -> Result<(), AgentError> {
        Ok(self.ask(|r| Command::Join(seeds, r)).await??)
    }

    /// Broadcasts `payload` to the cluster through the node's strategy.
    pub async fn broadcast(&self, payload: Vec<u8>) -> Result<MessageId, AgentError> {
        Ok(self.ask(|r| Command::Broadcast(payload, r)).await??)
    }

    /// Publishes new metadata for this node.
    pub async fn set_metadata(&self, metadata: Vec<u8>) -> Result<(), AgentError> {
        Ok(self.ask(|r| Command::SetMetadata(metadata, r)).await??)
    }

    /// Every member the node knows, itself first.
    pub async fn members(&self) -> Result<Vec<Member>, AgentError> {
        self.ask(Command::Members).await
    }

    /// The node's and the transport's counters.
    pub async fn stats(&self) -> Result<AgentStats, AgentError> {
        self.ask(Command::Stats).await
    }

    /// The node's aggregation estimate, if it computes one.
    pub async fn estimate(&self) -> Result<Option<f64>, AgentError> {
        self.ask(Command::Estimate).await
    }

    /// A stream of the node's events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Leaves the cluster gracefully: the departure is announced, gossiped
    /// for at most `leave_linger`, then the agent stops. Returns once it
    /// has stopped.
    /// A node that never joined just stops.
    pub async fn shutdown(&self) -> Result<(), AgentError> {
        let left = self.ask(Command::Leave).await;
        self.wait().await;
        Ok(left??)
    }

    /// Stops the agent at once, without telling anyone: to other members
    /// it looks like a crash. The transport is dropped with the task.
    pub fn abort(&self) {
        self.task.abort();
    }

    /// Waits until the agent's task has ended. Cancellation safe, and any
    /// number of handles may wait at once.
    pub async fn wait(&self) {
        let mut stopped = self.stopped.clone();
        // An error means the task is gone without saying so (aborted).
        let _ = stopped.wait_for(|&done| done).await;
    }
}
