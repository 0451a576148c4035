//! Bulk payloads on simulated nodes: a block larger than a frame reaches
//! every node whole, over a tree strategy for about one copy per node.

use gossip_sim::{run_blocks, BlockTransfer, BlocksScenario};
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

#[test]
fn fetched_blocks_reach_every_node_whole_once_even_with_loss() {
    for loss in [0.0, 0.02] {
        let scenario = BlocksScenario {
            blocks: 2,
            block_bytes: 256 << 10,
            loss,
            interval: std::time::Duration::from_secs(10),
            transfer: BlockTransfer::Fetch,
            ..BlocksScenario::new(30)
        };
        let tree = AnyStrategy::Plumtree(Plumtree::default());
        let report = run_blocks(&scenario, &tree, |_| {});
        assert_eq!(report.delivered_fraction, 1.0, "loss {loss}: {report:?}");
        assert_eq!(report.hash_mismatches, 0);
        // Each node fetches the body once (pieces lost on the way are
        // asked again), plus frame headers and the offer's broadcast.
        assert!(report.bytes_sent_per_node_over_payload <= 1.3, "{report:?}");
        assert!(report.bytes_sent_per_node_over_payload >= 0.9, "{report:?}");
    }
}
