//! Curation (`[loop.curate]`): what happens to the previous model's samples before they train
//! the next generation. A filter keeps some candidates, a correction moves the kept ones:
//!
//! - `likelihood-rank`: ⌈n/f⌉ candidates, the n with the highest (`top`), lowest (`bottom`)
//!   model log-density, or n at random;
//! - `reward`: n groups of K candidates, one kept per group with the Bradley–Terry probability
//!   exp(r_i/τ)/Σ_j exp(r_j/τ) (Ferbach et al. 2024);
//! - `verifier`: candidates drawn n at a time until n have a score ≥ the threshold (Feng et al.
//!   2024), the acceptance rate recorded;
//! - `correct = γ`: x ← x + γ (L(x) − x) with L(x) a few Metropolis-adjusted Langevin steps on
//!   the target's true score (Gillman et al. 2024's idealised corrector; the Metropolis step
//!   keeps the target exactly invariant, so γ = 1 pulls samples toward the target and γ = 0 is
//!   the plain loop).
//!
//! Candidates come from the (seed, generation, synthetic) stream, as the uncurated loop's
//! samples do; the filter's and the correction's draws from (seed, generation, curate).

use crate::classifier::Classifier;
use crate::config::{CurateConfig, FilterKind, KeepKind, ScoreConfig};
use crate::data::{Dataset, Target};
use crate::distributions::Distribution;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::rng::{Role, Stream, stream};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::RngExt as _;
use rand_distr::StandardNormal;
use std::sync::Arc;

/// What a point is scored by.
#[derive(Clone, Debug)]
pub enum Score {
    /// The target's log-density (nats).
    LogDensity,
    /// −‖x − point‖.
    Distance(Array1<f64>),
    /// w·x.
    Linear(Array1<f64>),
    /// A classifier's probability of `class`, or of each point's own label (`None`).
    Classifier {
        model: Arc<Classifier>,
        class: Option<u32>,
    },
}

impl Score {
    fn from_config(cfg: &ScoreConfig, key: &str, target: &Target, labelled: bool) -> Result<Score> {
        let dim = target.dim();
        let vector = |v: &[f64], what: &str| -> Result<Array1<f64>> {
            if v.len() > dim || v.iter().any(|x| !x.is_finite()) {
                return Err(Error::config(format!(
                    "loop.curate.{key}.{what}: expected at most {dim} finite numbers (padded with zeros)"
                )));
            }
            let mut a = Array1::zeros(dim);
            a.slice_mut(ndarray::s![..v.len()])
                .assign(&Array1::from(v.to_vec()));
            Ok(a)
        };
        Ok(match cfg {
            ScoreConfig::LogDensity => {
                if !has_density(target) {
                    return Err(Error::config(format!(
                        "loop.curate.{key}: kind = \"log-density\" needs a target with a known density \
                         (gaussian, gmm, ring-gmm, student-t)"
                    )));
                }
                Score::LogDensity
            }
            ScoreConfig::Distance { point } => Score::Distance(vector(point, "point")?),
            ScoreConfig::Linear { weights } => Score::Linear(vector(weights, "weights")?),
            ScoreConfig::Classifier { file, class } => {
                let model = Classifier::load(file)?;
                if model.dim() != dim {
                    return Err(Error::config(format!(
                        "loop.curate.{key}.file: {} takes points of dimension {}, the target's are {dim}",
                        file.display(),
                        model.dim()
                    )));
                }
                match class {
                    Some(c) if *c as usize >= model.classes() => {
                        return Err(Error::config(format!(
                            "loop.curate.{key}.class = {c}: {} has classes 0..{}",
                            file.display(),
                            model.classes() - 1
                        )));
                    }
                    None if !labelled => {
                        return Err(Error::config(format!(
                            "loop.curate.{key}: without `class` the classifier checks each sample's own \
                             label, and this model's samples carry none (a class-conditional model on a \
                             labelled target does); give class = C"
                        )));
                    }
                    _ => {}
                }
                Score::Classifier {
                    model: Arc::new(model),
                    class: *class,
                }
            }
        })
    }

