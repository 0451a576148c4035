//! `gossip-node agent --membership partial`: four processes on loopback
//! join through one contact, a broadcast through the API (and one through
//! stdin) reaches every other agent, the API shows the views and refuses
//! full-view routes; partial views configured with full-view options, or a
//! membership that does not exist, exit 2 naming the key.

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, AgentProcess, TempDir, BIN};
use serde_json::Value;

/// Timers faster than the defaults, so the test takes a few seconds.
const QUICK: [&str; 8] = [
    "--partial",
    "ping_interval=200ms",
    "--partial",
    "dead_after=800ms",
    "--partial",
    "join_retry=200ms",
    "--partial",
    "shuffle_interval=1s",
];

fn start(join: Option<&str>) -> (AgentProcess, String) {
    start_with(join, &[])
}

fn start_with(join: Option<&str>, extra: &[&str]) -> (AgentProcess, String) {
    let mut args: Vec<String> = vec![
        "--bind".into(),
        format!("127.0.0.1:{}", free_port()),
        "--api".into(),
        "127.0.0.1:0".into(),
        "--membership".into(),
        "partial".into(),
    ];
    args.extend(QUICK.iter().map(|s| s.to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    if let Some(seed) = join {
        args.extend(["--join".into(), seed.into()]);
    }
    let mut process = AgentProcess::spawn_raw(&args, true);
    let ready = process
        .saw(Duration::from_secs(10), |e| e["event"] == "ready")
        .expect("the agent says it is ready");
    assert_eq!(ready["membership"], "partial");
    process.addr = ready["addr"].as_str().unwrap().to_string();
    let api = ready["api"].as_str().unwrap().to_string();
    (process, api)
}

/// Runs a client subcommand; its exit code and stdout.
fn client(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn get(api: &str, path: &str) -> (u16, Value) {
    let (status, body) = get_text(api, path);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn get_text(api: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(api).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, body.to_string())
}

#[test]
fn partial_agents_join_and_broadcast_through_the_api_and_stdin() {
    let (first, first_api) = start(None);
    let mut agents = vec![(first, first_api)];
    let contact = agents[0].0.addr.clone();
    for _ in 0..3 {
        agents.push(start(Some(&contact)));
    }
    // Everyone has a neighbour.
    for (agent, _) in &agents {
        agent
            .saw(Duration::from_secs(10), |e| e["event"] == "neighbour_up")
            .expect("a neighbour comes up");
    }
    let api = agents[1].1.clone();
    let api = api.as_str();
    let (code, out) = client(&["broadcast", "--api", api, "over partial views"]);
    assert_eq!(code, 0, "{out}");
    for (i, (agent, _)) in agents.iter().enumerate() {
        if i == 1 {
            continue;
        }
        let delivered = agent
            .saw(Duration::from_secs(5), |e| {
                e["event"] == "delivered" && e["payload"] == "over partial views"
            })
            .unwrap_or_else(|| panic!("agent {i} delivers the API broadcast"));
        assert!(delivered["hops"].as_u64().unwrap() >= 1);
    }
    agents[2].0.say("broadcast from stdin");
    for (i, (agent, _)) in agents.iter().enumerate() {
        if i != 2 {
            agent
                .saw(Duration::from_secs(5), |e| {
                    e["event"] == "delivered" && e["payload"] == "from stdin"
                })
                .unwrap_or_else(|| panic!("agent {i} delivers the stdin broadcast"));
        }
    }

    // The views, members and stats as partial views show them.
    let (status, view) = get(api, "/v1/view");
    assert_eq!(status, 200);
    assert!(!view["active"].as_array().unwrap().is_empty(), "{view}");
    let (_, members) = get(api, "/v1/members");
    assert_eq!(members[0]["state"], "self");
    assert!(members
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["state"] == "active"));
    let (_, stats) = get(api, "/v1/stats");
    assert_eq!(stats["membership"], "partial");
    assert!(stats["node"]["frames_sent"].as_u64().unwrap() > 0);
    let (status, _) = get(api, "/metrics");
    assert_eq!(status, 200);
    // The status page of partial views, which reads the view.
    let (status, page) = get_text(api, "/");
    assert_eq!(status, 200);
    assert!(page.contains("Active view") && page.contains("\"/v1/view\""));
    let (status, error) = get(api, "/v1/kv/some-key");
    assert_eq!(status, 404);
    assert!(
        error["error"].as_str().unwrap().contains("membership"),
        "{error}"
    );

    // A graceful leave tells the neighbours at once.
    agents[3].0.say("leave");
    assert!(agents[3].0.exited_within(Duration::from_secs(3)).is_some());
}

/// Overlays with different cluster labels do not join each other: the
/// contact refuses the stranger's frames as `wrong_cluster`, while a node
/// labelled alike (through `[partial] cluster_label` rather than
/// `--label`) joins.
#[test]
fn partial_agents_with_different_labels_do_not_join() {
    let (contact, contact_api) = start_with(None, &["--label", "red"]);
    let (blue, blue_api) = start_with(Some(&contact.addr), &["--label", "blue"]);
    let (red, _) = start_with(Some(&contact.addr), &["--partial", "cluster_label=red"]);
    red.saw(Duration::from_secs(10), |e| e["event"] == "neighbour_up")
        .expect("a node with the same label joins");
    // By now the blue node has asked (it retries every 200 ms).
    let mut wrong = 0;
    for _ in 0..50 {
        let (_, stats) = get(&contact_api, "/v1/stats");
        wrong = stats["node"]["wrong_cluster"].as_u64().unwrap();
        if wrong > 0 {
            assert_eq!(stats["refused"]["wrong_cluster"].as_u64(), Some(wrong));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(wrong > 0, "the contact refused the blue node's frames");
    let (_, view) = get(&blue_api, "/v1/view");
    assert_eq!(view["active"], Value::Array(vec![]), "{view}");
    let (_, view) = get(&contact_api, "/v1/view");
    let active: Vec<&str> = view["active"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(active, vec![red.addr.as_str()], "{view}");
    assert!(blue
        .saw(Duration::from_millis(200), |e| e["event"] == "neighbour_up")
        .is_none());
}

#[test]
fn partial_views_with_full_view_options_or_an_unknown_membership_exit_2() {
    let dir = TempDir::new("partial-config");
    let run = |text: &str, flags: &[&str]| -> String {
        let file = dir.file("agent.toml");
        std::fs::write(&file, text).unwrap();
        let bind = format!("127.0.0.1:{}", free_port());
        let out = Command::new(BIN)
            .args(["agent", "--config", file.to_str().unwrap(), "--bind", &bind])
            .args(["--api", "none"])
            .args(flags)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{text:?} {flags:?}: {err}");
        err
    };
    let err = run("membership = \"partail\"\n", &[]);
    assert!(
        err.contains("membership") && err.contains("partail"),
        "{err}"
    );
    let err = run(
        "membership = \"partial\"\n[leader]\nquorum_mode = true\n",
        &[],
    );
    assert!(err.contains("[leader]") && err.contains("full"), "{err}");
    let err = run("", &["--membership", "partial", "--strategy", "flood"]);
    assert!(err.contains("strategy"), "{err}");
    let err = run(
        "membership = \"partial\"\n[partial]\ndead_after = \"100ms\"\n",
        &[],
    );
    assert!(err.contains("dead_after"), "{err}");
    let err = run("[partial]\nactive_size = 3\n", &[]);
    assert!(err.contains("membership"), "{err}");
}

/// `bench-net --membership partial` on a handful of agents: every
/// broadcast reaches every node, before and after a kill.
#[test]
fn bench_net_measures_partial_views() {
    let out = Command::new(BIN)
        .args([
            "bench-net",
            "--membership",
            "partial",
            "--nodes",
            "6",
            "--broadcasts",
            "3",
            "--kills",
            "1",
            "--idle-secs",
            "0.2",
            "--settle-secs",
            "0",
            "--timeout-secs",
            "20",
            "--format",
            "json",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["reach_min"], 1.0, "{report}");
    assert_eq!(report["survivor_reach_min"], 1.0, "{report}");
    assert!(report["repaired_s"].is_number(), "{report}");
    let refused = Command::new(BIN)
        .args(["bench-net", "--membership", "partial", "--sealed"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
}
