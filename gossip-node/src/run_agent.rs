//! `gossip-node agent`: one node on a real socket, scriptable through
//! standard input and output.
//!
//! Events are printed as JSON lines on stdout, for example
//! `{"event":"member_up","member":"10.0.0.2:7946"}` or
//! `{"event":"delivered","origin":"10.0.0.1:7946","sequence":1,"payload":"hello"}`.
//! Commands are read from stdin, one per line:
//!
//! | line | effect |
//! | --- | --- |
//! | `broadcast TEXT` | broadcasts TEXT; prints `{"event":"broadcast","sequence":N}` |
//! | `members` | prints `{"event":"members","members":[{"id":..,"liveness":..}]}` |
//! | `stats` | prints the node's and transport's counters |
//! | `leave` | leaves gracefully and exits |
//!
//! End of input leaves the node running; Ctrl-C (SIGINT) or SIGTERM leaves
//! gracefully and exits.
//!
//! With `--keyring FILE` (UDP only) every frame is sealed with the file's
//! first key and opened with any of its keys; SIGHUP reloads the file and
//! prints `{"event":"keyring_reloaded",...}` naming the keys added and
//! removed. Without it, frames travel in plaintext, and the agent says so
//! once on stderr.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use gossip_agent::{Agent, AgentConfig, AgentHandle, Transport};
use gossip_core::{Config, Event, Generation, Node, NodeId};
use gossip_seal::{Keyring, KeyringHandle, Sealed};
use gossip_strategies::AnyStrategy;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::bench_net::NetStrategy;
use crate::cluster::{bind, TransportKind};

/// Arguments of `agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Address to listen on; it is the node's identity, so it must be the
    /// address peers reach it at (not 0.0.0.0).
    #[arg(long)]
    pub bind: SocketAddr,
    /// Seed members to join through (repeatable); none founds a cluster.
    #[arg(long)]
    pub join: Vec<SocketAddr>,
    /// Socket transport.
    #[arg(long, value_enum, default_value_t = TransportKind::Udp)]
    pub transport: TransportKind,
    /// Dissemination strategy.
    #[arg(long, value_enum, default_value_t = NetStrategy::Rumor)]
    pub strategy: NetStrategy,
    /// Expected cluster size (sizes retransmission limits).
    #[arg(long, default_value_t = 16)]
    pub cluster_size: usize,
    /// SWIM probe interval in milliseconds; other timers scale with it.
    #[arg(long, default_value_t = 1000)]
    pub probe_interval_ms: u64,
    /// Cluster label: nodes with different labels ignore each other.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Seed of the node's random generator (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Seal every frame (UDP only): a file of hex keys, one per line, the
    /// first one sealing and every one opening (make keys with
    /// `gossip-node keygen --secret FILE`). SIGHUP reloads it. Without it,
    /// frames are plaintext.
    #[arg(long)]
    pub keyring: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub tls: crate::keys::TlsArgs,
}

/// A LAN configuration whose timers follow `probe_interval`: probe timeout
/// at most half of it, state sync every 2 probes, dead members re-probed
/// every 5 and join retries every probe. Over QUIC frames are capped at
/// the QUIC transport's [`DATAGRAM_BUDGET`](gossip_transport_quic::DATAGRAM_BUDGET),
/// so frames stay datagrams instead of falling back to streams (the agent
/// refuses a node whose frames would not).
pub fn config_for(
    cluster_size: usize,
    probe_interval: Duration,
    transport: TransportKind,
) -> Config {
    let mut config = Config::lan(cluster_size);
    config.probe_interval = probe_interval;
    config.probe_timeout = config.probe_timeout.min(probe_interval / 2);
    config.sync_interval = config.sync_interval.min(probe_interval * 2);
    config.dead_probe_interval = config.dead_probe_interval.min(probe_interval * 5);
    config.join_retry_interval = config.join_retry_interval.min(probe_interval);
    if transport == TransportKind::Quic {
        config.max_message_size =
            std::num::NonZeroUsize::new(gossip_transport_quic::DATAGRAM_BUDGET)
                .expect("the QUIC datagram budget is positive");
    }
    config
}

