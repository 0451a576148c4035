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
///   pruned, so what remains eager is a spanning tree.
/// - An announced id that does not arrive within
///   [`graft_after`](Self::graft_after) rounds is *grafted*: the node asks
///   the announcer for it, and that link turns eager. This repairs the tree
///   after a crash or a loss, and keeps it close to the fastest paths.
/// - A node with fewer than [`fanout`](Self::fanout) neighbours asks random
///   peers to become eager links (a graft naming no rumor); a node already
///   holding [`max_neighbours`](Self::max_neighbours) refuses with a prune.
///
/// **Many origins.** One tree shared by every origin breaks when many
/// origins send at once: a duplicate from one origin prunes one link of a
/// cycle while a duplicate from another origin prunes another link of the
/// same cycle, which cuts the tree; the grafts that mend it (every node of
/// the cut part grafts at the same round) make new cycles, and the tree
/// never settles. So a node keeps, for each of up to
/// [`max_origin_trees`](Self::max_origin_trees) origins, that origin's own
/// eager links, first copied from the shared ones: a duplicate prunes its
/// link for its own origin only (told by a [`GossipMessage::Feedback`]
/// naming the rumor), a graft adds its link for the origins of the rumors
/// it names, and announcements go to the neighbours that are not eager
/// for the rumor's origin. Each origin's links then converge to that
/// origin's own spanning tree, as with one sender. The shared links are
/// still pruned and grafted as before, and serve origins without a tree
/// of their own.
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
/// entries and one graft per announcer; a prune or a feedback changes only
/// the link to its sender, and only for origin trees that exist (a
/// feedback never makes one, and is never answered).
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
    /// Rounds a link request may go unanswered before the link is dropped
    /// and another peer asked. A peer that accepts a link says so at once
    /// (an empty announcement); one that does not know this node yet (a
    /// node still joining, whose join news has not reached it) drops the
    /// request unanswered, and a link kept on only one side would carry
    /// nothing to this node. Default 10 (2 s at the LAN gossip interval).
    #[serde(default = "default_link_timeout")]
    pub link_timeout: u32,
    /// Origins whose own tree a node keeps (see "Many origins" above); the
    /// least recently used is forgotten first, and its rumors follow the
    /// shared links until its tree is built again. Unit: origins; default
    /// 128 (each costs a few eager peer ids).
    #[serde(default = "default_max_origin_trees")]
    pub max_origin_trees: usize,
    /// Optional anti-entropy behind the tree, for clusters where an
    /// announcement and its payload may both be lost. Default: push-pull
    /// with one peer every 25 rounds.
    #[serde(default = "default_backup")]
    pub backup: Option<AntiEntropy>,
    /// Boxed: the state is larger than the settings, and `AnyStrategy`'s
    /// variants should stay of similar sizes.
    #[serde(skip)]
    state: Box<TreeState>,
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
    /// Peers asked to become links that have not answered yet, with the
    /// round each was asked: a prune from one of them refuses the link,
    /// which is then dropped, not kept lazy; so is a request unanswered
    /// for [`Plumtree::link_timeout`] rounds.
    requested: BTreeMap<NodeId, u64>,
    /// Each busy origin's own eager links (see "Many origins").
    origins: BTreeMap<NodeId, OriginTree>,
    /// Uses of origin trees so far: the clock of their recency.
    uses: u64,
    /// (peer, origin) pairs told by a feedback this round: further
    /// duplicates of that origin from that peer, already in flight, are
    /// not answered again.
    fed_back: BTreeSet<(NodeId, NodeId)>,
    /// What the tree did so far.
    stats: TreeStats,
}

/// One origin's eager links at this node: where its rumors are pushed.
/// Always a subset of the node's neighbours.
#[derive(Clone, Debug, PartialEq, Eq)]
struct OriginTree {
    /// Sorted.
    eager: Vec<NodeId>,
    /// When this tree was last used (see `TreeState::uses`).
    used: u64,
}

impl OriginTree {
    fn contains(&self, peer: NodeId) -> bool {
        self.eager.binary_search(&peer).is_ok()
    }

    fn insert(&mut self, peer: NodeId) {
        if let Err(i) = self.eager.binary_search(&peer) {
            self.eager.insert(i, peer);
        }
    }

    fn remove(&mut self, peer: NodeId) {
        if let Ok(i) = self.eager.binary_search(&peer) {
            self.eager.remove(i);
        }
    }
}