    /// The score of every row of `x` (`labels`: the rows' class labels, where they have them).
    pub fn of(
        &self,
        x: ArrayView2<f32>,
        labels: Option<&[u32]>,
        target: Option<&dyn Distribution>,
    ) -> Array1<f64> {
        match self {
            Score::Classifier { model, class } => {
                let p = model.probabilities(x);
                Array1::from_iter((0..x.nrows()).map(|i| {
                    let c = class
                        .or_else(|| labels.map(|l| l[i]))
                        .map_or(usize::MAX, |c| c as usize);
                    p.row(i).get(c).copied().unwrap_or(0.0)
                }))
            }
            Score::LogDensity => target
                .and_then(|t| t.log_density(x))
                .expect("checked: the target has a density"),
            Score::Distance(p) => x.map_axis(Axis(1), |r| {
                -r.iter()
                    .zip(p)
                    .map(|(&a, b)| (a as f64 - b).powi(2))
                    .sum::<f64>()
                    .sqrt()
            }),
            Score::Linear(w) => x.map_axis(Axis(1), |r| {
                r.iter().zip(w).map(|(&a, b)| a as f64 * b).sum()
            }),
        }
    }
}

fn has_density(target: &Target) -> bool {
    target.distribution().is_some_and(|d| {
        d.log_density(Array2::<f32>::zeros((1, d.dim())).view())
            .is_some()
    })
}

/// The filter of a curation.
#[derive(Clone, Debug)]
pub enum Filter {
    /// Keep a `fraction` of candidates by the model's own log-density.
    Rank { keep: KeepKind, fraction: f64 },
    /// Keep one of every `choices` candidates by Bradley–Terry on `score`.
    Reward {
        choices: usize,
        temperature: f64,
        score: Score,
    },
    /// Keep candidates whose `score` is at least `threshold`.
    Verifier { score: Score, threshold: f64 },
}

/// The expert correction: `gamma` of the way to `steps` MALA steps of size `step_size`.
#[derive(Clone, Debug, PartialEq)]
pub struct Corrector {
    /// γ ∈ [0, 1].
    pub gamma: f64,
    /// Langevin steps.
    pub steps: usize,
    /// ε (squared data units): proposal y = x + ε ∇log p(x) + √(2ε) z.
    pub step_size: f64,
}

/// A checked `[loop.curate]`.
#[derive(Clone, Debug)]
pub struct Curation {
    /// The filter, if any.
    pub filter: Option<Filter>,
    /// The correction, if any.
    pub correct: Option<Corrector>,
}

/// What curation did to one generation's synthetic points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CurationStats {
    /// Kept candidates over candidates drawn (1 without a filter).
    pub kept: f64,
    /// Mean score of the kept points: the reward, the verifier's score, or the model's
    /// log-density for `likelihood-rank` (NaN without a filter).
    pub score_mean: f64,
    /// Mean distance ‖x' − x‖ the correction moved a point (0 without one).
    pub moved: f64,
    /// Share of the correction's Langevin proposals accepted (NaN without one).
    pub accept: f64,
}

/// The most candidates a verifier draws, as a multiple of the points it keeps.
const VERIFIER_ROUNDS: usize = 50;

