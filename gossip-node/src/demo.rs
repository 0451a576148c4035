//! `gossip-node demo`: a small cluster at work, for a first look.
//!
//! Starts a [`LocalCluster`] on loopback in this process and serves node 0's
//! control API (status page at `/`, `/v1/*`, `/metrics`) on 127.0.0.1, then
//! walks through the protocol's life in steps, each timed: every node joins
//! through node 0; a few broadcasts from random nodes, each timed until
//! every other node has it; one node killed without a word, timed until
//! every other node declares it dead; one node leaving gracefully, timed
//! until every other node has seen it go. It prints a summary and draws the
//! broadcasts' infection curves as an SVG.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use gossip_agent::{AgentHandle, Transport};
use gossip_core::NoAggregate;
use gossip_sim::Quantiles;
use gossip_strategies::AnyStrategy;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::api::{self, Shared};
use crate::bench_net::NetStrategy;
use crate::cluster::{ClusterSpec, LocalCluster, Observed, TransportKind};
use crate::envelope;
use crate::metrics::{Metered, Metrics};
use crate::plot::{cdf, Figure, Line, LineKind, YScale};
use crate::run_agent::config_for;

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Nodes, all in this process, each with its own socket on loopback.
    #[arg(long, default_value_t = 16)]
    pub nodes: usize,
    /// Socket transport.
    #[arg(long, value_enum, default_value_t = TransportKind::Udp)]
    pub transport: TransportKind,
    /// Dissemination strategy.
    #[arg(long, value_enum, default_value_t = NetStrategy::Rumor)]
    pub strategy: NetStrategy,
    /// Broadcasts sent, one after another, from random nodes.
    #[arg(long, default_value_t = 5)]
    pub broadcasts: u32,
    /// SWIM probe interval in milliseconds (failure detection scales with it).
    #[arg(long, default_value_t = 500)]
    pub probe_interval_ms: u64,
    /// Pause between steps, in milliseconds, so the status page can be
    /// opened and watched (0: no pauses).
    #[arg(long, default_value_t = 2500)]
    pub pace_ms: u64,
    /// Address of node 0's control API and status page (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub api: SocketAddr,
    /// Where to write the SVG of the broadcasts' infection curves.
    #[arg(long, value_name = "FILE.svg", default_value = "demo.svg")]
    pub plot: PathBuf,
    /// Keep node 0's status page served (and the cluster running) after the
    /// summary, until Ctrl-C.
    #[arg(long)]
    pub keep: bool,
    /// Seed for node randomness and the choice of broadcasters and victims.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seconds each step may take before it is reported as not reached.
    #[arg(long, default_value_t = 30.0)]
    pub timeout_secs: f64,
}

/// What the demo measured.
#[derive(Clone, Debug, Default)]
pub struct DemoReport {
    /// Cluster size.
    pub nodes: usize,
    /// Transport used.
    pub transport: Option<TransportKind>,
    /// Probe interval, ms.
    pub probe_interval_ms: u64,
    /// Seconds from the first join until every node saw every other alive.
    pub join_s: Option<f64>,
    /// Per broadcast: ms until the last other node delivered it.
    pub to_all_ms: Vec<Option<f64>>,
    /// Per broadcast: each receiving node's delivery, ms after the send
    /// (`None`: not delivered within the timeout).
    pub deliveries_ms: Vec<Vec<Option<f64>>>,
    /// Deliveries per receiving node per broadcast (1.0: each once).
    pub deliveries_per_node: f64,
    /// The killed node and seconds until every other live node declared it dead.
    pub killed: Option<(SocketAddr, Option<f64>)>,
    /// The node that left and seconds until every other live node saw it leave.
    pub left: Option<(SocketAddr, Option<f64>)>,
    /// Bytes sent per node per second, all nodes up, from the start to the kill.
    pub bytes_per_node_per_s: f64,
    /// Live nodes someone wrongly declared dead.
    pub false_positives: usize,
    /// Wall-clock seconds of the whole run.
    pub wall_s: f64,
}

impl DemoArgs {
    /// Runs the demo on a fresh runtime, printing as it goes; Ctrl-C ends
    /// it cleanly (without summary or SVG).
    pub fn run(&self) -> anyhow::Result<()> {
        if self.nodes < 4 {
            bail!(
                "--nodes must be at least 4 (a seed, a victim, a leaver and a witness), got {}",
                self.nodes
            );
        }
        if self.probe_interval_ms == 0 {
            bail!("--probe-interval-ms must be positive");
        }
        let timeout = crate::cli::seconds("timeout-secs", self.timeout_secs)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let result = runtime.block_on(async {
            let (stop, mut stopping) = mpsc::channel(1);
            tokio::select! {
                result = self.show(timeout, stop) => result,
                _ = tokio::signal::ctrl_c() => {
                    println!("interrupted: stopping the cluster");
                    Ok(())
                }
                _ = stopping.recv() => {
                    println!("leave requested through node 0's API: stopping the cluster");
                    Ok(())
                }
            }
        });
        // Agents and API connections still running are dropped here.
        runtime.shutdown_timeout(Duration::from_millis(200));
        result
    }

