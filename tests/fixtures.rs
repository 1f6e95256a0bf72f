//! Every metric against the value its reference implementation (prdc, scikit-learn, scipy,
//! numpy) computes on the same small arrays: tests/fixtures/*.npy and reference.json, written
//! by tests/fixtures/make_fixtures.py. Deterministic methods must agree to 1e-4 relative (the
//! f32 distance tiles are good to ~1e-6 here); counts and shares exactly.

use ndarray::{Array2, s};
use ouro::data::read_npy;
use ouro::metrics::distance::{
    energy_distance, frechet_distance, sliced_wasserstein, wasserstein_1d_pow,
};
use ouro::metrics::edges::edge_coverage;
use ouro::metrics::fidelity::prdc;
use ouro::metrics::kernel::{Kernel, median_bandwidth, mmd2, mmd2_many};
use ouro::metrics::memorization::{memorization, nn_distance_gap};
use ouro::metrics::mutual_info::ksg_mutual_information;
use std::path::Path;

fn load(name: &str) -> Array2<f32> {
    read_npy(&Path::new("tests/fixtures").join(format!("{name}.npy"))).unwrap()
}

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string("tests/fixtures/reference.json").unwrap();
    serde_json::from_str(&text).unwrap()
}

fn close(name: &str, got: f64, want: &serde_json::Value) {
    let want = want[name]
        .as_f64()
        .unwrap_or_else(|| panic!("{name} missing"));
    let tol = 1e-4 * want.abs().max(1e-12);
    assert!(
        (got - want).abs() <= tol,
        "{name}: ouro {got} vs reference {want} (tolerance {tol:.1e})"
    );
}

#[test]
fn fidelity_and_coverage_match_prdc() {
    let (real, generated, r) = (load("real"), load("gen"), reference());
    let p = prdc(real.view(), generated.view(), 5);
    for (name, v) in [
        ("precision", p.precision),
        ("recall", p.recall),
        ("density", p.density),
        ("coverage", p.coverage),
    ] {
        close(name, v, &r);
    }
}

#[test]
fn kernel_distances_match_scikit_learn() {
    let (real, generated, r) = (load("real"), load("gen"), reference());
    let median = median_bandwidth(real.view());
    close("median_bandwidth", median, &r);
    let m = mmd2_many(
        generated.view(),
        real.view(),
        &[Kernel::Rbf(median), Kernel::Rbf(1.5)],
    );
    close("mmd2_median", m[0].unbiased, &r);
    close("mmd2_biased_median", m[0].biased, &r);
    close("mmd2_fixed", m[1].unbiased, &r);
    close("mmd2_biased_fixed", m[1].biased, &r);
    let kid = mmd2(generated.view(), real.view(), Kernel::kid(real.ncols()));
    close("kid", kid.unbiased, &r);
    close("kid_biased", kid.biased, &r);
}

#[test]
fn distances_match_scipy() {
    let (real, generated, r) = (load("real"), load("gen"), reference());
    close("energy", energy_distance(generated.view(), real.view()), &r);
    let (a1, b1) = (load("a1"), load("b1"));
    close(
        "energy_1d_scipy_squared",
        energy_distance(a1.view(), b1.view()),
        &r,
    );
    let col = |x: &Array2<f32>| x.column(0).iter().map(|&v| v as f64).collect::<Vec<_>>();
    close("w1_1d", wasserstein_1d_pow(col(&a1), col(&b1), 1.0), &r);
    let dirs = load("dirs").mapv(|v| v as f64);
    close(
        "sliced_w2",
        sliced_wasserstein(generated.view(), real.slice(s![..150, ..]), &dirs, 2.0),
        &r,
    );
    close(
        "frechet",
        frechet_distance(generated.view(), real.view()),
        &r,
    );
}

#[test]
fn memorisation_matches_nearest_neighbours_of_scikit_learn() {
    let (real, generated, train, r) = (load("real"), load("gen"), load("train"), reference());
    let m = memorization(generated.view(), train.view(), 1.0 / 3.0);
    close("memorized", m.memorized, &r);
    close("copies", m.copies, &r);
    close("authenticity", m.authenticity, &r);
    close(
        "nn_gap",
        nn_distance_gap(generated.view(), train.view(), real.view()),
        &r,
    );
}

#[test]
fn edges_and_ksg_match_numpy_and_scikit_learn() {
    let (real, generated, r) = (load("real"), load("gen"), reference());
    close(
        "edge90",
        edge_coverage(real.view(), generated.view(), 0.9, None),
        &r,
    );
    close(
        "edge99",
        edge_coverage(real.view(), generated.view(), 0.99, None),
        &r,
    );
    let pairs = load("pairs");
    let mi = ksg_mutual_information(pairs.slice(s![.., 0..1]), pairs.slice(s![.., 1..2]), 3);
    close("ksg_k3", mi, &r);
}
