//! The application's side of a partial-view agent: [`PartialAgentHandle`].

use std::collections::BTreeMap;
use std::net::SocketAddr;

use gossip_core::partial::{BroadcastId, PartialEvent, PartialNode, PartialStats};
use gossip_core::NodeId;
use gossip_transport::TransportStats;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::AbortHandle;

use crate::partial_driver::{PartialCommand, PartialScope};
use crate::AgentError;

/// Counters of a partial-view node and its transport.
#[derive(Clone, Debug, Default)]
pub struct PartialAgentStats {
    /// The node's protocol counters.
    pub node: PartialStats,
    /// What the transport put on the wire.
    pub transport: TransportStats,
    /// Frames the transport refused to send.
    pub send_errors: u64,
    /// Frames refused before the node acted on them, by kind as
    /// [`partial_error_kind`](crate::partial_error_kind) names them, and
    /// `"bulk"` for bulk bodies (the overlay carries none). Frames a
    /// sender was not entitled to send are in `node.refused`.
    pub refused: BTreeMap<&'static str, u64>,
}

/// A cloneable handle to a running [`PartialAgent`](crate::PartialAgent).
/// Dropping the last handle makes the agent leave the overlay and stop.
#[derive(Clone)]
pub struct PartialAgentHandle {
    id: SocketAddr,
    commands: mpsc::Sender<PartialCommand>,
    events: broadcast::Sender<PartialEvent>,
    task: AbortHandle,
    stopped: watch::Receiver<bool>,
}

impl std::fmt::Debug for PartialAgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartialAgentHandle")
            .field("id", &self.id)
            .finish()
    }
}

impl PartialAgentHandle {
    pub(crate) fn new(
        id: SocketAddr,
        commands: mpsc::Sender<PartialCommand>,
        events: broadcast::Sender<PartialEvent>,
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

    /// A stream of the node's events from now on: neighbours up and down
    /// (a [`Silent`](gossip_core::partial::NeighbourDownReason::Silent)
    /// one is the overlay's failure detection) and deliveries.
    pub fn subscribe(&self) -> broadcast::Receiver<PartialEvent> {
        self.events.subscribe()
    }

    /// Stops the agent at once, without telling anyone: to its neighbours
    /// it looks like a crash. The transport is dropped with the task.
    pub fn abort(&self) {
        self.task.abort();
    }

    /// Waits until the agent's task has ended. Cancellation safe.
    pub async fn wait(&self) {
        let mut stopped = self.stopped.clone();
        let _ = stopped.wait_for(|&done| done).await;
    }

    /// Whether the agent has stopped.
    pub fn is_stopped(&self) -> bool {
        *self.stopped.borrow() || self.task.is_finished()
    }

    /// Leaves the overlay gracefully: every neighbour is told, so it
    /// refills its view at once rather than after `dead_after`; then the
    /// transport closes and the agent stops. Returns once it has stopped.
    pub async fn shutdown(&self) -> Result<(), AgentError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(PartialCommand::Shutdown(reply))
            .await
            .map_err(|_| AgentError::Stopped)?;
        let done = answer.await.map_err(|_| AgentError::Stopped);
        self.wait().await;
        done
    }

    /// Runs `f` on the agent's task with the node and the current time, and
    /// returns what it returns; afterwards the agent sends what the node
    /// queued and publishes its events. `f` must be quick; if it panics
    /// the agent stops and this returns [`AgentError::Stopped`].
    pub async fn with_node<R, F>(&self, f: F) -> Result<R, AgentError>
    where
        F: FnOnce(&mut PartialNode, std::time::Instant) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.run(move |scope| f(scope.node, scope.now)).await
    }

    async fn run<R, F>(&self, f: F) -> Result<R, AgentError>
    where
        F: for<'a> FnOnce(PartialScope<'a>) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(move |scope: PartialScope<'_>| {
            let _ = reply.send(f(scope));
        });
        self.commands
            .send(PartialCommand::Run(job))
            .await
            .map_err(|_| AgentError::Stopped)?;
        answer.await.map_err(|_| AgentError::Stopped)
    }

    /// Joins the overlay through `contacts` (tried in turn until one takes
    /// the node in, and again when it is left with no neighbour and no
    /// reserve); none makes it the first node, which others join through.
    pub async fn join(&self, contacts: Vec<SocketAddr>) -> Result<(), AgentError> {
        self.with_node(move |node, now| {
            let contacts: Vec<NodeId> = contacts.into_iter().map(NodeId::from).collect();
            node.join(now, &contacts);
        })
        .await
    }

    /// Broadcasts `payload` to every node of the overlay.
    pub async fn broadcast(&self, payload: Vec<u8>) -> Result<BroadcastId, AgentError> {
        Ok(self
            .with_node(move |node, now| node.broadcast(now, &payload))
            .await??)
    }

    /// The active view: the neighbours payloads travel to and that are
    /// watched for failure.
    pub async fn active(&self) -> Result<Vec<SocketAddr>, AgentError> {
        self.with_node(|node, _| node.active().map(|n| n.addr()).collect())
            .await
    }

    /// The passive view: the reserve the active view is refilled from.
    pub async fn passive(&self) -> Result<Vec<SocketAddr>, AgentError> {
        self.with_node(|node, _| node.passive().iter().map(|n| n.addr()).collect())
            .await
    }

    /// The largest payload [`broadcast`](Self::broadcast) accepts.
    pub async fn max_payload_len(&self) -> Result<usize, AgentError> {
        self.with_node(|node, _| node.config().max_payload_len)
            .await
    }

    /// The node's and the transport's counters.
    pub async fn stats(&self) -> Result<PartialAgentStats, AgentError> {
        self.run(|scope| PartialAgentStats {
            node: scope.node.stats().clone(),
            transport: scope.transport.stats(),
            send_errors: scope.send_errors,
            refused: scope.refused.clone(),
        })
        .await
    }
}
