//! Command-line interface.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use gossip_core::NoStrategy;
use gossip_sim::{
    run_membership_with, AdversaryKind, AdversarySpec, AttackReport, MembershipReport,
    MembershipScenario, Quantiles,
};
use gossip_strategies::{AnyStrategy, RumorMongering};
use indicatif::{ProgressBar, ProgressStyle};

/// Gossip protocols: simulations, a node on real sockets, and the
/// commands that talk to it.
#[derive(Debug, Parser)]
#[command(name = "gossip-node", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a small cluster on loopback in this process and show it at
    /// work: joins, broadcasts, a crash detected, a graceful leave; node
    /// 0's status page is served meanwhile. Ends with a summary and an SVG.
    #[command(after_help = "Examples:\n  gossip-node demo\n  \
                            gossip-node demo --nodes 8 --plot /tmp/demo.svg --keep\n\n\
                            The status page's URL is printed first; open it in a browser to \
                            watch the members and events live.")]
    Demo(crate::demo::DemoArgs),
    /// Run a deterministic simulation and report measurements.
    #[command(
        subcommand,
        after_help = "Example:\n  gossip-node sim membership --nodes 1000 --crash 5"
    )]
    Sim(SimCommand),
    /// Run a cluster on loopback sockets in this process and measure join,
    /// broadcast latency, idle traffic, CPU and failure detection.
    #[command(after_help = "Example:\n  gossip-node bench-net --nodes 100 --format json")]
    BenchNet(crate::bench_net::BenchNetArgs),
    /// Run one node on a real socket, with a control API on loopback;
    /// events as JSON lines on stdout and commands (broadcast TEXT,
    /// members, stats, leave) on stdin when stdin is not a terminal.
    Agent(Box<crate::run_agent::AgentArgs>),
    /// Talk to a running agent through its control API.
    #[command(flatten)]
    Client(crate::client::ClientCommand),
    /// Make a cluster root (or reuse the one in --dir) and issue a node
    /// certificate for QUIC.
    #[command(
        after_help = "Examples:\n  gossip-node keygen --dir keys --ip 10.0.0.1 --name n1\n  \
                            gossip-node keygen --secret cluster.key"
    )]
    Keygen(crate::keys::KeygenArgs),
}

/// Simulation scenarios.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// SWIM membership: join convergence, failure detection, false
    /// positives, partition healing and bandwidth.
    #[command(
        after_help = "Example:\n  gossip-node sim membership --nodes 1000 --loss 0.05 --crash 5"
    )]
    Membership(MembershipArgs),
    /// Dissemination of one broadcast by a strategy in round-synchronous
    /// math mode (oracle peer sampling), with the analytical predictions.
    #[command(
        after_help = "Example:\n  gossip-node sim dissemination --nodes 100000 --format json"
    )]
    Dissemination(crate::dissemination::DisseminationArgs),
    /// Aggregation (average, sum, count, min, max) by push-sum, push-pull
    /// averaging or flow updating, in round-synchronous math mode.
    #[command(
        after_help = "Example:\n  gossip-node sim aggregation --nodes 1000000 --algorithm push-pull --rounds 40"
    )]
    Aggregation(crate::aggregation::AggregationArgs),
    /// Leader election: failover after leader crashes, and quorum mode
    /// under randomized partitions.
    #[command(after_help = "Example:\n  gossip-node sim leader --nodes 100 --format json")]
    Leader(crate::leader_sim::LeaderArgs),
    /// Partition awareness: a 50/50 split reported on both sides, and its heal.
    #[command(after_help = "Example:\n  gossip-node sim partition --nodes 100")]
    Partition(crate::leader_sim::PartitionArgs),
    /// The replicated key-value store: write visibility, bytes, idle cost,
    /// catch-up, partition divergence, resurrections and tombstones.
    #[command(after_help = "Example:\n  gossip-node sim kv --nodes 100 --loss 0.01")]
    Kv(crate::kv_sim::KvSimArgs),
    /// Payloads larger than a frame (blocks), chunked and reassembled:
    /// delivery, time and bytes per node over the payload.
    #[command(after_help = "Example:\n  gossip-node sim blocks --nodes 100")]
    Blocks(crate::blocks_sim::BlocksSimArgs),
    /// A steady stream of small broadcasts from random nodes on real
    /// nodes: delivery, latency, copies per node, and the tree's grafts
    /// and prunes (the simulated twin of `bench-net --rate`).
    #[command(after_help = "Example:\n  gossip-node sim stream --nodes 100 --rate 1000 --secs 10")]
    Stream(crate::stream_sim::StreamSimArgs),
}

