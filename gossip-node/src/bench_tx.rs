//! `bench-net --rate R --payload-bytes N`: a stream of transactions
//! (`gossip_apps::tx`) from random nodes at a steady rate, measured end to
//! end: delivery everywhere, latency, and bytes on the wire per byte of
//! transaction.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;
use gossip_apps::tx::{Tx, TxConfig, TxEvent, TxHash};
use gossip_sim::Quantiles;
use gossip_strategies::TreeStats;
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::time::Instant;

use crate::cluster::LocalCluster;

/// What the transaction stream measured.
#[derive(Clone, Debug, Serialize)]
pub struct TxReport {
    /// Bytes of each transaction.
    pub tx_bytes: usize,
    /// Transactions per second asked for, over the whole cluster.
    pub rate_per_s: f64,
    /// Transactions per second submitted, over the stream's actual length.
    pub achieved_rate_per_s: f64,
    /// Seconds the stream lasted.
    pub stream_s: f64,
    /// Transactions submitted.
    pub submitted: u64,
    /// Fraction of (transaction, other node) pairs delivered before the
    /// wait after the stream ended ran out.
    pub delivered_fraction: f64,
    /// Each delivery's latency after its submission, ms (the agents'
    /// clocks at broadcast and at delivery); `null` when more than that
    /// quantile's share of deliveries never came.
    pub delivery_ms: Quantiles,
    /// Seconds from the last submission until every node had every
    /// transaction (`null`: not within the wait).
    pub drain_s: Option<f64>,
    /// Bytes every node sent from the stream's start until the end of the
    /// drain, as counted by the transport (membership traffic included),
    /// per node, over the bytes of the transactions each node received.
    pub bytes_sent_per_node_over_tx_bytes: f64,
    /// Bytes of lazy announcements on the wire (frames whole) per
    /// transaction id announced per link.
    pub announce_bytes_per_item_per_link: f64,
    /// Bytes of lazy announcements per node per transaction.
    pub announce_bytes_per_node_per_tx: f64,
    /// Rumor copies sent per node per transaction (1.0: a perfect tree).
    pub rumor_copies_per_node_per_tx: f64,
    /// Rumors received where they were already held, per node per
    /// transaction.
    pub duplicates_per_node_per_tx: f64,
    /// Members declared dead by some node from the stream's start to the
    /// end of the drain (no node crashes here: all false).
    pub members_declared_dead: u64,
    /// A tree strategy's grafts, prunes and link changes from the
    /// stream's start to the end of the drain, summed over the nodes (link
    /// counts at the end); `null` for other strategies.
    pub tree: Option<TreeStats>,
}

/// How a stream runs: its rate, length, transaction size and how long to
/// wait for stragglers.
pub struct TxStream {
    /// Transactions per second over the cluster.
    pub rate: f64,
    /// Seconds of submissions.
    pub secs: f64,
    /// Bytes per transaction.
    pub tx_bytes: usize,
    /// Longest wait after the last submission.
    pub drain_limit: Duration,
}

/// Deliveries seen so far, by transaction.
struct Tally {
    /// Submission time and hash of each transaction, by index.
    submitted: Vec<std::time::Instant>,
    index: HashMap<TxHash, usize>,
    /// Deliveries per transaction.
    count: Vec<u32>,
    latencies_ms: Vec<f64>,
    delivered: u64,
}

impl Tally {
    fn record(&mut self, hash: TxHash, at: std::time::Instant) {
        let Some(&i) = self.index.get(&hash) else {
            return;
        };
        self.count[i] += 1;
        self.delivered += 1;
        let ms = at
            .saturating_duration_since(self.submitted[i])
            .as_secs_f64()
            * 1000.0;
        self.latencies_ms.push(ms);
    }
}

/// Node-side counters summed over the cluster.
#[derive(Clone, Copy, Default)]
struct Counters {
    bytes_sent: u64,
    rumors_sent: u64,
    announce_bytes: u64,
    announced: u64,
    duplicates: u64,
    declared_dead: u64,
    tree: Option<TreeStats>,
}

async fn counters(cluster: &LocalCluster) -> Counters {
    let mut total = Counters::default();
    for agent in &cluster.agents {
        if let Ok(stats) = agent.stats().await {
            total.bytes_sent += stats.transport.bytes_sent;
            total.rumors_sent += stats.node.rumors_sent;
            total.announce_bytes += stats.node.announce_bytes_sent;
            total.announced += stats.node.announcements_sent;
            total.duplicates += stats.node.rumors_duplicate;
            total.declared_dead += stats.node.members_declared_dead;
        }
    }
    total.tree = tree_totals(cluster).await;
    total
}

/// Plumtree's counters summed over the cluster; `None` for other
/// strategies.
pub(crate) async fn tree_totals(cluster: &LocalCluster) -> Option<TreeStats> {
    let mut total: Option<TreeStats> = None;
    for agent in &cluster.agents {
        if let Ok(Some(tree)) = agent
            .with_node(|node, _| node.strategy().tree_stats())
            .await
        {
            total.get_or_insert_with(TreeStats::default).add(&tree);
        }
    }
    total
}

