//! `gossip-node bench-net`: a cluster on loopback sockets in one process,
//! measured end to end.
//!
//! Phases, in order: every node joins through the first (join
//! convergence); a quiet window (idle bytes, packets and CPU); broadcasts
//! from random nodes one after another (latency to all, deliveries); one
//! node killed without a farewell (time until every other node declares it
//! dead).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use gossip_sim::Quantiles;
use gossip_strategies::{
    AntiEntropy, AnyStrategy, Flood, Mode, Plumtree, Relay, RumorMongering, TreeStats,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::time::Instant;

use crate::bench_tx::{tree_totals, TxReport, TxStream};
use crate::cli::{seconds, Format};
use crate::cluster::{ClusterSpec, LocalCluster, TransportKind};
use crate::run_agent::{config_for, leave_room_for_seal};
use gossip_apps::bulk::{Bulk, BulkConfig, BulkEvent};
use gossip_apps::fetch::{Fetch, FetchConfig, FetchEvent};
use gossip_apps::{Application, Cluster};
use gossip_core::{Event, MessageId, NodeId};
use gossip_seal::{Keyring, KeyringHandle};
use std::sync::{Arc, Mutex};

/// Dissemination strategies offered by `bench-net`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetStrategy {
    /// Rumor mongering relaying on receipt, backed by anti-entropy
    /// (`RumorMongering::default()`).
    Rumor,
    /// The same, relaying at the next gossip round.
    RumorBatched,
    /// Push-pull anti-entropy with one peer per round.
    AntiEntropy,
    /// Every node sends every new rumor to every member.
    Flood,
    /// Plumtree: an eager spanning tree with lazy announcements
    /// (`Plumtree::default()`).
    Plumtree,
}

impl NetStrategy {
    /// The strategy this choice names.
    pub fn build(self) -> AnyStrategy {
        match self {
            NetStrategy::Rumor => AnyStrategy::Rumor(RumorMongering::default()),
            NetStrategy::RumorBatched => {
                AnyStrategy::Rumor(RumorMongering::default().relay(Relay::Batched))
            }
            NetStrategy::AntiEntropy => {
                AnyStrategy::AntiEntropy(AntiEntropy::new(Mode::PushPull, 1))
            }
            NetStrategy::Flood => AnyStrategy::Flood(Flood),
            NetStrategy::Plumtree => AnyStrategy::Plumtree(Plumtree::default()),
        }
    }
}

/// How `bench-net` sends payloads larger than a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BulkMode {
    /// `gossip_apps::fetch`: an offer broadcast, the body fetched from a
    /// peer (a QUIC stream, or windowed pieces over UDP).
    Fetch,
    /// `gossip_apps::bulk`: every chunk a broadcast.
    Chunks,
}

