//! Line charts as inline SVG for the HTML report: a metric against generation (or t), one
//! series per run or cell with its shaded band, the closed-form prediction dashed, and a tooltip
//! on every point. Each series carries its group (a cell or a run) so that the page can show or
//! hide it.

use std::fmt::Write;

/// The colours of the series, by group (matplotlib's "tab10").
pub const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// The colour of group `g`.
pub fn color(g: usize) -> &'static str {
    PALETTE[g % PALETTE.len()]
}

/// One point of a series: its x, its value and the band around it (NaN where there is none).
#[derive(Clone, Debug)]
pub struct Point {
    /// Generation or time.
    pub x: f64,
    /// The mean (NaN where undefined: the line breaks).
    pub y: f64,
    /// The inner band (e.g. mean ± 2 se), NaN for none.
    pub band: (f64, f64),
    /// The outer band (e.g. the 10–90% quantiles over seeds), NaN for none.
    pub outer: (f64, f64),
    /// Tooltip text.
    pub tip: String,
}

/// A line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// The group it belongs to (a run, a cell): its colour and its show/hide switch.
    pub group: usize,
    /// Drawn dashed without markers (a closed-form prediction).
    pub dashed: bool,
    /// The points, in increasing x.
    pub points: Vec<Point>,
}

/// A chart of one metric.
#[derive(Clone, Debug)]
pub struct Chart {
    /// The metric's name, drawn above the plot.
    pub title: String,
    /// The x axis' name.
    pub x_label: String,
    /// The lines, drawn in order (bands first).
    pub series: Vec<Series>,
}

const W: f64 = 440.0;
const H: f64 = 290.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 42.0;

