//! `gossip-node sim kv`: the replicated key-value store on simulated nodes
//! ([`gossip_sim::run_kv`]), with rumor mongering's default preset.

use std::io::Write;

use gossip_sim::{run_kv, KvReport, KvScenario};
use gossip_strategies::RumorMongering;

use crate::cli::Format;

/// Arguments of `sim kv`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  gossip-node sim kv --nodes 100 --loss 0.01\n  \
                        gossip-node sim kv --nodes 1000 --idle-keys 100000 --runs 100 --format json"
)]
pub struct KvSimArgs {
    /// Cluster size of the write, partition and catch-up phases (the
    /// catch-up phase uses at most 20 nodes).
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Seed for every random choice; the same seed replays the same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Probability that any frame is lost, in [0, 1).
    #[arg(long, default_value_t = 0.01)]
    pub loss: f64,
    /// Writes whose visibility is measured, 20 ms apart on random nodes.
    #[arg(long, default_value_t = 200)]
    pub writes: usize,
    /// Nodes crashed before the writes [default: nodes / 50].
    #[arg(long)]
    pub crash: Option<usize>,
    /// Keys each node of the idle phase holds.
    #[arg(long, default_value_t = 100_000)]
    pub idle_keys: usize,
    /// Nodes of the idle phase.
    #[arg(long, default_value_t = 10)]
    pub idle_nodes: usize,
    /// Keys changed while one node is down.
    #[arg(long, default_value_t = 10_000)]
    pub catch_up_changes: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub value_len: usize,
    /// Randomized partition-and-delete runs counting resurrections.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Keys deleted (after being written) in the early-collection phase,
    /// 20 ms apart, with the default grace of 24 h.
    #[arg(long, default_value_t = 200)]
    pub gc_deletes: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

impl KvSimArgs {
    /// The scenario these arguments describe.
    pub fn scenario(&self) -> anyhow::Result<KvScenario> {
        if self.nodes < 4 {
            anyhow::bail!("--nodes: at least 4");
        }
        if self.nodes > 5000 {
            anyhow::bail!("--nodes: at most 5000 (every node is simulated in full)");
        }
        if !(0.0..0.5).contains(&self.loss) {
            anyhow::bail!("--loss must be within [0, 0.5)");
        }
        if self.value_len > 1000 {
            anyhow::bail!("--value-len: at most 1000 bytes (a write fits one frame)");
        }
        let mut s = KvScenario::new(self.nodes);
        s.seed = self.seed;
        s.loss = self.loss;
        s.writes = self.writes.max(1);
        s.crash = self.crash.unwrap_or(self.nodes / 50).min(self.nodes - 2);
        s.idle_keys = self.idle_keys;
        s.idle_nodes = self.idle_nodes.max(2);
        s.catch_up_changes = self.catch_up_changes.max(1);
        s.value_len = self.value_len;
        s.runs = self.runs;
        s.gc_deletes = self.gc_deletes.max(1);
        Ok(s)
    }

    /// Runs the scenario, telling `progress` each phase.
    pub fn run(&self, progress: impl FnMut(&str)) -> anyhow::Result<KvReport> {
        let scenario = self.scenario()?;
        Ok(run_kv(&scenario, &RumorMongering::default(), progress))
    }
}

/// The report as aligned text.
pub fn write_table(out: &mut impl Write, r: &KvReport) -> anyhow::Result<()> {
    let s = &r.scenario;
    writeln!(
        out,
        "kv: {} nodes, loss {}, seed {}, {} writes of {} B, {} crashed",
        s.nodes, s.loss, s.seed, s.writes, s.value_len, s.crash
    )?;
    writeln!(
        out,
        "  visible on every live node   p50 {} s  p99 {} s  max {} s  ({} never)",
        crate::cli::secs_or_never(r.visible_s.p50),
        crate::cli::secs_or_never(r.visible_s.p99),
        crate::cli::secs_or_never(r.visible_s.max),
        r.not_visible
    )?;
    writeln!(
        out,
        "  bytes per write per node     {:.1}",
        r.bytes_per_write_per_node
    )?;
    writeln!(
        out,
        "  idle, {} keys, {} nodes     {:.1} B/node/s",
        r.idle_keys, s.idle_nodes, r.idle_bytes_per_node_per_s
    )?;
    writeln!(
        out,
        "  catch-up after {} changes   {} s, {} B for {} B changed ({:.2}x)",
        s.catch_up_changes,
        crate::cli::secs_or_never(r.catch_up_s),
        r.catch_up_bytes,
        r.changed_bytes,
        r.catch_up_ratio
    )?;
    writeln!(
        out,
        "  partition (10 s, halves)     {} of {} keys divergent at the heal; converged {} s after",
        r.partition_divergent_keys,
        r.partition_writes,
        crate::cli::secs_or_never(r.converge_after_heal_s)
    )?;
    writeln!(
        out,
        "  collection, grace 24 h       p50 {} s  p99 {} s  max {} s after a delete; 10 s after {} deletes: {:.2} tombstones, {:.2} guards per node",
        crate::cli::secs_or_never(r.tombstone_collect_s.p50),
        crate::cli::secs_or_never(r.tombstone_collect_s.p99),
        crate::cli::secs_or_never(r.tombstone_collect_s.max),
        s.gc_deletes,
        r.tombstones_10s_after_deletes,
        r.guards_10s_after_deletes
    )?;
    writeln!(
        out,
        "  randomized runs              {} runs, {} deletes, {} resurrections, {} tombstones collected early",
        r.resurrection_runs, r.deletes, r.resurrections, r.collected_early
    )?;
    writeln!(
        out,
        "  after GC (per node, mean)    {:.2} tombstones, {:.2} live keys, {:.2} deletes within the grace",
        r.tombstones_after_gc, r.live_keys_after_gc, r.deletes_within_grace
    )?;
    Ok(())
}
