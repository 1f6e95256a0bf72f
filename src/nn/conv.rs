//! The layers of a convolutional network on images stored channels-last: a batch of `n` images
//! of h × w pixels with c channels is n·h·w rows of c values (image, then y, then x). Each
//! layer has a forward pass and a backward pass that adds its parameter gradients to a buffer.
//!
//! - [`Conv2d`]: 3×3 (padding 1, stride 1 or 2) or 1×1 convolutions; weights in PyTorch's
//!   (out, in, ky, kx) order, repacked once per parameter update. 3×3 stride-1 convolutions run
//!   as Winograd's F(4×4, 3×3) ([`super::winograd`]), except those with ≤ 4 input or output
//!   channels (direct loops); the others as GEMMs ([`matmul`]) over an im2col matrix built a
//!   block of output pixels at a time, bias fused into the product.
//! - [`GroupNorm`] followed by SiLU (PyTorch's `GroupNorm` then `F.silu`), with sums in f64 (over f32 partial sums of 32 pixels).
//! - nearest-neighbour ×2 upsampling, channel concatenation and a per-image channel bias.

use super::gemm::{Epilogue, PackedB, matmul};
use super::simd::{copy, exp_f32};
use super::simd_dispatch;
use super::winograd::{WinogradScratch, WinogradWeights, conv3x3, weight_grad};

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

/// How a backward pass delivers an input gradient: added to what its buffer holds (the
/// activation feeds several layers and another one wrote first), or written over the buffer (the
/// first writer, so that no buffer needs zeroing first: the zero fills were 3.4% of a U-Net
/// training step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GradMode {
    /// dx += the gradient.
    Add,
    /// dx = the gradient.
    Overwrite,
}

/// A convolution's weights packed for its products: B = W as (taps·cin) × cout for the forward
/// pass, and Wᵀ for the input gradient.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PackedConv {
    forward: PackedB,
    backward: PackedB,
    /// For a [`Conv2d::thin`] convolution, its weights for the direct loops: B ((taps·cin) ×
    /// cout) row-major when cout ≥ cin, else Bᵀ.
    thin: Vec<f32>,
    /// For a [`Conv2d::winograd`] convolution, its kernels transformed for the forward pass
    /// and, flipped, for the input gradient.
    winograd: WinogradWeights,
    winograd_backward: WinogradWeights,
}

