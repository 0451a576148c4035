//! Signed rumors as an operator uses them: `gossip-node keygen --signing`
//! and `gossip-node agent --signing-key --trusted-keys` over UDP. A member
//! whose key nobody trusts stays a member, but its broadcasts are refused.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{free_port, AgentProcess, TempDir, BIN};

/// Makes a signing key at `path`; returns its public key from keygen's line.
fn keygen(path: &Path) -> String {
    let out = Command::new(BIN)
        .args(["keygen", "--signing", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let public = line
        .split('"')
        .nth(1)
        .and_then(|quoted| quoted.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("keygen names the public key: {line}"));
    assert_eq!(public.len(), 64, "{line}");
    public.to_string()
}

fn start(addr: &str, key: &Path, trusted: &Path, join: Option<&str>) -> AgentProcess {
    let mut args: Vec<String> = vec![
        "--bind".into(),
        addr.into(),
        "--signing-key".into(),
        key.to_str().unwrap().into(),
        "--trusted-keys".into(),
        trusted.to_str().unwrap().into(),
        "--probe-interval-ms".into(),
        "200".into(),
        "--label".into(),
        "signed-cli".into(),
    ];
    if let Some(seed) = join {
        args.extend(["--join".into(), seed.into()]);
    }
    let mut agent = AgentProcess::spawn_raw(&args, false);
    agent.addr = addr.to_string();
    agent
}

fn delivered(event: &serde_json::Value, payload: &str) -> bool {
    event["event"] == "delivered" && event["payload"] == payload
}

#[test]
fn signing_agents_take_only_rumors_their_trusted_members_signed() {
    let dir = TempDir::new("signing");
    let addrs: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let keys: Vec<_> = (0..3).map(|i| dir.file(&format!("{i}.key"))).collect();
    let public: Vec<String> = keys.iter().map(|k| keygen(k)).collect();
    // Agents 0 and 1 trust each other; agent 2 trusts everyone, but nobody
    // trusts agent 2.
    let pair = dir.file("pair.keys");
    std::fs::write(
        &pair,
        format!(
            "# members\n{} {}\n{} {}\n",
            addrs[0], public[0], addrs[1], public[1]
        ),
    )
    .unwrap();
    let all = dir.file("all.keys");
    let lines: String = (0..3)
        .map(|i| format!("{} {}\n", addrs[i], public[i]))
        .collect();
    std::fs::write(&all, lines).unwrap();

    let a = start(&addrs[0], &keys[0], &pair, None);
    assert!(a
        .saw(Duration::from_secs(10), |e| e["event"] == "ready")
        .is_some());
    let mut b = start(&addrs[1], &keys[1], &pair, Some(&addrs[0]));
    let mut c = start(&addrs[2], &keys[2], &all, Some(&addrs[0]));
    for agent in [&b, &c] {
        assert!(agent
            .saw(Duration::from_secs(15), |e| e["event"] == "member_up"
                && e["member"] == addrs[0])
            .is_some());
    }
    // Let every pair admit each other before broadcasting.
    std::thread::sleep(Duration::from_secs(2));

    b.say("broadcast from-b");
    assert!(a
        .saw(Duration::from_secs(10), |e| delivered(e, "from-b"))
        .is_some());
    assert!(c
        .saw(Duration::from_secs(10), |e| delivered(e, "from-b"))
        .is_some());

    c.say("broadcast from-c");
    assert!(a
        .saw(Duration::from_secs(4), |e| delivered(e, "from-c"))
        .is_none());
    assert!(b
        .saw(Duration::from_millis(500), |e| delivered(e, "from-c"))
        .is_none());
}

#[test]
fn signing_key_and_trusted_keys_go_together_and_bad_files_are_refused() {
    let dir = TempDir::new("signing-bad");
    let key = dir.file("node.key");
    keygen(&key);
    let bad = dir.file("bad.keys");
    std::fs::write(&bad, "127.0.0.1:7946 not-hex\n").unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_string();
    // Without its partner a flag is a usage error (exit 2).
    let alone = Command::new(BIN)
        .args([
            "agent",
            "--bind",
            "127.0.0.1:0",
            "--signing-key",
            &path(&key),
        ])
        .output()
        .unwrap();
    assert_eq!(alone.status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["agent", "--bind", "127.0.0.1:0", "--api", "none"])
        .args(["--signing-key", &path(&key), "--trusted-keys", &path(&bad)])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1"), "{err}");
}
