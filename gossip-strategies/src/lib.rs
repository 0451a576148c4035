//! Dissemination strategies for [`gossip_core`].
//!
//! Each type implements [`gossip_core::Strategy`], so it runs inside a real
//! [`gossip_core::Node`] and, unchanged, in the simulator's math mode.
//!
//! | strategy | messages per broadcast | latency | when to choose it |
//! | --- | --- | --- | --- |
//! | [`RumorMongering`] | about `m` per node, tunable by `k` | `log N` rounds | many updates, bandwidth matters, a small residue is tolerable (or backed by anti-entropy) |
//! | [`Plumtree`] | about 1 payload per node once the tree has formed, plus one id per lazy link | tree depth hops at network speed | payloads larger than a few ids, a steady stream of broadcasts, bandwidth matters |
//! | [`AntiEntropy`] | unbounded (runs forever) | `log N` rounds | the backstop that makes delivery certain; few keys or digest reconciliation |
//! | [`Flood`] | `N (N - 1)` | one hop | tiny clusters, or as the reliable baseline |
//! | [`Direct`] | `N - 1`, all from the origin | one hop | small clusters, origin has bandwidth |
//! | [`Central`] | `N` through one coordinator | two hops | the Zookeeper-style baseline: simple, one point of failure |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod anti_entropy;
mod any;
mod baselines;
mod plumtree;
mod rumor;

pub use anti_entropy::{AntiEntropy, Mode};
pub use any::AnyStrategy;
pub use baselines::{Central, Direct, Flood};
pub use plumtree::{Plumtree, TreeStats};
pub use rumor::{Interest, Relay, RumorMongering, Termination};
