//! The agent as an operator runs it: three `gossip-node agent` processes
//! with control APIs and data directories, driven by the client
//! subcommands (`members`, `broadcast`, `events`, `join`, `aggregate`);
//! SIGINT leaves gracefully within 3 s; a restart on the same data
//! directory is the same member in a newer generation; `/metrics` is
//! Prometheus text; bad configuration exits 2 naming the field.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{free_port, free_tcp_port, AgentProcess, TempDir, BIN};
use serde_json::Value;

/// Runs a client subcommand; its exit code, stdout and stderr.
fn client(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `gossip-node members --api API --format json`, parsed.
fn members(api: &str) -> Vec<Value> {
    let (code, out, err) = client(&["members", "--api", api, "--format", "json"]);
    assert_eq!(code, 0, "members: {err}");
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Polls `members` on `api` until `check` holds; panics after `limit`.
fn until_members(
    api: &str,
    limit: Duration,
    what: &str,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let list = members(api);
        if check(&list) {
            return list;
        }
        assert!(Instant::now() < deadline, "{what}: {list:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn member<'a>(list: &'a [Value], id: &str) -> Option<&'a Value> {
    list.iter().find(|m| m["id"] == id)
}

/// An agent with an API on a known port and a data dir.
struct Node {
    process: AgentProcess,
    api: String,
    addr: String,
    generation: u64,
}

fn start(data_dir: &std::path::Path, bind: Option<&str>, join: Option<&str>, api: &str) -> Node {
    let (process, ready) =
        AgentProcess::start_ready(data_dir, api, bind, join, &["--leave-linger-ms", "1000"]);
    assert_eq!(ready["api"], api);
    let addr = process.addr.clone();
    Node {
        process,
        api: api.to_string(),
        addr,
        generation: ready["generation"].as_u64().unwrap(),
    }
}

/// A `gossip-node events --format json` process and its lines.
struct Events {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Events {
    fn follow(api: &str) -> Self {
        let mut child = Command::new(BIN)
            .args(["events", "--api", api, "--format", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str(&line) {
                    if tx.send(value).is_err() {
                        return;
                    }
                }
            }
        });
        let events = Self { child, lines };
        assert!(
            events
                .saw(Duration::from_secs(5), |e| e["event"] == "subscribed")
                .is_some(),
            "the event stream opens"
        );
        events
    }

    fn saw(&self, limit: Duration, pick: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(event) if pick(&event) => return Some(event),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on `api` over a plain TCP connection: status line and body.
pub(crate) fn http_get(api: &str, path: &str) -> (String, String) {
    http(api, "GET", path, "", "")
}

/// One HTTP/1.1 request with extra header lines `headers` (each ending in
/// CRLF) and `body`: status line and body.
fn http(api: &str, method: &str, path: &str, headers: &str, body: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(api).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n{headers}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// Checks every line of a Prometheus text exposition: comments are
/// `# HELP`, `# TYPE` (with a known type) or `# EOF` (last); samples are
/// `name{label="value",...} number` whose name belongs to a declared
/// family. Returns the samples as (name with labels, value).
pub(crate) fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut families: Vec<(String, String)> = Vec::new();
    let mut samples = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "ends with # EOF");
    for (i, line) in lines.iter().enumerate() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), Some(_)) => assert!(valid_name(name), "{line}"),
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(valid_name(name), "{line}");
                    assert!(
                        [
                            "counter",
                            "gauge",
                            "histogram",
                            "summary",
                            "info",
                            "unknown"
                        ]
                        .contains(&kind),
                        "{line}"
                    );
                    families.push((name.to_string(), kind.to_string()));
                }
                (Some("EOF"), None, None) => assert_eq!(i, lines.len() - 1, "EOF is last"),
                _ => panic!("bad comment line {line:?}"),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("{line:?}"));
                for pair in labels.split(',') {
                    let (key, quoted) = pair.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
                    assert!(valid_name(key), "{line:?}");
                    assert!(
                        quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'),
                        "{line:?}"
                    );
                }
                name
            }
            None => series,
        };
        assert!(valid_name(name), "{line:?}");
        let family = families.iter().find(|(f, kind)| {
            name == f
                || match kind.as_str() {
                    "counter" => name == format!("{f}_total") || name == format!("{f}_created"),
                    "histogram" => ["_bucket", "_sum", "_count", "_created"]
                        .iter()
                        .any(|s| name == format!("{f}{s}")),
                    _ => false,
                }
        });
        assert!(family.is_some(), "sample of an undeclared family: {line:?}");
        samples.push((series.to_string(), value));
    }
    samples
}

