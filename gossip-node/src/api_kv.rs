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
//! | `GET /v1/kv-stats` | the store's counters, live keys, tombstones, guards of tombstones collected early, deletions awaiting acknowledgements, stored bytes, catch-up state |
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
    Entry, Infallible, Kv, KvConfig, KvEvent, KvStats, MemoryStorage, RedbError, RedbStorage,
    Storage, StoreOp, Version, WallClock,
};
use gossip_core::{Aggregate, Event, NodeId};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
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

/// The store's state at one instant, as `/v1/kv-stats` and the metrics
/// show it.
#[derive(Clone, Debug, Serialize)]
pub struct KvSnapshot {
    /// Live keys.
    pub live: usize,
    /// Tombstones held.
    pub tombstones: usize,
    /// Guards of tombstones collected early, held until the grace.
    pub guards: usize,
    /// This node's deletions awaiting acknowledgements.
    pub tracked: usize,
    /// Acknowledgements, requests and collect notices waiting to be sent.
    pub outbox: usize,
    /// Key and value bytes held.
    pub stored_bytes: usize,
    /// Whether a catch-up is under way.
    pub catching_up: bool,
    /// The counters.
    pub counters: KvStats,
}

impl KvSnapshot {
    /// Reads `kv`.
    pub fn of(kv: &NodeKv) -> Self {
        Self {
            live: kv.live(),
            tombstones: kv.tombstones(),
            guards: kv.guards(),
            tracked: kv.tracked(),
            outbox: kv.outbox(),
            stored_bytes: kv.stored_bytes(),
            catching_up: kv.catching_up(),
            counters: kv.stats().clone(),
        }
    }
}

type Labels = Vec<(&'static str, String)>;

/// A labelled counter family, its label's name, and each label value with
/// the figure its counter mirrors.
type Mirrored<'a> = (
    &'a Family<Labels, Counter>,
    &'static str,
    &'a [(&'a str, u64)],
);

/// The store's Prometheus metrics (prefix `gossip_kv_`), brought up to
/// date from a [`KvSnapshot`] at each scrape.
#[derive(Debug, Default)]
pub struct KvMetrics {
    keys: Gauge,
    tombstones: Gauge,
    guards: Gauge,
    tracked: Gauge,
    stored_bytes: Gauge,
    catching_up: Gauge,
    writes: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
    exchanges: Family<Labels, Counter>,
    catch_up: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
    collected: Family<Labels, Counter>,
    acks: Family<Labels, Counter>,
}

impl KvMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register("kv_keys", "Live keys in the store", m.keys.clone());
        registry.register(
            "kv_tombstones",
            "Tombstones held (deletions not collected yet)",
            m.tombstones.clone(),
        );
        registry.register(
            "kv_guards",
            "Guards (key hash and version) of tombstones collected early, held until the grace",
            m.guards.clone(),
        );
        registry.register(
            "kv_tracked_deletions",
            "This node's deletions awaiting acknowledgements from the members alive at the deletion",
            m.tracked.clone(),
        );
        registry.register(
            "kv_stored_bytes",
            "Key and value bytes held by the store",
            m.stored_bytes.clone(),
        );
        registry.register(
            "kv_catching_up",
            "1 while the store catches up after a start or a long absence",
            m.catching_up.clone(),
        );
        registry.register(
            "kv_writes",
            "Writes and deletions: made here (origin=local) or replicated and applied (origin=remote)",
            m.writes.clone(),
        );
        registry.register(
            "kv_entries_refused",
            "Replicated entries not applied, by reason (stale, invalid, older_than_grace, horizon, collected)",
            m.refused.clone(),
        );
        registry.register(
            "kv_sync_exchanges",
            "Anti-entropy exchanges, by outcome (started, equal, repaired, timeout)",
            m.exchanges.clone(),
        );
        registry.register(
            "kv_catch_up",
            "Catch-up progress: pages received (what=pages), catch-ups completed (what=completed)",
            m.catch_up.clone(),
        );
        registry.register(
            "kv_bytes",
            "Store payload bytes sent (direction=out) and received (direction=in)",
            m.bytes.clone(),
        );
        registry.register(
            "kv_tombstones_collected",
            "Tombstones collected: by acknowledgement (how=early) or after the grace (how=grace)",
            m.collected.clone(),
        );
        registry.register(
            "kv_tombstone_acks",
            "Tombstone acknowledgements sent and received, ignored ones, refused collect notices",
            m.acks.clone(),
        );
        m
    }

    /// Brings every metric up to `s`.
    pub fn update(&self, s: &KvSnapshot) {
        self.keys.set(s.live as i64);
        self.tombstones.set(s.tombstones as i64);
        self.guards.set(s.guards as i64);
        self.tracked.set(s.tracked as i64);
        self.stored_bytes.set(s.stored_bytes as i64);
        self.catching_up.set(i64::from(s.catching_up));
        let c = &s.counters;
        let families: [Mirrored; 7] = [
            (
                &self.writes,
                "origin",
                &[("local", c.local_writes), ("remote", c.applied)],
            ),
            (
                &self.refused,
                "reason",
                &[
                    ("stale", c.stale),
                    ("invalid", c.refused_invalid),
                    ("older_than_grace", c.refused_old),
                    ("horizon", c.refused_horizon),
                    ("collected", c.refused_collected),
                ],
            ),
            (
                &self.exchanges,
                "outcome",
                &[
                    ("started", c.exchanges),
                    ("equal", c.equal),
                    ("repaired", c.repaired),
                    ("timeout", c.timeouts),
                ],
            ),
            (
                &self.catch_up,
                "what",
                &[("pages", c.pages), ("completed", c.catch_ups)],
            ),
            (
                &self.bytes,
                "direction",
                &[("out", c.bytes_sent), ("in", c.bytes_received)],
            ),
            (
                &self.collected,
                "how",
                &[("early", c.collected_early), ("grace", c.collected)],
            ),
            (
                &self.acks,
                "what",
                &[
                    ("sent", c.acks_sent),
                    ("received", c.acks_received),
                    ("ignored", c.acks_ignored),
                    ("collect_refused", c.collect_refused),
                ],
            ),
        ];
        for (family, label, values) in families {
            for &(name, value) in values {
                let counter = family.get_or_create(&vec![(label, name.to_string())]);
                counter.inc_by(value.saturating_sub(counter.get()));
            }
        }
    }
}

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
    let snapshot = s
        .agent
        .with_app(|kv: &mut NodeKv, _, _| KvSnapshot::of(kv))
        .await?
        .ok_or_else(no_store)?;
    s.metrics.kv(&snapshot);
    Ok(Json(serde_json::to_value(&snapshot).unwrap_or(Value::Null)))
}
