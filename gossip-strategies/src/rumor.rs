//! Rumor mongering (Demers et al., "Epidemic algorithms for replicated
//! database maintenance", PODC 1987, section 1.4).

use std::collections::BTreeMap;

use gossip_core::{Digest, GossipMessage, Host, MessageId, NodeId, Rumor, Strategy};
use serde::{Deserialize, Serialize};

use crate::anti_entropy::{AntiEntropy, Mode};

/// How a node loses interest in a rumor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Termination {
    /// After `k` contacts that found the peer already informed.
    FeedbackCounter,
    /// With probability `1/k` after each contact that found the peer informed.
    FeedbackCoin,
    /// After `k` contacts, whatever they found.
    BlindCounter,
    /// With probability `1/k` after every contact.
    BlindCoin,
}

impl Termination {
    /// Whether interest is lost only on useless contacts (needs feedback).
    pub fn uses_feedback(self) -> bool {
        matches!(
            self,
            Termination::FeedbackCounter | Termination::FeedbackCoin
        )
    }
    fn uses_coin(self) -> bool {
        matches!(self, Termination::FeedbackCoin | Termination::BlindCoin)
    }
}

/// When a newly learned rumor is first passed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relay {
    /// At once, on receipt: latency is hops times the link delay.
    Eager,
    /// At the next round: rumors learned in between share frames.
    Batched,
}

/// How interested a node still is in one hot rumor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    rumor: Rumor,
    counter: u32,
    /// Useless contacts still to forgive: those of the eager wave, which
    /// is a fast first pass, not part of the rumor's counted life.
    grace: u32,
}

/// Rumor mongering: a node that learns a rumor becomes *infective* and
/// spreads it each round to `fanout` random peers (push), or hands it to
/// peers that ask (pull), until it loses interest by [`Termination`]
/// with parameter `k`.
///
/// - Traffic is bounded: each node sends a rumor a few times and stops, so
///   the cost per update is about `m` messages per node whatever the cluster
///   size. The price is a *residue*: a small fraction of nodes may never
///   hear it. Demers' push with feedback and coin leaves `s` with
///   `s = e^(-(k+1)(1-s))`; pull leaves fewer behind for the same traffic.
/// - `hop_limit` stops relaying after that many hops.
/// - `backup` runs anti-entropy slowly behind it, so the residue reaches
///   zero; pulls are then answered with everything missing, not only hot
///   rumors.
/// - [`Relay::Eager`] forwards on receipt (lowest latency);
///   [`Relay::Batched`] waits for the round (packs more per frame). The
///   eager wave runs at network speed and only the nodes it misses wait
///   for a round, so on receipt it fans out to at least `ceil(ln n) + 2`
///   of the `n` known peers: when every node forwards to `ln n + c` peers,
///   all are reached with probability about `exp(-exp(-c))` (Kermarrec,
///   Massoulie and Ganesh, "Probabilistic reliable dissemination in
///   large-scale systems", 2003); with `c = 2`, nine broadcasts in ten
///   reach everyone without waiting for a round. Duplicates reported for
///   the wave do not count towards termination, so every node still
///   pushes at its next round and finds the few the wave missed.
///
/// Choose it for a steady stream of updates where bandwidth matters; add a
/// backup when every update must arrive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RumorMongering {
    /// Push, pull or both.
    pub mode: Mode,
    /// Peers contacted per round.
    pub fanout: u32,
    /// How interest is lost.
    pub termination: Termination,
    /// The counter limit, or the inverse coin probability.
    pub k: u32,
    /// Do not relay rumors that already travelled this many hops.
    pub hop_limit: Option<u16>,
    /// Forward on receipt or at the next round.
    pub relay: Relay,
    /// Optional anti-entropy backstop.
    pub backup: Option<AntiEntropy>,
    /// Most rumors spread at once; beyond it the one closest to losing
    /// interest is dropped. Bounds memory whatever peers send (and rumors
    /// whose payload the host no longer holds). Default 4096.
    #[serde(default = "default_max_hot")]
    pub max_hot: usize,
    #[serde(skip)]
    hot: BTreeMap<MessageId, Interest>,
}

fn default_max_hot() -> usize {
    4096
}

impl Default for RumorMongering {
    /// A choice for real clusters: push with feedback and a counter of 3,
    /// fanout 3, eager relay (latency is hops times the link delay), backed
    /// by push-pull anti-entropy with one peer every 25 rounds (5 s at the
    /// LAN gossip interval), so that every broadcast reaches every live
    /// node while an idle node sends less than one backup packet every
    /// few seconds.
    fn default() -> Self {
        Self::new(Mode::Push, Termination::FeedbackCounter, 3)
            .fanout(3)
            .relay(Relay::Eager)
            .backed_by(AntiEntropy::new(Mode::PushPull, 1).every(25))
    }
}

impl RumorMongering {
    /// Push rumor mongering with feedback and coin, `k`, fanout 1, batched.
    pub fn new(mode: Mode, termination: Termination, k: u32) -> Self {
        Self {
            mode,
            fanout: 1,
            termination,
            k: k.max(1),
            hop_limit: None,
            relay: Relay::Batched,
            backup: None,
            max_hot: default_max_hot(),
            hot: BTreeMap::new(),
        }
    }

    /// Sets the fanout.
    pub fn fanout(mut self, fanout: u32) -> Self {
        self.fanout = fanout.max(1);
        self
    }