impl Chart {
    /// Every finite value the chart draws (means and bands).
    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.series
            .iter()
            .flat_map(|s| s.points.iter())
            .flat_map(|p| [p.y, p.band.0, p.band.1, p.outer.0, p.outer.1])
            .filter(|v| v.is_finite())
    }

    /// Whether the y axis is logarithmic: every value positive and spanning more than two
    /// decades (the rule of the PNG plots).
    pub fn log_scale(&self) -> bool {
        let (lo, hi) = min_max(self.values());
        lo > 0.0 && hi / lo > 100.0
    }

    /// The chart as an `<svg>` element scaled to its container's width.
    pub fn svg(&self) -> String {
        let log = self.log_scale();
        let f = |v: f64| if log { v.log10() } else { v };
        let (x_lo, x_hi) = min_max(
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.x))
                .filter(|v| v.is_finite()),
        );
        let (x_lo, x_hi) = if x_lo.is_finite() {
            (x_lo, x_hi)
        } else {
            (0.0, 1.0)
        };
        let (y_lo, y_hi) = min_max(self.values().map(f));
        let (y_lo, y_hi) = if y_lo.is_finite() {
            (y_lo, y_hi)
        } else {
            (0.0, 1.0)
        };
        // A flat series gets ±5% of its value (or ±1) so its ticks stay distinct.
        let (y_lo, y_hi) = if y_hi - y_lo <= 1e-12 * y_hi.abs().max(1e-300) {
            let pad = if y_lo == 0.0 { 1.0 } else { 0.05 * y_lo.abs() };
            (y_lo - pad, y_hi + pad)
        } else {
            let pad = 0.04 * (y_hi - y_lo);
            (y_lo - pad, y_hi + pad)
        };
        let (x_lo, x_hi) = if x_hi > x_lo {
            (x_lo, x_hi)
        } else {
            (x_lo - 0.5, x_hi + 0.5)
        };
        let px = |x: f64| LEFT + (x - x_lo) / (x_hi - x_lo) * (W - LEFT - RIGHT);
        let py = |y: f64| TOP + (y_hi - f(y)) / (y_hi - y_lo) * (H - TOP - BOTTOM);
        let mut s = String::new();
        write!(
            s,
            r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{}">"#,
            super::html::escape(&self.title)
        )
        .unwrap();
        write!(
            s,
            r#"<text class="title" x="{}" y="19" text-anchor="middle">{}{}</text>"#,
            (LEFT + W - RIGHT) / 2.0,
            super::html::escape(&self.title),
            if log { " (log scale)" } else { "" }
        )
        .unwrap();
        // Axes, grid and tick labels.
        let (y0, y1) = (TOP, H - BOTTOM);
        let y_ticks: Vec<(f64, String)> = if log {
            log_ticks(y_lo, y_hi)
        } else {
            linear_ticks(y_lo, y_hi, 6)
                .into_iter()
                .map(|v| (v, number(v)))
                .collect()
        };
        for (v, label) in &y_ticks {
            let y = TOP + (y_hi - v) / (y_hi - y_lo) * (H - TOP - BOTTOM);
            write!(
                s,
                r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">{label}</text>"#,
                W - RIGHT,
                LEFT - 5.0,
                y + 4.0
            )
            .unwrap();
        }
        let whole = self
            .series
            .iter()
            .flat_map(|s| &s.points)
            .all(|p| p.x.fract() == 0.0);
        let mut x_ticks = linear_ticks(x_lo, x_hi, 8);
        if whole {
            x_ticks.retain(|v| v.fract() == 0.0);
        }
        for v in &x_ticks {
            let x = px(*v);
            write!(
                s,
                r#"<line class="grid" x1="{x:.1}" x2="{x:.1}" y1="{y0}" y2="{y1}"/><text class="tick" x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
                y1 + 15.0,
                number(*v)
            )
            .unwrap();
        }
        write!(
            s,
            r#"<rect class="frame" x="{LEFT}" y="{y0}" width="{}" height="{}"/><text class="axis" x="{}" y="{}" text-anchor="middle">{}</text>"#,
            W - LEFT - RIGHT,
            y1 - y0,
            (LEFT + W - RIGHT) / 2.0,
            H - 6.0,
            super::html::escape(&self.x_label)
        )
        .unwrap();
        // Bands under every line, then the lines with their points.
        for series in &self.series {
            let c = color(series.group);
            let group = series.group;
            let outer: fn(&Point) -> (f64, f64) = |p| p.outer;
            let inner: fn(&Point) -> (f64, f64) = |p| p.band;
            for (band, opacity) in [(outer, 0.12), (inner, 0.22)] {
                for run in runs(&series.points, |p| {
                    let (a, b) = band(p);
                    a.is_finite() && b.is_finite()
                }) {
                    if run.len() < 2 {
                        continue;
                    }
                    let mut d = String::new();
                    for p in run {
                        write!(d, "{:.1},{:.1} ", px(p.x), py(band(p).1)).unwrap();
                    }
                    for p in run.iter().rev() {
                        write!(d, "{:.1},{:.1} ", px(p.x), py(band(p).0)).unwrap();
                    }
                    write!(
                        s,
                        r#"<polygon data-group="{group}" points="{}" fill="{c}" fill-opacity="{opacity}" stroke="none"/>"#,
                        d.trim_end()
                    )
                    .unwrap();
                }
            }
        }
        for series in &self.series {
            let c = color(series.group);
            let group = series.group;
            let dash = if series.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            for run in runs(&series.points, |p| p.y.is_finite()) {
                let d: Vec<String> = run
                    .iter()
                    .map(|p| format!("{:.1},{:.1}", px(p.x), py(p.y)))
                    .collect();
                write!(
                    s,
                    r#"<polyline data-group="{group}" points="{}" fill="none" stroke="{c}" stroke-width="{}"{dash}/>"#,
                    d.join(" "),
                    if series.dashed { 1.5 } else { 2.0 }
                )
                .unwrap();
            }
            for p in series.points.iter().filter(|p| p.y.is_finite()) {
                let r = if series.dashed { 2.0 } else { 3.0 };
                write!(
                    s,
                    r#"<circle data-group="{group}" cx="{:.1}" cy="{:.1}" r="{r}" fill="{}" stroke="{c}"><title>{}</title></circle>"#,
                    px(p.x),
                    py(p.y),
                    if series.dashed { "white" } else { c },
                    super::html::escape(&p.tip)
                )
                .unwrap();
            }
        }
        s.push_str("</svg>");
        s
    }
}

/// The smallest and largest of `values` (±∞ for none).
fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    })
}

/// The maximal runs of consecutive points that satisfy `keep`.
fn runs(points: &[Point], keep: impl Fn(&Point) -> bool) -> Vec<&[Point]> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, p) in points.iter().enumerate() {
        match (keep(p), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(&points[s..i]);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(&points[s..]);
    }
    out
}

