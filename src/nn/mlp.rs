//! A small MLP with SiLU activations, written for speed on a CPU: one flat parameter buffer,
//! preallocated workspaces, one [`matmul`] per layer and direction with bias + SiLU fused into its
//! epilogue, storing h = z·s and silu'(z) = s + h(1 − s) (s = sigmoid(z)) so that the backward pass
//! needs no exp and multiplies by one stored value.
//!
//! Layer l maps `in_l` → `out_l`: Z = X W_l + b_l with W_l stored row-major (`in_l × out_l`):
//! X·W forward, Xᵀ·dZ for dW and dZ·Wᵀ for dX, with W and Wᵀ packed once per parameter update
//! ([`PackedWeights`]).

use super::gemm::{Epilogue, PackedB, matmul};
use super::simd_dispatch;
use rand::RngExt;

/// Layer sizes of an MLP: input → hidden… → output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlpShape {
    /// Widths of every layer boundary: `[input, hidden…, output]`.
    pub widths: Vec<usize>,
}

impl MlpShape {
    /// An MLP from `input` through `hidden` to `output`.
    pub fn new(input: usize, hidden: &[usize], output: usize) -> Self {
        let mut widths = vec![input];
        widths.extend_from_slice(hidden);
        widths.push(output);
        MlpShape { widths }
    }

    /// Number of linear layers.
    pub fn layers(&self) -> usize {
        self.widths.len() - 1
    }

    /// Offset of W_l in the flat buffer (b_l follows it).
    pub fn weight_offset(&self, l: usize) -> usize {
        (0..l)
            .map(|i| (self.widths[i] + 1) * self.widths[i + 1])
            .sum()
    }

    /// Total number of parameters.
    pub fn params(&self) -> usize {
        self.weight_offset(self.layers())
    }

    /// Largest width.
    pub fn max_width(&self) -> usize {
        *self.widths.iter().max().expect("non-empty")
    }
}

/// PyTorch's default `nn.Linear` initialisation: W, b ~ U(−1/√in, 1/√in).
pub fn init_params(shape: &MlpShape, rng: &mut crate::rng::Stream) -> Vec<f32> {
    let mut p = vec![0.0f32; shape.params()];
    for l in 0..shape.layers() {
        let (i, o) = (shape.widths[l], shape.widths[l + 1]);
        let bound = 1.0 / (i as f32).sqrt();
        let off = shape.weight_offset(l);
        for v in &mut p[off..off + (i + 1) * o] {
            *v = rng.random_range(-bound..bound);
        }
    }
    p
}

/// Buffers for a forward + backward pass over `rows` rows (one per worker).
pub struct Workspace {
    rows: usize,
    /// Network input, rows × widths[0].
    pub input: Vec<f32>,
    /// Regression target, rows × output.
    pub target: Vec<f32>,
    /// h_l = silu(z_l) for every hidden layer.
    h: Vec<Vec<f32>>,
    /// silu'(z_l) for every hidden layer.
    dsilu: Vec<Vec<f32>>,
    /// Network output, then dL/d(output).
    out: Vec<f32>,
    /// Gradient with respect to a layer's output (two, used alternately).
    grad_a: Vec<f32>,
    grad_b: Vec<f32>,
    /// Gradient of the loss with respect to every parameter.
    pub grads: Vec<f32>,
    /// dZ of the current layer packed as the B of dW = Xᵀ·dZ.
    dz_packed: PackedB,
    /// One layer's bias gradient, summed from zero before [`backward_add`] adds it.
    db: Vec<f32>,
}

impl Workspace {
    /// Buffers for `rows` rows of `shape`.
    pub fn new(shape: &MlpShape, rows: usize) -> Self {
        let hidden = &shape.widths[1..shape.layers()];
        let out_w = *shape.widths.last().expect("output");
        Workspace {
            rows,
            input: vec![0.0; rows * shape.widths[0]],
            target: vec![0.0; rows * out_w],
            h: hidden.iter().map(|&w| vec![0.0; rows * w]).collect(),
            dsilu: hidden.iter().map(|&w| vec![0.0; rows * w]).collect(),
            out: vec![0.0; rows * out_w],
            grad_a: vec![0.0; rows * shape.max_width()],
            grad_b: vec![0.0; rows * shape.max_width()],
            grads: vec![0.0; shape.params()],
            dz_packed: PackedB::new(),
            db: vec![0.0; shape.max_width()],
        }
    }

