//! The diffusion learner behind the [`crate::models`] traits, and its saved models.
//!
//! A saved diffusion model holds the fitted denoiser in standardised units (metadata
//! `denoiser`): an MLP (`net.*` tensors in PyTorch's `nn.Sequential` layout, see
//! [`MlpDenoiser::save`]), a U-Net (`bench/unet.py`'s parameter names, see
//! [`UnetDenoiser::save`]), the training points of a kernel denoiser (`points`, with `labels`
//! when class-conditional, and `bandwidth`), or the Gaussian mixtures of `gmm-exact` (`mixture.*`,
//! or `all.*` and `class-C.*` per class); the map back to data units (`shift`, `scale`), the
//! class counts of a class-conditional model, and the random field of `[model.error]`
//! (`error.freqs`, `error.phases`, `error.amps`). The noise schedule, sampler, clip and error
//! amplitudes come from the `[model]` keys stored beside them.

use super::closed_form::{KernelDenoiser, MixtureDenoiser, PerClass};
use super::config::DiffusionConfig;
use super::denoiser::Conditioning;
use super::denoiser::Denoiser;
use super::denoiser::ErrorField;
use super::learner::{DenoiserSpec, DiffusionLearner, DiffusionModel, Fitted};
use super::mlp::MlpDenoiser;
use super::unet::UnetDenoiser;
use crate::data::Dataset;
use crate::data::tensors::TensorFile;
use crate::error::Result;
use crate::models::{DataShape, Learner, LearnerConfig, Model, Offers, TrainingSet};
use crate::rng::Stream;
use ndarray::{Array1, Array2};

/// The most classes a saved class-conditional mixture model may declare.
const MAX_CLASSES: usize = 1 << 16;

impl LearnerConfig for DiffusionConfig {
    const KIND: &'static str = "diffusion";
    const ABOUT: &'static str = "diffusion model: a denoiser (mlp, unet, empirical, kde, gmm-exact), a noise schedule and a sampler";
    fn from_table(table: toml::Table) -> Result<Self> {
        DiffusionConfig::from_table(table)
    }
    fn build(self) -> Result<Box<dyn Learner>> {
        Ok(Box::new(DiffusionLearner::from_config(&self)?))
    }
}

impl Learner for DiffusionLearner {
    fn config(&self) -> toml::Table {
        crate::models::config_table(DiffusionConfig::KIND, &self.resolved_config())
    }

    fn prepare(&mut self, data: &DataShape) -> Result<()> {
        self.set_classes(data.classes)?;
        if let Some(e) = &self.error
            && e.bias.len() > data.dim
        {
            return Err(crate::error::Error::config(format!(
                "model.error.bias has {} entries but the data have {} coordinates; expected at \
                 most {} (missing entries are 0)",
                e.bias.len(),
                data.dim,
                data.dim
            )));
        }
        Ok(())
    }

    fn min_points(&self) -> usize {
        DiffusionLearner::min_points(self)
    }

    fn offers(&self) -> Offers {
        Offers {
            labels: self.is_conditional(),
            warm_start: matches!(self.denoiser, DenoiserSpec::Mlp(_) | DenoiserSpec::Unet(..)),
            weights: matches!(self.denoiser, DenoiserSpec::Mlp(_) | DenoiserSpec::Unet(..)),
            extrapolate: matches!(self.denoiser, DenoiserSpec::Mlp(_)),
            ..Offers::default()
        }
    }

    fn fit(
        &self,
        train: &TrainingSet,
        previous: Option<&dyn Model>,
        rng: &mut Stream,
    ) -> Result<Box<dyn Model>> {
        let previous = crate::models::downcast::<DiffusionModel>(previous);
        Ok(Box::new(DiffusionLearner::fit_weighted(
            self,
            train.points,
            train.labels,
            train.weights,
            previous,
            rng,
        )?))
    }

    fn load(&self, file: &TensorFile) -> Result<Box<dyn Model>> {
        Ok(Box::new(self.load_model(file)?))
    }

    fn fit_from(
        &self,
        train: &TrainingSet,
        base: &dyn Model,
        rng: &mut Stream,
    ) -> Result<Box<dyn Model>> {
        match crate::models::downcast::<DiffusionModel>(Some(base)) {
            Some(b) => Ok(Box::new(self.fit_in_frame_of(
                train.points,
                train.labels,
                b,
                rng,
            )?)),
            None => Learner::fit(self, train, Some(base), rng),
        }
    }

