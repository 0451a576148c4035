//! The agent's control API: HTTP and JSON on loopback (axum).
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /v1/members` | `[{"id","addr","state","incarnation","generation","metadata_hex","self"}]`, this node first |
//! | `POST /v1/broadcast` | body: the payload's raw bytes; answers `{"id","origin","generation","sequence"}` |
//! | `GET /v1/events` | server-sent events; each `data:` is one JSON object with an `"event"` field, the first `{"event":"subscribed","node":...}` |
//! | `GET /v1/stats` | `{"node": {...core Stats...}, "transport": {...}, "send_errors", "refused": {kind: count}}` |
//! | `GET /v1/aggregate` | `{"estimate": f64 or null, "input": f64 or null}` |
//! | `POST /v1/aggregate` | body `{"input": f64}`; answers like `GET` |
//! | `GET /v1/leader` | `{"leader","term","has_quorum","is_leader",...,"partition":{...}}` ([`crate::api_leader`]) |
//! | `POST /v1/join` | body `{"addrs": ["ip:port", ...]}`; answers `{"contacted": [...]}` |
//! | `POST /v1/leave` | answers `{"leaving": true}`, then the agent leaves and exits |
//! | `GET /metrics` | Prometheus text ([`crate::metrics`]) |
//! | `GET /` | the status page |
//!
//! Errors answer `{"error": "..."}` with a 4xx or 5xx status. With a token
//! (`--api-token-file`), every route but `/` needs `Authorization: Bearer
//! TOKEN` (or `?token=TOKEN`, for `EventSource`, which cannot set headers).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gossip_agent::{AgentError, AgentHandle, AgentStats};
use gossip_core::{Aggregate, Event, Member, MessageId, NodeId};
use gossip_strategies::AnyStrategy;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::envelope;
use crate::metrics::{state_name, Metrics};

/// A status page from the parts in `assets/status/`: the shared head,
/// style and header (`top.html`), the page's own sections (`PAGE.html`),
/// the shared propagation, counters and events (`bottom.html`), the
/// shared script (`common.js`: those three and the live stream) and the
/// page's own script (`PAGE.js`). One self-contained file, assembled at
/// compile time.
macro_rules! status_page {
    ($page:literal) => {
        concat!(
            include_str!("../assets/status/top.html"),
            include_str!(concat!("../assets/status/", $page, ".html")),
            include_str!("../assets/status/bottom.html"),
            "<script>\n",
            include_str!("../assets/status/common.js"),
            "</script>\n<script>\n",
            include_str!(concat!("../assets/status/", $page, ".js")),
            "</script>\n</body>\n</html>\n",
        )
    };
}

/// The status page of full views, served at `/`: members, leader, store,
/// aggregate, propagation, counters and events.
pub const STATUS_PAGE: &str = status_page!("full");

/// The status page of partial views (`membership = "partial"`), served at
/// `/`: the active view with its tree links, the passive view, neighbours
/// lost by reason, propagation, counters and events.
pub const PARTIAL_STATUS_PAGE: &str = status_page!("partial");

/// What the API, the stdin commands and the event printer share.
pub struct Shared<A> {
    /// The running node.
    pub agent: AgentHandle<AnyStrategy, A>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// Every event as JSON, for SSE clients and the stdout printer.
    pub events: broadcast::Sender<Arc<Value>>,
    /// This node's aggregation input, when it runs an aggregate.
    pub input: Mutex<Option<f64>>,
    /// The bearer token the API demands, if any.
    pub token: Option<String>,
    /// Asks the agent to leave and exit.
    pub stop: mpsc::Sender<()>,
}

/// An API failure: a status and a one-line message.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl ApiError {
    /// A 503 with `message`.
    pub fn unavailable(message: &str) -> Self {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, message.to_string())
    }

    /// An error answer with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError(status, message.into())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError(rejection.status(), rejection.body_text())
    }
}