/// Counters of how a node's tree formed, repaired and reshaped itself:
/// a settled tree sends few grafts and prunes; a tree that keeps cutting
/// and mending itself sends them all the time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TreeStats {
    /// Grafts naming missing rumors (repairs), one per announcer asked.
    pub grafts_sent: u64,
    /// Grafts naming no rumor: requests to become a neighbour.
    pub link_requests_sent: u64,
    /// Link requests given up unanswered after
    /// [`Plumtree::link_timeout`] rounds (the peer did not know this node
    /// yet, or the request or its answer was lost).
    pub link_requests_expired: u64,
    /// Prunes sent (on a duplicate, or refusing a link).
    pub prunes_sent: u64,
    /// Times a link turned eager (a new eager neighbour or a lazy one
    /// grafted).
    pub links_made_eager: u64,
    /// Times an eager link turned lazy (pruned by either end).
    pub links_made_lazy: u64,
    /// Rumors first received after this node had grafted them: the tree
    /// missed this node and the graft repaired it.
    pub graft_deliveries: u64,
    /// Eager links now (a gauge: a tree over `n` nodes has `2(n - 1)`
    /// eager ends in all).
    pub eager_links: u64,
    /// Lazy links now (a gauge).
    pub lazy_links: u64,
}

impl TreeStats {
    /// Adds `other`'s counters and gauges to these (cluster-wide sums).
    pub fn add(&mut self, other: &TreeStats) {
        self.grafts_sent += other.grafts_sent;
        self.link_requests_sent += other.link_requests_sent;
        self.link_requests_expired += other.link_requests_expired;
        self.prunes_sent += other.prunes_sent;
        self.links_made_eager += other.links_made_eager;
        self.links_made_lazy += other.links_made_lazy;
        self.graft_deliveries += other.graft_deliveries;
        self.eager_links += other.eager_links;
        self.lazy_links += other.lazy_links;
    }

