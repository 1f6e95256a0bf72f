use crate::distributions::Gaussian;
use crate::linalg::{sqrtm_psd, symmetrize, to_na};

/// KL(p ‖ q) = ½ [tr(Σq⁻¹ Σp) + (μq − μp)ᵀ Σq⁻¹ (μq − μp) − d + ln det Σq − ln det Σp], in nats;
/// +∞ when Σq is singular or Σp is (support mismatch).
pub fn kl_gaussians(p: &Gaussian, q: &Gaussian) -> f64 {
    let d = p.mu().len();
    let sp = symmetrize(&to_na(p.sigma()));
    let sq = symmetrize(&to_na(q.sigma()));
    let (Some(cq), Some(cp)) = (sq.cholesky(), sp.clone().cholesky()) else {
        return f64::INFINITY;
    };
    let logdet = |l: nalgebra::DMatrix<f64>| 2.0 * l.diagonal().iter().map(|v| v.ln()).sum::<f64>();
    let diff = nalgebra::DVector::from_iterator(d, q.mu() - p.mu());
    let trace = cq.solve(&sp).trace();
    let maha = diff.dot(&cq.solve(&diff));
    0.5 * (trace + maha - d as f64 + logdet(cq.l()) - logdet(cp.l()))
}

/// W₂(p, q) = (‖μp − μq‖² + tr(Σp + Σq − 2 (Σq^½ Σp Σq^½)^½))^½ (Dowson & Landau 1982).
pub fn w2_gaussians(p: &Gaussian, q: &Gaussian) -> f64 {
    let sp = to_na(p.sigma());
    let sq = to_na(q.sigma());
    let rq = sqrtm_psd(&sq);
    let cross = sqrtm_psd(&(&rq * &sp * &rq));
    let mean_term: f64 = (p.mu() - q.mu()).mapv(|v| v * v).sum();
    (mean_term + sp.trace() + sq.trace() - 2.0 * cross.trace())
        .max(0.0)
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn one_dimensional_closed_forms() {
        let p = Gaussian::new(array![0.0], array![[1.0]]);
        let q = Gaussian::new(array![1.0], array![[4.0]]);
        // KL = ln(σq/σp) + (σp² + Δ²)/(2σq²) − ½
        let kl = 2.0f64.ln() + (1.0 + 1.0) / 8.0 - 0.5;
        assert!((kl_gaussians(&p, &q) - kl).abs() < 1e-12);
        // W2² = Δ² + (σp − σq)²
        assert!((w2_gaussians(&p, &q) - 2.0f64.sqrt()).abs() < 1e-12);
        assert_eq!(kl_gaussians(&p, &p), 0.0);
        let collapsed = Gaussian::new(array![0.0], array![[0.0]]);
        assert_eq!(kl_gaussians(&p, &collapsed), f64::INFINITY);
        assert!((w2_gaussians(&p, &collapsed) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn w2_of_commuting_covariances() {
        let p = Gaussian::new(array![0.0, 0.0], array![[4.0, 0.0], [0.0, 1.0]]);
        let q = Gaussian::new(array![0.0, 3.0], array![[1.0, 0.0], [0.0, 9.0]]);
        let w2sq = 9.0 + (2.0f64 - 1.0).powi(2) + (1.0f64 - 3.0).powi(2);
        assert!((w2_gaussians(&p, &q) - w2sq.sqrt()).abs() < 1e-10);
    }
}
