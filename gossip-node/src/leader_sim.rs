//! `gossip-node sim leader` and `sim partition`: leader failover, quorum
//! mode under randomized partitions, and a 50/50 split reported and healed.

use std::io::Write;

use gossip_sim::{
    run_leader, run_partition, LeaderReport, LeaderScenario, LinkModel, PartitionReport,
    PartitionScenario, Quantiles,
};
use gossip_strategies::{AnyStrategy, RumorMongering};

use crate::cli::Format;

/// Arguments of `sim leader`.
#[derive(Debug, clap::Args)]
pub struct LeaderArgs {
    /// Size of the crash cluster.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Leaders crashed one after another, 30 s apart.
    #[arg(long, default_value_t = 5)]
    pub crashes: usize,
    /// Randomized partition runs in quorum mode.
    #[arg(long, default_value_t = 100)]
    pub runs: u32,
    /// Nodes in each partition run.
    #[arg(long, default_value_t = 10)]
    pub run_nodes: usize,
    /// Simulated seconds of each partition run.
    #[arg(long, default_value_t = 120.0)]
    pub run_duration: f64,
    /// Probability that a datagram is lost.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

impl LeaderArgs {
    /// Runs the experiments; `progress` gets the stages done.
    pub fn run(&self, progress: impl FnMut(u64)) -> anyhow::Result<LeaderReport> {
        let scenario = LeaderScenario {
            seed: self.seed,
            crashes: self.crashes,
            runs: self.runs,
            run_nodes: self.run_nodes,
            run_duration: crate::cli::seconds("run-duration", self.run_duration)?,
            link: LinkModel {
                loss: self.loss,
                ..LinkModel::default()
            },
            ..LeaderScenario::new(self.nodes)
        };
        run_leader(&scenario, &strategy(), progress).map_err(|e| anyhow::anyhow!(e))
    }

    /// How many progress stages a run has.
    pub fn stages(&self) -> u64 {
        self.crashes as u64 + u64::from(self.runs)
    }
}

/// Arguments of `sim partition`.
#[derive(Debug, clap::Args)]
pub struct PartitionArgs {
    /// Cluster size, split in two halves by index.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// When the split starts (simulated seconds).
    #[arg(long, default_value_t = 30.0)]
    pub split_at: f64,
    /// When the network heals.
    #[arg(long, default_value_t = 60.0)]
    pub heal_at: f64,
    /// Simulated seconds to run.
    #[arg(long, default_value_t = 90.0)]
    pub duration: f64,
    /// Probability that a datagram is lost.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

impl PartitionArgs {
    /// Runs the split.
    pub fn run(&self) -> anyhow::Result<PartitionReport> {
        let scenario = PartitionScenario {
            seed: self.seed,
            split_at: crate::cli::seconds("split-at", self.split_at)?,
            heal_at: crate::cli::seconds("heal-at", self.heal_at)?,
            duration: crate::cli::seconds("duration", self.duration)?,
            link: LinkModel {
                loss: self.loss,
                ..LinkModel::default()
            },
            ..PartitionScenario::new(self.nodes)
        };
        run_partition(&scenario, &strategy()).map_err(|e| anyhow::anyhow!(e))
    }
}

fn strategy() -> AnyStrategy {
    AnyStrategy::Rumor(RumorMongering::default())
}

fn q(x: &Quantiles) -> String {
    let f = |v: Option<f64>| v.map_or("never".to_string(), |v| format!("{v:.2}"));
    format!("p50 {}  p99 {}  max {}", f(x.p50), f(x.p99), f(x.max))
}

/// `sim leader`'s table.
pub fn write_leader_table(out: &mut impl Write, r: &LeaderReport) -> anyhow::Result<()> {
    writeln!(out, "leader election, {} nodes, seed {}", r.nodes, r.seed)?;
    writeln!(out, "  leader crashes               {}", r.crashes)?;
    writeln!(out, "  failover (s)                 {}", q(&r.failover_s))?;
    writeln!(out, "  detection (s)                {}", q(&r.detection_s))?;
    writeln!(
        out,
        "  failover - detection (s)     {}",
        q(&r.failover_after_detection_s)
    )?;
    writeln!(out, "  terms agree                  {}", r.terms_agree)?;
    writeln!(out, "  term regressions             {}", r.term_regressions)?;
    writeln!(
        out,
        "  false partition reports      {}",
        r.false_partition_reports
    )?;
    writeln!(
        out,
        "  announcements /node/s        {:.4}",
        r.announcements_per_node_per_s
    )?;
    writeln!(
        out,
        "quorum mode, {} randomized partition runs of {} nodes",
        r.runs, r.run_nodes
    )?;
    writeln!(
        out,
        "  two leaders with quorum (s)  {:.3}",
        r.dual_leader_with_quorum_s
    )?;
    writeln!(
        out,
        "  some leader with quorum      {:.1} % of the time",
        100.0 * r.leader_with_quorum_fraction
    )?;
    Ok(())
}

/// `sim partition`'s table.
pub fn write_partition_table(out: &mut impl Write, r: &PartitionReport) -> anyhow::Result<()> {
    writeln!(
        out,
        "50/50 split of {} nodes at {} s, healed at {} s, seed {}",
        r.nodes, r.split_at_s, r.heal_at_s, r.seed
    )?;
    writeln!(out, "  reported after split (s)     {}", q(&r.reported_s))?;
    writeln!(
        out,
        "  reported on side A / B       {} / {}",
        r.reported_side_a, r.reported_side_b
    )?;
    writeln!(
        out,
        "  lost set size reported       {}",
        q(&r.lost_reported)
    )?;
    writeln!(out, "  healed after heal (s)        {}", q(&r.healed_s))?;
    writeln!(out, "  nodes that reported the heal {}", r.healed_nodes)?;
    writeln!(out, "  false reports before split   {}", r.false_reports)?;
    writeln!(
        out,
        "  new leaders with quorum in split {}",
        r.leaders_with_quorum_during_split
    )?;
    writeln!(out, "  agree on the leader after    {}", r.agree_after_heal)?;
    Ok(())
}