/// Arguments of `bench-net`.
#[derive(Debug, clap::Args)]
pub struct BenchNetArgs {
    /// Nodes, all in this process, each with its own socket on loopback.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Socket transport.
    #[arg(long, value_enum, default_value_t = TransportKind::Udp)]
    pub transport: TransportKind,
    /// Dissemination strategy.
    #[arg(long, value_enum, default_value_t = NetStrategy::Rumor)]
    pub strategy: NetStrategy,
    /// Broadcasts sent, one after another, from random nodes.
    #[arg(long, default_value_t = 100)]
    pub broadcasts: u32,
    /// SWIM probe interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub probe_interval_ms: u64,
    /// Seconds of quiet, after joining, over which idle traffic and CPU are measured.
    #[arg(long, default_value_t = 10.0)]
    pub idle_secs: f64,
    /// Seconds to let the cluster settle after join convergence, before the idle window.
    #[arg(long, default_value_t = 5.0)]
    pub settle_secs: f64,
    /// Nodes killed (one after another, each once the previous one is
    /// detected) to measure failure detection.
    #[arg(long, default_value_t = 5)]
    pub kills: usize,
    /// Seconds each phase may take before it is reported as not reached.
    #[arg(long, default_value_t = 120.0)]
    pub timeout_secs: f64,
    /// Seed for node randomness and the choice of broadcasters and victim.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seal every frame (UDP only) with one fresh random key shared by the
    /// whole cluster, to measure what sealing costs.
    #[arg(long)]
    pub sealed: bool,
    /// Address nodes bind to (port 0 picks free ports).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,
    /// Also send payloads of this many bytes, larger than a frame, after
    /// the broadcasts (see `--bulk`); 0: none.
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
    /// Bulk payloads sent, one after another, from random nodes.
    #[arg(long, default_value_t = 5)]
    pub payloads: u32,
    /// How payloads larger than a frame travel: fetched from peers
    /// (default), or as chunks broadcast through the strategy (choose
    /// `--strategy plumtree` for those).
    #[arg(long, value_enum, default_value_t = BulkMode::Fetch)]
    pub bulk: BulkMode,
    /// `--bulk fetch`: children per node in each payload's fetch tree
    /// (also the peers a node serves at once).
    #[arg(long, default_value_t = FetchConfig::default().tree_fanout)]
    pub fetch_fanout: usize,
    /// `--bulk chunks`: chunks a payload's origin sends per burst (one
    /// burst every 2 ms).
    #[arg(long, default_value_t = BulkConfig::default().burst_chunks)]
    pub burst_chunks: usize,
    /// Stream transactions (`gossip_apps::tx`) of `--payload-bytes` each at
    /// this many per second over the whole cluster, from random nodes,
    /// for `--stream-secs`, after the broadcasts; 0: none. Choose
    /// `--strategy plumtree` for them.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds the transaction stream (`--rate`) lasts.
    #[arg(long, default_value_t = 60.0)]
    pub stream_secs: f64,
    /// Membership: full views (the node and `--strategy`) or partial
    /// views (HyParView with its own Plumtree tree; joins, idle traffic,
    /// broadcasts and `--kills` at once are measured, see
    /// `crate::bench_partial`).
    #[arg(long, value_enum, default_value_t = crate::agent_config::Membership::Full)]
    pub membership: crate::agent_config::Membership,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also draw the CDFs of broadcast latency (each delivery, and until
    /// every node had it) as an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,
}

/// What `bench-net` measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchNetReport {
    /// Cluster size.
    pub nodes: usize,
    /// Transport used.
    pub transport: TransportKind,
    /// Strategy used.
    pub strategy: NetStrategy,
    /// Whether frames were sealed (`--sealed`).
    pub sealed: bool,
    /// Probe interval, ms.
    pub probe_interval_ms: u64,
    /// Seconds from the first join until every node saw every other alive
    /// (null if not within the timeout).
    pub join_convergence_s: Option<f64>,
    /// Per broadcast: ms until the last other node delivered it.
    pub broadcast_to_all_ms: Quantiles,
    /// Broadcasts sent.
    pub broadcasts: u32,
    /// Broadcasts some node had not delivered within the timeout.
    pub broadcasts_incomplete: u32,
    /// Deliveries per receiving node per broadcast (1.0: each once).
    pub deliveries_per_node: f64,
    /// Rumor copies sent per node per broadcast (redundancy on the wire).
    pub rumor_copies_per_node: f64,
    /// Bytes of lazy announcements (ids without payload, sent by tree
    /// strategies) per node per broadcast.
    pub announce_bytes_per_node_per_broadcast: f64,
    /// Bytes sent per node per second in the idle window, as counted by
    /// the transport (UDP payload; for QUIC, whole QUIC packets).
    pub idle_bytes_per_node_per_s: f64,
    /// Packets sent per node per second in the idle window.
    pub idle_packets_per_node_per_s: f64,
    /// Length of the idle window, s.
    pub idle_window_s: f64,
    /// CPU used by the whole process in the idle window, in percent of
    /// one core (all nodes together).
    pub cpu_percent: f64,
    /// Seconds from killing a node until every other live node declared it
    /// dead, for the slowest of the kills (null if one was not detected
    /// within the timeout).
    pub detection_s: Option<f64>,
    /// The same for each kill, in order.
    pub detection_per_kill_s: Vec<Option<f64>>,
    /// Seconds until the first node declared a victim dead, fastest kill.
    pub detection_first_s: Option<f64>,
    /// Live nodes declared dead by someone during the run.
    pub false_positives: usize,
    /// False death declarations (one per declaring node and victim), by
    /// the phase in which they happened: join, idle, broadcast, detection.
    pub false_declarations_by_phase: [usize; 4],
    /// Plumtree's counters over the broadcast phase, summed over the
    /// nodes (gauges as at its end); null for other strategies.
    pub tree: Option<TreeStats>,
    /// Bulk payloads (`--payload-bytes`), if any were sent.
    pub payloads: Option<PayloadReport>,
    /// The transaction stream (`--rate`), if one ran.
    pub transactions: Option<TxReport>,
    /// Events lost by watchers that fell behind (should be 0).
    pub events_lagged: u64,
    /// Wall-clock seconds of the whole run.
    pub wall_s: f64,
    /// Each delivery's latency, ms after its broadcast (every receiving
    /// node of every broadcast that reached it). Drawn by --plot.
    #[serde(skip)]
    pub delivery_ms: Vec<f64>,
    /// Per broadcast, in order: ms until the last other node delivered it
    /// (null: not within the timeout). Drawn by --plot.
    pub to_all_ms: Vec<Option<f64>>,
}

