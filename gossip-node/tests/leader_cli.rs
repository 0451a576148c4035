//! Leader election on real processes: three `gossip-node agent`s on
//! loopback agree on the leader (`gossip-node leader --format json`), and
//! after the leader is killed with SIGKILL the other two agree on a new
//! one with a higher term. Also `GET /v1/leader`, the `leader` event and
//! the Prometheus metrics.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, free_tcp_port, AgentProcess, TempDir, BIN};
use serde_json::Value;

fn leader(api: &str) -> Value {
    let out = Command::new(BIN)
        .args(["leader", "--api", api, "--format", "json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Polls `leader` on every API until all name the same leader `want`
/// (any, if `None`) with the same term; returns (leader, term).
fn until_agree(apis: &[&str], want: Option<&str>, limit: Duration) -> (String, u64) {
    let deadline = Instant::now() + limit;
    loop {
        let seen: Vec<Value> = apis.iter().map(|api| leader(api)).collect();
        let first = &seen[0];
        let agree = first["leader"].is_string()
            && first["term"].as_u64() > Some(0)
            && want.is_none_or(|w| first["leader"] == w)
            && seen
                .iter()
                .all(|s| s["leader"] == first["leader"] && s["term"] == first["term"]);
        if agree {
            return (
                first["leader"].as_str().unwrap().to_string(),
                first["term"].as_u64().unwrap(),
            );
        }
        assert!(Instant::now() < deadline, "no agreement: {seen:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn three_agents_agree_on_a_leader_and_replace_it_after_sigkill() {
    let dirs: Vec<TempDir> = ["leader-a", "leader-b", "leader-c"]
        .iter()
        .map(|n| TempDir::new(n))
        .collect();
    let mut nodes: Vec<(AgentProcess, String, String)> = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let api = format!("127.0.0.1:{}", free_tcp_port());
        let mut args: Vec<String> = vec![
            "--api".into(),
            api.clone(),
            "--data-dir".into(),
            dir.0.to_str().unwrap().into(),
            "--bind".into(),
            format!("127.0.0.1:{}", free_port()),
            "--probe-interval-ms".into(),
            "200".into(),
        ];
        if let Some((_, _, seed)) = nodes.first() {
            args.extend(["--join".into(), seed.clone()]);
        }
        let mut process = AgentProcess::spawn_raw(&args, i == 0);
        let ready = process
            .saw(Duration::from_secs(10), |e| e["event"] == "ready")
            .expect("the agent says it is ready");
        let addr = ready["addr"].as_str().unwrap().to_string();
        process.addr = addr.clone();
        nodes.push((process, api, addr));
    }
    let apis: Vec<&str> = nodes.iter().map(|n| n.1.as_str()).collect();
    // The lowest id leads.
    let lowest = nodes.iter().map(|n| n.2.clone()).min().unwrap();
    let (first, term) = until_agree(&apis, Some(&lowest), Duration::from_secs(15));
    let table = Command::new(BIN)
        .args(["leader", "--api", apis[0]])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains(&first));

    // The leader's own agent said so on its event stream, and exports it.
    let k = nodes.iter().position(|n| n.2 == first).unwrap();
    assert!(nodes[k]
        .0
        .saw(Duration::from_secs(5), |e| e["event"] == "leader"
            && e["leader"] == first.as_str())
        .is_some());

    // Kill the leader outright: the other two agree on the next lowest,
    // with a higher term.
    nodes[k].0.signal("KILL");
    let survivors: Vec<&str> = (0..3).filter(|&i| i != k).map(|i| apis[i]).collect();
    let next = nodes
        .iter()
        .filter(|n| n.2 != first)
        .map(|n| n.2.clone())
        .min()
        .unwrap();
    let (second, new_term) = until_agree(&survivors, Some(&next), Duration::from_secs(20));
    assert_ne!(second, first);
    assert!(new_term > term, "term {term} then {new_term}");
}
