//! Vectorisation helpers: run-time AVX2 dispatch for elementwise loops and an e^x that
//! vectorises.

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

#[cfg(test)]
mod tests {
    use super::*;

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
