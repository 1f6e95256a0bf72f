//! Data: the [`Dataset`] type, the real data sets shipped with ouro, user CSV/NPY files, and the
//! [`Target`] a loop is measured against (a known distribution or a finite real data set).

mod builtin;
mod files;
pub mod idx;
mod target;
pub mod tensors;

pub use builtin::{digits, faithful, mnist, penguins};
pub use files::{
    parse_csv, parse_npy, read_csv, read_labels, read_npy, write_labels_npy, write_npy,
};
pub use target::{RealData, Target};

use crate::error::{Error, Result};
use ndarray::{Array2, ArrayView2};

/// The largest magnitude of a data value ouro accepts (from a file or a config key that sets the
/// data's scale). Points are held in f32 and nearest-neighbour and kernel metrics compute squared
/// distances ‖x − y‖² in f32 tiles, which stay finite (below f32::MAX / 8 ≈ 4.3·10³⁷) for every
/// dimension up to 10⁷ when no coordinate exceeds 10¹⁵.
pub const MAX_MAGNITUDE: f64 = 1e15;

/// Whether `v` is a finite number of magnitude at most [`MAX_MAGNITUDE`].
pub fn in_data_range(v: f64) -> bool {
    v.is_finite() && v.abs() <= MAX_MAGNITUDE
}

/// The first value of `x` (row-major order) that is NaN, infinite or larger than
/// [`MAX_MAGNITUDE`] in magnitude, as (row, column, value).
pub fn first_out_of_range(x: ArrayView2<f32>) -> Option<(usize, usize, f32)> {
    x.indexed_iter()
        .find(|&(_, &v)| !in_data_range(v as f64))
        .map(|((r, c), &v)| (r, c, v))
}

/// Why a value is refused by [`first_out_of_range`], for an error message.
pub fn out_of_range_message(row: usize, column: usize, v: f32) -> String {
    let what = if v.is_finite() {
        format!("is {v:e}")
    } else {
        format!("is {v}")
    };
    format!(
        "value at row {row}, column {column} {what}; expected finite values of magnitude at most \
         {MAX_MAGNITUDE:e} (ouro holds points in f32 and squares their distances)"
    )
}

/// `v` itself when it is finite and at most [`MAX_MAGNITUDE`] in magnitude (a config key that sets
/// the scale of the data: a mean, a standard deviation, a radius, a bandwidth).
pub fn data_scale(key: &str, v: f64) -> Result<f64> {
    if in_data_range(v) {
        Ok(v)
    } else {
        Err(Error::config(format!(
            "{key} = {v:e}: expected a magnitude of at most {MAX_MAGNITUDE:e} (ouro holds data in \
             f32 and squares distances between points)"
        )))
    }
}

/// A set of points (rows of an [n, d] f32 matrix) with optional integer class labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The points, one per row.
    pub points: Array2<f32>,
    /// One class label per point, when the data set has classes.
    pub labels: Option<Vec<u32>>,
}

impl Dataset {
    /// Number of points.
    /// Points without labels.
    pub fn unlabeled(points: Array2<f32>) -> Dataset {
        Dataset {
            points,
            labels: None,
        }
    }

    pub fn len(&self) -> usize {
        self.points.nrows()
    }

    /// True when there are no points.
    pub fn is_empty(&self) -> bool {
        self.points.nrows() == 0
    }

    /// Dimension of a point.
    pub fn dim(&self) -> usize {
        self.points.ncols()
    }
}

impl Dataset {
    /// The rows of `parts` one after the other; labelled only when every part is.
    pub fn concat(parts: &[&Dataset]) -> Dataset {
        let views: Vec<_> = parts.iter().map(|p| p.points.view()).collect();
        let points = ndarray::concatenate(ndarray::Axis(0), &views).expect("same dimension");
        let labels = parts
            .iter()
            .map(|p| p.labels.as_deref())
            .collect::<Option<Vec<&[u32]>>>()
            .map(|l| l.concat());
        Dataset { points, labels }
    }

    /// The rows `idx` (with their labels).
    pub fn select(&self, idx: &[usize]) -> Dataset {
        Dataset {
            points: self.points.select(ndarray::Axis(0), idx),
            labels: self
                .labels
                .as_ref()
                .map(|l| idx.iter().map(|&i| l[i]).collect()),
        }
    }

    /// Number of classes: the largest label + 1 (`None` without labels).
    pub fn classes(&self) -> Option<usize> {
        self.labels
            .as_ref()
            .map(|l| l.iter().copied().max().map_or(0, |m| m as usize + 1))
    }
}

/// Points of each class 0..`classes` among `labels` (labels ≥ `classes` are not counted).
pub fn class_counts(labels: &[u32], classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes];
    for &y in labels {
        if let Some(c) = counts.get_mut(y as usize) {
            *c += 1;
        }
    }
    counts
}

/// Splits `n` into integer counts proportional to `weights` by the largest-remainder (Hamilton)
/// method: each class gets ⌊n·wᵢ/Σw⌋, and the points left over go one each to the largest
/// remainders (ties to the lower class). The counts sum to `n` and each is within 1 of n·wᵢ/Σw.
/// All weights zero: everything to the first class.
pub fn apportion(weights: &[usize], n: usize) -> Vec<usize> {
    let total: usize = weights.iter().sum();
    if total == 0 {
        let mut counts = vec![0; weights.len()];
        if let Some(c) = counts.first_mut() {
            *c = n;
        }
        return counts;
    }
    let exact: Vec<u128> = weights.iter().map(|&w| n as u128 * w as u128).collect();
    let mut counts: Vec<usize> = exact
        .iter()
        .map(|&e| (e / total as u128) as usize)
        .collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    // Largest remainder first; stable sort keeps ties in class order.
    order.sort_by_key(|&i| std::cmp::Reverse(exact[i] % total as u128));
    let left = n - counts.iter().sum::<usize>();
    for &i in order.iter().take(left) {
        counts[i] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::apportion;

    #[test]
    fn apportion_sums_to_n_and_stays_within_one_of_the_quota() {
        assert_eq!(apportion(&[1, 1, 1], 10), vec![4, 3, 3]);
        assert_eq!(apportion(&[178, 182, 177], 100), vec![33, 34, 33]);
        assert_eq!(apportion(&[0, 5], 7), vec![0, 7]);
        assert_eq!(apportion(&[0, 0], 3), vec![3, 0]);
        let w = [3usize, 0, 11, 7, 1];
        for n in [0usize, 1, 13, 500, 1797] {
            let c = apportion(&w, n);
            assert_eq!(c.iter().sum::<usize>(), n);
            for (&ci, &wi) in c.iter().zip(&w) {
                let quota = n as f64 * wi as f64 / 22.0;
                assert!((ci as f64 - quota).abs() < 1.0, "{c:?} for n = {n}");
            }
        }
    }
}
