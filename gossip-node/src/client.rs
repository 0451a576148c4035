//! Subcommands that talk to a running agent through its control API:
//! `members`, `join`, `leave`, `broadcast`, `events`, `stats` and
//! `aggregate`. Tables for people, `--format json` for scripts; an agent
//! that cannot be reached is a one-line error and exit code 1.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::agent_config::DEFAULT_API;
use crate::cli::Format;

/// How to reach the agent: flattened into every client subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The agent's control API address.
    #[arg(long, default_value = DEFAULT_API, global = true)]
    pub api: String,
    /// File holding the API's bearer token, if the agent demands one.
    #[arg(long, value_name = "FILE", global = true)]
    pub api_token_file: Option<PathBuf>,
    /// Output: a table for people, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    pub format: Format,
}

/// `aggregate get` or `aggregate set VALUE`.
#[derive(Debug, clap::Subcommand)]
pub enum AggregateCommand {
    /// Shows the estimate and this node's input (the default).
    Get,
    /// Sets this node's input.
    Set {
        /// The new input.
        value: f64,
    },
}

/// A client subcommand and its arguments.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// List the members a running agent knows, with state, incarnation and
    /// generation.
    #[command(after_help = "Example:\n  gossip-node members --api 127.0.0.1:7947 --format json")]
    Members {
        #[command(flatten)]
        #[allow(missing_docs)]
        target: Target,
    },
    /// Ask a running agent to join (or merge with) the nodes at ADDR.
    #[command(after_help = "Example:\n  gossip-node join 10.0.0.5:7946 10.0.0.6:7946")]
    Join {
        /// Gossip addresses (`ip:port` or `host:port`) of nodes to contact.
        #[arg(required = true)]
        addrs: Vec<String>,
        #[command(flatten)]
        #[allow(missing_docs)]
        target: Target,
    },
    /// Make a running agent leave the cluster gracefully and exit.
    #[command(after_help = "Example:\n  gossip-node leave --api 127.0.0.1:7947")]
    Leave {
        #[command(flatten)]
        #[allow(missing_docs)]
        target: Target,
    },
    /// Broadcast TEXT to the cluster from a running agent.
    #[command(after_help = "Example:\n  gossip-node broadcast 'deploy 42 finished'")]
    Broadcast {
        /// The payload, sent as UTF-8.
        text: String,
        #[command(flatten)]
        #[allow(missing_docs)]
        target: Target,
    },
    /// Follow a running agent's events (membership, deliveries, estimates)
    /// until interrupted.
    #[command(after_help = "Example:\n  gossip-node events --format json | grep delivered")]
    Events {
        #[command(flatten)]
        #[allow(missing_docs)]
        target: Target,
    },
    /// Show the leader, its term, whether this node has quorum, and
    /// whether a partition is suspected.
    #[command(after_help = "Example:\n  gossip-node leader --format json")]
    Leader {
        #[command(flatten)]
        #[allow(missing_docs)]
        target: Target,
    },
    /// Show a running agent's protocol and transport counters.
    #[command(after_help = "Example:\n  gossip-node stats --format json")]
    Stats {
        #[command(flatten)]
        #[allow(missing_docs)]
        target: Target,
    },
    /// Show the aggregate's estimate, or set this node's input.
    #[command(after_help = "Examples:\n  gossip-node aggregate\n  gossip-node aggregate set 0.75")]
    Aggregate {
        /// `get` (default) or `set VALUE`.
        #[command(subcommand)]
        action: Option<AggregateCommand>,
        #[command(flatten)]
        #[allow(missing_docs)]
        target: Target,
    },
    /// Read and write the replicated key-value store.
    #[command(
        after_help = "Examples:\n  gossip-node kv put color blue\n  gossip-node kv get color\n  \
                            gossip-node kv list col --format json\n  gossip-node kv delete color"
    )]
    Kv {
        /// put, get, delete or list.
        #[command(subcommand)]
        action: crate::kv_cmd::KvAction,
        #[command(flatten)]
        #[allow(missing_docs)]
        target: Target,
    },
}

