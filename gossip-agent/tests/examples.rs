//! The examples' own logic, run as tests: what `cargo run --example ...`
//! prints is what these assert.

// Each example declares the shared scenario module for itself, so that
// each builds on its own; included together here, it is compiled twice.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/udp_cluster.rs"]
#[allow(dead_code)] // the example's `main`
mod udp_cluster;

#[path = "../examples/quic_cluster.rs"]
#[allow(dead_code)]
mod quic_cluster;

#[path = "../examples/custom_strategy.rs"]
#[allow(dead_code)]
mod custom_strategy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_udp_example_delivers_to_every_node_and_everyone_sees_the_leave() {
    let outcome = udp_cluster::run().await.expect("the example runs");
    assert_eq!(outcome.delivered, vec![1, 2]);
    assert_eq!(outcome.saw_leave, vec![0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quic_example_delivers_to_every_node_and_everyone_sees_the_leave() {
    let outcome = quic_cluster::run().await.expect("the example runs");
    assert_eq!(outcome.delivered, vec![1, 2]);
    assert_eq!(outcome.saw_leave, vec![0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_custom_strategy_example_delivers_to_every_other_node() {
    let delivered = custom_strategy::run().await.expect("the example runs");
    assert_eq!(delivered, 4);
}
