//! SVG figures for `--plot`: a measured curve against theory.
//!
//! Drawn with plotters' SVG backend only. Text goes into the file as SVG
//! `<text>` elements that the viewer lays out, so nothing here reads a font
//! and no system font library is linked. A [`Figure`] is plain data (named
//! lines, shaded bands, notes); the `*_figure` functions build one from a
//! command's report.

use std::ops::Range;
use std::path::Path;

use anyhow::Context;
use gossip_sim::{MembershipReport, MembershipScenario};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::aggregation::AggregationReport;
use crate::bench_net::BenchNetReport;
use crate::dissemination::DisseminationReport;

/// How a line is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// Data from the run: solid.
    Measured,
    /// A model's prediction: dashed.
    Theory,
}

/// One named curve.
#[derive(Clone, Debug)]
pub struct Line {
    /// Legend text.
    pub name: String,
    /// (x, y) points in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Solid or dashed.
    pub kind: LineKind,
}

/// A shaded area between a lower and an upper curve, e.g. the range over runs.
#[derive(Clone, Debug)]
pub struct Band {
    /// Legend text.
    pub name: String,
    /// (x, low, high) in order of x.
    pub points: Vec<(f64, f64, f64)>,
}

/// Scale of the vertical axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YScale {
    /// Linear.
    Linear,
    /// Base-10 logarithmic; points at or below zero are left out.
    Log,
}

/// A chart: axes, lines, bands and notes under it.
#[derive(Clone, Debug)]
pub struct Figure {
    /// Caption above the chart.
    pub title: String,
    /// Horizontal axis label, unit included.
    pub x_label: String,
    /// Vertical axis label, unit included.
    pub y_label: String,
    /// Vertical scale.
    pub y_scale: YScale,
    /// Fixed vertical range; `None` fits the data.
    pub y_range: Option<(f64, f64)>,
    /// Curves, drawn over the bands.
    pub lines: Vec<Line>,
    /// Shaded areas.
    pub bands: Vec<Band>,
    /// Lines of text under the chart: what was drawn and from which model.
    pub notes: Vec<String>,
}

const WIDTH: u32 = 960;
const CHART_HEIGHT: u32 = 560;
const NOTE_HEIGHT: u32 = 20;
const FONT: &str = "sans-serif";

/// Colours by line index: measured and theory lines alternate through them.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(90, 90, 90),
];