/// Shrinks `config`'s `max_message_size` by the seal's
/// [`OVERHEAD`](gossip_seal::OVERHEAD), so sealed frames fit the datagram
/// budget the unsealed frames had.
pub fn leave_room_for_seal(config: &mut Config) {
    let size = config.max_message_size.get() - gossip_seal::OVERHEAD;
    config.max_message_size =
        std::num::NonZeroUsize::new(size).expect("max_message_size is at least 256");
}

/// The datagram budget a UDP socket needs for `config`'s frames: the
/// frame size, plus the seal when frames are sealed.
pub fn datagram_len(config: &Config, sealed: bool) -> usize {
    config.max_message_size.get() + if sealed { gossip_seal::OVERHEAD } else { 0 }
}

/// Reads a keyring file, warning when others may read it.
pub fn load_keyring(path: &Path) -> anyhow::Result<Keyring> {
    let ring = Keyring::from_file(path)?;
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "keyring {} is readable by other users; `chmod 600` it",
                path.display()
            );
        }
    }
    Ok(ring)
}

/// What changed between two rings, as a JSON event.
fn ring_change(old: &Keyring, new: &Keyring) -> serde_json::Value {
    let (old_ids, new_ids) = (old.ids(), new.ids());
    let names = |ids: Vec<&gossip_seal::KeyId>| -> Vec<String> {
        ids.into_iter().map(ToString::to_string).collect()
    };
    json!({
        "event": "keyring_reloaded",
        "primary": new.primary().id().to_string(),
        "previous_primary": old.primary().id().to_string(),
        "added": names(new_ids.iter().filter(|id| !old_ids.contains(id)).collect()),
        "removed": names(old_ids.iter().filter(|id| !new_ids.contains(id)).collect()),
        "keys": new_ids.len(),
    })
}

/// Reloads the key file into `handle`; a bad file keeps the current ring.
fn reload_keyring(path: &Path, handle: &KeyringHandle) {
    match load_keyring(path) {
        Ok(ring) => {
            let old = handle.replace(ring.clone());
            let change = ring_change(&old, &ring);
            tracing::info!("keyring reloaded from {}: {change}", path.display());
            print(change);
        }
        Err(error) => {
            let message = format!(
                "keyring reload from {} failed, keeping the current keys: {error:#}",
                path.display()
            );
            tracing::error!("{message}");
            print(json!({"event": "error", "message": message}));
        }
    }
}

fn print(line: serde_json::Value) {
    println!("{line}");
}

fn event_json(event: &Event) -> Option<serde_json::Value> {
    Some(match event {
        Event::MemberUp(m) => json!({"event": "member_up", "member": m.id.to_string()}),
        Event::MemberSuspect(m) => json!({"event": "member_suspect", "member": m.id.to_string()}),
        Event::MemberDown(m) => json!({"event": "member_down", "member": m.id.to_string()}),
        Event::MemberLeft(m) => json!({"event": "member_left", "member": m.id.to_string()}),
        Event::MemberUpdated(m) => json!({"event": "member_updated", "member": m.id.to_string()}),
        Event::Estimate(v) => json!({"event": "estimate", "value": v}),
        Event::Delivered { id, payload } => json!({
            "event": "delivered",
            "origin": id.origin.to_string(),
            "sequence": id.sequence,
            "payload": String::from_utf8_lossy(payload),
        }),
        _ => return None,
    })
}