/// Output format of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text for people.
    Table,
    /// One JSON object.
    Json,
}

/// Arguments of `sim membership`.
#[derive(Debug, clap::Args)]
pub struct MembershipArgs {
    /// Cluster size; every node starts at t=0 with node 0 as its seed.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Seed for every random choice; the same seed replays the same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated seconds to run.
    #[arg(long, default_value_t = 120.0)]
    pub duration: f64,
    /// Full views only: one field of every node's core `Config` (the agent
    /// config's `[core]` table), as `KEY=VALUE`; repeat the flag for more:
    /// `--core max_candidates=512 --core probe_timeout=300ms`.
    #[arg(long = "core", value_name = "KEY=VALUE")]
    pub core: Vec<String>,
    /// Probability that any frame is lost, in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Which membership: `full` (SWIM, every node knows every member) or
    /// `partial` (HyParView active and passive views with a Plumtree
    /// broadcast tree, for 10^4-10^5 nodes and more; its report has
    /// survivor_reach instead of detection figures).
    #[arg(long, value_enum, default_value_t = MembershipKind::Full)]
    pub membership: MembershipKind,
    /// Number of random non-seed nodes that crash at --crash-at.
    #[arg(long, default_value_t = 0)]
    pub crash: usize,
    /// Fraction of the nodes that crash at once at --crash-at, in [0, 1)
    /// (instead of --crash). With full views a random survivor then
    /// broadcasts once a second, and the report adds survivor_reach.
    #[arg(long, conflicts_with = "crash")]
    pub crash_fraction: Option<f64>,
    /// Partial views only: seconds over which the nodes start, each
    /// joining through a random earlier one [default: nodes / 2000, 5 to
    /// 40].
    #[arg(long)]
    pub join_window: Option<f64>,
    /// Simulated second at which the crashes happen.
    #[arg(long, default_value_t = 60.0)]
    pub crash_at: f64,
    /// Simulated second at which the cluster splits into two halves.
    #[arg(long, requires = "heal_at")]
    pub partition_at: Option<f64>,
    /// Simulated second at which the partition heals.
    #[arg(long, requires = "partition_at")]
    pub heal_at: Option<f64>,
    /// Number of random non-seed nodes whose inbound processing is delayed.
    #[arg(long, default_value_t = 0)]
    pub slow: usize,
    /// Inbound delay of slow nodes, in seconds.
    #[arg(long, default_value_t = 3.0)]
    pub slow_delay: f64,
    /// An outsider attacks the cluster with forged, well-formed frames from
    /// its own address (it cannot spoof source addresses). The report then
    /// adds healthy_members_down, healthy_down_max_s,
    /// fake_members_alive_max, reflection_ratio and max_table_len.
    #[arg(long, value_enum)]
    pub adversary: Option<AdversaryArg>,
    /// Forged frames the adversary sends per simulated second.
    #[arg(long, default_value_t = 100.0, requires = "adversary")]
    pub adversary_rate: f64,
    /// Simulated second of the adversary's first frame [default: 10, after
    /// the cluster had time to join].
    #[arg(long, requires = "adversary")]
    pub adversary_start: Option<f64>,
    /// Simulated second at which the adversary stops [default: the end of
    /// the run].
    #[arg(long, requires = "adversary")]
    pub adversary_stop: Option<f64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also draw the CDFs of the crashed nodes' detection times against
    /// the probing model as an SVG file (needs --crash).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,
}

/// Which membership `sim membership` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MembershipKind {
    /// Full views: SWIM with Lifeguard, every member on every node.
    Full,
    /// Partial views: HyParView with a Plumtree tree (`gossip_core::partial`).
    Partial,
}

