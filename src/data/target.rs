//! The target a loop is measured against: a known distribution (unlimited draws, exact moments)
//! or a finite real data set (a seeded train/held-out split; fresh draws without replacement).

use super::{
    Dataset, MAX_MAGNITUDE, data_scale, digits, faithful, idx, mnist, penguins, read_csv, read_npy,
};
use crate::config::{ImageConfig, OneOrMany, RealDataConfig, TargetConfig};
use crate::distributions::{Distribution, Gaussian, GaussianMixture, Moons, Rings, StudentT};
use crate::error::{Error, Result};
use crate::linalg;
use crate::rng::{Role, stream};
use ndarray::{Array1, Array2, Axis};
use rand::seq::SliceRandom;
use std::path::PathBuf;

/// The real distribution of an experiment.
pub enum Target {
    /// A distribution with a known form; real points are fresh draws.
    Known(Box<dyn Distribution>),
    /// A finite data set, split per seed into a training pool and a held-out evaluation set.
    Finite {
        /// Name used in messages (`digits`, or the file path).
        name: String,
        /// All points (already standardised if asked).
        data: Dataset,
        /// Share of points held out.
        heldout_fraction: f64,
        /// (rows, cols) of a point viewed as an image (digits, MNIST-like sets), for pictures.
        image_side: Option<(usize, usize)>,
    },
}

