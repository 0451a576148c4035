//! `gossip-node sim dissemination`: strategies in math mode, with theory.

use std::io::Write;

use anyhow::bail;
use clap::ValueEnum;
use gossip_core::NodeId;
use gossip_sim::{
    node_addr, run_full_dissemination, FullDissemination, MathRun, MathScenario, MathSim, Quantiles,
};
use gossip_strategies::{
    AntiEntropy, AnyStrategy, Central, Direct, Flood, Mode, Plumtree, Relay, RumorMongering,
    Termination,
};
use serde::Serialize;

use crate::cli::Format;

/// Which strategy to simulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyName {
    /// Anti-entropy (Demers 1987).
    AntiEntropy,
    /// Rumor mongering (Demers 1987).
    Rumor,
    /// Eager reliable broadcast.
    Flood,
    /// The origin sends to everyone.
    Direct,
    /// Through a coordinator (node 0).
    Central,
    /// An eager spanning tree with lazy announcements (Leitão et al.
    /// 2007); `--fanout` is the neighbours each node seeks.
    Plumtree,
}

/// Direction of exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModeArg {
    /// Send.
    Push,
    /// Ask.
    Pull,
    /// Both.
    PushPull,
}

/// Loss of interest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TerminationArg {
    /// After k useless contacts.
    FeedbackCounter,
    /// With probability 1/k per useless contact.
    FeedbackCoin,
    /// After k contacts.
    BlindCounter,
    /// With probability 1/k per contact.
    BlindCoin,
}

/// Relay timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelayArg {
    /// On receipt.
    Eager,
    /// At the next round.
    Batched,
}

/// Arguments of `sim dissemination`.
#[derive(Debug, clap::Args)]
pub struct DisseminationArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Strategy to simulate.
    #[arg(long, value_enum, default_value_t = StrategyName::Rumor)]
    pub strategy: StrategyName,
    /// Push, pull or push-pull (anti-entropy and rumor).
    #[arg(long, value_enum, default_value_t = ModeArg::Push)]
    pub mode: ModeArg,
    /// Peers contacted per round.
    #[arg(long, default_value_t = 1)]
    pub fanout: u32,
    /// How rumor mongering loses interest.
    #[arg(long, value_enum, default_value_t = TerminationArg::FeedbackCoin)]
    pub termination: TerminationArg,
    /// Counter limit or inverse coin probability of rumor mongering.
    #[arg(long, default_value_t = 1)]
    pub k: u32,
    /// Relay newly learned rumors on receipt or at the next round.
    #[arg(long, value_enum, default_value_t = RelayArg::Batched)]
    pub relay: RelayArg,
    /// Stop relaying after this many hops (rumor).
    #[arg(long)]
    pub hop_limit: Option<u16>,
    /// Independent runs (seeds seed, seed+1, ...).
    #[arg(long, default_value_t = 1)]
    pub runs: u32,
    /// Seed of the first run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Probability that any message is lost, in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Crash the coordinator (node 0; node 1 originates) at this round (central).
    #[arg(long)]
    pub crash_coordinator_at: Option<u32>,
    /// Run real nodes (membership, encoded frames, the discrete-event
    /// simulator) instead of math mode; each run is one broadcast.
    #[arg(long)]
    pub full: bool,
    /// With --full, do not back rumor mongering with anti-entropy.
    #[arg(long, requires = "full")]
    pub no_backup: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also draw the informed fraction per round (mean and range over the
    /// runs) against the mean-field theory curve, as an SVG file (math mode
    /// only).
    #[arg(long, value_name = "FILE.svg", conflicts_with = "full")]
    pub plot: Option<std::path::PathBuf>,
}

/// Mean, median, 99th percentile and maximum.
#[derive(Debug, Serialize)]
pub struct Spread {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (at least one, all finite), with the same
    /// nearest-rank quantiles as the membership reports.
    fn of(values: &[f64]) -> Self {
        let quantiles = Quantiles::of(&values.iter().map(|&v| Some(v)).collect::<Vec<_>>());
        let known = |q: Option<f64>| q.expect("finite values have every quantile");
        Self {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            p50: known(quantiles.p50),
            p99: known(quantiles.p99),
            max: known(quantiles.max),
        }
    }
}

