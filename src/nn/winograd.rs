//! Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray 2016, "Fast Algorithms for
//! Convolutional Neural Networks") for 3×3 stride-1 convolutions with padding 1 on channels-last
//! images: each 2×2 block of output pixels is Y = Aᵀ [Σ_c (G g_{o,c} Gᵀ) ⊙ (Bᵀ d_c B)] A, with
//! d_c the 4×4 input patch around it. Summed over the channels this is 16 products
//! V_ξ (tiles × cin) · U_ξ (cin × cout), one per position ξ of the 4×4 transformed patch: 16
//! multiplications per 2×2 outputs and channel pair instead of 36. The weight gradient is the
//! adjoint: dM = A dY Aᵀ per tile, dU_ξ = Σ_tiles V_ξᵀ dM_ξ, dg = Gᵀ dU G.
//!
//! Why: the U-Net's 3×3 products (forward and input gradient) ran at 125–160 GFLOP/s as im2col
//! GEMMs on one core of an Intel Xeon (AVX-512; the FMA peak is 238), so fewer multiplications
//! were the way to a faster training step. F(2×2, 3×3) keeps the transforms' constants at 0, ±1
//! and ±½, so its rounding error stays within a few ulp of the direct sum's.

use super::conv::Dims;
use super::gemm::{Epilogue, PackedB, matmul};
use super::simd_dispatch;

/// Positions of the transformed 4×4 patch.
const XI: usize = 16;
/// Bytes of one block's transformed inputs and products together, kept within L2.
const BLOCK_BYTES: usize = 1 << 20;

/// The 16 transformed kernels of a convolution from `cin` to `cout` channels: U_ξ = (G g Gᵀ)_ξ
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
    rows: Vec<f32>,
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
        for o in 0..cout {
            for c in 0..cin {
                let t = transform_kernel(&kernel(o, c));
                for (xi, &v) in t.iter().enumerate() {
                    u[(xi * cin + c) * cout + o] = v;
                }
            }
        }
        self.u.resize_with(XI, PackedB::new);
        for (xi, p) in self.u.iter_mut().enumerate() {
            p.pack(&u[xi * cin * cout..(xi + 1) * cin * cout], cin, cout, false);
        }
    }
}

/// G g Gᵀ (4×4, row-major) of a 3×3 kernel g, with G = [[1, 0, 0], [½, ½, ½], [½, −½, ½],
/// [0, 0, 1]]; computed in f64 and rounded once.
fn transform_kernel(g: &[f32; 9]) -> [f32; 16] {
    let g = g.map(f64::from);
    let col = |a: f64, b: f64, c: f64| [a, (a + b + c) / 2.0, (a - b + c) / 2.0, c];
    // G g: 4 rows of 3.
    let mut gg = [[0.0f64; 3]; 4];
    for j in 0..3 {
        let r = col(g[j], g[3 + j], g[6 + j]);
        for i in 0..4 {
            gg[i][j] = r[i];
        }
    }
    let mut out = [0.0f32; 16];
    for i in 0..4 {
        let r = col(gg[i][0], gg[i][1], gg[i][2]);
        for j in 0..4 {
            out[i * 4 + j] = r[j] as f32;
        }
    }
    out
}

/// Tiles per block for `cin` input and `cout` output channels: as many as fit V and M in
/// [`BLOCK_BYTES`], between 24 and 192, a multiple of the GEMM's 6-row blocks.
fn block_tiles(cin: usize, cout: usize) -> usize {
    let per_tile = XI * (cin + cout) * 4;
    (BLOCK_BYTES / per_tile).clamp(24, 192) / 6 * 6
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
    let (th, tw) = (d.h.div_ceil(2), d.w.div_ceil(2));
    let tiles = d.n * th * tw;
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
        output_transform(&scratch.m, d, cout, t0, t1, bias, y, add, &mut scratch.rows);
    }
}

