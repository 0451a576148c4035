//! Plumtree on real nodes in the simulator: the tree forms, later
//! broadcasts cost about one payload per node, and what loss or a crash
//! cuts from the tree is grafted back.

use gossip_sim::{run_full_dissemination, FullDissemination};
use gossip_strategies::{AnyStrategy, Plumtree, RumorMongering};

fn scenario(loss: f64, runs: u32) -> FullDissemination {
    FullDissemination {
        nodes: 60,
        seed: 11,
        loss,
        runs,
        origin: None,
    }
}

#[test]
fn once_the_tree_has_formed_each_node_receives_about_one_copy() {
    let tree = AnyStrategy::Plumtree(Plumtree::default());
    let report = run_full_dissemination(&scenario(0.0, 20), &tree, |_| {}).expect("runs");
    for (i, run) in report.runs.iter().enumerate() {
        assert_eq!(run.informed, 60, "broadcast {i} reached everyone");
    }
    let first = report.runs[0].payload_messages;
    let later: u64 = report.runs[10..].iter().map(|r| r.payload_messages).sum();
    let per_node = later as f64 / 10.0 / 60.0;
    assert!(
        per_node <= 1.1,
        "later broadcasts send {per_node:.2} payload frames per node"
    );
    assert!(
        first as f64 > 1.5 * 60.0,
        "the first broadcast floods ({first})"
    );
    // Rumor mongering on the same cluster sends several copies per node.
    let rumor = AnyStrategy::Rumor(RumorMongering::default());
    let report = run_full_dissemination(&scenario(0.0, 5), &rumor, |_| {}).expect("runs");
    let rumor_per_node =
        report.runs.iter().map(|r| r.payload_messages).sum::<u64>() as f64 / 5.0 / 60.0;
    assert!(
        rumor_per_node > 3.0 * per_node,
        "rumor {rumor_per_node:.2} vs tree {per_node:.2}"
    );
}

#[test]
fn lost_payloads_are_grafted_from_announcers() {
    let tree = AnyStrategy::Plumtree(Plumtree::default());
    let report = run_full_dissemination(&scenario(0.05, 15), &tree, |_| {}).expect("runs");
    for (i, run) in report.runs.iter().enumerate() {
        assert_eq!(
            run.informed, 60,
            "broadcast {i} reached everyone despite 5% loss"
        );
    }
}
