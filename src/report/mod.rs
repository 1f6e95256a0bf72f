//! Reports of a run: per-generation summaries over seeds, the metric plot, the terminal table.

use crate::error::{Error, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::Once;

pub mod html;
pub mod page;
pub mod svg;
pub mod thumbnail;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static REGISTER_FONT: Once = Once::new();

/// Registers the bundled DejaVu Sans as "sans-serif" for every plot (once per process).
fn register_font() {
    REGISTER_FONT.call_once(|| {
        let registered = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
        assert!(
            registered.is_ok(),
            "the bundled font is a valid TrueType file"
        );
    });
}

/// Draws the legend of `chart`'s labelled series in the project's style at `position`.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> std::result::Result<(), String> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 11))
        .position(position)
        .draw()
        .map_err(|e| e.to_string())
}

/// Mean, standard deviation and count of the finite values of one metric at one generation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Mean over seeds.
    pub mean: f64,
    /// Sample standard deviation over seeds (0 for one seed).
    pub sd: f64,
    /// Seeds with a finite value.
    pub count: usize,
    /// 10% and 90% quantiles over seeds (linear interpolation; the mean for one seed).
    pub q10: f64,
    /// See `q10`.
    pub q90: f64,
}

impl Summary {
    /// The summary of the finite values of `v`.
    pub fn of(v: &[f64]) -> Summary {
        let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let count = v.len();
        let mean = if count > 0 {
            v.iter().sum::<f64>() / count as f64
        } else {
            f64::NAN
        };
        let sd = if count > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (count - 1) as f64).sqrt()
        } else {
            0.0
        };
        Summary {
            mean,
            sd,
            count,
            q10: quantile(&v, 0.1),
            q90: quantile(&v, 0.9),
        }
    }

    /// The standard error of the mean, sd/√count (NaN for fewer than two values).
    pub fn se(&self) -> f64 {
        if self.count > 1 {
            self.sd / (self.count as f64).sqrt()
        } else {
            f64::NAN
        }
    }
}

/// The p-quantile (0 ≤ p ≤ 1) of sorted `v` by linear interpolation between order statistics
/// (numpy's default); NaN for no values.
pub fn quantile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let h = p * (v.len() - 1) as f64;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

/// For each generation 0..G, the [`Summary`] over seeds of each of `n` metrics.
pub fn by_generation(rows: &[(u64, usize, Vec<f64>)], n: usize) -> Vec<Vec<Summary>> {
    let generations = rows.iter().map(|r| r.1 + 1).max().unwrap_or(0);
    (0..generations)
        .map(|g| {
            (0..n)
                .map(|m| {
                    let v: Vec<f64> = rows.iter().filter(|r| r.1 == g).map(|r| r.2[m]).collect();
                    Summary::of(&v)
                })
                .collect()
        })
        .collect()
}

/// Up to `max_rows` evenly spaced indices of `0..g`, the first and the last included.
pub fn evenly_spaced(g: usize, max_rows: usize) -> Vec<usize> {
    let mut picks: Vec<usize> = if g <= max_rows {
        (0..g).collect()
    } else {
        (0..max_rows)
            .map(|i| i * (g - 1) / (max_rows - 1))
            .collect()
    };
    picks.dedup();
    picks
}

/// A fixed-width table of the per-generation means (± sd over seeds when there are several) at
/// up to `max_rows` evenly spaced generations, always including the first and the last.
pub fn table(names: &[&str], rows: &[(u64, usize, Vec<f64>)], max_rows: usize) -> String {
    let summary = by_generation(rows, names.len());
    let picks = evenly_spaced(summary.len(), max_rows);
    let several = rows.iter().any(|r| r.0 != rows[0].0);
    let width = if several { 22 } else { 13 };
    let mut s = format!("{:>10}", "generation");
    for n in names {
        s += &format!(" {n:>width$}");
    }
    s.push('\n');
    for &i in &picks {
        s += &format!("{i:>10}");
        for m in &summary[i] {
            let cell = if several {
                format!("{} ± {}", fmt(m.mean), fmt(m.sd))
            } else {
                fmt(m.mean)
            };
            s += &format!(" {cell:>width$}");
        }
        s.push('\n');
    }
    s
}

