//! `gossip-node agent`: one node on a real socket, with a config file, a
//! data directory, a control API on loopback ([`crate::api`]), Prometheus
//! metrics ([`crate::metrics`]) and, for scripts, commands on stdin.
//!
//! Configuration comes from a TOML file (`--config`, see
//! [`crate::agent_config`]) and flags, flags winning. A configuration
//! mistake exits with code 2 and a message naming the field.
//!
//! With `--stdin-commands` (the default when stdin is not a terminal),
//! events are printed as JSON lines on stdout, for example
//! `{"event":"member_up","member":"10.0.0.2:7946",...}` or
//! `{"event":"delivered","origin":"10.0.0.1:7946","sequence":1,"payload":"hello","delay_ms":0.8,...}`,
//! and commands are read from stdin, one per line:
//!
//! | line | effect |
//! | --- | --- |
//! | `broadcast TEXT` | broadcasts TEXT; prints `{"event":"broadcast","sequence":N}` |
//! | `members` | prints `{"event":"members","members":[{"id":..,"liveness":..,"state":..,...}]}` |
//! | `stats` | prints the node's and transport's counters |
//! | `leave` | leaves gracefully and exits |
//!
//! End of input leaves the node running. SIGINT or SIGTERM (or `POST
//! /v1/leave`) leaves gracefully: the departure is gossiped for at most
//! `leave_linger_ms` and the process exits within 3 s, whatever stdin is
//! doing (stdin is read on a thread of its own that never holds the exit).
//!
//! With `--keyring FILE` (UDP only) every frame is sealed with the file's
//! first key and opened with any of its keys; SIGHUP reloads the file and
//! prints `{"event":"keyring_reloaded",...}` naming the keys added and
//! removed. Without it, frames travel in plaintext, and the agent says so
//! once on stderr.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use gossip_agent::{Agent, AgentConfig, Transport};
use gossip_aggregate::Function;
use gossip_core::partial::PartialConfig;
use gossip_core::{Aggregate, Config, Generation, NoAggregate, Node, NodeId};
use gossip_seal::{Keyring, KeyringHandle, Sealed};
use gossip_strategies::AnyStrategy;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::agent_config::{
    apply_core, apply_settings, bad, core_flag, strategy_from, AgentFile, AggregateAlgorithm,
    AggregateSpec, BadConfig, Membership, DEFAULT_API,
};
use crate::api::{self, Shared};
use crate::bench_net::NetStrategy;
use crate::cluster::{bind, TransportKind};
use crate::data_dir::{self, Identity};
use crate::metrics::{Metered, Metrics};

/// Format of the agent's logs on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

const AGENT_EXAMPLES: &str = "\
Examples:
  gossip-node agent --bind 10.0.0.1:7946 --data-dir /var/lib/gossip
  gossip-node agent --bind 10.0.0.2:7946 --join 10.0.0.1:7946 --api 127.0.0.1:7947
  gossip-node agent --config /etc/gossip/agent.toml --core probe_timeout=300ms

The control API listens on 127.0.0.1:7947 unless --api says otherwise
(--api none turns it off); `gossip-node members` and the other client
subcommands talk to it. SIGINT or SIGTERM leaves gracefully.";