/// What the `--adversary` of `sim membership` tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AdversaryArg {
    /// Gossip frames under a member's name claiming a random member Dead, at
    /// its current version and at absurd ones (generation u64::MAX).
    ForgeDead,
    /// The same, claiming Left.
    ForgeLeft,
    /// Alive claims for real members at (u64::MAX, u32::MAX) with forged
    /// metadata, and for never-existing members.
    ForgeAlive,
    /// Join frames naming a fresh fake member each.
    JoinFlood,
    /// Pings and PingReqs naming real and fake targets, with forged updates
    /// piggybacked.
    PingFlood,
    /// Join and Sync{reply} over the whole range naming a victim address:
    /// requests that draw big answers.
    Reflect,
    /// Rumors forging real origins' next message ids, Feedback cooling real
    /// rumors, Pulls to learn the ids; members broadcast every 2 s (nodes
    /// then run rumor mongering) so suppression is measured.
    RumorForge,
}

impl From<AdversaryArg> for AdversaryKind {
    fn from(arg: AdversaryArg) -> Self {
        match arg {
            AdversaryArg::ForgeDead => Self::ForgeDead,
            AdversaryArg::ForgeLeft => Self::ForgeLeft,
            AdversaryArg::ForgeAlive => Self::ForgeAlive,
            AdversaryArg::JoinFlood => Self::JoinFlood,
            AdversaryArg::PingFlood => Self::PingFlood,
            AdversaryArg::Reflect => Self::Reflect,
            AdversaryArg::RumorForge => Self::RumorForge,
        }
    }
}

/// When `--adversary-start` is not given: after the cluster had time to join.
pub const DEFAULT_ADVERSARY_START_S: f64 = 10.0;

/// Runs a membership scenario as `sim membership` does: membership-only
/// nodes, except under a `rumor-forge` adversary or with survivor
/// broadcasts (`--crash-fraction`), where nodes run the default rumor
/// mongering ([`RumorMongering::default`]) so that real broadcasts can be
/// followed.
///
/// # Errors
/// If the scenario does not validate.
pub fn run_membership_scenario(
    scenario: &MembershipScenario,
    progress: impl FnMut(Duration),
) -> anyhow::Result<MembershipReport> {
    let rumors = scenario.survivor_broadcasts
        || scenario
            .adversary
            .as_ref()
            .is_some_and(|a| a.kind == AdversaryKind::RumorForge);
    let report = if rumors {
        let prototype = AnyStrategy::Rumor(RumorMongering::default());
        run_membership_with(scenario, prototype, progress)
    } else {
        run_membership_with(scenario, NoStrategy, progress)
    };
    report.map_err(|e| anyhow::anyhow!(e))
}

/// Parses a `--name` flag's seconds, refusing negative and non-finite values.
/// A figure of seconds for a table (three decimals), or "never".
pub(crate) fn secs_or_never(v: Option<f64>) -> String {
    v.map_or_else(|| "never".to_string(), |v| format!("{v:.3}"))
}

pub(crate) fn seconds(name: &str, value: f64) -> anyhow::Result<Duration> {
    if !(value.is_finite() && value >= 0.0) {
        bail!("--{name} must be a non-negative number of seconds, got {value}");
    }
    Ok(Duration::from_secs_f64(value))
}

