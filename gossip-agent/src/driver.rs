//! The task that owns a node: [`Agent::spawn`] and the loop it runs.

use std::collections::BTreeMap;
use std::time::Duration;

use std::net::SocketAddr;

use gossip_apps::{Application, Cluster};
use gossip_core::{
    Aggregate, CommandError, Event, Liveness, Member, MessageId, Node, NodeId, RecvError, Strategy,
};
use gossip_transport::{Incoming, Transport, TransportError};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::{AgentConfig, AgentError, AgentHandle};

/// What a job sees while it runs on the agent's task: the node, the time
/// it runs at, and the driver's own counters (which the node cannot know).
pub(crate) struct Scope<'a, S, A> {
    pub(crate) node: &'a mut Node<S, A>,
    pub(crate) now: std::time::Instant,
    pub(crate) transport: &'a dyn Transport,
    pub(crate) send_errors: u64,
    pub(crate) refused: &'a BTreeMap<&'static str, u64>,
    pub(crate) apps: &'a mut Vec<BoxedApp>,
    pub(crate) bulk: &'a mut BulkOutbox,
}

/// Bulk bodies the applications asked to send, with the largest the
/// transport carries; the driver sends them after the branch that queued
/// them, like the node's transmits.
pub(crate) struct BulkOutbox {
    max_len: usize,
    queued: Vec<(SocketAddr, Vec<u8>)>,
}

/// The node as an application's [`Cluster`], plus the transport's bulk
/// path, which the node (sans-IO, frames only) does not have.
pub(crate) struct Host<'a, S: Strategy, A: Aggregate> {
    pub(crate) node: &'a mut Node<S, A>,
    pub(crate) bulk: &'a mut BulkOutbox,
}

impl<S: Strategy, A: Aggregate> Cluster for Host<'_, S, A> {
    fn me(&self) -> NodeId {
        self.node.id()
    }

    fn members(&self) -> Vec<Member> {
        self.node.members().collect()
    }

    fn broadcast(
        &mut self,
        now: std::time::Instant,
        payload: &[u8],
    ) -> Result<MessageId, CommandError> {
        self.node.broadcast(now, payload)
    }

    fn send_direct(
        &mut self,
        now: std::time::Instant,
        to: NodeId,
        payload: &[u8],
    ) -> Result<(), CommandError> {
        self.node.send_direct(now, to, payload)
    }

    fn max_broadcast_len(&self) -> usize {
        self.node.max_payload_len()
    }

    fn max_direct_len(&self) -> usize {
        self.node.max_direct_len()
    }

    fn max_bulk_len(&self) -> usize {
        self.bulk.max_len
    }

    fn send_bulk(
        &mut self,
        _now: std::time::Instant,
        to: NodeId,
        body: Vec<u8>,
    ) -> Result<(), CommandError> {
        if body.len() > self.bulk.max_len {
            return Err(CommandError::PayloadTooLarge {
                len: body.len(),
                max: self.bulk.max_len,
            });
        }
        if to == self.node.id() || !is_live_member(self.node, to) {
            return Err(CommandError::NotAMember);
        }
        self.bulk.queued.push((to.addr(), body));
        Ok(())
    }
}

/// Whether `id` is a live member (alive or suspect) in `node`'s view.
fn is_live_member<S: Strategy, A: Aggregate>(node: &Node<S, A>, id: NodeId) -> bool {
    node.members()
        .any(|m| m.id == id && matches!(m.liveness, Liveness::Alive | Liveness::Suspect))
}

/// An application the agent hosts beside its node.
pub type BoxedApp = Box<dyn Application + Send>;

/// One command from a handle, erased to a closure: whatever it computes
/// travels back through a channel the closure captured, so the driver
/// needs no per-command code.
pub(crate) type Job<S, A> = Box<dyn for<'a> FnOnce(Scope<'a, S, A>) + Send>;

