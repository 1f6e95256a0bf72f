//! Checkpoints: what each finished generation of a seed leaves in a run folder being written
//! (`checkpoint/seed-S/`), so that `--resume` continues a killed run bit for bit. They are
//! removed when the run completes.
//!
//! - `model-GGG.safetensors`: the model of generation GGG (a saved model, [`crate::models::save`]);
//! - `state.safetensors`: metadata `generation` (GGG), `real_position` (points of a finite pool
//!   drawn so far) and `class_rows` (the rows of `class_accuracy.csv` so far); tensors `rows`
//!   (the metric rows so far, f64 [generations, metrics]), `real_accuracy` (overall, then per
//!   class) and the schedule's kept sets ([`crate::schedule::LoopState::save`]). Numbers are
//!   tensors, never text, so they come back bit for bit.
//!
//! A seed's checkpoint is written after its last generation and after any generation that ends
//! at least [`INTERVAL`] after the seed's previous checkpoint (or its start): a kill loses at most
//! that much work a seed, and runs of many quick generations do not spend their time syncing
//! files (50 generations of a Gaussian MLE take milliseconds; a synced checkpoint about as long).
//!
//! Each file is written to a temporary name, synced and renamed; the state is written after the
//! model it names, and older models are removed after, so a kill at any moment leaves a state
//! whose model is on disk.

use super::{Experiment, Generation, SeedState};
use crate::data::tensors::TensorFile;
use crate::error::{Error, Result};
use crate::schedule::LoopState;
use std::path::Path;

/// The least time between two checkpoints of a seed (the last generation's is always written).
pub(crate) const INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

const FORMAT: &str = "ouro-checkpoint-1";

/// Writes the checkpoint of generation `g` (and `class_rows`, the class-accuracy rows so far) to
/// `dir`.
pub(crate) fn write(dir: &Path, exp: &Experiment, g: &Generation, class_rows: &str) -> Result<()> {
    let model_name = format!("model-{:03}.safetensors", g.generation);
    let model = crate::models::to_file(&*exp.learner, g.model)?;
    super::run_dir::write_file(&dir.join(&model_name), &model.to_bytes()?)?;
    let mut state = TensorFile::new(FORMAT);
    state.set("generation", g.generation.to_string());
    state.set("model_file", model_name.clone());
    state.set("real_position", g.real_position.to_string());
    state.set("class_rows", class_rows);
    if let Some((overall, per_class)) = g.real_accuracy {
        let mut v = vec![*overall];
        v.extend(per_class);
        state.put("real_accuracy", &[v.len()], &v);
    }
    let m = g.rows.first().map_or(0, Vec::len);
    let rows: Vec<f64> = g.rows.iter().flatten().copied().collect();
    state.put("rows", &[g.rows.len(), m], &rows);
    g.loop_state.save(&mut state);
    super::run_dir::write_file(&dir.join("state.safetensors"), &state.to_bytes()?)?;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("model-") && name != model_name {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// The state of the seed whose checkpoint is in `dir`, with the class-accuracy rows so far;
/// `None` when the seed has not finished a generation.
pub(crate) fn read(dir: &Path, exp: &Experiment) -> Result<Option<(SeedState, String)>> {
    let path = dir.join("state.safetensors");
    if !path.exists() {
        return Ok(None);
    }
    let state = TensorFile::read(&path)?;
    state.expect_format(FORMAT, "a checkpoint written by ouro")?;
    let generation: usize = state.value("generation")?;
    let (shape, rows) = state.take::<f64>("rows")?;
    let m = exp.metrics.names().len();
    if shape != [generation + 1, m] {
        return Err(state.error(format!(
            "`rows` has shape {shape:?}; generation {generation} with {m} metrics needs [{}, {m}]",
            generation + 1
        )));
    }
    let rows = rows
        .chunks(m.max(1))
        .map(<[f64]>::to_vec)
        .take(generation + 1)
        .collect();
    let real_accuracy = match state.has("real_accuracy") {
        true => {
            let (_, v) = state.take::<f64>("real_accuracy")?;
            let (overall, per_class) = v
                .split_first()
                .ok_or_else(|| state.error("tensor `real_accuracy` is empty"))?;
            Some((*overall, per_class.to_vec()))
        }
        false => None,
    };
    let model_path = dir.join(state.get("model_file")?);
    let (_, previous) = crate::models::load(&model_path)?;
    if previous.dim() != exp.target.dim() {
        return Err(Error::data(
            &model_path,
            "the model's dimension is not the target's",
        ));
    }
    Ok(Some((
        SeedState {
            generation: generation + 1,
            previous,
            loop_state: LoopState::load(&state)?,
            real_position: state.value("real_position")?,
            rows,
            real_accuracy,
        },
        state.get("class_rows")?.to_string(),
    )))
}
