//! Small dense neural networks on the CPU, written for speed: a packed-panel single-precision
//! GEMM with fused epilogues (`gemm`), an MLP with SiLU activations, its backward pass and Adam
//! (`mlp`), a U-Net for images (`unet`) built from convolution, GroupNorm and resampling layers
//! (`conv`), and the SIMD helpers they use (`simd`).

pub mod conv;
pub mod gemm;
pub mod isa;
pub mod mlp;
pub mod simd;
pub mod unet;
pub mod weights;
pub mod winograd;

pub(crate) use simd::simd_dispatch;
