use super::{Distribution, cumulative, draw_index};
use crate::rng::Stream;
use ndarray::{Array1, Array2, array};
use rand::RngExt;
use rand_distr::StandardNormal;
use std::f64::consts::PI;

/// Concentric circles in 2-D: pick ring k with probability w_k, an angle uniformly, and radius
/// r_k + noise·z with z ~ N(0, 1).
#[derive(Clone, Debug)]
pub struct Rings {
    radii: Vec<f64>,
    weights: Vec<f64>,
    noise: f64,
}

impl Rings {
    /// Rings of the given radii and (unnormalised) weights with radial Gaussian noise `noise`.
    pub fn new(radii: Vec<f64>, weights: Vec<f64>, noise: f64) -> Self {
        let total: f64 = weights.iter().sum();
        Rings {
            radii,
            weights: weights.into_iter().map(|w| w / total).collect(),
            noise,
        }
    }
}

impl Distribution for Rings {
    fn dim(&self) -> usize {
        2
    }

    fn sample(&self, n: usize, rng: &mut Stream) -> Array2<f32> {
        let cum = cumulative(&self.weights);
        let mut x = Array2::zeros((n, 2));
        for mut row in x.rows_mut() {
            let k = draw_index(&cum, rng);
            let angle = 2.0 * PI * rng.random::<f64>();
            let r = self.radii[k] + self.noise * rng.sample::<f64, _>(StandardNormal);
            row[0] = (r * angle.cos()) as f32;
            row[1] = (r * angle.sin()) as f32;
        }
        x
    }

    fn mean(&self) -> Option<Array1<f64>> {
        Some(Array1::zeros(2))
    }

    /// Σ = ½ Σ_k w_k (r_k² + noise²) I, by rotational symmetry.
    fn covariance(&self) -> Option<Array2<f64>> {
        let er2: f64 = self
            .radii
            .iter()
            .zip(&self.weights)
            .map(|(r, w)| w * (r * r + self.noise * self.noise))
            .sum();
        Some(Array2::eye(2) * (0.5 * er2))
    }
}

/// Two interleaving half circles (scikit-learn's `make_moons`) with angle t ~ U[0, π]:
/// upper (cos t, sin t), lower (1 − cos t, ½ − sin t), each with probability ½, plus N(0, noise² I).
#[derive(Clone, Debug)]
pub struct Moons {
    noise: f64,
}

impl Moons {
    /// Two moons with isotropic Gaussian noise of standard deviation `noise`.
    pub fn new(noise: f64) -> Self {
        Moons { noise }
    }
}

impl Distribution for Moons {
    fn dim(&self) -> usize {
        2
    }

    fn sample(&self, n: usize, rng: &mut Stream) -> Array2<f32> {
        let mut x = Array2::zeros((n, 2));
        for mut row in x.rows_mut() {
            let t = PI * rng.random::<f64>();
            let (a, b) = if rng.random::<bool>() {
                (t.cos(), t.sin())
            } else {
                (1.0 - t.cos(), 0.5 - t.sin())
            };
            let ea: f64 = rng.sample(StandardNormal);
            let eb: f64 = rng.sample(StandardNormal);
            row[0] = (a + self.noise * ea) as f32;
            row[1] = (b + self.noise * eb) as f32;
        }
        x
    }

    /// (½, ¼): E cos t = 0 and E sin t = 2/π on [0, π].
    fn mean(&self) -> Option<Array1<f64>> {
        Some(array![0.5, 0.25])
    }

    /// From E cos² t = E sin² t = ½, E cos t sin t = 0 on [0, π], averaged over both moons.
    fn covariance(&self) -> Option<Array2<f64>> {
        let m = self.mean()?;
        let s2 = self.noise * self.noise;
        let exx = 1.0;
        let eyy = (0.5 + 0.75 - 2.0 / PI) / 2.0;
        let exy = (0.5 - 2.0 / PI) / 2.0;
        Some(array![
            [exx - m[0] * m[0] + s2, exy - m[0] * m[1]],
            [exy - m[0] * m[1], eyy - m[1] * m[1] + s2]
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg;
    use crate::rng::{Role, stream};

    fn check_moments(d: &dyn Distribution, tol: f64) {
        let x = d.sample(200_000, &mut stream(5, 0, Role::Samples));
        let m = linalg::mean(x.view());
        let c = linalg::covariance(x.view(), 1);
        assert!(
            (&m - &d.mean().unwrap()).iter().all(|v| v.abs() < tol),
            "{m}"
        );
        assert!(
            (&c - &d.covariance().unwrap())
                .iter()
                .all(|v| v.abs() < tol),
            "{c}"
        );
    }

    #[test]
    fn rings_and_moons_moments_match_closed_forms() {
        // all second moments here are O(1); their standard errors at n = 2e5 are ≈ 0.003
        check_moments(&Rings::new(vec![1.0, 2.0], vec![1.0, 1.0], 0.1), 0.02);
        check_moments(&Moons::new(0.1), 0.02);
    }
}
