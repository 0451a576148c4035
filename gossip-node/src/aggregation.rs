//! `gossip-node sim aggregation`: aggregation algorithms in math mode.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::bail;
use clap::ValueEnum;
use gossip_aggregate::{Algorithm, AnyAggregate, AnyShare, Function, Input};
use gossip_sim::{
    run_aggregation, run_full_aggregation, AggregationProbe, AggregationScenario, FullAggregation,
    FullAggregationProbe,
};
use serde::Serialize;

use crate::cli::Format;

/// Which algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlgorithmName {
    /// Kempe, Dobra, Gehrke 2003.
    PushSum,
    /// Jelasity, Montresor, Babaoglu 2005.
    PushPull,
    /// Jesus, Baquero, Almeida 2009.
    FlowUpdating,
}

/// What to compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FunctionName {
    /// Mean of the inputs.
    Average,
    /// Sum of the inputs.
    Sum,
    /// Number of nodes.
    Count,
    /// Smallest input.
    Min,
    /// Largest input.
    Max,
}

/// Arguments of `sim aggregation`.
#[derive(Debug, clap::Args)]
pub struct AggregationArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Algorithm.
    #[arg(long, value_enum, default_value_t = AlgorithmName::PushPull)]
    pub algorithm: AlgorithmName,
    /// Function computed.
    #[arg(long, value_enum, default_value_t = FunctionName::Average)]
    pub function: FunctionName,
    /// Rounds to run.
    #[arg(long, default_value_t = 60)]
    pub rounds: u32,
    /// Probability that any share is lost, in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Probability that a node leaves in a round (replaced by a newcomer).
    #[arg(long, default_value_t = 0.0)]
    pub churn: f64,
    /// Restart the computation every this many rounds (default: 50 with
    /// churn, never without).
    #[arg(long)]
    pub epoch: Option<u32>,
    /// Neighbours per node (flow updating).
    #[arg(long, default_value_t = 4)]
    pub degree: usize,
    /// Seed of the run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run real nodes (membership, encoded frames, the discrete-event
    /// simulator) instead of math mode; a round is one gossip interval.
    #[arg(long, conflicts_with = "churn")]
    pub full: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also draw the largest relative error per round on a log axis, with
    /// the convergence slopes, as an SVG file (math mode only).
    #[arg(long, value_name = "FILE.svg", conflicts_with = "full")]
    pub plot: Option<std::path::PathBuf>,
}

/// One completed epoch under churn.
#[derive(Debug, Serialize)]
pub struct EpochResult {
    /// Round at which the completed estimates were read (half-way through
    /// the following epoch).
    pub round: u32,
    /// Live nodes then.
    pub live: usize,
    /// The exact aggregate then.
    pub truth: f64,
    /// Largest relative error of the completed estimates.
    pub max_rel_error: f64,
    /// Nodes that had a completed estimate.
    pub reporting: usize,
}

/// The report of `sim aggregation`.
#[derive(Debug, Serialize)]
pub struct AggregationReport {
    /// Nodes.
    pub nodes: usize,
    /// Algorithm.
    pub algorithm: AlgorithmName,
    /// Function.
    pub function: FunctionName,
    /// Rounds run.
    pub rounds: u32,
    /// Loss rate.
    pub loss: f64,
    /// Churn rate.
    pub churn: f64,
    /// Math mode or full (real nodes, encoded frames).
    pub simulation: &'static str,
    /// First round at which every live node's relative error is at or below
    /// the bound (`null`: never).
    pub rounds_to_error: BTreeMap<&'static str, Option<u32>>,
    /// Largest relative error over live nodes after the last round.
    pub final_max_rel_error: f64,
    /// Geometric mean of the variance ratio between consecutive rounds,
    /// before floating-point noise dominates (`null` for extremes).
    pub variance_factor_per_round: Option<f64>,
    /// Relative change of the total value mass: mass held by the nodes,
    /// plus in `--full` mode the mass carried by shares still in flight
    /// when the run stops (see `mass_in_flight`), against the total before
    /// the first round.
    pub mass_drift: f64,
    /// `--full` mode: mass carried by shares sent but not yet delivered
    /// when the run stops, relative to the initial total, already counted
    /// in `mass_drift` (`null` in math mode, whose exchanges are atomic).
    /// Flow updating's shares carry state rather than mass: 0.
    pub mass_in_flight: Option<f64>,
    /// Shares sent per node per round.
    pub messages_per_node_per_round: f64,
    /// Completed epochs (with churn or --epoch).
    pub epochs: Vec<EpochResult>,
    /// Process CPU time.
    pub cpu_s: f64,
    /// Node-rounds per CPU second.
    pub node_rounds_per_cpu_s: f64,
    /// Math mode: the largest relative error over live nodes after each
    /// round (index 0: round 1). Empty with --full. Drawn by --plot.
    #[serde(skip)]
    pub max_rel_error_per_round: Vec<f64>,
}

