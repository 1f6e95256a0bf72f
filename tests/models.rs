//! Every learner behind the model seam: its saved model reloads from the file alone and samples
//! the same bits as the model that was saved, and `ouro sample` redraws a run's samples.

use ndarray::Array2;
use ouro::models::{self, DataShape, TrainingSet};
use ouro::rng::{Role, stream};

/// 90 points in 2-D: three classes around (−2, 0), (2, 0) and (0, 2).
fn data() -> (Array2<f32>, Vec<u32>) {
    let mut rng = stream(5, 0, Role::RealInit);
    let z = ouro::distributions::Gaussian::isotropic(ndarray::array![0.0, 0.0], 0.4);
    let noise = ouro::distributions::Distribution::sample(&z, 90, &mut rng);
    let centres = [[-2.0f32, 0.0], [2.0, 0.0], [0.0, 2.0]];
    let labels: Vec<u32> = (0..90).map(|i| (i % 3) as u32).collect();
    let x = Array2::from_shape_fn((90, 2), |(i, j)| {
        centres[labels[i] as usize][j] + noise[[i, j]]
    });
    (x, labels)
}

const LEARNERS: &[&str] = &[
    "kind = \"gaussian\"",
    "kind = \"gaussian\"\ncovariance = \"diag\"",
    "kind = \"gmm\"\ncomponents = 3",
    "kind = \"kde\"\nbandwidth = \"scott\"",
    "kind = \"histogram\"\nbins = 8",
    "kind = \"diffusion\"\ndenoiser = \"empirical\"\nsampler = \"ddim\"\nsample_steps = 20",
    "kind = \"diffusion\"\ndenoiser = \"kde\"\nbandwidth = 0.3\nconditional = true\nguidance = 0.5\nsample_steps = 50",
    "kind = \"diffusion\"\ndenoiser = \"gmm-exact\"\ncomponents = 2\nnoise = \"edm\"\nsampler = \"heun\"\nsample_steps = 10",
    "kind = \"diffusion\"\ndenoiser = \"gmm-exact\"\ncomponents = 1\nconditional = true\nsample_steps = 50",
    "kind = \"diffusion\"\ndenoiser = \"mlp\"\nobjective = \"v\"\nhidden = [16, 16]\ntrain_steps = 20\nsample_steps = 30\nclip = [-3.0, 3.0]\n[error]\nscale = 0.9\nbias = [0.1]\nnoise = 0.2",
    "kind = \"diffusion\"\ndenoiser = \"mlp\"\nhidden = [16]\ntrain_steps = 20\nsample_steps = 30\nconditional = true\nguidance = 1.0",
    "kind = \"command\"\nfit = [\"sh\", \"-c\", 'cp \"$0\" \"$1\"', \"{train}\", \"{state_out}\"]\nsample = [\"sh\", \"-c\", 'cp \"$0\" \"$1\"', \"{state}\", \"{out}\", \"{n}\"]",
];

#[test]
fn every_learner_saves_a_model_that_reloads_and_samples_the_same_bits() {
    let (x, labels) = data();
    let dir = tempfile::tempdir().unwrap();
    for (i, text) in LEARNERS.iter().enumerate() {
        let table: toml::Table = text.parse().unwrap();
        let mut learner = models::build(&table).unwrap_or_else(|e| panic!("{text}: {e}"));
        learner
            .prepare(&DataShape {
                dim: 2,
                classes: Some(3),
            })
            .unwrap();
        let train = TrainingSet::labeled(x.view(), Some(&labels));
        let model = learner
            .fit_checked(&train, None, &mut stream(1, 0, Role::Fit))
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        let path = dir.path().join(format!("model-{i}.safetensors"));
        models::save(&*learner, &*model, &path).unwrap();
        let (loaded_learner, loaded) =
            models::load(&path).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(loaded_learner.config(), learner.config(), "{text}");
        // 90 samples: the command "model" returns its training set
        let a = model.sample(90, &mut stream(1, 2, Role::Samples)).unwrap();
        let b = loaded.sample(90, &mut stream(1, 2, Role::Samples)).unwrap();
        assert_eq!(a.points.dim(), (90, 2), "{text}");
        assert!(a.points.iter().all(|v| v.is_finite()), "{text}");
        assert_eq!(
            a.points, b.points,
            "{text}: loaded model samples other points"
        );
        assert_eq!(
            a.labels, b.labels,
            "{text}: loaded model samples other labels"
        );
        let conditional = text.contains("conditional = true");
        assert_eq!(a.labels.is_some(), conditional, "{text}");
        // and the file is the same bytes when saved again from the loaded model
        let again = dir.path().join(format!("again-{i}.safetensors"));
        models::save(&*loaded_learner, &*loaded, &again).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&again).unwrap(),
            "{text}"
        );
    }
}

