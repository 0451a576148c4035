//! The status pages (assembled from `gossip-node/assets/status/`, one for
//! full views and one for partial views): self-contained, and rendered by
//! headless Chromium against a fake control API.
//!
//! The Chromium test is ignored by default (it may install a browser). Run it
//! by hand with
//! `cargo test -p gossip-node --test integration status_page -- --ignored --nocapture`;
//! it installs Debian's `chromium` with apt-get when it is missing and the
//! test runs as root, and skips with a message where it cannot. Set
//! `STATUS_SCREENSHOT=/tmp/status.png` to also save a screenshot.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

const PAGE: &str = gossip_node::api::STATUS_PAGE;
const PARTIAL_PAGE: &str = gossip_node::api::PARTIAL_STATUS_PAGE;

/// The routes the partial-view page may call.
const PARTIAL_ROUTES: [&str; 3] = ["/v1/view", "/v1/events", "/v1/stats"];

/// The routes the page may call, relative to its origin.
const ROUTES: [&str; 6] = [
    "/v1/members",
    "/v1/events",
    "/v1/stats",
    "/v1/aggregate",
    "/v1/leader",
    "/v1/kv-stats",
];

/// `page` loads nothing from elsewhere, calls each of `routes` and no
/// other API path, and streams events.
fn check_self_contained(page: &str, routes: &[&str]) {
    assert!(page.len() < 15_000, "page is {} bytes", page.len());
    for external in ["src=", "href=", "@import", "url(", "http://", "https://"] {
        assert!(
            !page.contains(external),
            "page loads something from outside itself: {external}"
        );
    }
    for route in routes {
        assert!(
            page.contains(&format!("\"{route}\"")),
            "page never calls {route}"
        );
    }
    // Every API path the page names is one of these.
    for (at, _) in page.match_indices("/v1/") {
        let path: String = page[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '/' || *c == '-')
            .collect();
        assert!(routes.contains(&path.as_str()), "unknown route {path}");
    }
    assert!(page.contains("new EventSource("), "no live event stream");
    // The elements the shared script fills.
    for id in [
        "self",
        "summary",
        "conn",
        "prop-summary",
        "histogram",
        "stats",
        "events",
    ] {
        assert!(page.contains(&format!("id=\"{id}\"")), "no #{id}");
    }
    assert_eq!(
        page.matches("<script>").count(),
        2,
        "the shared and the page's script"
    );
}

#[test]
fn page_is_small_self_contained_and_uses_the_api_routes() {
    check_self_contained(PAGE, &ROUTES);
}

#[test]
fn partial_page_is_small_self_contained_and_uses_only_partial_routes() {
    check_self_contained(PARTIAL_PAGE, &PARTIAL_ROUTES);
    // It shares the full page's head and script rather than copying them.
    let head = &PAGE[..PAGE.find("<main>").unwrap()];
    assert!(PARTIAL_PAGE.starts_with(head));
    let shared = PAGE.split("<script>").nth(1).unwrap();
    assert_eq!(PARTIAL_PAGE.split("<script>").nth(1).unwrap(), shared);
}

fn members() -> serde_json::Value {
    json!([
        {"id": "127.0.0.1:7946", "addr": "127.0.0.1:7946", "state": "alive", "incarnation": 3,
         "generation": 2, "metadata_hex": "6e6f646541", "self": true},
        {"id": "127.0.0.1:7947", "addr": "127.0.0.1:7947", "state": "suspect", "incarnation": 1,
         "generation": 1, "metadata_hex": ""},
        {"id": "127.0.0.1:7948", "addr": "127.0.0.1:7948", "state": "dead", "incarnation": 0,
         "generation": 1, "metadata_hex": ""},
        {"id": "127.0.0.1:7949", "addr": "127.0.0.1:7949", "state": "left", "incarnation": 5,
         "generation": 4, "metadata_hex": "ff"}
    ])
}

