//! `[model] kind = "histogram"`: a d-dimensional histogram density, piecewise constant on a
//! regular grid of `bins` cells per coordinate over the box of the training set. Only occupied
//! cells are stored, so any dimension works; in high dimension most points sit alone in their
//! cell and the model is close to a uniform jitter of its training set.

use super::{Learner, LearnerConfig, Model, TrainingSet};
use crate::data::Dataset;
use crate::data::tensors::TensorFile;
use crate::distributions::Distribution;
use crate::error::{Error, Result};
use crate::rng::Stream;
use ndarray::{Array1, Array2, ArrayView2};
use rand::RngExt;
use serde::{Deserialize, Serialize};

/// The keys of `[model] kind = "histogram"`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HistogramLearner {
    /// Cells per coordinate (default 32).
    #[serde(default = "default_bins")]
    pub bins: u32,
}

fn default_bins() -> u32 {
    32
}

impl LearnerConfig for HistogramLearner {
    const KIND: &'static str = "histogram";
    const ABOUT: &'static str = "histogram density with `bins` cells per coordinate";
    fn build(self) -> Result<Box<dyn Learner>> {
        if self.bins == 0 {
            return Err(Error::config("model.bins: expected at least 1"));
        }
        Ok(Box::new(self))
    }
}

impl Learner for HistogramLearner {
    fn offers(&self) -> crate::models::Offers {
        crate::models::Offers {
            log_density: true,
            ..crate::models::Offers::default()
        }
    }
    fn config(&self) -> toml::Table {
        super::config_table(Self::KIND, self)
    }
    fn fit(
        &self,
        train: &TrainingSet,
        _previous: Option<&dyn Model>,
        _rng: &mut Stream,
    ) -> Result<Box<dyn Model>> {
        Ok(Box::new(Histogram::fit(train.points, self.bins)))
    }
    fn load(&self, file: &TensorFile) -> Result<Box<dyn Model>> {
        let (shape, lo) = file.take::<f64>("lo")?;
        let d = shape.iter().product();
        let width = file.vector::<f64>("width", d)?;
        let (cshape, cells) = file.take::<u32>("cells")?;
        let m = match cshape[..] {
            [m, dd] if dd == d && m > 0 => m,
            _ => return Err(file.error("tensor `cells`: expected [cells ≥ 1, dim]")),
        };
        let counts = file.vector::<u32>("counts", m)?;
        let bad_grid = lo.iter().chain(&width).any(|v| !v.is_finite())
            || width.iter().any(|&w| w < 0.0)
            || cells.iter().any(|&c| c >= self.bins)
            || counts.contains(&0)
            || cells
                .chunks(d)
                .zip(cells.chunks(d).skip(1))
                .any(|(a, b)| a >= b);
        if bad_grid {
            return Err(file.error(
                "expected finite lo, widths ≥ 0, sorted distinct cells below model.bins and \
                 counts ≥ 1",
            ));
        }
        Ok(Box::new(Histogram::from_parts(
            self.bins, lo, width, cells, counts,
        )))
    }
}

/// A histogram density: cells of widths w_j from the corner `lo`, cell k holding c_k of the n
/// training points, density c_k / (n Π_j w_j) inside it.
#[derive(Clone, Debug)]
pub struct Histogram {
    bins: u32,
    lo: Vec<f64>,
    width: Vec<f64>,
    /// Occupied cells, one row of per-coordinate indices each, sorted lexicographically.
    cells: Vec<u32>,
    counts: Vec<u32>,
    /// Running sums of `counts`.
    cumulative: Vec<u64>,
}

