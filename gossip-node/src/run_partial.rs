//! `gossip-node agent` with `membership = "partial"`: a partial-view node
//! (`gossip_core::partial::PartialNode`, HyParView with a Plumtree tree)
//! on a real socket, driven by [`gossip_agent::PartialAgent`], with the
//! control API of [`crate::api_partial`].
//!
//! The rest is as for full views ([`crate::run_agent`]): the config file
//! and flags, the data directory, the keyring (SIGHUP reloads it), events
//! as JSON lines on stdout and commands on stdin (`broadcast TEXT`,
//! `members`, `stats`, `leave`), and SIGINT or SIGTERM to leave. A leave
//! tells each neighbour at once, so it needs no linger.
//!
//! The cluster label is the full views' (`label`, `--label`, or
//! `cluster_label` in `[partial]`): partial frames carry it and a node
//! refuses another overlay's frames; a keyring's seals authenticate it.

use std::sync::Arc;
use std::time::Duration;

use gossip_agent::{AgentConfig, PartialAgent};
use gossip_core::partial::{PartialConfig, PartialNode};
use gossip_core::NodeId;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::api_partial::{self, PartialMetrics, PartialShared};
use crate::run_agent::{
    bind_api, print_line, record_identity, transport, wait_for_leave, Settings,
};

/// Runs a partial-view node as `settings` and `config` say until it is
/// told to leave.
pub async fn serve(settings: Settings, config: PartialConfig) -> anyhow::Result<()> {
    let (transport, keyring) = transport(&settings, config.max_frame_len).await?;
    let listener = bind_api(&settings).await?;
    let identity = record_identity(&settings, transport.local_addr())?;
    let node = PartialNode::new(
        NodeId::new(identity.id),
        config,
        settings.seed,
        std::time::Instant::now(),
    )?;
    let agent = PartialAgent::spawn(node, transport, AgentConfig::default())?;
    tracing::info!(
        id = %identity.id,
        generation = identity.generation,
        restarts = identity.restarts,
        "node started with partial views"
    );

    let (events, _) = broadcast::channel::<Arc<Value>>(4096);
    let stdin_commands = settings.stdin_commands;
    let mut printer = events.subscribe();
    tokio::spawn(async move {
        loop {
            match printer.recv().await {
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
    let metrics = Arc::new(PartialMetrics::new());
    api_partial::forward_events(agent.subscribe(), events.clone(), Arc::clone(&metrics));

    let (stop, mut stopping) = mpsc::channel(1);
    let shared = Arc::new(PartialShared {
        agent: agent.clone(),
        metrics,
        events: events.clone(),
        token: settings.token.clone(),
        stop,
    });
    let api_addr = match listener {
        Some(listener) => {
            let addr = listener.local_addr()?;
            tokio::spawn(crate::api::serve(
                listener,
                api_partial::router(Arc::clone(&shared)),
            ));
            tracing::info!(%addr, "control API listening");
            Some(addr)
        }
        None => None,
    };

    let seeds = crate::api::resolve(&settings.seeds, identity.id)
        .await
        .unwrap_or_else(|error| {
            tracing::warn!(%error, "a seed does not resolve yet; retrying with back-off");
            Vec::new()
        });
    agent.join(seeds).await?;
    if !settings.seeds.is_empty() {
        tokio::spawn(keep_joining(Arc::clone(&shared), settings.seeds.clone()));
    }
    let _ = events.send(Arc::new(json!({
        "event": "ready",
        "addr": identity.id.to_string(),
        "membership": "partial",
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
    tracing::info!("{why}: leaving the overlay");
    // A leave is one frame to each neighbour; the bound only guards
    // against a stuck agent.
    if tokio::time::timeout(Duration::from_secs(2), agent.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("the leave did not finish in time; stopping anyway");
        agent.abort();
    }
    if stdin_commands {
        print_line(&json!({"event": "stopped"}));
    }
    tracing::info!("stopped");
    Ok(())
}

/// While the node has no neighbour, re-resolves the seeds' names and joins
/// through them again, waiting 1, 2, 4, ... up to 30 s in between (the
/// node itself retries its contacts every `join_retry`; this adds names
/// that resolve late and a log line that says the join is stuck).
async fn keep_joining(shared: Arc<PartialShared>, names: Vec<String>) {
    let mut wait = Duration::from_secs(1);
    let mut waited = Duration::ZERO;
    loop {
        tokio::time::sleep(wait).await;
        waited += wait;
        match shared.agent.active().await {
            Ok(active) if !active.is_empty() => return,
            Ok(_) => {}
            Err(_) => return,
        }
        let mut addrs = Vec::new();
        for name in &names {
            if let Ok(mut found) =
                crate::api::resolve(std::slice::from_ref(name), shared.agent.id()).await
            {
                addrs.append(&mut found);
            }
        }
        tracing::warn!(
            seeds = ?names,
            "no neighbour after {} s; asking the seeds again",
            waited.as_secs()
        );
        if !addrs.is_empty() && shared.agent.join(addrs).await.is_err() {
            return;
        }
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

/// Runs one stdin command; false when the node should stop.
async fn command(shared: &PartialShared, line: &str) -> anyhow::Result<bool> {
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    match verb {
        "" => {}
        "broadcast" => match shared.broadcast(rest.as_bytes()).await {
            Ok(id) => print_line(&json!({"event": "broadcast", "id": crate::api::hex(&id)})),
            Err(error) => print_line(&json!({"event": "error", "message": error.to_string()})),
        },
        "members" => {
            let members = shared.members().await?;
            print_line(&json!({"event": "members", "members": members}));
        }
        "stats" => {
            let mut line = shared.stats().await?;
            line["event"] = "stats".into();
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