/// Adds the weight gradient of [`conv3x3`] for the output gradient `dy` (d.pixels() × cout) to
/// `gw` in PyTorch's (cout, cin, 3, 3) order: with dM = A dY Aᵀ per tile, dU_ξ = Σ_tiles
/// V_ξᵀ dM_ξ (16 products cin × tiles × cout) and dg = Gᵀ dU G. The tiles' products are summed
/// block by block in order into `du` (16·cin·cout values, scratch).
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
    let (th, tw) = (d.h.div_ceil(2), d.w.div_ceil(2));
    let tiles = d.n * th * tw;
    let block = block_tiles(cin, cout);
    scratch.v.resize(XI * block * cin);
    scratch.dm.resize_with(XI, PackedB::new);
    du.resize(XI * cin * cout, 0.0);
    for (b, t0) in (0..tiles).step_by(block).enumerate() {
        let t1 = (t0 + block).min(tiles);
        let count = t1 - t0;
        input_transform(x, d, t0, t1, &mut scratch.v);
        gradient_transform(dy, d, cout, t0, t1, &mut scratch.dm, &mut scratch.rows);
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
    for o in 0..cout {
        for c in 0..cin {
            let mut t = [0.0f32; 16];
            for (xi, v) in t.iter_mut().enumerate() {
                *v = du[(xi * cin + c) * cout + o];
            }
            let g = untransform_gradient(t);
            for (w, v) in gw[(o * cin + c) * 9..(o * cin + c + 1) * 9]
                .iter_mut()
                .zip(g)
            {
                *w += v;
            }
        }
    }
}

/// Gᵀ dU G (3×3, row-major) of a 4×4 gradient dU, with Gᵀ = [[1, ½, ½, 0], [0, ½, −½, 0],
/// [0, ½, ½, 1]]: the adjoint of [`transform_kernel`]; in f64, rounded once.
fn untransform_gradient(du: [f32; 16]) -> [f32; 9] {
    let du = du.map(f64::from);
    let col =
        |a: f64, b: f64, c: f64, e: f64| [a + (b + c) / 2.0, (b - c) / 2.0, (b + c) / 2.0 + e];
    let mut half = [[0.0f64; 4]; 3];
    for j in 0..4 {
        let r = col(du[j], du[4 + j], du[8 + j], du[12 + j]);
        for i in 0..3 {
            half[i][j] = r[i];
        }
    }
    let mut out = [0.0f32; 9];
    for i in 0..3 {
        let r = col(half[i][0], half[i][1], half[i][2], half[i][3]);
        for j in 0..3 {
            out[i * 3 + j] = r[j] as f32;
        }
    }
    out
}

/// The tile `t` of the batch `d` (⌈h/2⌉ × ⌈w/2⌉ tiles per image): (image, top row, left column)
/// of its 2×2 output pixels.
#[inline(always)]
fn tile_origin(d: Dims, t: usize) -> (usize, usize, usize) {
    let (th, tw) = (d.h.div_ceil(2), d.w.div_ceil(2));
    let (img, rest) = (t / (th * tw), t % (th * tw));
    (img, 2 * (rest / tw), 2 * (rest % tw))
}

/// o = a + b, channel by channel.
#[inline(always)]
fn add(o: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
        *o = a + b;
    }
}

/// o = a − b, channel by channel.
#[inline(always)]
fn sub(o: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
        *o = a - b;
    }
}

/// Channels transformed together, one 8-lane vector per patch position, held in registers.
const LANES: usize = 8;

/// One vector per position of a 4×4 patch.
type Patch = [[f32; LANES]; 16];

/// Bᵀ p B of a patch in place: Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]
/// along rows, then along columns.
#[inline(always)]
fn input_patch(p: &mut Patch) {
    for (stride, step) in [(1, 4), (4, 1)] {
        for line in 0..4 {
            let at = |k: usize| line * step + k * stride;
            let (a, b, c, e) = (p[at(0)], p[at(1)], p[at(2)], p[at(3)]);
            for l in 0..LANES {
                p[at(0)][l] = a[l] - c[l];
                p[at(1)][l] = b[l] + c[l];
                p[at(2)][l] = c[l] - b[l];
                p[at(3)][l] = b[l] - e[l];
            }
        }
    }
}

