//! `gossip-node sim blocks`: payloads larger than a frame (blocks) on
//! simulated nodes ([`gossip_sim::run_blocks`]), chunked by
//! `gossip_apps::bulk` over Plumtree or rumor mongering, or offered and
//! fetched by `gossip_apps::fetch` (`--transfer fetch`).

use std::io::Write;
use std::time::Duration;

use gossip_sim::{run_blocks, BlockTransfer, BlocksReport, BlocksScenario};
use gossip_strategies::{AnyStrategy, Plumtree, RumorMongering};

use crate::cli::Format;

/// Strategies `sim blocks` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BlocksStrategy {
    /// `Plumtree::default()`: about one copy per node.
    Plumtree,
    /// `RumorMongering::default()`, for comparison.
    Rumor,
}

/// How `sim blocks` moves a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransferArg {
    /// Frame-sized chunks, each broadcast through the strategy
    /// (`gossip_apps::bulk`).
    Chunks,
    /// An offer broadcast through the strategy, then the body fetched from
    /// a peer in windowed pieces (`gossip_apps::fetch`, as over UDP).
    Fetch,
}

/// Arguments of `sim blocks`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  gossip-node sim blocks --nodes 100\n  \
                        gossip-node sim blocks --nodes 100 --block-bytes 1048576 --loss 0.01 --format json\n  \
                        gossip-node sim blocks --nodes 100 --transfer fetch")]
pub struct BlocksSimArgs {
    /// Cluster size.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Seed for every random choice; the same seed replays the same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Probability that any frame is lost, in [0, 0.5).
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Size of each block in bytes (at most 64 MiB).
    #[arg(long, default_value_t = 1 << 20)]
    pub block_bytes: usize,
    /// Blocks sent, each from a random node.
    #[arg(long, default_value_t = 10)]
    pub blocks: usize,
    /// Seconds between blocks (each block is followed for this long).
    #[arg(long, default_value_t = 2.0)]
    pub interval: f64,
    /// Small broadcasts before the first block, 200 ms apart, as a running
    /// cluster would have made (a tree strategy prunes its links on them).
    #[arg(long, default_value_t = 10)]
    pub warm_up: usize,
    /// Dissemination strategy.
    #[arg(long, value_enum, default_value_t = BlocksStrategy::Plumtree)]
    pub strategy: BlocksStrategy,
    /// How a block travels.
    #[arg(long, value_enum, default_value_t = TransferArg::Chunks)]
    pub transfer: TransferArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

impl BlocksSimArgs {
    /// The scenario these arguments describe.
    pub fn scenario(&self) -> anyhow::Result<BlocksScenario> {
        if !(2..=5000).contains(&self.nodes) {
            anyhow::bail!("--nodes: between 2 and 5000 (every node is simulated in full)");
        }
        if !(0.0..0.5).contains(&self.loss) {
            anyhow::bail!("--loss must be within [0, 0.5)");
        }
        if self.block_bytes == 0 || self.block_bytes > 64 << 20 {
            anyhow::bail!("--block-bytes: between 1 and 67108864");
        }
        if !(self.interval > 0.0 && self.interval <= 600.0) {
            anyhow::bail!("--interval: seconds in (0, 600]");
        }
        Ok(BlocksScenario {
            nodes: self.nodes,
            seed: self.seed,
            loss: self.loss,
            block_bytes: self.block_bytes,
            blocks: self.blocks.max(1),
            interval: Duration::from_secs_f64(self.interval),
            warm_up: self.warm_up.min(10_000),
            transfer: match self.transfer {
                TransferArg::Chunks => BlockTransfer::Chunks,
                TransferArg::Fetch => BlockTransfer::Fetch,
            },
        })
    }

    /// Runs the scenario, telling `progress` the blocks done.
    pub fn run(&self, progress: impl FnMut(usize)) -> anyhow::Result<BlocksReport> {
        let scenario = self.scenario()?;
        let strategy = match self.strategy {
            BlocksStrategy::Plumtree => AnyStrategy::Plumtree(Plumtree::default()),
            BlocksStrategy::Rumor => AnyStrategy::Rumor(RumorMongering::default()),
        };
        Ok(run_blocks(&scenario, &strategy, progress))
    }
}

/// The report as aligned text.
pub fn write_table(out: &mut impl Write, r: &BlocksReport) -> anyhow::Result<()> {
    let s = &r.scenario;
    writeln!(
        out,
        "blocks: {} nodes, {} blocks of {} B ({:?}) after {} warm-up broadcasts, loss {}, seed {}",
        s.nodes, s.blocks, s.block_bytes, s.transfer, s.warm_up, s.loss, s.seed
    )?;
    writeln!(
        out,
        "  delivered            {:.4} of (block, node) pairs, {} hash mismatches",
        r.delivered_fraction, r.hash_mismatches
    )?;
    writeln!(
        out,
        "  delivery             p50 {} s  p99 {} s  max {} s",
        crate::cli::secs_or_never(r.delivery_s.p50),
        crate::cli::secs_or_never(r.delivery_s.p99),
        crate::cli::secs_or_never(r.delivery_s.max)
    )?;
    writeln!(
        out,
        "  bytes sent per node  {:.3}x the payload (most by one node {:.2}x)",
        r.bytes_sent_per_node_over_payload, r.max_bytes_sent_by_a_node_over_payload
    )?;
    Ok(())
}