impl Histogram {
    /// The histogram of the rows of `x` with `bins` cells per coordinate over their box
    /// [min_j, max_j]; a coordinate with one value gets width 0 (a point mass).
    pub fn fit(x: ArrayView2<f32>, bins: u32) -> Histogram {
        let d = x.ncols();
        let mut lo = vec![f64::INFINITY; d];
        let mut hi = vec![f64::NEG_INFINITY; d];
        for row in x.rows() {
            for (j, &v) in row.iter().enumerate() {
                lo[j] = lo[j].min(v as f64);
                hi[j] = hi[j].max(v as f64);
            }
        }
        let width: Vec<f64> = lo
            .iter()
            .zip(&hi)
            .map(|(l, h)| (h - l) / bins as f64)
            .collect();
        let mut keys: Vec<Vec<u32>> = x
            .rows()
            .into_iter()
            .map(|row| {
                (0..d)
                    .map(|j| cell_index(row[j] as f64, lo[j], width[j], bins))
                    .collect()
            })
            .collect();
        keys.sort_unstable();
        let mut cells = Vec::new();
        let mut counts: Vec<u32> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            if i > 0 && keys[i - 1] == *k {
                *counts.last_mut().expect("a cell") += 1;
            } else {
                cells.extend_from_slice(k);
                counts.push(1);
            }
        }
        Histogram::from_parts(bins, lo, width, cells, counts)
    }

    fn from_parts(
        bins: u32,
        lo: Vec<f64>,
        width: Vec<f64>,
        cells: Vec<u32>,
        counts: Vec<u32>,
    ) -> Self {
        let cumulative = counts
            .iter()
            .scan(0u64, |s, &c| {
                *s += c as u64;
                Some(*s)
            })
            .collect();
        Histogram {
            bins,
            lo,
            width,
            cells,
            counts,
            cumulative,
        }
    }

    /// The occupied cell with per-coordinate indices `key`, by binary search.
    fn find(&self, key: &[u32]) -> Option<usize> {
        let (mut a, mut b) = (0, self.counts.len());
        while a < b {
            let mid = (a + b) / 2;
            match self.cell(mid).cmp(key) {
                std::cmp::Ordering::Less => a = mid + 1,
                std::cmp::Ordering::Greater => b = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    fn total(&self) -> u64 {
        *self.cumulative.last().expect("at least one cell")
    }

    fn cell(&self, k: usize) -> &[u32] {
        let d = self.lo.len();
        &self.cells[k * d..(k + 1) * d]
    }

    /// Centre of cell `k`.
    fn centre(&self, k: usize) -> impl Iterator<Item = f64> + '_ {
        self.cell(k)
            .iter()
            .zip(&self.lo)
            .zip(&self.width)
            .map(|((&i, &l), &w)| l + (i as f64 + 0.5) * w)
    }
}

/// The cell of v on a grid from `lo` with `bins` cells of width `w` (the top edge belongs to the
/// last cell).
fn cell_index(v: f64, lo: f64, w: f64, bins: u32) -> u32 {
    if w > 0.0 {
        (((v - lo) / w).floor().max(0.0) as u32).min(bins - 1)
    } else {
        0
    }
}

impl Distribution for Histogram {
    fn dim(&self) -> usize {
        self.lo.len()
    }

    /// A cell drawn with probability c_k / n, then a uniform point inside it.
    fn sample(&self, n: usize, rng: &mut Stream) -> Array2<f32> {
        let d = self.lo.len();
        let total = self.total();
        let mut x = Array2::zeros((n, d));
        for mut row in x.rows_mut() {
            let u = rng.random_range(0..total);
            let k = self.cumulative.partition_point(|&c| c <= u);
            for (j, &i) in self.cell(k).iter().enumerate() {
                let v = self.lo[j] + (i as f64 + rng.random::<f64>()) * self.width[j];
                row[j] = v as f32;
            }
        }
        x
    }

    /// Σ_k p_k m_k with p_k = c_k/n and m_k the centre of cell k.
    fn mean(&self) -> Option<Array1<f64>> {
        let n = self.total() as f64;
        let mut mu = Array1::zeros(self.lo.len());
        for (k, &c) in self.counts.iter().enumerate() {
            for (m, v) in mu.iter_mut().zip(self.centre(k)) {
                *m += c as f64 / n * v;
            }
        }
        Some(mu)
    }

    /// Σ_k p_k (m_k − μ)(m_k − μ)ᵀ + diag(w_j²/12): between cells plus uniform within a cell.
    fn covariance(&self) -> Option<Array2<f64>> {
        let mu = self.mean()?;
        let d = mu.len();
        let n = self.total() as f64;
        let mut cov =
            Array2::from_diag(&Array1::from_iter(self.width.iter().map(|w| w * w / 12.0)));
        for (k, &c) in self.counts.iter().enumerate() {
            let e: Vec<f64> = self.centre(k).zip(&mu).map(|(v, m)| v - m).collect();
            for i in 0..d {
                for j in 0..d {
                    cov[[i, j]] += c as f64 / n * e[i] * e[j];
                }
            }
        }
        Some(cov)
    }

    /// ln(c_k / (n Π_j w_j)) in the cell k of x, −∞ outside every occupied cell; `None` when a
    /// coordinate has width 0 (no density).
    fn log_density(&self, x: ArrayView2<f32>) -> Option<Array1<f64>> {
        if self.width.iter().any(|&w| w <= 0.0) {
            return None;
        }
        let bins = self.bins as f64;
        let log_volume: f64 = self.width.iter().map(|w| w.ln()).sum();
        let log_n = (self.total() as f64).ln();
        Some(Array1::from_iter(x.rows().into_iter().map(|row| {
            let mut key = Vec::with_capacity(row.len());
            for (j, &v) in row.iter().enumerate() {
                let t = (v as f64 - self.lo[j]) / self.width[j];
                if !(0.0..=bins).contains(&t) {
                    return f64::NEG_INFINITY;
                }
                // the top edge of the box belongs to the last cell
                key.push((t.floor() as u32).min(self.bins - 1));
            }
            match self.find(&key) {
                Some(k) => (self.counts[k] as f64).ln() - log_n - log_volume,
                None => f64::NEG_INFINITY,
            }
        })))
    }
}

impl Model for Histogram {
    fn dim(&self) -> usize {
        self.lo.len()
    }
    fn sample(&self, n: usize, rng: &mut Stream) -> Result<Dataset> {
        Ok(Dataset::unlabeled(Distribution::sample(self, n, rng)))
    }
    fn distribution(&self) -> Option<&dyn Distribution> {
        Some(self)
    }
    fn save(&self, file: &mut TensorFile) -> Result<()> {
        let d = self.lo.len();
        file.put("lo", &[d], &self.lo);
        file.put("width", &[d], &self.width);
        file.put("cells", &[self.counts.len(), d], &self.cells);
        file.put("counts", &[self.counts.len()], &self.counts);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Role, stream};
    use ndarray::array;

    /// Four points on a 2 × 2 grid of the box [0, 2]²: cells of area 1, the density of a cell
    /// holding c of the 4 points is c/4, and the moments are those of the cell mixture.
    #[test]
    fn density_and_moments_follow_the_cells() {
        let x = array![[0.0f32, 0.0], [0.5, 0.2], [2.0, 2.0], [1.5, 0.5]];
        let h = Histogram::fit(x.view(), 2);
        let q = array![
            [0.1f32, 0.9],
            [1.9, 1.9],
            [2.0, 0.0],
            [0.5, 1.5],
            [2.5, 1.0]
        ];
        let ld = h.log_density(q.view()).unwrap();
        let expect = [
            0.5f64.ln(),
            0.25f64.ln(),
            0.25f64.ln(),
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ];
        for (a, b) in ld.iter().zip(expect) {
            assert!(a == &b || (a - b).abs() < 1e-12, "{ld}");
        }
        // centres (0.5, 0.5) ×2, (1.5, 1.5), (1.5, 0.5): mean (1, 0.75)
        let mu = h.mean().unwrap();
        assert!((mu[0] - 1.0).abs() < 1e-12 && (mu[1] - 0.75).abs() < 1e-12);
        let cov = h.covariance().unwrap();
        // var x: ¼(2·0.25 + 2·0.25) + 1/12; var y: ¼(2·0.0625 + 0.5625 + 0.0625) + 1/12
        assert!((cov[[0, 0]] - (0.25 + 1.0 / 12.0)).abs() < 1e-12);
        assert!((cov[[1, 1]] - (0.1875 + 1.0 / 12.0)).abs() < 1e-12);
        // samples stay in occupied cells, in proportion to their counts (4 se of a binomial)
        let s = Distribution::sample(&h, 20_000, &mut stream(1, 0, Role::Samples));
        let first = s
            .rows()
            .into_iter()
            .filter(|r| r[0] < 1.0 && r[1] < 1.0)
            .count() as f64;
        let se = (0.5f64 * 0.5 / 20_000.0).sqrt();
        assert!((first / 20_000.0 - 0.5).abs() < 4.0 * se, "{first}");
        assert!(
            h.log_density(s.view())
                .unwrap()
                .iter()
                .all(|v| v.is_finite())
        );
    }
}
