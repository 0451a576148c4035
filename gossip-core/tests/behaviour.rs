//! Cluster-level behaviour of the sans-IO `Node`, driven through the public API
//! by `gossip-sim`'s simulator on a network that delivers every frame in
//! exactly one millisecond: joining, failure detection, refutation, graceful
//! leave, restarts, partition healing, metadata, and byte-for-byte replay
//! determinism.

use crate::common::base_instant;
use std::time::Duration;

use gossip_core::wire::{self, Message};
use gossip_core::{CommandError, Config, Generation, Liveness, Node, NodeId, RecvError};
use gossip_sim::node_addr as addr;
use gossip_sim::{EventKind, EventRecord, Fate, FrameRecord, LinkModel, Simulator};

/// One-way latency of every link.
const LATENCY: Duration = Duration::from_millis(1);

type Sim = Simulator;

/// Identity of node `i`.
fn id(i: usize) -> NodeId {
    NodeId::new(addr(i))
}

/// Seeds `base, base + 1, ...` for `n` nodes.
fn seeds(n: usize, base: u64) -> Vec<u64> {
    (0..n as u64).map(|i| base + i).collect()
}

/// `node_seeds.len()` nodes with `config`, generation 1, node `i` seeded
/// with `node_seeds[i]`, every frame and event recorded; not started.
fn cluster(config: &Config, node_seeds: &[u64]) -> Sim {
    Simulator::builder(node_seeds.len(), config.clone())
        .link(LinkModel::fixed(LATENCY))
        .node_seeds(node_seeds.iter().copied())
        .first_generation(1)
        .record(true)
        .build()
}

/// `n` nodes with `config` and seeds `base_seed + i`, node 0 founding the
/// cluster and every other node joining through it.
fn started_with(config: &Config, n: usize, base_seed: u64) -> Sim {
    let mut sim = cluster(config, &seeds(n, base_seed));
    sim.start_all();
    sim
}

/// Like [`started_with`], with the default config.
fn started(n: usize, base_seed: u64) -> Sim {
    started_with(&Config::default(), n, base_seed)
}

/// Frames the receiver refused, with the error.
fn refusals(sim: &Sim) -> Vec<(&FrameRecord, &RecvError)> {
    sim.frames()
        .iter()
        .filter_map(|f| match &f.fate {
            Fate::Refused(e) => Some((f, e)),
            _ => None,
        })
        .collect()
}

