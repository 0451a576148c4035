//! The agent's configuration: a TOML file (`gossip-node agent --config
//! FILE`) merged with command-line flags, flags winning.
//!
//! Every key of the file is optional; `gossip-node/examples/agent.toml`
//! documents each one, and a test parses that file, so the reference
//! cannot drift from this struct. Protocol tunables live in a `[core]`
//! table whose keys are the fields of [`gossip_core::Config`]; durations
//! there are strings with a unit (`"200ms"`, `"1.5s"`, `"2m"`, `"1h"`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gossip_aggregate::{Algorithm, AnyAggregate, Function, Input};
use gossip_core::Config;
use gossip_strategies::AnyStrategy;
use serde::Deserialize;

use crate::bench_net::NetStrategy;
use crate::cluster::TransportKind;

/// Where the control API listens unless told otherwise (the port after
/// the usual gossip port 7946).
pub const DEFAULT_API: &str = "127.0.0.1:7947";

/// A configuration mistake: the process exits with code 2 and this
/// message, which names the field and what it accepts.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadConfig(pub String);

/// Shorthand for a [`BadConfig`] error.
pub(crate) fn bad<T>(message: impl Into<String>) -> Result<T, BadConfig> {
    Err(BadConfig(message.into()))
}

/// The agent's TOML file. Every key is optional; a flag given on the
/// command line replaces the file's value.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentFile {
    /// Address to listen on for gossip (the node's identity).
    pub bind: Option<SocketAddr>,
    /// Address of the control API (`"none"` turns it off).
    pub api: Option<String>,
    /// File holding the API's bearer token.
    pub api_token_file: Option<PathBuf>,
    /// Folder keeping the node's identity and restart counter.
    pub data_dir: Option<PathBuf>,
    /// Seeds (`ip:port` or `host:port`).
    pub join: Vec<String>,
    /// `"udp"` or `"quic"`.
    pub transport: Option<TransportKind>,
    /// A preset name (`"rumor"`, `"rumor-batched"`, `"anti-entropy"`,
    /// `"flood"`) or a table in `gossip_strategies::AnyStrategy`'s serde form.
    pub strategy: Option<toml::Value>,
    /// The aggregate this node computes, if any.
    pub aggregate: Option<AggregateSpec>,
    /// Keyring file sealing UDP frames.
    pub keyring: Option<PathBuf>,
    /// Ed25519 key file signing this node's rumors (with `trusted_keys`).
    pub signing_key: Option<PathBuf>,
    /// `ADDR PUBLIC_KEY` lines: whose signed rumors are taken.
    pub trusted_keys: Option<PathBuf>,
    /// QUIC certificate files.
    pub tls: TlsFile,
    /// Cluster label.
    pub label: Option<String>,
    /// Expected cluster size (sizes the LAN preset).
    pub cluster_size: Option<usize>,
    /// Probe interval of the preset, in milliseconds; other timers follow.
    pub probe_interval_ms: Option<u64>,
    /// Seed of the node's random generator.
    pub seed: Option<u64>,
    /// How long a graceful leave gossips the departure, in milliseconds.
    pub leave_linger_ms: Option<u64>,
    /// Fields of `gossip_core::Config`, set exactly.
    pub core: toml::Table,
    /// Fields of `gossip_apps::leader::LeaderConfig` (role, quorum mode,
    /// lease and the rest).
    pub leader: toml::Table,
    /// Fields of `gossip_apps::partition::PartitionConfig` (window,
    /// thresholds).
    pub partition: toml::Table,
    /// `"full"` (SWIM, every member known; the default) or `"partial"`
    /// (HyParView views with a Plumtree tree).
    pub membership: Option<Membership>,
    /// Fields of `gossip_core::partial::PartialConfig`, for
    /// `membership = "partial"`.
    pub partial: toml::Table,
}

/// Which membership the agent runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Membership {
    /// Full views: every node knows every member (SWIM failure detection,
    /// the strategies of `gossip-strategies`, the KV store and leader
    /// election).
    #[default]
    Full,
    /// Partial views (`gossip_core::partial`): a few neighbours per node
    /// watched by pings, a reserve refilled by shuffles, broadcasts along
    /// a Plumtree tree; for clusters beyond what full views serve.
    Partial,
}

/// The `[tls]` table: QUIC certificate files from `gossip-node keygen`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsFile {
    /// The node's certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// The node's private key (PEM).
    pub key: Option<PathBuf>,
    /// The cluster root certificate (PEM).
    pub ca: Option<PathBuf>,
    /// Most QUIC connections from one IP address.
    pub quic_connections_per_ip: Option<u32>,
}

