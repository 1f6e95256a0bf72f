//! An experiment: a checked config turned into target, learner, schedule and metrics, and the
//! generation loop that runs it for one seed. [`run_dir`] writes a whole run to a folder.

mod checkpoint;
pub mod provenance;
pub mod reconstruct;
pub mod run_dir;
pub mod slurm;
pub mod study;

use crate::config::Config;
use crate::curate::{Curation, CurationStats};
use crate::data::{Dataset, Target};
use crate::error::{Error, Result};
use crate::metrics::{Available, Context, MetricSet};
use crate::models::{DataShape, Learner, Model, TrainingSet};
use crate::rng::{Role, stream};
use crate::schedule::{LoopState, Schedule};

/// A fully checked experiment, ready to run.
pub struct Experiment {
    /// The resolved configuration.
    pub config: Config,
    /// The real data.
    pub target: Target,
    /// The learner fitted every generation.
    pub learner: Box<dyn Learner>,
    /// How training sets are built.
    pub schedule: Schedule,
    /// What is measured.
    pub metrics: MetricSet,
    /// What happens to the synthetic points before they train the next generation.
    pub curation: Option<Curation>,
}

/// What one generation of one seed produced; handed to the caller's observer.
pub struct Generation<'a> {
    /// The seed of this repeat.
    pub seed: u64,
    /// The generation number (0 = fitted on real data).
    pub generation: usize,
    /// The training set the model was fitted on (labelled when all its points are).
    pub train: &'a Dataset,
    /// The fitted model.
    pub model: &'a dyn Model,
    /// Its evaluation samples (labelled for a class-conditional model).
    pub samples: &'a Dataset,
    /// The metric values, in the order of [`MetricSet::names`].
    pub metrics: &'a [f64],
    /// Per-class accuracy on the reference points of the classifier trained on the samples and
    /// of the one trained on real data (when accuracy metrics are chosen).
    pub class_accuracy: Option<(&'a [f64], &'a [f64])>,
    /// The seed's held-out real reference points (what the metrics compare with).
    pub reference: ndarray::ArrayView2<'a, f32>,
    /// The schedule's state after this generation (for a checkpoint).
    pub loop_state: &'a LoopState,
    /// Real points of a finite pool drawn so far (for a checkpoint).
    pub real_position: usize,
    /// The metric rows of every generation so far, this one last.
    pub rows: &'a [Vec<f64>],
    /// The accuracy of the classifier trained on the seed's real training set, when computed.
    pub real_accuracy: Option<&'a (f64, Vec<f64>)>,
}

/// Where the loop of one seed stands: everything the next generation needs, so that a run
/// continued from it is bit-identical to one that never stopped.
pub struct SeedState {
    /// The next generation to run.
    pub generation: usize,
    /// The model of the generation before it.
    pub previous: Box<dyn Model>,
    /// The schedule's state.
    pub loop_state: LoopState,
    /// Real points of a finite pool drawn so far.
    pub real_position: usize,
    /// The metric rows of the generations before it.
    pub rows: Vec<Vec<f64>>,
    /// The accuracy of the classifier trained on the seed's real training set, when computed.
    pub real_accuracy: Option<(f64, Vec<f64>)>,
}

