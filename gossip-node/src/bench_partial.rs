//! `gossip-node bench-net --membership partial`: partial-view agents
//! (`gossip_agent::PartialAgent`) on loopback UDP sockets in one process,
//! measured end to end.
//!
//! Phases: every node joins through the first, until the active views link
//! everyone (join); a quiet window (idle bytes); broadcasts from random
//! nodes one after another (latency until every node had it, reach,
//! payload copies); `--kills` nodes aborted at once (time until no
//! survivor keeps one in its active view), then the broadcasts again to
//! the survivors.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use gossip_agent::{AgentConfig, PartialAgent, PartialAgentHandle, Transport};
use gossip_core::partial::{BroadcastId, PartialConfig, PartialEvent, PartialNode};
use gossip_core::NodeId;
use gossip_sim::Quantiles;
use gossip_transport_udp::UdpTransport;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::time::Instant;

use crate::bench_net::BenchNetArgs;
use crate::cli::seconds;

/// What `bench-net --membership partial` measured.
#[derive(Clone, Debug, Serialize)]
pub struct PartialBenchReport {
    /// Nodes started.
    pub nodes: usize,
    /// Seed of the nodes and of the choice of broadcasters and victims.
    pub seed: u64,
    /// Seconds until the active views linked every node (None: not
    /// within `--timeout-secs`).
    pub join_s: Option<f64>,
    /// Mean active view size once joined.
    pub active_view_mean: f64,
    /// Bytes each node sent per second over the quiet window (pings and
    /// shuffles).
    pub idle_bytes_per_node_per_s: f64,
    /// Broadcasts sent before the kills.
    pub broadcasts: u32,
    /// Seconds from a broadcast to its last delivery, over the broadcasts
    /// (None where a node never had it).
    pub latency_to_all_s: Quantiles,
    /// Seconds from a broadcast to each delivery.
    pub latency_each_s: Quantiles,
    /// Smallest fraction of the other nodes a broadcast reached.
    pub reach_min: f64,
    /// Payload frames sent per node per broadcast (1 is a perfect tree).
    pub payload_copies_per_node_per_broadcast: f64,
    /// Announce (`IHave`) bytes per node per broadcast.
    pub announce_bytes_per_node_per_broadcast: f64,
    /// Nodes aborted at once, without a word.
    pub killed: usize,
    /// Seconds until no survivor kept a killed node in its active view
    /// (the pings' verdict, `dead_after` after the last word) and the
    /// survivors' views linked them all again.
    pub repaired_s: Option<f64>,
    /// Broadcasts sent after the repair.
    pub broadcasts_after: u32,
    /// Smallest fraction of the other survivors a broadcast reached after
    /// the repair.
    pub survivor_reach_min: f64,
    /// Seconds from a broadcast to its last delivery after the repair.
    pub latency_to_all_after_s: Quantiles,
}

/// Deliveries seen so far: for each broadcast id, when each node had it.
type Deliveries = Arc<Mutex<HashMap<BroadcastId, Vec<(usize, Instant)>>>>;