/// Writes V_ξ of one tile (row `row` of `count`) into `v`, its 4×4 patch being the d.c channels
/// at x[offsets[k]..] ANDed bitwise with `masks[k]`: all ones for a pixel inside the image, 0
/// for one outside (whose offset is any valid one), so that missing pixels are exact zeros
/// without a branch. `BORDER = false` skips the masks. The 8-channel vectors are read and
/// written through raw pointers: with a bounds check per load and store, and the patch's
/// border handled by branches, this transform took 15.8% of a U-Net training step on one Xeon
/// core.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn transform_tile<const BORDER: bool>(
    x: &[f32],
    cin: usize,
    offsets: &[usize; 16],
    masks: &[u32; 16],
    row: usize,
    count: usize,
    v: &mut [f32],
) {
    let full = cin / LANES * LANES;
    let stride = count * cin;
    assert!(
        offsets.iter().all(|&o| o + cin <= x.len()),
        "patch inside x"
    );
    assert!(15 * stride + (row + 1) * cin <= v.len(), "tile inside v");
    let (xp, vp) = (x.as_ptr(), v.as_mut_ptr());
    let masked = |k: usize, a: [f32; LANES]| {
        if BORDER {
            a.map(|e| f32::from_bits(e.to_bits() & masks[k]))
        } else {
            a
        }
    };
    for c in (0..full).step_by(LANES) {
        // A loop rather than `array::from_fn`, which was left as a call (1.5% of a step).
        let mut p: Patch = [[0.0; LANES]; 16];
        for (k, pk) in p.iter_mut().enumerate() {
            // SAFETY: offsets[k] + c + LANES ≤ offsets[k] + cin ≤ x.len() (asserted above).
            *pk = masked(k, unsafe {
                xp.add(offsets[k] + c)
                    .cast::<[f32; LANES]>()
                    .read_unaligned()
            });
        }
        input_patch(&mut p);
        for (xi, pk) in p.iter().enumerate() {
            // SAFETY: xi·stride + row·cin + c + LANES ≤ 15·stride + (row + 1)·cin ≤ v.len().
            unsafe {
                vp.add(xi * stride + row * cin + c)
                    .cast::<[f32; LANES]>()
                    .write_unaligned(*pk)
            };
        }
    }
    if full < cin {
        let mut p: Patch = [[0.0; LANES]; 16];
        for (k, pk) in p.iter_mut().enumerate() {
            for (e, &b) in pk.iter_mut().zip(&x[offsets[k] + full..offsets[k] + cin]) {
                *e = b;
            }
            *pk = masked(k, *pk);
        }
        input_patch(&mut p);
        for (xi, pk) in p.iter_mut().enumerate() {
            let at = xi * stride + row * cin;
            for (a, &b) in v[at + full..at + cin].iter_mut().zip(pk.iter()) {
                *a = b;
            }
        }
    }
}

/// Whether the transforms of `channels` channels run on [`avx512`]'s 16-lane code: the kernels
/// use AVX-512 and the channels fill whole 16-lane vectors.
#[cfg(target_arch = "x86_64")]
fn wide(channels: usize) -> bool {
    channels.is_multiple_of(16) && super::isa::isa() >= super::isa::Isa::Avx512
}

/// Writes V_ξ = (Bᵀ d B)_ξ of tiles `t0..t1` of the batch `d` into `v` as 16 row-major
/// (t1 − t0) × d.c matrices, d being the tile's 4×4 patch of x (rows y0 − 1..y0 + 3, columns
/// x0 − 1..x0 + 3) with zeros outside the image. x is read in place (a zero-bordered copy of
/// every input cost 5% of a training step); a patch that crosses the border masks its missing
/// pixels to zero. On AVX-512 with a multiple of 16 channels the patches are transformed 16
/// channels at a time in 16-lane registers ([`avx512::transform_tile`]), else 8 at a time.
fn input_transform(x: &[f32], d: Dims, t0: usize, t1: usize, v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if wide(d.c) {
        // SAFETY: the CPU supports AVX-512F (isa() only picks what the CPU runs).
        unsafe { avx512::input_transform(x, d, t0, t1, v) };
        return;
    }
    input_transform8(x, d, t0, t1, v);
}

