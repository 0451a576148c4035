//! Aggregation by gossip for [`gossip_core`].
//!
//! Every algorithm computes one [`Function`] of the nodes' inputs and
//! implements [`gossip_core::Aggregate`], so it runs in the simulator's math
//! mode as it would in a node.
//!
//! | algorithm | converges | under message loss | cost per node and round |
//! | --- | --- | --- | --- |
//! | [`PushSum`] (Kempe, Dobra, Gehrke 2003) | variance halves about every round | lost shares are lost mass: the estimate drifts | 1 message |
//! | [`PushPull`] (Jelasity, Montresor, Babaoglu 2005) | fastest: variance / (2 sqrt e) per round | a lost answer tears the exchange: mass drifts | 2 messages |
//! | [`FlowUpdating`] (Jesus, Baquero, Almeida 2009) | slower, over a few stable neighbours | converges to the exact value anyway | `degree` messages |
//!
//! Sums and counts need one designated node (the *leader*): count is
//! `1 / average` of an indicator that is 1 at the leader only.
//!
//! Every share may come from a liar. Each algorithm refuses non-finite
//! values, negative weights, weights above [`Limits::max_share_weight`] and,
//! if the application gives one, values outside [`Limits::value_range`];
//! push-pull takes a reply only to its own outstanding request, and flow
//! updating caps its links. A refused share changes nothing and is counted
//! ([`Rejections`]). Whether a share's sender is a live member is for the
//! host to check: the seam gives an aggregate only the sender's id.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod any;
mod common;
mod flow;
mod push_pull;
mod push_sum;

pub use any::{Algorithm, AnyAggregate, AnyShare};
pub use common::{Function, Input, Limits, Rejections};
pub use flow::{FlowShare, FlowUpdating};
pub use push_pull::{PushPull, PushPullShare};
pub use push_sum::{PushSum, PushSumShare};
