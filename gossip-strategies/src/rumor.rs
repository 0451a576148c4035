//! Rumor mongering (Demers et al., "Epidemic algorithms for replicated
//! database maintenance", PODC 1987, section 1.4).

use std::collections::{BTreeMap, VecDeque};

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interest {
    rumor: Rumor,
    counter: u32,
    /// Useless contacts still to forgive: those of the eager wave, which
    /// is a fast first pass, not part of the rumor's counted life.
    grace: u32,
    /// Peers this node pushed the rumor to and that have not answered with
    /// feedback yet, oldest first, at most
    /// [`RumorMongering::max_pushed`]: feedback counts only from them, once
    /// per push. The flag marks a push that answered the peer's pull.
    pushed: VecDeque<(NodeId, bool)>,
    /// Pullers whose useless pull was already counted, oldest first, at
    /// most [`RumorMongering::max_pushed`]: each counts once.
    pulled: VecDeque<NodeId>,
}

impl Interest {
    /// Remembers a push to `peer`, forgetting the oldest beyond `bound`.
    fn pushed_to(&mut self, peer: NodeId, answered_pull: bool, bound: usize) {
        if self.pushed.len() >= bound.max(1) {
            self.pushed.pop_front();
        }
        self.pushed.push_back((peer, answered_pull));
    }

    /// Whether a useless pull from `peer` may count: the first one from
    /// each peer does (and is remembered), repeats do not.
    fn first_useless_pull(&mut self, peer: NodeId, bound: usize) -> bool {
        if self.pulled.contains(&peer) {
            return false;
        }
        if self.pulled.len() >= bound.max(1) {
            self.pulled.pop_front();
        }
        self.pulled.push_back(peer);
        true
    }

    /// Whether feedback from `peer` counts: it was pushed the rumor and
    /// has not answered yet (its answer is then used up). Feedback on a
    /// push that answered its pull counts like a useless pull, once per
    /// peer: pulling and answering in turn is no way round that rule.
    fn answered_by(&mut self, peer: NodeId, bound: usize) -> bool {
        let Some(at) = self.pushed.iter().position(|&(p, _)| p == peer) else {
            return false;
        };
        let (_, answered_pull) = self.pushed.remove(at).unwrap_or((peer, false));
        !answered_pull || self.first_useless_pull(peer, bound)
    }
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
///
/// Feedback may be forged. A [`GossipMessage::Feedback`] counts towards
/// termination only from a peer this node pushed that rumor to (by a round
/// or wave push, or in answer to its pull), once per push (the last
/// [`max_pushed`](Self::max_pushed) pushes of each hot rumor are
/// remembered), so nobody else can cool a rumor. A duplicate that
/// arrives here counts nothing by itself: it only draws our feedback to
/// its sender, which counts there only if that sender pushed to us.
/// In pull mode a puller whose digest already covers a rumor is a useless
/// contact; each puller counts so at most once per hot rumor (among the
/// last `max_pushed` that did), and so does its feedback on a push that
/// answered its pull, so one sender replaying pulls cannot cool a rumor. Many identities still can: whether a puller is a live member
/// is the host's check, the seam gives only its id.
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
    /// Most pushes remembered per hot rumor, to match feedback against;
    /// beyond it the oldest is forgotten, and feedback for it no longer
    /// counts (the rumor then stays hot a little longer, never shorter).
    /// The same bound holds the pullers whose useless pull was counted.
    /// Unit: pushes; range: at least 1. Default 64: feedback answers a push
    /// within one round trip, by which time a node has made at most its
    /// eager wave (`ceil(ln n) + 2`, 16 at a million peers) plus `fanout`
    /// pushes of the rumor, so honest feedback always finds its push. With
    /// `max_hot` rumors that bounds the memory at `2 x max_hot x max_pushed`
    /// peer ids (pushes, and pullers counted).
    #[serde(default = "default_max_pushed")]
    pub max_pushed: usize,
    #[serde(skip)]
    hot: BTreeMap<MessageId, Interest>,
}

fn default_max_hot() -> usize {
    4096
}

fn default_max_pushed() -> usize {
    64
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
            max_pushed: default_max_pushed(),
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
                if let Some(interest) = self.hot.get_mut(&rumor.id) {
                    interest.pushed_to(peer, false, self.max_pushed);
                }
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
            pushed: VecDeque::new(),
            pulled: VecDeque::new(),
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

    /// Tells `from` we already held it (with feedback termination). It
    /// counts nothing here: a duplicate from anyone, pushed to or not,
    /// leaves this node's interest as it was.
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

    /// Counts each rumor in `known` as a useless contact only if `from` is
    /// a peer this node pushed it to and has not answered yet.
    fn on_feedback<H: Host>(&mut self, host: &mut H, from: NodeId, known: &[MessageId]) {
        for &id in known {
            let bound = self.max_pushed;
            if self
                .hot
                .get_mut(&id)
                .is_some_and(|interest| interest.answered_by(from, bound))
            {
                self.contacted(host, id, true);
            }
        }
    }

    fn on_pull<H: Host>(&mut self, host: &mut H, from: NodeId, digest: &Digest, reciprocate: bool) {
        if self.backup.is_some() {
            AntiEntropy::answer(host, from, digest, reciprocate);
            return;
        }
        let candidates: Vec<Rumor> = self.hot.values().map(|i| i.rumor).collect();
        let mut send = Vec::new();
        for rumor in candidates {
            let useless = digest.covers(rumor.id);
            if !useless {
                send.push(rumor);
            } else if !self
                .hot
                .get_mut(&rumor.id)
                .is_some_and(|interest| interest.first_useless_pull(from, self.max_pushed))
            {
                // This puller's useless pull of it was counted already.
                continue;
            }
            self.contacted(host, rumor.id, useless);
        }
        if !send.is_empty() {
            for rumor in &send {
                if let Some(interest) = self.hot.get_mut(&rumor.id) {
                    interest.pushed_to(from, true, self.max_pushed);
                }
            }
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