/// Scratch of a convolution: the im2col block (as rows and as packed panels), its gradient and the
/// weight gradient.
#[derive(Default)]
pub struct ConvScratch {
    col: Vec<f32>,
    dcol: Vec<f32>,
    colp: PackedB,
    dw: Vec<f32>,
    winograd: WinogradScratch,
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
        if self.thin() {
            packed.thin.resize(scratch.len(), 0.0);
            if cout >= cin {
                packed.thin.copy_from_slice(scratch);
            } else {
                let width = taps * cin;
                for (j, row) in scratch.chunks_exact(cout).enumerate() {
                    for (o, &v) in row.iter().enumerate() {
                        packed.thin[o * width + j] = v;
                    }
                }
            }
            return;
        }
        if self.winograd() {
            let kernel = |o: usize, c: usize| std::array::from_fn(|t| w[(o * cin + c) * 9 + t]);
            packed.winograd.pack(cin, cout, kernel, scratch);
            if backward {
                // dx is the convolution of dy with g'_{c,o}[tap] = g_{o,c}[8 − tap], from cout to cin.
                let flipped =
                    |c: usize, o: usize| std::array::from_fn(|t| w[(o * cin + c) * 9 + 8 - t]);
                packed.winograd_backward.pack(cout, cin, flipped, scratch);
            }
            return;
        }
        packed.forward.pack(scratch, taps * cin, cout, false);
        if backward {
            packed.backward.pack(scratch, cout, taps * cin, true);
        }
    }

    /// Whether the convolution runs as direct loops over the pixels instead of GEMMs: a 3×3
    /// stride-1 convolution with at most 4 input or 4 output channels (a network's first and
    /// last), whose products would have k = 9·cin or a single useful column in 16. On one core of
    /// an Intel Xeon (AVX-512) the U-Net's 1 → 32 and 32 → 1 convolutions of 16 images took
    /// 5.6 ms forward and backward as GEMMs (4–18 GFLOP/s), 4% of a training step.
    fn thin(&self) -> bool {
        self.k == 3 && self.stride == 1 && self.cin.min(self.cout) <= 4
    }

    /// Whether the convolution runs as Winograd's F(4×4, 3×3) ([`conv3x3`], [`weight_grad`]): a
    /// 3×3 stride-1 convolution that is not [`Conv2d::thin`]. Its forward pass, weight gradient
    /// and input gradient (the convolution of dy with the kernel flipped and its channels
    /// swapped) then take 36 multiplications per 4×4 output pixels and channel pair instead of
    /// 144, and no im2col matrix. On one core of an Intel Xeon (AVX-512) F(2×2, 3×3) made the
    /// U-Net's training step 16–20% faster than im2col GEMMs, and F(4×4, 3×3) the three
    /// Winograd passes of its convolutions 1.23× faster again (best of 30 per layer shape).
    fn winograd(&self) -> bool {
        self.k == 3 && self.stride == 1 && !self.thin()
    }

    /// y (+)= the GEMM of the im2col matrix of x (batch `d`) with the packed `b`, block by block
    /// of output pixels.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        x: &[f32],
        d: Dims,
        b: &PackedB,
        y: &mut [f32],
        bias: &[f32],
        add: bool,
        col: &mut Vec<f32>,
    ) {
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
            matmul(out.pixels(), width, x, false, b, y, epi());
            return;
        }
        for p0 in (0..out.pixels()).step_by(BLOCK) {
            let p1 = (p0 + BLOCK).min(out.pixels());
            self.im2col(x, d, out, p0, p1, col);
            matmul(
                p1 - p0,
                width,
                col,
                false,
                b,
                &mut y[p0 * cout..p1 * cout],
                epi(),
            );
        }
    }

    /// Writes the im2col rows of output pixels `p0..p1` of the batch `d` into `col`: row p holds
    /// x at the pixel under each tap, (tap, channel) order, zero outside the image.
    fn im2col(&self, x: &[f32], d: Dims, out: Dims, p0: usize, p1: usize, col: &mut Vec<f32>) {
        let (width, cin) = (self.taps() * self.cin, self.cin);
        col.resize((p1 - p0) * width, 0.0);
        self.for_each_tap(d, out, p0, p1, |row, tap, q| {
            let dst = &mut col[row * width + tap * cin..row * width + (tap + 1) * cin];
            match q {
                Some(q) => copy(dst, &x[q * cin..(q + 1) * cin]),
                None => dst.fill(0.0),
            }
        });
    }

    /// [`Conv2d::im2col`] written straight into the panels of a GEMM's B (p1 − p0 rows, taps·cin
    /// columns), for the weight gradient dWᵀ = dyᵀ·col.
    fn im2col_packed(
        &self,
        x: &[f32],
        d: Dims,
        out: Dims,
        p0: usize,
        p1: usize,
        col: &mut PackedB,
    ) {
        let (width, cin) = (self.taps() * self.cin, self.cin);
        col.shape_for(p1 - p0, width);
        let pad = width.next_multiple_of(16) - width;
        self.for_each_tap(d, out, p0, p1, |row, tap, q| {
            match q {
                Some(q) => col.put(row, tap * cin, &x[q * cin..(q + 1) * cin]),
                None => col.put_zeros(row, tap * cin, cin),
            }
            if pad > 0 && tap + 1 == self.taps() {
                col.put_zeros(row, width, pad);
            }
        });
    }

    /// The im2col row of output pixel `p` of the batch `d` (stride 1, so the output has d's size).
    #[inline(always)]
    fn col_row(&self, x: &[f32], d: Dims, p: usize, row: &mut [f32]) {
        let cin = self.cin;
        self.for_each_tap(d, d, p, p + 1, |_, tap, q| {
            let dst = &mut row[tap * cin..(tap + 1) * cin];
            match q {
                Some(q) => copy(dst, &x[q * cin..(q + 1) * cin]),
                None => dst.fill(0.0),
            }
        });
    }

    /// Calls `put(row, tap, the input pixel under the tap)` for each output pixel `p0..p1` (row
    /// p − p0) of the batch `d` and each tap in order, with `None` outside the image.
    #[inline(always)]
    fn for_each_tap(
        &self,
        d: Dims,
        out: Dims,
        p0: usize,
        p1: usize,
        mut put: impl FnMut(usize, usize, Option<usize>),
    ) {
        let (k, s) = (self.k, self.stride);
        let pad = (k - 1) / 2;
        let per_image = out.h * out.w;
        for (row, p) in (p0..p1).enumerate() {
            let (img, rest) = (p / per_image, p % per_image);
            let (oy, ox) = (rest / out.w, rest % out.w);
            for ky in 0..k {
                let iy = (oy * s + ky) as isize - pad as isize;
                for kx in 0..k {
                    let ix = (ox * s + kx) as isize - pad as isize;
                    if iy < 0 || ix < 0 || iy >= d.h as isize || ix >= d.w as isize {
                        put(row, ky * k + kx, None);
                    } else {
                        put(
                            row,
                            ky * k + kx,
                            Some((img * d.h + iy as usize) * d.w + ix as usize),
                        );
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
        if self.thin() {
            let y = &mut y[..d.pixels() * self.cout];
            thin_forward(self, x, d, &packed.thin, bias, y, add, &mut scratch.col);
            return;
        }
        if self.winograd() {
            let w = &mut scratch.winograd;
            conv3x3(x, d, self.cout, &packed.winograd, bias, y, add, w);
            return;
        }
        self.gemm(x, d, &packed.forward, y, bias, add, &mut scratch.col);
    }

    /// The backward pass of [`Conv2d::forward`] for the output gradient `dy`: adds dL/dW (in
    /// PyTorch's order) and dL/db to `grads` (weights then biases) and, when `dx` is given, adds
    /// dL/dx to it or writes it there (`mode`).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        x: &[f32],
        d: Dims,
        dy: &[f32],
        packed: &PackedConv,
        grads: &mut [f32],
        mut dx: Option<&mut [f32]>,
        mode: GradMode,
        scratch: &mut ConvScratch,
    ) {
        let out = self.out_dims(d);
        if let (GradMode::Overwrite, false, Some(dx)) = (mode, self.winograd(), dx.as_deref_mut()) {
            dx[..d.len()].fill(0.0);
        }
        let (taps, cin, cout) = (self.taps(), self.cin, self.cout);
        let width = taps * cin;
        let (gw, gb) = grads.split_at_mut(self.weights());
        let mut sums = vec![0.0f64; cout];
        column_sums(&dy[..out.pixels() * cout], &mut sums);
        for (g, s) in gb[..cout].iter_mut().zip(sums) {
            *g += s as f32;
        }
        if self.thin() {
            let dy = &dy[..out.pixels() * cout];
            for p0 in (0..out.pixels()).step_by(BLOCK) {
                let p1 = (p0 + BLOCK).min(out.pixels());
                scratch.dw.clear();
                scratch.dw.resize(width * cout, 0.0);
                let (dw, col, dcol) = (&mut scratch.dw, &mut scratch.col, &mut scratch.dcol);
                let dx = dx.as_deref_mut();
                thin_backward(self, x, d, dy, &packed.thin, p0, p1, dw, dx, col, dcol);
                self.add_weight_grad(&scratch.dw, cout >= cin, gw);
            }
            return;
        }
        if self.winograd() {
            let w = &mut scratch.winograd;
            weight_grad(x, d, dy, cout, gw, &mut scratch.dw, w);
            if let Some(dx) = dx {
                let add = mode == GradMode::Add;
                conv3x3(dy, out, cin, &packed.winograd_backward, &[], dx, add, w);
            }
            return;
        }
        // dBᵀ = dyᵀ·col over blocks of output pixels, summed in block order into `dw` (cout ×
        // width): A is the short dyᵀ, B the im2col block written as packed panels. As colᵀ·dy
        // (A the transposed im2col block, copied into the kernel's row blocks) the training
        // step spent 9% of its time in that copy.
        scratch.dw.clear();
        scratch.dw.resize(width * cout, 0.0);
        for (b, p0) in (0..out.pixels()).step_by(BLOCK).enumerate() {
            let p1 = (p0 + BLOCK).min(out.pixels());
            let dyb = &dy[p0 * cout..p1 * cout];
            if self.direct() {
                scratch
                    .colp
                    .pack(&x[p0 * cin..p1 * cin], p1 - p0, cin, false);
            } else {
                self.im2col_packed(x, d, out, p0, p1, &mut scratch.colp);
            }
            let epi = if b == 0 {
                Epilogue::None
            } else {
                Epilogue::Add
            };
            matmul(
                cout,
                p1 - p0,
                dyb,
                true,
                &scratch.colp,
                &mut scratch.dw,
                epi,
            );
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
        self.add_weight_grad(&scratch.dw, false, gw);
    }

    /// Adds the weight gradient dB (as B: (taps·cin) × cout, or with `!as_b` as Bᵀ) to `gw` in
    /// PyTorch's order: W[o, c, tap] += dB[(tap·cin + c), o].
    fn add_weight_grad(&self, db: &[f32], as_b: bool, gw: &mut [f32]) {
        let (taps, cin, cout) = (self.taps(), self.cin, self.cout);
        let width = taps * cin;
        if as_b {
            for (j, src) in db.chunks_exact(cout).enumerate() {
                let (t, c) = (j / cin, j % cin);
                for (o, &v) in src.iter().enumerate() {
                    gw[(o * cin + c) * taps + t] += v;
                }
            }
            return;
        }
        for (o, src) in db.chunks_exact(width).enumerate() {
            let dst = &mut gw[o * cin * taps..(o + 1) * cin * taps];
            for t in 0..taps {
                for (c, &v) in src[t * cin..(t + 1) * cin].iter().enumerate() {
                    dst[c * taps + t] += v;
                }
            }
        }
    }
}

/// Group normalisation over `groups` groups of channels followed by SiLU, per image:
/// x̂ = (x − μ_g)/√(σ²_g + ε) over the group's pixels and channels (ε = 10⁻⁵, the biased
/// variance, as PyTorch's `GroupNorm`), y = γ_c x̂ + β_c, a = y·sigmoid(y). The statistics are
/// summed per channel (f32 over 32 pixels, then f64), then per group; the elementwise passes are written per channel
/// (x̂ = r_c x + s_c with r_c, s_c from the channel's group) so that they vectorise.
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

    /// Values of the statistics a forward pass saves per image (μ and 1/σ per group).
    pub fn stats_len(&self) -> usize {
        2 * self.groups
    }

    /// Per channel of one image: (r_c, s_c) with x̂ = r_c x + s_c, from its saved statistics.
    fn channel_coefficients(&self, stats: &[f32], r: &mut [f32], s: &mut [f32]) {
        let cg = self.c / self.groups;
        for ch in 0..self.c {
            let (mean, rstd) = (stats[2 * (ch / cg)], stats[2 * (ch / cg) + 1]);
            r[ch] = rstd;
            s[ch] = -mean * rstd;
        }
    }

    /// Forward pass on the batch `d`: writes μ and 1/√(σ² + ε) per (image, group) to `stats`
    /// and a = silu(γ x̂ + β) to `a` (y = γ x̂ + β when `silu` is false). With `silu` and a
    /// `slope`, silu'(y) = σ(y)(1 + y(1 − σ(y))) goes there for [`GroupNorm::backward`].
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &[f32],
        d: Dims,
        params: &[f32],
        stats: &mut [f32],
        a: &mut [f32],
        silu: bool,
        mut slope: Option<&mut [f32]>,
    ) {
        let (c, g) = (self.c, self.groups);
        let cg = c / g;
        let hw = d.h * d.w;
        let (gamma, beta) = params.split_at(c);
        let (mut sum, mut sq) = (vec![0.0f64; c], vec![0.0f64; c]);
        let (mut r, mut s) = (vec![0.0f32; c], vec![0.0f32; c]);
        let (mut scale, mut shift) = (vec![0.0f32; c], vec![0.0f32; c]);
        for img in 0..d.n {
            let range = img * hw * c..(img + 1) * hw * c;
            sum.fill(0.0);
            sq.fill(0.0);
            channel_sums(&x[range.clone()], &mut sum, &mut sq);
            let count = (hw * cg) as f64;
            for j in 0..g {
                let s1: f64 = sum[j * cg..(j + 1) * cg].iter().sum();
                let s2: f64 = sq[j * cg..(j + 1) * cg].iter().sum();
                let mean = s1 / count;
                let var = (s2 / count - mean * mean).max(0.0);
                stats[(img * g + j) * 2] = mean as f32;
                stats[(img * g + j) * 2 + 1] = (1.0 / (var + GN_EPS).sqrt()) as f32;
            }
            self.channel_coefficients(&stats[img * 2 * g..(img + 1) * 2 * g], &mut r, &mut s);
            for ch in 0..c {
                scale[ch] = gamma[ch] * r[ch];
                shift[ch] = gamma[ch] * s[ch] + beta[ch];
            }
            match slope.as_deref_mut().filter(|_| silu) {
                Some(g) => affine_slope(
                    &x[range.clone()],
                    &scale,
                    &shift,
                    &mut a[range.clone()],
                    &mut g[range],
                ),
                None => affine(&x[range.clone()], &scale, &shift, &mut a[range], silu),
            }
        }
    }

    /// Backward pass of [`GroupNorm::forward`] (given its input `x` and `stats`): `da` is
    /// dL/da; adds dL/dγ, dL/dβ to `grads` and dL/dx to `dx`. With u = dL/dy (u = da·silu'(y)
    /// with the forward pass's `slope` after a SiLU, u = da without one), dx = r (γu − mean(γu)
    /// − x̂·mean(γu x̂)) over each group, written per channel as dx += A_c u + B_c x + C_c (or
    /// dx = …, with `mode`).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        x: &[f32],
        stats: &[f32],
        d: Dims,
        params: &[f32],
        da: &[f32],
        grads: &mut [f32],
        dx: &mut [f32],
        mode: GradMode,
        slope: Option<&[f32]>,
    ) {
        let (c, g) = (self.c, self.groups);
        let cg = c / g;
        let hw = d.h * d.w;
        let gamma = &params[..c];
        let (dgamma, dbeta) = grads.split_at_mut(c);
        let (mut dg, mut db) = (vec![0.0f64; c], vec![0.0f64; c]);
        let (mut s1, mut s2) = (vec![0.0f64; c], vec![0.0f64; c]);
        let (mut r, mut s) = (vec![0.0f32; c], vec![0.0f32; c]);
        let (mut ca, mut cb, mut cc) = (vec![0.0f32; c], vec![0.0f32; c], vec![0.0f32; c]);
        let mut u = vec![0.0f32; hw * c];
        for img in 0..d.n {
            let range = img * hw * c..(img + 1) * hw * c;
            self.channel_coefficients(&stats[img * 2 * g..(img + 1) * 2 * g], &mut r, &mut s);
            s1.fill(0.0);
            s2.fill(0.0);
            let slope = slope.map(|g| &g[range.clone()]);
            norm_grad(
                &x[range.clone()],
                &da[range.clone()],
                slope,
                &r,
                &s,
                &mut u,
                &mut s1,
                &mut s2,
            );
            let count = (hw * cg) as f64;
            for j in 0..g {
                let chans = j * cg..(j + 1) * cg;
                let m1 = chans
                    .clone()
                    .map(|ch| gamma[ch] as f64 * s1[ch])
                    .sum::<f64>()
                    / count;
                let m2 = chans
                    .clone()
                    .map(|ch| gamma[ch] as f64 * s2[ch])
                    .sum::<f64>()
                    / count;
                for ch in chans {
                    let (rc, sc) = (r[ch] as f64, s[ch] as f64);
                    ca[ch] = (rc * gamma[ch] as f64) as f32;
                    cb[ch] = (-rc * rc * m2) as f32;
                    cc[ch] = (-rc * m1 - rc * sc * m2) as f32;
                }
            }
            for ch in 0..c {
                db[ch] += s1[ch];
                dg[ch] += s2[ch];
            }
            let add = mode == GradMode::Add;
            norm_input_grad(&u, &x[range.clone()], &ca, &cb, &cc, &mut dx[range], add);
        }
        for ch in 0..c {
            dgamma[ch] += dg[ch] as f32;
            dbeta[ch] += db[ch] as f32;
        }
    }
}