    /// Sets the relay timing.
    pub fn relay(mut self, relay: Relay) -> Self {
        self.relay = relay;
        self
    }

    /// Sets a hop limit.
    pub fn hop_limit(mut self, hops: u16) -> Self {
        self.hop_limit = Some(hops);
        self
    }

    /// Backs the rumors with anti-entropy.
    pub fn backed_by(mut self, backup: AntiEntropy) -> Self {
        self.backup = Some(backup);
        self
    }

    /// Rumors this node is still spreading.
    pub fn hot_count(&self) -> usize {
        self.hot.len()
    }

    /// One contact with a rumor happened; `useless` if the peer already had it.
    fn contacted<H: Host>(&mut self, host: &mut H, id: MessageId, useless: bool) {
        if self.termination.uses_feedback() && !useless {
            return;
        }
        let coin = self.termination.uses_coin();
        let k = self.k;
        let Some(interest) = self.hot.get_mut(&id) else {
            return;
        };
        if useless && interest.grace > 0 {
            interest.grace -= 1;
            return;
        }
        let lose = if coin {
            host.random() < 1.0 / f64::from(k)
        } else {
            interest.counter += 1;
            interest.counter >= k
        };
        if lose {
            self.hot.remove(&id);
        }
    }

    fn push_to_peers<H: Host>(&mut self, host: &mut H, rumors: Vec<Rumor>) {
        self.push_to(host, self.fanout, rumors);
    }

    fn push_to<H: Host>(&mut self, host: &mut H, fanout: u32, rumors: Vec<Rumor>) {
        if rumors.is_empty() {
            return;
        }
        let mut peers = Vec::with_capacity(fanout as usize);
        host.sample_peers(fanout as usize, &mut peers);
        for peer in peers {
            host.send(
                peer,
                GossipMessage::Push {
                    rumors: rumors.clone(),
                },
            );
            for rumor in &rumors {
                self.contacted(host, rumor.id, false);
            }
        }
    }
}

/// Peers the eager wave reaches from each node: `ceil(ln n) + 2`.
fn eager_fanout(peers: usize) -> u32 {
    if peers == 0 {
        return 0;
    }
    (peers as f64).ln().ceil() as u32 + 2
}

impl Strategy for RumorMongering {
    fn on_rumor<H: Host>(&mut self, host: &mut H, rumor: Rumor, _from: Option<NodeId>) {
        if self.hop_limit.is_some_and(|limit| rumor.hops >= limit) {
            return;
        }
        if self.hot.len() >= self.max_hot.max(1) {
            let tired = self
                .hot
                .iter()
                .max_by_key(|(id, interest)| (interest.counter, core::cmp::Reverse(**id)))
                .map(|(&id, _)| id);
            if let Some(id) = tired {
                self.hot.remove(&id);
            }
        }
        let mut interest = Interest {
            rumor,
            counter: 0,
            grace: 0,
        };
        if self.relay == Relay::Eager && self.mode.pushes() {
            let wave = eager_fanout(host.peer_count()).max(self.fanout);
            interest.grace = wave;
            self.hot.insert(rumor.id, interest);
            self.push_to(host, wave, vec![rumor]);
        } else {
            self.hot.insert(rumor.id, interest);
        }
    }

    fn on_duplicate<H: Host>(&mut self, host: &mut H, rumor: Rumor, from: NodeId) {
        if self.termination.uses_feedback() {
            host.send(
                from,
                GossipMessage::Feedback {
                    known: vec![rumor.id],
                },
            );
        }
    }

    fn on_feedback<H: Host>(&mut self, host: &mut H, _from: NodeId, known: &[MessageId]) {
        for &id in known {
            self.contacted(host, id, true);
        }
    }

    fn on_pull<H: Host>(&mut self, host: &mut H, from: NodeId, digest: &Digest, reciprocate: bool) {
        if self.backup.is_some() {
            AntiEntropy::answer(host, from, digest, reciprocate);
            return;
        }
        let candidates: Vec<Interest> = self.hot.values().copied().collect();
        let mut send = Vec::new();
        for interest in candidates {
            let useless = digest.covers(interest.rumor.id);
            if !useless {
                send.push(interest.rumor);
            }
            self.contacted(host, interest.rumor.id, useless);
        }
        if !send.is_empty() {
            host.send(from, GossipMessage::Push { rumors: send });
        }
    }

    fn on_round<H: Host>(&mut self, host: &mut H) {
        if self.mode.pushes() && !self.hot.is_empty() {
            let rumors: Vec<Rumor> = self.hot.values().map(|i| i.rumor).collect();
            self.push_to_peers(host, rumors);
        }
        if self.mode.pulls() {
            let mut peers = Vec::with_capacity(self.fanout as usize);
            host.sample_peers(self.fanout as usize, &mut peers);
            if !peers.is_empty() {
                let digest = host.digest();
                for peer in peers {
                    host.send(
                        peer,
                        GossipMessage::Pull {
                            digest: digest.clone(),
                            reciprocate: false,
                        },
                    );
                }
            }
        }
        if let Some(backup) = &mut self.backup {
            backup.reconcile(host);
        }
    }

    fn wants_rounds(&self) -> bool {
        !self.hot.is_empty() || self.mode.pulls() || self.backup.is_some()
    }

    fn is_quiescent(&self) -> bool {
        self.hot.is_empty()
    }
}