    /// The counters' growth since `earlier`, with these gauges.
    pub fn since(&self, earlier: &TreeStats) -> TreeStats {
        TreeStats {
            grafts_sent: self.grafts_sent.saturating_sub(earlier.grafts_sent),
            link_requests_sent: self
                .link_requests_sent
                .saturating_sub(earlier.link_requests_sent),
            link_requests_expired: self
                .link_requests_expired
                .saturating_sub(earlier.link_requests_expired),
            prunes_sent: self.prunes_sent.saturating_sub(earlier.prunes_sent),
            links_made_eager: self
                .links_made_eager
                .saturating_sub(earlier.links_made_eager),
            links_made_lazy: self.links_made_lazy.saturating_sub(earlier.links_made_lazy),
            graft_deliveries: self
                .graft_deliveries
                .saturating_sub(earlier.graft_deliveries),
            ..*self
        }
    }
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
fn default_max_origin_trees() -> usize {
    128
}
fn default_settle_rounds() -> u32 {
    10
}
fn default_link_timeout() -> u32 {
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
            link_timeout: default_link_timeout(),
            max_origin_trees: default_max_origin_trees(),
            backup: default_backup(),
            state: Box::default(),
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

    /// Sets how many origins' own trees a node keeps (0: one shared tree
    /// for every origin).
    pub fn max_origin_trees(mut self, origins: usize) -> Self {
        self.max_origin_trees = origins;
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

    /// What the tree did so far, with its current link counts.
    pub fn stats(&self) -> TreeStats {
        TreeStats {
            eager_links: self.state.eager.len() as u64,
            lazy_links: self.state.lazy.len() as u64,
            ..self.state.stats
        }
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
        if self.state.eager.contains(&peer) {
            return true;
        }
        if !self.state.lazy.remove(&peer) && self.neighbours() >= self.max_neighbours.max(1) {
            return false;
        }
        self.state.eager.insert(peer);
        self.state.stats.links_made_eager += 1;
        true
    }

    fn make_lazy(&mut self, peer: NodeId) {
        if self.state.eager.remove(&peer) {
            self.state.lazy.insert(peer);
            self.state.stats.links_made_lazy += 1;
        }
    }

    fn prune<H: Host>(&mut self, host: &mut H, peer: NodeId) {
        self.state.stats.prunes_sent += 1;
        host.send(peer, GossipMessage::Prune);
    }

    /// Whether rumors of `origin` are pushed to `peer` eagerly: along the
    /// origin's own tree if this node keeps one, else along the shared
    /// links.
    fn is_eager_for(&self, origin: NodeId, peer: NodeId) -> bool {
        match self.state.origins.get(&origin) {
            Some(tree) => tree.contains(peer),
            None => self.state.eager.contains(&peer),
        }
    }

    /// The tree of `origin`, made now from the shared eager links if this
    /// node has none (forgetting the least recently used origin's tree when
    /// [`max_origin_trees`](Self::max_origin_trees) are kept already);
    /// `None` when origin trees are off.
    fn origin_tree(&mut self, origin: NodeId) -> Option<&mut OriginTree> {
        if self.max_origin_trees == 0 {
            return None;
        }
        self.state.uses += 1;
        let used = self.state.uses;
        let state = &mut self.state;
        if !state.origins.contains_key(&origin) {
            if state.origins.len() >= self.max_origin_trees {
                let oldest = state
                    .origins
                    .iter()
                    .min_by_key(|(_, tree)| tree.used)
                    .map(|(&o, _)| o);
                if let Some(oldest) = oldest {
                    state.origins.remove(&oldest);
                }
            }
            let eager = state.eager.iter().copied().collect();
            state.origins.insert(origin, OriginTree { eager, used });
        }
        let tree = state.origins.get_mut(&origin)?;
        tree.used = used;
        Some(tree)
    }

    /// Makes `peer` an eager link (`eager`) or not for the origins of
    /// `ids` whose own tree this node keeps; never makes a tree.
    fn set_origin_links(&mut self, peer: NodeId, ids: &[MessageId], eager: bool) {
        for id in ids {
            if let Some(tree) = self.state.origins.get_mut(&id.origin) {
                if eager {
                    tree.insert(peer);
                } else {
                    tree.remove(peer);
                }
            }
        }
    }

    /// `peer` is no eager link for any origin any more.
    fn drop_from_origin_trees(&mut self, peer: NodeId) {
        for tree in self.state.origins.values_mut() {
            tree.remove(peer);
        }
    }

    fn queue_announcement(&mut self, rumor: Rumor) {
        if self.state.pending.len() >= self.max_pending.max(1) {
            self.state.pending.pop_front();
        }
        self.state.pending.push_back(rumor);
    }

    /// Announces what arrived since the last round to every neighbour
    /// that is not an eager link for its origin.
    fn announce<H: Host>(&mut self, host: &mut H) {
        if self.state.pending.is_empty() {
            return;
        }
        let pending: Vec<Rumor> = self.state.pending.drain(..).collect();
        let neighbours: Vec<NodeId> = self
            .state
            .eager
            .iter()
            .chain(self.state.lazy.iter())
            .copied()
            .collect();
        let mut per_peer: BTreeMap<NodeId, Vec<MessageId>> = BTreeMap::new();
        for rumor in pending {
            for &peer in &neighbours {
                if !self.is_eager_for(rumor.id.origin, peer) {
                    per_peer.entry(peer).or_default().push(rumor.id);
                }
            }
        }
        for (peer, ids) in per_peer {
            host.send(peer, GossipMessage::Announce { ids });
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
            if self.make_eager(peer) {
                self.set_origin_links(peer, &ids, true);
            }
            self.state.stats.grafts_sent += 1;
            host.send(peer, GossipMessage::Graft { ids });
        }
    }

    /// Drops the links asked for [`link_timeout`](Self::link_timeout)
    /// rounds ago and never answered, so that the next [`fill`](Self::fill)
    /// asks other peers: the asked peer may not have known this node yet
    /// and dropped the request, leaving a link only this side keeps.
    fn expire_link_requests(&mut self) {
        let Some(asked_by) = self
            .state
            .round
            .checked_sub(u64::from(self.link_timeout.max(1)))
        else {
            return;
        };
        let expired: Vec<NodeId> = self
            .state
            .requested
            .iter()
            .filter(|&(_, &asked)| asked <= asked_by)
            .map(|(&peer, _)| peer)
            .collect();
        for peer in expired {
            // Asked, so eager or lazy: the neighbourhood is short now.
            self.forget_link(peer);
            self.state.stats.link_requests_expired += 1;
        }
    }

    /// Forgets `peer` as a link of any kind (eager, lazy, asked, in any
    /// origin's tree); if it was one, the neighbourhood is refilled at the
    /// next round.
    fn forget_link(&mut self, peer: NodeId) {
        self.state.requested.remove(&peer);
        let was = self.state.eager.remove(&peer) | self.state.lazy.remove(&peer);
        self.drop_from_origin_trees(peer);
        if was {
            self.state.short = true;
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
            .retain(|p, _| state.eager.contains(p) || state.lazy.contains(p));
        let mut peers = Vec::new();
        host.sample_peers(want, &mut peers);
        for peer in peers {
            if self.neighbours() >= want {
                break;
            }
            if !self.is_neighbour(peer) && self.make_eager(peer) {
                self.state.requested.insert(peer, self.state.round);
                self.state.stats.link_requests_sent += 1;
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
        if let Some(missing) = self.state.missing.remove(&rumor.id) {
            if missing.tries > 0 {
                self.state.stats.graft_deliveries += 1;
            }
        }
        if let Some(from) = from {
            self.state.requested.remove(&from);
        }
        if self.neighbours() < self.fanout as usize {
            self.fill(host);
        }
        let accepted = match from {
            // A copy from a peer that is no neighbour, while this node
            // has its neighbours, is an anti-entropy answer (a random
            // peer), not a tree link: linking to it would grow every
            // neighbourhood towards `max_neighbours` over a long stream,
            // and with it the announcements.
            Some(from) if !self.is_neighbour(from) && self.neighbours() >= self.fanout as usize => {
                false
            }
            Some(from) if !self.make_eager(from) => {
                // No room for the sender: it should announce, not push.
                self.prune(host, from);
                false
            }
            _ => true,
        };
        let eager: Vec<NodeId> = match self.origin_tree(rumor.id.origin) {
            Some(tree) => {
                // The link a first copy came over is this origin's path
                // here: it stays eager for the origin.
                if let Some(from) = from.filter(|_| accepted) {
                    tree.insert(from);
                }
                tree.eager.clone()
            }
            None => self.state.eager.iter().copied().collect(),
        };
        for peer in eager.into_iter().filter(|&peer| Some(peer) != from) {
            host.send(
                peer,
                GossipMessage::Push {
                    rumors: vec![rumor],
                },
            );
        }
        self.queue_announcement(rumor);
    }

    /// A payload that arrived twice marks a cycle in its origin's tree:
    /// the later link turns lazy for that origin at both ends (and in the
    /// shared links), told by a [`GossipMessage::Feedback`] naming the
    /// rumor. Without origin trees, a [`GossipMessage::Prune`] turns the
    /// shared link lazy.
    fn on_duplicate<H: Host>(&mut self, host: &mut H, rumor: Rumor, from: NodeId) {
        if self.max_origin_trees == 0 {
            if self.state.eager.contains(&from) {
                self.make_lazy(from);
                self.prune(host, from);
            }
            return;
        }
        self.set_origin_links(from, &[rumor.id], false);
        self.make_lazy(from);
        // Whatever this side's state, the sender pushed this origin here:
        // it should stop. At most one answer per copy received, and one
        // per peer and origin per round (at most `max_pending` of them).
        let key = (from, rumor.id.origin);
        if self.state.fed_back.len() >= self.max_pending.max(1) || !self.state.fed_back.insert(key)
        {
            return;
        }
        self.state.stats.prunes_sent += 1;
        host.send(
            from,
            GossipMessage::Feedback {
                known: vec![rumor.id],
            },
        );
    }

    /// A peer already held rumors pushed to it: it is no eager link for
    /// their origins any more, nor a shared eager link. Only the link to
    /// `from` changes, and only existing origin trees.
    fn on_feedback<H: Host>(&mut self, _host: &mut H, from: NodeId, known: &[MessageId]) {
        let known = &known[..known.len().min(self.max_graft_ids)];
        self.set_origin_links(from, known, false);
        self.make_lazy(from);
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
            self.prune(host, from);
            return;
        }
        if ids.is_empty() {
            // A link request, accepted: say so, or the asker gives the
            // link up after `link_timeout` rounds. No larger than the
            // request, so it amplifies nothing.
            host.send(from, GossipMessage::Announce { ids: Vec::new() });
            return;
        }
        self.set_origin_links(from, &ids[..ids.len().min(self.max_graft_ids)], true);
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
        self.drop_from_origin_trees(from);
        if self.state.requested.remove(&from).is_some() {
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
        self.state.fed_back.clear();
        self.announce(host);
        self.graft_due(host);
        self.expire_link_requests();
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
            || !self.state.requested.is_empty()
            || self.neighbours() < self.fanout as usize
            || self.backup.is_some()
    }

    fn is_quiescent(&self) -> bool {
        self.state.pending.is_empty() && self.state.missing.is_empty()
    }

    fn on_peer_down(&mut self, peer: NodeId) {
        self.forget_link(peer);
        for missing in self.state.missing.values_mut() {
            missing.announcers.retain(|&p| p != peer);
        }
    }
}