/// Σ_j a_j b_j over 16 lane sums added in a fixed order.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let rest: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((l, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *l += x * y;
        }
    }
    lanes.iter().sum::<f32>() + rest
}

/// y += a·x.
#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

simd_dispatch! {
/// y (+)= the [`Conv2d::thin`] convolution of x (batch `d`) with the weights `w` of
/// [`PackedConv::thin`], pixel by pixel: each pixel's im2col row (in `row`) times B, as axpys
/// over the outputs when cout ≥ cin, else as one dot product per output.
#[allow(clippy::too_many_arguments)]
fn thin_forward(conv: &Conv2d, x: &[f32], d: Dims, w: &[f32], bias: &[f32], y: &mut [f32], add: bool, row: &mut Vec<f32>) {
    let (cin, cout, width) = (conv.cin, conv.cout, conv.taps() * conv.cin);
    row.resize(width, 0.0);
    for (p, yr) in y.chunks_exact_mut(cout).enumerate() {
        conv.col_row(x, d, p, row);
        if !add {
            copy(yr, &bias[..cout]);
        }
        if cout >= cin {
            for (&v, wr) in row.iter().zip(w.chunks_exact(cout)) {
                axpy(yr, v, wr);
            }
        } else {
            for (yo, wr) in yr.iter_mut().zip(w.chunks_exact(width)) {
                *yo += dot(row, wr);
            }
        }
    }
}
}

