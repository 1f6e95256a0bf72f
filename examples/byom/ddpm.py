#!/usr/bin/env python3
"""A small DDPM (Ho et al. 2020) in PyTorch, as an ouro `command` learner: the model a user with
a GPU would bring. Runs on CUDA when available, else on the CPU (slowly). Not run by ouro's tests.

ouro calls it with the placeholders of examples/byom/ddpm-ring.toml filled in:

    ddpm.py fit TRAIN STATE_IN STATE_OUT SEED     train the denoiser on TRAIN ([n, d] float32
                                                  .npy), starting from STATE_IN's weights when
                                                  it is not empty (ouro's warm start), and save
                                                  weights and data scaling to STATE_OUT
    ddpm.py sample STATE N OUT SEED               ancestral sampling of N points to OUT

The network is an MLP on (x, sinusoidal embedding of t) with three SiLU hidden layers of 256,
trained on the ε objective with linear betas 1e-4 … 0.02 over T = 1000 steps, Adam (lr 1e-3,
batch 512); the data are standardised to mean 0 and unit variance per coordinate. Training steps:
the environment variable DDPM_STEPS (default 3000).
"""
import math
import os
import sys

import numpy as np
import torch
from torch import nn

T = 1000
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def betas():
    return torch.linspace(1e-4, 0.02, T, dtype=torch.float64)


def embed(t, width=32):
    """Sinusoidal embedding of integer times t (shape [b]) to [b, width]."""
    half = width // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def network(d):
    return nn.Sequential(
        nn.Linear(d + 32, 256), nn.SiLU(),
        nn.Linear(256, 256), nn.SiLU(),
        nn.Linear(256, 256), nn.SiLU(),
        nn.Linear(256, d),
    ).to(DEVICE)


def fit(train, state_in, state_out, seed):
    torch.manual_seed(int(seed))
    x = torch.from_numpy(np.load(train).astype(np.float32))
    if x.ndim == 1:
        x = x[:, None]
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = ((x - mean) / std).to(DEVICE)
    n, d = x.shape
    net = network(d)
    if state_in:
        net.load_state_dict(torch.load(state_in, map_location=DEVICE)["net"])
    alpha_bar = torch.cumprod(1 - betas(), 0).float().to(DEVICE)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(int(os.environ.get("DDPM_STEPS", "3000"))):
        idx = torch.randint(0, n, (min(512, n),), device=DEVICE)
        x0 = x[idx]
        t = torch.randint(0, T, (x0.shape[0],), device=DEVICE)
        eps = torch.randn_like(x0)
        ab = alpha_bar[t][:, None]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        loss = ((net(torch.cat([xt, embed(t)], 1)) - eps) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save({"net": net.state_dict(), "mean": mean, "std": std, "d": d}, state_out)


@torch.no_grad()
def sample(state, n, out, seed):
    torch.manual_seed(int(seed))
    s = torch.load(state, map_location=DEVICE)
    net = network(s["d"])
    net.load_state_dict(s["net"])
    b = betas()
    a = 1 - b
    ab = torch.cumprod(a, 0)
    x = torch.randn(int(n), s["d"], device=DEVICE)
    for t in reversed(range(T)):
        tt = torch.full((x.shape[0],), t, device=DEVICE)
        eps = net(torch.cat([x, embed(tt)], 1))
        coef = float(b[t] / (1 - ab[t]).sqrt())
        x = (x - coef * eps) / float(a[t].sqrt())
        if t > 0:
            var = float(b[t] * (1 - ab[t - 1]) / (1 - ab[t]))
            x = x + math.sqrt(var) * torch.randn_like(x)
    x = x.cpu() * s["std"] + s["mean"]
    np.save(out, x.numpy().astype(np.float32))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "fit":
        fit(*sys.argv[2:])
    elif len(sys.argv) == 6 and sys.argv[1] == "sample":
        sample(*sys.argv[2:])
    else:
        sys.exit(__doc__)
