//! Ready-made membership scenario with the measurements the project reports.

use core::time::Duration;
use std::net::SocketAddr;

use gossip_core::{Config, Event, Stats};
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::address::node_index;
use crate::net::{LinkModel, NetStats, Observer, Simulator};

/// A membership experiment: who starts, what fails, when, for how long.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MembershipScenario {
    /// Cluster size. All nodes start at t=0 with node 0 as their seed.
    pub nodes: usize,
    /// Seed of every random choice in the run.
    pub seed: u64,
    /// Simulated time to run.
    pub duration: Duration,
    /// Number of distinct random non-seed nodes that crash at `crash_at`.
    pub crash: usize,
    /// When the crashes happen.
    pub crash_at: Duration,
    /// Optional partition into two halves (by index): start and heal times.
    pub partition: Option<(Duration, Duration)>,
    /// Number of distinct random non-seed nodes (not among the crashed) whose
    /// inbound processing is delayed by `slow_delay` for the whole run.
    pub slow: usize,
    /// Inbound delay of slow nodes.
    pub slow_delay: Duration,
    /// Node configuration.
    pub config: Config,
    /// Network model (its `loss` field is the loss rate).
    pub link: LinkModel,
}

impl MembershipScenario {
    /// A quiet run of `nodes` nodes for 120 s with LAN defaults.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            seed: 1,
            duration: Duration::from_secs(120),
            crash: 0,
            crash_at: Duration::from_secs(60),
            partition: None,
            slow: 0,
            slow_delay: Duration::from_secs(3),
            config: Config::lan(nodes),
            link: LinkModel::default(),
        }
    }

    /// Checks that the scenario is runnable.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes < 2 {
            return Err("at least 2 nodes are needed".into());
        }
        if self.nodes > 1 << 20 {
            return Err("at most 1048576 nodes fit the simulated address space".into());
        }
        if self.crash + self.slow > self.nodes - 1 {
            return Err("crashed plus slow nodes must leave the seed node".into());
        }
        if !(0.0..1.0).contains(&self.link.loss) {
            return Err("loss must be within [0, 1)".into());
        }
        if let Some((start, heal)) = self.partition {
            if heal <= start {
                return Err("the partition must heal after it starts".into());
            }
        }
        self.config.validate().map_err(|e| e.to_string())
    }
}

/// p50, p99 and maximum of a set of durations, in the unit the field holding
/// them names (seconds unless it says otherwise). `None` where the quantile
/// falls on a case that never completed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    /// Median.
    pub p50: Option<f64>,
    /// 99th percentile (nearest rank).
    pub p99: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl Quantiles {
    /// Quantiles of `values`, where `None` stands for "never" and sorts last.
    pub fn of(values: &[Option<f64>]) -> Self {
        let mut sorted: Vec<f64> = values.iter().map(|v| v.unwrap_or(f64::INFINITY)).collect();
        sorted.sort_by(f64::total_cmp);
        let pick = |q: f64| -> Option<f64> {
            if sorted.is_empty() {
                return None;
            }
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            Some(sorted[rank - 1]).filter(|v| v.is_finite())
        };
        Self {
            p50: pick(0.5),
            p99: pick(0.99),
            max: pick(1.0),
        }
    }
}