/// The tick label of log10 value `e`: 10^e written briefly (`1e6`, `0.01`, `3.2`).
fn power_of_ten(e: f64) -> String {
    let v = 10f64.powf(e);
    if (e - e.round()).abs() < 1e-9 && !(-2.0..=3.0).contains(&e.round()) {
        format!("1e{}", e.round() as i64)
    } else if !(1e-3..1e4).contains(&v) {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// An axis label: [`fmt`] without trailing zeros (200, 0.25, 1.5e-4).
fn tick(v: f64) -> String {
    let s = fmt(v);
    if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A label for a whole-number axis (generations): the integer, or nothing between integers.
fn whole_tick(v: f64) -> String {
    if (v - v.round()).abs() < 1e-6 {
        format!("{v:.0}")
    } else {
        String::new()
    }
}

fn fmt(v: f64) -> String {
    if !v.is_finite() {
        format!("{v}")
    } else if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e5) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

/// A predicted curve drawn beside a metric: its values per x (NaN where none) and its source.
pub struct TheoryLine<'a> {
    /// Index of the metric's panel.
    pub metric: usize,
    /// (x, predicted value).
    pub points: Vec<(f64, f64)>,
    /// What predicts it, for the legend.
    pub source: &'a str,
}

/// Writes a PNG with one panel per metric: the mean over seeds against generation, with the
/// 10–90% band over seeds when there are at least three, and each `theory` curve dashed.
pub fn plot_metrics(
    path: &Path,
    names: &[&str],
    rows: &[(u64, usize, Vec<f64>)],
    theory: &[TheoryLine],
) -> Result<()> {
    let points: Vec<(f64, Vec<Summary>)> = by_generation(rows, names.len())
        .into_iter()
        .enumerate()
        .map(|(g, s)| (g as f64, s))
        .collect();
    plot_panels(path, names, "generation", &points, theory)
}

/// Writes a PNG with one panel per column of `names`: each point's mean against its x (in
/// increasing x), the 10–90% band over seeds where there are at least three, and the `theory`
/// curves dashed, with a legend. A positive metric spanning more than two decades is drawn on a
/// log axis. Used for the per-generation metrics and for reconstruction sweeps (x = t).
pub fn plot_panels(
    path: &Path,
    names: &[&str],
    x_desc: &str,
    points: &[(f64, Vec<Summary>)],
    theory: &[TheoryLine],
) -> Result<()> {
    register_font();
    let cols = names.len().clamp(1, 3);
    let panel_rows = names.len().div_ceil(cols).max(1);
    let (w, h) = (460 * cols as u32, 320 * panel_rows as u32);
    let err = |e: String| Error::Run(format!("cannot draw {}: {e}", path.display()));
    let root = BitMapBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let panels = root.split_evenly((panel_rows, cols));
    let x_min = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x_max = points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let (x_min, x_max) = if x_min.is_finite() && x_max > x_min {
        (x_min, x_max)
    } else {
        (0.0, 1.0)
    };
    let whole = points.iter().all(|p| p.0.fract() == 0.0);
    for (m, (name, area)) in names.iter().zip(panels.iter()).enumerate() {
        let pts: Vec<(f64, Summary)> = points
            .iter()
            .map(|(x, s)| (*x, s[m]))
            .filter(|(_, s)| s.count > 0)
            .collect();
        let lines: Vec<&TheoryLine> = theory.iter().filter(|t| t.metric == m).collect();
        let band = pts.iter().filter(|(_, s)| s.count >= 3).count() >= 2;
        let mut values: Vec<f64> = pts.iter().map(|(_, s)| s.mean).collect();
        if band {
            values.extend(pts.iter().flat_map(|(_, s)| [s.q10, s.q90]));
        }
        values.extend(lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)));
        values.retain(|v| v.is_finite());
        let (lo, hi) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        // A positive metric over more than two decades (a KL divergence that explodes) is drawn
        // as log10 of its values, with ticks labelled in the metric's units.
        let log = lo > 0.0 && hi / lo > 100.0;
        let y = |v: f64| if log { v.log10() } else { v };
        let (lo, hi) = if lo.is_finite() {
            (y(lo), y(hi))
        } else {
            (0.0, 1.0)
        };
        // A flat series (e.g. real_accuracy, one value per seed) gets a visible band of ±5%
        // around it rather than a range too thin for distinct tick labels.
        let pad = if hi - lo <= 1e-9 * hi.abs().max(lo.abs()).max(1e-300) {
            (lo.abs() * 0.05).max(1e-12)
        } else {
            (hi - lo) * 0.05
        };
        let caption = if log {
            format!("{name} (log scale)")
        } else {
            name.to_string()
        };
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(x_min..x_max, (lo - pad)..(hi + pad))
            .map_err(|e| err(e.to_string()))?;
        let tiny = (hi - lo).abs().max(hi.abs()) * 1e-9;
        // Whole-number x (generations): one label per integer when they fit, so that no label
        // is a rounded fraction.
        let span = (x_max - x_min).round() as usize + 1;
        let x_labels = if whole && span <= 12 { span } else { 10 };
        chart
            .configure_mesh()
            .x_labels(x_labels)
            .x_desc(x_desc)
            .x_label_formatter(&|v| {
                if !whole { tick(*v) } else { whole_tick(*v) }
            })
            .y_label_formatter(&|v| {
                if log {
                    power_of_ten(*v)
                } else if v.abs() <= tiny {
                    "0".into()
                } else {
                    tick(*v)
                }
            })
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        let legend = band || !lines.is_empty();
        if band {
            let edge: Vec<(f64, f64)> = pts
                .iter()
                .filter(|(_, s)| s.count >= 3)
                .map(|(g, s)| (*g, y(s.q90)))
                .chain(
                    pts.iter()
                        .rev()
                        .filter(|(_, s)| s.count >= 3)
                        .map(|(g, s)| (*g, y(s.q10))),
                )
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(edge, BLUE.mix(0.15))))
                .map_err(|e| err(e.to_string()))?
                .label("10–90% of seeds")
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 4), (x + 16, y + 4)], BLUE.mix(0.15).filled())
                });
        }
        let mean_label = if pts.iter().any(|(_, s)| s.count > 1) {
            "mean over seeds"
        } else {
            "value"
        };
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|(g, s)| (*g, y(s.mean))),
                BLUE.stroke_width(2),
            ))
            .map_err(|e| err(e.to_string()))?
            .label(mean_label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE.stroke_width(2)));
        for line in lines {
            let dashed: Vec<(f64, f64)> = line
                .points
                .iter()
                .filter(|p| p.1.is_finite())
                .map(|&(x, v)| (x, y(v)))
                .collect();
            chart
                .draw_series(DashedLineSeries::new(dashed, 6, 4, RED.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?
                .label(format!("theory: {}", line.source))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED.stroke_width(2)));
        }
        if legend {
            draw_legend(&mut chart, SeriesLabelPosition::UpperRight).map_err(err)?;
        }
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// How a set of images is drawn: their side (rows, cols), the value range mapped to black..white
/// (that of the reference images, so that every picture of a run shares one scale) and the
/// pixel magnification (small images are drawn at least 28 pixels wide).
#[derive(Clone, Copy, Debug)]
pub struct Picture {
    side: (usize, usize),
    range: (f32, f32),
    scale: usize,
}

