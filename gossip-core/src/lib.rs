//! Sans-IO core of the gossip workspace.
//!
//! [`Node`] is a state machine: feed it received frames with
//! [`Node::handle_message`] and the passage of time with
//! [`Node::handle_timeout`]; take what it wants sent with
//! [`Node::poll_transmit`], what happened with [`Node::poll_event`], and when
//! to wake it next with [`Node::poll_timeout`]. It reads no clock, does no I/O
//! and draws randomness from its own seeded ChaCha8 generator, so a simulator
//! and a socket driver run exactly the same code, and a run can be replayed
//! byte for byte.
//!
//! Membership follows SWIM (probe, indirect probe through `k` helpers,
//! suspicion refuted by incarnation numbers, infection-style piggybacking)
//! with Lifeguard's local health and confirmation-shrunk suspicion timeouts,
//! plus view-hash-triggered state sync and re-probing of dead members so that
//! late joiners catch up and healed partitions merge by themselves.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod aggregate;
mod config;
mod error;
mod id;
mod membership;
mod node;
mod stats;
mod store;
mod strategy;
pub mod wire;

pub use aggregate::{Aggregate, AggregateHost, NoAggregate};
pub use config::{Config, MAX_LABEL_LEN};
pub use error::{CommandError, ConfigError, RecvError};
pub use id::{Generation, Incarnation, MessageId, NodeId};
pub use node::{Event, Node, Transmit};
pub use stats::Stats;
pub use strategy::{Digest, GossipMessage, Host, NoStrategy, Rumor, Strategy};
pub use wire::{Liveness, Member};
