//! The denoiser abstraction D(x, σ) ≈ E[x₀ | x₀ + σ ε = x], and the "imperfect score" wrapper.
//!
//! The score of the noisy marginal follows from it by Tweedie's formula,
//! ∇ log p_σ(x) = (D(x, σ) − x)/σ², so a denoiser is all a sampler needs.

use crate::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2};

/// A denoiser in noise-level space.
pub trait Denoiser: Send + Sync {
    /// Dimension of the points.
    fn dim(&self) -> usize;

    /// Writes D(x_i, σ) into row i of `out` for every row x_i of `x` (σ > 0, data units); with
    /// `labels`, D(x_i, σ | c_i) given row i's class c_i = `labels[i]`, what a class-conditional
    /// denoiser computes (with its guidance). A denoiser without classes ignores the labels.
    fn denoise(
        &self,
        x: ArrayView2<f32>,
        sigma: f64,
        labels: Option<&[u32]>,
        out: ArrayViewMut2<f32>,
    );
}

impl<D: Denoiser + ?Sized> Denoiser for std::sync::Arc<D> {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn denoise(
        &self,
        x: ArrayView2<f32>,
        sigma: f64,
        labels: Option<&[u32]>,
        out: ArrayViewMut2<f32>,
    ) {
        (**self).denoise(x, sigma, labels, out)
    }
}

/// The row indices of each class 0..`classes` in `labels`, in row order (for denoisers that run
/// the rows of one class together). A label ≥ `classes` panics: labels are checked when a model
/// is fitted.
pub fn rows_by_class(labels: &[u32], classes: usize) -> Vec<Vec<usize>> {
    let mut rows = vec![Vec::new(); classes];
    for (i, &y) in labels.iter().enumerate() {
        assert!(
            (y as usize) < classes,
            "label {y} is outside the model's {classes} classes"
        );
        rows[y as usize].push(i);
    }
    rows
}

/// Class conditioning with classifier-free guidance (Ho & Salimans 2022). The network input
/// gains a one-hot block of `classes + 1` entries, the last one the "no class" token ∅; through
/// the first layer this is a learned class embedding added to its pre-activation. Training
/// replaces a row's class by ∅ with probability `label_dropout`; sampling with guidance w uses
/// F = (1 + w)·F(x, σ, c) − w·F(x, σ, ∅) (w = 0: purely conditional), which, the preconditioning
/// being affine in F, is the same mix of denoisers and of ε predictions.
#[derive(Clone, Debug, PartialEq)]
pub struct Conditioning {
    /// Number of classes (labels 0..classes).
    pub classes: usize,
    /// Probability of training a row without its class.
    pub label_dropout: f64,
    /// Guidance weight w ≥ 0 at sampling.
    pub guidance: f64,
}

impl Conditioning {
    /// Width of the one-hot block (the classes and ∅).
    pub(crate) fn width(&self) -> usize {
        self.classes + 1
    }
}

/// The training labels a class-conditional denoiser is fitted with, checked: one per point, each
/// below the number of classes. `None` for an unconditional denoiser (labels are then ignored).
pub fn training_labels<'a, 'c>(
    conditioning: Option<&'c Conditioning>,
    labels: Option<&'a [u32]>,
    points: usize,
) -> Result<Option<(&'c Conditioning, &'a [u32])>> {
    let Some(c) = conditioning else {
        return Ok(None);
    };
    let Some(l) = labels else {
        return Err(Error::Run(
            "a class-conditional denoiser needs the training set's labels".into(),
        ));
    };
    if l.len() != points {
        return Err(Error::Run(format!(
            "{} labels for {points} training points",
            l.len()
        )));
    }
    if let Some(&bad) = l.iter().find(|&&y| y as usize >= c.classes) {
        return Err(Error::Run(format!(
            "training label {bad} is outside the model's {} classes",
            c.classes
        )));
    }
    Ok(Some((c, l)))
}

