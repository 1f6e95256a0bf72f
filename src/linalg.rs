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
    let mut m = vec![0.0f64; x.ncols()];
    for row in x.rows() {
        match row.as_slice() {
            Some(r) => add_row(&mut m, r),
            None => add_row(&mut m, &row.to_vec()),
        }
    }
    Array1::from(m) / x.nrows().max(1) as f64
}

/// acc += row, in f64.
#[inline]
fn add_row(acc: &mut [f64], row: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(row) {
        *a += v as f64;
    }
}

/// Covariance of the rows of `x` around their mean, divided by n − `ddof`
/// (ddof = 0: maximum-likelihood estimate; ddof = 1: unbiased).
pub fn covariance(x: ArrayView2<f32>, ddof: usize) -> Array2<f64> {
    let mu = mean(x);
    let c = centred(x, mu.view());
    let denom = (x.nrows().saturating_sub(ddof)).max(1) as f64;
    c.t().dot(&c) / denom
}

/// Rows per f32 product in [`covariance_gemm`]: each f32 accumulation runs over at most this
/// many terms (error ≤ γ₆₄ ≈ 3.8e-6 relative to Σ|x′ᵢ||y′ᵢ| per block); blocks add in f64.
const GRAM_ROWS: usize = 64;
/// Rows per parallel task of [`covariance_gemm`] (fixed, so the sum does not depend on the
/// thread count).
const GRAM_TASK: usize = 1024;

/// The mean (f64) and [`covariance`] of the rows of `x` in one pass, the covariance by the
/// project's f32 GEMM. Rows are shifted by a pilot centre s (the mean of the first 64 rows) and
/// rounded to f32; G = Σ(x − s)(x − s)ᵀ is summed in blocks of 64 rows (f32 products, blocks
/// added in f64) and S = Σ(x − s) in f64; then μ = s + S/n and Σ = (G − S Sᵀ/n)/(n − ddof),
/// where S Sᵀ/n is about 1/64 of G (so little cancels). Each entry is within about
/// 4e-6·Σ|x′ᵢ||y′ᵢ|/(n − ddof) of the f64 value (typically 1e-8 relative): for metrics on large
/// sets, where `covariance` (f64 products, separate mean pass) is 3–4× slower.
pub fn moments_gemm(x: ArrayView2<f32>, ddof: usize) -> (Array1<f64>, Array2<f64>) {
    use crate::nn::gemm::{Epilogue, PackedB, matmul};
    use rayon::prelude::*;
    let (n, d) = x.dim();
    let pilot = mean(x.slice(ndarray::s![..n.min(GRAM_ROWS), ..])).to_vec();
    let tasks: Vec<(Vec<f64>, Vec<f64>)> = (0..n.div_ceil(GRAM_TASK))
        .into_par_iter()
        .map(|t| {
            let mut gram = vec![0.0f64; d * d];
            let mut sum = vec![0.0f64; d];
            let mut block = vec![0.0f32; GRAM_ROWS * d];
            let mut out = vec![0.0f32; d * d];
            let mut packed = PackedB::new();
            let end = ((t + 1) * GRAM_TASK).min(n);
            for r0 in (t * GRAM_TASK..end).step_by(GRAM_ROWS) {
                let rows = GRAM_ROWS.min(end - r0);
                for (i, dst) in block.chunks_exact_mut(d).take(rows).enumerate() {
                    let row = x.row(r0 + i);
                    match row.as_slice() {
                        Some(src) => shift_row(src, &pilot, dst, &mut sum),
                        None => shift_row(&row.to_vec(), &pilot, dst, &mut sum),
                    }
                }
                let block = &block[..rows * d];
                packed.pack(block, rows, d, false);
                matmul(d, rows, block, true, &packed, &mut out, Epilogue::None);
                for (a, &v) in gram.iter_mut().zip(&out) {
                    *a += v as f64;
                }
            }
            (gram, sum)
        })
        .collect();
    let mut g = Array2::<f64>::zeros((d, d));
    let mut s = Array1::<f64>::zeros(d);
    for (tg, ts) in tasks {
        g.iter_mut().zip(tg).for_each(|(a, v)| *a += v);
        s.iter_mut().zip(ts).for_each(|(a, v)| *a += v);
    }
    let nf = n.max(1) as f64;
    let denom = (n.saturating_sub(ddof)).max(1) as f64;
    let ss = Array2::from_shape_fn((d, d), |(i, j)| s[i] * s[j] / nf);
    // G is symmetric up to rounding; make Σ exactly so.
    let c = (&g + &g.t()) / 2.0 - ss;
    let mu = Array1::from(pilot) + &s / nf;
    (mu, c / denom)
}

/// dst = (src − s) rounded to f32; sum += src − s in f64.
#[inline]
fn shift_row(src: &[f32], shift: &[f64], dst: &mut [f32], sum: &mut [f64]) {
    for (((o, &v), &m), a) in dst.iter_mut().zip(src).zip(shift).zip(sum) {
        let t = v as f64 - m;
        *a += t;
        *o = t as f32;
    }
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
    use ndarray::{Array2, array};

    #[test]
    fn covariance_matches_hand_computation() {
        let x = array![[1.0f32, 2.0], [3.0, 0.0], [5.0, 4.0]];
        let c = covariance(x.view(), 1);
        // means (3, 2); deviations (-2,0),(0,-2),(2,2)
        assert!((c[[0, 0]] - 4.0).abs() < 1e-12);
        assert!((c[[1, 1]] - 4.0).abs() < 1e-12);
        assert!((c[[0, 1]] - 2.0).abs() < 1e-12);
    }

    /// The one-pass f32-GEMM moments agree with the f64 ones, with a far-off mean and a row
    /// count that leaves partial blocks.
    #[test]
    fn gemm_moments_match_f64_moments() {
        let x = Array2::from_shape_fn((2500, 7), |(i, j)| {
            let h = ((i * 31 + j * 17) * 2_654_435_761usize) % 1_000_003;
            (h as f64 / 1_000_003.0 * 4.0 - 2.0 + 50.0 + j as f64) as f32
        });
        let (mu, c) = moments_gemm(x.view(), 1);
        let (mu64, c64) = (mean(x.view()), covariance(x.view(), 1));
        for (a, b) in mu.iter().zip(&mu64) {
            assert!((a - b).abs() < 1e-12 * b.abs());
        }
        let scale = c64.diag().iter().copied().fold(0.0, f64::max);
        for (a, b) in c.iter().zip(&c64) {
            assert!((a - b).abs() < 1e-6 * scale, "{a} vs {b}");
        }
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
