//! Classifiers trained by the project, for what a synthetic data set is worth downstream
//! (Yamaguchi & Fukuda: train on generated data, test on real data): softmax regression and a
//! small SiLU MLP, both trained with softmax cross-entropy and Adam on inputs standardised with
//! the training set's statistics, on the project's GEMM and seeded streams.

use crate::error::{Error, Result};
use crate::nn::mlp::{
    Adam, MlpShape, PackedWeights, Workspace, backward, forward_train, init_params,
    softmax_xent_grad,
};
use crate::rng::Stream;
use ndarray::{Array2, ArrayView2};
use rand::seq::SliceRandom;
use std::collections::HashMap;
use std::path::Path;

/// Format tag of a saved classifier.
const FORMAT: &str = "ouro-mlp-classifier-1";

/// How a classifier is built and trained.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifierConfig {
    /// Hidden widths: empty for softmax regression, e.g. [256, 256] for an MLP.
    pub hidden: Vec<usize>,
    /// Passes over the training set.
    pub epochs: usize,
    /// Rows per Adam step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f32,
}

impl ClassifierConfig {
    /// Softmax regression (a linear layer and softmax).
    pub fn softmax() -> Self {
        ClassifierConfig {
            hidden: Vec::new(),
            epochs: 60,
            batch_size: 64,
            lr: 1e-2,
        }
    }

    /// A two-hidden-layer SiLU MLP (256, 256).
    pub fn mlp() -> Self {
        ClassifierConfig {
            hidden: vec![256, 256],
            epochs: 40,
            batch_size: 64,
            lr: 1e-3,
        }
    }
}

/// A trained classifier.
#[derive(Clone, Debug)]
pub struct Classifier {
    shape: MlpShape,
    params: Vec<f32>,
    /// Per-input mean and 1/sd of the training set (sd floored, see [`standardiser`]).
    mean: Vec<f32>,
    inv_sd: Vec<f32>,
    classes: usize,
}

impl Classifier {
    /// Trains on rows of `x` with labels in 0..`classes`. Each epoch visits the rows in a fresh
    /// order drawn from `rng`; a last partial batch is dropped (as PyTorch's `drop_last`), so
    /// every step has `batch_size` rows.
    pub fn train(
        x: ArrayView2<f32>,
        labels: &[u32],
        classes: usize,
        cfg: &ClassifierConfig,
        rng: &mut Stream,
    ) -> Classifier {
        let (n, d) = x.dim();
        assert_eq!(labels.len(), n, "one label per row");
        assert!(
            labels.iter().all(|&l| (l as usize) < classes),
            "labels below classes"
        );
        let (mean, inv_sd) = standardiser(x);
        let shape = MlpShape::new(d, &cfg.hidden, classes);
        let mut params = init_params(&shape, rng);
        let mut packed = PackedWeights::new(&shape, &params, true);
        let batch = cfg.batch_size.clamp(1, n.max(1));
        let mut ws = Workspace::new(&shape, batch);
        let mut adam = Adam::new(shape.params());
        let mut order: Vec<usize> = (0..n).collect();
        let mut y = vec![0u32; batch];
        for _ in 0..cfg.epochs {
            order.shuffle(rng);
            for chunk in order.chunks_exact(batch) {
                for (r, &i) in chunk.iter().enumerate() {
                    let dst = &mut ws.input[r * d..(r + 1) * d];
                    standardise_row(x.row(i), &mean, &inv_sd, dst);
                    y[r] = labels[i];
                }
                forward_train(&shape, &params, &packed, &mut ws);
                softmax_xent_grad(&mut ws, &y, 1.0 / batch as f32);
                backward(&shape, &packed, &mut ws);
                adam.step(&mut params, &[&ws.grads], 1.0, cfg.lr);
                packed.update(&shape, &params);
            }
        }
        Classifier {
            shape,
            params,
            mean,
            inv_sd,
            classes,
        }
    }

    /// Input dimension.
    pub fn dim(&self) -> usize {
        self.shape.widths[0]
    }

    /// Runs the network over `x` in chunks and copies `width` values per row out of each chunk's
    /// workspace with `take`.
    fn map_rows(
        &self,
        x: ArrayView2<f32>,
        width: usize,
        take: impl Fn(&Workspace) -> &[f32],
    ) -> Array2<f32> {
        const CHUNK: usize = 256;
        let (n, d) = x.dim();
        assert_eq!(d, self.dim(), "input dimension");
        let packed = PackedWeights::new(&self.shape, &self.params, false);
        let mut out = Array2::<f32>::zeros((n, width));
        for r0 in (0..n).step_by(CHUNK) {
            let rows = CHUNK.min(n - r0);
            let mut ws = Workspace::new(&self.shape, rows);
            for r in 0..rows {
                let dst = &mut ws.input[r * d..(r + 1) * d];
                standardise_row(x.row(r0 + r), &self.mean, &self.inv_sd, dst);
            }
            forward_train(&self.shape, &self.params, &packed, &mut ws);
            for (r, row) in take(&ws).chunks_exact(width).enumerate() {
                out.row_mut(r0 + r)
                    .iter_mut()
                    .zip(row)
                    .for_each(|(o, &v)| *o = v);
            }
        }
        out
    }

