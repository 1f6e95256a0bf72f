//! Schedules: how generation t's training set is built from real data and earlier models.
//!
//! Generation 0 is always fitted on real data only. With S_t = samples of model t − 1:
//! - `replace`: S_t only, `train_size` points (fully synthetic);
//! - `augment`: a fixed real set D of `real_size` points plus ⌊λ·|D|⌋ (or `synthetic_size`)
//!   points of S_t (Bertrand et al. 2024; Fu et al. 2024);
//! - `fresh`: `train_size` points, of which round(α·train_size) are new real draws and the rest
//!   S_t (Khelifa et al. 2026; Alemohammad et al.'s fresh-data loop);
//! - `accumulate`: D ∪ S_1 ∪ … ∪ S_t with |S_t| = `train_size` (Gerstgrasser et al. 2024);
//! - `accumulate-subsample`: the same pool, subsampled without replacement to `train_size`.

use crate::config::{LoopConfig, ScheduleKind};
use crate::curate::{Curation, CurationStats};
use crate::data::{Dataset, RealData, Target};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::rng::{Role, stream};
use rand::seq::index::sample;
use std::sync::Arc;

/// A checked schedule with its sizes resolved.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// Fully synthetic.
    Replace { train_size: usize },
    /// Fixed real set plus synthetic points.
    Augment {
        real_size: usize,
        synthetic_size: usize,
    },
    /// A fraction of fresh real points each generation.
    Fresh {
        train_size: usize,
        fresh_size: usize,
    },
    /// Real data plus every synthetic set so far.
    Accumulate { train_size: usize },
    /// The accumulated pool subsampled to `train_size`.
    AccumulateSubsample { train_size: usize },
}

/// What a schedule carries from one generation to the next for one seed (shared sets: a clone,
/// as a checkpoint of generation g while g + 1 is built, copies no points).
#[derive(Clone, Default)]
pub struct LoopState {
    /// The real set drawn at generation 0 (kept by `augment` and the accumulating schedules
    /// only).
    real: Option<Arc<Dataset>>,
    /// Every synthetic set so far (accumulating schedules).
    synthetic: Vec<Arc<Dataset>>,
}

impl LoopState {
    /// Adds the state to `file` (a checkpoint): tensors `loop.real.points` (`.labels`) and
    /// `loop.synthetic.K.points` (`.labels`) for K = 0, 1, …
    pub fn save(&self, file: &mut crate::data::tensors::TensorFile) {
        let put = |file: &mut crate::data::tensors::TensorFile, name: &str, d: &Dataset| {
            let p = &d.points;
            let values: Vec<f32> = p.iter().copied().collect();
            file.put(&format!("{name}.points"), &[p.nrows(), p.ncols()], &values);
            if let Some(l) = &d.labels {
                file.put(&format!("{name}.labels"), &[l.len()], l);
            }
        };
        if let Some(r) = &self.real {
            put(file, "loop.real", r);
        }
        for (k, s) in self.synthetic.iter().enumerate() {
            put(file, &format!("loop.synthetic.{k}"), s);
        }
    }

    /// The state [`LoopState::save`] added to `file`.
    pub fn load(file: &crate::data::tensors::TensorFile) -> Result<LoopState> {
        let get = |name: &str| -> Result<Option<Dataset>> {
            if !file.has(&format!("{name}.points")) {
                return Ok(None);
            }
            let points = file.matrix(&format!("{name}.points"))?;
            let labels = if file.has(&format!("{name}.labels")) {
                Some(file.vector::<u32>(&format!("{name}.labels"), points.nrows())?)
            } else {
                None
            };
            Ok(Some(Dataset { points, labels }))
        };
        let mut synthetic = Vec::new();
        while let Some(d) = get(&format!("loop.synthetic.{}", synthetic.len()))? {
            synthetic.push(Arc::new(d));
        }
        Ok(LoopState {
            real: get("loop.real")?.map(Arc::new),
            synthetic,
        })
    }
}

