//! A U-Net for images (Ronneberger et al. 2015, in the form DDPM uses, Ho et al. 2020), with
//! its forward pass, backward pass and parameters in PyTorch's module layout (`bench/unet.py`
//! is the same network in PyTorch, parameter for parameter).
//!
//! channels[i] feature maps at side/2^i; `blocks` residual blocks per level down and up, a
//! stride-2 3×3 convolution between levels down, nearest ×2 and a 3×3 convolution up, the
//! level's last activation down concatenated to the first block up; a middle of block,
//! [attention], block; GroupNorm, SiLU and a 3×3 convolution out. A residual block is
//! x + conv2(silu(norm2(conv1(silu(norm1(x))) + Linear(e)))) (a 1×1 convolution on the skip
//! when the channel count changes), with e = silu(Linear(silu(Linear(time embedding))) +
//! class embedding).
//!
//! The network is a fixed program of [`Op`]s over numbered activations, so the backward pass
//! walks it in reverse and a skip connection's gradient is the sum of its two consumers'.

use super::conv::{
    Conv2d, ConvScratch, Dims, GradMode, GroupNorm, PackedConv, add_image_bias, concat,
    concat_backward, deliver, image_bias_backward, upsample2, upsample2_backward,
};
use super::simd::{AlignedVec, exp_f32};
use rand::RngExt;
use rand_distr::Distribution as _;

/// The architecture of a U-Net.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnetShape {
    /// Image side in pixels (the images are square).
    pub side: usize,
    /// Image channels (1 for greyscale).
    pub in_ch: usize,
    /// Feature maps per level, from full resolution down.
    pub channels: Vec<usize>,
    /// Residual blocks per level (down and up).
    pub blocks: usize,
    /// GroupNorm groups (dividing every channel count).
    pub groups: usize,
    /// Classes of a class-conditional network (0: unconditional); the class embedding has
    /// classes + 1 rows, the last one "no class".
    pub classes: usize,
    /// Self-attention between the middle blocks.
    pub attention: bool,
}

impl UnetShape {
    /// Width of the sinusoidal time embedding the network takes (channels[0]).
    pub fn time_width(&self) -> usize {
        self.channels[0]
    }

    /// Width of the embedding every block receives (4·channels[0]).
    pub fn emb_width(&self) -> usize {
        4 * self.channels[0]
    }

    /// Values per image (side²·in_ch).
    pub fn image_len(&self) -> usize {
        self.side * self.side * self.in_ch
    }

    /// Why this shape cannot be built, if it cannot: the side must halve exactly at every level
    /// but the last, and the groups must divide every channel count.
    pub fn check(&self) -> Result<(), String> {
        let levels = self.channels.len();
        if levels == 0 || self.channels.contains(&0) {
            return Err("channels: expected one or more positive widths".into());
        }
        if self.blocks == 0 {
            return Err("blocks: expected at least 1".into());
        }
        let div = 1usize << (levels - 1);
        if self.side == 0 || !self.side.is_multiple_of(div) {
            return Err(format!(
                "{levels} levels halve the image {} times; its side {} is not a multiple of {div}",
                levels - 1,
                self.side
            ));
        }
        if self.groups == 0 {
            return Err("groups: expected at least 1".into());
        }
        if let Some(c) = self
            .channels
            .iter()
            .find(|&&c| !c.is_multiple_of(self.groups))
        {
            return Err(format!(
                "groups = {} does not divide the {c} channels of a level",
                self.groups
            ));
        }
        if !self.channels[0].is_multiple_of(2) {
            return Err(
                "channels[0] must be even (it is the sinusoidal time embedding's width)".into(),
            );
        }
        Ok(())
    }
}

/// A linear layer y = W x + b with W (out × in) row-major at `off` and b after it.
#[derive(Clone, Copy, Debug)]
struct Linear {
    i: usize,
    o: usize,
    off: usize,
}

/// A residual block's modules (indices into [`Unet`]'s convolutions and norms).
#[derive(Clone, Debug)]
struct Block {
    norm1: usize,
    conv1: usize,
    emb: Linear,
    norm2: usize,
    conv2: usize,
    skip: Option<usize>,
}

/// A norm (and SiLU) followed by a convolution, as the backward pass sees it.
#[derive(Clone, Copy, Debug)]
struct Stage {
    norm: usize,
    conv: usize,
}

/// What the forward pass saved of a norm stage: its input x, the norm's statistics, its output
/// a and, after a SiLU, silu'(y).
#[derive(Clone, Copy)]
struct Saved<'a> {
    x: &'a [f32],
    stats: &'a [f32],
    a: &'a [f32],
    slope: Option<&'a [f32]>,
}

/// Self-attention's modules.
#[derive(Clone, Debug)]
struct Attention {
    norm: usize,
    qkv: usize,
    proj: usize,
}

/// One step of the network's program: reads activations, writes one.
#[derive(Clone, Copy, Debug)]
enum Op {
    Conv { conv: usize, input: usize },
    Block { block: usize, input: usize },
    Concat { a: usize, b: usize },
    Upsample { input: usize },
    Attention { input: usize },
    NormSilu { norm: usize, input: usize },
}

/// A U-Net: its shape, where each module's parameters lie in the flat buffer, and its program.
#[derive(Clone, Debug)]
pub struct Unet {
    shape: UnetShape,
    /// (name, shape, offset) of every tensor, in PyTorch's `state_dict` order.
    tensors: Vec<(String, Vec<usize>, usize)>,
    params: usize,
    time0: Linear,
    time2: Linear,
    label: Option<usize>,
    convs: Vec<(Conv2d, usize)>,
    norms: Vec<(GroupNorm, usize)>,
    blocks: Vec<Block>,
    attention: Option<Attention>,
    /// The program; op i writes activation i + 1 (activation 0 is the input image).
    ops: Vec<Op>,
    /// Size of every activation for one image (n = 1).
    dims: Vec<Dims>,
}

/// Assigns parameter offsets in PyTorch's registration order.
struct Builder {
    tensors: Vec<(String, Vec<usize>, usize)>,
    off: usize,
    convs: Vec<(Conv2d, usize)>,
    norms: Vec<(GroupNorm, usize)>,
}

