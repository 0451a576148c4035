//! What the CLI tests share: the binary, scratch folders, free ports, and
//! agent processes whose JSON-lines output is read on a thread.

// Each test crate uses its own part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `gossip-node` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_gossip-node");

/// `bench-net` arguments for a cluster small and short enough for a test.
pub const SMALL_BENCH_NET: &[&str] = &[
    "bench-net",
    "--nodes",
    "4",
    "--broadcasts",
    "2",
    "--idle-secs",
    "0.5",
    "--settle-secs",
    "0",
    "--probe-interval-ms",
    "200",
    "--kills",
    "1",
];

/// A scratch folder, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh folder named after `name` and this process.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("gossip-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// The path of `name` inside the folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP port free on 127.0.0.1 a moment ago.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A UDP port free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `gossip-node agent` process; killed when dropped.
pub struct AgentProcess {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<serde_json::Value>,
    /// The address it was told to bind.
    pub addr: String,
}

impl AgentProcess {
    /// Starts `gossip-node agent --bind ADDR ARGS...` on a free port, its
    /// stderr shown or not. Unless `args` name an `--api` address, the
    /// control API listens on a port the system picks (the `ready` event
    /// says which), so agents started together do not compete for the
    /// default one.
    pub fn spawn(args: &[String], show_stderr: bool) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut full = vec!["--bind".to_string(), addr.clone()];
        full.extend_from_slice(args);
        let mut process = Self::spawn_raw(&full, show_stderr);
        process.addr = addr;
        process
    }

    /// Starts an agent with its control API on `api`, its identity in
    /// `data_dir`, 200 ms probes, `--bind`/`--join` when given and `extra`
    /// flags; waits for its `ready` event, records its address, and
    /// returns the process and that event.
    pub fn start_ready(
        data_dir: &std::path::Path,
        api: &str,
        bind: Option<&str>,
        join: Option<&str>,
        extra: &[&str],
    ) -> (Self, serde_json::Value) {
        let mut args: Vec<String> = vec![
            "--api".into(),
            api.into(),
            "--data-dir".into(),
            data_dir.to_str().expect("a UTF-8 path").into(),
            "--probe-interval-ms".into(),
            "200".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        if let Some(bind) = bind {
            args.extend(["--bind".into(), bind.into()]);
        }
        if let Some(seed) = join {
            args.extend(["--join".into(), seed.into()]);
        }
        let mut process = Self::spawn_raw(&args, true);
        let ready = process
            .saw(Duration::from_secs(10), |e| e["event"] == "ready")
            .expect("the agent says it is ready");
        process.addr = ready["addr"]
            .as_str()
            .expect("ready names the address")
            .to_string();
        (process, ready)
    }

    /// Starts `gossip-node agent ARGS...` as given (plus `--api
    /// 127.0.0.1:0` unless `args` name one); `addr` stays empty until the
    /// caller learns it (from the `ready` event).
    pub fn spawn_raw(args: &[String], show_stderr: bool) -> Self {
        let mut command = Command::new(BIN);
        command.arg("agent").args(args);
        if !args.iter().any(|a| a == "--api") {
            command.args(["--api", "127.0.0.1:0"]);
        }
        let addr = String::new();
        let mut child = command
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if show_stderr {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
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
        Self {
            child,
            stdin,
            lines,
            addr,
        }
    }

    /// Writes one command line to its stdin.
    pub fn say(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits for an event matching `pick`; returns it, or None after `limit`.
    pub fn saw(
        &self,
        limit: Duration,
        pick: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
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

    /// Sends SIGHUP to it (a process this test started).
    pub fn hangup(&self) {
        self.signal("HUP");
    }

    /// Sends the signal `name` (`INT`, `TERM`, `HUP`) to it.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits at most `limit` for the process to exit; its exit status, or
    /// None if it is still running.
    pub fn exited_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
