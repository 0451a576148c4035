//! Sealed frames as an operator uses them: `gossip-node keygen --secret`,
//! `gossip-node agent --keyring` over UDP, a key reloaded on SIGHUP, and
//! clear refusals of bad key files.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{AgentProcess, TempDir, BIN, SMALL_BENCH_NET};

fn keygen(path: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["keygen", "--secret", path.to_str().unwrap()])
        .output()
        .unwrap()
}

/// A UDP agent sealing with the keyring file at `keyring`.
struct Agent;

impl Agent {
    fn start(keyring: &Path, join: Option<&str>) -> AgentProcess {
        let mut args: Vec<String> = [
            "--keyring",
            keyring.to_str().unwrap(),
            "--probe-interval-ms",
            "200",
            "--label",
            "sealed-cli",
        ]
        .map(String::from)
        .to_vec();
        if let Some(seed) = join {
            args.extend(["--join".into(), seed.into()]);
        }
        AgentProcess::spawn(&args, false)
    }
}

fn up(event: &serde_json::Value, member: &str) -> bool {
    event["event"] == "member_up" && event["member"] == member
}

fn key_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .find(|l| !l.starts_with('#'))
        .unwrap()
        .to_string()
}

#[test]
fn keygen_secret_writes_an_owner_only_key_and_never_overwrites() {
    let dir = TempDir::new("keygen");
    let path = dir.file("cluster.key");
    let out = keygen(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let line = key_line(&path);
    assert_eq!(line.len(), 64);
    assert!(line.chars().all(|c| c.is_ascii_hexdigit()));
    let before = std::fs::read(&path).unwrap();

    let again = keygen(&path);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the key was replaced"
    );

    // A second key differs.
    let other = dir.file("other.key");
    assert!(keygen(&other).status.success());
    assert_ne!(key_line(&other), line);
}

#[test]
fn agent_refuses_a_missing_or_bad_keyring_clearly() {
    let dir = TempDir::new("bad");
    let good = dir.file("good.key");
    assert!(keygen(&good).status.success());
    let bad = dir.file("bad.key");
    std::fs::write(&bad, format!("{}\nnot-a-key\n", key_line(&good))).unwrap();
    let empty = dir.file("empty.key");
    std::fs::write(&empty, "# no keys yet\n\n").unwrap();
    let missing = dir.file("missing.key");
    let path = |p: &PathBuf| p.to_str().unwrap().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--keyring".into(), path(&missing)], "reading keyring"),
        (vec!["--keyring".into(), path(&bad)], "keyring line 2"),
        (vec!["--keyring".into(), path(&empty)], "holds no key"),
        (
            vec![
                "--keyring".into(),
                path(&good),
                "--transport".into(),
                "quic".into(),
            ],
            "QUIC already encrypts",
        ),
    ];
    for (extra, needle) in cases {
        let out = Command::new(BIN)
            .args(["agent", "--bind", "127.0.0.1:0"])
            .args(&extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        // Bad input found after parsing exits 1, like every other check
        // the agent makes (clap's own usage errors exit 2).
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{extra:?}: {err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("ready"));
    }
}

#[test]
fn sealed_agents_keep_a_keyless_agent_out_until_sighup_gives_it_the_key() {
    let dir = TempDir::new("agents");
    let (cluster, stranger) = (dir.file("cluster.key"), dir.file("stranger.key"));
    assert!(keygen(&cluster).status.success());
    assert!(keygen(&stranger).status.success());

    let a = Agent::start(&cluster, None);
    assert!(a
        .saw(Duration::from_secs(10), |e| e["event"] == "ready")
        .is_some());
    let b = Agent::start(&cluster, Some(&a.addr));
    assert!(b.saw(Duration::from_secs(15), |e| up(e, &a.addr)).is_some());
    assert!(a.saw(Duration::from_secs(15), |e| up(e, &b.addr)).is_some());

    let c = Agent::start(&stranger, Some(&a.addr));
    assert!(c
        .saw(Duration::from_secs(10), |e| e["event"] == "ready")
        .is_some());
    assert!(c
        .saw(Duration::from_secs(3), |e| e["event"] == "member_up")
        .is_none());
    assert!(a
        .saw(Duration::from_millis(200), |e| up(e, &c.addr))
        .is_none());

    // A bad file on reload keeps the current keys: the cluster stays whole.
    let good_ring = std::fs::read_to_string(&cluster).unwrap();
    std::fs::write(&cluster, "garbage\n").unwrap();
    a.hangup();
    let error = a
        .saw(Duration::from_secs(5), |e| e["event"] == "error")
        .expect("an error event for the bad reload");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("keeping the current keys"),
        "{error}"
    );
    std::fs::write(&cluster, &good_ring).unwrap();

    // Step 1 and 2 at once for the stranger: the cluster key first
    // (primary), its own key after it.
    let ring = format!(
        "{}\n{}\n",
        key_line(&cluster),
        std::fs::read_to_string(&stranger).unwrap()
    );
    std::fs::write(&stranger, ring).unwrap();
    c.hangup();
    let reloaded = c
        .saw(Duration::from_secs(5), |e| e["event"] == "keyring_reloaded")
        .expect("a reload event");
    assert_eq!(reloaded["added"].as_array().unwrap().len(), 1, "{reloaded}");
    assert_eq!(reloaded["removed"].as_array().unwrap().len(), 0);
    assert_eq!(reloaded["keys"], 2);
    assert!(c.saw(Duration::from_secs(15), |e| up(e, &a.addr)).is_some());
    assert!(a.saw(Duration::from_secs(15), |e| up(e, &c.addr)).is_some());
}

#[test]
fn bench_net_sealed_runs_a_sealed_cluster_and_refuses_it_over_quic() {
    let out = Command::new(BIN)
        .args(SMALL_BENCH_NET)
        .args(["--sealed", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["sealed"], true);
    assert_eq!(report["broadcasts_incomplete"], 0, "{report}");
    assert!(report["join_convergence_s"].is_number(), "{report}");

    let quic = Command::new(BIN)
        .args(["bench-net", "--transport", "quic", "--sealed"])
        .output()
        .unwrap();
    assert!(!quic.status.success());
    assert!(String::from_utf8_lossy(&quic.stderr).contains("QUIC already encrypts"));
}
