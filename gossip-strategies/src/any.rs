//! Runtime choice among the strategies, with static dispatch.

use gossip_core::{Digest, Host, MessageId, NodeId, Rumor, Strategy};
use serde::{Deserialize, Serialize};

use crate::{AntiEntropy, Central, Direct, Flood, Plumtree, RumorMongering};

/// Any strategy of this crate, chosen at runtime (for example from a config
/// file) and dispatched by `match`.
///
/// ```
/// use gossip_strategies::AnyStrategy;
/// let strategy: AnyStrategy = serde_json::from_str(
///     r#"{"kind":"anti-entropy","mode":"push-pull","fanout":1,"every":1}"#,
/// ).unwrap();
/// assert!(matches!(strategy, AnyStrategy::AntiEntropy(_)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AnyStrategy {
    /// [`RumorMongering`].
    Rumor(RumorMongering),
    /// [`AntiEntropy`].
    AntiEntropy(AntiEntropy),
    /// [`Flood`].
    Flood(Flood),
    /// [`Direct`].
    Direct(Direct),
    /// [`Central`].
    Central(Central),
    /// [`Plumtree`].
    Plumtree(Plumtree),
}

macro_rules! each {
    ($self:expr, $s:ident => $body:expr) => {
        match $self {
            AnyStrategy::Rumor($s) => $body,
            AnyStrategy::AntiEntropy($s) => $body,
            AnyStrategy::Flood($s) => $body,
            AnyStrategy::Direct($s) => $body,
            AnyStrategy::Central($s) => $body,
            AnyStrategy::Plumtree($s) => $body,
        }
    };
}

impl AnyStrategy {
    /// The tree's counters when this is [`Plumtree`], else `None`.
    pub fn tree_stats(&self) -> Option<crate::TreeStats> {
        match self {
            AnyStrategy::Plumtree(tree) => Some(tree.stats()),
            _ => None,
        }
    }
}

impl Strategy for AnyStrategy {
    fn on_rumor<H: Host>(&mut self, host: &mut H, rumor: Rumor, from: Option<NodeId>) {
        each!(self, s => s.on_rumor(host, rumor, from))
    }
    fn on_duplicate<H: Host>(&mut self, host: &mut H, rumor: Rumor, from: NodeId) {
        each!(self, s => s.on_duplicate(host, rumor, from))
    }
    fn on_feedback<H: Host>(&mut self, host: &mut H, from: NodeId, known: &[MessageId]) {
        each!(self, s => s.on_feedback(host, from, known))
    }
    fn on_pull<H: Host>(&mut self, host: &mut H, from: NodeId, digest: &Digest, reciprocate: bool) {
        each!(self, s => s.on_pull(host, from, digest, reciprocate))
    }
    fn on_announce<H: Host>(&mut self, host: &mut H, from: NodeId, ids: &[MessageId]) {
        each!(self, s => s.on_announce(host, from, ids))
    }
    fn on_graft<H: Host>(&mut self, host: &mut H, from: NodeId, ids: &[MessageId]) {
        each!(self, s => s.on_graft(host, from, ids))
    }
    fn on_prune<H: Host>(&mut self, host: &mut H, from: NodeId) {
        each!(self, s => s.on_prune(host, from))
    }
    fn on_round<H: Host>(&mut self, host: &mut H) {
        each!(self, s => s.on_round(host))
    }
    fn wants_rounds(&self) -> bool {
        each!(self, s => s.wants_rounds())
    }
    fn is_quiescent(&self) -> bool {
        each!(self, s => s.is_quiescent())
    }
    fn on_peer_down(&mut self, peer: NodeId) {
        each!(self, s => s.on_peer_down(peer))
    }
}
