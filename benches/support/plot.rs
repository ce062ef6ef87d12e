//! The charts of BENCHMARKS.md's summary (`--plot DIR`), drawn as SVG with
//! plotters: latency distributions (the share of all jobs done within each
//! latency, on a log time axis, a curve per subject), bar charts of a
//! figure per subject, and a latency over time with marked moments. The
//! text is left to the viewer's sans-serif font (no font is read or
//! embedded) and a curve is the few hundred points of a [`Curve`], so that
//! a chart is a few tens of kB.

use std::{error::Error, path::Path};

use plotters::{
    coord::Shift,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use crate::support::stats::Curve;

/// Colours that stay apart with colour blindness (Okabe and Ito's), for
/// the subjects of a chart.
pub const PALETTE: [RGBColor; 7] = [
    RGBColor(0x00, 0x72, 0xB2),
    RGBColor(0xD5, 0x5E, 0x00),
    RGBColor(0x00, 0x9E, 0x73),
    RGBColor(0xE6, 0x9F, 0x00),
    RGBColor(0xCC, 0x79, 0xA7),
    RGBColor(0x56, 0xB4, 0xE9),
    RGBColor(0x00, 0x00, 0x00),
];

const FONT: &str = "sans-serif";

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn = Result<(), Box<dyn Error>>;

/// One curve of a [`LatencyChart`].
pub struct Line {
    /// The legend's text: the subject and its figures.
    pub label: String,
    pub color: RGBColor,
    /// (latency in ms, share of all jobs done within it, 0 to 1).
    points: Vec<(f64, f64)>,
}

impl Line {
    /// `curve` as a share of all jobs, `done` being the share it covers
    /// (the rest never fired, or never arrived).
    pub fn new(label: String, color: RGBColor, curve: &Curve, done: f64) -> Self {
        let points = curve.0.iter().map(|&(q, ms)| (ms, q * done)).collect();
        Line {
            label,
            color,
            points,
        }
    }
}

/// The share of jobs done within each latency (y, 0 to 100 %) against the
/// latency (x, log scale), a line per subject, the legend under it.
pub struct LatencyChart {
    pub title: String,
    /// What the latency is, under the x axis.
    pub x_desc: String,
    /// What is counted, beside the y axis.
    pub y_desc: String,
    /// Above the legend: which run each curve is.
    pub note: String,
    pub lines: Vec<Line>,
}

impl LatencyChart {
    /// Draws the chart into `path` (SVG).
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let legend = 34 + 20 * self.lines.len() as u32;
        write_svg(path, (900, 500 + legend), |root| self.draw(root, legend))
    }

    fn draw(&self, root: &Area, legend_height: u32) -> Drawn {
        let (plot, legend) = root.split_vertically(root.dim_in_pixel().1 - legend_height);
        let (lo, hi) = self.x_range();
        let mut chart = ChartBuilder::on(&plot)
            .caption(&self.title, (FONT, 20))
            .margin(14)
            // Room for the last tick's label.
            .margin_right(34)
            .x_label_area_size(44)
            .y_label_area_size(60)
            // Room above 100 %, so that a curve there is not drawn on the frame.
            .build_cartesian_2d((lo..hi).log_scale(), 0.0..102.0)?;
        chart
            .configure_mesh()
            .y_max_light_lines(1)
            .x_desc(&self.x_desc)
            .y_desc(&self.y_desc)
            .x_label_formatter(&|ms| duration(*ms))
            .y_label_formatter(&|share| format!("{share:.0} %"))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()?;
        for line in &self.lines {
            let points = line.points.iter();
            chart.draw_series(LineSeries::new(
                points.map(|&(ms, share)| (ms.clamp(lo, hi), share * 100.0)),
                line.color.stroke_width(2),
            ))?;
        }
        self.draw_legend(&legend)
    }

    /// Whole decades around every positive latency, 1 µs at the least;
    /// lower ones (early or on time) are drawn at the left edge.
    fn x_range(&self) -> (f64, f64) {
        let positive = self
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.0))
            .filter(|&ms| ms > 0.0);
        let (min, max) = positive.fold((f64::INFINITY, 0.0_f64), |(lo, hi), ms| {
            (lo.min(ms), hi.max(ms))
        });
        if max <= 0.0 {
            return (0.001, 1.0);
        }
        let lo = 10f64.powf(min.max(0.001).log10().floor());
        let hi = 10f64.powf(max.log10().ceil()).max(lo * 10.0);
        (lo, hi)
    }

    fn draw_legend(&self, area: &Area) -> Drawn {
        let entries = self.lines.iter().map(|l| (l.label.as_str(), l.color));
        draw_legend(area, &self.note, entries)
    }
}