    /// Rows this workspace holds.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The output of the last forward pass (rows × output).
    pub fn output(&self) -> &[f32] {
        &self.out
    }

    /// The activations silu(z_l) of hidden layer `l` in the last forward pass (rows × width).
    pub fn hidden(&self, l: usize) -> &[f32] {
        &self.h[l]
    }
}

/// The weights of every layer packed for [`matmul`]: W_l for the forward pass and, when built for
/// training, W_lᵀ for the backward pass's dZ·Wᵀ.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedWeights {
    w: Vec<PackedB>,
    wt: Vec<PackedB>,
}

impl PackedWeights {
    /// Packs `params` of `shape`; `transposes` also packs W_lᵀ (l ≥ 1) for [`backward`].
    pub fn new(shape: &MlpShape, params: &[f32], transposes: bool) -> Self {
        let l = shape.layers();
        let mut p = PackedWeights {
            w: vec![PackedB::new(); l],
            wt: if transposes {
                vec![PackedB::new(); l]
            } else {
                Vec::new()
            },
        };
        p.update(shape, params);
        p
    }

    /// Repacks after `params` changed (same shape).
    pub fn update(&mut self, shape: &MlpShape, params: &[f32]) {
        for l in 0..shape.layers() {
            let (i, o) = (shape.widths[l], shape.widths[l + 1]);
            let off = shape.weight_offset(l);
            let w = &params[off..off + i * o];
            self.w[l].pack(w, i, o, false);
            if l > 0 && !self.wt.is_empty() {
                // Wᵀ (o × i) is stored transposed as W itself.
                self.wt[l].pack(w, o, i, true);
            }
        }
    }
}

/// Forward pass over `ws.input`, keeping what the backward pass needs; output in `ws.out`.
pub fn forward_train(shape: &MlpShape, params: &[f32], packed: &PackedWeights, ws: &mut Workspace) {
    let rows = ws.rows;
    let layers = shape.layers();
    for l in 0..layers {
        let (i, o) = (shape.widths[l], shape.widths[l + 1]);
        let off = shape.weight_offset(l);
        let b = &params[off + i * o..off + (i + 1) * o];
        let hidden = ws.h.len();
        let (before, rest) = ws.h.split_at_mut(l.min(hidden));
        let x: &[f32] = if l == 0 { &ws.input } else { &before[l - 1] };
        if l + 1 < layers {
            let epi = Epilogue::BiasSiluKeep(b, &mut ws.dsilu[l]);
            matmul(rows, i, x, false, &packed.w[l], &mut rest[0], epi);
        } else {
            matmul(
                rows,
                i,
                x,
                false,
                &packed.w[l],
                &mut ws.out,
                Epilogue::Bias(b),
            );
        }
    }
}

/// Squared error Σ (out − target)² of the last forward pass, and dL/d(out) = `scale`·2(out − target)
/// written over the output (for a mean over N·d elements, `scale` = 1/(N·d)).
pub fn loss_grad(ws: &mut Workspace, scale: f32) -> f64 {
    let mut sum = 0.0f64;
    for (o, &t) in ws.out.iter_mut().zip(&ws.target) {
        let e = *o - t;
        sum += (e * e) as f64;
        *o = 2.0 * scale * e;
    }
    sum
}

