//! Winograd's minimal filtering F(4×4, 3×3) (Lavin & Gray 2016, "Fast Algorithms for
//! Convolutional Neural Networks") for 3×3 stride-1 convolutions with padding 1 on channels-last
//! images: each 4×4 block of output pixels is Y = Aᵀ [Σ_c (G g_{o,c} Gᵀ) ⊙ (Bᵀ d_c B)] A, with
//! d_c the 6×6 input patch around it. Summed over the channels this is 36 products
//! V_ξ (tiles × cin) · U_ξ (cin × cout), one per position ξ of the 6×6 transformed patch: 36
//! multiplications per 4×4 outputs and channel pair instead of 144. The weight gradient is the
//! adjoint: dM = A dY Aᵀ per tile, dU_ξ = Σ_tiles V_ξᵀ dM_ξ, dg = Gᵀ dU G.
//!
//! Why: the U-Net's 3×3 products (forward, input and weight gradients) are most of a training
//! step, and their GEMMs already run near the FMA peak on one core of an Intel Xeon (AVX-512),
//! so fewer multiplications are the way to a faster step. F(2×2, 3×3) needs 16 per 2×2 outputs
//! (2.25× fewer than direct) and F(4×4, 3×3) 36 per 4×4 (4× fewer): 44% fewer products than
//! F(2×2, 3×3) at the U-Net's 28 and 7 pixel sides, 26% at 14 (padded to 16). Forward, weight
//! gradient and input gradient of one 8-image micro-batch, best of 30, F(2×2, 3×3) → F(4×4, 3×3):
//! 28² 32→32 2.06 → 1.51 ms, 14² 64→64 1.49 → 1.42 ms, 7² 64→64 0.56 → 0.43 ms; 1.23× over a
//! training step's convolutions.
//!
//! Rounding: Bᵀ and Aᵀ have integer entries (up to 5 and 8), G has ¼, ⅙, 1/12 and 1/24
//! (G g Gᵀ is computed in f64 and rounded once). The transforms scale values up by at most
//! ~100 before the products and the output transform sums them back, so the result is within
//! ~10⁻⁵ of the output's scale (the tests measure it) instead of a few ulp of the direct sum.
//!
//! The transforms are written once, on arrays of L lanes (channels), and compiled twice: 16
//! lanes for AVX-512 where the channel count is a multiple of 16, and 8 lanes (AVX2 where the
//! CPU has it) for the rest. Every lane does the same additions in the same order, so the two
//! give the same bits.

use super::conv::Dims;
use super::gemm::{Epilogue, PackedB, matmul};
use super::simd_dispatch;

/// `[e(0), e(1), …]`: an array of the expression `$e` at each listed index `$i`, written out
/// (`array::map` and `array::from_fn` with closures were left as calls and copies, and a
/// zeroed array filled in a loop kept its `memset`).
macro_rules! per_index {
    ($i:ident in [$($n:literal),*] => $e:expr) => {
        [$({
            let $i = $n;
            $e
        }),*]
    };
}

/// Output pixels along a tile's side.
const TILE: usize = 4;
/// Input pixels along a patch's side (TILE + 2).
const SIDE: usize = 6;
/// Positions of the transformed 6×6 patch.
const XI: usize = SIDE * SIDE;
/// Bytes of one block's transformed inputs and products together, kept within L2.
const BLOCK_BYTES: usize = 1 << 20;

/// G of F(4×4, 3×3): the kernel transform U = G g Gᵀ (6 × 3).
const G: [[f64; 3]; SIDE] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// The 36 transformed kernels of a convolution from `cin` to `cout` channels: U_ξ = (G g Gᵀ)_ξ
/// as B (cin × cout), packed for [`matmul`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WinogradWeights {
    u: Vec<PackedB>,
}

/// Scratch of [`conv3x3`] and [`weight_grad`]: one block's transformed inputs V, products M and
/// output gradients dM.
#[derive(Default)]
pub struct WinogradScratch {
    v: super::simd::AlignedVec,
    m: super::simd::AlignedVec,
    dm: Vec<PackedB>,
}

impl WinogradWeights {
    /// Transforms and packs the kernels g_{o,c} = `kernel(o, c)` (3×3, row-major) of a
    /// convolution from `cin` to `cout` channels; `u` is scratch.
    pub fn pack(
        &mut self,
        cin: usize,
        cout: usize,
        kernel: impl Fn(usize, usize) -> [f32; 9],
        u: &mut Vec<f32>,
    ) {
        u.resize(XI * cin * cout, 0.0);
        let (mut taps, mut half) = (vec![0.0f64; 9 * cout], vec![0.0f64; 18 * cout]);
        for c in 0..cin {
            for o in 0..cout {
                for (t, &v) in kernel(o, c).iter().enumerate() {
                    taps[t * cout + o] = v as f64;
                }
            }
            transform_kernels(&taps, c, cin, &mut half, u);
        }
        self.u.resize_with(XI, PackedB::new);
        for (xi, p) in self.u.iter_mut().enumerate() {
            p.pack(&u[xi * cin * cout..(xi + 1) * cin * cout], cin, cout, false);
        }
    }
}