impl Builder {
    fn tensor(&mut self, name: String, shape: Vec<usize>) -> usize {
        let off = self.off;
        self.off += shape.iter().product::<usize>();
        self.tensors.push((name, shape, off));
        off
    }

    fn linear(&mut self, name: &str, i: usize, o: usize) -> Linear {
        let off = self.tensor(format!("{name}.weight"), vec![o, i]);
        self.tensor(format!("{name}.bias"), vec![o]);
        Linear { i, o, off }
    }

    fn conv(&mut self, name: &str, conv: Conv2d) -> usize {
        let k = conv.k;
        let off = self.tensor(format!("{name}.weight"), vec![conv.cout, conv.cin, k, k]);
        self.tensor(format!("{name}.bias"), vec![conv.cout]);
        self.convs.push((conv, off));
        self.convs.len() - 1
    }

    fn norm(&mut self, name: &str, c: usize, groups: usize) -> usize {
        let off = self.tensor(format!("{name}.weight"), vec![c]);
        self.tensor(format!("{name}.bias"), vec![c]);
        self.norms.push((GroupNorm { c, groups }, off));
        self.norms.len() - 1
    }

    fn block(&mut self, name: &str, cin: usize, cout: usize, emb: usize, groups: usize) -> Block {
        Block {
            norm1: self.norm(&format!("{name}.norm1"), cin, groups),
            conv1: self.conv(&format!("{name}.conv1"), Conv2d::new(cin, cout, 3)),
            emb: self.linear(&format!("{name}.emb"), emb, cout),
            norm2: self.norm(&format!("{name}.norm2"), cout, groups),
            conv2: self.conv(&format!("{name}.conv2"), Conv2d::new(cout, cout, 3)),
            skip: (cin != cout)
                .then(|| self.conv(&format!("{name}.skip"), Conv2d::new(cin, cout, 1))),
        }
    }
}

impl Unet {
    /// The network of `shape` (which must pass [`UnetShape::check`]).
    pub fn new(shape: &UnetShape) -> Self {
        assert_eq!(shape.check(), Ok(()), "U-Net shape");
        let (c0, e, g) = (shape.channels[0], shape.emb_width(), shape.groups);
        let mut b = Builder {
            tensors: Vec::new(),
            off: 0,
            convs: Vec::new(),
            norms: Vec::new(),
        };
        let time0 = b.linear("time.0", c0, e);
        let time2 = b.linear("time.2", e, e);
        let label = (shape.classes > 0)
            .then(|| b.tensor("label.weight".into(), vec![shape.classes + 1, e]));
        let mut ops = Vec::new();
        let mut blocks = Vec::new();
        let conv_in = b.conv("conv_in", Conv2d::new(shape.in_ch, c0, 3));
        ops.push(Op::Conv {
            conv: conv_in,
            input: 0,
        });
        let levels = shape.channels.len();
        let mut c = c0;
        let mut skips = Vec::new();
        let mut down_blocks = Vec::new();
        for (i, &ch) in shape.channels.iter().enumerate() {
            for j in 0..shape.blocks {
                let cin = if j == 0 { c } else { ch };
                down_blocks.push(b.block(&format!("down.{i}.{j}"), cin, ch, e, g));
            }
            c = ch;
        }
        let downsample: Vec<usize> = (0..levels - 1)
            .map(|i| {
                let ch = shape.channels[i];
                let conv = Conv2d {
                    stride: 2,
                    ..Conv2d::new(ch, ch, 3)
                };
                b.conv(&format!("downsample.{i}"), conv)
            })
            .collect();
        for i in 0..levels {
            for j in 0..shape.blocks {
                blocks.push(down_blocks[i * shape.blocks + j].clone());
                ops.push(Op::Block {
                    block: blocks.len() - 1,
                    input: ops.len(),
                });
            }
            skips.push(ops.len());
            if i + 1 < levels {
                ops.push(Op::Conv {
                    conv: downsample[i],
                    input: ops.len(),
                });
            }
        }
        blocks.push(b.block("mid1", c, c, e, g));
        ops.push(Op::Block {
            block: blocks.len() - 1,
            input: ops.len(),
        });
        let attention = shape.attention.then(|| Attention {
            norm: b.norm("attn.norm", c, g),
            qkv: b.conv("attn.qkv", Conv2d::new(c, 3 * c, 1)),
            proj: b.conv("attn.proj", Conv2d::new(c, c, 1)),
        });
        if attention.is_some() {
            ops.push(Op::Attention { input: ops.len() });
        }
        blocks.push(b.block("mid2", c, c, e, g));
        ops.push(Op::Block {
            block: blocks.len() - 1,
            input: ops.len(),
        });
        let mut up_blocks = Vec::new();
        let mut upsample = Vec::new();
        for (j, i) in (0..levels).rev().enumerate() {
            let ch = shape.channels[i];
            for k in 0..shape.blocks {
                let cin = if k == 0 { c + ch } else { ch };
                up_blocks.push(b.block(&format!("up.{j}.{k}"), cin, ch, e, g));
            }
            c = ch;
            if i > 0 {
                let prev = shape.channels[i - 1];
                upsample.push(b.conv(&format!("upsample.{j}"), Conv2d::new(ch, prev, 3)));
                c = prev;
            }
        }
        for (j, i) in (0..levels).rev().enumerate() {
            ops.push(Op::Concat {
                a: ops.len(),
                b: skips[i],
            });
            for k in 0..shape.blocks {
                blocks.push(up_blocks[j * shape.blocks + k].clone());
                ops.push(Op::Block {
                    block: blocks.len() - 1,
                    input: ops.len(),
                });
            }
            if i > 0 {
                ops.push(Op::Upsample { input: ops.len() });
                ops.push(Op::Conv {
                    conv: upsample[j],
                    input: ops.len(),
                });
            }
        }
        let norm_out = b.norm("norm_out", c0, g);
        ops.push(Op::NormSilu {
            norm: norm_out,
            input: ops.len(),
        });
        let conv_out = b.conv("conv_out", Conv2d::new(c0, shape.in_ch, 3));
        ops.push(Op::Conv {
            conv: conv_out,
            input: ops.len(),
        });
        let mut net = Unet {
            shape: shape.clone(),
            tensors: b.tensors,
            params: b.off,
            time0,
            time2,
            label,
            convs: b.convs,
            norms: b.norms,
            blocks,
            attention,
            ops,
            dims: Vec::new(),
        };
        net.dims = net.activation_dims(1);
        net
    }