/// A legend: `note` on top, then a swatch and a label per entry.
fn draw_legend<'a>(
    area: &Area,
    note: &str,
    entries: impl Iterator<Item = (&'a str, RGBColor)>,
) -> Drawn {
    let text = (FONT, 14).into_font();
    area.draw(&Text::new(note.to_owned(), (60, 4), text.clone()))?;
    for (i, (label, color)) in entries.enumerate() {
        let y = 28 + 20 * i as i32;
        let swatch = vec![(60, y + 8), (92, y + 8)];
        area.draw(&PathElement::new(swatch, color.stroke_width(3)))?;
        area.draw(&Text::new(label.to_owned(), (100, y), text.clone()))?;
    }
    Ok(())
}

/// One line of a [`TimeChart`]: (time in s, latency in ms) points.
#[allow(dead_code, reason = "drawn by the e2e bench only")]
pub struct Series {
    pub label: String,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
}

/// A latency (y, log scale) over time (x, s), a line per series, with
/// labelled vertical marks at moments of note (a process killed), the
/// legend under it.
#[allow(dead_code, reason = "drawn by the e2e bench only")]
pub struct TimeChart {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    /// Above the legend: which run it is.
    pub note: String,
    pub series: Vec<Series>,
    /// (time in s, label) of each mark.
    pub marks: Vec<(f64, String)>,
}

#[allow(dead_code, reason = "drawn by the e2e bench only")]
impl TimeChart {
    /// Draws the chart into `path` (SVG).
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let legend = 34 + 20 * self.series.len() as u32;
        write_svg(path, (900, 500 + legend), |root| self.draw(root, legend))
    }

    fn draw(&self, root: &Area, legend_height: u32) -> Drawn {
        let (plot, legend) = root.split_vertically(root.dim_in_pixel().1 - legend_height);
        let points = || self.series.iter().flat_map(|s| s.points.iter().copied());
        let (x_lo, x_hi) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.0), hi.max(p.0))
        });
        let (x_lo, x_hi) = if x_lo < x_hi {
            (x_lo, x_hi)
        } else {
            (0.0, 1.0)
        };
        let y_max = points().map(|p| p.1).fold(1.0, f64::max);
        let (y_lo, y_hi) = (1.0, 10f64.powf(y_max.log10().ceil()).max(10.0));
        let mut chart = ChartBuilder::on(&plot)
            .caption(&self.title, (FONT, 20))
            .margin(14)
            .margin_right(34)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(x_lo..x_hi, (y_lo..y_hi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc(&self.x_desc)
            .y_desc(&self.y_desc)
            .x_label_formatter(&|s| format!("{} s", number(*s)))
            .y_label_formatter(&|ms| duration(*ms))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()?;
        for (at, label) in &self.marks {
            let mark = vec![(*at, y_lo), (*at, y_hi)];
            chart.draw_series(LineSeries::new(mark, BLACK.mix(0.6).stroke_width(1)))?;
            let style = TextStyle::from((FONT, 13)).pos(Pos::new(HPos::Left, VPos::Top));
            chart.draw_series([Text::new(label.clone(), (*at, y_hi), style)])?;
        }
        for s in &self.series {
            let points = s.points.iter().map(|&(x, ms)| (x, ms.clamp(y_lo, y_hi)));
            chart.draw_series(LineSeries::new(points, s.color.stroke_width(2)))?;
        }
        let entries = self.series.iter().map(|s| (s.label.as_str(), s.color));
        draw_legend(&legend, &self.note, entries)
    }
}

/// One bar of a [`Panel`]: the figure's median, and each run's value.
pub struct Bar {
    pub label: String,
    pub color: RGBColor,
    pub value: f64,
    pub runs: Vec<f64>,
}

/// One figure, a bar per subject.
pub struct Panel {
    pub title: String,
    pub bars: Vec<Bar>,
}

/// Panels side by side, under one title, a note at the bottom.
pub struct BarChart {
    pub title: String,
    pub note: String,
    pub panels: Vec<Panel>,
}

