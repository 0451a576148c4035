//! Ready-made membership scenario with the measurements the project reports.

use core::time::Duration;
use std::collections::BTreeMap;
use std::net::SocketAddr;

use gossip_core::{Config, Event, Liveness, MessageId, NoStrategy, Stats, Strategy};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::address::{node_addr, node_index};
use crate::adversary::{Adversary, AdversaryKind, AdversarySpec, ATTACKER_ADDR, FORGED_PAYLOAD};
use crate::net::{LinkModel, NetStats, Observer, OutsiderStats, Simulator};

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
    /// An outsider attacking the cluster, if any (see
    /// [`AdversaryKind`]). Without one the run and its report are exactly
    /// those of a scenario without the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adversary: Option<AdversarySpec>,
    /// With crashes, a random survivor broadcasts once a second from the
    /// crash on (until 10 s before the end), and the report gives the
    /// fraction of survivors each broadcast reached
    /// ([`MembershipReport::survivor_reach`]). Needs a strategy (see
    /// [`run_membership_with`]).
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub survivor_broadcasts: bool,
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
            adversary: None,
            survivor_broadcasts: false,
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
        if let Some(adversary) = &self.adversary {
            if self.nodes < 3 {
                return Err("an adversary needs at least 3 nodes to impersonate".into());
            }
            adversary.validate()?;
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
    /// The cold start's cost: all frame bytes sent in the first minute,
    /// `[0 s, 60 s)`, divided by the nodes and by 60 (every node starts at
    /// t=0, so this is the join storm plus whatever idle traffic follows it).
    /// `None` if the run is shorter than a minute.
    #[serde(default)]
    pub first_minute_bytes_per_node_per_s: Option<f64>,
    /// The idle figure after the first minute: frame bytes sent per node
    /// per second from 60 s until the first crash or partition (or the
    /// end). Unlike `bytes_per_node_per_s` it does not wait for the
    /// cluster to converge, so a join that drags on past the first minute
    /// shows here. `None` if that window is shorter than 5 s.
    #[serde(default)]
    pub after_first_minute_bytes_per_node_per_s: Option<f64>,
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
    /// With [`MembershipScenario::survivor_broadcasts`]: over the
    /// broadcasts made by survivors from the crash on, the mean fraction of
    /// the other survivors that delivered each by the end of the run
    /// (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survivor_reach: Option<f64>,
    /// The same, the broadcast that reached the fewest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survivor_reach_min: Option<f64>,
    /// How many broadcasts those figures cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survivor_broadcasts: Option<usize>,
    /// What the attack did, when the scenario had an adversary (its keys
    /// sit at the top level of the JSON report; absent otherwise).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub attack: Option<AttackReport>,
}

/// What an attack achieved. Healthy members are those that never crash,
/// are never slow, in a scenario without a partition; proven addresses are
/// those of the cluster's members (crashed ones included); everything else
/// (the attacker, the victim, fake members) is unproven.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackReport {
    /// The kind of attack.
    pub adversary: AdversaryKind,
    /// Frames per second it sent.
    pub adversary_rate: f64,
    /// When it started and stopped, in simulated seconds.
    pub adversary_window_s: (f64, f64),
    /// Traffic between the attacker and the nodes.
    pub adversary_traffic: OutsiderStats,
    /// Declarations, by any node, that a healthy member is dead or left:
    /// every `MemberDown` and `MemberLeft` event about one, summed over the
    /// run.
    pub healthy_members_down: u64,
    /// Longest time any node held a healthy member dead or left (a stretch
    /// still open at the end, or when the observer crashed, counts until
    /// then). 0 if none was ever held down.
    pub healthy_down_max_s: f64,
    /// The longest suspicion timeout a node of this config uses at this
    /// cluster size (Lifeguard's maximum, before any confirmation): the
    /// bound `healthy_down_max_s` is held to.
    pub suspicion_timeout_s: f64,
    /// Largest number of (node, never-existing member) pairs where a running
    /// node held the member alive or suspect, sampled at least once per
    /// simulated second.
    pub fake_members_alive_max: u64,
    /// Bytes nodes sent to unproven addresses per byte they received from
    /// unproven addresses; `None` if they received none.
    pub reflection_ratio: Option<f64>,
    /// Bytes nodes sent to unproven addresses.
    pub unproven_bytes_sent: u64,
    /// Bytes nodes received from unproven addresses (the attacker's frames
    /// that reached a running node).
    pub unproven_bytes_received: u64,
    /// Longest member table (`members()`, the node itself included) of any
    /// running node, sampled like `fake_members_alive_max`.
    pub max_table_len: usize,
    /// The configured bound of that table (`max_members`).
    pub max_members: usize,
    /// Real broadcasts made by healthy members during the attack (every 2 s
    /// until 10 s before the end of the attack or of the run;
    /// `rumor-forge` only).
    pub broadcasts: Option<u64>,
    /// Of those, broadcasts that some node running at the end never
    /// delivered with the origin's payload (`rumor-forge` only).
    pub broadcasts_undelivered: Option<u64>,
    /// Deliveries of forged rumors, summed over nodes (`rumor-forge` only).
    pub forged_deliveries: Option<u64>,
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
    /// Bytes sent in `[0, 60 s)`.
    first_minute_bytes: u64,
    /// Bytes sent from 60 s until `after_minute_end` (exclusive).
    after_minute_bytes: u64,
    after_minute_end: f64,
    attack: Option<AttackMetrics>,
    /// The survivors' broadcasts after the crash (with
    /// [`MembershipScenario::survivor_broadcasts`]).
    reach: Option<Followed>,
}

