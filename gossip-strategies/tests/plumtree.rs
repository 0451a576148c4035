//! Plumtree's rules, one callback at a time, against a host that records
//! what the strategy sends: tree forming, pruning, announcing, grafting,
//! and what a lying member can and cannot make it do.

use std::collections::BTreeSet;

use gossip_core::{Digest, GossipMessage, Host, MessageId, NodeId, Rumor, Strategy};
use gossip_sim::node_addr;
use gossip_strategies::Plumtree;

fn node(i: usize) -> NodeId {
    NodeId::new(node_addr(i))
}

fn id(sequence: u64) -> MessageId {
    MessageId {
        origin: node(50),
        generation: 0,
        sequence,
    }
}

fn rumor(sequence: u64) -> Rumor {
    Rumor {
        id: id(sequence),
        hops: 1,
    }
}

/// A host whose peers are nodes `1..=peers`, handed out in turn, holding
/// the rumors in `held`, that records every message sent.
struct Recording {
    peers: usize,
    next: usize,
    held: BTreeSet<MessageId>,
    sent: Vec<(NodeId, GossipMessage)>,
}

impl Recording {
    fn new(peers: usize) -> Self {
        Self {
            peers,
            next: 0,
            held: BTreeSet::new(),
            sent: Vec::new(),
        }
    }

    /// Messages sent since the last call.
    fn take(&mut self) -> Vec<(NodeId, GossipMessage)> {
        core::mem::take(&mut self.sent)
    }
}

impl Host for Recording {
    fn me(&self) -> NodeId {
        node(0)
    }
    fn random(&mut self) -> f64 {
        0.5
    }
    fn sample_peers(&mut self, count: usize, out: &mut Vec<NodeId>) {
        for _ in 0..count.min(self.peers) {
            self.next = self.next % self.peers + 1;
            out.push(node(self.next));
        }
    }
    fn all_peers(&mut self, out: &mut Vec<NodeId>) {
        out.extend((1..=self.peers).map(node));
    }
    fn peer_count(&self) -> usize {
        self.peers
    }
    fn has(&self, id: MessageId) -> bool {
        self.held.contains(&id)
    }
    fn digest(&self) -> Digest {
        Digest::default()
    }
    fn missing_from(&self, _digest: &Digest, _out: &mut Vec<Rumor>) {}
    fn send(&mut self, to: NodeId, message: GossipMessage) {
        self.sent.push((to, message));
    }
}

fn pushes_to(sent: &[(NodeId, GossipMessage)]) -> Vec<NodeId> {
    sent.iter()
        .filter(|(_, m)| matches!(m, GossipMessage::Push { .. }))
        .map(|(to, _)| *to)
        .collect()
}

/// The peers asked to become links (grafts naming no rumor) in `sent`.
fn link_requests(sent: Vec<(NodeId, GossipMessage)>) -> Vec<NodeId> {
    sent.into_iter()
        .filter(|(_, m)| matches!(m, GossipMessage::Graft { ids } if ids.is_empty()))
        .map(|(to, _)| to)
        .collect()
}

/// A node that has sought its three neighbours (nodes 1, 2, 3).
fn with_neighbours() -> (Plumtree, Recording) {
    let mut host = Recording::new(10);
    let mut tree = Plumtree::default();
    tree.on_round(&mut host);
    assert_eq!(
        link_requests(host.take()),
        [node(1), node(2), node(3)],
        "asks three peers to link"
    );
    (tree, host)
}

