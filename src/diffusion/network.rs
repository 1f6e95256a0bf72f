//! A small MLP with SiLU activations, written for speed on a CPU: one flat parameter buffer,
//! preallocated workspaces, one GEMM per layer and direction, bias + SiLU fused into one pass that
//! stores sigmoid(z) and h = z·sigmoid(z) so that the backward pass needs no exp.
//!
//! Layer l maps `in_l` → `out_l`: Z = X W_l + b_l with W_l stored row-major (`in_l × out_l`), so
//! every product is a plain row-major GEMM: X·W forward, Xᵀ·dZ for dW and dZ·Wᵀ for dX (the
//! transposes are strides, never copies).

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

/// e^x in f32 to about 2 ulp for x ∈ [−87, 88] (clamped outside), written so that a loop of it
/// vectorises: round(x·log₂e) by the 1.5·2²³ trick and 2ⁿ by integer bit shifts (a float-to-int
/// `as` cast would block AVX2 vectorisation), then a degree-6 Taylor polynomial on
/// |r| ≤ ln2/2. std's exp is a libm call per element; this made the fused SiLU pass about 6×
/// faster on this workload.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5·2²³
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let bits = (t.to_bits() as i32)
        .wrapping_sub(0x4B40_0000)
        .wrapping_add(127)
        << 23;
    p * f32::from_bits(bits as u32)
}

/// matrixmultiply's sgemm: on this workload (2-core AMD EPYC, AVX2+FMA) it ran at ~64 GFLOP/s
/// and the `gemm` crate (faer's kernels) measured within 3% of it, so the smaller dependency stays.
/// C = α·A·B + β·C for row-major slices with explicit strides (A: m×k, B: k×n, C: m×n).
/// `a_t`/`b_t` read A or B transposed from their stored row-major matrices.
#[allow(clippy::too_many_arguments)]
#[inline]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    beta: f32,
    c: &mut [f32],
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    let (rsa, csa) = if a_t {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    let (rsb, csb) = if b_t {
        (1, k as isize)
    } else {
        (n as isize, 1)
    };
    // SAFETY: the asserts above guarantee every index the strides reach lies inside the slices,
    // and `c` does not alias `a` or `b` (it is borrowed mutably).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Defines `$name` that runs `$body` compiled for AVX2 when the CPU has it (checked at run time)
/// and for the baseline target otherwise. The default x86-64 target only has SSE2, which left the
/// SiLU pass at 4 lanes and ~20% of sampling time; with AVX2 the loops run 8 lanes wide. Rust
/// never contracts a·b + c into an FMA by itself, so both versions give the same bits.
macro_rules! simd_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn wide($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked just above).
                    unsafe { wide($($arg),*) };
                    return;
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use simd_dispatch;

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
    /// sigmoid(z_l) for every hidden layer.
    sig: Vec<Vec<f32>>,
    /// Network output, then dL/d(output).
    out: Vec<f32>,
    /// Gradient with respect to a layer's output (two, used alternately).
    grad_a: Vec<f32>,
    grad_b: Vec<f32>,
    /// Gradient of the loss with respect to every parameter.
    pub grads: Vec<f32>,
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
            sig: hidden.iter().map(|&w| vec![0.0; rows * w]).collect(),
            out: vec![0.0; rows * out_w],
            grad_a: vec![0.0; rows * shape.max_width()],
            grad_b: vec![0.0; rows * shape.max_width()],
            grads: vec![0.0; shape.params()],
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
}

simd_dispatch! {
/// Adds the bias to `z` (rows × width) and applies SiLU in place, storing sigmoid(z) in `sig`.
fn bias_silu_train(z: &mut [f32], sig: &mut [f32], bias: &[f32]) {
    let w = bias.len();
    for (zr, sr) in z.chunks_exact_mut(w).zip(sig.chunks_exact_mut(w)) {
        for ((zv, sv), &b) in zr.iter_mut().zip(sr.iter_mut()).zip(bias) {
            let v = *zv + b;
            let s = 1.0 / (1.0 + exp_f32(-v));
            *sv = s;
            *zv = v * s;
        }
    }
}
}

