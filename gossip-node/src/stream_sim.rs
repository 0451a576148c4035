//! `gossip-node sim stream`: a steady stream of small broadcasts from
//! random origins on simulated nodes ([`gossip_sim::run_stream`]), the
//! noise-free twin of `bench-net --rate`: copies per node, latency, and
//! how often the tree grafted and pruned.

use std::io::Write;
use std::time::Duration;

use gossip_sim::{run_stream, StreamReport, StreamScenario};
use gossip_strategies::{AnyStrategy, Plumtree, RumorMongering, TreeStats};
use serde::Serialize;

use crate::cli::Format;

/// Strategies `sim stream` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StreamStrategy {
    /// `Plumtree::default()`.
    Plumtree,
    /// `RumorMongering::default()`, for comparison.
    Rumor,
}

/// Arguments of `sim stream`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  gossip-node sim stream --nodes 100 --rate 1000 --secs 10\n  \
                        gossip-node sim stream --nodes 100 --rate 200 --format json"
)]
pub struct StreamSimArgs {
    /// Cluster size.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Seed for every random choice; the same seed replays the same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Probability that any frame is lost, in [0, 0.5).
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Broadcasts per second over the cluster, each from a random node.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of broadcasts.
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// Bytes of each broadcast.
    #[arg(long, default_value_t = 250)]
    pub payload_bytes: usize,
    /// Broadcasts before the stream, 200 ms apart (not measured).
    #[arg(long, default_value_t = 10)]
    pub warm_up: usize,
    /// Plumtree only: origins whose own tree each node keeps (0: one
    /// shared tree for all origins, as before origin trees).
    #[arg(long, default_value_t = Plumtree::default().max_origin_trees)]
    pub max_origin_trees: usize,
    /// Dissemination strategy.
    #[arg(long, value_enum, default_value_t = StreamStrategy::Plumtree)]
    pub strategy: StreamStrategy,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// What `sim stream` measured: the stream, and the tree's counters summed
/// over every node (Plumtree only).
#[derive(Clone, Debug, Serialize)]
pub struct StreamSimReport {
    /// The stream's figures.
    #[serde(flatten)]
    pub stream: StreamReport,
    /// Grafts, prunes and link changes over the whole run (warm-up
    /// included), summed over the nodes; link counts at the end.
    pub tree: Option<TreeStats>,
}

impl StreamSimArgs {
    /// The scenario these arguments describe.
    pub fn scenario(&self) -> anyhow::Result<StreamScenario> {
        if !(2..=5000).contains(&self.nodes) {
            anyhow::bail!("--nodes: between 2 and 5000 (every node is simulated in full)");
        }
        if !(0.0..0.5).contains(&self.loss) {
            anyhow::bail!("--loss must be within [0, 0.5)");
        }
        if !(self.rate > 0.0 && self.rate <= 100_000.0) {
            anyhow::bail!("--rate: broadcasts per second in (0, 100000]");
        }
        if !(self.secs > 0.0 && self.secs <= 600.0) {
            anyhow::bail!("--secs: seconds in (0, 600]");
        }
        if !(8..=1024).contains(&self.payload_bytes) {
            anyhow::bail!("--payload-bytes: between 8 and 1024");
        }
        Ok(StreamScenario {
            nodes: self.nodes,
            seed: self.seed,
            loss: self.loss,
            rate: self.rate,
            secs: self.secs,
            payload_bytes: self.payload_bytes,
            warm_up: self.warm_up.min(10_000),
            drain: Duration::from_secs(30),
        })
    }

    /// Runs the scenario.
    pub fn run(&self) -> anyhow::Result<StreamSimReport> {
        let scenario = self.scenario()?;
        let strategy = match self.strategy {
            StreamStrategy::Plumtree => {
                AnyStrategy::Plumtree(Plumtree::default().max_origin_trees(self.max_origin_trees))
            }
            StreamStrategy::Rumor => AnyStrategy::Rumor(RumorMongering::default()),
        };
        let mut tree: Option<TreeStats> = None;
        let stream = run_stream(&scenario, &strategy, |node| {
            if let Some(stats) = node.strategy().tree_stats() {
                tree.get_or_insert_with(TreeStats::default).add(&stats);
            }
        })
        .map_err(anyhow::Error::msg)?;
        Ok(StreamSimReport { stream, tree })
    }
}

/// The report as aligned text.
pub fn write_table(out: &mut impl Write, r: &StreamSimReport) -> anyhow::Result<()> {
    let s = &r.stream.scenario;
    let ms = |v: Option<f64>| v.map_or_else(|| "never".to_string(), |v| format!("{v:.1}"));
    writeln!(
        out,
        "stream: {} nodes, {}/s for {} s of {} B after {} warm-up broadcasts, loss {}, seed {}",
        s.nodes, s.rate, s.secs, s.payload_bytes, s.warm_up, s.loss, s.seed
    )?;
    let st = &r.stream;
    writeln!(
        out,
        "  delivered          {:.4} of (broadcast, node) pairs; p50 {} ms  p99 {} ms  max {} ms",
        st.delivered_fraction,
        ms(st.delivery_ms.p50),
        ms(st.delivery_ms.p99),
        ms(st.delivery_ms.max)
    )?;
    writeln!(
        out,
        "  copies per node    {:.3} sent, {:.3} duplicates received (per broadcast)",
        st.copies_per_node_per_rumor, st.duplicates_per_node_per_rumor
    )?;
    writeln!(
        out,
        "  bytes per node     {:.3}x the payload; announcements {:.1} B, grafts/prunes {:.2} B per broadcast",
        st.bytes_sent_per_node_over_payload,
        st.announce_bytes_per_node_per_rumor,
        st.tree_control_bytes_per_node_per_rumor
    )?;
    writeln!(out, "  declared dead      {}", st.members_declared_dead)?;
    if let Some(t) = &r.tree {
        writeln!(
            out,
            "  tree (all nodes)   {} grafts, {} link requests, {} prunes, {} made eager, {} made lazy, {} graft deliveries; {} eager / {} lazy link ends now",
            t.grafts_sent,
            t.link_requests_sent,
            t.prunes_sent,
            t.links_made_eager,
            t.links_made_lazy,
            t.graft_deliveries,
            t.eager_links,
            t.lazy_links
        )?;
    }
    Ok(())
}