#[test]
fn a_first_copy_is_pushed_on_to_every_other_eager_link_and_announced_to_lazy_ones() {
    let (mut tree, mut host) = with_neighbours();
    // Node 7 links (a graft naming no rumor) and pushes a rumor first: the
    // rumor goes on to the three others at once.
    tree.on_graft(&mut host, node(7), &[]);
    host.held.insert(id(1));
    tree.on_rumor(&mut host, rumor(1), Some(node(7)));
    assert_eq!(pushes_to(&host.take()), [node(1), node(2), node(3)]);
    // Node 2 sends it again: a cycle, so node 2 is pruned for this origin
    // (told by feedback naming the rumor).
    tree.on_duplicate(&mut host, rumor(1), node(2));
    let sent = host.take();
    assert!(
        matches!(sent.as_slice(), [(to, GossipMessage::Feedback { known })] if *to == node(2) && known == &[id(1)])
    );
    assert_eq!(tree.lazy_peers().collect::<Vec<_>>(), [node(2)]);
    // The next rumor is pushed to the eager links only, and its id is
    // announced to node 2 at the next round.
    host.held.insert(id(2));
    tree.on_rumor(&mut host, rumor(2), None);
    assert_eq!(pushes_to(&host.take()), [node(1), node(3), node(7)]);
    tree.on_round(&mut host);
    let announced: Vec<_> = host
        .take()
        .into_iter()
        .filter_map(|(to, m)| match m {
            GossipMessage::Announce { ids } => Some((to, ids)),
            _ => None,
        })
        .collect();
    assert_eq!(announced, [(node(2), vec![id(1), id(2)])]);
}

#[test]
fn a_prune_turns_the_link_lazy_and_a_graft_turns_it_eager_again() {
    let (mut tree, mut host) = with_neighbours();
    // Node 1 has answered (an announcement), so the link is established;
    // its prune then only turns it lazy.
    tree.on_announce(&mut host, node(1), &[]);
    tree.on_prune(&mut host, node(1));
    host.held.insert(id(1));
    tree.on_rumor(&mut host, rumor(1), None);
    assert_eq!(pushes_to(&host.take()), [node(2), node(3)]);
    // Node 1 lacks rumor 1 and grafts: it gets it, and the next rumor too.
    tree.on_graft(&mut host, node(1), &[id(1)]);
    let sent = host.take();
    assert!(matches!(
        sent.as_slice(),
        [(to, GossipMessage::Push { rumors })] if *to == node(1) && rumors[0].id == id(1)
    ));
    host.held.insert(id(2));
    tree.on_rumor(&mut host, rumor(2), None);
    assert_eq!(pushes_to(&host.take()), [node(1), node(2), node(3)]);
}

#[test]
fn an_announced_rumor_that_does_not_arrive_is_grafted_from_each_announcer_in_turn_a_bounded_number_of_times(
) {
    let (mut tree, mut host) = with_neighbours();
    tree.on_announce(&mut host, node(4), &[id(9)]);
    tree.on_announce(&mut host, node(5), &[id(9)]);
    let grafts_in = |host: &mut Recording| -> Vec<(NodeId, Vec<MessageId>)> {
        host.take()
            .into_iter()
            .filter_map(|(to, m)| match m {
                GossipMessage::Graft { ids } if !ids.is_empty() => Some((to, ids)),
                _ => None,
            })
            .collect()
    };
    // graft_after = 2: nothing at the first round (the payload may still
    // be on its way down the tree), node 4 is asked at the second.
    tree.on_round(&mut host);
    assert!(grafts_in(&mut host).is_empty());
    tree.on_round(&mut host);
    assert_eq!(grafts_in(&mut host), [(node(4), vec![id(9)])]);
    assert!(
        tree.eager_peers().any(|p| p == node(4)),
        "the graft's link is eager"
    );
    // Node 4 never answers: two rounds later node 5 is asked.
    tree.on_round(&mut host);
    tree.on_round(&mut host);
    assert_eq!(grafts_in(&mut host), [(node(5), vec![id(9)])]);
    // Neither answers: each is asked again in turn (a graft or its answer
    // may have been lost), up to max_announcers (4) grafts in all.
    tree.on_round(&mut host);
    tree.on_round(&mut host);
    assert_eq!(grafts_in(&mut host), [(node(4), vec![id(9)])]);
    tree.on_round(&mut host);
    tree.on_round(&mut host);
    assert_eq!(grafts_in(&mut host), [(node(5), vec![id(9)])]);
    // Then the rumor is given up.
    tree.on_round(&mut host);
    tree.on_round(&mut host);
    assert!(grafts_in(&mut host).is_empty());
    assert_eq!(tree.missing_count(), 0);
}