/// A plain-HTTP client for one agent.
pub(crate) struct Api {
    base: String,
    token: Option<String>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Api {
    pub(crate) fn new(target: &Target) -> anyhow::Result<Self> {
        let token = match &target.api_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading --api-token-file {}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        Ok(Self {
            base: format!("http://{}", target.api),
            token,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Sends a request and returns the response once its head arrived.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        let request = request.body(Full::new(Bytes::from(body)))?;
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .map_err(|_| anyhow::anyhow!("the agent at {} did not answer within 10 s", self.base))?
            .map_err(|e| {
                let mut cause: &dyn std::error::Error = &e;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                anyhow::anyhow!(
                    "cannot reach the agent's API at {} ({cause}); is `gossip-node agent` \
                     running with --api {}?",
                    self.base,
                    self.base.trim_start_matches("http://")
                )
            })?;
        Ok(response)
    }

    /// A request whose answer is one JSON value; an error status becomes
    /// an error with the agent's message.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<Value> {
        let response = self.send(method, path, body).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(
            |_| json!({"error": String::from_utf8_lossy(&bytes).trim().to_string()}),
        );
        if !status.is_success() {
            let message = value["error"].as_str().unwrap_or("no message").to_string();
            bail!("the agent answered {status}: {message}");
        }
        Ok(value)
    }
}

impl ClientCommand {
    /// The agent this subcommand talks to.
    pub fn target(&self) -> &Target {
        match self {
            ClientCommand::Members { target }
            | ClientCommand::Join { target, .. }
            | ClientCommand::Leave { target }
            | ClientCommand::Broadcast { target, .. }
            | ClientCommand::Events { target }
            | ClientCommand::Stats { target }
            | ClientCommand::Leader { target }
            | ClientCommand::Aggregate { target, .. }
            | ClientCommand::Kv { target, .. } => target,
        }
    }

    /// Runs the subcommand against the agent it names.
    pub fn run(&self) -> anyhow::Result<()> {
        let target = self.target().clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(self.run_async(&target))
    }

    async fn run_async(&self, target: &Target) -> anyhow::Result<()> {
        let api = Api::new(target)?;
        let json_out = target.format == Format::Json;
        let mut out = std::io::stdout().lock();
        match self {
            ClientCommand::Leader { .. } => {
                let leader = api.call(Method::GET, "/v1/leader", Vec::new()).await?;
                if json_out {
                    writeln!(out, "{leader}")?;
                } else {
                    crate::api_leader::write_leader(&mut out, &leader)?;
                }
            }
            ClientCommand::Members { .. } => {
                let members = api.call(Method::GET, "/v1/members", Vec::new()).await?;
                if json_out {
                    writeln!(out, "{members}")?;
                } else {
                    write_members(&mut out, &members)?;
                }
            }
            ClientCommand::Join { addrs, .. } => {
                let body = serde_json::to_vec(&json!({"addrs": addrs}))?;
                let answer = api.call(Method::POST, "/v1/join", body).await?;
                if json_out {
                    writeln!(out, "{answer}")?;
                } else {
                    let contacted: Vec<&str> = answer["contacted"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    writeln!(out, "asked {} to admit the agent", contacted.join(", "))?;
                }
            }
            ClientCommand::Leave { .. } => {
                let answer = api.call(Method::POST, "/v1/leave", Vec::new()).await?;
                // The agent exits once the departure has spread; wait for
                // its API to go away, at most 5 s.
                let mut gone = false;
                for _ in 0..50 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if api
                        .send(Method::GET, "/v1/stats", Vec::new())
                        .await
                        .is_err()
                    {
                        gone = true;
                        break;
                    }
                }
                if json_out {
                    writeln!(
                        out,
                        "{}",
                        json!({"leaving": answer["leaving"], "stopped": gone})
                    )?;
                } else if gone {
                    writeln!(out, "the agent left the cluster and stopped")?;
                } else {
                    writeln!(out, "the agent is leaving (still answering after 5 s)")?;
                }
            }
            ClientCommand::Broadcast { text, .. } => {
                let answer = api
                    .call(Method::POST, "/v1/broadcast", text.as_bytes().to_vec())
                    .await?;
                if json_out {
                    writeln!(out, "{answer}")?;
                } else {
                    writeln!(out, "broadcast {}", answer["id"].as_str().unwrap_or("?"))?;
                }
            }
            ClientCommand::Events { .. } => {
                drop(out);
                follow_events(&api, json_out).await?;
            }
            ClientCommand::Stats { .. } => {
                let stats = api.call(Method::GET, "/v1/stats", Vec::new()).await?;
                if json_out {
                    writeln!(out, "{stats}")?;
                } else {
                    write_stats(&mut out, &stats)?;
                }
            }
            ClientCommand::Kv { action, .. } => {
                crate::kv_cmd::run(&api, action, json_out, &mut out).await?
            }
            ClientCommand::Aggregate { action, .. } => {
                let answer = match action {
                    None | Some(AggregateCommand::Get) => {
                        api.call(Method::GET, "/v1/aggregate", Vec::new()).await?
                    }
                    Some(AggregateCommand::Set { value }) => {
                        let body = serde_json::to_vec(&json!({"input": value}))?;
                        api.call(Method::POST, "/v1/aggregate", body).await?
                    }
                };
                if json_out {
                    writeln!(out, "{answer}")?;
                } else {
                    let show =
                        |v: &Value| v.as_f64().map_or("none".to_string(), |v| format!("{v}"));
                    writeln!(out, "estimate  {}", show(&answer["estimate"]))?;
                    writeln!(out, "input     {}", show(&answer["input"]))?;
                }
            }
        }
        Ok(())
    }
}

/// Prints each server-sent event until the agent closes the stream.
async fn follow_events(api: &Api, json_out: bool) -> anyhow::Result<()> {
    let response = api.send(Method::GET, "/v1/events", Vec::new()).await?;
    if response.status() != StatusCode::OK {
        bail!("the agent answered {} to /v1/events", response.status());
    }
    let mut body = response.into_body();
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            // The agent went away mid-stream: it stopped or left.
            eprintln!("the agent closed the event stream (it stopped or left)");
            return Ok(());
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim_end().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim_start();
            let mut out = std::io::stdout().lock();
            if json_out {
                writeln!(out, "{data}")?;
            } else {
                writeln!(out, "{}", describe_event(data))?;
            }
            out.flush()?;
        }
    }
    Ok(())
}