impl MembershipArgs {
    /// Builds the scenario, rejecting impossible combinations with a clear message.
    pub fn scenario(&self) -> anyhow::Result<MembershipScenario> {
        let mut scenario = MembershipScenario::new(self.nodes);
        scenario.seed = self.seed;
        scenario.duration = seconds("duration", self.duration)?;
        scenario.link.loss = self.loss;
        scenario.crash = match self.crash_fraction {
            Some(f) => {
                crate::partial_sim::check_fraction(f)?;
                // A fraction asks how broadcasts fare after the crash.
                scenario.survivor_broadcasts = true;
                ((self.nodes as f64) * f).round() as usize
            }
            None => self.crash,
        };
        scenario.crash_at = seconds("crash-at", self.crash_at)?;
        if scenario.crash > 0 && scenario.crash_at >= scenario.duration {
            bail!(
                "--crash-at ({}) must fall within --duration ({})",
                self.crash_at,
                self.duration
            );
        }
        scenario.partition = match (self.partition_at, self.heal_at) {
            (Some(start), Some(heal)) => {
                let (start, heal) = (seconds("partition-at", start)?, seconds("heal-at", heal)?);
                if heal >= scenario.duration {
                    bail!("--heal-at must fall within --duration");
                }
                Some((start, heal))
            }
            _ => None,
        };
        if self.plot.is_some() && scenario.crash == 0 {
            bail!("--plot draws detection times: give --crash N (a few dozen make a smooth CDF)");
        }
        scenario.slow = self.slow;
        scenario.slow_delay = seconds("slow-delay", self.slow_delay)?;
        if !self.core.is_empty() {
            let mut flags = toml::Table::new();
            for flag in &self.core {
                let (key, value) = crate::agent_config::core_flag(flag)?;
                flags.insert(key, value);
            }
            scenario.config = crate::agent_config::apply_core(&scenario.config, &flags, "--core")?;
        }
        if let Some(kind) = self.adversary {
            let start = seconds(
                "adversary-start",
                self.adversary_start.unwrap_or(DEFAULT_ADVERSARY_START_S),
            )?;
            let stop = match self.adversary_stop {
                Some(stop) => seconds("adversary-stop", stop)?,
                None => scenario.duration,
            };
            if start >= scenario.duration.min(stop) {
                bail!(
                    "--adversary-start ({:.1} s) must fall before --adversary-stop and within --duration",
                    start.as_secs_f64()
                );
            }
            if !(self.adversary_rate.is_finite() && self.adversary_rate > 0.0) {
                bail!("--adversary-rate must be a positive number of frames per second");
            }
            scenario.adversary = Some(AdversarySpec::new(
                kind.into(),
                self.adversary_rate,
                start,
                stop,
            ));
        }
        scenario
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid scenario: {e}"))?;
        Ok(scenario)
    }
}

impl Cli {
    /// The log format the command asks for (only the agent chooses).
    pub fn log_format(&self) -> crate::run_agent::LogFormat {
        match &self.command {
            Command::Agent(args) => args.log_format,
            _ => crate::run_agent::LogFormat::Text,
        }
    }