simd_dispatch! {
/// Input channel c of the 36 transformed kernels, for every output channel o at once:
/// u[(ξ·cin + c)·cout + o] = (G g_{o,c} Gᵀ)_ξ, from `taps` (row t: g_{o,c}[t] over o, cout =
/// taps.len() / 9 values). In f64 and rounded once; `half` (18·cout values) holds G g.
fn transform_kernels(taps: &[f64], c: usize, cin: usize, half: &mut [f64], u: &mut [f32]) {
    let cout = taps.len() / 9;
    for (i, g) in G.iter().enumerate() {
        for j in 0..3 {
            let r0 = &taps[j * cout..(j + 1) * cout];
            let r1 = &taps[(3 + j) * cout..(4 + j) * cout];
            let r2 = &taps[(6 + j) * cout..(7 + j) * cout];
            let h = &mut half[(i * 3 + j) * cout..(i * 3 + j + 1) * cout];
            for o in 0..cout {
                h[o] = g[0] * r0[o] + g[1] * r1[o] + g[2] * r2[o];
            }
        }
    }
    for i in 0..SIDE {
        let h0 = &half[i * 3 * cout..(i * 3 + 1) * cout];
        let h1 = &half[(i * 3 + 1) * cout..(i * 3 + 2) * cout];
        let h2 = &half[(i * 3 + 2) * cout..(i * 3 + 3) * cout];
        for (j, g) in G.iter().enumerate() {
            let at = ((i * SIDE + j) * cin + c) * cout;
            let dst = &mut u[at..at + cout];
            for o in 0..cout {
                dst[o] = (g[0] * h0[o] + g[1] * h1[o] + g[2] * h2[o]) as f32;
            }
        }
    }
}
}

simd_dispatch! {
/// Input channel c of the weight gradient, for every output channel o at once:
/// out[t·cout + o] = (Gᵀ dU_{c,o} G)_t (t = 3a + b over the 3×3 taps), the adjoint of
/// [`transform_kernels`], from du's 36 cin × cout matrices; `half` (18·cout values) holds
/// Gᵀ dU. In f32, as the products that made dU (in f64 it took 3% of a training step).
fn untransform_gradients(du: &[f32], c: usize, cin: usize, half: &mut [f32], out: &mut [f32]) {
    let cout = out.len() / 9;
    for a in 0..3 {
        let g = per_index!(i in [0, 1, 2, 3, 4, 5] => G[i][a] as f32);
        for j in 0..SIDE {
            let r = per_index!(i in [0, 1, 2, 3, 4, 5] => {
                let at = ((i * SIDE + j) * cin + c) * cout;
                &du[at..at + cout]
            });
            combine6(&mut half[(a * SIDE + j) * cout..(a * SIDE + j + 1) * cout], g, r);
        }
    }
    for a in 0..3 {
        let h = per_index!(j in [0, 1, 2, 3, 4, 5] => &half[(a * SIDE + j) * cout..(a * SIDE + j + 1) * cout]);
        for b in 0..3 {
            let g = per_index!(j in [0, 1, 2, 3, 4, 5] => G[j][b] as f32);
            combine6(&mut out[(a * 3 + b) * cout..(a * 3 + b + 1) * cout], g, h);
        }
    }
}
}

/// dst = Σ_k g_k r_k (k = 0..6, added in that order), element by element.
#[inline(always)]
fn combine6(dst: &mut [f32], g: [f32; SIDE], r: [&[f32]; SIDE]) {
    for (o, d) in dst.iter_mut().enumerate() {
        *d = g[0] * r[0][o]
            + g[1] * r[1][o]
            + g[2] * r[2][o]
            + g[3] * r[3][o]
            + g[4] * r[4][o]
            + g[5] * r[5][o];
    }
}

/// Tiles per block for `cin` input and `cout` output channels: as many as fit V and M in
/// [`BLOCK_BYTES`], between 24 and 192, a multiple of the GEMM's 6-row blocks.
fn block_tiles(cin: usize, cout: usize) -> usize {
    let per_tile = XI * (cin + cout) * 4;
    (BLOCK_BYTES / per_tile).clamp(24, 192) / 6 * 6
}

/// Tiles of the batch `d`: ⌈h/4⌉ × ⌈w/4⌉ per image.
fn tiles(d: Dims) -> usize {
    d.n * d.h.div_ceil(TILE) * d.w.div_ceil(TILE)
}