    async fn show(&self, timeout: Duration, stop: mpsc::Sender<()>) -> anyhow::Result<()> {
        let wall = Instant::now();
        let pace = Duration::from_millis(self.pace_ms);
        let config = config_for(
            self.nodes,
            Duration::from_millis(self.probe_interval_ms),
            self.transport,
        );
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        let spec = ClusterSpec {
            nodes: self.nodes,
            transport: self.transport,
            config: config.clone(),
            strategy: self.strategy.build(),
            seed: self.seed,
            bind: "127.0.0.1:0".parse().expect("an address"),
            faults: None,
            keyring: None,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let listener = tokio::net::TcpListener::bind(self.api)
            .await
            .with_context(|| {
                format!(
                    "binding the status page at {} (choose another with --api)",
                    self.api
                )
            })?;
        let api_addr = listener.local_addr()?;
        println!(
            "gossip-node demo: {} nodes over {} on loopback, strategy {:?}, probe every {} ms",
            self.nodes, self.transport, self.strategy, self.probe_interval_ms
        );

        let metrics = Arc::new(Metrics::new());
        let metered = Arc::clone(&metrics);
        let frames_config = config.clone();
        let bar = Bar::new(self.nodes as u64)?;
        bar.phase("joining");
        let cluster = LocalCluster::start_with(&spec, move |i, transport| {
            if i == 0 {
                Box::new(Metered::new(
                    transport,
                    frames_config.clone(),
                    Arc::clone(&metered),
                )) as Box<dyn Transport>
            } else {
                transport
            }
        })
        .await?;
        let events = serve_node0(&cluster.agents[0], metrics, listener, stop);
        bar.say(format!(
            "status page of node 0: http://{api_addr}/  (open it now to watch)"
        ));
        let mut report = DemoReport {
            nodes: self.nodes,
            transport: Some(self.transport),
            probe_interval_ms: self.probe_interval_ms,
            ..DemoReport::default()
        };

        // 1. Joins, with the bar counting nodes that see all the others.
        let everyone = cluster.others(&[]);
        let deadline = Instant::now() + timeout;
        loop {
            let converged = count(&cluster, &everyone, |o| o.converged_at.is_some());
            bar.position(converged as u64);
            if converged == everyone.len() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        report.join_s = everyone
            .iter()
            .map(|&i| cluster.observed[i].lock().expect("lock").converged_at)
            .collect::<Option<Vec<_>>>()
            .and_then(|all| all.into_iter().max())
            .map(|t| (t - cluster.started).as_secs_f64());
        bar.say(format!(
            "joined       every node sees the other {} alive after {}",
            self.nodes - 1,
            seconds_or(report.join_s, "(not within the timeout)")
        ));
        // Twice as long: time to open the page.
        tokio::time::sleep(pace * 2).await;

        // 2. Broadcasts, one at a time, each until every node has it.
        bar.phase("broadcasting");
        let before: u64 = everyone
            .iter()
            .map(|&i| cluster.observed[i].lock().expect("lock").deliveries)
            .sum();
        for b in 0..self.broadcasts {
            let origin = rng.random_range(0..self.nodes);
            let text = format!("hello {b} from node {origin}");
            let sent = Instant::now();
            let id = cluster.agents[origin]
                .broadcast(envelope::wrap(text.as_bytes(), envelope::now_micros()))
                .await?;
            if origin == 0 {
                let line = json!({"event": "broadcast_sent", "payload": text,
                    "id": format!("{}/{}/{}", id.origin, id.generation, id.sequence)});
                let _ = events.send(Arc::new(line));
            }
            let receivers = cluster.others(&[origin]);
            cluster
                .wait_until(&receivers, timeout, |o| o.delivered.contains_key(&id))
                .await;
            let each: Vec<Option<f64>> = receivers
                .iter()
                .map(|&i| {
                    let o = cluster.observed[i].lock().expect("lock");
                    o.delivered
                        .get(&id)
                        .map(|&at| (at - sent).as_secs_f64() * 1000.0)
                })
                .collect();
            let to_all = each
                .iter()
                .copied()
                .collect::<Option<Vec<f64>>>()
                .map(|all| all.into_iter().fold(0.0, f64::max));
            bar.say(match to_all {
                Some(ms) => format!(
                    "broadcast    {text:?} reached all {} others in {ms:.1} ms",
                    receivers.len()
                ),
                None => format!(
                    "broadcast    {text:?} had reached {} of {} others when the timeout passed",
                    each.iter().flatten().count(),
                    receivers.len()
                ),
            });
            report.to_all_ms.push(to_all);
            report.deliveries_ms.push(each);
            // Let the rumor die down so broadcasts do not overlap.
            tokio::time::sleep(pace.max(Duration::from_millis(200)) / 3).await;
        }
        let deliveries = everyone
            .iter()
            .map(|&i| cluster.observed[i].lock().expect("lock").deliveries)
            .sum::<u64>()
            - before;
        report.deliveries_per_node =
            deliveries as f64 / (f64::from(self.broadcasts.max(1)) * (self.nodes - 1) as f64);
        let traffic = cluster.transport_totals().await;
        report.bytes_per_node_per_s = traffic.bytes_sent as f64
            / self.nodes as f64
            / cluster.started.elapsed().as_secs_f64().max(1e-9);
        tokio::time::sleep(pace).await;

        // 3. A crash: one node stops without a word.
        bar.phase("waiting for the others to declare the killed node dead");
        let victim = rng.random_range(1..self.nodes);
        let victim_addr = cluster.agents[victim].id();
        let killed = Instant::now();
        cluster.agents[victim].abort();
        cluster.agents[victim].wait().await;
        bar.say(format!(
            "killed       node {victim} ({victim_addr}) without a farewell"
        ));
        let survivors = cluster.others(&[victim]);
        let detected = cluster
            .wait_until(&survivors, timeout, |o| {
                o.dead_since(victim_addr, killed).is_some()
            })
            .await;
        let detection = detected
            .then(|| latest(&cluster, &survivors, |o| o.dead_since(victim_addr, killed)) - killed)
            .map(|d| d.as_secs_f64());
        bar.say(format!(
            "detected     all {} others declared node {victim} dead after {}",
            survivors.len(),
            seconds_or(detection, "(not within the timeout)")
        ));
        report.killed = Some((victim_addr, detection));
        tokio::time::sleep(pace).await;

        // 4. A graceful leave.
        bar.phase("waiting for the others to see the leaver go");
        let leaver = loop {
            let candidate = rng.random_range(1..self.nodes);
            if candidate != victim {
                break candidate;
            }
        };
        let leaver_addr = cluster.agents[leaver].id();
        let leaving = Instant::now();
        let handle = cluster.agents[leaver].clone();
        tokio::spawn(async move { handle.leave().await });
        bar.say(format!(
            "leaving      node {leaver} ({leaver_addr}) says goodbye"
        ));
        let witnesses = cluster.others(&[victim, leaver]);
        let seen = cluster
            .wait_until(&witnesses, timeout, |o| o.left.contains(&leaver_addr))
            .await;
        // `Observed` keeps no time for departures: the wait's end is it,
        // to within the 5 ms the wait polls at.
        let gone = seen.then(|| leaving.elapsed().as_secs_f64());
        bar.say(format!(
            "left         all {} others saw node {leaver} leave after {}",
            witnesses.len(),
            seconds_or(gone, "(not within the timeout)")
        ));
        report.left = Some((leaver_addr, gone));

        report.false_positives = cluster
            .observed
            .iter()
            .flat_map(|o| {
                let o = o.lock().expect("lock");
                o.deaths
                    .iter()
                    .filter(|&&(who, at)| !(who == victim_addr && at >= killed))
                    .map(|&(who, _)| who)
                    .collect::<Vec<_>>()
            })
            .collect::<std::collections::HashSet<_>>()
            .len();
        report.wall_s = wall.elapsed().as_secs_f64();
        bar.finish();

        let mut out = std::io::stdout().lock();
        write_summary(&mut out, &report)?;
        figure(&report).write_svg(&self.plot)?;
        println!("infection curves written to {}", self.plot.display());
        drop(out);

        if self.keep {
            println!(
                "still serving http://{api_addr}/ with {} nodes up; Ctrl-C to stop",
                self.nodes - 2
            );
            std::future::pending::<()>().await;
        }
        cluster.abort_all().await;
        Ok(())
    }
}

/// Serves node 0's control API on `listener` and returns the hub its events
/// (and the demo's own `broadcast_sent`) go through.
fn serve_node0(
    agent: &AgentHandle<AnyStrategy>,
    metrics: Arc<Metrics>,
    listener: tokio::net::TcpListener,
    stop: mpsc::Sender<()>,
) -> broadcast::Sender<Arc<Value>> {
    let (events, _) = broadcast::channel::<Arc<Value>>(4096);
    api::forward_events(agent.subscribe(), events.clone(), Arc::clone(&metrics));
    let shared = Arc::new(Shared::<NoAggregate> {
        agent: agent.clone(),
        metrics,
        events: events.clone(),
        input: Mutex::new(None),
        token: None,
        stop,
    });
    tokio::spawn(api::serve(listener, api::router(shared)));
    events
}

/// How many of `who` satisfy `done`.
fn count(cluster: &LocalCluster, who: &[usize], done: impl Fn(&Observed) -> bool) -> usize {
    who.iter()
        .filter(|&&i| done(&cluster.observed[i].lock().expect("observed lock")))
        .count()
}

/// The latest of `at` over `who` (each must have one).
fn latest(
    cluster: &LocalCluster,
    who: &[usize],
    at: impl Fn(&Observed) -> Option<Instant>,
) -> Instant {
    who.iter()
        .filter_map(|&i| at(&cluster.observed[i].lock().expect("observed lock")))
        .max()
        .expect("every node has a time")
}

/// Seconds as `12.3 ms` below one second and `1.23 s` above.
fn seconds_or(v: Option<f64>, missing: &str) -> String {
    match v {
        None => missing.to_string(),
        Some(s) if s < 1.0 => format!("{:.1} ms", s * 1000.0),
        Some(s) => format!("{s:.2} s"),
    }
}

/// A bar while nodes join, then a spinner naming the step, on a terminal's
/// stderr; step lines go to stdout either way.
struct Bar(Option<ProgressBar>);

impl Bar {
    fn new(nodes: u64) -> anyhow::Result<Self> {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Ok(Self(None));
        }
        let bar = ProgressBar::new(nodes);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} nodes  {elapsed}")
                .context("progress template")?,
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        Ok(Self(Some(bar)))
    }

