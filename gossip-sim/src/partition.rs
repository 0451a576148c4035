//! The partition figure behind `gossip-node sim partition`: a cluster
//! split in two halves, then healed, with every node's partition watch.

use core::time::Duration;

use gossip_apps::{LeaderConfig, PartitionConfig, PartitionEvent};
use gossip_core::{Config, Strategy};
use serde::{Deserialize, Serialize};

use crate::leader::probe_cluster;
use crate::net::LinkModel;
use crate::scenario::Quantiles;

/// A split into two halves by index (`i < nodes/2`), and its heal.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionScenario {
    /// Cluster size.
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// The nodes' configuration (default `Config::lan(nodes)`).
    pub config: Config,
    /// The network.
    pub link: LinkModel,
    /// The partition watch's configuration.
    pub partition: PartitionConfig,
    /// Leader election's configuration (default: quorum mode).
    pub leader: LeaderConfig,
    /// When the split starts.
    pub split_at: Duration,
    /// When the network heals.
    pub heal_at: Duration,
    /// Simulated time to run.
    pub duration: Duration,
}

impl PartitionScenario {
    /// `nodes` nodes split at 30 s, healed at 60 s, run for 90 s.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            seed: 1,
            config: Config::lan(nodes),
            link: LinkModel::default(),
            partition: PartitionConfig::default(),
            leader: LeaderConfig {
                quorum_mode: true,
                ..LeaderConfig::default()
            },
            split_at: Duration::from_secs(30),
            heal_at: Duration::from_secs(60),
            duration: Duration::from_secs(90),
        }
    }

    /// Checks that the scenario is runnable.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes < 4 {
            return Err("a split needs at least 4 nodes".into());
        }
        if !(self.split_at < self.heal_at && self.heal_at < self.duration) {
            return Err("need split < heal < duration".into());
        }
        if !(0.0..1.0).contains(&self.link.loss) {
            return Err("loss must be within [0, 1)".into());
        }
        self.config.validate().map_err(|e| e.to_string())
    }
}

/// What the partition run measured. Times are simulated seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartitionReport {
    /// Cluster size.
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// When the split started.
    pub split_at_s: f64,
    /// When the network healed.
    pub heal_at_s: f64,
    /// Per node: from the split to its `PartitionSuspected` (`None`:
    /// never, counted as infinite).
    pub reported_s: Quantiles,
    /// Nodes of the first half that reported the split.
    pub reported_side_a: usize,
    /// Nodes of the second half that reported the split.
    pub reported_side_b: usize,
    /// Lost-set sizes the reports named (p50, p99, max, as counts).
    pub lost_reported: Quantiles,
    /// Per node: from the heal to its `PartitionHealed`.
    pub healed_s: Quantiles,
    /// Nodes that reported the heal.
    pub healed_nodes: usize,
    /// Partition reports before the split (should be 0).
    pub false_reports: u64,
    /// Nodes that took leadership with quorum during the split (a 50/50
    /// split in quorum mode should have none; the leader from before
    /// keeps it until its view shows the loss, and is not counted).
    pub leaders_with_quorum_during_split: usize,
    /// Nodes that showed the same leader as everyone else once healed.
    pub agree_after_heal: usize,
}

/// Runs the split with `strategy` carrying leader announcements.
pub fn run_partition<S: Strategy + Clone>(
    scenario: &PartitionScenario,
    strategy: &S,
) -> Result<PartitionReport, String> {
    scenario.validate()?;
    let n = scenario.nodes;
    let half = n / 2;
    let mut cluster = probe_cluster(
        n,
        scenario.seed,
        scenario.config.clone(),
        scenario.link,
        strategy,
        &scenario.leader,
        &scenario.partition,
    );
    cluster.run_until(scenario.split_at, &mut ());
    cluster.sim.partition(move |i| u32::from(i >= half));
    cluster.run_until(scenario.heal_at, &mut ());
    cluster.sim.heal();
    cluster.run_until(scenario.duration, &mut ());

    let split = scenario.split_at.as_nanos() as u64;
    let heal = scenario.heal_at.as_nanos() as u64;
    let secs = |nanos: u64| nanos as f64 / 1e9;
    let (mut reported, mut lost, mut healed) = (Vec::new(), Vec::new(), Vec::new());
    let (mut side_a, mut side_b, mut false_reports, mut healed_nodes) = (0, 0, 0, 0);
    let mut leaders = 0;
    for i in 0..n {
        let app = cluster.app(i);
        let mut first = None;
        let mut first_heal = None;
        for (at, event) in &app.partition_events {
            match event {
                PartitionEvent::PartitionSuspected { lost: l } if *at < split => {
                    let _ = l;
                    false_reports += 1;
                }
                PartitionEvent::PartitionSuspected { lost: l } if first.is_none() => {
                    first = Some(*at);
                    lost.push(Some(*l as f64));
                }
                PartitionEvent::PartitionHealed { .. } if *at >= heal && first_heal.is_none() => {
                    first_heal = Some(*at);
                }
                _ => {}
            }
        }
        if first.is_some_and(|t| t < heal) {
            if i < half {
                side_a += 1;
            } else {
                side_b += 1;
            }
        }
        reported.push(first.filter(|&t| t < heal).map(|t| secs(t - split)));
        healed.push(first_heal.map(|t| secs(t - heal)));
        healed_nodes += usize::from(first_heal.is_some());
        let led = app
            .history
            .iter()
            .any(|s| s.is_leader && s.has_quorum && s.at_nanos >= split && s.at_nanos < heal);
        leaders += usize::from(led);
    }
    let leader_of = |i: usize| cluster.app(i).election.leader();
    let agree_after_heal = (0..n).filter(|&i| leader_of(i) == leader_of(0)).count();
    Ok(PartitionReport {
        nodes: n,
        seed: scenario.seed,
        split_at_s: scenario.split_at.as_secs_f64(),
        heal_at_s: scenario.heal_at.as_secs_f64(),
        reported_s: Quantiles::of(&reported),
        reported_side_a: side_a,
        reported_side_b: side_b,
        lost_reported: Quantiles::of(&lost),
        healed_s: Quantiles::of(&healed),
        healed_nodes,
        false_reports,
        leaders_with_quorum_during_split: leaders,
        agree_after_heal,
    })
}
