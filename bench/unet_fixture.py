"""Writes tests/fixtures/unet/: a small U-Net of bench/unet.py (8×8 images with 2 channels,
channels (8, 16), 2 blocks per level, 4 groups, 3 classes, attention) with its weights, a batch,
the network's output, the gradients of a mean-squared error and the weights after one Adam step
(lr 1e-3), so that tests/unet.rs checks ouro's forward pass, backward pass and Adam against
PyTorch on the same numbers.

    python3 bench/unet_fixture.py      # needs torch and safetensors
"""
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from unet import UNet  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "unet")


def main():
    torch.manual_seed(0)
    net = UNet(in_ch=2, channels=(8, 16), blocks=2, groups=4, classes=3, attention=True)
    with torch.no_grad():  # norms away from γ = 1, β = 0 so that their gradients are exercised
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    n, side = 4, 8
    x = torch.randn(n, 2, side, side)
    t = torch.tensor([0.0, 17.0, 250.0, 999.0])
    y = torch.tensor([0, 1, 2, 3])  # 3 is "no class"
    target = torch.randn(n, 2, side, side)
    before = {k: v.clone().contiguous() for k, v in net.state_dict().items()}
    out = net(x, t, y)
    loss = torch.nn.functional.mse_loss(out, target)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    opt.zero_grad()
    loss.backward()
    grads = {k: p.grad.clone().contiguous() for k, p in net.named_parameters()}
    opt.step()
    after = {k: v.clone().contiguous() for k, v in net.state_dict().items()}
    nhwc = lambda a: a.permute(0, 2, 3, 1).reshape(n, -1).contiguous()  # noqa: E731
    os.makedirs(OUT, exist_ok=True)
    save_file(before, os.path.join(OUT, "weights.safetensors"))
    save_file(grads, os.path.join(OUT, "grads.safetensors"))
    save_file(after, os.path.join(OUT, "after_adam.safetensors"))
    save_file(
        {
            "x": nhwc(x),
            "t": t,
            "labels": y.float(),
            "target": nhwc(target),
            "out": nhwc(out.detach()),
            "loss": loss.detach().reshape(1),
        },
        os.path.join(OUT, "batch.safetensors"),
    )
    print("loss", loss.item(), "torch", torch.__version__)


if __name__ == "__main__":
    main()