simd_dispatch! {
/// Adds the bias to `z` and applies SiLU in place (inference: nothing stored).
fn bias_silu(z: &mut [f32], bias: &[f32]) {
    let w = bias.len();
    for zr in z.chunks_exact_mut(w) {
        for (zv, &b) in zr.iter_mut().zip(bias) {
            let v = *zv + b;
            *zv = v / (1.0 + exp_f32(-v));
        }
    }
}
}

#[inline]
fn add_bias(z: &mut [f32], bias: &[f32]) {
    for zr in z.chunks_exact_mut(bias.len()) {
        for (zv, &b) in zr.iter_mut().zip(bias) {
            *zv += b;
        }
    }
}

/// Forward pass over `ws.input`, keeping what the backward pass needs; output in `ws.out`.
pub fn forward_train(shape: &MlpShape, params: &[f32], ws: &mut Workspace) {
    let rows = ws.rows;
    let layers = shape.layers();
    for l in 0..layers {
        let (i, o) = (shape.widths[l], shape.widths[l + 1]);
        let off = shape.weight_offset(l);
        let (w, b) = (
            &params[off..off + i * o],
            &params[off + i * o..off + (i + 1) * o],
        );
        let hidden = ws.h.len();
        let (before, rest) = ws.h.split_at_mut(l.min(hidden));
        let x: &[f32] = if l == 0 { &ws.input } else { &before[l - 1] };
        if l + 1 < layers {
            let z = &mut rest[0];
            gemm(rows, i, o, 1.0, x, false, w, false, 0.0, z);
            bias_silu_train(z, &mut ws.sig[l], b);
        } else {
            gemm(rows, i, o, 1.0, x, false, w, false, 0.0, &mut ws.out);
            add_bias(&mut ws.out, b);
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

/// Backward pass after [`forward_train`] and [`loss_grad`]: writes dL/dθ into `ws.grads`.
pub fn backward(shape: &MlpShape, params: &[f32], ws: &mut Workspace) {
    let rows = ws.rows;
    let layers = shape.layers();
    // dz holds dL/dZ_l of the current layer; it starts as the output gradient.
    let mut dz_is_out = true;
    for l in (0..layers).rev() {
        let (i, o) = (shape.widths[l], shape.widths[l + 1]);
        let off = shape.weight_offset(l);
        let x: &[f32] = if l == 0 { &ws.input } else { &ws.h[l - 1] };
        let dz: &[f32] = if dz_is_out { &ws.out } else { &ws.grad_a };
        let (gw, gb) = ws.grads[off..off + (i + 1) * o].split_at_mut(i * o);
        // dW = Xᵀ dZ.
        gemm(i, rows, o, 1.0, x, true, &dz[..rows * o], false, 0.0, gw);
        if dz_is_out {
            // db = column sums of dZ (hidden layers fuse this into the SiLU backward below).
            gb.fill(0.0);
            for r in dz[..rows * o].chunks_exact(o) {
                for (g, &v) in gb.iter_mut().zip(r) {
                    *g += v;
                }
            }
        }
        if l == 0 {
            break;
        }
        // dH = dZ Wᵀ, then dZ_{l−1} = dH ⊙ silu'(z) with silu' = s + h(1 − s); db_{l−1} alongside.
        let w = &params[off..off + i * o];
        gemm(
            rows,
            o,
            i,
            1.0,
            &dz[..rows * o],
            false,
            w,
            true,
            0.0,
            &mut ws.grad_b,
        );
        let (h, s) = (&ws.h[l - 1], &ws.sig[l - 1]);
        let boff = shape.weight_offset(l - 1) + shape.widths[l - 1] * i;
        let gb_prev = &mut ws.grads[boff..boff + i];
        silu_backward(&mut ws.grad_b[..rows * i], h, s, gb_prev);
        std::mem::swap(&mut ws.grad_a, &mut ws.grad_b);
        dz_is_out = false;
    }
}

simd_dispatch! {
/// dZ = dH ⊙ silu'(z) in place, with silu'(z) = s + h(1 − s) from the stored s = sigmoid(z) and
/// h = z·s; `db` receives the column sums of dZ.
fn silu_backward(dh: &mut [f32], h: &[f32], s: &[f32], db: &mut [f32]) {
    let w = db.len();
    db.fill(0.0);
    for ((dr, hr), sr) in dh.chunks_exact_mut(w).zip(h.chunks_exact(w)).zip(s.chunks_exact(w)) {
        for (((d, &hv), &sv), g) in dr.iter_mut().zip(hr).zip(sr).zip(db.iter_mut()) {
            let v = *d * (sv + hv * (1.0 - sv));
            *d = v;
            *g += v;
        }
    }
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
/// e·W₀[d:] + b₀, so the GEMM has k = d instead of d + |e|. Writes rows × output into `out`.
pub fn forward_shared_tail(
    shape: &MlpShape,
    params: &[f32],
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
        let dst: &mut [f32] = if last {
            &mut out[..rows * o]
        } else {
            &mut b[..rows * o]
        };
        if l == 0 {
            gemm(rows, d, o, 1.0, x, false, &params[..d * o], false, 0.0, dst);
        } else {
            gemm(
                rows,
                i,
                o,
                1.0,
                &a[..rows * i],
                false,
                &params[off..off + i * o],
                false,
                0.0,
                dst,
            );
        }
        let bias = if l == 0 {
            &bias0[..]
        } else {
            &params[off + i * o..off + (i + 1) * o]
        };
        if last {
            add_bias(dst, bias);
        } else {
            bias_silu(dst, bias);
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
    pub fn step(&mut self, params: &mut [f32], grads: &[&[f32]], scale: f32, lr: f32) {
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let bc1 = 1.0 - (b1 as f64).powi(self.step as i32);
        let bc2 = 1.0 - (b2 as f64).powi(self.step as i32);
        let step_size = (lr as f64 / bc1) as f32;
        let inv_sqrt_bc2 = (1.0 / bc2.sqrt()) as f32;
        let eps = self.eps;
        let update = |p: &mut f32, m: &mut f32, v: &mut f32, g: f32| {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= step_size * *m / (v.sqrt() * inv_sqrt_bc2 + eps);
        };
        match grads {
            [g0] => {
                for (((p, m), v), &g) in
                    params.iter_mut().zip(&mut self.m).zip(&mut self.v).zip(*g0)
                {
                    update(p, m, v, scale * g);
                }
            }
            [g0, g1] => {
                for ((((p, m), v), &a), &b) in params
                    .iter_mut()
                    .zip(&mut self.m)
                    .zip(&mut self.v)
                    .zip(*g0)
                    .zip(*g1)
                {
                    update(p, m, v, scale * (a + b));
                }
            }
            _ => {
                for (j, ((p, m), v)) in params
                    .iter_mut()
                    .zip(&mut self.m)
                    .zip(&mut self.v)
                    .enumerate()
                {
                    let g: f32 = grads.iter().map(|g| g[j]).sum();
                    update(p, m, v, scale * g);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Role, stream};

    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp_f32(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
    }

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
            forward_train(&shape, p, ws);
            ws.out
                .iter()
                .zip(&ws.target)
                .map(|(&o, &t)| ((o - t) as f64).powi(2))
                .sum::<f64>()
                * scale as f64
        };
        forward_train(&shape, &params, &mut ws);
        loss_grad(&mut ws, scale);
        backward(&shape, &params, &mut ws);
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
        forward_train(&shape, &params, &mut ws);
        let mut out = vec![0.0; rows * 2];
        let mut bufs = InferenceBuffers::new(&shape, rows);
        forward_shared_tail(&shape, &params, &x, 2, &tail, &mut out, &mut bufs);
        for (a, b) in out.iter().zip(ws.output()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
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