/// Calls `each(offsets, masks, border, row)` for tiles `t0..t1` of the batch `d`: the offsets in
/// x of the 16 pixels of the tile's 4×4 patch, and for a patch that crosses the image's border
/// (`border`) a mask per pixel, all ones inside the image and 0 outside (where the offset is the
/// tile's own top-left pixel, a valid one).
#[inline(always)]
fn patches(
    d: Dims,
    t0: usize,
    t1: usize,
    mut each: impl FnMut(&[usize; 16], &[u32; 16], bool, usize),
) {
    let cin = d.c;
    let mut step = [0usize; 16];
    for (k, s) in step.iter_mut().enumerate() {
        *s = ((k / 4) * d.w + k % 4) * cin;
    }
    for t in t0..t1 {
        let (img, y0, x0) = tile_origin(d, t);
        let row = t - t0;
        if y0 >= 1 && x0 >= 1 && y0 + 2 < d.h && x0 + 2 < d.w {
            let base = ((img * d.h + y0 - 1) * d.w + x0 - 1) * cin;
            let mut offsets = step;
            for o in offsets.iter_mut() {
                *o += base;
            }
            each(&offsets, &[!0; 16], false, row);
        } else {
            let mut masks = [0u32; 16];
            let mut offsets = [((img * d.h + y0) * d.w + x0) * cin; 16];
            for k in 0..16 {
                let (py, px) = ((y0 + k / 4).wrapping_sub(1), (x0 + k % 4).wrapping_sub(1));
                if py < d.h && px < d.w {
                    masks[k] = !0;
                    offsets[k] = ((img * d.h + py) * d.w + px) * cin;
                }
            }
            each(&offsets, &masks, true, row);
        }
    }
}

simd_dispatch! {
/// [`input_transform`] 8 channels at a time.
fn input_transform8(x: &[f32], d: Dims, t0: usize, t1: usize, v: &mut [f32]) {
    let (cin, count) = (d.c, t1 - t0);
    patches(d, t0, t1, |offsets, masks, border, row| {
        if border {
            transform_tile::<true>(x, cin, offsets, masks, row, count, v);
        } else {
            transform_tile::<false>(x, cin, offsets, masks, row, count, v);
        }
    });
}
}