impl Experiment {
    /// Checks every part of `config` (loading data files) so that a run cannot fail on bad input
    /// after it has started.
    pub fn new(mut config: Config) -> Result<Experiment> {
        if config.generations == 0 {
            return Err(Error::config("generations: expected at least 1"));
        }
        if config.repeats == 0 {
            return Err(Error::config("repeats: expected at least 1"));
        }
        if config.samples_per_generation < 2 {
            return Err(Error::config("samples_per_generation: expected at least 2"));
        }
        if config.save_every == 0 {
            return Err(Error::config("save_every: expected at least 1"));
        }
        let target = Target::from_config(&config.target)?;
        let mut learner = crate::models::build(&config.model)?;
        learner.prepare(&DataShape {
            dim: target.dim(),
            classes: target.classes(),
        })?;
        config.model = learner.config();
        let offers = learner.offers();
        if config.schedule.warm_start && !offers.warm_start {
            let which = match config.model.get("denoiser") {
                Some(d) => format!("model.denoiser = {d}"),
                None => format!("model.kind = \"{}\"", learner.kind()),
            };
            return Err(Error::config(format!(
                "loop.warm_start = true has no effect with {which}, which is fitted in closed \
                 form; expected false (warm starts apply to learners that start from the previous \
                 model: gmm, diffusion with denoiser = \"mlp\", command)"
            )));
        }
        let schedule = Schedule::from_config(&config.schedule, &target)?;
        if let Some(w) = config.schedule.real_weight {
            if !(0.0..=1.0).contains(&w) {
                return Err(Error::config(format!(
                    "loop.real_weight = {w}: expected the real points' share of the weight, in [0, 1]"
                )));
            }
            if matches!(
                schedule,
                Schedule::Replace { .. } | Schedule::AccumulateSubsample { .. }
            ) {
                return Err(Error::config(
                    "loop.real_weight weighs real against synthetic points, which only augment, fresh and \
                     accumulate keep apart; remove it",
                ));
            }
            if !offers.weights {
                return Err(Error::config(format!(
                    "loop.real_weight needs a learner that takes sample weights (gaussian, gmm, kde, diffusion \
                     with denoiser = \"mlp\"); \
                     model.kind = \"{}\" does not",
                    learner.kind()
                )));
            }
        }
        if let Some(neon) = &config.schedule.neon {
            if !(neon.weight.is_finite() && neon.weight >= 0.0) {
                return Err(Error::config(format!(
                    "loop.neon.weight = {}: expected w ≥ 0 (θ₀ + w(θ₀ − θ₁))",
                    neon.weight
                )));
            }
            if neon.samples.is_some_and(|m| m < learner.min_points()) {
                return Err(Error::config(format!(
                    "loop.neon.samples: expected at least {} points (what the learner fits)",
                    learner.min_points()
                )));
            }
            if !offers.extrapolate {
                return Err(Error::config(format!(
                    "loop.neon extrapolates fitted parameters, which model.kind = \"{}\" does not \
                     have in a form that extrapolates (gaussian, gmm and diffusion with denoiser = \"mlp\" do)",
                    learner.kind()
                )));
            }
        }
        let curation = config
            .schedule
            .curate
            .as_ref()
            .map(|c| {
                let labelled = offers.labels && target.classes().is_some();
                Curation::from_config(c, &target, offers.log_density, labelled, &learner.kind())
            })
            .transpose()?;
        if let Some(pool) = target.pool_size() {
            let need = schedule.real_points_needed(config.generations);
            if need > pool {
                return Err(Error::config(format!(
                    "loop: {} generations of this schedule draw {need} real points without replacement, \
                     but the training split has {pool}; use fewer generations, a smaller train_size, \
                     real_size or fresh_fraction, or a smaller target.heldout_fraction",
                    config.generations
                )));
            }
        }
        if schedule.min_train_size() < learner.min_points() {
            return Err(Error::config(format!(
                "loop: training sets of {} points are too small for this model (needs at least {})",
                schedule.min_train_size(),
                learner.min_points()
            )));
        }
        let known = target.distribution();
        let available = Available {
            gaussians: known.and_then(|d| d.as_gaussian()).is_some() && offers.gaussian,
            mixture: known.and_then(|d| d.as_mixture()).is_some(),
            density: known.is_some_and(|d| {
                d.log_density(ndarray::Array2::<f32>::zeros((1, d.dim())).view())
                    .is_some()
            }),
            labels: target.classes().is_some() && offers.labels,
            curation: curation.is_some(),
        };
        let metrics = MetricSet::from_config(&config.metrics, available)?;
        if let Some(c) = &metrics.features
            && c.dim() != target.dim()
        {
            return Err(Error::config(format!(
                "metrics.features: the classifier takes {}-dimensional points, the target's are {}-dimensional",
                c.dim(),
                target.dim()
            )));
        }
        // record the defaults that were resolved, so config.toml says exactly what ran
        config.metrics.names = Some(metrics.names().iter().map(|n| n.to_string()).collect());
        match schedule {
            Schedule::Augment { real_size, .. } => config.schedule.real_size = Some(real_size),
            _ => config.schedule.train_size = Some(schedule.min_train_size()),
        }
        Ok(Experiment {
            config,
            target,
            learner,
            schedule,
            metrics,
            curation,
        })
    }

    /// The seeds of the repeats.
    pub fn seeds(&self) -> std::ops::Range<u64> {
        self.config.seed..self.config.seed + self.config.repeats
    }

    /// Runs every generation of `seed`, calling `observe` with each in order, and returns the
    /// metric rows (one per generation). Every random draw comes from the (seed, generation,
    /// role) streams, so the result depends on nothing else.
    pub fn run_seed(&self, seed: u64, observe: &mut Observer) -> Result<Vec<Vec<f64>>> {
        self.run_seed_from(seed, None, observe)
    }