/// What a membership run measured. Times are simulated seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MembershipReport {
    /// Cluster size.
    pub nodes: usize,
    /// Seed of the run.
    pub seed: u64,
    /// Simulated duration.
    pub duration_s: f64,
    /// Loss rate of the network.
    pub loss: f64,
    /// Indices of the crashed nodes.
    pub crashed: Vec<usize>,
    /// Indices of the slow nodes.
    pub slow_nodes: Vec<usize>,
    /// Per node: from t=0 until it first lists all N members as alive.
    pub join_convergence_s: Quantiles,
    /// Nodes that never listed all N members alive.
    pub join_unconverged: usize,
    /// Per crashed node: from its crash until every running node marks it
    /// dead. `None` without crashes.
    pub detection_s: Option<Quantiles>,
    /// Per crashed node, seconds after its crash until the first member
    /// suspected it, the first declared it dead, and all running members
    /// saw it dead (`None`: never within the run).
    pub detection_detail: Vec<CrashTimeline>,
    /// Times a healthy node (neither crashed nor slow) became dead in the
    /// view of another healthy node, declarations across an active partition
    /// excepted.
    pub false_positives: u64,
    /// The first few false positives: (simulated second, observer, subject).
    pub false_positive_examples: Vec<(f64, usize, usize)>,
    /// From the heal until every node sees all N alive. `None` without a
    /// partition or if it never happened within the run.
    pub partition_heal_s: Option<f64>,
    /// Whether the partition healed within the run (`None` without one).
    pub partition_healed: Option<bool>,
    /// Frame bytes (UDP payload, no IP/UDP headers) sent per node per second
    /// over the steady window. `None` if the window is shorter than 5 s.
    pub bytes_per_node_per_s: Option<f64>,
    /// Frames sent per node per second over the steady window.
    pub messages_per_node_per_s: Option<f64>,
    /// The steady window: 5 s after every node converged, until the first
    /// crash or partition, or the end.
    pub steady_window_s: (f64, f64),
    /// Network counters for the whole run.
    pub network: NetStats,
    /// Protocol counters summed over the nodes running at the end.
    pub protocol: Stats,
    /// Process CPU time spent simulating.
    pub cpu_s: f64,
    /// Simulated probe periods (nodes x duration / probe interval) per CPU
    /// second, over the whole run (the join storm included).
    pub node_periods_per_cpu_s: f64,
    /// The same over the steady window only (whole simulated seconds inside
    /// it); `None` if the window is shorter than 5 s.
    pub steady_node_periods_per_cpu_s: Option<f64>,
}

/// Simulated time and process CPU time at a window boundary.
type CpuMark = Option<(Duration, Duration)>;

/// How the failure of one crashed node became known.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrashTimeline {
    /// Index of the crashed node.
    pub node: usize,
    /// Until the first suspicion.
    pub first_suspect_s: Option<f64>,
    /// Until the first death declaration.
    pub first_dead_s: Option<f64>,
    /// Until every running member saw it dead.
    pub all_dead_s: Option<f64>,
}

/// Tracks every node's view of every other node from the events.
struct Metrics {
    n: usize,
    /// `view[j * n + i]`: node j considers node i alive or suspect.
    view: Vec<bool>,
    live_count: Vec<usize>,
    crashed: Vec<bool>,
    slow: Vec<bool>,
    converged_at: Vec<Option<f64>>,
    crash_time: Vec<Option<f64>>,
    detected_at: Vec<Option<f64>>,
    first_suspect: Vec<Option<f64>>,
    first_dead: Vec<Option<f64>>,
    false_positives: u64,
    false_positive_examples: Vec<(f64, usize, usize)>,
    partition_active: bool,
    cut: Vec<u32>,
    heal_time: Option<f64>,
    healed_at: Option<f64>,
    window: (f64, f64),
    window_bytes: u64,
    window_frames: u64,
}

impl Metrics {
    fn new(n: usize) -> Self {
        let mut view = vec![false; n * n];
        for j in 0..n {
            view[j * n + j] = true;
        }
        Self {
            n,
            view,
            live_count: vec![1; n],
            crashed: vec![false; n],
            slow: vec![false; n],
            converged_at: vec![None; n],
            crash_time: vec![None; n],
            detected_at: vec![None; n],
            first_suspect: vec![None; n],
            first_dead: vec![None; n],
            false_positives: 0,
            false_positive_examples: Vec::new(),
            partition_active: false,
            cut: vec![0; n],
            heal_time: None,
            healed_at: None,
            window: (f64::INFINITY, f64::INFINITY),
            window_bytes: 0,
            window_frames: 0,
        }
    }

    fn healthy(&self, i: usize) -> bool {
        !self.crashed[i] && !self.slow[i]
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.n).filter(|&j| !self.crashed[j])
    }

    fn set_view(&mut self, at: f64, observer: usize, subject: usize, live: bool) {
        let cell = &mut self.view[observer * self.n + subject];
        if *cell == live {
            return;
        }
        *cell = live;
        if live {
            self.live_count[observer] += 1;
            if self.live_count[observer] == self.n && self.converged_at[observer].is_none() {
                self.converged_at[observer] = Some(at);
            }
            // Healed once every running node sees every running node (a
            // crashed one is rightly missing).
            if self.heal_time.is_some() && self.healed_at.is_none() {
                let expected = self.running().count();
                if self.live_count[observer] == expected
                    && self.running().all(|j| self.live_count[j] == expected)
                {
                    self.healed_at = Some(at);
                }
            }
        } else {
            self.live_count[observer] -= 1;
            if let Some(crashed_at) = self.crash_time[subject] {
                if self.detected_at[subject].is_none()
                    && self.running().all(|j| !self.view[j * self.n + subject])
                {
                    self.detected_at[subject] = Some(at - crashed_at);
                }
            }
        }
    }

    fn crash(&mut self, at: f64, index: usize) {
        self.crashed[index] = true;
        self.crash_time[index] = Some(at);
    }
}

