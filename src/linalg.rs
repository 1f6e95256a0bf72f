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

/// Rows per f32 product in [`moments_gemm`]: each f32 accumulation runs over at most this
/// many terms (error ≤ γ₁₂₈ ≈ 7.6e-6 relative to Σ|x′ᵢ||y′ᵢ| per block); blocks add in f64.
/// 128 rather than 64 rows: 10 000 × 64 moments 15% faster (fewer calls, less packing).
const GRAM_ROWS: usize = 128;
/// Rows per parallel task of [`moments_gemm`] (fixed, so the sum does not depend on the
/// thread count).
const GRAM_TASK: usize = 1024;

/// The mean (f64) and [`covariance`] of the rows of `x` in one pass, the covariance by the
/// project's f32 GEMM (upper triangle only). Rows are shifted by a pilot centre s (the mean of
/// the first 128 rows, rounded to f32) in f32; G = Σ(x − s)(x − s)ᵀ is summed in blocks of 128
/// rows (f32 products, blocks added in f64) and S = Σ(x − s) in f64; then μ = s + S/n and
/// Σ = (G − S Sᵀ/n)/(n − ddof), where S Sᵀ/n is about 1/128 of G (so little cancels). Each entry
/// is within about 8e-6·Σ|x′ᵢ||y′ᵢ|/(n − ddof) of the f64 value (typically 1e-8 relative): for metrics on large
/// sets, where `covariance` (f64 products, separate mean pass) is 3–4× slower.
pub fn moments_gemm(x: ArrayView2<f32>, ddof: usize) -> (Array1<f64>, Array2<f64>) {
    use crate::nn::gemm::{PackedB, matmul_upper};
    use rayon::prelude::*;
    let (n, d) = x.dim();
    // The pilot centre, rounded to f32: rows are shifted by exactly this vector (one rounding
    // per entry, in f32), and S sums the shifted values that G uses.
    let pilot: Vec<f32> = mean(x.slice(ndarray::s![..n.min(GRAM_ROWS), ..]))
        .iter()
        .map(|&v| v as f32)
        .collect();
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
                let src = x.slice(ndarray::s![r0..r0 + rows, ..]);
                let block = &mut block[..rows * d];
                match src.as_slice() {
                    Some(src) => shift_rows(src, &pilot, block, &mut sum),
                    None => shift_rows(
                        &src.iter().copied().collect::<Vec<_>>(),
                        &pilot,
                        block,
                        &mut sum,
                    ),
                }
                packed.pack(block, rows, d, false);
                matmul_upper(d, rows, block, true, &packed, &mut out);
                add_upper(&out, &mut gram, d);
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
    // G's upper triangle holds the sums; Σ is symmetric by construction.
    let c = Array2::from_shape_fn((d, d), |(i, j)| {
        let (i, j) = (i.min(j), i.max(j));
        g[[i, j]] - s[i] * s[j] / nf
    });
    let mu = Array1::from_iter(pilot.iter().map(|&v| v as f64)) + &s / nf;
    (mu, c / denom)
}

crate::nn::simd::simd_dispatch! {
    /// For rows of `src` (row-major, `shift.len()` columns): dst = src − shift in f32, and
    /// sum += dst in f64. Columns go in groups of 8 whose f64 sums stay in registers over all
    /// rows.
    fn shift_rows(src: &[f32], shift: &[f32], dst: &mut [f32], sum: &mut [f64]) {
        let d = shift.len();
        let rows = src.len() / d.max(1);
        let mut c0 = 0;
        while c0 < d {
            let w = (d - c0).min(8);
            let mut acc = [0.0f64; 8];
            let mut sh = [0.0f32; 8];
            sh[..w].copy_from_slice(&shift[c0..c0 + w]);
            for r in 0..rows {
                let at = r * d + c0;
                if w == 8 {
                    let (i, o): (&[f32; 8], &mut [f32; 8]) = (
                        src[at..at + 8].try_into().expect("8 values"),
                        (&mut dst[at..at + 8]).try_into().expect("8 values"),
                    );
                    for l in 0..8 {
                        let t = i[l] - sh[l];
                        o[l] = t;
                        acc[l] += t as f64;
                    }
                } else {
                    for l in 0..w {
                        let t = src[at + l] - sh[l];
                        dst[at + l] = t;
                        acc[l] += t as f64;
                    }
                }
            }
            for (s, a) in sum[c0..c0 + w].iter_mut().zip(acc) {
                *s += a;
            }
            c0 += w;
        }
    }
}

