//! Small dense linear algebra and distance kernels shared by models and metrics.
//!
//! Data live in `Array2<f32>` (rows are points); anything that accumulates is done in f64.
//! Decompositions of d×d matrices go through nalgebra; point-to-point distances go through one
//! GEMM per block (`matrixmultiply` via ndarray), using ‖x − y‖² = ‖x‖² + ‖y‖² − 2 x·y.

use crate::nn::gemm::GramBlock;
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
/// rows (f32 products, blocks added in f64) and S = Σ(x − s) in f64 (over f32 sums of 4 rows);
/// then μ = s + S/n and Σ = (G − S Sᵀ/n)/(n − ddof), where S Sᵀ/n is about 1/128 of G (so little
/// cancels). Each entry is within about 8e-6·Σ|x′ᵢ||y′ᵢ|/(n − ddof) of the f64 value (typically
/// 1e-8 relative): for metrics on large sets, where `covariance` (f64 products, separate mean
/// pass) is 3–4× slower. Each block's product prefetches the next block's rows.
pub fn moments_gemm(x: ArrayView2<f32>, ddof: usize) -> (Array1<f64>, Array2<f64>) {
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
            let mut block = GramBlock::new(d);
            let stride = block.stride();
            let mut gram = vec![0.0f64; stride * stride];
            let mut sum = vec![0.0f64; d];
            let end = ((t + 1) * GRAM_TASK).min(n);
            for r0 in (t * GRAM_TASK..end).step_by(GRAM_ROWS) {
                let rows = GRAM_ROWS.min(end - r0);
                let src = x.slice(ndarray::s![r0..r0 + rows, ..]);
                // The next block of this task, prefetched while this one's product runs (a burst
                // of prefetches here, before the shift, stalled on full miss queues).
                let next = (r0 + rows < end).then(|| {
                    let next_rows = GRAM_ROWS.min(end - r0 - rows);
                    x.slice(ndarray::s![r0 + rows..r0 + rows + next_rows, ..])
                });
                let dst = block.rows_mut(rows);
                match src.as_slice() {
                    Some(src) => shift_rows(src, &pilot, dst, stride, &mut sum),
                    None => shift_rows(
                        &src.iter().copied().collect::<Vec<_>>(),
                        &pilot,
                        dst,
                        stride,
                        &mut sum,
                    ),
                }
                let ahead = next.as_ref().and_then(|v| v.as_slice()).unwrap_or(&[]);
                block.add_upper_gram(&mut gram, ahead);
            }
            (gram, sum)
        })
        .collect();
    let stride = GramBlock::new(d).stride();
    let mut g = vec![0.0f64; stride * stride];
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
        g[i * stride + j] - s[i] * s[j] / nf
    });
    let mu = Array1::from_iter(pilot.iter().map(|&v| v as f64)) + &s / nf;
    (mu, c / denom)
}

