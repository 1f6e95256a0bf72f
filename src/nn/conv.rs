//! The layers of a convolutional network on images stored channels-last: a batch of `n` images
//! of h × w pixels with c channels is n·h·w rows of c values (image, then y, then x). Each
//! layer has a forward pass and a backward pass that adds its parameter gradients to a buffer.
//!
//! - [`Conv2d`]: 3×3 (padding 1, stride 1 or 2) or 1×1 convolutions as GEMMs ([`matmul`]) over
//!   an im2col matrix built a block of output pixels at a time, bias fused into the product;
//!   weights in PyTorch's (out, in, ky, kx) order, repacked as B once per parameter update.
//! - [`GroupNorm`] followed by SiLU (PyTorch's `GroupNorm` then `F.silu`), with f64 sums.
//! - nearest-neighbour ×2 upsampling, channel concatenation and a per-image channel bias.

use super::gemm::{Epilogue, PackedB, matmul};
use super::simd::exp_f32;

/// Output pixels per im2col block: the block's columns (up to 512 × 9·c values) stay in L2
/// while the GEMM reads them.
const BLOCK: usize = 512;

/// Size of a batch of images: `n` images of `h` × `w` pixels with `c` channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    /// Images.
    pub n: usize,
    /// Rows of pixels.
    pub h: usize,
    /// Columns of pixels.
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl Dims {
    /// Pixels of the batch (n·h·w).
    pub fn pixels(&self) -> usize {
        self.n * self.h * self.w
    }

    /// Values of the batch (n·h·w·c).
    pub fn len(&self) -> usize {
        self.pixels() * self.c
    }

    /// Whether the batch holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same images with `c` channels.
    pub fn with_c(&self, c: usize) -> Dims {
        Dims { c, ..*self }
    }
}

/// A 2-D convolution with a `k` × `k` kernel (k = 1 or 3; padding (k − 1)/2) and stride 1 or 2,
/// mapping `cin` to `cout` channels: y[p, o] = b_o + Σ_{tap, c} W[o, c, tap] x[p + tap, c].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel side (1 or 3).
    pub k: usize,
    /// Stride (1 or 2).
    pub stride: usize,
}

/// A convolution's weights packed for its products: B = W as (taps·cin) × cout for the forward
/// pass, and Wᵀ for the input gradient.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PackedConv {
    forward: PackedB,
    backward: PackedB,
}

/// Scratch of a convolution: the im2col block, its gradient and the packed output gradient.
#[derive(Default)]
pub struct ConvScratch {
    col: Vec<f32>,
    dcol: Vec<f32>,
    dy: PackedB,
    dw: Vec<f32>,
}

impl Conv2d {
    /// A k × k convolution from `cin` to `cout` channels with stride 1.
    pub fn new(cin: usize, cout: usize, k: usize) -> Self {
        Conv2d {
            cin,
            cout,
            k,
            stride: 1,
        }
    }

    /// Number of weights (cout·cin·k²) followed by cout biases.
    pub fn params(&self) -> usize {
        self.weights() + self.cout
    }

    /// Number of weights, cout·cin·k².
    pub fn weights(&self) -> usize {
        self.cout * self.cin * self.k * self.k
    }

    fn taps(&self) -> usize {
        self.k * self.k
    }

    /// The output size of an input of size `d`: ⌊(side + 2p − k)/stride⌋ + 1 per side.
    pub fn out_dims(&self, d: Dims) -> Dims {
        let pad = (self.k - 1) / 2;
        let side = |s: usize| (s + 2 * pad - self.k) / self.stride + 1;
        Dims {
            n: d.n,
            h: side(d.h),
            w: side(d.w),
            c: self.cout,
        }
    }