/// One broadcast the run made itself, followed to every node.
struct Broadcast {
    origin: usize,
    payload: Vec<u8>,
    delivered: Vec<bool>,
}

/// The broadcasts a run makes itself, each with who delivered it.
#[derive(Default)]
struct Followed {
    broadcasts: Vec<Broadcast>,
    /// Index in `broadcasts` by message id.
    ids: BTreeMap<MessageId, usize>,
}

impl Followed {
    /// Makes a random node of `candidates` broadcast a payload of its own
    /// (`"{label} {k} from node {origin}"`, `k` counting the broadcasts
    /// followed so far) and follows it.
    fn broadcast<S: Strategy + Clone>(
        sim: &mut Simulator<S>,
        metrics: &mut Metrics,
        chooser: &mut ChaCha8Rng,
        candidates: &[usize],
        label: &str,
        followed: impl Fn(&mut Metrics) -> Option<&mut Followed>,
    ) -> Result<(), String> {
        if candidates.is_empty() {
            return Ok(());
        }
        let origin = candidates[chooser.random_range(0..candidates.len())];
        let k = followed(metrics).map_or(0, |f| f.broadcasts.len());
        let payload = format!("{label} {k} from node {origin}").into_bytes();
        let id = sim
            .broadcast(origin, &payload, metrics)
            .ok_or_else(|| format!("node {origin} refused a broadcast (no strategy?)"))?;
        if let Some(f) = followed(metrics) {
            let mut delivered = vec![false; sim.len()];
            delivered[origin] = true;
            f.ids.insert(id, f.broadcasts.len());
            f.broadcasts.push(Broadcast {
                origin,
                payload,
                delivered,
            });
        }
        Ok(())
    }

    /// `node` delivered `payload` as `id`: it counts if that is a followed
    /// broadcast's own payload.
    fn on_delivered(&mut self, node: usize, id: &MessageId, payload: &[u8]) {
        if let Some(&k) = self.ids.get(id) {
            let b = &mut self.broadcasts[k];
            if b.payload == payload {
                b.delivered[node] = true;
            }
        }
    }

    /// Per broadcast, the fraction of the survivors other than its origin
    /// that delivered it.
    fn reach(&self, crashed: &[bool]) -> Vec<f64> {
        let others = crashed.iter().filter(|&&c| !c).count().saturating_sub(1);
        self.broadcasts
            .iter()
            .map(|b| {
                let reached = b
                    .delivered
                    .iter()
                    .zip(crashed)
                    .filter(|&(&got, &c)| got && !c)
                    .count()
                    .saturating_sub(1);
                if others == 0 {
                    1.0
                } else {
                    reached as f64 / others as f64
                }
            })
            .collect()
    }
}