impl Target {
    /// Builds and checks the target described by `[target]`, loading any data file.
    pub fn from_config(cfg: &TargetConfig) -> Result<Target> {
        Ok(match cfg {
            TargetConfig::Gaussian {
                dim,
                mean,
                std,
                cov,
            } => {
                let d = positive_dim(*dim)?;
                let mu = padded("target.mean", mean.as_deref(), d)?;
                let sigma = match (std, cov) {
                    (Some(_), Some(_)) => {
                        return Err(Error::config("target: give `std` or `cov`, not both"));
                    }
                    (_, Some(c)) => matrix("target.cov", c, d)?,
                    (s, None) => {
                        Array2::eye(d) * data_positive("target.std", s.unwrap_or(1.0))?.powi(2)
                    }
                };
                Target::Known(Box::new(Gaussian::new(mu, sigma)))
            }
            TargetConfig::Gmm {
                dim,
                means,
                std,
                covs,
                weights,
            } => {
                let d = positive_dim(*dim)?;
                let k = means.len();
                if k == 0 {
                    return Err(Error::config("target.means: expected at least one mean"));
                }
                mixture_size(k, d)?;
                let mus = means
                    .iter()
                    .enumerate()
                    .map(|(i, m)| padded(&format!("target.means[{i}]"), Some(m), d))
                    .collect::<Result<Vec<_>>>()?;
                let sigmas: Vec<Array2<f64>> = match (std, covs) {
                    (Some(_), Some(_)) => {
                        return Err(Error::config("target: give `std` or `covs`, not both"));
                    }
                    (_, Some(cs)) => {
                        if cs.len() != k {
                            return Err(Error::config(format!(
                                "target.covs: {} matrices for {k} means; expected one per component",
                                cs.len()
                            )));
                        }
                        cs.iter()
                            .enumerate()
                            .map(|(i, c)| matrix(&format!("target.covs[{i}]"), c, d))
                            .collect::<Result<_>>()?
                    }
                    (s, None) => per_component("target.std", s.as_ref(), k)?
                        .into_iter()
                        .map(|s| Array2::eye(d) * (s * s))
                        .collect(),
                };
                let w = weights_for("target.weights", weights.as_deref(), k)?;
                let comps = mus
                    .into_iter()
                    .zip(sigmas)
                    .map(|(m, s)| Gaussian::new(m, s))
                    .collect();
                Target::Known(Box::new(GaussianMixture::new(w, comps)))
            }
            TargetConfig::RingGmm {
                dim,
                components,
                radius,
                std,
            } => {
                let d = positive_dim(*dim)?;
                if d < 2 || *components == 0 {
                    return Err(Error::config(
                        "target (ring-gmm): expected dim ≥ 2 and components ≥ 1",
                    ));
                }
                mixture_size(*components, d)?;
                let s = data_positive("target.std", *std)?;
                let radius = data_scale("target.radius", *radius)?;
                let comps = (0..*components)
                    .map(|k| {
                        let a = 2.0 * std::f64::consts::PI * k as f64 / *components as f64;
                        let mut m = Array1::zeros(d);
                        m[0] = radius * a.cos();
                        m[1] = radius * a.sin();
                        Gaussian::isotropic(m, s)
                    })
                    .collect();
                Target::Known(Box::new(GaussianMixture::new(
                    vec![1.0; *components],
                    comps,
                )))
            }
            TargetConfig::Rings {
                radii,
                noise,
                weights,
            } => {
                if radii.is_empty() || radii.iter().any(|r| !(r.is_finite() && *r >= 0.0)) {
                    return Err(Error::config(
                        "target.radii: expected one or more radii ≥ 0",
                    ));
                }
                for r in radii {
                    data_scale("target.radii", *r)?;
                }
                let w = weights_for("target.weights", weights.as_deref(), radii.len())?;
                Target::Known(Box::new(Rings::new(
                    radii.clone(),
                    w,
                    data_scale("target.noise", non_negative("target.noise", *noise)?)?,
                )))
            }
            TargetConfig::Moons { noise } => Target::Known(Box::new(Moons::new(data_scale(
                "target.noise",
                non_negative("target.noise", *noise)?,
            )?))),
            TargetConfig::StudentT {
                dim,
                df,
                scale,
                mean,
            } => {
                let d = positive_dim(*dim)?;
                let mu = padded("target.mean", mean.as_deref(), d)?;
                Target::Known(Box::new(StudentT::new(
                    mu,
                    data_positive("target.scale", *scale)?,
                    positive("target.df", *df)?,
                )))
            }
            TargetConfig::Digits(o) => finite("digits", digits()?, o, Some((8, 8)))?,
            TargetConfig::Mnist(c) => images("mnist", c)?,
            TargetConfig::FashionMnist(c) => images("fashion-mnist", c)?,
            TargetConfig::Idx(c) => images("idx", c)?,
            TargetConfig::Faithful(o) => finite("faithful", faithful()?, o, None)?,
            TargetConfig::Penguins(o) => finite("penguins", penguins()?, o, None)?,
            TargetConfig::Csv(c) => {
                let data = read_csv(
                    &c.path,
                    c.header,
                    c.columns.as_deref(),
                    c.label_column.as_deref(),
                    c.skip_missing,
                )?;
                let o = RealDataConfig {
                    heldout_fraction: c.heldout_fraction,
                    standardize: c.standardize,
                };
                finite(&c.path.display().to_string(), data, &o, None)?
            }
            TargetConfig::Npy(c) => {
                let points = read_npy(&c.path)?;
                let labels = match &c.labels {
                    None => None,
                    Some(p) => Some(crate::data::read_labels(
                        p,
                        points.nrows(),
                        &format!("row of {}", c.path.display()),
                    )?),
                };
                let o = RealDataConfig {
                    heldout_fraction: c.heldout_fraction,
                    standardize: c.standardize,
                };
                finite(
                    &c.path.display().to_string(),
                    Dataset { points, labels },
                    &o,
                    None,
                )?
            }
        })
    }

    /// Dimension of a point.
    pub fn dim(&self) -> usize {
        match self {
            Target::Known(d) => d.dim(),
            Target::Finite { data, .. } => data.dim(),
        }
    }

    /// Size of the training pool of a finite data set (after the held-out split); `None` when
    /// draws are unlimited.
    pub fn pool_size(&self) -> Option<usize> {
        match self {
            Target::Known(_) => None,
            Target::Finite {
                data,
                heldout_fraction,
                ..
            } => Some(data.len() - heldout_count(data.len(), *heldout_fraction)),
        }
    }

    /// (rows, cols) of a point viewed as an image, for image data sets.
    pub fn image_side(&self) -> Option<(usize, usize)> {
        match self {
            Target::Finite { image_side, .. } => *image_side,
            Target::Known(_) => None,
        }
    }