impl Curation {
    /// Checks `[loop.curate]` against the target and what the learner's models offer
    /// (`model_density`: every fitted model has its own log-density; `labelled`: its samples
    /// carry class labels).
    pub fn from_config(
        cfg: &CurateConfig,
        target: &Target,
        model_density: bool,
        labelled: bool,
        learner: &str,
    ) -> Result<Curation> {
        let unused = |key: &str, present: bool, why: &str| -> Result<()> {
            if present {
                Err(Error::config(format!(
                    "loop.curate.{key} is not used {why}; remove it"
                )))
            } else {
                Ok(())
            }
        };
        let name = |f: FilterKind| match f {
            FilterKind::LikelihoodRank => "likelihood-rank",
            FilterKind::Reward => "reward",
            FilterKind::Verifier => "verifier",
        };
        // The filter keys given, and which filter uses each.
        let given = [
            ("keep", cfg.keep.is_some()),
            ("fraction", cfg.fraction.is_some()),
            ("choices", cfg.choices.is_some()),
            ("temperature", cfg.temperature.is_some()),
            ("reward", cfg.reward.is_some()),
            ("verifier", cfg.verifier.is_some()),
            ("threshold", cfg.threshold.is_some()),
        ];
        let only = |allowed: &[&str], why: &str| -> Result<()> {
            for (k, present) in given {
                if !allowed.contains(&k) {
                    unused(k, present, why)?;
                }
            }
            Ok(())
        };
        let filter = match cfg.filter {
            None => {
                only(&[], "without a filter")?;
                None
            }
            Some(f) => {
                let why = format!("by filter = \"{}\"", name(f));
                let only = |allowed: &[&str]| only(allowed, &why);
                Some(match f {
                    FilterKind::LikelihoodRank => {
                        only(&["keep", "fraction"])?;
                        if !model_density {
                            return Err(Error::config(format!(
                                "loop.curate.filter = \"likelihood-rank\" ranks samples by the model's own \
                                 log-density, and model.kind = \"{learner}\" has none; use a learner with a \
                                 density (gaussian, gmm, kde, histogram) or filter = \"reward\" / \"verifier\""
                            )));
                        }
                        let keep = cfg.keep.ok_or_else(|| {
                            Error::config(
                                "loop.curate.keep is missing: \"top\", \"bottom\" or \"random\"",
                            )
                        })?;
                        let fraction = fraction(cfg.fraction)?;
                        Filter::Rank { keep, fraction }
                    }
                    FilterKind::Reward => {
                        only(&["choices", "temperature", "reward"])?;
                        let choices = cfg.choices.unwrap_or(2);
                        if choices < 2 {
                            return Err(Error::config(format!(
                                "loop.curate.choices = {choices}: expected K ≥ 2 candidates per kept point"
                            )));
                        }
                        let temperature = cfg.temperature.unwrap_or(1.0);
                        if !(temperature.is_finite() && temperature > 0.0) {
                            return Err(Error::config(format!(
                                "loop.curate.temperature = {temperature}: expected a number > 0"
                            )));
                        }
                        let score = cfg.reward.as_ref().ok_or_else(|| {
                            Error::config(
                                "loop.curate.reward is missing: e.g. { kind = \"linear\", weights = [1, 0] }, \
                                 { kind = \"distance\", point = [0, 0] } or { kind = \"log-density\" }",
                            )
                        })?;
                        Filter::Reward {
                            choices,
                            temperature,
                            score: Score::from_config(score, "reward", target, labelled)?,
                        }
                    }
                    FilterKind::Verifier => {
                        only(&["verifier", "threshold"])?;
                        let score = cfg.verifier.as_ref().ok_or_else(|| {
                            Error::config(
                                "loop.curate.verifier is missing: e.g. { kind = \"log-density\" } with a threshold",
                            )
                        })?;
                        let threshold = cfg.threshold.filter(|t| t.is_finite()).ok_or_else(|| {
                            Error::config("loop.curate.threshold: expected a finite number (the lowest score kept)")
                        })?;
                        Filter::Verifier {
                            score: Score::from_config(score, "verifier", target, labelled)?,
                            threshold,
                        }
                    }
                })
            }
        };
        let correct = match cfg.correct {
            None => {
                unused(
                    "correct_steps",
                    cfg.correct_steps.is_some(),
                    "without correct",
                )?;
                unused(
                    "correct_step_size",
                    cfg.correct_step_size.is_some(),
                    "without correct",
                )?;
                None
            }
            Some(gamma) => {
                if !(0.0..=1.0).contains(&gamma) {
                    return Err(Error::config(format!(
                        "loop.curate.correct = {gamma}: expected γ in [0, 1]"
                    )));
                }
                let dist = target
                    .distribution()
                    .filter(|d| d.score(Array2::<f32>::zeros((1, d.dim())).view()).is_some())
                    .ok_or_else(|| {
                        Error::config(
                            "loop.curate.correct moves samples along the target's true score, which only \
                             gaussian, gmm and ring-gmm targets have in closed form",
                        )
                    })?;
                let steps = cfg.correct_steps.unwrap_or(20);
                if steps == 0 {
                    return Err(Error::config(
                        "loop.curate.correct_steps: expected at least 1",
                    ));
                }
                let step_size = match cfg.correct_step_size {
                    Some(e) if e.is_finite() && e > 0.0 => e,
                    Some(e) => {
                        return Err(Error::config(format!(
                            "loop.curate.correct_step_size = {e}: expected a number > 0"
                        )));
                    }
                    None => 0.1 * smallest_variance(dist),
                };
                Some(Corrector {
                    gamma,
                    steps,
                    step_size,
                })
            }
        };
        if filter.is_none() && correct.is_none() {
            return Err(Error::config(
                "loop.curate is empty: give a filter (\"likelihood-rank\", \"reward\", \"verifier\") or correct = γ",
            ));
        }
        Ok(Curation { filter, correct })
    }

