//! `gossip-node kv put|get|delete|list`: the agent's key-value store from
//! the command line (routes in [`crate::api_kv`]).

use std::io::Write;

use hyper::Method;
use serde_json::Value;

use crate::client::Api;

/// What to do with the store.
#[derive(Debug, clap::Subcommand)]
pub enum KvAction {
    /// Write VALUE under KEY.
    Put {
        /// The key (UTF-8).
        key: String,
        /// The value (UTF-8).
        value: String,
    },
    /// Print KEY's value and version.
    Get {
        /// The key.
        key: String,
    },
    /// Delete KEY.
    Delete {
        /// The key.
        key: String,
    },
    /// List keys starting with PREFIX (all without one), in key order.
    List {
        /// The prefix.
        prefix: Option<String>,
    },
}

/// Percent-encodes `text` for a URL path segment or query value.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Runs `action` against the agent behind `api`.
pub(crate) async fn run(
    api: &Api,
    action: &KvAction,
    json_out: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match action {
        KvAction::Put { key, value } => {
            let path = format!("/v1/kv/{}", encode(key));
            let answer = api
                .call(Method::PUT, &path, value.as_bytes().to_vec())
                .await?;
            if json_out {
                writeln!(out, "{answer}")?;
            } else {
                writeln!(out, "{key} written, version {}", show(&answer["version"]))?;
            }
        }
        KvAction::Get { key } => {
            let answer = api
                .call(Method::GET, &format!("/v1/kv/{}", encode(key)), Vec::new())
                .await?;
            if json_out {
                writeln!(out, "{answer}")?;
            } else {
                writeln!(
                    out,
                    "{}\tversion {}",
                    value_text(&answer),
                    show(&answer["version"])
                )?;
            }
        }
        KvAction::Delete { key } => {
            let answer = api
                .call(
                    Method::DELETE,
                    &format!("/v1/kv/{}", encode(key)),
                    Vec::new(),
                )
                .await?;
            if json_out {
                writeln!(out, "{answer}")?;
            } else {
                writeln!(out, "{key} deleted, version {}", show(&answer["version"]))?;
            }
        }
        KvAction::List { prefix } => {
            let path = format!("/v1/kv?prefix={}", encode(prefix.as_deref().unwrap_or("")));
            let answer = api.call(Method::GET, &path, Vec::new()).await?;
            if json_out {
                writeln!(out, "{answer}")?;
            } else {
                for e in answer.as_array().into_iter().flatten() {
                    writeln!(
                        out,
                        "{}\t{}\tversion {}",
                        show(&e["key"]),
                        value_text(e),
                        show(&e["version"])
                    )?;
                }
            }
        }
    }
    Ok(())
}

fn show(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

fn value_text(e: &Value) -> String {
    match e["value"].as_str() {
        Some(v) => v.to_string(),
        None => format!("0x{}", show(&e["value_hex"])),
    }
}
