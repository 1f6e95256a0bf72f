use super::knn::{Pairs, Prepared, centre_of, pair_sums};
use crate::linalg::{row_sq_norms, sq_dist_block};
use crate::nn::simd::{exp_f32, simd_dispatch};
use ndarray::{ArrayView2, s};

/// Points used to estimate the median pairwise distance.
const MEDIAN_POINTS: usize = 1000;

/// Median heuristic: the median Euclidean distance between distinct points of `x` (its first
/// 1 000 rows), used as the RBF bandwidth σ in k(x, y) = exp(−‖x − y‖²/(2σ²)).
pub fn median_bandwidth(x: ArrayView2<f32>) -> f64 {
    let m = x.nrows().min(MEDIAN_POINTS);
    let a = x.slice(s![..m, ..]).mapv(|v| v as f64);
    let n = row_sq_norms(a.view());
    let d = sq_dist_block(a.view(), n.view(), a.view(), n.view());
    let mut upper: Vec<f64> = (0..m)
        .flat_map(|i| (i + 1..m).map(move |j| (i, j)))
        .map(|(i, j)| d[[i, j]])
        .collect();
    if upper.is_empty() {
        return 1.0;
    }
    let mid = upper.len() / 2;
    let (_, v, _) = upper.select_nth_unstable_by(mid, f64::total_cmp);
    let med = v.sqrt();
    if med > 0.0 { med } else { 1.0 }
}

/// A positive-definite kernel on ℝ^d.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kernel {
    /// k(x, y) = exp(−‖x − y‖²/(2σ²)) with bandwidth σ.
    Rbf(f64),
    /// k(x, y) = (γ x·y + c)^degree; KID (Bińkowski et al. 2018) uses degree 3, γ = 1/d, c = 1.
    Polynomial {
        /// Degree.
        degree: i32,
        /// γ.
        gamma: f64,
        /// c.
        coef0: f64,
    },
}

impl Kernel {
    /// KID's cubic kernel for dimension d.
    pub fn kid(d: usize) -> Kernel {
        Kernel::Polynomial {
            degree: 3,
            gamma: 1.0 / d as f64,
            coef0: 1.0,
        }
    }
}

/// Σ over `row` of f(v), in eight f64 lanes (so that the loop vectorises and the f32 values are
/// accumulated in f64).
#[inline(always)]
pub(crate) fn lane_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            acc[l] += f(c[l]) as f64;
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v) as f64).sum();
    acc.iter().sum::<f64>() + tail
}

simd_dispatch! {
    /// sums[c] += Σ_v e^(−γ_c v) over squared distances v: RBF kernel sums for several
    /// bandwidths from one tile.
    fn rbf_row_sums(row: &[f32], gammas: &[f32], sums: &mut [f64]) {
        for (&g, s) in gammas.iter().zip(sums.iter_mut()) {
            *s += lane_sum(row, |v| exp_f32(-g * v));
        }
    }
}

simd_dispatch! {
    /// sums[0] += Σ_j (γ(vⱼ + aᵢ + bⱼ) + c)^degree in f64: polynomial kernel values from the dot
    /// products v of centred coordinates, with x·y = x′·y′ + aᵢ + bⱼ for aᵢ = c·x′ᵢ + ‖c‖² and
    /// bⱼ = c·y′ⱼ (the large terms added in f64).
    fn polynomial_row_sums(row: &[f32], ai: f64, b: &[f64], kernel: (f64, f64, i32), sums: &mut [f64]) {
        let (gamma, coef0, degree) = kernel;
        let mut acc = [0.0f64; 4];
        let mut chunks = row.chunks_exact(4);
        let mut bs = b.chunks_exact(4);
        if degree == 3 {
            // KID's cubic kernel with the power written out (the same products as the loop
            // below, 1·b·b·b = b·b·b), so that the four lanes vectorise.
            for (c, bj) in (&mut chunks).zip(&mut bs) {
                for l in 0..4 {
                    let base = gamma * (c[l] as f64 + ai + bj[l]) + coef0;
                    acc[l] += base * base * base;
                }
            }
        }
        for (c, bj) in (&mut chunks).zip(&mut bs) {
            for l in 0..4 {
                let base = gamma * (c[l] as f64 + ai + bj[l]) + coef0;
                let mut r = 1.0;
                for _ in 0..degree {
                    r *= base;
                }
                acc[l] += r;
            }
        }
        for (&v, &bj) in chunks.remainder().iter().zip(bs.remainder()) {
            acc[0] += (gamma * (v as f64 + ai + bj) + coef0).powi(degree);
        }
        sums[0] += acc.iter().sum::<f64>();
    }
}

