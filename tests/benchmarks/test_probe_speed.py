"""Probe speed: the torch linear probe and kNN against scikit-learn, side by side on the CPU.

``make bench`` (``--benchmark-enable``) measures the full-size problem of DinoBloom's split: 137,108 training
rows x 1,024 features x 21 classes, 34,266 queries (``BMBENCH_PROBE_BENCH_ROWS`` sets fewer training rows,
queries stay a quarter of them; ``BMBENCH_PROBE_BENCH_THREADS`` the threads of both sides, default all
cores). In ``make test`` (benchmarks disabled) the same comparison runs once on a small problem
(2,000 x 128, one thread), so the suite stays fast. Figures: docs/performance.md, section "Probes".

Both linear fits use scikit-learn's stopping rule at its default ``tol = 1e-4`` (DinoBloom's setting) and
``max_iter = 1000``; the objective each one reaches is recorded next to its time. kNN: k = 1 and 20, both
sides computing both (scikit-learn as DinoBloom runs it: one classifier per k), outputs asserted equal.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from bmbench.features.knn import knn_votes
from bmbench.features.linear import dinobloom_c, fit_logistic, objective

FULL_ROWS, DIM, CLASSES = 137_108, 1024, 21
SMALL_ROWS, SMALL_DIM = 2_000, 128
MAX_RATIO = {"linear": 1.0, "knn": 1.5}
"""torch time / scikit-learn time must stay below this (linear: not slower; kNN: margin for a loaded CI box)."""


def synthetic_features(n: int, dim: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Encoder-like features: unequal classes, overlapping clusters, a power-law spectrum, an offset (float32)."""
    rng = np.random.default_rng(seed)
    p = np.linspace(1.0, 0.02, k)
    y = rng.choice(k, size=n, p=p / p.sum())
    means = np.random.default_rng(1000 + dim).standard_normal((k, dim)) * 0.15
    scale = (1.0 + np.arange(dim)) ** -0.75
    rotation, _ = np.linalg.qr(np.random.default_rng(2000 + dim).standard_normal((dim, dim)))
    x = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, 16_384):  # bounded temporaries at full size
        z = (means[y[lo:lo + 16_384]] + rng.standard_normal((len(y[lo:lo + 16_384]), dim))) * scale
        x[lo:lo + 16_384] = z @ rotation.T * 4.0 + 0.2
    return x, y


def _size(benchmark) -> tuple[int, int]:
    if benchmark.disabled:
        return SMALL_ROWS, SMALL_DIM
    return int(os.environ.get("BMBENCH_PROBE_BENCH_ROWS", FULL_ROWS)), DIM


@contextmanager
def _threads(benchmark) -> Iterator[int]:
    """The same thread count for torch and for scikit-learn's BLAS/OpenMP (1 in ``make test``)."""
    import torch
    from threadpoolctl import threadpool_limits

    n = 1 if benchmark.disabled else int(os.environ.get("BMBENCH_PROBE_BENCH_THREADS", os.cpu_count() or 1))
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield n
    finally:
        torch.set_num_threads(previous)


def _timed(func):
    start = time.perf_counter()
    out = func()
    return out, time.perf_counter() - start


def test_linear_probe_torch_vs_sklearn(benchmark) -> None:
    from sklearn.linear_model import LogisticRegression

    rows, dim = _size(benchmark)
    x, y = synthetic_features(rows, dim, CLASSES)
    c = dinobloom_c(dim, CLASSES)

    def sk():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return LogisticRegression(C=c, solver="lbfgs", max_iter=1000).fit(x, y)

    with _threads(benchmark) as threads:
        ours, t_ours = benchmark.pedantic(_timed, args=(lambda: fit_logistic(x, y, c, tol=1e-4),), rounds=1,
                                          iterations=1)  # the benchmark's own time is the torch fit
        print(f"\nlinear torch {rows} x {dim}: {t_ours:.2f} s, {ours.iterations} iterations, objective "
              f"{ours.objective:.6g}; scikit-learn next", flush=True)
        ref, t_ref = _timed(sk)
        tight, t_tight = _timed(lambda: fit_logistic(x, y, c, init=ours))  # on to the probe's default tol 1e-5
    ref_obj = objective(ref.coef_, ref.intercept_, x, y, c)
    info = {"rows": rows, "dim": dim, "c": c, "threads": threads, "torch_s": t_ours, "sklearn_s": t_ref,
            "ratio": t_ours / t_ref,
            "torch_iterations": ours.iterations, "sklearn_iterations": int(ref.n_iter_[0]),
            "torch_objective": ours.objective, "sklearn_objective": ref_obj,
            "torch_tol_1e-5_extra_s": t_tight, "torch_tol_1e-5_objective": tight.objective}
    benchmark.extra_info.update(info)
    print("\nlinear " + ", ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items()))
    assert ours.objective <= ref_obj * (1 + 1e-4)
    assert t_ours / t_ref < MAX_RATIO["linear"]


def test_knn_torch_vs_sklearn(benchmark) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    rows, dim = _size(benchmark)
    x, y = synthetic_features(rows + rows // 4, dim, CLASSES, seed=1)
    train, labels, query = x[:rows], y[:rows], x[rows:]

    def sk():
        return {k: KNeighborsClassifier(n_neighbors=k).fit(train, labels).predict_proba(query) for k in (1, 20)}

    with _threads(benchmark) as threads:
        ours, t_ours = benchmark.pedantic(
            _timed, args=(lambda: knn_votes(train, labels, query, [1, 20], CLASSES),), rounds=1, iterations=1)
        print(f"\nknn torch {rows} x {len(query)} x {dim}: {t_ours:.2f} s; scikit-learn next", flush=True)
        ref, t_ref = _timed(sk)
    info = {"train": rows, "queries": len(query), "dim": dim, "threads": threads, "torch_s": t_ours,
            "sklearn_s": t_ref, "ratio": t_ours / t_ref}
    benchmark.extra_info.update(info)
    print("\nknn " + ", ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items()))
    for k in (1, 20):
        assert np.array_equal(ours[k], ref[k])
    assert t_ours / t_ref < MAX_RATIO["knn"]
