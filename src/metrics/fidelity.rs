//! Fidelity and coverage from k-nearest-neighbour balls: precision and recall (Kynkäänniemi et
//! al. 2019, "Improved precision and recall metric for assessing generative models") and
//! density and coverage (Naeem et al. 2020, "Reliable fidelity and diversity metrics for
//! generative models"), with the conventions of the `prdc` package: the k-NN radius of a point is
//! its (k+1)-th smallest distance within its own set counting itself, and "inside a ball" is
//! strict (<).

use super::knn::{Balls, Prepared, centre_of, cross_counts, k_nearest};
use ndarray::ArrayView2;

/// Precision, recall, density and coverage of a generated set against a real one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prdc {
    /// Share of generated points inside at least one real point's k-NN ball.
    pub precision: f64,
    /// Share of real points inside at least one generated point's k-NN ball.
    pub recall: f64,
    /// (1/(k·M)) Σ over generated points of the number of real k-NN balls containing it.
    pub density: f64,
    /// Share of real points whose k-NN ball contains at least one generated point.
    pub coverage: f64,
}

/// Squared k-NN radii of a set: each point's (k+1)-th smallest squared distance to the set,
/// itself included (so the k-th nearest other point, when there are no duplicates).
pub fn knn_radii_sq(x: &Prepared, k: usize) -> Vec<f64> {
    k_nearest(x, x, k + 1)
        .into_iter()
        .map(|l| l.last().map_or(f64::INFINITY, |v| v.0))
        .collect()
}

/// [`Prdc`] of `generated` against `real` with k nearest neighbours. Both sets need more than
/// k points (checked by the caller).
pub fn prdc(real: ArrayView2<f32>, generated: ArrayView2<f32>, k: usize) -> Prdc {
    let centre = centre_of(real);
    let r = Prepared::new(real, &centre);
    let g = Prepared::new(generated, &centre);
    let real_radii = knn_radii_sq(&r, k);
    let gen_radii = knn_radii_sq(&g, k);
    let (real_balls, gen_balls) = (Balls::new(&r, &real_radii), Balls::new(&g, &gen_radii));
    // One pass over real × generated: per real point, the generated balls holding it and its
    // nearest generated point; per generated point, the real balls holding it.
    let (in_gen_balls, nearest_gen, in_real_balls) = cross_counts(&r, &g, &real_balls, &gen_balls);
    let (n, m) = (r.len() as f64, g.len() as f64);
    let share = |hits: usize, of: f64| hits as f64 / of;
    Prdc {
        precision: share(in_real_balls.iter().filter(|&&c| c > 0).count(), m),
        recall: share(in_gen_balls.iter().filter(|&&c| c > 0).count(), n),
        density: in_real_balls.iter().sum::<usize>() as f64 / (k as f64 * m),
        coverage: share(
            nearest_gen
                .iter()
                .zip(&real_radii)
                .filter(|(nn, rad)| nn < rad)
                .count(),
            n,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// A hand-checked 1-D case: real {0, 1, 2, 3}, k = 1 (radius 1 each); generated {0.5, 10}.
    #[test]
    fn prdc_on_a_hand_checked_case() {
        let real = array![[0.0f32], [1.0], [2.0], [3.0]];
        let generated = array![[0.5f32], [10.0], [10.5]];
        let p = prdc(real.view(), generated.view(), 1);
        // 0.5 is inside the balls of 0 and 1; 10 and 10.5 are in none.
        assert_eq!(p.precision, 1.0 / 3.0);
        assert_eq!(p.density, 2.0 / 3.0);
        // Generated radii: 0.5 → 9.5, 10 → 0.5, 10.5 → 0.5; reals 0..3 lie within 9.5 of 0.5.
        assert_eq!(p.recall, 1.0);
        // Nearest generated point: 0 → 0.5 (< 1), 1 → 0.5 (< 1), 2 → 1.5, 3 → 2.5.
        assert_eq!(p.coverage, 0.5);
    }
}