impl Figure {
    /// The figure as an SVG document.
    pub fn to_svg(&self) -> anyhow::Result<String> {
        let mut svg = String::new();
        let rows = self.bands.len() + self.lines.len() + self.notes.len();
        let height = CHART_HEIGHT + NOTE_HEIGHT * (rows as u32 + 1);
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_error)?;
            let (chart, notes) = root.split_vertically(CHART_HEIGHT);
            let x = self.x_range();
            let (low, high) = self.y_bounds();
            match self.y_scale {
                YScale::Linear => self.draw_chart(&chart, x, low..high, &|v| tidy(*v))?,
                YScale::Log => {
                    self.draw_chart(&chart, x, (low..high).log_scale(), &|v| format!("{v:.0e}"))?
                }
            }
            self.draw_legend_and_notes(&notes)?;
            root.present().map_err(plot_error)?;
        }
        Ok(svg)
    }

    /// Writes the SVG document to `path`.
    pub fn write_svg(&self, path: &Path) -> anyhow::Result<()> {
        let svg = self.to_svg()?;
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))
    }

    fn all_points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        let lines = self.lines.iter().flat_map(|l| l.points.iter().copied());
        let bands = self
            .bands
            .iter()
            .flat_map(|b| b.points.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]));
        lines
            .chain(bands)
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .filter(|&(_, y)| self.y_scale == YScale::Linear || y > 0.0)
    }

    fn x_range(&self) -> Range<f64> {
        let (lo, hi) = bounds(self.all_points().map(|p| p.0)).unwrap_or((0.0, 1.0));
        let lo = lo.min(0.0);
        if hi > lo {
            lo..hi
        } else {
            lo..lo + 1.0
        }
    }

    fn y_bounds(&self) -> (f64, f64) {
        if let Some(range) = self.y_range {
            return range;
        }
        let found = bounds(self.all_points().map(|p| p.1));
        match (self.y_scale, found) {
            (YScale::Linear, Some((lo, hi))) if hi > lo => (lo.min(0.0), hi * 1.05),
            (YScale::Linear, _) => (0.0, 1.0),
            // Whole decades, so the labelled ticks fall on powers of ten.
            (YScale::Log, Some((lo, hi))) => (
                10f64.powf(lo.log10().floor()),
                10f64.powf((hi.log10() + 1e-9).ceil()),
            ),
            (YScale::Log, None) => (1e-6, 1.0),
        }
    }

    fn draw_chart<Y>(
        &self,
        area: &DrawingArea<SVGBackend<'_>, Shift>,
        x: Range<f64>,
        y: Y,
        y_format: &dyn Fn(&f64) -> String,
    ) -> anyhow::Result<()>
    where
        Y: AsRangedCoord<Value = f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, (FONT, 20))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(x, y)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&|v| tidy(*v))
            .y_label_formatter(y_format)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(plot_error)?;
        for (index, band) in self.bands.iter().enumerate() {
            draw_band(&mut chart, band, index)?;
        }
        for (index, line) in self.lines.iter().enumerate() {
            draw_line(&mut chart, line, index, self.y_scale)?;
        }
        Ok(())
    }

    /// Under the chart, one row per band and line (a swatch and its name),
    /// then the notes: a legend that never hides data.
    fn draw_legend_and_notes(
        &self,
        area: &DrawingArea<SVGBackend<'_>, Shift>,
    ) -> anyhow::Result<()> {
        let row_y = |row: usize| (NOTE_HEIGHT * row as u32) as i32 + 4;
        let (x0, text_x) = (90, 124);
        let mut row = 0;
        for (index, band) in self.bands.iter().enumerate() {
            let y = row_y(row) + 7;
            let colour = band_colour(index);
            area.draw(&Rectangle::new(
                [(x0, y - 5), (x0 + 24, y + 5)],
                colour.filled(),
            ))
            .map_err(plot_error)?;
            area.draw(&Text::new(
                band.name.as_str(),
                (text_x, row_y(row)),
                (FONT, 14),
            ))
            .map_err(plot_error)?;
            row += 1;
        }
        for (index, line) in self.lines.iter().enumerate() {
            let y = row_y(row) + 7;
            let style = line_colour(index).stroke_width(2);
            let path = vec![(x0, y), (x0 + 24, y)];
            match line.kind {
                LineKind::Measured => area.draw(&PathElement::new(path, style)),
                LineKind::Theory => area.draw(&DashedPathElement::new(path, 6, 4, style)),
            }
            .map_err(plot_error)?;
            area.draw(&Text::new(
                line.name.as_str(),
                (text_x, row_y(row)),
                (FONT, 14),
            ))
            .map_err(plot_error)?;
            row += 1;
        }
        for note in &self.notes {
            let y = row_y(row) + NOTE_HEIGHT as i32 / 2;
            area.draw(&Text::new(note.as_str(), (24, y), (FONT, 13)))
                .map_err(plot_error)?;
            row += 1;
        }
        Ok(())
    }
}

type Chart<'a, Y> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>;

fn draw_line<Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, Y>,
    line: &Line,
    index: usize,
    scale: YScale,
) -> anyhow::Result<()> {
    let colour = line_colour(index);
    let points: Vec<(f64, f64)> = line
        .points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite() && (scale == YScale::Linear || *y > 0.0))
        .collect();
    let style = colour.stroke_width(2);
    match line.kind {
        LineKind::Measured => chart.draw_series(LineSeries::new(points, style)),
        LineKind::Theory => chart.draw_series(DashedLineSeries::new(points, 8, 5, style)),
    }
    .map_err(plot_error)?;
    Ok(())
}

fn draw_band<Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, Y>,
    band: &Band,
    index: usize,
) -> anyhow::Result<()> {
    let colour = band_colour(index);
    let mut outline: Vec<(f64, f64)> = band.points.iter().map(|&(x, lo, _)| (x, lo)).collect();
    outline.extend(band.points.iter().rev().map(|&(x, _, hi)| (x, hi)));
    chart
        .draw_series(std::iter::once(Polygon::new(outline, colour.filled())))
        .map_err(plot_error)?;
    Ok(())
}