impl From<AgentError> for ApiError {
    fn from(error: AgentError) -> Self {
        match error {
            AgentError::Command(e) => ApiError(StatusCode::CONFLICT, e.to_string()),
            other => ApiError(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
        }
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One member as the API shows it.
pub fn member_json(member: &Member, me: NodeId) -> Value {
    json!({
        "id": member.id.to_string(),
        "addr": member.id.addr().to_string(),
        "state": state_name(member.liveness),
        "incarnation": member.incarnation.0,
        "generation": member.generation.0,
        "metadata_hex": hex(&member.metadata),
        "self": member.id == me,
    })
}

/// A transport's counters as the API shows them, for either membership.
pub(crate) fn transport_json(t: &gossip_agent::TransportStats) -> Value {
    json!({
        "packets_sent": t.packets_sent,
        "bytes_sent": t.bytes_sent,
        "packets_received": t.packets_received,
        "bytes_received": t.bytes_received,
        "frames_dropped": t.frames_dropped,
        "frames_refused": t.frames_refused,
    })
}

/// The node's and transport's counters as the API shows them.
pub fn stats_json(stats: &AgentStats) -> Value {
    let t = &stats.transport;
    json!({
        "node": stats.node,
        "transport": crate::api::transport_json(t),
        "send_errors": stats.send_errors,
        "refused": stats.refused,
    })
}

fn id_json(id: &MessageId) -> Value {
    json!({
        "id": format!("{}/{}/{}", id.origin, id.generation, id.sequence),
        "origin": id.origin.to_string(),
        "generation": id.generation,
        "sequence": id.sequence,
    })
}

/// Turns a node's events into JSON once, on a task of their own, and puts
/// them on `hub` (for the printer, the log and the event stream), counting
/// each delivered broadcast's propagation delay in `metrics`. A subscriber
/// that fell behind is told how many events it missed.
pub fn forward_events(
    mut node_events: broadcast::Receiver<Event>,
    hub: broadcast::Sender<Arc<Value>>,
    metrics: Arc<Metrics>,
) {
    tokio::spawn(async move {
        loop {
            match node_events.recv().await {
                Ok(event) => {
                    if let Some((line, delay)) = event_json(&event) {
                        if line["event"] == "delivered" {
                            metrics.delivered(delay);
                        }
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

/// An event as JSON (the stdin mode's lines and the SSE `data:`), and the
/// propagation delay of a delivered broadcast that carried its send time.
pub fn event_json(event: &Event) -> Option<(Value, Option<Duration>)> {
    let member = |kind: &str, m: &Member| {
        json!({
            "event": kind,
            "member": m.id.to_string(),
            "state": state_name(m.liveness),
            "incarnation": m.incarnation.0,
            "generation": m.generation.0,
        })
    };
    Some(match event {
        Event::MemberUp(m) => (member("member_up", m), None),
        Event::MemberSuspect(m) => (member("member_suspect", m), None),
        Event::MemberDown(m) => (member("member_down", m), None),
        Event::MemberLeft(m) => (member("member_left", m), None),
        Event::MemberUpdated(m) => (member("member_updated", m), None),
        Event::Estimate(v) => (json!({"event": "estimate", "value": v}), None),
        // Hosted applications' own broadcasts (KV writes, leader terms)
        // surface as their applications' events, not as deliveries: the
        // agent's users broadcast in its envelope, which no channel tag
        // starts.
        Event::Delivered { payload, .. } if gossip_apps::Channel::of(payload).is_some() => {
            return None
        }
        Event::Delivered { id, payload } => {
            let (sent, body) = envelope::unwrap(payload);
            let delay =
                sent.map(|sent| Duration::from_micros(envelope::now_micros().saturating_sub(sent)));
            let mut line = json!({
                "event": "delivered",
                "origin": id.origin.to_string(),
                "generation": id.generation,
                "sequence": id.sequence,
                "payload": std::str::from_utf8(body).ok(),
                "delay_ms": delay.map(|d| d.as_secs_f64() * 1e3),
            });
            if std::str::from_utf8(body).is_err() {
                line["payload_hex"] = hex(body).into();
            }
            (line, delay)
        }
        Event::Reissued { old, new } => (
            json!({
                "event": "reissued",
                "origin": old.origin.to_string(),
                "generation": old.generation,
                "old_sequence": old.sequence,
                "sequence": new.sequence,
            }),
            None,
        ),
        _ => return None,
    })
}

impl<A: Aggregate + Send + 'static> Shared<A> {
    /// Broadcasts `payload` in the agent's envelope and tells event
    /// subscribers (`{"event":"broadcast_sent",...}`).
    pub async fn broadcast(&self, payload: &[u8]) -> Result<MessageId, AgentError> {
        let wrapped = envelope::wrap(payload, envelope::now_micros());
        let id = self.agent.broadcast(wrapped).await?;
        let mut line = id_json(&id);
        line["event"] = "broadcast_sent".into();
        line["payload"] = std::str::from_utf8(payload).ok().into();
        let _ = self.events.send(Arc::new(line));
        Ok(id)
    }

    /// Every member, this node first.
    pub async fn members(&self) -> Result<Vec<Value>, AgentError> {
        let me = NodeId::new(self.agent.id());
        Ok(self
            .agent
            .members()
            .await?
            .iter()
            .map(|m| member_json(m, me))
            .collect())
    }

    /// Asks `addrs` to admit this node, then again with back-off (1, 2, 4
    /// and 8 s) while none of them is a live member.
    pub async fn contact(self: &Arc<Self>, addrs: Vec<SocketAddr>) -> Result<(), AgentError> {
        self.agent.contact(addrs.clone()).await?;
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            for wait in [1, 2, 4, 8] {
                tokio::time::sleep(Duration::from_secs(wait)).await;
                let Ok(members) = shared.agent.members().await else {
                    return;
                };
                let reached = members.iter().any(|m| {
                    addrs.contains(&m.id.addr())
                        && matches!(state_name(m.liveness), "alive" | "suspect")
                });
                if reached || shared.agent.contact(addrs.clone()).await.is_err() {
                    return;
                }
                tracing::info!(?addrs, "no answer yet; asking again");
            }
            tracing::warn!(?addrs, "none of these addresses answered the join");
        });
        Ok(())
    }
}

/// Resolves `host:port` names (a literal address resolves at once),
/// preferring for each name an address of the same family as `local`
/// (`localhost` may list `::1` first; an IPv4 socket cannot reach it).
pub async fn resolve(names: &[String], local: SocketAddr) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for name in names {
        let found: Vec<SocketAddr> = tokio::net::lookup_host(name.as_str())
            .await
            .map_err(|e| format!("{name}: {e}"))?
            .collect();
        let pick = found
            .iter()
            .find(|a| a.is_ipv4() == local.is_ipv4())
            .or(found.first());
        match pick {
            Some(addr) => out.push(*addr),
            None => return Err(format!("{name}: no address")),
        }
    }
    Ok(out)
}

/// The router for `shared`.
pub fn router<A: Aggregate + Send + 'static>(shared: Arc<Shared<A>>) -> Router {
    Router::new()
        .route("/v1/members", get(members::<A>))
        .route("/v1/broadcast", post(broadcast::<A>))
        .route("/v1/events", get(events::<A>))
        .route("/v1/stats", get(stats::<A>))
        .route(
            "/v1/aggregate",
            get(aggregate::<A>).post(set_aggregate::<A>),
        )
        .route("/v1/leader", get(crate::api_leader::leader::<A>))
        .route("/v1/join", post(join::<A>))
        .route("/v1/leave", post(leave::<A>))
        .route("/metrics", get(metrics::<A>))
        .merge(crate::api_kv::routes::<A>())
        .route_layer(middleware::from_fn_with_state(shared.clone(), auth::<A>))
        .route("/", get(page))
        .with_state(shared)
}

/// Serves `router` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) {
    if let Err(error) = axum::serve(listener, router).await {
        tracing::error!(%error, "control API stopped");
    }
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth<A: Aggregate + Send + 'static>(
    State(shared): State<Arc<Shared<A>>>,
    request: Request,
    next: Next,
) -> Response {
    match refused_token(shared.token.as_deref(), &request) {
        Some(refusal) => refusal,
        None => next.run(request).await,
    }
}

/// The 401 answer to `request` when the API demands `token` and the
/// request does not carry it (`Authorization: Bearer TOKEN`, or
/// `?token=TOKEN`); `None` when it may pass.
pub fn refused_token(token: Option<&str>, request: &Request) -> Option<Response> {
    let token = token?;
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let from_query = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("token=")));
    let offered = from_header.or(from_query).unwrap_or("");
    if same(offered.as_bytes(), token.as_bytes()) {
        return None;
    }
    Some(
        ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token".into(),
        )
        .into_response(),
    )
}

async fn page() -> Response {
    html(STATUS_PAGE)
}

/// A status page as an HTTP answer.
pub(crate) fn html(page: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

async fn members<A: Aggregate + Send + 'static>(State(s): State<Arc<Shared<A>>>) -> ApiResult {
    Ok(Json(Value::Array(s.members().await?)))
}

async fn broadcast<A: Aggregate + Send + 'static>(
    State(s): State<Arc<Shared<A>>>,
    body: Bytes,
) -> ApiResult {
    let id = s.broadcast(&body).await?;
    Ok(Json(id_json(&id)))
}