    /// [`Experiment::run_seed`] from `start` (a checkpoint of this seed) instead of generation 0.
    ///
    /// Generation g's metrics are measured while generation g + 1 is built (its training set
    /// drawn from model g, fitted and sampled) and generation g − 1 is observed (written): the
    /// three share no state and draw from their own streams, so the results are those of the
    /// one-after-the-other loop, and the serial parts (sampling, most fits, file writes) run
    /// beside the parallel metrics. `observe` sees generation g before any error of generation
    /// g + 1 is returned.
    pub fn run_seed_from(
        &self,
        seed: u64,
        start: Option<SeedState>,
        observe: &mut Observer,
    ) -> Result<Vec<Vec<f64>>> {
        let mut real = self.target.realize(seed, self.metrics.eval_samples);
        let reference = self
            .metrics
            .reference(real.reference.view(), real.reference_labels.as_deref());
        // What the metrics and the observer read of the real data, apart from the draws that
        // building the next generation makes.
        let (reference_points, target_mean, target_cov) =
            (real.reference.clone(), real.mean.clone(), real.cov.clone());
        let target_gaussian = self.target.distribution().and_then(|d| d.as_gaussian());
        let (first, previous, mut state, mut rows, mut real_accuracy) = match start {
            Some(s) => {
                real.set_position(s.real_position)?;
                (
                    s.generation,
                    Some(s.previous),
                    s.loop_state,
                    s.rows,
                    s.real_accuracy,
                )
            }
            None => (0, None, LoopState::default(), Vec::new(), None),
        };
        if first >= self.config.generations {
            return Ok(rows);
        }
        // the command's watch of this seed, handed to each generation's work (which may run on
        // another thread)
        let watch = crate::progress::current();
        let mut built = self.build(
            seed,
            first,
            &mut real,
            previous.as_deref(),
            &mut state,
            watch.as_ref(),
        )?;
        if first == 0
            && self.metrics.uses_classifiers()
            && let (Some(tl), Some(rl)) = (&built.train.labels, &reference.labels)
        {
            real_accuracy = Some(crate::metrics::eval::tstr_accuracy(
                built.train.points.view(),
                tl,
                reference.points.view(),
                rl,
                seed,
            ));
        }
        drop(previous);
        // Generation g − 1, measured and waiting to be observed.
        let mut pending: Option<Measured> = None;
        let show = |m: &Measured, rows: &[Vec<f64>], observe: &mut Observer| {
            observe(&Generation {
                seed,
                generation: m.generation,
                train: &m.built.train,
                model: &*m.built.model,
                samples: &m.built.samples,
                metrics: rows.last().expect("measured"),
                class_accuracy: m
                    .synthetic_accuracy
                    .as_ref()
                    .zip(real_accuracy.as_ref())
                    .map(|(s, r)| (&s.1[..], &r.1[..])),
                reference: reference_points.view(),
                loop_state: &m.loop_state,
                real_position: m.real_position,
                rows,
                real_accuracy: real_accuracy.as_ref(),
            })
        };
        for g in first..self.config.generations {
            let this = built;
            let (loop_state, real_position) = (state.clone(), real.position());
            let ((metrics, synthetic_accuracy), (next, shown)) = rayon::join(
                || {
                    if let Some(w) = &watch {
                        w.part(&format!("generation {g}"))
                            .report("measuring", 0, 0, "");
                    }
                    let ctx = Context {
                        samples: this.samples.points.view(),
                        train: this.train.points.view(),
                        reference: &reference,
                        target_mean: &target_mean,
                        target_cov: &target_cov,
                        target_gaussian,
                        model: &*this.model,
                        eval_samples: self.metrics.eval_samples,
                        memorization_ratio: self.metrics.memorization_ratio,
                        target: self.target.distribution(),
                        options: &self.metrics.options,
                        modes: Default::default(),
                        divergences: Default::default(),
                        memorized: Default::default(),
                        sample_labels: this.samples.labels.as_deref(),
                        real_accuracy: real_accuracy.as_ref(),
                        synthetic_accuracy: Default::default(),
                        seed,
                        curation: this.curation.as_ref(),
                    };
                    let metrics = self.metrics.evaluate(&ctx);
                    if self.metrics.uses_classifiers() {
                        ctx.synthetic_accuracy();
                    }
                    (metrics, ctx.synthetic_accuracy.into_inner().flatten())
                },
                || {
                    rayon::join(
                        || {
                            (g + 1 < self.config.generations).then(|| {
                                self.build(
                                    seed,
                                    g + 1,
                                    &mut real,
                                    Some(&*this.model),
                                    &mut state,
                                    watch.as_ref(),
                                )
                            })
                        },
                        || pending.as_ref().map_or(Ok(()), |m| show(m, &rows, observe)),
                    )
                },
            );
            shown?;
            rows.push(metrics);
            pending = Some(Measured {
                generation: g,
                built: this,
                synthetic_accuracy,
                loop_state,
                real_position,
            });
            match next {
                Some(Ok(next)) => built = next,
                Some(Err(e)) => {
                    show(pending.as_ref().expect("just measured"), &rows, observe)?;
                    return Err(e);
                }
                None => break,
            }
        }
        if let Some(m) = &pending {
            show(m, &rows, observe)?;
        }
        Ok(rows)
    }

