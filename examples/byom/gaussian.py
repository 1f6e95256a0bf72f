#!/usr/bin/env python3
"""A Gaussian fitted by maximum likelihood, as an ouro `command` learner (needs numpy only).

ouro calls it with the placeholders of examples/byom/gaussian-replace.toml filled in:

    gaussian.py fit TRAIN STATE_OUT SEED      fit N(mean, cov) (cov divided by n) to TRAIN and
                                              write both to STATE_OUT
    gaussian.py sample STATE N OUT SEED       write N draws [N, d] (float32) to OUT

Every draw comes from numpy's generator seeded with SEED, so a run is reproducible.
"""
import sys

import numpy as np


def fit(train, state_out, seed):
    x = np.load(train).astype(np.float64)
    if x.ndim == 1:
        x = x[:, None]
    mean = x.mean(axis=0)
    centred = x - mean
    cov = centred.T @ centred / x.shape[0]
    with open(state_out, "wb") as f:
        np.savez(f, mean=mean, cov=cov)


def sample(state, n, out, seed):
    s = np.load(state)
    rng = np.random.default_rng(int(seed))
    x = rng.multivariate_normal(s["mean"], s["cov"], size=int(n), method="eigh")
    np.save(out, x.astype(np.float32))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "fit":
        fit(*sys.argv[2:])
    elif len(sys.argv) == 6 and sys.argv[1] == "sample":
        sample(*sys.argv[2:])
    else:
        sys.exit(__doc__)