/// Takes every agent's undelivered transaction events into `tally`.
async fn collect(cluster: &LocalCluster, tally: &mut Tally) -> anyhow::Result<()> {
    let drains = cluster.agents.iter().map(|agent| {
        agent.with_app::<Tx, _, _>(|app, _, _| {
            let mut out = Vec::new();
            while let Some(event) = app.poll_event() {
                let TxEvent::Delivered { hash, at, .. } = event else {
                    continue;
                };
                out.push((hash, at));
            }
            out
        })
    });
    for drained in join_all(drains).await {
        for (hash, at) in drained?.unwrap_or_default() {
            tally.record(hash, at);
        }
    }
    Ok(())
}

impl TxStream {
    /// Hosts the transaction application on every agent, submits `rate`
    /// transactions per second from random nodes for `secs`, then waits
    /// until every node has every transaction (or `drain_limit`).
    pub async fn run(
        &self,
        cluster: &LocalCluster,
        rng: &mut ChaCha8Rng,
    ) -> anyhow::Result<TxReport> {
        let nodes = cluster.agents.len();
        let total = (self.rate * self.secs).round().max(1.0) as usize;
        // A hundred nodes share this process: each keeps a small mempool
        // (nothing here takes transactions out of it) but remembers every
        // hash of the run, so that any duplicate would be caught.
        let config = TxConfig {
            max_tx_bytes: self.tx_bytes.max(TxConfig::default().max_tx_bytes),
            max_mempool: 4096,
            max_seen: total.max(TxConfig::default().max_seen),
            ..TxConfig::default()
        };
        for agent in &cluster.agents {
            agent.add_app(Tx::new(config.clone())).await?;
        }
        // The watchers need not keep 10^6 delivery times the tally keeps.
        for observed in cluster.observed.iter() {
            observed.lock().expect("observed lock").skip_deliveries = true;
        }
        let mut tally = Tally {
            submitted: Vec::with_capacity(total),
            index: HashMap::with_capacity(total),
            count: Vec::with_capacity(total),
            latencies_ms: Vec::with_capacity(total * (nodes - 1)),
            delivered: 0,
        };
        let before = counters(cluster).await;
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_collect = Instant::now();
        while tally.submitted.len() < total {
            tick.tick().await;
            let due = ((start.elapsed().as_secs_f64() * self.rate).floor() as usize + 1).min(total);
            let mut batch = Vec::new();
            for n in tally.submitted.len()..due {
                let origin = rng.random_range(0..nodes);
                let mut tx = vec![0u8; self.tx_bytes];
                rng.fill_bytes(&mut tx);
                // Unique whatever the generator draws.
                let tag = (n as u64).to_le_bytes();
                let k = tag.len().min(tx.len());
                tx[..k].copy_from_slice(&tag[..k]);
                batch.push(
                    cluster.agents[origin].with_app::<Tx, _, _>(move |app, node, now| {
                        app.submit(now, tx, node).map(|s| (s.hash(), now))
                    }),
                );
            }
            for result in join_all(batch).await {
                let (hash, at) = result?.ok_or_else(|| {
                    anyhow::anyhow!("an agent hosts no transaction application")
                })??;
                tally.index.insert(hash, tally.submitted.len());
                tally.submitted.push(at);
                tally.count.push(0);
            }
            if last_collect.elapsed() >= Duration::from_millis(100) {
                collect(cluster, &mut tally).await?;
                last_collect = Instant::now();
            }
        }
        let stream_s = start.elapsed().as_secs_f64();
        let last = Instant::now();
        let wanted = (total * (nodes - 1)) as u64;
        let mut drain_s = None;
        while last.elapsed() < self.drain_limit {
            collect(cluster, &mut tally).await?;
            if tally.delivered >= wanted {
                drain_s = Some(last.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Announcements of the last transactions go out one round later.
        tokio::time::sleep(Duration::from_millis(500)).await;
        collect(cluster, &mut tally).await?;
        let after = counters(cluster).await;

        let mut latencies: Vec<Option<f64>> =
            tally.latencies_ms.iter().map(|&ms| Some(ms)).collect();
        latencies.resize(wanted.max(tally.delivered) as usize, None);
        let per_node_tx = (total * self.tx_bytes) as f64;
        let per_node_per_tx = |v: u64| v as f64 / nodes as f64 / total as f64;
        let announce_bytes = after.announce_bytes.saturating_sub(before.announce_bytes);
        Ok(TxReport {
            tx_bytes: self.tx_bytes,
            rate_per_s: self.rate,
            achieved_rate_per_s: total as f64 / stream_s.max(1e-9),
            stream_s,
            submitted: total as u64,
            delivered_fraction: tally.delivered as f64 / wanted.max(1) as f64,
            delivery_ms: Quantiles::of(&latencies),
            drain_s,
            bytes_sent_per_node_over_tx_bytes: after.bytes_sent.saturating_sub(before.bytes_sent)
                as f64
                / nodes as f64
                / per_node_tx.max(1.0),
            announce_bytes_per_item_per_link: announce_bytes as f64
                / after.announced.saturating_sub(before.announced).max(1) as f64,
            announce_bytes_per_node_per_tx: per_node_per_tx(announce_bytes),
            rumor_copies_per_node_per_tx: per_node_per_tx(
                after.rumors_sent.saturating_sub(before.rumors_sent),
            ),
            duplicates_per_node_per_tx: per_node_per_tx(
                after.duplicates.saturating_sub(before.duplicates),
            ),
            members_declared_dead: after.declared_dead.saturating_sub(before.declared_dead),
            tree: after
                .tree
                .map(|tree| tree.since(&before.tree.unwrap_or_default())),
        })
    }
}
