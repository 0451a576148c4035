//! The agent's replicated key-value store: hosted beside the node (always
//! on), kept in redb at `DATA_DIR/kv.redb` (in memory without
//! `--data-dir`), reached through these routes:
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /v1/kv/{key}` | `{"key","value","value_hex","version","stamp","origin"}`, 404 if absent or deleted |
//! | `PUT /v1/kv/{key}` | body: the raw value; answers `{"key","version"}` |
//! | `DELETE /v1/kv/{key}` | answers `{"key","version"}` (the tombstone's) |
//! | `GET /v1/kv?prefix=P&limit=N` | `[{"key","value","value_hex","version"}]` in key order |
//! | `GET /v1/kv-stats` | the store's counters, live keys and tombstones |
//!
//! Every applied change, local or replicated, is also an event
//! `{"event":"kv_changed","key","value","deleted","version","local"}` on
//! `/v1/events` and the stdin mode's stdout.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use gossip_apps::kv::{
    Entry, Infallible, Kv, KvConfig, KvEvent, MemoryStorage, RedbError, RedbStorage, Storage,
    StoreOp, Version, WallClock,
};
use gossip_core::{Aggregate, Event, NodeId};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::api::{hex, ApiError, Shared};

/// Where the agent's store keeps its entries.
pub enum NodeStorage {
    /// No data dir: nothing survives a restart.
    Memory(MemoryStorage),
    /// `DATA_DIR/kv.redb`.
    Redb(RedbStorage),
}

/// A storage failure of either kind.
#[derive(Debug, thiserror::Error)]
pub enum NodeStorageError {
    /// From redb.
    #[error(transparent)]
    Redb(#[from] RedbError),
    /// Memory storage does not fail.
    #[error(transparent)]
    Memory(#[from] Infallible),
}

impl Storage for NodeStorage {
    type Error = NodeStorageError;
    fn load(&mut self) -> Result<Vec<Entry>, NodeStorageError> {
        Ok(match self {
            NodeStorage::Memory(s) => s.load()?,
            NodeStorage::Redb(s) => s.load()?,
        })
    }
    fn load_guards(&mut self) -> Result<Vec<(u64, Version)>, NodeStorageError> {
        Ok(match self {
            NodeStorage::Memory(s) => s.load_guards()?,
            NodeStorage::Redb(s) => s.load_guards()?,
        })
    }
    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), NodeStorageError> {
        match self {
            NodeStorage::Memory(s) => s.apply(ops)?,
            NodeStorage::Redb(s) => s.apply(ops)?,
        }
        Ok(())
    }
    fn meta(&mut self, name: &str) -> Result<Option<u64>, NodeStorageError> {
        Ok(match self {
            NodeStorage::Memory(s) => s.meta(name)?,
            NodeStorage::Redb(s) => s.meta(name)?,
        })
    }
    fn set_meta(&mut self, name: &str, value: u64) -> Result<(), NodeStorageError> {
        match self {
            NodeStorage::Memory(s) => s.set_meta(name, value)?,
            NodeStorage::Redb(s) => s.set_meta(name, value)?,
        }
        Ok(())
    }
}

/// The store the agent hosts.
pub type NodeKv = Kv<NodeStorage>;

/// Builds the agent's store for node `id`.
pub fn build(id: NodeId, data_dir: Option<&Path>, seed: u64) -> anyhow::Result<NodeKv> {
    let storage = match data_dir {
        Some(dir) => NodeStorage::Redb(RedbStorage::open(&dir.join("kv.redb"))?),
        None => NodeStorage::Memory(MemoryStorage::new()),
    };
    let now = Instant::now();
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let wall = WallClock { at: now, unix_ms };
    Ok(Kv::new(id, KvConfig::default(), storage, wall, seed, now)?)
}

fn version_text(v: Version) -> String {
    v.to_string()
}

fn event_json(e: &KvEvent) -> Value {
    json!({
        "event": "kv_changed",
        "key": String::from_utf8_lossy(&e.key),
        "value": e.value.as_deref().and_then(|v| std::str::from_utf8(v).ok()),
        "deleted": e.value.is_none(),
        "version": version_text(e.version),
        "local": e.local,
    })
}

fn entry_json(e: &Entry) -> Value {
    let value = e.value.as_deref().unwrap_or_default();
    json!({
        "key": String::from_utf8_lossy(&e.key),
        "value": std::str::from_utf8(value).ok(),
        "value_hex": hex(value),
        "version": version_text(e.version),
        "stamp": e.version.stamp,
        "origin": format!("{:016x}", e.version.origin),
    })
}

/// Publishes the store's pending change events on `hub`.
async fn drain<A: Aggregate + Send + 'static>(shared: &Shared<A>) {
    let events = shared
        .agent
        .with_app(|kv: &mut NodeKv, _, _| {
            std::iter::from_fn(|| kv.poll_event()).collect::<Vec<_>>()
        })
        .await;
    if let Ok(Some(events)) = events {
        for e in events {
            let _ = shared.events.send(Arc::new(event_json(&e)));
        }
    }
}

/// Hosts `kv` in the agent and publishes its changes as events: after
/// every delivery or direct message the node hands it, and once a second.
pub async fn host<A: Aggregate + Send + 'static>(
    shared: Arc<Shared<A>>,
    kv: NodeKv,
) -> anyhow::Result<()> {
    shared.agent.add_app(kv).await?;
    let mut node_events = shared.agent.subscribe();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                event = node_events.recv() => match event {
                    Ok(Event::Delivered { .. } | Event::Direct { .. }) => drain(&shared).await,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => drain(&shared).await,
            }
            if shared.agent.is_stopped() {
                return;
            }
        }
    });
    Ok(())
}

/// The store's routes, to merge into the API's router.
pub fn routes<A: Aggregate + Send + 'static>() -> Router<Arc<Shared<A>>> {
    Router::new()
        .route("/v1/kv", get(list::<A>))
        .route("/v1/kv-stats", get(stats::<A>))
        .route(
            "/v1/kv/{*key}",
            get(read::<A>).put(write::<A>).delete(remove::<A>),
        )
}

fn no_store() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "this agent hosts no store")
}

async fn read<A: Aggregate + Send + 'static>(
    State(s): State<Arc<Shared<A>>>,
    UrlPath(key): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let k = key.clone().into_bytes();
    let entry = s
        .agent
        .with_app(move |kv: &mut NodeKv, _, _| kv.entry(&k).cloned())
        .await?
        .ok_or_else(no_store)?;
    match entry {
        Some(e) if !e.is_tombstone() => Ok(Json(entry_json(&e))),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no key {key:?}"),
        )),
    }
}

async fn write<A: Aggregate + Send + 'static>(
    State(s): State<Arc<Shared<A>>>,
    UrlPath(key): UrlPath<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let k = key.clone().into_bytes();
    let version = s
        .agent
        .with_app(move |kv: &mut NodeKv, cluster, now| kv.put(now, &k, &body, cluster))
        .await?
        .ok_or_else(no_store)?
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    drain(&s).await;
    Ok(Json(json!({"key": key, "version": version_text(version)})))
}

async fn remove<A: Aggregate + Send + 'static>(
    State(s): State<Arc<Shared<A>>>,
    UrlPath(key): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let k = key.clone().into_bytes();
    let version = s
        .agent
        .with_app(move |kv: &mut NodeKv, cluster, now| kv.delete(now, &k, cluster))
        .await?
        .ok_or_else(no_store)?
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    drain(&s).await;
    Ok(Json(
        json!({"key": key, "version": version_text(version), "deleted": true}),
    ))
}

/// Query of `GET /v1/kv`.
#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
    limit: Option<usize>,
}

async fn list<A: Aggregate + Send + 'static>(
    State(s): State<Arc<Shared<A>>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(10_000).min(100_000);
    let entries = s
        .agent
        .with_app(move |kv: &mut NodeKv, _, _| kv.list(q.prefix.as_bytes(), limit))
        .await?
        .ok_or_else(no_store)?;
    Ok(Json(Value::Array(entries.iter().map(entry_json).collect())))
}

async fn stats<A: Aggregate + Send + 'static>(
    State(s): State<Arc<Shared<A>>>,
) -> Result<Json<Value>, ApiError> {
    let (stats, live, tombstones, catching_up) = s
        .agent
        .with_app(|kv: &mut NodeKv, _, _| {
            (
                kv.stats().clone(),
                kv.live(),
                kv.tombstones(),
                kv.catching_up(),
            )
        })
        .await?
        .ok_or_else(no_store)?;
    Ok(Json(json!({
        "live": live,
        "tombstones": tombstones,
        "catching_up": catching_up,
        "counters": stats,
    })))
}