    /// The log level when `RUST_LOG` does not say: the agent reports its
    /// life at `info`, other commands only warnings.
    pub fn default_log_level(&self) -> &'static str {
        match &self.command {
            Command::Agent(_) => "info",
            _ => "warn",
        }
    }

    /// Runs the chosen command, printing to stdout.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Sim(SimCommand::Membership(args))
                if args.membership == MembershipKind::Partial =>
            {
                let scenario = crate::partial_sim::scenario(&args)?;
                let report = with_progress(scenario.duration_s as u64, "s", |tick| {
                    Ok(gossip_sim::run_partial(&scenario, |t| tick(t as u64)))
                })?;
                print_report(&report, args.format, crate::partial_sim::write_table)
            }
            Command::Sim(SimCommand::Membership(args)) => {
                let scenario = args.scenario()?;
                let report = with_progress(scenario.duration.as_secs(), "s", |tick| {
                    run_membership_scenario(&scenario, |t| tick(t.as_secs()))
                })?;
                if let Some(path) = &args.plot {
                    save_plot(&crate::plot::membership_figure(&report, &scenario), path)?;
                }
                print_report(&report, args.format, write_table)
            }
            Command::Sim(SimCommand::Dissemination(args)) => {
                let report = with_progress(u64::from(args.runs), "runs", |tick| {
                    args.run(|done| tick(u64::from(done)))
                })?;
                if let Some(path) = &args.plot {
                    save_plot(&crate::plot::dissemination_figure(&report), path)?;
                }
                print_report(&report, args.format, crate::dissemination::write_table)
            }
            Command::Sim(SimCommand::Aggregation(args)) => {
                let report = with_progress(u64::from(args.rounds), "rounds", |tick| {
                    args.run(|round| tick(u64::from(round)))
                })?;
                if let Some(path) = &args.plot {
                    save_plot(&crate::plot::aggregation_figure(&report), path)?;
                }
                print_report(&report, args.format, crate::aggregation::write_table)
            }
            Command::Sim(SimCommand::Leader(args)) => {
                let report = with_progress(args.stages(), "stages", |tick| args.run(tick))?;
                print_report(&report, args.format, crate::leader_sim::write_leader_table)
            }
            Command::Sim(SimCommand::Partition(args)) => {
                let report = args.run()?;
                print_report(
                    &report,
                    args.format,
                    crate::leader_sim::write_partition_table,
                )
            }
            Command::Sim(SimCommand::Blocks(args)) => {
                let report = args.run(|done| eprintln!("sim blocks: {done} blocks done"))?;
                print_report(&report, args.format, crate::blocks_sim::write_table)
            }
            Command::Sim(SimCommand::Stream(args)) => {
                let report = args.run()?;
                print_report(&report, args.format, crate::stream_sim::write_table)
            }
            Command::Sim(SimCommand::Kv(args)) => {
                let report = args.run(|phase| eprintln!("sim kv: {phase}"))?;
                print_report(&report, args.format, crate::kv_sim::write_table)
            }
            Command::Demo(args) => args.run(),
            Command::Agent(args) => args.run(),
            Command::Client(command) => command.run(),
            Command::Keygen(args) => {
                println!("{}", args.run()?);
                Ok(())
            }
            Command::BenchNet(args)
                if args.membership == crate::agent_config::Membership::Partial =>
            {
                let report = with_phases(|phase| crate::bench_partial::run(&args, phase))?;
                print_report(&report, args.format, crate::bench_partial::write_table)
            }
            Command::BenchNet(args) => {
                let report = with_phases(|phase| args.run(phase))?;
                if let Some(path) = &args.plot {
                    save_plot(&crate::plot::bench_net_figure(&report), path)?;
                }
                print_report(&report, args.format, crate::bench_net::write_table)
            }
        }
    }
}

/// Writes `figure` to `path` and says so on stderr (stdout holds the report).
fn save_plot(figure: &crate::plot::Figure, path: &std::path::Path) -> anyhow::Result<()> {
    figure.write_svg(path)?;
    eprintln!("plot written to {}", path.display());
    Ok(())
}

