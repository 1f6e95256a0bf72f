//! MLP weights as safetensors, laid out like PyTorch's `nn.Sequential(Linear, SiLU, …, Linear)`:
//! tensors `net.{2l}.weight` (out × in, f32) and `net.{2l}.bias`, so
//! `model.load_state_dict(safetensors.torch.load_file(path))` works on the same architecture.
//! The metadata holds a `format` tag and whatever the network's user needs to rebuild it.

use super::mlp::MlpShape;
use crate::data::tensors::TensorFile;
use crate::error::Result;
use std::collections::HashMap;
use std::path::Path;

/// Adds the MLP (`shape`, flat `params` in [`super::mlp`]'s layout) to `file` as `net.{2l}.weight`
/// (out × in) and `net.{2l}.bias`.
pub fn put(file: &mut TensorFile, shape: &MlpShape, params: &[f32]) {
    for l in 0..shape.layers() {
        let (i, o) = (shape.widths[l], shape.widths[l + 1]);
        let off = shape.weight_offset(l);
        let mut w = Vec::with_capacity(i * o);
        for r in 0..o {
            for c in 0..i {
                w.push(params[off + c * o + r]);
            }
        }
        file.put(&format!("net.{}.weight", 2 * l), &[o, i], &w);
        file.put(
            &format!("net.{}.bias", 2 * l),
            &[o],
            &params[off + i * o..off + (i + 1) * o],
        );
    }
}

/// The MLP that [`put`] added to `file`: its widths and flat weights.
pub fn take(file: &TensorFile) -> Result<(MlpShape, Vec<f32>)> {
    let mut widths = Vec::new();
    let mut layers = Vec::new();
    for l in 0.. {
        let name = format!("net.{}.weight", 2 * l);
        if !file.has(&name) {
            break;
        }
        let (shape, w) = file.take::<f32>(&name)?;
        let (o, i) = match shape[..] {
            [o, i] => (o, i),
            _ => return Err(file.error(format!("{name} has shape {shape:?}; expected [out, in]"))),
        };
        let b = file.vector::<f32>(&format!("net.{}.bias", 2 * l), o)?;
        if widths.is_empty() {
            widths.push(i);
        } else if *widths.last().expect("width") != i {
            return Err(file.error(format!(
                "layer {l}: input width {i} does not match the previous layer"
            )));
        }
        widths.push(o);
        layers.push((w, b));
    }
    if layers.is_empty() {
        return Err(file.error("no net.0.weight tensor"));
    }
    let shape = MlpShape { widths };
    let mut params = vec![0.0f32; shape.params()];
    for (l, (w, b)) in layers.iter().enumerate() {
        let (i, o) = (shape.widths[l], shape.widths[l + 1]);
        let off = shape.weight_offset(l);
        for r in 0..o {
            for c in 0..i {
                params[off + c * o + r] = w[r * i + c];
            }
        }
        params[off + i * o..off + (i + 1) * o].copy_from_slice(b);
    }
    Ok((shape, params))
}

/// Writes the MLP (`shape`, flat `params` in [`super::mlp`]'s layout) to `path` with `metadata`
/// (which must hold a `format` tag).
pub fn write(
    path: &Path,
    shape: &MlpShape,
    params: &[f32],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let mut file = TensorFile::default();
    file.metadata.extend(metadata);
    put(&mut file, shape, params);
    file.write(path)
}

/// Weights read back from a file written by [`write`].
#[derive(Debug)]
pub struct SavedNetwork {
    /// Layer widths.
    pub shape: MlpShape,
    /// Flat weights in the layout of [`super::mlp`].
    pub params: Vec<f32>,
    /// The file's metadata.
    pub metadata: HashMap<String, String>,
}

/// Reads weights written by [`write`] whose metadata `format` is `format`.
pub fn read(path: &Path, format: &str) -> Result<SavedNetwork> {
    let bytes = std::fs::read(path)
        .map_err(|e| crate::error::Error::data(path, format!("cannot read it: {e}")))?;
    parse(&bytes, path, format)
}

/// [`read`] of the file's `bytes` (`path` for messages).
pub fn parse(bytes: &[u8], path: &Path, format: &str) -> Result<SavedNetwork> {
    let file = TensorFile::parse(bytes, path)?;
    file.expect_format(format, "weights written by ouro")?;
    let (shape, params) = take(&file)?;
    Ok(SavedNetwork {
        shape,
        params,
        metadata: file.metadata.into_iter().collect(),
    })
}