/// c·(xᵢ − c) + `plus` for every row of x, in f64.
fn centre_dots(x: ArrayView2<f32>, c: &[f64], plus: f64) -> Vec<f64> {
    x.rows()
        .into_iter()
        .map(|r| {
            r.iter()
                .zip(c)
                .map(|(&v, &c)| c * (v as f64 - c))
                .sum::<f64>()
                + plus
        })
        .collect()
}

/// The mean of the rows of x and y together (the common centre for their distance tiles).
pub(crate) fn joint_centre(x: ArrayView2<f32>, y: ArrayView2<f32>) -> Vec<f64> {
    let (m, n) = (x.nrows() as f64, y.nrows() as f64);
    let (cx, cy) = (centre_of(x), centre_of(y));
    cx.iter()
        .zip(&cy)
        .map(|(a, b)| (m * a + n * b) / (m + n).max(1.0))
        .collect()
}

/// Kernel sums of two samples: Σ_{i<j} k(xᵢ, xⱼ), Σ_{i<j} k(yᵢ, yⱼ) and Σ_{i,j} k(xᵢ, yⱼ), one
/// entry per kernel. All RBF bandwidths share one pass of distance tiles per kind of pair;
/// each polynomial kernel takes one pass of dot-product tiles of the same centred coordinates.
struct KernelSums {
    xx: Vec<f64>,
    yy: Vec<f64>,
    xy: Vec<f64>,
}

fn kernel_sums(x: ArrayView2<f32>, y: ArrayView2<f32>, kernels: &[Kernel]) -> KernelSums {
    let mut out = KernelSums {
        xx: vec![0.0; kernels.len()],
        yy: vec![0.0; kernels.len()],
        xy: vec![0.0; kernels.len()],
    };
    let (rbf, gammas): (Vec<usize>, Vec<f32>) = kernels
        .iter()
        .enumerate()
        .filter_map(|(i, k)| match *k {
            Kernel::Rbf(sigma) => Some((i, (1.0 / (2.0 * sigma * sigma)) as f32)),
            Kernel::Polynomial { .. } => None,
        })
        .unzip();
    let mut scatter = |at: &[usize], xx: Vec<f64>, yy: Vec<f64>, xy: Vec<f64>| {
        for (c, &i) in at.iter().enumerate() {
            (out.xx[i], out.yy[i], out.xy[i]) = (xx[c], yy[c], xy[c]);
        }
    };
    let centre = joint_centre(x, y);
    let (px, py) = (Prepared::new(x, &centre), Prepared::new(y, &centre));
    if !rbf.is_empty() {
        let f = |_: usize, _: usize, row: &[f32], s: &mut [f64]| rbf_row_sums(row, &gammas, s);
        let pass =
            |a: &Prepared, b: &Prepared, pairs| pair_sums(a, b, pairs, false, gammas.len(), f);
        scatter(
            &rbf,
            pass(&px, &px, Pairs::Distinct),
            pass(&py, &py, Pairs::Distinct),
            pass(&px, &py, Pairs::All),
        );
    }
    let cc: f64 = centre.iter().map(|v| v * v).sum();
    let (ax, ay) = (centre_dots(x, &centre, cc), centre_dots(y, &centre, cc));
    let (bx, by) = (centre_dots(x, &centre, 0.0), centre_dots(y, &centre, 0.0));
    for (i, k) in kernels.iter().enumerate() {
        if let Kernel::Polynomial {
            degree,
            gamma,
            coef0,
        } = *k
        {
            let pass = |a: &Prepared, rows: &[f64], b: &Prepared, cols: &[f64], pairs| {
                let f = |i: usize, j0: usize, row: &[f32], s: &mut [f64]| {
                    let b = &cols[j0..j0 + row.len()];
                    polynomial_row_sums(row, rows[i], b, (gamma, coef0, degree), s)
                };
                pair_sums(a, b, pairs, true, 1, f)
            };
            scatter(
                &[i],
                pass(&px, &ax, &px, &bx, Pairs::Distinct),
                pass(&py, &ay, &py, &by, Pairs::Distinct),
                pass(&px, &ax, &py, &by, Pairs::All),
            );
        }
    }
    out
}

