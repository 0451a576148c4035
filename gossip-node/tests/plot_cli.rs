//! `--plot` as a user runs it: each `sim` command writes an SVG that parses,
//! names its measured and theory series and carries real data.

use crate::common;

use common::{TempDir, BIN};
use std::process::Command;

/// Runs `args` plus `--plot FILE`, checks success, and returns the SVG.
fn plot(dir: &TempDir, name: &str, args: &[&str]) -> String {
    let path = dir.0.join(name);
    let out = Command::new(BIN)
        .args(args)
        .arg("--plot")
        .arg(&path)
        .output()
        .expect("binary runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&path).expect("the SVG was written")
}

/// The text of every `<text>` element and the point count of the longest
/// polyline, after checking the document is well-formed SVG.
fn inspect(svg: &str) -> (String, usize) {
    let doc = roxmltree::Document::parse(svg).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect();
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
    (texts.join("\n"), longest)
}

#[test]
fn sim_commands_plot_measured_against_theory() {
    let dir = TempDir::new("plots");
    let cases: [(&str, &[&str], &[&str], usize); 4] = [
        (
            "dissemination.svg",
            &[
                "sim",
                "dissemination",
                "--nodes",
                "500",
                "--runs",
                "5",
                "--strategy",
                "anti-entropy",
            ],
            &[
                "measured, mean of 5 runs",
                "theory: mean-field SI",
                "predicted rounds to all",
                "informed fraction of nodes",
            ],
            12,
        ),
        (
            "rumor.svg",
            &[
                "sim",
                "dissemination",
                "--nodes",
                "500",
                "--runs",
                "3",
                "--k",
                "2",
            ],
            &[
                "measured, mean of 3 runs",
                "mean-field SIR (Demers 1987)",
                "predicted final 1 - s",
            ],
            12,
        ),
        (
            "aggregation.svg",
            &["sim", "aggregation", "--nodes", "500", "--rounds", "40"],
            &[
                "measured: PushPull Average",
                "Jelasity 2005",
                "fit: measured variance factor",
                "max relative error over nodes",
            ],
            30,
        ),
        (
            "membership.svg",
            &[
                "sim",
                "membership",
                "--nodes",
                "40",
                "--crash",
                "8",
                "--duration",
                "30",
                "--crash-at",
                "15",
            ],
            &[
                "measured: first suspicion",
                "measured: dead at every member",
                "theory: suspicion = T + Exp(T), T = 1 s",
                "seconds after the crash",
            ],
            // Two steps per crashed node plus the origin.
            17,
        ),
    ];
    for (name, args, names, points) in cases {
        let svg = plot(&dir, name, args);
        let (texts, longest) = inspect(&svg);
        for wanted in names {
            assert!(texts.contains(wanted), "{name}: no {wanted:?} in\n{texts}");
        }
        assert!(
            longest >= points,
            "{name}: longest line has {longest} points"
        );
    }
}

#[test]
fn plots_that_cannot_be_drawn_are_refused() {
    for (args, needle) in [
        (&["sim", "membership", "--plot", "x.svg"][..], "--crash"),
        (
            &["sim", "dissemination", "--full", "--plot", "x.svg"],
            "--full",
        ),
        (
            &["sim", "aggregation", "--full", "--plot", "x.svg"],
            "--full",
        ),
    ] {
        let out = Command::new(BIN).args(args).output().expect("binary runs");
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
