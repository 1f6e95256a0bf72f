//! Single-precision C = A·B with B packed once into 16-column panels and a fused epilogue (bias,
//! bias + SiLU, or the SiLU backward), for the MLP's layer products.
//!
//! Why not a GEMM crate: the MLP multiplies the same weights many times (every sampling step, both
//! halves of a batch), so B can be packed once and A read in place, and the bias + SiLU pass can
//! run on each 6×16 block while it is still in registers. On a 256×256×256 product (`ouro bench
//! gemm`: 2-core AMD EPYC, Zen 3, AVX2 + FMA, one thread, best of 7 interleaved rounds) this kernel
//! ran at 84–88 GFLOP/s without an epilogue and 78–79 with bias + SiLU, against 78–80 for
//! matrixmultiply's sgemm without one (the `gemm` crate, tried as a dependency earlier, ran within
//! 3% of matrixmultiply). Sampling the reference workload went from 1.08–1.27× PyTorch to
//! 1.37–1.47× at one thread (`sh bench/run.sh`).
//!
//! The micro-kernel broadcasts one element of each of 6 rows of A and multiplies it with 16
//! packed columns of B (12 AVX accumulators); loops run row block outer, panel inner, so a 6-row
//! block of A stays in L1 while B streams from L2 (blocking the columns so that a slice of B
//! stays in L2 measured slower on this workload). CPUs without AVX2 + FMA run the same loops in
//! portable code (vectorised by the compiler at the baseline width). The two paths round
//! differently (fused multiply-adds, the reciprocal estimate in the sigmoid), so results are
//! bit-identical across reruns and thread counts on one machine, not between CPUs with and
//! without AVX2 + FMA.

use super::isa::{Isa, isa};
use super::simd::exp_f32;

/// Columns per packed panel of B.
pub const NR: usize = 16;
/// Rows of A per micro-kernel call.
const MR: usize = 6;
/// Values of [`GramBlock::add_upper_gram`]'s `ahead` prefetched after each tile (24 cache lines): the
/// 29 tiles of a 64 × 64 Gram product cover the next 128 × 64 block.
const AHEAD_PER_TILE: usize = 24 * 16;

/// One packed row of a panel: a cache line, so that no load straddles two lines (unaligned
/// panels measured ~15% slower).
use super::simd::Line as PanelRow;

// The casts between `[PanelRow]` and `[f32]` below rely on rows being exactly NR packed f32.
const _: () = assert!(std::mem::size_of::<PanelRow>() == NR * std::mem::size_of::<f32>());

/// B (k × n) packed into ⌈n/16⌉ panels, each k × 16 contiguous and zero-padded past column n.
#[derive(Clone, Debug, Default)]
pub struct PackedB {
    k: usize,
    n: usize,
    data: Vec<PanelRow>,
}

/// Equal shapes and equal packed values (stale storage past the shape is ignored).
impl PartialEq for PackedB {
    fn eq(&self, other: &Self) -> bool {
        self.k == other.k && self.n == other.n && self.used() == other.used()
    }
}

impl PackedB {
    /// An empty packing (fill it with [`PackedB::pack`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows of B.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of B.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Packs B (k × n). `b` holds B row-major, or with `transposed` Bᵀ row-major (n × k).
    /// Reuses the allocation.
    pub fn pack(&mut self, b: &[f32], k: usize, n: usize, transposed: bool) {
        assert!(
            b.len() >= k * n,
            "B has {} values, needs {}",
            b.len(),
            k * n
        );
        let panels = n.div_ceil(NR);
        self.k = k;
        self.n = n;
        self.grow(panels * k);
        for (j, dst) in self.data[..panels * k].chunks_exact_mut(k).enumerate() {
            // SAFETY: PanelRow is repr(C) around [f32; NR], so the rows are contiguous f32.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<f32>(), dst.len() * NR)
            };
            let c0 = j * NR;
            let cols = (n - c0).min(NR);
            if transposed {
                if cols < NR {
                    dst.fill(0.0);
                }
                // Row by row of the panel: 16 sequential read streams, sequential writes.
                let src = &b[c0 * k..(c0 + cols) * k];
                for (p, row) in dst.chunks_exact_mut(NR).enumerate() {
                    for (c, v) in row.iter_mut().take(cols).enumerate() {
                        *v = src[c * k + p];
                    }
                }
            } else {
                for (p, row) in dst.chunks_exact_mut(NR).enumerate() {
                    let src = &b[p * n + c0..p * n + c0 + cols];
                    if let (Ok(d), Ok(s)) = (
                        <&mut [f32; NR]>::try_from(&mut *row),
                        <&[f32; NR]>::try_from(src),
                    ) {
                        *d = *s;
                    } else {
                        row[..cols].copy_from_slice(src);
                        row[cols..].fill(0.0);
                    }
                }
            }
        }
    }

    /// Shapes the packing for a B (k × n) whose every value, padding included, is then written
    /// tile by tile by an epilogue (see [`Epilogue::SiluGrad`]) or by [`PackedB::put`].
    pub(super) fn shape_for(&mut self, k: usize, n: usize) {
        self.k = k;
        self.n = n;
        self.grow(n.div_ceil(NR) * k);
    }

    /// Makes room for `rows` panel rows. The storage only grows: the gradient packing of a
    /// training step alternates between a narrow output layer and wide hidden ones, and
    /// growing back zero-filled ~200 KB each time. Values past the current shape are stale.
    fn grow(&mut self, rows: usize) {
        if self.data.len() < rows {
            self.data.resize(rows, PanelRow([0.0; NR]));
        }
    }

    /// The bits of the packed values of the current shape, padding included.
    #[cfg(test)]
    pub(super) fn bits(&self) -> Vec<u32> {
        self.used()
            .iter()
            .flat_map(|r| r.0.map(f32::to_bits))
            .collect()
    }

    /// The panel rows of the current shape.
    fn used(&self) -> &[PanelRow] {
        &self.data[..self.n.div_ceil(NR) * self.k]
    }

    /// B[i, j0..j0 + src.len()] ← src, in the packing's current shape; a row's columns past n
    /// must be written too (zeros) before the packing is multiplied.
    #[inline(always)]
    pub(super) fn put(&mut self, i: usize, j0: usize, src: &[f32]) {
        let (mut j, mut rest) = (j0, src);
        while !rest.is_empty() {
            let off = j % NR;
            let take = (NR - off).min(rest.len());
            let row = &mut self.data[(j / NR) * self.k + i].0;
            if take == NR {
                *row = rest[..NR].try_into().expect("16 values");
            } else {
                super::simd::copy(&mut row[off..off + take], &rest[..take]);
            }
            rest = &rest[take..];
            j += take;
        }
    }

    /// B[i, j0..j0 + len] ← 0 (as [`PackedB::put`]).
    #[inline(always)]
    pub(super) fn put_zeros(&mut self, i: usize, j0: usize, len: usize) {
        let (mut j, mut left) = (j0, len);
        while left > 0 {
            let off = j % NR;
            let take = (NR - off).min(left);
            self.data[(j / NR) * self.k + i].0[off..off + take].fill(0.0);
            left -= take;
            j += take;
        }
    }

    /// Packed row `i` of the panel holding column `j0` (a multiple of 16), 64-byte aligned.
    #[inline(always)]
    pub(super) fn row_mut(&mut self, i: usize, j0: usize) -> &mut [f32; NR] {
        &mut self.data[(j0 / NR) * self.k + i].0
    }

    fn panel(&self, j: usize) -> &[f32] {
        let rows = &self.data[j * self.k..(j + 1) * self.k];
        // SAFETY: PanelRow is repr(C) around [f32; NR], so k rows are k·NR contiguous f32.
        unsafe { std::slice::from_raw_parts(rows.as_ptr().cast::<f32>(), self.k * NR) }
    }
}