/// What an attack run measures beyond the usual.
struct AttackMetrics {
    n: usize,
    healthy: Vec<bool>,
    /// `down_since[j * n + i]`: since when node j holds healthy node i dead
    /// or left.
    down_since: Vec<Option<f64>>,
    healthy_down: u64,
    healthy_down_max: f64,
    unproven_sent: u64,
    fake_alive_max: u64,
    max_table_len: usize,
    /// Healthy members' real broadcasts during the attack.
    followed: Followed,
    forged_deliveries: u64,
}

impl AttackMetrics {
    fn new(n: usize, healthy: Vec<bool>) -> Self {
        Self {
            n,
            healthy,
            down_since: vec![None; n * n],
            healthy_down: 0,
            healthy_down_max: 0.0,
            unproven_sent: 0,
            fake_alive_max: 0,
            max_table_len: 0,
            followed: Followed::default(),
            forged_deliveries: 0,
        }
    }

    fn on_event(&mut self, at: f64, node: usize, event: &Event) {
        if let Event::Delivered { id, payload } = event {
            if payload.as_slice() == FORGED_PAYLOAD {
                self.forged_deliveries += 1;
            }
            self.followed.on_delivered(node, id, payload);
            return;
        }
        let (member, down) = match event {
            Event::MemberUp(m) | Event::MemberUpdated(m) | Event::MemberSuspect(m) => (m, false),
            Event::MemberDown(m) | Event::MemberLeft(m) => (m, true),
            _ => return,
        };
        let Some(subject) = node_index(member.id.addr()).filter(|&i| i < self.n) else {
            return;
        };
        if !self.healthy[subject] {
            return;
        }
        let cell = node * self.n + subject;
        if down {
            self.healthy_down += 1;
            self.down_since[cell].get_or_insert(at);
        } else if let Some(since) = self.down_since[cell].take() {
            self.healthy_down_max = self.healthy_down_max.max(at - since);
        }
    }

    /// Ends every stretch node `observer` (or, with `None`, every node)
    /// holds open at `at`.
    fn close(&mut self, at: f64, observer: Option<usize>) {
        let range = match observer {
            Some(j) => j * self.n..(j + 1) * self.n,
            None => 0..self.n * self.n,
        };
        for cell in &mut self.down_since[range] {
            if let Some(since) = cell.take() {
                self.healthy_down_max = self.healthy_down_max.max(at - since);
            }
        }
    }

    /// Samples every running node's table.
    fn sample<S: Strategy + Clone>(&mut self, sim: &Simulator<S>) {
        let mut fakes = 0u64;
        for node in (0..self.n).filter_map(|i| sim.node(i)) {
            let mut len = 0;
            for member in node.members() {
                len += 1;
                if node_index(member.id.addr()).is_none_or(|i| i >= self.n)
                    && matches!(member.liveness, Liveness::Alive | Liveness::Suspect)
                {
                    fakes += 1;
                }
            }
            self.max_table_len = self.max_table_len.max(len);
        }
        self.fake_alive_max = self.fake_alive_max.max(fakes);
    }
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
            first_minute_bytes: 0,
            after_minute_bytes: 0,
            after_minute_end: f64::INFINITY,
            attack: None,
            reach: None,
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
        // Every running node already held it down (a forged Left or Dead
        // can do that): no later event will complete the detection, which
        // is complete from the start.
        if self.running().all(|j| !self.view[j * self.n + index]) {
            self.detected_at[index] = Some(0.0);
        }
    }
}

