//! Leader election and partition awareness on simulated nodes: the
//! experiments behind `gossip-node sim leader` and `sim partition`.
//!
//! Every node runs a [`LeaderProbe`]: a [`LeaderElection`] and a
//! [`PartitionWatch`] beside it under [`AppSim`], recording each change
//! with its virtual time so the reports are exact, not sampled.

use core::time::Duration;
use std::collections::BTreeMap;
use std::time::Instant;

use gossip_apps::{
    Application, Cluster, LeaderConfig, LeaderElection, PartitionConfig, PartitionEvent,
    PartitionWatch,
};
use gossip_core::{Config, Event, NodeId, Strategy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::apps::AppSim;
use crate::net::{LinkModel, Observer, Simulator};
use crate::scenario::Quantiles;

/// One change of what a node believes about leadership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderSample {
    /// Virtual time, in nanoseconds since the simulation started.
    pub at_nanos: u64,
    /// The leader it follows.
    pub leader: Option<NodeId>,
    /// The term it shows.
    pub term: u64,
    /// Whether it has quorum.
    pub has_quorum: bool,
    /// Whether it leads.
    pub is_leader: bool,
}

/// The applications one simulated node runs, with a record of their
/// changes.
pub struct LeaderProbe {
    /// Leader election.
    pub election: LeaderElection,
    /// The partition watch.
    pub watch: PartitionWatch,
    epoch: Instant,
    /// Every change of leader, term, quorum or leading, in time order.
    pub history: Vec<LeaderSample>,
    /// Every partition event, with its virtual time in nanoseconds.
    pub partition_events: Vec<(u64, PartitionEvent)>,
}

impl LeaderProbe {
    /// Fresh applications; `epoch` is the simulation's time zero.
    pub fn new(leader: LeaderConfig, partition: PartitionConfig, epoch: Instant) -> Self {
        Self {
            election: LeaderElection::new(leader),
            watch: PartitionWatch::new(partition),
            epoch,
            history: Vec::new(),
            partition_events: Vec::new(),
        }
    }

    fn record(&mut self, now: Instant) {
        let at_nanos = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let status = self.election.status();
        let sample = LeaderSample {
            at_nanos,
            leader: status.leader,
            term: status.term,
            has_quorum: status.has_quorum,
            is_leader: status.is_leader,
        };
        let changed = self.history.last().is_none_or(|last| {
            (last.leader, last.term, last.has_quorum, last.is_leader)
                != (
                    sample.leader,
                    sample.term,
                    sample.has_quorum,
                    sample.is_leader,
                )
        });
        if changed {
            self.history.push(sample);
        }
        while self.election.poll_event().is_some() {}
        while let Some(event) = self.watch.poll_event() {
            self.partition_events.push((at_nanos, event));
        }
    }

    /// Times the shown term went down (0 by construction; the reports
    /// count it anyway).
    pub fn term_regressions(&self) -> u64 {
        self.history
            .windows(2)
            .filter(|w| w[1].term < w[0].term)
            .count() as u64
    }
}

impl Application for LeaderProbe {
    fn handle_event(&mut self, now: Instant, event: &Event, cluster: &mut dyn Cluster) {
        self.election.handle_event(now, event, cluster);
        self.watch.handle_event(now, event, cluster);
        self.record(now);
    }