impl Schedule {
    /// Checks `[loop]` against the target and resolves sizes; keys a schedule does not use are
    /// an error, so a typo in intent is caught before a run.
    pub fn from_config(cfg: &LoopConfig, target: &Target) -> Result<Schedule> {
        let name = serde_plain_name(cfg.schedule);
        let unused = |key: &str, present: bool| -> Result<()> {
            if present {
                Err(Error::config(format!(
                    "loop.{key} is not used by schedule = \"{name}\"; remove it"
                )))
            } else {
                Ok(())
            }
        };
        let pool = target.pool_size();
        let size = |key: &str, v: Option<usize>, default: Option<usize>| -> Result<usize> {
            match v.or(default) {
                Some(0) => Err(Error::config(format!(
                    "loop.{key}: expected at least 1 point"
                ))),
                Some(n) => Ok(n),
                None => Err(Error::config(format!(
                    "loop.{key} is missing: schedule = \"{name}\" needs it (a number of points)"
                ))),
            }
        };
        let s = match cfg.schedule {
            ScheduleKind::Replace
            | ScheduleKind::Accumulate
            | ScheduleKind::AccumulateSubsample => {
                unused("real_size", cfg.real_size.is_some())?;
                unused("synthetic_ratio", cfg.synthetic_ratio.is_some())?;
                unused("synthetic_size", cfg.synthetic_size.is_some())?;
                unused("fresh_fraction", cfg.fresh_fraction.is_some())?;
                let train_size = size("train_size", cfg.train_size, pool)?;
                match cfg.schedule {
                    ScheduleKind::Replace => Schedule::Replace { train_size },
                    ScheduleKind::Accumulate => Schedule::Accumulate { train_size },
                    _ => Schedule::AccumulateSubsample { train_size },
                }
            }
            ScheduleKind::Augment => {
                unused("train_size", cfg.train_size.is_some())?;
                unused("fresh_fraction", cfg.fresh_fraction.is_some())?;
                let real_size = size("real_size", cfg.real_size, pool)?;
                let synthetic_size = match (cfg.synthetic_ratio, cfg.synthetic_size) {
                    (Some(_), Some(_)) => {
                        return Err(Error::config(
                            "loop: give synthetic_ratio or synthetic_size, not both",
                        ));
                    }
                    (Some(l), None) if l.is_finite() && l >= 0.0 => {
                        (l * real_size as f64).floor() as usize
                    }
                    (Some(l), None) => {
                        return Err(Error::config(format!(
                            "loop.synthetic_ratio = {l}: expected a number ≥ 0 (synthetic points per real point)"
                        )));
                    }
                    (None, Some(m)) => m,
                    (None, None) => {
                        return Err(Error::config(
                            "loop: schedule = \"augment\" needs synthetic_ratio (λ ≥ 0) or synthetic_size",
                        ));
                    }
                };
                Schedule::Augment {
                    real_size,
                    synthetic_size,
                }
            }
            ScheduleKind::Fresh => {
                unused("real_size", cfg.real_size.is_some())?;
                unused("synthetic_ratio", cfg.synthetic_ratio.is_some())?;
                unused("synthetic_size", cfg.synthetic_size.is_some())?;
                let train_size = size("train_size", cfg.train_size, None)?;
                let alpha = cfg.fresh_fraction.ok_or_else(|| {
                    Error::config(
                        "loop.fresh_fraction is missing: schedule = \"fresh\" needs α in [0, 1]",
                    )
                })?;
                if !(0.0..=1.0).contains(&alpha) {
                    return Err(Error::config(format!(
                        "loop.fresh_fraction = {alpha}: expected a number in [0, 1]"
                    )));
                }
                Schedule::Fresh {
                    train_size,
                    fresh_size: (alpha * train_size as f64).round() as usize,
                }
            }
        };
        Ok(s)
    }

    /// Real points drawn over `generations` generations (to check a finite pool up front).
    pub fn real_points_needed(&self, generations: usize) -> usize {
        match *self {
            Schedule::Replace { train_size }
            | Schedule::Accumulate { train_size }
            | Schedule::AccumulateSubsample { train_size } => train_size,
            Schedule::Augment { real_size, .. } => real_size,
            Schedule::Fresh {
                train_size,
                fresh_size,
            } => train_size + generations.saturating_sub(1) * fresh_size,
        }
    }