crate::nn::simd::simd_dispatch! {
    /// gram[i][j] += out[i][j] in f64 for j ≥ i (d × d, row-major).
    fn add_upper(out: &[f32], gram: &mut [f64], d: usize) {
        for (i, (g, o)) in gram.chunks_exact_mut(d).zip(out.chunks_exact(d)).enumerate() {
            for (a, &v) in g[i..].iter_mut().zip(&o[i..]) {
                *a += v as f64;
            }
        }
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

    /// The hand-written eigenvalues agree with nalgebra's to 1e-12 relative to the spectral
    /// radius: random symmetric and SPD matrices of several sizes, a diagonal one, one with a
    /// repeated eigenvalue, a rank-one one, and the 1 × 1 and 2 × 2 cases.
    #[test]
    fn symmetric_eigenvalues_match_nalgebra() {
        let mut rng = crate::rng::stream(9, 0, crate::rng::Role::Metrics);
        let mut cases: Vec<DMatrix<f64>> = Vec::new();
        for n in [1usize, 2, 3, 5, 17, 64, 70] {
            let g = crate::distributions::standard_normals(n, n, &mut rng);
            let g = to_na(&g);
            cases.push(&g + g.transpose());
            cases.push(&g * g.transpose());
        }
        cases.push(DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![
            3.0, -1.0, 2.0, 0.0,
        ])));
        let u = to_na(&crate::distributions::standard_normals(6, 1, &mut rng));
        cases.push(&u * u.transpose());
        let q = to_na(&crate::distributions::standard_normals(8, 8, &mut rng))
            .qr()
            .q();
        let spectrum = nalgebra::DVector::from_vec(vec![2.0, 2.0, 2.0, 1.0, 5.0, 5.0, -3.0, 0.5]);
        cases.push(&q * DMatrix::from_diagonal(&spectrum) * q.transpose());
        for a in &cases {
            let mine = symmetric_eigenvalues(a);
            let mut theirs: Vec<f64> = symmetrize(a)
                .symmetric_eigenvalues()
                .iter()
                .copied()
                .collect();
            theirs.sort_by(f64::total_cmp);
            let scale = theirs.iter().fold(1e-300f64, |m, v| m.max(v.abs()));
            for (x, y) in mine.iter().zip(&theirs) {
                assert!(
                    (x - y).abs() <= 1e-12 * scale,
                    "n = {}: {mine:?} vs {theirs:?}",
                    a.nrows()
                );
            }
            assert_eq!(mine.len(), a.nrows());
        }
    }

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

/// Eigenvalues (ascending) of the symmetric part of `a`: Householder reduction to tridiagonal form
/// (Golub & Van Loan, Algorithm 8.3.1) and the implicit QL algorithm with Wilkinson shifts on the
/// tridiagonal matrix (`tqli` of Numerical Recipes, eigenvalues only). Written out because the
/// Fréchet distance needs only the eigenvalues of one 64 × 64 matrix per call and nalgebra's
/// `symmetric_eigenvalues` took 224 µs of a 1.4 ms call; this takes about 40 µs (10 000 × 64
/// points, this 2-core VM), the reduction's rank-2 updates running 4 f64 lanes wide.
pub fn symmetric_eigenvalues(a: &DMatrix<f64>) -> Vec<f64> {
    let n = a.nrows();
    assert_eq!(n, a.ncols(), "a square matrix");
    let mut m: Vec<f64> = (0..n * n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            0.5 * (a[(i, j)] + a[(j, i)])
        })
        .collect();
    let (mut d, mut e) = (vec![0.0; n], vec![0.0; n]);
    tridiagonalize(&mut m, n, &mut d, &mut e);
    tridiagonal_eigenvalues(&mut d, &mut e);
    d.sort_by(f64::total_cmp);
    d
}

