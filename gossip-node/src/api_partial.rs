//! The control API of an agent that runs partial views
//! (`membership = "partial"`): HTTP and JSON on loopback, as
//! [`crate::api`] for full views, with the routes partial views support.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /` | the status page ([`PARTIAL_STATUS_PAGE`](crate::api::PARTIAL_STATUS_PAGE)): the views, neighbours lost, propagation, counters, events |
//! | `GET /v1/members` | this node and its neighbours: `[{"id","addr","state","self"}]`, `state` one of `self`, `active`, `passive` (a partial view knows no more) |
//! | `GET /v1/view` | `{"id","active":[...],"eager":[...],"passive":[...]}`: the active view, its tree links, the reserve |
//! | `POST /v1/broadcast` | body: the payload's raw bytes; answers `{"id"}` (16 hex digits) |
//! | `GET /v1/events` | server-sent events: `neighbour_up`, `neighbour_down` (with `reason`: `silent` is a failure found by pings), `delivered`, `broadcast_sent` |
//! | `GET /v1/stats` | `{"membership":"partial","active","passive","node":{...},"transport":{...},"send_errors","refused"}` |
//! | `POST /v1/join` | body `{"addrs": [...]}`: joins through them (when the node has no neighbour) |
//! | `POST /v1/leave` | answers `{"leaving": true}`, then the agent leaves and exits |
//! | `GET /metrics` | Prometheus text ([`PartialMetrics`]) |
//!
//! Every other route (the KV store, leader election, aggregates) needs
//! full membership and answers 404 saying so.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gossip_agent::{AgentError, PartialAgentHandle, PartialAgentStats};
use gossip_core::partial::{BroadcastId, NeighbourDownReason, PartialEvent};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::api::{hex, resolve, ApiError};
use crate::envelope;
use crate::metrics::catch_up;

/// What the API, the stdin commands and the event printer share.
pub struct PartialShared {
    /// The running node.
    pub agent: PartialAgentHandle,
    /// The metrics registry.
    pub metrics: Arc<PartialMetrics>,
    /// Every event as JSON, for SSE clients and the stdout printer.
    pub events: broadcast::Sender<Arc<Value>>,
    /// The bearer token the API demands, if any.
    pub token: Option<String>,
    /// Asks the agent to leave and exit.
    pub stop: mpsc::Sender<()>,
}

type ApiResult = Result<Json<Value>, ApiError>;

fn api_error(error: AgentError) -> ApiError {
    match error {
        AgentError::PartialBroadcast(e) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        other => ApiError::unavailable(&other.to_string()),
    }
}

/// The API's name for why a neighbour left the active view.
pub fn reason_name(reason: NeighbourDownReason) -> &'static str {
    match reason {
        NeighbourDownReason::Silent => "silent",
        NeighbourDownReason::Disconnected => "disconnected",
        NeighbourDownReason::Replaced => "replaced",
        NeighbourDownReason::Left => "left",
        _ => "other",
    }
}

/// An event as JSON, and the propagation delay of a delivered broadcast
/// that carried its send time.
pub fn event_json(event: &PartialEvent) -> Option<(Value, Option<Duration>)> {
    Some(match event {
        PartialEvent::NeighbourUp(id) => (
            json!({"event": "neighbour_up", "neighbour": id.to_string()}),
            None,
        ),
        PartialEvent::NeighbourDown { id, reason } => (
            json!({
                "event": "neighbour_down",
                "neighbour": id.to_string(),
                "reason": reason_name(*reason),
            }),
            None,
        ),
        PartialEvent::Delivered { id, hops, payload } => {
            let (sent, body) = envelope::unwrap(payload);
            let delay =
                sent.map(|sent| Duration::from_micros(envelope::now_micros().saturating_sub(sent)));
            let mut line = json!({
                "event": "delivered",
                "id": hex(id),
                "hops": hops,
                "payload": std::str::from_utf8(body).ok(),
                "delay_ms": delay.map(|d| d.as_secs_f64() * 1e3),
            });
            if std::str::from_utf8(body).is_err() {
                line["payload_hex"] = hex(body).into();
            }
            (line, delay)
        }
        _ => return None,
    })
}