/// The rows of X (k × `cols`) for a Gram product XᵀX, stored row-major with the row length
/// padded to a multiple of 16 (the stride) and 64-byte aligned, so that the product reads both
/// of its operands in place: the 16 values of a row that a tile's B needs are one cache line,
/// and the values a tile's A broadcasts lie in that row too. With the diagonal tiling of
/// [`GramBlock::add_upper_gram`], this took one thread's 10 000 × 64 covariance from 965 µs
/// (rows packed as a GEMM's B, 6 × 16 tiles throughout) to about 770 µs.
#[derive(Clone, Debug)]
pub struct GramBlock {
    stride: usize,
    data: super::simd::AlignedVec,
}

impl GramBlock {
    /// An empty block for rows of `cols` values.
    pub fn new(cols: usize) -> Self {
        Self {
            stride: cols.div_ceil(NR) * NR,
            data: Default::default(),
        }
    }

    /// The row length in memory (`cols` rounded up to a multiple of 16).
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Resizes the block to `rows` rows and returns them (rows·stride values) for the caller to
    /// fill. The padding columns (from `cols` to the stride) are zero unless the caller wrote
    /// them.
    pub fn rows_mut(&mut self, rows: usize) -> &mut [f32] {
        self.data.resize(rows * self.stride)
    }

    /// G += XᵀX over the block's rows, for G in f64 (stride × stride, row-major): each entry
    /// i ≤ j gains its f32 sum over the rows (entries below the diagonal gain products too, or
    /// nothing). Only the tiles that meet the upper triangle are computed: above each diagonal
    /// 16 × 16 block, tiles of 6 (or 4) rows by 16 columns; on it, two 4 × 16 tiles and an 8 × 8
    /// one (24 of its 32 8-lane products, the least at 8 lanes; 6 × 16 tiles throughout took
    /// 336 products per row of X for d = 64 where this takes 288). Each tile's sums go into G as
    /// it finishes (a separate f32 → f64 pass and its buffer cost 4% of a covariance). `ahead`
    /// (possibly empty) is data the caller reads next: it is prefetched a few cache lines after
    /// each tile, so that it arrives while the product computes.
    pub fn add_upper_gram(&self, g: &mut [f64], ahead: &[f32]) {
        self.add_upper_gram_on(isa(), g, ahead);
    }

    /// [`GramBlock::add_upper_gram`] with the kernels of `isa` (AVX-512 uses the AVX2 tiles).
    fn add_upper_gram_on(&self, isa: Isa, g: &mut [f64], ahead: &[f32]) {
        let n = self.stride;
        assert!(g.len() >= n * n, "G needs {n} × {n} values");
        assert!(
            isa <= Isa::detected(),
            "{isa:?} kernels on a CPU without them"
        );
        let x = &self.data[..];
        #[cfg(target_arch = "x86_64")]
        if isa >= Isa::Avx2 {
            // SAFETY: the CPU has AVX2 and FMA (asserted just above); x holds rows·n values
            // and g n·n.
            unsafe { avx::gram(x, x.len() / n, n, g, ahead) };
            return;
        }
        gram_portable(x, n, g);
    }
}

/// [`GramBlock::add_upper_gram`] without AVX2: the upper triangle's f32 sums, row by row of x
/// (n values each), then added to g.
fn gram_portable(x: &[f32], n: usize, g: &mut [f64]) {
    let mut sums = vec![0.0f32; n * n];
    for row in x.chunks_exact(n) {
        for (i, &a) in row.iter().enumerate() {
            for (gv, &b) in sums[i * n + i..(i + 1) * n].iter_mut().zip(&row[i..]) {
                *gv += a * b;
            }
        }
    }
    for (gv, &v) in g.iter_mut().zip(&sums) {
        *gv += v as f64;
    }
}

/// What happens to each output value z = (A·B)ᵢⱼ before it is stored in C.
pub enum Epilogue<'a> {
    /// C = z.
    None,
    /// C = C + z: adds the product to what C holds (the same bits as adding a separately
    /// computed product, since z is summed from zero either way).
    Add,
    /// C = z + bⱼ.
    Bias(&'a [f32]),
    /// C = silu(z + bⱼ) = v·s with v = z + bⱼ, s = 1/(1 + e^−v).
    BiasSilu(&'a [f32]),
    /// As `BiasSilu`, and the derivative silu'(v) = s + h(1 − s) (h = v·s the stored output) is
    /// stored too (m × n, for the backward pass's [`Epilogue::SiluGrad`]).
    BiasSiluKeep(&'a [f32], &'a mut [f32]),
    /// Squared distances: C = ‖aᵢ‖² + ‖bⱼ‖² − 2z for z = aᵢ·bⱼ (A holds points as rows, B
    /// other points as columns).
    SqDist {
        /// ‖aᵢ‖² (length m).
        a_norms: &'a [f32],
        /// ‖bⱼ‖² (length n).
        b_norms: &'a [f32],
    },
    /// The SiLU backward: with z = (dZ_next·Wᵀ)ᵢⱼ, C = z·silu'(v) from the derivative the
    /// forward pass stored (m × n, [`Epilogue::BiasSiluKeep`]), and the column sums of C are
    /// written to the bias gradient. C is also written packed as the B operand (m × n) of the
    /// next product (the weight gradient Xᵀ·C), which saves a packing pass over it.
    SiluGrad {
        /// silu'(v) of the forward pass.
        dsilu: &'a [f32],
        /// Receives Σᵢ Cᵢⱼ (length n).
        db: &'a mut [f32],
        /// Receives C packed, as [`PackedB::pack`] would (reshaped to m × n here).
        packed: &'a mut PackedB,
    },
}

/// C (m × n, row-major) = epilogue(A·B) where A is m × k, stored row-major or, with `a_t`, as
/// Aᵀ row-major (k × m). Uses the first `k` rows of `b` (k ≤ b.k()).
pub fn matmul(m: usize, k: usize, a: &[f32], a_t: bool, b: &PackedB, c: &mut [f32], epi: Epilogue) {
    product(isa(), m, k, a, a_t, b, c, epi);
}

/// [`matmul`] with the kernels of `isa` (one the CPU runs: see [`Isa::available`]).
#[allow(clippy::too_many_arguments)]
fn product(
    isa: Isa,
    m: usize,
    k: usize,
    a: &[f32],
    a_t: bool,
    b: &PackedB,
    c: &mut [f32],
    mut epi: Epilogue,
) {
    let n = b.n;
    assert!(k <= b.k, "k = {k} exceeds the packed B's {} rows", b.k);
    assert!(a.len() >= m * k && c.len() >= m * n);
    match &mut epi {
        Epilogue::Bias(bias) | Epilogue::BiasSilu(bias) => assert!(bias.len() >= n),
        Epilogue::BiasSiluKeep(bias, d) => assert!(bias.len() >= n && d.len() >= m * n),
        Epilogue::SiluGrad { dsilu, db, packed } => {
            assert!(dsilu.len() >= m * n && db.len() >= n);
            db[..n].fill(0.0);
            packed.shape_for(m, n);
        }
        Epilogue::SqDist { a_norms, b_norms } => assert!(a_norms.len() >= m && b_norms.len() >= n),
        Epilogue::None | Epilogue::Add => {}
    }
    let (rsa, csa) = if a_t { (1, m) } else { (k, 1) };
    let args = Args {
        m,
        k,
        n,
        a,
        rsa,
        csa,
        b,
        in_place_cols: if isa == Isa::Avx512 { 16 * NR } else { NR },
    };
    A_BUFFER.with(|buf| {
        let mut apack = buf.borrow_mut();
        prepare_a(&args, &mut apack);
        assert!(
            isa <= Isa::detected(),
            "{isa:?} kernels on a CPU without them"
        );
        #[cfg(target_arch = "x86_64")]
        if isa >= Isa::Avx2 {
            // SAFETY: the CPU runs `isa` (asserted just above), so AVX2 and FMA, and AVX-512F
            // when `wide`; `args` was bounds-checked.
            unsafe { avx::run(&args, c, &mut epi, &apack, isa == Isa::Avx512) };
            return;
        }
        run_portable(&args, c, &mut epi, &apack);
    });
}

/// The operands of one product, bounds-checked by [`matmul`].
struct Args<'a> {
    m: usize,
    k: usize,
    n: usize,
    a: &'a [f32],
    rsa: usize,
    csa: usize,
    b: &'a PackedB,
    /// The widest B for which a transposed A is read in place ([`packs_a`]).
    in_place_cols: usize,
}