/// One event as a line for people.
fn describe_event(data: &str) -> String {
    let Ok(event) = serde_json::from_str::<Value>(data) else {
        return data.to_string();
    };
    let kind = event["event"].as_str().unwrap_or("?");
    let s = |key: &str| event[key].as_str().map(str::to_string).unwrap_or_default();
    match kind {
        "delivered" => format!(
            "delivered  {}#{}  {:?}{}",
            s("origin"),
            event["sequence"],
            event["payload"].as_str().unwrap_or("(binary)"),
            event["delay_ms"]
                .as_f64()
                .map_or(String::new(), |d| format!("  after {d:.1} ms"))
        ),
        k if k.starts_with("member_") => format!(
            "{:<15} {}  (generation {}, incarnation {})",
            k,
            s("member"),
            event["generation"],
            event["incarnation"]
        ),
        _ => format!("{kind:<15} {data}"),
    }
}

fn write_members(out: &mut impl Write, members: &Value) -> anyhow::Result<()> {
    let rows = members
        .as_array()
        .context("the agent sent no member list")?;
    writeln!(
        out,
        "{:<24} {:<8} {:>11} {:>15}  METADATA",
        "ID", "STATE", "INCARNATION", "GENERATION"
    )?;
    for m in rows {
        writeln!(
            out,
            "{:<24} {:<8} {:>11} {:>15}  {}{}",
            m["id"].as_str().unwrap_or("?"),
            m["state"].as_str().unwrap_or("?"),
            m["incarnation"].to_string(),
            m["generation"].to_string(),
            m["metadata_hex"].as_str().unwrap_or(""),
            if m["self"] == true {
                " (this agent)"
            } else {
                ""
            },
        )?;
    }
    Ok(())
}

fn write_stats(out: &mut impl Write, stats: &Value) -> anyhow::Result<()> {
    for (section, value) in [("node", &stats["node"]), ("transport", &stats["transport"])] {
        writeln!(out, "{section}")?;
        if let Some(fields) = value.as_object() {
            for (key, value) in fields {
                writeln!(out, "  {key:<26} {value}")?;
            }
        }
    }
    writeln!(out, "send_errors                  {}", stats["send_errors"])?;
    if let Some(refused) = stats["refused"].as_object() {
        for (kind, count) in refused {
            writeln!(out, "refused {kind:<20} {count}")?;
        }
    }
    Ok(())
}