/// Runs `work`, which reports how many of `total` `unit`s are done, under a
/// progress bar on a terminal's stderr (none when stderr is not one).
fn with_progress<T>(
    total: u64,
    unit: &str,
    work: impl FnOnce(&mut dyn FnMut(u64)) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} simulating [{{bar:40}}] {{pos}}/{{len}} {unit}  eta {{eta}}"
            ))
            .context("progress template")?,
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Some(bar)
    } else {
        None
    };
    let started = std::time::Instant::now();
    let result = work(&mut |done| {
        if let Some(bar) = &bar {
            // Runs shorter than a second finish before the bar would matter.
            if started.elapsed() >= Duration::from_secs(1) {
                bar.set_position(done);
            }
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result
}

/// Runs `work`, which names each phase it enters, under a spinner on a
/// terminal's stderr (none when stderr is not one).
fn with_phases<T>(
    work: impl FnOnce(&mut dyn FnMut(&str)) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}  {elapsed}")
                .context("progress template")?,
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Some(bar)
    } else {
        None
    };
    let result = work(&mut |phase| {
        if let Some(bar) = &bar {
            bar.set_message(phase.to_string());
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result
}

/// Prints `report` to stdout as one JSON object, or as the table `table` writes.
fn print_report<R: serde::Serialize>(
    report: &R,
    format: Format,
    table: fn(&mut std::io::StdoutLock<'static>, &R) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, report)?;
            writeln!(out)?;
        }
        Format::Table => table(&mut out, report)?,
    }
    Ok(())
}

fn fmt_opt(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "never".to_string(), |v| format!("{v:.2}{unit}"))
}

fn fmt_q(q: &Quantiles) -> String {
    format!(
        "p50 {}  p99 {}  max {}",
        fmt_opt(q.p50, " s"),
        fmt_opt(q.p99, " s"),
        fmt_opt(q.max, " s")
    )
}

fn write_table(out: &mut impl Write, r: &MembershipReport) -> anyhow::Result<()> {
    writeln!(
        out,
        "membership simulation: {} nodes, seed {}, {:.0} s simulated, loss {}",
        r.nodes, r.seed, r.duration_s, r.loss
    )?;
    writeln!(
        out,
        "  join convergence     {}  (unconverged: {})",
        fmt_q(&r.join_convergence_s),
        r.join_unconverged
    )?;
    match &r.detection_s {
        Some(q) => writeln!(
            out,
            "  failure detection    {}  (crashed: {:?})",
            fmt_q(q),
            r.crashed
        )?,
        None => writeln!(out, "  failure detection    no crashes")?,
    }
    writeln!(out, "  false positives      {}", r.false_positives)?;
    if let (Some(mean), Some(min), Some(count)) = (
        r.survivor_reach,
        r.survivor_reach_min,
        r.survivor_broadcasts,
    ) {
        writeln!(
            out,
            "  survivor reach       mean {mean:.4}, min {min:.4} over {count} broadcasts from survivors after the crash"
        )?;
    }
    match r.partition_healed {
        Some(true) => writeln!(
            out,
            "  partition heal       {}",
            fmt_opt(r.partition_heal_s, " s")
        )?,
        Some(false) => writeln!(out, "  partition heal       did not heal within the run")?,
        None => writeln!(out, "  partition heal       no partition")?,
    }
    writeln!(
        out,
        "  steady traffic       {} B/node/s, {} msgs/node/s  (window {:.0}-{:.0} s)",
        fmt_opt(r.bytes_per_node_per_s, ""),
        fmt_opt(r.messages_per_node_per_s, ""),
        r.steady_window_s.0,
        r.steady_window_s.1
    )?;
    writeln!(
        out,
        "  cold start           {} B/node/s in the first minute, {} B/node/s after it",
        fmt_opt(r.first_minute_bytes_per_node_per_s, ""),
        fmt_opt(r.after_first_minute_bytes_per_node_per_s, ""),
    )?;
    writeln!(
        out,
        "  cpu                  {:.2} s, {:.0} node-periods per cpu-second",
        r.cpu_s, r.node_periods_per_cpu_s
    )?;
    if let Some(attack) = &r.attack {
        write_attack(out, attack)?;
    }
    Ok(())
}

fn write_attack(out: &mut impl Write, a: &AttackReport) -> anyhow::Result<()> {
    let t = &a.adversary_traffic;
    writeln!(
        out,
        "  adversary            {} at {} frames/s, {:.0}-{:.0} s: {} frames ({} B) sent, {} delivered, {} refused",
        a.adversary.name(),
        a.adversary_rate,
        a.adversary_window_s.0,
        a.adversary_window_s.1,
        t.frames_sent,
        t.bytes_sent,
        t.frames_delivered,
        t.frames_refused
    )?;
    writeln!(
        out,
        "  healthy down         {} declarations, longest held {:.2} s (suspicion timeout {:.2} s)",
        a.healthy_members_down, a.healthy_down_max_s, a.suspicion_timeout_s
    )?;
    writeln!(
        out,
        "  fake members alive   {} (max over time of node-fake pairs)",
        a.fake_members_alive_max
    )?;
    writeln!(
        out,
        "  reflection           {} ({} B to unproven addresses / {} B from them)",
        a.reflection_ratio
            .map_or_else(|| "n/a".to_string(), |r| format!("{r:.2}x")),
        a.unproven_bytes_sent,
        a.unproven_bytes_received
    )?;
    writeln!(
        out,
        "  max table length     {} (bound {})",
        a.max_table_len, a.max_members
    )?;
    if let (Some(sent), Some(lost), Some(forged)) =
        (a.broadcasts, a.broadcasts_undelivered, a.forged_deliveries)
    {
        writeln!(
            out,
            "  real broadcasts      {sent}, {lost} not delivered to every live node; {forged} forged deliveries"
        )?;
    }
    Ok(())
}
