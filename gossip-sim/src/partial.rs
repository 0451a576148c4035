//! Partial-view runs: [`PartialNode`]s (HyParView with a Plumtree tree) on
//! a simulated network of up to 10^5 nodes and more, with a mass crash and
//! broadcasts before and after it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use gossip_core::partial::{BroadcastId, PartialConfig, PartialEvent, PartialNode};
use gossip_core::NodeId;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::address::{node_addr, node_index};
use crate::scenario::Quantiles;

/// A partial-view run: nodes join one after another through random
/// earlier nodes, broadcasts go out at a steady rate from random live
/// nodes, and a fraction of the nodes crash at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartialScenario {
    /// Nodes.
    pub nodes: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Probability that a frame is lost.
    pub loss: f64,
    /// Node `i` starts at `i / nodes` of this window (node 0 at 0 s).
    pub join_window_s: f64,
    /// First broadcast, simulated seconds.
    pub broadcasts_from_s: f64,
    /// Seconds between broadcasts.
    pub broadcast_interval_s: f64,
    /// Bytes per broadcast payload.
    pub payload_len: usize,
    /// Fraction of the nodes that crash at `crash_at_s` (node 0 included
    /// in the draw).
    pub crash_fraction: f64,
    /// When they crash.
    pub crash_at_s: f64,
    /// Length of the run.
    pub duration_s: f64,
    /// Overlay settings.
    #[serde(skip)]
    pub config: PartialConfig,
}

impl PartialScenario {
    /// Defaults for `nodes`: joins over `nodes / 2000` seconds (5 to 40),
    /// a broadcast a second from 10 s after the joins, half the nodes
    /// crashing 20 s after the joins, 60 s in all after them.
    pub fn new(nodes: usize) -> Self {
        let join = (nodes as f64 / 2000.0).clamp(5.0, 40.0);
        Self {
            nodes,
            seed: 1,
            loss: 0.0,
            join_window_s: join,
            broadcasts_from_s: join + 10.0,
            broadcast_interval_s: 1.0,
            payload_len: 64,
            crash_fraction: 0.5,
            crash_at_s: join + 20.0,
            duration_s: join + 60.0,
            config: PartialConfig::default(),
        }
    }
}

/// What a partial-view run measured. Times are simulated seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartialReport {
    /// The scenario.
    pub scenario: PartialScenario,
    /// Nodes that crashed.
    pub crashed: usize,
    /// Mean active view size just before the crash.
    pub active_view_mean: f64,
    /// Nodes with an empty active view just before the crash.
    pub isolated_before_crash: usize,
    /// Broadcasts sent before the crash.
    pub broadcasts_before_crash: usize,
    /// Smallest fraction of the live nodes a broadcast before the crash
    /// reached.
    pub reach_before_crash_min: f64,
    /// Per broadcast before the crash: seconds until the last live node had
    /// it (`None`: some never did).
    pub delivery_before_crash_s: Quantiles,
    /// Payload frames (`Gossip`) sent per node per broadcast before the
    /// crash: about 1 once the tree has formed.
    pub payload_copies_per_node_per_broadcast: f64,
    /// Announcement bytes per node per broadcast before the crash.
    pub announce_bytes_per_node_per_broadcast: f64,
    /// Announcement bytes per announced id (the 8-byte id and its share
    /// of the frame).
    pub announce_bytes_per_id: f64,
    /// Frame bytes per node per second over the ten seconds before the
    /// crash, everything included.
    pub bytes_per_node_per_s: f64,
    /// Active links made per node per second over the same ten seconds:
    /// churn of the views in a quiet cluster (near 0 once they settle).
    pub links_made_per_node_per_s: f64,
    /// Seconds after the crash until no survivor held a crashed node in
    /// its active view and none was without neighbours (`None`: not
    /// within the run).
    pub views_repaired_s: Option<f64>,
    /// Broadcasts sent after the crash.
    pub broadcasts_after_crash: usize,
    /// Mean fraction of the survivors reached by broadcasts sent after the
    /// crash.
    pub survivor_reach: f64,
    /// Smallest fraction of the survivors a broadcast sent after the
    /// crash reached.
    pub survivor_reach_min: f64,
    /// Smallest survivor reach of the broadcasts sent once the views had
    /// repaired.
    pub survivor_reach_after_repair_min: Option<f64>,
    /// Per broadcast sent once the views had repaired: seconds until every
    /// survivor had it.
    pub delivery_after_repair_s: Quantiles,
    /// Frames the nodes refused.
    pub refused_frames: u64,
    /// Frames simulated.
    pub frames: u64,
    /// Process CPU seconds of the run.
    pub cpu_s: f64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Frame {
        from: u32,
        to: u32,
        bytes: Box<[u8]>,
    },
    Timer {
        node: u32,
    },
    Start {
        node: u32,
    },
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Item {
    at: u64,
    seq: u64,
    kind: Kind,
}

