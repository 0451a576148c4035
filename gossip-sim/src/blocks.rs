//! Payloads larger than a frame on simulated nodes: blocks sent from
//! random nodes, how many nodes assemble each one, how long it takes and
//! what it costs on the wire (`gossip-node sim blocks`). A block travels
//! either as chunks broadcast through the strategy
//! ([`gossip_apps::bulk::Bulk`]) or as an offer and a fetch from a peer
//! ([`gossip_apps::fetch::Fetch`]; in the simulator, windowed pieces in
//! direct messages, as over UDP).
//!
//! The simulated network has latency and loss but no bandwidth limit, so
//! the times here are hops and repairs, not transfer times; the bytes are
//! exact.

use std::net::SocketAddr;
use std::time::Duration;

use std::time::Instant;

use gossip_apps::bulk::{Bulk, BulkConfig, BulkEvent};
use gossip_apps::fetch::{Fetch, FetchConfig, FetchEvent};
use gossip_apps::{Application, Cluster};
use gossip_core::{Config, Strategy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::apps::AppSim;
use crate::net::{LinkModel, Observer, Simulator};
use crate::scenario::Quantiles;

/// A bulk payload experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlocksScenario {
    /// Cluster size.
    pub nodes: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Probability that a frame is lost.
    pub loss: f64,
    /// Size of each block, bytes.
    pub block_bytes: usize,
    /// Blocks sent, one after another, each from a random node.
    pub blocks: usize,
    /// Time between blocks.
    pub interval: Duration,
    /// Small broadcasts, 200 ms apart, before the first block, as a
    /// running cluster would have made (not measured).
    pub warm_up: usize,
    /// How a block travels. Absent from the JSON when it is the default
    /// (chunks), as in reports written before the field existed.
    #[serde(default, skip_serializing_if = "BlockTransfer::is_chunks")]
    pub transfer: BlockTransfer,
}

/// How a block travels in a [`BlocksScenario`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockTransfer {
    /// Frame-sized chunks, each a broadcast through the strategy
    /// ([`gossip_apps::bulk`]).
    #[default]
    Chunks,
    /// An offer broadcast, then the body fetched from a peer
    /// ([`gossip_apps::fetch`]).
    Fetch,
}

impl BlockTransfer {
    fn is_chunks(&self) -> bool {
        *self == BlockTransfer::Chunks
    }
}

/// What [`run_blocks`] needs of the application that carries the blocks.
trait BlockCarrier: Application + Sized {
    /// How the application names a payload.
    type Id: Copy + PartialEq;
    /// The application with its defaults, taking payloads of
    /// `max_payload_bytes` at least.
    fn carrying(max_payload_bytes: u64) -> Self;
    /// Sends `block` from this node; `None` if refused.
    fn send_block(
        &mut self,
        now: Instant,
        block: Vec<u8>,
        node: &mut dyn Cluster,
    ) -> Option<Self::Id>;
    /// The payloads delivered since the last call.
    fn take_delivered(&mut self) -> Vec<Self::Id>;
    /// Assembled payloads whose hash did not match.
    fn hash_mismatches(&self) -> u64;
}

impl BlockCarrier for Bulk {
    type Id = gossip_apps::bulk::BulkId;
    fn carrying(max_payload_bytes: u64) -> Self {
        Bulk::new(BulkConfig {
            max_payload_bytes: max_payload_bytes.max(BulkConfig::default().max_payload_bytes),
            ..BulkConfig::default()
        })
    }
    fn send_block(
        &mut self,
        now: Instant,
        block: Vec<u8>,
        node: &mut dyn Cluster,
    ) -> Option<Self::Id> {
        self.send(now, block, node).ok()
    }
    fn take_delivered(&mut self) -> Vec<Self::Id> {
        core::iter::from_fn(|| self.poll_event())
            .filter_map(|event| match event {
                BulkEvent::Delivered { id, .. } => Some(id),
                _ => None,
            })
            .collect()
    }
    fn hash_mismatches(&self) -> u64 {
        self.stats().hash_mismatches
    }
}

impl BlockCarrier for Fetch {
    type Id = gossip_core::MessageId;
    fn carrying(max_payload_bytes: u64) -> Self {
        Fetch::new(FetchConfig {
            max_payload_bytes: max_payload_bytes.max(FetchConfig::default().max_payload_bytes),
            ..FetchConfig::default()
        })
    }
    fn send_block(
        &mut self,
        now: Instant,
        block: Vec<u8>,
        node: &mut dyn Cluster,
    ) -> Option<Self::Id> {
        self.send(now, block, Vec::new(), node).ok()
    }
    fn take_delivered(&mut self) -> Vec<Self::Id> {
        core::iter::from_fn(|| self.poll_event())
            .filter_map(|event| match event {
                FetchEvent::Delivered { offer, .. } => Some(offer.id),
                _ => None,
            })
            .collect()
    }
    fn hash_mismatches(&self) -> u64 {
        self.stats().hash_mismatches
    }
}

impl BlocksScenario {
    /// Ten 1 MiB blocks over `nodes` nodes, 2 s apart, no loss, after ten
    /// small warm-up broadcasts.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            seed: 1,
            loss: 0.0,
            block_bytes: 1 << 20,
            blocks: 10,
            interval: Duration::from_secs(2),
            warm_up: 10,
            transfer: BlockTransfer::Chunks,
        }
    }
}