/// Applies the epilogue to `rows` rows of a tile whose top-left output is (i0, j0) and stores
/// them in C.
#[inline(always)]
fn finish_tile(
    tile: &[[f32; NR]; MR],
    rows: usize,
    i0: usize,
    j0: usize,
    n: usize,
    c: &mut [f32],
    epi: &mut Epilogue,
) {
    if n - j0 >= NR {
        // Full width: fixed-size rows, so every loop below compiles to two 8-lane passes.
        for (r, t) in tile.iter().enumerate().take(rows) {
            let at = (i0 + r) * n + j0;
            let dst: &mut [f32; NR] = (&mut c[at..at + NR]).try_into().expect("16 columns");
            finish_row(t, dst, i0 + r, j0, n, epi);
        }
    } else {
        let cols = n - j0;
        for (r, t) in tile.iter().enumerate().take(rows) {
            let at = (i0 + r) * n + j0;
            finish_row(&t[..cols], &mut c[at..at + cols], i0 + r, j0, n, epi);
        }
    }
}

/// The epilogue for one row of a tile: `t` holds the products for C[i, j0..j0 + len] (C has n
/// columns).
#[inline(always)]
fn finish_row<T, D>(t: &T, dst: &mut D, i: usize, j0: usize, n: usize, epi: &mut Epilogue)
where
    T: AsRef<[f32]> + ?Sized,
    D: AsMut<[f32]> + ?Sized,
{
    let (t, dst) = (t.as_ref(), dst.as_mut());
    let cols = dst.len();
    let at = i * n + j0;
    match epi {
        Epilogue::None => dst.copy_from_slice(t),
        Epilogue::Add => {
            for (d, &z) in dst.iter_mut().zip(t) {
                *d += z;
            }
        }
        Epilogue::Bias(bias) => {
            for ((d, &z), &b) in dst.iter_mut().zip(t).zip(&bias[j0..j0 + cols]) {
                *d = z + b;
            }
        }
        Epilogue::BiasSilu(bias) => {
            for ((d, &z), &b) in dst.iter_mut().zip(t).zip(&bias[j0..j0 + cols]) {
                let v = z + b;
                *d = v / (1.0 + exp_f32(-v));
            }
        }
        Epilogue::BiasSiluKeep(bias, dsilu) => {
            let dsilu = &mut dsilu[at..at + cols];
            for (((d, dv), &z), &b) in dst
                .iter_mut()
                .zip(dsilu.iter_mut())
                .zip(t)
                .zip(&bias[j0..j0 + cols])
            {
                let v = z + b;
                let s = 1.0 / (1.0 + exp_f32(-v));
                let h = v * s;
                *dv = h.mul_add(1.0 - s, s);
                *d = h;
            }
        }
        Epilogue::SqDist { a_norms, b_norms } => {
            let an = a_norms[i];
            for ((d, &z), &bn) in dst.iter_mut().zip(t).zip(&b_norms[j0..j0 + cols]) {
                *d = an + bn - 2.0 * z;
            }
        }
        Epilogue::SiluGrad { dsilu, db, packed } => {
            let dsilu = &dsilu[at..at + cols];
            let prow = packed.row_mut(i, j0);
            prow[cols..].fill(0.0);
            for ((((d, p), g), &z), &dv) in dst
                .iter_mut()
                .zip(prow.iter_mut())
                .zip(db[j0..j0 + cols].iter_mut())
                .zip(t)
                .zip(dsilu)
            {
                let v = z * dv;
                *d = v;
                *p = v;
                *g += v;
            }
        }
    }
}

/// Prepares A for the micro-kernel. Row-major A is read in place (six sequential streams). A
/// stored transposed is copied once into `buf` as ⌈m/6⌉ blocks of k groups of 6 (row r of group
/// p of block b is A[6b + r, p]): read in place, successive k would be a whole row of Aᵀ apart,
/// which thrashes L1's sets when that row is a multiple of 1 KiB long.
fn prepare_a(args: &Args, buf: &mut Vec<f32>) {
    if !packs_a(args) {
        return;
    }
    let (m, k) = (args.m, args.k);
    let full = m / MR;
    // Every value of the full blocks is written below; only a partial last block needs zeros
    // (clearing the whole buffer first was a measurable memset). The buffer only grows: the
    // products of a training step alternate between large and small A, and growing it back
    // zero-filled ~230 KB each time.
    let need = m.div_ceil(MR) * k * MR;
    if buf.len() < need {
        buf.resize(need, 0.0);
    }
    buf[full * k * MR..need].fill(0.0);
    // Rows of Aᵀ in groups of 16: each block then receives 96 contiguous values per group,
    // while the group's rows stay in L1 (row by row, every 6 values went to a different line:
    // the 256 × 512 transposed A of a weight gradient took 290 µs to multiply, now 225 µs).
    for p0 in (0..k).step_by(16) {
        let p1 = (p0 + 16).min(k);
        for b in 0..full {
            for p in p0..p1 {
                let src = &args.a[p * args.csa + b * MR..p * args.csa + (b + 1) * MR];
                let at = (b * k + p) * MR;
                let dst: &mut [f32; MR] = (&mut buf[at..at + MR]).try_into().expect("6 values");
                *dst = src.try_into().expect("6 values");
            }
        }
        if full * MR < m {
            for p in p0..p1 {
                let rest = &args.a[p * args.csa + full * MR..p * args.csa + m];
                let at = (full * k + p) * MR;
                buf[at..at + rest.len()].copy_from_slice(rest);
            }
        }
    }
}