    /// Generation `g` of `seed` built: its training set (from model g − 1, `previous`), the
    /// model fitted on it and the model's samples, with progress reported to a part of `watch`.
    fn build(
        &self,
        seed: u64,
        g: usize,
        real: &mut crate::data::RealData,
        previous: Option<&dyn Model>,
        state: &mut LoopState,
        watch: Option<&std::sync::Arc<crate::progress::Watch>>,
    ) -> Result<Built> {
        let part = watch.map(|w| w.part(&format!("generation {g}")));
        crate::progress::watching(part, || {
            let (train, curation) = self.schedule.training_set(
                seed,
                g,
                real,
                previous,
                state,
                self.curation.as_ref(),
            )?;
            let warm = if self.config.schedule.warm_start {
                previous
            } else {
                None
            };
            let weights = self
                .config
                .schedule
                .real_weight
                .filter(|_| g > 0)
                .and_then(|w| {
                    let real = self.schedule.real_count(g, train.len())?;
                    Some(real_weights(real, train.len() - real, w))
                });
            let model = self.learner.fit_checked(
                &TrainingSet {
                    weights: weights.as_deref(),
                    ..TrainingSet::labeled(train.points.view(), train.labels.as_deref())
                },
                warm,
                &mut stream(seed, g as u64, Role::Fit),
            )?;
            let model = match &self.config.schedule.neon {
                Some(neon) if neon.weight > 0.0 => self.neon(seed, g, model, neon, train.len())?,
                _ => model,
            };
            let samples = model.sample(
                self.config.samples_per_generation,
                &mut stream(seed, g as u64, Role::Samples),
            )?;
            Ok(Built {
                train,
                model,
                samples,
                curation,
            })
        })
    }
}

impl Experiment {
    /// Neon (Alemohammad et al. 2025): θ₁ fitted on `neon.samples` (default `train_len`) points
    /// drawn from `base` (θ₀) as a perturbation of it ([`Learner::fit_from`]), and the model
    /// θ₀ + w(θ₀ − θ₁).
    fn neon(
        &self,
        seed: u64,
        g: usize,
        base: Box<dyn Model>,
        neon: &crate::config::NeonConfig,
        train_len: usize,
    ) -> Result<Box<dyn Model>> {
        let g64 = g as u64;
        let m = neon.samples.unwrap_or(train_len);
        let own = base.sample(m, &mut stream(seed, g64, Role::NeonSamples))?;
        let theta1 = self.learner.fit_from(
            &TrainingSet::labeled(own.points.view(), own.labels.as_deref()),
            &*base,
            &mut stream(seed, g64, Role::NeonFit),
        )?;
        self.learner
            .extrapolate(&*base, &*theta1, neon.weight)
            .unwrap_or_else(|| {
                Err(Error::Run(
                    "loop.neon: this learner's models do not extrapolate".into(),
                ))
            })
            .map_err(|e| Error::Run(format!("generation {g}: {e}")))
    }
}

/// Sample weights for `real` real points followed by `synthetic` synthetic ones, the real
/// points holding a share `w` of the total N = real + synthetic: w·N/real each, and
/// (1 − w)·N/synthetic each (a part that is empty gets nothing to share).
pub fn real_weights(real: usize, synthetic: usize, w: f64) -> Vec<f64> {
    let n = (real + synthetic) as f64;
    let (wr, ws) = match (real, synthetic) {
        (0, _) => (0.0, 1.0),
        (_, 0) => (1.0, 0.0),
        (r, s) => (w * n / r as f64, (1.0 - w) * n / s as f64),
    };
    std::iter::repeat_n(wr, real)
        .chain(std::iter::repeat_n(ws, synthetic))
        .collect()
}

/// What observes each generation (see [`Experiment::run_seed`]); it runs beside the building
/// of the generation after next, hence `Send`.
pub type Observer<'o> = dyn FnMut(&Generation) -> Result<()> + Send + 'o;

/// A measured generation waiting for the observer, with the loop's state as it was then.
struct Measured {
    generation: usize,
    built: Built,
    synthetic_accuracy: Option<(f64, Vec<f64>)>,
    loop_state: LoopState,
    real_position: usize,
}

/// One generation before it is measured: its training set, fitted model and samples.
struct Built {
    train: Dataset,
    model: Box<dyn Model>,
    samples: Dataset,
    /// What curation did to the synthetic part of `train`.
    curation: Option<CurationStats>,
}

/// Runs `f` on a pool of `threads` worker threads (0: one per core).
pub fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> Result<T> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Run(format!("cannot start worker threads: {e}")))?;
    Ok(pool.install(f))
}
