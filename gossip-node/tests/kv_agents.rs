//! The replicated key-value store on three real agents with data dirs on
//! loopback: `kv put` on one is read with `kv get` on the others; an agent
//! killed with SIGKILL and restarted on its data dir still has its keys and
//! catches up on the ones written while it was down.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, free_tcp_port, AgentProcess, TempDir, BIN};
use serde_json::Value;

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

fn start(
    dir: &std::path::Path,
    bind: Option<&str>,
    join: Option<&str>,
    api: &str,
) -> (AgentProcess, String) {
    let (process, _) = AgentProcess::start_ready(dir, api, bind, join, &[]);
    let addr = process.addr.clone();
    (process, addr)
}

/// `kv get KEY --format json` on `api` until it shows `value`.
fn until_value(api: &str, key: &str, value: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (code, out, err) = client(&["kv", "get", key, "--api", api, "--format", "json"]);
        if code == 0 {
            let v: Value = serde_json::from_str(&out).unwrap();
            if v["value"] == value {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{key} never became {value} on {api}: {out} {err}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_agents_replicate_and_a_killed_agent_catches_up() {
    let dirs: Vec<TempDir> = (0..3)
        .map(|i| TempDir::new(&format!("kv-agent-{i}")))
        .collect();
    let apis: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_tcp_port()))
        .collect();
    let binds: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let (a, seed) = start(&dirs[0].0, Some(&binds[0]), None, &apis[0]);
    let _keep = a;
    let (b, _) = start(&dirs[1].0, Some(&binds[1]), Some(&seed), &apis[1]);
    let (c, c_addr) = start(&dirs[2].0, Some(&binds[2]), Some(&seed), &apis[2]);
    let _b = b;

    let (code, out, err) = client(&["kv", "put", "color", "blue", "--api", &apis[0]]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("color written"), "{out}");
    for api in &apis {
        let got = until_value(api, "color", "blue", Duration::from_secs(10));
        assert!(got["version"].as_str().is_some());
    }
    let (code, out, _) = client(&["kv", "get", "color", "--api", &apis[2]]);
    assert_eq!(code, 0);
    assert!(out.starts_with("blue\tversion "), "{out}");

    // SIGKILL the third agent; write while it is down.
    let mut c = c;
    c.signal("KILL");
    assert!(c.exited_within(Duration::from_secs(5)).is_some());
    drop(c);
    for i in 0..20 {
        let (code, _, err) = client(&["kv", "put", &format!("late/{i}"), "x", "--api", &apis[1]]);
        assert_eq!(code, 0, "{err}");
    }
    let (code, _, _) = client(&["kv", "delete", "color", "--api", &apis[1]]);
    assert_eq!(code, 0);

    // Back on the same data dir (same address, newer generation).
    let (_c, _) = start(&dirs[2].0, None, Some(&seed), &apis[2]);
    let _ = c_addr;
    for i in 0..20 {
        until_value(&apis[2], &format!("late/{i}"), "x", Duration::from_secs(10));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _, _) = client(&["kv", "get", "color", "--api", &apis[2]]);
        if code != 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deletion never reached the restarted agent"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, out, _) = client(&["kv", "list", "late/", "--api", &apis[2], "--format", "json"]);
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 20);
}
