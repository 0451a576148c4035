//! Several hosts on one machine: each node runs as its own `gossip-node
//! agent` process inside a network namespace this test creates, wired by
//! veth pairs to a bridge in a "switch" namespace. Checks join, broadcast,
//! crash detection, and a partition (a link taken down) that heals.
//!
//! Needs root (CAP_NET_ADMIN) and iproute2; elsewhere it skips with a
//! message. Everything it creates is removed when it ends, pass or fail.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const HOSTS: usize = 5;
const PORT: u16 = 7946;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn addr(i: usize) -> String {
    format!("10.231.0.{}:{PORT}", i + 1)
}

/// The namespaces and processes of one run; dropping it removes them all.
struct Lab {
    switch: String,
    hosts: Vec<String>,
    children: Vec<Option<Child>>,
    stdins: Vec<Option<ChildStdin>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for host in &self.hosts {
            let _ = ip(&["netns", "del", host]);
        }
        // Deleting the switch namespace deletes the bridge and veth ends.
        let _ = ip(&["netns", "del", &self.switch]);
    }
}

impl Lab {
    /// Creates the switch; `Err` means namespaces are not available here.
    fn new() -> Result<Self, String> {
        let tag = format!("gt{}", std::process::id());
        let switch = format!("{tag}sw");
        ip(&["netns", "add", &switch])?;
        let lab = Self {
            switch,
            hosts: Vec::new(),
            children: Vec::new(),
            stdins: Vec::new(),
        };
        Ok(lab)
    }

    fn wire(&mut self, n: usize) -> Result<(), String> {
        let sw = self.switch.clone();
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let host = format!("{}h{i}", sw.trim_end_matches("sw"));
            ip(&["netns", "add", &host])?;
            self.hosts.push(host.clone());
            let port = format!("p{i}");
            ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &host,
            ])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &sw, "link", "set", &port, "up"])?;
            let cidr = format!("10.231.0.{}/24", i + 1);
            ip(&["-n", &host, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", &host, "link", "set", "eth0", "up"])?;
            ip(&["-n", &host, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    fn start(&mut self, i: usize, events: mpsc::Sender<(usize, serde_json::Value)>) {
        let bind = addr(i);
        let seed = addr(0);
        let mut args = vec![
            "netns".to_string(),
            "exec".into(),
            self.hosts[i].clone(),
            env!("CARGO_BIN_EXE_gossip-node").into(),
            "agent".into(),
            "--bind".into(),
            bind,
            "--probe-interval-ms".into(),
            "200".into(),
            "--cluster-size".into(),
            HOSTS.to_string(),
            "--seed".into(),
            i.to_string(),
        ];
        if i != 0 {
            args.extend(["--join".into(), seed]);
        }
        let mut child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a node process");
        let stdout = child.stdout.take().expect("stdout");
        self.stdins.push(child.stdin.take());
        self.children.push(Some(child));
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Ok(value) = serde_json::from_str(&line) {
                    if events.send((i, value)).is_err() {
                        return;
                    }
                }
            }
        });
    }

    fn say(&mut self, i: usize, line: &str) {
        let stdin = self.stdins[i].as_mut().expect("running node");
        writeln!(stdin, "{line}").expect("write to node");
        stdin.flush().expect("flush");
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            child.kill().expect("kill");
            child.wait().expect("reap");
        }
        self.stdins[i] = None;
    }
}

/// What each host has reported so far.
#[derive(Default, Clone)]
struct Seen {
    live: HashSet<String>,
    down: HashSet<String>,
    left: HashSet<String>,
    delivered: Vec<String>,
}

struct Watch {
    rx: mpsc::Receiver<(usize, serde_json::Value)>,
    seen: Vec<Seen>,
}

impl Watch {
    fn until(&mut self, what: &str, limit: Duration, done: impl Fn(&[Seen]) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for: {what}");
            if let Ok((i, event)) = self.rx.recv_timeout(left.min(Duration::from_millis(200))) {
                let member = event["member"].as_str().unwrap_or_default().to_string();
                let seen = &mut self.seen[i];
                match event["event"].as_str().unwrap_or_default() {
                    "member_up" => {
                        seen.down.remove(&member);
                        seen.live.insert(member);
                    }
                    "member_down" => {
                        seen.live.remove(&member);
                        seen.down.insert(member);
                    }
                    "member_left" => {
                        seen.live.remove(&member);
                        seen.left.insert(member);
                    }
                    "delivered" => seen
                        .delivered
                        .push(event["payload"].as_str().unwrap_or_default().into()),
                    _ => {}
                }
            }
        }
    }
}

fn everyone_but(skip: &[usize]) -> Vec<usize> {
    (0..HOSTS).filter(|i| !skip.contains(i)).collect()
}

#[test]
fn hosts_in_namespaces_join_broadcast_detect_a_crash_and_heal_a_partition() {
    let mut lab = match Lab::new() {
        Ok(lab) => lab,
        Err(reason) => {
            eprintln!("skipped: cannot create network namespaces here ({reason})");
            return;
        }
    };
    lab.wire(HOSTS).expect("wire the namespaces");
    let (tx, rx) = mpsc::channel();
    for i in 0..HOSTS {
        lab.start(i, tx.clone());
    }
    let mut watch = Watch {
        rx,
        seen: vec![Seen::default(); HOSTS],
    };

    watch.until(
        "every host sees every other alive",
        Duration::from_secs(30),
        |s| (0..HOSTS).all(|i| s[i].live.len() == HOSTS - 1),
    );

    lab.say(2, "broadcast across-namespaces");
    watch.until(
        "the broadcast reaches every other host",
        Duration::from_secs(30),
        |s| {
            everyone_but(&[2])
                .iter()
                .all(|&i| s[i].delivered.iter().any(|p| p == "across-namespaces"))
        },
    );

    // Partition: host 3's link to the switch goes down.
    let cut = addr(3);
    ip(&["-n", &lab.switch, "link", "set", "p3", "down"]).expect("link down");
    watch.until(
        "both sides declare each other dead",
        Duration::from_secs(30),
        |s| everyone_but(&[3]).iter().all(|&i| s[i].down.contains(&cut)) && s[3].live.is_empty(),
    );
    ip(&["-n", &lab.switch, "link", "set", "p3", "up"]).expect("link up");
    watch.until("the partition heals", Duration::from_secs(60), |s| {
        (0..HOSTS).all(|i| s[i].live.len() == HOSTS - 1)
    });

    // Crash: host 4's process is killed without a farewell.
    let crashed = addr(4);
    lab.kill(4);
    watch.until(
        "the crash is detected by all",
        Duration::from_secs(30),
        |s| {
            everyone_but(&[4])
                .iter()
                .all(|&i| s[i].down.contains(&crashed))
        },
    );

    // A graceful leave is seen as one.
    let leaving = addr(1);
    lab.say(1, "leave");
    watch.until("the leave is seen by all", Duration::from_secs(30), |s| {
        everyone_but(&[1, 4])
            .iter()
            .all(|&i| s[i].left.contains(&leaving))
    });
}