impl Observer for Metrics {
    fn on_event(&mut self, at: Duration, node: usize, event: &Event) {
        let at = at.as_secs_f64();
        let (member, live, down) = match event {
            Event::MemberUp(m) | Event::MemberUpdated(m) | Event::MemberSuspect(m) => {
                (m, true, false)
            }
            Event::MemberDown(m) => (m, false, true),
            Event::MemberLeft(m) => (m, false, false),
            _ => return,
        };
        let Some(subject) = node_index(member.id.addr()).filter(|&i| i < self.n) else {
            return;
        };
        if let Some(crashed_at) = self.crash_time[subject] {
            let since = at - crashed_at;
            match event {
                Event::MemberSuspect(_) => {
                    self.first_suspect[subject].get_or_insert(since);
                }
                Event::MemberDown(_) => {
                    self.first_dead[subject].get_or_insert(since);
                }
                _ => {}
            }
        }
        if down
            && self.healthy(node)
            && self.healthy(subject)
            && !(self.partition_active && self.cut[node] != self.cut[subject])
        {
            self.false_positives += 1;
            if self.false_positive_examples.len() < 20 {
                self.false_positive_examples.push((at, node, subject));
            }
        }
        self.set_view(at, node, subject, live);
    }

    fn on_transmit(&mut self, at: Duration, _from: usize, _to: SocketAddr, bytes: &[u8]) {
        let at = at.as_secs_f64();
        if at >= self.window.0 && at < self.window.1 {
            self.window_bytes += bytes.len() as u64;
            self.window_frames += 1;
        }
    }
}