/// Turns the node's events into JSON once, on a task of their own, and
/// puts them on `hub`, counting them in `metrics`.
pub fn forward_events(
    mut node_events: broadcast::Receiver<PartialEvent>,
    hub: broadcast::Sender<Arc<Value>>,
    metrics: Arc<PartialMetrics>,
) {
    tokio::spawn(async move {
        loop {
            match node_events.recv().await {
                Ok(event) => {
                    metrics.event(&event);
                    if let Some((line, _)) = event_json(&event) {
                        let _ = hub.send(Arc::new(line));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let _ = hub.send(Arc::new(json!({"event": "lagged", "missed": missed})));
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// The counters as the API shows them.
pub fn stats_json(stats: &PartialAgentStats, active: usize, passive: usize) -> Value {
    let n = &stats.node;
    let t = &stats.transport;
    json!({
        "membership": "partial",
        "active": active,
        "passive": passive,
        "node": {
            "frames_sent": n.frames_sent,
            "bytes_sent": n.bytes_sent,
            "gossip_sent": n.gossip_sent,
            "ihave_bytes_sent": n.ihave_bytes_sent,
            "ids_announced": n.ids_announced,
            "duplicates": n.duplicates,
            "refused": n.refused,
            "wrong_cluster": n.wrong_cluster,
            "grafts_sent": n.grafts_sent,
        },
        "transport": crate::api::transport_json(t),
        "send_errors": stats.send_errors,
        "refused": stats.refused,
    })
}

impl PartialShared {
    /// Broadcasts `payload` in the agent's envelope (so receivers measure
    /// its delay) and tells event subscribers.
    pub async fn broadcast(&self, payload: &[u8]) -> Result<BroadcastId, AgentError> {
        let wrapped = envelope::wrap(payload, envelope::now_micros());
        let id = self.agent.broadcast(wrapped).await?;
        self.metrics.broadcasts.inc();
        let _ = self.events.send(Arc::new(json!({
            "event": "broadcast_sent",
            "id": hex(&id),
            "payload": std::str::from_utf8(payload).ok(),
        })));
        Ok(id)
    }

    /// This node, then its active and passive views.
    pub async fn members(&self) -> Result<Vec<Value>, AgentError> {
        let me = self.agent.id();
        let entry = |addr: SocketAddr, state: &str| {
            json!({
                "id": addr.to_string(),
                "addr": addr.to_string(),
                "state": state,
                "self": addr == me,
            })
        };
        let mut out = vec![entry(me, "self")];
        out.extend(
            self.agent
                .active()
                .await?
                .into_iter()
                .map(|a| entry(a, "active")),
        );
        out.extend(
            self.agent
                .passive()
                .await?
                .into_iter()
                .map(|a| entry(a, "passive")),
        );
        Ok(out)
    }

    /// The counters, with the views' sizes.
    pub async fn stats(&self) -> Result<Value, AgentError> {
        let (active, passive) = self
            .agent
            .with_node(|node, _| (node.active().count(), node.passive().len()))
            .await?;
        let stats = self.agent.stats().await?;
        Ok(stats_json(&stats, active, passive))
    }
}

/// The router for `shared`.
pub fn router(shared: Arc<PartialShared>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { crate::api::html(crate::api::PARTIAL_STATUS_PAGE) }),
        )
        .route("/v1/members", get(members))
        .route("/v1/view", get(view))
        .route("/v1/broadcast", post(broadcast_route))
        .route("/v1/events", get(events))
        .route("/v1/stats", get(stats))
        .route("/v1/join", post(join))
        .route("/v1/leave", post(leave))
        .route("/metrics", get(metrics))
        .fallback(not_here)
        .layer(middleware::from_fn_with_state(shared.clone(), auth))
        .with_state(shared)
}

async fn auth(State(shared): State<Arc<PartialShared>>, request: Request, next: Next) -> Response {
    match crate::api::refused_token(shared.token.as_deref(), &request) {
        Some(refusal) => refusal,
        None => next.run(request).await,
    }
}

async fn not_here(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "{} is not served with membership = \"partial\": partial views know only their \
             neighbours, so the KV store, leader election and aggregates (which need every \
             member known) run with membership = \"full\"; this agent serves / (the status \
             page), /v1/members, /v1/view, /v1/broadcast, /v1/events, /v1/stats, /v1/join, \
             /v1/leave and /metrics",
            uri.path()
        ),
    )
}

async fn members(State(s): State<Arc<PartialShared>>) -> ApiResult {
    Ok(Json(Value::Array(s.members().await.map_err(api_error)?)))
}

async fn view(State(s): State<Arc<PartialShared>>) -> ApiResult {
    let names =
        |ids: Vec<SocketAddr>| -> Vec<String> { ids.iter().map(|a| a.to_string()).collect() };
    let (active, eager, passive) = s
        .agent
        .with_node(|node, _| {
            (
                node.active().map(|n| n.addr()).collect::<Vec<_>>(),
                node.eager().map(|n| n.addr()).collect::<Vec<_>>(),
                node.passive().iter().map(|n| n.addr()).collect::<Vec<_>>(),
            )
        })
        .await
        .map_err(api_error)?;
    Ok(Json(json!({
        "id": s.agent.id().to_string(),
        "active": names(active),
        "eager": names(eager),
        "passive": names(passive),
    })))
}

async fn broadcast_route(State(s): State<Arc<PartialShared>>, body: Bytes) -> ApiResult {
    let id = s.broadcast(&body).await.map_err(api_error)?;
    Ok(Json(json!({"id": hex(&id)})))
}

async fn events(
    State(s): State<Arc<PartialShared>>,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    crate::api::event_stream(&s.events, s.agent.id())
}

async fn stats(State(s): State<Arc<PartialShared>>) -> ApiResult {
    Ok(Json(s.stats().await.map_err(api_error)?))
}

/// Body of `POST /v1/join`.
#[derive(Debug, Deserialize)]
struct JoinBody {
    addrs: Vec<String>,
}

async fn join(
    State(s): State<Arc<PartialShared>>,
    body: Result<Json<JoinBody>, JsonRejection>,
) -> ApiResult {
    let Json(body) = body?;
    if body.addrs.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "addrs: give at least one address",
        ));
    }
    let addrs = resolve(&body.addrs, s.agent.id())
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    s.agent.join(addrs.clone()).await.map_err(api_error)?;
    let contacted: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    Ok(Json(json!({"contacted": contacted})))
}