/// An analytical prediction to compare with.
#[derive(Debug, Serialize)]
pub struct Theory {
    /// What is predicted, and by whom.
    pub model: &'static str,
    /// The quantity predicted (rounds, residue or messages).
    pub quantity: &'static str,
    /// The predicted value.
    pub value: f64,
}

/// The report of `sim dissemination`.
#[derive(Debug, Serialize)]
pub struct DisseminationReport {
    /// Number of nodes.
    pub nodes: usize,
    /// Strategy.
    pub strategy: StrategyName,
    /// Mode (anti-entropy and rumor).
    pub mode: ModeArg,
    /// Fanout.
    pub fanout: u32,
    /// Termination (rumor).
    pub termination: Option<TerminationArg>,
    /// k (rumor).
    pub k: Option<u32>,
    /// Runs.
    pub runs: u32,
    /// Loss rate.
    pub loss: f64,
    /// Rounds until the last node ever informed was informed.
    pub rounds: Spread,
    /// Mean round at which a node was informed.
    pub t_ave: f64,
    /// Mean fraction never informed.
    pub residue: f64,
    /// Largest fraction never informed in any run.
    pub residue_max: f64,
    /// Math mode (oracle sampling) or full (real nodes, encoded frames).
    pub simulation: &'static str,
    /// Payload-carrying transmissions per node (Demers' traffic m).
    pub messages_per_node: f64,
    /// Payload-carrying transmissions per run (for the baselines' exact counts).
    pub payload_messages_per_run: f64,
    /// All messages per node, digests and feedback included.
    pub all_messages_per_node: f64,
    /// Dissemination frame bytes (rumors, pulls, feedback) per node per
    /// broadcast: only with --full.
    pub bytes_per_node: Option<f64>,
    /// Analytical predictions where one exists.
    pub theory: Vec<Theory>,
    /// Process CPU time.
    pub cpu_s: f64,
    /// Simulated node-rounds per CPU second.
    pub node_rounds_per_cpu_s: f64,
    /// Math mode: per run, the informed fraction after each round (index 0:
    /// the origin alone). Empty with --full. Drawn by --plot, not printed.
    #[serde(skip)]
    pub informed_per_round: Vec<Vec<f64>>,
    /// The mean-field curve of the same model, if one is implemented.
    #[serde(skip)]
    pub theory_curve: Option<TheoryCurve>,
}

/// The expected informed fraction per round under a mean-field model.
#[derive(Debug)]
pub struct TheoryCurve {
    /// The model, for a legend.
    pub model: String,
    /// Expected informed fraction after each round (index 0: the origin).
    pub informed: Vec<f64>,
}

impl DisseminationArgs {
    fn strategy(&self) -> AnyStrategy {
        let strategy = self.bare_strategy();
        match strategy {
            // On real nodes rumors are backed by slow anti-entropy, so the
            // residue reaches zero, unless asked otherwise.
            AnyStrategy::Rumor(rumor) if self.full && !self.no_backup => {
                AnyStrategy::Rumor(rumor.backed_by(AntiEntropy::new(Mode::PushPull, 1).every(5)))
            }
            other => other,
        }
    }

