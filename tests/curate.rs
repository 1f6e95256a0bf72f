//! Curated loops (`[loop.curate]`) against what theory says they do: Gillman et al.'s idealised
//! corrector, Ferbach et al.'s reward curation with and without fresh data, likelihood-rank
//! filtering of an imbalanced mixture; and bad curation keys. Every statistical check has a fixed
//! seed range and a tolerance of a stated multiple of the Monte-Carlo standard error.

use ouro::config::Config;
use ouro::curate::bradley_terry_shift;
use ouro::experiment::{Experiment, Generation};
use rayon::prelude::*;

fn experiment(text: &str) -> Experiment {
    Experiment::new(Config::parse(text, &[]).unwrap()).unwrap()
}

/// The one-line error of a config that must be refused (a failure if it is accepted).
fn config_error(text: &str) -> String {
    match Config::parse(text, &[]).and_then(Experiment::new) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e.to_string(),
    }
}

/// Per seed, per generation, the metric row.
fn rows(exp: &Experiment) -> Vec<Vec<Vec<f64>>> {
    exp.seeds()
        .collect::<Vec<_>>()
        .par_iter()
        .map(|&s| exp.run_seed(s, &mut |_| Ok(())).unwrap())
        .collect()
}

/// Mean and standard error of `v`.
fn stat(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// Mean and standard error over seeds of column `m` at generation `g`.
fn mean_se(rows: &[Vec<Vec<f64>>], g: usize, m: usize) -> (f64, f64) {
    stat(&rows.iter().map(|r| r[g][m]).collect::<Vec<f64>>())
}

const GAUSSIAN_REPLACE: &str = r#"
seed = 0
repeats = 100
generations = 15
samples_per_generation = 4000
save_samples = false
save_models = false
[target]
kind = "gaussian"
dim = 2
[model]
kind = "gaussian"
[loop]
schedule = "replace"
train_size = 50
[metrics]
names = ["cov_trace_ratio", "mean_shift"]
"#;

/// γ = 1: each synthetic point goes through 20 MALA steps on the true score, so the replace loop
/// stays at the target's variance (cov_trace_ratio within 4 se of 1 at the last generation, where
/// the plain loop is at ((n − 1)/n)^15 = 0.739); γ = 0 is the plain loop, bit for bit.
#[test]
fn the_idealised_corrector_keeps_a_replace_loop_at_the_target() {
    let plain = rows(&experiment(GAUSSIAN_REPLACE));
    let corrected = rows(&experiment(&format!(
        "{GAUSSIAN_REPLACE}\n[loop.curate]\ncorrect = 1.0\n"
    )));
    let off = rows(&experiment(&format!(
        "{GAUSSIAN_REPLACE}\n[loop.curate]\ncorrect = 0.0\n"
    )));
    assert_eq!(plain, off, "γ = 0 must be the plain loop");
    let last = 14;
    let (m, se) = mean_se(&corrected, last, 0);
    assert!((m - 1.0).abs() < 4.0 * se, "corrected: {m} ± {se}");
    let (p, pse) = mean_se(&plain, last, 0);
    let law = (49.0f64 / 50.0).powi(15);
    assert!((p - law).abs() < 4.0 * pse, "plain: {p} ± {pse} vs {law}");
    assert!(m - p > 4.0 * (se * se + pse * pse).sqrt());
}

/// The exact drift of reward curation with K = 2, τ = 1, reward x₁ on a Gaussian MLE loop, for
/// a fresh fraction α (0: replace) and n points a generation (n → ∞: the MLE's own noise
/// neglected). Along x₁ the kept points have mean m + δ(s) and variance s² − δ(s)², δ the
/// Bradley–Terry shift; the training set mixes them with a share α of real N(0, 1) points.
fn reward_drift(alpha: f64, generations: usize) -> Vec<f64> {
    let (mut m, mut v) = (0.0f64, 1.0f64);
    let mut out = vec![m];
    for _ in 1..generations {
        let d = bradley_terry_shift(v.sqrt(), 1.0);
        let (mk, vk) = (m + d, v - d * d);
        m = (1.0 - alpha) * mk;
        v = alpha + (1.0 - alpha) * vk + alpha * (1.0 - alpha) * mk * mk;
        out.push(m);
    }
    out
}

/// Ferbach et al.: curating with a linear reward moves the model along the reward by the
/// Bradley–Terry shift each generation, and with a share of fresh real data the drift settles.
/// mean_shift (‖sample mean − target mean‖) at every generation within 4 se of the recursion's
/// |m_g| (n = 5 000, 30 seeds; the orthogonal coordinate's noise adds < 0.002 to the norm).
#[test]
fn reward_curation_drifts_by_the_bradley_terry_shift_and_fresh_data_bounds_it() {
    let base = |schedule: &str| {
        format!(
            r#"
seed = 0
repeats = 30
generations = 8
samples_per_generation = 20000
save_samples = false
save_models = false
[target]
kind = "gaussian"
dim = 2
[model]
kind = "gaussian"
[loop]
{schedule}
[loop.curate]
filter = "reward"
choices = 2
temperature = 1.0
reward = {{ kind = "linear", weights = [1.0, 0.0] }}
[metrics]
names = ["mean_shift", "curate_kept", "curate_reward_mean"]
"#
        )
    };
    let replace = rows(&experiment(&base(
        "schedule = \"replace\"\ntrain_size = 5000",
    )));
    let fresh = rows(&experiment(&base(
        "schedule = \"fresh\"\ntrain_size = 5000\nfresh_fraction = 0.5",
    )));
    for (rows, alpha) in [(&replace, 0.0), (&fresh, 0.5)] {
        let law = reward_drift(alpha, 8);
        for g in 1..8 {
            let (m, se) = mean_se(rows, g, 0);
            assert!(
                (m - law[g]).abs() < 4.0 * se + 0.002,
                "α = {alpha}, generation {g}: {m} ± {se} vs {}",
                law[g]
            );
            assert_eq!(rows[0][g][1], 0.5, "K = 2 keeps half");
        }
        assert!(rows[0][0][1].is_nan(), "generation 0 is not curated");
    }
    // Without fresh data the drift keeps growing; with half fresh data it settles well below.
    let (r, rse) = mean_se(&replace, 7, 0);
    let (f, fse) = mean_se(&fresh, 7, 0);
    assert!(r - f > 4.0 * (rse * rse + fse * fse).sqrt(), "{r} vs {f}");
    // The recursion itself: with α = 0.5 the drift converges (to 0.409), without it grows.
    let (settled, growing) = (reward_drift(0.5, 80), reward_drift(0.0, 80));
    assert!(
        (settled[79] - settled[78]).abs() < 1e-7 && settled[79] < 0.41,
        "{}",
        settled[79]
    );
    assert!(growing[79] - growing[78] > 1e-3, "{}", growing[79]);
}

/// On a 0.9/0.1 mixture of two Gaussians fitted by a two-component GMM, keeping the half of the
/// candidates with the lowest model density (bottom) keeps the minority mode's mass longer than
/// keeping a random half, which keeps it longer than keeping the densest half (top): the
/// minority share of the samples at generation 5, 24 seeds, each gap more than 3 standard errors.
#[test]
fn likelihood_rank_bottom_keeps_a_minority_mode_that_top_loses() {
    let config = |keep: &str| {
        format!(
            r#"
seed = 0
repeats = 24
generations = 6
samples_per_generation = 4000
save_samples = false
save_models = false
[target]
kind = "gmm"
dim = 2
means = [[0, 0], [6, 0]]
std = 1.0
weights = [0.9, 0.1]
[model]
kind = "gmm"
components = 2
[loop]
schedule = "replace"
train_size = 1000
[loop.curate]
filter = "likelihood-rank"
keep = "{keep}"
fraction = 0.5
[metrics]
names = ["curate_kept"]
"#
        )
    };
    let minority = |keep: &str| -> Vec<f64> {
        let exp = experiment(&config(keep));
        exp.seeds()
            .collect::<Vec<_>>()
            .par_iter()
            .map(|&s| {
                let mut share = 0.0;
                exp.run_seed(s, &mut |g: &Generation| {
                    if g.generation == 5 {
                        let x = &g.samples.points;
                        share = x.column(0).iter().filter(|&&v| v > 3.0).count() as f64
                            / x.nrows() as f64;
                    }
                    Ok(())
                })
                .unwrap();
                share
            })
            .collect()
    };
    let (b, bse) = stat(&minority("bottom"));
    let (r, rse) = stat(&minority("random"));
    let (t, tse) = stat(&minority("top"));
    assert!(
        b - r > 3.0 * (bse * bse + rse * rse).sqrt(),
        "bottom {b} ± {bse}, random {r} ± {rse}"
    );
    assert!(
        r - t > 3.0 * (rse * rse + tse * tse).sqrt(),
        "random {r} ± {rse}, top {t} ± {tse}"
    );
}

/// Every bad curation key is one error that names it and says what is expected.
#[test]
fn bad_curation_keys_are_one_clear_error_each() {
    let base = |model: &str, target: &str, curate: &str| {
        format!(
            "generations = 2\n[target]\n{target}\n[model]\n{model}\n[loop]\nschedule = \"replace\"\ntrain_size = 100\n[loop.curate]\n{curate}\n"
        )
    };
    let gaussian = "kind = \"gaussian\"\ndim = 2";
    let cases = [
        (
            "kind = \"gaussian\"",
            gaussian,
            "filter = \"reward\"\nchoices = 1\nreward = { kind = \"linear\", weights = [1] }",
            "choices = 1: expected K ≥ 2",
        ),
        (
            "kind = \"gaussian\"",
            gaussian,
            "filter = \"likelihood-rank\"\nkeep = \"top\"\nfraction = 0",
            "fraction = 0: expected a share of candidates in (0, 1]",
        ),
        (
            "kind = \"gaussian\"",
            gaussian,
            "filter = \"likelihood-rank\"\nkeep = \"top\"\nfraction = 1.5",
            "fraction = 1.5",
        ),
        (
            "kind = \"gaussian\"",
            gaussian,
            "filter = \"likelihood-rank\"\nfraction = 0.5",
            "loop.curate.keep is missing",
        ),
        (
            "kind = \"diffusion\"\ndenoiser = \"kde\"\nbandwidth = 0.5",
            gaussian,
            "filter = \"likelihood-rank\"\nkeep = \"top\"\nfraction = 0.5",
            "model.kind = \"diffusion\" has none",
        ),
        (
            "kind = \"gaussian\"",
            "kind = \"faithful\"",
            "correct = 0.5",
            "only gaussian, gmm and ring-gmm targets",
        ),
        (
            "kind = \"gaussian\"",
            gaussian,
            "correct = 1.5",
            "correct = 1.5: expected γ in [0, 1]",
        ),
        ("kind = \"gaussian\"", gaussian, "", "loop.curate is empty"),
        (
            "kind = \"gaussian\"",
            gaussian,
            "filter = \"reward\"\nkeep = \"top\"\nreward = { kind = \"linear\", weights = [1] }",
            "loop.curate.keep is not used by filter = \"reward\"",
        ),
        (
            "kind = \"gaussian\"",
            gaussian,
            "filter = \"verifier\"\nverifier = { kind = \"log-density\" }",
            "loop.curate.threshold",
        ),
        (
            "kind = \"gaussian\"",
            "kind = \"faithful\"",
            "filter = \"verifier\"\nverifier = { kind = \"log-density\" }\nthreshold = -3",
            "needs a target with a known density",
        ),
        (
            "kind = \"gaussian\"",
            gaussian,
            "filter = \"reward\"\nreward = { kind = \"linear\", weights = [1, 2, 3] }",
            "at most 2 finite numbers",
        ),
        (
            "kind = \"gaussian\"",
            gaussian,
            "correct_steps = 5",
            "loop.curate.correct_steps is not used without correct",
        ),
    ];
    for (model, target, curate, expect) in cases {
        let text = base(model, target, curate);
        let err = config_error(&text);
        assert!(
            err.contains(expect),
            "{text}\n→ {err}\n(expected {expect:?})"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    // An unknown key inside [loop.curate] is refused by the schema.
    let err = config_error(&base(
        "kind = \"gaussian\"",
        gaussian,
        "correct = 0.5\nstrength = 1",
    ));
    assert!(err.contains("strength"), "{err}");
}

/// Every curation method runs with a Gaussian, a mixture and a diffusion MLP learner (the
/// likelihood-rank filter on the two with a density; the MLP is refused, see above), and its
/// columns say what it did: K = 4 keeps a quarter, a rank filter its fraction, a verifier a share
/// in (0, 1], the corrector moves points and has its proposals mostly accepted.
#[test]
fn every_curation_method_runs_on_every_kind_of_learner() {
    let learners = [
        "kind = \"gaussian\"",
        "kind = \"gmm\"\ncomponents = 2",
        "kind = \"diffusion\"\ndenoiser = \"mlp\"\nhidden = [32, 32]\ntrain_steps = 400\nsample_steps = 30",
    ];
    let methods = [
        (
            "filter = \"reward\"\nchoices = 4\nreward = { kind = \"distance\", point = [1.0, 0.0] }",
            0.25,
        ),
        (
            "filter = \"verifier\"\nverifier = { kind = \"log-density\" }\nthreshold = -4.0",
            f64::NAN,
        ),
        (
            "filter = \"likelihood-rank\"\nkeep = \"random\"\nfraction = 0.4",
            0.4,
        ),
        ("correct = 0.7\ncorrect_steps = 5", 1.0),
    ];
    for (li, learner) in learners.iter().enumerate() {
        for (curate, kept) in methods {
            if li == 2 && curate.contains("likelihood-rank") {
                continue;
            }
            let text = format!(
                "repeats = 2\ngenerations = 3\nsamples_per_generation = 500\n\
                 [target]\nkind = \"gmm\"\ndim = 2\nmeans = [[-2, 0], [2, 0]]\nstd = 0.7\n\
                 [model]\n{learner}\n[loop]\nschedule = \"replace\"\ntrain_size = 400\n\
                 [loop.curate]\n{curate}\n[metrics]\nnames = [\"mean_shift\", \"curate_kept\", \
                 \"curate_reward_mean\", \"curate_moved\", \"curate_accept\"]\n"
            );
            let rows = rows(&experiment(&text));
            for seed in &rows {
                for (g, r) in seed.iter().enumerate().skip(1) {
                    let at = format!("{learner} / {curate}, generation {g}: {r:?}");
                    assert!(r[0].is_finite(), "{at}");
                    if kept.is_nan() {
                        assert!(r[1] > 0.0 && r[1] <= 1.0, "{at}");
                    } else {
                        assert!((r[1] - kept).abs() < 1e-12, "{at}");
                    }
                    if curate.contains("correct") {
                        assert!(r[3] > 0.0 && r[4] > 0.5, "{at}");
                    } else {
                        assert!(r[2].is_finite() && r[3] == 0.0 && r[4].is_nan(), "{at}");
                    }
                }
            }
        }
    }
}

/// Neon (Alemohammad et al. 2025) on the replace loop with a Gaussian MLE, n = m = 100 points,
/// 300 seeds, 20 generations: E[Σ₁ | Σ₀] = (m − 1)/m Σ₀, so the extrapolated variance is
/// (1 + w/m) Σ₀ in expectation and E tr Σ_g / tr Σ = ((n − 1)/n (1 + w/m))^(g+1). w = m/(n − 1)
/// keeps the loop at the target's variance, w = 3 overshoots it; every generation within 4 se.
/// w = 0 is the plain loop bit for bit, and a mixture learner extrapolates too.
#[test]
fn neon_extrapolation_follows_its_variance_law() {
    let base = r#"
seed = 0
repeats = 300
generations = 20
samples_per_generation = 1000
save_samples = false
save_models = false
[target]
kind = "gaussian"
dim = 2
[model]
kind = "gaussian"
[loop]
schedule = "replace"
train_size = 100
[metrics]
names = ["cov_trace_ratio"]
"#;
    let plain = rows(&experiment(base));
    let off = rows(&experiment(&format!("{base}\n[loop.neon]\nweight = 0.0\n")));
    assert_eq!(plain, off, "w = 0 must be the plain loop");
    for w in [100.0f64 / 99.0, 3.0] {
        let runs = rows(&experiment(&format!("{base}\n[loop.neon]\nweight = {w}\n")));
        let factor = 0.99 * (1.0 + w / 100.0);
        for g in 0..20 {
            let (m, se) = mean_se(&runs, g, 0);
            let law = factor.powi(g as i32 + 1);
            assert!(
                (m - law).abs() < 4.0 * se,
                "w = {w}, generation {g}: {m} ± {se} vs {law}"
            );
        }
    }
    let (p, pse) = mean_se(&plain, 19, 0);
    assert!((p - 0.99f64.powi(20)).abs() < 4.0 * pse);
    let gmm = base
        .replace(
            "kind = \"gaussian\"\n[loop]",
            "kind = \"gmm\"\ncomponents = 2\n[loop]",
        )
        .replace("repeats = 300", "repeats = 2");
    let runs = rows(&experiment(&format!(
        "{gmm}\n[loop.neon]\nweight = 1.0\nsamples = 200\n"
    )));
    assert!(
        runs.iter()
            .flatten()
            .all(|r| r[0].is_finite() && r[0] > 0.0)
    );
    let err = config_error(&format!("{base}\n[loop.neon]\nweight = -1.0\n"));
    assert!(
        err.contains("loop.neon.weight = -1: expected w ≥ 0"),
        "{err}"
    );
    let kde = base.replace(
        "[model]\nkind = \"gaussian\"",
        "[model]\nkind = \"kde\"\nbandwidth = 0.5",
    );
    let err = config_error(&format!("{kde}\n[loop.neon]\nweight = 1.0\n"));
    assert!(
        err.contains("does not have in a form that extrapolates"),
        "{err}"
    );
}

/// `loop.real_weight` with every learner that takes weights (w = 1 trains on the real points
/// alone, so the fresh loop's mean shift stays at generation 0's scale; w = 0 on the synthetic
/// ones alone); refused for learners without weights and schedules without real points.
#[test]
fn real_weight_runs_with_every_weighted_learner_and_is_refused_elsewhere() {
    let text = |model: &str, schedule: &str, w: f64| {
        format!(
            "repeats = 2\ngenerations = 4\nsamples_per_generation = 500\n\
             [target]\nkind = \"gaussian\"\ndim = 2\n[model]\n{model}\n[loop]\n{schedule}\n\
             real_weight = {w}\n[metrics]\nnames = [\"mean_shift\", \"cov_trace_ratio\"]\n"
        )
    };
    let fresh = "schedule = \"fresh\"\ntrain_size = 400\nfresh_fraction = 0.5";
    for model in [
        "kind = \"gaussian\"",
        "kind = \"gmm\"\ncomponents = 2",
        "kind = \"kde\"\nbandwidth = 0.2",
        "kind = \"diffusion\"\ndenoiser = \"mlp\"\nhidden = [32, 32]\ntrain_steps = 100\nsample_steps = 20",
    ] {
        for w in [0.0, 0.618, 1.0] {
            let runs = rows(&experiment(&text(model, fresh, w)));
            assert!(
                runs.iter().flatten().flatten().all(|v| v.is_finite()),
                "{model}, w = {w}"
            );
        }
    }
    let refused = |model: &str, schedule: &str, expect: &str| {
        let err = config_error(&text(model, schedule, 0.5));
        assert!(err.contains(expect), "{err}");
    };
    refused(
        "kind = \"histogram\"",
        fresh,
        "needs a learner that takes sample weights",
    );
    refused(
        "kind = \"gaussian\"",
        "schedule = \"replace\"\ntrain_size = 100",
        "only augment, fresh and",
    );
    let err = config_error(&text("kind = \"gaussian\"", fresh, 1.5));
    assert!(err.contains("loop.real_weight = 1.5: expected"), "{err}");
}

/// A classifier's confidence as the reward (the shipped 8×8 digits classifier, class 3, K = 4):
/// a Gaussian mixture refitted to its curated samples draws more and more threes, where the
/// uncurated loop stays near a tenth. The share of samples the classifier calls 3 at generation
/// 2, 4 seeds, more than 4 standard errors above the plain loop's.
#[test]
fn a_classifier_reward_steers_the_loop_toward_its_class() {
    let base = r#"
seed = 0
repeats = 4
generations = 3
samples_per_generation = 1000
save_samples = false
save_models = false
[target]
kind = "digits"
[model]
kind = "gmm"
components = 10
reg_covar = 0.1
[loop]
schedule = "replace"
train_size = 1000
[metrics]
names = ["mean_shift"]
"#;
    let clf = ouro::classifier::Classifier::load(std::path::Path::new(
        "data/features/digits-mlp.safetensors",
    ))
    .unwrap();
    let threes = |text: &str| -> Vec<f64> {
        let exp = experiment(text);
        exp.seeds()
            .collect::<Vec<_>>()
            .par_iter()
            .map(|&s| {
                let mut share = 0.0;
                exp.run_seed(s, &mut |g: &Generation| {
                    if g.generation == 2 {
                        let p = clf.predict(g.samples.points.view());
                        share = p.iter().filter(|&&c| c == 3).count() as f64 / p.len() as f64;
                    }
                    Ok(())
                })
                .unwrap();
                share
            })
            .collect()
    };
    let (plain, pse) = stat(&threes(base));
    let curated = format!(
        "{base}\n[loop.curate]\nfilter = \"reward\"\nchoices = 4\ntemperature = 0.1\n\
         reward = {{ kind = \"classifier\", file = \"data/features/digits-mlp.safetensors\", class = 3 }}\n"
    );
    let (cur, cse) = stat(&threes(&curated));
    assert!(plain < 0.2, "{plain}");
    assert!(
        cur - plain > 4.0 * (cse * cse + pse * pse).sqrt(),
        "{cur} ± {cse} vs {plain} ± {pse}"
    );
    // Without `class`, the classifier checks each sample's own label, which a GMM's samples lack.
    let err = config_error(&format!(
        "{base}\n[loop.curate]\nfilter = \"verifier\"\nthreshold = 0.9\n\
             verifier = {{ kind = \"classifier\", file = \"data/features/digits-mlp.safetensors\" }}\n"
    ));
    assert!(err.contains("give class = C"), "{err}");
}

/// Neon with the diffusion MLP: θ₁ is trained warm from θ₀ in θ₀'s standardised frame, and the
/// model's network is θ₀ + w(θ₀ − θ₁) parameter by parameter (checked exactly); in the loop, w = 0
/// is the plain loop bit for bit and w = 0.5 runs.
#[test]
fn neon_extrapolates_the_diffusion_mlps_weights() {
    use ouro::diffusion::DiffusionLearner;
    let cfg = ouro::diffusion::DiffusionConfig::from_table(
        "denoiser = \"mlp\"\nhidden = [32, 32]\ntrain_steps = 100\nsample_steps = 20"
            .parse()
            .unwrap(),
    )
    .unwrap();
    let learner = DiffusionLearner::from_config(&cfg).unwrap();
    let x = ouro::distributions::Distribution::sample(
        &ouro::distributions::Gaussian::isotropic(ndarray::array![3.0, -1.0], 2.0),
        600,
        &mut ouro::rng::stream(0, 0, ouro::rng::Role::RealInit),
    );
    let theta0 = learner
        .fit(
            x.view(),
            None,
            None,
            &mut ouro::rng::stream(0, 0, ouro::rng::Role::Fit),
        )
        .unwrap();
    let own = ouro::models::Model::sample(
        &theta0,
        600,
        &mut ouro::rng::stream(0, 0, ouro::rng::Role::NeonSamples),
    )
    .unwrap();
    let theta1 = learner
        .fit_in_frame_of(
            own.points.view(),
            None,
            &theta0,
            &mut ouro::rng::stream(0, 0, ouro::rng::Role::NeonFit),
        )
        .unwrap();
    assert_eq!(theta1.shift, theta0.shift);
    assert_eq!(theta1.scale, theta0.scale);
    let neon = learner
        .extrapolate_networks(&theta0, &theta1, 0.7)
        .unwrap()
        .unwrap();
    let (a, b, c) = (
        theta0.network().unwrap().params(),
        theta1.network().unwrap().params(),
        neon.network().unwrap().params(),
    );
    assert!(a != b, "θ₁ moved away from θ₀");
    for ((&p, &q), &r) in a.iter().zip(b).zip(c) {
        assert_eq!(r, p + 0.7 * (p - q));
    }
    let base = r#"
repeats = 2
generations = 3
samples_per_generation = 500
[target]
kind = "gaussian"
dim = 2
[model]
kind = "diffusion"
denoiser = "mlp"
hidden = [32, 32]
train_steps = 100
sample_steps = 20
[loop]
schedule = "replace"
train_size = 400
[metrics]
names = ["mean_shift", "cov_trace_ratio"]
"#;
    let plain = rows(&experiment(base));
    assert_eq!(
        plain,
        rows(&experiment(&format!("{base}\n[loop.neon]\nweight = 0.0\n")))
    );
    let runs = rows(&experiment(&format!("{base}\n[loop.neon]\nweight = 0.5\n")));
    assert!(runs.iter().flatten().flatten().all(|v| v.is_finite()));
    assert_ne!(plain, runs);
}