/// What a [`BlocksScenario`] measured. Times in simulated seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlocksReport {
    /// The scenario.
    pub scenario: BlocksScenario,
    /// Fraction of (block, other node) pairs assembled and verified.
    pub delivered_fraction: f64,
    /// Time from sending a block until each other node delivered it.
    pub delivery_s: Quantiles,
    /// Frame bytes every node sent, per node, over the bytes of the blocks
    /// (1.0: each node sent each block once).
    pub bytes_sent_per_node_over_payload: f64,
    /// The most any one node sent, over the bytes of the blocks.
    pub max_bytes_sent_by_a_node_over_payload: f64,
    /// Assembled payloads whose hash did not match (should be 0).
    pub hash_mismatches: u64,
}

/// Frame bytes sent per node.
struct SentBytes {
    per_node: Vec<u64>,
}

impl Observer for SentBytes {
    fn on_event(&mut self, _: Duration, _: usize, _: &gossip_core::Event) {}
    fn on_transmit(&mut self, _: Duration, from: usize, _: SocketAddr, bytes: &[u8]) {
        self.per_node[from] += bytes.len() as u64;
    }
}

/// Runs `scenario` with every node disseminating with a clone of
/// `prototype` (choose a tree strategy for bulk payloads).
pub fn run_blocks<S: Strategy + Clone>(
    scenario: &BlocksScenario,
    prototype: &S,
    progress: impl FnMut(usize),
) -> BlocksReport {
    match scenario.transfer {
        BlockTransfer::Chunks => run_with::<S, Bulk>(scenario, prototype, progress),
        BlockTransfer::Fetch => run_with::<S, Fetch>(scenario, prototype, progress),
    }
}

fn run_with<S: Strategy + Clone, P: BlockCarrier>(
    scenario: &BlocksScenario,
    prototype: &S,
    mut progress: impl FnMut(usize),
) -> BlocksReport {
    let max_payload = scenario.block_bytes as u64;
    let apps = (0..scenario.nodes)
        .map(|_| P::carrying(max_payload))
        .collect();
    let n = scenario.nodes;
    let link = LinkModel {
        loss: scenario.loss,
        ..LinkModel::default()
    };
    let mut config = Config::lan(n);
    // Every chunk of the largest block stays at hand for relaying and
    // repairs, beside other traffic.
    let chunks = scenario
        .block_bytes
        .div_ceil(config.max_message_size.get() / 2);
    let stored = config.max_stored_messages.get().max(4 * chunks);
    config.max_stored_messages = std::num::NonZeroUsize::new(stored).expect("non-zero");
    let mut sim = Simulator::with_strategy(n, scenario.seed, config, link, prototype.clone());
    sim.start_all();
    let mut c = AppSim::new(sim, apps);
    let mut t = Duration::from_secs(10);
    c.run_until(t, &mut ());
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0xb10c);
    // A running cluster has been broadcasting already: a few small
    // broadcasts let a tree strategy prune its links before the first
    // block (the first broadcasts flood the neighbour links).
    for _ in 0..scenario.warm_up {
        let origin = rng.random_range(0..n);
        c.command(
            origin,
            |_, node, now| node.broadcast(now, b"warm-up").ok(),
            &mut (),
        );
        t += Duration::from_millis(200);
        c.run_until(t, &mut ());
    }
    t += Duration::from_secs(2);
    c.run_until(t, &mut ());
    let mut sent = SentBytes {
        per_node: vec![0; n],
    };
    let mut times: Vec<Option<f64>> = Vec::new();
    let mut delivered = 0usize;
    let window = scenario.interval.max(Duration::from_millis(100));
    for b in 0..scenario.blocks {
        let origin = rng.random_range(0..n);
        let block: Vec<u8> = (0..scenario.block_bytes)
            .map(|i| (i as u64 ^ b as u64).wrapping_mul(0x9e37) as u8)
            .collect();
        let start = t;
        let id = c
            .command(
                origin,
                |app, node, now| app.send_block(now, block, node),
                &mut sent,
            )
            .flatten();
        let mut at: Vec<Option<Duration>> = vec![None; n];
        // Follow the block in 10 ms steps for the interval.
        let end = start + window;
        while t < end {
            t += Duration::from_millis(10);
            c.run_until(t, &mut sent);
            for (i, app) in c.apps_mut().iter_mut().enumerate() {
                if app.take_delivered().into_iter().any(|got| Some(got) == id) {
                    at[i].get_or_insert(t - start);
                }
            }
        }
        for (i, when) in at.iter().enumerate() {
            if i == origin {
                continue;
            }
            delivered += usize::from(when.is_some());
            times.push(when.map(|d| d.as_secs_f64()));
        }
        progress(b + 1);
    }
    let payload = (scenario.block_bytes * scenario.blocks).max(1) as f64;
    let total: u64 = sent.per_node.iter().sum();
    let max = sent.per_node.iter().copied().max().unwrap_or(0);
    let pairs = (scenario.blocks * (n - 1)).max(1);
    BlocksReport {
        scenario: scenario.clone(),
        delivered_fraction: delivered as f64 / pairs as f64,
        delivery_s: Quantiles::of(&times),
        bytes_sent_per_node_over_payload: total as f64 / n as f64 / payload,
        max_bytes_sent_by_a_node_over_payload: max as f64 / payload,
        hash_mismatches: c.apps().iter().map(BlockCarrier::hash_mismatches).sum(),
    }
}