/// Runs `scenario`, calling `progress` with the simulated time reached after
/// every simulated second.
pub fn run_membership(
    scenario: &MembershipScenario,
    mut progress: impl FnMut(Duration),
) -> Result<MembershipReport, String> {
    scenario.validate()?;
    let cpu_start = cpu_time::ProcessTime::now();
    let n = scenario.nodes;
    let mut sim = Simulator::new(n, scenario.seed, scenario.config.clone(), scenario.link);
    let mut metrics = Metrics::new(n);

    // Faulty nodes: distinct, never the seed node 0.
    let mut chooser = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x5eed_c4a5);
    let picked: Vec<usize> = sample(&mut chooser, n - 1, scenario.crash + scenario.slow)
        .into_iter()
        .map(|i| i + 1)
        .collect();
    let (crashed, slow_nodes) = picked.split_at(scenario.crash);
    let (crashed, slow_nodes) = (crashed.to_vec(), slow_nodes.to_vec());
    for &s in &slow_nodes {
        metrics.slow[s] = true;
        sim.set_inbound_delay(s, scenario.slow_delay);
    }

    let disturbance = [
        (scenario.crash > 0).then_some(scenario.crash_at),
        scenario.partition.map(|p| p.0),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(scenario.duration)
    .min(scenario.duration);

    sim.start_all();
    // Events scheduled at t = 0 happen before the first step.
    apply_events(Duration::ZERO, scenario, &crashed, &mut sim, &mut metrics);
    let mut milestones: Vec<Duration> = vec![scenario.duration];
    if scenario.crash > 0 {
        milestones.push(scenario.crash_at);
    }
    if let Some((start, heal)) = scenario.partition {
        milestones.push(start);
        milestones.push(heal);
    }
    let mut t = Duration::ZERO;
    let mut cpu_at_window: (CpuMark, CpuMark) = (None, None);
    while t < scenario.duration {
        let next_second = t + Duration::from_secs(1);
        let step_to = milestones
            .iter()
            .copied()
            .filter(|&m| m > t)
            .min()
            .unwrap_or(scenario.duration)
            .min(next_second);
        // Open the steady window once every node has converged.
        if metrics.window.0.is_infinite() && metrics.converged_at.iter().all(Option::is_some) {
            let start = metrics
                .converged_at
                .iter()
                .flatten()
                .copied()
                .fold(0.0, f64::max)
                + 5.0;
            metrics.window = (start, disturbance.as_secs_f64());
        }
        sim.run_until(step_to, &mut metrics);
        t = step_to;
        let (window_start, window_end) = metrics.window;
        if cpu_at_window.0.is_none() && t.as_secs_f64() >= window_start.ceil() {
            cpu_at_window.0 = Some((t, cpu_start.elapsed()));
        }
        if cpu_at_window.1.is_none() && t.as_secs_f64() >= window_end.floor() {
            cpu_at_window.1 = Some((t, cpu_start.elapsed()));
        }
        apply_events(t, scenario, &crashed, &mut sim, &mut metrics);
        progress(t);
    }
    let cpu_s = cpu_start.elapsed().as_secs_f64();
    let mut protocol = Stats::default();
    for node in (0..n).filter_map(|i| sim.node(i)) {
        protocol.accumulate(&node.stats());
    }

    let window = if metrics.window.0.is_finite() {
        metrics.window
    } else {
        (
            scenario.duration.as_secs_f64(),
            scenario.duration.as_secs_f64(),
        )
    };
    let window_len = window.1 - window.0;
    let (bytes_rate, msg_rate) = if window_len >= 5.0 {
        (
            Some(metrics.window_bytes as f64 / n as f64 / window_len),
            Some(metrics.window_frames as f64 / n as f64 / window_len),
        )
    } else {
        (None, None)
    };
    let periods =
        n as f64 * scenario.duration.as_secs_f64() / scenario.config.probe_interval.as_secs_f64();
    let steady_node_periods_per_cpu_s = match cpu_at_window {
        (Some((t0, c0)), Some((t1, c1))) if t1 >= t0 + Duration::from_secs(5) => Some(
            n as f64 * (t1 - t0).as_secs_f64()
                / scenario.config.probe_interval.as_secs_f64()
                / (c1 - c0).as_secs_f64().max(1e-9),
        ),
        _ => None,
    };
    Ok(MembershipReport {
        steady_node_periods_per_cpu_s,
        nodes: n,
        seed: scenario.seed,
        duration_s: scenario.duration.as_secs_f64(),
        loss: scenario.link.loss,
        join_convergence_s: Quantiles::of(&metrics.converged_at),
        join_unconverged: metrics.converged_at.iter().filter(|c| c.is_none()).count(),
        detection_s: (!crashed.is_empty()).then(|| {
            Quantiles::of(
                &crashed
                    .iter()
                    .map(|&c| metrics.detected_at[c])
                    .collect::<Vec<_>>(),
            )
        }),
        detection_detail: crashed
            .iter()
            .map(|&c| CrashTimeline {
                node: c,
                first_suspect_s: metrics.first_suspect[c],
                first_dead_s: metrics.first_dead[c],
                all_dead_s: metrics.detected_at[c],
            })
            .collect(),
        false_positives: metrics.false_positives,
        false_positive_examples: metrics.false_positive_examples.clone(),
        partition_heal_s: match (metrics.heal_time, metrics.healed_at) {
            (Some(heal), Some(done)) => Some(done - heal),
            _ => None,
        },
        partition_healed: metrics.heal_time.map(|_| metrics.healed_at.is_some()),
        bytes_per_node_per_s: bytes_rate,
        messages_per_node_per_s: msg_rate,
        steady_window_s: window,
        network: sim.stats().clone(),
        protocol,
        crashed,
        slow_nodes,
        cpu_s,
        node_periods_per_cpu_s: periods / cpu_s.max(1e-9),
    })
}

/// Applies the crashes, partition and heal scheduled at exactly `t`.
fn apply_events(
    t: Duration,
    scenario: &MembershipScenario,
    crashed: &[usize],
    sim: &mut Simulator,
    metrics: &mut Metrics,
) {
    let n = scenario.nodes;
    let secs = t.as_secs_f64();
    if scenario.crash > 0 && t == scenario.crash_at {
        for &c in crashed {
            sim.crash(c);
            metrics.crash(secs, c);
        }
    }
    if let Some((start, heal)) = scenario.partition {
        let half = n / 2;
        if t == start {
            sim.partition(|i| u32::from(i >= half));
            metrics.partition_active = true;
            metrics.cut = (0..n).map(|i| u32::from(i >= half)).collect();
        }
        if t == heal {
            sim.heal();
            metrics.partition_active = false;
            metrics.heal_time = Some(secs);
            let expected = metrics.running().count();
            if metrics.running().all(|j| metrics.live_count[j] == expected) {
                metrics.healed_at = Some(secs);
            }
        }
    }
}