    /// The shape this network was built from.
    pub fn shape(&self) -> &UnetShape {
        &self.shape
    }

    /// Number of parameters.
    pub fn params(&self) -> usize {
        self.params
    }

    /// (name, shape, offset) of every parameter tensor, in PyTorch's `state_dict` order.
    pub fn tensors(&self) -> &[(String, Vec<usize>, usize)] {
        &self.tensors
    }

    /// Adds the parameters to `file` under their PyTorch names and shapes (`bench/unet.py`'s
    /// `state_dict`).
    pub fn put(&self, file: &mut crate::data::tensors::TensorFile, params: &[f32]) {
        for (name, shape, off) in &self.tensors {
            let len: usize = shape.iter().product();
            file.put(name, shape, &params[*off..off + len]);
        }
    }

    /// The parameters [`Unet::put`] (or PyTorch's `save_file(net.state_dict())`) wrote to
    /// `file`, each tensor checked to be there with this network's shape.
    pub fn take(&self, file: &crate::data::tensors::TensorFile) -> crate::error::Result<Vec<f32>> {
        let mut p = vec![0.0f32; self.params];
        for (name, shape, off) in &self.tensors {
            if !file.has(name) {
                return Err(file.error(format!(
                    "no tensor {name}: the U-Net's architecture differs from the file's"
                )));
            }
            let v = file.shaped::<f32>(name, shape)?;
            p[*off..off + v.len()].copy_from_slice(&v);
        }
        Ok(p)
    }

    /// The size of every activation for a batch of `n` images.
    fn activation_dims(&self, n: usize) -> Vec<Dims> {
        let s = &self.shape;
        let mut dims = vec![Dims {
            n,
            h: s.side,
            w: s.side,
            c: s.in_ch,
        }];
        for op in &self.ops {
            let d = match *op {
                Op::Conv { conv, input } => self.convs[conv].0.out_dims(dims[input]),
                Op::Block { block, input } => {
                    let cout = self.convs[self.blocks[block].conv2].0.cout;
                    dims[input].with_c(cout)
                }
                Op::Concat { a, b } => dims[a].with_c(dims[a].c + dims[b].c),
                Op::Upsample { input } => Dims {
                    h: 2 * dims[input].h,
                    w: 2 * dims[input].w,
                    ..dims[input]
                },
                Op::Attention { input } | Op::NormSilu { input, .. } => dims[input],
            };
            dims.push(d);
        }
        dims
    }

    /// Multiply-adds of one forward pass per image (convolutions and attention; the norms and
    /// the embedding MLP are a small fraction), for GFLOP/s figures: FLOPs = 2 × this.
    pub fn macs_per_image(&self) -> f64 {
        let mut macs = 0.0;
        for (op, d) in self.ops.iter().zip(&self.dims[1..]) {
            let conv = |i: usize, d: Dims| {
                let c = self.convs[i].0;
                (d.h * d.w * c.cout * c.cin * c.k * c.k) as f64
            };
            macs += match *op {
                Op::Conv { conv: i, .. } => conv(i, *d),
                Op::Block { block, .. } => {
                    let b = &self.blocks[block];
                    conv(b.conv1, *d) + conv(b.conv2, *d) + b.skip.map_or(0.0, |s| conv(s, *d))
                }
                Op::Attention { .. } => {
                    let a = self.attention.as_ref().expect("attention");
                    let hw = (d.h * d.w) as f64;
                    conv(a.qkv, *d) + conv(a.proj, *d) + 2.0 * hw * hw * d.c as f64
                }
                _ => 0.0,
            };
        }
        macs
    }

    /// PyTorch's default initialisation: a convolution's or linear layer's weights and bias
    /// U(−1/√fan_in, 1/√fan_in) (kaiming_uniform with a = √5), GroupNorm γ = 1 and β = 0, the
    /// class embedding N(0, 1).
    pub fn init(&self, rng: &mut crate::rng::Stream) -> Vec<f32> {
        let mut p = vec![0.0f32; self.params];
        for (name, shape, off) in &self.tensors {
            let len: usize = shape.iter().product();
            let dst = &mut p[*off..off + len];
            let fan_in = |w: &str| {
                self.tensors
                    .iter()
                    .find(|(n, _, _)| n == w)
                    .map(|(_, s, _)| s[1..].iter().product::<usize>())
                    .expect("weight of a bias")
            };
            if name.starts_with("label") {
                for v in dst {
                    *v = rand_distr::StandardNormal.sample(rng);
                }
            } else if name.contains("norm") {
                dst.fill(if name.ends_with("weight") { 1.0 } else { 0.0 });
            } else {
                let weight = name.replace(".bias", ".weight");
                let bound = 1.0 / (fan_in(&weight) as f32).sqrt();
                for v in dst {
                    *v = rng.random_range(-bound..bound);
                }
            }
        }
        p
    }

    /// Packs every convolution's weights (with the transposes a backward pass needs when
    /// `backward`), the convolutions in parallel (rayon).
    pub fn pack(&self, params: &[f32], backward: bool) -> Packed {
        let mut packed = Packed {
            convs: vec![PackedConv::default(); self.convs.len()],
        };
        self.repack(params, &mut packed, backward);
        packed
    }

    /// [`Unet::pack`] into an existing packing.
    pub fn repack(&self, params: &[f32], packed: &mut Packed, backward: bool) {
        use rayon::prelude::*;
        self.convs.par_iter().zip(&mut packed.convs).for_each_init(
            Vec::new,
            |scratch, ((conv, off), pc)| {
                conv.pack(&params[*off..off + conv.weights()], pc, backward, scratch);
            },
        );
    }
}

/// The convolutions' packed weights.
#[derive(Clone, Debug)]
pub struct Packed {
    convs: Vec<PackedConv>,
}