/// y (+)= the 3×3 stride-1 convolution (padding 1) of x (batch `d`, channels-last) with the
/// kernels of `u` (d.c → `cout` channels): y[p, o] = b_o + Σ_{tap, c} g_{o,c}[tap] x[p + tap, c].
/// With `add` the result is added to y and `bias` is not read; an empty `bias` is none.
#[allow(clippy::too_many_arguments)]
pub fn conv3x3(
    x: &[f32],
    d: Dims,
    cout: usize,
    u: &WinogradWeights,
    bias: &[f32],
    y: &mut [f32],
    add: bool,
    scratch: &mut WinogradScratch,
) {
    let cin = d.c;
    assert_eq!(u.u.len(), XI, "packed Winograd weights");
    assert!(
        u.u[0].k() == cin && u.u[0].n() == cout,
        "Winograd weights' shape"
    );
    assert!(x.len() >= d.len() && y.len() >= d.pixels() * cout);
    assert!(add || bias.is_empty() || bias.len() >= cout);
    let tiles = tiles(d);
    let block = block_tiles(cin, cout);
    scratch.v.resize(XI * block * cin);
    scratch.m.resize(XI * block * cout);
    for t0 in (0..tiles).step_by(block) {
        let t1 = (t0 + block).min(tiles);
        let count = t1 - t0;
        input_transform(x, d, t0, t1, &mut scratch.v);
        for (xi, b) in u.u.iter().enumerate() {
            matmul(
                count,
                cin,
                &scratch.v[xi * count * cin..(xi + 1) * count * cin],
                false,
                b,
                &mut scratch.m[xi * count * cout..(xi + 1) * count * cout],
                Epilogue::None,
            );
        }
        output_transform(&scratch.m, d, cout, t0, t1, bias, y, add);
    }
}

/// Adds the weight gradient of [`conv3x3`] for the output gradient `dy` (d.pixels() × cout) to
/// `gw` in PyTorch's (cout, cin, 3, 3) order: with dM = A dY Aᵀ per tile, dU_ξ = Σ_tiles
/// V_ξᵀ dM_ξ (36 products cin × tiles × cout) and dg = Gᵀ dU G. The tiles' products are summed
/// block by block in order into `du` (36·cin·cout values, scratch).
pub fn weight_grad(
    x: &[f32],
    d: Dims,
    dy: &[f32],
    cout: usize,
    gw: &mut [f32],
    du: &mut Vec<f32>,
    scratch: &mut WinogradScratch,
) {
    let cin = d.c;
    assert!(x.len() >= d.len() && dy.len() >= d.pixels() * cout && gw.len() >= cout * cin * 9);
    let tiles = tiles(d);
    let block = block_tiles(cin, cout);
    scratch.v.resize(XI * block * cin);
    scratch.dm.resize_with(XI, PackedB::new);
    du.resize(XI * cin * cout, 0.0);
    for (b, t0) in (0..tiles).step_by(block).enumerate() {
        let t1 = (t0 + block).min(tiles);
        let count = t1 - t0;
        input_transform(x, d, t0, t1, &mut scratch.v);
        gradient_transform(dy, d, cout, t0, t1, &mut scratch.dm);
        for (xi, dm) in scratch.dm.iter().enumerate() {
            matmul(
                cin,
                count,
                &scratch.v[xi * count * cin..(xi + 1) * count * cin],
                true,
                dm,
                &mut du[xi * cin * cout..(xi + 1) * cin * cout],
                if b == 0 {
                    Epilogue::None
                } else {
                    Epilogue::Add
                },
            );
        }
    }
    if tiles == 0 {
        return;
    }
    let (mut half, mut taps) = (vec![0.0f32; 18 * cout], vec![0.0f32; 9 * cout]);
    for c in 0..cin {
        untransform_gradients(du, c, cin, &mut half, &mut taps);
        for o in 0..cout {
            let g = &mut gw[(o * cin + c) * 9..(o * cin + c + 1) * 9];
            for (t, w) in g.iter_mut().enumerate() {
                *w += taps[t * cout + o];
            }
        }
    }
}

/// The tile `t` of the batch `d` (⌈h/4⌉ × ⌈w/4⌉ tiles per image): (image, top row, left column)
/// of its 4×4 output pixels.
#[inline(always)]
fn tile_origin(d: Dims, t: usize) -> (usize, usize, usize) {
    let (th, tw) = (d.h.div_ceil(TILE), d.w.div_ceil(TILE));
    let (img, rest) = (t / (th * tw), t % (th * tw));
    (img, TILE * (rest / tw), TILE * (rest % tw))
}

/// L channels of one pixel or patch position.
type Lanes<const L: usize> = [f32; L];

/// a + b, lane by lane.
#[inline(always)]
fn add<const L: usize>(a: Lanes<L>, b: Lanes<L>) -> Lanes<L> {
    let mut o = a;
    for (o, b) in o.iter_mut().zip(b) {
        *o += b;
    }
    o
}

/// a − b, lane by lane.
#[inline(always)]
fn sub<const L: usize>(a: Lanes<L>, b: Lanes<L>) -> Lanes<L> {
    let mut o = a;
    for (o, b) in o.iter_mut().zip(b) {
        *o -= b;
    }
    o
}

/// k·a, lane by lane.
#[inline(always)]
fn scale<const L: usize>(k: f32, a: Lanes<L>) -> Lanes<L> {
    let mut o = a;
    for o in o.iter_mut() {
        *o *= k;
    }
    o
}