struct Broadcast {
    sent_at: f64,
    after_crash: bool,
    /// Nodes that have it, among those counted.
    reached: usize,
    /// How many are counted.
    of: usize,
    last: f64,
}

struct World {
    nodes: Vec<Option<PartialNode>>,
    counted: Vec<bool>,
    timer_at: Vec<Option<u64>>,
    heap: BinaryHeap<Reverse<Item>>,
    seq: u64,
    base: Instant,
    rng: ChaCha8Rng,
    loss: f64,
    broadcasts: Vec<Broadcast>,
    by_id: HashMap<BroadcastId, usize>,
    frames: u64,
    /// Active links made so far (`NeighbourUp` events).
    links_made: u64,
}

const LATENCY_MIN_NS: u64 = 200_000;
const LATENCY_MAX_NS: u64 = 1_000_000;

fn ns(s: f64) -> u64 {
    (s * 1e9) as u64
}

impl World {
    fn push(&mut self, at: u64, kind: Kind) {
        self.seq += 1;
        self.heap.push(Reverse(Item {
            at,
            seq: self.seq,
            kind,
        }));
    }

    fn instant(&self, at: u64) -> Instant {
        self.base + Duration::from_nanos(at)
    }

    /// Takes what node `i` produced after an input at `now`.
    fn drain(&mut self, i: usize, now: u64) {
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some((to, bytes)) = node.poll_transmit() {
            out.push((to, bytes));
        }
        let mut delivered = Vec::new();
        while let Some(event) = node.poll_event() {
            match event {
                PartialEvent::Delivered { id, .. } => delivered.push(id),
                PartialEvent::NeighbourUp(_) => self.links_made += 1,
                _ => {}
            }
        }
        let due = node
            .poll_timeout()
            .map(|t| t.saturating_duration_since(self.base).as_nanos() as u64);
        for (to, bytes) in out {
            if self.loss > 0.0 && self.rng.random::<f64>() < self.loss {
                continue;
            }
            let Some(to) = node_index(to.addr()) else {
                continue;
            };
            let latency = self.rng.random_range(LATENCY_MIN_NS..LATENCY_MAX_NS);
            self.push(
                now + latency,
                Kind::Frame {
                    from: i as u32,
                    to: to as u32,
                    bytes: bytes.into_boxed_slice(),
                },
            );
        }
        for id in delivered {
            if let Some(&b) = self.by_id.get(&id) {
                if self.counted[i] {
                    let b = &mut self.broadcasts[b];
                    b.reached += 1;
                    b.last = now as f64 / 1e9;
                }
            }
        }
        if let Some(due) = due {
            let due = due.max(now);
            if self.timer_at[i].is_none_or(|t| t > due || t < now) {
                self.timer_at[i] = Some(due);
                self.push(due, Kind::Timer { node: i as u32 });
            }
        }
    }
}