/// Reduces the symmetric n × n row-major `a` (overwritten) to tridiagonal form Qᵀ A Q: diagonal
/// into `d`, off-diagonal (k, k + 1) into `e[k]` (e[n − 1] = 0). At step k the reflector
/// H = I − τvvᵀ zeroes A[k+2.., k]; the trailing block B becomes B − vwᵀ − wvᵀ with p = τBv and
/// w = p − (τ pᵀv/2) v.
fn tridiagonalize(a: &mut [f64], n: usize, d: &mut [f64], e: &mut [f64]) {
    let mut v = vec![0.0; n];
    let mut w = vec![0.0; n];
    for k in 0..n.saturating_sub(2) {
        let m = n - k - 1;
        let off = k + 1;
        for (i, vi) in v[..m].iter_mut().enumerate() {
            *vi = a[(off + i) * n + k];
        }
        let norm = v[..m].iter().map(|x| x * x).sum::<f64>().sqrt();
        d[k] = a[k * n + k];
        if norm == 0.0 {
            e[k] = 0.0;
            continue;
        }
        let alpha = if v[0] > 0.0 { -norm } else { norm };
        e[k] = alpha;
        v[0] -= alpha;
        let vv: f64 = v[..m].iter().map(|x| x * x).sum();
        if vv == 0.0 {
            continue;
        }
        let tau = 2.0 / vv;
        for i in 0..m {
            let row = &a[(off + i) * n + off..(off + i) * n + n];
            w[i] = tau * dot(row, &v[..m]);
        }
        let k_coef = 0.5 * tau * dot(&w[..m], &v[..m]);
        for i in 0..m {
            w[i] -= k_coef * v[i];
        }
        for i in 0..m {
            let (vi, wi) = (v[i], w[i]);
            rank2_row(
                &mut a[(off + i) * n + off..(off + i) * n + n],
                &v[..m],
                &w[..m],
                vi,
                wi,
            );
        }
    }
    if n >= 2 {
        d[n - 2] = a[(n - 2) * n + n - 2];
        e[n - 2] = a[(n - 1) * n + n - 2];
    }
    if n >= 1 {
        d[n - 1] = a[(n - 1) * n + n - 1];
        e[n - 1] = 0.0;
    }
}

crate::nn::simd::simd_dispatch! {
    /// row −= vᵢ·w + wᵢ·v (one row of the rank-2 update of [`tridiagonalize`]).
    fn rank2_row(row: &mut [f64], v: &[f64], w: &[f64], vi: f64, wi: f64) {
        for ((r, &vj), &wj) in row.iter_mut().zip(v).zip(w) {
            *r -= vi * wj + wi * vj;
        }
    }
}

/// x · y in f64, in 4 interleaved partial sums (so that it vectorises).
fn dot(x: &[f64], y: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (xc, yc) = (x.chunks_exact(4), y.chunks_exact(4));
    let tail: f64 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in xc.zip(yc) {
        for l in 0..4 {
            acc[l] += a[l] * b[l];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Eigenvalues of the symmetric tridiagonal matrix with diagonal `d` and off-diagonal `e`
/// (e[k] couples k and k + 1; e[n − 1] unused): implicit QL with Wilkinson shifts, deflating
/// where |e[m]| ≤ ε(|d[m]| + |d[m + 1]|). Eigenvalues are left in `d` (unsorted); `e` is destroyed.
/// Plane rotations use √(f² + g²) rather than `hypot` (a libm call that made this 5× slower);
/// this is exact enough and cannot overflow for entries below 1e150.
fn tridiagonal_eigenvalues(d: &mut [f64], e: &mut [f64]) {
    let n = d.len();
    if n == 0 {
        return;
    }
    e[n - 1] = 0.0;
    for l in 0..n {
        let mut iterations = 0;
        loop {
            let mut m = l;
            while m + 1 < n {
                let dd = d[m].abs() + d[m + 1].abs();
                if e[m].abs() <= f64::EPSILON * dd {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            iterations += 1;
            if iterations > 60 {
                break; // does not happen for finite input; keep the current estimate
            }
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut r = (g * g + 1.0).sqrt();
            g = d[m] - d[l] + e[l] / (g + r.copysign(g));
            let (mut s, mut c, mut p) = (1.0f64, 1.0f64, 0.0f64);
            let mut deflated = false;
            for i in (l..m).rev() {
                let f = s * e[i];
                let b = c * e[i];
                r = (f * f + g * g).sqrt();
                e[i + 1] = r;
                if r == 0.0 {
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    deflated = true;
                    break;
                }
                let inv = 1.0 / r;
                s = f * inv;
                c = g * inv;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
            }
            if deflated {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
}
