//! Plumtree: epidemic broadcast trees (Leitão, Pereira and Rodrigues,
//! "Epidemic Broadcast Trees", SRDS 2007).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use gossip_core::{Digest, GossipMessage, Host, MessageId, NodeId, Rumor, Strategy};
use serde::{Deserialize, Serialize};

use crate::anti_entropy::{AntiEntropy, Mode};

/// Plumtree: payloads travel once along a spanning tree that forms and
/// repairs itself; ids travel lazily along every other link.
///
/// Each node keeps a small *neighbourhood* of peers, split into *eager*
/// links (rumors are pushed at once, payload included) and *lazy* links
/// (only ids are announced, batched once per round):
///
/// - A node that receives a rumor for the first time keeps the sender as
///   an eager link and pushes the rumor to its other eager links. Receiving
///   a rumor it already held makes it *prune* the sender: both ends turn
///   that link lazy. The links over which rumors first arrived are never
///   pruned, so what remains eager is a spanning tree, which serves every
///   origin (its links work both ways).
/// - An announced id that does not arrive within
///   [`graft_after`](Self::graft_after) rounds is *grafted*: the node asks
///   the announcer for it, and that link turns eager. This repairs the tree
///   after a crash or a loss, and keeps it close to the fastest paths.
/// - A node with fewer than [`fanout`](Self::fanout) neighbours asks random
///   peers to become eager links (a graft naming no rumor); a node already
///   holding [`max_neighbours`](Self::max_neighbours) refuses with a prune.
///
/// **Cost.** Once the tree has formed, each node receives about one copy
/// of each payload (rumor mongering sends several: eager rumor mongering
/// here sends about `ln N + 2`), plus one announced id per lazy link,
/// batched per round. The first broadcasts after a start or a membership
/// change pay more while the tree prunes its cycles away.
///
/// **Latency.** A payload takes as many hops as the tree is deep, each at
/// network speed; a node the tree misses waits [`graft_after`](Self::graft_after)
/// rounds for its graft.
///
/// **When to choose it.** Payloads large compared with ids, a steady
/// stream of broadcasts, or bandwidth that matters: the tree pays for its
/// announcements whenever a payload is bigger than a few ids. For rare,
/// tiny broadcasts in a churning cluster, rumor mongering is simpler.
///
/// **Lying peers.** A graft is answered only with rumors this node holds,
/// at most [`max_graft_ids`](Self::max_graft_ids) per graft (the host also
/// charges the answer to the asker's reply budget); announcements of ids
/// that never arrive cost at most [`max_missing`](Self::max_missing)
/// entries and one graft per announcer; a prune changes only the link to
/// its sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plumtree {
    /// Neighbours a node seeks by itself. Unit: peers; default 3 (with the
    /// links others open towards it, about twice that many in all).
    #[serde(default = "default_fanout")]
    pub fanout: u32,
    /// Most neighbours, eager and lazy, kept; a link asked beyond it is
    /// refused with a prune. Default 16.
    #[serde(default = "default_max_neighbours")]
    pub max_neighbours: usize,
    /// Rounds an announced rumor may stay missing before it is grafted from
    /// its announcer. Default 2: one whole round at least, so that a
    /// payload still on its way down the tree is not asked for twice.
    #[serde(default = "default_graft_after")]
    pub graft_after: u32,
    /// Most announced-but-missing rumors tracked; further announcements
    /// are ignored until some arrive or are given up. Default 1024.
    #[serde(default = "default_max_missing")]
    pub max_missing: usize,
    /// Most announcers remembered per missing rumor, and most grafts sent
    /// for it: one per [`graft_after`](Self::graft_after) rounds, to each
    /// announcer in turn (so a lost graft or answer is retried). Default 4.
    #[serde(default = "default_max_announcers")]
    pub max_announcers: usize,
    /// Most rumors answered per graft. Default 256.
    #[serde(default = "default_max_graft_ids")]
    pub max_graft_ids: usize,
    /// Most rumor ids waiting for the next round's announcement; beyond it
    /// the oldest go unannounced (anti-entropy, if configured, still
    /// repairs). Default 4096.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// Rounds a node waits, after it starts, for its view to grow to twice
    /// the fanout before it links to whatever peers it knows: a node that
    /// has just joined knows only its seeds, and linking at once would make
    /// every joiner a neighbour of the seeds. Default 10.
    #[serde(default = "default_settle_rounds")]
    pub settle_rounds: u32,
    /// Optional anti-entropy behind the tree, for clusters where an
    /// announcement and its payload may both be lost. Default: push-pull
    /// with one peer every 25 rounds.
    #[serde(default = "default_backup")]
    pub backup: Option<AntiEntropy>,
    #[serde(skip)]
    state: TreeState,
}