/// Runs a partial-view scenario; `progress` hears the simulated second now
/// and then.
pub fn run_partial(scenario: &PartialScenario, mut progress: impl FnMut(f64)) -> PartialReport {
    let cpu = cpu_time::ProcessTime::now();
    let n = scenario.nodes.max(2);
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed);
    let crashed: Vec<usize> = {
        let k = ((n as f64) * scenario.crash_fraction.clamp(0.0, 1.0)).round() as usize;
        let mut v = sample(&mut rng, n, k.min(n - 1)).into_vec();
        v.sort_unstable();
        v
    };
    let mut doomed = vec![false; n];
    for &c in &crashed {
        doomed[c] = true;
    }
    let base = Instant::now();
    let mut w = World {
        nodes: (0..n).map(|_| None).collect(),
        counted: vec![false; n],
        timer_at: vec![None; n],
        heap: BinaryHeap::new(),
        seq: 0,
        base,
        rng: ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x5eed),
        loss: scenario.loss,
        broadcasts: Vec::new(),
        by_id: HashMap::new(),
        frames: 0,
        links_made: 0,
    };
    for i in 0..n {
        let at = ns(scenario.join_window_s * i as f64 / n as f64);
        w.push(at, Kind::Start { node: i as u32 });
    }
    let end = ns(scenario.duration_s);
    let crash_at = ns(scenario.crash_at_s);
    let mut next_broadcast = ns(scenario.broadcasts_from_s);
    let interval = ns(scenario.broadcast_interval_s.max(0.001));
    let mut crashed_yet = false;
    let mut next_sample = crash_at;
    let mut next_progress = 0u64;
    let mut views_repaired_s = None;
    let mut active_view_mean = 0.0;
    let mut isolated_before_crash = 0;
    // Byte counters at the start and end of the pre-crash windows.
    let mut window_bytes = (0u64, 0u64);
    let mut window_links = (0u64, 0u64);
    let mut pre_crash_gossip = (0u64, 0u64, 0u64, 0u64);
    let mut pre_broadcast_marks: Option<(u64, u64, u64, u64)> = None;
    let total = |w: &World| -> (u64, u64, u64, u64) {
        let mut t = (0, 0, 0, 0);
        for node in w.nodes.iter().flatten() {
            let s = node.stats();
            t.0 += s.bytes_sent;
            t.1 += s.gossip_sent;
            t.2 += s.ihave_bytes_sent;
            t.3 += s.ids_announced;
        }
        t
    };
    let window_start = crash_at.saturating_sub(ns(10.0));
    let mut window_started = false;
    loop {
        let next_event = w
            .heap
            .peek()
            .map(|Reverse(item)| item.at)
            .unwrap_or(u64::MAX);
        let now = next_event
            .min(next_broadcast)
            .min(if crashed_yet { u64::MAX } else { crash_at })
            .min(next_sample)
            .min(if window_started {
                u64::MAX
            } else {
                window_start
            });
        if now >= end {
            break;
        }
        if now >= next_progress {
            progress(now as f64 / 1e9);
            next_progress = now + ns(1.0);
        }
        if !window_started && now == window_start {
            window_started = true;
            window_bytes.0 = total(&w).0;
            window_links.0 = w.links_made;
            continue;
        }
        if !crashed_yet && now == crash_at {
            crashed_yet = true;
            window_bytes.1 = total(&w).0;
            window_links.1 = w.links_made;
            pre_crash_gossip = total(&w);
            let mut sizes = 0usize;
            for node in w.nodes.iter().flatten() {
                let a = node.active().count();
                sizes += a;
                isolated_before_crash += usize::from(a == 0);
            }
            active_view_mean = sizes as f64 / n as f64;
            for &c in &crashed {
                w.nodes[c] = None;
            }
            continue;
        }
        if now == next_broadcast {
            next_broadcast += interval;
            if pre_broadcast_marks.is_none() {
                pre_broadcast_marks = Some(total(&w));
            }
            // From a random live node.
            let live: Vec<usize> = (0..n).filter(|&i| w.nodes[i].is_some()).collect();
            if live.is_empty() {
                continue;
            }
            let origin = live[w.rng.random_range(0..live.len())];
            let payload = vec![0xb7; scenario.payload_len];
            let at = w.instant(now);
            let id = match w.nodes[origin]
                .as_mut()
                .map(|node| node.broadcast(at, &payload))
            {
                Some(Ok(id)) => id,
                _ => continue,
            };
            let after_crash = crashed_yet;
            for i in 0..n {
                w.counted[i] = w.nodes[i].is_some();
            }
            let of = w.counted.iter().filter(|c| **c).count();
            w.by_id.insert(id, w.broadcasts.len());
            w.broadcasts.push(Broadcast {
                sent_at: now as f64 / 1e9,
                after_crash,
                reached: 1,
                of,
                last: now as f64 / 1e9,
            });
            w.drain(origin, now);
            continue;
        }
        if now == next_sample {
            next_sample += ns(1.0);
            if crashed_yet && views_repaired_s.is_none() {
                let repaired = w.nodes.iter().flatten().all(|node| {
                    let mut active = node.active().peekable();
                    active.peek().is_some()
                        && active.all(|a| node_index(a.addr()).is_some_and(|j| !doomed[j]))
                });
                if repaired {
                    views_repaired_s = Some((now - crash_at) as f64 / 1e9);
                }
            }
            continue;
        }
        let Some(Reverse(item)) = w.heap.pop() else {
            break;
        };
        let at = w.instant(item.at);
        match item.kind {
            Kind::Start { node } => {
                let i = node as usize;
                let id = NodeId::from(node_addr(i));
                let seed = scenario.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64;
                let Ok(mut p) = PartialNode::new(id, scenario.config.clone(), seed, at) else {
                    continue;
                };
                if i > 0 {
                    let contact = w.rng.random_range(0..i);
                    p.join(at, &[NodeId::from(node_addr(contact))]);
                }
                w.nodes[i] = Some(p);
                w.drain(i, item.at);
            }
            Kind::Timer { node } => {
                let i = node as usize;
                if w.timer_at[i] != Some(item.at) {
                    continue;
                }
                w.timer_at[i] = None;
                if let Some(p) = w.nodes[i].as_mut() {
                    p.handle_timeout(at);
                    w.drain(i, item.at);
                }
            }
            Kind::Frame { from, to, bytes } => {
                w.frames += 1;
                let i = to as usize;
                if let Some(p) = w.nodes[i].as_mut() {
                    let _ = p.handle_frame(at, NodeId::from(node_addr(from as usize)), &bytes);
                    w.drain(i, item.at);
                }
            }
        }
    }

    let pre: Vec<&Broadcast> = w.broadcasts.iter().filter(|b| !b.after_crash).collect();
    let post: Vec<&Broadcast> = w.broadcasts.iter().filter(|b| b.after_crash).collect();
    let reach = |b: &Broadcast| b.reached as f64 / b.of.max(1) as f64;
    let full = |b: &Broadcast| (b.reached >= b.of).then_some(b.last - b.sent_at);
    let marks = pre_broadcast_marks.unwrap_or_default();
    let pre_n = pre.len().max(1) as f64 * n as f64;
    let repaired_at = views_repaired_s.map(|s| scenario.crash_at_s + s);
    let after_repair: Vec<&&Broadcast> = post
        .iter()
        .filter(|b| repaired_at.is_some_and(|r| b.sent_at >= r))
        .collect();
    let refused_frames = w.nodes.iter().flatten().map(|p| p.stats().refused).sum();
    PartialReport {
        scenario: scenario.clone(),
        crashed: crashed.len(),
        active_view_mean,
        isolated_before_crash,
        broadcasts_before_crash: pre.len(),
        reach_before_crash_min: pre.iter().map(|b| reach(b)).fold(1.0, f64::min),
        delivery_before_crash_s: Quantiles::of(&pre.iter().map(|b| full(b)).collect::<Vec<_>>()),
        payload_copies_per_node_per_broadcast: (pre_crash_gossip.1 - marks.1) as f64 / pre_n,
        announce_bytes_per_node_per_broadcast: (pre_crash_gossip.2 - marks.2) as f64 / pre_n,
        announce_bytes_per_id: (pre_crash_gossip.2 - marks.2) as f64
            / (pre_crash_gossip.3 - marks.3).max(1) as f64,
        bytes_per_node_per_s: (window_bytes.1 - window_bytes.0) as f64 / n as f64 / 10.0,
        links_made_per_node_per_s: (window_links.1 - window_links.0) as f64 / n as f64 / 10.0,
        views_repaired_s,
        broadcasts_after_crash: post.len(),
        survivor_reach: post.iter().map(|b| reach(b)).sum::<f64>() / post.len().max(1) as f64,
        survivor_reach_min: post.iter().map(|b| reach(b)).fold(1.0, f64::min),
        survivor_reach_after_repair_min: after_repair.iter().map(|b| reach(b)).reduce(f64::min),
        delivery_after_repair_s: Quantiles::of(
            &after_repair.iter().map(|b| full(b)).collect::<Vec<_>>(),
        ),
        refused_frames,
        frames: w.frames,
        cpu_s: cpu.elapsed().as_secs_f64(),
    }
}