/// Whether [`prepare_a`] copies A: only when it is stored transposed and B is wider than
/// `in_place_cols`. On AVX2 that is more than one panel (with one, every value of A is used
/// once, and the copy would cost as much as the product). The AVX-512 kernel takes two panels
/// per pass and its loads of A did not suffer from reading it in place: on the Xeon (one
/// thread, best of 5) the Winograd weight gradients' 32 × 192 × 32 and 64 × 192 × 64 products
/// ran at 67–78 and 94–107 GFLOP/s with the copy and 128–148 and 146 without, and a 256 × 256
/// × 256 one at 123 and 146; at 256 × 512 × 256 both ran at 133, so B up to 256 columns wide
/// reads A in place.
#[inline(always)]
fn packs_a(args: &Args) -> bool {
    args.csa != 1 && args.n > args.in_place_cols
}

/// Where the micro-kernel reads rows i0..i0 + 6 of A after [`prepare_a`]: (pointer, row stride,
/// k stride).
#[inline(always)]
fn a_block(args: &Args, i0: usize, buf: &[f32]) -> (*const f32, usize, usize) {
    if !packs_a(args) {
        (args.a[i0 * args.rsa..].as_ptr(), args.rsa, args.csa)
    } else {
        (buf[(i0 / MR) * args.k * MR..].as_ptr(), 1, MR)
    }
}