    /// Packs the weights `w` (PyTorch's (cout, cin, k, k) order) for [`Conv2d::forward`] and,
    /// with `backward`, for the input gradient of [`Conv2d::backward`].
    pub fn pack(&self, w: &[f32], packed: &mut PackedConv, backward: bool, scratch: &mut Vec<f32>) {
        let (taps, cin, cout) = (self.taps(), self.cin, self.cout);
        scratch.resize(taps * cin * cout, 0.0);
        // B[(tap·cin + c), o] = W[o, c, tap]
        for o in 0..cout {
            for c in 0..cin {
                for t in 0..taps {
                    scratch[(t * cin + c) * cout + o] = w[(o * cin + c) * taps + t];
                }
            }
        }
        packed.forward.pack(scratch, taps * cin, cout, false);
        if backward {
            packed.backward.pack(scratch, cout, taps * cin, true);
        }
    }

    /// Writes the im2col rows of output pixels `p0..p1` of the batch `d` into `col`: row p holds
    /// x at the pixel under each tap, (tap, channel) order, zero outside the image.
    fn im2col(&self, x: &[f32], d: Dims, out: Dims, p0: usize, p1: usize, col: &mut Vec<f32>) {
        let (taps, cin, k, s) = (self.taps(), self.cin, self.k, self.stride);
        let pad = (k - 1) / 2;
        let width = taps * cin;
        col.resize((p1 - p0) * width, 0.0);
        let per_image = out.h * out.w;
        for (row, p) in col.chunks_exact_mut(width).zip(p0..p1) {
            let (img, rest) = (p / per_image, p % per_image);
            let (oy, ox) = (rest / out.w, rest % out.w);
            for ky in 0..k {
                let iy = (oy * s + ky) as isize - pad as isize;
                for kx in 0..k {
                    let ix = (ox * s + kx) as isize - pad as isize;
                    let dst = &mut row[(ky * k + kx) * cin..(ky * k + kx + 1) * cin];
                    if iy < 0 || ix < 0 || iy >= d.h as isize || ix >= d.w as isize {
                        dst.fill(0.0);
                    } else {
                        let q = (img * d.h + iy as usize) * d.w + ix as usize;
                        dst.copy_from_slice(&x[q * cin..(q + 1) * cin]);
                    }
                }
            }
        }
    }

    /// Adds the im2col gradient of output pixels `p0..p1` to the input gradient `dx`.
    fn col2im(&self, dcol: &[f32], d: Dims, out: Dims, p0: usize, p1: usize, dx: &mut [f32]) {
        let (taps, cin, k, s) = (self.taps(), self.cin, self.k, self.stride);
        let pad = (k - 1) / 2;
        let per_image = out.h * out.w;
        for (row, p) in dcol.chunks_exact(taps * cin).zip(p0..p1) {
            let (img, rest) = (p / per_image, p % per_image);
            let (oy, ox) = (rest / out.w, rest % out.w);
            for ky in 0..k {
                let iy = (oy * s + ky) as isize - pad as isize;
                if iy < 0 || iy >= d.h as isize {
                    continue;
                }
                for kx in 0..k {
                    let ix = (ox * s + kx) as isize - pad as isize;
                    if ix < 0 || ix >= d.w as isize {
                        continue;
                    }
                    let q = (img * d.h + iy as usize) * d.w + ix as usize;
                    let src = &row[(ky * k + kx) * cin..(ky * k + kx + 1) * cin];
                    for (o, &v) in dx[q * cin..(q + 1) * cin].iter_mut().zip(src) {
                        *o += v;
                    }
                }
            }
        }
    }

    /// Whether the im2col matrix is the input itself (a 1×1 convolution with stride 1).
    fn direct(&self) -> bool {
        self.k == 1 && self.stride == 1
    }

