//! MLP denoiser weights as safetensors, laid out like PyTorch's
//! `nn.Sequential(Linear, SiLU, …, Linear)`: tensors `net.{2l}.weight` (out × in, f32) and
//! `net.{2l}.bias`, so `model.load_state_dict(safetensors.torch.load_file(path))` works on the
//! same architecture. The metadata holds what turns the network back into a denoiser in data
//! units: `objective`, `time_embedding`, `dim`, `shift` (JSON list) and `scale`.

use super::learner::DiffusionModel;
use crate::error::{Error, Result};
use crate::nn::mlp::MlpShape;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
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
    let shift: Vec<String> = model.shift.iter().map(|v| format!("{v:e}")).collect();
    let meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("objective".to_string(), net.objective().name().to_string()),
        (
            "time_embedding".to_string(),
            (shape.widths[0] - net.dim_out()).to_string(),
        ),
        ("dim".to_string(), net.dim_out().to_string()),
        ("shift".to_string(), format!("[{}]", shift.join(", "))),
        ("scale".to_string(), format!("{:e}", model.scale)),
    ]);
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::Run(format!("safetensors: {e}")))?;
    std::fs::write(path, bytes).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Weights read back from a file written by [`save`].
#[derive(Debug)]
pub struct SavedNetwork {
    /// Layer widths.
    pub shape: MlpShape,
    /// Flat weights in the layout of [`crate::diffusion::network`].
    pub params: Vec<f32>,
    /// The file's metadata.
    pub metadata: HashMap<String, String>,
}

/// Reads weights written by [`save`].
pub fn load(path: &Path) -> Result<SavedNetwork> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let bad = |m: String| Error::data(path, m);
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not safetensors: {e}")))?;
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("not safetensors: {e}")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    if metadata.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad(format!("expected weights written by ouro ({FORMAT})")));
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
