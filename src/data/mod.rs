//! Data: the [`Dataset`] type, the real data sets shipped with ouro, user CSV/NPY files, and the
//! [`Target`] a loop is measured against (a known distribution or a finite real data set).

mod builtin;
mod files;
pub mod idx;
mod target;

pub use builtin::{digits, faithful, mnist, penguins};
pub use files::{read_csv, read_npy, write_npy};
pub use target::{RealData, Target};

use ndarray::Array2;

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