    /// y = conv(x) + b for the batch `d` (x: d.len() values); `y` receives out_dims(d).len()
    /// values, or, with `add`, has them added (no bias then: the caller's y already has one).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &[f32],
        d: Dims,
        packed: &PackedConv,
        bias: &[f32],
        y: &mut [f32],
        add: bool,
        scratch: &mut ConvScratch,
    ) {
        assert_eq!(d.c, self.cin, "input channels");
        let out = self.out_dims(d);
        let (width, cout) = (self.taps() * self.cin, self.cout);
        let epi = || {
            if add {
                Epilogue::Add
            } else {
                Epilogue::Bias(bias)
            }
        };
        if self.direct() {
            matmul(out.pixels(), width, x, false, &packed.forward, y, epi());
            return;
        }
        for p0 in (0..out.pixels()).step_by(BLOCK) {
            let p1 = (p0 + BLOCK).min(out.pixels());
            self.im2col(x, d, out, p0, p1, &mut scratch.col);
            let c = &mut y[p0 * cout..p1 * cout];
            matmul(
                p1 - p0,
                width,
                &scratch.col,
                false,
                &packed.forward,
                c,
                epi(),
            );
        }
    }

    /// The backward pass of [`Conv2d::forward`] for the output gradient `dy`: adds dL/dW (in
    /// PyTorch's order) and dL/db to `grads` (weights then biases) and, when `dx` is given, adds
    /// dL/dx to it.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        x: &[f32],
        d: Dims,
        dy: &[f32],
        packed: &PackedConv,
        grads: &mut [f32],
        dx: Option<&mut [f32]>,
        scratch: &mut ConvScratch,
    ) {
        let out = self.out_dims(d);
        let (taps, cin, cout) = (self.taps(), self.cin, self.cout);
        let width = taps * cin;
        let (gw, gb) = grads.split_at_mut(self.weights());
        for (o, g) in gb[..cout].iter_mut().enumerate() {
            let mut s = 0.0f64;
            for row in dy.chunks_exact(cout) {
                s += row[o] as f64;
            }
            *g += s as f32;
        }
        // dB = colᵀ·dy over blocks of output pixels, summed in block order into `dw`
        scratch.dw.clear();
        scratch.dw.resize(width * cout, 0.0);
        let mut dx = dx;
        for (b, p0) in (0..out.pixels()).step_by(BLOCK).enumerate() {
            let p1 = (p0 + BLOCK).min(out.pixels());
            let dyb = &dy[p0 * cout..p1 * cout];
            scratch.dy.pack(dyb, p1 - p0, cout, false);
            let col: &[f32] = if self.direct() {
                &x[p0 * cin..p1 * cin]
            } else {
                self.im2col(x, d, out, p0, p1, &mut scratch.col);
                &scratch.col
            };
            let epi = if b == 0 {
                Epilogue::None
            } else {
                Epilogue::Add
            };
            matmul(width, p1 - p0, col, true, &scratch.dy, &mut scratch.dw, epi);
            if let Some(dx) = dx.as_deref_mut() {
                if self.direct() {
                    let dxb = &mut dx[p0 * cin..p1 * cin];
                    matmul(
                        p1 - p0,
                        cout,
                        dyb,
                        false,
                        &packed.backward,
                        dxb,
                        Epilogue::Add,
                    );
                } else {
                    scratch.dcol.resize((p1 - p0) * width, 0.0);
                    let dcol = &mut scratch.dcol;
                    matmul(
                        p1 - p0,
                        cout,
                        dyb,
                        false,
                        &packed.backward,
                        dcol,
                        Epilogue::None,
                    );
                    self.col2im(&scratch.dcol, d, out, p0, p1, dx);
                }
            }
        }
        // back to PyTorch's order: W[o, c, tap] += dB[(tap·cin + c), o]
        for t in 0..taps {
            for c in 0..cin {
                let src = &scratch.dw[(t * cin + c) * cout..(t * cin + c + 1) * cout];
                for (o, &v) in src.iter().enumerate() {
                    gw[(o * cin + c) * taps + t] += v;
                }
            }
        }
    }
}

/// Group normalisation over `groups` groups of channels followed by SiLU, per image:
/// x̂ = (x − μ_g)/√(σ²_g + ε) over the group's pixels and channels (ε = 10⁻⁵, the biased
/// variance, as PyTorch's `GroupNorm`), y = γ_c x̂ + β_c, a = y·sigmoid(y).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupNorm {
    /// Channels.
    pub c: usize,
    /// Groups (dividing c).
    pub groups: usize,
}

/// PyTorch's `GroupNorm` ε.
const GN_EPS: f64 = 1e-5;

impl GroupNorm {
    /// Number of parameters: γ then β, c each.
    pub fn params(&self) -> usize {
        2 * self.c
    }