/// Bᵀ d (6 values from 6) lane by lane, with Bᵀ = [[4, 0, −5, 0, 1, 0], [0, −4, −4, 1, 1, 0],
/// [0, 4, −4, −1, 1, 0], [0, −2, −1, 2, 1, 0], [0, 2, −1, −2, 1, 0], [0, 4, 0, −5, 0, 1]].
#[inline(always)]
fn input_1d<const L: usize>(d: &[Lanes<L>; SIDE]) -> [Lanes<L>; SIDE] {
    let [d0, d1, d2, d3, d4, d5] = *d;
    let (t1, t2) = (sub(d4, scale(4.0, d2)), sub(d3, scale(4.0, d1)));
    let (t3, t4) = (sub(d4, d2), scale(2.0, sub(d3, d1)));
    [
        add(sub(scale(4.0, d0), scale(5.0, d2)), d4),
        add(t1, t2),
        sub(t1, t2),
        add(t3, t4),
        sub(t3, t4),
        add(sub(scale(4.0, d1), scale(5.0, d3)), d5),
    ]
}

/// Aᵀ m (4 values from 6) lane by lane, with Aᵀ = [[1, 1, 1, 1, 1, 0], [0, 1, −1, 2, −2, 0],
/// [0, 1, 1, 4, 4, 0], [0, 1, −1, 8, −8, 1]].
#[inline(always)]
fn output_1d<const L: usize>(m: &[Lanes<L>; SIDE]) -> [Lanes<L>; TILE] {
    let [m0, m1, m2, m3, m4, m5] = *m;
    let (a, b) = (add(m1, m2), sub(m1, m2));
    let (c, e) = (add(m3, m4), sub(m3, m4));
    [
        add(add(m0, a), c),
        add(b, scale(2.0, e)),
        add(a, scale(4.0, c)),
        add(add(b, scale(8.0, e)), m5),
    ]
}

/// A y (6 values from 4) lane by lane, the adjoint of [`output_1d`]: A = (Aᵀ)ᵀ.
#[inline(always)]
fn gradient_1d<const L: usize>(y: &[Lanes<L>; TILE]) -> [Lanes<L>; SIDE] {
    let [y0, y1, y2, y3] = *y;
    let (e, od) = (add(y0, y2), add(y1, y3));
    let (e4, od4) = (add(y0, scale(4.0, y2)), add(scale(2.0, y1), scale(8.0, y3)));
    [y0, add(e, od), sub(e, od), add(e4, od4), sub(e4, od4), y3]
}

/// The `w` values at `p` (all L when `FULL`), zeros past them.
///
/// # Safety
/// `p` reaches L values when `FULL`, else `w` ≤ L.
#[inline(always)]
unsafe fn load<const L: usize, const FULL: bool>(p: *const f32, w: usize) -> Lanes<L> {
    // SAFETY: the function's contract.
    unsafe {
        if FULL {
            p.cast::<Lanes<L>>().read_unaligned()
        } else {
            let mut a = [0.0f32; L];
            for (l, v) in a.iter_mut().enumerate().take(w) {
                *v = *p.add(l);
            }
            a
        }
    }
}

/// Writes the first `w` of `a` (all L when `FULL`) to `p`.
///
/// # Safety
/// `p` reaches L values when `FULL`, else `w` ≤ L.
#[inline(always)]
unsafe fn store<const L: usize, const FULL: bool>(p: *mut f32, a: &Lanes<L>, w: usize) {
    // SAFETY: the function's contract.
    unsafe {
        if FULL {
            p.cast::<Lanes<L>>().write_unaligned(*a)
        } else {
            for (l, &v) in a.iter().enumerate().take(w) {
                *p.add(l) = v;
            }
        }
    }
}

/// Whether the transforms of `channels` channels run 16 lanes wide on AVX-512: the kernels use
/// AVX-512 and the channels fill whole 16-lane vectors.
#[cfg(target_arch = "x86_64")]
fn wide(channels: usize) -> bool {
    channels.is_multiple_of(16) && super::isa::isa() >= super::isa::Isa::Avx512
}

/// Defines the transform `$name`, which runs `$body::<16>` compiled for AVX-512 (`$wide`) when
/// [`wide`] holds for `$channels`, else `$body::<8>` (`$narrow`, compiled for AVX2 where the
/// CPU has it).
macro_rules! by_lanes {
    ($(#[$m:meta])* fn $name:ident, $narrow:ident, $wide:ident ($($arg:ident: $ty:ty),*) = $body:ident over $channels:expr) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if wide($channels) {
                // SAFETY: the CPU supports AVX-512F (isa() only picks what the CPU runs).
                unsafe { $wide($($arg),*) };
                return;
            }
            $narrow($($arg),*)
        }

        /// The 16-lane build.
        ///
        /// # Safety
        /// The CPU supports AVX-512F.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $wide($($arg: $ty),*) {
            $body::<16>($($arg),*)
        }

        simd_dispatch! {
        /// The 8-lane build.
        #[allow(clippy::too_many_arguments)]
        fn $narrow($($arg: $ty),*) {
            $body::<8>($($arg),*)
        }
        }
    };
}