/// Arguments of `agent`. Every one may also be set in the `--config`
/// file; a flag given here wins.
#[derive(Debug, clap::Args)]
#[command(after_help = AGENT_EXAMPLES)]
pub struct AgentArgs {
    /// TOML configuration file (see gossip-node/examples/agent.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on; it is the node's identity, so it must be the
    /// address peers reach it at (not 0.0.0.0). Kept in --data-dir.
    #[arg(long)]
    pub bind: Option<SocketAddr>,
    /// Address of the HTTP control API [default: 127.0.0.1:7947]; `none`
    /// turns it off. Beyond loopback only with --api-token-file.
    #[arg(long, value_name = "ADDR|none")]
    pub api: Option<String>,
    /// File holding a bearer token the control API then demands.
    #[arg(long, value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Folder keeping the node's identity and restart counter, so a
    /// restart comes back as the same member in a newer generation.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Seed members to join through, `ip:port` or `host:port`
    /// (repeatable); none founds a cluster.
    #[arg(long, value_name = "ADDR")]
    pub join: Vec<String>,
    /// Socket transport [default: udp].
    #[arg(long, value_enum)]
    pub transport: Option<TransportKind>,
    /// Dissemination strategy preset [default: rumor] (the config file
    /// also takes any strategy's parameters).
    #[arg(long, value_enum)]
    pub strategy: Option<NetStrategy>,
    /// Aggregation algorithm to run (the config file's `[aggregate]` table
    /// sets the function, leader and epochs).
    #[arg(long, value_enum)]
    pub aggregate: Option<AggregateAlgorithm>,
    /// This node's input to the aggregate.
    #[arg(long, value_name = "VALUE")]
    pub aggregate_input: Option<f64>,
    /// Expected cluster size (sizes retransmission limits) [default: 16].
    #[arg(long)]
    pub cluster_size: Option<usize>,
    /// SWIM probe interval in milliseconds; other timers scale with it
    /// [default: 1000].
    #[arg(long)]
    pub probe_interval_ms: Option<u64>,
    /// Cluster label: nodes with different labels ignore each other.
    #[arg(long)]
    pub label: Option<String>,
    /// Seed of the node's random generator (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Sets one field of the protocol's Config (repeatable), as in the
    /// file's `[core]` table: `--core indirect_probes=2`,
    /// `--core probe_timeout=300ms`.
    #[arg(long = "core", value_name = "FIELD=VALUE")]
    pub core: Vec<String>,
    /// Sets one field of leader election (repeatable), as in the file's
    /// `[leader]` table: `--leader quorum_mode=true`, `--leader role=db`,
    /// `--leader lease=3s`.
    #[arg(long = "leader", value_name = "FIELD=VALUE")]
    pub leader: Vec<String>,
    /// Sets one field of the partition watch (repeatable), as in the
    /// file's `[partition]` table: `--partition fraction=0.4`.
    #[arg(long = "partition", value_name = "FIELD=VALUE")]
    pub partition: Vec<String>,
    /// How long a graceful leave gossips the departure, in milliseconds,
    /// 0..=2500 [default: 1500].
    #[arg(long)]
    pub leave_linger_ms: Option<u64>,
    /// Membership: full views (SWIM; the default) or partial views
    /// (HyParView neighbours with a Plumtree broadcast tree, for clusters
    /// beyond what full views serve).
    #[arg(long, value_enum)]
    pub membership: Option<Membership>,
    /// Sets one field of the partial views (repeatable; with
    /// --membership partial), as in the file's `[partial]` table:
    /// `--partial active_size=6`, `--partial dead_after=2s`.
    #[arg(long = "partial", value_name = "FIELD=VALUE")]
    pub partial: Vec<String>,
    /// Read commands from stdin and print events as JSON lines on stdout
    /// (the default when stdin is not a terminal).
    #[arg(long)]
    pub stdin_commands: bool,
    /// Log format on stderr (the level comes from RUST_LOG, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Seal every frame (UDP only): a file of hex keys, one per line, the
    /// first one sealing and every one opening (make keys with
    /// `gossip-node keygen --secret FILE`). SIGHUP reloads it. Without it,
    /// frames are plaintext.
    #[arg(long)]
    pub keyring: Option<PathBuf>,
    /// Sign every rumor this node originates with this Ed25519 key file
    /// (`gossip-node keygen --signing FILE`) and refuse rumors whose
    /// origin's signature is missing or wrong. Needs --trusted-keys.
    #[arg(long, requires = "trusted_keys")]
    pub signing_key: Option<PathBuf>,
    /// The members whose rumors are taken when signing: one
    /// `ADDR PUBLIC_KEY` line per member (`#` comments allowed). Needs
    /// --signing-key.
    #[arg(long, requires = "signing_key")]
    pub trusted_keys: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub tls: crate::keys::TlsArgs,
}