    fn bare_strategy(&self) -> AnyStrategy {
        let mode = match self.mode {
            ModeArg::Push => Mode::Push,
            ModeArg::Pull => Mode::Pull,
            ModeArg::PushPull => Mode::PushPull,
        };
        match self.strategy {
            StrategyName::AntiEntropy => {
                AnyStrategy::AntiEntropy(AntiEntropy::new(mode, self.fanout))
            }
            StrategyName::Rumor => {
                let termination = match self.termination {
                    TerminationArg::FeedbackCounter => Termination::FeedbackCounter,
                    TerminationArg::FeedbackCoin => Termination::FeedbackCoin,
                    TerminationArg::BlindCounter => Termination::BlindCounter,
                    TerminationArg::BlindCoin => Termination::BlindCoin,
                };
                let mut rumor = RumorMongering::new(mode, termination, self.k)
                    .fanout(self.fanout)
                    .relay(match self.relay {
                        RelayArg::Eager => Relay::Eager,
                        RelayArg::Batched => Relay::Batched,
                    });
                if let Some(hops) = self.hop_limit {
                    rumor = rumor.hop_limit(hops);
                }
                AnyStrategy::Rumor(rumor)
            }
            StrategyName::Flood => AnyStrategy::Flood(Flood),
            StrategyName::Direct => AnyStrategy::Direct(Direct),
            StrategyName::Central => AnyStrategy::Central(Central {
                coordinator: NodeId::new(node_addr(0)),
            }),
            StrategyName::Plumtree => {
                AnyStrategy::Plumtree(Plumtree::default().fanout(self.fanout))
            }
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.nodes < 2 || self.nodes > 1 << 24 {
            bail!("--nodes must be within 2..=16777216");
        }
        if self.fanout == 0 || self.fanout as usize >= self.nodes {
            bail!("--fanout must be at least 1 and below --nodes");
        }
        if self.k == 0 {
            bail!("--k must be at least 1");
        }
        if self.runs == 0 {
            bail!("--runs must be at least 1");
        }
        if !(0.0..1.0).contains(&self.loss) {
            bail!("--loss must be within [0, 1)");
        }
        if self.crash_coordinator_at.is_some() && self.strategy != StrategyName::Central {
            bail!("--crash-coordinator-at only applies to --strategy central");
        }
        Ok(())
    }

    fn theory(&self, measured_m: f64) -> Vec<Theory> {
        let n = self.nodes as f64;
        let f = f64::from(self.fanout);
        let mut out = Vec::new();
        match self.strategy {
            StrategyName::AntiEntropy => match self.mode {
                ModeArg::Push if self.fanout == 1 => out.push(Theory {
                    model: "Pittel 1987: log2 N + ln N",
                    quantity: "rounds",
                    value: n.log2() + n.ln(),
                }),
                ModeArg::Push => out.push(Theory {
                    model: "push with fanout f: log_(1+f) N + ln N / f",
                    quantity: "rounds",
                    value: n.ln() / (1.0 + f).ln() + n.ln() / f,
                }),
                ModeArg::Pull => out.push(Theory {
                    model: "pull: log2 N + ln ln N (Karp et al. 2000, leading terms)",
                    quantity: "rounds",
                    value: n.log2() + n.ln().ln(),
                }),
                ModeArg::PushPull => out.push(Theory {
                    model: "push-pull: log3 N + ln ln N (Karp et al. 2000, leading terms)",
                    quantity: "rounds",
                    value: n.ln() / 3f64.ln() + n.ln().ln(),
                }),
            },
            StrategyName::Rumor => {
                if self.mode == ModeArg::Push
                    && matches!(
                        self.termination,
                        TerminationArg::FeedbackCoin | TerminationArg::BlindCoin
                    )
                {
                    out.push(Theory {
                        model: "Demers 1987: s = e^(-(k+1)(1-s))",
                        quantity: "residue",
                        value: residue_equation(self.k),
                    });
                }
                if self.mode == ModeArg::Push {
                    out.push(Theory {
                        model: "Demers 1987: s = e^(-m), m measured",
                        quantity: "residue",
                        value: (-measured_m).exp(),
                    });
                }
            }
            StrategyName::Flood => out.push(Theory {
                model: "every node to every other: N(N-1)",
                quantity: "payload_messages_per_run",
                value: n * (n - 1.0),
            }),
            StrategyName::Direct => out.push(Theory {
                model: "origin to every other: N-1",
                quantity: "payload_messages_per_run",
                value: n - 1.0,
            }),
            StrategyName::Central => out.push(Theory {
                model: "origin to coordinator, coordinator to every other: 1 + (N-1)",
                quantity: "payload_messages_per_run",
                value: n,
            }),
            // The first broadcast floods the random neighbour graph; later
            // ones follow the pruned tree: no single closed form.
            StrategyName::Plumtree => {}
        }
        out
    }

    /// Runs the experiment.
    pub fn run(&self, mut progress: impl FnMut(u32)) -> anyhow::Result<DisseminationReport> {
        self.validate()?;
        let prototype = self.strategy();
        let cpu = cpu_time::ProcessTime::now();
        let mut results: Vec<MathRun> = Vec::with_capacity(self.runs as usize);
        let mut curves: Vec<Vec<f64>> = Vec::new();
        let mut bytes_per_node = None;
        let mut node_rounds = 0.0;
        if self.full {
            let (runs, bytes, rounds) = self.run_full(&prototype, &mut progress)?;
            results = runs;
            bytes_per_node = Some(bytes);
            node_rounds = rounds;
        }
        for run in (0..self.runs).filter(|_| !self.full) {
            let mut scenario =
                MathScenario::new(self.nodes, self.seed.wrapping_add(u64::from(run)));
            scenario.loss = self.loss;
            scenario.crash = self.crash_coordinator_at.map(|round| (0, round));
            scenario.stop_when_all_informed = self.strategy == StrategyName::AntiEntropy;
            if self.strategy == StrategyName::Central {
                // A member other than the coordinator originates, so the
                // update has to go through the coordinator.
                scenario.origin = 1;
            }
            let (result, curve) = run_with_curve(&scenario, &prototype);
            results.push(result);
            curves.push(curve);
            progress(run + 1);
        }
        let cpu_s = cpu.elapsed().as_secs_f64();
        let runs = results.len() as f64;
        let n = self.nodes as f64;
        let mean = |f: &dyn Fn(&MathRun) -> f64| results.iter().map(f).sum::<f64>() / runs;
        let messages_per_node = mean(&|r| r.payload_messages as f64 / n);
        if !self.full {
            node_rounds = results.iter().map(|r| f64::from(r.rounds_run) * n).sum();
        }
        let is_rumor = self.strategy == StrategyName::Rumor;
        let longest = curves.iter().map(Vec::len).max().unwrap_or(0);
        Ok(DisseminationReport {
            informed_per_round: curves,
            theory_curve: self.mean_field(longest.saturating_sub(1)),
            nodes: self.nodes,
            strategy: self.strategy,
            mode: self.mode,
            fanout: self.fanout,
            termination: is_rumor.then_some(self.termination),
            k: is_rumor.then_some(self.k),
            runs: self.runs,
            loss: self.loss,
            rounds: Spread::of(
                &results
                    .iter()
                    .map(|r| f64::from(r.rounds))
                    .collect::<Vec<_>>(),
            ),
            t_ave: mean(&|r| r.t_ave),
            residue: mean(&|r| r.residue),
            residue_max: results.iter().map(|r| r.residue).fold(0.0, f64::max),
            simulation: if self.full { "full" } else { "math" },
            messages_per_node,
            payload_messages_per_run: mean(&|r| r.payload_messages as f64),
            all_messages_per_node: mean(&|r| r.messages as f64 / n),
            bytes_per_node,
            theory: self.theory(messages_per_node),
            cpu_s,
            node_rounds_per_cpu_s: node_rounds / cpu_s.max(1e-9),
        })
    }
}

/// Runs one math-mode broadcast like `gossip_sim::run_math`, also recording
/// the informed fraction after every round.
fn run_with_curve(scenario: &MathScenario, prototype: &AnyStrategy) -> (MathRun, Vec<f64>) {
    let n = scenario.nodes as f64;
    let mut sim = MathSim::new(scenario, prototype);
    let mut curve = vec![sim.result().informed as f64 / n];
    loop {
        let going = sim.step();
        let now = sim.result();
        // A step that found the run already over simulates no round.
        if now.rounds_run as usize == curve.len() {
            curve.push(now.informed as f64 / n);
        }
        if !going {
            break (now, curve);
        }
    }
}

impl DisseminationArgs {
    /// The expected informed fraction after rounds 0..=`rounds` from a
    /// mean-field recurrence of the strategy as math mode runs it (uniform
    /// peers, a rumor learned in a round relayed from the next, answers
    /// within the round, each message lost independently). `None` where no
    /// recurrence is implemented: rumor pull and push-pull, eager relay,
    /// hop limits, a crashed coordinator.
    pub fn mean_field(&self, rounds: usize) -> Option<TheoryCurve> {
        let n = self.nodes as f64;
        let f = f64::from(self.fanout);
        let q = 1.0 - self.loss;
        // Chance that one contact of one node lands on a given other node.
        let hit = 1.0 / (n - 1.0);
        let start = 1.0 / n;
        let (model, informed) = match self.strategy {
            StrategyName::AntiEntropy => {
                // A node stays uninformed if no informed node's push hits it
                // (one message) and none of its pulls finds an informed
                // peer (request and answer); push-pull's push is a digest,
                // the peer's pull back and the push (three messages).
                let (push_q, model) = match self.mode {
                    ModeArg::Push => (q, "mean-field SI: u' = u(1-f/(N-1))^I"),
                    ModeArg::Pull => (0.0, "mean-field SI: u' = u(1-I/(N-1))^f"),
                    ModeArg::PushPull => (
                        q * q * q,
                        "mean-field SI: u' = u(1-f/(N-1))^I (1-I/(N-1))^f",
                    ),
                };
                let pull_q = if self.mode == ModeArg::Push {
                    0.0
                } else {
                    q * q
                };
                let curve = iterate(start, rounds, |i| {
                    let u = 1.0 - i;
                    let informed = n * i;
                    let push_miss = (1.0 - f * hit * push_q).powf(informed);
                    let pull_miss = (1.0 - pull_q * informed * hit).powf(f);
                    1.0 - u * push_miss * pull_miss
                });
                (model.to_string(), curve)
            }
            StrategyName::Rumor => return self.rumor_mean_field(rounds),
            StrategyName::Plumtree => return None,
            StrategyName::Direct | StrategyName::Flood | StrategyName::Central
                if self.crash_coordinator_at.is_some() =>
            {
                return None
            }
            StrategyName::Direct => (
                "origin sends to all in round 1".to_string(),
                step_curve(rounds, &[start, start + (1.0 - start) * q]),
            ),
            StrategyName::Central => (
                "origin -> coordinator (round 1) -> all (round 2)".to_string(),
                step_curve(
                    rounds,
                    &[start, start * (1.0 + q), (1.0 + q + (n - 2.0) * q * q) / n],
                ),
            ),
            StrategyName::Flood => {
                // Only the nodes informed in the previous round send, to all.
                let mut curve = vec![start];
                let mut fresh = 1.0;
                for _ in 0..rounds {
                    let i = *curve.last().expect("starts non-empty");
                    let next = 1.0 - (1.0 - i) * (1.0 - q).powf(fresh);
                    fresh = n * (next - i);
                    curve.push(next);
                }
                (
                    "mean-field flood: u' = u(1-q)^(newly informed)".to_string(),
                    curve,
                )
            }
        };
        Some(TheoryCurve { model, informed })
    }