/// What the bulk payload phase measured (`--payload-bytes`).
#[derive(Clone, Debug, Serialize)]
pub struct PayloadReport {
    /// How they travelled.
    pub mode: BulkMode,
    /// Bytes of each payload.
    pub payload_bytes: usize,
    /// Payloads sent.
    pub payloads: u32,
    /// Fraction of (payload, other node) pairs assembled and verified
    /// within the timeout.
    pub delivered_fraction: f64,
    /// Each delivery's latency after the send, ms (polled every 5 ms).
    pub delivery_ms: PayloadQuantiles,
    /// Bytes every node sent during the phase, as counted by the
    /// transport, per node, over the bytes of the payloads.
    pub bytes_sent_per_node_over_payload: f64,
    /// Payloads whose chunks did not match their hash (should be 0).
    pub hash_mismatches: u64,
    /// `--bulk fetch`: providers abandoned (no progress in time, or
    /// "missing").
    pub providers_abandoned: u64,
}

/// Deliveries of the payload phases as they are followed, one payload at a
/// time; both ways of moving payloads report through it.
#[derive(Default)]
struct PayloadTally {
    delivered: usize,
    latencies: Vec<Option<f64>>,
}

impl PayloadTally {
    /// One payload sent by `origin` at `sent`: `at[i]` is when node `i`
    /// had it (`None`: never within the wait).
    fn record(&mut self, origin: usize, sent: Instant, at: &[Option<Instant>]) {
        for (i, when) in at.iter().enumerate() {
            if i == origin {
                continue;
            }
            self.delivered += usize::from(when.is_some());
            self.latencies
                .push(when.map(|w| (w - sent).as_secs_f64() * 1000.0));
        }
    }

    /// The phase's report; `bytes_sent` is what all transports sent
    /// during it.
    fn report(
        &self,
        args: &BenchNetArgs,
        mode: BulkMode,
        bytes_sent: u64,
        hash_mismatches: u64,
        providers_abandoned: u64,
    ) -> PayloadReport {
        let total = (args.payload_bytes as f64 * f64::from(args.payloads)).max(1.0);
        PayloadReport {
            mode,
            payload_bytes: args.payload_bytes,
            payloads: args.payloads,
            delivered_fraction: self.delivered as f64
                / (f64::from(args.payloads.max(1)) * (args.nodes - 1) as f64),
            delivery_ms: PayloadQuantiles::of(&self.latencies),
            bytes_sent_per_node_over_payload: bytes_sent as f64 / args.nodes as f64 / total,
            hash_mismatches,
            providers_abandoned,
        }
    }
}

/// Quantiles of delivery latency, ms; `None` when some delivery never came.
#[derive(Clone, Debug, Serialize)]
pub struct PayloadQuantiles {
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile (nearest rank).
    pub p95: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl PayloadQuantiles {
    fn of(values: &[Option<f64>]) -> Self {
        let mut sorted: Vec<f64> = values.iter().map(|v| v.unwrap_or(f64::INFINITY)).collect();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if sorted.is_empty() {
                return None;
            }
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            Some(sorted[rank - 1]).filter(|v| v.is_finite())
        };
        Self {
            p50: at(0.5),
            p95: at(0.95),
            max: at(1.0),
        }
    }
}