simd_dispatch! {
/// The backward pass of [`thin_forward`] over output pixels `p0..p1`: adds the weight
/// gradient of those pixels to `dw` (laid out as [`PackedConv::thin`]) and, when given, the
/// input gradient to `dx`; `row` and `drow` are scratch.
#[allow(clippy::too_many_arguments)]
fn thin_backward(conv: &Conv2d, x: &[f32], d: Dims, dy: &[f32], w: &[f32], p0: usize, p1: usize, dw: &mut [f32], dx: Option<&mut [f32]>, row: &mut Vec<f32>, drow: &mut Vec<f32>) {
    let (cin, cout, width) = (conv.cin, conv.cout, conv.taps() * conv.cin);
    row.resize(width, 0.0);
    drow.resize(width, 0.0);
    let mut dx = dx;
    for p in p0..p1 {
        conv.col_row(x, d, p, row);
        let dyr = &dy[p * cout..(p + 1) * cout];
        if cout >= cin {
            for (&v, dwr) in row.iter().zip(dw.chunks_exact_mut(cout)) {
                axpy(dwr, v, dyr);
            }
        } else {
            for (&g, dwr) in dyr.iter().zip(dw.chunks_exact_mut(width)) {
                axpy(dwr, g, row);
            }
        }
        let Some(dx) = dx.as_deref_mut() else { continue };
        if cout >= cin {
            for (dv, wr) in drow.iter_mut().zip(w.chunks_exact(cout)) {
                *dv = dot(dyr, wr);
            }
        } else {
            drow.fill(0.0);
            for (&g, wr) in dyr.iter().zip(w.chunks_exact(width)) {
                axpy(drow, g, wr);
            }
        }
        conv.for_each_tap(d, d, p, p + 1, |_, tap, q| {
            if let Some(q) = q {
                let src = &drow[tap * cin..(tap + 1) * cin];
                for (o, &v) in dx[q * cin..(q + 1) * cin].iter_mut().zip(src) {
                    *o += v;
                }
            }
        });
    }
}
}