async fn leave(State(s): State<Arc<PartialShared>>) -> ApiResult {
    s.stop
        .send(())
        .await
        .map_err(|_| ApiError::unavailable("already stopping"))?;
    Ok(Json(json!({"leaving": true})))
}

async fn metrics(State(s): State<Arc<PartialShared>>) -> Response {
    let (active, passive) = match s
        .agent
        .with_node(|node, _| (node.active().count(), node.passive().len()))
        .await
    {
        Ok(sizes) => sizes,
        Err(e) => return api_error(e).into_response(),
    };
    let stats = match s.agent.stats().await {
        Ok(stats) => stats,
        Err(e) => return api_error(e).into_response(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(&stats, active, passive),
    )
        .into_response()
}

type Labels = Vec<(&'static str, String)>;

/// The metrics of a partial-view agent, in one registry (prefix `gossip`):
///
/// | metric | source |
/// | --- | --- |
/// | `gossip_partial_view{view}` | active and passive view sizes, at scrape time |
/// | `gossip_partial_neighbours_down_total{reason}` | `neighbour_down` events; `reason="silent"` is a neighbour the pings found dead |
/// | `gossip_broadcasts_total`, `gossip_deliveries_total` | broadcasts sent through the API, deliveries |
/// | `gossip_broadcast_propagation_seconds` | the broadcast envelope: receive time minus the origin's send time |
/// | `gossip_partial_node_total{counter}` | the node's `PartialStats` (frames and bytes sent, payload pushes, announce bytes, duplicates, grafts, refused, of which `wrong_cluster`) |
/// | `gossip_frames_refused_total{reason}` | frames that did not decode, by kind, and `seal` for the sealing layer |
/// | `gossip_transport_total{counter}` | the transport's own counters |
pub struct PartialMetrics {
    registry: Registry,
    view: Family<Labels, Gauge>,
    downs: Family<Labels, Counter>,
    broadcasts: Counter,
    deliveries: Counter,
    propagation: Histogram,
    node: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
    transport: Family<Labels, Counter>,
    /// Serialises scrapes, which bring the mirrored counters up to date.
    scrape: Mutex<()>,
}

impl std::fmt::Debug for PartialMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartialMetrics").finish_non_exhaustive()
    }
}