    fn handle_timeout(&mut self, now: Instant, cluster: &mut dyn Cluster) {
        if self.election.poll_timeout().is_some_and(|t| t <= now) {
            self.election.handle_timeout(now, cluster);
        }
        if self.watch.poll_timeout().is_some_and(|t| t <= now) {
            self.watch.handle_timeout(now, cluster);
        }
        self.record(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.election.poll_timeout(), self.watch.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Records when each node held a member down.
#[derive(Default)]
struct Downs(Vec<(u64, usize, NodeId)>);

impl Observer for Downs {
    fn on_event(&mut self, at: Duration, node: usize, event: &Event) {
        if let Event::MemberDown(m) = event {
            self.0.push((at.as_nanos() as u64, node, m.id));
        }
    }
}

/// A cluster of `n` probes under `config`, started at t = 0 with node 0
/// as everyone's seed.
pub fn probe_cluster<S: Strategy + Clone>(
    n: usize,
    seed: u64,
    config: Config,
    link: LinkModel,
    strategy: &S,
    leader: &LeaderConfig,
    partition: &PartitionConfig,
) -> AppSim<LeaderProbe, S, gossip_core::NoAggregate> {
    let mut sim = Simulator::builder(n, config)
        .seed(seed)
        .link(link)
        .strategy(strategy.clone())
        .build();
    sim.start_all();
    let epoch = sim.instant(Duration::ZERO);
    let apps = (0..n)
        .map(|_| LeaderProbe::new(leader.clone(), partition.clone(), epoch))
        .collect();
    AppSim::new(sim, apps)
}

/// The leader experiments: successive leader crashes in one cluster, and
/// randomized partitions of small clusters in quorum mode.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaderScenario {
    /// Size of the crash cluster.
    pub nodes: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// The nodes' configuration (default `Config::lan(nodes)`).
    pub config: Config,
    /// The network.
    pub link: LinkModel,
    /// Leader election's configuration for the crash runs.
    pub leader: LeaderConfig,
    /// Time before the first crash.
    pub warmup: Duration,
    /// Leaders crashed one after another.
    pub crashes: usize,
    /// Time between crashes (each failover is measured within it).
    pub crash_gap: Duration,
    /// Randomized partition runs in quorum mode.
    pub runs: u32,
    /// Cluster size of each partition run.
    pub run_nodes: usize,
    /// Simulated time of each partition run.
    pub run_duration: Duration,
}

impl LeaderScenario {
    /// `nodes` nodes, 5 leader crashes 30 s apart after 30 s, and 100
    /// partition runs of 10 nodes for 120 s each.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            seed: 1,
            config: Config::lan(nodes),
            link: LinkModel::default(),
            leader: LeaderConfig::default(),
            warmup: Duration::from_secs(30),
            crashes: 5,
            crash_gap: Duration::from_secs(30),
            runs: 100,
            run_nodes: 10,
            run_duration: Duration::from_secs(120),
        }
    }

    /// Checks that the scenario is runnable.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes < 2 || self.crashes >= self.nodes {
            return Err("need at least 2 nodes and fewer crashes than nodes".into());
        }
        if self.runs > 0 && self.run_nodes < 3 {
            return Err("partition runs need at least 3 nodes".into());
        }
        if !(0.0..1.0).contains(&self.link.loss) {
            return Err("loss must be within [0, 1)".into());
        }
        self.config.validate().map_err(|e| e.to_string())
    }
}

/// What the leader experiments measured. Times are simulated seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaderReport {
    /// Size of the crash cluster.
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// Leaders crashed.
    pub crashes: usize,
    /// Per crash: from the crash until every running node follows the new
    /// leader.
    pub failover_s: Quantiles,
    /// Per crash: from the crash until every running node holds the old
    /// leader down (the failure detector's share of the failover).
    pub detection_s: Quantiles,
    /// Per crash: failover minus detection (the election's own share).
    pub failover_after_detection_s: Quantiles,
    /// Whether, before each crash and at the end, every running node showed
    /// the same leader and term.
    pub terms_agree: bool,
    /// Times a node's shown term went down, over every node of every run.
    pub term_regressions: u64,
    /// Partition reports during the crash runs (single crashes should
    /// raise none).
    pub false_partition_reports: u64,
    /// Term announcements broadcast per node per second in the crash run.
    pub announcements_per_node_per_s: f64,
    /// Randomized partition runs (quorum mode).
    pub runs: u32,
    /// Nodes per partition run.
    pub run_nodes: usize,
    /// Total simulated time, over all partition runs, during which two or
    /// more nodes led while holding quorum.
    pub dual_leader_with_quorum_s: f64,
    /// Fraction of the partition runs' time (after warm-up) during which
    /// some node led with quorum.
    pub leader_with_quorum_fraction: f64,
}

