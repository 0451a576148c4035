//! A steady stream of small broadcasts from random origins on real nodes
//! (`gossip-node sim stream`): the simulated twin of `bench-net --rate`,
//! without the CPU and the scheduler, so what it measures is the
//! protocol's own cost.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use gossip_core::wire::{self, Message};
use gossip_core::{Config, Event, MessageId, NoAggregate, Node, Strategy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::net::{Observer, Simulator};
use crate::scenario::Quantiles;

/// A stream experiment: after membership settles, `rate` broadcasts per
/// second for `secs`, each from a node drawn at random, then a wait until
/// every node holds every broadcast (at most `drain`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamScenario {
    /// Cluster size (LAN config for that size, rumors coalesced per frame
    /// as `bench-net` runs them).
    pub nodes: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Probability that a frame is lost.
    pub loss: f64,
    /// Broadcasts per second over the whole cluster.
    pub rate: f64,
    /// Seconds of broadcasts.
    pub secs: f64,
    /// Bytes of each broadcast's payload.
    pub payload_bytes: usize,
    /// Broadcasts from random nodes, 200 ms apart, before the stream (not
    /// measured): the tree a running cluster would already have.
    pub warm_up: usize,
    /// Longest wait after the last broadcast.
    pub drain: Duration,
}

impl StreamScenario {
    /// 100 broadcasts per second of 250 bytes over `nodes` nodes for 10 s,
    /// after ten warm-up broadcasts.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            seed: 1,
            loss: 0.0,
            rate: 100.0,
            secs: 10.0,
            payload_bytes: 250,
            warm_up: 10,
            drain: Duration::from_secs(30),
        }
    }
}

/// What a [`StreamScenario`] measured. Times are simulated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamReport {
    /// The scenario.
    pub scenario: StreamScenario,
    /// Broadcasts made.
    pub submitted: u64,
    /// Fraction of (broadcast, other node) pairs delivered.
    pub delivered_fraction: f64,
    /// Each delivery's latency after its broadcast, ms.
    pub delivery_ms: Quantiles,
    /// Seconds from the last broadcast until every node held every one
    /// (`None`: not within the drain).
    pub drain_s: Option<f64>,
    /// Payload copies sent per node per broadcast (1.0: a perfect tree).
    pub copies_per_node_per_rumor: f64,
    /// Copies that arrived where the rumor was already held, per node per
    /// broadcast.
    pub duplicates_per_node_per_rumor: f64,
    /// Bytes of announcement frames per node per broadcast.
    pub announce_bytes_per_node_per_rumor: f64,
    /// Bytes of graft and prune frames per node per broadcast.
    pub tree_control_bytes_per_node_per_rumor: f64,
    /// Frame bytes sent per node (membership included), over the payload
    /// bytes each node received.
    pub bytes_sent_per_node_over_payload: f64,
    /// Members declared dead by some node during the stream (no node
    /// crashes here: all false).
    pub members_declared_dead: u64,
}

/// Follows the stream: when each broadcast was made and who delivered it
/// when, and the bytes of the tree's control frames.
struct StreamWatch {
    config: Config,
    counting: bool,
    sent_at: HashMap<MessageId, Duration>,
    latencies_ms: Vec<f64>,
    announce_bytes: u64,
    control_bytes: u64,
    bytes: u64,
}

impl Observer for StreamWatch {
    fn on_event(&mut self, at: Duration, _node: usize, event: &Event) {
        if let Event::Delivered { id, .. } = event {
            if let Some(&sent) = self.sent_at.get(id) {
                self.latencies_ms
                    .push((at.saturating_sub(sent)).as_secs_f64() * 1000.0);
            }
        }
    }

    fn on_transmit(&mut self, _at: Duration, _from: usize, _to: SocketAddr, bytes: &[u8]) {
        if !self.counting {
            return;
        }
        self.bytes += bytes.len() as u64;
        match wire::decode(&self.config, bytes) {
            Ok((_, Message::Announce { .. })) => self.announce_bytes += bytes.len() as u64,
            Ok((_, Message::Graft { .. } | Message::Prune)) => {
                self.control_bytes += bytes.len() as u64;
            }
            _ => {}
        }
    }
}

/// Sums of node counters.
#[derive(Default)]
struct Totals {
    rumors_sent: u64,
    duplicates: u64,
    declared_dead: u64,
}

fn totals<S: Strategy + Clone>(sim: &Simulator<S, NoAggregate>) -> Totals {
    let mut t = Totals::default();
    for i in 0..sim.len() {
        if let Some(node) = sim.node(i) {
            let stats = node.stats();
            t.rumors_sent += stats.rumors_sent;
            t.duplicates += stats.rumors_duplicate;
            t.declared_dead += stats.members_declared_dead;
        }
    }
    t
}