    /// Number of classes of a labelled data set (largest label + 1).
    pub fn classes(&self) -> Option<usize> {
        self.dataset().and_then(|d| d.classes())
    }

    /// The finite data set's points and labels (none for a known distribution).
    pub fn dataset(&self) -> Option<&Dataset> {
        match self {
            Target::Finite { data, .. } => Some(data),
            Target::Known(_) => None,
        }
    }

    /// The known distribution, if the target is one.
    pub fn distribution(&self) -> Option<&dyn Distribution> {
        match self {
            Target::Known(d) => Some(d.as_ref()),
            Target::Finite { .. } => None,
        }
    }

    /// The real data of one seed: its training pool (or stream of fresh draws), its evaluation
    /// reference set (held-out split, or `reference_size` draws from the known distribution),
    /// and the target's mean and covariance (exact where known, otherwise from all real points).
    pub fn realize(&self, seed: u64, reference_size: usize) -> RealData<'_> {
        match self {
            Target::Known(dist) => {
                let reference = dist.sample(reference_size, &mut stream(seed, 0, Role::Reference));
                let mean = dist
                    .mean()
                    .unwrap_or_else(|| linalg::mean(reference.view()));
                let cov = dist
                    .covariance()
                    .unwrap_or_else(|| linalg::covariance(reference.view(), 1));
                RealData {
                    target: self,
                    seed,
                    pool: None,
                    pool_labels: None,
                    next: 0,
                    reference,
                    reference_labels: None,
                    mean,
                    cov,
                }
            }
            Target::Finite {
                data,
                heldout_fraction,
                ..
            } => {
                let n = data.len();
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut stream(seed, 0, Role::Split));
                let h = heldout_count(n, *heldout_fraction);
                let reference = data.points.select(Axis(0), &order[..h]);
                let pool = data.points.select(Axis(0), &order[h..]);
                let pick = |idx: &[usize]| {
                    data.labels
                        .as_ref()
                        .map(|l| idx.iter().map(|&i| l[i]).collect::<Vec<u32>>())
                };
                let mean = linalg::mean(data.points.view());
                let cov = linalg::covariance(data.points.view(), 1);
                RealData {
                    target: self,
                    seed,
                    pool: Some(pool),
                    pool_labels: pick(&order[h..]),
                    next: 0,
                    reference,
                    reference_labels: pick(&order[..h]),
                    mean,
                    cov,
                }
            }
        }
    }
}

/// Number of held-out points for a data set of `n` points.
fn heldout_count(n: usize, fraction: f64) -> usize {
    ((n as f64) * fraction).round() as usize
}

/// The real data seen by one seed of an experiment.
pub struct RealData<'a> {
    target: &'a Target,
    seed: u64,
    /// Shuffled training split of a finite data set; draws take its rows in order.
    pool: Option<Array2<f32>>,
    /// Labels of the pool's rows, when the data set has classes.
    pool_labels: Option<Vec<u32>>,
    next: usize,
    /// Real points for evaluation, never trained on.
    pub reference: Array2<f32>,
    /// Labels of the reference points, when the data set has classes.
    pub reference_labels: Option<Vec<u32>>,
    /// The target's mean.
    pub mean: Array1<f64>,
    /// The target's covariance.
    pub cov: Array2<f64>,
}

impl<'a> RealData<'a> {
    /// The target these real data come from.
    pub fn target(&self) -> &'a Target {
        self.target
    }
}

