"""examples/fresh-kde.toml as a researcher would write it in Python: numpy and scikit-learn.

Khelifa et al.'s fresh-data loop with a Gaussian KDE: a 10-D mixture of five Gaussians (means 0 and
(±4, ±4) in the first two coordinates, σ = 0.6), bandwidth 0.6, N = 100 000 points a generation of
which half are fresh real draws, 20 generations. Each generation: fit `KernelDensity`, draw the
next training set's synthetic half and 10 000 samples to evaluate, and compute the example's
default metrics on 2 000 of them against 2 000 held-out real points: mean shift, covariance trace
ratio, second moment, unbiased MMD² (RBF, median bandwidth), and the memorised share of samples and
of held-out points (nearest training point closer than a third of the second nearest,
`NearestNeighbors`). Prints the wall time and the last generation's metrics.

usage: python3 bench/fresh_kde_reference.py [THREADS]   (needs numpy and scikit-learn)
"""

import os
import sys
import time

threads = sys.argv[1] if len(sys.argv) > 1 else "2"
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = threads

import numpy as np  # noqa: E402
from sklearn.neighbors import KernelDensity, NearestNeighbors  # noqa: E402

D, SIGMA, H, N, ALPHA, GENERATIONS = 10, 0.6, 0.6, 100_000, 0.5, 20
SAMPLES, EVAL = 10_000, 2_000
MEANS = np.zeros((5, D))
MEANS[1:, :2] = [[-4, -4], [-4, 4], [4, -4], [4, 4]]
rng = np.random.default_rng(0)


def real(n):
    """n draws from the mixture (equal weights)."""
    k = rng.integers(0, 5, n)
    return (MEANS[k] + SIGMA * rng.standard_normal((n, D))).astype(np.float32)


def mmd2(x, y):
    """Unbiased MMD² with an RBF kernel whose bandwidth is the median pairwise distance."""
    z = np.concatenate([x, y]).astype(np.float64)
    sq = (z * z).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0)
    h2 = np.median(d2[np.triu_indices(len(z), 1)])
    k = np.exp(-d2 / (2 * h2))
    n = len(x)
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * kxy.mean())


def memorized(queries, nn):
    d, _ = nn.kneighbors(queries, n_neighbors=2)
    return float(np.mean(d[:, 0] < d[:, 1] / 3))


start = time.time()
true_mean = MEANS.mean(0)
true_trace = D * SIGMA**2 + ((MEANS - true_mean) ** 2).sum(1).mean()
heldout = real(EVAL)
train = real(N)
for g in range(GENERATIONS):
    kde = KernelDensity(bandwidth=H).fit(train)
    samples = kde.sample(SAMPLES, random_state=int(rng.integers(1 << 31))).astype(np.float32)
    x = samples[:EVAL]
    nn = NearestNeighbors().fit(np.unique(train, axis=0))
    metrics = {
        "mean_shift": float(np.linalg.norm(samples.mean(0) - true_mean)),
        "cov_trace_ratio": float(np.trace(np.cov(samples.T)) / true_trace),
        "second_moment": float((samples.astype(np.float64) ** 2).sum(1).mean()),
        "mmd2": float(mmd2(x, heldout)),
        "memorized": memorized(x, nn),
        "memorized_null": memorized(heldout, nn),
    }
    fresh = int(round(ALPHA * N))
    synthetic = kde.sample(N - fresh, random_state=int(rng.integers(1 << 31))).astype(np.float32)
    train = np.concatenate([real(fresh), synthetic])
print(f"python fresh-kde threads={threads} generations={GENERATIONS} time={time.time() - start:.2f}s "
      + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