/// Softmax cross-entropy of the last forward pass's outputs (logits) against class `labels`
/// (one per row): returns Σ −ln softmax(out)_y, and writes dL/d(out) = `scale`·(softmax(out) −
/// onehot(y)) over the output (for a mean over N rows, `scale` = 1/N).
pub fn softmax_xent_grad(ws: &mut Workspace, labels: &[u32], scale: f32) -> f64 {
    let classes = ws.out.len() / ws.rows.max(1);
    let mut sum = 0.0f64;
    for (row, &y) in ws.out.chunks_exact_mut(classes).zip(labels) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut z = 0.0f64;
        for v in row.iter_mut() {
            let e = ((*v - max) as f64).exp();
            z += e;
            *v = e as f32;
        }
        let y = y as usize;
        sum -= (row[y] as f64 / z).ln();
        for (c, v) in row.iter_mut().enumerate() {
            let p = (*v as f64 / z) as f32;
            *v = scale * (p - if c == y { 1.0 } else { 0.0 });
        }
    }
    sum
}

/// Backward pass after [`forward_train`] and [`loss_grad`]: writes dL/dθ into `ws.grads`.
/// `packed` must hold the transposes (built with `transposes = true`).
pub fn backward(shape: &MlpShape, packed: &PackedWeights, ws: &mut Workspace) {
    backprop(shape, packed, ws, false);
}

/// [`backward`], adding dL/dθ to what `ws.grads` holds: g ← g + ĝ with ĝ summed from zero,
/// the same bits as adding a second workspace's gradient afterwards (how one thread runs the
/// chunks of a batch in one set of buffers, without a gradient buffer per chunk).
pub fn backward_add(shape: &MlpShape, packed: &PackedWeights, ws: &mut Workspace) {
    backprop(shape, packed, ws, true);
}

/// The backward pass, overwriting the gradient or (`add`) adding to it.
fn backprop(shape: &MlpShape, packed: &PackedWeights, ws: &mut Workspace, add: bool) {
    assert!(
        !packed.wt.is_empty(),
        "backward needs the packed transposes"
    );
    let rows = ws.rows;
    let layers = shape.layers();
    let Workspace {
        input,
        h,
        dsilu,
        out,
        grad_a,
        grad_b,
        grads,
        dz_packed,
        db: db_sum,
        ..
    } = ws;
    let dw_epi = || if add { Epilogue::Add } else { Epilogue::None };
    // dz holds dL/dZ_l of the current layer; it starts as the output gradient.
    let mut dz_is_out = true;
    for l in (0..layers).rev() {
        let (i, o) = (shape.widths[l], shape.widths[l + 1]);
        let off = shape.weight_offset(l);
        let x: &[f32] = if l == 0 { input } else { &h[l - 1] };
        let dz: &[f32] = if dz_is_out { out } else { grad_a };
        let dz = &dz[..rows * o];
        // dW = Xᵀ dZ (X is Xᵀ stored transposed). A hidden layer's dZ was packed by the
        // SiLU-backward epilogue that computed it.
        if dz_is_out {
            dz_packed.pack(dz, rows, o, false);
        }
        let (gw, gb) = grads[off..off + (i + 1) * o].split_at_mut(i * o);
        matmul(i, rows, x, true, dz_packed, gw, dw_epi());
        if dz_is_out {
            // db = column sums of dZ (hidden layers get theirs from the SiLU backward below).
            let sums = if add { &mut db_sum[..o] } else { &mut *gb };
            sums.fill(0.0);
            for r in dz.chunks_exact(o) {
                add_to(sums, r);
            }
            if add {
                add_to(gb, &db_sum[..o]);
            }
        }
        if l == 0 {
            break;
        }
        // dZ_{l−1} = (dZ Wᵀ) ⊙ silu'(z), and db_{l−1} alongside.
        let boff = shape.weight_offset(l - 1) + shape.widths[l - 1] * i;
        let gb = &mut grads[boff..boff + i];
        let epi = Epilogue::SiluGrad {
            dsilu: &dsilu[l - 1],
            db: if add { &mut db_sum[..i] } else { &mut *gb },
            packed: dz_packed,
        };
        matmul(rows, o, dz, false, &packed.wt[l], grad_b, epi);
        if add {
            add_to(gb, &db_sum[..i]);
        }
        std::mem::swap(grad_a, grad_b);
        dz_is_out = false;
    }
}

/// g ← g + v elementwise.
fn add_to(g: &mut [f32], v: &[f32]) {
    for (g, &v) in g.iter_mut().zip(v) {
        *g += v;
    }
}