/// Runs `scenario` with every node disseminating with a clone of
/// `prototype`; at the end, `inspect` sees every node (to read the
/// strategy's own counters).
///
/// # Errors
/// If the scenario is malformed or a node refuses a broadcast.
pub fn run_stream<S: Strategy + Clone>(
    scenario: &StreamScenario,
    prototype: &S,
    mut inspect: impl FnMut(&Node<S, NoAggregate>),
) -> Result<StreamReport, String> {
    let n = scenario.nodes;
    if n < 2 {
        return Err("a stream needs at least 2 nodes".into());
    }
    if !(scenario.rate > 0.0 && scenario.rate.is_finite() && scenario.secs > 0.0) {
        return Err("rate and secs must be positive".into());
    }
    let mut config = Config::lan(n);
    config.coalesce_rumors = true;
    let (mut sim, mut t) =
        crate::full::converged(n, scenario.seed, &config, scenario.loss, prototype);
    let mut chooser = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x57ea_3b0d);
    let payload = |k: u64, bytes: usize| -> Vec<u8> {
        let mut p = vec![0x5a; bytes.max(8)];
        p[..8].copy_from_slice(&k.to_le_bytes());
        p
    };
    for k in 0..scenario.warm_up {
        let origin = chooser.random_range(0..n);
        sim.broadcast(origin, &payload(k as u64, scenario.payload_bytes), &mut ())
            .ok_or_else(|| format!("node {origin} refused a warm-up broadcast"))?;
        t += Duration::from_millis(200);
        sim.run_until(t, &mut ());
    }
    t += Duration::from_secs(2);
    sim.run_until(t, &mut ());

    let total = (scenario.rate * scenario.secs).round().max(1.0) as usize;
    let mut watch = StreamWatch {
        config,
        counting: true,
        sent_at: HashMap::with_capacity(total),
        latencies_ms: Vec::with_capacity(total * (n - 1)),
        announce_bytes: 0,
        control_bytes: 0,
        bytes: 0,
    };
    let before = totals(&sim);
    let start = t;
    for k in 0..total {
        let at = start + Duration::from_secs_f64(k as f64 / scenario.rate);
        sim.run_until(at, &mut watch);
        let origin = chooser.random_range(0..n);
        let tag = (scenario.warm_up + k) as u64;
        let id = sim
            .broadcast(origin, &payload(tag, scenario.payload_bytes), &mut watch)
            .ok_or_else(|| format!("node {origin} refused a broadcast"))?;
        watch.sent_at.insert(id, sim.now());
    }
    let last = sim.now();
    let wanted = total * (n - 1);
    let mut drain_s = None;
    let step = Duration::from_millis(50);
    while sim.now() < last + scenario.drain {
        let next = sim.now() + step;
        sim.run_until(next, &mut watch);
        if watch.latencies_ms.len() >= wanted {
            drain_s = Some((sim.now() - last).as_secs_f64());
            break;
        }
    }
    // The last announcements leave a round later.
    let next = sim.now() + Duration::from_secs(1);
    sim.run_until(next, &mut watch);
    let after = totals(&sim);
    for i in 0..n {
        if let Some(node) = sim.node(i) {
            inspect(node);
        }
    }
    let per_node_per_rumor = |v: u64| v as f64 / n as f64 / total as f64;
    let mut latencies: Vec<Option<f64>> = watch.latencies_ms.iter().map(|&ms| Some(ms)).collect();
    latencies.resize(wanted.max(latencies.len()), None);
    Ok(StreamReport {
        scenario: scenario.clone(),
        submitted: total as u64,
        delivered_fraction: watch.latencies_ms.len() as f64 / wanted as f64,
        delivery_ms: Quantiles::of(&latencies),
        drain_s,
        copies_per_node_per_rumor: per_node_per_rumor(after.rumors_sent - before.rumors_sent),
        duplicates_per_node_per_rumor: per_node_per_rumor(after.duplicates - before.duplicates),
        announce_bytes_per_node_per_rumor: per_node_per_rumor(watch.announce_bytes),
        tree_control_bytes_per_node_per_rumor: per_node_per_rumor(watch.control_bytes),
        bytes_sent_per_node_over_payload: watch.bytes as f64
            / n as f64
            / (total * scenario.payload_bytes) as f64,
        members_declared_dead: after.declared_dead - before.declared_dead,
    })
}