    /// `n` curated synthetic points of generation `g` from `model` (the previous generation's),
    /// and what curation did.
    pub fn synthetic(
        &self,
        n: usize,
        model: &dyn Model,
        target: Option<&dyn Distribution>,
        seed: u64,
        g: u64,
    ) -> Result<(Dataset, CurationStats)> {
        let mut draws = stream(seed, g, Role::Synthetic);
        let mut rng = stream(seed, g, Role::Curate);
        let (mut set, kept, score_mean) = match &self.filter {
            None => (model.sample(n, &mut draws)?, 1.0, f64::NAN),
            Some(Filter::Rank { keep, fraction }) => {
                let m = ((n as f64 / fraction).ceil() as usize).max(n);
                let cand = model.sample(m, &mut draws)?;
                let ld = model
                    .distribution()
                    .and_then(|d| d.log_density(cand.points.view()))
                    .ok_or_else(|| {
                        Error::Run("likelihood-rank: the model has no log-density".into())
                    })?;
                let mut order: Vec<usize> = (0..m).collect();
                match keep {
                    KeepKind::Top => {
                        order.sort_by(|&a, &b| ld[b].total_cmp(&ld[a]).then(a.cmp(&b)))
                    }
                    KeepKind::Bottom => {
                        order.sort_by(|&a, &b| ld[a].total_cmp(&ld[b]).then(a.cmp(&b)))
                    }
                    KeepKind::Random => {
                        order = rand::seq::index::sample(&mut rng, m, n).into_vec();
                    }
                }
                let mut idx: Vec<usize> = order.into_iter().take(n).collect();
                idx.sort_unstable();
                let mean = idx.iter().map(|&i| ld[i]).sum::<f64>() / n as f64;
                (cand.select(&idx), n as f64 / m as f64, mean)
            }
            Some(Filter::Reward {
                choices,
                temperature,
                score,
            }) => {
                let cand = model.sample(n * choices, &mut draws)?;
                let r = score.of(cand.points.view(), cand.labels.as_deref(), target);
                let idx = bradley_terry(&r, *choices, *temperature, &mut rng);
                let mean = idx.iter().map(|&i| r[i]).sum::<f64>() / n as f64;
                (cand.select(&idx), 1.0 / *choices as f64, mean)
            }
            Some(Filter::Verifier { score, threshold }) => {
                let mut parts = Vec::new();
                let (mut accepted, mut drawn, mut sum) = (0usize, 0usize, 0.0);
                while accepted < n {
                    if drawn >= VERIFIER_ROUNDS * n {
                        return Err(Error::Run(format!(
                            "loop.curate: the verifier accepted {accepted} of {drawn} candidates at generation \
                             {g}, fewer than the {n} needed within {VERIFIER_ROUNDS}× as many draws; lower \
                             loop.curate.threshold"
                        )));
                    }
                    let cand = model.sample(n, &mut draws)?;
                    drawn += n;
                    let s = score.of(cand.points.view(), cand.labels.as_deref(), target);
                    let ok: Vec<usize> = (0..n).filter(|&i| s[i] >= *threshold).collect();
                    let take: Vec<usize> = ok.iter().copied().take(n - accepted).collect();
                    sum += take.iter().map(|&i| s[i]).sum::<f64>();
                    accepted += ok.len();
                    parts.push(cand.select(&take));
                }
                let refs: Vec<&Dataset> = parts.iter().collect();
                (
                    Dataset::concat(&refs),
                    accepted as f64 / drawn as f64,
                    sum / n as f64,
                )
            }
        };
        let (mut moved, mut accept) = (0.0, f64::NAN);
        if let Some(c) = &self.correct
            && c.gamma > 0.0
        {
            let target = target.expect("checked: the target has a score");
            let (after, rate) = mala(target, set.points.view(), c.steps, c.step_size, &mut rng);
            let before = set.points.clone();
            let gamma = c.gamma as f32;
            set.points
                .zip_mut_with(&after, |x, &l| *x += gamma * (l - *x));
            moved = before
                .rows()
                .into_iter()
                .zip(set.points.rows())
                .map(|(a, b)| {
                    a.iter()
                        .zip(b)
                        .map(|(&u, &v)| (u as f64 - v as f64).powi(2))
                        .sum::<f64>()
                        .sqrt()
                })
                .sum::<f64>()
                / n.max(1) as f64;
            accept = rate;
        }
        Ok((
            set,
            CurationStats {
                kept,
                score_mean,
                moved,
                accept,
            },
        ))
    }
}