/// Pixels summed in f32 before their partial sums are added to a statistic's f64 total: a
/// conversion to f64 per value halved the vector width and kept GroupNorm's backward pass at 9%
/// of a U-Net training step; f32 sums of 32 values lose at most ~32 ulp.
const PARTIAL_ROWS: usize = 32;

/// total += partial, channel by channel.
#[inline(always)]
fn fold(total: &mut [f64], partial: &[f32]) {
    for (t, &p) in total.iter_mut().zip(partial) {
        *t += p as f64;
    }
}

simd_dispatch! {
/// Adds Σ_p x[p, ch] over the pixels (rows of sum.len() channels) in f64.
fn column_sums(x: &[f32], sum: &mut [f64]) {
    for row in x.chunks_exact(sum.len()) {
        for (s, &v) in sum.iter_mut().zip(row) {
            *s += v as f64;
        }
    }
}
}

simd_dispatch! {
/// Adds Σ_p x[p, ch] and Σ_p x[p, ch]² over the pixels (rows of sum.len() channels) in f64.
fn channel_sums(x: &[f32], sum: &mut [f64], sq: &mut [f64]) {
    let c = sum.len();
    let (mut ps, mut pq) = (vec![0.0f32; c], vec![0.0f32; c]);
    for rows in x.chunks(c * PARTIAL_ROWS) {
        ps.fill(0.0);
        pq.fill(0.0);
        for row in rows.chunks_exact(c) {
            for ((s, q), &v) in ps.iter_mut().zip(pq.iter_mut()).zip(row) {
                *s += v;
                *q += v * v;
            }
        }
        fold(sum, &ps);
        fold(sq, &pq);
    }
}
}