    /// Class scores (logits), one row per row of `x`.
    pub fn logits(&self, x: ArrayView2<f32>) -> Array2<f32> {
        self.map_rows(x, self.classes, |ws| ws.output())
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Class probabilities (softmax of the logits, in f64), one row per row of `x`.
    pub fn probabilities(&self, x: ArrayView2<f32>) -> Array2<f64> {
        let mut p = self.logits(x).mapv(|v| v as f64);
        for mut row in p.rows_mut() {
            let top = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            row.mapv_inplace(|v| (v - top).exp());
            let total = row.sum();
            row /= total;
        }
        p
    }

    /// The last hidden layer's activations (the penultimate layer: a feature space for image
    /// metrics, as Inception features are for FID); `None` for softmax regression.
    pub fn features(&self, x: ArrayView2<f32>) -> Option<Array2<f32>> {
        let hidden = self.shape.layers().checked_sub(2)?;
        let width = self.shape.widths[hidden + 1];
        Some(self.map_rows(x, width, |ws| ws.hidden(hidden)))
    }

    /// Writes the classifier as safetensors ([`crate::nn::weights`] layout) with its classes and
    /// input standardisation in the metadata.
    pub fn save(&self, path: &Path) -> Result<()> {
        let list = |v: &[f32]| {
            let items: Vec<String> = v.iter().map(|x| format!("{x:e}")).collect();
            format!("[{}]", items.join(", "))
        };
        let meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("classes".to_string(), self.classes.to_string()),
            ("mean".to_string(), list(&self.mean)),
            ("inv_sd".to_string(), list(&self.inv_sd)),
        ]);
        crate::nn::weights::write(path, &self.shape, &self.params, meta)
    }

    /// Reads a classifier written by [`Classifier::save`].
    pub fn load(path: &Path) -> Result<Classifier> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Classifier::parse(&bytes, path)
    }

    /// [`Classifier::load`] of the file's `bytes` (`path` for messages).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Classifier> {
        let net = crate::nn::weights::parse(bytes, path, FORMAT)?;
        let bad = |m: &str| Error::data(path, format!("classifier metadata: {m}"));
        let list = |key: &str| -> Result<Vec<f32>> {
            let text = net
                .metadata
                .get(key)
                .ok_or_else(|| bad(&format!("no `{key}`")))?;
            serde_json::from_str(text)
                .map_err(|_| bad(&format!("`{key}` is not a list of numbers")))
        };
        let (mean, inv_sd) = (list("mean")?, list("inv_sd")?);
        let classes: usize = net
            .metadata
            .get("classes")
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad("no `classes`"))?;
        let d = net.shape.widths[0];
        if mean.len() != d || inv_sd.len() != d || net.shape.widths.last() != Some(&classes) {
            return Err(bad("sizes do not match the network"));
        }
        Ok(Classifier {
            shape: net.shape,
            params: net.params,
            mean,
            inv_sd,
            classes,
        })
    }

    /// The most likely class of every row (ties to the lower class).
    pub fn predict(&self, x: ArrayView2<f32>) -> Vec<u32> {
        self.logits(x)
            .rows()
            .into_iter()
            .map(|r| {
                let mut best = 0;
                for (c, &v) in r.iter().enumerate() {
                    if v > r[best] {
                        best = c;
                    }
                }
                best as u32
            })
            .collect()
    }

    /// Accuracy on (x, labels), and per class (NaN for a class absent from `labels`).
    pub fn accuracy(&self, x: ArrayView2<f32>, labels: &[u32]) -> (f64, Vec<f64>) {
        let pred = self.predict(x);
        let mut right = vec![0usize; self.classes];
        let mut total = vec![0usize; self.classes];
        for (&p, &y) in pred.iter().zip(labels) {
            total[y as usize] += 1;
            right[y as usize] += (p == y) as usize;
        }
        let overall = right.iter().sum::<usize>() as f64 / labels.len().max(1) as f64;
        let per = right
            .iter()
            .zip(&total)
            .map(|(&r, &t)| {
                if t == 0 {
                    f64::NAN
                } else {
                    r as f64 / t as f64
                }
            })
            .collect();
        (overall, per)
    }
}

