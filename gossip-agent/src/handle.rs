//! The application's side of an agent: [`AgentHandle`].
//!
//! Every command is one generic message, a closure run on the agent's task
//! with the node in hand ([`AgentHandle::with_node`]); the typed methods
//! below are one-line wrappers over it, so a new `Node` method needs no
//! new message, handler or channel.

use std::net::SocketAddr;

use gossip_apps::{Application, Cluster};
use gossip_core::{
    Aggregate, CommandError, Event, Member, MessageId, NoAggregate, NoStrategy, Node, NodeId,
    Stats, Strategy,
};
use gossip_transport::TransportStats;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::AbortHandle;

use crate::driver::{Host, Message, Scope};
use crate::AgentError;

/// Counters of the node and its transport.
#[derive(Clone, Debug, Default)]
pub struct AgentStats {
    /// The node's protocol counters.
    pub node: Stats,
    /// What the transport put on the wire.
    pub transport: TransportStats,
    /// Frames the transport refused to send.
    pub send_errors: u64,
    /// Frames the node refused (`handle_message` errors), by kind as
    /// [`recv_error_kind`](crate::recv_error_kind) names it.
    pub refused: std::collections::BTreeMap<&'static str, u64>,
}

/// A cloneable handle to a running [`Agent`](crate::Agent) whose node is a
/// `Node<S, A>`.
///
/// The type parameters are the node's, so that [`with_node`](Self::with_node)
/// hands closures the node itself, strategy and aggregate included; they
/// default to a membership-only node's. Dropping the last handle makes the
/// agent leave the cluster gracefully and stop.
pub struct AgentHandle<S = NoStrategy, A = NoAggregate> {
    id: SocketAddr,
    commands: mpsc::Sender<Message<S, A>>,
    events: broadcast::Sender<Event>,
    task: AbortHandle,
    stopped: watch::Receiver<bool>,
}

// By hand: a derive would demand `S: Clone` and `A: Clone`, which a handle
// never clones.
impl<S, A> Clone for AgentHandle<S, A> {
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            commands: self.commands.clone(),
            events: self.events.clone(),
            task: self.task.clone(),
            stopped: self.stopped.clone(),
        }
    }
}

impl<S, A> std::fmt::Debug for AgentHandle<S, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle").field("id", &self.id).finish()
    }
}

impl<S, A> AgentHandle<S, A> {
    pub(crate) fn new(
        id: SocketAddr,
        commands: mpsc::Sender<Message<S, A>>,
        events: broadcast::Sender<Event>,
        task: AbortHandle,
        stopped: watch::Receiver<bool>,
    ) -> Self {
        Self {
            id,
            commands,
            events,
            task,
            stopped,
        }
    }

    /// The node's identity (its transport address).
    pub fn id(&self) -> SocketAddr {
        self.id
    }

    /// A stream of the node's events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
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
        // An error means the task is gone without saying so (aborted, or a
        // command panicked).
        let _ = stopped.wait_for(|&done| done).await;
    }

    /// Whether the agent has stopped: it said so on its way out, or its
    /// task is gone (aborted, or a command panicked).
    pub fn is_stopped(&self) -> bool {
        *self.stopped.borrow() || self.task.is_finished()
    }

    /// Leaves the cluster gracefully: the departure is announced, gossiped
    /// for at most [`leave_linger`](crate::AgentConfig::leave_linger), then
    /// the agent stops (a departed node cannot rejoin; start a new
    /// generation instead). Returns once it has stopped. A node that never
    /// joined just stops.
    pub async fn leave(&self) -> Result<(), AgentError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Message::Leave(reply))
            .await
            .map_err(|_| AgentError::Stopped)?;
        let left = answer.await.map_err(|_| AgentError::Stopped);
        self.wait().await;
        Ok(left??)
    }

    /// The same as [`leave`](Self::leave): the graceful way to stop.
    pub async fn shutdown(&self) -> Result<(), AgentError> {
        self.leave().await
    }

    /// Runs `f` on the agent's task with the node and the current time, and
    /// returns what it returns. Any `Node` method is reachable this way;
    /// the typed methods of this handle are shorthands for it. Afterwards
    /// the agent sends whatever the node queued and publishes its events,
    /// as after a received frame.
    ///
    /// `f` runs between the agent's other work, so it must be quick. If it
    /// panics the agent stops, as if crashed, and this returns
    /// [`AgentError::Stopped`].
    ///
    /// ```no_run
    /// # async fn example(agent: gossip_agent::AgentHandle) -> Result<(), gossip_agent::AgentError> {
    /// let suspects = agent
    ///     .with_node(|node, _now| {
    ///         node.members()
    ///             .filter(|m| m.liveness == gossip_core::Liveness::Suspect)
    ///             .count()
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn with_node<R, F>(&self, f: F) -> Result<R, AgentError>
    where
        F: FnOnce(&mut Node<S, A>, std::time::Instant) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.run(move |scope| f(scope.node, scope.now)).await
    }

    /// Adds `app` beside the node: from now on it sees every event the node
    /// emits and wakes at its deadline (see [`gossip_apps::Application`]).
    pub async fn add_app<P>(&self, app: P) -> Result<(), AgentError>
    where
        P: Application + Send,
    {
        self.run(move |scope| scope.apps.push(Box::new(app))).await
    }

    /// Runs `f` on the agent's task with the first hosted application of
    /// type `P` and the node (as the application's [`Cluster`]); `None` if
    /// no such application was added. What `f` makes the node send or
    /// emit is handled as after any other input.
    pub async fn with_app<P, R, F>(&self, f: F) -> Result<Option<R>, AgentError>
    where
        P: Application,
        F: FnOnce(&mut P, &mut dyn Cluster, std::time::Instant) -> R + Send + 'static,
        R: Send + 'static,
        S: Strategy + 'static,
        A: Aggregate + 'static,
    {
        self.run(move |scope| {
            let app = scope
                .apps
                .iter_mut()
                .find_map(|app| (app.as_mut() as &mut dyn std::any::Any).downcast_mut::<P>())?;
            let mut host = Host {
                node: scope.node,
                bulk: scope.bulk,
            };
            Some(f(app, &mut host, scope.now))
        })
        .await
    }

    /// Like [`with_node`](Self::with_node) for a command the node may
    /// refuse: its [`CommandError`] becomes [`AgentError::Command`].
    pub async fn command<R, F>(&self, f: F) -> Result<R, AgentError>
    where
        F: FnOnce(&mut Node<S, A>, std::time::Instant) -> Result<R, CommandError> + Send + 'static,
        R: Send + 'static,
    {
        Ok(self.with_node(f).await??)
    }

    /// The one way a handle reaches the task: the closure and the channel
    /// its answer returns on travel together.
    async fn run<R, F>(&self, f: F) -> Result<R, AgentError>
    where
        F: for<'a> FnOnce(Scope<'a, S, A>) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(move |scope: Scope<'_, S, A>| {
            // The asker may have given up waiting; the work is done anyway.
            let _ = reply.send(f(scope));
        });
        self.commands
            .send(Message::Run(job))
            .await
            .map_err(|_| AgentError::Stopped)?;
        answer.await.map_err(|_| AgentError::Stopped)
    }
}

