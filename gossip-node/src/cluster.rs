//! A cluster of agents in one process on loopback sockets, watched through
//! their events: what `bench-net` measures and the loopback tests check.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use gossip_agent::testing::{Faults, Faulty};
use gossip_agent::{Agent, AgentConfig, AgentHandle, Transport, TransportStats};
use gossip_core::{Config, Event, Generation, MessageId, Node, NodeId};
use gossip_seal::{KeyringHandle, Sealed};
use gossip_strategies::AnyStrategy;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use gossip_transport_quic::{ClusterCa, QuicConfig, QuicTransport};

/// Which socket transport the cluster's nodes use.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// One UDP socket per node.
    Udp,
    /// One QUIC endpoint per node, certificates from one cluster root.
    Quic,
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportKind::Udp => "udp",
            TransportKind::Quic => "quic",
        })
    }
}

/// Binds a transport of `kind` at `addr` carrying frames of `max_frame`
/// bytes. QUIC needs the cluster root that issues the node's certificate.
pub async fn bind(
    kind: TransportKind,
    addr: SocketAddr,
    max_frame: usize,
    root: Option<&ClusterCa>,
) -> anyhow::Result<Box<dyn Transport>> {
    Ok(match kind {
        TransportKind::Udp => Box::new(
            gossip_transport_udp::UdpTransport::bind(addr, max_frame)
                .await
                .with_context(|| format!("binding UDP at {addr}"))?,
        ),
        TransportKind::Quic => {
            let root = root.context("QUIC needs a cluster root")?;
            let identity = root.issue(&[addr.ip()], &[])?;
            let config = QuicConfig {
                // Every node of a loopback cluster shares one IP address:
                // the per-host cap would refuse all but a few of them.
                max_connections_per_ip: QuicConfig::default().max_connections,
                ..QuicConfig::default()
            };
            Box::new(
                QuicTransport::bind(addr, identity, config)
                    .await
                    .with_context(|| format!("binding QUIC at {addr}"))?,
            )
        }
    })
}

/// What one node has seen, from its event stream.
#[derive(Debug, Default)]
pub struct Observed {
    /// Other members it believes alive (or suspect).
    pub live: HashSet<SocketAddr>,
    /// When it first saw every other member alive.
    pub converged_at: Option<Instant>,
    /// When each broadcast reached it.
    pub delivered: HashMap<MessageId, Instant>,
    /// How many deliveries it had in all (duplicates would count twice).
    pub deliveries: u64,
    /// Every death declaration it saw, in order (a member that comes back
    /// and dies again appears twice).
    pub deaths: Vec<(SocketAddr, Instant)>,
    /// Members that left gracefully.
    pub left: HashSet<SocketAddr>,
    /// Events lost because this watcher fell behind.
    pub lagged: u64,
    /// Set to stop recording `delivered` (a transaction stream's millions
    /// of deliveries are tallied elsewhere); `deliveries` still counts.
    pub skip_deliveries: bool,
}

impl Observed {
    /// When it first saw `member` declared dead at or after `since`.
    pub fn dead_since(&self, member: SocketAddr, since: Instant) -> Option<Instant> {
        self.deaths
            .iter()
            .find(|&&(who, at)| who == member && at >= since)
            .map(|&(_, at)| at)
    }
}

/// How to build each node of a [`LocalCluster`].
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Number of nodes.
    pub nodes: usize,
    /// Socket transport.
    pub transport: TransportKind,
    /// Protocol configuration of every node.
    pub config: Config,
    /// Dissemination strategy of every node.
    pub strategy: AnyStrategy,
    /// Seed; node `i` draws from `seed * 1_000_003 + i`.
    pub seed: u64,
    /// Where nodes bind (port 0: the system picks free ports).
    pub bind: SocketAddr,
    /// Loss, duplication and delay injected on every node's sends.
    pub faults: Option<Faults>,
    /// Seal every frame with this keyring (shared by all nodes). The
    /// config's `max_message_size` must already leave room for the seal
    /// (see [`leave_room_for_seal`](crate::run_agent::leave_room_for_seal)).
    pub keyring: Option<KeyringHandle>,
}

/// Agents on loopback, all joined through the first.
pub struct LocalCluster {
    /// The agents, in start order; the first founded the cluster.
    pub agents: Vec<AgentHandle<AnyStrategy>>,
    /// What each agent has seen.
    pub observed: Arc<Vec<Mutex<Observed>>>,
    /// When the first join was issued.
    pub started: Instant,
}

impl LocalCluster {
    /// Binds every node, starts its agent and a watcher of its events, and
    /// has all but the first join the first.
    pub async fn start(spec: &ClusterSpec) -> anyhow::Result<Self> {
        Self::start_with(spec, |_, transport| transport).await
    }

