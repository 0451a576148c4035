//! Invariants of a node's public API that tests and fuzz targets assert.
//!
//! Every check panics with a message naming the broken promise, so a test
//! fails and libFuzzer records a crash. [`Invariants`] applies the frame and
//! event checks to everything a [`Simulator`](crate::Simulator) carries.

use core::time::Duration;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Instant;

use gossip_core::wire::{self, Message};
use gossip_core::Strategy;
use gossip_core::{Aggregate, Config, Event, Liveness, Member, Node, NodeId, RecvError, Stats};

use crate::address::Addressing;
use crate::net::Observer;
use crate::trace::event_member;

/// Everything observable about a node that a refused input must leave as it
/// was ("on error nothing but the error counter changes").
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// `members()`, collected.
    pub members: Vec<Member>,
    /// `live_member_count()`.
    pub live: usize,
    /// `stats()`.
    pub stats: Stats,
    /// `poll_timeout()`.
    pub timeout: Option<Instant>,
    /// `view_hash()`.
    pub view_hash: u64,
    /// `is_joined()`.
    pub joined: bool,
}

impl Snapshot {
    /// Captures `node`'s observable state.
    pub fn of<S: Strategy, A: Aggregate>(node: &Node<S, A>) -> Self {
        Self {
            members: node.members().collect(),
            live: node.live_member_count(),
            stats: node.stats(),
            timeout: node.poll_timeout(),
            view_hash: node.view_hash(),
            joined: node.is_joined(),
        }
    }
}

/// Feeds one frame to `node` and, if it is refused, checks that only the
/// error counter moved and nothing was queued for sending or for the
/// application.
///
/// # Panics
/// If a refusal changed anything else, or if the node's output queues were
/// not empty on entry (they could not be told apart from the frame's).
pub fn handle_checked<S: Strategy, A: Aggregate>(
    node: &mut Node<S, A>,
    now: Instant,
    from: SocketAddr,
    bytes: &[u8],
) -> Result<(), RecvError> {
    let before = Snapshot::of(node);
    let result = node.handle_message(now, from, bytes);
    if let Err(error) = &result {
        let mut expected = before;
        expected.stats.recv_errors += 1;
        assert_eq!(
            Snapshot::of(node),
            expected,
            "handle_message returned {error:?} but changed the node's state"
        );
        assert!(
            node.poll_transmit().is_none(),
            "handle_message returned {error:?} but queued a transmit"
        );
        assert!(
            node.poll_event().is_none(),
            "handle_message returned {error:?} but queued an event"
        );
    }
    result
}

/// Runs `handle_timeout(now)` and checks the timer contract: afterwards
/// nothing is due any more, so `poll_timeout` is `None` or later than `now`;
/// and if nothing was due beforehand, the call did nothing visible.
///
/// # Panics
/// If either half of the contract is broken.
pub fn timeout_checked<S: Strategy, A: Aggregate>(node: &mut Node<S, A>, now: Instant) {
    let early = node.poll_timeout().is_none_or(|t| t > now);
    let before = early.then(|| Snapshot::of(node));
    node.handle_timeout(now);
    if let Some(before) = before {
        assert_eq!(
            Snapshot::of(node),
            before,
            "handle_timeout called before poll_timeout changed the node"
        );
        assert!(
            node.poll_transmit().is_none(),
            "handle_timeout called before poll_timeout sent a frame"
        );
        assert!(
            node.poll_event().is_none(),
            "handle_timeout called before poll_timeout emitted an event"
        );
    }
    if let Some(next) = node.poll_timeout() {
        assert!(
            next > now,
            "after handle_timeout poll_timeout is still due ({:?} not after the tick)",
            next.saturating_duration_since(now)
        );
    }
}

