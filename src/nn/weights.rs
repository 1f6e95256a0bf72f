//! MLP weights as safetensors, laid out like PyTorch's `nn.Sequential(Linear, SiLU, …, Linear)`:
//! tensors `net.{2l}.weight` (out × in, f32) and `net.{2l}.bias`, so
//! `model.load_state_dict(safetensors.torch.load_file(path))` works on the same architecture.
//! The metadata holds a `format` tag and whatever the network's user needs to rebuild it.

use super::mlp::MlpShape;
use crate::error::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// Writes the MLP (`shape`, flat `params` in [`super::mlp`]'s layout) to `path` with `metadata`
/// (which must hold a `format` tag).
pub fn write(
    path: &Path,
    shape: &MlpShape,
    params: &[f32],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for l in 0..shape.layers() {
        let (i, o) = (shape.widths[l], shape.widths[l + 1]);
        let off = shape.weight_offset(l);
        let mut w = Vec::with_capacity(4 * i * o);
        for r in 0..o {
            for c in 0..i {
                w.extend_from_slice(&params[off + c * o + r].to_le_bytes());
            }
        }
        let b: Vec<u8> = params[off + i * o..off + (i + 1) * o]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        tensors.push((format!("net.{}.weight", 2 * l), vec![o, i], w));
        tensors.push((format!("net.{}.bias", 2 * l), vec![o], b));
    }
    let views = tensors
        .iter()
        .map(|(n, s, d)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), d)?)))
        .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| Error::Run(format!("safetensors: {e}")))?;
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::Run(format!("safetensors: {e}")))?;
    let bytes = with_sorted_metadata(&bytes)?;
    std::fs::write(path, bytes).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The same safetensors file with its `__metadata__` keys in sorted order. `safetensors`
/// writes the metadata from a `HashMap`, whose order changes from run to run; sorting makes the
/// file bytes a function of the weights and metadata alone (reruns are bit-identical). The
/// header is re-padded with spaces to a multiple of 8 bytes, as the format asks; tensor offsets
/// are relative to the data section and do not change.
fn with_sorted_metadata(bytes: &[u8]) -> Result<Vec<u8>> {
    let bad = || Error::Run("safetensors: unexpected header".into());
    let n =
        u64::from_le_bytes(bytes.get(..8).ok_or_else(bad)?.try_into().expect("8 bytes")) as usize;
    let header = bytes.get(8..8 + n).ok_or_else(bad)?;
    let mut value: serde_json::Value = serde_json::from_slice(header).map_err(|_| bad())?;
    if let Some(serde_json::Value::Object(meta)) = value.get_mut("__metadata__") {
        let mut entries: Vec<(String, serde_json::Value)> =
            std::mem::take(meta).into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        meta.extend(entries);
    }
    let mut text = serde_json::to_vec(&value).map_err(|_| bad())?;
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
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
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    parse(&bytes, path, format)
}

/// [`read`] of the file's `bytes` (`path` for messages).
pub fn parse(bytes: &[u8], path: &Path, format: &str) -> Result<SavedNetwork> {
    let bad = |m: String| Error::data(path, m);
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("not safetensors: {e}")))?;
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("not safetensors: {e}")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    if metadata.get("format").map(String::as_str) != Some(format) {
        return Err(bad(format!("expected weights written by ouro ({format})")));
    }
    let mut widths = Vec::new();
    let mut layers = Vec::new();
    for l in 0.. {
        let Ok(w) = st.tensor(&format!("net.{}.weight", 2 * l)) else {
            break;
        };
        let b = st
            .tensor(&format!("net.{}.bias", 2 * l))
            .map_err(|_| bad(format!("net.{}.bias is missing", 2 * l)))?;
        let (o, i) = match w.shape() {
            [o, i] => (*o, *i),
            s => return Err(bad(format!("net.{}.weight has shape {s:?}", 2 * l))),
        };
        if w.dtype() != Dtype::F32 || b.dtype() != Dtype::F32 || b.shape() != [o] {
            return Err(bad(format!(
                "layer {l}: expected f32 weight (out × in) and bias (out)"
            )));
        }
        if widths.is_empty() {
            widths.push(i);
        } else if *widths.last().expect("width") != i {
            return Err(bad(format!(
                "layer {l}: input width {i} does not match the previous layer"
            )));
        }
        widths.push(o);
        layers.push((w, b));
    }
    if layers.is_empty() {
        return Err(bad("no net.0.weight tensor".into()));
    }
    let shape = MlpShape { widths };
    let mut params = vec![0.0f32; shape.params()];
    for (l, (w, b)) in layers.iter().enumerate() {
        let (i, o) = (shape.widths[l], shape.widths[l + 1]);
        let off = shape.weight_offset(l);
        let f = |bytes: &[u8]| -> Vec<f32> {
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let wv = f(w.data());
        for r in 0..o {
            for c in 0..i {
                params[off + c * o + r] = wv[r * i + c];
            }
        }
        params[off + i * o..off + (i + 1) * o].copy_from_slice(&f(b.data()));
    }
    Ok(SavedNetwork {
        shape,
        params,
        metadata,
    })
}