/// The Winograd transforms in 16-lane AVX-512 registers, for channel counts that are multiples
/// of 16. They compute the same additions and subtractions in the same order as the 8-lane
/// versions, so the bits are the same.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Dims, PackedB, XI, patches, tile_origin};
    use std::arch::x86_64::*;

    /// [`super::input_transform`] for d.c a multiple of 16.
    ///
    /// # Safety
    /// The CPU supports AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn input_transform(x: &[f32], d: Dims, t0: usize, t1: usize, v: &mut [f32]) {
        let (cin, count) = (d.c, t1 - t0);
        assert!(cin.is_multiple_of(16), "channels in 16-lane vectors");
        patches(d, t0, t1, |offsets, masks, border, row| {
            // SAFETY: AVX-512F (the function's contract).
            unsafe {
                if border {
                    transform_tile::<true>(x, cin, offsets, masks, row, count, v)
                } else {
                    transform_tile::<false>(x, cin, offsets, masks, row, count, v)
                }
            }
        });
    }

    /// [`super::output_transform`] for `cout` a multiple of 16: per 16 channels of a tile, the
    /// row sums s_i0 = (m_i0 + m_i1) + m_i2, s_i1 = (m_i1 − m_i2) − m_i3, then the same along
    /// the columns, as the 8-lane version.
    ///
    /// # Safety
    /// The CPU supports AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn output_transform(
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
        assert!(cout.is_multiple_of(16), "channels in 16-lane vectors");
        assert!(m.len() >= XI * count * cout && y.len() >= d.pixels() * cout);
        let with_bias = !add && !bias.is_empty();
        assert!(!with_bias || bias.len() >= cout);
        let (mp, yp) = (m.as_ptr(), y.as_mut_ptr());
        for t in t0..t1 {
            let (img, y0, x0) = tile_origin(d, t);
            let row = t - t0;
            for c in (0..cout).step_by(16) {
                // SAFETY: (xi·count + row)·cout + c + 16 ≤ 16·count·cout ≤ m.len().
                let mv =
                    |xi: usize| unsafe { _mm512_loadu_ps(mp.add((xi * count + row) * cout + c)) };
                // s[j][i]: Aᵀ along row i of M, output column j.
                let rows = [0, 1, 2, 3].map(|i| {
                    let (a, b, cc, e) = (mv(i * 4), mv(i * 4 + 1), mv(i * 4 + 2), mv(i * 4 + 3));
                    [
                        _mm512_add_ps(_mm512_add_ps(a, b), cc),
                        _mm512_sub_ps(_mm512_sub_ps(b, cc), e),
                    ]
                });
                let s = [0, 1].map(|j| rows.map(|r| r[j]));
                let b = if with_bias {
                    // SAFETY: c + 16 ≤ cout ≤ bias.len().
                    unsafe { _mm512_loadu_ps(bias.as_ptr().add(c)) }
                } else {
                    _mm512_setzero_ps()
                };
                for (j, &[a, bb, cc, e]) in s.iter().enumerate() {
                    let outs = [
                        _mm512_add_ps(_mm512_add_ps(a, bb), cc),
                        _mm512_sub_ps(_mm512_sub_ps(bb, cc), e),
                    ];
                    for (i, &o) in outs.iter().enumerate() {
                        let (py, px) = (y0 + i, x0 + j);
                        if py >= d.h || px >= d.w {
                            continue;
                        }
                        let at = ((img * d.h + py) * d.w + px) * cout + c;
                        // SAFETY: a pixel inside the image: at + 16 ≤ d.pixels()·cout ≤ y.len().
                        unsafe {
                            let dst = yp.add(at);
                            let v = if add {
                                _mm512_add_ps(_mm512_loadu_ps(dst), o)
                            } else if with_bias {
                                _mm512_add_ps(o, b)
                            } else {
                                o
                            };
                            _mm512_storeu_ps(dst, v);
                        }
                    }
                }
            }
        }
    }

    /// [`super::gradient_transform`] for `cout` a multiple of 16: per 16 channels of a tile,
    /// A along the columns of dY, (y₀, y₀ + y₁, y₀ − y₁, −y₁), then along the rows, as the
    /// 8-lane version; written straight into the packed panels.
    ///
    /// # Safety
    /// The CPU supports AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn gradient_transform(
        dy: &[f32],
        d: Dims,
        cout: usize,
        t0: usize,
        t1: usize,
        dm: &mut [PackedB],
    ) {
        let count = t1 - t0;
        assert!(cout.is_multiple_of(16), "channels in 16-lane vectors");
        assert!(dm.len() == XI && dy.len() >= d.pixels() * cout);
        for p in dm.iter_mut() {
            p.shape_for(count, cout);
        }
        let zero = _mm512_setzero_ps();
        // −v as a sign flip (0 − v would turn −0 into +0, unlike the 8-lane version's −v).
        let sign = _mm512_set1_epi32(i32::MIN);
        let neg = |v: __m512| _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), sign));
        for t in t0..t1 {
            let (img, y0, x0) = tile_origin(d, t);
            let row = t - t0;
            for c in (0..cout).step_by(16) {
                let pixel = |i: usize, j: usize| {
                    let (py, px) = (y0 + i, x0 + j);
                    if py < d.h && px < d.w {
                        let at = ((img * d.h + py) * d.w + px) * cout + c;
                        // SAFETY: a pixel inside the image: at + 16 ≤ d.pixels()·cout ≤ dy.len().
                        unsafe { _mm512_loadu_ps(dy.as_ptr().add(at)) }
                    } else {
                        zero
                    }
                };
                // cols[j][i]: A along output column j, row i of the result.
                let cols = [0, 1].map(|j| {
                    let (a, b) = (pixel(0, j), pixel(1, j));
                    [a, _mm512_add_ps(a, b), _mm512_sub_ps(a, b), neg(b)]
                });
                for i in 0..4 {
                    let (a, b) = (cols[0][i], cols[1][i]);
                    let out = [a, _mm512_add_ps(a, b), _mm512_sub_ps(a, b), neg(b)];
                    for (j, &o) in out.iter().enumerate() {
                        let dst = dm[i * 4 + j].row_mut(row, c);
                        // SAFETY: a panel row is 16 aligned f32.
                        unsafe { _mm512_store_ps(dst.as_mut_ptr(), o) };
                    }
                }
            }
        }
    }

    /// Bᵀ p B of 16 channels of a patch (one register per position), along rows then columns
    /// as [`super::input_patch`].
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    fn input_patch(p: &mut [__m512; 16]) {
        for (stride, step) in [(1, 4), (4, 1)] {
            for line in 0..4 {
                let at = |k: usize| line * step + k * stride;
                let (a, b, c, e) = (p[at(0)], p[at(1)], p[at(2)], p[at(3)]);
                p[at(0)] = _mm512_sub_ps(a, c);
                p[at(1)] = _mm512_add_ps(b, c);
                p[at(2)] = _mm512_sub_ps(c, b);
                p[at(3)] = _mm512_sub_ps(b, e);
            }
        }
    }

    /// [`super::transform_tile`] 16 channels at a time; a masked-out pixel is loaded as zeros.
    ///
    /// # Safety
    /// The CPU supports AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn transform_tile<const BORDER: bool>(
        x: &[f32],
        cin: usize,
        offsets: &[usize; 16],
        masks: &[u32; 16],
        row: usize,
        count: usize,
        v: &mut [f32],
    ) {
        let stride = count * cin;
        assert!(
            offsets.iter().all(|&o| o + cin <= x.len()),
            "patch inside x"
        );
        assert!(15 * stride + (row + 1) * cin <= v.len(), "tile inside v");
        let (xp, vp) = (x.as_ptr(), v.as_mut_ptr());
        let mut keep = [0xFFFFu16; 16];
        if BORDER {
            for (k, m) in keep.iter_mut().zip(masks) {
                *k = if *m == 0 { 0 } else { 0xFFFF };
            }
        }
        for c in (0..cin).step_by(16) {
            let mut p = [_mm512_setzero_ps(); 16];
            for (k, pk) in p.iter_mut().enumerate() {
                // SAFETY: offsets[k] + c + 16 ≤ offsets[k] + cin ≤ x.len() (asserted above).
                *pk = unsafe {
                    if BORDER {
                        _mm512_maskz_loadu_ps(keep[k], xp.add(offsets[k] + c))
                    } else {
                        _mm512_loadu_ps(xp.add(offsets[k] + c))
                    }
                };
            }
            input_patch(&mut p);
            for (xi, pk) in p.iter().enumerate() {
                // SAFETY: xi·stride + row·cin + c + 16 ≤ 15·stride + (row + 1)·cin ≤ v.len().
                unsafe { _mm512_storeu_ps(vp.add(xi * stride + row * cin + c), *pk) };
            }
        }
    }
}

