//! Distances between two samples that need no density: energy distance, sliced Wasserstein and
//! the Fréchet distance (MMD is in [`super::kernel`]).

use super::kernel::{joint_centre, lane_sum};
use super::knn::{Pairs, Prepared, pair_sums};
use crate::linalg::{moments_gemm, sqrtm_psd, symmetric_eigenvalues, to_na};
use crate::nn::simd::simd_dispatch;
use crate::rng::Stream;
use ndarray::{Array2, ArrayView2};
use rand_distr::{Distribution as _, StandardNormal};

/// Energy distance (Székely & Rizzo 2013) between the empirical distributions of `x` and `y`:
/// 2 E‖X − Y‖ − E‖X − X′‖ − E‖Y − Y′‖ with every expectation a mean over all pairs (the
/// V-statistic, as `dcor.energy_distance`; in 1-D it is the square of
/// `scipy.stats.energy_distance`). Distances come from f32 tiles of centred coordinates (see
/// [`super::knn::pair_sums`]): each is within √B of exact, B the tile's squared-distance bound,
/// and summed in f64.
pub fn energy_distance(x: ArrayView2<f32>, y: ArrayView2<f32>) -> f64 {
    let (m, n) = (x.nrows() as f64, y.nrows() as f64);
    if m == 0.0 || n == 0.0 {
        return f64::NAN;
    }
    let centre = joint_centre(x, y);
    let (px, py) = (Prepared::new(x, &centre), Prepared::new(y, &centre));
    let pass = |a: &Prepared, b: &Prepared, pairs| {
        let pmax = b.max_bound();
        let f = |i: usize, j0: usize, row: &[f32], s: &mut [f64]| {
            // Below the cut, √ of an f32 distance could be off by up to √B: redo those exactly.
            // Above it the error is at most B/(2√(1023 B)) < √B/60.
            let cut = 1024.0 * (a.bound(i) + pmax);
            if root_sums(row, cut, s) {
                for (j, &v) in row.iter().enumerate() {
                    if v < cut {
                        s[0] += a.exact_sq(i, b, j0 + j).sqrt();
                    }
                }
            }
        };
        pair_sums(a, b, pairs, false, 1, f)[0]
    };
    // Σ_{i≠j} = 2 Σ_{i<j}; the diagonal adds 0.
    2.0 * pass(&px, &py, Pairs::All) / (m * n)
        - 2.0 * pass(&px, &px, Pairs::Distinct) / (m * m)
        - 2.0 * pass(&py, &py, Pairs::Distinct) / (n * n)
}

/// sums[0] += Σ √v over the squared distances v ≥ `cut`; true when some are below it.
fn root_sums(row: &[f32], cut: f32, sums: &mut [f64]) -> bool {
    let mut below = false;
    root_sums_into(row, cut, sums, &mut below);
    below
}

simd_dispatch! {
    fn root_sums_into(row: &[f32], cut: f32, sums: &mut [f64], below: &mut bool) {
        sums[0] += lane_sum(row, |v| if v >= cut { v.sqrt() } else { 0.0 });
        *below = row.iter().any(|&v| v < cut);
    }
}

/// `count` directions drawn uniformly on the unit sphere of ℝ^d (rows), from `rng`.
pub fn random_directions(count: usize, d: usize, rng: &mut Stream) -> Array2<f64> {
    let mut dirs: Array2<f64> =
        Array2::from_shape_simple_fn((count, d), || StandardNormal.sample(rng));
    for mut row in dirs.rows_mut() {
        let norm = row.dot(&row).sqrt();
        row.mapv_inplace(|v| v / norm);
    }
    dirs
}

/// W_p^p between two 1-D empirical distributions: ∫₀¹ |F⁻¹(u) − G⁻¹(u)|^p du over the merged
/// breakpoints of the two quantile functions (sorted matching when the sizes are equal).
pub fn wasserstein_1d_pow(mut a: Vec<f64>, mut b: Vec<f64>, p: f64) -> f64 {
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (m, n) = (a.len(), b.len());
    let (mut i, mut j) = (0, 0);
    let (mut u, mut total) = (0.0f64, 0.0f64);
    while i < m && j < n {
        // Quantile levels where a's and b's steps end.
        let (ua, ub) = ((i + 1) as f64 / m as f64, (j + 1) as f64 / n as f64);
        let next = ua.min(ub);
        total += (next - u) * (a[i] - b[j]).abs().powf(p);
        u = next;
        if ua <= next {
            i += 1;
        }
        if ub <= next {
            j += 1;
        }
    }
    total
}

/// Sliced Wasserstein distance SW_p = (mean over directions θ of W_p^p(θ·X, θ·Y))^(1/p)
/// (Bonneel et al. 2015), over the rows of `directions` (unit vectors, see
/// [`random_directions`]).
pub fn sliced_wasserstein(
    x: ArrayView2<f32>,
    y: ArrayView2<f32>,
    directions: &Array2<f64>,
    p: f64,
) -> f64 {
    if x.nrows() == 0 || y.nrows() == 0 || directions.nrows() == 0 {
        return f64::NAN;
    }
    let a = x.mapv(|v| v as f64).dot(&directions.t());
    let b = y.mapv(|v| v as f64).dot(&directions.t());
    let sum: f64 = (0..directions.nrows())
        .map(|l| wasserstein_1d_pow(a.column(l).to_vec(), b.column(l).to_vec(), p))
        .sum();
    (sum / directions.nrows() as f64).powf(1.0 / p)
}