    /// Forward pass on the batch `d`: writes x̂ to `xhat`, 1/√(σ² + ε) per (image, group) to
    /// `rstd`, and a = silu(γ x̂ + β) to `a` (or y = γ x̂ + β without SiLU when `silu` is false).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &[f32],
        d: Dims,
        params: &[f32],
        xhat: &mut [f32],
        rstd: &mut [f32],
        a: &mut [f32],
        silu: bool,
    ) {
        let (c, g) = (self.c, self.groups);
        let cg = c / g;
        let hw = d.h * d.w;
        let (gamma, beta) = params.split_at(c);
        for img in 0..d.n {
            let xs = &x[img * hw * c..(img + 1) * hw * c];
            let mut sum = vec![0.0f64; g];
            let mut sq = vec![0.0f64; g];
            for px in xs.chunks_exact(c) {
                for (j, grp) in px.chunks_exact(cg).enumerate() {
                    for &v in grp {
                        sum[j] += v as f64;
                        sq[j] += v as f64 * v as f64;
                    }
                }
            }
            let count = (hw * cg) as f64;
            let stats: Vec<(f32, f32)> = (0..g)
                .map(|j| {
                    let mean = sum[j] / count;
                    let var = (sq[j] / count - mean * mean).max(0.0);
                    (mean as f32, (1.0 / (var + GN_EPS).sqrt()) as f32)
                })
                .collect();
            for (j, &(_, r)) in stats.iter().enumerate() {
                rstd[img * g + j] = r;
            }
            let base = img * hw * c;
            for (p, px) in xs.chunks_exact(c).enumerate() {
                let o = base + p * c;
                for ch in 0..c {
                    let (mean, r) = stats[ch / cg];
                    let xh = (px[ch] - mean) * r;
                    xhat[o + ch] = xh;
                    let y = gamma[ch] * xh + beta[ch];
                    a[o + ch] = if silu { y / (1.0 + exp_f32(-y)) } else { y };
                }
            }
        }
    }

    /// Backward pass of [`GroupNorm::forward`]: `da` is dL/da; adds dL/dγ, dL/dβ to `grads`
    /// and dL/dx to `dx`: with g = dL/dy·γ (g ← g·silu'(y) first when `silu`),
    /// dx = rstd·(g − mean(g) − x̂·mean(g x̂)) over each group.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        xhat: &[f32],
        rstd: &[f32],
        d: Dims,
        params: &[f32],
        da: &[f32],
        grads: &mut [f32],
        dx: &mut [f32],
        silu: bool,
    ) {
        let (c, g) = (self.c, self.groups);
        let cg = c / g;
        let hw = d.h * d.w;
        let (gamma, beta) = params.split_at(c);
        let (dgamma, dbeta) = grads.split_at_mut(c);
        let mut dg = vec![0.0f64; c];
        let mut db = vec![0.0f64; c];
        let mut dy = vec![0.0f32; hw * c];
        for img in 0..d.n {
            let base = img * hw * c;
            let (xh, das) = (&xhat[base..base + hw * c], &da[base..base + hw * c]);
            let mut m1 = vec![0.0f64; g];
            let mut m2 = vec![0.0f64; g];
            for ((dyv, (&x, &dav)), ch) in dy.iter_mut().zip(xh.iter().zip(das)).zip((0..c).cycle())
            {
                let dyy = if silu {
                    let y = gamma[ch] * x + beta[ch];
                    let s = 1.0 / (1.0 + exp_f32(-y));
                    dav * (s + y * s * (1.0 - s))
                } else {
                    dav
                };
                dg[ch] += (dyy * x) as f64;
                db[ch] += dyy as f64;
                let gv = dyy * gamma[ch];
                *dyv = gv;
                m1[ch / cg] += gv as f64;
                m2[ch / cg] += (gv * x) as f64;
            }
            let count = (hw * cg) as f64;
            let means: Vec<(f32, f32)> = (0..g)
                .map(|j| ((m1[j] / count) as f32, (m2[j] / count) as f32))
                .collect();
            for (((o, &gv), &x), ch) in dx[base..base + hw * c]
                .iter_mut()
                .zip(&dy)
                .zip(xh)
                .zip((0..c).cycle())
            {
                let j = ch / cg;
                let (a, b) = means[j];
                *o += rstd[img * g + j] * (gv - a - x * b);
            }
        }
        for ch in 0..c {
            dgamma[ch] += dg[ch] as f32;
            dbeta[ch] += db[ch] as f32;
        }
    }
}