/// A kept share in (0, 1].
fn fraction(f: Option<f64>) -> Result<f64> {
    match f {
        Some(f) if f > 0.0 && f <= 1.0 => Ok(f),
        Some(f) => Err(Error::config(format!(
            "loop.curate.fraction = {f}: expected a share of candidates in (0, 1]"
        ))),
        None => Err(Error::config(
            "loop.curate.fraction is missing: the share of candidates kept, in (0, 1]",
        )),
    }
}

/// The smallest variance of a coordinate of the target's (or its components') covariance.
fn smallest_variance(dist: &dyn Distribution) -> f64 {
    let diag_min = |c: &Array2<f64>| c.diag().iter().copied().fold(f64::INFINITY, f64::min);
    match (dist.as_mixture(), dist.as_gaussian()) {
        (Some(m), _) => m
            .components()
            .iter()
            .map(|c| diag_min(c.sigma()))
            .fold(f64::INFINITY, f64::min),
        (None, Some(g)) => diag_min(g.sigma()),
        _ => dist.covariance().map_or(1.0, |c| diag_min(&c)),
    }
}

/// One index per group of `k` consecutive scores: group i's j-th with probability
/// exp(r_j/τ)/Σ exp(r/τ) (Bradley–Terry / Plackett–Luce with K choices).
pub fn bradley_terry(r: &Array1<f64>, k: usize, temperature: f64, rng: &mut Stream) -> Vec<usize> {
    (0..r.len() / k)
        .map(|i| {
            let group = &r.as_slice().expect("contiguous")[i * k..(i + 1) * k];
            let top = group.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = group
                .iter()
                .map(|&v| {
                    if top.is_finite() {
                        ((v - top) / temperature).exp()
                    } else {
                        1.0
                    }
                })
                .collect();
            let total: f64 = w.iter().sum();
            let mut u = rng.random::<f64>() * total;
            for (j, wj) in w.iter().enumerate() {
                if u < *wj {
                    return i * k + j;
                }
                u -= wj;
            }
            i * k + k - 1
        })
        .collect()
}