/// Which aggregation algorithm, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AggregateAlgorithm {
    /// Push-sum (Kempe et al.).
    PushSum,
    /// Push-pull averaging (Jelasity et al.).
    PushPull,
    /// Flow updating (Jesus et al.), robust to loss.
    FlowUpdating,
}

/// The `[aggregate]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSpec {
    /// Which algorithm.
    pub algorithm: AggregateAlgorithm,
    /// What it computes: average (default), sum, count, min or max.
    #[serde(default = "average")]
    pub function: Function,
    /// This node's input. Default 0.
    #[serde(default)]
    pub input: f64,
    /// Whether this node anchors sums and counts (exactly one node should).
    #[serde(default)]
    pub leader: bool,
    /// Restart the computation every this many rounds (follows a changing
    /// population); none computes once.
    #[serde(default)]
    pub epoch_rounds: Option<u32>,
    /// Neighbours per node, for flow updating. Default 5.
    #[serde(default)]
    pub degree: Option<usize>,
}

fn average() -> Function {
    Function::Average
}

impl AggregateSpec {
    /// Checks the ranges and builds the aggregate.
    pub fn build(&self) -> Result<AnyAggregate, BadConfig> {
        if !self.input.is_finite() {
            return bad("aggregate.input: must be a finite number");
        }
        if self.epoch_rounds == Some(0) {
            return bad("aggregate.epoch_rounds: must be at least 1 (rounds), or absent");
        }
        let algorithm = match self.algorithm {
            AggregateAlgorithm::PushSum => Algorithm::PushSum,
            AggregateAlgorithm::PushPull => Algorithm::PushPull,
            AggregateAlgorithm::FlowUpdating => {
                let degree = self.degree.unwrap_or(5);
                if !(1..=64).contains(&degree) {
                    return bad("aggregate.degree: must be within 1..=64 neighbours");
                }
                Algorithm::FlowUpdating { degree }
            }
        };
        if self.degree.is_some() && self.algorithm != AggregateAlgorithm::FlowUpdating {
            return bad("aggregate.degree: only flow-updating has neighbours; remove it");
        }
        let input = Input {
            value: self.input,
            leader: self.leader,
        };
        Ok(AnyAggregate::new(
            algorithm,
            self.function,
            input,
            self.epoch_rounds,
        ))
    }
}

