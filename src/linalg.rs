//! Small dense linear algebra and distance kernels shared by models and metrics.
//!
//! Data live in `Array2<f32>` (rows are points); anything that accumulates is done in f64.
//! Decompositions of d×d matrices go through nalgebra; point-to-point distances go through one
//! GEMM per block (`matrixmultiply` via ndarray), using ‖x − y‖² = ‖x‖² + ‖y‖² − 2 x·y.

use nalgebra::DMatrix;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

/// Rows per block in blocked distance computations; fixed so results never depend on thread count.
pub const BLOCK_ROWS: usize = 256;

/// Column means of `x` (n×d), accumulated in f64.
pub fn mean(x: ArrayView2<f32>) -> Array1<f64> {
    let mut m = Array1::<f64>::zeros(x.ncols());
    for row in x.rows() {
        for (a, &v) in m.iter_mut().zip(row) {
            *a += v as f64;
        }
    }
    m / x.nrows().max(1) as f64
}

/// Covariance of the rows of `x` around their mean, divided by n − `ddof`
/// (ddof = 0: maximum-likelihood estimate; ddof = 1: unbiased).
pub fn covariance(x: ArrayView2<f32>, ddof: usize) -> Array2<f64> {
    let mu = mean(x);
    let c = centred(x, mu.view());
    let denom = (x.nrows().saturating_sub(ddof)).max(1) as f64;
    c.t().dot(&c) / denom
}

/// `x − μ` row by row, in f64.
pub fn centred(x: ArrayView2<f32>, mu: ArrayView1<f64>) -> Array2<f64> {
    let mut c = x.mapv(|v| v as f64);
    c -= &mu;
    c
}

/// Mean squared norm E‖x‖² of the rows of `x`.
pub fn second_moment(x: ArrayView2<f32>) -> f64 {
    let total: f64 = x
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>())
        .sum();
    total / x.nrows().max(1) as f64
}

/// An ndarray matrix as a nalgebra matrix.
pub fn to_na(a: &Array2<f64>) -> DMatrix<f64> {
    DMatrix::from_fn(a.nrows(), a.ncols(), |i, j| a[[i, j]])
}

/// A nalgebra matrix as an ndarray matrix.
pub fn from_na(a: &DMatrix<f64>) -> Array2<f64> {
    Array2::from_shape_fn((a.nrows(), a.ncols()), |(i, j)| a[(i, j)])
}

/// Symmetric part (A + Aᵀ)/2, to remove rounding asymmetry before a decomposition.
pub fn symmetrize(a: &DMatrix<f64>) -> DMatrix<f64> {
    (a + a.transpose()) * 0.5
}

/// Principal square root of a symmetric positive semi-definite matrix, by symmetric
/// eigendecomposition: U diag(√max(λ, 0)) Uᵀ.
pub fn sqrtm_psd(a: &DMatrix<f64>) -> DMatrix<f64> {
    let eig = symmetrize(a).symmetric_eigen();
    let sqrt_vals = eig.eigenvalues.map(|l| l.max(0.0).sqrt());
    &eig.eigenvectors * DMatrix::from_diagonal(&sqrt_vals) * eig.eigenvectors.transpose()
}

/// A factor A with A Aᵀ = Σ for a symmetric PSD Σ: the Cholesky factor when Σ is positive
/// definite, otherwise U diag(√max(λ, 0)) (so singular, collapsed covariances still sample).
pub fn psd_factor(cov: &DMatrix<f64>) -> DMatrix<f64> {
    let sym = symmetrize(cov);
    if let Some(ch) = sym.clone().cholesky() {
        return ch.l();
    }
    let eig = sym.symmetric_eigen();
    let sqrt_vals = eig.eigenvalues.map(|l| l.max(0.0).sqrt());
    eig.eigenvectors * DMatrix::from_diagonal(&sqrt_vals)
}

/// For a positive-definite Σ (d×d) with Cholesky factor L: L⁻ᵀ (so that ‖(x − μ) L⁻ᵀ‖² is the
/// squared Mahalanobis distance) and the Gaussian normaliser −½(d ln 2π + ln det Σ);
/// `None` when Σ is not positive definite.
pub fn gaussian_whitener(cov: &Array2<f64>) -> Option<(Array2<f64>, f64)> {
    let d = cov.nrows();
    let l = symmetrize(&to_na(cov)).cholesky()?.l();
    let log_det = 2.0 * l.diagonal().iter().map(|v| v.ln()).sum::<f64>();
    let linv = l.solve_lower_triangular(&DMatrix::identity(d, d))?;
    let log_norm = -0.5 * (d as f64 * (2.0 * std::f64::consts::PI).ln() + log_det);
    Some((from_na(&linv.transpose()), log_norm))
}

/// Squared row norms ‖x_i‖² in f64.
pub fn row_sq_norms(x: ArrayView2<f64>) -> Array1<f64> {
    x.map_axis(Axis(1), |r| r.dot(&r))
}

/// Squared Euclidean distances between every row of `a` and every row of `b` (one GEMM),
/// given their squared norms; clamped at 0 against rounding.
pub fn sq_dist_block(
    a: ArrayView2<f64>,
    a_norms: ArrayView1<f64>,
    b: ArrayView2<f64>,
    b_norms: ArrayView1<f64>,
) -> Array2<f64> {
    let mut d = Array2::<f64>::zeros((a.nrows(), b.nrows()));
    ndarray::linalg::general_mat_mul(-2.0, &a, &b.t(), 0.0, &mut d);
    for (i, mut row) in d.rows_mut().into_iter().enumerate() {
        let an = a_norms[i];
        for (v, &bn) in row.iter_mut().zip(b_norms) {
            *v = (*v + an + bn).max(0.0);
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn covariance_matches_hand_computation() {
        let x = array![[1.0f32, 2.0], [3.0, 0.0], [5.0, 4.0]];
        let c = covariance(x.view(), 1);
        // means (3, 2); deviations (-2,0),(0,-2),(2,2)
        assert!((c[[0, 0]] - 4.0).abs() < 1e-12);
        assert!((c[[1, 1]] - 4.0).abs() < 1e-12);
        assert!((c[[0, 1]] - 2.0).abs() < 1e-12);
    }

    #[test]
    fn sqrtm_squares_back() {
        let a = DMatrix::from_row_slice(2, 2, &[2.0, 0.5, 0.5, 1.0]);
        let r = sqrtm_psd(&a);
        assert!((&r * &r - &a).abs().max() < 1e-12);
        let f = psd_factor(&a);
        assert!((&f * f.transpose() - &a).abs().max() < 1e-12);
        let singular = DMatrix::from_row_slice(2, 2, &[1.0, 1.0, 1.0, 1.0]);
        let f = psd_factor(&singular);
        assert!((&f * f.transpose() - &singular).abs().max() < 1e-12);
    }
}