/// What handles send the driver.
pub(crate) enum Message<S, A> {
    /// Run a closure on the node; the loop then sends and publishes what
    /// it queued, as after any other input.
    Run(Job<S, A>),
    /// Leave gracefully, linger while the farewell spreads, then stop. Not
    /// a job: it changes how the loop itself runs.
    Leave(oneshot::Sender<Result<(), CommandError>>),
}

/// The driver. Build one with [`Agent::spawn`]; it runs until shut down.
#[derive(Debug)]
pub struct Agent;

impl Agent {
    /// Starts a task that drives `node` over `transport` on the current
    /// tokio runtime. The node is not started: call
    /// [`AgentHandle::join`] (with no seeds to found a cluster).
    ///
    /// Refuses a node whose `max_message_size` exceeds what the transport
    /// sends at all ([`AgentError::FrameTooLarge`]) or what it carries
    /// unfragmented ([`AgentError::WouldFragment`]), or whose identity is
    /// not the transport's address ([`AgentError::AddressMismatch`]; a
    /// transport bound to an unspecified address such as `0.0.0.0` only
    /// needs the same port).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn spawn<S, A, T>(
        node: Node<S, A>,
        transport: T,
        config: AgentConfig,
    ) -> Result<AgentHandle<S, A>, AgentError>
    where
        S: Strategy + Send + 'static,
        A: Aggregate + Send + 'static,
        T: Transport + 'static,
    {
        let id = node.id().addr();
        check_transport(id, node.config().max_message_size.get(), &transport)?;
        let max_bulk_len = transport.max_bulk_len();
        let (commands, command_rx) = mpsc::channel(config.command_capacity.max(1));
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        let driver = Driver {
            node,
            transport,
            events: events.clone(),
            leave_linger: config.leave_linger,
            max_frames_per_flush: config.max_frames_per_flush.max(1),
            send_errors: 0,
            refused: BTreeMap::new(),
            apps: Vec::new(),
            bulk: BulkOutbox {
                max_len: max_bulk_len,
                queued: Vec::new(),
            },
        };
        let (stopped_tx, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            driver.run(command_rx).await;
            let _ = stopped_tx.send(true);
        })
        .abort_handle();
        Ok(AgentHandle::new(id, commands, events, task, stopped))
    }
}

/// Checks that `transport` can carry a node at `id` whose frames are at
/// most `max_message` bytes: the frames fit unfragmented, and the node's
/// identity is the transport's address (a transport bound to an
/// unspecified address such as `0.0.0.0` only needs the same port).
pub(crate) fn check_transport(
    id: SocketAddr,
    max_message: usize,
    transport: &impl Transport,
) -> Result<(), AgentError> {
    check_frame_sizes(max_message, transport)?;
    let local = transport.local_addr();
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
    Ok(())
}

fn check_frame_sizes(max_message: usize, transport: &impl Transport) -> Result<(), AgentError> {
    let max_frame = transport.max_frame_len();
    if max_message > max_frame {
        return Err(AgentError::FrameTooLarge {
            node: max_message,
            transport: max_frame,
        });
    }
    // A transport that claims more than it sends at all is held to what it sends.
    let unfragmented = transport.unfragmented_frame_len().min(max_frame);
    if max_message > unfragmented {
        return Err(AgentError::WouldFragment {
            node: max_message,
            unfragmented,
        });
    }
    Ok(())
}

struct Driver<S: Strategy, A: Aggregate, T> {
    node: Node<S, A>,
    transport: T,
    events: broadcast::Sender<Event>,
    leave_linger: Duration,
    max_frames_per_flush: usize,
    send_errors: u64,
    /// Frames the node refused, by [`recv_error_kind`].
    refused: BTreeMap<&'static str, u64>,
    /// Applications beside the node: each sees every event and wakes at
    /// its own deadline.
    apps: Vec<BoxedApp>,
    /// Bulk bodies the applications queued.
    bulk: BulkOutbox,
}

