//! Sans-IO core of the gossip workspace.
//!
//! [`Node`] is one cluster member's protocol state machine: SWIM membership
//! (probe, indirect probe through `k` helpers, suspicion refuted by
//! incarnation numbers, infection-style piggybacking) with Lifeguard's local
//! health and confirmation-shrunk suspicion timeouts, view-hash-triggered
//! state sync, re-probing of dead members so healed partitions merge, and
//! two plug-in seams: a dissemination [`Strategy`] and an [`Aggregate`],
//! and an optional [`RumorSigner`] that signs and verifies rumor origins.
//!
//! # The contract
//!
//! A `Node` reads no clock, does no I/O and draws randomness only from its
//! own ChaCha8 generator seeded at construction. The host (a simulator, or
//! a socket driver such as `gossip-agent`) owns time and transport. Same
//! seed and same inputs in the same order give byte-identical outputs.
//!
//! Its methods come in four kinds:
//!
//! | kind | methods | what they do |
//! | --- | --- | --- |
//! | inputs | [`handle_message`](Node::handle_message), [`handle_timeout`](Node::handle_timeout) | a received frame; the passage of time |
//! | commands | [`join`](Node::join), [`leave`](Node::leave), [`broadcast`](Node::broadcast), [`set_metadata`](Node::set_metadata), [`set_aggregate_input`](Node::set_aggregate_input), [`peer_unreachable`](Node::peer_unreachable) | what the application asks |
//! | outputs | [`poll_transmit`](Node::poll_transmit), [`poll_event`](Node::poll_event), [`poll_timeout`](Node::poll_timeout) | frames to send, events, the next deadline |
//! | getters | [`id`](Node::id), [`members`](Node::members), [`stats`](Node::stats), [`config`](Node::config), ... | read-only views |
//!
//! The rules a host keeps:
//!
//! 1. **Time never goes backwards.** Every input and command takes `now`;
//!    pass a value at least as late as the one before. The node compares
//!    instants, it never measures them, so any monotonic origin works.
//! 2. **Poll after every input or command**, in this order: drain
//!    `poll_transmit` until `None` and send each frame; drain `poll_event`
//!    until `None`; then read `poll_timeout`. Outputs wait in queues until
//!    polled, so a late poll loses nothing, but frames sent late are late.
//! 3. **Re-read `poll_timeout` after every input**: any input may arm an
//!    earlier deadline. Call `handle_timeout` when that instant comes;
//!    calling it early does nothing, calling it late runs every timer that
//!    came due, earliest first. `None` means no timer is armed (not started,
//!    or departed and quiet).
//! 4. **Frames before `join`** are decoded and validated (errors are
//!    reported as usual) but change nothing: a node that has not joined
//!    answers nobody. After [`leave`](Node::leave), every frame is refused
//!    with [`RecvError::Departed`] while the farewell gossip drains.
//! 5. **Every frame may lie.** `handle_message` never panics on any bytes;
//!    a refused frame is a typed [`RecvError`], counted in
//!    [`Stats::recv_errors`], and changes no other state.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use gossip_core::{Config, Generation, Node, NodeId};
//!
//! let addr = "127.0.0.1:7001".parse().unwrap();
//! let mut node = Node::new(Config::default(), NodeId::new(addr), Generation(1), 7).unwrap();
//! let mut now = Instant::now();
//! node.join(now, &[]).unwrap();
//! for _ in 0..10 {
//!     // (A real host would also feed received frames to handle_message.)
//!     while let Some(transmit) = node.poll_transmit() {
//!         let _ = transmit; // send it
//!     }
//!     while let Some(event) = node.poll_event() {
//!         println!("{event:?}");
//!     }
//!     now = node.poll_timeout().unwrap_or(now + Duration::from_secs(1));
//!     node.handle_timeout(now);
//! }
//! ```
//!
//! # Inside
//!
//! `Node` is a dispatcher over owned parts, each a type with its own state
//! transitions and tests: the view, the failure detector, state sync with
//! its reply budget, the update queue, the outbox and one timer table (see
//! the `node` module's source). The wire encoding is private; the
//! `unstable-wire` feature exposes it to fuzz targets and benchmarks, with
//! no stability promise.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod aggregate;
mod config;
mod error;
mod id;
mod member;
mod membership;
mod node;
pub mod partial;
mod signing;
mod stats;
mod store;
mod strategy;
#[cfg(feature = "unstable-wire")]
pub mod wire;
#[cfg(not(feature = "unstable-wire"))]
#[allow(dead_code, unreachable_pub)] // parts only tests, fuzzers and benchmarks use
mod wire;

pub use aggregate::{share_type, Aggregate, AggregateHost, NoAggregate};
pub use config::{Config, MAX_LABEL_LEN};
pub use error::{CommandError, ConfigError, RecvError};
pub use id::{Generation, Incarnation, MessageId, NodeId};
pub use member::{Liveness, Member};
pub use node::{Event, Node, Transmit};
pub use signing::{signed_bytes, RumorSigner, MAX_SIGNATURE_LEN};
pub use stats::Stats;
pub use strategy::{Digest, GossipMessage, Host, NoStrategy, Rumor, Strategy};