#[test]
fn a_rumor_that_arrives_in_time_is_never_grafted() {
    let (mut tree, mut host) = with_neighbours();
    tree.on_announce(&mut host, node(4), &[id(3)]);
    tree.on_round(&mut host);
    host.held.insert(id(3));
    tree.on_rumor(&mut host, rumor(3), Some(node(1)));
    for _ in 0..4 {
        tree.on_round(&mut host);
    }
    assert!(host
        .take()
        .iter()
        .all(|(_, m)| !matches!(m, GossipMessage::Graft { ids } if !ids.is_empty())));
    assert_eq!(tree.missing_count(), 0);
}

#[test]
fn a_lying_announcer_costs_a_bounded_table_and_a_bounded_number_of_grafts() {
    let (mut tree, mut host) = with_neighbours();
    tree.max_missing = 100;
    // Node 6 announces 10,000 ids that do not exist.
    let ids: Vec<MessageId> = (1..=10_000).map(id).collect();
    for chunk in ids.chunks(500) {
        tree.on_announce(&mut host, node(6), chunk);
        tree.on_announce(&mut host, node(6), chunk);
    }
    assert_eq!(tree.missing_count(), 100, "the table stops at max_missing");
    let mut grafted = 0;
    for _ in 0..10 {
        tree.on_round(&mut host);
        for (_, m) in host.take() {
            if let GossipMessage::Graft { ids } = m {
                grafted += ids.len();
            }
        }
    }
    assert_eq!(
        grafted, 400,
        "each id grafted max_announcers (4) times, no more"
    );
    assert_eq!(tree.missing_count(), 0);
}