impl AgentArgs {
    /// Runs the node until it is told to leave.
    pub fn run(&self) -> anyhow::Result<()> {
        if self.bind.ip().is_unspecified() {
            anyhow::bail!(
                "--bind must be the address peers reach this node at, not {}",
                self.bind
            );
        }
        if self.probe_interval_ms == 0 {
            anyhow::bail!("--probe-interval-ms must be positive");
        }
        if self.keyring.is_some() && self.transport == TransportKind::Quic {
            anyhow::bail!(
                "--keyring seals UDP frames; QUIC already encrypts and authenticates with TLS \
                 (drop --keyring, or use --transport udp)"
            );
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        runtime.block_on(self.serve())
    }

    async fn serve(&self) -> anyhow::Result<()> {
        let mut config = config_for(
            self.cluster_size,
            Duration::from_millis(self.probe_interval_ms),
            self.transport,
        );
        config.cluster_label = self.label.clone();
        let keyring = match &self.keyring {
            Some(path) => Some(KeyringHandle::new(load_keyring(path)?)),
            None => None,
        };
        if keyring.is_some() {
            leave_room_for_seal(&mut config);
        }
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH)?;
        // A restarted process must come back as a newer generation.
        let generation = Generation(since_epoch.as_millis() as u64);
        let transport: Box<dyn Transport> = match self.transport {
            TransportKind::Udp => {
                let udp = bind(
                    self.transport,
                    self.bind,
                    datagram_len(&config, keyring.is_some()),
                    None,
                )
                .await?;
                match &keyring {
                    Some(ring) => Box::new(Sealed::new(udp, ring.clone(), self.label.clone())),
                    None => {
                        tracing::warn!(
                            "no --keyring: frames are sent and accepted in plaintext; anyone on \
                             the path can read them and anyone who can send to {} can speak for \
                             any member",
                            udp.local_addr()
                        );
                        udp
                    }
                }
            }
            TransportKind::Quic => Box::new(self.tls.quic_transport(self.bind).await?),
        };
        let node = Node::with_strategy(
            config,
            NodeId::new(transport.local_addr()),
            generation,
            self.seed.unwrap_or(since_epoch.as_nanos() as u64),
            self.strategy.build(),
        )?;
        let agent = Agent::spawn(node, transport, AgentConfig::default())?;
        let mut events = agent.subscribe();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        if let Some(line) = event_json(&event) {
                            print(line);
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        print(json!({"event": "lagged", "missed": missed}));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        agent.join(self.join.clone()).await?;
        print(json!({"event": "ready", "addr": agent.id().to_string()}));

        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let mut stdin_open = true;
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // Made once, so a Ctrl-C during a command is not lost.
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        // SIGHUP reloads the keyring; without one it keeps its default
        // (ending the process), as before keyrings existed.
        let mut hangup = match keyring {
            Some(_) => Some(tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::hangup(),
            )?),
            None => None,
        };
        loop {
            tokio::select! {
                line = lines.next_line(), if stdin_open => match line.context("reading stdin")? {
                    Some(line) => {
                        if !command(&agent, line.trim()).await? {
                            break;
                        }
                    }
                    None => stdin_open = false,
                },
                _ = interrupt.recv() => break,
                _ = terminate.recv() => break,
                _ = async {
                    match hangup.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let (Some(path), Some(handle)) = (&self.keyring, &keyring) {
                        reload_keyring(path, handle);
                    }
                }
            }
        }
        agent.shutdown().await.ok();
        print(json!({"event": "stopped"}));
        Ok(())
    }
}

/// Runs one stdin command; false when the node should stop.
async fn command(agent: &AgentHandle<AnyStrategy>, line: &str) -> anyhow::Result<bool> {
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    match verb {
        "" => {}
        "broadcast" => match agent.broadcast(rest.as_bytes().to_vec()).await {
            Ok(id) => print(json!({"event": "broadcast", "sequence": id.sequence})),
            Err(error) => print(json!({"event": "error", "message": error.to_string()})),
        },
        "members" => {
            let members: Vec<_> = agent
                .members()
                .await?
                .into_iter()
                .map(|m| json!({"id": m.id.to_string(), "liveness": format!("{:?}", m.liveness).to_lowercase()}))
                .collect();
            print(json!({"event": "members", "members": members}));
        }
        "stats" => {
            let stats = agent.stats().await?;
            print(json!({
                "event": "stats",
                "node": stats.node,
                "packets_sent": stats.transport.packets_sent,
                "bytes_sent": stats.transport.bytes_sent,
                "frames_refused": stats.transport.frames_refused,
            }));
        }
        "leave" => return Ok(false),
        other => print(
            json!({"event": "error", "message": format!("unknown command {other:?}; try broadcast, members, stats or leave")}),
        ),
    }
    Ok(true)
}