by_lanes! {
/// Writes V_ξ = (Bᵀ d B)_ξ of tiles `t0..t1` of the batch `d` into `v` as 36 row-major
/// (t1 − t0) × d.c matrices, d being the tile's 6×6 patch of x (rows y0 − 1..y0 + 5, columns
/// x0 − 1..x0 + 5) with zeros outside the image. x is read in place (a zero-bordered copy of
/// every input cost 5% of a training step); a patch that crosses the border masks its missing
/// pixels to zero.
fn input_transform, input_transform8, input_transform16(x: &[f32], d: Dims, t0: usize, t1: usize, v: &mut [f32]) = input_body over d.c
}

/// [`input_transform`] L channels at a time.
#[inline(always)]
fn input_body<const L: usize>(x: &[f32], d: Dims, t0: usize, t1: usize, v: &mut [f32]) {
    let (cin, count) = (d.c, t1 - t0);
    let full = cin / L * L;
    let stride = count * cin;
    assert!(v.len() >= XI * stride, "V holds the block");
    let (xp, vp) = (x.as_ptr(), v.as_mut_ptr());
    // Inlined, so that it is compiled with the caller's target features (a closure is not).
    patches(
        d,
        t0,
        t1,
        #[inline(always)]
        |offsets, masks, border, row| {
            assert!(
                offsets.iter().all(|&o| o + cin <= x.len()),
                "patch inside x"
            );
            let at = row * cin;
            // SAFETY: offsets[k] + cin ≤ x.len() (asserted above) and
            // xi·stride + at + cin ≤ 36·stride ≤ v.len() for a row < count.
            unsafe {
                for c in (0..full).step_by(L) {
                    if border {
                        input_tile::<L, true, true>(xp, offsets, masks, c, L, vp, stride, at);
                    } else {
                        input_tile::<L, false, true>(xp, offsets, masks, c, L, vp, stride, at);
                    }
                }
                if full < cin {
                    input_tile::<L, true, false>(
                        xp,
                        offsets,
                        masks,
                        full,
                        cin - full,
                        vp,
                        stride,
                        at,
                    );
                }
            }
        },
    );
}

/// Bᵀ d B of channels c..c + w of one patch (the pixels at x + offsets[k], ANDed bitwise with
/// `masks[k]` when `BORDER`), written to v at ξ·stride + at + c: along the patch's rows, then its
/// columns. Masking makes a pixel outside the image an exact zero without a branch.
///
/// # Safety
/// x + offsets[k] + c reaches w values (L when `FULL`), and so does v + ξ·stride + at + c.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
#[allow(clippy::needless_range_loop)] // column j is read across the rows
unsafe fn input_tile<const L: usize, const BORDER: bool, const FULL: bool>(
    xp: *const f32,
    offsets: &[usize; XI],
    masks: &[u32; XI],
    c: usize,
    w: usize,
    vp: *mut f32,
    stride: usize,
    at: usize,
) {
    // rows[i][j] = (d B)_ij.
    let rows: [[Lanes<L>; SIDE]; SIDE] = per_index!(i in [0, 1, 2, 3, 4, 5] => {
        let p = per_index!(j in [0, 1, 2, 3, 4, 5] => {
            let k = i * SIDE + j;
            // SAFETY: the function's contract.
            let a = unsafe { load::<L, FULL>(xp.add(offsets[k] + c), w) };
            let mut a = a;
            if BORDER {
                for e in a.iter_mut() {
                    *e = f32::from_bits(e.to_bits() & masks[k]);
                }
            }
            a
        });
        input_1d(&p)
    });
    for j in 0..SIDE {
        let col = per_index!(i in [0, 1, 2, 3, 4, 5] => rows[i][j]);
        for (i, o) in input_1d(&col).iter().enumerate() {
            // SAFETY: the function's contract.
            unsafe { store::<L, FULL>(vp.add((i * SIDE + j) * stride + at + c), o, w) };
        }
    }
}

/// Calls `each(offsets, masks, border, row)` for tiles `t0..t1` of the batch `d`: the offsets in
/// x of the 36 pixels of the tile's 6×6 patch, and for a patch that crosses the image's border
/// (`border`) a mask per pixel, all ones inside the image and 0 outside (where the offset is the
/// tile's own top-left pixel, a valid one).
#[inline(always)]
fn patches(
    d: Dims,
    t0: usize,
    t1: usize,
    mut each: impl FnMut(&[usize; XI], &[u32; XI], bool, usize),
) {
    let cin = d.c;
    let mut step = [0usize; XI];
    for (k, s) in step.iter_mut().enumerate() {
        *s = ((k / SIDE) * d.w + k % SIDE) * cin;
    }
    for t in t0..t1 {
        let (img, y0, x0) = tile_origin(d, t);
        let row = t - t0;
        if y0 >= 1 && x0 >= 1 && y0 + TILE < d.h && x0 + TILE < d.w {
            let base = ((img * d.h + y0 - 1) * d.w + x0 - 1) * cin;
            let mut offsets = step;
            for o in offsets.iter_mut() {
                *o += base;
            }
            each(&offsets, &[!0; XI], false, row);
        } else {
            let mut masks = [0u32; XI];
            let mut offsets = [((img * d.h + y0) * d.w + x0) * cin; XI];
            for k in 0..XI {
                let (py, px) = (
                    (y0 + k / SIDE).wrapping_sub(1),
                    (x0 + k % SIDE).wrapping_sub(1),
                );
                if py < d.h && px < d.w {
                    masks[k] = !0;
                    offsets[k] = ((img * d.h + py) * d.w + px) * cin;
                }
            }
            each(&offsets, &masks, true, row);
        }
    }
}