#[test]
fn a_file_that_is_not_a_model_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.safetensors");
    std::fs::write(&p, b"not a model").unwrap();
    let e = models::load(&p).err().unwrap().to_string();
    assert!(e.contains("not a safetensors file"), "{e}");
    // a weights file of another format
    let mut f = ouro::data::tensors::TensorFile::new("ouro-mlp-classifier-1");
    f.put("w", &[1], &[1.0f32]);
    f.write(&p).unwrap();
    let e = models::load(&p).err().unwrap().to_string();
    assert!(e.contains("expected a model saved by ouro"), "{e}");
    // a model whose [model] keys name no learner
    let mut f = ouro::data::tensors::TensorFile::new(models::MODEL_FORMAT);
    f.set("model", r#"{"kind": "flow"}"#);
    f.write(&p).unwrap();
    let e = models::load(&p).err().unwrap().to_string();
    assert!(e.contains("model.kind = \"flow\": expected one of"), "{e}");
    // a Gaussian with a missing tensor
    let mut f = ouro::data::tensors::TensorFile::new(models::MODEL_FORMAT);
    f.set("model", r#"{"kind": "gaussian", "covariance": "full"}"#);
    f.put("mean", &[2], &[0.0f64, 1.0]);
    f.write(&p).unwrap();
    let e = models::load(&p).err().unwrap().to_string();
    assert!(e.contains("no tensor `covariance`"), "{e}");
}

/// Sample weights: the Gaussian MLE and the KDE with integer weights are those of the set with
/// each point repeated that many times; a learner that does not take weights refuses them.
#[test]
fn sample_weights_count_points_and_are_refused_where_unsupported() {
    let (x, _) = data();
    let weights: Vec<f64> = (0..90).map(|i| (i % 4) as f64).collect();
    let mut repeated = Vec::new();
    for (i, row) in x.rows().into_iter().enumerate() {
        for _ in 0..(i % 4) {
            repeated.extend(row.iter().copied());
        }
    }
    let repeated = Array2::from_shape_vec((repeated.len() / 2, 2), repeated).unwrap();
    let table: toml::Table = "kind = \"gaussian\"".parse().unwrap();
    let mle = models::build(&table).unwrap();
    let rng = &mut stream(0, 0, Role::Fit);
    let weighted = TrainingSet {
        points: x.view(),
        labels: None,
        weights: Some(&weights),
    };
    let a = mle.fit_checked(&weighted, None, rng).unwrap();
    let b = mle
        .fit_checked(&TrainingSet::points(repeated.view()), None, rng)
        .unwrap();
    let (ga, gb) = (
        a.distribution().unwrap().as_gaussian().unwrap(),
        b.distribution().unwrap().as_gaussian().unwrap(),
    );
    for (u, v) in ga.mu().iter().zip(gb.mu()) {
        assert!((u - v).abs() < 1e-12, "{} vs {}", ga.mu(), gb.mu());
    }
    for (u, v) in ga.sigma().iter().zip(gb.sigma()) {
        assert!((u - v).abs() < 1e-9, "{} vs {}", ga.sigma(), gb.sigma());
    }
    // A weighted KDE is the KDE of the repeated points: the same mixture, moments and density.
    let kde = models::build(&"kind = \"kde\"\nbandwidth = 0.5".parse().unwrap()).unwrap();
    let (ka, kb) = (
        kde.fit_checked(&weighted, None, rng).unwrap(),
        kde.fit_checked(&TrainingSet::points(repeated.view()), None, rng)
            .unwrap(),
    );
    let (da, db) = (ka.distribution().unwrap(), kb.distribution().unwrap());
    for (u, v) in da.mean().unwrap().iter().zip(&db.mean().unwrap()) {
        assert!((u - v).abs() < 1e-12);
    }
    for (u, v) in da
        .covariance()
        .unwrap()
        .iter()
        .zip(&db.covariance().unwrap())
    {
        assert!((u - v).abs() < 1e-9);
    }
    let at = x.slice(ndarray::s![..5, ..]);
    let (la, lb) = (da.log_density(at).unwrap(), db.log_density(at).unwrap());
    for (u, v) in la.iter().zip(&lb) {
        assert!((u - v).abs() < 1e-9, "{la} vs {lb}");
    }
    let histogram = models::build(&"kind = \"histogram\"".parse().unwrap()).unwrap();
    let e = histogram
        .fit_checked(&weighted, None, rng)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("does not take sample weights"), "{e}");
}