/// Checks one frame a node sent: within `max_message_size`, decodable under
/// the sender's `config`, carrying the sender's identity, and no empty sync.
///
/// # Panics
/// If any of those fails.
pub fn check_frame(config: &Config, sender: NodeId, bytes: &[u8]) {
    let max = config.max_message_size.get();
    assert!(
        bytes.len() <= max,
        "node {sender} emitted a {}-byte frame, above max_message_size {max}",
        bytes.len()
    );
    match wire::decode(config, bytes) {
        Ok((header, message)) => {
            assert_eq!(header.sender, sender, "frame sent under another identity");
            assert_eq!(header.version, wire::PROTOCOL_VERSION);
            if let Message::Sync { entries, .. } = &message {
                assert!(!entries.is_empty(), "empty sync frame");
            }
        }
        Err(error) => panic!(
            "node {sender} emitted a frame its own config rejects: {error:?} ({} bytes: {bytes:02x?})",
            bytes.len()
        ),
    }
}

/// Checks one event of node `me`: never about the node itself, and carrying
/// the liveness its kind implies.
///
/// # Panics
/// If either fails.
pub fn check_event(me: NodeId, event: &Event) {
    let Some(member) = event_member(event) else {
        return;
    };
    assert_ne!(member.id, me, "event about the node itself: {event:?}");
    let expected: &[Liveness] = match event {
        Event::MemberUp(_) => &[Liveness::Alive, Liveness::Suspect],
        Event::MemberSuspect(_) => &[Liveness::Suspect],
        Event::MemberDown(_) => &[Liveness::Dead],
        Event::MemberLeft(_) => &[Liveness::Left],
        Event::MemberUpdated(_) => &[Liveness::Alive],
        _ => return,
    };
    assert!(
        expected.contains(&member.liveness),
        "event {event:?} carries an inconsistent liveness"
    );
}

/// Invariants of one node's view that hold between any two calls: itself
/// first, no member twice, metadata and member count within the config,
/// `live_member_count` equal to the members listed alive or suspect.
///
/// # Panics
/// If any of those fails.
pub fn check_view<S: Strategy, A: Aggregate>(node: &Node<S, A>) {
    let config = node.config();
    let members: Vec<Member> = node.members().collect();
    let own = members.first().expect("members() lists the node itself");
    assert_eq!(
        own.id,
        node.id(),
        "members() does not start with the node itself"
    );
    let mut ids = BTreeSet::new();
    for member in &members {
        assert!(
            ids.insert(member.id),
            "member {} listed twice: {members:?}",
            member.id
        );
        assert!(
            member.metadata.len() <= config.max_metadata_len,
            "member {} holds {} bytes of metadata, above max_metadata_len {}",
            member.id,
            member.metadata.len(),
            config.max_metadata_len
        );
    }
    assert!(
        members.len() <= config.max_members.get(),
        "{} members known, above max_members {}",
        members.len(),
        config.max_members
    );
    // live_member_count is documented as "members currently alive or
    // suspect, this node included (unless it left)"; members() lists the
    // node itself as Left once it departed.
    let listed_live = members
        .iter()
        .filter(|m| matches!(m.liveness, Liveness::Alive | Liveness::Suspect))
        .count();
    assert_eq!(
        node.live_member_count(),
        listed_live,
        "live_member_count disagrees with the liveness members() reports: {members:?}"
    );
}

/// An [`Observer`] that applies [`check_frame`] to every frame and
/// [`check_event`] to every event of a simulation whose nodes all run
/// `config` under `addressing`.
#[derive(Clone, Debug)]
pub struct Invariants {
    config: Config,
    addressing: Addressing,
}

impl Invariants {
    /// Checks for nodes running `config`, listening under `addressing`.
    pub fn new(config: Config, addressing: Addressing) -> Self {
        Self { config, addressing }
    }
}

impl Observer for Invariants {
    fn on_event(&mut self, _at: Duration, node: usize, event: &Event) {
        check_event(NodeId::new(self.addressing.addr(node)), event);
    }

    fn on_transmit(&mut self, _at: Duration, from: usize, _to: SocketAddr, bytes: &[u8]) {
        check_frame(&self.config, NodeId::new(self.addressing.addr(from)), bytes);
    }
}