/// The member a membership event is about.
fn member(e: &EventRecord) -> &gossip_core::Member {
    e.member().expect("a membership event")
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Starts `n` nodes through node 0 and runs until every one sees all `n`.
fn converged(n: usize, base_seed: u64) -> Sim {
    let mut sim = started(n, base_seed);
    let at = sim.run_until_cond(secs(10), &mut (), |s| s.all_running_see(n));
    assert!(at.is_some(), "{n} nodes did not converge within 10 s");
    sim
}

/// Events emitted at or after `t`.
fn events_since(sim: &Sim, t: Duration) -> impl Iterator<Item = &EventRecord> {
    sim.events().iter().filter(move |o| o.at >= t)
}

#[test]
fn harness_delivers_with_fixed_latency_and_virtual_time_only() {
    let mut sim = started(2, 1);
    // The join frame was sent at t = 0 and must arrive exactly one latency
    // later; node 0 challenges the joiner's address, which answers one
    // latency after that.
    assert_eq!(sim.frames().len(), 1);
    assert_eq!(sim.frames()[0].to, addr(0));
    sim.run_until(LATENCY, &mut ());
    assert_eq!(sim.now(), LATENCY);
    assert_eq!(
        sim.node(0).unwrap().live_member_count(),
        1,
        "not proven yet"
    );
    sim.run_until(3 * LATENCY, &mut ());
    assert!(
        sim.node(0).unwrap().live_member_count() == 2,
        "node 0 learned node 1 from its answer"
    );
    // The challenge and the join answer leave node 0 at delivery instants.
    assert!(sim
        .frames()
        .iter()
        .any(|s| s.from == addr(0) && s.at == LATENCY));
    assert!(sim
        .frames()
        .iter()
        .any(|s| s.from == addr(0) && s.at == 3 * LATENCY));
    sim.run_until(secs(3600), &mut ());
    assert_eq!(
        sim.now(),
        secs(3600),
        "an hour of virtual time passes without sleeping"
    );
}

#[test]
fn five_nodes_join_via_seed_and_see_each_other_up() {
    let mut sim = started(5, 1);
    let at = sim.run_until_cond(secs(5), &mut (), |s| s.all_running_see(5));
    let at = at.expect("5 nodes reach live_member_count() == 5 within 5 s");
    assert!(at <= secs(5));
    for i in 0..5 {
        assert!(sim.node(i).unwrap().is_joined(), "node {i} joined");
        for j in (0..5).filter(|&j| j != i) {
            let ups = sim
                .events_about(i, j)
                .into_iter()
                .filter(|e| e.kind() == EventKind::Up)
                .count();
            assert!(ups >= 1, "node {i} emitted MemberUp for node {j}");
            assert_eq!(sim.liveness(i, j), Some(Liveness::Alive));
        }
    }
    // Nothing was suspected or declared down while joining.
    assert!(sim
        .events()
        .iter()
        .all(|o| matches!(o.kind(), EventKind::Up | EventKind::Updated)));
    assert!(refusals(&sim).is_empty(), "{:?}", refusals(&sim));
}

#[test]
fn crashed_node_is_suspected_then_declared_down_by_everyone_else() {
    let mut sim = converged(5, 10);
    sim.run_until(secs(5), &mut ());
    let crash_at = sim.now();
    let victim = 3;
    sim.crash(victim);
    let done = sim.run_until_cond(crash_at + secs(15), &mut (), |s| {
        s.running()
            .into_iter()
            .all(|i| s.liveness(i, victim) == Some(Liveness::Dead))
    });
    assert!(
        done.is_some(),
        "every survivor declares the crashed node dead within 15 s"
    );
    sim.run_until(crash_at + secs(15), &mut ());

    for i in sim.running() {
        let about: Vec<_> = sim
            .events_about(i, victim)
            .into_iter()
            .filter(|e| e.at >= crash_at)
            .collect();
        let suspect = about.iter().position(|e| e.kind() == EventKind::Suspect);
        let down = about.iter().position(|e| e.kind() == EventKind::Down);
        let (Some(suspect), Some(down)) = (suspect, down) else {
            panic!("node {i} must emit MemberSuspect then MemberDown, got {about:?}");
        };
        assert!(suspect < down, "node {i}: suspect before down: {about:?}");
        assert!(about[down].at <= crash_at + secs(15));
        assert_eq!(sim.node(i).unwrap().live_member_count(), 4, "node {i}");
    }
    // Nobody else was suspected or declared dead.
    for o in sim.events() {
        let kind = o.kind();
        if matches!(kind, EventKind::Suspect | EventKind::Down) {
            assert_eq!(member(o).id, id(victim), "false positive: {o:?}");
        }
    }
    let declared: u64 = sim
        .running()
        .into_iter()
        .map(|i| sim.node(i).unwrap().stats().members_declared_dead)
        .sum();
    assert!(declared >= 1, "someone's suspicion timed out");
}

#[test]
fn helpers_nacks_confirm_a_suspicion_so_it_runs_for_the_minimum_only() {
    // Default LAN timings with 5 members: suspicion lasts between
    // 0.75 x 2 x 1 s = 1.5 s and 3 x that = 4.5 s. A lone suspecter would
    // wait 4.5 s (3 s with one confirmation); the three helpers of the
    // failed probe each nack, confirming it three times: 1.5 s.
    for seed in [10, 11, 12] {
        let mut sim = converged(5, seed);
        sim.run_until(secs(5), &mut ());
        let crash_at = sim.now();
        let victim = 2;
        sim.crash(victim);
        sim.run_until(crash_at + secs(15), &mut ());
        let first = |kind: EventKind| {
            sim.events()
                .iter()
                .filter(|o| o.at >= crash_at && member(o).id == id(victim))
                .filter(|o| o.kind() == kind)
                .map(|o| o.at)
                .min()
                .expect("the crash is noticed")
        };
        let (suspected, declared) = (first(EventKind::Suspect), first(EventKind::Down));
        let window = declared - suspected;
        assert!(
            window <= Duration::from_millis(1600),
            "seed {seed}: suspicion lasted {window:?}, more than the 1.5 s minimum"
        );
    }
}

#[test]
fn a_death_spreads_at_once_not_at_the_next_gossip_round() {
    // The simulated network delivers in about a millisecond; gossip rounds
    // are 200 ms apart. A death is news passed on at once; each survivor
    // takes it as a suspicion (confirmed when the declarer itself tells
    // it) and declares the death itself, all within the minimum suspicion
    // timeout (1.5 s here) of the first declaration, on each of several
    // seeds. (Before, one member's word was final and the spread was a few
    // milliseconds.)
    for seed in [20, 21, 22, 23] {
        let mut sim = converged(6, seed);
        sim.run_until(secs(5), &mut ());
        let crash_at = sim.now();
        let victim = 4;
        sim.crash(victim);
        sim.run_until(crash_at + secs(15), &mut ());
        let downs: Vec<Duration> = sim
            .events()
            .iter()
            .filter(|o| o.at >= crash_at && o.kind() == EventKind::Down)
            .filter(|o| member(o).id == id(victim))
            .map(|o| o.at)
            .collect();
        assert_eq!(downs.len(), 5, "seed {seed}: every survivor declares it");
        let spread = *downs.iter().max().unwrap() - *downs.iter().min().unwrap();
        assert!(
            spread <= Duration::from_millis(1500),
            "seed {seed}: the death took {spread:?} to reach everyone"
        );
    }
}

/// The default config with the suspicion window pinned at 1 s .. 3 s (for up
/// to 10 members), so that the outage scenarios below test the refutation
/// mechanism rather than however the defaults happen to be tuned: a 1.5 s
/// outage must fit inside the suspicion window.
fn refutation_config() -> Config {
    let mut config = Config::default();
    config.suspicion_min_mult = 1.0;
    config.suspicion_max_mult = 3.0;
    config
}

#[test]
fn suspicion_of_a_briefly_unreachable_node_is_refuted() {
    let mut sim = started_with(&refutation_config(), 5, 20);
    assert!(sim
        .run_until_cond(secs(10), &mut (), |s| s.all_running_see(5))
        .is_some());
    sim.run_until(secs(5), &mut ());
    let b = 2;
    let before = sim.node(b).unwrap().members().next().expect("self first");
    assert_eq!(before.id, id(b));

    // Traffic to B is dropped; B's own frames still go out.
    let block_at = sim.now();
    for i in (0..5).filter(|&i| i != b) {
        sim.block(i, b);
    }
    let suspected = sim.run_until_cond(block_at + secs(5), &mut (), |s| {
        (0..5).any(|i| s.liveness(i, b) == Some(Liveness::Suspect))
    });
    let suspected = suspected.expect("B gets suspected while unreachable");
    sim.run_until(
        suspected.max(block_at + Duration::from_millis(1500)),
        &mut (),
    );
    sim.unblock_all();
    let healed_at = sim.now();
    sim.run_until(healed_at + secs(20), &mut ());

    let down: Vec<_> = sim
        .events()
        .iter()
        .filter(|o| o.kind() == EventKind::Down)
        .collect();
    assert!(down.is_empty(), "nobody is declared dead: {down:?}");
    let after = sim.node(b).unwrap().members().next().expect("self first");
    assert!(
        after.incarnation > before.incarnation,
        "B refuted by raising its incarnation ({:?} -> {:?})",
        before.incarnation,
        after.incarnation
    );
    assert!(sim.node(b).unwrap().stats().refutations >= 1);
    for i in 0..5 {
        assert_eq!(sim.node(i).unwrap().live_member_count(), 5, "node {i}");
        let seen = sim.view_of(i, b).expect("B known");
        assert_eq!(
            seen.liveness,
            Liveness::Alive,
            "node {i} sees B alive again"
        );
        assert!(
            seen.incarnation >= after.incarnation,
            "node {i} has B's refutation"
        );
    }
}

#[test]
fn graceful_leave_is_reported_as_left_not_down() {
    let mut sim = converged(5, 30);
    sim.run_until(secs(3), &mut ());
    let leaver = 4;
    let left_at = sim.now();
    sim.command(leaver, |n, now| n.leave(now), &mut ())
        .expect("running")
        .expect("first leave succeeds");
    assert!(
        sim.frames()
            .iter()
            .any(|s| s.from == addr(leaver) && s.at == left_at),
        "leave announces itself at once"
    );
    assert_eq!(
        sim.command(leaver, |n, now| n.leave(now), &mut ())
            .expect("running"),
        Err(CommandError::Departed)
    );
    assert_eq!(
        sim.command(leaver, |n, now| n.set_metadata(now, vec![1]), &mut ())
            .expect("running"),
        Err(CommandError::Departed)
    );
    assert_eq!(
        sim.command(leaver, |n, now| n.join(now, &[addr(0)]), &mut ())
            .expect("running"),
        Err(CommandError::Departed)
    );
    sim.run_until(left_at + secs(10), &mut ());

    for i in 0..4 {
        let about: Vec<_> = sim
            .events_about(i, leaver)
            .into_iter()
            .filter(|e| e.at >= left_at)
            .map(|e| e.kind())
            .collect();
        assert!(
            about.contains(&EventKind::Left),
            "node {i} emits MemberLeft: {about:?}"
        );
        assert!(
            !about.contains(&EventKind::Down),
            "node {i} must not emit MemberDown: {about:?}"
        );
        assert_eq!(sim.liveness(i, leaver), Some(Liveness::Left));
        assert_eq!(sim.node(i).unwrap().live_member_count(), 4);
    }
    let me = sim
        .node(leaver)
        .unwrap()
        .members()
        .next()
        .expect("self first");
    assert_eq!(me.liveness, Liveness::Left);
    // Whatever still reaches the departed node is refused as Departed.
    for (frame, e) in refusals(&sim) {
        assert_eq!(frame.to, addr(leaver));
        assert_eq!(*e, RecvError::Departed);
    }
}

#[test]
fn restarted_node_rejoins_as_a_new_generation() {
    let mut sim = converged(5, 40);
    sim.run_until(secs(5), &mut ());
    let x = 2;
    sim.crash(x);
    let dead = sim.run_until_cond(sim.now() + secs(20), &mut (), |s| {
        s.running()
            .into_iter()
            .all(|i| s.liveness(i, x) == Some(Liveness::Dead))
    });
    assert!(dead.is_some(), "everyone declares the crashed node dead");

    let restart_at = sim.now();
    let fresh = Node::new(Config::default(), id(x), Generation(2), 999).expect("valid");
    sim.replace(x, fresh);
    sim.command(x, |n, now| n.join(now, &[addr(0)]), &mut ())
        .expect("running")
        .expect("fresh node joins");
    let back = sim.run_until_cond(restart_at + secs(10), &mut (), |s| s.all_running_see(5));
    assert!(back.is_some(), "the cluster counts 5 live members again");

    for i in (0..5).filter(|&i| i != x) {
        let up = sim
            .events_about(i, x)
            .into_iter()
            .find(|e| e.at >= restart_at && e.kind() == EventKind::Up);
        let member =
            member(up.unwrap_or_else(|| panic!("node {i} emits MemberUp for the restart")));
        assert_eq!(member.generation, Generation(2), "node {i}");
        let seen = sim.view_of(i, x).expect("known");
        assert_eq!(seen.generation, Generation(2));
        assert_eq!(seen.liveness, Liveness::Alive);
    }
    assert_eq!(sim.node(x).unwrap().live_member_count(), 5);
}

#[test]
fn healed_partition_merges_without_rejoining() {
    let mut sim = converged(6, 50);
    sim.run_until(secs(5), &mut ());
    let (left, right) = ([0, 1, 2], [3, 4, 5]);
    for x in left {
        for y in right {
            sim.block_pair(x, y);
        }
    }
    let split_at = sim.now();
    let split = sim.run_until_cond(split_at + secs(60), &mut (), |s| {
        left.iter().all(|&i| {
            right.iter().all(|&j| {
                s.liveness(i, j) == Some(Liveness::Dead) && s.liveness(j, i) == Some(Liveness::Dead)
            })
        })
    });
    assert!(split.is_some(), "each side declares the other dead");
    for i in 0..6 {
        assert_eq!(
            sim.node(i).unwrap().live_member_count(),
            3,
            "node {i} sees its side only"
        );
    }

    sim.unblock_all();
    let healed_at = sim.now();
    let merged = sim.run_until_cond(healed_at + secs(60), &mut (), |s| s.all_running_see(6));
    assert!(
        merged.is_some(),
        "every node sees all 6 live within 60 s of healing; counts: {:?}",
        (0..6)
            .map(|i| sim.node(i).unwrap().live_member_count())
            .collect::<Vec<_>>()
    );
    // Let suspicions raised while merging settle, then everyone is alive everywhere.
    sim.run_for(secs(20), &mut ());
    for i in 0..6 {
        assert_eq!(sim.node(i).unwrap().live_member_count(), 6, "node {i}");
        for j in 0..6 {
            assert_eq!(
                sim.liveness(i, j),
                Some(Liveness::Alive),
                "node {i} about {j}"
            );
        }
    }
    // The merge came from dead-member probing and sync, not from join requests.
    let config = Config::default();
    let joins_after_heal = sim
        .frames()
        .iter()
        .filter(|s| s.at >= healed_at)
        .filter(|s| {
            matches!(
                wire::decode(&config, &s.bytes),
                Ok((_, Message::Join { .. }))
            )
        })
        .count();
    assert_eq!(joins_after_heal, 0);
    assert!(
        (0..6).any(|i| sim.node(i).unwrap().stats().dead_probes_sent > 0),
        "dead members were re-probed"
    );
}

#[test]
fn metadata_change_propagates_and_oversized_metadata_is_refused() {
    let mut sim = converged(4, 60);
    sim.run_until(secs(2), &mut ());
    let changed_at = sim.now();
    let metadata = b"zone=eu-west".to_vec();
    sim.command(1, |n, now| n.set_metadata(now, metadata.clone()), &mut ())
        .expect("running")
        .expect("fits");
    sim.run_until(changed_at + secs(5), &mut ());
    for i in [0, 2, 3] {
        let updated = sim
            .events_about(i, 1)
            .into_iter()
            .find(|e| e.at >= changed_at && e.kind() == EventKind::Updated);
        let member = member(updated.unwrap_or_else(|| panic!("node {i} emits MemberUpdated")));
        assert_eq!(member.metadata, metadata, "node {i}");
        assert_eq!(sim.view_of(i, 1).expect("known").metadata, metadata);
    }

    let own_before = sim.node(1).unwrap().members().next().expect("self");
    let max = sim.node(1).unwrap().config().max_metadata_len;
    let sent_before = sim.frames().len();
    let events_before = sim.events().len();
    assert_eq!(
        sim.command(1, |n, now| n.set_metadata(now, vec![0; max + 1]), &mut ())
            .expect("running"),
        Err(CommandError::MetadataTooLong { len: max + 1, max })
    );
    assert_eq!(
        sim.node(1).unwrap().members().next().expect("self"),
        own_before
    );
    assert_eq!(sim.frames().len(), sent_before);
    assert_eq!(sim.events().len(), events_before);
    // Exactly the maximum is fine.
    assert_eq!(
        sim.command(1, |n, now| n.set_metadata(now, vec![7; max]), &mut ())
            .expect("running"),
        Ok(())
    );
}

#[test]
fn broadcast_without_strategy_is_refused_and_changes_nothing() {
    let mut sim = converged(2, 70);
    let stats = sim.node(0).unwrap().stats();
    let sent = sim.frames().len();
    let timeout = sim.node(0).unwrap().poll_timeout();
    assert_eq!(
        sim.command(0, |n, now| n.broadcast(now, b"hello"), &mut ())
            .expect("running"),
        Err(CommandError::NoStrategy)
    );
    assert_eq!(sim.node(0).unwrap().stats(), stats);
    assert_eq!(sim.frames().len(), sent);
    assert_eq!(sim.node(0).unwrap().poll_timeout(), timeout);
}

#[test]
fn join_twice_is_refused() {
    let mut sim = converged(2, 80);
    assert_eq!(
        sim.command(1, |n, now| n.join(now, &[addr(0)]), &mut ())
            .expect("running"),
        Err(CommandError::AlreadyStarted)
    );
}

#[test]
fn peer_unreachable_suspects_and_the_peer_refutes() {
    let mut sim = converged(3, 90);
    sim.run_until(secs(2), &mut ());
    let t = sim.now();
    sim.command(0, |n, now| n.peer_unreachable(now, id(1)), &mut ())
        .expect("running");
    assert_eq!(sim.liveness(0, 1), Some(Liveness::Suspect));
    assert!(sim
        .events_about(0, 1)
        .iter()
        .any(|e| e.at == t && e.kind() == EventKind::Suspect));
    sim.run_for(secs(10), &mut ());
    assert_eq!(sim.liveness(0, 1), Some(Liveness::Alive), "node 1 refuted");
    assert!(sim.node(1).unwrap().stats().refutations >= 1);
    assert!(sim.events().iter().all(|o| o.kind() != EventKind::Down));
}

/// One 5-node run with a crash; returns every frame sent and every event.
fn replay(node_seeds: &[u64]) -> (Vec<FrameRecord>, Vec<EventRecord>) {
    let mut sim = cluster(&Config::default(), node_seeds);
    sim.start_all();
    sim.run_until(secs(5), &mut ());
    sim.crash(3);
    sim.run_until(secs(20), &mut ());
    (sim.frames().to_vec(), sim.events().to_vec())
}

#[test]
fn same_seeds_replay_byte_for_byte_and_other_seeds_differ() {
    let (sent_a, events_a) = replay(&seeds(5, 100));
    let (sent_b, events_b) = replay(&seeds(5, 100));
    assert!(sent_a.len() > 100, "a real run: {} frames", sent_a.len());
    assert!(events_a.iter().any(|o| o.kind() == EventKind::Down));
    assert_eq!(sent_a.len(), sent_b.len());
    for (k, (a, b)) in sent_a.iter().zip(&sent_b).enumerate() {
        assert_eq!(a, b, "frame {k} differs between identical runs");
    }
    assert_eq!(events_a, events_b);

    let mut other = seeds(5, 100);
    other[2] ^= 0xdead_beef;
    let (sent_c, _) = replay(&other);
    assert_ne!(sent_a, sent_c, "changing one node's seed changes the run");
}

#[test]
fn events_after_crash_only_concern_the_crashed_node() {
    // Guard against the harness hiding output: after the crash, all new
    // suspicion/down events name the victim and arrive after the crash.
    let mut sim = converged(4, 110);
    sim.run_until(secs(4), &mut ());
    let t = sim.now();
    sim.crash(0);
    sim.run_until(t + secs(15), &mut ());
    let after: Vec<_> = events_since(&sim, t).collect();
    assert!(!after.is_empty());
    for o in after {
        assert_ne!(o.node, 0, "a crashed node emits nothing");
        assert_eq!(member(o).id, id(0), "{o:?}");
    }
}

/// Runs the "traffic to node 2 blocked for `block`" scenario for one seed and
/// returns (whether node 2 was suspected, MemberDown events seen).
fn brief_outage(base_seed: u64, block: Duration, isolate: bool) -> (bool, Vec<EventRecord>) {
    let b = 2;
    let mut sim = started_with(&refutation_config(), 5, base_seed);
    sim.run_until(secs(5), &mut ());
    let t = sim.now();
    for i in (0..5).filter(|&i| i != b) {
        sim.block(i, b);
        if isolate {
            sim.block(b, i);
        }
    }
    sim.run_until(t + block, &mut ());
    sim.unblock_all();
    sim.run_for(secs(20), &mut ());
    let suspected = sim
        .events()
        .iter()
        .any(|o| o.kind() == EventKind::Suspect && member(o).id == id(b));
    let downs = sim
        .events()
        .iter()
        .filter(|o| o.kind() == EventKind::Down)
        .cloned()
        .collect();
    (suspected, downs)
}

#[test]
fn brief_outages_never_cause_false_deaths_across_seeds() {
    // Regression test: a suspected member used to learn of its suspicion only
    // from piggybacked gossip, whose bounded retransmissions could all be spent
    // while it was unreachable; it then never refuted and was declared dead.
    // Pings to a suspect (and acks to its pings) now carry the suspicion.
    let mut suspected_runs = 0;
    for seed in 0..40 {
        let (suspected, downs) = brief_outage(seed * 10, Duration::from_millis(1500), false);
        suspected_runs += usize::from(suspected);
        assert!(
            downs.is_empty(),
            "seed {}: false deaths {downs:?}",
            seed * 10
        );
    }
    assert!(
        suspected_runs >= 20,
        "the sweep exercises refutation ({suspected_runs} runs)"
    );
}

#[test]
fn brief_isolation_never_causes_false_deaths_across_seeds() {
    // A node that suspects someone while itself cut off used to exhaust the
    // suspicion's gossip retransmissions during the outage; the subject never
    // heard of it and was declared dead. The suspecter now pings its suspect
    // once more, carrying the suspicion, halfway through the minimum timeout.
    let mut failures = Vec::new();
    for seed in 0..40 {
        let (_, downs) = brief_outage(seed * 10, Duration::from_millis(1500), true);
        if !downs.is_empty() {
            failures.push(seed * 10);
        }
    }
    assert!(
        failures.is_empty(),
        "false deaths for base seeds {failures:?}"
    );
}

#[test]
fn lone_and_departed_nodes_go_quiet() {
    use gossip_core::{Config, Generation, Node, NodeId};
    use std::time::Duration;
    let addr = "127.0.0.1:7999".parse().unwrap();
    let start = base_instant();
    let mut node = Node::new(Config::default(), NodeId::new(addr), Generation(1), 9).unwrap();
    node.join(start, &[]).unwrap();
    node.set_metadata(start, b"role=db".to_vec()).unwrap();
    // Alone, the metadata update has nobody to go to: the node must wake only
    // for its 1 s probe period, not for a 200 ms gossip round that sends nothing.
    let mut wakes = 0;
    let mut now = start;
    while let Some(at) = node.poll_timeout() {
        if at > start + Duration::from_secs(10) {
            break;
        }
        now = at.max(now);
        node.handle_timeout(now);
        wakes += 1;
        assert!(wakes < 100, "timer does not advance");
    }
    assert!(wakes <= 11, "{wakes} wake-ups in 10 s for a lone node");
    assert!(node.poll_transmit().is_none(), "nobody to send to");
    node.leave(now).unwrap();
    node.handle_timeout(now + Duration::from_secs(1));
    assert_eq!(
        node.poll_timeout(),
        None,
        "a departed lone node has nothing left to do"
    );
    assert_eq!(node.live_member_count(), 0);
}

#[test]
fn sync_answer_carries_only_what_the_asker_lacks() {
    use gossip_core::wire::{self, Header, Message, PROTOCOL_VERSION};
    use gossip_core::{Config, Generation, Member};

    let mut sim = started(4, 500);
    sim.run_for(Duration::from_secs(10), &mut ());
    assert!(sim.all_running_see(4));
    let now = sim.instant(sim.now());

    let asker = sim.node(1).unwrap();
    let header = Header {
        version: PROTOCOL_VERSION,
        label: "",
        sender: asker.id(),
        generation: Generation(1),
        incarnation: asker.members().next().unwrap().incarnation,
    };
    let mut view: Vec<Member> = asker.members().collect();
    view.sort_by_key(|m| m.id);
    let ask = |entries: Vec<Member>| {
        wire::encode(
            &header,
            &Message::Sync {
                reply: true,
                nonce: 0,
                after: None,
                through: None,
                entries: entries.into_iter().map(wire::SyncEntry::from).collect(),
            },
        )
    };
    let answerer = sim.node_mut(0).unwrap();
    while answerer.poll_transmit().is_some() {}

    // Identical views: nothing to answer.
    answerer
        .handle_message(now, addr(1), &ask(view.clone()))
        .unwrap();
    assert!(answerer.poll_transmit().is_none(), "nothing is missing");

    // One member left out: the answer holds exactly that member.
    let omitted = view.remove(2);
    answerer.handle_message(now, addr(1), &ask(view)).unwrap();
    let answer = answerer.poll_transmit().expect("an answer");
    assert!(answerer.poll_transmit().is_none(), "one frame suffices");
    match wire::decode(&Config::default(), &answer.bytes).unwrap().1 {
        Message::Sync { reply, entries, .. } => {
            assert!(!reply, "answers never ask back");
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0].id, omitted.id);
        }
        other => panic!("expected a sync answer, got {other:?}"),
    }
}

