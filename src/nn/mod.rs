//! Small dense neural networks on the CPU, written for speed: a packed-panel single-precision
//! GEMM with fused epilogues (`gemm`), an MLP with SiLU activations, its backward pass and Adam
//! (`mlp`), and the SIMD helpers both use (`simd`).

pub mod gemm;
pub mod isa;
pub mod mlp;
pub mod simd;
pub mod weights;

pub(crate) use simd::simd_dispatch;
