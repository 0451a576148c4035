//! Feedback may be forged: rumor mongering counts it only from peers it
//! pushed the rumor to, once per push, and remembers a bounded number of
//! pushes. Each rule is tried by a forged sender here.

use gossip_core::{Digest, GossipMessage, Host, MessageId, NodeId, Rumor, Strategy};
use gossip_sim::node_addr;
use gossip_strategies::{Mode, RumorMongering, Termination};

fn node(i: usize) -> NodeId {
    NodeId::new(node_addr(i))
}

/// A host whose peers are nodes `1..=peers`, handed out in turn, that
/// records every push and feedback it sends.
struct Recording {
    peers: usize,
    next: usize,
    pushes: Vec<NodeId>,
    feedback: Vec<NodeId>,
}

impl Recording {
    fn new(peers: usize) -> Self {
        Self {
            peers,
            next: 0,
            pushes: Vec::new(),
            feedback: Vec::new(),
        }
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
    fn has(&self, _id: MessageId) -> bool {
        true
    }
    fn digest(&self) -> Digest {
        Digest::default()
    }
    fn missing_from(&self, _digest: &Digest, _out: &mut Vec<Rumor>) {}
    fn send(&mut self, to: NodeId, message: GossipMessage) {
        match message {
            GossipMessage::Push { .. } => self.pushes.push(to),
            GossipMessage::Feedback { .. } => self.feedback.push(to),
            _ => {}
        }
    }
}

fn rumor() -> Rumor {
    Rumor {
        id: MessageId {
            origin: node(0),
            generation: 0,
            sequence: 1,
        },
        hops: 0,
    }
}

/// Push, feedback counter `k`, fanout 1, batched: one push per round.
fn mongering(k: u32) -> RumorMongering {
    RumorMongering::new(Mode::Push, Termination::FeedbackCounter, k)
}

#[test]
fn feedback_from_a_peer_never_pushed_to_does_not_stop_the_rumor() {
    let mut host = Recording::new(3);
    let mut strategy = mongering(1);
    strategy.on_rumor(&mut host, rumor(), None);
    strategy.on_round(&mut host);
    assert_eq!(host.pushes, [node(1)]);
    // Node 9 was never pushed to: however often it claims to know the
    // rumor, it stays hot and is pushed again next round.
    for _ in 0..100 {
        strategy.on_feedback(&mut host, node(9), &[rumor().id]);
    }
    assert_eq!(strategy.hot_count(), 1);
    strategy.on_round(&mut host);
    assert_eq!(host.pushes, [node(1), node(2)]);
    // The real feedback of a peer pushed to counts (k = 1): it stops.
    strategy.on_feedback(&mut host, node(2), &[rumor().id]);
    assert_eq!(strategy.hot_count(), 0);
    strategy.on_round(&mut host);
    assert_eq!(host.pushes.len(), 2, "no push after it cooled");
}

#[test]
fn a_pushed_peer_counts_once_per_push() {
    let mut host = Recording::new(3);
    let mut strategy = mongering(2);
    strategy.on_rumor(&mut host, rumor(), None);
    strategy.on_round(&mut host);
    // Node 1 was pushed to once: replaying its feedback counts once (k = 2
    // needs two useless contacts).
    for _ in 0..10 {
        strategy.on_feedback(&mut host, node(1), &[rumor().id]);
    }
    assert_eq!(strategy.hot_count(), 1);
    strategy.on_round(&mut host);
    assert_eq!(host.pushes, [node(1), node(2)]);
    // The second push's feedback is the second useless contact.
    strategy.on_feedback(&mut host, node(2), &[rumor().id]);
    assert_eq!(strategy.hot_count(), 0);
}

#[test]
fn a_duplicate_from_anyone_does_not_cool_the_rumor() {
    let mut host = Recording::new(3);
    let mut strategy = mongering(1);
    strategy.on_rumor(&mut host, rumor(), None);
    // Duplicates pushed to us by a peer we never pushed to.
    for _ in 0..10 {
        strategy.on_duplicate(&mut host, rumor(), node(9));
    }
    assert_eq!(strategy.hot_count(), 1);
    assert_eq!(
        host.feedback.len(),
        10,
        "each draws our feedback, nothing more"
    );
    strategy.on_round(&mut host);
    assert_eq!(host.pushes, [node(1)], "still pushed");
}

#[test]
fn only_the_last_max_pushed_pushes_are_remembered() {
    let mut host = Recording::new(20);
    let mut strategy = mongering(1);
    strategy.max_pushed = 4;
    strategy.on_rumor(&mut host, rumor(), None);
    for _ in 0..10 {
        strategy.on_round(&mut host);
    }
    assert_eq!(host.pushes.len(), 10);
    // The first push (node 1) is forgotten: its feedback no longer counts.
    strategy.on_feedback(&mut host, node(1), &[rumor().id]);
    assert_eq!(strategy.hot_count(), 1);
    // The latest (node 10) is remembered.
    strategy.on_feedback(&mut host, node(10), &[rumor().id]);
    assert_eq!(strategy.hot_count(), 0);
}

#[test]
fn max_pushed_defaults_when_absent_from_a_config() {
    let strategy: gossip_strategies::AnyStrategy = serde_json::from_str(
        r#"{"kind":"rumor","mode":"push","fanout":1,"termination":"feedback-coin","k":2,
            "hop_limit":null,"relay":"batched","backup":null}"#,
    )
    .unwrap();
    let gossip_strategies::AnyStrategy::Rumor(rumor) = strategy else {
        panic!("{strategy:?}")
    };
    assert_eq!(rumor.max_pushed, 64);
    assert_eq!(rumor.max_hot, 4096);
}