/// An aggregate whose estimate is its input, to watch `set_aggregate_input`.
struct Echo(f64);

impl gossip_core::Aggregate for Echo {
    type Share = ();
    const SHARE_TYPE: u32 = gossip_core::share_type("tests/echo/1");

    fn on_round<H: gossip_core::AggregateHost<()>>(&mut self, _host: &mut H) {}

    fn on_share<H: gossip_core::AggregateHost<()>>(
        &mut self,
        _host: &mut H,
        _from: gossip_core::NodeId,
        _share: (),
    ) {
    }

    fn estimate(&self) -> Option<f64> {
        Some(self.0)
    }

    fn set_input(&mut self, value: f64) {
        self.0 = value;
    }
}

#[test]
fn aggregate_input_changes_reach_the_aggregate_and_surface_as_an_estimate() {
    let now = base_instant();
    let mut node = Node::with_parts(
        Config::lan(3),
        id(0),
        Generation(1),
        3,
        gossip_core::NoStrategy,
        Echo(0.25),
    )
    .unwrap();
    for refused in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(
            node.set_aggregate_input(now, refused),
            Err(CommandError::NonFiniteInput)
        );
    }
    assert_eq!(
        node.estimate(),
        Some(0.25),
        "a refused input changes nothing"
    );
    assert!(node.poll_event().is_none());
    assert_eq!(node.set_aggregate_input(now, 0.75), Ok(()));
    assert_eq!(node.estimate(), Some(0.75));
    assert!(matches!(
        node.poll_event(),
        Some(gossip_core::Event::Estimate(e)) if e == 0.75
    ));
}

#[test]
fn aggregate_input_without_an_aggregate_is_refused() {
    let mut node = Node::new(Config::lan(3), id(0), Generation(1), 3).unwrap();
    let timeout = node.poll_timeout();
    assert_eq!(
        node.set_aggregate_input(base_instant(), 0.5),
        Err(CommandError::NoAggregate)
    );
    assert_eq!(node.poll_timeout(), timeout);
    assert!(node.poll_event().is_none() && node.poll_transmit().is_none());
}