/// A short, stable name for the kind of a [`RecvError`] (`"wrong_cluster"`,
/// `"malformed"`, ...), for counters and metric labels; `"other"` for kinds
/// added to the core after this list.
pub fn recv_error_kind(error: &RecvError) -> &'static str {
    match error {
        RecvError::TooLarge { .. } => "too_large",
        RecvError::Empty => "empty",
        RecvError::UnsupportedVersion(_) => "unsupported_version",
        RecvError::WrongCluster => "wrong_cluster",
        RecvError::Malformed(_) => "malformed",
        RecvError::TrailingBytes(_) => "trailing_bytes",
        RecvError::FromSelf => "from_self",
        RecvError::MetadataTooLong { .. } => "metadata_too_long",
        RecvError::Departed => "departed",
        RecvError::SenderMismatch => "sender_mismatch",
        RecvError::PayloadTooLarge { .. } => "payload_too_large",
        RecvError::ShareTypeMismatch { .. } => "share_type_mismatch",
        _ => "other",
    }
}

pub(crate) fn now() -> std::time::Instant {
    // tokio's clock, so that tests may pause and advance it.
    Instant::now().into_std()
}

/// Where the loop is in a graceful stop: until when it lingers, and who
/// waits to hear that it stopped.
type Lingering = (Instant, Option<oneshot::Sender<Result<(), CommandError>>>);