    /// Push rumor mongering with batched relay: susceptible `s`, infective
    /// nodes grouped by their counter (one group for the coins), Demers'
    /// SIR model in discrete rounds.
    fn rumor_mean_field(&self, rounds: usize) -> Option<TheoryCurve> {
        if self.mode != ModeArg::Push || self.relay != RelayArg::Batched || self.hop_limit.is_some()
        {
            return None;
        }
        let n = self.nodes as f64;
        let f = self.fanout;
        let q = 1.0 - self.loss;
        let k = self.k as usize;
        let coin = matches!(
            self.termination,
            TerminationArg::FeedbackCoin | TerminationArg::BlindCoin
        );
        let feedback = matches!(
            self.termination,
            TerminationArg::FeedbackCoin | TerminationArg::FeedbackCounter
        );
        let mut s = 1.0 - 1.0 / n;
        // infective[c]: fraction of nodes spreading with counter c.
        let mut infective = vec![0.0; if coin { 1 } else { k }];
        infective[0] = 1.0 / n;
        let mut curve = vec![1.0 - s];
        for _ in 0..rounds {
            let spreading: f64 = infective.iter().sum();
            let s_next = s * (1.0 - f64::from(f) * q / (n - 1.0)).powf(n * spreading);
            // A contact counts against interest: always (blind), or when
            // the push and the feedback both arrive at an informed peer.
            let strike = if feedback { (1.0 - s) * q * q } else { 1.0 };
            let mut next = vec![0.0; infective.len()];
            for (c, &mass) in infective.iter().enumerate() {
                if coin {
                    next[0] += mass * (1.0 - strike / k as f64).powi(f as i32);
                    continue;
                }
                for (x, p) in binomial(f, strike).into_iter().enumerate() {
                    if c + x < k {
                        next[c + x] += mass * p;
                    }
                }
            }
            next[0] += s - s_next;
            infective = next;
            s = s_next;
            curve.push(1.0 - s);
        }
        Some(TheoryCurve {
            model: format!(
                "mean-field SIR (Demers 1987), {:?} k={}",
                self.termination, self.k
            ),
            informed: curve,
        })
    }
}

/// `start` followed by `rounds` values of `next` applied to the previous one.
fn iterate(start: f64, rounds: usize, next: impl Fn(f64) -> f64) -> Vec<f64> {
    let mut curve = vec![start];
    for _ in 0..rounds {
        let last = *curve.last().expect("starts non-empty");
        curve.push(next(last));
    }
    curve
}

/// `values` for the first rounds, then the last of them held.
fn step_curve(rounds: usize, values: &[f64]) -> Vec<f64> {
    let last = *values.last().expect("at least one value");
    (0..=rounds)
        .map(|r| values.get(r).copied().unwrap_or(last))
        .collect()
}

/// P(X = x) for x in 0..=trials, X binomial with `trials` and `p`.
fn binomial(trials: u32, p: f64) -> Vec<f64> {
    let mut out = vec![0.0; trials as usize + 1];
    out[0] = 1.0;
    for _ in 0..trials {
        for x in (0..out.len()).rev() {
            let stay = out[x] * (1.0 - p);
            let from_below = if x > 0 { out[x - 1] * p } else { 0.0 };
            out[x] = stay + from_below;
        }
    }
    out
}

impl DisseminationArgs {
    /// One broadcast per run on real nodes: returns the per-broadcast
    /// results, dissemination bytes per node per broadcast, and node-rounds.
    fn run_full(
        &self,
        prototype: &AnyStrategy,
        progress: &mut impl FnMut(u32),
    ) -> anyhow::Result<(Vec<MathRun>, f64, f64)> {
        if self.nodes > 5000 {
            bail!("--full simulates every node's membership too: at most 5000 nodes");
        }
        let scenario = FullDissemination {
            nodes: self.nodes,
            seed: self.seed,
            loss: self.loss,
            runs: self.runs,
            // Central's coordinator is node 0: another member originates, so
            // the update has to go through it.
            origin: (self.strategy == StrategyName::Central).then_some(1),
        };
        let report =
            run_full_dissemination(&scenario, prototype, progress).map_err(anyhow::Error::msg)?;
        Ok((report.runs, report.bytes_per_node, report.node_rounds))
    }
}

/// Solves `s = e^(-(k+1)(1-s))` for the non-trivial root in (0, 1).
pub fn residue_equation(k: u32) -> f64 {
    let c = f64::from(k) + 1.0;
    // Fixed-point iteration from 0 converges to the smaller root.
    let mut s = 0.0f64;
    for _ in 0..10_000 {
        let next = (-c * (1.0 - s)).exp();
        if (next - s).abs() < 1e-15 {
            break;
        }
        s = next;
    }
    s
}

/// Prints the report as a table.
pub fn write_table(out: &mut impl Write, r: &DisseminationReport) -> anyhow::Result<()> {
    writeln!(
        out,
        "dissemination ({} mode): {:?} {:?} fanout {}, {} nodes, {} runs, loss {}",
        r.simulation, r.strategy, r.mode, r.fanout, r.nodes, r.runs, r.loss
    )?;
    if let (Some(t), Some(k)) = (r.termination, r.k) {
        writeln!(out, "  termination          {t:?}, k = {k}")?;
    }
    writeln!(
        out,
        "  rounds               mean {:.2}  p50 {}  p99 {}  max {}",
        r.rounds.mean, r.rounds.p50, r.rounds.p99, r.rounds.max
    )?;
    writeln!(out, "  t_ave                {:.2}", r.t_ave)?;
    writeln!(
        out,
        "  residue              {:.5} mean, {:.5} worst run",
        r.residue, r.residue_max
    )?;
    if let Some(bytes) = r.bytes_per_node {
        writeln!(
            out,
            "  bytes per node       {bytes:.1} per broadcast (dissemination frames)"
        )?;
    }
    writeln!(
        out,
        "  messages per node    {:.3} (payload), {:.3} (all)",
        r.messages_per_node, r.all_messages_per_node
    )?;
    for t in &r.theory {
        writeln!(
            out,
            "  theory               {} = {:.4} ({})",
            t.quantity, t.value, t.model
        )?;
    }
    writeln!(
        out,
        "  cpu                  {:.2} s, {:.0} node-rounds per cpu-second",
        r.cpu_s, r.node_rounds_per_cpu_s
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: DisseminationArgs,
    }

    fn args(extra: &[&str]) -> DisseminationArgs {
        let mut argv = vec!["test", "--nodes", "1000"];
        argv.extend_from_slice(extra);
        if !extra.contains(&"--runs") {
            argv.extend_from_slice(&["--runs", "10"]);
        }
        Wrap::parse_from(argv).args
    }

    /// Largest gap, over rounds, between the mean measured informed
    /// fraction and the mean-field curve; and the gap at the end.
    fn gaps(extra: &[&str]) -> (f64, f64) {
        let report = args(extra).run(|_| {}).expect("runs");
        let theory = report.theory_curve.expect("a model for this variant");
        let runs = &report.informed_per_round;
        let rounds = runs.iter().map(Vec::len).max().expect("runs");
        let mean = |r: usize| {
            runs.iter()
                .map(|run| run.get(r).or(run.last()).copied().expect("non-empty"))
                .sum::<f64>()
                / runs.len() as f64
        };
        let at = |r: usize| {
            theory
                .informed
                .get(r)
                .copied()
                .expect("as long as the runs")
        };
        let worst = (0..rounds)
            .map(|r| (mean(r) - at(r)).abs())
            .fold(0.0, f64::max);
        (worst, (mean(rounds - 1) - at(rounds - 1)).abs())
    }

    #[test]
    fn mean_field_follows_the_measured_mean() {
        for (case, worst_allowed, end_allowed) in [
            (&["--strategy", "anti-entropy"][..], 0.02, 0.001),
            (
                &[
                    "--strategy",
                    "anti-entropy",
                    "--fanout",
                    "3",
                    "--loss",
                    "0.3",
                ],
                0.03,
                0.001,
            ),
            (&["--k", "2"], 0.04, 0.015),
            (
                &[
                    "--k",
                    "3",
                    "--termination",
                    "blind-counter",
                    "--fanout",
                    "2",
                ],
                0.02,
                0.005,
            ),
            (&["--strategy", "flood", "--loss", "0.5"], 0.01, 0.01),
            (&["--strategy", "central", "--loss", "0.1"], 0.01, 0.01),
        ] {
            let (worst, end) = gaps(case);
            assert!(
                worst <= worst_allowed,
                "{case:?}: gap {worst} over the rounds"
            );
            assert!(end <= end_allowed, "{case:?}: gap {end} at the end");
        }
    }

    #[test]
    fn curves_end_where_the_runs_end() {
        let report = args(&["--k", "2", "--runs", "4"])
            .run(|_| {})
            .expect("runs");
        assert_eq!(report.informed_per_round.len(), 4);
        let last_mean = report
            .informed_per_round
            .iter()
            .map(|c| *c.last().expect("non-empty"))
            .sum::<f64>()
            / 4.0;
        assert!((last_mean - (1.0 - report.residue)).abs() < 1e-12);
        for curve in &report.informed_per_round {
            assert_eq!(curve[0], 1.0 / 1000.0, "the origin alone at round 0");
            assert!(
                curve.windows(2).all(|w| w[0] <= w[1]),
                "informed never shrinks"
            );
        }
    }

    #[test]
    fn no_mean_field_where_none_is_implemented() {
        for case in [
            &["--mode", "pull"][..],
            &["--relay", "eager"],
            &["--hop-limit", "3"],
            &["--strategy", "central", "--crash-coordinator-at", "1"],
        ] {
            assert!(args(case).mean_field(10).is_none(), "{case:?}");
        }
    }
}