    fn phase(&self, what: &str) {
        if let Some(bar) = &self.0 {
            if what != "joining" {
                let style = ProgressStyle::with_template("{spinner} {msg}  {elapsed}")
                    .expect("a valid template");
                bar.set_style(style);
            }
            bar.set_message(what.to_string());
        }
    }

    fn position(&self, done: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(done);
        }
    }

    /// Prints one step line on stdout, above the bar.
    fn say(&self, line: String) {
        match &self.0 {
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Writes the closing summary.
pub fn write_summary(out: &mut impl std::io::Write, r: &DemoReport) -> anyhow::Result<()> {
    let q = Quantiles::of(&r.to_all_ms);
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
    let incomplete = r.to_all_ms.iter().filter(|t| t.is_none()).count();
    writeln!(out, "summary")?;
    writeln!(
        out,
        "  join              {} until all {} nodes saw each other",
        seconds_or(r.join_s, "not converged"),
        r.nodes
    )?;
    writeln!(
        out,
        "  broadcast to all  p50 {}  max {}  ({} sent, {} incomplete, {:.2} deliveries per node each)",
        ms(q.p50),
        ms(q.max),
        r.to_all_ms.len(),
        incomplete,
        r.deliveries_per_node
    )?;
    if let Some((addr, d)) = r.killed {
        writeln!(
            out,
            "  failure detection {} until every other node declared {addr} dead",
            seconds_or(d, "not detected")
        )?;
    }
    if let Some((addr, d)) = r.left {
        writeln!(
            out,
            "  graceful leave    {} until every other node saw {addr} leave",
            seconds_or(d, "not seen")
        )?;
    }
    writeln!(
        out,
        "  traffic           {:.0} B/node/s sent ({}), from the start until the kill",
        r.bytes_per_node_per_s,
        match r.transport {
            Some(TransportKind::Quic) => "whole QUIC packets",
            _ => "UDP payload",
        }
    )?;
    writeln!(
        out,
        "  false positives   {}   wall {:.1} s",
        r.false_positives, r.wall_s
    )?;
    Ok(())
}

/// Each broadcast's infection curve (the fraction of the other nodes that
/// had it, against time since it was sent) and their mean.
pub fn figure(r: &DemoReport) -> Figure {
    let mut lines = vec![Line {
        name: format!("mean over {} broadcasts", r.deliveries_ms.len()),
        points: cdf(&r.deliveries_ms.concat()),
        kind: LineKind::Measured,
    }];
    for (b, each) in r.deliveries_ms.iter().enumerate().take(5) {
        lines.push(Line {
            name: format!("broadcast {b}"),
            points: cdf(each),
            kind: LineKind::Measured,
        });
    }
    Figure {
        title: format!(
            "infection curves: {} nodes over {} on loopback",
            r.nodes,
            r.transport.map_or("?".to_string(), |t| t.to_string())
        ),
        x_label: "milliseconds after the broadcast".to_string(),
        y_label: "fraction of the other nodes that have it".to_string(),
        y_scale: YScale::Linear,
        y_range: Some((0.0, 1.02)),
        lines,
        bands: Vec::new(),
        notes: vec![
            "measured: wall-clock time from broadcast() to each node's delivery event; the other lines are single broadcasts (the first five)".to_string(),
            "no theory curve: on loopback a hop takes scheduler time, not network time; `gossip-node sim dissemination --plot` draws rounds against theory".to_string(),
        ],
    }
}