    /// How many of the first points of generation `g`'s training set of `len` points are real
    /// (the rest synthetic); `None` where the two are mixed (`accumulate-subsample`).
    pub fn real_count(&self, g: usize, len: usize) -> Option<usize> {
        if g == 0 {
            return Some(len);
        }
        match *self {
            Schedule::Replace { .. } => Some(0),
            Schedule::Augment { real_size, .. } => Some(real_size),
            Schedule::Fresh { fresh_size, .. } => Some(fresh_size),
            Schedule::Accumulate { train_size } => Some(len - g * train_size),
            Schedule::AccumulateSubsample { .. } => None,
        }
    }

    /// Size of the smallest training set the schedule produces.
    pub fn min_train_size(&self) -> usize {
        match *self {
            Schedule::Replace { train_size }
            | Schedule::Fresh { train_size, .. }
            | Schedule::Accumulate { train_size }
            | Schedule::AccumulateSubsample { train_size } => train_size,
            Schedule::Augment { real_size, .. } => real_size,
        }
    }

    /// The training set of `generation` for `seed`, with labels where every part has them
    /// (real points of a labelled data set, samples of a class-conditional model), and what
    /// `curation` did to its synthetic points. `previous` is model `generation − 1` (`None` at
    /// generation 0). Real points come first: [`Schedule::real_count`] says how many.
    pub fn training_set(
        &self,
        seed: u64,
        generation: usize,
        real: &mut RealData,
        previous: Option<&dyn Model>,
        state: &mut LoopState,
        curation: Option<&Curation>,
    ) -> Result<(Dataset, Option<CurationStats>)> {
        let g = generation as u64;
        let target = real.target().distribution();
        let mut stats = None;
        let mut synthetic = |n: usize| -> Result<Dataset> {
            let model = previous.expect("generation ≥ 1 has a previous model");
            match curation {
                Some(c) => {
                    let (set, s) = c.synthetic(n, model, target, seed, g)?;
                    stats = Some(s);
                    Ok(set)
                }
                None => model.sample(n, &mut stream(seed, g, Role::Synthetic)),
            }
        };
        let real_set = |(points, labels)| Dataset { points, labels };
        let Some(_) = previous else {
            let n = self.min_train_size();
            let set = real_set(real.draw_labeled(n, 0, Role::RealInit)?);
            // Kept only by the schedules that train on it again (a checkpoint carries it).
            if !matches!(self, Schedule::Replace { .. } | Schedule::Fresh { .. }) {
                state.real = Some(Arc::new(set.clone()));
            }
            return Ok((set, None));
        };
        let set = match *self {
            Schedule::Replace { train_size } => synthetic(train_size)?,
            Schedule::Augment { synthetic_size, .. } => {
                let d = state.real.as_ref().expect("set at generation 0");
                Dataset::concat(&[d, &synthetic(synthetic_size)?])
            }
            Schedule::Fresh {
                train_size,
                fresh_size,
            } => {
                let fresh = real_set(real.draw_labeled(fresh_size, generation, Role::Fresh)?);
                Dataset::concat(&[&fresh, &synthetic(train_size - fresh_size)?])
            }
            Schedule::Accumulate { train_size } | Schedule::AccumulateSubsample { train_size } => {
                state.synthetic.push(Arc::new(synthetic(train_size)?));
                let mut parts: Vec<&Dataset> =
                    vec![state.real.as_ref().expect("set at generation 0")];
                parts.extend(state.synthetic.iter().map(|d| &**d));
                let pool = Dataset::concat(&parts);
                if let Schedule::AccumulateSubsample { .. } = self {
                    let idx = sample(
                        &mut stream(seed, g, Role::Subsample),
                        pool.len(),
                        train_size,
                    )
                    .into_vec();
                    pool.select(&idx)
                } else {
                    pool
                }
            }
        };
        Ok((set, stats))
    }
}