/// A LAN configuration whose timers follow `probe_interval`: probe timeout
/// at most half of it, state sync every 2 probes (once the table has not
/// grown for 5), dead members re-probed
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
    config.sync_quiet_period = config.sync_quiet_period.min(probe_interval * 5);
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
pub(crate) fn reload_keyring(
    path: &Path,
    handle: &KeyringHandle,
    print: impl Fn(serde_json::Value),
) {
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

/// Everything the agent runs with, flags and file merged and checked.
#[derive(Debug)]
pub struct Settings {
    /// Who this node is, in which life.
    pub identity: Identity,
    /// Where the identity is kept, if anywhere.
    pub data_dir: Option<PathBuf>,
    /// The control API's address, if it runs.
    pub api: Option<SocketAddr>,
    /// The API's bearer token.
    pub token: Option<String>,
    /// Seeds as given (names are resolved at start, and again while the
    /// join has no answer).
    pub seeds: Vec<String>,
    /// The socket transport.
    pub transport: TransportKind,
    /// The dissemination strategy.
    pub strategy: AnyStrategy,
    /// The aggregate and this node's input, if one runs.
    pub aggregate: Option<AggregateSpec>,
    /// The sealing keyring file.
    pub keyring: Option<PathBuf>,
    /// The rumor signing key and trusted keys files, if rumors are signed.
    pub signing: Option<(PathBuf, PathBuf)>,
    /// The QUIC files.
    pub tls: crate::keys::TlsArgs,
    /// The protocol configuration, validated.
    pub config: Config,
    /// Seed of the node's generator.
    pub seed: u64,
    /// How long a leave lingers.
    pub leave_linger: Duration,
    /// Whether stdin carries commands and stdout events.
    pub stdin_commands: bool,
    /// Leader election's settings.
    pub leader: gossip_apps::LeaderConfig,
    /// The partition watch's settings.
    pub partition: gossip_apps::PartitionConfig,
    /// The partial views' settings, validated, when the agent runs partial
    /// views (`membership = "partial"`) instead of the full-view node.
    pub partial: Option<PartialConfig>,
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl AgentArgs {
    /// Merges the file and the flags and checks the result. Errors are
    /// [`BadConfig`] (exit code 2) when the configuration is at fault.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => AgentFile::load(path)?,
            None => AgentFile::default(),
        };
        let transport = self
            .transport
            .or(file.transport)
            .unwrap_or(TransportKind::Udp);
        let probe_interval_ms = self
            .probe_interval_ms
            .or(file.probe_interval_ms)
            .unwrap_or(1000);
        if probe_interval_ms == 0 {
            bad("--probe-interval-ms (probe_interval_ms) must be positive: at least 1 ms")?;
        }
        let cluster_size = self.cluster_size.or(file.cluster_size).unwrap_or(16);
        if cluster_size == 0 {
            bad("--cluster-size (cluster_size) must be at least 1")?;
        }
        let mut config = config_for(
            cluster_size,
            Duration::from_millis(probe_interval_ms),
            transport,
        );
        if let Some(label) = &file.label {
            config.cluster_label = label.clone();
        }
        config = apply_core(&config, &file.core, "core")?;
        let mut flags = toml::Table::new();
        for flag in &self.core {
            let (key, value) = core_flag(flag)?;
            flags.insert(key, value);
        }
        config = apply_core(&config, &flags, "--core")?;
        if let Some(label) = &self.label {
            config.cluster_label = label.clone();
        }
        let keyring = self.keyring.clone().or(file.keyring.clone());
        if keyring.is_some() && transport == TransportKind::Quic {
            // Exit code 1, as before the config file existed (scripts and
            // tests rely on it).
            anyhow::bail!(
                "--keyring seals UDP frames; QUIC already encrypts and authenticates with TLS \
                 (drop --keyring, or use --transport udp)"
            );
        }
        if keyring.is_some() {
            leave_room_for_seal(&mut config);
        }
        let signing = match (
            self.signing_key.clone().or(file.signing_key.clone()),
            self.trusted_keys.clone().or(file.trusted_keys.clone()),
        ) {
            (Some(key), Some(trusted)) => Some((key, trusted)),
            (None, None) => None,
            _ => bad("signing_key and trusted_keys go together: set both or neither")?,
        };
        config
            .validate()
            .map_err(|e| BadConfig(format!("invalid configuration: {e}")))?;

        let mut aggregate = file.aggregate.clone();
        if let Some(algorithm) = self.aggregate {
            let spec = aggregate.get_or_insert(AggregateSpec {
                algorithm,
                function: Function::Average,
                input: 0.0,
                leader: false,
                epoch_rounds: None,
                degree: None,
            });
            spec.algorithm = algorithm;
        }
        if let Some(input) = self.aggregate_input {
            match aggregate.as_mut() {
                Some(spec) => spec.input = input,
                None => bad("--aggregate-input needs an aggregate (--aggregate ALGORITHM)")?,
            }
        }
        if let Some(spec) = &aggregate {
            spec.build()?;
        }
        let partial = match self.membership.or(file.membership).unwrap_or_default() {
            Membership::Full => {
                if !file.partial.is_empty() || !self.partial.is_empty() {
                    bad(
                        "[partial] (--partial) sets partial views, but membership is \"full\"; \
                         set membership = \"partial\" (--membership partial) or remove them",
                    )?;
                }
                None
            }
            Membership::Partial => {
                self.refuse_full_view_options(&file, aggregate.is_some(), signing.is_some())?;
                // The label as for full views: the `label` key, then
                // `[partial] cluster_label` (--partial cluster_label=...),
                // then --label.
                let mut base = PartialConfig {
                    cluster_label: file.label.clone().unwrap_or_default(),
                    ..PartialConfig::default()
                };
                if transport == TransportKind::Quic {
                    base.max_frame_len = gossip_transport_quic::DATAGRAM_BUDGET;
                }
                let mut config: PartialConfig =
                    self.app_settings_from(base, &file.partial, &self.partial, "partial")?;
                if let Some(label) = &self.label {
                    config.cluster_label = label.clone();
                }
                if keyring.is_some() {
                    config.max_frame_len =
                        config.max_frame_len.saturating_sub(gossip_seal::OVERHEAD);
                }
                config.validate().map_err(|e| {
                    BadConfig(format!(
                        "[partial] (--partial): {e}{}",
                        if keyring.is_some() {
                            " (max_frame_len is what remains after the keyring's seal)"
                        } else {
                            ""
                        }
                    ))
                })?;
                Some(config)
            }
        };
        if let Some(partial) = &partial {
            // One label for the data directory, the seal and the frames.
            config.cluster_label = partial.cluster_label.clone();
        }

        let bind = self.bind.or(file.bind);
        if let Some(bind) = bind {
            if bind.ip().is_unspecified() {
                bad(format!(
                    "--bind must be the address peers reach this node at, not {bind}"
                ))?;
            }
        }
        let data_dir = self.data_dir.clone().or(file.data_dir.clone());
        let now_ms = unix_now().as_millis() as u64;
        let identity = match &data_dir {
            Some(dir) => {
                if bind.is_some_and(|b| b.port() == 0) {
                    bad("--bind: port 0 cannot be kept as an identity in --data-dir; give a port")?;
                }
                let previous = data_dir::read(dir)?;
                data_dir::next(previous.as_ref(), bind, &config.cluster_label, now_ms, dir)?
            }
            None => match bind {
                Some(id) => Identity {
                    id,
                    label: config.cluster_label.clone(),
                    restarts: 0,
                    generation: now_ms,
                },
                None => bad(
                    "--bind is required (the address peers reach this node at), \
                             unless --data-dir remembers it",
                )?,
            },
        };

        let token = match self.api_token_file.clone().or(file.api_token_file.clone()) {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| BadConfig(format!("--api-token-file {}: {e}", path.display())))?;
                let token = text.trim().to_string();
                if token.is_empty() {
                    bad(format!(
                        "--api-token-file {}: the file is empty",
                        path.display()
                    ))?;
                }
                Some(token)
            }
            None => None,
        };
        let api_text = self
            .api
            .clone()
            .or(file.api.clone())
            .unwrap_or_else(|| DEFAULT_API.to_string());
        let api =
            match api_text.as_str() {
                "none" | "off" => None,
                text => Some(text.parse::<SocketAddr>().map_err(|_| {
                    BadConfig(format!("--api (api): {text:?} is not ip:port or none"))
                })?),
            };
        if let Some(api) = api {
            if token.is_none() && !api.ip().is_loopback() {
                bad(format!(
                    "--api (api): {api} is not a loopback address; the control API listens \
                     beyond loopback only with a bearer token (--api-token-file)"
                ))?;
            }
        }

        let strategy = match (self.strategy, &file.strategy) {
            (Some(preset), _) => preset.build(),
            (None, Some(value)) => strategy_from(value)?,
            (None, None) => NetStrategy::Rumor.build(),
        };
        let leave_linger_ms = self
            .leave_linger_ms
            .or(file.leave_linger_ms)
            .unwrap_or(1500);
        if leave_linger_ms > 2500 {
            bad(
                "--leave-linger-ms (leave_linger_ms) must be within 0..=2500 ms, so the agent \
                 exits within 3 s of a signal",
            )?;
        }
        let tls = crate::keys::TlsArgs {
            cert: self.tls.cert.clone().or(file.tls.cert.clone()),
            key: self.tls.key.clone().or(file.tls.key.clone()),
            ca: self.tls.ca.clone().or(file.tls.ca.clone()),
            quic_connections_per_ip: self
                .tls
                .quic_connections_per_ip
                .or(file.tls.quic_connections_per_ip),
        };
        if tls.quic_connections_per_ip == Some(0) {
            bad("tls.quic_connections_per_ip must be at least 1")?;
        }
        let mut seeds = file.join.clone();
        if !self.join.is_empty() {
            seeds = self.join.clone();
        }
        let leader = self.app_settings(&file.leader, &self.leader, "leader")?;
        let partition = self.app_settings(&file.partition, &self.partition, "partition")?;
        Ok(Settings {
            partial,
            leader,
            partition,
            identity,
            data_dir,
            api,
            token,
            seeds,
            transport,
            strategy,
            aggregate,
            keyring,
            signing,
            tls,
            config,
            seed: self
                .seed
                .or(file.seed)
                .unwrap_or(unix_now().as_nanos() as u64),
            leave_linger: Duration::from_millis(leave_linger_ms),
            stdin_commands: self.stdin_commands || !std::io::stdin().is_terminal(),
        })
    }

    /// With partial views, refuses what only the full-view node has, so a
    /// setting is never silently ignored: the node's protocol config
    /// (`[core]`, presets), dissemination strategies, aggregates, signed
    /// rumors and leader election (whose quorums need every member known).
    fn refuse_full_view_options(
        &self,
        file: &AgentFile,
        aggregate: bool,
        signing: bool,
    ) -> Result<(), BadConfig> {
        let refused = [
            (
                "[core] (--core)",
                !file.core.is_empty() || !self.core.is_empty(),
            ),
            (
                "strategy (--strategy)",
                file.strategy.is_some() || self.strategy.is_some(),
            ),
            ("[aggregate] (--aggregate)", aggregate),
            ("signing_key and trusted_keys", signing),
            (
                "[leader] (--leader)",
                !file.leader.is_empty() || !self.leader.is_empty(),
            ),
            (
                "[partition] (--partition)",
                !file.partition.is_empty() || !self.partition.is_empty(),
            ),
            (
                "cluster_size (--cluster-size)",
                file.cluster_size.is_some() || self.cluster_size.is_some(),
            ),
            (
                "probe_interval_ms (--probe-interval-ms)",
                file.probe_interval_ms.is_some() || self.probe_interval_ms.is_some(),
            ),
        ];
        let set: Vec<&str> = refused
            .iter()
            .filter(|(_, set)| *set)
            .map(|(name, _)| *name)
            .collect();
        if !set.is_empty() {
            bad(format!(
                "membership = \"partial\" runs partial views (HyParView with a Plumtree tree), \
                 which have their own settings ([partial]); {} configure(s) the full-view node \
                 and need(s) membership = \"full\" (leader election and aggregates need every \
                 member known); remove them or choose full membership",
                set.join(", ")
            ))?;
        }
        Ok(())
    }

    /// An application's settings: its defaults, then the file's table
    /// `[name]`, then the `--name FIELD=VALUE` flags.
    fn app_settings<T>(
        &self,
        file: &toml::Table,
        flags: &[String],
        name: &str,
    ) -> Result<T, BadConfig>
    where
        T: Default + serde::Serialize + serde::de::DeserializeOwned,
    {
        self.app_settings_from(T::default(), file, flags, name)
    }

    /// Settings from `base`, then the file's table `[name]`, then the
    /// `--name FIELD=VALUE` flags.
    fn app_settings_from<T>(
        &self,
        base: T,
        file: &toml::Table,
        flags: &[String],
        name: &str,
    ) -> Result<T, BadConfig>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let from_file = apply_settings(&base, file, name)?;
        let mut table = toml::Table::new();
        for flag in flags {
            let (key, value) = core_flag(flag)?;
            table.insert(key, value);
        }
        apply_settings(&from_file, &table, &format!("--{name}"))
    }

    /// Runs the node until it is told to leave.
    pub fn run(&self) -> anyhow::Result<()> {
        let settings = self.settings()?;
        // Held until the agent has stopped.
        let _lock = match &settings.data_dir {
            Some(dir) => Some(data_dir::DirLock::take(dir)?),
            None => None,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let result = runtime.block_on(async move {
            if let Some(partial) = settings.partial.clone() {
                return crate::run_partial::serve(settings, partial).await;
            }
            match settings.aggregate.clone() {
                Some(spec) => {
                    let aggregate = spec.build()?;
                    serve(settings, aggregate, Some(spec.input)).await
                }
                None => serve(settings, NoAggregate, None).await,
            }
        });
        // Tasks still running (API connections, event streams) are dropped;
        // nothing here waits on stdin, which a thread of its own reads.
        runtime.shutdown_timeout(Duration::from_millis(100));
        result
    }
}

