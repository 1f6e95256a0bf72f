//! MLP denoiser weights as safetensors in the PyTorch-compatible layout of
//! [`crate::nn::weights`]. The metadata holds what turns the network back into a denoiser in data
//! units: `objective`, `time_embedding`, `dim`, `shift` (JSON list) and `scale`, and for a
//! class-conditional network `classes` (0: unconditional; the input then ends with a one-hot
//! block of classes + 1 entries, the last one "no class"), the sampling `guidance` and the
//! training set's `class_counts` (the proportions its samples follow).

use super::learner::DiffusionModel;
use crate::error::Result;
pub use crate::nn::weights::SavedNetwork;
use std::collections::HashMap;
use std::path::Path;

/// Format tag stored in the metadata.
const FORMAT: &str = "ouro-mlp-denoiser-1";

/// Writes the network of `model` to `path`; does nothing for closed-form denoisers.
pub fn save(model: &DiffusionModel, path: &Path) -> Result<()> {
    let Some(net) = model.network() else {
        return Ok(());
    };
    let shape = net.shape();
    let params = net.params();
    let shift: Vec<String> = model.shift.iter().map(|v| format!("{v:e}")).collect();
    let mut meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("objective".to_string(), net.objective().name().to_string()),
        (
            "time_embedding".to_string(),
            net.time_embedding().to_string(),
        ),
        (
            "classes".to_string(),
            net.conditioning().map_or(0, |c| c.classes).to_string(),
        ),
        (
            "guidance".to_string(),
            net.conditioning().map_or(0.0, |c| c.guidance).to_string(),
        ),
        ("dim".to_string(), net.dim_out().to_string()),
        ("shift".to_string(), format!("[{}]", shift.join(", "))),
        ("scale".to_string(), format!("{:e}", model.scale)),
    ]);
    if let Some(counts) = &model.class_counts {
        let counts: Vec<String> = counts.iter().map(usize::to_string).collect();
        meta.insert(
            "class_counts".to_string(),
            format!("[{}]", counts.join(", ")),
        );
    }
    crate::nn::weights::write(path, shape, params, meta)
}

/// Reads weights written by [`save`].
pub fn load(path: &Path) -> Result<SavedNetwork> {
    crate::nn::weights::read(path, FORMAT)
}