/// Tick values at a step of 1, 2 or 5 × 10^k, about `target` of them inside [lo, hi].
pub fn linear_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater)
        || !lo.is_finite()
        || !hi.is_finite()
    {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last)
        .map(|k| {
            let v = k as f64 * step;
            // 0.30000000000000004 → 0.3: round to the step's decimals.
            let decimals = (-step.log10().floor()).max(0.0) as i32;
            let scale = 10f64.powi(decimals);
            (v * scale).round() / scale
        })
        .collect()
}

/// Ticks of a log10 axis over [lo, hi] (in log10 units): every decade, labelled in the
/// metric's units.
fn log_ticks(lo: f64, hi: f64) -> Vec<(f64, String)> {
    let (a, b) = (lo.ceil() as i32, hi.floor() as i32);
    let step = ((b - a) / 6 + 1).max(1);
    (a..=b)
        .step_by(step as usize)
        .map(|k| (k as f64, number(10f64.powi(k))))
        .collect()
}

/// A number as a tick or table shows it: up to four significant digits, no trailing zeros,
/// scientific notation outside [10⁻³, 10⁶).
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e6).contains(&a) {
        let s = format!("{v:.2e}");
        let (m, e) = s.split_once('e').expect("exponent");
        let m = trim_zeros(m);
        return format!("{m}e{e}");
    }
    let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
    trim_zeros(&format!("{v:.decimals$}")).to_string()
}

/// "mean ± se" with the standard error to two significant digits and the mean to the same
/// decimal place (the mean alone where the error is undefined).
pub fn mean_se(mean: f64, se: f64) -> String {
    if !mean.is_finite() {
        return format!("{mean}");
    }
    if !se.is_finite() {
        return number(mean);
    }
    if se == 0.0 {
        return format!("{} ± 0", number(mean));
    }
    let decimals = 1 - se.log10().floor() as i32;
    if !(0..=8).contains(&decimals) || mean.abs() >= 1e6 {
        return format!("{} ± {}", number(mean), number(se));
    }
    let d = decimals as usize;
    format!("{mean:.d$} ± {se:.d$}")
}

/// "1.500" → "1.5", "2.000" → "2".
fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_fall_on_round_steps_inside_the_range() {
        assert_eq!(linear_ticks(0.0, 19.0, 8), vec![0., 5., 10., 15.]);
        assert_eq!(
            linear_ticks(0.12, 0.71, 6),
            vec![0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
        );
        assert_eq!(
            linear_ticks(-3.0, 3.0, 6),
            vec![-3., -2., -1., 0., 1., 2., 3.]
        );
    }

    #[test]
    fn numbers_keep_four_significant_digits() {
        assert_eq!(number(32.80001), "32.8");
        assert_eq!(number(0.61803), "0.618");
        assert_eq!(number(1234.6), "1235");
        assert_eq!(number(2.0), "2");
        assert_eq!(number(0.00012), "1.2e-4");
        assert_eq!(number(-0.5), "-0.5");
    }

    #[test]
    fn errors_show_two_significant_digits_and_the_mean_to_match() {
        assert_eq!(mean_se(49.8912, 0.1131), "49.89 ± 0.11");
        assert_eq!(mean_se(0.01945, 3.92e-4), "0.01945 ± 0.00039");
        assert_eq!(mean_se(1234.5, 56.0), "1234 ± 56");
        assert_eq!(mean_se(0.5, f64::NAN), "0.5");
    }

    #[test]
    fn a_chart_breaks_its_line_at_undefined_values_and_uses_a_log_axis_over_decades() {
        let point = |x: f64, y: f64| Point {
            x,
            y,
            band: (f64::NAN, f64::NAN),
            outer: (f64::NAN, f64::NAN),
            tip: format!("{x}"),
        };
        let chart = Chart {
            title: "kl".into(),
            x_label: "generation".into(),
            series: vec![Series {
                group: 0,
                dashed: false,
                points: vec![
                    point(0., 0.01),
                    point(1., 0.1),
                    point(2., f64::NAN),
                    point(3., 10.),
                ],
            }],
        };
        assert!(chart.log_scale());
        let svg = chart.svg();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("(log scale)"));
    }
}