impl Observer for Metrics {
    fn on_event(&mut self, at: Duration, node: usize, event: &Event) {
        let at = at.as_secs_f64();
        if let Some(attack) = self.attack.as_mut() {
            attack.on_event(at, node, event);
        }
        if let (Some(reach), Event::Delivered { id, payload }) = (self.reach.as_mut(), event) {
            reach.on_delivered(node, id, payload);
        }
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

    fn on_transmit(&mut self, at: Duration, _from: usize, to: SocketAddr, bytes: &[u8]) {
        if let Some(attack) = self.attack.as_mut() {
            if node_index(to).is_none_or(|i| i >= self.n) {
                attack.unproven_sent += bytes.len() as u64;
            }
        }
        let at = at.as_secs_f64();
        if at < FIRST_MINUTE_S {
            self.first_minute_bytes += bytes.len() as u64;
        } else if at < self.after_minute_end {
            self.after_minute_bytes += bytes.len() as u64;
        }
        if at >= self.window.0 && at < self.window.1 {
            self.window_bytes += bytes.len() as u64;
            self.window_frames += 1;
        }
    }
}

/// Runs `scenario` on membership-only nodes, calling `progress` with the
/// simulated time reached after every simulated second.
///
/// # Errors
/// If the scenario does not validate, or has a
/// [`RumorForge`](AdversaryKind::RumorForge) adversary (whose real
/// broadcasts need a strategy: see [`run_membership_with`]).
pub fn run_membership(
    scenario: &MembershipScenario,
    progress: impl FnMut(Duration),
) -> Result<MembershipReport, String> {
    run_membership_with(scenario, NoStrategy, progress)
}

/// Length of the cold start's window, in seconds.
const FIRST_MINUTE_S: f64 = 60.0;

/// Broadcasts of a [`RumorForge`](AdversaryKind::RumorForge) run: one every
/// this often.
const BROADCAST_EVERY: Duration = Duration::from_secs(2);
/// ... and none this close to the end, so each has time to spread.
const BROADCAST_TAIL: Duration = Duration::from_secs(10);

/// Runs `scenario` with every node disseminating with a clone of
/// `prototype`, calling `progress` with the simulated time reached after
/// every simulated second.
///
/// # Errors
/// If the scenario does not validate, or a node refuses a broadcast that a
/// [`RumorForge`](AdversaryKind::RumorForge) run needs (as with
/// [`NoStrategy`]).
pub fn run_membership_with<S: Strategy + Clone>(
    scenario: &MembershipScenario,
    prototype: S,
    mut progress: impl FnMut(Duration),
) -> Result<MembershipReport, String> {
    scenario.validate()?;
    let cpu_start = cpu_time::ProcessTime::now();
    let n = scenario.nodes;
    let mut sim = Simulator::with_strategy(
        n,
        scenario.seed,
        scenario.config.clone(),
        scenario.link,
        prototype,
    );
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
    let mut attack = scenario.adversary.as_ref().map(|spec| {
        let healthy: Vec<bool> = (0..n)
            .map(|i| {
                scenario.partition.is_none() && !crashed.contains(&i) && !slow_nodes.contains(&i)
            })
            .collect();
        metrics.attack = Some(AttackMetrics::new(n, healthy));
        sim.add_outsider(ATTACKER_ADDR);
        AttackRun::new(spec.clone(), scenario)
    });

    let disturbance = [
        (scenario.crash > 0).then_some(scenario.crash_at),
        scenario.partition.map(|p| p.0),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(scenario.duration)
    .min(scenario.duration);

    metrics.after_minute_end = disturbance.as_secs_f64();
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
    let reach_end = scenario.duration.saturating_sub(BROADCAST_TAIL);
    let mut next_reach = (scenario.survivor_broadcasts && scenario.crash > 0)
        .then_some(scenario.crash_at)
        .filter(|&at| at <= reach_end);
    if next_reach.is_some() {
        metrics.reach = Some(Followed::default());
    }
    let mut reach_chooser = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x5e4c_a11e);
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
        if let Some(attack) = attack.as_mut() {
            attack.run_until(step_to, &mut sim, &mut metrics)?;
        }
        sim.run_until(step_to, &mut metrics);
        t = step_to;
        if let Some(attack) = metrics.attack.as_mut() {
            attack.sample(&sim);
        }
        let (window_start, window_end) = metrics.window;
        if cpu_at_window.0.is_none() && t.as_secs_f64() >= window_start.ceil() {
            cpu_at_window.0 = Some((t, cpu_start.elapsed()));
        }
        if cpu_at_window.1.is_none() && t.as_secs_f64() >= window_end.floor() {
            cpu_at_window.1 = Some((t, cpu_start.elapsed()));
        }
        apply_events(t, scenario, &crashed, &mut sim, &mut metrics);
        if let Some(at) = next_reach.filter(|&at| at <= t) {
            survivor_broadcast(&mut sim, &mut metrics, &mut reach_chooser)?;
            next_reach = Some(at + Duration::from_secs(1)).filter(|&next| next <= reach_end);
        }
        progress(t);
    }
    let cpu_s = cpu_start.elapsed().as_secs_f64();
    let attack_report = attack.map(|attack| {
        let mut m = metrics.attack.take().expect("attack metrics");
        m.close(scenario.duration.as_secs_f64(), None);
        attack.report(m, scenario, &sim)
    });
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
    let first_minute = (scenario.duration.as_secs_f64() >= FIRST_MINUTE_S)
        .then(|| metrics.first_minute_bytes as f64 / n as f64 / FIRST_MINUTE_S);
    let after_minute_len = metrics.after_minute_end - FIRST_MINUTE_S;
    let after_first_minute = (after_minute_len >= 5.0)
        .then(|| metrics.after_minute_bytes as f64 / n as f64 / after_minute_len);
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
    let reach = metrics
        .reach
        .as_ref()
        .map(|r| r.reach(&metrics.crashed))
        .filter(|reach| !reach.is_empty());
    Ok(MembershipReport {
        survivor_reach: reach
            .as_ref()
            .map(|r| r.iter().sum::<f64>() / r.len() as f64),
        survivor_reach_min: reach
            .as_ref()
            .map(|r| r.iter().copied().fold(1.0, f64::min)),
        survivor_broadcasts: reach.as_ref().map(Vec::len),
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
        first_minute_bytes_per_node_per_s: first_minute,
        after_first_minute_bytes_per_node_per_s: after_first_minute,
        steady_window_s: window,
        network: sim.stats().clone(),
        protocol,
        crashed,
        slow_nodes,
        cpu_s,
        node_periods_per_cpu_s: periods / cpu_s.max(1e-9),
        attack: attack_report,
    })
}