crate::nn::simd::simd_dispatch! {
    /// For rows of `src` (row-major, `shift.len()` columns): dst = src − shift in f32, written
    /// `stride` values apart (the columns past `shift.len()` are left alone), and sum += dst,
    /// each group of 4 rows added in f32 first ((t₀ + t₁) + (t₂ + t₃): two roundings, ≤ 2.4e-7 of
    /// Σ|tᵢ|). Rows are read in order (each cache line of `src` once). Adding every row into the
    /// f64 sums (four conversions, a load, an add and a store per four values) took a fifth of a
    /// 10 000 × 64 Fréchet distance once the rows arrived prefetched.
    fn shift_rows(src: &[f32], shift: &[f32], dst: &mut [f32], stride: usize, sum: &mut [f64]) {
        let d = shift.len();
        let rows = src.len() / d.max(1);
        let mut r0 = 0;
        while r0 < rows {
            let g = (rows - r0).min(4);
            let (i, o) = (&src[r0 * d..(r0 + g) * d], &mut dst[r0 * stride..(r0 + g) * stride]);
            if g == 4 {
                let (i01, i23) = i.split_at(2 * d);
                let (i0, i1) = i01.split_at(d);
                let (i2, i3) = i23.split_at(d);
                let (o01, o23) = o.split_at_mut(2 * stride);
                let (o0, o1) = o01.split_at_mut(stride);
                let (o2, o3) = o23.split_at_mut(stride);
                let (i, mut o) = ([i0, i1, i2, i3], [o0, o1, o2, o3]);
                // Eight columns at a time through fixed-size arrays: a plain loop over the
                // columns compiled to 4-lane code guarded by aliasing checks, with a scalar
                // fallback that took a third of this function's time.
                let full = d - d % 8;
                for j in (0..full).step_by(8) {
                    let c: &[f32; 8] = shift[j..j + 8].try_into().expect("8 values");
                    let mut t = [[0.0f32; 8]; 4];
                    for (t, i) in t.iter_mut().zip(&i) {
                        let i: &[f32; 8] = i[j..j + 8].try_into().expect("8 values");
                        for l in 0..8 {
                            t[l] = i[l] - c[l];
                        }
                    }
                    for (t, o) in t.iter().zip(o.iter_mut()) {
                        o[j..j + 8].copy_from_slice(t);
                    }
                    let s: &mut [f64; 8] = (&mut sum[j..j + 8]).try_into().expect("8 values");
                    for l in 0..8 {
                        s[l] += ((t[0][l] + t[1][l]) + (t[2][l] + t[3][l])) as f64;
                    }
                }
                for j in full..d {
                    let t = i.map(|i| i[j] - shift[j]);
                    for (t, o) in t.iter().zip(o.iter_mut()) {
                        o[j] = *t;
                    }
                    sum[j] += ((t[0] + t[1]) + (t[2] + t[3])) as f64;
                }
            } else {
                for (i, o) in i.chunks_exact(d).zip(o.chunks_exact_mut(stride)) {
                    for (((&v, &c), o), s) in i.iter().zip(shift).zip(o.iter_mut()).zip(sum.iter_mut()) {
                        let t = v - c;
                        *o = t;
                        *s += t as f64;
                    }
                }
            }
            r0 += g;
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
    /// repeated eigenvalue, rank-one and rank-10 ones, a graded spectrum, SPD matrices scaled by
    /// 10^±120, and the 1 × 1 and 2 × 2 cases.
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
        // Rank 10 of 64 (54 zero eigenvalues, as Σy^½ Σx Σy^½ for a singular Σy), and a graded
        // spectrum over 12 decades.
        let g = to_na(&crate::distributions::standard_normals(64, 10, &mut rng));
        cases.push(&g * g.transpose());
        let q64 = to_na(&crate::distributions::standard_normals(64, 64, &mut rng))
            .qr()
            .q();
        let graded = nalgebra::DVector::from_fn(64, |i, _| 10f64.powf(-12.0 * i as f64 / 63.0));
        cases.push(&q64 * DMatrix::from_diagonal(&graded) * q64.transpose());
        let u = to_na(&crate::distributions::standard_normals(6, 1, &mut rng));
        cases.push(&u * u.transpose());
        let q = to_na(&crate::distributions::standard_normals(8, 8, &mut rng))
            .qr()
            .q();
        let spectrum = nalgebra::DVector::from_vec(vec![2.0, 2.0, 2.0, 1.0, 5.0, 5.0, -3.0, 0.5]);
        cases.push(&q * DMatrix::from_diagonal(&spectrum) * q.transpose());
        // Far from unit scale (the QL step squares and cubes entries).
        let g = to_na(&crate::distributions::standard_normals(17, 17, &mut rng));
        cases.push(&g * g.transpose() * 1e120);
        cases.push(&g * g.transpose() * 1e-120);
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

    /// The one-pass f32-GEMM moments agree with the f64 ones, with a far-off mean, a row
    /// count that leaves partial blocks, and widths below, at and past the 16-column panels.
    #[test]
    fn gemm_moments_match_f64_moments() {
        for d in [7, 16, 40, 64, 70] {
            let x = Array2::from_shape_fn((2500, d), |(i, j)| {
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
                assert!((a - b).abs() < 1e-6 * scale, "d = {d}: {a} vs {b}");
            }
        }
    }
}

/// The nearest (Frobenius) symmetric matrix to `a` with every eigenvalue at least `floor`:
/// V max(Λ, floor) Vᵀ from the eigen-decomposition of the symmetric part; `a` itself (bitwise)
/// when its smallest eigenvalue is already at least `floor`.
pub fn eigenvalue_floor(a: &Array2<f64>, floor: f64) -> Array2<f64> {
    let sym = symmetrize(&to_na(a));
    let eig = sym.clone().symmetric_eigen();
    if eig.eigenvalues.iter().all(|&l| l >= floor) {
        return a.clone();
    }
    let lambda = eig.eigenvalues.map(|l| l.max(floor));
    let v = &eig.eigenvectors;
    from_na(&(v * DMatrix::from_diagonal(&lambda) * v.transpose()))
}

/// Eigenvalues (ascending) of the symmetric part of `a`: Householder reduction to tridiagonal form
/// (Golub & Van Loan, Algorithm 8.3.1) on the upper triangle, then the square-root-free QL
/// algorithm of Pal, Walker and Kahan with Wilkinson shifts on the tridiagonal matrix (LAPACK's
/// `dsterf`). Written out because the Fréchet distance needs only the eigenvalues of one
/// 64 × 64 matrix per call and nalgebra's `symmetric_eigenvalues` took 224 µs of a 1.4 ms call;
/// this takes about 130 µs (64 × 64, this 2-core VM).
pub fn symmetric_eigenvalues(a: &DMatrix<f64>) -> Vec<f64> {
    let n = a.nrows();
    assert_eq!(n, a.ncols(), "a square matrix");
    // Scaled by a power of two near 1/max|aᵢⱼ| (exact both ways): the Householder step squares
    // entries and the QL step cubes them.
    let a = a.as_slice(); // column-major: a(i, j) = a[j·n + i]
    let largest = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let scale = if largest > 0.0 && largest.is_finite() {
        2f64.powi(-(largest.log2().round() as i32))
    } else {
        1.0
    };
    let mut m = vec![0.0; n * n];
    for (i, row) in m.chunks_exact_mut(n.max(1)).enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = 0.5 * (scale * a[j * n + i] + scale * a[i * n + j]);
        }
    }
    let (mut d, mut e) = (vec![0.0; n], vec![0.0; n]);
    tridiagonalize(&mut m, n, &mut d, &mut e);
    tridiagonal_eigenvalues(&mut d, &mut e);
    for v in d.iter_mut() {
        *v /= scale;
    }
    d.sort_by(f64::total_cmp);
    d
}

crate::nn::simd::simd_dispatch! {
    /// Reduces the symmetric n × n row-major `a` to tridiagonal form Qᵀ A Q, reading and
    /// updating only its upper triangle (j ≥ i): diagonal into `d`, off-diagonal (k, k + 1)
    /// into `e[k]` (e[n − 1] = 0). At step k the reflector H = I − τvvᵀ zeroes A[k, k+2..]; the
    /// trailing block B becomes B − vwᵀ − wvᵀ with p = τBv and w = p − (τ pᵀv/2) v. Bv is
    /// formed from the upper triangle row by row (a dot product and an axpy per row): 2m²
    /// flops per step for an m × m block instead of 3m² with the full square.
    fn tridiagonalize(a: &mut [f64], n: usize, d: &mut [f64], e: &mut [f64]) {
        let mut v = vec![0.0; n];
        let mut w = vec![0.0; n];
        for k in 0..n.saturating_sub(2) {
            let off = k + 1;
            let m = n - off;
            let (v, w) = (&mut v[..m], &mut w[..m]);
            v.copy_from_slice(&a[k * n + off..k * n + n]);
            d[k] = a[k * n + k];
            let norm = dot(v, v).sqrt();
            if norm == 0.0 {
                e[k] = 0.0;
                continue;
            }
            let alpha = if v[0] > 0.0 { -norm } else { norm };
            e[k] = alpha;
            v[0] -= alpha;
            let vv = dot(v, v);
            if vv == 0.0 {
                continue;
            }
            let tau = 2.0 / vv;
            // w = B v from the rows B[i, i..] of the upper triangle.
            w.fill(0.0);
            for i in 0..m {
                let row = &a[(off + i) * n + off + i..(off + i) * n + n];
                let vi = v[i];
                let mut acc = row[0] * vi;
                for (&r, wj) in row[1..].iter().zip(&mut w[i + 1..]) {
                    *wj += vi * r;
                }
                acc += dot(&row[1..], &v[i + 1..]);
                w[i] += acc;
            }
            let k_coef = 0.5 * tau * tau * dot(w, v);
            for (wi, &vi) in w.iter_mut().zip(v.iter()) {
                *wi = tau * *wi - k_coef * vi;
            }
            for i in 0..m {
                let (vi, wi) = (v[i], w[i]);
                let row = &mut a[(off + i) * n + off + i..(off + i) * n + n];
                for ((r, &vj), &wj) in row.iter_mut().zip(&v[i..]).zip(&w[i..]) {
                    *r -= vi * wj + wi * vj;
                }
            }
        }
        if n >= 2 {
            d[n - 2] = a[(n - 2) * n + n - 2];
            e[n - 2] = a[(n - 2) * n + n - 1];
        }
        if n >= 1 {
            d[n - 1] = a[(n - 1) * n + n - 1];
            e[n - 1] = 0.0;
        }
    }
}

/// x · y in f64, in 4 interleaved partial sums (so that it vectorises).
#[inline(always)]
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
    (acc[0] + acc[2]) + (acc[1] + acc[3]) + tail
}