impl RealData<'_> {
    /// How many points of a finite training pool have been drawn (0 for a known distribution):
    /// with the seed, all that later draws depend on.
    pub fn position(&self) -> usize {
        self.next
    }

    /// Continues the draws of a run that had drawn `position` points of the pool.
    pub fn set_position(&mut self, position: usize) -> Result<()> {
        if self
            .pool
            .as_ref()
            .map_or(position != 0, |p| position > p.nrows())
        {
            return Err(Error::Run(format!(
                "a checkpoint says {position} real points were drawn; the training pool has {}",
                self.pool.as_ref().map_or(0, |p| p.nrows())
            )));
        }
        self.next = position;
        Ok(())
    }

    /// `n` real points for `generation`: fresh draws from the stream (seed, generation, role) for
    /// a known distribution, or the next `n` unused points of a finite training pool.
    pub fn draw(&mut self, n: usize, generation: usize, role: Role) -> Result<Array2<f32>> {
        Ok(self.draw_labeled(n, generation, role)?.0)
    }

    /// [`RealData::draw`] with the labels of the drawn points, when the data set has classes.
    pub fn draw_labeled(
        &mut self,
        n: usize,
        generation: usize,
        role: Role,
    ) -> Result<(Array2<f32>, Option<Vec<u32>>)> {
        let start = self.next;
        let points = self.draw_points(n, generation, role)?;
        let labels = self
            .pool_labels
            .as_ref()
            .map(|l| l[start..start + points.nrows()].to_vec());
        Ok((points, labels))
    }

    fn draw_points(&mut self, n: usize, generation: usize, role: Role) -> Result<Array2<f32>> {
        match (&self.pool, self.target) {
            (None, Target::Known(dist)) => {
                Ok(dist.sample(n, &mut stream(self.seed, generation as u64, role)))
            }
            (Some(pool), Target::Finite { name, .. }) => {
                let left = pool.nrows() - self.next;
                if n > left {
                    return Err(Error::Run(format!(
                        "the training split of {name} ran out of unused real points: generation \
                         {generation} needs {n}, {left} are left (of {}); use fewer generations, a \
                         smaller train_size or fresh_fraction, or a smaller heldout_fraction",
                        pool.nrows()
                    )));
                }
                let rows = pool
                    .slice(ndarray::s![self.next..self.next + n, ..])
                    .to_owned();
                self.next += n;
                Ok(rows)
            }
            _ => unreachable!("pool exists exactly for finite targets"),
        }
    }

    /// The target as a Gaussian, when it is one.
    pub fn gaussian(&self) -> Option<&Gaussian> {
        self.target.distribution().and_then(|d| d.as_gaussian())
    }
}

/// Where Fashion-MNIST is looked for by default (Debian's `dataset-fashion-mnist`).
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// An image target: loads the images of `kind`, keeps the chosen classes and the first
/// `max_points`, pools to `side`, and scales pixels to [−1, 1].
fn images(kind: &str, c: &ImageConfig) -> Result<Target> {
    let only = |key: &str, set: bool, kinds: &str| -> Result<()> {
        if set {
            Err(Error::config(format!(
                "target.{key}: only for kind = {kinds} (this is {kind})"
            )))
        } else {
            Ok(())
        }
    };
    only(
        "path",
        c.path.is_some() && kind != "fashion-mnist",
        "\"fashion-mnist\"",
    )?;
    only(
        "images",
        (c.images.is_some() || c.labels.is_some()) && kind != "idx",
        "\"idx\" (with `labels`)",
    )?;
    only(
        "split",
        c.split.is_some() && kind == "idx",
        "\"mnist\" or \"fashion-mnist\"",
    )?;
    let test = match c.split.as_deref().unwrap_or("train") {
        "train" => false,
        "test" => true,
        other => {
            return Err(Error::config(format!(
                "target.split = \"{other}\": expected \"train\" or \"test\""
            )));
        }
    };
    let prefix = if test { "t10k" } else { "train" };
    let (mut data, side, name) = match kind {
        "mnist" => {
            let (d, s) = mnist(test)?;
            (d, s, "mnist".to_string())
        }
        "fashion-mnist" => {
            let dir = c
                .path
                .clone()
                .unwrap_or_else(|| PathBuf::from(FASHION_MNIST_DIR));
            let find = |what: &str| {
                let stem = format!("{prefix}-{what}-ubyte");
                idx::find_in(&dir, &stem).ok_or_else(|| {
                    Error::data(
                        dir.join(&stem),
                        format!(
                            "not found (nor {stem}.gz); install Fashion-MNIST with `apt-get install \
                             dataset-fashion-mnist` or set target.path to the folder holding it"
                        ),
                    )
                })
            };
            let (ip, lp) = (find("images-idx3")?, find("labels-idx1")?);
            let (d, s) = idx::image_dataset(&idx::read_idx(&ip)?, &idx::read_idx(&lp)?, &ip, &lp)?;
            (d, s, format!("fashion-mnist ({})", dir.display()))
        }
        _ => {
            let (Some(ip), Some(lp)) = (&c.images, &c.labels) else {
                return Err(Error::config(
                    "target (idx): expected `images` and `labels`, the paths of two IDX files",
                ));
            };
            let (d, s) = idx::image_dataset(&idx::read_idx(ip)?, &idx::read_idx(lp)?, ip, lp)?;
            (d, s, ip.display().to_string())
        }
    };
    if let Some(classes) = &c.classes {
        let labels = data.labels.as_ref().expect("images have labels");
        let keep: Vec<usize> = (0..data.len())
            .filter(|&i| classes.contains(&labels[i]))
            .collect();
        if keep.is_empty() {
            return Err(Error::config(format!(
                "target.classes = {classes:?}: no image of {name} has one of these labels"
            )));
        }
        data = Dataset {
            points: data.points.select(Axis(0), &keep),
            labels: Some(keep.iter().map(|&i| labels[i]).collect()),
        };
    }
    if let Some(m) = c.max_points {
        if m < 2 {
            return Err(Error::config("target.max_points: expected at least 2"));
        }
        let m = m.min(data.len());
        data = Dataset {
            points: data.points.slice(ndarray::s![..m, ..]).to_owned(),
            labels: data.labels.map(|l| l[..m].to_vec()),
        };
    }
    if let Some(s) = c.side {
        data.points = idx::downsample(&data.points, side, s)
            .map_err(|e| Error::config(format!("target.side = {s}: {e}")))?;
    }
    let side = c.side.map_or(side, |s| (s, s));
    data.points.mapv_inplace(idx::pixels_to_unit);
    let o = RealDataConfig {
        heldout_fraction: c.heldout_fraction,
        standardize: c.standardize,
    };
    finite(&name, data, &o, Some(side))
}