impl<S: Strategy, A: Aggregate, T: Transport + 'static> Driver<S, A, T> {
    async fn run(mut self, mut commands: mpsc::Receiver<Message<S, A>>) {
        // Set when a leave was asked for: run until the farewell is sent.
        let mut linger_until: Option<Lingering> = None;
        let mut recv_failures = RecvFailures::default();
        loop {
            let node_deadline = self.node.poll_timeout();
            let app_deadline = self.apps.iter().filter_map(|app| app.poll_timeout()).min();
            let deadline = match (node_deadline, app_deadline) {
                (Some(n), Some(a)) => Some(n.min(a)),
                (n, a) => n.or(a),
            }
            .map(Instant::from_std);
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
                        recv_failures.reset();
                        self.handle_frame(from, &bytes);
                        self.handle_waiting_frames().await;
                    }
                    Ok(Incoming::Unreachable(peer)) => {
                        self.node.peer_unreachable(now(), peer.into());
                    }
                    Ok(Incoming::Bulk { from, bytes }) => self.handle_bulk(from, &bytes),
                    Ok(other) => tracing::debug!(?other, "unknown kind of input ignored"),
                    Err(TransportError::Closed) => break,
                    Err(error) => recv_failures.failed(&error).await,
                },
                () = sleep_until(wake) => {
                    let now = now();
                    if node_deadline.is_some_and(|d| d <= now) {
                        self.node.handle_timeout(now);
                    }
                    let mut host = Host { node: &mut self.node, bulk: &mut self.bulk };
                    for app in &mut self.apps {
                        if app.poll_timeout().is_some_and(|d| d <= now) {
                            app.handle_timeout(now, &mut host);
                        }
                    }
                }
                command = commands.recv(), if linger_until.is_none() => match command {
                    Some(Message::Run(job)) => job(Scope {
                        node: &mut self.node,
                        now: now(),
                        transport: &self.transport,
                        send_errors: self.send_errors,
                        refused: &self.refused,
                        apps: &mut self.apps,
                        bulk: &mut self.bulk,
                    }),
                    Some(Message::Leave(reply)) => match self.node.leave(now()) {
                        Ok(()) => linger_until = Some((Instant::now() + self.leave_linger, Some(reply))),
                        // Never joined (or already left): there is
                        // nothing to announce, so stopping is all.
                        Err(_) => {
                            linger_until = Some((Instant::now(), Some(reply)));
                            break;
                        }
                    },
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
            // Whatever the branch (a frame, a timer, any command), what the
            // node queued leaves now.
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

    fn handle_frame(&mut self, from: std::net::SocketAddr, bytes: &[u8]) {
        if let Err(error) = self.node.handle_message(now(), from, bytes) {
            tracing::debug!(%from, %error, "frame refused");
            *self.refused.entry(recv_error_kind(&error)).or_default() += 1;
        }
    }

    /// Hands a bulk body to the applications. Only members' bodies reach
    /// them, as only members' direct messages do.
    fn handle_bulk(&mut self, from: std::net::SocketAddr, bytes: &[u8]) {
        let from = NodeId::from(from);
        if is_live_member(&self.node, from) {
            let now = now();
            let mut host = Host {
                node: &mut self.node,
                bulk: &mut self.bulk,
            };
            for app in &mut self.apps {
                app.handle_bulk(now, from, bytes, &mut host);
            }
        } else {
            *self.refused.entry("bulk_from_stranger").or_default() += 1;
        }
    }

    /// Hands the node frames that are already waiting, up to
    /// `max_frames_per_flush` in all, without waiting for more: `recv` is
    /// cancellation-safe, so a receive that is not ready is dropped.
    async fn handle_waiting_frames(&mut self) {
        for _ in 1..self.max_frames_per_flush {
            let Some(waiting) = recv_ready(&self.transport).await else {
                return;
            };
            match waiting {
                Ok(Incoming::Frame { from, bytes }) => self.handle_frame(from, &bytes),
                Ok(Incoming::Unreachable(peer)) => self.node.peer_unreachable(now(), peer.into()),
                // A body taken here must be handled here: it is not
                // received twice.
                Ok(Incoming::Bulk { from, bytes }) => self.handle_bulk(from, &bytes),
                // Errors and closing are left to the main loop's next receive.
                _ => return,
            }
        }
    }

    /// Sends what the node queued and publishes its events, after the
    /// applications have seen each (what they do in turn is sent too).
    async fn flush(&mut self) {
        loop {
            while let Some(transmit) = self.node.poll_transmit() {
                if let Err(error) = self.transport.send(transmit.to, &transmit.bytes).await {
                    self.send_errors += 1;
                    tracing::debug!(to = %transmit.to, %error, "send failed");
                }
            }
            for (to, body) in std::mem::take(&mut self.bulk.queued) {
                if let Err(error) = self.transport.send_bulk(to, body).await {
                    self.send_errors += 1;
                    tracing::debug!(%to, %error, "bulk send failed");
                }
            }
            let Some(event) = self.node.poll_event() else {
                break;
            };
            if !self.apps.is_empty() {
                let now = now();
                let mut host = Host {
                    node: &mut self.node,
                    bulk: &mut self.bulk,
                };
                for app in &mut self.apps {
                    app.handle_event(now, &event, &mut host);
                }
            }
            // No subscriber is not an error: events are offered, not owed.
            let _ = self.events.send(event);
        }
    }
}

/// A frame (or other input) already waiting on `transport`, without
/// waiting for one: `recv` is cancellation-safe, so a receive that is not
/// ready is dropped. `None` when nothing waits.
pub(crate) async fn recv_ready(
    transport: &impl Transport,
) -> Option<Result<Incoming, TransportError>> {
    tokio::select! {
        biased;
        received = transport.recv() => Some(received),
        () = std::future::ready(()) => None,
    }
}

/// Receive failures in a row: a socket that fails every time must not
/// spin a core, so after a few the loop pauses before the next receive.
#[derive(Default)]
pub(crate) struct RecvFailures(u32);

impl RecvFailures {
    /// A receive succeeded.
    pub(crate) fn reset(&mut self) {
        self.0 = 0;
    }

    /// A receive failed with `error`: logged, and paused on after three.
    pub(crate) async fn failed(&mut self, error: &TransportError) {
        tracing::warn!(%error, "receive failed");
        self.0 += 1;
        if self.0 > 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