/// Eigenvalues of the symmetric tridiagonal matrix with diagonal `d` and off-diagonal `e`
/// (e[k] couples k and k + 1; e[n − 1] unused), left in `d` (unsorted); `e` is destroyed. The
/// Pal–Walker–Kahan QL iteration of LAPACK's `dsterf`, which works on the squares e² (no square
/// root in the inner loop), with Wilkinson shifts, 2 × 2 blocks solved directly (LAPACK's
/// `dlae2`), and deflation where e[m]² ≤ ε²|d[m] d[m + 1]| or e[m]² ≤ (ε‖T‖)². The caller
/// scales T near unit size (the step below squares and cubes entries).
///
/// The inner step is rearranged to shorten its dependent chain (the loop is latency-bound):
/// with r = p + e², `dsterf`'s c = p/r, s = e²/r, γ′ = c(α − σ) − sγ and p′ = γ′²/c become
/// u = p(α − σ) − e²γ, γ′ = u/r and p′ = u²/(r p): p′ and γ′ are two independent divisions
/// after u, where `dsterf` chains the division for c (and s) into the one for p′. On the 64 × 64
/// matrix of the Fréchet benchmark this took the eigenvalues from 134 to 110 µs.
fn tridiagonal_eigenvalues(d: &mut [f64], e: &mut [f64]) {
    let n = d.len();
    if n < 2 {
        return;
    }
    let eps2 = f64::EPSILON * f64::EPSILON;
    let norm = d
        .iter()
        .chain(&e[..n - 1])
        .fold(0.0f64, |m, v| m.max(v.abs()));
    let floor = (f64::EPSILON * norm).powi(2);
    let e2 = e;
    for v in e2.iter_mut() {
        *v *= *v;
    }
    e2[n - 1] = 0.0;
    let mut iterations = 0;
    let mut l = 0;
    while l < n {
        let mut m = l;
        while m + 1 < n {
            let t = e2[m];
            if t <= eps2 * (d[m] * d[m + 1]).abs() || t <= floor {
                e2[m] = 0.0;
                break;
            }
            m += 1;
        }
        if m == l {
            l += 1;
            continue;
        }
        if m == l + 1 {
            let (r1, r2) = eigenvalues_2x2(d[l], e2[l].sqrt(), d[l + 1]);
            d[l] = r1;
            d[l + 1] = r2;
            e2[l] = 0.0;
            l += 2;
            continue;
        }
        iterations += 1;
        if iterations > 30 * n {
            break; // does not happen for finite input; keep the current estimates
        }
        // Wilkinson shift from the leading 2 × 2 block.
        let p = d[l];
        let rte = e2[l].sqrt();
        let sg = (d[l + 1] - p) / (2.0 * rte);
        let r = sg.hypot(1.0);
        let sigma = p - rte / (sg + r.copysign(sg));
        // (c, s) of the previous step are kept as (p, r) and e² of that step: c = p/r,
        // s = e²/r.
        let (mut prev_p, mut prev_r, mut prev_bb) = (1.0f64, 1.0f64, 0.0f64);
        let mut gamma = d[m] - sigma;
        let mut p = gamma * gamma;
        for i in (l..m).rev() {
            let bb = e2[i];
            let r = p + bb;
            if i != m - 1 {
                e2[i + 1] = prev_bb / prev_r * r;
            }
            let alpha = d[i];
            let old_gamma = gamma;
            let u = p * (alpha - sigma) - bb * old_gamma;
            gamma = u / r;
            d[i + 1] = old_gamma + (alpha - gamma);
            let next = if p != 0.0 {
                (u * u) / (r * p)
            } else {
                // c = 0: dsterf's p′ = c_prev e².
                prev_p / prev_r * bb
            };
            (prev_p, prev_r, prev_bb) = (p, r, bb);
            p = next;
        }
        e2[l] = prev_bb / prev_r * p;
        d[l] = sigma + gamma;
    }
}

/// Eigenvalues (larger first) of the symmetric 2 × 2 matrix [[a, b], [b, c]], as LAPACK's
/// `dlae2`: the smaller one from the determinant, so that it keeps its relative accuracy.
fn eigenvalues_2x2(a: f64, b: f64, c: f64) -> (f64, f64) {
    let sm = a + c;
    let adf = (a - c).abs();
    let ab = (2.0 * b).abs();
    let (acmx, acmn) = if a.abs() > c.abs() { (a, c) } else { (c, a) };
    let rt = adf.hypot(ab);
    if sm == 0.0 {
        return (0.5 * rt, -0.5 * rt);
    }
    let rt1 = 0.5 * (sm + rt.copysign(sm));
    let rt2 = (acmx / rt1) * acmn - (b / rt1) * b;
    (rt1, rt2)
}