/// One finished batch of server-sent events; the page sees the stream drop
/// and must reconnect (the `retry:` field asks for one second).
fn event_stream() -> String {
    let mut events = vec![
        json!({"event": "member_up", "id": "127.0.0.1:7949", "state": "alive", "incarnation": 0, "generation": 4}),
        json!({"event": "member_suspect", "id": "127.0.0.1:7947", "state": "suspect", "incarnation": 1, "generation": 1}),
        json!({"event": "member_down", "id": "127.0.0.1:7948", "state": "dead", "incarnation": 0, "generation": 1}),
        // The member's id may also come as `member` (the agent's JSON lines).
        json!({"event": "member_left", "member": "127.0.0.1:7949", "state": "left", "incarnation": 5, "generation": 4}),
        json!({"event": "estimate", "value": 42.25}),
    ];
    for (i, delay) in [3.5, 7.25, 12.0, 4.0, 30.5].iter().enumerate() {
        events.push(json!({
            "event": "delivered", "id": format!("127.0.0.1:7947/1/{i}"),
            "payload": format!("hello <b>{i}</b>"), "delay_ms": delay,
        }));
    }
    // The agent's own extras: a broadcast it sent, and events it dropped.
    events.push(
        json!({"event": "broadcast_sent", "id": "127.0.0.1:7946/2/1", "payload": "sent by me"}),
    );
    events.push(json!({"event": "lagged", "missed": 7}));
    // A delivery's id as origin, generation and sequence, without a delay.
    events.push(json!({
        "event": "delivered", "origin": "127.0.0.1:7948", "generation": 1,
        "sequence": 9, "payload": "no delay", "delay_ms": null,
    }));
    let mut body = String::from("retry: 1000\n\n");
    for event in events {
        body.push_str(&format!("data: {event}\n\n"));
    }
    body
}

