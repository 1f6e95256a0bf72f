//! Memorisation and generalisation: how close generated points sit to the training set, all
//! from exact nearest-neighbour distances ([`super::knn`]).

use super::knn::{Prepared, centre_of, k_nearest};
use ndarray::{ArrayView2, s};

/// A point's nearest neighbours: (exact squared distance, index), nearest first.
type Neighbours = [(f64, usize)];

/// What the nearest-neighbour tests measure for one generated set against its training set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Memorization {
    /// Share of samples whose nearest training point is closer than `ratio` × the second
    /// nearest (the test of Yoon et al. 2023 used by Yi et al., ratio 1/3).
    pub memorized: f64,
    /// Share of samples identical to a training point (distance exactly 0).
    pub copies: f64,
    /// Share of samples g whose nearest training point t is not closer to g than to t's own
    /// nearest other training point: d(g, t) ≥ d(t, NN_train(t)). One minus the share of
    /// "unauthentic" samples of Alaa et al. 2022 ("How faithful is your synthetic data?").
    pub authenticity: f64,
}

/// [`Memorization`] of `samples` against `train` (needs ≥ 2 training points; NaN otherwise).
pub fn memorization(samples: ArrayView2<f32>, train: ArrayView2<f32>, ratio: f64) -> Memorization {
    if samples.nrows() == 0 || train.nrows() < 2 {
        return Memorization {
            memorized: f64::NAN,
            copies: f64::NAN,
            authenticity: f64::NAN,
        };
    }
    let centre = centre_of(train);
    let t = Prepared::new(train, &centre);
    let g = Prepared::new(samples, &centre);
    let near = k_nearest(&g, &t, 2);
    // Each training point's nearest other training point: 2nd smallest counting itself.
    let own = k_nearest(&t, &t, 2);
    let r2 = ratio * ratio;
    let n = samples.nrows() as f64;
    let share = |hits: usize| hits as f64 / n;
    let count = |hit: &dyn Fn(&Neighbours) -> bool| near.iter().filter(|l| hit(l)).count();
    Memorization {
        memorized: share(count(&|l| l[0].0 < r2 * l[1].0)),
        copies: share(count(&|l| l[0].0 == 0.0)),
        authenticity: share(count(&|l| l[0].0 >= own[l[0].1][1].0)),
    }
}

/// Share of `samples` whose nearest training point is closer than `ratio` times the second
/// nearest ([`Memorization::memorized`]).
pub fn memorized_share(samples: ArrayView2<f32>, train: ArrayView2<f32>, ratio: f64) -> f64 {
    if samples.nrows() == 0 || train.nrows() < 2 {
        return f64::NAN;
    }
    let centre = centre_of(train);
    let near = k_nearest(
        &Prepared::new(samples, &centre),
        &Prepared::new(train, &centre),
        2,
    );
    let r2 = ratio * ratio;
    near.iter().filter(|l| l[0].0 < r2 * l[1].0).count() as f64 / samples.nrows() as f64
}

/// Mean distance from each sample to its nearest held-out real point minus the mean distance
/// to its nearest training point, with both reference sets cut to the size of the smaller (the
/// first rows) so that neither is closer merely by being larger. Positive when samples sit
/// closer to the training set than to fresh data from the same distribution.
pub fn nn_distance_gap(
    samples: ArrayView2<f32>,
    train: ArrayView2<f32>,
    heldout: ArrayView2<f32>,
) -> f64 {
    let size = train.nrows().min(heldout.nrows());
    if samples.nrows() == 0 || size == 0 {
        return f64::NAN;
    }
    let (train, heldout) = (train.slice(s![..size, ..]), heldout.slice(s![..size, ..]));
    let centre = centre_of(train);
    let g = Prepared::new(samples, &centre);
    let mean_nn = |set: ArrayView2<f32>| {
        let p = Prepared::new(set, &centre);
        let near = k_nearest(&g, &p, 1);
        near.iter().map(|l| l[0].0.sqrt()).sum::<f64>() / samples.nrows() as f64
    };
    mean_nn(heldout) - mean_nn(train)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn copies_are_memorised_and_midpoints_are_not() {
        let train = array![[0.0f32, 0.0], [10.0, 0.0], [0.0, 10.0]];
        let samples = array![[0.0f32, 0.1], [5.0, 0.0], [10.0, 0.0], [3.0, 0.0]];
        // (0,.1): 0.1 vs 9.9 → yes; (5,0): tie → no; copy → yes; (3,0): 3 vs 7 → no
        assert_eq!(
            memorized_share(samples.view(), train.view(), 1.0 / 3.0),
            0.5
        );
        let m = memorization(samples.view(), train.view(), 1.0 / 3.0);
        assert_eq!(m.memorized, 0.5);
        assert_eq!(m.copies, 0.25);
        // Every training point's nearest other point is 10 away, and each sample is closer
        // than that to its nearest training point (0.1, 5, 0, 3): none is authentic.
        assert_eq!(m.authenticity, 0.0);
        // (20, 0) is exactly 10 from (10, 0): authentic; (0, 0.5) is not.
        let far = array![[20.0f32, 0.0], [0.0, 0.5]];
        assert_eq!(
            memorization(far.view(), train.view(), 1.0 / 3.0).authenticity,
            0.5
        );
    }

    #[test]
    fn nn_gap_is_positive_for_copies_of_the_training_set() {
        let train = array![[0.0f32, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0]];
        let heldout = array![[1.0f32, 1.0], [3.0, 1.0], [1.0, 3.0], [3.0, 3.0]];
        // Copies of the training set: 0 to train, √2 to held-out.
        let gap = nn_distance_gap(train.view(), train.view(), heldout.view());
        assert!((gap - 2f64.sqrt()).abs() < 1e-12);
        // Copies of the held-out set: the opposite sign.
        let gap = nn_distance_gap(heldout.view(), train.view(), heldout.view());
        assert!((gap + 2f64.sqrt()).abs() < 1e-12);
    }
}