/// A random running node broadcasts a payload of its own, followed in
/// `metrics.reach`.
fn survivor_broadcast<S: Strategy + Clone>(
    sim: &mut Simulator<S>,
    metrics: &mut Metrics,
    chooser: &mut ChaCha8Rng,
) -> Result<(), String> {
    let running: Vec<usize> = (0..sim.len())
        .filter(|&i| !metrics.crashed[i] && sim.node(i).is_some())
        .collect();
    Followed::broadcast(sim, metrics, chooser, &running, "survivor broadcast", |m| {
        m.reach.as_mut()
    })
}

/// The attacker and the real broadcasts of a run with an adversary.
struct AttackRun {
    spec: AdversarySpec,
    adversary: Adversary,
    /// Index of the next frame.
    frame: u64,
    /// Last instant a frame may be sent (exclusive).
    end: Duration,
    /// When the next real broadcast is due (`rumor-forge` only).
    next_broadcast: Option<Duration>,
    broadcast_end: Duration,
    chooser: ChaCha8Rng,
}

impl AttackRun {
    fn new(spec: AdversarySpec, scenario: &MembershipScenario) -> Self {
        let config = scenario.config.clone();
        let end = spec.stop.min(scenario.duration);
        let broadcast_end = end.min(scenario.duration.saturating_sub(BROADCAST_TAIL));
        let next_broadcast = (spec.kind == AdversaryKind::RumorForge && spec.start < broadcast_end)
            .then_some(spec.start);
        Self {
            adversary: Adversary::new(
                spec.kind,
                scenario.nodes,
                config,
                node_addr,
                scenario.seed ^ 0xad5e_5a41,
            ),
            spec,
            frame: 0,
            end,
            next_broadcast,
            broadcast_end,
            chooser: ChaCha8Rng::seed_from_u64(scenario.seed ^ 0xb40a_dca5),
        }
    }

