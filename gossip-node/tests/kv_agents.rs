//! The replicated key-value store on three real agents with data dirs on
//! loopback: `kv put` on one is read with `kv get` on the others; an agent
//! killed with SIGKILL and restarted on its data dir still has its keys and
//! catches up on the ones written while it was down; a deletion is
//! collected early on all three; `/metrics` shows the store.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent_api::{http_get, parse_prometheus};
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

    // All three alive: a deletion is acknowledged by the other two and
    // collected early everywhere (a guard stays until the grace of 24 h).
    let (code, _, err) = client(&["kv", "put", "probe", "1", "--api", &apis[0]]);
    assert_eq!(code, 0, "{err}");
    for api in &apis {
        until_value(api, "probe", "1", Duration::from_secs(10));
    }
    let (code, _, err) = client(&["kv", "delete", "probe", "--api", &apis[0]]);
    assert_eq!(code, 0, "{err}");
    for api in &apis {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, body) = http_get(api, "/v1/kv-stats");
            let stats: Value = serde_json::from_str(&body).unwrap();
            if stats["tombstones"] == 0 && stats["guards"] == 1 {
                assert_eq!(stats["live"], 1);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the deletion was never collected early on {api}: {stats}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

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

    // The store's metrics say so, once every agent holds the 20 keys.
    for (i, api) in apis.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, body) = http_get(api, "/v1/kv-stats");
            let stats: Value = serde_json::from_str(&body).unwrap();
            if stats["live"] == 20 && stats["catching_up"] == false {
                break;
            }
            assert!(Instant::now() < deadline, "{api} never settled: {stats}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let (status, body) = http_get(api, "/metrics");
        assert!(status.contains("200"), "{status}");
        let samples = parse_prometheus(&body);
        let value = |series: &str| {
            samples
                .iter()
                .find(|(s, _)| s == series)
                .map(|(_, v)| *v)
                .unwrap_or_else(|| panic!("no {series} on {api}"))
        };
        assert_eq!(value("gossip_kv_keys"), 20.0);
        // `color`'s tombstone, unless collected early too.
        assert!(value("gossip_kv_tombstones") <= 1.0);
        // `probe`'s guard (persisted across the restart), maybe `color`'s.
        assert!(value("gossip_kv_guards") >= 1.0);
        assert_eq!(value("gossip_kv_catching_up"), 0.0);
        // 20 keys `late/N` of 6 or 7 bytes with a value of 1.
        assert!(value("gossip_kv_stored_bytes") >= 20.0 * 7.0);
        assert!(value("gossip_kv_bytes_total{direction=\"out\"}") > 0.0);
        assert!(value("gossip_kv_bytes_total{direction=\"in\"}") > 0.0);
        // Present (the first exchange may not have started yet).
        assert!(value("gossip_kv_sync_exchanges_total{outcome=\"started\"}") >= 0.0);
        let writes = value("gossip_kv_writes_total{origin=\"local\"}")
            + value("gossip_kv_writes_total{origin=\"remote\"}");
        assert!(writes >= 1.0, "no writes on {api}");
        if i == 0 {
            // `probe` was deleted here, acknowledged by the other two.
            assert!(value("gossip_kv_tombstone_acks_total{what=\"received\"}") >= 2.0);
        }
        if i < 2 {
            // Counters restart with the process: the third agent's began
            // after `probe` was collected.
            assert!(value("gossip_kv_tombstones_collected_total{how=\"early\"}") >= 1.0);
        }
    }
}
