//! The tokio driver of the gossip workspace: runs one `gossip_core::Node`
//! on one [`Transport`].
//!
//! An [`Agent`] owns its node outright (no `Arc<Mutex<Node>>`): a single task
//! `select!`s over the transport's receive, a sleep until the node's next
//! deadline and commands from handles. After every branch it sends whatever
//! the node queued and publishes the node's events. The [`AgentHandle`] it
//! returns is cheap to clone and is how the application talks to the node:
//! typed methods for the usual commands, and [`AgentHandle::with_node`] for
//! anything else a `Node` offers.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use gossip_agent::{Agent, AgentConfig, Transport};
//! use gossip_core::{Config, Generation, Node, NodeId};
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
//! [`PartialAgent`] drives the partial-view overlay
//! ([`gossip_core::partial::PartialNode`]: HyParView views with a Plumtree
//! broadcast tree) the same way, for clusters beyond what full views
//! serve; its [`PartialAgentHandle`] joins, broadcasts, shows the views and
//! shuts down.
//!
//! Time comes from tokio's clock, so tests may pause and advance it. The
//! crate needs tokio's `rt`, `time`, `sync` and `macros` features and no
//! others; sockets, TLS and the command line live in the transport crates
//! and in `gossip-node`.
//!
//! With the `test-util` feature, [`testing`] adds an in-memory network and
//! a wrapper that injects loss, duplication, delay and reordering.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod driver;
mod error;
mod handle;
mod partial_driver;
mod partial_handle;
#[cfg(feature = "test-util")]
pub mod testing;

pub use config::AgentConfig;
pub use driver::{recv_error_kind, Agent, BoxedApp};
pub use error::AgentError;
/// The transport seam, re-exported so that a program needs only this crate
/// and a transport crate to run a node.
pub use gossip_transport::{async_trait, Incoming, Transport, TransportError, TransportStats};
pub use handle::{AgentHandle, AgentStats};
pub use partial_driver::{partial_error_kind, PartialAgent};
pub use partial_handle::{PartialAgentHandle, PartialAgentStats};