/// Both MMD² estimates between two samples (Gretton et al. 2012).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mmd2 {
    /// 1/(m(m−1)) Σ_{i≠j} k(x_i,x_j) + 1/(n(n−1)) Σ_{i≠j} k(y_i,y_j) − 2/(mn) Σ k(x_i,y_j).
    pub unbiased: f64,
    /// The V-statistic: the same with all pairs (i = j included) and 1/m², 1/n².
    pub biased: f64,
}

/// [`Mmd2`] between samples `x` (m rows) and `y` (n rows) for each of `kernels`, from one pass
/// of f32 distance tiles per kind of pair for all RBF bandwidths together (and one of dot
/// products per polynomial kernel, evaluated in f64 around the joint mean), each kernel value
/// accumulated in f64. A squared distance
/// in a tile is within B = u(d + 12)(‖x′‖² + ‖y′‖²) of exact (u = 2⁻²⁴, coordinates centred on
/// the joint mean), so an RBF value is within a relative B/(2σ²). NaN when a set has fewer than
/// 2 points.
pub fn mmd2_many(x: ArrayView2<f32>, y: ArrayView2<f32>, kernels: &[Kernel]) -> Vec<Mmd2> {
    let (m, n) = (x.nrows() as f64, y.nrows() as f64);
    if m < 2.0 || n < 2.0 {
        let nan = Mmd2 {
            unbiased: f64::NAN,
            biased: f64::NAN,
        };
        return vec![nan; kernels.len()];
    }
    let s = kernel_sums(x, y, kernels);
    kernels
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let (sxx, syy) = (2.0 * s.xx[i], 2.0 * s.yy[i]);
            let cross = 2.0 * s.xy[i] / (m * n);
            Mmd2 {
                unbiased: sxx / (m * (m - 1.0)) + syy / (n * (n - 1.0)) - cross,
                biased: (sxx + diagonal_sum(x, *k)) / (m * m)
                    + (syy + diagonal_sum(y, *k)) / (n * n)
                    - cross,
            }
        })
        .collect()
}

/// [`Mmd2`] for one kernel (see [`mmd2_many`]).
pub fn mmd2(x: ArrayView2<f32>, y: ArrayView2<f32>, kernel: Kernel) -> Mmd2 {
    mmd2_many(x, y, &[kernel])[0]
}

/// Σ_i k(x_i, x_i), in f64.
fn diagonal_sum(x: ArrayView2<f32>, kernel: Kernel) -> f64 {
    match kernel {
        Kernel::Rbf(_) => x.nrows() as f64,
        Kernel::Polynomial {
            degree,
            gamma,
            coef0,
        } => x
            .rows()
            .into_iter()
            .map(|r| {
                let nn: f64 = r.iter().map(|&v| v as f64 * v as f64).sum();
                (gamma * nn + coef0).powi(degree)
            })
            .sum(),
    }
}

/// 1/(m(m−1)) Σ_{i≠j} k(x_i, x_j) with the RBF kernel of bandwidth σ: the within-set term of the
/// unbiased MMD² (NaN for m < 2).
pub fn self_kernel_mean(x: ArrayView2<f32>, sigma: f64) -> f64 {
    let m = x.nrows() as f64;
    if m < 2.0 {
        return f64::NAN;
    }
    let px = Prepared::new(x, &centre_of(x));
    let g = [(1.0 / (2.0 * sigma * sigma)) as f32];
    let f = |_: usize, _: usize, row: &[f32], s: &mut [f64]| rbf_row_sums(row, &g, s);
    2.0 * pair_sums(&px, &px, Pairs::Distinct, false, 1, f)[0] / (m * (m - 1.0))
}