/// Typed shorthands for the node's commands and queries, each one call of
/// [`with_node`](AgentHandle::with_node) or [`command`](AgentHandle::command).
impl<S, A> AgentHandle<S, A>
where
    S: Strategy + 'static,
    A: Aggregate + 'static,
{
    /// Starts the node: joins through `seeds`, or founds a cluster when
    /// `seeds` is empty.
    pub async fn join(&self, seeds: Vec<SocketAddr>) -> Result<(), AgentError> {
        self.command(move |node, now| node.join(now, &seeds)).await
    }

    /// Broadcasts `payload` to the cluster through the node's strategy.
    pub async fn broadcast(&self, payload: Vec<u8>) -> Result<MessageId, AgentError> {
        self.command(move |node, now| node.broadcast(now, &payload))
            .await
    }

    /// Publishes new metadata for this node.
    pub async fn set_metadata(&self, metadata: Vec<u8>) -> Result<(), AgentError> {
        self.command(move |node, now| node.set_metadata(now, metadata))
            .await
    }

    /// Changes this node's input to the aggregate the cluster computes.
    pub async fn set_aggregate_input(&self, value: f64) -> Result<(), AgentError> {
        self.command(move |node, now| node.set_aggregate_input(now, value))
            .await
    }

    /// Tells the node that the transport lost `peer` (as
    /// [`Incoming::Unreachable`](gossip_transport::Incoming::Unreachable)
    /// does by itself for connection-oriented transports).
    pub async fn peer_unreachable(&self, peer: NodeId) -> Result<(), AgentError> {
        self.with_node(move |node, now| node.peer_unreachable(now, peer))
            .await
    }

    /// The node's and the transport's counters.
    pub async fn stats(&self) -> Result<AgentStats, AgentError> {
        self.run(|scope| AgentStats {
            node: scope.node.stats(),
            transport: scope.transport.stats(),
            send_errors: scope.send_errors,
            refused: scope.refused.clone(),
        })
        .await
    }

    /// Asks the nodes at `addrs` to admit this running node, once each
    /// ([`Node::contact`]); to merge with another cluster after `join`.
    pub async fn contact(&self, addrs: Vec<SocketAddr>) -> Result<(), AgentError> {
        self.command(move |node, now| node.contact(now, &addrs))
            .await
    }

    /// Every member the node knows, itself first.
    pub async fn members(&self) -> Result<Vec<Member>, AgentError> {
        self.with_node(|node, _| node.members().collect()).await
    }

    /// How many members the node believes alive or suspect, itself included
    /// (unless it left).
    pub async fn live_member_count(&self) -> Result<usize, AgentError> {
        self.with_node(|node, _| node.live_member_count()).await
    }

    /// The node's aggregation estimate, if it computes one.
    pub async fn estimate(&self) -> Result<Option<f64>, AgentError> {
        self.with_node(|node, _| node.estimate()).await
    }

    /// A summary of the node's view of the membership, which nodes compare
    /// to notice that their views differ.
    pub async fn view_hash(&self) -> Result<u64, AgentError> {
        self.with_node(|node, _| node.view_hash()).await
    }

    /// Whether a seed has answered the join, or this node founded the
    /// cluster.
    pub async fn is_joined(&self) -> Result<bool, AgentError> {
        self.with_node(|node, _| node.is_joined()).await
    }

    /// The largest payload [`broadcast`](Self::broadcast) accepts.
    pub async fn max_payload_len(&self) -> Result<usize, AgentError> {
        self.with_node(|node, _| node.max_payload_len()).await
    }
}