/// A residual block's saved activations.
#[derive(Default)]
struct BlockCache {
    stats1: Vec<f32>,
    a1: AlignedVec,
    /// silu'(y) of norm1's output y (training only).
    slope1: AlignedVec,
    h1: AlignedVec,
    stats2: Vec<f32>,
    a2: AlignedVec,
    /// silu'(y) of norm2's output y (training only).
    slope2: AlignedVec,
    /// The block's embedding projection, n × cout.
    e: Vec<f32>,
}

/// Self-attention's saved activations.
#[derive(Default)]
struct AttnCache {
    stats: Vec<f32>,
    y: Vec<f32>,
    qkv: Vec<f32>,
    /// Softmax weights, n × hw × hw.
    weights: Vec<f32>,
    /// Attention output before the projection.
    out: Vec<f32>,
}

/// The buffers of a forward and backward pass over up to a given number of images (one per
/// worker), reused between calls.
#[derive(Default)]
pub struct Workspace {
    acts: Vec<AlignedVec>,
    grads: Vec<AlignedVec>,
    /// Per op: the saved GroupNorm statistics of a `NormSilu` op, and silu'(y) of its output.
    norm_cache: Vec<AlignedVec>,
    slopes: Vec<AlignedVec>,
    /// Whether the forward pass keeps what [`Unet::backward`] needs beyond the activations.
    train: bool,
    blocks: Vec<BlockCache>,
    attn: AttnCache,
    /// Time path: the embedding input, Linear 0's output, its SiLU, Linear 2's output plus the
    /// class embedding, and e = silu of that (n × width each).
    temb: Vec<f32>,
    t0: Vec<f32>,
    s0: Vec<f32>,
    t2: Vec<f32>,
    e: Vec<f32>,
    /// Class index per image (classes = ∅) for a class-conditional network.
    labels: Vec<u32>,
    conv: ConvScratch,
    /// Scratch of the backward pass.
    tmp: AlignedVec,
    tmp2: AlignedVec,
    de: Vec<f32>,
    n: usize,
}

impl Workspace {
    /// Buffers for training: the forward pass also saves the SiLUs' derivatives that
    /// [`Unet::backward`] reads (one activation's size per GroupNorm + SiLU).
    pub fn for_training() -> Self {
        Self {
            train: true,
            ..Self::default()
        }
    }

    /// The network's output of the last forward pass (n × image_len).
    pub fn output(&self) -> &[f32] {
        self.acts.last().map_or(&[], |v| &v[..])
    }
}

fn silu(v: f32) -> f32 {
    v / (1.0 + exp_f32(-v))
}

fn silu_grad(v: f32) -> f32 {
    let s = 1.0 / (1.0 + exp_f32(-v));
    s + v * s * (1.0 - s)
}

/// y (n × o) = x (n × i) Wᵀ + b for the linear layer at `l` (small: plain loops, f32).
fn linear_forward(l: Linear, p: &[f32], x: &[f32], n: usize, y: &mut Vec<f32>) {
    y.resize(n * l.o, 0.0);
    let (w, b) = (
        &p[l.off..l.off + l.i * l.o],
        &p[l.off + l.i * l.o..l.off + (l.i + 1) * l.o],
    );
    for r in 0..n {
        let xr = &x[r * l.i..(r + 1) * l.i];
        for o in 0..l.o {
            let wr = &w[o * l.i..(o + 1) * l.i];
            y[r * l.o + o] = b[o] + wr.iter().zip(xr).map(|(a, b)| a * b).sum::<f32>();
        }
    }
}

/// Backward pass of [`linear_forward`]: adds dW, db to `g` and, when given, dx to `dx`.
fn linear_backward(
    l: Linear,
    p: &[f32],
    x: &[f32],
    dy: &[f32],
    n: usize,
    g: &mut [f32],
    dx: Option<&mut [f32]>,
) {
    let (gw, gb) = g[l.off..l.off + (l.i + 1) * l.o].split_at_mut(l.i * l.o);
    for r in 0..n {
        let xr = &x[r * l.i..(r + 1) * l.i];
        for o in 0..l.o {
            let d = dy[r * l.o + o];
            gb[o] += d;
            for (gv, &xv) in gw[o * l.i..(o + 1) * l.i].iter_mut().zip(xr) {
                *gv += d * xv;
            }
        }
    }
    if let Some(dx) = dx {
        let w = &p[l.off..l.off + l.i * l.o];
        for r in 0..n {
            for o in 0..l.o {
                let d = dy[r * l.o + o];
                for (dv, &wv) in dx[r * l.i..(r + 1) * l.i]
                    .iter_mut()
                    .zip(&w[o * l.i..(o + 1) * l.i])
                {
                    *dv += d * wv;
                }
            }
        }
    }
}

fn sized(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    v.resize(len, 0.0);
    &mut v[..len]
}