impl Picture {
    /// For images of `side` whose grey levels span those of `reference`.
    pub fn new(side: (usize, usize), reference: ndarray::ArrayView2<f32>) -> Self {
        let lo = reference.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = reference.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        Picture {
            side,
            range: (lo, hi),
            scale: (28 / side.0.max(side.1)).max(1),
        }
    }

    /// Writes the grid `cells` of `images` to `path` (see [`image_grid`]).
    pub fn draw(
        &self,
        path: &Path,
        images: ndarray::ArrayView2<f32>,
        cells: &[Vec<Option<usize>>],
    ) -> Result<()> {
        image_grid(path, images, self.side, cells, self.range, self.scale)
    }
}

/// The cells of an image grid, row by row: with labels, one row per class (in class order) of
/// its first `per_row` images; without, the first `per_row` × `max_rows` images in order. `None`
/// is an empty cell.
pub fn grid_cells(
    labels: Option<&[u32]>,
    count: usize,
    per_row: usize,
    max_rows: usize,
) -> Vec<Vec<Option<usize>>> {
    match labels {
        Some(labels) => {
            let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
            (0..classes.min(max_rows))
                .map(|c| {
                    let mut row: Vec<Option<usize>> = (0..count)
                        .filter(|&i| labels[i] as usize == c)
                        .take(per_row)
                        .map(Some)
                        .collect();
                    row.resize(per_row, None);
                    row
                })
                .collect()
        }
        None => (0..count.div_ceil(per_row).min(max_rows))
            .map(|r| {
                (0..per_row)
                    .map(|c| Some(r * per_row + c).filter(|&i| i < count))
                    .collect()
            })
            .collect(),
    }
}