/// Serves the page and fake API answers; counts event-stream connections
/// and refuses the first.
async fn serve_fake_api(connections: Arc<AtomicUsize>) -> SocketAddr {
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/v1/members", get(|| async { Json(members()) }))
        .route(
            "/v1/stats",
            get(|| async {
                Json(json!({"node": {"rumors_sent": 1234, "probes_sent": 77},
                            "transport": {"bytes_sent": 98765}, "send_errors": 0}))
            }),
        )
        .route(
            "/v1/aggregate",
            get(|| async { Json(json!({"estimate": 42.25, "input": 40.0})) }),
        )
        .route(
            "/v1/leader",
            get(|| async {
                Json(
                    json!({"leader": "127.0.0.1:7946", "is_leader": true, "term": 3,
                            "has_quorum": true,
                            "partition": {"suspected": false, "lost": 0}}),
                )
            }),
        )
        .route(
            "/v1/kv-stats",
            get(|| async {
                Json(
                    json!({"live": 1234, "tombstones": 3, "guards": 17, "tracked": 1,
                            "outbox": 0, "stored_bytes": 56789, "catching_up": true,
                            "counters": {"local_writes": 40, "applied": 900, "exchanges": 77,
                                         "collected_early": 21, "collected": 2}}),
                )
            }),
        )
        .route(
            "/v1/events",
            get(move || {
                let first = connections.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        // An error answer closes an EventSource for good:
                        // only the page's own retry brings the events.
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
                    }
                    (
                        [(header::CONTENT_TYPE, "text/event-stream")],
                        event_stream(),
                    )
                        .into_response()
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

/// Debian's Chromium, installed with apt-get if missing and allowed.
fn chromium() -> Result<String, String> {
    let find = || {
        ["chromium", "chromium-browser"].into_iter().find(|name| {
            Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
    };
    if let Some(found) = find() {
        return Ok(found.to_string());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !root {
        return Err("chromium is missing and installing it needs root".into());
    }
    eprintln!("installing chromium with apt-get (takes a while, once)");
    let installed = Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
        ])
        .status()
        .map_err(|e| format!("apt-get: {e}"))?;
    if !installed.success() {
        return Err(format!("apt-get install chromium failed: {installed}"));
    }
    find()
        .map(str::to_string)
        .ok_or_else(|| "chromium still missing after apt-get".into())
}

/// Runs headless Chromium on `url` with `extra` arguments, giving the page
/// five seconds of virtual time to fetch, stream and redraw.
fn headless(browser: &str, url: &str, extra: &[&str]) -> std::process::Output {
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=5000",
        ])
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs")
}

/// Chromium, or None (and a message why the test `name` is skipped).
async fn browser_or_skip(name: &str) -> Option<String> {
    match tokio::task::spawn_blocking(chromium).await.expect("join") {
        Ok(browser) => Some(browser),
        Err(reason) => {
            eprintln!("skipping {name}: {reason}");
            None
        }
    }
}

/// The DOM Chromium renders from `url`.
async fn rendered_dom(browser: &str, url: &str) -> String {
    let (browser, url) = (browser.to_string(), url.to_string());
    let dom = tokio::task::spawn_blocking(move || headless(&browser, &url, &["--dump-dom"]))
        .await
        .expect("join");
    assert!(
        dom.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    String::from_utf8(dom.stdout).expect("utf-8 DOM")
}

/// Each of `kinds` is in the page's event list.
fn assert_events_listed(dom: &str, kinds: &[&str]) {
    for kind in kinds {
        assert!(
            dom.contains(&format!(r#"data-event="{kind}""#)),
            "no {kind} event in\n{dom}"
        );
    }
}

/// A screenshot of `url` into the file the environment variable `var`
/// names, when it is set.
async fn screenshot_if_asked(var: &str, browser: String, url: String) {
    let Ok(path) = std::env::var(var) else {
        return;
    };
    let shot = format!("--screenshot={path}");
    let out = tokio::task::spawn_blocking(move || {
        headless(
            &browser,
            &url,
            &[&shot, "--window-size=1200,900", "--hide-scrollbars"],
        )
    })
    .await
    .expect("join");
    assert!(out.status.success(), "screenshot failed");
    eprintln!("screenshot written to {path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium (installs it as root); run with --ignored"]
async fn chromium_renders_members_events_and_propagation() {
    let Some(browser) = browser_or_skip("the status page test").await else {
        return;
    };
    let connections = Arc::new(AtomicUsize::new(0));
    let addr = serve_fake_api(connections.clone()).await;
    let url = format!("http://{addr}/");
    let dom = rendered_dom(&browser, &url).await;

    // Every member is a row with its coloured state.
    for (id, state) in [
        ("127.0.0.1:7946", "alive"),
        ("127.0.0.1:7947", "suspect"),
        ("127.0.0.1:7948", "dead"),
        ("127.0.0.1:7949", "left"),
    ] {
        assert!(
            dom.contains(&format!(r#"<tr data-id="{id}" data-state="{state}">"#)),
            "no {state} row for {id} in\n{dom}"
        );
        assert!(dom.contains(&format!(r#"<span class="state {state}">{state}</span>"#)));
    }
    assert!(dom.contains("(self)"), "self not marked");
    // Events, newest first, payload text escaped rather than interpreted.
    assert_events_listed(
        &dom,
        &[
            "member_up",
            "member_suspect",
            "member_down",
            "member_left",
            "estimate",
            "delivered",
        ],
    );
    assert!(
        dom.contains("hello &lt;b&gt;4&lt;/b&gt;"),
        "payload missing or unescaped"
    );
    assert!(
        dom.contains("127.0.0.1:7948/1/9"),
        "id from origin/generation/sequence"
    );
    assert!(
        dom.contains("127.0.0.1:7946/2/1 \u{201c}sent by me\u{201d}"),
        "broadcast_sent"
    );
    assert!(dom.contains("missed 7 events"), "lagged");
    assert!(
        dom.contains(r#"<span class="mono">127.0.0.1:7949</span> <span class="muted">left"#),
        "member_left named by `member`"
    );
    // Propagation from the delays 3.5, 7.25, 12, 4 and 30.5 ms (nearest rank).
    assert!(
        dom.contains("p50 7.3 ms") || dom.contains("p50 7.25 ms"),
        "no p50 in\n{dom}"
    );
    assert!(dom.contains("max 30.5 ms"), "no max delay in\n{dom}");
    assert!(dom.contains("<rect"), "no histogram bars");
    // Aggregate and counters.
    assert!(
        dom.contains(r#"<span id="estimate" class="big">42.25</span>"#),
        "no estimate"
    );
    assert!(
        dom.contains("node.rumors_sent") && dom.contains("1234"),
        "no stats"
    );
    // The store's box.
    assert!(
        dom.contains(r#"<span id="kv-keys" class="big">1234</span>"#),
        "no KV keys in\n{dom}"
    );
    assert!(
        dom.contains(r#"<span id="kv-bytes">56789</span>"#),
        "no KV bytes"
    );
    assert!(
        dom.contains("3 tombstones, 17 guards, 21 collected early, 2 after grace"),
        "no KV collection line"
    );
    assert!(
        dom.contains("40 written here, 900 applied, 77 exchanges, CATCHING UP"),
        "no KV sync line"
    );
    // Refused once, then ended after each batch: the page came back.
    assert!(
        connections.load(Ordering::SeqCst) >= 3,
        "the page did not reconnect to /v1/events"
    );

    screenshot_if_asked("STATUS_SCREENSHOT", browser, url).await;
}

/// The partial-view page's fake API: a view of two active neighbours (one
/// a tree link) and three passive addresses, counters, and one batch of
/// events.
async fn serve_fake_partial_api() -> SocketAddr {
    let events = [
        json!({"event": "subscribed", "node": "127.0.0.1:8000"}),
        json!({"event": "neighbour_up", "neighbour": "127.0.0.1:8001"}),
        json!({"event": "neighbour_down", "neighbour": "127.0.0.1:8009", "reason": "silent"}),
        json!({"event": "neighbour_down", "neighbour": "127.0.0.1:8008", "reason": "replaced"}),
        json!({"event": "neighbour_down", "neighbour": "127.0.0.1:8007", "reason": "silent"}),
        json!({"event": "delivered", "id": "00112233aabbccdd", "hops": 3,
               "payload": "over <i>partial</i> views", "delay_ms": 2.5}),
        json!({"event": "delivered", "id": "0011223344556677", "hops": 1,
               "payload": "second", "delay_ms": 6.0}),
        json!({"event": "broadcast_sent", "id": "8899aabbccddeeff", "payload": "mine"}),
    ];
    let mut body = String::from("retry: 1000\n\n");
    for event in events {
        body.push_str(&format!("data: {event}\n\n"));
    }
    let sent = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/", get(|| async { Html(PARTIAL_PAGE) }))
        .route(
            "/v1/view",
            get(|| async {
                Json(json!({
                    "id": "127.0.0.1:8000",
                    "active": ["127.0.0.1:8001", "127.0.0.1:8002"],
                    "eager": ["127.0.0.1:8001"],
                    "passive": ["127.0.0.1:8003", "127.0.0.1:8004", "127.0.0.1:8005"],
                }))
            }),
        )
        .route(
            "/v1/stats",
            get(|| async {
                Json(json!({"membership": "partial", "active": 2, "passive": 3,
                            "node": {"frames_sent": 4321, "wrong_cluster": 17},
                            "transport": {"bytes_sent": 98765}, "send_errors": 0,
                            "refused": {"wrong_cluster": 17}}))
            }),
        )
        .route(
            "/v1/events",
            get(move || {
                // The batch once; reconnections find nothing new, so that
                // the counts on the page are the batch's.
                let first = sent.fetch_add(1, Ordering::SeqCst) == 0;
                let body = if first {
                    body.clone()
                } else {
                    "retry: 1000\n\n".into()
                };
                async move { ([(header::CONTENT_TYPE, "text/event-stream")], body) }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium (installs it as root); run with --ignored"]
async fn chromium_renders_the_partial_views_page() {
    let Some(browser) = browser_or_skip("the partial status page test").await else {
        return;
    };
    let url = format!("http://{}/", serve_fake_partial_api().await);
    let dom = rendered_dom(&browser, &url).await;

    assert!(dom.contains(r#"<span id="self" class="mono muted">127.0.0.1:8000</span>"#));
    for (id, view) in [
        ("127.0.0.1:8001", "active"),
        ("127.0.0.1:8002", "active"),
        ("127.0.0.1:8003", "passive"),
        ("127.0.0.1:8005", "passive"),
    ] {
        assert!(
            dom.contains(&format!(r#"<tr data-id="{id}" data-view="{view}">"#)),
            "no {view} row for {id} in\n{dom}"
        );
    }
    assert!(
        dom.contains("partial views: 2 active (1 tree links), 3 passive"),
        "no summary in\n{dom}"
    );
    assert!(dom.contains("<td>tree</td>"), "tree link not marked");
    assert!(
        dom.contains("2 silent, 1 replaced"),
        "no losses by reason in\n{dom}"
    );
    assert_events_listed(
        &dom,
        &[
            "neighbour_up",
            "neighbour_down",
            "delivered",
            "broadcast_sent",
        ],
    );
    assert!(
        dom.contains(r#"<span class="mono">127.0.0.1:8009</span> <span class="muted">silent"#),
        "a neighbour lost names its reason"
    );
    assert!(
        dom.contains("over &lt;i&gt;partial&lt;/i&gt; views\u{201d} in 3 hops after 2.5 ms"),
        "delivery with hops and delay in\n{dom}"
    );
    assert!(dom.contains("max 6 ms"), "no propagation in\n{dom}");
    assert!(
        dom.contains("node.wrong_cluster") && dom.contains("4321"),
        "no stats"
    );

    // A fresh fake API: its events come once per server.
    let url = format!("http://{}/", serve_fake_partial_api().await);
    screenshot_if_asked("PARTIAL_STATUS_SCREENSHOT", browser, url).await;
}