fn finite(
    name: &str,
    mut data: Dataset,
    o: &RealDataConfig,
    image_side: Option<(usize, usize)>,
) -> Result<Target> {
    if !(0.0..1.0).contains(&o.heldout_fraction) {
        return Err(Error::config(format!(
            "target.heldout_fraction = {}: expected a number in [0, 1)",
            o.heldout_fraction
        )));
    }
    let h = heldout_count(data.len(), o.heldout_fraction);
    if h == 0 || h >= data.len() {
        return Err(Error::config(format!(
            "target.heldout_fraction = {} leaves {h} of {} points held out; expected at least one \
             held-out and one training point",
            o.heldout_fraction,
            data.len()
        )));
    }
    if o.standardize {
        let mu = linalg::mean(data.points.view());
        let sd = linalg::covariance(data.points.view(), 1)
            .diag()
            .mapv(f64::sqrt);
        for mut row in data.points.rows_mut() {
            for ((v, m), s) in row.iter_mut().zip(&mu).zip(&sd) {
                *v = if *s > 0.0 {
                    ((*v as f64 - m) / s) as f32
                } else {
                    0.0
                };
            }
        }
    }
    Ok(Target::Finite {
        name: name.to_string(),
        data,
        heldout_fraction: o.heldout_fraction,
        image_side,
    })
}

/// The largest dimension of a known distribution: its Gaussians hold dense d × d covariances and
/// factors (8 MB each at 1024), factorised in O(d³) when the target is built.
const MAX_KNOWN_DIM: usize = 1024;

/// The most covariance entries (components × dim²) a known mixture may hold: 2²⁶, 512 MB of f64
/// for the covariances and as much for each of their factors.
const MAX_COVARIANCE_ENTRIES: usize = 1 << 26;

fn positive_dim(d: usize) -> Result<usize> {
    if d == 0 || d > MAX_KNOWN_DIM {
        Err(Error::config(format!(
            "target.dim = {d}: expected a dimension from 1 to {MAX_KNOWN_DIM} (known \
             distributions hold dense d × d covariance matrices)"
        )))
    } else {
        Ok(d)
    }
}