    fn extrapolate(
        &self,
        base: &dyn Model,
        self_trained: &dyn Model,
        w: f64,
    ) -> Option<Result<Box<dyn Model>>> {
        let (a, b) = (
            crate::models::downcast::<DiffusionModel>(Some(base))?,
            crate::models::downcast::<DiffusionModel>(Some(self_trained))?,
        );
        Some(
            self.extrapolate_networks(a, b, w)?
                .map(|m| Box::new(m) as Box<dyn Model>),
        )
    }

    fn diffusion(&self) -> Option<&DiffusionLearner> {
        Some(self)
    }
}

impl Model for DiffusionModel {
    fn dim(&self) -> usize {
        self.shift.len()
    }

    fn sample(&self, n: usize, rng: &mut Stream) -> Result<Dataset> {
        let (points, labels) = self.generate_labeled(n, rng);
        Ok(Dataset { points, labels })
    }

    fn diffusion(&self) -> Option<&DiffusionModel> {
        Some(self)
    }

    fn save(&self, file: &mut TensorFile) -> Result<()> {
        let d = self.shift.len();
        file.put("shift", &[d], self.shift.as_slice().expect("contiguous"));
        file.put("scale", &[1], &[self.scale]);
        if let Some(counts) = &self.class_counts {
            let counts: Vec<u32> = counts.iter().map(|&c| c as u32).collect();
            file.put("class_counts", &[counts.len()], &counts);
        }
        if let Some(f) = &self.field {
            let (m, d) = f.freqs.dim();
            file.put(
                "error.freqs",
                &[m, d],
                &f.freqs.iter().copied().collect::<Vec<_>>(),
            );
            file.put(
                "error.phases",
                &[m],
                f.phases.as_slice().expect("contiguous"),
            );
            file.put(
                "error.amps",
                &[m, d],
                &f.amps.iter().copied().collect::<Vec<_>>(),
            );
        }
        match &*self.fitted {
            Fitted::Mlp(net) => {
                file.set("denoiser", "mlp");
                net.save(file);
            }
            Fitted::Unet(net) => {
                file.set("denoiser", "unet");
                net.save(file);
            }
            Fitted::Kernel(k) => {
                file.set("denoiser", "kernel");
                put_points(file, k, None);
            }
            Fitted::ClassKernels(per) => {
                file.set("denoiser", "class-kernels");
                file.set("guidance", per.guidance().to_string());
                put_points(file, per.all(), Some(per.labels()));
            }
            Fitted::Mixture(m) => {
                file.set("denoiser", "mixture");
                crate::models::save_mixture(m.mixture(), file, "mixture.");
            }
            Fitted::ClassMixtures(per) => {
                file.set("denoiser", "class-mixtures");
                file.set("guidance", per.guidance().to_string());
                file.set("classes", per.classes().to_string());
                crate::models::save_mixture(per.all().mixture(), file, "all.");
                for (c, m) in per.each_class() {
                    crate::models::save_mixture(m.mixture(), file, &format!("class-{c}."));
                }
            }
        }
        Ok(())
    }
}

/// The (standardised) training points of a kernel denoiser, its bandwidth and, for a
/// class-conditional one, the points' labels.
fn put_points(file: &mut TensorFile, k: &KernelDenoiser, labels: Option<&[u32]>) {
    let p = k.points();
    let values: Vec<f32> = p.iter().map(|&v| v as f32).collect();
    file.put("points", &[p.nrows(), p.ncols()], &values);
    file.put("bandwidth", &[1], &[k.bandwidth()]);
    if let Some(l) = labels {
        file.put("labels", &[l.len()], l);
    }
}