/// What a node's tree keeps between callbacks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct TreeState {
    eager: BTreeSet<NodeId>,
    lazy: BTreeSet<NodeId>,
    /// Rumors received or sent since the last round, to announce.
    pending: VecDeque<Rumor>,
    /// Rumors announced to this node that it does not hold yet.
    missing: BTreeMap<MessageId, Missing>,
    /// Rounds elapsed.
    round: u64,
    /// Whether the neighbourhood lost a member and should be refilled.
    short: bool,
    /// Peers asked to become links that have not answered yet: a prune
    /// from one of them refuses the link, which is then dropped, not kept
    /// lazy.
    requested: BTreeSet<NodeId>,
}

/// An announced rumor this node waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Missing {
    /// Peers that announced it, the next one to graft from first.
    announcers: VecDeque<NodeId>,
    /// Round at which the next announcer is grafted.
    due: u64,
    /// Grafts sent for it so far.
    tries: u32,
}

fn default_fanout() -> u32 {
    3
}
fn default_max_neighbours() -> usize {
    16
}
fn default_graft_after() -> u32 {
    2
}
fn default_max_missing() -> usize {
    1024
}
fn default_max_announcers() -> usize {
    4
}
fn default_max_graft_ids() -> usize {
    256
}
fn default_max_pending() -> usize {
    4096
}
fn default_backup() -> Option<AntiEntropy> {
    Some(AntiEntropy::new(Mode::PushPull, 1).every(25))
}
fn default_settle_rounds() -> u32 {
    10
}

impl Default for Plumtree {
    /// Fanout 3, at most 16 neighbours, grafts after 2 rounds, backed by
    /// push-pull anti-entropy with one peer every 25 rounds (5 s at the LAN
    /// gossip interval), as [`RumorMongering::default`](crate::RumorMongering):
    /// a node whose payload and grafts were all lost still gets the rumor.
    fn default() -> Self {
        Self {
            fanout: default_fanout(),
            max_neighbours: default_max_neighbours(),
            graft_after: default_graft_after(),
            max_missing: default_max_missing(),
            max_announcers: default_max_announcers(),
            max_graft_ids: default_max_graft_ids(),
            max_pending: default_max_pending(),
            settle_rounds: default_settle_rounds(),
            backup: default_backup(),
            state: TreeState::default(),
        }
    }
}

impl Plumtree {
    /// Sets the number of neighbours a node seeks, at least 2: with one
    /// link each, the links may not connect the cluster, and no announcement
    /// would reach the parts they miss.
    pub fn fanout(mut self, fanout: u32) -> Self {
        self.fanout = fanout.max(2);
        self
    }

    /// Sets the rounds an announced rumor may be missing before a graft.
    pub fn graft_after(mut self, rounds: u32) -> Self {
        self.graft_after = rounds.max(1);
        self
    }

    /// Backs the tree with anti-entropy.
    pub fn backed_by(mut self, backup: AntiEntropy) -> Self {
        self.backup = Some(backup);
        self
    }

