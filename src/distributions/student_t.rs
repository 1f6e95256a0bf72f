use super::{Distribution, standard_normals};
use crate::rng::Stream;
use ndarray::{Array1, Array2};
use rand::RngExt;
use rand_distr::ChiSquared;

/// Multivariate Student-t with `df` degrees of freedom: x = μ + s·z/√(u/ν), z ~ N(0, I),
/// u ~ χ²(ν). Heavy tails; the mean exists for ν > 1, the covariance s²ν/(ν−2)·I for ν > 2.
#[derive(Clone, Debug)]
pub struct StudentT {
    mean: Array1<f64>,
    scale: f64,
    df: f64,
}

impl StudentT {
    /// Student-t with location `mean`, scale `scale` > 0 and `df` > 0 degrees of freedom.
    pub fn new(mean: Array1<f64>, scale: f64, df: f64) -> Self {
        assert!(scale > 0.0 && df > 0.0);
        StudentT { mean, scale, df }
    }
}

impl Distribution for StudentT {
    fn dim(&self) -> usize {
        self.mean.len()
    }

    fn sample(&self, n: usize, rng: &mut Stream) -> Array2<f32> {
        let chi = ChiSquared::new(self.df).expect("df > 0");
        let mut z = standard_normals(n, self.dim(), rng);
        for mut row in z.rows_mut() {
            let u: f64 = rng.sample(chi);
            let f = self.scale / (u / self.df).sqrt();
            row.mapv_inplace(|v| v * f);
            row += &self.mean;
        }
        z.mapv(|v| v as f32)
    }

    fn mean(&self) -> Option<Array1<f64>> {
        (self.df > 1.0).then(|| self.mean.clone())
    }

    fn covariance(&self) -> Option<Array2<f64>> {
        (self.df > 2.0).then(|| {
            Array2::eye(self.dim()) * (self.scale * self.scale * self.df / (self.df - 2.0))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg;
    use crate::rng::{Role, stream};
    use ndarray::array;

    #[test]
    fn variance_matches_closed_form() {
        let t = StudentT::new(array![0.0, 1.0, 0.0], 1.0, 10.0);
        let x = t.sample(200_000, &mut stream(2, 0, Role::Samples));
        let c = linalg::covariance(x.view(), 1);
        // variance 1.25; the sd of the estimate is ≈ 1.25·sqrt((2 + κ)/n) with excess kurtosis
        // κ = 6/(ν−4) = 1, so ≈ 0.005
        for i in 0..3 {
            assert!((c[[i, i]] - 1.25).abs() < 0.03, "{}", c[[i, i]]);
        }
        assert!((linalg::mean(x.view())[1] - 1.0).abs() < 0.015);
    }
}