impl AgentFile {
    /// Reads and parses `path`; errors name the file, line and key.
    pub fn load(path: &std::path::Path) -> Result<Self, BadConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| BadConfig(format!("--config {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| BadConfig(format!("{}: {}", path.display(), e.0)))
    }

    /// Parses a file's text.
    pub fn parse(text: &str) -> Result<Self, BadConfig> {
        toml::from_str(text).map_err(|e| BadConfig(e.to_string().trim_end().to_string()))
    }
}

/// A strategy named on the command line or in the file.
pub fn strategy_from(value: &toml::Value) -> Result<AnyStrategy, BadConfig> {
    match value {
        toml::Value::String(name) => {
            let preset = <NetStrategy as clap::ValueEnum>::from_str(name, false).map_err(|_| {
                BadConfig(format!(
                    "strategy: unknown preset {name:?}; expected one of rumor, rumor-batched, \
                     anti-entropy, flood, or a table such as {{ kind = \"flood\" }}"
                ))
            })?;
            Ok(preset.build())
        }
        toml::Value::Table(table) => AnyStrategy::deserialize(toml::Value::Table(table.clone()))
            .map_err(|e| {
                BadConfig(format!(
                    "strategy: {}; `kind` is one of rumor, anti-entropy, flood, direct, central",
                    e.to_string().trim_end()
                ))
            }),
        other => bad(format!(
            "strategy: expected a preset name or a table, got {}",
            other.type_str()
        )),
    }
}

/// Parses a duration with a unit: `"250ms"`, `"1.5s"`, `"2m"`, `"1h"`,
/// `"100us"`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.trim().parse().ok()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// Applies `overrides` (a `[core]` table, or `--core KEY=VALUE` flags) to
/// `base`, field by field. Unknown keys, wrong types and durations without
/// a unit are refused with the key's name; ranges are checked afterwards
/// by [`Config::validate`].
pub fn apply_core(
    base: &Config,
    overrides: &toml::Table,
    origin: &str,
) -> Result<Config, BadConfig> {
    let mut table = match toml::Value::try_from(base) {
        Ok(toml::Value::Table(table)) => table,
        _ => return bad("cannot represent the core config as TOML"),
    };
    let is_duration = |v: &toml::Value| {
        v.as_table()
            .is_some_and(|t| t.len() == 2 && t.contains_key("secs") && t.contains_key("nanos"))
    };
    for (key, value) in overrides {
        let Some(current) = table.get(key) else {
            let known: Vec<&str> = table.keys().map(String::as_str).collect();
            return bad(format!(
                "{origin}.{key}: unknown field; the fields are {}",
                known.join(", ")
            ));
        };
        let value = if is_duration(current) {
            match value {
                toml::Value::String(text) => {
                    let Some(d) = parse_duration(text) else {
                        return bad(format!(
                            "{origin}.{key}: {text:?} is not a duration; write a number with a \
                             unit: \"250ms\", \"1.5s\", \"2m\", \"1h\""
                        ));
                    };
                    toml::Value::try_from(d).expect("a duration is a table")
                }
                _ => {
                    return bad(format!(
                        "{origin}.{key}: a duration is a string with a unit, such as \"500ms\" \
                         or \"2s\""
                    ))
                }
            }
        } else {
            value.clone()
        };
        table.insert(key.clone(), value);
    }
    Config::deserialize(toml::Value::Table(table)).map_err(|e| {
        BadConfig(format!(
            "{origin}: {}",
            e.to_string().trim_end().replace('\n', " ")
        ))
    })
}

/// Applies `overrides` (an application's table such as `[leader]`, or its
/// `--leader KEY=VALUE` flags) to `base`, field by field: durations are
/// strings with a unit as in `[core]`, unknown keys and wrong types are
/// refused with the key's name (the settings type denies unknown fields).
pub fn apply_settings<T>(base: &T, overrides: &toml::Table, origin: &str) -> Result<T, BadConfig>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut table = match toml::Value::try_from(base) {
        Ok(toml::Value::Table(table)) => table,
        _ => return bad(format!("{origin}: cannot represent the settings as TOML")),
    };
    for (key, value) in overrides {
        let is_duration = table
            .get(key)
            .and_then(toml::Value::as_table)
            .is_some_and(|t| t.len() == 2 && t.contains_key("secs") && t.contains_key("nanos"));
        let value = match value {
            toml::Value::String(text) if is_duration => match parse_duration(text) {
                Some(d) => toml::Value::try_from(d).expect("a duration is a table"),
                None => {
                    return bad(format!(
                        "{origin}.{key}: {text:?} is not a duration; write a number with a \
                         unit: \"250ms\", \"1.5s\", \"2m\", \"1h\""
                    ))
                }
            },
            _ if is_duration => {
                return bad(format!(
                "{origin}.{key}: a duration is a string with a unit, such as \"500ms\" or \"2s\""
            ))
            }
            other => other.clone(),
        };
        table.insert(key.clone(), value);
    }
    T::deserialize(toml::Value::Table(table)).map_err(|e| {
        BadConfig(format!(
            "{origin}: {}",
            e.to_string().trim_end().replace('\n', " ")
        ))
    })
}