by_lanes! {
/// y (+)= Aᵀ M A for tiles `t0..t1`, from the 36 row-major (t1 − t0) × cout products in `m`,
/// plus the bias unless `add` or it is empty; only pixels inside the image are written.
fn output_transform, output_transform8, output_transform16(m: &[f32], d: Dims, cout: usize, t0: usize, t1: usize, bias: &[f32], y: &mut [f32], add: bool) = output_body over cout
}

/// [`output_transform`] L channels at a time.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn output_body<const L: usize>(
    m: &[f32],
    d: Dims,
    cout: usize,
    t0: usize,
    t1: usize,
    bias: &[f32],
    y: &mut [f32],
    add: bool,
) {
    let count = t1 - t0;
    assert!(m.len() >= XI * count * cout && y.len() >= d.pixels() * cout);
    let with_bias = !add && !bias.is_empty();
    assert!(!with_bias || bias.len() >= cout);
    let full = cout / L * L;
    let (mp, yp) = (m.as_ptr(), y.as_mut_ptr());
    for t in t0..t1 {
        let tile = OutputTile {
            m: mp,
            count,
            row: t - t0,
            cout,
            bias: if with_bias { Some(bias) } else { None },
            add,
            d,
            origin: tile_origin(d, t),
            y: yp,
        };
        let mut c = 0;
        while c < cout {
            let w = (cout - c).min(L);
            // SAFETY: (ξ·count + row)·cout + c + w ≤ 36·count·cout ≤ m.len(); the pixels
            // written lie inside the image, p·cout + c + w ≤ d.pixels()·cout ≤ y.len(); the
            // bias has cout values.
            unsafe {
                if c < full {
                    tile.write::<L, true>(c, w);
                } else {
                    tile.write::<L, false>(c, w);
                }
            }
            c += w;
        }
    }
}

/// One tile of [`output_transform`]: its row of the block's `count`, the products M it reads
/// (at `m`, `cout` channels), the pixel its output starts at, (image, top row, left column), and
/// what its output does: added to y (`add`), or written plus the `bias`.
struct OutputTile<'a> {
    m: *const f32,
    count: usize,
    row: usize,
    cout: usize,
    bias: Option<&'a [f32]>,
    add: bool,
    d: Dims,
    origin: (usize, usize, usize),
    y: *mut f32,
}

impl OutputTile<'_> {
    /// Aᵀ M A of channels c..c + w (all L when `FULL`), along the rows of M then its columns,
    /// written into y's pixels of the tile that lie inside the image.
    ///
    /// # Safety
    /// As in [`output_body`].
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // column j is read across the rows
    unsafe fn write<const L: usize, const FULL: bool>(&self, c: usize, w: usize) {
        let Self {
            m: mp,
            count,
            row,
            cout,
            bias,
            add,
            d,
            origin: (img, y0, x0),
            y: yp,
        } = *self;
        // s[i][j] = (M A)_ij.
        let s: [[Lanes<L>; TILE]; SIDE] = per_index!(i in [0, 1, 2, 3, 4, 5] => {
            let r = per_index!(j in [0, 1, 2, 3, 4, 5] => {
                // SAFETY: the function's contract.
                unsafe { load::<L, FULL>(mp.add(((i * SIDE + j) * count + row) * cout + c), w) }
            });
            output_1d(&r)
        });
        let b = match bias {
            // SAFETY: c + w ≤ cout ≤ bias.len().
            Some(bias) => unsafe { load::<L, FULL>(bias.as_ptr().add(c), w) },
            None => [0.0; L],
        };
        for j in 0..TILE {
            let px = x0 + j;
            if px >= d.w {
                break;
            }
            let col = per_index!(i in [0, 1, 2, 3, 4, 5] => s[i][j]);
            for (i, o) in output_1d(&col).iter().enumerate() {
                let py = y0 + i;
                if py >= d.h {
                    break;
                }
                let at = ((img * d.h + py) * d.w + px) * cout + c;
                // SAFETY: a pixel inside the image (the function's contract).
                unsafe {
                    let dst = yp.add(at);
                    let mut v = *o;
                    if add {
                        let old = load::<L, FULL>(dst, w);
                        for l in 0..L {
                            v[l] += old[l];
                        }
                    } else if bias.is_some() {
                        for l in 0..L {
                            v[l] += b[l];
                        }
                    }
                    store::<L, FULL>(dst, &v, w);
                }
            }
        }
    }
}