/// Classifier-free guidance (Ho & Salimans 2022) in place: out ← (1 + w)·out − w·unconditional,
/// where `out` holds the class-conditional output and `unconditional` the output without class.
pub fn guide(out: &mut [f32], unconditional: &[f32], w: f64) {
    let (a, b) = ((1.0 + w) as f32, w as f32);
    for (v, &u) in out.iter_mut().zip(unconditional) {
        *v = a * *v - b * u;
    }
}

/// Controlled error added to another denoiser, for error-propagation experiments
/// (Khelifa et al.): D'(x, σ) = x + s·(D(x, σ) − x) + b + τ·f(x), where s scales the score
/// (s = 1: unchanged), b is a constant bias and f is a fixed smooth random field with unit
/// variance per coordinate (M random Fourier features of length scale ℓ, drawn once from a seed).
/// The score error this implies is ((s − 1)(D − x) + b + τ f(x))/σ².
pub struct Imperfect<D> {
    inner: D,
    scale: f64,
    bias: Array1<f64>,
    noise: f64,
    field: ErrorField,
}

/// Number of random Fourier features in [`Imperfect`]'s error field.
const FEATURES: usize = 64;

/// The fixed random field f of [`Imperfect`]: f(x) = Σ_m a_m cos(ω_m·x + φ_m) with M = 64
/// random Fourier features, frequencies ω_m ~ N(0, I/ℓ²), phases φ_m ~ U[0, 2π) and amplitudes
/// a_m ~ N(0, (2/M) I), so each coordinate has unit variance and length scale ℓ.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorField {
    /// Frequencies (M × d).
    pub freqs: Array2<f64>,
    /// Phases (M).
    pub phases: Array1<f64>,
    /// Amplitudes (M × d).
    pub amps: Array2<f64>,
}

impl ErrorField {
    /// A field on ℝ^`d` of length scale `length_scale`, drawn from `rng`.
    pub fn draw(d: usize, length_scale: f64, rng: &mut crate::rng::Stream) -> Self {
        use rand::RngExt;
        let normals = crate::distributions::standard_normals(FEATURES, 2 * d, rng);
        let freqs = Array2::from_shape_fn((FEATURES, d), |(m, j)| normals[[m, j]] / length_scale);
        let amps = Array2::from_shape_fn((FEATURES, d), |(m, j)| {
            normals[[m, d + j]] * (2.0 / FEATURES as f64).sqrt()
        });
        let phases =
            Array1::from_shape_fn(FEATURES, |_| rng.random::<f64>() * std::f64::consts::TAU);
        ErrorField {
            freqs,
            phases,
            amps,
        }
    }
}

impl<D: Denoiser> Imperfect<D> {
    /// Wraps `inner`. `bias` has one entry per coordinate (or is empty for none); the error
    /// field `field` enters with amplitude `noise`.
    pub fn new(inner: D, scale: f64, bias: &[f64], noise: f64, field: ErrorField) -> Self {
        let d = inner.dim();
        let mut b = Array1::zeros(d);
        for (v, &x) in b.iter_mut().zip(bias) {
            *v = x;
        }
        Imperfect {
            inner,
            scale,
            bias: b,
            noise,
            field,
        }
    }
}

impl<D: Denoiser> Denoiser for Imperfect<D> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn denoise(
        &self,
        x: ArrayView2<f32>,
        sigma: f64,
        labels: Option<&[u32]>,
        mut out: ArrayViewMut2<f32>,
    ) {
        self.inner.denoise(x, sigma, labels, out.view_mut());
        self.add_error(x, out);
    }
}

impl<D: Denoiser> Imperfect<D> {
    /// Turns the inner denoiser's output D into D'(x, σ) = x + s·(D − x) + b + τ·f(x).
    fn add_error(&self, x: ArrayView2<f32>, mut out: ArrayViewMut2<f32>) {
        let field = if self.noise != 0.0 {
            let xf = x.mapv(|v| v as f64);
            let mut proj = xf.dot(&self.field.freqs.t());
            proj += &self.field.phases;
            proj.mapv_inplace(f64::cos);
            Some(proj.dot(&self.field.amps))
        } else {
            None
        };
        for (i, (mut o, xr)) in out.rows_mut().into_iter().zip(x.rows()).enumerate() {
            for j in 0..o.len() {
                let xv = xr[j] as f64;
                let mut v = xv + self.scale * (o[j] as f64 - xv) + self.bias[j];
                if let Some(f) = &field {
                    v += self.noise * f[[i, j]];
                }
                o[j] = v as f32;
            }
        }
    }
}