impl BenchNetArgs {
    /// Runs the measurement on a fresh multi-threaded runtime.
    pub fn run(&self, progress: &mut dyn FnMut(&str)) -> anyhow::Result<BenchNetReport> {
        if self.nodes < 2 {
            bail!("--nodes must be at least 2, got {}", self.nodes);
        }
        if self.probe_interval_ms == 0 {
            bail!("--probe-interval-ms must be positive");
        }
        if self.kills >= self.nodes - 1 {
            bail!(
                "--kills must leave the seed and one other node alive: at most {} with --nodes {}",
                self.nodes.saturating_sub(2),
                self.nodes
            );
        }
        if self.payload_bytes > 64 << 20 {
            bail!("--payload-bytes: at most 67108864 (64 MiB)");
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            bail!("--rate must be a non-negative number of transactions per second");
        }
        if self.rate > 0.0 && self.payload_bytes == 0 {
            bail!("--rate needs --payload-bytes: the size of each transaction");
        }
        if self.sealed && self.transport == TransportKind::Quic {
            bail!("--sealed seals UDP frames; QUIC already encrypts with TLS");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(self.measure(progress))
    }

    async fn measure(&self, progress: &mut dyn FnMut(&str)) -> anyhow::Result<BenchNetReport> {
        let timeout = seconds("timeout-secs", self.timeout_secs)?;
        let idle = seconds("idle-secs", self.idle_secs)?;
        let settle = seconds("settle-secs", self.settle_secs)?;
        let wall = Instant::now();
        let mut config = config_for(
            self.nodes,
            Duration::from_millis(self.probe_interval_ms),
            self.transport,
        );
        // Rumors for one member share a frame when several wait to leave
        // at once (a stream of transactions under load).
        config.coalesce_rumors = true;
        let keyring = if self.sealed {
            leave_room_for_seal(&mut config);
            Some(KeyringHandle::new(Keyring::generate()?))
        } else {
            None
        };
        if self.payload_bytes > 0 && self.rate == 0.0 && self.bulk == BulkMode::Chunks {
            // Every chunk of a payload stays at hand for relaying and
            // repairs, beside the other broadcasts.
            let chunks = self
                .payload_bytes
                .div_ceil(config.max_message_size.get() / 2);
            let stored = config.max_stored_messages.get().max(4 * chunks);
            config.max_stored_messages =
                std::num::NonZeroUsize::new(stored).expect("at least the default");
        }
        if self.rate > 0.0 {
            // A stream keeps ten seconds of its broadcasts at hand, so that
            // a graft or an anti-entropy pull for a rumor that arrived late
            // under load still finds its payload (the default keeps 4,096:
            // four seconds at 1,000 per second).
            let stored = config
                .max_stored_messages
                .get()
                .max((self.rate * 10.0).ceil() as usize);
            config.max_stored_messages =
                std::num::NonZeroUsize::new(stored).expect("at least the default");
        }
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        let spec = ClusterSpec {
            nodes: self.nodes,
            transport: self.transport,
            config,
            strategy: self.strategy.build(),
            seed: self.seed,
            bind: self.bind,
            faults: None,
            keyring,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);

        progress("joining");
        let cluster = LocalCluster::start(&spec).await?;
        let everyone = cluster.others(&[]);
        let joined = cluster
            .wait_until(&everyone, timeout, |o| o.converged_at.is_some())
            .await;
        let join_convergence_s = joined.then(|| {
            everyone
                .iter()
                .filter_map(|&i| cluster.observed[i].lock().expect("lock").converged_at)
                .max()
                .map(|t| (t - cluster.started).as_secs_f64())
        });

        progress("idle window");
        let idle_phase = Instant::now();
        tokio::time::sleep(settle).await;
        let before = cluster.transport_totals().await;
        let cpu = cpu_time::ProcessTime::now();
        let idle_start = Instant::now();
        tokio::time::sleep(idle).await;
        let idle_wall = idle_start.elapsed().as_secs_f64();
        let cpu_s = cpu.elapsed().as_secs_f64();
        let after = cluster.transport_totals().await;
        let per_node_s =
            |a: u64, b: u64| a.saturating_sub(b) as f64 / self.nodes as f64 / idle_wall.max(1e-9);

        progress("broadcasting");
        let broadcast_phase = Instant::now();
        let (copies_before, announce_before) = rumor_copies(&cluster).await;
        let tree_before = tree_totals(&cluster).await;
        let mut latencies = Vec::new();
        let mut delivery_ms = Vec::new();
        let mut incomplete = 0;
        for b in 0..self.broadcasts {
            let origin = rng.random_range(0..self.nodes);
            let sent = Instant::now();
            let id = cluster.agents[origin]
                .broadcast(format!("broadcast {b}").into_bytes())
                .await?;
            let receivers = cluster.others(&[origin]);
            let reached = cluster
                .wait_until(&receivers, timeout.min(Duration::from_secs(30)), |o| {
                    o.delivered.contains_key(&id)
                })
                .await;
            let delivered: Vec<Instant> = receivers
                .iter()
                .filter_map(|&i| {
                    cluster.observed[i]
                        .lock()
                        .expect("lock")
                        .delivered
                        .get(&id)
                        .copied()
                })
                .collect();
            let ms = |at: Instant| (at - sent).as_secs_f64() * 1000.0;
            delivery_ms.extend(delivered.iter().map(|&at| ms(at)));
            if reached {
                let last = delivered.iter().copied().max().expect("all delivered");
                latencies.push(Some(ms(last)));
            } else {
                incomplete += 1;
                latencies.push(None);
            }
            // Let the rumor die down so broadcasts do not overlap.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (copies_after, announce_after) = rumor_copies(&cluster).await;
        let tree = tree_totals(&cluster)
            .await
            .map(|after| after.since(&tree_before.unwrap_or_default()));
        let copies = copies_after - copies_before;
        let announce_bytes = announce_after - announce_before;
        let deliveries: u64 = everyone
            .iter()
            .map(|&i| cluster.observed[i].lock().expect("lock").deliveries)
            .sum();
        let broadcasts = f64::from(self.broadcasts.max(1));
        let transactions = if self.rate > 0.0 {
            progress("transactions");
            let stream = TxStream {
                rate: self.rate,
                secs: seconds("stream-secs", self.stream_secs)?.as_secs_f64(),
                tx_bytes: self.payload_bytes,
                drain_limit: timeout.min(Duration::from_secs(30)),
            };
            Some(stream.run(&cluster, &mut rng).await?)
        } else {
            None
        };
        let payloads = if self.payload_bytes > 0 && self.rate == 0.0 {
            progress("bulk payloads");
            Some(match self.bulk {
                BulkMode::Chunks => self.bulk_phase(&cluster, &mut rng, timeout).await?,
                BulkMode::Fetch => self.fetch_phase(&cluster, &mut rng, timeout).await?,
            })
        } else {
            None
        };

        progress("failure detection");
        let detection_phase = Instant::now();
        // One kill at a time, each once the previous one is detected.
        let mut killed_at: HashMap<SocketAddr, Instant> = HashMap::new();
        let mut dead: Vec<usize> = Vec::new();
        let (mut detection_all, mut detection_first) = (Vec::new(), Vec::new());
        for _ in 0..self.kills {
            let victim = loop {
                let candidate = rng.random_range(1..self.nodes);
                if !dead.contains(&candidate) {
                    break candidate;
                }
            };
            let victim_addr = cluster.agents[victim].id();
            let killed = Instant::now();
            cluster.agents[victim].abort();
            cluster.agents[victim].wait().await;
            dead.push(victim);
            killed_at.insert(victim_addr, killed);
            let survivors = cluster.others(&dead);
            let detected = cluster
                .wait_until(&survivors, timeout, |o| {
                    o.dead_since(victim_addr, killed).is_some()
                })
                .await;
            let down_times: Vec<Instant> = survivors
                .iter()
                .filter_map(|&i| {
                    cluster.observed[i]
                        .lock()
                        .expect("lock")
                        .dead_since(victim_addr, killed)
                })
                .collect();
            let after = |t: &Instant| (*t - killed).as_secs_f64();
            detection_all.push(
                detected
                    .then(|| down_times.iter().max().map(after))
                    .flatten(),
            );
            detection_first.push(down_times.iter().min().map(after));
        }
        // The worst kill; null if any went undetected.
        let detection_s = detection_all
            .iter()
            .try_fold(None::<f64>, |worst, d| {
                d.map(|d| Some(worst.map_or(d, |w| w.max(d))))
            })
            .flatten();
        let detection_first_s = detection_first.iter().flatten().copied().reduce(f64::min);

        let mut false_positives = std::collections::HashSet::new();
        let mut by_phase = [0usize; 4];
        let mut events_lagged = 0;
        for o in cluster.observed.iter() {
            let o = o.lock().expect("lock");
            events_lagged += o.lagged;
            // Every declaration but a victim's after it was killed is false.
            let false_deaths = o
                .deaths
                .iter()
                .filter(|&&(who, at)| killed_at.get(&who).is_none_or(|&k| at < k));
            for &(addr, at) in false_deaths {
                false_positives.insert(addr);
                let phase = [idle_phase, broadcast_phase, detection_phase]
                    .iter()
                    .filter(|&&start| at >= start)
                    .count();
                by_phase[phase] += 1;
            }
        }
        cluster.abort_all().await;

        Ok(BenchNetReport {
            nodes: self.nodes,
            transport: self.transport,
            strategy: self.strategy,
            sealed: self.sealed,
            probe_interval_ms: self.probe_interval_ms,
            join_convergence_s: join_convergence_s.flatten(),
            broadcast_to_all_ms: Quantiles::of(&latencies),
            to_all_ms: latencies,
            delivery_ms,
            broadcasts: self.broadcasts,
            broadcasts_incomplete: incomplete,
            deliveries_per_node: deliveries as f64 / (broadcasts * (self.nodes - 1) as f64),
            rumor_copies_per_node: copies as f64 / (broadcasts * self.nodes as f64),
            announce_bytes_per_node_per_broadcast: announce_bytes as f64
                / (broadcasts * self.nodes as f64),
            idle_bytes_per_node_per_s: per_node_s(after.bytes_sent, before.bytes_sent),
            idle_packets_per_node_per_s: per_node_s(after.packets_sent, before.packets_sent),
            idle_window_s: idle_wall,
            cpu_percent: 100.0 * cpu_s / idle_wall.max(1e-9),
            detection_s,
            detection_per_kill_s: detection_all,
            detection_first_s,
            false_positives: false_positives.len(),
            false_declarations_by_phase: by_phase,
            tree,
            payloads,
            transactions,
            events_lagged,
            wall_s: wall.elapsed().as_secs_f64(),
        })
    }
}

impl BenchNetArgs {
    /// Sends `--payloads` bulk payloads of `--payload-bytes`, one after
    /// another from random nodes, each followed until every other node
    /// assembled it or the timeout.
    async fn bulk_phase(
        &self,
        cluster: &LocalCluster,
        rng: &mut ChaCha8Rng,
        timeout: Duration,
    ) -> anyhow::Result<PayloadReport> {
        let config = BulkConfig {
            max_payload_bytes: (self.payload_bytes as u64)
                .max(BulkConfig::default().max_payload_bytes),
            burst_chunks: self.burst_chunks.max(1),
            ..BulkConfig::default()
        };
        for agent in &cluster.agents {
            agent.add_app(Bulk::new(config.clone())).await?;
        }
        let before = cluster.transport_totals().await;
        let mut tally = PayloadTally::default();
        let limit = timeout.min(Duration::from_secs(30));
        for p in 0..self.payloads {
            let origin = rng.random_range(0..self.nodes);
            let payload = test_payload(self.payload_bytes, p);
            let sent = Instant::now();
            let id = cluster.agents[origin]
                .with_app::<Bulk, _, _>(move |app, node, now| app.send(now, payload, node))
                .await?
                .ok_or_else(|| anyhow::anyhow!("node {origin} hosts no bulk application"))??;
            let mut at: Vec<Option<Instant>> = vec![None; self.nodes];
            at[origin] = Some(sent);
            while at.iter().any(Option::is_none) && sent.elapsed() < limit {
                tokio::time::sleep(Duration::from_millis(5)).await;
                for (i, agent) in cluster.agents.iter().enumerate() {
                    if at[i].is_some() {
                        continue;
                    }
                    let got = agent
                        .with_app::<Bulk, _, _>(move |app, _, _| {
                            let mut got = false;
                            while let Some(event) = app.poll_event() {
                                if let BulkEvent::Delivered { id: which, .. } = event {
                                    got |= which == id;
                                }
                            }
                            got
                        })
                        .await?
                        .unwrap_or(false);
                    if got {
                        at[i] = Some(Instant::now());
                    }
                }
            }
            tally.record(origin, sent, &at);
            // Let repairs and announcements die down between payloads.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let after = cluster.transport_totals().await;
        let mut hash_mismatches = 0;
        for agent in &cluster.agents {
            hash_mismatches += agent
                .with_app::<Bulk, _, _>(|app, _, _| app.stats().hash_mismatches)
                .await?
                .unwrap_or(0);
        }
        Ok(tally.report(
            self,
            BulkMode::Chunks,
            after.bytes_sent.saturating_sub(before.bytes_sent),
            hash_mismatches,
            0,
        ))
    }
}

impl BenchNetArgs {
    /// Sends `--payloads` payloads of `--payload-bytes` with
    /// `gossip_apps::fetch`, one after another from random nodes, each
    /// followed until every other node verified it or the timeout.
    async fn fetch_phase(
        &self,
        cluster: &LocalCluster,
        rng: &mut ChaCha8Rng,
        timeout: Duration,
    ) -> anyhow::Result<PayloadReport> {
        let config = FetchConfig {
            max_payload_bytes: (self.payload_bytes as u64)
                .max(FetchConfig::default().max_payload_bytes),
            tree_fanout: self.fetch_fanout.max(1),
            max_serving: self.fetch_fanout.max(1),
            ..FetchConfig::default()
        };
        let mut arrivals = Vec::new();
        for agent in &cluster.agents {
            let app = TimedFetch::new(Fetch::new(config.clone()));
            arrivals.push(Arc::clone(&app.arrivals));
            agent.add_app(app).await?;
        }
        let before = cluster.transport_totals().await;
        let mut tally = PayloadTally::default();
        let limit = timeout.min(Duration::from_secs(30));
        for p in 0..self.payloads {
            let origin = rng.random_range(0..self.nodes);
            let payload = test_payload(self.payload_bytes, p);
            let sent = Instant::now();
            let id = cluster.agents[origin]
                .with_app::<TimedFetch, _, _>(move |app, node, now| {
                    app.inner.send(now, payload, Vec::new(), node)
                })
                .await?
                .ok_or_else(|| anyhow::anyhow!("node {origin} hosts no fetch application"))??;
            let mut at: Vec<Option<Instant>> = vec![None; self.nodes];
            at[origin] = Some(sent);
            // Each node's application stamps its deliveries itself, on
            // the node's task: no polling through the agents, which would
            // cost the nodes time and round the figures to its period.
            while at.iter().any(Option::is_none) && sent.elapsed() < limit {
                tokio::time::sleep(Duration::from_millis(20)).await;
                for (i, arrived) in arrivals.iter().enumerate() {
                    if at[i].is_none() {
                        at[i] = arrived.lock().expect("lock").get(&id).copied();
                    }
                }
            }
            tally.record(origin, sent, &at);
            // Let the last transfers and "done"s settle between payloads.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let after = cluster.transport_totals().await;
        let (mut hash_mismatches, mut providers_abandoned) = (0, 0);
        for agent in &cluster.agents {
            let stats = agent
                .with_app::<TimedFetch, _, _>(|app, _, _| app.inner.stats())
                .await?
                .unwrap_or_default();
            hash_mismatches += stats.hash_mismatches;
            providers_abandoned += stats.providers_abandoned;
        }
        Ok(tally.report(
            self,
            BulkMode::Fetch,
            after.bytes_sent.saturating_sub(before.bytes_sent),
            hash_mismatches,
            providers_abandoned,
        ))
    }
}

/// A [`Fetch`] that stamps each delivery with the time it happened.
struct TimedFetch {
    inner: Fetch,
    arrivals: Arc<Mutex<HashMap<MessageId, Instant>>>,
}

impl TimedFetch {
    fn new(inner: Fetch) -> Self {
        Self {
            inner,
            arrivals: Arc::default(),
        }
    }

    fn stamp(&mut self) {
        while let Some(event) = self.inner.poll_event() {
            if let FetchEvent::Delivered { offer, .. } = event {
                self.arrivals
                    .lock()
                    .expect("lock")
                    .insert(offer.id, Instant::now());
            }
        }
    }
}

impl Application for TimedFetch {
    fn handle_event(&mut self, now: std::time::Instant, event: &Event, cluster: &mut dyn Cluster) {
        self.inner.handle_event(now, event, cluster);
        self.stamp();
    }

    fn handle_timeout(&mut self, now: std::time::Instant, cluster: &mut dyn Cluster) {
        self.inner.handle_timeout(now, cluster);
        self.stamp();
    }

    fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.inner.poll_timeout()
    }

    fn handle_bulk(
        &mut self,
        now: std::time::Instant,
        from: NodeId,
        body: &[u8],
        cluster: &mut dyn Cluster,
    ) {
        self.inner.handle_bulk(now, from, body, cluster);
        self.stamp();
    }
}

/// Rumor copies and announcement bytes sent so far, summed over the nodes.
async fn rumor_copies(cluster: &LocalCluster) -> (u64, u64) {
    let (mut copies, mut announce_bytes) = (0, 0);
    for agent in &cluster.agents {
        if let Ok(stats) = agent.stats().await {
            copies += stats.node.rumors_sent;
            announce_bytes += stats.node.announce_bytes_sent;
        }
    }
    (copies, announce_bytes)
}

/// Payload `p` of a run: `len` bytes that differ from payload to payload
/// (so no two hash alike) without costing a random generator.
fn test_payload(len: usize, p: u32) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32 ^ p).wrapping_mul(0x9e37_79b9).to_le_bytes()[3])
        .collect()
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "not reached".into(), |v| format!("{v:.digits$}"))
}