/// Parses one `--core KEY=VALUE` flag into a one-entry table. The value
/// is read as a TOML value (`3`, `0.5`, `true`, `"text"`), or as a bare
/// string when it is not one (`--core probe_timeout=300ms`).
pub fn core_flag(flag: &str) -> Result<(String, toml::Value), BadConfig> {
    let Some((key, value)) = flag.split_once('=') else {
        return bad(format!(
            "--core {flag:?}: expected KEY=VALUE, such as --core indirect_probes=2"
        ));
    };
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    Ok((key.trim().to_string(), parsed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gossip_core::partial::PartialConfig;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("250"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("3 weeks"), None);
    }

    #[test]
    fn core_table_sets_fields_and_names_bad_ones() {
        let base = Config::lan(16);
        let table: toml::Table =
            toml::from_str("probe_timeout = \"300ms\"\nindirect_probes = 2").unwrap();
        let config = apply_core(&base, &table, "core").unwrap();
        assert_eq!(config.probe_timeout, Duration::from_millis(300));
        assert_eq!(config.indirect_probes, 2);
        assert_eq!(config.gossip_fanout, base.gossip_fanout);

        let unknown: toml::Table = toml::from_str("probe_intervall = \"1s\"").unwrap();
        let error = apply_core(&base, &unknown, "core").unwrap_err().0;
        assert!(
            error.contains("core.probe_intervall: unknown field"),
            "{error}"
        );
        let no_unit: toml::Table = toml::from_str("probe_interval = 5").unwrap();
        let error = apply_core(&base, &no_unit, "core").unwrap_err().0;
        assert!(error.contains("core.probe_interval"), "{error}");
        let wrong_type: toml::Table = toml::from_str("indirect_probes = \"x\"").unwrap();
        let error = apply_core(&base, &wrong_type, "core").unwrap_err().0;
        assert!(error.contains("indirect_probes"), "{error}");
    }

    #[test]
    fn core_flags_read_toml_values_or_bare_strings() {
        assert_eq!(
            core_flag("indirect_probes=2").unwrap(),
            ("indirect_probes".into(), toml::Value::Integer(2))
        );
        assert_eq!(
            core_flag("probe_timeout=300ms").unwrap(),
            ("probe_timeout".into(), toml::Value::String("300ms".into()))
        );
        assert!(core_flag("nonsense").is_err());
    }

    #[test]
    fn strategies_by_preset_or_table() {
        let preset = strategy_from(&toml::Value::String("flood".into())).unwrap();
        assert!(matches!(preset, AnyStrategy::Flood(_)));
        let table: toml::Value = toml::from_str::<toml::Table>(
            "kind = \"anti-entropy\"\nmode = \"push-pull\"\nfanout = 1\nevery = 1",
        )
        .unwrap()
        .into();
        assert!(matches!(
            strategy_from(&table).unwrap(),
            AnyStrategy::AntiEntropy(_)
        ));
        let error = strategy_from(&toml::Value::String("gossipy".into()))
            .unwrap_err()
            .0;
        assert!(error.starts_with("strategy:"), "{error}");
    }

    /// The documented example is a valid configuration: the reference
    /// cannot drift from the struct.
    #[test]
    fn the_example_config_file_parses_and_resolves() {
        let text = include_str!("../examples/agent.toml");
        let file = AgentFile::parse(text).unwrap();
        assert!(file.bind.is_some() && file.data_dir.is_some());
        assert!(!file.join.is_empty());
        let aggregate = file
            .aggregate
            .as_ref()
            .expect("the example sets an aggregate");
        aggregate.build().unwrap();
        strategy_from(
            file.strategy
                .as_ref()
                .expect("the example names a strategy"),
        )
        .unwrap();
        let config = apply_core(&Config::lan(16), &file.core, "core").unwrap();
        config.validate().unwrap();
        // Every key the example sets in [core] took effect.
        let set = toml::Value::try_from(&config).unwrap();
        for key in file.core.keys() {
            assert!(set.get(key).is_some(), "{key}");
        }
        assert_ne!(config, Config::lan(16), "the example changes the preset");
    }

    /// The `[leader]` and `[partition]` tables set their applications'
    /// fields, durations with a unit; unknown fields, wrong types and bare
    /// durations are refused with the key's name.
    #[test]
    fn application_tables_set_their_fields_and_refuse_mistakes() {
        let file = AgentFile::parse(
            "[leader]\nquorum_mode = true\nlease = \"5s\"\nrole = \"db\"\n[partition]\nfraction = 0.5\n",
        )
        .unwrap();
        let leader: gossip_apps::LeaderConfig =
            apply_settings(&Default::default(), &file.leader, "leader").unwrap();
        assert!(leader.quorum_mode);
        assert_eq!(leader.lease, Duration::from_secs(5));
        assert_eq!(leader.role.as_deref(), Some("db"));
        let partition: gossip_apps::PartitionConfig =
            apply_settings(&Default::default(), &file.partition, "partition").unwrap();
        assert_eq!(partition.fraction, 0.5);
        assert_eq!(partition.window, Duration::from_secs(10));

        let refused = |text: &str| {
            let file = AgentFile::parse(text).unwrap();
            apply_settings::<gossip_apps::LeaderConfig>(&Default::default(), &file.leader, "leader")
                .unwrap_err()
                .0
        };
        assert!(refused("[leader]\nquorum = true\n").contains("quorum"));
        assert!(refused("[leader]\nlease = 3\n").contains("leader.lease"));
        assert!(refused("[leader]\nlease = \"3\"\n").contains("leader.lease"));
        assert!(refused("[leader]\nquorum_mode = \"yes\"\n").contains("leader"));
    }

    /// The operator guide's config reference cannot drift: its example
    /// block is a valid file, its key table names exactly the keys of the
    /// example file (which parses as [`AgentFile`]), and its `[core]` table
    /// names exactly the fields of [`Config`], listed by serde.
    #[test]
    fn the_operator_guide_matches_the_config_structs() {
        let guide = include_str!("../../docs/operator-guide.md");
        let block = guide
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a toml block in the guide");
        let file = AgentFile::parse(block).unwrap();
        let core = apply_core(&Config::lan(16), &file.core, "core").unwrap();
        assert_eq!(core.probe_timeout, Duration::from_millis(400));
        file.aggregate
            .expect("the block's [aggregate]")
            .build()
            .unwrap();
        strategy_from(file.strategy.as_ref().expect("a strategy")).unwrap();

        // First column of the table that follows `heading`.
        let table_keys = |heading: &str| -> std::collections::BTreeSet<String> {
            let after = guide.split(heading).nth(1).expect("the heading");
            after
                .lines()
                .skip_while(|l| !l.starts_with('|'))
                .take_while(|l| l.starts_with('|'))
                .skip(2)
                .map(|l| {
                    l.split('|')
                        .nth(1)
                        .unwrap()
                        .trim()
                        .trim_matches('`')
                        .to_string()
                })
                .collect()
        };
        // The example file's top-level keys, the commented-out ones
        // (`# seed = 7`) included: uncommented, the file still parses.
        let example = include_str!("../examples/agent.toml");
        let live: toml::Table = toml::from_str(example).unwrap();
        let mut top = String::new();
        for line in example.lines().take_while(|l| !l.starts_with('[')) {
            let key = line
                .strip_prefix("# ")
                .and_then(|l| l.split_once(" = "))
                .map(|(k, _)| k);
            match key {
                Some(k)
                    if k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        && !live.contains_key(k) =>
                {
                    top.push_str(&line[2..]);
                }
                _ => top.push_str(line),
            }
            top.push('\n');
        }
        let rest = &example[example.find("\n[").expect("tables")..];
        let uncommented = format!("{top}{rest}");
        AgentFile::parse(&uncommented).unwrap();
        let all: toml::Table = toml::from_str(&uncommented).unwrap();
        let example_keys: std::collections::BTreeSet<String> = all.keys().cloned().collect();
        assert!(example_keys.len() > live.len(), "commented keys were found");
        assert_eq!(
            table_keys("The keys of the file and their flags:"),
            example_keys
        );

        let fields = match serde_json::to_value(Config::default()).unwrap() {
            serde_json::Value::Object(map) => map.keys().cloned().collect(),
            other => panic!("Config serializes as {other}"),
        };
        assert_eq!(
            table_keys("### The `[core]` table: protocol configuration"),
            fields
        );
        let partial_fields = toml::Value::try_from(PartialConfig::default())
            .unwrap()
            .as_table()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            table_keys("### The `[partial]` table: partial views"),
            partial_fields
        );
        // Its keys in the example file are fields too.
        let example_partial: toml::Table = toml::from_str(
            &example[example.find("\n[partial]\n").unwrap() + 11..].replace("# ", ""),
        )
        .unwrap();
        apply_settings(&PartialConfig::default(), &example_partial, "partial")
            .unwrap()
            .validate()
            .unwrap();
    }

    /// `membership` takes "full" or "partial" and nothing else, and
    /// `[partial]` sets the fields of `PartialConfig`, naming bad ones.
    #[test]
    fn membership_and_the_partial_table_parse_and_refuse_mistakes() {
        let file = AgentFile::parse(
            "membership = \"partial\"\n[partial]\nactive_size = 4\ndead_after = \"2s\"\n",
        )
        .unwrap();
        assert_eq!(file.membership, Some(Membership::Partial));
        let config: PartialConfig =
            apply_settings(&PartialConfig::default(), &file.partial, "partial").unwrap();
        assert_eq!(config.active_size, 4);
        assert_eq!(config.dead_after, Duration::from_secs(2));
        assert_eq!(config.passive_size, PartialConfig::default().passive_size);
        assert_eq!(
            AgentFile::parse("membership = \"full\"")
                .unwrap()
                .membership,
            Some(Membership::Full)
        );
        let error = AgentFile::parse("membership = \"partail\"").unwrap_err().0;
        assert!(
            error.contains("membership") && error.contains("`full`, `partial`")
                || error.contains("full") && error.contains("partial"),
            "{error}"
        );
        let refused = |text: &str| {
            let file = AgentFile::parse(text).unwrap();
            apply_settings(&PartialConfig::default(), &file.partial, "partial")
                .unwrap_err()
                .0
        };
        assert!(refused("[partial]\nactive_sise = 3\n").contains("active_sise"));
        assert!(refused("[partial]\ndead_after = 3\n").contains("partial.dead_after"));
        assert!(refused("[partial]\nactive_size = \"x\"\n").contains("partial"));
    }
}