impl BarChart {
    /// Draws the chart into `path` (SVG).
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let bars = self.panels.iter().map(|p| p.bars.len()).max().unwrap_or(1) as u32;
        let width = (self.panels.len() as u32 * (90 + 130 * bars)).max(640);
        write_svg(path, (width, 440), |root| self.draw(root))
    }

    fn draw(&self, root: &Area) -> Drawn {
        let root = root.titled(&self.title, (FONT, 20))?;
        let (panels, note) = root.split_vertically(root.dim_in_pixel().1 - 26);
        let areas = panels.split_evenly((1, self.panels.len().max(1)));
        for (area, panel) in areas.iter().zip(&self.panels) {
            panel.draw(area)?;
        }
        note.draw(&Text::new(self.note.clone(), (20, 4), (FONT, 14)))?;
        Ok(())
    }
}

impl Panel {
    /// A bar per subject, its runs' dots just right of it and its value
    /// over it, so that neither hides the other.
    fn draw(&self, area: &Area) -> Drawn {
        let n = self.bars.len();
        if n == 0 {
            return Ok(());
        }
        let values = self
            .bars
            .iter()
            .flat_map(|b| b.runs.iter().chain([&b.value]));
        let top = values.copied().fold(0.0, f64::max);
        let top = if top > 0.0 { top * 1.2 } else { 1.0 };
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, (FONT, 16))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..top)?;
        let label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => self.bars.get(*i).map_or("", |b| &b.label).to_owned(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .max_light_lines(1)
            .x_labels(n + 1)
            .x_label_formatter(&label)
            .y_label_formatter(&|v| number(*v))
            .label_style((FONT, 13))
            .draw()?;
        // A bar fills 3/4 of its slot; its runs' dots are in the gap
        // beside it.
        let slot = chart.plotting_area().dim_in_pixel().0 / n as u32;
        chart.draw_series(self.bars.iter().enumerate().map(|(i, bar)| {
            let right = if i + 1 < n {
                SegmentValue::Exact(i + 1)
            } else {
                SegmentValue::Last
            };
            let corners = [(SegmentValue::Exact(i), 0.0), (right, bar.value)];
            let mut rect = Rectangle::new(corners, bar.color.filled());
            rect.set_margin(0, 0, slot / 8, slot / 8);
            rect
        }))?;
        let dot = BLACK.mix(0.7).filled();
        let beside = (slot * 7 / 16) as i32;
        chart.draw_series(self.bars.iter().enumerate().flat_map(|(i, bar)| {
            bar.runs.iter().map(move |&v| {
                EmptyElement::at((SegmentValue::CenterOf(i), v)) + Circle::new((beside, 0), 3, dot)
            })
        }))?;
        let style = TextStyle::from((FONT, 14)).pos(Pos::new(HPos::Center, VPos::Bottom));
        let above = top / 60.0;
        chart.draw_series(self.bars.iter().enumerate().map(|(i, bar)| {
            let at = (SegmentValue::CenterOf(i), bar.value + above);
            Text::new(number(bar.value), at, style.clone())
        }))?;
        Ok(())
    }
}

/// Draws into an SVG document of `size` pixels, then writes it to `path`.
fn write_svg(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&Area) -> Drawn,
) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        draw(&root).map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    std::fs::write(path, svg).map_err(|e| fail(&e))
}

/// A figure as a chart prints it: three significant digits below 100
/// (0.1234 → "0.123", 45.0 → "45"), whole above (12,345.6 → "12346").
pub fn number(v: f64) -> String {
    let decimals = match v.abs() {
        a if a >= 100.0 || a == 0.0 => 0,
        a => (2.0 - a.log10().floor()).clamp(0.0, 6.0) as usize,
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// A latency in ms as the axis shows it: "10 µs", "2.5 ms", "1 s".
pub fn duration(ms: f64) -> String {
    match ms {
        ms if ms >= 1000.0 => format!("{} s", number(ms / 1000.0)),
        ms if ms >= 1.0 => format!("{} ms", number(ms)),
        ms => format!("{} µs", number(ms * 1000.0)),
    }
}

/// "p50 150 µs, p99 280 µs, max 3.44 ms", for a legend; a dash for a figure
/// not measured.
pub fn figures(p50_ms: Option<f64>, p99_ms: Option<f64>, max_ms: Option<f64>) -> String {
    let d = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), duration);
    format!("p50 {}, p99 {}, max {}", d(p50_ms), d(p99_ms), d(max_ms))
}

/// A count with thousands separators: 100000 → "100,000".
pub fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