fn secs(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// Runs the leader experiments with `strategy` carrying announcements;
/// `progress` gets the number of stages done (crashes, then runs).
pub fn run_leader<S: Strategy + Clone>(
    scenario: &LeaderScenario,
    strategy: &S,
    mut progress: impl FnMut(u64),
) -> Result<LeaderReport, String> {
    scenario.validate()?;
    let n = scenario.nodes;
    let mut cluster = probe_cluster(
        n,
        scenario.seed,
        scenario.config.clone(),
        scenario.link,
        strategy,
        &scenario.leader,
        &PartitionConfig::default(),
    );
    let mut downs = Downs::default();
    cluster.run_until(scenario.warmup, &mut downs);
    let mut crashed_at: BTreeMap<usize, u64> = BTreeMap::new();
    let (mut failover, mut detection, mut election) = (Vec::new(), Vec::new(), Vec::new());
    let mut terms_agree = true;
    let agree = |cluster: &AppSim<LeaderProbe, S, _>, crashed: &BTreeMap<usize, u64>| {
        let shown: Vec<_> = (0..n)
            .filter(|i| !crashed.contains_key(i))
            .map(|i| {
                (
                    cluster.app(i).election.leader(),
                    cluster.app(i).election.term(),
                )
            })
            .collect();
        shown.windows(2).all(|w| w[0] == w[1]) && shown[0].0.is_some()
    };
    for k in 0..scenario.crashes {
        terms_agree &= agree(&cluster, &crashed_at);
        let victim = k; // the lowest running id leads
        let expected = cluster.sim.id(k + 1);
        let victim_id = cluster.sim.id(victim);
        let t0 = cluster.sim.now().as_nanos() as u64;
        cluster.crash(victim);
        crashed_at.insert(victim, t0);
        cluster.run_for(scenario.crash_gap, &mut downs);
        let running: Vec<usize> = (0..n).filter(|i| !crashed_at.contains_key(i)).collect();
        let followed = running.iter().map(|&i| {
            cluster
                .app(i)
                .history
                .iter()
                .find(|s| s.at_nanos >= t0 && s.leader == Some(expected))
                .map(|s| s.at_nanos)
        });
        let all_follow = followed
            .collect::<Option<Vec<u64>>>()
            .map(|v| secs(v.into_iter().max().unwrap_or(t0) - t0));
        let detected = running.iter().map(|&i| {
            downs
                .0
                .iter()
                .find(|&&(at, node, id)| at >= t0 && node == i && id == victim_id)
                .map(|&(at, _, _)| at)
        });
        let all_detect = detected
            .collect::<Option<Vec<u64>>>()
            .map(|v| secs(v.into_iter().max().unwrap_or(t0) - t0));
        failover.push(all_follow);
        detection.push(all_detect);
        election.push(all_follow.zip(all_detect).map(|(f, d)| f - d));
        progress(k as u64 + 1);
    }
    terms_agree &= agree(&cluster, &crashed_at);
    let mut term_regressions: u64 = cluster
        .apps()
        .iter()
        .map(LeaderProbe::term_regressions)
        .sum();
    let false_partition_reports = cluster
        .apps()
        .iter()
        .map(|a| {
            a.partition_events
                .iter()
                .filter(|(_, e)| matches!(e, PartitionEvent::PartitionSuspected { .. }))
                .count() as u64
        })
        .sum();
    let total_s = cluster.sim.now().as_secs_f64();
    let announcements: u64 = cluster
        .apps()
        .iter()
        .map(|a| a.election.announcements_sent())
        .sum();

    let mut dual = 0.0;
    let (mut led, mut observed) = (0.0, 0.0);
    for r in 0..scenario.runs {
        let (d, l, o, regress) = quorum_run(scenario, strategy, scenario.seed + u64::from(r));
        dual += d;
        led += l;
        observed += o;
        term_regressions += regress;
        progress(scenario.crashes as u64 + u64::from(r) + 1);
    }
    Ok(LeaderReport {
        nodes: n,
        seed: scenario.seed,
        crashes: scenario.crashes,
        failover_s: Quantiles::of(&failover),
        detection_s: Quantiles::of(&detection),
        failover_after_detection_s: Quantiles::of(&election),
        terms_agree,
        term_regressions,
        false_partition_reports,
        announcements_per_node_per_s: announcements as f64 / n as f64 / total_s,
        runs: scenario.runs,
        run_nodes: scenario.run_nodes,
        dual_leader_with_quorum_s: dual,
        leader_with_quorum_fraction: if observed > 0.0 { led / observed } else { 0.0 },
    })
}

/// The quorum-mode configuration of the partition runs.
fn quorum_config(base: &LeaderConfig) -> LeaderConfig {
    LeaderConfig {
        quorum_mode: true,
        ..base.clone()
    }
}

/// One randomized partition run in quorum mode: splits into 2 or 3 random
/// groups held 5-40 s, heals held 5-30 s. Returns the seconds with two or
/// more leaders holding quorum, with at least one, the seconds observed,
/// and term regressions.
fn quorum_run<S: Strategy + Clone>(
    scenario: &LeaderScenario,
    strategy: &S,
    seed: u64,
) -> (f64, f64, f64, u64) {
    let n = scenario.run_nodes;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_1ead);
    let mut cluster = probe_cluster(
        n,
        seed,
        Config::lan(n),
        scenario.link,
        strategy,
        &quorum_config(&scenario.leader),
        &PartitionConfig::default(),
    );
    let warmup = scenario.warmup;
    cluster.run_until(warmup, &mut ());
    while cluster.sim.now() < scenario.run_duration {
        let groups: u32 = rng.random_range(2..=3);
        let assignment: Vec<u32> = (0..n).map(|_| rng.random_range(0..groups)).collect();
        cluster.sim.partition(move |i| assignment[i]);
        let hold = Duration::from_millis(rng.random_range(5_000..40_000));
        cluster.run_until(
            (cluster.sim.now() + hold).min(scenario.run_duration),
            &mut (),
        );
        cluster.sim.heal();
        let hold = Duration::from_millis(rng.random_range(5_000..30_000));
        cluster.run_until(
            (cluster.sim.now() + hold).min(scenario.run_duration),
            &mut (),
        );
    }
    let end = cluster.sim.now().as_nanos() as u64;
    // Sweep every node's "leads with quorum" steps in time order.
    let mut steps: Vec<(u64, usize, bool)> = Vec::new();
    for (i, app) in cluster.apps().iter().enumerate() {
        for s in &app.history {
            steps.push((s.at_nanos, i, s.is_leader && s.has_quorum));
        }
    }
    steps.sort_by_key(|&(at, i, _)| (at, i));
    let start = warmup.as_nanos() as u64;
    let mut leading = vec![false; n];
    let (mut dual, mut some) = (0u64, 0u64);
    let mut last = 0u64;
    for (at, i, lead) in steps.into_iter().chain([(end, usize::MAX, false)]) {
        let count = leading.iter().filter(|&&l| l).count();
        let from = last.max(start);
        if at > from {
            if count >= 2 {
                dual += at - from;
            }
            if count >= 1 {
                some += at - from;
            }
        }
        last = at;
        if i < n {
            leading[i] = lead;
        }
    }
    let regress = cluster
        .apps()
        .iter()
        .map(LeaderProbe::term_regressions)
        .sum();
    (
        secs(dual),
        secs(some),
        secs(end.saturating_sub(start)),
        regress,
    )
}