/// The TOML spelling of a schedule kind.
fn serde_plain_name(kind: ScheduleKind) -> &'static str {
    match kind {
        ScheduleKind::Replace => "replace",
        ScheduleKind::Augment => "augment",
        ScheduleKind::Fresh => "fresh",
        ScheduleKind::Accumulate => "accumulate",
        ScheduleKind::AccumulateSubsample => "accumulate-subsample",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TargetConfig;
    use crate::models::{GaussianMle, Learner as _};
    use ndarray::{Array2, ArrayView2, s};

    const N: usize = 1000;

    fn setup() -> (Target, Box<dyn Model>) {
        let target = Target::from_config(&TargetConfig::Gaussian {
            dim: 2,
            mean: None,
            std: None,
            cov: None,
        })
        .unwrap();
        let learner = GaussianMle::default();
        // One fixed "previous model" (mean 20, so its samples are told apart from real ones).
        let x = Array2::from_shape_fn((50, 2), |(i, j)| {
            20.0 + ((i * 7 + j * 3) % 11) as f32 / 10.0
        });
        let model = learner
            .fit(
                &crate::models::TrainingSet::points(x.view()),
                None,
                &mut stream(9, 0, Role::Fit),
            )
            .unwrap();
        (target, model)
    }

    fn schedule(kind: &str) -> Schedule {
        let cfg: LoopConfig =
            toml::from_str(&format!("schedule = \"{kind}\"\ntrain_size = {N}")).unwrap();
        let (target, _) = setup();
        Schedule::from_config(&cfg, &target).unwrap()
    }

    /// The training sets of generations 0..4 of one seed, each later one built with `model` as
    /// the previous model.
    fn sets(s: &Schedule, target: &Target, model: &dyn Model) -> Vec<Dataset> {
        let mut real = target.realize(3, 10);
        let mut state = LoopState::default();
        (0..4)
            .map(|g| {
                let prev = (g > 0).then_some(model);
                s.training_set(3, g, &mut real, prev, &mut state, None)
                    .unwrap()
                    .0
            })
            .collect()
    }

    fn is_real(row: ndarray::ArrayView1<f32>) -> bool {
        row[0] < 10.0
    }

    /// `accumulate`: generation g trains on D ∪ S₁ ∪ … ∪ S_g, |D| = |S_t| = train_size, each S_t
    /// the previous model's samples from the stream (seed, t, synthetic), in that order.
    #[test]
    fn accumulate_keeps_the_real_set_and_every_synthetic_set() {
        let (target, model) = setup();
        let sets = sets(&schedule("accumulate"), &target, &*model);
        for (g, set) in sets.iter().enumerate() {
            assert_eq!(set.len(), (g + 1) * N, "generation {g}");
            let d = set.points.slice(s![..N, ..]);
            assert_eq!(d, sets[0].points.view(), "D is kept as drawn");
            assert!(d.rows().into_iter().all(is_real));
            for t in 1..=g {
                let part: ArrayView2<f32> = set.points.slice(s![t * N..(t + 1) * N, ..]);
                let want = model
                    .sample(N, &mut stream(3, t as u64, Role::Synthetic))
                    .unwrap();
                assert_eq!(part, want.points.view(), "S_{t} in generation {g}");
            }
        }
    }

    /// `accumulate-subsample`: train_size points drawn without replacement from that pool, so
    /// the real share of generation g is hypergeometric with mean 1/(g + 1) (4 sd).
    #[test]
    fn accumulate_subsample_draws_train_size_from_the_pool() {
        let (target, model) = setup();
        let sub = sets(&schedule("accumulate-subsample"), &target, &*model);
        let pool = sets(&schedule("accumulate"), &target, &*model);
        for (g, set) in sub.iter().enumerate() {
            assert_eq!(set.len(), N, "generation {g}");
            // Every row comes from the pool, and no pool row is taken twice.
            let key =
                |r: ndarray::ArrayView1<f32>| r.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            let mut have: Vec<_> = pool[g].points.rows().into_iter().map(key).collect();
            have.sort();
            let mut took: Vec<_> = set.points.rows().into_iter().map(key).collect();
            took.sort();
            took.dedup();
            assert_eq!(took.len(), N, "a point drawn twice in generation {g}");
            assert!(took.iter().all(|r| have.binary_search(r).is_ok()));
            let real = set
                .points
                .rows()
                .into_iter()
                .filter(|r| is_real(*r))
                .count() as f64;
            let (pool_n, p) = (((g + 1) * N) as f64, 1.0 / (g + 1) as f64);
            let sd =
                (N as f64 * p * (1.0 - p) * (pool_n - N as f64) / (pool_n - 1.0).max(1.0)).sqrt();
            assert!(
                (real - N as f64 * p).abs() <= 4.0 * sd,
                "generation {g}: {real} real points, expected {} ± {sd:.1}",
                N as f64 * p
            );
        }
    }
}