async fn events<A: Aggregate + Send + 'static>(
    State(s): State<Arc<Shared<A>>>,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    event_stream(&s.events, s.agent.id())
}

/// `GET /v1/events`: the JSON events of `hub` as server-sent events, the
/// first `{"event":"subscribed","node":node}`.
pub fn event_stream(
    hub: &broadcast::Sender<Arc<Value>>,
    node: SocketAddr,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    use futures_util::StreamExt;
    let receiver = hub.subscribe();
    // A first event tells the client the stream is live: whatever happens
    // from now on reaches it.
    let hello = json!({"event": "subscribed", "node": node.to_string()}).to_string();
    let first = futures_util::stream::once(async move { Ok(SseEvent::default().data(hello)) });
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let line = match receiver.recv().await {
            Ok(line) => line.to_string(),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                json!({"event": "lagged", "missed": missed}).to_string()
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(SseEvent::default().data(line)), receiver))
    });
    Sse::new(first.chain(stream)).keep_alive(KeepAlive::default())
}

async fn stats<A: Aggregate + Send + 'static>(State(s): State<Arc<Shared<A>>>) -> ApiResult {
    Ok(Json(stats_json(&s.agent.stats().await?)))
}

async fn aggregate<A: Aggregate + Send + 'static>(State(s): State<Arc<Shared<A>>>) -> ApiResult {
    let estimate = s.agent.estimate().await?;
    let input = *s.input.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Json(json!({"estimate": estimate, "input": input})))
}

