//! Vectorisation helpers: run-time AVX2 dispatch for elementwise loops and an e^x that
//! vectorises.

/// Defines `$name` that runs `$body` compiled for AVX2 when the kernels use AVX2 or wider
/// ([`crate::nn::isa::isa`], checked at run time) and for the baseline target otherwise. The default x86-64 target only has SSE2, which left the
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
                if $crate::nn::isa::isa() >= $crate::nn::isa::Isa::Avx2 {
                    // SAFETY: the CPU supports AVX2 (isa() only picks what the CPU runs).
                    unsafe { wide($($arg),*) };
                    return;
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use simd_dispatch;

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

/// ln x in f32 for normal positive x, to about 1 ulp, written so that a loop of it vectorises:
/// x = m·2ᵉ with m ∈ [√½, √2), then Cephes' `logf` polynomial in m − 1 and e·ln 2 split in
/// two parts.
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    let bits = x.to_bits();
    let mut e = ((bits >> 23) as i32 - 127) as f32;
    let mut m = f32::from_bits((bits & 0x007F_FFFF) | 0x3F80_0000);
    let big = m > std::f32::consts::SQRT_2;
    m = if big { 0.5 * m } else { m };
    e += if big { 1.0 } else { 0.0 };
    let x = m - 1.0;
    let z = x * x;
    let mut p = 7.037_683_6e-2f32;
    for c in [
        -1.151_461e-1,
        1.167_699_9e-1,
        -1.242_014_1e-1,
        1.424_932_3e-1,
        -1.666_805_8e-1,
        2.000_071_5e-1,
        -2.499_999_4e-1,
        3.333_333e-1,
    ] {
        p = p * x + c;
    }
    let y = p * x * z - 2.121_944_4e-4 * e - 0.5 * z;
    x + y + 0.693_359_4 * e
}

/// (cos θ, sin θ) for θ = (π/2)(q + f), quadrant q ∈ 0..4 and f ∈ [0, 1), to about 2⁻²³
/// absolute, written so that a loop of it vectorises: Cephes' `sinf`/`cosf` polynomials at
/// x = (π/2)f − π/4 ∈ [−π/4, π/4), rotated by π/4, then by the quadrant.
#[inline(always)]
pub fn sincos_quadrant(q: u32, f: f32) -> (f32, f32) {
    let x = std::f32::consts::FRAC_PI_2 * f - std::f32::consts::FRAC_PI_4;
    let z = x * x;
    let s = x + x * z * (-1.666_665_5e-1 + z * (8.332_161e-3 + z * -1.951_529_6e-4));
    let c = 1.0 - 0.5 * z + z * z * (4.166_664_6e-2 + z * (-1.388_731_6e-3 + z * 2.443_315_7e-5));
    // cos and sin of (π/2)f = x + π/4.
    let r = std::f32::consts::FRAC_1_SQRT_2;
    let (c, s) = ((c - s) * r, (s + c) * r);
    // Adding qπ/2 rotates (c, s) to (c, s), (−s, c), (−c, −s), (s, −c).
    let odd = q & 1 == 1;
    let (c, s) = if odd { (s, c) } else { (c, s) };
    let flip_c = ((q + 1) >> 1) & 1;
    let flip_s = q >> 1;
    (
        f32::from_bits(c.to_bits() ^ (flip_c << 31)),
        f32::from_bits(s.to_bits() ^ (flip_s << 31)),
    )
}

/// dst ← src in blocks of 16 values (the taps of an im2col row: 32–64 channels are 128–256
/// bytes).
#[inline(always)]
pub fn copy(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(16);
    let mut s = src.chunks_exact(16);
    for (a, b) in (&mut d).zip(&mut s) {
        let b: &[f32; 16] = b.try_into().expect("16 values");
        let a: &mut [f32; 16] = a.try_into().expect("16 values");
        *a = *b;
    }
    let (d, s) = (d.into_remainder(), s.remainder());
    // No `memcpy` call for the empty remainder of a multiple of 16 channels or for the one
    // value of a one-channel image (a call per value of the U-Net's input cost 3% of a step).
    match s.len() {
        0 => {}
        1 => d[0] = s[0],
        _ => d.copy_from_slice(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_ln_is_accurate() {
        let mut worst = 0.0f64;
        let mut x = 2.0f32.powi(-32);
        while x <= 1.0 {
            let want = (x as f64).ln();
            let got = ln_f32(x) as f64;
            // Relative, except near x = 1 where ln x → 0 (absolute there).
            worst = worst.max((got - want).abs() / want.abs().max(1e-3));
            x *= 1.000_37;
        }
        assert!(worst < 3e-7, "worst error {worst}");
    }

    #[test]
    fn fast_sincos_is_accurate() {
        let mut worst = 0.0f64;
        for q in 0..4u32 {
            for i in 0..10_000 {
                let f = i as f32 / 10_000.0;
                let theta = std::f64::consts::FRAC_PI_2 * (q as f64 + f as f64);
                let (c, s) = sincos_quadrant(q, f);
                worst = worst.max((c as f64 - theta.cos()).abs());
                worst = worst.max((s as f64 - theta.sin()).abs());
            }
        }
        assert!(worst < 3e-7, "worst absolute error {worst}");
    }

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
}

/// One cache line of f32 (64-byte aligned).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(64))]
pub(super) struct Line(pub(super) [f32; 16]);

/// A growable f32 buffer whose start is 64-byte aligned, so that 16-lane loads and stores at
/// multiples of 16 values never straddle two cache lines (an allocator's 16-byte alignment
/// splits every such access in two).
#[derive(Clone, Debug, Default)]
pub struct AlignedVec {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedVec {
    /// Sets the length to `len` values (values past the old length are zero) and returns them.
    pub fn resize(&mut self, len: usize) -> &mut [f32] {
        if len < self.len {
            // Values past `len` read as zero when the buffer grows again.
            self[len..].fill(0.0);
        }
        let lines = len.div_ceil(16).max(self.lines.len());
        self.lines.resize(lines, Line([0.0; 16]));
        self.len = len;
        self
    }
}

impl std::ops::Deref for AlignedVec {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // SAFETY: Line is repr(C) around [f32; 16], so the lines are contiguous f32, and
        // len ≤ 16·lines.len().
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<f32>(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedVec {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<f32>(), self.len) }
    }
}