simd_dispatch! {
/// a = silu(scale_c x + shift_c) (or the affine map alone), row by row of scale.len() channels.
fn affine(x: &[f32], scale: &[f32], shift: &[f32], a: &mut [f32], silu: bool) {
    let c = scale.len();
    for (row, out) in x.chunks_exact(c).zip(a.chunks_exact_mut(c)) {
        for (((o, &v), &k), &b) in out.iter_mut().zip(row).zip(scale).zip(shift) {
            let y = k * v + b;
            *o = if silu { y / (1.0 + exp_f32(-y)) } else { y };
        }
    }
}
}

simd_dispatch! {
/// a = silu(y) and slope = silu'(y) = σ(y)(1 + y(1 − σ(y))) for y = scale_c x + shift_c, row by
/// row of scale.len() channels.
fn affine_slope(x: &[f32], scale: &[f32], shift: &[f32], a: &mut [f32], slope: &mut [f32]) {
    let c = scale.len();
    let rows = x.chunks_exact(c).zip(a.chunks_exact_mut(c)).zip(slope.chunks_exact_mut(c));
    for ((row, out), g) in rows {
        for ((((o, gv), &v), &k), &b) in out.iter_mut().zip(g.iter_mut()).zip(row).zip(scale).zip(shift) {
            let y = k * v + b;
            let sg = 1.0 / (1.0 + exp_f32(-y));
            *o = y * sg;
            *gv = sg + y * sg * (1.0 - sg);
        }
    }
}
}