fn line_colour(index: usize) -> RGBColor {
    COLOURS[index % COLOURS.len()]
}

/// Bands take the colours of the lines they go with, faded.
fn band_colour(index: usize) -> RGBAColor {
    line_colour(index).mix(0.2)
}

fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {error}")
}

/// A tick label: at most three decimals, without trailing zeros.
fn tidy(v: f64) -> String {
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

/// Smallest and largest of `values`, if any.
fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// The empirical CDF of `values` as a step line: the fraction of all values
/// (`None`, never, included in the count) at or below each x. The line
/// starts at (0, 0).
pub fn cdf(values: &[Option<f64>]) -> Vec<(f64, f64)> {
    let total = values.len() as f64;
    let mut known: Vec<f64> = values.iter().flatten().copied().collect();
    known.sort_by(f64::total_cmp);
    let mut points = vec![(0.0, 0.0)];
    for (i, &v) in known.iter().enumerate() {
        points.push((v, i as f64 / total));
        points.push((v, (i + 1) as f64 / total));
    }
    points
}

/// Mean, smallest and largest of each round over runs of different lengths;
/// a run that ended early keeps its last value.
fn across_runs(runs: &[Vec<f64>]) -> Vec<(f64, f64, f64)> {
    let rounds = runs.iter().map(Vec::len).max().unwrap_or(0);
    (0..rounds)
        .map(|r| {
            let at: Vec<f64> = runs
                .iter()
                .filter_map(|run| run.get(r).or(run.last()).copied())
                .collect();
            let mean = at.iter().sum::<f64>() / at.len() as f64;
            let (lo, hi) = bounds(at.iter().copied()).unwrap_or((mean, mean));
            (mean, lo, hi)
        })
        .collect()
}

/// Informed fraction against round: mean over runs (and their range), the
/// mean-field curve, and the report's own predictions as notes.
pub fn dissemination_figure(r: &DisseminationReport) -> Figure {
    let stats = across_runs(&r.informed_per_round);
    let mut lines = vec![Line {
        name: format!("measured, mean of {} runs", r.runs),
        points: stats
            .iter()
            .enumerate()
            .map(|(round, s)| (round as f64, s.0))
            .collect(),
        kind: LineKind::Measured,
    }];
    let mut notes = Vec::new();
    if let Some(last) = r.theory_curve.as_ref().and_then(|t| t.informed.last()) {
        notes.push(format!(
            "mean-field curve after round {}: {last:.4} informed",
            stats.len().saturating_sub(1)
        ));
    }
    match &r.theory_curve {
        Some(theory) => lines.push(Line {
            name: format!("theory: {}", theory.model),
            points: theory
                .informed
                .iter()
                .enumerate()
                .map(|(round, &i)| (round as f64, i))
                .collect(),
            kind: LineKind::Theory,
        }),
        None => notes.push("no theory curve: no mean-field model for this variant".to_string()),
    }
    let bands = if r.runs > 1 {
        vec![Band {
            name: "measured, min..max over runs".to_string(),
            points: stats
                .iter()
                .enumerate()
                .map(|(round, s)| (round as f64, s.1, s.2))
                .collect(),
        }]
    } else {
        Vec::new()
    };
    // The report's own predictions, where they are a point on this chart.
    let end = stats.len().saturating_sub(1) as f64;
    if let Some(t) = r.theory.iter().find(|t| t.quantity == "rounds") {
        lines.push(Line {
            name: format!("predicted rounds to all = {:.1} ({})", t.value, t.model),
            points: vec![(t.value, 0.0), (t.value, 1.0)],
            kind: LineKind::Theory,
        });
    }
    if let Some(t) = r.theory.iter().find(|t| t.quantity == "residue") {
        lines.push(Line {
            name: format!("predicted final 1 - s = {:.4} ({})", 1.0 - t.value, t.model),
            points: vec![(0.0, 1.0 - t.value), (end, 1.0 - t.value)],
            kind: LineKind::Theory,
        });
    }
    for t in &r.theory {
        notes.push(format!(
            "report's prediction: {} = {:.3} ({})",
            t.quantity, t.value, t.model
        ));
    }
    notes.push(format!(
        "measured: rounds to last informed mean {:.2}, residue {:.5}; loss {}",
        r.rounds.mean, r.residue, r.loss
    ));
    Figure {
        title: format!(
            "dissemination: {:?} {:?}, fanout {}, {} nodes",
            r.strategy, r.mode, r.fanout, r.nodes
        ),
        x_label: "round".to_string(),
        y_label: "informed fraction of nodes".to_string(),
        y_scale: YScale::Linear,
        y_range: Some((0.0, 1.02)),
        lines,
        bands,
        notes,
    }
}

/// Largest relative error against round on a log axis, with the error slope
/// the measured variance factor implies and, for push-pull averaging, the
/// factor Jelasity, Montresor and Babaoglu (2005) derive.
pub fn aggregation_figure(r: &AggregationReport) -> Figure {
    let measured: Vec<(f64, f64)> = r
        .max_rel_error_per_round
        .iter()
        .enumerate()
        .map(|(i, &e)| ((i + 1) as f64, e))
        .collect();
    let mut notes = Vec::new();
    let mut lines = vec![Line {
        name: format!("measured: {:?} {:?}", r.algorithm, r.function),
        points: measured.clone(),
        kind: LineKind::Measured,
    }];
    // The error is proportional to the standard deviation: it shrinks by the
    // square root of the variance factor each round. Slopes go through the
    // middle of the drawn curve (push-sum starts with a lag).
    let drawn: Vec<(f64, f64)> = measured
        .iter()
        .copied()
        .filter(|&(_, e)| e.is_finite() && e > 0.0)
        .collect();
    let anchor = drawn.get(drawn.len() / 2).copied();
    let (floor, ceiling) = bounds(drawn.iter().map(|p| p.1)).unwrap_or((0.0, 0.0));
    let mut slope_line = |name: String, factor: f64| {
        if let Some((xa, ea)) = anchor {
            let per_round = factor.sqrt();
            let points = (1..=r.rounds)
                .map(|x| (f64::from(x), ea * per_round.powf(f64::from(x) - xa)))
                .filter(|&(_, e)| e >= floor && e <= ceiling)
                .collect();
            lines.push(Line {
                name,
                points,
                kind: LineKind::Theory,
            });
        }
    };
    match r.variance_factor_per_round {
        Some(v) => slope_line(format!("fit: measured variance factor {v:.3} per round"), v),
        None => notes.push("no variance factor measured (extremes or full mode)".to_string()),
    }
    if r.algorithm == crate::aggregation::AlgorithmName::PushPull && r.loss == 0.0 && r.churn == 0.0
    {
        let jelasity = 1.0 / (2.0 * std::f64::consts::E.sqrt());
        slope_line(
            format!("theory: variance x 1/(2 sqrt e) = {jelasity:.3} per round (Jelasity 2005)"),
            jelasity,
        );
    }
    let unknown = measured.iter().filter(|p| !p.1.is_finite()).count();
    if unknown > 0 {
        notes.push(format!(
            "{unknown} rounds where some node had no estimate yet (infinite error): not drawn"
        ));
    }
    if let Some(zero) = measured.iter().find(|p| p.1 == 0.0) {
        notes.push(format!(
            "error exactly 0 from round {} on: not drawn on the log axis",
            zero.0
        ));
    }
    if let Some((xa, _)) = anchor {
        notes.push(format!(
            "slopes drawn through the measured error at round {xa}, the error taken as proportional to the standard deviation"
        ));
    }
    notes.push(format!(
        "loss {}, churn {}, final max relative error {:.3e}",
        r.loss, r.churn, r.final_max_rel_error
    ));
    Figure {
        title: format!(
            "aggregation: {:?} computing {:?}, {} nodes",
            r.algorithm, r.function, r.nodes
        ),
        x_label: "round".to_string(),
        y_label: "max relative error over nodes".to_string(),
        y_scale: YScale::Log,
        y_range: None,
        lines,
        bands: Vec::new(),
        notes,
    }
}

/// CDFs over the crashed nodes of the time to the first suspicion, the
/// first death declaration and every member's agreement, with the model:
/// the first probe of the crashed node starts after an exponential wait of
/// mean one probe interval (every member probes once per interval, targets
/// in random order), the suspicion comes at the end of that probe's
/// interval, and a death after the suspicion timeout, which Lifeguard
/// shrinks from its maximum to its minimum as confirmations arrive.
pub fn membership_figure(r: &MembershipReport, scenario: &MembershipScenario) -> Figure {
    let column = |f: fn(&gossip_sim::CrashTimeline) -> Option<f64>| -> Vec<Option<f64>> {
        r.detection_detail.iter().map(f).collect()
    };
    let suspect = column(|c| c.first_suspect_s);
    let dead = column(|c| c.first_dead_s);
    let all = column(|c| c.all_dead_s);
    let t = scenario.config.probe_interval.as_secs_f64();
    let (min, max) = suspicion_bounds(scenario);
    let horizon = all
        .iter()
        .chain(&dead)
        .flatten()
        .copied()
        .fold(t + max, f64::max)
        * 1.1;
    let model = |shift: f64| -> Vec<(f64, f64)> {
        (0..=200)
            .map(|i| horizon * f64::from(i) / 200.0)
            .map(|x| (x, (1.0 - (-(x - shift) / t).exp()).max(0.0)))
            .collect()
    };
    let line = |name: String, points, kind| Line { name, points, kind };
    let lines = vec![
        line(
            "measured: first suspicion".into(),
            cdf(&suspect),
            LineKind::Measured,
        ),
        line(
            "measured: first declared dead".into(),
            cdf(&dead),
            LineKind::Measured,
        ),
        line(
            "measured: dead at every member".into(),
            cdf(&all),
            LineKind::Measured,
        ),
        line(
            format!("theory: suspicion = T + Exp(T), T = {t} s"),
            model(t),
            LineKind::Theory,
        ),
        line(
            format!("theory: + max suspicion timeout {max:.2} s"),
            model(t + max),
            LineKind::Theory,
        ),
        line(
            format!("theory: + min suspicion timeout {min:.2} s"),
            model(t + min),
            LineKind::Theory,
        ),
    ];
    Figure {
        title: format!(
            "failure detection: {} crashed of {} nodes, loss {}",
            r.crashed.len(),
            r.nodes,
            r.loss
        ),
        x_label: "seconds after the crash".to_string(),
        y_label: "fraction of crashed nodes".to_string(),
        y_scale: YScale::Linear,
        y_range: Some((0.0, 1.02)),
        lines,
        bands: Vec::new(),
        notes: vec![
            "theory: first probe of the crashed node after Exp(mean T) (n probers, one probe per T each), suspicion at the end of that probe's interval".to_string(),
            "a death follows after the Lifeguard suspicion timeout, which shrinks from its maximum to its minimum with confirmations".to_string(),
            format!(
                "measured over {} crashed nodes; a never-detected node keeps its curve below 1",
                r.detection_detail.len()
            ),
        ],
    }
}

/// Lifeguard's suspicion timeout bounds at the scenario's cluster size,
/// by the rule `gossip-core` applies (its `suspicion_bounds`): the minimum is
/// `probe_interval * suspicion_min_mult * max(2, log10(live members))`, the
/// maximum `suspicion_max_mult` times that.
fn suspicion_bounds(scenario: &MembershipScenario) -> (f64, f64) {
    let config = &scenario.config;
    let live = scenario.nodes.saturating_sub(scenario.crash).max(1) as f64;
    let min =
        config.probe_interval.as_secs_f64() * config.suspicion_min_mult * live.log10().max(2.0);
    (min, min * config.suspicion_max_mult)
}

/// CDFs of broadcast latency on loopback: per delivery (each receiving
/// node's own latency) and per broadcast (until the last node had it).
pub fn bench_net_figure(r: &BenchNetReport) -> Figure {
    let each: Vec<Option<f64>> = r.delivery_ms.iter().copied().map(Some).collect();
    Figure {
        title: format!(
            "broadcast latency: {} nodes over {} on loopback, {:?}",
            r.nodes, r.transport, r.strategy
        ),
        x_label: "milliseconds after the broadcast".to_string(),
        y_label: "cumulative fraction".to_string(),
        y_scale: YScale::Linear,
        y_range: Some((0.0, 1.02)),
        lines: vec![
            Line {
                name: format!("each delivery ({} deliveries)", each.len()),
                points: cdf(&each),
                kind: LineKind::Measured,
            },
            Line {
                name: format!("to every node ({} broadcasts)", r.to_all_ms.len()),
                points: cdf(&r.to_all_ms),
                kind: LineKind::Measured,
            },
        ],
        bands: Vec::new(),
        notes: vec![
            format!(
                "measured wall-clock time from broadcast() to each node's delivery; probe interval {} ms; {} incomplete broadcasts count as never",
                r.probe_interval_ms, r.broadcasts_incomplete
            ),
            "no theory curve: loopback latency depends on the scheduler more than on the protocol".to_string(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text of every `<text>` element, and the point count of every polyline.
    fn parse(svg: &str) -> (Vec<String>, Vec<usize>) {
        let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let texts = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or("").trim().to_string())
            .collect();
        let polylines = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .map(|n| {
                n.attribute("points")
                    .unwrap_or("")
                    .split_whitespace()
                    .count()
            })
            .collect();
        (texts, polylines)
    }

    fn figure(scale: YScale, measured: Vec<(f64, f64)>) -> Figure {
        Figure {
            title: "a <test> & its title".into(),
            x_label: "round".into(),
            y_label: "fraction".into(),
            y_scale: scale,
            y_range: None,
            lines: vec![
                Line {
                    name: "measured thing".into(),
                    points: measured,
                    kind: LineKind::Measured,
                },
                Line {
                    name: "model thing".into(),
                    points: vec![(0.0, 0.5), (10.0, 0.25)],
                    kind: LineKind::Theory,
                },
            ],
            bands: vec![Band {
                name: "spread thing".into(),
                points: vec![(0.0, 0.1, 0.2), (5.0, 0.2, 0.4)],
            }],
            notes: vec!["note one".into(), "note two".into()],
        }
    }

    #[test]
    fn svg_is_well_formed_with_names_notes_and_points() {
        let points: Vec<(f64, f64)> = (0..50)
            .map(|i| (f64::from(i), f64::from(i) / 50.0))
            .collect();
        let svg = figure(YScale::Linear, points).to_svg().expect("renders");
        let (texts, polylines) = parse(&svg);
        for wanted in [
            "a <test> & its title",
            "measured thing",
            "model thing",
            "spread thing",
            "note one",
            "note two",
            "round",
            "fraction",
        ] {
            assert!(
                texts.iter().any(|t| t == wanted),
                "no text {wanted:?} in {texts:?}"
            );
        }
        assert!(
            polylines.contains(&50),
            "the measured line has its 50 points: {polylines:?}"
        );
        assert!(svg.contains("<polygon"), "the band is drawn");
        assert!(
            !svg.contains("font-face") && !svg.contains("url("),
            "no font or external reference"
        );
    }

    #[test]
    fn log_axis_leaves_out_points_it_cannot_place() {
        let points = vec![
            (1.0, 1.0),
            (2.0, 0.1),
            (3.0, 0.0),
            (4.0, -1.0),
            (5.0, f64::INFINITY),
            (6.0, 1e-3),
        ];
        let svg = figure(YScale::Log, points).to_svg().expect("renders");
        let (texts, polylines) = parse(&svg);
        assert!(
            polylines.contains(&3),
            "three positive finite points: {polylines:?}"
        );
        assert!(
            texts.iter().any(|t| t == "1e-2") && texts.iter().any(|t| t == "1e0"),
            "decade labels: {texts:?}"
        );
    }

    #[test]
    fn cdf_counts_never_as_missing_mass() {
        let points = cdf(&[Some(3.0), None, Some(1.0), Some(2.0)]);
        assert_eq!(points.first(), Some(&(0.0, 0.0)));
        assert_eq!(points.last(), Some(&(3.0, 0.75)));
        assert!(points
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn runs_of_different_lengths_hold_their_last_value() {
        let stats = across_runs(&[vec![0.1, 0.5, 1.0], vec![0.1, 0.3]]);
        assert_eq!(stats.len(), 3);
        assert_eq!(stats[1], (0.4, 0.3, 0.5));
        assert_eq!(stats[2], (0.65, 0.3, 1.0));
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tidy(0.30000000000000004), "0.3");
        assert_eq!(tidy(2.0), "2");
        assert_eq!(tidy(-0.0), "0");
        assert_eq!(tidy(0.125), "0.125");
    }
}