/// y (+)= Aᵀ M A for tiles `t0..t1`, from the 16 row-major (t1 − t0) × cout products in `m`,
/// plus the bias unless `add` or it is empty; only pixels inside the image are written. `rows`
/// is scratch. 16 channels at a time in AVX-512 registers where `cout` is a multiple of 16.
#[allow(clippy::too_many_arguments)]
fn output_transform(
    m: &[f32],
    d: Dims,
    cout: usize,
    t0: usize,
    t1: usize,
    bias: &[f32],
    y: &mut [f32],
    add: bool,
    rows: &mut Vec<f32>,
) {
    #[cfg(target_arch = "x86_64")]
    if wide(cout) {
        // SAFETY: the CPU supports AVX-512F (isa() only picks what the CPU runs).
        unsafe { avx512::output_transform(m, d, cout, t0, t1, bias, y, add) };
        return;
    }
    output_transform8(m, d, cout, t0, t1, bias, y, add, rows);
}

simd_dispatch! {
/// [`output_transform`] 8 channels at a time.
#[allow(clippy::too_many_arguments)]
fn output_transform8(m: &[f32], d: Dims, cout: usize, t0: usize, t1: usize, bias: &[f32], y: &mut [f32], add: bool, rows: &mut Vec<f32>) {
    let count = t1 - t0;
    rows.resize(9 * cout, 0.0);
    let (s, out) = rows.split_at_mut(8 * cout);
    for t in t0..t1 {
        let (img, y0, x0) = tile_origin(d, t);
        let row = t - t0;
        let mv = |xi: usize| &m[(xi * count + row) * cout..(xi * count + row + 1) * cout];
        // Aᵀ along each row of M: s[i][0] = m_i0 + m_i1 + m_i2, s[i][1] = m_i1 − m_i2 − m_i3.
        for i in 0..4 {
            let (s0, s1) = s[i * 2 * cout..(i + 1) * 2 * cout].split_at_mut(cout);
            let (a, b, c, e) = (mv(i * 4), mv(i * 4 + 1), mv(i * 4 + 2), mv(i * 4 + 3));
            for k in 0..cout {
                s0[k] = a[k] + b[k] + c[k];
                s1[k] = b[k] - c[k] - e[k];
            }
        }
        let s = &*s;
        for j in 0..2 {
            let sv = |i: usize| &s[(i * 2 + j) * cout..(i * 2 + j + 1) * cout];
            let (a, b, c, e) = (sv(0), sv(1), sv(2), sv(3));
            for i in 0..2 {
                let (py, px) = (y0 + i, x0 + j);
                if py >= d.h || px >= d.w {
                    continue;
                }
                let p = (img * d.h + py) * d.w + px;
                let dst = &mut y[p * cout..(p + 1) * cout];
                let out = &mut out[..cout];
                if i == 0 {
                    for k in 0..cout {
                        out[k] = a[k] + b[k] + c[k];
                    }
                } else {
                    for k in 0..cout {
                        out[k] = b[k] - c[k] - e[k];
                    }
                }
                if add {
                    for (o, &v) in dst.iter_mut().zip(out.iter()) {
                        *o += v;
                    }
                } else if bias.is_empty() {
                    // Not `copy_from_slice`: a `memcpy` call per pixel.
                    super::simd::copy(dst, out);
                } else {
                    for ((o, &v), &bi) in dst.iter_mut().zip(out.iter()).zip(&bias[..cout]) {
                        *o = v + bi;
                    }
                }
            }
        }
    }
}
}

