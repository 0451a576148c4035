//! Bulk payloads on simulated nodes: a block larger than a frame reaches
//! every node whole, over a tree strategy for about one copy per node.

use gossip_sim::{run_blocks, BlocksScenario};
use gossip_strategies::{AnyStrategy, Plumtree};

#[test]
fn blocks_reach_every_node_whole_for_about_one_copy_per_node() {
    let scenario = BlocksScenario {
        blocks: 3,
        block_bytes: 256 << 10,
        ..BlocksScenario::new(40)
    };
    let tree = AnyStrategy::Plumtree(Plumtree::default());
    let report = run_blocks(&scenario, &tree, |_| {});
    assert_eq!(report.delivered_fraction, 1.0, "{report:?}");
    assert_eq!(report.hash_mismatches, 0);
    assert!(report.bytes_sent_per_node_over_payload <= 1.3, "{report:?}");
}

#[test]
fn lost_chunks_are_repaired() {
    let scenario = BlocksScenario {
        blocks: 2,
        block_bytes: 128 << 10,
        loss: 0.02,
        interval: std::time::Duration::from_secs(10),
        ..BlocksScenario::new(30)
    };
    let tree = AnyStrategy::Plumtree(Plumtree::default());
    let report = run_blocks(&scenario, &tree, |_| {});
    assert_eq!(report.delivered_fraction, 1.0, "{report:?}");
    assert_eq!(report.hash_mismatches, 0);
}