/// Writes a PNG of a grid of images: cell (r, c) shows row `cells[r][c]` of `images`, a
/// `side.0 × side.1` image stored row-major; grey levels map [lo, hi] linearly to black..white
/// (clipped); each pixel is drawn `scale × scale`, with 1-pixel white gaps between cells.
pub fn image_grid(
    path: &Path,
    images: ndarray::ArrayView2<f32>,
    side: (usize, usize),
    cells: &[Vec<Option<usize>>],
    range: (f32, f32),
    scale: usize,
) -> Result<()> {
    assert_eq!(
        side.0 * side.1,
        images.ncols(),
        "image side matches the dimension"
    );
    let png = thumbnail::image_grid(images, side, cells, range, scale).png();
    std::fs::write(path, png).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

/// One cell of a study for [`plot_study`]: its label, its value of the first axis (when a
/// number), its label without the first axis, and per metric its (generation, mean, standard
/// error) curve.
pub struct StudyCurve {
    /// `alpha = 0.1, h = 0.6`.
    pub label: String,
    /// The first axis value, when it is a number.
    pub first: Option<f64>,
    /// The label without the first axis (the series of the last-generation panels).
    pub rest: String,
    /// Per metric: (generation, mean, se).
    pub curves: Vec<Vec<(f64, f64, f64)>>,
    /// Per metric: the closed-form expectation per generation, where one applies.
    pub theory: Vec<Option<Vec<(f64, f64)>>>,
}

/// The study plot: per metric, its mean over seeds against generation with one line per cell
/// (± 1 standard error band) and a legend of the cells, and, when the first axis is numeric,
/// its last-generation mean (± se) against that axis, one line per value of the other axes.
pub fn plot_study(
    path: &Path,
    metrics: &[String],
    first_axis: &str,
    cells: &[StudyCurve],
) -> Result<()> {
    register_font();
    let numeric = cells.iter().all(|c| c.first.is_some()) && !first_axis.is_empty();
    let cols = if numeric { 2 } else { 1 };
    let (w, h) = (560 * cols as u32, 360 * metrics.len().max(1) as u32);
    let err = |e: String| Error::Run(format!("cannot draw {}: {e}", path.display()));
    let root = BitMapBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let panels = root.split_evenly((metrics.len().max(1), cols));
    let colour = |i: usize| Palette99::pick(i).to_rgba();
    for (m, name) in metrics.iter().enumerate() {
        let area = &panels[m * cols];
        let pts: Vec<&(f64, f64, f64)> = cells
            .iter()
            .flat_map(|c| c.curves.get(m).into_iter().flatten())
            .filter(|p| p.1.is_finite())
            .collect();
        if pts.is_empty() {
            continue;
        }
        let (x0, x1) = pts
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.0), b.max(p.0))
            });
        let (y0, y1) = y_range(
            pts.iter()
                .map(|p| (p.1, if p.2.is_finite() { p.2 } else { 0.0 })),
        );
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{name}: mean over seeds, band ± 1 se"),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1.max(x0 + 1.0), y0..y1)
            .map_err(|e| err(e.to_string()))?;
        let span = (x1 - x0).round() as usize + 1;
        chart
            .configure_mesh()
            .x_labels(if span <= 12 { span } else { 10 })
            .x_desc("generation")
            .x_label_formatter(&|v| whole_tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        let mut theory_labelled = false;
        for (i, c) in cells.iter().enumerate() {
            let Some(curve) = c.curves.get(m) else {
                continue;
            };
            let line: Vec<(f64, f64)> = curve
                .iter()
                .filter(|p| p.1.is_finite())
                .map(|p| (p.0, p.1))
                .collect();
            let band: Vec<(f64, f64)> = curve
                .iter()
                .filter(|p| p.1.is_finite() && p.2.is_finite())
                .map(|p| (p.0, p.1 + p.2))
                .chain(
                    curve
                        .iter()
                        .rev()
                        .filter(|p| p.1.is_finite() && p.2.is_finite())
                        .map(|p| (p.0, p.1 - p.2)),
                )
                .collect();
            if band.len() > 2 {
                chart
                    .draw_series(std::iter::once(Polygon::new(band, colour(i).mix(0.12))))
                    .map_err(|e| err(e.to_string()))?;
            }
            chart
                .draw_series(LineSeries::new(line, colour(i).stroke_width(2)))
                .map_err(|e| err(e.to_string()))?
                .label(c.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour(i).stroke_width(2))
                });
            if let Some(Some(line)) = c.theory.get(m) {
                let drawn = chart
                    .draw_series(DashedLineSeries::new(
                        line.iter().copied().filter(|p| p.1.is_finite()),
                        6,
                        4,
                        colour(i).stroke_width(1),
                    ))
                    .map_err(|e| err(e.to_string()))?;
                if !theory_labelled {
                    drawn.label("theory (dashed)").legend(|(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(1))
                    });
                    theory_labelled = true;
                }
            }
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight).map_err(err)?;
        if numeric {
            last_generation_panel(&panels[m * cols + 1], name, m, first_axis, cells, &err)?;
        }
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// A y range covering every (mean ± se), padded by 5% (a flat series gets ±5% of its value).
fn y_range(points: impl Iterator<Item = (f64, f64)>) -> (f64, f64) {
    let (lo, hi) = points.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (m, s)| {
        (lo.min(m - s), hi.max(m + s))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi - lo <= 1e-9 * hi.abs().max(lo.abs()).max(1e-300) {
        (lo.abs() * 0.05).max(1e-12)
    } else {
        (hi - lo) * 0.05
    };
    (lo - pad, hi + pad)
}

/// Metric `m` at each cell's last generation against the first axis, one line per value of the
/// other axes.
fn last_generation_panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    name: &str,
    m: usize,
    first_axis: &str,
    cells: &[StudyCurve],
    err: &dyn Fn(String) -> Error,
) -> Result<()> {
    let last = |c: &StudyCurve| c.curves.get(m).and_then(|v| v.last().copied());
    let pts: Vec<(f64, f64, f64)> = cells
        .iter()
        .filter_map(|c| Some((c.first?, last(c)?)))
        .filter(|(_, p)| p.1.is_finite())
        .map(|(x, p)| (x, p.1, if p.2.is_finite() { p.2 } else { 0.0 }))
        .collect();
    if pts.is_empty() {
        return Ok(());
    }
    let (x0, x1) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let pad = if x1 > x0 { (x1 - x0) * 0.05 } else { 0.5 };
    let (y0, y1) = y_range(pts.iter().map(|p| (p.1, p.2)));
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{name} at the last generation (bars ± 1 se)"),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d((x0 - pad)..(x1 + pad), y0..y1)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(first_axis)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    let mut theory_labelled = false;
    let mut groups: Vec<&str> = Vec::new();
    for c in cells {
        if !groups.contains(&c.rest.as_str()) {
            groups.push(&c.rest);
        }
    }
    for (i, g) in groups.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let mut series: Vec<(f64, f64, f64)> = cells
            .iter()
            .filter(|c| c.rest == *g)
            .filter_map(|c| Some((c.first?, last(c)?)))
            .filter(|(_, p)| p.1.is_finite())
            .map(|(x, p)| (x, p.1, p.2))
            .collect();
        series.sort_by(|a, b| a.0.total_cmp(&b.0));
        let drawn = chart
            .draw_series(LineSeries::new(
                series.iter().map(|p| (p.0, p.1)),
                colour.stroke_width(2),
            ))
            .map_err(|e| err(e.to_string()))?;
        if !g.is_empty() {
            drawn.label(g.to_string()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
        }
        chart
            .draw_series(series.iter().filter(|p| p.2.is_finite()).map(|p| {
                ErrorBar::new_vertical(p.0, p.1 - p.2, p.1, p.1 + p.2, colour.stroke_width(1), 6)
            }))
            .map_err(|e| err(e.to_string()))?;
        let mut theory: Vec<(f64, f64)> = cells
            .iter()
            .filter(|c| c.rest == *g)
            .filter_map(|c| {
                let line = c.theory.get(m)?.as_ref()?;
                Some((c.first?, line.last()?.1))
            })
            .filter(|p| p.1.is_finite())
            .collect();
        theory.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !theory.is_empty() {
            let drawn = chart
                .draw_series(DashedLineSeries::new(theory, 6, 4, colour.stroke_width(1)))
                .map_err(|e| err(e.to_string()))?;
            if !theory_labelled {
                drawn.label("theory (dashed)").legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(1))
                });
                theory_labelled = true;
            }
        }
    }
    if theory_labelled || groups.iter().any(|g| !g.is_empty()) {
        draw_legend(&mut chart, SeriesLabelPosition::MiddleRight).map_err(err)?;
    }
    Ok(())
}