#[test]
fn a_lying_graft_gets_only_held_rumors_and_at_most_max_graft_ids() {
    let (mut tree, mut host) = with_neighbours();
    for s in 1..=1000 {
        host.held.insert(id(s));
    }
    // Node 8 asks for 1,000 held rumors and 1,000 that do not exist.
    let wanted: Vec<MessageId> = (1..=2000).map(id).collect();
    tree.on_graft(&mut host, node(8), &wanted);
    let sent: usize = host
        .take()
        .iter()
        .map(|(_, m)| match m {
            GossipMessage::Push { rumors } => rumors.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(sent, 256, "max_graft_ids answered, all of them held");
    let mut unknown = Plumtree::default();
    unknown.on_graft(&mut host, node(8), &[id(5000)]);
    assert!(
        pushes_to(&host.take()).is_empty(),
        "a rumor not held is not sent"
    );
}

#[test]
fn links_beyond_max_neighbours_are_refused_and_a_strangers_prune_changes_nothing() {
    let mut host = Recording::new(100);
    let mut tree = Plumtree::default();
    tree.max_neighbours = 4;
    tree.on_round(&mut host);
    host.take();
    tree.on_graft(&mut host, node(20), &[]);
    let sent = host.take();
    assert!(
        matches!(sent.as_slice(), [(to, GossipMessage::Announce { ids })] if *to == node(20) && ids.is_empty()),
        "room for a fourth link, acknowledged"
    );
    // A fifth asker is refused with a prune and never becomes a link.
    tree.on_graft(&mut host, node(21), &[]);
    let sent = host.take();
    assert!(matches!(sent.as_slice(), [(to, GossipMessage::Prune)] if *to == node(21)));
    assert!(tree.eager_peers().all(|p| p != node(21)));
    // A prune from a peer that is no link changes nothing.
    let before: Vec<NodeId> = tree.eager_peers().collect();
    tree.on_prune(&mut host, node(33));
    assert_eq!(tree.eager_peers().collect::<Vec<_>>(), before);
    assert_eq!(tree.lazy_peers().count(), 0);
}

#[test]
fn a_lost_neighbour_is_replaced_at_the_next_round() {
    let (mut tree, mut host) = with_neighbours();
    tree.on_peer_down(node(2));
    assert!(tree.wants_rounds());
    tree.on_round(&mut host);
    let grafts: Vec<NodeId> = host
        .take()
        .into_iter()
        .filter(|(_, m)| matches!(m, GossipMessage::Graft { .. }))
        .map(|(to, _)| to)
        .collect();
    assert_eq!(grafts.len(), 1, "one new link");
    assert_eq!(tree.eager_peers().count(), 3);
}

#[test]
fn a_refused_link_is_dropped_and_sought_elsewhere() {
    let (mut tree, mut host) = with_neighbours();
    // Node 2 is full and refuses the link this node asked for.
    tree.on_prune(&mut host, node(2));
    assert!(tree.eager_peers().all(|p| p != node(2)));
    assert!(
        tree.lazy_peers().all(|p| p != node(2)),
        "not kept as a lazy link"
    );
    tree.on_round(&mut host);
    assert_eq!(tree.eager_peers().count(), 3, "another peer asked instead");
    // A prune from a link that has answered only turns it lazy.
    host.held.insert(id(1));
    tree.on_rumor(&mut host, rumor(1), Some(node(1)));
    tree.on_prune(&mut host, node(1));
    assert_eq!(tree.lazy_peers().collect::<Vec<_>>(), [node(1)]);
}

#[test]
fn a_joining_node_waits_for_its_view_before_linking() {
    // Only the seed is known: no link yet, so not every joiner ends up a
    // neighbour of the seed.
    let mut host = Recording::new(1);
    let mut tree = Plumtree::default();
    for _ in 0..9 {
        tree.on_round(&mut host);
    }
    assert!(host.take().is_empty());
    // The view grew: it links.
    host.peers = 10;
    tree.on_round(&mut host);
    assert_eq!(tree.eager_peers().count(), 3);
}

fn id_from(origin: usize, sequence: u64) -> MessageId {
    MessageId {
        origin: node(origin),
        generation: 0,
        sequence,
    }
}

fn rumor_from(origin: usize, sequence: u64) -> Rumor {
    Rumor {
        id: id_from(origin, sequence),
        hops: 1,
    }
}

#[test]
fn a_duplicate_prunes_the_link_for_its_origin_only() {
    let (mut tree, mut host) = with_neighbours();
    tree.on_graft(&mut host, node(7), &[]);
    // Origins 40 and 41 both arrive first from node 7, then origin 40's
    // rumor again from node 2.
    for (origin, seq) in [(40, 1), (41, 1)] {
        host.held.insert(id_from(origin, seq));
        tree.on_rumor(&mut host, rumor_from(origin, seq), Some(node(7)));
    }
    host.take();
    tree.on_duplicate(&mut host, rumor_from(40, 1), node(2));
    host.take();
    // Node 2 still gets origin 41's rumors eagerly, no longer origin 40's
    // (which it is announced instead).
    host.held.insert(id_from(41, 2));
    tree.on_rumor(&mut host, rumor_from(41, 2), Some(node(7)));
    assert_eq!(pushes_to(&host.take()), [node(1), node(2), node(3)]);
    host.held.insert(id_from(40, 2));
    tree.on_rumor(&mut host, rumor_from(40, 2), Some(node(7)));
    assert_eq!(pushes_to(&host.take()), [node(1), node(3)]);
    tree.on_round(&mut host);
    let announced: Vec<_> = host
        .take()
        .into_iter()
        .filter_map(|(to, m)| match m {
            GossipMessage::Announce { ids } => Some((to, ids)),
            _ => None,
        })
        .collect();
    assert_eq!(announced, [(node(2), vec![id_from(40, 1), id_from(40, 2)])]);
    // Node 2's own feedback for origin 41 prunes it for 41 too.
    tree.on_feedback(&mut host, node(2), &[id_from(41, 2)]);
    host.held.insert(id_from(41, 3));
    tree.on_rumor(&mut host, rumor_from(41, 3), Some(node(7)));
    assert_eq!(pushes_to(&host.take()), [node(1), node(3)]);
    // A graft for origin 40 makes the link eager for 40 again.
    tree.on_graft(&mut host, node(2), &[id_from(40, 2)]);
    host.take();
    host.held.insert(id_from(40, 3));
    tree.on_rumor(&mut host, rumor_from(40, 3), Some(node(7)));
    assert_eq!(pushes_to(&host.take()), [node(1), node(2), node(3)]);
    let stats = tree.stats();
    assert_eq!(stats.prunes_sent, 1);
    assert_eq!(stats.eager_links + stats.lazy_links, 4);
}

#[test]
fn a_lying_feedback_or_graft_changes_only_the_link_to_its_sender() {
    let (mut tree, mut host) = with_neighbours();
    tree.on_graft(&mut host, node(7), &[]);
    host.held.insert(id_from(40, 1));
    tree.on_rumor(&mut host, rumor_from(40, 1), Some(node(7)));
    host.take();
    // Node 3 claims to hold 10,000 rumors of 40 and of origins never seen:
    // nothing is sent, no origin tree is made, only node 3's link changes.
    let forged: Vec<MessageId> = [id_from(40, 1)]
        .into_iter()
        .chain((0..10_000).map(|k| id_from(100 + (k % 500) as usize, k)))
        .collect();
    tree.on_feedback(&mut host, node(3), &forged);
    assert!(host.take().is_empty(), "feedback is never answered");
    host.held.insert(id_from(40, 2));
    tree.on_rumor(&mut host, rumor_from(40, 2), Some(node(7)));
    assert_eq!(pushes_to(&host.take()), [node(1), node(2)]);
    // A stranger's feedback changes nothing.
    tree.on_feedback(&mut host, node(33), &[id_from(40, 2)]);
    host.held.insert(id_from(40, 3));
    tree.on_rumor(&mut host, rumor_from(40, 3), Some(node(7)));
    assert_eq!(pushes_to(&host.take()), [node(1), node(2)]);
    // A graft naming origin 40 adds only its sender to 40's links.
    tree.on_graft(&mut host, node(9), &[id_from(40, 3)]);
    host.take();
    host.held.insert(id_from(40, 4));
    tree.on_rumor(&mut host, rumor_from(40, 4), Some(node(7)));
    assert_eq!(pushes_to(&host.take()), [node(1), node(2), node(9)]);
}

#[test]
fn origin_trees_are_bounded_and_the_least_recently_used_is_forgotten() {
    let (mut tree, mut host) = with_neighbours();
    tree.on_graft(&mut host, node(7), &[]);
    tree.max_origin_trees = 2;
    // Origins 40 and 41 prune node 1 for themselves; 40 is used again.
    for origin in [40, 41] {
        host.held.insert(id_from(origin, 1));
        tree.on_rumor(&mut host, rumor_from(origin, 1), Some(node(7)));
        tree.on_feedback(&mut host, node(1), &[id_from(origin, 1)]);
    }
    host.held.insert(id_from(40, 2));
    tree.on_rumor(&mut host, rumor_from(40, 2), Some(node(7)));
    host.take();
    // A third origin forgets 41's tree (used least recently), whose rumors
    // then follow the shared links, node 1's pruned too.
    host.held.insert(id_from(42, 1));
    tree.on_rumor(&mut host, rumor_from(42, 1), Some(node(7)));
    host.take();
    tree.on_graft(&mut host, node(1), &[]);
    host.take();
    // 40 kept its own tree, without node 1; 41's tree is made again from
    // the shared links, where node 1 is eager again.
    for origin in [40, 41] {
        host.held.insert(id_from(origin, 5));
        tree.on_rumor(&mut host, rumor_from(origin, 5), Some(node(7)));
    }
    let pushes = pushes_to(&host.take());
    assert_eq!(pushes, [node(2), node(3), node(1), node(2), node(3)]);
}

#[test]
fn a_copy_from_a_peer_that_is_no_neighbour_is_relayed_but_makes_no_link() {
    let (mut tree, mut host) = with_neighbours();
    // Node 9 (an anti-entropy answer) brings a rumor first: it goes on
    // along the tree, and node 9 does not become a link.
    host.held.insert(id(1));
    tree.on_rumor(&mut host, rumor(1), Some(node(9)));
    assert_eq!(pushes_to(&host.take()), [node(1), node(2), node(3)]);
    assert!(tree
        .eager_peers()
        .chain(tree.lazy_peers())
        .all(|p| p != node(9)));
}

#[test]
fn duplicates_in_flight_are_answered_once_per_peer_and_origin_per_round() {
    let (mut tree, mut host) = with_neighbours();
    for s in 1..=5 {
        host.held.insert(id(s));
        tree.on_duplicate(&mut host, rumor(s), node(2));
    }
    let feedbacks = |sent: Vec<(NodeId, GossipMessage)>| {
        sent.iter()
            .filter(|(_, m)| matches!(m, GossipMessage::Feedback { .. }))
            .count()
    };
    assert_eq!(feedbacks(host.take()), 1);
    tree.on_round(&mut host);
    host.take();
    tree.on_duplicate(&mut host, rumor(6), node(2));
    assert_eq!(feedbacks(host.take()), 1, "a new round answers again");
}

#[test]
fn an_accepted_link_request_is_acknowledged_with_an_empty_announcement() {
    let mut host = Recording::new(10);
    let mut tree = Plumtree::default();
    tree.on_graft(&mut host, node(7), &[]);
    let sent = host.take();
    assert!(
        matches!(sent.as_slice(), [(to, GossipMessage::Announce { ids })] if *to == node(7) && ids.is_empty()),
        "one bare acknowledgement, to the asker only: {sent:?}"
    );
    assert!(tree.eager_peers().any(|p| p == node(7)));
    // A graft naming rumors is answered by the rumors, not acknowledged.
    host.held.insert(id(1));
    tree.on_graft(&mut host, node(7), &[id(1)]);
    let sent = host.take();
    assert_eq!(pushes_to(&sent), [node(7)]);
    assert_eq!(sent.len(), 1);
}

#[test]
fn an_unanswered_link_request_is_given_up_and_another_peer_asked() {
    let (mut tree, mut host) = with_neighbours();
    // Node 1 acknowledges, node 3 sends a rumor (both answers); node 2,
    // which does not know this node yet, drops the request unanswered.
    tree.on_announce(&mut host, node(1), &[]);
    tree.on_rumor(&mut host, rumor(1), Some(node(3)));
    host.held.insert(id(1));
    host.take();
    for _ in 1..tree.link_timeout {
        tree.on_round(&mut host);
    }
    assert!(
        tree.eager_peers().any(|p| p == node(2)),
        "kept while the answer may still come"
    );
    tree.on_round(&mut host);
    let eager: Vec<NodeId> = tree.eager_peers().collect();
    assert!(!eager.contains(&node(2)), "given up: {eager:?}");
    assert!(eager.contains(&node(1)) && eager.contains(&node(3)));
    assert_eq!(eager.len(), 3, "another peer asked instead");
    assert_eq!(link_requests(host.take()).len(), 1);
    assert_eq!(tree.stats().link_requests_expired, 1);
    // Answered links are never given up, however quiet.
    for _ in 0..3 * tree.link_timeout {
        tree.on_round(&mut host);
    }
    let still: Vec<NodeId> = tree.eager_peers().collect();
    assert!(still.contains(&node(1)) && still.contains(&node(3)));
}

#[test]
fn a_lying_acknowledgement_makes_no_link() {
    let (mut tree, mut host) = with_neighbours();
    let before: Vec<NodeId> = tree.eager_peers().collect();
    // A member that was never asked "acknowledges": nothing changes, and
    // nothing is sent back.
    tree.on_announce(&mut host, node(9), &[]);
    assert!(host.take().is_empty());
    assert_eq!(tree.eager_peers().collect::<Vec<_>>(), before);
    assert_eq!(tree.lazy_peers().count(), 0);
}