impl Default for PartialMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialMetrics {
    /// A registry with every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gossip");
        let metrics = Self {
            view: Family::default(),
            downs: Family::default(),
            broadcasts: Counter::default(),
            deliveries: Counter::default(),
            // 1 ms to about 33 s.
            propagation: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            node: Family::default(),
            refused: Family::default(),
            transport: Family::default(),
            scrape: Mutex::new(()),
            registry: Registry::default(),
        };
        registry.register(
            "partial_view",
            "Addresses in this node's active and passive views",
            metrics.view.clone(),
        );
        registry.register(
            "partial_neighbours_down",
            "Neighbours that left the active view, by reason (silent: found dead by pings)",
            metrics.downs.clone(),
        );
        registry.register(
            "broadcasts",
            "Broadcasts this node originated through the API or stdin",
            metrics.broadcasts.clone(),
        );
        registry.register(
            "deliveries",
            "Broadcasts delivered to this node",
            metrics.deliveries.clone(),
        );
        registry.register(
            "broadcast_propagation_seconds",
            "Time from a broadcast's origin to its delivery here (wall clocks of both hosts)",
            metrics.propagation.clone(),
        );
        registry.register(
            "partial_node",
            "The partial-view node's counters, by counter",
            metrics.node.clone(),
        );
        registry.register(
            "frames_refused",
            "Received frames refused before the node acted on them, by reason",
            metrics.refused.clone(),
        );
        registry.register(
            "transport",
            "The transport's counters, by counter",
            metrics.transport.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// Counts one of the node's events.
    pub fn event(&self, event: &PartialEvent) {
        match event {
            PartialEvent::NeighbourDown { reason, .. } => {
                self.downs
                    .get_or_create(&vec![("reason", reason_name(*reason).to_string())])
                    .inc();
            }
            PartialEvent::Delivered { payload, .. } => {
                self.deliveries.inc();
                if let (Some(sent), _) = envelope::unwrap(payload) {
                    let delay = envelope::now_micros().saturating_sub(sent);
                    self.propagation.observe(delay as f64 / 1e6);
                }
            }
            _ => {}
        }
    }

    /// Brings the mirrored counters up to `stats` and renders every metric
    /// in the Prometheus text format.
    pub fn render(&self, stats: &PartialAgentStats, active: usize, passive: usize) -> String {
        let _scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        for (view, size) in [("active", active), ("passive", passive)] {
            self.view
                .get_or_create(&vec![("view", view.to_string())])
                .set(size as i64);
        }
        let n = &stats.node;
        let t = &stats.transport;
        let mirror =
            |family: &Family<Labels, Counter>, label: &'static str, pairs: &[(&str, u64)]| {
                for (name, value) in pairs {
                    let counter: &Counter<u64, AtomicU64> =
                        &family.get_or_create(&vec![(label, name.to_string())]);
                    catch_up(counter, *value);
                }
            };
        mirror(
            &self.node,
            "counter",
            &[
                ("frames_sent", n.frames_sent),
                ("bytes_sent", n.bytes_sent),
                ("gossip_sent", n.gossip_sent),
                ("ihave_bytes_sent", n.ihave_bytes_sent),
                ("ids_announced", n.ids_announced),
                ("duplicates", n.duplicates),
                ("grafts_sent", n.grafts_sent),
                ("refused", n.refused),
                ("wrong_cluster", n.wrong_cluster),
                ("send_errors", stats.send_errors),
            ],
        );
        let refused: Vec<(&str, u64)> = stats
            .refused
            .iter()
            .map(|(k, v)| (*k, *v))
            .chain([("seal", t.frames_refused)])
            .collect();
        mirror(&self.refused, "reason", &refused);
        mirror(
            &self.transport,
            "counter",
            &[
                ("packets_sent", t.packets_sent),
                ("bytes_sent", t.bytes_sent),
                ("packets_received", t.packets_received),
                ("bytes_received", t.bytes_received),
                ("frames_dropped", t.frames_dropped),
            ],
        );
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing into a String cannot fail");
        out
    }
}