by_lanes! {
/// Writes dM_ξ = (A dY Aᵀ)_ξ of tiles `t0..t1` of the output gradient `dy` (batch `d`, `cout`
/// channels) as 36 packed B operands ((t1 − t0) × cout); output pixels outside the image have
/// zero gradient.
fn gradient_transform, gradient_transform8, gradient_transform16(dy: &[f32], d: Dims, cout: usize, t0: usize, t1: usize, dm: &mut [PackedB]) = gradient_body over cout
}

/// [`gradient_transform`] L channels at a time.
#[inline(always)]
fn gradient_body<const L: usize>(
    dy: &[f32],
    d: Dims,
    cout: usize,
    t0: usize,
    t1: usize,
    dm: &mut [PackedB],
) {
    let count = t1 - t0;
    assert!(dm.len() == XI && dy.len() >= d.pixels() * cout);
    let pad = cout.next_multiple_of(16) - cout;
    for p in dm.iter_mut() {
        p.shape_for(count, cout);
    }
    for t in t0..t1 {
        let (img, y0, x0) = tile_origin(d, t);
        let row = t - t0;
        let mut c = 0;
        while c < cout {
            let w = (cout - c).min(L);
            // dY's 4×4 pixels, zeros outside the image.
            let p: [[Lanes<L>; TILE]; TILE] = per_index!(i in [0, 1, 2, 3] => {
                per_index!(j in [0, 1, 2, 3] => {
                    let (py, px) = (y0 + i, x0 + j);
                    let at = ((img * d.h + py) * d.w + px) * cout + c;
                    // SAFETY: a pixel inside the image: at + w ≤ d.pixels()·cout ≤ dy.len().
                    unsafe {
                        if py >= d.h || px >= d.w {
                            [0.0; L]
                        } else if w == L {
                            load::<L, true>(dy.as_ptr().add(at), w)
                        } else {
                            load::<L, false>(dy.as_ptr().add(at), w)
                        }
                    }
                })
            });
            // cols[j][i] = (A dY)_ij.
            let cols = per_index!(j in [0, 1, 2, 3] => gradient_1d(&per_index!(i in [0, 1, 2, 3] => p[i][j])));
            for i in 0..SIDE {
                let out = gradient_1d(&per_index!(j in [0, 1, 2, 3] => cols[j][i]));
                for (j, o) in out.iter().enumerate() {
                    let p = &mut dm[i * SIDE + j];
                    if L == 16 && w == L {
                        // A whole 64-byte-aligned panel row (c is a multiple of 16).
                        p.row_mut(row, c).copy_from_slice(o);
                    } else {
                        p.put(row, c, &o[..w]);
                    }
                }
            }
            c += w;
        }
        if pad > 0 {
            for p in dm.iter_mut() {
                p.put_zeros(row, cout, pad);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct sum in f64.
    fn direct(x: &[f32], d: Dims, cout: usize, w: &[f32], bias: &[f32]) -> Vec<f64> {
        let cin = d.c;
        let mut y = vec![0.0f64; d.pixels() * cout];
        for img in 0..d.n {
            for py in 0..d.h {
                for px in 0..d.w {
                    let p = (img * d.h + py) * d.w + px;
                    for o in 0..cout {
                        let mut s = bias[o] as f64;
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (py + ky, px + kx);
                                if iy == 0 || ix == 0 || iy > d.h || ix > d.w {
                                    continue;
                                }
                                let q = (img * d.h + iy - 1) * d.w + ix - 1;
                                for c in 0..cin {
                                    s += w[(o * cin + c) * 9 + ky * 3 + kx] as f64
                                        * x[q * cin + c] as f64;
                                }
                            }
                        }
                        y[p * cout + o] = s;
                    }
                }
            }
        }
        y
    }

    /// The 16-lane AVX-512 transforms give the same bits as the 8-lane ones (on a CPU with
    /// AVX-512F; elsewhere there is nothing to compare), on odd and even sides, images that
    /// split across blocks, and zeros of either sign in the output gradient.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn wide_transforms_match_the_8_lane_ones() {
        if super::super::isa::Isa::detected() < super::super::isa::Isa::Avx512 {
            return;
        }
        let mut rng = 7u64;
        let mut next = || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((rng >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        for &(n, h, w, c) in &[(2, 7, 7, 16), (1, 6, 5, 32), (3, 14, 14, 48), (1, 1, 1, 16)] {
            let d = Dims { n, h, w, c };
            let tiles = tiles(d);
            let mut x: Vec<f32> = (0..d.len()).map(|_| next()).collect();
            x[0] = -0.0;
            x[1] = 0.0;
            for (t0, t1) in [(0, tiles), (tiles / 3, tiles)] {
                let count = t1 - t0;
                // Input transform.
                let mut v8 = vec![f32::NAN; XI * count * c];
                let mut v16 = v8.clone();
                input_transform8(&x, d, t0, t1, &mut v8);
                // SAFETY: the CPU has AVX-512F (checked above).
                unsafe { input_transform16(&x, d, t0, t1, &mut v16) };
                assert!(v8.iter().zip(&v16).all(|(a, b)| a.to_bits() == b.to_bits()));
                // Output transform: plain, with a bias, and added.
                let m: Vec<f32> = (0..XI * count * c).map(|_| next()).collect();
                let bias: Vec<f32> = (0..c).map(|_| next()).collect();
                for (b, add) in [(&[][..], false), (&bias[..], false), (&bias[..], true)] {
                    let start: Vec<f32> = (0..d.pixels() * c).map(|_| next()).collect();
                    let (mut y8, mut y16) = (start.clone(), start);
                    output_transform8(&m, d, c, t0, t1, b, &mut y8, add);
                    // SAFETY: as above.
                    unsafe { output_transform16(&m, d, c, t0, t1, b, &mut y16, add) };
                    assert!(y8.iter().zip(&y16).all(|(a, b)| a.to_bits() == b.to_bits()));
                }
                // Output-gradient transform.
                let (mut g8, mut g16) = (vec![PackedB::new(); XI], vec![PackedB::new(); XI]);
                gradient_transform8(&x, d, c, t0, t1, &mut g8);
                // SAFETY: as above.
                unsafe { gradient_transform16(&x, d, c, t0, t1, &mut g16) };
                for (a, b) in g8.iter().zip(&g16) {
                    assert!(a.bits() == b.bits(), "{n}×{h}×{w}×{c}, tiles {t0}..{t1}");
                }
            }
        }
    }

    /// Winograd against the direct sum on odd and even sides, channel counts that are and are
    /// not multiples of 8, blocks that split an image and scratch reused across shapes: within
    /// 2·10⁻⁵ of the output's scale and 10⁻⁵ of the weight gradient's (F(4×4, 3×3) measured up
    /// to 6·10⁻⁶ and 3·10⁻⁶ on these shapes, the direct f32 sum ~10⁻⁷; a wrong transform entry
    /// is off by O(1)), and `add` adds the same values.
    #[test]
    fn matches_the_direct_convolution() {
        let mut rng = 1u64;
        let mut next = || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((rng >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        // One scratch for every shape: stale values of a larger one must not leak.
        let mut scratch = WinogradScratch::default();
        for &(n, h, w, cin, cout) in &[
            (2, 7, 5, 8, 16),
            (1, 6, 6, 12, 20),
            (3, 14, 14, 32, 64),
            (1, 1, 1, 8, 8),
            (2, 28, 28, 3, 5),
        ] {
            let d = Dims { n, h, w, c: cin };
            let x: Vec<f32> = (0..d.len()).map(|_| next()).collect();
            let wt: Vec<f32> = (0..cout * cin * 9).map(|_| next()).collect();
            let bias: Vec<f32> = (0..cout).map(|_| next()).collect();
            let mut u = WinogradWeights::default();
            u.pack(
                cin,
                cout,
                |o, c| std::array::from_fn(|t| wt[(o * cin + c) * 9 + t]),
                &mut Vec::new(),
            );
            let mut y = vec![f32::NAN; d.pixels() * cout];
            conv3x3(&x, d, cout, &u, &bias, &mut y, false, &mut scratch);
            let want = direct(&x, d, cout, &wt, &bias);
            let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            for (a, b) in y.iter().zip(&want) {
                assert!(
                    (*a as f64 - b).abs() <= 2e-5 * scale,
                    "{a} vs {b} ({n}×{h}×{w}, {cin} → {cout})"
                );
            }
            // The weight gradient of L = Σ y·r for a random r: Σ_p r[p, o] x[p + tap, c].
            let r: Vec<f32> = (0..d.pixels() * cout).map(|_| next()).collect();
            let mut gw = vec![0.5f32; cout * cin * 9];
            let mut du = Vec::new();
            weight_grad(&x, d, &r, cout, &mut gw, &mut du, &mut scratch);
            let mut want_gw = vec![0.0f64; gw.len()];
            for img in 0..n {
                for py in 0..h {
                    for px in 0..w {
                        let p = (img * h + py) * w + px;
                        for t in 0..9 {
                            let (iy, ix) = (py + t / 3, px + t % 3);
                            if iy == 0 || ix == 0 || iy > h || ix > w {
                                continue;
                            }
                            let q = (img * h + iy - 1) * w + ix - 1;
                            for o in 0..cout {
                                for c in 0..cin {
                                    want_gw[(o * cin + c) * 9 + t] +=
                                        r[p * cout + o] as f64 * x[q * cin + c] as f64;
                                }
                            }
                        }
                    }
                }
            }
            let gscale = want_gw.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            for (a, b) in gw.iter().zip(&want_gw) {
                assert!(
                    (*a as f64 - 0.5 - b).abs() <= 1e-5 * gscale.max(1.0),
                    "weight gradient {a} − 0.5 vs {b} ({n}×{h}×{w}, {cin} → {cout})"
                );
            }
            let mut twice = y.clone();
            conv3x3(&x, d, cout, &u, &bias, &mut twice, true, &mut scratch);
            for ((t, a), b) in twice.iter().zip(&y).zip(&bias.repeat(d.pixels())) {
                assert!((t - (2.0 * a - b)).abs() <= 1e-5 * scale as f32);
            }
        }
    }
}