#[test]
fn three_agents_join_broadcast_leave_restart_and_export_metrics() {
    let dirs: Vec<TempDir> = ["api-a", "api-b", "api-c", "api-d"]
        .iter()
        .map(|n| TempDir::new(n))
        .collect();
    let apis: Vec<String> = (0..4)
        .map(|_| format!("127.0.0.1:{}", free_tcp_port()))
        .collect();
    let a_bind = format!("127.0.0.1:{}", free_port());
    let a = start(&dirs[0].0, Some(&a_bind), None, &apis[0]);
    let b = start(
        &dirs[1].0,
        Some(&format!("127.0.0.1:{}", free_port())),
        Some(&a.addr),
        &apis[1],
    );
    // C names its seed by host name.
    let a_by_name = a.addr.replace("127.0.0.1", "localhost");
    let mut c = start(
        &dirs[2].0,
        Some(&format!("127.0.0.1:{}", free_port())),
        Some(&a_by_name),
        &apis[2],
    );
    let ids = [a.addr.clone(), b.addr.clone(), c.addr.clone()];

    // They join: every agent lists all three alive, itself marked.
    for node in [&a, &b, &c] {
        let list = until_members(
            &node.api,
            Duration::from_secs(10),
            "all three alive",
            |list| {
                ids.iter()
                    .all(|id| member(list, id).is_some_and(|m| m["state"] == "alive"))
            },
        );
        let me = member(&list, &node.addr).unwrap();
        assert_eq!(me["self"], true);
        assert_eq!(me["generation"], node.generation);
        for m in &list {
            for key in [
                "id",
                "addr",
                "state",
                "incarnation",
                "generation",
                "metadata_hex",
            ] {
                assert!(m.get(key).is_some(), "{key} in {m}");
            }
        }
    }
    // A data dir serves one agent at a time.
    let out = Command::new(BIN)
        .args([
            "agent",
            "--data-dir",
            dirs[0].0.to_str().unwrap(),
            "--api",
            "none",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by process"));

    // The table for people names every member.
    let (code, table, _) = client(&["members", "--api", &a.api]);
    assert_eq!(code, 0);
    assert!(ids.iter().all(|id| table.contains(id.as_str())), "{table}");

    // A broadcast through the CLI reaches the others' event streams, with
    // its propagation delay.
    let b_events = Events::follow(&b.api);
    let c_events = Events::follow(&c.api);
    let (code, out, err) = client(&[
        "broadcast",
        "hello from a",
        "--api",
        &a.api,
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let id: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(id["origin"], a.addr.as_str());
    for events in [&b_events, &c_events] {
        let delivered = events
            .saw(Duration::from_secs(5), |e| e["event"] == "delivered")
            .expect("the broadcast arrives");
        assert_eq!(delivered["payload"], "hello from a");
        assert_eq!(delivered["origin"], a.addr.as_str());
        let delay = delivered["delay_ms"].as_f64().expect("a measured delay");
        assert!((0.0..5000.0).contains(&delay), "{delay}");
    }

    // /metrics is Prometheus text, and says what happened (polled: the
    // first pings may still be on their way).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = http_get(&b.api, "/metrics");
        assert!(status.contains("200"), "{status}");
        let samples = parse_prometheus(&body);
        let value = |series: &str| samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v);
        assert_eq!(value("gossip_members{state=\"alive\"}"), Some(3.0));
        assert_eq!(
            value("gossip_broadcast_propagation_seconds_count"),
            Some(1.0)
        );
        // The core's count: hosted applications' broadcasts (leader term
        // announcements) are deliveries too; the propagation histogram
        // above counts only the user's broadcast.
        assert!(value("gossip_deliveries_total").is_some_and(|v| v >= 1.0));
        // The hosted store: empty, not catching up once joined.
        assert_eq!(value("gossip_kv_keys"), Some(0.0));
        assert_eq!(value("gossip_kv_tombstones"), Some(0.0));
        assert!(value("gossip_kv_catching_up").is_some());
        assert!(value("gossip_kv_sync_exchanges_total{outcome=\"started\"}").is_some());
        let seen = value("gossip_frames_total{direction=\"in\",kind=\"ping\"}")
            .is_some_and(|v| v > 0.0)
            && value("gossip_frames_total{direction=\"out\",kind=\"ack\"}")
                .is_some_and(|v| v > 0.0)
            && value("gossip_probe_rtt_seconds_count").is_some_and(|v| v > 0.0);
        if seen {
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // SIGINT (stdin still open): C leaves and exits within 3 s; the
    // others list it as left, not dead.
    let a_events = Events::follow(&a.api);
    c.process.signal("INT");
    let started = Instant::now();
    let status = c
        .process
        .exited_within(Duration::from_secs(3))
        .unwrap_or_else(|| panic!("still running {:?} after SIGINT", started.elapsed()));
    assert!(status.success(), "{status:?}");
    for node in [&a, &b] {
        until_members(&node.api, Duration::from_secs(3), "C left", |list| {
            member(list, &c.addr).is_some_and(|m| m["state"] == "left")
        });
    }
    assert!(a_events
        .saw(Duration::from_secs(1), |e| e["event"] == "member_left"
            && e["member"] == c.addr.as_str())
        .is_some());

    // Restarted on its data dir alone (no --bind), C is the same member in
    // a newer generation, and A sees it come back.
    let old_generation = c.generation;
    c = start(&dirs[2].0, None, Some(&a.addr), &apis[2]);
    assert_eq!(c.addr, ids[2], "the same identity");
    assert!(c.generation > old_generation);
    let list = until_members(&a.api, Duration::from_secs(10), "C back", |list| {
        member(list, &c.addr)
            .is_some_and(|m| m["state"] == "alive" && m["generation"] == c.generation)
    });
    assert_eq!(list.len(), 3, "no stranger: {list:#?}");
    assert!(a_events
        .saw(Duration::from_secs(3), |e| e["member"] == c.addr.as_str()
            && (e["event"] == "member_up"
                || e["event"] == "member_updated")
            && e["generation"] == c.generation)
        .is_some());
    let kept: Value =
        serde_json::from_slice(&std::fs::read(dirs[2].file("node.json")).unwrap()).unwrap();
    assert_eq!(kept["restarts"], 1);

    // A fourth agent that founded its own cluster merges through `join`.
    let d = start(
        &dirs[3].0,
        Some(&format!("127.0.0.1:{}", free_port())),
        None,
        &apis[3],
    );
    let (code, _, err) = client(&["join", &a.addr, "--api", &d.api]);
    assert_eq!(code, 0, "{err}");
    until_members(&a.api, Duration::from_secs(10), "D merged", |list| {
        member(list, &d.addr).is_some_and(|m| m["state"] == "alive")
    });
    until_members(&d.api, Duration::from_secs(10), "D sees all", |list| {
        list.len() == 4
    });
}

#[test]
fn aggregate_token_and_errors_through_the_cli() {
    let dir = TempDir::new("api-token");
    let token_file = dir.file("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let token = token_file.to_str().unwrap();
    let api = format!("127.0.0.1:{}", free_tcp_port());
    let mut agent = AgentProcess::spawn(
        &[
            "--api".into(),
            api.clone(),
            "--api-token-file".into(),
            token.into(),
            "--aggregate".into(),
            "push-pull".into(),
            "--aggregate-input".into(),
            "4".into(),
            "--probe-interval-ms".into(),
            "200".into(),
        ],
        true,
    );
    assert!(agent
        .saw(Duration::from_secs(10), |e| e["event"] == "ready")
        .is_some());

    // Without the token: refused, one line, exit 1.
    let (code, _, err) = client(&["members", "--api", &api]);
    assert_eq!(code, 1);
    assert!(
        err.contains("401") && err.trim().lines().count() == 1,
        "{err}"
    );
    let (code, out, err) = client(&[
        "aggregate",
        "--api",
        &api,
        "--api-token-file",
        token,
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["input"], 4.0);
    let (code, out, err) = client(&[
        "aggregate",
        "set",
        "6.5",
        "--api",
        &api,
        "--api-token-file",
        token,
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["input"], 6.5);
    // Alone, its estimate converges on its own input.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, out, _) = client(&[
            "aggregate",
            "--api",
            &api,
            "--api-token-file",
            token,
            "--format",
            "json",
        ]);
        let estimate = serde_json::from_str::<Value>(&out).unwrap()["estimate"].as_f64();
        if estimate.is_some_and(|e| (e - 6.5).abs() < 1e-9) {
            break;
        }
        assert!(Instant::now() < deadline, "estimate {estimate:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A malformed body is a 4xx with a JSON error, and changes nothing.
    let auth = "Authorization: Bearer s3cret\r\nContent-Type: application/json\r\n";
    let (status, body) = http(&api, "POST", "/v1/aggregate", auth, r#"{"input":"x"}"#);
    assert!(status.contains(" 422 "), "{status}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert!(error["error"].as_str().unwrap().contains("input"), "{body}");
    let (status, _) = http(&api, "POST", "/v1/join", auth, r#"{"addrs":[]}"#);
    assert!(status.contains(" 400 "), "{status}");
    // The token also works in the query string (EventSource sends no headers).
    let (status, _) = http(&api, "GET", "/metrics?token=s3cret", "", "");
    assert!(status.contains(" 200 "), "{status}");
    let (status, _) = http(&api, "GET", "/metrics?token=wrong", "", "");
    assert!(status.contains(" 401 "), "{status}");

    // `leave` through the API: the agent exits by itself.
    let (code, out, err) = client(&[
        "leave",
        "--api",
        &api,
        "--api-token-file",
        token,
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["stopped"],
        true
    );
    assert!(agent.exited_within(Duration::from_secs(3)).is_some());

    // Nobody listening: one line, exit 1.
    let (code, _, err) = client(&["stats", "--api", &api]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot reach") && err.trim().lines().count() == 1,
        "{err}"
    );
}

#[test]
fn bad_configuration_exits_2_naming_the_field() {
    let dir = TempDir::new("bad-config");
    let file = dir.file("agent.toml");
    let bind = format!("127.0.0.1:{}", free_port());
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "probe_interval_ms = 1000\n[core]\nprobe_timeout = \"2s\"\n",
            &[],
            "probe_timeout",
        ),
        ("[core]\nindirect_probes = 99\n", &[], "indirect_probes"),
        (
            "[core]\nprobe_intervall = \"1s\"\n",
            &[],
            "core.probe_intervall",
        ),
        (
            "[core]\ngossip_interval = 200\n",
            &[],
            "core.gossip_interval",
        ),
        ("bindd = \"127.0.0.1:1\"\n", &[], "bindd"),
        ("", &["--core", "max_message_size=100"], "max_message_size"),
        ("", &["--api", "0.0.0.0:7947"], "loopback"),
        ("", &["--leave-linger-ms", "9000"], "0..=2500"),
        (
            "[aggregate]\nalgorithm = \"push-sum\"\nepoch_rounds = 0\n",
            &[],
            "aggregate.epoch_rounds",
        ),
    ];
    for (text, flags, needle) in cases {
        std::fs::write(&file, text).unwrap();
        let mut command = Command::new(BIN);
        command.args(["agent", "--config", file.to_str().unwrap(), "--bind", &bind]);
        if !flags.contains(&"--api") {
            command.args(["--api", "none"]);
        }
        let out = command
            .args(flags.iter())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?} {flags:?}: {err}");
        assert!(err.contains(needle), "{text:?} {flags:?}: {err}");
    }
}

#[test]
fn every_subcommand_help_has_an_example() {
    for path in [
        &["agent"][..],
        &["members"],
        &["join"],
        &["leave"],
        &["broadcast"],
        &["events"],
        &["stats"],
        &["aggregate"],
        &["keygen"],
        &["bench-net"],
        &["sim"],
        &["sim", "membership"],
        &["sim", "dissemination"],
        &["sim", "aggregation"],
    ] {
        let out = Command::new(BIN).args(path).arg("--help").output().unwrap();
        assert!(out.status.success(), "{path:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("Example"),
            "{path:?} --help has no example:\n{help}"
        );
        let example = help.split("Example").nth(1).unwrap();
        assert!(
            example.contains(&format!("gossip-node {}", path.join(" "))),
            "{path:?}: the example runs another command:\n{help}"
        );
    }
}
