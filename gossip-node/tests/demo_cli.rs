//! `gossip-node demo` as a user runs it, shortened: it exits 0 by itself,
//! prints each step and the summary, and writes an SVG that parses.

use crate::common;

use common::{TempDir, BIN};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn demo_runs_to_a_summary_and_an_svg() {
    let dir = TempDir::new("demo");
    let svg_path = dir.0.join("demo.svg");
    let started = Instant::now();
    let out = Command::new(BIN)
        .args([
            "demo",
            "--nodes",
            "6",
            "--broadcasts",
            "3",
            "--probe-interval-ms",
            "200",
            "--pace-ms",
            "0",
            "--timeout-secs",
            "10",
        ])
        .arg("--plot")
        .arg(&svg_path)
        .output()
        .expect("binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the short demo took {:?}",
        started.elapsed()
    );
    let line = |prefix: &str| -> &str {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{stdout}"))
    };
    assert!(line("status page of node 0: http://127.0.0.1:").ends_with("/  (open it now to watch)"));
    assert!(line("joined").contains("see"), "{stdout}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("broadcast ") && l.contains("reached all 5 others in"))
            .count(),
        3,
        "three broadcasts, each reached every other node:\n{stdout}"
    );
    line("summary");
    // Every step finished within its timeout: no "not ..." in the summary.
    for prefix in ["join ", "failure detection", "graceful leave"] {
        let l = line(prefix);
        assert!(
            l.trim_start()[prefix.len()..]
                .trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit()),
            "{prefix} was not reached: {l}"
        );
    }
    assert!(
        line("broadcast to all").contains("(3 sent, 0 incomplete"),
        "{stdout}"
    );
    assert!(
        line("false positives").contains("false positives   0"),
        "{stdout}"
    );
    let traffic: f64 = line("traffic")
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a byte rate");
    assert!(traffic > 0.0, "{stdout}");

    let svg = std::fs::read_to_string(&svg_path).expect("the SVG was written");
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("infection curves: 6 nodes")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("mean over 3 broadcasts")),
        "{texts:?}"
    );
    // The mean curve steps through 3 broadcasts x 5 receivers: 2 points
    // per delivery plus the origin.
    let longest = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .map(|n| {
            n.attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(longest >= 31, "longest curve has {longest} points");
}

#[test]
fn demo_help_has_an_example() {
    let out = Command::new(BIN)
        .args(["demo", "--help"])
        .output()
        .expect("binary runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Example"), "{text}");
    assert!(text.contains("gossip-node demo --nodes"), "{text}");
    for flag in ["--nodes", "--plot", "--keep", "--transport", "--strategy"] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
}

/// With `--keep`, node 0's control API answers after the summary with the
/// cluster as the demo left it, and SIGINT ends the process with exit 0.
#[test]
fn demo_keep_serves_node_0_until_interrupted() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = TempDir::new("demo-keep");
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--nodes",
            "5",
            "--broadcasts",
            "1",
            "--probe-interval-ms",
            "200",
            "--pace-ms",
            "0",
            "--timeout-secs",
            "10",
            "--keep",
        ])
        .arg("--plot")
        .arg(dir.0.join("keep.svg"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("binary runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut url = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    for line in lines.by_ref() {
        let line = line.expect("a line");
        if let Some(rest) = line.strip_prefix("status page of node 0: http://") {
            url = rest.split('/').next().map(str::to_string);
        }
        if line.starts_with("still serving") || Instant::now() > deadline {
            break;
        }
    }
    let addr = url.expect("the URL was printed");
    let mut stream = std::net::TcpStream::connect(&addr).expect("the API listens");
    write!(
        stream,
        "GET /v1/members HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let body = answer.split("\r\n\r\n").nth(1).expect("a body");
    let members: serde_json::Value = serde_json::from_str(body).expect("JSON members");
    let states: Vec<&str> = members
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.len(), 5, "{states:?}");
    assert_eq!(
        states.iter().filter(|&&s| s == "alive").count(),
        3,
        "{states:?}"
    );
    assert!(
        states.contains(&"dead") && states.contains(&"left"),
        "{states:?}"
    );

    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let stopped = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(3),
            "still running 3 s after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.starts_with("interrupted")),
        "{rest:?}"
    );
}