    /// The eager links: where payloads are pushed.
    pub fn eager_peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.state.eager.iter().copied()
    }

    /// The lazy links: where ids are announced.
    pub fn lazy_peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.state.lazy.iter().copied()
    }

    /// Announced rumors this node is waiting for.
    pub fn missing_count(&self) -> usize {
        self.state.missing.len()
    }

    fn neighbours(&self) -> usize {
        self.state.eager.len() + self.state.lazy.len()
    }

    fn is_neighbour(&self, peer: NodeId) -> bool {
        self.state.eager.contains(&peer) || self.state.lazy.contains(&peer)
    }

    /// Makes `peer` an eager link if it is a neighbour or there is room;
    /// returns whether it is one now.
    fn make_eager(&mut self, peer: NodeId) -> bool {
        if self.state.lazy.remove(&peer) || self.state.eager.contains(&peer) {
            self.state.eager.insert(peer);
            return true;
        }
        if self.neighbours() >= self.max_neighbours.max(1) {
            return false;
        }
        self.state.eager.insert(peer);
        true
    }

    fn make_lazy(&mut self, peer: NodeId) {
        if self.state.eager.remove(&peer) {
            self.state.lazy.insert(peer);
        }
    }

    fn queue_announcement(&mut self, rumor: Rumor) {
        if self.state.pending.len() >= self.max_pending.max(1) {
            self.state.pending.pop_front();
        }
        self.state.pending.push_back(rumor);
    }

    /// Announces what arrived since the last round to every lazy link.
    fn announce<H: Host>(&mut self, host: &mut H) {
        if self.state.pending.is_empty() {
            return;
        }
        let ids: Vec<MessageId> = self.state.pending.drain(..).map(|r| r.id).collect();
        for &peer in &self.state.lazy {
            host.send(peer, GossipMessage::Announce { ids: ids.clone() });
        }
    }

    /// Grafts every missing rumor whose time has come from its next
    /// announcer; gives up on those with no announcer left.
    fn graft_due<H: Host>(&mut self, host: &mut H) {
        let round = self.state.round;
        let wait = u64::from(self.graft_after.max(1));
        let max_tries = self.max_announcers.max(1) as u32;
        let mut grafts: BTreeMap<NodeId, Vec<MessageId>> = BTreeMap::new();
        self.state.missing.retain(|&id, missing| {
            if host.has(id) {
                return false;
            }
            if missing.due > round {
                return true;
            }
            if missing.tries >= max_tries {
                return false;
            }
            let Some(announcer) = missing.announcers.pop_front() else {
                return false;
            };
            missing.announcers.push_back(announcer);
            missing.tries += 1;
            grafts.entry(announcer).or_default().push(id);
            missing.due = round + wait;
            true
        });
        for (peer, ids) in grafts {
            self.make_eager(peer);
            host.send(peer, GossipMessage::Graft { ids });
        }
    }

    /// Asks random peers to become links while the neighbourhood is short.
    fn fill<H: Host>(&mut self, host: &mut H) {
        let want = (self.fanout.max(1) as usize).min(self.max_neighbours.max(1));
        if self.neighbours() >= want {
            self.state.short = false;
            return;
        }
        let state = &mut self.state;
        state
            .requested
            .retain(|p| state.eager.contains(p) || state.lazy.contains(p));
        let mut peers = Vec::new();
        host.sample_peers(want, &mut peers);
        for peer in peers {
            if self.neighbours() >= want {
                break;
            }
            if !self.is_neighbour(peer) && self.make_eager(peer) {
                self.state.requested.insert(peer);
                host.send(peer, GossipMessage::Graft { ids: Vec::new() });
            }
        }
        // Few peers known yet (a node that is still joining): try again
        // next round.
        self.state.short = self.neighbours() < want;
    }
}