/// Inference buffers for up to `rows` rows.
pub struct InferenceBuffers {
    a: Vec<f32>,
    b: Vec<f32>,
    bias0: Vec<f32>,
}

impl InferenceBuffers {
    /// Buffers for `rows` rows of `shape`.
    pub fn new(shape: &MlpShape, rows: usize) -> Self {
        InferenceBuffers {
            a: vec![0.0; rows * shape.max_width()],
            b: vec![0.0; rows * shape.max_width()],
            bias0: vec![0.0; shape.widths[1]],
        }
    }

    fn fits(&self, shape: &MlpShape, rows: usize) -> bool {
        self.a.len() >= rows * shape.max_width() && self.bias0.len() == shape.widths[1]
    }
}

/// Forward pass for `rows` rows whose input is `[x, e]` with the same trailing vector `e` (the
/// time embedding) on every row: the first layer is x·W₀[:d] plus the per-call bias
/// e·W₀[d:] + b₀, so the product has k = d instead of d + |e|. Writes rows × output into `out`.
#[allow(clippy::too_many_arguments)]
pub fn forward_shared_tail(
    shape: &MlpShape,
    params: &[f32],
    packed: &PackedWeights,
    x: &[f32],
    d: usize,
    tail: &[f32],
    out: &mut [f32],
    bufs: &mut InferenceBuffers,
) {
    let rows = x.len() / d;
    assert_eq!(shape.widths[0], d + tail.len());
    if !bufs.fits(shape, rows) {
        *bufs = InferenceBuffers::new(shape, rows);
    }
    let layers = shape.layers();
    let o0 = shape.widths[1];
    // Per-call bias of layer 0.
    let w0 = &params[..shape.widths[0] * o0];
    bufs.bias0
        .copy_from_slice(&params[shape.widths[0] * o0..(shape.widths[0] + 1) * o0]);
    for (j, &e) in tail.iter().enumerate() {
        let wr = &w0[(d + j) * o0..(d + j + 1) * o0];
        for (b, &w) in bufs.bias0.iter_mut().zip(wr) {
            *b += e * w;
        }
    }
    let InferenceBuffers { a, b, bias0 } = bufs;
    for l in 0..layers {
        let (i, o) = (shape.widths[l], shape.widths[l + 1]);
        let off = shape.weight_offset(l);
        let last = l + 1 == layers;
        let (k, src): (usize, &[f32]) = if l == 0 { (d, x) } else { (i, &a[..rows * i]) };
        let bias = if l == 0 {
            &bias0[..]
        } else {
            &params[off + i * o..off + (i + 1) * o]
        };
        if last {
            matmul(
                rows,
                k,
                src,
                false,
                &packed.w[l],
                &mut out[..rows * o],
                Epilogue::Bias(bias),
            );
        } else {
            matmul(
                rows,
                k,
                src,
                false,
                &packed.w[l],
                &mut b[..rows * o],
                Epilogue::BiasSilu(bias),
            );
            std::mem::swap(a, b);
        }
    }
}

/// Adam (Kingma & Ba) with PyTorch's update: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g²,
/// θ ← θ − lr/(1−β₁ᵗ) · m/(√v/√(1−β₂ᵗ) + ε). One pass over the flat buffers.
pub struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    step: u64,
    /// β₁ (0.9).
    pub beta1: f32,
    /// β₂ (0.999).
    pub beta2: f32,
    /// ε (1e-8).
    pub eps: f32,
}