/// Writes dM_ξ = (A dY Aᵀ)_ξ of tiles `t0..t1` of the output gradient `dy` (batch `d`, `cout`
/// channels) as 16 packed B operands ((t1 − t0) × cout), with A = [[1, 0], [1, 1], [1, −1],
/// [0, −1]]; output pixels outside the image have zero gradient. `rows` is scratch. 16 channels
/// at a time in AVX-512 registers where `cout` is a multiple of 16.
fn gradient_transform(
    dy: &[f32],
    d: Dims,
    cout: usize,
    t0: usize,
    t1: usize,
    dm: &mut [PackedB],
    rows: &mut Vec<f32>,
) {
    #[cfg(target_arch = "x86_64")]
    if wide(cout) {
        // SAFETY: the CPU supports AVX-512F (isa() only picks what the CPU runs).
        unsafe { avx512::gradient_transform(dy, d, cout, t0, t1, dm) };
        return;
    }
    gradient_transform8(dy, d, cout, t0, t1, dm, rows);
}

simd_dispatch! {
/// [`gradient_transform`] 8 channels at a time.
#[allow(clippy::too_many_arguments)]
fn gradient_transform8(dy: &[f32], d: Dims, cout: usize, t0: usize, t1: usize, dm: &mut [PackedB], rows: &mut Vec<f32>) {
    let count = t1 - t0;
    let pad = cout.next_multiple_of(16) - cout;
    for p in dm.iter_mut() {
        p.shape_for(count, cout);
    }
    // The columns' transforms (4 rows × 2 columns), a row of the result, then zeros.
    rows.resize(13 * cout, 0.0);
    let (s, rest) = rows.split_at_mut(8 * cout);
    let (out, zeros) = rest.split_at_mut(4 * cout);
    zeros.fill(0.0);
    let zeros = &*zeros;
    for t in t0..t1 {
        let (img, y0, x0) = tile_origin(d, t);
        let row = t - t0;
        let pixel = |i: usize, j: usize| -> &[f32] {
            let (py, px) = (y0 + i, x0 + j);
            if py < d.h && px < d.w {
                let p = ((img * d.h + py) * d.w + px) * cout;
                &dy[p..p + cout]
            } else {
                zeros
            }
        };
        // A along each column of dY: (y₀, y₀ + y₁, y₀ − y₁, −y₁).
        for j in 0..2 {
            let (a, b) = (pixel(0, j), pixel(1, j));
            let at = |i: usize| (i * 2 + j) * cout;
            s[at(0)..at(0) + cout].copy_from_slice(a);
            add(&mut s[at(1)..at(1) + cout], a, b);
            sub(&mut s[at(2)..at(2) + cout], a, b);
            for (o, &v) in s[at(3)..at(3) + cout].iter_mut().zip(b) {
                *o = -v;
            }
        }
        let s = &*s;
        for i in 0..4 {
            let (a, b) = (&s[(i * 2) * cout..(i * 2 + 1) * cout], &s[(i * 2 + 1) * cout..(i * 2 + 2) * cout]);
            out[..cout].copy_from_slice(a);
            add(&mut out[cout..2 * cout], a, b);
            sub(&mut out[2 * cout..3 * cout], a, b);
            for (o, &v) in out[3 * cout..].iter_mut().zip(b) {
                *o = -v;
            }
            for j in 0..4 {
                let p = &mut dm[i * 4 + j];
                p.put(row, 0, &out[j * cout..(j + 1) * cout]);
                if pad > 0 {
                    p.put_zeros(row, cout, pad);
                }
            }
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
            let tiles = n * h.div_ceil(2) * w.div_ceil(2);
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
                unsafe { avx512::input_transform(&x, d, t0, t1, &mut v16) };
                assert!(v8.iter().zip(&v16).all(|(a, b)| a.to_bits() == b.to_bits()));
                // Output transform: plain, with a bias, and added.
                let m: Vec<f32> = (0..XI * count * c).map(|_| next()).collect();
                let bias: Vec<f32> = (0..c).map(|_| next()).collect();
                for (b, add) in [(&[][..], false), (&bias[..], false), (&bias[..], true)] {
                    let start: Vec<f32> = (0..d.pixels() * c).map(|_| next()).collect();
                    let (mut y8, mut y16) = (start.clone(), start);
                    output_transform8(&m, d, c, t0, t1, b, &mut y8, add, &mut Vec::new());
                    // SAFETY: as above.
                    unsafe { avx512::output_transform(&m, d, c, t0, t1, b, &mut y16, add) };
                    assert!(y8.iter().zip(&y16).all(|(a, b)| a.to_bits() == b.to_bits()));
                }
                // Output-gradient transform.
                let (mut g8, mut g16) = (vec![PackedB::new(); XI], vec![PackedB::new(); XI]);
                gradient_transform8(&x, d, c, t0, t1, &mut g8, &mut Vec::new());
                // SAFETY: as above.
                unsafe { avx512::gradient_transform(&x, d, c, t0, t1, &mut g16) };
                for (a, b) in g8.iter().zip(&g16) {
                    assert!(a.bits() == b.bits(), "{n}×{h}×{w}×{c}, tiles {t0}..{t1}");
                }
            }
        }
    }

    /// Winograd against the direct sum on odd and even sides, channel counts that are and are
    /// not multiples of 8, blocks that split an image and scratch reused across shapes: within 2·10⁻⁶ of the output's scale
    /// (f32 rounding of sums of ~100 terms), and `add` adds the same values.
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
                    (*a as f64 - b).abs() <= 2e-6 * scale,
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
                    (*a as f64 - 0.5 - b).abs() <= 4e-6 * gscale.max(1.0),
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