simd_dispatch! {
/// The first backward pass of GroupNorm (+ SiLU) over one image: u = da·slope (u = da without a
/// SiLU) with x̂ = r x + s; adds Σ u and Σ u x̂ per channel to s1 and s2.
#[allow(clippy::too_many_arguments)]
fn norm_grad(x: &[f32], da: &[f32], slope: Option<&[f32]>, r: &[f32], s: &[f32], u: &mut [f32], s1: &mut [f64], s2: &mut [f64]) {
    let c = r.len();
    let (mut p1, mut p2) = (vec![0.0f32; c], vec![0.0f32; c]);
    let block = c * PARTIAL_ROWS;
    for (start, (xs, us)) in (0..).step_by(block).zip(x.chunks(block).zip(u.chunks_mut(block))) {
        let das = &da[start..start + xs.len()];
        match slope {
            Some(g) => {
                for ((uv, &dv), &gv) in us.iter_mut().zip(das).zip(&g[start..start + xs.len()]) {
                    *uv = dv * gv;
                }
            }
            None => us.copy_from_slice(das),
        }
        p1.fill(0.0);
        p2.fill(0.0);
        for (row, urow) in xs.chunks_exact(c).zip(us.chunks_exact(c)) {
            for ch in 0..c {
                let xh = r[ch] * row[ch] + s[ch];
                p1[ch] += urow[ch];
                p2[ch] += urow[ch] * xh;
            }
        }
        fold(s1, &p1);
        fold(s2, &p2);
    }
}
}