/// Checks that `components` dense d × d covariances fit [`MAX_COVARIANCE_ENTRIES`].
fn mixture_size(components: usize, d: usize) -> Result<()> {
    if components.saturating_mul(d * d) > MAX_COVARIANCE_ENTRIES {
        return Err(Error::config(format!(
            "target: {components} components of dimension {d} would hold {components} dense \
             {d} × {d} covariance matrices; expected components × dim² ≤ {MAX_COVARIANCE_ENTRIES} \
             (e.g. at most {} components at this dimension)",
            MAX_COVARIANCE_ENTRIES / (d * d)
        )));
    }
    Ok(())
}

/// A positive number that sets the data's scale (a standard deviation, a scale).
fn data_positive(key: &str, v: f64) -> Result<f64> {
    data_scale(key, positive(key, v)?)
}

fn positive(key: &str, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(Error::config(format!("{key} = {v}: expected a number > 0")))
    }
}

fn non_negative(key: &str, v: f64) -> Result<f64> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(Error::config(format!("{key} = {v}: expected a number ≥ 0")))
    }
}

/// A vector of length `d` from a prefix (padded with zeros); default all zeros.
fn padded(key: &str, v: Option<&[f64]>, d: usize) -> Result<Array1<f64>> {
    let v = v.unwrap_or(&[]);
    if v.len() > d {
        return Err(Error::config(format!(
            "{key} has {} entries but target.dim = {d}; expected at most {d}",
            v.len()
        )));
    }
    let mut out = Array1::zeros(d);
    for (o, x) in out.iter_mut().zip(v) {
        *o = data_scale(key, *x)?;
    }
    Ok(out)
}

/// A d×d symmetric positive semi-definite matrix from nested lists.
fn matrix(key: &str, rows: &[Vec<f64>], d: usize) -> Result<Array2<f64>> {
    if rows.len() != d || rows.iter().any(|r| r.len() != d) {
        return Err(Error::config(format!(
            "{key}: expected a {d}×{d} matrix (target.dim = {d})"
        )));
    }
    if let Some(v) = rows
        .iter()
        .flatten()
        .find(|v| !super::in_data_range(v.abs().sqrt()))
    {
        return Err(Error::config(format!(
            "{key}: entry {v:e} is out of range; expected (co)variances of magnitude at most \
             {:e}, the square of the largest data magnitude {MAX_MAGNITUDE:e}",
            MAX_MAGNITUDE * MAX_MAGNITUDE
        )));
    }
    let m = Array2::from_shape_fn((d, d), |(i, j)| rows[i][j]);
    let symmetric = (0..d)
        .all(|i| (0..d).all(|j| (m[[i, j]] - m[[j, i]]).abs() <= 1e-9 * (1.0 + m[[i, j]].abs())));
    let eig = linalg::to_na(&m).symmetric_eigen();
    if !symmetric || eig.eigenvalues.iter().any(|&l| l < -1e-9) {
        return Err(Error::config(format!(
            "{key}: expected a symmetric positive semi-definite matrix"
        )));
    }
    Ok(m)
}

fn per_component(key: &str, v: Option<&OneOrMany>, k: usize) -> Result<Vec<f64>> {
    let vals = match v {
        None => vec![1.0; k],
        Some(OneOrMany::One(s)) => vec![*s; k],
        Some(OneOrMany::Many(s)) if s.len() == k => s.clone(),
        Some(OneOrMany::Many(s)) => {
            return Err(Error::config(format!(
                "{key}: {} values for {k} components; expected one number or one per component",
                s.len()
            )));
        }
    };
    vals.into_iter().map(|s| data_positive(key, s)).collect()
}

fn weights_for(key: &str, w: Option<&[f64]>, k: usize) -> Result<Vec<f64>> {
    match w {
        None => Ok(vec![1.0; k]),
        Some(w) if w.len() != k => Err(Error::config(format!(
            "{key}: {} weights for {k} components; expected one per component",
            w.len()
        ))),
        Some(w) => w.iter().map(|&x| positive(key, x)).collect(),
    }
}