/// Nearest-neighbour ×2 upsampling of the batch `d` into `y` (2h × 2w pixels).
pub fn upsample2(x: &[f32], d: Dims, y: &mut [f32]) {
    let (c, w2) = (d.c, 2 * d.w);
    for img in 0..d.n {
        for yy in 0..2 * d.h {
            for xx in 0..w2 {
                let q = (img * d.h + yy / 2) * d.w + xx / 2;
                let p = (img * 2 * d.h + yy) * w2 + xx;
                y[p * c..(p + 1) * c].copy_from_slice(&x[q * c..(q + 1) * c]);
            }
        }
    }
}

/// Backward pass of [`upsample2`]: dx (h × w) = the sum of dy over each 2 × 2 block.
pub fn upsample2_backward(dy: &[f32], d: Dims, dx: &mut [f32]) {
    let (c, w2) = (d.c, 2 * d.w);
    dx[..d.len()].fill(0.0);
    for img in 0..d.n {
        for yy in 0..2 * d.h {
            for xx in 0..w2 {
                let q = (img * d.h + yy / 2) * d.w + xx / 2;
                let p = (img * 2 * d.h + yy) * w2 + xx;
                for (o, &v) in dx[q * c..(q + 1) * c]
                    .iter_mut()
                    .zip(&dy[p * c..(p + 1) * c])
                {
                    *o += v;
                }
            }
        }
    }
}

/// Channel concatenation of two batches of the same pixels: y = [a, b] per pixel.
pub fn concat(a: &[f32], ca: usize, b: &[f32], cb: usize, y: &mut [f32]) {
    for ((row, ra), rb) in y
        .chunks_exact_mut(ca + cb)
        .zip(a.chunks_exact(ca))
        .zip(b.chunks_exact(cb))
    {
        row[..ca].copy_from_slice(ra);
        row[ca..].copy_from_slice(rb);
    }
}

/// Backward pass of [`concat`]: adds the first `ca` channels of dy to `da` and the rest to `db`.
pub fn concat_backward(dy: &[f32], ca: usize, da: &mut [f32], cb: usize, db: &mut [f32]) {
    for ((row, ra), rb) in dy
        .chunks_exact(ca + cb)
        .zip(da.chunks_exact_mut(ca))
        .zip(db.chunks_exact_mut(cb))
    {
        for (o, &v) in ra.iter_mut().zip(&row[..ca]) {
            *o += v;
        }
        for (o, &v) in rb.iter_mut().zip(&row[ca..]) {
            *o += v;
        }
    }
}

/// Adds a bias per image and channel: y[img, p, ch] += e[img, ch] (e: n × c).
pub fn add_image_bias(y: &mut [f32], d: Dims, e: &[f32]) {
    let per = d.h * d.w * d.c;
    for (img, ys) in y[..d.len()].chunks_exact_mut(per).enumerate() {
        let e = &e[img * d.c..(img + 1) * d.c];
        for row in ys.chunks_exact_mut(d.c) {
            for (v, &b) in row.iter_mut().zip(e) {
                *v += b;
            }
        }
    }
}

/// Backward pass of [`add_image_bias`]: de[img, ch] = Σ_p dy[img, p, ch].
pub fn image_bias_backward(dy: &[f32], d: Dims, de: &mut [f32]) {
    let per = d.h * d.w * d.c;
    for (img, ys) in dy[..d.len()].chunks_exact(per).enumerate() {
        let mut s = vec![0.0f64; d.c];
        for row in ys.chunks_exact(d.c) {
            for (a, &v) in s.iter_mut().zip(row) {
                *a += v as f64;
            }
        }
        for (o, v) in de[img * d.c..(img + 1) * d.c].iter_mut().zip(s) {
            *o = v as f32;
        }
    }
}