/// Writes one JSON line on stdout; a closed stdout is not an error.
pub(crate) fn print_line(line: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Binds the transport `settings` asks for, for frames of up to
/// `frame_len` bytes, sealed if a keyring is given (the datagram budget
/// then has room for the seal), and the keyring's handle.
pub(crate) async fn transport(
    settings: &Settings,
    frame_len: usize,
) -> anyhow::Result<(Box<dyn Transport>, Option<KeyringHandle>)> {
    let keyring = match &settings.keyring {
        Some(path) => Some(KeyringHandle::new(load_keyring(path)?)),
        None => None,
    };
    let at = settings.identity.id;
    let transport: Box<dyn Transport> = match settings.transport {
        TransportKind::Udp => {
            let udp = bind(
                settings.transport,
                at,
                frame_len
                    + if keyring.is_some() {
                        gossip_seal::OVERHEAD
                    } else {
                        0
                    },
                None,
            )
            .await?;
            match &keyring {
                Some(ring) => Box::new(Sealed::new(
                    udp,
                    ring.clone(),
                    settings.config.cluster_label.clone(),
                )),
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
        TransportKind::Quic => Box::new(settings.tls.quic_transport(at).await?),
    };
    Ok((transport, keyring))
}

async fn serve<A>(settings: Settings, aggregate: A, input: Option<f64>) -> anyhow::Result<()>
where
    A: Aggregate + Send + 'static,
{
    let (inner, keyring) = transport(&settings, settings.config.max_message_size.get()).await?;
    let metrics = Arc::new(Metrics::new());
    let transport = Metered::new(inner, settings.config.clone(), Arc::clone(&metrics));
    let listener = bind_api(&settings).await?;
    let identity = record_identity(&settings, transport.local_addr())?;
    let mut node = Node::with_parts(
        settings.config.clone(),
        NodeId::new(identity.id),
        Generation(identity.generation),
        settings.seed,
        settings.strategy.clone(),
        aggregate,
    )?;
    if let Some((key, trusted)) = &settings.signing {
        let keys = crate::keys::rumor_keys(NodeId::new(identity.id), key, trusted)?;
        node.set_rumor_signer(Box::new(keys))?;
        tracing::info!("rumors are signed; those without a trusted origin signature are refused");
    }
    let agent = Agent::spawn(
        node,
        transport,
        AgentConfig {
            leave_linger: settings.leave_linger,
            ..AgentConfig::default()
        },
    )?;
    tracing::info!(
        id = %identity.id,
        generation = identity.generation,
        restarts = identity.restarts,
        "node started"
    );

    // Node events become JSON once, for the printer, the log and SSE.
    let (events, _) = broadcast::channel::<Arc<Value>>(4096);
    let printer = events.subscribe();
    let stdin_commands = settings.stdin_commands;
    tokio::spawn(async move {
        let mut lines = printer;
        loop {
            match lines.recv().await {
                Ok(line) if stdin_commands => print_line(&line),
                Ok(line) => tracing::info!(target: "gossip_node::events", "{line}"),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    if stdin_commands {
                        print_line(&json!({"event": "lagged", "missed": missed}));
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    api::forward_events(agent.subscribe(), events.clone(), Arc::clone(&metrics));

    let (stop, mut stopping) = mpsc::channel(1);
    let shared = Arc::new(Shared {
        agent: agent.clone(),
        metrics,
        events: events.clone(),
        input: Mutex::new(input),
        token: settings.token.clone(),
        stop,
    });
    let kv = crate::api_kv::build(
        NodeId::new(identity.id),
        settings.data_dir.as_deref(),
        settings.seed,
    )?;
    crate::api_kv::host(Arc::clone(&shared), kv).await?;
    let api_addr = match listener {
        Some(listener) => {
            let addr = listener.local_addr()?;
            tokio::spawn(api::serve(listener, api::router(Arc::clone(&shared))));
            tracing::info!(%addr, "control API listening");
            Some(addr)
        }
        None => None,
    };

    crate::api_leader::host(&shared, settings.leader.clone(), settings.partition.clone()).await?;
    let seeds = match api::resolve(&settings.seeds, identity.id).await {
        Ok(seeds) => seeds,
        Err(error) => {
            // Names that do not resolve yet (a seed whose DNS record is
            // not up) are retried below; start with those that do.
            tracing::warn!(%error, "a seed does not resolve yet; retrying with back-off");
            let mut some = Vec::new();
            for name in &settings.seeds {
                if let Ok(mut found) = api::resolve(std::slice::from_ref(name), identity.id).await {
                    some.append(&mut found);
                }
            }
            some
        }
    };
    agent.join(seeds).await?;
    if !settings.seeds.is_empty() {
        tokio::spawn(keep_joining(Arc::clone(&shared), settings.seeds.clone()));
    }
    let _ = events.send(Arc::new(json!({
        "event": "ready",
        "addr": identity.id.to_string(),
        "generation": identity.generation,
        "restarts": identity.restarts,
        "api": api_addr.map(|a| a.to_string()),
    })));

    let keys = settings.keyring.as_deref().zip(keyring.as_ref());
    let why = wait_for_leave(stdin_commands, &mut stopping, keys, &events, |line| {
        let shared = Arc::clone(&shared);
        async move { command(&shared, line.trim()).await }
    })
    .await?;
    tracing::info!("{why}: leaving the cluster");
    // The leave lingers at most `leave_linger` (2.5 s at most); the bound
    // here only guards against a stuck agent.
    let bound = settings.leave_linger + Duration::from_millis(300);
    if tokio::time::timeout(bound, agent.leave()).await.is_err() {
        tracing::warn!("the leave did not finish in time; stopping anyway");
        agent.abort();
    }
    // Straight to stdout: the printer task may not run again.
    if stdin_commands {
        print_line(&json!({"event": "stopped"}));
    }
    tracing::info!("stopped");
    Ok(())
}

/// While the node knows no other live member, re-resolves the seeds'
/// names and asks them again, waiting 1, 2, 4, ... up to 30 s in between (the
/// core itself retries every `join_retry_interval`; this adds names that
/// resolve late and a log line that says the join is stuck).
async fn keep_joining<A: Aggregate + Send + 'static>(shared: Arc<Shared<A>>, names: Vec<String>) {
    let mut wait = Duration::from_secs(1);
    let mut waited = Duration::ZERO;
    loop {
        tokio::time::sleep(wait).await;
        waited += wait;
        // Joined once another member is live (a node whose seeds did not
        // resolve at start founded a cluster of one, so `is_joined` alone
        // would stop here).
        let me = shared.agent.id();
        match shared.agent.members().await {
            Ok(members) => {
                if members.iter().any(|m| {
                    m.id.addr() != me
                        && matches!(
                            m.liveness,
                            gossip_core::Liveness::Alive | gossip_core::Liveness::Suspect
                        )
                }) {
                    return;
                }
            }
            Err(_) => return,
        }
        let mut addrs = Vec::new();
        for name in &names {
            if let Ok(mut found) = api::resolve(std::slice::from_ref(name), shared.agent.id()).await
            {
                addrs.append(&mut found);
            }
        }
        tracing::warn!(
            seeds = ?names,
            "no seed has answered after {} s; asking again",
            waited.as_secs()
        );
        if !addrs.is_empty() && shared.agent.contact(addrs).await.is_err() {
            return;
        }
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

/// Binds the control API's listener, if `settings` ask for one.
pub(crate) async fn bind_api(
    settings: &Settings,
) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let Some(addr) = settings.api else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!(
            "binding the control API at {addr} (choose another with --api ADDR, or run \
             without one with --api none)"
        )
    })?;
    Ok(Some(listener))
}

/// This run's identity at the address the transport bound (with port 0
/// and no data dir, the port the system picked), written to the data dir
/// when there is one.
pub(crate) fn record_identity(settings: &Settings, bound: SocketAddr) -> anyhow::Result<Identity> {
    let identity = Identity {
        id: bound,
        ..settings.identity.clone()
    };
    if let Some(dir) = &settings.data_dir {
        data_dir::write(dir, &identity)?;
    }
    Ok(identity)
}

/// Runs the agent's foreground until something asks it to leave, and says
/// what: stdin commands (when `stdin_commands`; `command` answers `false`
/// for a leave), SIGINT, SIGTERM, a leave through the API (`stopping`),
/// and SIGHUP, which reloads the keyring when there is one (without one
/// SIGHUP keeps its default, ending the process, as before keyrings
/// existed). Shared by full and partial membership.
pub(crate) async fn wait_for_leave<F, Fut>(
    stdin_commands: bool,
    stopping: &mut mpsc::Receiver<()>,
    keyring: Option<(&Path, &KeyringHandle)>,
    events: &broadcast::Sender<Arc<Value>>,
    mut command: F,
) -> anyhow::Result<&'static str>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let mut commands = stdin_commands.then(read_stdin);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Made once, so a Ctrl-C during a command is not lost.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut hangup = match keyring {
        Some(_) => Some(tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::hangup(),
        )?),
        None => None,
    };
    Ok(loop {
        tokio::select! {
            line = async {
                match commands.as_mut() {
                    Some(lines) => lines.recv().await,
                    None => std::future::pending().await,
                }
            } => match line {
                Some(line) => {
                    if !command(line).await? {
                        break "leave command";
                    }
                }
                // End of input: the node keeps running.
                None => commands = None,
            },
            _ = interrupt.recv() => break "SIGINT",
            _ = terminate.recv() => break "SIGTERM",
            _ = stopping.recv() => break "leave requested through the API",
            _ = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some((path, handle)) = keyring {
                    let hub = events.clone();
                    reload_keyring(path, handle, move |line| {
                        let _ = hub.send(Arc::new(line));
                    });
                }
            }
        }
    })
}

/// Reads stdin on a thread of its own, one line at a time. A blocked read
/// never holds up the process's exit (tokio's stdin would: its reads run on
/// the runtime's blocking pool, which shutdown waits for).
pub(crate) fn read_stdin() -> mpsc::UnboundedReceiver<String> {
    let (lines, receiver) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    receiver
}

/// Runs one stdin command; false when the node should stop.
async fn command<A: Aggregate + Send + 'static>(
    shared: &Shared<A>,
    line: &str,
) -> anyhow::Result<bool> {
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    match verb {
        "" => {}
        "broadcast" => match shared.broadcast(rest.as_bytes()).await {
            Ok(id) => print_line(&json!({"event": "broadcast", "sequence": id.sequence})),
            Err(error) => print_line(&json!({"event": "error", "message": error.to_string()})),
        },
        "members" => {
            let members: Vec<Value> = shared
                .members()
                .await?
                .into_iter()
                .map(|mut m| {
                    m["liveness"] = m["state"].clone();
                    m
                })
                .collect();
            print_line(&json!({"event": "members", "members": members}));
        }
        "stats" => {
            let stats = shared.agent.stats().await?;
            let mut line = api::stats_json(&stats);
            line["event"] = "stats".into();
            line["packets_sent"] = stats.transport.packets_sent.into();
            line["bytes_sent"] = stats.transport.bytes_sent.into();
            line["frames_refused"] = stats.transport.frames_refused.into();
            print_line(&line);
        }
        "leave" => return Ok(false),
        other => print_line(&json!({
            "event": "error",
            "message": format!("unknown command {other:?}; try broadcast, members, stats or leave"),
        })),
    }
    Ok(true)
}
