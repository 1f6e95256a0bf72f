"""The metric workloads of `ouro bench metrics`, as people compute them in Python, on the same
arrays: precision/recall/density/coverage with the `prdc` package (k = 5); MMD² (RBF kernel,
median-heuristic bandwidth from the first 1 000 real points, unbiased and biased) and KID (cubic
kernel, unbiased, full sets) with numpy matrix products; the energy distance with
scipy.spatial.distance.cdist; the Fréchet distance as pytorch-fid computes it (numpy.cov and
scipy.linalg.sqrtm). Each workload runs at least REPEATS times and as many more as fit in 0.5 s, on the arrays in float64 and in float32 (numpy keeps the
input's precision), and the faster of the two is printed.

usage: python3 bench/metrics_reference.py DIR THREADS [REPEATS]
  DIR holds real.npy and generated.npy (`ouro bench metrics --out DIR`).
needs: pip install numpy scipy scikit-learn prdc
"""
import os
import sys

threads = sys.argv[2] if len(sys.argv) > 2 else "1"
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = threads

import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402
from prdc import compute_prdc  # noqa: E402
from scipy.spatial.distance import cdist  # noqa: E402


def median_bandwidth(x):
    a = x[:1000].astype(np.float64)
    d = cdist(a, a, "sqeuclidean")
    return float(np.sqrt(np.median(d[np.triu_indices(len(a), 1)])))


def sq_dists(a, b):
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def mmd_from_kernels(kxx, kyy, kxy):
    m, n = len(kxx), len(kyy)
    sxx, syy = kxx.sum() - np.trace(kxx), kyy.sum() - np.trace(kyy)
    cross = 2.0 * kxy.mean()
    unbiased = sxx / (m * (m - 1)) + syy / (n * (n - 1)) - cross
    biased = kxx.mean() + kyy.mean() - cross
    return float(unbiased), float(biased)


def mmd2(real, gen):
    s = median_bandwidth(real)
    g = 1.0 / (2.0 * s * s)
    k = lambda a, b: np.exp(-g * sq_dists(a, b))  # noqa: E731
    u, b = mmd_from_kernels(k(gen, gen), k(real, real), k(gen, real))
    return {"mmd2": u, "mmd2_biased": b}


def kid(real, gen):
    d = real.shape[1]
    k = lambda a, b: (a @ b.T / d + 1.0) ** 3  # noqa: E731
    u, _ = mmd_from_kernels(k(gen, gen), k(real, real), k(gen, real))
    return {"kid": u}


def energy(real, gen):
    e = 2.0 * cdist(gen, real).mean() - cdist(gen, gen).mean() - cdist(real, real).mean()
    return {"energy": float(e)}


def frechet(real, gen):
    mu1, mu2 = gen.mean(0), real.mean(0)
    s1, s2 = np.cov(gen, rowvar=False), np.cov(real, rowvar=False)
    covmean, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
    covmean = covmean.real
    diff = mu1 - mu2
    return {"frechet": float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))}


def prdc(real, gen):
    return compute_prdc(real_features=real, fake_features=gen, nearest_k=5)


WORKLOADS = [("prdc", prdc), ("mmd2", mmd2), ("kid", kid), ("energy", energy), ("frechet", frechet)]


def main():
    folder = sys.argv[1]
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    real32 = np.load(os.path.join(folder, "real.npy"))
    gen32 = np.load(os.path.join(folder, "generated.npy"))
    n, d = real32.shape
    for name, work in WORKLOADS:
        best, values = float("inf"), None
        for dtype in (np.float64, np.float32):
            real, gen = real32.astype(dtype), gen32.astype(dtype)
            runs, total = 0, 0.0
            # At least `repeats` runs, and as many more as fit in 0.5 s (as ouro's harness).
            while runs < repeats or total < 0.5:
                t = time.perf_counter()
                out = work(real, gen)
                el = time.perf_counter() - t
                runs, total = runs + 1, total + el
                if el < best:
                    best, values = el, out
                if dtype is np.float64:
                    values64 = out
        # Values are reported from the float64 run (the accurate one).
        shown = " ".join(f"{k}={float(v):.6f}" for k, v in values64.items())
        print(f"reference metric={name} threads={threads} n={n} d={d} time={best:.6f}s {shown}", flush=True)


if __name__ == "__main__":
    main()
