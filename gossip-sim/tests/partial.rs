//! Partial views in the simulator: a mass crash is repaired and broadcasts
//! reach every survivor afterwards.

use gossip_sim::{run_partial, PartialScenario};

fn scenario() -> PartialScenario {
    let mut s = PartialScenario::new(1000);
    s.join_window_s = 5.0;
    s.broadcasts_from_s = 15.0;
    s.crash_at_s = 30.0;
    s.duration_s = 50.0;
    s.crash_fraction = 0.5;
    s
}

#[test]
fn half_the_nodes_crash_and_every_later_broadcast_reaches_every_survivor() {
    let r = run_partial(&scenario(), |_| {});
    assert_eq!(r.crashed, 500);
    assert_eq!(r.isolated_before_crash, 0);
    assert!(r.active_view_mean > 4.0, "{}", r.active_view_mean);
    assert_eq!(r.reach_before_crash_min, 1.0);
    assert!(
        r.payload_copies_per_node_per_broadcast < 1.3,
        "{} copies per node",
        r.payload_copies_per_node_per_broadcast
    );
    let repaired = r.views_repaired_s.expect("views repaired");
    assert!(repaired <= 10.0, "repaired after {repaired} s");
    assert_eq!(r.survivor_reach_after_repair_min, Some(1.0));
    let max = r
        .delivery_after_repair_s
        .max
        .expect("every survivor reached");
    assert!(max <= 10.0, "{max} s to every survivor");
    // Even broadcasts sent while dead links were still in the views
    // reached every survivor: new neighbours are told recent ids.
    assert_eq!(r.survivor_reach_min, 1.0);
}

#[test]
fn without_reannouncement_a_broadcast_sent_into_the_crash_misses_survivors() {
    let mut s = scenario();
    s.config.reannounce_window = std::time::Duration::ZERO;
    let r = run_partial(&s, |_| {});
    assert!(r.survivor_reach_min < 1.0, "{}", r.survivor_reach_min);
    // Once the views have repaired, the tree alone reaches everyone.
    assert_eq!(r.survivor_reach_after_repair_min, Some(1.0));
}

#[test]
fn partial_runs_replay_for_their_seed() {
    let mut s = scenario();
    s.nodes = 300;
    let mut a = run_partial(&s, |_| {});
    let mut b = run_partial(&s, |_| {});
    a.cpu_s = 0.0;
    b.cpu_s = 0.0;
    assert_eq!(a, b);
    s.seed = 2;
    let mut c = run_partial(&s, |_| {});
    c.cpu_s = 0.0;
    assert_ne!(a.frames, c.frames, "another seed, another run");
}