/// Unbiased MMD² (Gretton et al. 2012, eq. 3) between samples `x` (m rows) and `y` (n rows)
/// with the RBF kernel of bandwidth σ:
/// 1/(m(m−1)) Σ_{i≠j} k(x_i,x_j) + 1/(n(n−1)) Σ_{i≠j} k(y_i,y_j) − 2/(mn) Σ k(x_i,y_j).
pub fn mmd2_unbiased(x: ArrayView2<f32>, y: ArrayView2<f32>, sigma: f64) -> f64 {
    mmd2(x, y, Kernel::Rbf(sigma)).unbiased
}

/// [`mmd2_unbiased`] given `y`'s within-set term ([`self_kernel_mean`]), so a fixed reference
/// set's term is computed once for all generations.
pub fn mmd2_unbiased_with(x: ArrayView2<f32>, y: ArrayView2<f32>, sigma: f64, y_term: f64) -> f64 {
    let (m, n) = (x.nrows() as f64, y.nrows() as f64);
    if m < 2.0 || n < 2.0 {
        return f64::NAN;
    }
    let centre = joint_centre(x, y);
    let (px, py) = (Prepared::new(x, &centre), Prepared::new(y, &centre));
    let g = [(1.0 / (2.0 * sigma * sigma)) as f32];
    let f = |_: usize, _: usize, row: &[f32], s: &mut [f64]| rbf_row_sums(row, &g, s);
    let xx = pair_sums(&px, &px, Pairs::Distinct, false, 1, f)[0];
    let xy = pair_sums(&px, &py, Pairs::All, false, 1, f)[0];
    2.0 * xx / (m * (m - 1.0)) + y_term - 2.0 * xy / (m * n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributions::{Distribution, Gaussian};
    use crate::rng::{Role, stream};
    use ndarray::{Array2, array};

    /// Direct f64 MMD² (unbiased, biased) over all pairs.
    fn direct(x: &Array2<f32>, y: &Array2<f32>, k: impl Fn(&[f64], &[f64]) -> f64) -> (f64, f64) {
        let rows = |m: &Array2<f32>| -> Vec<Vec<f64>> {
            m.rows()
                .into_iter()
                .map(|r| r.iter().map(|&v| v as f64).collect())
                .collect()
        };
        let (xr, yr) = (rows(x), rows(y));
        let within = |s: &[Vec<f64>]| {
            let (mut off, mut diag) = (0.0, 0.0);
            for (i, a) in s.iter().enumerate() {
                for (j, b) in s.iter().enumerate() {
                    if i == j {
                        diag += k(a, b);
                    } else {
                        off += k(a, b);
                    }
                }
            }
            (off, diag)
        };
        let ((xo, xd), (yo, yd)) = (within(&xr), within(&yr));
        let xy: f64 = xr.iter().flat_map(|a| yr.iter().map(|b| k(a, b))).sum();
        let (m, n) = (xr.len() as f64, yr.len() as f64);
        let cross = 2.0 * xy / (m * n);
        (
            xo / (m * (m - 1.0)) + yo / (n * (n - 1.0)) - cross,
            (xo + xd) / (m * m) + (yo + yd) / (n * n) - cross,
        )
    }

    /// The f32-tile sums, several kernels at once, across tile edges (1 300 points), with a
    /// far-off mean, agree with a direct f64 computation to well within the tile bound.
    #[test]
    fn many_kernels_match_direct_f64_sums() {
        let p = Gaussian::isotropic(array![50.0, -20.0, 3.0], 1.0);
        let q = Gaussian::isotropic(array![50.3, -20.0, 3.0], 1.3);
        let x = p.sample(1300, &mut stream(3, 0, Role::Samples));
        let y = q.sample(700, &mut stream(4, 0, Role::Samples));
        let kernels = [Kernel::Rbf(0.8), Kernel::Rbf(2.5), Kernel::kid(3)];
        let got = mmd2_many(x.view(), y.view(), &kernels);
        for (g, k) in got.iter().zip(kernels) {
            let want = direct(&x, &y, |a, b| match k {
                Kernel::Rbf(s) => {
                    let d: f64 = a.iter().zip(b).map(|(p, q)| (p - q).powi(2)).sum();
                    (-d / (2.0 * s * s)).exp()
                }
                Kernel::Polynomial {
                    degree,
                    gamma,
                    coef0,
                } => {
                    (gamma * a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>() + coef0).powi(degree)
                }
            });
            // Kernel values near 1 (RBF) or ~10⁵ (cubic on norms ~55): compare against the
            // scale of the terms that cancel.
            let scale = match k {
                Kernel::Rbf(_) => 1.0,
                Kernel::Polynomial { .. } => 1e5,
            };
            assert!(
                (g.unbiased - want.0).abs() < 2e-6 * scale,
                "{k:?}: {g:?} vs {want:?}"
            );
            assert!(
                (g.biased - want.1).abs() < 2e-6 * scale,
                "{k:?}: {g:?} vs {want:?}"
            );
        }
        let bw = 0.8;
        let with = mmd2_unbiased_with(x.view(), y.view(), bw, self_kernel_mean(y.view(), bw));
        assert!((with - got[0].unbiased).abs() < 1e-9);
    }

    #[test]
    fn mmd_matches_a_direct_sum() {
        let x = array![[0.0f32, 0.0], [1.0, 0.0], [0.0, 2.0]];
        let y = array![[1.0f32, 1.0], [2.0, 0.0]];
        let k = |a: &[f32], b: &[f32]| {
            let d: f64 = a.iter().zip(b).map(|(p, q)| ((p - q) as f64).powi(2)).sum();
            (-d / 2.0).exp()
        };
        let rows = |m: &Array2<f32>| m.rows().into_iter().map(|r| r.to_vec()).collect::<Vec<_>>();
        let (xr, yr) = (rows(&x), rows(&y));
        let mut kxx = 0.0;
        for i in 0..3 {
            for j in 0..3 {
                if i != j {
                    kxx += k(&xr[i], &xr[j]);
                }
            }
        }
        let kyy = 2.0 * k(&yr[0], &yr[1]);
        let kxy: f64 = xr
            .iter()
            .flat_map(|a| yr.iter().map(move |b| k(a, b)))
            .sum();
        let want = kxx / 6.0 + kyy / 2.0 - 2.0 * kxy / 6.0;
        assert!((mmd2_unbiased(x.view(), y.view(), 1.0) - want).abs() < 1e-6);
        let both = mmd2(x.view(), y.view(), Kernel::Rbf(1.0));
        assert!((both.unbiased - want).abs() < 1e-6);
        // The V-statistic adds k(x, x) = 1 once per point to each within-set sum.
        let biased = (kxx + 3.0) / 9.0 + (kyy + 2.0) / 4.0 - 2.0 * kxy / 6.0;
        assert!((both.biased - biased).abs() < 1e-6);
    }

    #[test]
    fn mmd_of_one_distribution_is_near_zero_and_positive_otherwise() {
        let p = Gaussian::isotropic(array![0.0, 0.0], 1.0);
        let q = Gaussian::isotropic(array![0.5, 0.0], 1.0);
        let a = p.sample(1000, &mut stream(0, 0, Role::Samples));
        let b = p.sample(1000, &mut stream(1, 0, Role::Samples));
        let c = q.sample(1000, &mut stream(2, 0, Role::Samples));
        let bw = median_bandwidth(b.view());
        // the unbiased estimate has mean 0 and sd ≈ 1e-3 here; a 0.5σ mean shift gives ≈ 0.05
        assert!(mmd2_unbiased(a.view(), b.view(), bw).abs() < 5e-3);
        assert!(mmd2_unbiased(c.view(), b.view(), bw) > 0.02);
    }
}