impl DiffusionLearner {
    /// The model that [`Model::save`] wrote to `file` with this learner's noise schedule,
    /// sampler, clip and error amplitudes: it samples the same bits as the model that was saved.
    pub fn load_model(&self, file: &TensorFile) -> Result<DiffusionModel> {
        let (shape, shift) = file.take::<f64>("shift")?;
        let d = shape.iter().product::<usize>();
        let scale = file.vector::<f64>("scale", 1)?[0];
        if !(scale.is_finite() && scale > 0.0) || shift.iter().any(|v| !v.is_finite()) {
            return Err(file.error("expected a finite shift and a scale > 0"));
        }
        let class_counts = match file.has("class_counts") {
            true => Some(
                file.take::<u32>("class_counts")?
                    .1
                    .into_iter()
                    .map(|c| c as usize)
                    .collect::<Vec<_>>(),
            ),
            false => None,
        };
        let field = match (&self.error, file.has("error.freqs")) {
            (Some(_), true) => {
                let m = file.take::<f64>("error.phases")?.1.len();
                let matrix = |name: &str| -> Result<Array2<f64>> {
                    let v = file.shaped::<f64>(name, &[m, d])?;
                    Ok(Array2::from_shape_vec((m, d), v).expect("shape checked"))
                };
                Some(ErrorField {
                    freqs: matrix("error.freqs")?,
                    phases: Array1::from(file.vector::<f64>("error.phases", m)?),
                    amps: matrix("error.amps")?,
                })
            }
            (Some(_), false) => {
                return Err(file
                    .error("[model.error] is set but the file has no error field (error.freqs)"));
            }
            (None, _) => None,
        };
        // The learner's own guidance: the file's unless `ouro sample --set guidance=…` changed it.
        let configured = self.conditioning.as_ref().map(|c| c.guidance);
        let guidance = || -> Result<f64> {
            if let Some(w) = configured {
                return Ok(w);
            }
            let w: f64 = file.value("guidance")?;
            if w.is_finite() && w >= 0.0 {
                Ok(w)
            } else {
                Err(file.error("metadata `guidance`: expected a number ≥ 0"))
            }
        };
        let kernel_points = || -> Result<(Array2<f32>, f64)> {
            let p = file.matrix("points")?;
            let h = file.vector::<f64>("bandwidth", 1)?[0];
            if p.ncols() != d || p.nrows() == 0 || !(h.is_finite() && h >= 0.0) {
                return Err(file.error(
                    "expected [n, dim] points (n ≥ 1) matching `shift` and a bandwidth ≥ 0",
                ));
            }
            Ok((p, h))
        };
        let fitted = match file.get("denoiser")? {
            "mlp" => {
                let mut net = MlpDenoiser::load(file, self.plan.schedule.clone())?;
                if let (Some(c), Some(w)) = (net.conditioning.as_mut(), configured) {
                    c.guidance = w;
                }
                if net.dim_out() != d {
                    return Err(file.error("the network's output width does not match `shift`"));
                }
                Fitted::Mlp(net)
            }
            "unet" => {
                let mut net = UnetDenoiser::load(file, self.plan.schedule.clone())?;
                if let Some(w) = configured {
                    net.set_guidance(w);
                }
                if net.dim() != d {
                    return Err(file.error("the U-Net's image size does not match `shift`"));
                }
                Fitted::Unet(Box::new(net))
            }
            "kernel" => {
                let (p, h) = kernel_points()?;
                Fitted::Kernel(KernelDenoiser::new(p.view(), h))
            }
            "class-kernels" => {
                let (p, h) = kernel_points()?;
                let labels = file.vector::<u32>("labels", p.nrows())?;
                let classes = class_counts
                    .as_ref()
                    .map(Vec::len)
                    .ok_or_else(|| file.error("class-kernels without `class_counts`"))?;
                if labels.iter().any(|&l| l as usize >= classes) {
                    return Err(file.error("a label is outside the model's classes"));
                }
                let c = Conditioning {
                    classes,
                    label_dropout: 0.0,
                    guidance: guidance()?,
                };
                Fitted::ClassKernels(PerClass::fit(p.view(), &labels, &c, |x| {
                    Ok(KernelDenoiser::new(x, h))
                })?)
            }
            "mixture" => Fitted::Mixture(MixtureDenoiser::new(crate::models::load_mixture(
                file, "mixture.",
            )?)),
            "class-mixtures" => {
                let classes: usize = file.value("classes")?;
                if classes > MAX_CLASSES {
                    return Err(file.error("metadata `classes` is too large"));
                }
                let all = MixtureDenoiser::new(crate::models::load_mixture(file, "all.")?);
                let per_class = (0..classes)
                    .map(|c| {
                        let prefix = format!("class-{c}.");
                        if file.has(&format!("{prefix}means")) {
                            crate::models::load_mixture(file, &prefix)
                                .map(|m| Some(MixtureDenoiser::new(m)))
                        } else {
                            Ok(None)
                        }
                    })
                    .collect::<Result<Vec<_>>>()?;
                Fitted::ClassMixtures(PerClass::from_parts(all, per_class, guidance()?))
            }
            other => {
                return Err(file.error(format!(
                    "metadata `denoiser` = \"{other}\": expected mlp, kernel, class-kernels, \
                     mixture or class-mixtures"
                )));
            }
        };
        if crate::diffusion::Denoiser::dim(&fitted) != d {
            return Err(file.error("the denoiser's dimension does not match `shift`"));
        }
        Ok(self.assemble(fitted, Array1::from(shift), scale, class_counts, field))
    }
}
