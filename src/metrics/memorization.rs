use crate::linalg::two_nearest_sq;
use ndarray::ArrayView2;

/// Share of `samples` whose nearest training point is closer than `ratio` times the second
/// nearest (ratio 1/3: the test of Yoon et al. 2023 used by Yi et al.); needs ≥ 2 training points.
pub fn memorized_share(samples: ArrayView2<f32>, train: ArrayView2<f32>, ratio: f64) -> f64 {
    if samples.nrows() == 0 || train.nrows() < 2 {
        return f64::NAN;
    }
    let r2 = ratio * ratio;
    let hits = two_nearest_sq(samples, train)
        .iter()
        .filter(|(d1, d2)| *d1 < r2 * *d2)
        .count();
    hits as f64 / samples.nrows() as f64
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
    }
}
