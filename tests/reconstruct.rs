//! Reconstruction sweeps on a labelled image data set (the 8×8 digits) with the closed-form
//! empirical-optimal denoiser (no training): t = 0 gives back the real points exactly, every
//! column is written, and the labelled columns behave as their definitions say.

use ouro::config::Config;
use ouro::data::read_npy;
use ouro::experiment::Experiment;
use ouro::experiment::reconstruct::reconstruct;

const CONFIG: &str = r#"
seed = 3
generations = 1
samples_per_generation = 300
[target]
kind = "digits"
[model]
kind = "diffusion"
denoiser = "empirical"
sampler = "ddim"
eta = 0.0
sample_steps = 40
[loop]
schedule = "replace"
train_size = 600
[metrics]
eval_samples = 400
"#;

#[test]
fn digits_sweep_returns_the_originals_at_t0_and_writes_every_column() {
    let exp = Experiment::new(Config::parse(CONFIG, &[]).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("recon");
    let sweep = reconstruct(&exp, &[0.0, 500.0, 1000.0], &out, false).unwrap();
    let col = |name: &str| sweep.columns.iter().position(|c| *c == name).unwrap();
    let at0 = &sweep.rows[0].2;
    // t = 0: the originals themselves (no noise is added, no step is taken).
    assert_eq!(at0[col("rms_distance")], 0.0);
    assert_eq!(at0[col("memorized")], 1.0);
    let original = read_npy(&out.join("original.npy")).unwrap();
    let back = read_npy(&out.join("reconstructed/t-0.npy")).unwrap();
    assert_eq!(original, back);
    // The classifier trained on the real originals is the reference line: far above chance.
    assert!(at0[col("accuracy")] > 0.85, "{at0:?}");
    // Real points beyond their own 90th-percentile radius: about 10% (the reference set's
    // quantile, 300 points: sd of the share ≈ 0.017).
    assert!((at0[col("edge90")] - 0.1).abs() < 0.07, "{at0:?}");
    // The empirical-optimal denoiser with DDIM copies training points at every t (Yi et al.):
    // memorised share stays high and the labels of the originals no longer predict the content
    // at t = T.
    let at_t = &sweep.rows[2].2;
    assert!(at_t[col("memorized")] > 0.9, "{at_t:?}");
    assert!(at_t[col("accuracy")] < at0[col("accuracy")]);
    for f in [
        "labels.npy",
        "reconstructed/t-0.png",
        "reconstructed/t-1000.png",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let csv = std::fs::read_to_string(out.join("reconstruction.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert_eq!(header.len(), 2 + sweep.columns.len());
    assert_eq!(header[header.len() - 1], "accuracy");
}
