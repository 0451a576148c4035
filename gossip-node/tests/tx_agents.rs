//! Transactions between real agents: `bench-net --rate` runs a cluster of
//! agents over loopback UDP in a child process and streams transactions
//! through the `gossip_apps::tx` application on every one of them.

use std::process::Command;

use crate::common::{BIN, SMALL_BENCH_NET};

#[test]
fn a_transaction_stream_reaches_every_agent_once_with_grouped_announcements() {
    let args = [
        SMALL_BENCH_NET,
        &[
            "--strategy",
            "plumtree",
            "--payload-bytes",
            "250",
            "--rate",
            "200",
            "--stream-secs",
            "1.5",
            "--format",
            "json",
        ],
    ]
    .concat();
    let out = Command::new(BIN).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tx = &report["transactions"];
    assert_eq!(tx["tx_bytes"], 250, "{report}");
    assert_eq!(tx["submitted"], 300, "{report}");
    // Every transaction reached every other agent, and each counted once.
    assert_eq!(tx["delivered_fraction"], 1.0, "{report}");
    assert!(tx["drain_s"].is_number(), "{report}");
    for key in ["p50", "p99", "max"] {
        assert!(tx["delivery_ms"][key].is_number(), "{report}");
    }
    // The tree announced ids on its lazy links, and the report says what
    // that cost per id per link; the whole cost per byte of transaction
    // is reported (its bar is shown by the README's run at scale, not here).
    assert!(
        tx["announce_bytes_per_item_per_link"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        tx["bytes_sent_per_node_over_tx_bytes"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        report["payloads"].is_null(),
        "--rate streams transactions, not bulk payloads"
    );
}