/// The diffusion MLP's sample weights: two equal clusters at x₁ = ±3, the right one weighted
/// 1/9 of the left; its mini-batches draw rows ∝ weight, so the model puts about a tenth of its
/// samples there (under 0.2 of 4 000), where the unweighted fit puts about half (over 0.35).
/// The closed-form denoisers refuse weights.
#[test]
fn the_diffusion_mlp_takes_sample_weights_through_its_batches() {
    let mut rng = stream(3, 0, Role::RealInit);
    let x = Array2::from_shape_fn((1000, 2), |(i, j)| {
        let centre = if i < 500 { -3.0 } else { 3.0 };
        let z: f64 = rand_distr::Distribution::sample(&rand_distr::StandardNormal, &mut rng);
        (if j == 0 { centre } else { 0.0 } + 0.5 * z) as f32
    });
    let weights: Vec<f64> = (0..1000).map(|i| if i < 500 { 9.0 } else { 1.0 }).collect();
    let mlp = models::build(
        &"kind = \"diffusion\"\ndenoiser = \"mlp\"\nhidden = [64, 64]\ntrain_steps = 800\nsample_steps = 50"
            .parse()
            .unwrap(),
    )
    .unwrap();
    let right_share = |weights: Option<&[f64]>| {
        let train = TrainingSet {
            weights,
            ..TrainingSet::points(x.view())
        };
        let m = mlp
            .fit_checked(&train, None, &mut stream(3, 0, Role::Fit))
            .unwrap();
        let s = m.sample(4000, &mut stream(3, 0, Role::Samples)).unwrap();
        s.points.column(0).iter().filter(|&&v| v > 0.0).count() as f64 / 4000.0
    };
    let (weighted, plain) = (right_share(Some(&weights)), right_share(None));
    assert!(weighted < 0.2, "weighted: {weighted}");
    assert!(plain > 0.35, "unweighted: {plain}");
    let kde = models::build(
        &"kind = \"diffusion\"\ndenoiser = \"kde\"\nbandwidth = 0.3"
            .parse()
            .unwrap(),
    )
    .unwrap();
    let train = TrainingSet {
        weights: Some(&weights),
        ..TrainingSet::points(x.view())
    };
    let e = kde
        .fit_checked(&train, None, &mut stream(3, 0, Role::Fit))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("does not take sample weights"), "{e}");
}