/// Writes `r` as an aligned table.
pub fn write_table(out: &mut impl std::io::Write, r: &BenchNetReport) -> anyhow::Result<()> {
    writeln!(
        out,
        "bench-net: {} nodes over {}{} on loopback, strategy {:?}, probe {} ms",
        r.nodes,
        r.transport,
        if r.sealed { " (sealed)" } else { "" },
        r.strategy,
        r.probe_interval_ms
    )?;
    writeln!(
        out,
        "  join convergence     {} s",
        opt(r.join_convergence_s, 2)
    )?;
    writeln!(
        out,
        "  broadcast to all     p50 {} ms  p99 {} ms  max {} ms  ({} sent, {} incomplete)",
        opt(r.broadcast_to_all_ms.p50, 1),
        opt(r.broadcast_to_all_ms.p99, 1),
        opt(r.broadcast_to_all_ms.max, 1),
        r.broadcasts,
        r.broadcasts_incomplete
    )?;
    writeln!(
        out,
        "  deliveries           {:.3} per node per broadcast, {:.2} rumor copies sent per node, {:.1} B of announcements per node",
        r.deliveries_per_node, r.rumor_copies_per_node, r.announce_bytes_per_node_per_broadcast
    )?;
    if let Some(t) = &r.tree {
        writeln!(
            out,
            "  tree                 {} grafts ({} deliveries by graft), {} prunes, {} link requests ({} given up), {} eager and {} lazy link ends",
            t.grafts_sent,
            t.graft_deliveries,
            t.prunes_sent,
            t.link_requests_sent,
            t.link_requests_expired,
            t.eager_links,
            t.lazy_links
        )?;
    }
    if let Some(p) = &r.payloads {
        writeln!(
            out,
            "  bulk payloads        {} of {} B ({:?}): {:.4} delivered, p50 {} ms  p95 {} ms  max {} ms, {:.3}x the payload sent per node, {} hash mismatches, {} providers abandoned",
            p.payloads,
            p.payload_bytes,
            p.mode,
            p.delivered_fraction,
            opt(p.delivery_ms.p50, 1),
            opt(p.delivery_ms.p95, 1),
            opt(p.delivery_ms.max, 1),
            p.bytes_sent_per_node_over_payload,
            p.hash_mismatches,
            p.providers_abandoned
        )?;
    }
    if let Some(t) = &r.transactions {
        writeln!(
            out,
            "  transactions         {} of {} B at {:.0}/s ({:.0}/s achieved) for {:.1} s: {:.5} delivered, p50 {} ms  p99 {} ms  max {} ms, {:.3}x the transaction bytes sent per node, announcements {:.2} B per item per link",
            t.submitted,
            t.tx_bytes,
            t.rate_per_s,
            t.achieved_rate_per_s,
            t.stream_s,
            t.delivered_fraction,
            opt(t.delivery_ms.p50, 1),
            opt(t.delivery_ms.p99, 1),
            opt(t.delivery_ms.max, 1),
            t.bytes_sent_per_node_over_tx_bytes,
            t.announce_bytes_per_item_per_link
        )?;
        writeln!(
            out,
            "  transaction copies   {:.3} sent and {:.3} duplicates received per node per transaction, {} members declared dead meanwhile",
            t.rumor_copies_per_node_per_tx, t.duplicates_per_node_per_tx, t.members_declared_dead
        )?;
        if let Some(tree) = &t.tree {
            writeln!(
                out,
                "  tree (all nodes)     {} grafts, {} prunes, {} made eager, {} made lazy, {} graft deliveries; {} eager / {} lazy link ends at the end",
                tree.grafts_sent,
                tree.prunes_sent,
                tree.links_made_eager,
                tree.links_made_lazy,
                tree.graft_deliveries,
                tree.eager_links,
                tree.lazy_links
            )?;
        }
    }
    writeln!(
        out,
        "  idle traffic         {:.1} B and {:.2} packets per node per s over {:.1} s",
        r.idle_bytes_per_node_per_s, r.idle_packets_per_node_per_s, r.idle_window_s
    )?;
    writeln!(
        out,
        "  idle cpu             {:.1}% of one core, all nodes",
        r.cpu_percent
    )?;
    writeln!(
        out,
        "  failure detection    all, worst of {} kills {} s (each: {}), first {} s",
        r.detection_per_kill_s.len(),
        opt(r.detection_s, 2),
        r.detection_per_kill_s
            .iter()
            .map(|d| opt(*d, 2))
            .collect::<Vec<_>>()
            .join(" "),
        opt(r.detection_first_s, 2)
    )?;
    writeln!(
        out,
        "  false positives      {} (declarations by phase join/idle/broadcast/detection: {:?})   events lagged {}   wall {:.1} s",
        r.false_positives, r.false_declarations_by_phase, r.events_lagged, r.wall_s
    )?;
    Ok(())
}