/// Runs the partial-view measurement `args` describe.
pub fn run(
    args: &BenchNetArgs,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<PartialBenchReport> {
    if args.nodes < 2 || args.kills >= args.nodes - 1 {
        bail!("--nodes must be at least 2 and --kills leave the contact and one other node alive");
    }
    if args.transport != crate::cluster::TransportKind::Udp
        || args.sealed
        || args.payload_bytes > 0
        || args.rate > 0.0
        || args.plot.is_some()
    {
        bail!(
            "--membership partial runs joins, broadcasts and kills over plain UDP: --transport \
             quic, --sealed, --payload-bytes, --rate and --plot need --membership full"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(measure(args, progress))
}

async fn start(args: &BenchNetArgs) -> anyhow::Result<Vec<PartialAgentHandle>> {
    let mut agents = Vec::new();
    for i in 0..args.nodes {
        let transport = UdpTransport::bind(args.bind, 1400).await?;
        let node = PartialNode::new(
            NodeId::new(transport.local_addr()),
            PartialConfig::default(),
            args.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
            std::time::Instant::now(),
        )?;
        agents.push(PartialAgent::spawn(
            node,
            transport,
            AgentConfig::default(),
        )?);
    }
    Ok(agents)
}

/// Whether the active views of `alive` link them all, and only to each
/// other; and the mean active view.
async fn linked(agents: &[PartialAgentHandle], alive: &[usize]) -> anyhow::Result<(bool, f64)> {
    let ids: BTreeSet<SocketAddr> = alive.iter().map(|i| agents[*i].id()).collect();
    let mut links: BTreeMap<SocketAddr, Vec<SocketAddr>> = BTreeMap::new();
    let mut total = 0;
    let mut clean = true;
    for i in alive {
        let active = agents[*i].active().await?;
        total += active.len();
        clean &= !active.is_empty() && active.iter().all(|p| ids.contains(p));
        links.insert(agents[*i].id(), active);
    }
    let mean = total as f64 / alive.len() as f64;
    if !clean {
        return Ok((false, mean));
    }
    let first = agents[alive[0]].id();
    let mut seen = BTreeSet::from([first]);
    let mut todo = vec![first];
    while let Some(next) = todo.pop() {
        for peer in &links[&next] {
            if seen.insert(*peer) {
                todo.push(*peer);
            }
        }
    }
    Ok((seen.len() == alive.len(), mean))
}

/// Waits until `alive` are linked; the seconds since `start` and the mean
/// view.
async fn await_linked(
    agents: &[PartialAgentHandle],
    alive: &[usize],
    start: Instant,
    timeout: Duration,
) -> anyhow::Result<(Option<f64>, f64)> {
    loop {
        let (done, mean) = linked(agents, alive).await?;
        if done {
            return Ok((Some(start.elapsed().as_secs_f64()), mean));
        }
        if start.elapsed() > timeout {
            return Ok((None, mean));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Bytes sent by `alive` so far, and their payload and announce counters.
async fn sent(agents: &[PartialAgentHandle], alive: &[usize]) -> anyhow::Result<(u64, u64, u64)> {
    let (mut bytes, mut copies, mut announce) = (0, 0, 0);
    for i in alive {
        let stats = agents[*i].stats().await?;
        bytes += stats.transport.bytes_sent;
        copies += stats.node.gossip_sent;
        announce += stats.node.ihave_bytes_sent;
    }
    Ok((bytes, copies, announce))
}

/// What a run of broadcasts measured.
struct BroadcastRun {
    to_all: Vec<Option<f64>>,
    each: Vec<Option<f64>>,
    reach_min: f64,
}

/// Broadcasts `count` times from random nodes of `alive`, one after
/// another: each waits until every other node of `alive` had it or
/// `timeout` passed.
async fn broadcasts(
    agents: &[PartialAgentHandle],
    alive: &[usize],
    deliveries: &Deliveries,
    count: u32,
    rng: &mut ChaCha8Rng,
    timeout: Duration,
) -> anyhow::Result<BroadcastRun> {
    let mut run = BroadcastRun {
        to_all: Vec::new(),
        each: Vec::new(),
        reach_min: 1.0,
    };
    let others = alive.len() - 1;
    for b in 0..count {
        let origin = alive[rng.random_range(0..alive.len())];
        let sent = Instant::now();
        let id = agents[origin]
            .broadcast(format!("bench {b}").into_bytes())
            .await?;
        loop {
            let reached = deliveries
                .lock()
                .expect("not poisoned")
                .get(&id)
                .map_or(0, |d| d.iter().filter(|(i, _)| alive.contains(i)).count());
            if reached >= others || sent.elapsed() > timeout {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let times: Vec<f64> = deliveries
            .lock()
            .expect("not poisoned")
            .get(&id)
            .map(|d| {
                d.iter()
                    .filter(|(i, _)| alive.contains(i))
                    .map(|(_, at)| at.saturating_duration_since(sent).as_secs_f64())
                    .collect()
            })
            .unwrap_or_default();
        run.reach_min = run.reach_min.min(times.len() as f64 / others as f64);
        run.to_all.push(if times.len() >= others {
            times.iter().copied().reduce(f64::max)
        } else {
            None
        });
        run.each.extend(times.into_iter().map(Some));
    }
    Ok(run)
}

async fn measure(
    args: &BenchNetArgs,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<PartialBenchReport> {
    let timeout = seconds("timeout-secs", args.timeout_secs)?;
    let idle = seconds("idle-secs", args.idle_secs)?;
    let settle = seconds("settle-secs", args.settle_secs)?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let agents = start(args).await?;
    let deliveries: Deliveries = Arc::default();
    for (i, agent) in agents.iter().enumerate() {
        let mut events = agent.subscribe();
        let deliveries = Arc::clone(&deliveries);
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                if let PartialEvent::Delivered { id, .. } = event {
                    let at = Instant::now();
                    deliveries
                        .lock()
                        .expect("not poisoned")
                        .entry(id)
                        .or_default()
                        .push((i, at));
                }
            }
        });
    }
    progress("join");
    let join_start = Instant::now();
    let contact = agents[0].id();
    agents[0].join(Vec::new()).await?;
    for agent in &agents[1..] {
        agent.join(vec![contact]).await?;
    }
    let everyone: Vec<usize> = (0..agents.len()).collect();
    let (join_s, _) = await_linked(&agents, &everyone, join_start, timeout).await?;
    tokio::time::sleep(settle).await;
    let (_, active_view_mean) = linked(&agents, &everyone).await?;

    progress("idle");
    let (before, _, _) = sent(&agents, &everyone).await?;
    let idle_start = Instant::now();
    tokio::time::sleep(idle).await;
    let (after, copies_before, announce_before) = sent(&agents, &everyone).await?;
    let idle_bytes_per_node_per_s =
        (after - before) as f64 / args.nodes as f64 / idle_start.elapsed().as_secs_f64();

    progress("broadcasts");
    let per_broadcast = Duration::from_secs(5).min(timeout);
    let before_kill = broadcasts(
        &agents,
        &everyone,
        &deliveries,
        args.broadcasts,
        &mut rng,
        per_broadcast,
    )
    .await?;
    let (_, copies_after, announce_after) = sent(&agents, &everyone).await?;
    let per = (args.nodes as f64 * f64::from(args.broadcasts.max(1))).max(1.0);

    progress("kills");
    let mut victims = BTreeSet::new();
    while victims.len() < args.kills {
        // Never the contact, so a node left alone can still rejoin.
        victims.insert(rng.random_range(1..agents.len()));
    }
    let kill_start = Instant::now();
    for v in &victims {
        agents[*v].abort();
    }
    let survivors: Vec<usize> = everyone
        .iter()
        .copied()
        .filter(|i| !victims.contains(i))
        .collect();
    let (repaired_s, _) = await_linked(&agents, &survivors, kill_start, timeout).await?;
    let after_kill = broadcasts(
        &agents,
        &survivors,
        &deliveries,
        args.broadcasts,
        &mut rng,
        per_broadcast,
    )
    .await?;
    for i in &survivors {
        agents[*i].shutdown().await?;
    }
    Ok(PartialBenchReport {
        nodes: args.nodes,
        seed: args.seed,
        join_s,
        active_view_mean,
        idle_bytes_per_node_per_s,
        broadcasts: args.broadcasts,
        latency_to_all_s: Quantiles::of(&before_kill.to_all),
        latency_each_s: Quantiles::of(&before_kill.each),
        reach_min: before_kill.reach_min,
        payload_copies_per_node_per_broadcast: (copies_after - copies_before) as f64 / per,
        announce_bytes_per_node_per_broadcast: (announce_after - announce_before) as f64 / per,
        killed: victims.len(),
        repaired_s,
        broadcasts_after: args.broadcasts,
        survivor_reach_min: after_kill.reach_min,
        latency_to_all_after_s: Quantiles::of(&after_kill.to_all),
    })
}

/// The report as a table.
pub fn write_table(out: &mut impl std::io::Write, r: &PartialBenchReport) -> anyhow::Result<()> {
    let secs = |v: Option<f64>| v.map_or_else(|| "never".to_string(), |v| format!("{v:.4}"));
    writeln!(
        out,
        "partial views on loopback UDP: {} nodes, seed {}; linked after {} s, active view {:.2}; \
         idle {:.1} B/node/s",
        r.nodes,
        r.seed,
        secs(r.join_s),
        r.active_view_mean,
        r.idle_bytes_per_node_per_s
    )?;
    writeln!(
        out,
        "{} broadcasts: reach min {:.4}; to all p50 {} p99 {} max {} s; each delivery p50 {} \
         p99 {} s; {:.3} payload copies and {:.1} announce B per node per broadcast",
        r.broadcasts,
        r.reach_min,
        secs(r.latency_to_all_s.p50),
        secs(r.latency_to_all_s.p99),
        secs(r.latency_to_all_s.max),
        secs(r.latency_each_s.p50),
        secs(r.latency_each_s.p99),
        r.payload_copies_per_node_per_broadcast,
        r.announce_bytes_per_node_per_broadcast
    )?;
    writeln!(
        out,
        "{} killed at once: survivors' views clean and linked after {} s; {} broadcasts: \
         survivor reach min {:.4}, to all p50 {} p99 {} max {} s",
        r.killed,
        secs(r.repaired_s),
        r.broadcasts_after,
        r.survivor_reach_min,
        secs(r.latency_to_all_after_s.p50),
        secs(r.latency_to_all_after_s.p99),
        secs(r.latency_to_all_after_s.max)
    )?;
    Ok(())
}