thread_local! {
    /// The copy of a transposed A ([`prepare_a`]), kept between calls.
    static A_BUFFER: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The loops of [`matmul`] with a portable micro-kernel.
fn run_portable(args: &Args, c: &mut [f32], epi: &mut Epilogue, apack: &[f32]) {
    let mut tile = [[0.0f32; NR]; MR];
    let mut i0 = 0;
    while i0 < args.m {
        let rows = (args.m - i0).min(MR);
        let (ap, rs, cs) = a_block(args, i0, apack);
        for j in 0..args.n.div_ceil(NR) {
            let bp = args.b.panel(j);
            for t in tile.iter_mut() {
                *t = [0.0; NR];
            }
            for (p, brow) in bp.chunks_exact(NR).take(args.k).enumerate() {
                for (r, t) in tile.iter_mut().enumerate().take(rows) {
                    // SAFETY: a_block's pointer reaches `rows` rows and k columns of A.
                    let av = unsafe { *ap.add(r * rs + p * cs) };
                    for (tv, &bv) in t.iter_mut().zip(brow) {
                        *tv += av * bv;
                    }
                }
            }
            finish_tile(&tile, rows, i0, j * NR, args.n, c, epi);
        }
        i0 += rows;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::{AHEAD_PER_TILE, Args, Epilogue, MR, NR, a_block, finish_tile};
    use std::arch::x86_64::*;

    /// sigmoid(v) = 1/(1 + e^−v) for 8 lanes. e^−v has the range reduction and degree-6
    /// polynomial of [`crate::nn::simd::exp_f32`], evaluated for a short dependency chain (the
    /// SiLU pass was latency-bound: 46 → 32 µs per 65 536 values). The reciprocal is the
    /// 12-bit estimate refined by one Newton step (relative error ~2⁻²²): a division here made
    /// the bias + SiLU epilogue cost 15% of a 256×256×256 product.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn sigmoid8(v: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        // e^−v as in exp8, with the negation folded into the range reduction and the
        // polynomial by Estrin's scheme (depth 3 instead of 6 dependent FMAs).
        let v = _mm256_min_ps(
            _mm256_max_ps(v, _mm256_set1_ps(-88.0)),
            _mm256_set1_ps(87.0),
        );
        let magic = _mm256_set1_ps(12_582_912.0);
        let t = _mm256_fnmadd_ps(v, _mm256_set1_ps(std::f32::consts::LOG2_E), magic);
        let n = _mm256_sub_ps(t, magic);
        let r = _mm256_fnmsub_ps(n, _mm256_set1_ps(0.693_145_75), v);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
        let r2 = _mm256_mul_ps(r, r);
        let r4 = _mm256_mul_ps(r2, r2);
        let lo = _mm256_add_ps(one, r);
        let a = _mm256_fmadd_ps(r, _mm256_set1_ps(1.0 / 6.0), _mm256_set1_ps(0.5));
        let b = _mm256_fmadd_ps(r, _mm256_set1_ps(1.0 / 120.0), _mm256_set1_ps(1.0 / 24.0));
        let c = _mm256_fmadd_ps(r2, _mm256_set1_ps(1.0 / 720.0), b);
        let p = _mm256_fmadd_ps(r4, c, _mm256_fmadd_ps(r2, a, lo));
        // p·2ⁿ by adding n to p's exponent field: t's low bits hold n (magic's vanish in the
        // shift), and an integer add keeps the multiply off the two FMA pipes.
        let scaled = _mm256_add_epi32(
            _mm256_castps_si256(p),
            _mm256_slli_epi32::<23>(_mm256_castps_si256(t)),
        );
        let x = _mm256_add_ps(one, _mm256_castsi256_ps(scaled));
        let r = _mm256_rcp_ps(x);
        // r ← r(2 − x r) = r + r(1 − x r).
        _mm256_fmadd_ps(r, _mm256_fnmadd_ps(x, r, one), r)
    }

    /// Applies the epilogue to a full-width R×16 block of accumulators in registers and stores
    /// it at C[i0.., j0..j0 + 16].
    ///
    /// # Safety
    /// Rows i0..i0 + R and columns j0..j0 + 16 lie inside C (and inside the epilogue's m × n
    /// arrays); the caller checked the sizes in [`super::matmul`].
    // No #[target_feature] here: always inlined, it takes the AVX2 + FMA (or AVX-512) code
    // generation of the kernel it is inlined into (a separate call per 6 × 16 tile, with the
    // epilogue's dispatch, took 7% of a training step). Callers have those features.
    #[inline(always)]
    pub(super) unsafe fn store<const R: usize>(
        acc: &[[__m256; 2]; R],
        i0: usize,
        j0: usize,
        n: usize,
        c: &mut [f32],
        epi: &mut Epilogue,
    ) {
        // SAFETY: (whole body) see the function's contract.
        unsafe {
            let cp = c.as_mut_ptr();
            let at = |r: usize, half: usize| (i0 + r) * n + j0 + 8 * half;
            match epi {
                Epilogue::None => {
                    for (r, a) in acc.iter().enumerate() {
                        for (h, &v) in a.iter().enumerate() {
                            _mm256_storeu_ps(cp.add(at(r, h)), v);
                        }
                    }
                }
                Epilogue::Add => {
                    for (r, a) in acc.iter().enumerate() {
                        for (h, &v) in a.iter().enumerate() {
                            let p = cp.add(at(r, h));
                            _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), v));
                        }
                    }
                }
                Epilogue::Bias(bias) => {
                    let b = &bias[j0..j0 + NR];
                    let b = [
                        _mm256_loadu_ps(b.as_ptr()),
                        _mm256_loadu_ps(b[8..].as_ptr()),
                    ];
                    for (r, a) in acc.iter().enumerate() {
                        for h in 0..2 {
                            _mm256_storeu_ps(cp.add(at(r, h)), _mm256_add_ps(a[h], b[h]));
                        }
                    }
                }
                Epilogue::BiasSilu(_) | Epilogue::BiasSiluKeep(..) => {
                    unreachable!("run applies the SiLU to whole rows after the tiles")
                }
                Epilogue::SqDist { a_norms, b_norms } => {
                    let bn = &b_norms[j0..j0 + NR];
                    let bn = [
                        _mm256_loadu_ps(bn.as_ptr()),
                        _mm256_loadu_ps(bn[8..].as_ptr()),
                    ];
                    let minus_two = _mm256_set1_ps(-2.0);
                    for (r, a) in acc.iter().enumerate() {
                        let an = _mm256_set1_ps(a_norms[i0 + r]);
                        for h in 0..2 {
                            let v = _mm256_fmadd_ps(a[h], minus_two, _mm256_add_ps(an, bn[h]));
                            _mm256_storeu_ps(cp.add(at(r, h)), v);
                        }
                    }
                }
                Epilogue::SiluGrad { dsilu, db, packed } => {
                    let mut sum = [_mm256_setzero_ps(); 2];
                    for (r, a) in acc.iter().enumerate() {
                        // 64-byte aligned (PanelRow).
                        let prow = packed.row_mut(i0 + r, j0).as_mut_ptr();
                        for h in 0..2 {
                            let i = at(r, h);
                            let d = _mm256_loadu_ps(dsilu.as_ptr().add(i));
                            let g = _mm256_mul_ps(a[h], d);
                            _mm256_storeu_ps(cp.add(i), g);
                            _mm256_store_ps(prow.add(8 * h), g);
                            sum[h] = _mm256_add_ps(sum[h], g);
                        }
                    }
                    for (h, &v) in sum.iter().enumerate() {
                        let p = db.as_mut_ptr().add(j0 + 8 * h);
                        _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), v));
                    }
                }
            }
        }
    }

    /// The R × 8W micro-kernel's sums: Σₚ A[i, p]·B[p, j] for i < R, j < 8W, with A[i, p] at
    /// `a + i·rs + p·cs` and B[p, 8w..8w + 8] at `b + p·bs + 8w`.
    ///
    /// # Safety
    /// Those addresses are readable for p < k.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn accumulate<const R: usize, const W: usize>(
        (a, rs, cs): (*const f32, usize, usize),
        (b, bs): (*const f32, usize),
        k: usize,
    ) -> [[__m256; W]; R] {
        let mut acc = [[_mm256_setzero_ps(); W]; R];
        for p in 0..k {
            // SAFETY: (whole block) see the function's contract.
            unsafe {
                let mut bv = [_mm256_setzero_ps(); W];
                for (w, v) in bv.iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(b.add(p * bs + 8 * w));
                }
                let g = a.add(p * cs);
                for (i, acc) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*g.add(i * rs));
                    for (acc, &v) in acc.iter_mut().zip(&bv) {
                        *acc = _mm256_fmadd_ps(av, v, *acc);
                    }
                }
            }
        }
        acc
    }

    /// The R×16 micro-kernel and its epilogue: C[i0.., j0..] = epi(A[i0.., :k]·panel), with
    /// A[i0 + i, p] at `ap + i·rs + p·cs` (see [`a_block`]). Partial panels (fewer than 16 columns
    /// left) go through `tile` and the portable epilogue.
    ///
    /// # Safety
    /// `ap` reaches R rows and k columns of A, `bp` k rows of a panel, and the output block lies
    /// inside C (checked by [`super::matmul`]).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block<const R: usize>(
        (ap, rs, cs): (*const f32, usize, usize),
        bp: *const f32,
        k: usize,
        (i0, j0, n): (usize, usize, usize),
        c: &mut [f32],
        epi: &mut Epilogue,
        tile: &mut [[f32; NR]; MR],
    ) {
        // SAFETY: see the function's contract.
        let acc = unsafe { accumulate::<R, 2>((ap, rs, cs), (bp, NR), k) };
        if n - j0 >= NR {
            // SAFETY: a full-width block inside C (the function's contract).
            unsafe { store::<R>(&acc, i0, j0, n, c, epi) };
        } else {
            for (t, acc) in tile.iter_mut().zip(&acc) {
                // SAFETY: each tile row holds 16 floats.
                unsafe {
                    _mm256_storeu_ps(t.as_mut_ptr(), acc[0]);
                    _mm256_storeu_ps(t.as_mut_ptr().add(8), acc[1]);
                }
            }
            finish_tile(tile, R, i0, j0, n, c, epi);
        }
    }

    /// Rows i0..i0 + R of C, panel by panel (the row count is fixed for the whole loop, so its
    /// dispatch is not repeated per block).
    ///
    /// # Safety
    /// As [`block`] for every panel of `args.b`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn row_blocks<const R: usize>(
        args: &Args,
        a: (*const f32, usize, usize),
        i0: usize,
        c: &mut [f32],
        epi: &mut Epilogue,
        tile: &mut [[f32; NR]; MR],
    ) {
        let (k, n) = (args.k, args.n);
        for j in 0..n.div_ceil(NR) {
            let bp = args.b.panel(j).as_ptr();
            // SAFETY: see the function's contract.
            unsafe { block::<R>(a, bp, k, (i0, j * NR, n), c, epi, tile) };
        }
    }

    /// Adds an R × 8W block of f32 sums to G[i0.., j0..] in f64 (G has n columns).
    ///
    /// # Safety
    /// The block lies inside G.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn add_f64<const R: usize, const W: usize>(
        acc: &[[__m256; W]; R],
        g: *mut f64,
        (i0, j0, n): (usize, usize, usize),
    ) {
        for (r, a) in acc.iter().enumerate() {
            for (w, &v) in a.iter().enumerate() {
                // SAFETY: see the function's contract.
                unsafe {
                    let p = g.add((i0 + r) * n + j0 + 8 * w);
                    let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
                    let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v));
                    _mm256_storeu_pd(p, _mm256_add_pd(_mm256_loadu_pd(p), lo));
                    _mm256_storeu_pd(p.add(4), _mm256_add_pd(_mm256_loadu_pd(p.add(4)), hi));
                }
            }
        }
    }

    /// The tiles of [`super::GramBlock::add_upper_gram`] over x (k rows of n values, n a multiple
    /// of 16).
    ///
    /// # Safety
    /// The CPU supports AVX2 and FMA; x holds k·n values and g n·n.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gram(x: &[f32], k: usize, n: usize, g: &mut [f64], ahead: &[f32]) {
        let (xp, gp) = (x.as_ptr(), g.as_mut_ptr());
        let mut next_ahead = 0;
        let mut prefetch = || {
            // A few lines of `ahead` per tile: spread out, the requests overlap the arithmetic
            // instead of queueing behind each other.
            let end = (next_ahead + AHEAD_PER_TILE).min(ahead.len());
            while next_ahead < end {
                _mm_prefetch::<_MM_HINT_T0>(ahead[next_ahead..].as_ptr().cast());
                next_ahead += 16;
            }
        };
        // SAFETY: (whole loop) every tile reads rows < n and columns < n of x for p < k, and
        // writes inside G's n × n.
        unsafe {
            // A[i, p] = x[p, i] (rs = 1, cs = n); B[p, j] = x[p, j] (bs = n).
            let a = |i: usize| (xp.add(i), 1, n);
            for j0 in (0..n).step_by(NR) {
                let b = (xp.add(j0), n);
                let mut i0 = 0;
                while i0 < j0 {
                    // j0 − i0 runs down by 6 from a multiple of 16; ending on 4 or 4 + 4 rows
                    // avoids a 2-row tile (4 accumulators cannot hide the FMA latency).
                    if matches!(j0 - i0, 4 | 8) {
                        add_f64(&accumulate::<4, 2>(a(i0), b, k), gp, (i0, j0, n));
                        i0 += 4;
                    } else {
                        add_f64(&accumulate::<6, 2>(a(i0), b, k), gp, (i0, j0, n));
                        i0 += 6;
                    }
                    prefetch();
                }
                add_f64(&accumulate::<4, 2>(a(j0), b, k), gp, (j0, j0, n));
                add_f64(&accumulate::<4, 2>(a(j0 + 4), b, k), gp, (j0 + 4, j0, n));
                prefetch();
                let b8 = (xp.add(j0 + 8), n);
                add_f64(
                    &accumulate::<8, 1>(a(j0 + 8), b8, k),
                    gp,
                    (j0 + 8, j0 + 8, n),
                );
                prefetch();
            }
        }
    }

    /// The loops of [`super::matmul`] with the AVX2 + FMA micro-kernel.
    ///
    /// # Safety
    /// The CPU supports AVX2 and FMA, and `args`, `c` and `epi` passed [`super::matmul`]'s checks.
    /// With `wide` the row blocks run on [`super::avx512`]'s micro-kernel.
    ///
    /// # Safety
    /// As above, and the CPU supports AVX-512F when `wide`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run(
        args: &Args,
        c: &mut [f32],
        epi: &mut Epilogue,
        apack: &[f32],
        wide: bool,
    ) {
        let mut tile = [[0.0f32; NR]; MR];
        let n = args.n;
        // The SiLU epilogues run in two parts: the tiles store z + b, then the SiLU runs over
        // the finished rows (still in L1) as one streaming loop. Per tile, its twelve exp
        // chains were latency-bound and cost a 256×256×256 product 11% (46 µs); as a loop
        // their iterations overlap.
        let mut bias_only = match epi {
            Epilogue::BiasSilu(b) | Epilogue::BiasSiluKeep(b, _) => Some(Epilogue::Bias(b)),
            _ => None,
        };
        if wide {
            let tile_epi = match bias_only.as_mut() {
                Some(b) => b,
                None => &mut *epi,
            };
            // SAFETY: the CPU supports AVX-512F (the function's contract); as below otherwise.
            unsafe { super::avx512::by_panels(args, c, tile_epi, apack, &mut tile) };
            let all = 0..args.m * n;
            match epi {
                Epilogue::BiasSilu(_) => silu(&mut c[all], None),
                Epilogue::BiasSiluKeep(_, d) => silu(&mut c[all.clone()], Some(&mut d[all])),
                _ => {}
            }
            return;
        }
        let mut i0 = 0;
        while i0 < args.m {
            let rows = (args.m - i0).min(MR);
            let a = a_block(args, i0, apack);
            let tile_epi = match bias_only.as_mut() {
                Some(b) => b,
                None => &mut *epi,
            };
            let (t, e) = (&mut tile, &mut *tile_epi);
            // SAFETY: a_block reaches `rows` rows and k columns; the panels have k ≤ b.k rows;
            // the blocks lie inside C.
            unsafe {
                {
                    match rows {
                        6 => row_blocks::<6>(args, a, i0, c, e, t),
                        5 => row_blocks::<5>(args, a, i0, c, e, t),
                        4 => row_blocks::<4>(args, a, i0, c, e, t),
                        3 => row_blocks::<3>(args, a, i0, c, e, t),
                        2 => row_blocks::<2>(args, a, i0, c, e, t),
                        _ => row_blocks::<1>(args, a, i0, c, e, t),
                    }
                }
            }
            let span = i0 * n..(i0 + rows) * n;
            match epi {
                Epilogue::BiasSilu(_) => silu(&mut c[span], None),
                Epilogue::BiasSiluKeep(_, d) => silu(&mut c[span.clone()], Some(&mut d[span])),
                _ => {}
            }
            i0 += rows;
        }
    }

    /// v ← h = v·s over `v` (s = sigmoid(v)), storing silu'(v) = s + h(1 − s) in `dsilu` when
    /// given (same length).
    #[target_feature(enable = "avx2,fma")]
    fn silu(v: &mut [f32], mut dsilu: Option<&mut [f32]>) {
        let full = v.len() / 8 * 8;
        for at in (0..full).step_by(8) {
            // SAFETY: at + 8 ≤ v.len() (and dsilu.len() = v.len()).
            unsafe {
                let x = _mm256_loadu_ps(v.as_ptr().add(at));
                let s = sigmoid8(x);
                let h = _mm256_mul_ps(x, s);
                if let Some(dsilu) = dsilu.as_deref_mut() {
                    let d = _mm256_fmadd_ps(h, _mm256_sub_ps(_mm256_set1_ps(1.0), s), s);
                    _mm256_storeu_ps(dsilu.as_mut_ptr().add(at), d);
                }
                _mm256_storeu_ps(v.as_mut_ptr().add(at), h);
            }
        }
        if full < v.len() {
            let mut lanes = [0.0f32; 8];
            let rest = v.len() - full;
            lanes[..rest].copy_from_slice(&v[full..]);
            // SAFETY: `lanes` holds 8 values.
            let s = unsafe { _mm256_loadu_ps(lanes.as_ptr()) };
            let mut out = [0.0f32; 8];
            // SAFETY: as above.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sigmoid8(s)) };
            for (j, &sj) in out[..rest].iter().enumerate() {
                let h = v[full + j] * sj;
                if let Some(dsilu) = dsilu.as_deref_mut() {
                    dsilu[full + j] = h.mul_add(1.0 - sj, sj);
                }
                v[full + j] = h;
            }
        }
    }
}

