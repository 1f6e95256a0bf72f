//! Tail and edge coverage: how much generated mass reaches the outer edges of the real data
//! (Yamaguchi & Fukuda: diffusion samples crowd into the modes and leave the edges uncovered).

use ndarray::ArrayView2;

/// The share of generated points farther from the real data's centre than the `quantile`-th
/// quantile of the real points' own distances to it (Euclidean). With labels (one per row of
/// each set), centres and quantiles are per class and each generated point is measured against
/// its own class; classes absent from the real set count as beyond the edge. On real data
/// itself the value is ≈ 1 − quantile; lower means the edges are under-covered.
pub fn edge_coverage(
    real: ArrayView2<f32>,
    generated: ArrayView2<f32>,
    quantile: f64,
    labels: Option<(&[u32], &[u32])>,
) -> f64 {
    if generated.nrows() == 0 || real.nrows() == 0 {
        return f64::NAN;
    }
    let (real_labels, gen_labels): (Vec<usize>, Vec<usize>) = match labels {
        Some((r, g)) => (
            r.iter().map(|&v| v as usize).collect(),
            g.iter().map(|&v| v as usize).collect(),
        ),
        None => (vec![0; real.nrows()], vec![0; generated.nrows()]),
    };
    let classes = real_labels.iter().copied().max().unwrap_or(0) + 1;
    let d = real.ncols();
    let mut centres = vec![vec![0.0f64; d]; classes];
    let mut counts = vec![0usize; classes];
    for (row, &c) in real.rows().into_iter().zip(&real_labels) {
        counts[c] += 1;
        for (a, &v) in centres[c].iter_mut().zip(row) {
            *a += v as f64;
        }
    }
    for (c, n) in centres.iter_mut().zip(&counts) {
        c.iter_mut().for_each(|v| *v /= (*n).max(1) as f64);
    }
    let dist = |row: ndarray::ArrayView1<f32>, c: &[f64]| -> f64 {
        row.iter()
            .zip(c)
            .map(|(&v, &m)| (v as f64 - m).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let mut radii: Vec<Vec<f64>> = vec![Vec::new(); classes];
    for (row, &c) in real.rows().into_iter().zip(&real_labels) {
        radii[c].push(dist(row, &centres[c]));
    }
    let edge: Vec<f64> = radii
        .iter_mut()
        .map(|r| {
            if r.is_empty() {
                return f64::NEG_INFINITY;
            }
            r.sort_by(f64::total_cmp);
            quantile_sorted(r, quantile)
        })
        .collect();
    let beyond = generated
        .rows()
        .into_iter()
        .zip(&gen_labels)
        .filter(|&(row, &c)| c >= classes || dist(row, &centres[c]) > edge[c])
        .count();
    beyond as f64 / generated.nrows() as f64
}

/// The q-quantile of sorted values by linear interpolation between order statistics (numpy's
/// default, "linear").
pub fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
    if lo + 1 < v.len() {
        v[lo] + frac * (v[lo + 1] - v[lo])
    } else {
        v[lo]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributions::{Distribution, Gaussian};
    use crate::rng::{Role, stream};
    use ndarray::array;

    #[test]
    fn real_data_covers_its_own_edges_and_a_shrunk_copy_does_not() {
        let p = Gaussian::isotropic(array![1.0, -2.0, 0.5], 1.0);
        let real = p.sample(4000, &mut stream(0, 0, Role::Reference));
        let same = p.sample(4000, &mut stream(1, 0, Role::Samples));
        // Beyond the 90th percentile: Binomial(4000, 0.1)/4000 has sd 0.0047 (plus the real
        // quantile's own error); 5 sd.
        assert!((edge_coverage(real.view(), same.view(), 0.9, None) - 0.1).abs() < 0.03);
        // Shrunk by 0.7 about the mean: P(χ²₃ > 6.25/0.49) ≈ 0.0052 (sd 0.0011 here).
        let mean = array![1.0f32, -2.0, 0.5];
        let shrunk = (&same - &mean) * 0.7 + &mean;
        assert!(edge_coverage(real.view(), shrunk.view(), 0.9, None) < 0.012);
        // Per class: class 1 is the real set shifted by 10; labels keep classes apart.
        let shifted = real.mapv(|v| v + 10.0);
        let both = ndarray::concatenate![ndarray::Axis(0), real, shifted];
        let labels: Vec<u32> = (0..8000).map(|i| i / 4000).collect();
        let gen_labels = labels.clone();
        let e = edge_coverage(both.view(), both.view(), 0.9, Some((&labels, &gen_labels)));
        assert!((e - 0.1).abs() < 0.002, "{e}");
    }

    #[test]
    fn quantiles_follow_numpy_linear() {
        let v = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(quantile_sorted(&v, 0.5), 3.0);
        assert_eq!(quantile_sorted(&v, 1.0), 8.0);
        assert!((quantile_sorted(&v, 0.9) - 6.8).abs() < 1e-12);
    }
}