impl Unet {
    /// Forward pass for `n` images: `x` (n × image_len, (y, x, channel) order), each image's
    /// sinusoidal time embedding `temb` (n × time_width) and, for a class-conditional network,
    /// its class (`classes` for "no class"). The output is [`Workspace::output`]; the activations
    /// stay in `ws` for [`Unet::backward`].
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        p: &[f32],
        packed: &Packed,
        x: &[f32],
        temb: &[f32],
        labels: Option<&[u32]>,
        n: usize,
        ws: &mut Workspace,
    ) {
        let dims = self.activation_dims(n);
        ws.n = n;
        ws.acts.resize_with(dims.len(), AlignedVec::default);
        ws.blocks
            .resize_with(self.blocks.len(), BlockCache::default);
        ws.norm_cache.resize_with(self.ops.len(), Default::default);
        ws.slopes.resize_with(self.ops.len(), Default::default);
        let train = ws.train;
        ws.acts[0]
            .resize(dims[0].len())
            .copy_from_slice(&x[..dims[0].len()]);
        // e = silu(W2 silu(W0 temb + b0) + b2 + label)
        let e = self.shape.emb_width();
        ws.temb.clear();
        ws.temb
            .extend_from_slice(&temb[..n * self.shape.time_width()]);
        linear_forward(self.time0, p, &ws.temb, n, &mut ws.t0);
        ws.s0.clear();
        ws.s0.extend(ws.t0.iter().map(|&v| silu(v)));
        linear_forward(self.time2, p, &ws.s0, n, &mut ws.t2);
        ws.labels.clear();
        if let Some(off) = self.label {
            let labels = labels.expect("a class-conditional U-Net needs labels");
            ws.labels.extend_from_slice(&labels[..n]);
            for (r, &y) in ws.labels.iter().enumerate() {
                assert!(y as usize <= self.shape.classes, "label {y} out of range");
                let row = &p[off + y as usize * e..off + (y as usize + 1) * e];
                for (v, &l) in ws.t2[r * e..(r + 1) * e].iter_mut().zip(row) {
                    *v += l;
                }
            }
        }
        ws.e.clear();
        ws.e.extend(ws.t2.iter().map(|&v| silu(v)));
        for (i, op) in self.ops.iter().enumerate() {
            let (done, rest) = ws.acts.split_at_mut(i + 1);
            let out = rest[0].resize(dims[i + 1].len());
            match *op {
                Op::Conv { conv, input } => {
                    let x = &done[input];
                    self.conv_forward(conv, p, packed, x, dims[input], out, &mut ws.conv);
                }
                Op::Block { block, input } => {
                    let cache = &mut ws.blocks[block];
                    self.block_forward(
                        block,
                        p,
                        packed,
                        &done[input],
                        dims[input],
                        &ws.e,
                        cache,
                        out,
                        &mut ws.conv,
                        train,
                    );
                }
                Op::Concat { a, b } => concat(&done[a], dims[a].c, &done[b], dims[b].c, out),
                Op::Upsample { input } => upsample2(&done[input], dims[input], out),
                Op::Attention { input } => self.attention_forward(
                    p,
                    packed,
                    &done[input],
                    dims[input],
                    &mut ws.attn,
                    out,
                    &mut ws.conv,
                ),
                Op::NormSilu { norm, input } => {
                    let (gn, off) = self.norms[norm];
                    let d = dims[input];
                    let stats = ws.norm_cache[i].resize(d.n * gn.stats_len());
                    let slope = train.then(|| ws.slopes[i].resize(d.len()));
                    gn.forward(
                        &done[input],
                        d,
                        &p[off..off + gn.params()],
                        stats,
                        out,
                        true,
                        slope,
                    );
                }
            }
        }
    }

    /// Convolution `i`'s bias in the parameters `p`.
    fn conv_bias<'p>(&self, i: usize, p: &'p [f32]) -> &'p [f32] {
        let (c, off) = self.convs[i];
        &p[off + c.weights()..off + c.params()]
    }

    /// y = conv_i(x) + b_i for the batch `d`.
    #[allow(clippy::too_many_arguments)]
    fn conv_forward(
        &self,
        i: usize,
        p: &[f32],
        packed: &Packed,
        x: &[f32],
        d: Dims,
        y: &mut [f32],
        scratch: &mut ConvScratch,
    ) {
        let bias = self.conv_bias(i, p);
        self.convs[i]
            .0
            .forward(x, d, &packed.convs[i], bias, y, false, scratch);
    }

    #[allow(clippy::too_many_arguments)]
    fn block_forward(
        &self,
        block: usize,
        p: &[f32],
        packed: &Packed,
        x: &[f32],
        d: Dims,
        e: &[f32],
        cache: &mut BlockCache,
        out: &mut [f32],
        conv_scratch: &mut ConvScratch,
        train: bool,
    ) {
        let b = &self.blocks[block];
        let (n1, o1) = self.norms[b.norm1];
        let c1 = self.convs[b.conv1].0;
        let (n2, o2) = self.norms[b.norm2];
        let dout = d.with_c(c1.cout);
        n1.forward(
            x,
            d,
            &p[o1..o1 + n1.params()],
            sized(&mut cache.stats1, d.n * n1.stats_len()),
            cache.a1.resize(d.len()),
            true,
            train.then(|| cache.slope1.resize(d.len())),
        );
        let h1 = cache.h1.resize(dout.len());
        self.conv_forward(b.conv1, p, packed, &cache.a1, d, h1, conv_scratch);
        linear_forward(b.emb, p, e, d.n, &mut cache.e);
        add_image_bias(&mut cache.h1, dout, &cache.e);
        n2.forward(
            &cache.h1,
            dout,
            &p[o2..o2 + n2.params()],
            sized(&mut cache.stats2, d.n * n2.stats_len()),
            cache.a2.resize(dout.len()),
            true,
            train.then(|| cache.slope2.resize(dout.len())),
        );
        self.conv_forward(b.conv2, p, packed, &cache.a2, dout, out, conv_scratch);
        match b.skip {
            Some(s) => {
                let cs = self.convs[s].0;
                cs.forward(x, d, &packed.convs[s], &[], out, true, conv_scratch);
                let bs = self.conv_bias(s, p);
                for row in out.chunks_exact_mut(cs.cout) {
                    for (v, &b) in row.iter_mut().zip(bs) {
                        *v += b;
                    }
                }
            }
            None => {
                for (v, &xv) in out.iter_mut().zip(x) {
                    *v += xv;
                }
            }
        }
    }

    /// One-head self-attention over each image's pixels (see `bench/unet.py`'s `Attention`).
    #[allow(clippy::too_many_arguments)]
    fn attention_forward(
        &self,
        p: &[f32],
        packed: &Packed,
        x: &[f32],
        d: Dims,
        cache: &mut AttnCache,
        out: &mut [f32],
        conv_scratch: &mut ConvScratch,
    ) {
        let a = self.attention.as_ref().expect("attention");
        let (gn, go) = self.norms[a.norm];
        let (c, hw) = (d.c, d.h * d.w);
        gn.forward(
            x,
            d,
            &p[go..go + gn.params()],
            sized(&mut cache.stats, d.n * gn.stats_len()),
            sized(&mut cache.y, d.len()),
            false,
            None,
        );
        let qkv = sized(&mut cache.qkv, d.len() * 3);
        self.conv_forward(a.qkv, p, packed, &cache.y, d, qkv, conv_scratch);
        let scale = 1.0 / (c as f32).sqrt();
        let weights = sized(&mut cache.weights, d.n * hw * hw);
        let att = sized(&mut cache.out, d.len());
        for img in 0..d.n {
            let q = &cache.qkv[img * hw * 3 * c..(img + 1) * hw * 3 * c];
            for i in 0..hw {
                let qi = &q[i * 3 * c..i * 3 * c + c];
                let w = &mut weights[(img * hw + i) * hw..(img * hw + i + 1) * hw];
                let mut max = f32::NEG_INFINITY;
                for (j, wj) in w.iter_mut().enumerate() {
                    let kj = &q[j * 3 * c + c..j * 3 * c + 2 * c];
                    *wj = scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>();
                    max = max.max(*wj);
                }
                let mut sum = 0.0f32;
                for wj in w.iter_mut() {
                    *wj = exp_f32(*wj - max);
                    sum += *wj;
                }
                let o = &mut att[(img * hw + i) * c..(img * hw + i + 1) * c];
                o.fill(0.0);
                for (j, wj) in w.iter_mut().enumerate() {
                    *wj /= sum;
                    let vj = &q[j * 3 * c + 2 * c..(j + 1) * 3 * c];
                    for (ov, &vv) in o.iter_mut().zip(vj) {
                        *ov += *wj * vv;
                    }
                }
            }
        }
        self.conv_forward(a.proj, p, packed, &cache.out, d, out, conv_scratch);
        for (v, &xv) in out.iter_mut().zip(x) {
            *v += xv;
        }
    }

    /// Backward pass of the last [`Unet::forward`] in `ws` for the output gradient `dout`
    /// (n × image_len): adds every parameter's gradient to `grads` (the layout of the
    /// parameters).
    pub fn backward(
        &self,
        p: &[f32],
        packed: &Packed,
        dout: &[f32],
        ws: &mut Workspace,
        grads: &mut [f32],
    ) {
        assert!(ws.train, "Unet::backward needs a Workspace::for_training");
        let n = ws.n;
        let dims = self.activation_dims(n);
        // Each activation's gradient is written by the first layer (in backward order) that
        // reads the activation and added to by the others, so the buffers need no zeroing;
        // `written` records which have been written.
        ws.grads.resize_with(dims.len(), AlignedVec::default);
        for (g, d) in ws.grads.iter_mut().zip(&dims) {
            g.resize(d.len());
        }
        let mut written = vec![false; dims.len()];
        ws.grads
            .last_mut()
            .expect("output")
            .copy_from_slice(&dout[..dims.last().expect("dims").len()]);
        written[dims.len() - 1] = true;
        let e = self.shape.emb_width();
        ws.de.clear();
        ws.de.resize(n * e, 0.0);
        for (i, op) in self.ops.iter().enumerate().rev() {
            assert!(
                written[i + 1],
                "the gradient of activation {} was never written",
                i + 1
            );
            let (before, after) = ws.grads.split_at_mut(i + 1);
            let dy = &after[0];
            let mut mode = |k: usize| {
                let m = if written[k] {
                    GradMode::Add
                } else {
                    GradMode::Overwrite
                };
                written[k] = true;
                m
            };
            match *op {
                Op::Conv { conv, input } => {
                    let (c, off) = self.convs[conv];
                    let dx = (input > 0).then_some(&mut before[input][..]);
                    let m = if input > 0 {
                        mode(input)
                    } else {
                        GradMode::Add
                    };
                    c.backward(
                        &ws.acts[input],
                        dims[input],
                        dy,
                        &packed.convs[conv],
                        &mut grads[off..off + c.params()],
                        dx,
                        m,
                        &mut ws.conv,
                    );
                }
                Op::Block { block, input } => {
                    self.block_backward(
                        block,
                        p,
                        packed,
                        &ws.acts[input],
                        dims[input],
                        &ws.e,
                        &ws.blocks[block],
                        dy,
                        (&mut before[input], mode(input)),
                        &mut ws.de,
                        grads,
                        &mut ws.conv,
                        (&mut ws.tmp, &mut ws.tmp2),
                    );
                }
                Op::Concat { a, b } => {
                    let (ca, cb) = (dims[a].c, dims[b].c);
                    let (ma, mb) = (mode(a), mode(b));
                    // a > b: split the borrow
                    let (lo, hi) = before.split_at_mut(a);
                    concat_backward(dy, (ca, &mut hi[0], ma), (cb, &mut lo[b], mb));
                }
                Op::Upsample { input } => {
                    let m = mode(input);
                    upsample2_backward(dy, dims[input], &mut before[input], m);
                }
                Op::Attention { input } => {
                    self.attention_backward(
                        p,
                        packed,
                        &ws.acts[input],
                        dims[input],
                        &ws.attn,
                        dy,
                        (&mut before[input], mode(input)),
                        grads,
                        &mut ws.conv,
                        (&mut ws.tmp, &mut ws.tmp2),
                    );
                }
                Op::NormSilu { norm, input } => {
                    let (gn, off) = self.norms[norm];
                    let stats = &ws.norm_cache[i];
                    let (pg, gg) = (
                        &p[off..off + gn.params()],
                        &mut grads[off..off + gn.params()],
                    );
                    let m = mode(input);
                    gn.backward(
                        &ws.acts[input],
                        stats,
                        dims[input],
                        pg,
                        dy,
                        gg,
                        &mut before[input],
                        m,
                        Some(&ws.slopes[i]),
                    );
                }
            }
        }
        // the time path: de → dt2 → (label, W2) → ds0 → dt0 → W0
        let dt2: Vec<f32> = ws
            .de
            .iter()
            .zip(&ws.t2)
            .map(|(&g, &v)| g * silu_grad(v))
            .collect();
        if let Some(off) = self.label {
            for (r, &y) in ws.labels.iter().enumerate() {
                let row = &mut grads[off + y as usize * e..off + (y as usize + 1) * e];
                for (g, &d) in row.iter_mut().zip(&dt2[r * e..(r + 1) * e]) {
                    *g += d;
                }
            }
        }
        let mut ds0 = vec![0.0f32; n * e];
        linear_backward(self.time2, p, &ws.s0, &dt2, n, grads, Some(&mut ds0));
        let dt0: Vec<f32> = ds0
            .iter()
            .zip(&ws.t0)
            .map(|(&g, &v)| g * silu_grad(v))
            .collect();
        linear_backward(self.time0, p, &ws.temb, &dt0, n, grads, None);
    }

    #[allow(clippy::too_many_arguments)]
    fn block_backward(
        &self,
        block: usize,
        p: &[f32],
        packed: &Packed,
        x: &[f32],
        d: Dims,
        e: &[f32],
        cache: &BlockCache,
        dy: &[f32],
        (dx, mode): (&mut [f32], GradMode),
        de: &mut [f32],
        grads: &mut [f32],
        conv_scratch: &mut ConvScratch,
        (tmp, tmp2): (&mut AlignedVec, &mut AlignedVec),
    ) {
        let b = &self.blocks[block];
        let c1 = self.convs[b.conv1].0;
        let dout = d.with_c(c1.cout);
        match b.skip {
            Some(s) => {
                let (cs, so) = self.convs[s];
                cs.backward(
                    x,
                    d,
                    dy,
                    &packed.convs[s],
                    &mut grads[so..so + cs.params()],
                    Some(dx),
                    mode,
                    conv_scratch,
                );
            }
            None => deliver(dx, &dy[..d.len()], mode),
        }
        // norm2 + silu, conv2: d h1
        let dh1 = tmp2.resize(dout.len());
        let stage2 = Stage {
            norm: b.norm2,
            conv: b.conv2,
        };
        let saved2 = Saved {
            x: &cache.h1,
            stats: &cache.stats2,
            a: &cache.a2,
            slope: Some(&cache.slope2),
        };
        self.stage_backward(
            stage2,
            p,
            packed,
            saved2,
            dout,
            dy,
            (dh1, GradMode::Overwrite),
            grads,
            tmp,
            conv_scratch,
        );
        // the embedding projection
        let mut dproj = vec![0.0f32; d.n * c1.cout];
        image_bias_backward(tmp2, dout, &mut dproj);
        linear_backward(b.emb, p, e, &dproj, d.n, grads, Some(de));
        // norm1 + silu, conv1: d x
        let stage1 = Stage {
            norm: b.norm1,
            conv: b.conv1,
        };
        let saved1 = Saved {
            x,
            stats: &cache.stats1,
            a: &cache.a1,
            slope: Some(&cache.slope1),
        };
        self.stage_backward(
            stage1,
            p,
            packed,
            saved1,
            d,
            tmp2,
            (dx, GradMode::Add),
            grads,
            tmp,
            conv_scratch,
        );
    }

    /// The backward pass of a = norm(x) (then SiLU, when `saved` has its slope) followed by
    /// y = conv(a), given `saved` = (x, the norm's statistics, a, silu'(y)) of the batch `d` and
    /// dL/dy: adds the two modules' parameter gradients to `grads` and dL/dx to `dx` (or writes
    /// it there, with its mode); `tmp` holds dL/da.
    #[allow(clippy::too_many_arguments)]
    fn stage_backward(
        &self,
        stage: Stage,
        p: &[f32],
        packed: &Packed,
        Saved { x, stats, a, slope }: Saved,
        d: Dims,
        dy: &[f32],
        (dx, mode): (&mut [f32], GradMode),
        grads: &mut [f32],
        tmp: &mut AlignedVec,
        conv_scratch: &mut ConvScratch,
    ) {
        let (gn, go) = self.norms[stage.norm];
        let (c, co) = self.convs[stage.conv];
        let da = tmp.resize(d.len());
        let conv_grads = &mut grads[co..co + c.params()];
        c.backward(
            a,
            d,
            dy,
            &packed.convs[stage.conv],
            conv_grads,
            Some(da),
            GradMode::Overwrite,
            conv_scratch,
        );
        let norm_grads = &mut grads[go..go + gn.params()];
        let params = &p[go..go + gn.params()];
        gn.backward(x, stats, d, params, tmp, norm_grads, dx, mode, slope);
    }

    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        &self,
        p: &[f32],
        packed: &Packed,
        x: &[f32],
        d: Dims,
        cache: &AttnCache,
        dy: &[f32],
        (dx, mode): (&mut [f32], GradMode),
        grads: &mut [f32],
        conv_scratch: &mut ConvScratch,
        (tmp, tmp2): (&mut AlignedVec, &mut AlignedVec),
    ) {
        let a = self.attention.as_ref().expect("attention");
        let (cp, po) = self.convs[a.proj];
        let (c, hw) = (d.c, d.h * d.w);
        deliver(dx, &dy[..d.len()], mode);
        // proj: d out
        let dout = tmp.resize(d.len());
        cp.backward(
            &cache.out,
            d,
            dy,
            &packed.convs[a.proj],
            &mut grads[po..po + cp.params()],
            Some(dout),
            GradMode::Overwrite,
            conv_scratch,
        );
        // attention: o_i = Σ_j w_ij v_j, w_i = softmax(s_i), s_ij = scale q_i·k_j
        let scale = 1.0 / (c as f32).sqrt();
        let dqkv = tmp2.resize(3 * d.len());
        dqkv.fill(0.0);
        let mut ds = vec![0.0f32; hw];
        for img in 0..d.n {
            let q = &cache.qkv[img * hw * 3 * c..(img + 1) * hw * 3 * c];
            let dq = &mut dqkv[img * hw * 3 * c..(img + 1) * hw * 3 * c];
            for i in 0..hw {
                let w = &cache.weights[(img * hw + i) * hw..(img * hw + i + 1) * hw];
                let go = &tmp[(img * hw + i) * c..(img * hw + i + 1) * c];
                // dw_ij = go·v_j; dv_j += w_ij go
                let mut dot = 0.0f32;
                for j in 0..hw {
                    let vj = &q[j * 3 * c + 2 * c..(j + 1) * 3 * c];
                    let dw = go.iter().zip(vj).map(|(a, b)| a * b).sum::<f32>();
                    ds[j] = dw;
                    dot += w[j] * dw;
                    for (dv, &g) in dq[j * 3 * c + 2 * c..(j + 1) * 3 * c].iter_mut().zip(go) {
                        *dv += w[j] * g;
                    }
                }
                // ds_ij = w_ij (dw_ij − Σ_k w_ik dw_ik); dq_i += scale ds_ij k_j; dk_j += scale ds_ij q_i
                for j in 0..hw {
                    let s = scale * w[j] * (ds[j] - dot);
                    for ch in 0..c {
                        let (qi, kj) = (q[i * 3 * c + ch], q[j * 3 * c + c + ch]);
                        dq[i * 3 * c + ch] += s * kj;
                        dq[j * 3 * c + c + ch] += s * qi;
                    }
                }
            }
        }
        // norm, qkv: d x
        let stage = Stage {
            norm: a.norm,
            conv: a.qkv,
        };
        let saved = Saved {
            x,
            stats: &cache.stats,
            a: &cache.y,
            slope: None,
        };
        self.stage_backward(
            stage,
            p,
            packed,
            saved,
            d,
            tmp2,
            (dx, GradMode::Add),
            grads,
            tmp,
            conv_scratch,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Role, stream};

    fn small(attention: bool, classes: usize) -> UnetShape {
        UnetShape {
            side: 8,
            in_ch: 2,
            channels: vec![8, 12],
            blocks: 2,
            groups: 4,
            classes,
            attention,
        }
    }

    /// The standard deviation of the residuals of the least-squares line through (x_i, y_i)
    /// (n − 2 degrees of freedom).
    fn line_residual_sd(x: &[f64], y: &[f64]) -> f64 {
        let n = x.len() as f64;
        let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
        let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
        let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
        let slope = sxy / sxx;
        let ss: f64 = x
            .iter()
            .zip(y)
            .map(|(a, b)| (b - my - slope * (a - mx)).powi(2))
            .sum();
        (ss / (n - 2.0)).sqrt()
    }

    /// L = Σ r ⊙ U(x) for fixed random r, in f64.
    fn loss(
        net: &Unet,
        p: &[f32],
        x: &[f32],
        temb: &[f32],
        labels: Option<&[u32]>,
        n: usize,
        r: &[f32],
    ) -> f64 {
        let packed = net.pack(p, false);
        let mut ws = Workspace::default();
        net.forward(p, &packed, x, temb, labels, n, &mut ws);
        ws.output()
            .iter()
            .zip(r)
            .map(|(&o, &r)| o as f64 * r as f64)
            .sum()
    }

    /// The gradient of every parameter tensor, projected on a random direction, against the
    /// central difference (L(p + εv) − L(p − εv))/2ε of the f32 network.
    #[test]
    fn gradients_match_finite_differences() {
        for (attention, classes) in [(false, 0), (true, 3)] {
            let shape = small(attention, classes);
            let net = Unet::new(&shape);
            let mut rng = stream(7, 0, Role::Fit);
            let mut p = net.init(&mut rng);
            // non-trivial norms: γ, β away from 1, 0
            for v in p.iter_mut() {
                *v += 0.05 * rng.random_range(-1.0f32..1.0);
            }
            let n = 3;
            let normal = |rng: &mut crate::rng::Stream, len: usize| -> Vec<f32> {
                (0..len)
                    .map(|_| rand_distr::StandardNormal.sample(rng))
                    .collect()
            };
            let x = normal(&mut rng, n * shape.image_len());
            let temb = normal(&mut rng, n * shape.time_width());
            let r = normal(&mut rng, n * shape.image_len());
            let labels = [0u32, 3, 2];
            let labels = (classes > 0).then_some(&labels[..]);
            let packed = net.pack(&p, true);
            let mut ws = Workspace::for_training();
            net.forward(&p, &packed, &x, &temb, labels, n, &mut ws);
            let mut g = vec![0.0f32; net.params()];
            net.backward(&p, &packed, &r, &mut ws, &mut g);
            // The f32 forward pass's rounding makes L(p + ηu) a line plus noise for tiny η: its
            // standard deviation σ_L from the residuals of the least-squares line through 17
            // points η = −8·10⁻⁶..8·10⁻⁶ along a random u over all parameters (the quadratic
            // term there is below 10⁻⁷).
            let u = normal(&mut rng, p.len());
            let etas: Vec<f64> = (-8..=8).map(|k| k as f64 * 1e-6).collect();
            let values: Vec<f64> = etas
                .iter()
                .map(|&eta| {
                    let q: Vec<f32> = p
                        .iter()
                        .zip(&u)
                        .map(|(&w, &d)| w + eta as f32 * d)
                        .collect();
                    loss(&net, &q, &x, &temb, labels, n, &r)
                })
                .collect();
            let sigma = line_residual_sd(&etas, &values);
            for (name, tshape, off) in net.tensors() {
                let len: usize = tshape.iter().product();
                let v = normal(&mut rng, len);
                let analytic: f64 = g[*off..off + len]
                    .iter()
                    .zip(&v)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                let shifted = |step: f32| {
                    let mut q = p.clone();
                    for (w, &d) in q[*off..off + len].iter_mut().zip(&v) {
                        *w += step * d;
                    }
                    loss(&net, &q, &x, &temb, labels, n, &r)
                };
                // Richardson: the central differences at ε and ε/2 combined so that the ε² term
                // cancels (the convolutions' is ~5% at ε = 10⁻² here). At ε = 4·10⁻³ what is
                // left is the rounding noise, of standard deviation σ_L·√(65/18)/ε (four
                // evaluations of L with weights ±4/3·1/ε and ∓1/3·1/(2ε)): the tolerance is 6 of
                // those plus 0.2% for the ε⁴ term.
                let eps = 4e-3f32;
                let central = |e: f32| (shifted(e) - shifted(-e)) / (2.0 * e as f64);
                let numeric = (4.0 * central(eps / 2.0) - central(eps)) / 3.0;
                let noise = sigma * (65.0f64 / 18.0).sqrt() / eps as f64;
                let tol = 2e-3 * analytic.abs().max(numeric.abs()) + 6.0 * noise;
                assert!(
                    (analytic - numeric).abs() <= tol,
                    "{name} (attention {attention}): backward {analytic}, finite difference {numeric}"
                );
            }
        }
    }
}