/// `steps` Metropolis-adjusted Langevin steps from each row of `x` toward `target`: proposal
/// y = x + ε s(x) + √(2ε) z with s = ∇log p, accepted with probability
/// min(1, p(y) q(x | y) / (p(x) q(y | x))), q(y | x) = N(y; x + ε s(x), 2ε I). Returns the
/// points and the share of proposals accepted.
pub fn mala(
    target: &dyn Distribution,
    x: ArrayView2<f32>,
    steps: usize,
    eps: f64,
    rng: &mut Stream,
) -> (Array2<f32>, f64) {
    let (n, d) = x.dim();
    let mut x = x.to_owned();
    let density = |p: ArrayView2<f32>| {
        (
            target.log_density(p).expect("checked: density"),
            target.score(p).expect("checked: score"),
        )
    };
    let (mut lp, mut sc) = density(x.view());
    let mut accepted = 0usize;
    let noise = (2.0 * eps).sqrt();
    for _ in 0..steps {
        let mut y = Array2::<f32>::zeros((n, d));
        for i in 0..n {
            for j in 0..d {
                let z: f64 = rng.sample(StandardNormal);
                y[[i, j]] = (x[[i, j]] as f64 + eps * sc[[i, j]] + noise * z) as f32;
            }
        }
        let (lq, sq) = density(y.view());
        for i in 0..n {
            let (mut fwd, mut back) = (0.0, 0.0);
            for j in 0..d {
                let (xi, yi) = (x[[i, j]] as f64, y[[i, j]] as f64);
                fwd += (yi - xi - eps * sc[[i, j]]).powi(2);
                back += (xi - yi - eps * sq[[i, j]]).powi(2);
            }
            let log_alpha = lq[i] - lp[i] + (fwd - back) / (4.0 * eps);
            let u: f64 = rng.random();
            if log_alpha.is_finite() && u.ln() < log_alpha {
                x.row_mut(i).assign(&y.row(i));
                sc.row_mut(i).assign(&sq.row(i));
                lp[i] = lq[i];
                accepted += 1;
            }
        }
    }
    (x, accepted as f64 / (n * steps).max(1) as f64)
}

