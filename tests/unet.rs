//! The U-Net against PyTorch on the same weights and batch (tests/fixtures/unet/, written by
//! `python3 bench/unet_fixture.py` with bench/unet.py, the same network in PyTorch): the
//! forward pass, every parameter's gradient of a mean-squared error, and the weights after one
//! Adam step.

use ouro::data::tensors::TensorFile;
use ouro::diffusion::precondition::time_embedding;
use ouro::nn::mlp::Adam;
use ouro::nn::unet::{Unet, UnetShape, Workspace};
use std::path::Path;

fn fixture(name: &str) -> TensorFile {
    TensorFile::read(&Path::new("tests/fixtures/unet").join(name)).unwrap()
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

#[test]
fn forward_gradients_and_adam_match_pytorch() {
    let shape = UnetShape {
        side: 8,
        in_ch: 2,
        channels: vec![8, 16],
        blocks: 2,
        groups: 4,
        classes: 3,
        attention: true,
    };
    let net = Unet::new(&shape);
    let mut params = net.take(&fixture("weights.safetensors")).unwrap();
    let batch = fixture("batch.safetensors");
    let n = 4;
    let len = shape.image_len();
    let x = batch.shaped::<f32>("x", &[n, len]).unwrap();
    let target = batch.shaped::<f32>("target", &[n, len]).unwrap();
    let want = batch.shaped::<f32>("out", &[n, len]).unwrap();
    let t = batch.vector::<f32>("t", n).unwrap();
    let labels: Vec<u32> = batch
        .vector::<f32>("labels", n)
        .unwrap()
        .iter()
        .map(|&l| l as u32)
        .collect();
    let w = shape.time_width();
    let mut temb = vec![0.0f32; n * w];
    for (row, &t) in temb.chunks_exact_mut(w).zip(&t) {
        time_embedding(t as f64, row);
    }
    // forward: within 10⁻⁵ of the output's scale (f32 sums in another order)
    let packed = net.pack(&params, true);
    let mut ws = Workspace::for_training();
    net.forward(&params, &packed, &x, &temb, Some(&labels), n, &mut ws);
    let out = ws.output().to_vec();
    let scale = max_abs(&want);
    let err = out
        .iter()
        .zip(&want)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err <= 1e-5 * scale.max(1.0),
        "forward: max |ouro − torch| = {err} (scale {scale})"
    );
    // backward of mean((out − target)²)
    let count = (n * len) as f32;
    let dout: Vec<f32> = out
        .iter()
        .zip(&target)
        .map(|(o, t)| 2.0 * (o - t) / count)
        .collect();
    let mut grads = vec![0.0f32; net.params()];
    net.backward(&params, &packed, &dout, &mut ws, &mut grads);
    let torch_grads = fixture("grads.safetensors");
    for (name, tshape, off) in net.tensors() {
        let want = torch_grads.shaped::<f32>(name, tshape).unwrap();
        let got = &grads[*off..off + want.len()];
        let scale = max_abs(&want);
        let err = got
            .iter()
            .zip(&want)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= 1e-4 * scale + 1e-7,
            "gradient of {name}: max |ouro − torch| = {err:e} (largest {scale:e})"
        );
    }
    // one Adam step (lr 10⁻³): each weight moves by about lr·sign(g)
    let mut adam = Adam::new(net.params());
    adam.step(&mut params, &[&grads], 1.0, 1e-3);
    let after = net.take(&fixture("after_adam.safetensors")).unwrap();
    // Adam divides by |g| + 10⁻⁸: where the gradient is zero up to rounding (the key bias of
    // attention, which the softmax cancels) the step's direction is rounding noise, so those
    // weights are only checked to have moved by at most lr.
    let mut flat_torch = vec![0.0f32; net.params()];
    for (name, tshape, off) in net.tensors() {
        let g = torch_grads.shaped::<f32>(name, tshape).unwrap();
        flat_torch[*off..off + g.len()].copy_from_slice(&g);
    }
    let before = net.take(&fixture("weights.safetensors")).unwrap();
    let (mut err, mut noise) = (0.0f32, 0usize);
    for (((a, b), g), p0) in params.iter().zip(&after).zip(&flat_torch).zip(&before) {
        if g.abs() > 1e-6 {
            err = err.max((a - b).abs());
        } else {
            noise += 1;
            assert!((a - p0).abs() <= 1.0001e-3 && (b - p0).abs() <= 1.0001e-3);
        }
    }
    assert!(noise < 100, "{noise} weights with a zero gradient");
    assert!(
        err <= 2e-6,
        "after one Adam step: max |ouro − torch| = {err:e}"
    );
}
