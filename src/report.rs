//! Reports of a run: per-generation summaries over seeds, the metric plot, the terminal table.

use crate::error::{Error, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::Once;

const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
static REGISTER_FONT: Once = Once::new();

/// Mean, standard deviation and count of the finite values of one metric at one generation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Mean over seeds.
    pub mean: f64,
    /// Sample standard deviation over seeds (0 for one seed).
    pub sd: f64,
    /// Seeds with a finite value.
    pub count: usize,
}

/// For each generation 0..G, the [`Summary`] over seeds of each of `n` metrics.
pub fn by_generation(rows: &[(u64, usize, Vec<f64>)], n: usize) -> Vec<Vec<Summary>> {
    let generations = rows.iter().map(|r| r.1 + 1).max().unwrap_or(0);
    (0..generations)
        .map(|g| {
            (0..n)
                .map(|m| {
                    let v: Vec<f64> = rows
                        .iter()
                        .filter(|r| r.1 == g)
                        .map(|r| r.2[m])
                        .filter(|x| x.is_finite())
                        .collect();
                    let count = v.len();
                    let mean = if count > 0 {
                        v.iter().sum::<f64>() / count as f64
                    } else {
                        f64::NAN
                    };
                    let sd = if count > 1 {
                        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (count - 1) as f64)
                            .sqrt()
                    } else {
                        0.0
                    };
                    Summary { mean, sd, count }
                })
                .collect()
        })
        .collect()
}

/// A fixed-width table of the per-generation means (± sd over seeds when there are several) at
/// up to `max_rows` evenly spaced generations, always including the first and the last.
pub fn table(names: &[&str], rows: &[(u64, usize, Vec<f64>)], max_rows: usize) -> String {
    let summary = by_generation(rows, names.len());
    let g = summary.len();
    let mut picks: Vec<usize> = if g <= max_rows {
        (0..g).collect()
    } else {
        (0..max_rows)
            .map(|i| i * (g - 1) / (max_rows - 1))
            .collect()
    };
    picks.dedup();
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

fn fmt(v: f64) -> String {
    if !v.is_finite() {
        format!("{v}")
    } else if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e5) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

/// Writes a PNG with one panel per metric: the mean over seeds against generation, with a band
/// of ± one standard deviation when there are several seeds.
pub fn plot_metrics(path: &Path, names: &[&str], rows: &[(u64, usize, Vec<f64>)]) -> Result<()> {
    REGISTER_FONT.call_once(|| {
        let registered = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
        assert!(
            registered.is_ok(),
            "the bundled font is a valid TrueType file"
        );
    });
    let summary = by_generation(rows, names.len());
    let cols = names.len().clamp(1, 3);
    let panel_rows = names.len().div_ceil(cols).max(1);
    let (w, h) = (460 * cols as u32, 320 * panel_rows as u32);
    let err = |e: String| Error::Run(format!("cannot draw {}: {e}", path.display()));
    let root = BitMapBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let panels = root.split_evenly((panel_rows, cols));
    for (m, (name, area)) in names.iter().zip(panels.iter()).enumerate() {
        let pts: Vec<(f64, Summary)> = summary
            .iter()
            .enumerate()
            .map(|(g, s)| (g as f64, s[m]))
            .filter(|(_, s)| s.count > 0)
            .collect();
        let x_max = (summary.len().max(2) - 1) as f64;
        let (mut lo, mut hi) = pts
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, s)| {
                (lo.min(s.mean - s.sd), hi.max(s.mean + s.sd))
            });
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        let pad = ((hi - lo) * 0.05).max(1e-12 + lo.abs() * 1e-6);
        let mut chart = ChartBuilder::on(area)
            .caption(*name, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, (lo - pad)..(hi + pad))
            .map_err(|e| err(e.to_string()))?;
        let tiny = (hi - lo).abs().max(hi.abs()) * 1e-9;
        chart
            .configure_mesh()
            .x_desc("generation")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| if v.abs() <= tiny { "0".into() } else { fmt(*v) })
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        if pts.iter().any(|(_, s)| s.sd > 0.0) {
            let band: Vec<(f64, f64)> = pts
                .iter()
                .map(|(g, s)| (*g, s.mean + s.sd))
                .chain(pts.iter().rev().map(|(g, s)| (*g, s.mean - s.sd)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(band, BLUE.mix(0.15))))
                .map_err(|e| err(e.to_string()))?;
        }
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|(g, s)| (*g, s.mean)),
                BLUE.stroke_width(2),
            ))
            .map_err(|e| err(e.to_string()))?;
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