impl AggregationArgs {
    fn function(&self) -> Function {
        match self.function {
            FunctionName::Average => Function::Average,
            FunctionName::Sum => Function::Sum,
            FunctionName::Count => Function::Count,
            FunctionName::Min => Function::Min,
            FunctionName::Max => Function::Max,
        }
    }

    fn epoch_length(&self) -> Option<u32> {
        self.epoch.or((self.churn > 0.0).then_some(50))
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.nodes < 2 || self.nodes > 1 << 22 {
            bail!("--nodes must be within 2..=4194304");
        }
        if self.rounds == 0 {
            bail!("--rounds must be at least 1");
        }
        if !(0.0..1.0).contains(&self.loss) || !(0.0..1.0).contains(&self.churn) {
            bail!("--loss and --churn must be within [0, 1)");
        }
        if self.epoch == Some(0) {
            bail!("--epoch must be at least 1");
        }
        if self.degree == 0 {
            bail!("--degree must be at least 1");
        }
        Ok(())
    }

    /// Runs the experiment.
    pub fn run(&self, mut progress: impl FnMut(u32)) -> anyhow::Result<AggregationReport> {
        self.validate()?;
        let function = self.function();
        let epoch = self.epoch_length();
        let algorithm = match self.algorithm {
            AlgorithmName::PushSum => Algorithm::PushSum,
            AlgorithmName::PushPull => Algorithm::PushPull,
            AlgorithmName::FlowUpdating => Algorithm::FlowUpdating {
                degree: self.degree,
            },
        };
        let make = move |_slot: usize, value: f64, leader: bool, newcomer: bool| {
            let node = AnyAggregate::new(algorithm, function, Input { value, leader }, epoch);
            if newcomer {
                node.newcomer()
            } else {
                node
            }
        };
        let truth = move |inputs: &[f64]| function.exact(inputs);
        let scenario = AggregationScenario {
            nodes: self.nodes,
            seed: self.seed,
            rounds: self.rounds,
            loss: self.loss,
            churn: self.churn,
        };
        let bounds: [(&'static str, f64); 2] = [("1e-3", 1e-3), ("1e-6", 1e-6)];
        let mut reached: BTreeMap<&'static str, Option<u32>> =
            bounds.iter().map(|&(k, _)| (k, None)).collect();
        let mut last_variance: Option<f64> = None;
        let mut log_ratio_sum = 0.0;
        let mut ratios = 0u32;
        let mut final_error = f64::INFINITY;
        let mut mass = (0.0, 0.0);
        let mut messages = 0u64;
        let mut live_rounds = 0u64;
        let mut epochs = Vec::new();
        let mut per_round = Vec::with_capacity(self.rounds as usize);
        let cpu = cpu_time::ProcessTime::now();
        if self.full {
            return self.run_full(make, truth, &mut progress);
        }
        run_aggregation(
            &scenario,
            AggregationProbe {
                make,
                truth,
                mass: AnyAggregate::mass,
                observe: |stats: &gossip_sim::RoundStats, estimates: &[Option<f64>]| {
                    for &(key, bound) in &bounds {
                        if stats.max_rel_error <= bound {
                            reached
                                .get_mut(key)
                                .expect("bound key")
                                .get_or_insert(stats.round);
                        }
                    }
                    // Variance ratios while every node has an estimate and
                    // the spread is still well above double precision.
                    let floor = (1e-13 * stats.truth.abs()).powi(2);
                    if !function.is_extreme()
                        && stats.max_rel_error.is_finite()
                        && stats.variance > floor
                    {
                        if let Some(previous) = last_variance.filter(|&v| v > floor) {
                            log_ratio_sum += (stats.variance / previous).ln();
                            ratios += 1;
                        }
                        last_variance = Some(stats.variance);
                    } else {
                        last_variance = None;
                    }
                    if let Some(length) = epoch {
                        // Half-way through an epoch every node has moved on
                        // and reports the previous epoch's result.
                        if length >= 2 && stats.round > length && stats.round % length == length / 2
                        {
                            let completed: Vec<f64> = estimates.iter().flatten().copied().collect();
                            let scale = stats.truth.abs().max(f64::MIN_POSITIVE);
                            epochs.push(EpochResult {
                                round: stats.round,
                                live: stats.live,
                                truth: stats.truth,
                                max_rel_error: completed
                                    .iter()
                                    .map(|e| (e - stats.truth).abs() / scale)
                                    .fold(0.0, f64::max),
                                reporting: completed.len(),
                            });
                        }
                    }
                    final_error = stats.max_rel_error;
                    per_round.push(stats.max_rel_error);
                    mass = (stats.initial_mass, stats.mass);
                    messages += stats.messages;
                    live_rounds += stats.live as u64;
                    progress(stats.round);
                },
            },
        );
        let cpu_s = cpu.elapsed().as_secs_f64();
        Ok(AggregationReport {
            nodes: self.nodes,
            algorithm: self.algorithm,
            function: self.function,
            rounds: self.rounds,
            loss: self.loss,
            churn: self.churn,
            simulation: "math",
            rounds_to_error: reached,
            final_max_rel_error: final_error,
            variance_factor_per_round: (ratios > 0)
                .then(|| (log_ratio_sum / f64::from(ratios)).exp()),
            mass_drift: ((mass.1 - mass.0) / mass.0).abs(),
            mass_in_flight: None,
            messages_per_node_per_round: messages as f64 / live_rounds.max(1) as f64,
            epochs,
            cpu_s,
            node_rounds_per_cpu_s: live_rounds as f64 / cpu_s.max(1e-9),
            max_rel_error_per_round: per_round,
        })
    }
}

impl AggregationArgs {
    /// Real nodes on the simulated network: membership, encoded shares.
    fn run_full(
        &self,
        mut make: impl FnMut(usize, f64, bool, bool) -> AnyAggregate,
        truth: impl Fn(&[f64]) -> f64,
        progress: &mut impl FnMut(u32),
    ) -> anyhow::Result<AggregationReport> {
        let n = self.nodes;
        if n > 5000 {
            bail!("--full simulates every node's membership too: at most 5000 nodes");
        }
        let cpu = cpu_time::ProcessTime::now();
        let bounds = [("1e-3", 1e-3), ("1e-6", 1e-6)];
        let scenario = FullAggregation {
            nodes: n,
            seed: self.seed,
            rounds: self.rounds,
            loss: self.loss,
            error_bounds: bounds.iter().map(|&(_, bound)| bound).collect(),
        };
        let probe = FullAggregationProbe {
            make: |slot, value, leader| make(slot, value, leader, false),
            truth,
            mass: AnyAggregate::mass,
            share_mass: AnyShare::mass,
        };
        let report = run_full_aggregation(&scenario, probe, progress);
        let cpu_s = cpu.elapsed().as_secs_f64();
        Ok(AggregationReport {
            nodes: n,
            algorithm: self.algorithm,
            function: self.function,
            rounds: self.rounds,
            loss: self.loss,
            churn: 0.0,
            simulation: "full",
            rounds_to_error: bounds
                .iter()
                .map(|&(key, _)| key)
                .zip(report.rounds_to_error)
                .collect(),
            final_max_rel_error: report.final_max_rel_error,
            variance_factor_per_round: None,
            mass_drift: report.mass_drift,
            mass_in_flight: Some(report.mass_in_flight),
            messages_per_node_per_round: report.messages_per_node_per_round,
            epochs: Vec::new(),
            cpu_s,
            node_rounds_per_cpu_s: n as f64 * f64::from(self.rounds) / cpu_s.max(1e-9),
            max_rel_error_per_round: Vec::new(),
        })
    }
}

/// Prints the report as a table.
pub fn write_table(out: &mut impl Write, r: &AggregationReport) -> anyhow::Result<()> {
    writeln!(
        out,
        "aggregation ({} mode): {:?} computing {:?}, {} nodes, {} rounds, loss {}, churn {}",
        r.simulation, r.algorithm, r.function, r.nodes, r.rounds, r.loss, r.churn
    )?;
    let show = |v: Option<u32>| v.map_or_else(|| "never".to_string(), |r| r.to_string());
    writeln!(
        out,
        "  rounds to error      1e-3: {}   1e-6: {}",
        show(r.rounds_to_error["1e-3"]),
        show(r.rounds_to_error["1e-6"])
    )?;
    writeln!(out, "  final max rel error  {:.3e}", r.final_max_rel_error)?;
    if let Some(f) = r.variance_factor_per_round {
        writeln!(out, "  variance factor      {f:.4} per round")?;
    }
    writeln!(out, "  mass drift           {:.3e}", r.mass_drift)?;
    if let Some(in_flight) = r.mass_in_flight {
        writeln!(
            out,
            "  of which in flight   {in_flight:.3e} (shares not yet delivered, counted above)"
        )?;
    }
    writeln!(
        out,
        "  messages             {:.2} per node per round",
        r.messages_per_node_per_round
    )?;
    if !r.epochs.is_empty() {
        let worst = r.epochs.iter().map(|e| e.max_rel_error).fold(0.0, f64::max);
        let each: Vec<String> = r
            .epochs
            .iter()
            .map(|e| format!("{:.1e}", e.max_rel_error))
            .collect();
        writeln!(
            out,
            "  epochs               {} completed, worst error {worst:.3e} (each: {})",
            r.epochs.len(),
            each.join(" ")
        )?;
    }
    writeln!(
        out,
        "  cpu                  {:.2} s, {:.0} node-rounds per cpu-second",
        r.cpu_s, r.node_rounds_per_cpu_s
    )?;
    Ok(())
}
