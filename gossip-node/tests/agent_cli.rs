//! `gossip-node keygen` and `gossip-node agent` as an operator runs them:
//! QUIC nodes with certificates from one root join, broadcast and leave;
//! a node whose certificate comes from another root is kept out; the
//! JSON keys `bench-net` promises are present.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{AgentProcess, TempDir, BIN, SMALL_BENCH_NET};

/// Runs the binary with `args` and checks that it succeeds.
fn run_ok(args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn keygen(dir: &Path, name: &str) {
    let dir = dir.to_str().unwrap();
    run_ok(&["keygen", "--dir", dir, "--ip", "127.0.0.1", "--name", name]);
}

/// A QUIC agent with certificates from `dir`.
struct Agent(AgentProcess);

impl core::ops::Deref for Agent {
    type Target = AgentProcess;
    fn deref(&self) -> &AgentProcess {
        &self.0
    }
}

impl core::ops::DerefMut for Agent {
    fn deref_mut(&mut self) -> &mut AgentProcess {
        &mut self.0
    }
}

impl Agent {
    fn start(dir: &Path, name: &str, join: Option<&str>) -> Self {
        Self::start_with_root(dir, name, &dir.join("ca.pem"), join)
    }

    /// Like `start`, trusting the root at `root` whatever issued the node's
    /// own certificate.
    fn start_with_root(dir: &Path, name: &str, root: &Path, join: Option<&str>) -> Self {
        let file = |f: &str| dir.join(f).to_str().unwrap().to_string();
        let mut args = vec![
            "--transport".to_string(),
            "quic".into(),
            "--cert".into(),
            file(&format!("{name}.pem")),
            "--key".into(),
            file(&format!("{name}.key")),
            "--ca".into(),
            root.to_str().unwrap().to_string(),
            "--probe-interval-ms".into(),
            "200".into(),
        ];
        if let Some(seed) = join {
            args.extend(["--join".into(), seed.into()]);
        }
        Self(AgentProcess::spawn(&args, true))
    }

    /// Waits for an event line matching `pick`; false after `limit`.
    fn saw(&self, limit: Duration, pick: impl Fn(&serde_json::Value) -> bool) -> bool {
        self.0.saw(limit, pick).is_some()
    }
}

fn is(event: &serde_json::Value, kind: &str, member: &str) -> bool {
    event["event"] == kind && event["member"] == member
}

#[test]
fn quic_agents_under_one_root_join_broadcast_and_leave_and_a_stranger_stays_out() {
    let keys = TempDir::new("keys");
    let other = TempDir::new("other-root");
    keygen(&keys.0, "a");
    keygen(&keys.0, "b");
    keygen(&other.0, "c");
    assert!(keys.0.join("ca.key").exists() && keys.0.join("b.pem").exists());

    let mut a = Agent::start(&keys.0, "a", None);
    assert!(a.saw(Duration::from_secs(10), |e| e["event"] == "ready"));
    let mut b = Agent::start(&keys.0, "b", Some(&a.addr.clone()));
    let a_addr = a.addr.clone();
    let b_addr = b.addr.clone();
    assert!(b.saw(Duration::from_secs(15), |e| is(e, "member_up", &a_addr)));
    assert!(a.saw(Duration::from_secs(15), |e| is(e, "member_up", &b_addr)));

    a.say("broadcast over-quic");
    assert!(b.saw(Duration::from_secs(15), |e| e["event"] == "delivered"
        && e["payload"] == "over-quic"));

    // A node with a certificate from another root cannot get in: neither
    // when it also trusts only its own root (it refuses the member), nor
    // when it trusts the cluster's (the member refuses it).
    let stranger = Agent::start(&other.0, "c", Some(&a_addr));
    assert!(stranger.saw(Duration::from_secs(10), |e| e["event"] == "ready"));
    assert!(!stranger.saw(Duration::from_secs(3), |e| e["event"] == "member_up"));
    let c_addr = stranger.addr.clone();
    let impostor = Agent::start_with_root(&other.0, "c", &keys.0.join("ca.pem"), Some(&a_addr));
    assert!(impostor.saw(Duration::from_secs(10), |e| e["event"] == "ready"));
    assert!(!impostor.saw(Duration::from_secs(3), |e| e["event"] == "member_up"));
    let d_addr = impostor.addr.clone();
    assert!(
        !a.saw(Duration::from_millis(500), |e| e["event"] == "member_up"
            && (e["member"] == c_addr.as_str()
                || e["member"] == d_addr.as_str()))
    );

    b.say("leave");
    assert!(a.saw(Duration::from_secs(15), |e| is(e, "member_left", &b_addr)));
    assert!(b.saw(Duration::from_secs(10), |e| e["event"] == "stopped"));
}

#[test]
fn agent_and_keygen_refuse_bad_input_clearly() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["agent", "--bind", "127.0.0.1:0", "--transport", "quic"],
            "--cert, --key and --ca",
        ),
        (&["agent", "--bind", "0.0.0.0:7946"], "not 0.0.0.0"),
        (
            &["agent", "--bind", "127.0.0.1:0", "--probe-interval-ms", "0"],
            "must be positive",
        ),
        (
            &[
                "keygen",
                "--dir",
                "/tmp/gossip-never",
                "--ip",
                "127.0.0.1",
                "--name",
                "ca",
            ],
            "--name",
        ),
        (
            &[
                "keygen",
                "--dir",
                "/tmp/gossip-never",
                "--ip",
                "127.0.0.1",
                "--valid-days",
                "0",
            ],
            "--valid-days",
        ),
        (
            &[
                "agent",
                "--bind",
                "127.0.0.1:0",
                "--quic-connections-per-ip",
                "0",
            ],
            "--quic-connections-per-ip",
        ),
        (&["bench-net", "--nodes", "1"], "at least 2"),
    ];
    for &(args, needle) in cases {
        let out = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn bench_net_json_has_every_promised_key() {
    // The same run draws its latency CDFs (--plot).
    let dir = TempDir::new("bench-plot");
    let svg_path = dir.0.join("latency.svg");
    let svg_arg = svg_path.to_str().unwrap();
    let args = [SMALL_BENCH_NET, &["--format", "json", "--plot", svg_arg]].concat();
    let out = run_ok(&args);
    let svg = std::fs::read_to_string(&svg_path).expect("--plot wrote the SVG");
    roxmltree::Document::parse(&svg).expect("well-formed SVG");
    // 4 nodes, 2 broadcasts: 3 receivers each.
    assert!(svg.contains("each delivery (6 deliveries)"), "{svg}");
    assert!(svg.contains("to every node (2 broadcasts)"), "{svg}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "nodes",
        "transport",
        "join_convergence_s",
        "broadcast_to_all_ms",
        "deliveries_per_node",
        "idle_bytes_per_node_per_s",
        "idle_packets_per_node_per_s",
        "cpu_percent",
        "detection_s",
    ] {
        assert!(report.get(key).is_some(), "missing {key}");
    }
    assert_eq!(report["nodes"], 4);
    assert_eq!(report["transport"], "udp");
    assert_eq!(report["deliveries_per_node"], 1.0);
    for q in ["p50", "p99", "max"] {
        assert!(report["broadcast_to_all_ms"][q].is_number(), "{q}");
    }
    assert!(
        report["detection_s"].is_number(),
        "the killed node was detected"
    );
}

/// Real agents on loopback sockets pass payloads of 200 kB (about 150
/// frames each) over Plumtree: every node assembles and verifies each.
#[test]
fn bench_net_sends_payloads_larger_than_a_frame_to_every_node() {
    let args = [
        SMALL_BENCH_NET,
        &[
            "--strategy",
            "plumtree",
            "--payload-bytes",
            "200000",
            "--payloads",
            "2",
            "--format",
            "json",
        ],
    ]
    .concat();
    let out = run_ok(&args);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let payloads = &report["payloads"];
    assert_eq!(payloads["payload_bytes"], 200000, "{report}");
    assert_eq!(payloads["delivered_fraction"], 1.0, "{report}");
    assert_eq!(payloads["hash_mismatches"], 0);
    assert!(payloads["delivery_ms"]["max"].is_number());
    assert!(report["announce_bytes_per_node_per_broadcast"].is_number());
}

#[test]
fn keygen_issues_a_certificate_for_the_days_asked() {
    let keys = TempDir::new("valid-days");
    let dir = keys.0.to_str().unwrap();
    let out = run_ok(&[
        "keygen",
        "--dir",
        dir,
        "--ip",
        "127.0.0.1",
        "--valid-days",
        "7",
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("valid for 7 days"), "{said}");
    // The default is a year.
    let out = run_ok(&["keygen", "--dir", dir, "--ip", "127.0.0.1", "--name", "b"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("valid for 365 days"), "{said}");
}
