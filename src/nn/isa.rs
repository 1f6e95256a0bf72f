//! Which instruction set the hand-written kernels use, chosen once per process at run time.
//!
//! Every kernel has a portable version; x86-64 CPUs with AVX2 + FMA get 8-lane kernels, and those
//! with AVX-512F as well get the GEMM's 16-lane micro-kernel (the epilogues, the Gram tiles and the
//! elementwise loops stay at 8 lanes there). The environment variable `OURO_ISA` (`portable`,
//! `avx2` or `avx512`) lowers the choice, e.g. to test and time the AVX2 path on an AVX-512 machine;
//! asking for more than the CPU has is refused by [`check_env`].
//!
//! On one machine and kernel the results are the same bits at every thread count. The AVX-512 and
//! AVX2 kernels also give the same bits as each other (each output sums the same fused
//! multiply-adds in the same order); the portable kernels round differently (no FMA, an exact
//! reciprocal in the sigmoid).

use std::sync::OnceLock;

/// An instruction set the kernels are written for, in increasing order of width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust, vectorised by the compiler at the target's baseline width.
    Portable,
    /// x86-64 AVX2 + FMA: 8 f32 lanes, 16 registers.
    Avx2,
    /// x86-64 AVX-512F (with AVX2 + FMA): 16 f32 lanes, 32 registers.
    Avx512,
}

impl Isa {
    /// The name `OURO_ISA` takes and `ouro bench` prints.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Which kernel each product and loop uses, for `ouro bench`.
    pub fn describe(self) -> &'static str {
        match self {
            Isa::Portable => {
                "portable (every product and loop in plain Rust at the target's baseline width)"
            }
            Isa::Avx2 => {
                "avx2 (GEMM micro-kernel 6 rows × 16 columns in 8-lane registers; epilogues, SiLU, \
                 Gram tiles and elementwise loops on 8 lanes)"
            }
            Isa::Avx512 => {
                "avx512 (GEMM micro-kernel 6 rows × 32 columns in 16-lane registers; epilogues, \
                 SiLU, Gram tiles and elementwise loops on 8 lanes)"
            }
        }
    }

    /// The widest instruction set this CPU runs.
    pub fn detected() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            if avx2 && std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if avx2 {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// Every instruction set this CPU runs, narrowest first (for tests that cover each kernel).
    pub fn available() -> Vec<Isa> {
        [Isa::Portable, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|&i| i <= Isa::detected())
            .collect()
    }
}

/// The instruction set `OURO_ISA` asks for (`None` when unset), or a message saying what is wrong.
fn requested() -> Result<Option<Isa>, String> {
    let Ok(v) = std::env::var("OURO_ISA") else {
        return Ok(None);
    };
    let want = match v.trim() {
        "portable" => Isa::Portable,
        "avx2" => Isa::Avx2,
        "avx512" => Isa::Avx512,
        other => {
            return Err(format!(
                "OURO_ISA = \"{other}\": expected \"portable\", \"avx2\" or \"avx512\""
            ));
        }
    };
    let have = Isa::detected();
    if want > have {
        return Err(format!(
            "OURO_ISA = \"{}\": this CPU runs at most \"{}\"",
            want.name(),
            have.name()
        ));
    }
    Ok(Some(want))
}

/// Checks `OURO_ISA`; the binary calls this first so that a bad value is one clear error.
pub fn check_env() -> Result<(), String> {
    requested().map(|_| ())
}

/// The instruction set the kernels use in this process: `OURO_ISA` when set and valid, else the
/// widest the CPU runs.
pub fn isa() -> Isa {
    static CHOSEN: OnceLock<Isa> = OnceLock::new();
    *CHOSEN.get_or_init(|| match requested() {
        Ok(Some(i)) => i,
        _ => Isa::detected(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_choice_is_one_the_cpu_runs() {
        let all = Isa::available();
        assert_eq!(all[0], Isa::Portable);
        assert!(all.contains(&isa()));
        assert_eq!(*all.last().unwrap(), Isa::detected());
    }
}