/// A scatter plot of 2-D `samples` (blue, at most 2 000) over `real` points (grey, at most
/// 2 000), on one box that holds both, for the samples of a saved generation of a 2-D target.
pub fn scatter(
    path: &Path,
    title: &str,
    real: ndarray::ArrayView2<f32>,
    samples: ndarray::ArrayView2<f32>,
) -> Result<()> {
    register_font();
    let err = |e: String| Error::Run(format!("cannot draw {}: {e}", path.display()));
    let take = |x: ndarray::ArrayView2<f32>| -> Vec<(f64, f64)> {
        x.rows()
            .into_iter()
            .take(2000)
            .map(|r| (r[0] as f64, r[1] as f64))
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect()
    };
    let (real, samples) = (take(real), take(samples));
    let all = real.iter().chain(&samples);
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for p in all {
        (x0, x1, y0, y1) = (x0.min(p.0), x1.max(p.0), y0.min(p.1), y1.max(p.1));
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let (px, py) = (((x1 - x0) * 0.05).max(1e-9), ((y1 - y0) * 0.05).max(1e-9));
    let root = BitMapBackend::new(path, (560, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d((x0 - px)..(x1 + px), (y0 - py)..(y1 + py))
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(
            real.iter()
                .map(|&p| Circle::new(p, 2, BLACK.mix(0.25).filled())),
        )
        .map_err(|e| err(e.to_string()))?
        .label("real (held-out reference)")
        .legend(|(x, y)| Circle::new((x + 8, y), 3, BLACK.mix(0.25).filled()));
    chart
        .draw_series(
            samples
                .iter()
                .map(|&p| Circle::new(p, 2, BLUE.mix(0.5).filled())),
        )
        .map_err(|e| err(e.to_string()))?
        .label("samples")
        .legend(|(x, y)| Circle::new((x + 8, y), 3, BLUE.mix(0.5).filled()));
    draw_legend(&mut chart, SeriesLabelPosition::MiddleRight).map_err(err)?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod grid_tests {
    use super::*;

    #[test]
    fn cells_group_by_class_or_fill_in_order() {
        let labels = [1u32, 0, 1, 1, 2, 0];
        let cells = grid_cells(Some(&labels), 6, 2, 10);
        assert_eq!(
            cells,
            vec![
                vec![Some(1), Some(5)],
                vec![Some(0), Some(2)],
                vec![Some(4), None]
            ]
        );
        let cells = grid_cells(None, 5, 2, 10);
        assert_eq!(cells[2], vec![Some(4), None]);
        assert_eq!(grid_cells(None, 50, 5, 3).len(), 3);
    }

    #[test]
    fn grid_png_has_the_expected_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.png");
        let images = ndarray::Array2::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f32);
        let cells = grid_cells(None, 3, 2, 10);
        image_grid(&p, images.view(), (2, 2), &cells, (0.0, 11.0), 3).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        // PNG IHDR: width and height at bytes 16..24 (2 cells of 2·3 + 1 plus 1 → 15; 2 rows → 15).
        let wh = |o: usize| u32::from_be_bytes(bytes[o..o + 4].try_into().unwrap());
        assert_eq!((wh(16), wh(20)), (15, 15));
    }
}