impl Strategy for Plumtree {
    fn on_rumor<H: Host>(&mut self, host: &mut H, rumor: Rumor, from: Option<NodeId>) {
        self.state.missing.remove(&rumor.id);
        if let Some(from) = from {
            self.state.requested.remove(&from);
        }
        if self.neighbours() < self.fanout as usize {
            self.fill(host);
        }
        if let Some(from) = from {
            if !self.make_eager(from) {
                // No room for the sender: it should announce, not push.
                host.send(from, GossipMessage::Prune);
            }
        }
        let targets: Vec<NodeId> = self
            .state
            .eager
            .iter()
            .copied()
            .filter(|&peer| Some(peer) != from)
            .collect();
        for peer in targets {
            host.send(
                peer,
                GossipMessage::Push {
                    rumors: vec![rumor],
                },
            );
        }
        self.queue_announcement(rumor);
    }

    /// A payload that arrived twice marks a cycle: the later link turns
    /// lazy at both ends.
    fn on_duplicate<H: Host>(&mut self, host: &mut H, _rumor: Rumor, from: NodeId) {
        if self.state.eager.contains(&from) {
            self.make_lazy(from);
            host.send(from, GossipMessage::Prune);
        }
    }

    fn on_announce<H: Host>(&mut self, host: &mut H, from: NodeId, ids: &[MessageId]) {
        self.state.requested.remove(&from);
        let round = self.state.round;
        let wait = u64::from(self.graft_after.max(1));
        let max_announcers = self.max_announcers.max(1);
        for &id in ids {
            if host.has(id) {
                continue;
            }
            if let Some(missing) = self.state.missing.get_mut(&id) {
                if missing.announcers.len() < max_announcers && !missing.announcers.contains(&from)
                {
                    missing.announcers.push_back(from);
                }
            } else if self.state.missing.len() < self.max_missing {
                self.state.missing.insert(
                    id,
                    Missing {
                        announcers: VecDeque::from([from]),
                        due: round + wait,
                        tries: 0,
                    },
                );
            }
        }
    }

    fn on_graft<H: Host>(&mut self, host: &mut H, from: NodeId, ids: &[MessageId]) {
        self.state.requested.remove(&from);
        if !self.make_eager(from) {
            host.send(from, GossipMessage::Prune);
            return;
        }
        let rumors: Vec<Rumor> = ids
            .iter()
            .take(self.max_graft_ids)
            .filter(|&&id| host.has(id))
            .map(|&id| Rumor { id, hops: 0 })
            .collect();
        if !rumors.is_empty() {
            host.send(from, GossipMessage::Push { rumors });
        }
    }

    fn on_prune<H: Host>(&mut self, _host: &mut H, from: NodeId) {
        if self.state.requested.remove(&from) {
            // A refused link request: that peer is no neighbour at all.
            self.state.eager.remove(&from);
            self.state.short = true;
        } else {
            self.make_lazy(from);
        }
    }

    fn on_pull<H: Host>(&mut self, host: &mut H, from: NodeId, digest: &Digest, reciprocate: bool) {
        if self.backup.is_some() {
            AntiEntropy::answer(host, from, digest, reciprocate);
        }
    }

    fn on_round<H: Host>(&mut self, host: &mut H) {
        self.state.round += 1;
        self.announce(host);
        self.graft_due(host);
        let settled = self.state.round >= u64::from(self.settle_rounds)
            || host.peer_count() >= 2 * self.fanout as usize;
        if settled && (self.state.short || self.neighbours() < self.fanout as usize) {
            self.fill(host);
        }
        if let Some(backup) = &mut self.backup {
            backup.reconcile(host);
        }
    }

    fn wants_rounds(&self) -> bool {
        !self.state.pending.is_empty()
            || !self.state.missing.is_empty()
            || self.state.short
            || self.neighbours() < self.fanout as usize
            || self.backup.is_some()
    }

    fn is_quiescent(&self) -> bool {
        self.state.pending.is_empty() && self.state.missing.is_empty()
    }

    fn on_peer_down(&mut self, peer: NodeId) {
        self.state.requested.remove(&peer);
        let was = self.state.eager.remove(&peer) | self.state.lazy.remove(&peer);
        if was {
            self.state.short = true;
        }
        for missing in self.state.missing.values_mut() {
            missing.announcers.retain(|&p| p != peer);
        }
    }
}