#[test]
fn a_replayed_pull_that_already_knows_counts_once() {
    // Pull mode, feedback counter k = 2: two useless pulls end interest.
    let mut strategy = RumorMongering::new(Mode::Pull, Termination::FeedbackCounter, 2);
    let mut host = Recording::new(3);
    strategy.on_rumor(&mut host, rumor(), None);
    let mut knows = Digest::default();
    knows.heads.push((node(0), 0, 1));
    assert!(knows.covers(rumor().id));
    // One sender replays a pull whose digest covers the rumor.
    for _ in 0..50 {
        strategy.on_pull(&mut host, node(9), &knows, false);
    }
    assert_eq!(strategy.hot_count(), 1, "one puller counts once");
    // A pull that lacks it is answered with it.
    strategy.on_pull(&mut host, node(8), &Digest::default(), false);
    assert_eq!(host.pushes, [node(8)]);
    // A second puller that knows it is the second useless contact.
    strategy.on_pull(&mut host, node(7), &knows, false);
    assert_eq!(strategy.hot_count(), 0);
}

#[test]
fn pulling_and_answering_in_turn_counts_once_per_puller() {
    // Pull mode, feedback counter k = 2.
    let mut strategy = RumorMongering::new(Mode::Pull, Termination::FeedbackCounter, 2);
    let mut host = Recording::new(3);
    strategy.on_rumor(&mut host, rumor(), None);
    // Node 9 pulls as if it lacked the rumor, is pushed it, and answers
    // that it knew it, again and again.
    for _ in 0..20 {
        strategy.on_pull(&mut host, node(9), &Digest::default(), false);
        strategy.on_feedback(&mut host, node(9), &[rumor().id]);
    }
    assert_eq!(host.pushes.len(), 20);
    assert_eq!(strategy.hot_count(), 1, "node 9 counted once");
    // Another peer's feedback on the push that answered its pull counts.
    strategy.on_pull(&mut host, node(8), &Digest::default(), false);
    strategy.on_feedback(&mut host, node(8), &[rumor().id]);
    assert_eq!(strategy.hot_count(), 0);
}