    /// Sends every frame and makes every broadcast due up to `until`,
    /// running the simulation to each.
    fn run_until<S: Strategy + Clone>(
        &mut self,
        until: Duration,
        sim: &mut Simulator<S>,
        metrics: &mut Metrics,
    ) -> Result<(), String> {
        loop {
            let frame_at = Some(self.spec.frame_time(self.frame)).filter(|&at| at < self.end);
            let next = match (frame_at, self.next_broadcast) {
                (Some(f), Some(b)) => f.min(b),
                (f, b) => match f.or(b) {
                    Some(at) => at,
                    None => return Ok(()),
                },
            };
            if next > until {
                return Ok(());
            }
            sim.run_until(next, metrics);
            if self.next_broadcast == Some(next) {
                self.broadcast(sim, metrics)?;
                let after = next + BROADCAST_EVERY;
                self.next_broadcast = (after < self.broadcast_end).then_some(after);
            }
            if frame_at == Some(next) {
                for frame in sim.take_outsider_frames() {
                    self.adversary.read(&frame);
                }
                let (to, bytes) = self.adversary.next_frame(|i| {
                    sim.node(i)
                        .and_then(|node| node.members().next())
                        .map(|own| (own.generation, own.incarnation))
                });
                sim.send_as_outsider(ATTACKER_ADDR, to, bytes);
                self.frame += 1;
            }
        }
    }

    /// A random healthy member broadcasts a payload of its own.
    fn broadcast<S: Strategy + Clone>(
        &mut self,
        sim: &mut Simulator<S>,
        metrics: &mut Metrics,
    ) -> Result<(), String> {
        let Some(attack) = metrics.attack.as_ref() else {
            return Ok(());
        };
        let healthy: Vec<usize> = (0..sim.len())
            .filter(|&i| attack.healthy[i] && sim.node(i).is_some())
            .collect();
        Followed::broadcast(
            sim,
            metrics,
            &mut self.chooser,
            &healthy,
            "real broadcast",
            |m| m.attack.as_mut().map(|a| &mut a.followed),
        )
    }

    fn report<S: Strategy + Clone>(
        self,
        m: AttackMetrics,
        scenario: &MembershipScenario,
        sim: &Simulator<S>,
    ) -> AttackReport {
        let traffic = sim.outsider_stats().clone();
        let received = traffic.bytes_delivered;
        let config = &scenario.config;
        // Lifeguard's bounds as the core computes them: the minimum is
        // probe_interval * suspicion_min_mult * max(2, log10(n)), the
        // maximum suspicion_max_mult times that.
        let scale = (scenario.nodes.max(1) as f64).log10().max(2.0);
        let suspicion = config.probe_interval.as_secs_f64()
            * config.suspicion_min_mult
            * scale
            * config.suspicion_max_mult;
        let rumors = self.spec.kind == AdversaryKind::RumorForge;
        let undelivered = m
            .followed
            .broadcasts
            .iter()
            .filter(|b| {
                debug_assert!(b.delivered[b.origin]);
                (0..sim.len()).any(|i| sim.node(i).is_some() && !b.delivered[i])
            })
            .count() as u64;
        AttackReport {
            adversary: self.spec.kind,
            adversary_rate: self.spec.rate,
            adversary_window_s: (self.spec.start.as_secs_f64(), self.end.as_secs_f64()),
            adversary_traffic: traffic,
            healthy_members_down: m.healthy_down,
            healthy_down_max_s: m.healthy_down_max,
            suspicion_timeout_s: suspicion,
            fake_members_alive_max: m.fake_alive_max,
            reflection_ratio: (received > 0).then(|| m.unproven_sent as f64 / received as f64),
            unproven_bytes_sent: m.unproven_sent,
            unproven_bytes_received: received,
            max_table_len: m.max_table_len,
            max_members: config.max_members.get(),
            broadcasts: rumors.then_some(m.followed.broadcasts.len() as u64),
            broadcasts_undelivered: rumors.then_some(undelivered),
            forged_deliveries: rumors.then_some(m.forged_deliveries),
        }
    }
}

/// Applies the crashes, partition and heal scheduled at exactly `t`.
fn apply_events<S: Strategy + Clone>(
    t: Duration,
    scenario: &MembershipScenario,
    crashed: &[usize],
    sim: &mut Simulator<S>,
    metrics: &mut Metrics,
) {
    let n = scenario.nodes;
    let secs = t.as_secs_f64();
    if scenario.crash > 0 && t == scenario.crash_at {
        for &c in crashed {
            sim.crash(c);
            metrics.crash(secs, c);
            if let Some(attack) = metrics.attack.as_mut() {
                attack.close(secs, Some(c));
            }
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