/// Another denoiser's output clipped to a box, coordinate by coordinate: D'(x, σ) =
/// min(max(D(x, σ), lo), hi). For data known to lie in a box (pixels in [−1, 1]) this is DDPM's
/// `clip_denoised`: the prediction of x₀ never leaves the data range, and neither do the samples
/// (the last step returns D).
pub struct Clipped<D> {
    inner: D,
    lo: Vec<f32>,
    hi: Vec<f32>,
}

impl<D: Denoiser> Clipped<D> {
    /// Wraps `inner` with per-coordinate bounds (`lo[j] ≤ hi[j]`).
    pub fn new(inner: D, lo: Vec<f32>, hi: Vec<f32>) -> Self {
        assert!(lo.len() == inner.dim() && hi.len() == inner.dim());
        Clipped { inner, lo, hi }
    }

    fn clip(&self, mut out: ArrayViewMut2<f32>) {
        for mut row in out.rows_mut() {
            for ((v, &lo), &hi) in row.iter_mut().zip(&self.lo).zip(&self.hi) {
                *v = v.clamp(lo, hi);
            }
        }
    }
}

impl<D: Denoiser> Denoiser for Clipped<D> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn denoise(
        &self,
        x: ArrayView2<f32>,
        sigma: f64,
        labels: Option<&[u32]>,
        mut out: ArrayViewMut2<f32>,
    ) {
        self.inner.denoise(x, sigma, labels, out.view_mut());
        self.clip(out);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The identity "denoiser" D(x, σ) = x, for checking wrappers.
    pub(crate) struct Identity(pub usize);
    impl Denoiser for Identity {
        fn dim(&self) -> usize {
            self.0
        }
        fn denoise(
            &self,
            x: ArrayView2<f32>,
            _sigma: f64,
            _labels: Option<&[u32]>,
            mut out: ArrayViewMut2<f32>,
        ) {
            out.assign(&x);
        }
    }

    #[test]
    fn clipped_output_stays_in_the_box() {
        let den = Clipped::new(Identity(2), vec![-1.0, 0.0], vec![1.0, 0.5]);
        let x = ndarray::array![[-3.0f32, 0.25], [0.5, 9.0]];
        let mut out = Array2::zeros((2, 2));
        den.denoise(x.view(), 1.0, None, out.view_mut());
        assert_eq!(out, ndarray::array![[-1.0f32, 0.25], [0.5, 0.5]]);
    }

    #[test]
    fn imperfect_field_has_unit_variance_and_bias_adds() {
        let mut rng = crate::rng::stream(1, 0, crate::rng::Role::Fit);
        let field = ErrorField::draw(3, 1.0, &mut rng);
        let den = Imperfect::new(Identity(3), 1.0, &[0.5, 0.0, -1.0], 2.0, field);
        let x =
            crate::distributions::standard_normals(4000, 3, &mut rng).mapv(|v| (10.0 * v) as f32);
        let mut out = Array2::zeros((4000, 3));
        den.denoise(x.view(), 1.0, None, out.view_mut());
        let err = &out - &x;
        let mean = err.mean_axis(ndarray::Axis(0)).unwrap();
        // Field: mean 0, variance τ² = 4 per coordinate (over x spread far beyond ℓ).
        for (j, b) in [0.5f32, 0.0, -1.0].into_iter().enumerate() {
            assert!((mean[j] - b).abs() < 0.2, "mean {mean}");
            let var = err
                .column(j)
                .mapv(|v| (v - mean[j]).powi(2))
                .mean()
                .unwrap();
            assert!((var - 4.0).abs() < 1.2, "var {var}");
        }
        // Deterministic: same input, same output.
        let mut again = Array2::zeros((4000, 3));
        den.denoise(x.view(), 1.0, None, again.view_mut());
        assert_eq!(out, again);
    }
}