/// The AVX-512F micro-kernel: 6 rows of A by P panels of B (16 columns each, one 16-lane register
/// per row and panel), so that 6·P accumulators hide the FMA latency and each broadcast of A
/// feeds P multiply-adds. Each output sums the same fused multiply-adds in the same order as
/// [`avx`]'s 6 × 16 kernel, so the two give the same bits; the finished accumulators go through
/// [`avx::store`]'s epilogues as two 8-lane halves.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Args, Epilogue, MR, NR, a_block, avx, finish_tile};
    use std::arch::x86_64::*;

    /// Panels of B per micro-kernel call: 12 accumulators, and a group of two panels (32 KiB at
    /// k = 256) stays in L1 while A streams past. On the Xeon (1 thread) 3 and 4 panels measured
    /// the same on the 256³ product (171–180 GFLOP/s, the machine's noise) and no faster training.
    const P: usize = 2;

    /// The R × 16Q sums of rows of A against Q panels at `b[q]`: Σₚ A[i, p]·B_q[p, j].
    ///
    /// # Safety
    /// A[i, p] at `a + i·rs + p·cs` and each panel's k rows of 16 (64-byte aligned) are readable.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn accumulate<const R: usize, const Q: usize>(
        (a, rs, cs): (*const f32, usize, usize),
        b: [*const f32; Q],
        k: usize,
    ) -> [[__m512; Q]; R] {
        let mut acc = [[_mm512_setzero_ps(); Q]; R];
        for p in 0..k {
            // SAFETY: (whole block) see the function's contract.
            unsafe {
                let mut bv = [_mm512_setzero_ps(); Q];
                for (v, &bq) in bv.iter_mut().zip(&b) {
                    *v = _mm512_load_ps(bq.add(p * NR));
                }
                let g = a.add(p * cs);
                for (i, acc) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*g.add(i * rs));
                    for (acc, &v) in acc.iter_mut().zip(&bv) {
                        *acc = _mm512_fmadd_ps(av, v, *acc);
                    }
                }
            }
        }
        acc
    }

    /// Rows i0..i0 + R of C against Q panels from panel `j`, through the epilogue.
    ///
    /// # Safety
    /// As [`accumulate`], and the output block lies inside C.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block<const R: usize, const Q: usize>(
        args: &Args,
        a: (*const f32, usize, usize),
        j: usize,
        i0: usize,
        c: &mut [f32],
        epi: &mut Epilogue,
        tile: &mut [[f32; NR]; MR],
    ) {
        let b: [*const f32; Q] = std::array::from_fn(|q| args.b.panel(j + q).as_ptr());
        // SAFETY: see the function's contract.
        let acc = unsafe { accumulate::<R, Q>(a, b, args.k) };
        let n = args.n;
        // q indexes the inner dimension of acc (panel), not an outer slice.
        #[allow(clippy::needless_range_loop)]
        for q in 0..Q {
            let j0 = (j + q) * NR;
            // The two 8-lane halves of each row's register.
            let halves: [[__m256; 2]; R] = std::array::from_fn(|r| {
                let z = acc[r][q];
                [
                    _mm512_castps512_ps256(z),
                    _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(z))),
                ]
            });
            if n - j0 >= NR {
                // SAFETY: a full-width block inside C (the function's contract).
                unsafe { avx::store::<R>(&halves, i0, j0, n, c, epi) };
            } else {
                for (t, h) in tile.iter_mut().zip(&halves) {
                    // SAFETY: each tile row holds 16 floats.
                    unsafe {
                        _mm256_storeu_ps(t.as_mut_ptr(), h[0]);
                        _mm256_storeu_ps(t.as_mut_ptr().add(8), h[1]);
                    }
                }
                finish_tile(tile, R, i0, j0, n, c, epi);
            }
        }
    }

    /// Rows i0..i0 + R of C against panels j..j + Q.
    ///
    /// # Safety
    /// As [`block`].
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows_by<const Q: usize>(
        rows: usize,
        args: &Args,
        a: (*const f32, usize, usize),
        j: usize,
        i0: usize,
        c: &mut [f32],
        e: &mut Epilogue,
        t: &mut [[f32; NR]; MR],
    ) {
        // SAFETY: see the function's contract.
        unsafe {
            match rows {
                6 => block::<6, Q>(args, a, j, i0, c, e, t),
                5 => block::<5, Q>(args, a, j, i0, c, e, t),
                4 => block::<4, Q>(args, a, j, i0, c, e, t),
                3 => block::<3, Q>(args, a, j, i0, c, e, t),
                2 => block::<2, Q>(args, a, j, i0, c, e, t),
                _ => block::<1, Q>(args, a, j, i0, c, e, t),
            }
        }
    }

    /// All of C = epi(A·B), P panels of B at a time (the remaining ones one by one), each group
    /// against every 6-row block of A in turn: the group's P·k·16 values stay in L1 while A
    /// streams past (row blocks outer and every panel inner streamed all of B from L2 for each
    /// block: 166 GFLOP/s on the 256³ product, against 240 for the FMA units, on the Xeon).
    ///
    /// # Safety
    /// The CPU supports AVX-512F, AVX2 and FMA; `args` and `c` passed [`super::matmul`]'s checks.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn by_panels(
        args: &Args,
        c: &mut [f32],
        e: &mut Epilogue,
        apack: &[f32],
        t: &mut [[f32; NR]; MR],
    ) {
        let panels = args.n.div_ceil(NR);
        let mut j = 0;
        while j < panels {
            let q = if panels - j >= P { P } else { 1 };
            let mut i0 = 0;
            while i0 < args.m {
                let rows = (args.m - i0).min(MR);
                let a = a_block(args, i0, apack);
                // SAFETY: a_block reaches `rows` rows and k columns; panels j..j + q exist.
                unsafe {
                    if q == P {
                        rows_by::<P>(rows, args, a, j, i0, c, e, t);
                    } else {
                        rows_by::<1>(rows, args, a, j, i0, c, e, t);
                    }
                }
                i0 += rows;
            }
            j += q;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(m: usize, k: usize, n: usize, a: &[f32], a_t: bool, b: &[f32]) -> Vec<f64> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| {
                        let av = if a_t { a[p * m + i] } else { a[i * k + p] };
                        av as f64 * b[p * n + j] as f64
                    })
                    .sum();
            }
        }
        c
    }

    /// The outputs of the AVX2 and AVX-512 kernels (those present) are the same bits.
    fn same_bits_above_portable(by_isa: &[(Isa, Vec<f32>)]) {
        let wide: Vec<&(Isa, Vec<f32>)> = by_isa.iter().filter(|(i, _)| *i >= Isa::Avx2).collect();
        for w in wide.windows(2) {
            assert!(
                w[0].1
                    .iter()
                    .zip(&w[1].1)
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "{:?} and {:?} differ",
                w[0].0,
                w[1].0
            );
        }
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i + seed) * 7919) % 1013) as f32 / 1013.0 - 0.5)
            .collect()
    }

    /// Every edge case of the blocking (m not a multiple of 6, n not of 16 or of 32, transposed A
    /// and B) against an f64 triple loop, on every kernel the CPU runs; the AVX-512 and AVX2
    /// kernels give the same bits.
    #[test]
    fn products_match_a_triple_loop() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (7, 5, 3),
            (13, 34, 17),
            (256, 64, 40),
            (6, 256, 16),
            (40, 7, 40),
            (64, 64, 64),
            (11, 9, 48),
            (6, 3, 80),
        ] {
            let a = values(m * k, 1);
            let b = values(k * n, 2);
            let mut bt = vec![0.0; k * n];
            for p in 0..k {
                for j in 0..n {
                    bt[j * k + p] = b[p * n + j];
                }
            }
            let mut at = vec![0.0; m * k];
            for i in 0..m {
                for p in 0..k {
                    at[p * m + i] = a[i * k + p];
                }
            }
            let want = reference(m, k, n, &a, false, &b);
            for (aa, a_t) in [(&a, false), (&at, true)] {
                for (bb, b_t) in [(&b, false), (&bt, true)] {
                    let mut packed = PackedB::new();
                    packed.pack(bb, k, n, b_t);
                    let mut by_isa = Vec::new();
                    for isa in Isa::available() {
                        let mut c = vec![f32::NAN; m * n];
                        product(isa, m, k, aa, a_t, &packed, &mut c, Epilogue::None);
                        for (x, w) in c.iter().zip(&want) {
                            let tol = 1e-5 * (k as f64).sqrt();
                            assert!(
                                (*x as f64 - w).abs() < tol,
                                "{isa:?} {m}×{k}×{n}: {x} vs {w}"
                            );
                        }
                        by_isa.push((isa, c));
                    }
                    same_bits_above_portable(&by_isa);
                }
            }
        }
    }

    /// The Gram product's upper triangle against an f64 triple loop, for widths around the
    /// 16-column panels and the 6/4-row tiling, on the AVX and the portable paths.
    #[test]
    fn gram_upper_triangle_matches_a_triple_loop() {
        for &(k, d) in &[
            (1, 1),
            (5, 7),
            (33, 16),
            (128, 40),
            (128, 64),
            (7, 80),
            (64, 100),
        ] {
            let x = values(k * d, 3);
            let mut block = GramBlock::new(d);
            let n = block.stride();
            let rows = block.rows_mut(k);
            for (dst, src) in rows.chunks_exact_mut(n).zip(x.chunks_exact(d)) {
                dst[..d].copy_from_slice(src);
            }
            let gs: Vec<Vec<f64>> = Isa::available()
                .into_iter()
                .map(|isa| {
                    let mut g = vec![1.0f64; n * n];
                    block.add_upper_gram_on(isa, &mut g, &x);
                    g
                })
                .collect();
            for i in 0..d {
                for j in i..d {
                    let want: f64 = 1.0
                        + (0..k)
                            .map(|p| x[p * d + i] as f64 * x[p * d + j] as f64)
                            .sum::<f64>();
                    let tol = 1e-5 * (k as f64).sqrt();
                    for got in gs.iter().map(|g| g[i * n + j]) {
                        assert!(
                            (got - want).abs() < tol,
                            "{k}×{d} ({i}, {j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// SiLU and its derivative over the whole range the epilogue can meet (|v| up to 100, where
    /// e^−v leaves f32's range and is clamped), against f64: SiLU to a relative error below 1e-6
    /// (the reciprocal's Newton step bounds sigmoid's at ~2⁻²²), or absolute below 1e-26 for
    /// values under 1e-20 (sigmoid(v) for v < −87 is flushed to 0); silu' to an absolute
    /// 5e-7·(1 + |v|) (sigmoid's relative error, carried by h = v·s).
    #[test]
    fn silu_epilogue_is_accurate_over_the_whole_range() {
        let m = 4001;
        let a: Vec<f32> = (0..m).map(|i| (i as f32 - 2000.0) * 0.05).collect();
        let n = 19;
        let mut packed = PackedB::new();
        packed.pack(&vec![1.0; n], 1, n, false);
        let bias = vec![0.0; n];
        let (mut c, mut d) = (vec![0.0; m * n], vec![0.0; m * n]);
        matmul(
            m,
            1,
            &a,
            false,
            &packed,
            &mut c,
            Epilogue::BiasSiluKeep(&bias, &mut d),
        );
        let (mut worst, mut worst_d) = (0.0f64, 0.0f64);
        for (i, &v) in a.iter().enumerate() {
            let v = v as f64;
            let sig = 1.0 / (1.0 + (-v).exp());
            let dsilu = sig * (1.0 + v * (1.0 - sig));
            for j in 0..n {
                let (gd, gc) = (d[i * n + j] as f64, c[i * n + j] as f64);
                worst = worst.max((gc - v * sig).abs() / (v * sig).abs().max(1e-20));
                worst_d = worst_d.max((gd - dsilu).abs() / (1.0 + v.abs()));
            }
        }
        assert!(worst < 1e-6, "worst relative error of silu {worst}");
        // silu' = s + h(1 − s) lies in (−0.1, 1.1) and crosses zero, so its error is absolute;
        // h = v·s carries sigmoid's relative error times |v| into it.
        assert!(
            worst_d < 5e-7,
            "worst error of silu' over 1 + |v|: {worst_d}"
        );
    }

    /// Every epilogue against f64 on every kernel the CPU runs, over widths with a partial panel
    /// and an odd number of full ones; the AVX-512 and AVX2 kernels give the same bits.
    #[test]
    fn epilogues_apply_bias_silu_and_its_gradient() {
        for n in [21, 48] {
            let mut by_isa = Vec::new();
            for isa in Isa::available() {
                by_isa.push((isa, epilogues_on(isa, n)));
            }
            same_bits_above_portable(&by_isa);
        }
    }

    /// The epilogue checks of one kernel; returns every output, concatenated.
    fn epilogues_on(isa: Isa, n: usize) -> Vec<f32> {
        let (m, k) = (9, 11);
        let a = values(m * k, 3);
        let b = values(k * n, 4);
        let bias = values(n, 5);
        let mut packed = PackedB::new();
        packed.pack(&b, k, n, false);
        let z = reference(m, k, n, &a, false, &b);
        let mut c = vec![0.0; m * n];
        let mut d = vec![0.0; m * n];
        product(
            isa,
            m,
            k,
            &a,
            false,
            &packed,
            &mut c,
            Epilogue::BiasSiluKeep(&bias, &mut d),
        );
        let mut c2 = vec![0.0; m * n];
        product(
            isa,
            m,
            k,
            &a,
            false,
            &packed,
            &mut c2,
            Epilogue::BiasSilu(&bias),
        );
        for i in 0..m * n {
            let v = z[i] + bias[i % n] as f64;
            let sig = 1.0 / (1.0 + (-v).exp());
            assert!((d[i] as f64 - sig * (1.0 + v * (1.0 - sig))).abs() < 1e-6);
            assert!((c[i] as f64 - v * sig).abs() < 1e-6);
            assert!((c2[i] as f64 - v * sig).abs() < 1e-6);
        }
        let mut g = vec![0.0; m * n];
        let mut db = vec![f32::NAN; n];
        let mut g_packed = PackedB::new();
        g_packed.pack(&[f32::NAN; 3 * 5], 3, 5, false);
        product(
            isa,
            m,
            k,
            &a,
            false,
            &packed,
            &mut g,
            Epilogue::SiluGrad {
                dsilu: &d,
                db: &mut db,
                packed: &mut g_packed,
            },
        );
        // The packed copy is exactly what packing C would give, padding included.
        let mut want_packed = PackedB::new();
        want_packed.pack(&g, m, n, false);
        assert_eq!((g_packed.k(), g_packed.n()), (m, n));
        for j in 0..n.div_ceil(NR) {
            let (x, y) = (g_packed.panel(j), want_packed.panel(j));
            assert!(x.iter().zip(y).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
        for (j, &dbj) in db.iter().enumerate() {
            let mut col = 0.0f64;
            for i in 0..m {
                let at = i * n + j;
                let want = z[at] * d[at] as f64;
                assert!((g[at] as f64 - want).abs() < 1e-6);
                col += want;
            }
            assert!((dbj as f64 - col).abs() < 1e-5);
        }
        [c, d, c2, g, db].concat()
    }
}