/// Fréchet distance between Gaussians fitted to `x` and `y` (the FID formula of Heusel et al.
/// 2017 on raw coordinates or features): ‖μx − μy‖² + tr(Σx + Σy − 2(Σy^½ Σx Σy^½)^½), with
/// unbiased covariances (ddof = 1, as `numpy.cov`; see [`moments_gemm`] for their accuracy).
/// The trace of the square root is Σ √λ over the eigenvalues λ of Lᵀ Σx L (Σy = L Lᵀ, the same
/// eigenvalues as Σx Σy), or of Σy^½ Σx Σy^½ by symmetric eigendecomposition when Σy is
/// singular. NaN when a set has fewer than 2 points.
pub fn frechet_distance(x: ArrayView2<f32>, y: ArrayView2<f32>) -> f64 {
    if x.nrows() < 2 || y.nrows() < 2 {
        return f64::NAN;
    }
    let ((mx, sx), (my, sy)) = rayon::join(|| moments_gemm(x, 1), || moments_gemm(y, 1));
    let (sx, sy) = (to_na(&sx), to_na(&sy));
    let inner = match sy.clone().cholesky() {
        Some(ch) => {
            let l = ch.l();
            l.transpose() * &sx * l
        }
        None => {
            let ry = sqrtm_psd(&sy);
            &ry * &sx * &ry
        }
    };
    let tr_sqrt: f64 = symmetric_eigenvalues(&inner)
        .iter()
        .map(|l| l.max(0.0).sqrt())
        .sum();
    let diff = mx - my;
    (diff.dot(&diff) + sx.trace() + sy.trace() - 2.0 * tr_sqrt).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributions::{Distribution, Gaussian};
    use crate::rng::{Role, stream};
    use ndarray::{Array2, array};

    #[test]
    fn one_dimensional_wasserstein_by_hand() {
        // Equal sizes: sorted matching.
        assert!((wasserstein_1d_pow(vec![3.0, 0.0], vec![1.0, 5.0], 1.0) - 1.5).abs() < 1e-12);
        // {0, 1} against {0}: half the mass moves by 1.
        assert!((wasserstein_1d_pow(vec![0.0, 1.0], vec![0.0], 2.0) - 0.5).abs() < 1e-12);
        // {0, 3, 6} against {1, 2}: quantile pieces [0,1/3]:0↔1, [1/3,1/2]:3↔1, [1/2,2/3]:3↔2,
        // [2/3,1]:6↔2.
        let want = (2.0 * 1.0 + 4.0 + 1.0 + 2.0 * 16.0) / 6.0;
        assert!(
            (wasserstein_1d_pow(vec![6.0, 0.0, 3.0], vec![2.0, 1.0], 2.0) - want).abs() < 1e-12
        );
    }

    /// The f32-tile energy distance equals a direct f64 sum, with a far-off mean, across tile
    /// edges, and with points shared by the two sets (distances that must come out 0).
    #[test]
    fn energy_matches_a_direct_f64_sum() {
        let p = Gaussian::isotropic(array![40.0, 10.0, -5.0, 0.0], 1.0);
        let mut x = p.sample(1100, &mut stream(5, 0, Role::Samples));
        let y = p
            .sample(600, &mut stream(6, 0, Role::Samples))
            .mapv(|v| v * 1.2);
        for i in 0..50 {
            x.row_mut(i * 7).assign(&y.row(i));
        }
        let f = |a: ndarray::ArrayView1<f32>, b: ndarray::ArrayView1<f32>| {
            a.iter()
                .zip(b)
                .map(|(&p, &q)| (p as f64 - q as f64).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let mean = |a: &Array2<f32>, b: &Array2<f32>| {
            let s: f64 = a
                .rows()
                .into_iter()
                .flat_map(|r| b.rows().into_iter().map(move |c| f(r, c)))
                .sum();
            s / (a.nrows() * b.nrows()) as f64
        };
        let want = 2.0 * mean(&x, &y) - mean(&x, &x) - mean(&y, &y);
        let got = energy_distance(x.view(), y.view());
        assert!((got - want).abs() < 1e-6 * want, "{got} vs {want}");
    }

    #[test]
    fn distances_vanish_for_one_set_and_grow_with_a_shift() {
        let p = Gaussian::isotropic(array![0.0, 0.0, 0.0], 1.0);
        let x = p.sample(500, &mut stream(0, 0, Role::Samples));
        let y = x.mapv(|v| v + 1.0);
        assert!(energy_distance(x.view(), x.view()).abs() < 1e-9);
        assert!(frechet_distance(x.view(), x.view()).abs() < 1e-9);
        let dirs = random_directions(50, 3, &mut stream(0, 0, Role::Fit));
        assert!(sliced_wasserstein(x.view(), x.view(), &dirs, 2.0).abs() < 1e-12);
        // A shift by (1, 1, 1): FD = 3 exactly (up to the f32 Gram products' ~1e-7 relative
        // error on covariances of trace ≈ 3); SW₂² = mean (θ·1)² ≈ 3/3 = 1.
        assert!((frechet_distance(x.view(), y.view()) - 3.0).abs() < 1e-5);
        let sw = sliced_wasserstein(x.view(), y.view(), &dirs, 2.0);
        let want: f64 = dirs
            .rows()
            .into_iter()
            .map(|r| r.sum().powi(2))
            .sum::<f64>()
            / 50.0;
        assert!((sw * sw - want).abs() < 1e-9);
        assert!(energy_distance(x.view(), y.view()) > 0.5);
    }
}