impl Adam {
    /// Zero moments for `n` parameters.
    pub fn new(n: usize) -> Self {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
            step: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// One update with gradient g = `scale`·Σ_k grads[k] (the per-worker gradients are added in
    /// order, so the result does not depend on how many threads computed them).
    ///
    /// Blocks of 16 384 parameters are updated in parallel (rayon): each parameter's update
    /// reads only its own values, so the bits do not depend on the split.
    pub fn step(&mut self, params: &mut [f32], grads: &[&[f32]], scale: f32, lr: f32) {
        use rayon::prelude::*;
        const BLOCK: usize = 1 << 14;
        let c = self.consts(scale, lr);
        params
            .par_chunks_mut(BLOCK)
            .zip(self.m.par_chunks_mut(BLOCK))
            .zip(self.v.par_chunks_mut(BLOCK))
            .enumerate()
            .for_each(|(i, ((p, m), v))| {
                let at = i * BLOCK..i * BLOCK + p.len();
                let g: Vec<&[f32]> = grads.iter().map(|g| &g[at.clone()]).collect();
                c.apply(p, m, v, &g);
            });
    }

    /// [`Adam::step`] on the parameters of an MLP of `shape`, then the repacking of `packed`
    /// that [`PackedWeights::update`] does, layer by layer: each layer's update and packing is
    /// one task, so that two threads split the layers (rayon) instead of one thread doing both
    /// passes while the other waits. The parameters are the same bits as with `step`.
    pub fn step_packed(
        &mut self,
        shape: &MlpShape,
        params: &mut [f32],
        grads: &[&[f32]],
        scale: f32,
        lr: f32,
        packed: &mut PackedWeights,
    ) {
        use rayon::prelude::*;
        let c = self.consts(scale, lr);
        // One task per layer: its parameters, moments, gradient offset and packings.
        let mut tasks = Vec::with_capacity(shape.layers());
        let (mut p, mut m, mut v) = (params, &mut self.m[..], &mut self.v[..]);
        let mut wts = packed.wt.iter_mut();
        for (l, w) in packed.w.iter_mut().enumerate() {
            let len = (shape.widths[l] + 1) * shape.widths[l + 1];
            let (pl, pr) = std::mem::take(&mut p).split_at_mut(len);
            let (ml, mr) = std::mem::take(&mut m).split_at_mut(len);
            let (vl, vr) = std::mem::take(&mut v).split_at_mut(len);
            (p, m, v) = (pr, mr, vr);
            let wt = wts.next().filter(|_| l > 0);
            tasks.push((l, pl, ml, vl, w, wt));
        }
        tasks.into_par_iter().for_each(|(l, p, m, v, w, wt)| {
            let (i, o) = (shape.widths[l], shape.widths[l + 1]);
            let off = shape.weight_offset(l);
            let g: Vec<&[f32]> = grads.iter().map(|g| &g[off..off + (i + 1) * o]).collect();
            c.apply(p, m, v, &g);
            let weights = &p[..i * o];
            w.pack(weights, i, o, false);
            if let Some(wt) = wt {
                wt.pack(weights, o, i, true);
            }
        });
    }

    /// Advances the step count and returns this step's constants.
    fn consts(&mut self, scale: f32, lr: f32) -> AdamConsts {
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let bc1 = 1.0 - (b1 as f64).powi(self.step as i32);
        let bc2 = 1.0 - (b2 as f64).powi(self.step as i32);
        AdamConsts {
            b1,
            b2,
            step_size: (lr as f64 / bc1) as f32,
            inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
            eps: self.eps,
            scale,
        }
    }
}

/// The per-step constants of an Adam update.
#[derive(Clone, Copy)]
struct AdamConsts {
    b1: f32,
    b2: f32,
    step_size: f32,
    inv_sqrt_bc2: f32,
    eps: f32,
    scale: f32,
}

impl AdamConsts {
    /// Updates `params` (with moments m, v) by the gradient Σ_k grads[k] (each as long as
    /// `params`).
    fn apply(self, params: &mut [f32], m: &mut [f32], v: &mut [f32], grads: &[&[f32]]) {
        match grads {
            [g0] => adam_one(params, m, v, g0, self),
            [g0, g1] => adam_two(params, m, v, g0, g1, self),
            _ => {
                for (j, ((p, m), v)) in params.iter_mut().zip(m).zip(v).enumerate() {
                    let g: f32 = grads.iter().map(|g| g[j]).sum();
                    self.update(p, m, v, g);
                }
            }
        }
    }