/// Body of `POST /v1/aggregate`.
#[derive(Debug, Deserialize)]
struct SetInput {
    input: f64,
}

async fn set_aggregate<A: Aggregate + Send + 'static>(
    State(s): State<Arc<Shared<A>>>,
    body: Result<Json<SetInput>, JsonRejection>,
) -> ApiResult {
    let Json(body) = body?;
    if s.input.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "this agent computes no aggregate (configure one with --aggregate or [aggregate])"
                .into(),
        ));
    }
    s.agent.set_aggregate_input(body.input).await?;
    *s.input.lock().unwrap_or_else(|e| e.into_inner()) = Some(body.input);
    aggregate(State(s)).await
}

/// Body of `POST /v1/join`.
#[derive(Debug, Deserialize)]
struct JoinBody {
    addrs: Vec<String>,
}

async fn join<A: Aggregate + Send + 'static>(
    State(s): State<Arc<Shared<A>>>,
    body: Result<Json<JoinBody>, JsonRejection>,
) -> ApiResult {
    let Json(body) = body?;
    if body.addrs.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "addrs: give at least one address".into(),
        ));
    }
    let addrs = resolve(&body.addrs, s.agent.id())
        .await
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    s.contact(addrs.clone()).await?;
    let contacted: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    Ok(Json(json!({"contacted": contacted})))
}

async fn leave<A: Aggregate + Send + 'static>(State(s): State<Arc<Shared<A>>>) -> ApiResult {
    s.stop
        .send(())
        .await
        .map_err(|_| ApiError(StatusCode::SERVICE_UNAVAILABLE, "already stopping".into()))?;
    Ok(Json(json!({"leaving": true})))
}

async fn metrics<A: Aggregate + Send + 'static>(State(s): State<Arc<Shared<A>>>) -> Response {
    let (stats, members) = match (s.agent.stats().await, s.agent.members().await) {
        (Ok(stats), Ok(members)) => (stats, members),
        (Err(e), _) | (_, Err(e)) => return ApiError::from(e).into_response(),
    };
    let kv = s
        .agent
        .with_app(|kv: &mut crate::api_kv::NodeKv, _, _| crate::api_kv::KvSnapshot::of(kv))
        .await;
    if let Ok(Some(kv)) = kv {
        s.metrics.kv(&kv);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(&stats, &members),
    )
        .into_response()
}
