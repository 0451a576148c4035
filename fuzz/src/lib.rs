//! Checks shared by the gossip-core fuzz targets.
//!
//! Every check panics (so libFuzzer records a crash) when a node breaks a
//! documented property of its public API.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gossip_core::wire::{self, Message};
use gossip_core::{Event, Liveness, Member, Node, RecvError, Stats};

/// Origin of virtual time, captured once per process: runs depend only on
/// offsets from it.
pub fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// The virtual instant `offset` after [`base`].
pub fn at(offset: Duration) -> Instant {
    base() + offset
}

/// Address `127.0.0.1:(7000 + i)`.
pub fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i))
}

/// Everything observable about a node that a refused frame must leave as it
/// was ("On error nothing but the error counter changes").
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    members: Vec<Member>,
    live: usize,
    stats: Stats,
    timeout: Option<Instant>,
    view_hash: u64,
    joined: bool,
}

impl Snapshot {
    /// Captures `node`'s observable state.
    pub fn of(node: &Node) -> Self {
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
/// application. The node's output queues must be empty on entry.
pub fn handle_checked(
    node: &mut Node,
    now: Instant,
    from: SocketAddr,
    bytes: &[u8],
) -> Result<(), RecvError> {
    let before = Snapshot::of(node);
    let result = node.handle_message(now, from, bytes);
    if let Err(error) = &result {
        let mut expected = before;
        expected.stats.recv_errors += 1;
        let after = Snapshot::of(node);
        assert_eq!(
            after, expected,
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

/// Checks one frame `node` handed out: within `max_message_size`, decodable
/// under the node's own config, and sent under the node's own identity.
pub fn check_frame(node: &Node, bytes: &[u8]) {
    let config = node.config();
    let max = config.max_message_size.get();
    assert!(
        bytes.len() <= max,
        "node {} emitted a {}-byte frame, above max_message_size {max}",
        node.id(),
        bytes.len()
    );
    match wire::decode(config, bytes) {
        Ok((header, message)) => {
            assert_eq!(
                header.sender,
                node.id(),
                "frame sent under another identity"
            );
            assert_eq!(header.version, wire::PROTOCOL_VERSION);
            if let Message::Sync { entries, .. } = &message {
                assert!(!entries.is_empty(), "empty sync frame");
            }
        }
        Err(error) => panic!(
            "node {} emitted a frame its own config rejects: {error:?} ({} bytes: {bytes:02x?})",
            node.id(),
            bytes.len()
        ),
    }
}

/// Drains `node`'s transmits, checking each with [`check_frame`], and returns
/// them as `(destination, bytes)`.
pub fn drain_transmits(node: &mut Node) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(t) = node.poll_transmit() {
        check_frame(node, &t.bytes);
        out.push((t.to, t.bytes));
    }
    out
}

/// The member an event is about.
fn event_member(event: &Event) -> Option<&Member> {
    match event {
        Event::MemberUp(m)
        | Event::MemberSuspect(m)
        | Event::MemberDown(m)
        | Event::MemberLeft(m)
        | Event::MemberUpdated(m) => Some(m),
        _ => None,
    }
}

/// Drains `node`'s events, checking that none is about the node itself and
/// that each carries the liveness its kind implies.
pub fn drain_events(node: &mut Node) {
    while let Some(event) = node.poll_event() {
        let Some(member) = event_member(&event) else {
            continue;
        };
        assert_ne!(
            member.id,
            node.id(),
            "event about the node itself: {event:?}"
        );
        let expected: &[Liveness] = match event {
            Event::MemberUp(_) => &[Liveness::Alive, Liveness::Suspect],
            Event::MemberSuspect(_) => &[Liveness::Suspect],
            Event::MemberDown(_) => &[Liveness::Dead],
            Event::MemberLeft(_) => &[Liveness::Left],
            Event::MemberUpdated(_) => &[Liveness::Alive],
            _ => continue,
        };
        assert!(
            expected.contains(&member.liveness),
            "event {event:?} carries an inconsistent liveness"
        );
    }
}

/// Invariants of one node's view that hold between any two calls.
pub fn check_view(node: &Node) {
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
    let live = node.live_member_count();
    assert!(
        live <= members.len(),
        "live_member_count {live} exceeds the {} members listed",
        members.len()
    );
    // live_member_count is documented as "members currently alive or
    // suspect, this node included (unless it left)"; members() lists the node
    // itself as Left once it departed.
    let listed_live = members
        .iter()
        .filter(|m| matches!(m.liveness, Liveness::Alive | Liveness::Suspect))
        .count();
    assert_eq!(
        live, listed_live,
        "live_member_count disagrees with the liveness members() reports: {members:?}"
    );
}

/// Runs `handle_timeout(now)` and checks the timer contract: afterwards
/// nothing is due any more, so `poll_timeout` is `None` or later than `now`.
/// Also, if nothing was due beforehand, the call must do nothing visible.
pub fn timeout_checked(node: &mut Node, now: Instant) {
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
            "after handle_timeout({:?}) poll_timeout is still due at {:?}",
            now - base(),
            next - base()
        );
    }
}