/// E[(Δ/2) tanh(Δ/(2τ))] for Δ ~ N(0, 2s²): how far Bradley–Terry selection between K = 2 draws
/// of a Gaussian score with standard deviation s moves its mean (τ → 0: s/√π, picking the larger).
/// Trapezoid rule over ±12 standard deviations of Δ, 4 001 nodes: error below 10⁻⁵ s, the worst
/// case being τ → 0, where the integrand has a kink at 0.
pub fn bradley_terry_shift(s: f64, temperature: f64) -> f64 {
    let sd = std::f64::consts::SQRT_2 * s;
    let nodes = 4001;
    let h = 24.0 * sd / (nodes - 1) as f64;
    let mut sum = 0.0;
    for i in 0..nodes {
        let d = -12.0 * sd + i as f64 * h;
        let pdf = (-0.5 * (d / sd).powi(2)).exp() / (sd * (2.0 * std::f64::consts::PI).sqrt());
        let w = if i == 0 || i == nodes - 1 { 0.5 } else { 1.0 };
        sum += w * pdf * 0.5 * d * (d / (2.0 * temperature)).tanh();
    }
    sum * h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributions::Gaussian;

    #[test]
    fn the_bradley_terry_shift_has_its_hard_max_limit() {
        // τ → 0: E max of two N(0, s²) draws = s/√π.
        let s = 1.7;
        let hard = bradley_terry_shift(s, 1e-9);
        assert!(
            (hard - s / std::f64::consts::PI.sqrt()).abs() < 1e-5 * s,
            "{hard}"
        );
        // τ → ∞: a coin flip, no shift.
        assert!(bradley_terry_shift(s, 1e9).abs() < 1e-8);
    }

    /// K = 2 Bradley–Terry selection of a 2-D standard Gaussian with reward w·x, w = (1, 0)
    /// and τ = 1: the kept points' mean along w is δ = E[(Δ/2) tanh(Δ/2)] (Δ ~ N(0, 2)) and
    /// their variance along w is 1 − δ²; across w nothing changes. 200 000 kept points; each
    /// check within 4 standard errors.
    #[test]
    fn reward_selection_moves_a_gaussian_by_the_closed_form() {
        // The previous model: the exact N(0, I).
        let exact = Gaussian::isotropic(Array1::zeros(2), 1.0);
        let cur = Curation {
            filter: Some(Filter::Reward {
                choices: 2,
                temperature: 1.0,
                score: Score::Linear(ndarray::array![1.0, 0.0]),
            }),
            correct: None,
        };
        let n = 200_000;
        let (set, stats) = cur.synthetic(n, &exact, None, 3, 1).unwrap();
        let delta = bradley_terry_shift(1.0, 1.0);
        let col = |j: usize| {
            set.points
                .column(j)
                .iter()
                .map(|&v| v as f64)
                .collect::<Vec<f64>>()
        };
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (u, v) = (col(0), col(1));
        let (mu, mv) = (mean(&u), mean(&v));
        let var_u = u.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / (n - 1) as f64;
        let se = ((1.0 - delta * delta) / n as f64).sqrt();
        assert!((mu - delta).abs() < 4.0 * se, "{mu} vs {delta} ± {se}");
        assert!(mv.abs() < 4.0 / (n as f64).sqrt(), "{mv}");
        // The variance's standard error: √(2/n) σ² for a near-Gaussian.
        let var_se = (2.0 / n as f64).sqrt();
        assert!(
            (var_u - (1.0 - delta * delta)).abs() < 4.0 * var_se,
            "{var_u}"
        );
        assert_eq!(stats.kept, 0.5);
        assert!((stats.score_mean - mu).abs() < 1e-6);
    }

    /// A log-density verifier on a 2-D standard Gaussian keeps x with ‖x‖² ≤ c, c = −2(t + ln 2π):
    /// its acceptance rate is the χ²₂ probability 1 − e^(−c/2) (within 4 binomial standard
    /// errors), and every kept point passes.
    #[test]
    fn a_log_density_verifier_accepts_the_chi_square_share() {
        let g = Gaussian::isotropic(Array1::zeros(2), 1.0);
        let t = -3.0;
        let cur = Curation {
            filter: Some(Filter::Verifier {
                score: Score::LogDensity,
                threshold: t,
            }),
            correct: None,
        };
        let n = 50_000;
        let (set, stats) = cur.synthetic(n, &g, Some(&g), 5, 1).unwrap();
        assert_eq!(set.len(), n);
        let c = -2.0 * (t + (2.0 * std::f64::consts::PI).ln());
        let p = 1.0 - (-c / 2.0).exp();
        let drawn = (n as f64 / stats.kept).round();
        let se = (p * (1.0 - p) / drawn).sqrt();
        assert!(
            (stats.kept - p).abs() < 4.0 * se,
            "{} vs {p} ± {se}",
            stats.kept
        );
        let ld = g.log_density(set.points.view()).unwrap();
        assert!(ld.iter().all(|&l| l >= t));
        assert!((stats.score_mean - ld.mean().unwrap()).abs() < 1e-9);
    }

    /// A model of two labelled blobs that gets 30% of its labels wrong.
    #[derive(Debug)]
    struct NoisyLabels(crate::distributions::GaussianMixture);

    impl Model for NoisyLabels {
        fn dim(&self) -> usize {
            2
        }
        fn sample(&self, n: usize, rng: &mut Stream) -> Result<Dataset> {
            let (points, labels) = self.0.sample_labeled(n, rng);
            let labels = labels
                .into_iter()
                .map(|l| {
                    if rng.random::<f64>() < 0.3 {
                        1 - l as u32
                    } else {
                        l as u32
                    }
                })
                .collect();
            Ok(Dataset {
                points,
                labels: Some(labels),
            })
        }
        fn save(&self, _: &mut crate::data::tensors::TensorFile) -> Result<()> {
            Ok(())
        }
    }

    /// A classifier trained on clean labels as the verifier of each sample's own label at
    /// confidence 0.9: every kept sample passes, the wrong labels fall from 30% to under 3%, and
    /// the acceptance rate is about 0.7 × the share of confident points (within (0.5, 0.75)).
    #[test]
    fn a_classifier_verifier_keeps_the_samples_whose_label_it_confirms() {
        let blobs = crate::distributions::GaussianMixture::new(
            vec![0.5, 0.5],
            vec![
                Gaussian::isotropic(ndarray::array![-2.0, 0.0], 1.0),
                Gaussian::isotropic(ndarray::array![2.0, 0.0], 1.0),
            ],
        );
        let (x, l) = blobs.sample_labeled(4000, &mut stream(0, 0, Role::RealInit));
        let labels: Vec<u32> = l.iter().map(|&v| v as u32).collect();
        let clf = Arc::new(crate::classifier::fit_mlp(x.view(), &labels, &[], 0));
        let cur = Curation {
            filter: Some(Filter::Verifier {
                score: Score::Classifier {
                    model: clf.clone(),
                    class: None,
                },
                threshold: 0.9,
            }),
            correct: None,
        };
        let model = NoisyLabels(blobs);
        let n = 5000;
        let (set, stats) = cur.synthetic(n, &model, None, 1, 1).unwrap();
        let kept_labels = set.labels.as_deref().unwrap();
        let p = clf.probabilities(set.points.view());
        assert!((0..n).all(|i| p[[i, kept_labels[i] as usize]] >= 0.9));
        let wrong = (0..n)
            .filter(|&i| (set.points[[i, 0]] > 0.0) != (kept_labels[i] == 1))
            .count() as f64
            / n as f64;
        assert!(wrong < 0.03, "{wrong}");
        assert!(stats.kept > 0.5 && stats.kept < 0.75, "{}", stats.kept);
    }

    #[test]
    fn mala_leaves_the_target_invariant_and_pulls_toward_it() {
        let target = Gaussian::new(
            ndarray::array![1.0, -2.0],
            ndarray::array![[2.0, 0.6], [0.6, 0.5]],
        );
        let n = 20_000;
        // From the target: still the target after 10 steps (mean and variances within 4 se).
        let x = Distribution::sample(&target, n, &mut stream(1, 0, Role::Samples));
        let (y, rate) = mala(&target, x.view(), 10, 0.05, &mut stream(1, 0, Role::Curate));
        assert!(rate > 0.8, "{rate}");
        for (j, (m, v)) in [(1.0, 2.0), (-2.0, 0.5)].into_iter().enumerate() {
            let c: Vec<f64> = y.column(j).iter().map(|&v| v as f64).collect();
            let mean = c.iter().sum::<f64>() / n as f64;
            let var = c.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            assert!(
                (mean - m).abs() < 4.0 * (v / n as f64).sqrt(),
                "{j}: {mean}"
            );
            assert!(
                (var - v).abs() < 4.0 * v * (2.0 / n as f64).sqrt(),
                "{j}: {var}"
            );
        }
        // From a collapsed cloud: spread back out toward the target's variance.
        let tight = Array2::<f32>::from_elem((2000, 2), 0.0) + &ndarray::array![1.0f32, -2.0];
        let (z, _) = mala(
            &target,
            tight.view(),
            200,
            0.05,
            &mut stream(2, 0, Role::Curate),
        );
        let c: Vec<f64> = z.column(0).iter().map(|&v| v as f64).collect();
        let mean = c.iter().sum::<f64>() / c.len() as f64;
        let var = c.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (c.len() - 1) as f64;
        assert!(var > 1.6, "{var}");
    }
}