    /// Like [`start`](Self::start), but `wrap` gets node `i`'s transport
    /// (already sealed and faulty, as the spec says) before its agent
    /// starts: `demo` meters node 0's frames for its `/metrics`.
    pub async fn start_with(
        spec: &ClusterSpec,
        mut wrap: impl FnMut(usize, Box<dyn Transport>) -> Box<dyn Transport>,
    ) -> anyhow::Result<Self> {
        if spec.nodes < 2 {
            bail!("a cluster needs at least 2 nodes, got {}", spec.nodes);
        }
        let max_frame = crate::run_agent::datagram_len(&spec.config, spec.keyring.is_some());
        let agent_config = AgentConfig {
            // Every node sees every other come up at the start.
            event_capacity: 4 * spec.nodes + 1024,
            ..AgentConfig::default()
        };
        let observed: Arc<Vec<Mutex<Observed>>> =
            Arc::new((0..spec.nodes).map(|_| Mutex::default()).collect());
        let mut agents = Vec::with_capacity(spec.nodes);
        let root = match spec.transport {
            TransportKind::Quic => Some(ClusterCa::generate()?),
            TransportKind::Udp => None,
        };
        for i in 0..spec.nodes {
            let mut transport = bind(spec.transport, spec.bind, max_frame, root.as_ref()).await?;
            if let Some(ring) = &spec.keyring {
                let label = spec.config.cluster_label.clone();
                transport = Box::new(Sealed::new(transport, ring.clone(), label));
            }
            if let Some(faults) = spec.faults {
                transport = Box::new(Faulty::new(transport, faults, spec.seed ^ i as u64)?);
            }
            let transport = wrap(i, transport);
            let id = NodeId::new(transport.local_addr());
            let node = Node::with_strategy(
                spec.config.clone(),
                id,
                Generation(1),
                spec.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
                spec.strategy.clone(),
            )?;
            let agent = Agent::spawn(node, transport, agent_config.clone())?;
            tokio::spawn(watch(
                agent.subscribe(),
                Arc::clone(&observed),
                i,
                spec.nodes - 1,
            ));
            agents.push(agent);
        }
        let started = Instant::now();
        let seed = agents[0].id();
        agents[0].join(vec![]).await?;
        for agent in &agents[1..] {
            agent.join(vec![seed]).await?;
        }
        Ok(Self {
            agents,
            observed,
            started,
        })
    }

    /// Waits until every node in `who` satisfies `done`, checking every
    /// 5 ms; false if `limit` passes first.
    pub async fn wait_until(
        &self,
        who: &[usize],
        limit: Duration,
        done: impl Fn(&Observed) -> bool,
    ) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if who
                .iter()
                .all(|&i| done(&self.observed[i].lock().expect("observed lock")))
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Indices of every node except `except`.
    pub fn others(&self, except: &[usize]) -> Vec<usize> {
        (0..self.agents.len())
            .filter(|i| !except.contains(i))
            .collect()
    }

    /// The sum of every agent's transport counters (stopped agents excluded).
    pub async fn transport_totals(&self) -> TransportStats {
        let mut total = TransportStats::default();
        for agent in &self.agents {
            if let Ok(stats) = agent.stats().await {
                let t = stats.transport;
                total.packets_sent += t.packets_sent;
                total.bytes_sent += t.bytes_sent;
                total.packets_received += t.packets_received;
                total.bytes_received += t.bytes_received;
                total.frames_dropped += t.frames_dropped;
                total.frames_refused += t.frames_refused;
            }
        }
        total
    }

    /// Stops every agent at once, without farewells.
    pub async fn abort_all(&self) {
        for agent in &self.agents {
            agent.abort();
        }
        for agent in &self.agents {
            agent.wait().await;
        }
    }
}

async fn watch(
    mut events: tokio::sync::broadcast::Receiver<Event>,
    observed: Arc<Vec<Mutex<Observed>>>,
    index: usize,
    others: usize,
) {
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(n)) => {
                observed[index].lock().expect("observed lock").lagged += n;
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let now = Instant::now();
        let mut seen = observed[index].lock().expect("observed lock");
        match event {
            Event::MemberUp(m) => {
                seen.live.insert(m.id.addr());
                if seen.live.len() == others && seen.converged_at.is_none() {
                    seen.converged_at = Some(now);
                }
            }
            Event::MemberDown(m) => {
                seen.live.remove(&m.id.addr());
                seen.deaths.push((m.id.addr(), now));
            }
            Event::MemberLeft(m) => {
                seen.live.remove(&m.id.addr());
                seen.left.insert(m.id.addr());
            }
            Event::Delivered { id, .. } => {
                seen.deliveries += 1;
                if !seen.skip_deliveries {
                    seen.delivered.entry(id).or_insert(now);
                }
            }
            _ => {}
        }
    }
}