simd_dispatch! {
/// dx += A_c u + B_c x + C_c (dx = … unless `add`), row by row of a.len() channels.
fn norm_input_grad(u: &[f32], x: &[f32], a: &[f32], b: &[f32], cc: &[f32], dx: &mut [f32], add: bool) {
    let c = a.len();
    for ((urow, xrow), drow) in u.chunks_exact(c).zip(x.chunks_exact(c)).zip(dx.chunks_exact_mut(c)) {
        if add {
            for ch in 0..c {
                drow[ch] += a[ch] * urow[ch] + b[ch] * xrow[ch] + cc[ch];
            }
        } else {
            for ch in 0..c {
                drow[ch] = a[ch] * urow[ch] + b[ch] * xrow[ch] + cc[ch];
            }
        }
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

/// Backward pass of [`upsample2`]: dx (h × w) += the sum of dy over each 2 × 2 block (dx = …
/// with `mode`); the four terms are summed first, in raster order.
pub fn upsample2_backward(dy: &[f32], d: Dims, dx: &mut [f32], mode: GradMode) {
    let (c, w2) = (d.c, 2 * d.w);
    for img in 0..d.n {
        for y in 0..d.h {
            let top = (img * 2 * d.h + 2 * y) * w2;
            for x in 0..d.w {
                let q = ((img * d.h + y) * d.w + x) * c;
                let at = |dp: usize| &dy[(top + dp + 2 * x) * c..(top + dp + 2 * x + 1) * c];
                let (a, b, e, f) = (at(0), at(1), at(w2), at(w2 + 1));
                let o = &mut dx[q..q + c];
                if mode == GradMode::Add {
                    for ch in 0..c {
                        o[ch] += ((a[ch] + b[ch]) + e[ch]) + f[ch];
                    }
                } else {
                    for ch in 0..c {
                        o[ch] = ((a[ch] + b[ch]) + e[ch]) + f[ch];
                    }
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

/// Backward pass of [`concat`]: the first `ca` channels of dy go to `da` and the rest to `db`,
/// each added or written as its mode says.
pub fn concat_backward(
    dy: &[f32],
    (ca, da, mode_a): (usize, &mut [f32], GradMode),
    (cb, db, mode_b): (usize, &mut [f32], GradMode),
) {
    for ((row, ra), rb) in dy
        .chunks_exact(ca + cb)
        .zip(da.chunks_exact_mut(ca))
        .zip(db.chunks_exact_mut(cb))
    {
        deliver(ra, &row[..ca], mode_a);
        deliver(rb, &row[ca..], mode_b);
    }
}

/// o += g, or o = g with [`GradMode::Overwrite`].
pub fn deliver(o: &mut [f32], g: &[f32], mode: GradMode) {
    match mode {
        GradMode::Add => {
            for (o, &v) in o.iter_mut().zip(g) {
                *o += v;
            }
        }
        GradMode::Overwrite => copy(&mut o[..g.len()], g),
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