    /// One parameter's update with raw gradient `g` (scaled here).
    #[inline(always)]
    fn update(&self, p: &mut f32, m: &mut f32, v: &mut f32, g: f32) {
        let g = self.scale * g;
        *m = self.b1 * *m + (1.0 - self.b1) * g;
        *v = self.b2 * *v + (1.0 - self.b2) * g * g;
        *p -= self.step_size * *m / (v.sqrt() * self.inv_sqrt_bc2 + self.eps);
    }
}

simd_dispatch! {
/// Adam over the flat buffers with one gradient.
fn adam_one(params: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], c: AdamConsts) {
    for (((p, m), v), &g) in params.iter_mut().zip(m).zip(v).zip(g) {
        c.update(p, m, v, g);
    }
}
}

simd_dispatch! {
/// Adam over the flat buffers with the sum of two gradients (two batch chunks).
fn adam_two(params: &mut [f32], m: &mut [f32], v: &mut [f32], g0: &[f32], g1: &[f32], c: AdamConsts) {
    for ((((p, m), v), &a), &b) in params.iter_mut().zip(m).zip(v).zip(g0).zip(g1) {
        c.update(p, m, v, a + b);
    }
}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Role, stream};

    /// Central finite differences of the mean squared error agree with backprop.
    #[test]
    fn gradients_match_finite_differences() {
        let shape = MlpShape::new(5, &[7, 6], 3);
        let mut rng = stream(1, 0, Role::Fit);
        let params = init_params(&shape, &mut rng);
        let rows = 4;
        let mut ws = Workspace::new(&shape, rows);
        for v in ws.input.iter_mut().chain(ws.target.iter_mut()) {
            *v = rng.random_range(-2.0..2.0);
        }
        let scale = 1.0 / (rows * 3) as f32;
        let loss = |p: &[f32], ws: &mut Workspace| -> f64 {
            forward_train(&shape, p, &PackedWeights::new(&shape, p, false), ws);
            ws.out
                .iter()
                .zip(&ws.target)
                .map(|(&o, &t)| ((o - t) as f64).powi(2))
                .sum::<f64>()
                * scale as f64
        };
        let packed = PackedWeights::new(&shape, &params, true);
        forward_train(&shape, &params, &packed, &mut ws);
        loss_grad(&mut ws, scale);
        backward(&shape, &packed, &mut ws);
        let analytic = ws.grads.clone();
        let mut p = params.clone();
        let h = 1e-2f32;
        let mut worst = 0.0f64;
        for j in 0..p.len() {
            let orig = p[j];
            p[j] = orig + h;
            let up = loss(&p, &mut ws);
            p[j] = orig - h;
            let down = loss(&p, &mut ws);
            p[j] = orig;
            let numeric = (up - down) / (2.0 * h as f64);
            let err = (numeric - analytic[j] as f64).abs() / (numeric.abs() + 1e-3);
            worst = worst.max(err);
        }
        assert!(worst < 2e-2, "worst relative gradient error {worst}");
    }

    #[test]
    fn shared_tail_forward_equals_full_forward() {
        let shape = MlpShape::new(2 + 4, &[16, 16], 2);
        let mut rng = stream(2, 0, Role::Fit);
        let params = init_params(&shape, &mut rng);
        let rows = 5;
        let x: Vec<f32> = (0..rows * 2).map(|i| i as f32 * 0.3 - 1.0).collect();
        let tail = [0.1f32, -0.4, 0.9, 0.2];
        let mut ws = Workspace::new(&shape, rows);
        for r in 0..rows {
            ws.input[r * 6..r * 6 + 2].copy_from_slice(&x[r * 2..r * 2 + 2]);
            ws.input[r * 6 + 2..r * 6 + 6].copy_from_slice(&tail);
        }
        let packed = PackedWeights::new(&shape, &params, false);
        forward_train(&shape, &params, &packed, &mut ws);
        let mut out = vec![0.0; rows * 2];
        let mut bufs = InferenceBuffers::new(&shape, rows);
        forward_shared_tail(&shape, &params, &packed, &x, 2, &tail, &mut out, &mut bufs);
        for (a, b) in out.iter().zip(ws.output()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    /// `backward_add` over a second batch leaves g₀ + g₁ with the bits of adding two separately
    /// computed gradients, for widths on both sides of the 16-column panels.
    #[test]
    fn backward_add_gives_the_bits_of_a_sum_of_two_gradients() {
        let shape = MlpShape::new(7, &[20, 33], 3);
        let mut rng = stream(5, 0, Role::Fit);
        let params = init_params(&shape, &mut rng);
        let packed = PackedWeights::new(&shape, &params, true);
        let rows = 13;
        let batches: Vec<(Vec<f32>, Vec<f32>)> = (0..2)
            .map(|_| {
                let x = (0..rows * 7).map(|_| rng.random_range(-2.0..2.0)).collect();
                let t = (0..rows * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
                (x, t)
            })
            .collect();
        let run = |ws: &mut Workspace, b: usize, add: bool| {
            ws.input.copy_from_slice(&batches[b].0);
            ws.target.copy_from_slice(&batches[b].1);
            forward_train(&shape, &params, &packed, ws);
            loss_grad(ws, 0.1);
            if add {
                backward_add(&shape, &packed, ws);
            } else {
                backward(&shape, &packed, ws);
            }
        };
        let (mut one, mut other) = (Workspace::new(&shape, rows), Workspace::new(&shape, rows));
        run(&mut one, 0, false);
        run(&mut other, 1, false);
        let want: Vec<f32> = one
            .grads
            .iter()
            .zip(&other.grads)
            .map(|(a, b)| a + b)
            .collect();
        run(&mut one, 1, true);
        assert!(other.grads.iter().any(|&g| g != 0.0));
        for (j, (g, w)) in one.grads.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "parameter {j}");
        }
    }

    /// The fused update + packing gives the bits of `step` followed by a fresh packing, for
    /// widths on both sides of the 16-column panels, with one and with two gradients.
    #[test]
    fn fused_adam_packs_what_it_updates() {
        let shape = MlpShape::new(5, &[20, 32, 33], 3);
        let mut rng = stream(3, 0, Role::Fit);
        let params = init_params(&shape, &mut rng);
        let grads: Vec<Vec<f32>> = (0..2)
            .map(|_| {
                (0..params.len())
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect()
            })
            .collect();
        for workers in [1, 2] {
            let g: Vec<&[f32]> = grads[..workers].iter().map(|g| &g[..]).collect();
            let (mut plain, mut fused) = (params.clone(), params.clone());
            let (mut a, mut b) = (Adam::new(params.len()), Adam::new(params.len()));
            let mut packed = PackedWeights::new(&shape, &params, true);
            for _ in 0..3 {
                a.step(&mut plain, &g, 0.5, 1e-2);
                b.step_packed(&shape, &mut fused, &g, 0.5, 1e-2, &mut packed);
            }
            assert!(
                plain
                    .iter()
                    .zip(&fused)
                    .all(|(x, y)| x.to_bits() == y.to_bits())
            );
            assert!(plain != params, "the updates moved the weights");
            assert!(packed == PackedWeights::new(&shape, &plain, true));
        }
    }

    #[test]
    fn adam_matches_the_reference_update() {
        // One parameter, gradient 2 then −1: by hand with PyTorch's formulas.
        let mut adam = Adam::new(1);
        let mut p = [1.0f32];
        adam.step(&mut p, &[&[2.0]], 1.0, 0.1);
        // m = 0.2, v = 0.004; m̂ = 2, v̂ = 4 → p = 1 − 0.1·2/(2 + 1e-8).
        assert!((p[0] - 0.9).abs() < 1e-6);
        adam.step(&mut p, &[&[-0.5], &[-0.5]], 1.0, 0.1);
        let (m, v) = (0.9 * 0.2 - 0.1f64, 0.999 * 0.004 + 0.001f64);
        let want = 0.9 - 0.1 / (1.0 - 0.81) * m / (v.sqrt() / (1.0 - 0.998001f64).sqrt() + 1e-8);
        assert!((p[0] as f64 - want).abs() < 1e-5, "{} vs {want}", p[0]);
    }
}