/// The MLP classifier ([`ClassifierConfig::mlp`]) trained on (x, labels) with the `Fit` stream of
/// `seed`, over the classes 0..(largest label in `labels` or `other_labels`) + 1, so that it can
/// be scored on a set holding classes the training set lacks.
pub fn fit_mlp(x: ArrayView2<f32>, labels: &[u32], other_labels: &[u32], seed: u64) -> Classifier {
    let classes = labels
        .iter()
        .chain(other_labels)
        .copied()
        .max()
        .map_or(1, |m| m as usize + 1);
    let mut rng = crate::rng::stream(seed, 0, crate::rng::Role::Fit);
    Classifier::train(x, labels, classes, &ClassifierConfig::mlp(), &mut rng)
}

/// Per-column mean and 1/sd, the population sd floored at [`SD_FLOOR`] × the root mean variance
/// of all columns (1 when every column is constant). The floor keeps near-constant columns (the
/// border pixels of MNIST: sd ≈ 0.01 against ≈ 0.6 inside) from multiplying small deviations
/// of other data, such as a generator's faint background noise, by ~100 before the first layer.
fn standardiser(x: ArrayView2<f32>) -> (Vec<f32>, Vec<f32>) {
    let mu = crate::linalg::mean(x);
    let var = crate::linalg::covariance(x, 0).diag().to_owned();
    let typical = (var.sum() / var.len().max(1) as f64).sqrt();
    let floor = if typical > 1e-12 {
        SD_FLOOR * typical
    } else {
        1.0
    };
    let inv = var
        .iter()
        .map(|&v| (1.0 / v.sqrt().max(floor)) as f32)
        .collect();
    (mu.iter().map(|&v| v as f32).collect(), inv)
}

/// Smallest sd a column is divided by, relative to the typical column's (see [`standardiser`]).
const SD_FLOOR: f64 = 0.1;

fn standardise_row(row: ndarray::ArrayView1<f32>, mean: &[f32], inv_sd: &[f32], dst: &mut [f32]) {
    for (((o, &v), &m), &s) in dst.iter_mut().zip(row).zip(mean).zip(inv_sd) {
        *o = (v - m) * s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::digits;
    use crate::rng::{Role, stream};
    use ndarray::Axis;

    /// Digits split 80/20 by a seeded shuffle: the MLP reaches ≥ 95% held-out accuracy (issue
    /// target; published MLP results on this set are 97–98%), softmax regression ≥ 93%.
    #[test]
    fn digits_classifiers_reach_published_accuracy() {
        let d = digits().unwrap();
        let labels = d.labels.clone().unwrap();
        let mut order: Vec<usize> = (0..d.len()).collect();
        order.shuffle(&mut stream(0, 0, Role::Split));
        let (test, train) = order.split_at(d.len() / 5);
        let pick = |idx: &[usize]| {
            (
                d.points.select(Axis(0), idx),
                idx.iter().map(|&i| labels[i]).collect::<Vec<u32>>(),
            )
        };
        let ((xtr, ytr), (xte, yte)) = (pick(train), pick(test));
        let fit = |cfg: &ClassifierConfig| {
            Classifier::train(xtr.view(), &ytr, 10, cfg, &mut stream(0, 0, Role::Fit))
        };
        let (acc, per) = fit(&ClassifierConfig::mlp()).accuracy(xte.view(), &yte);
        assert!(acc >= 0.95, "MLP accuracy {acc}");
        assert!(per.iter().all(|&a| a > 0.8), "per class {per:?}");
        let soft = fit(&ClassifierConfig::softmax());
        let (acc_s, _) = soft.accuracy(xte.view(), &yte);
        eprintln!("held-out accuracy: MLP {acc:.4}, softmax {acc_s:.4}");
        assert!(acc_s >= 0.93, "softmax accuracy {acc_s}");
        // Deterministic: the same seed gives the same predictions.
        let again = fit(&ClassifierConfig::softmax());
        assert_eq!(again.predict(xte.view()), soft.predict(xte.view()));
        assert!(soft.features(xte.view()).is_none());
        // Saved and loaded, the MLP gives the same logits and 256 features per point.
        let mlp = fit(&ClassifierConfig::mlp());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        mlp.save(&path).unwrap();
        let back = Classifier::load(&path).unwrap();
        assert_eq!(back.logits(xte.view()), mlp.logits(xte.view()));
        assert_eq!(back.features(xte.view()).unwrap().dim(), (xte.nrows(), 256));
    }
}
