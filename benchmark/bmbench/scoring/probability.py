"""Metrics from the 21 class probabilities of one fold (numpy only: scikit-learn is the tests' oracle).

Each function takes ``true`` (n,) class indices and ``probs`` (n, 21) as the predictions file gives them
(finite, >= 0, rows summing to 1 within 0.001; not renormalised) and returns one float. The names are the
metric keys of :mod:`bmbench.metric_registry`, which is how the scorer finds them.

* ``auroc``: per class, the one-vs-rest area under the ROC curve of ``probs[:, c]`` (the Mann-Whitney
  statistic with tied scores counted half, as ``sklearn.metrics.roc_auc_score``), averaged over the classes
  that have both positives and negatives in the fold (a class absent from a fold has no AUROC there).
* ``log_loss``: mean of ``-ln max(p_true, 1e-15)`` (probabilities clipped at :data:`LOG_LOSS_EPS`).
* ``brier``: mean over images of ``sum_c (p_c - 1[c = true])**2``, Brier's (1950) multi-class score, which
  equals the sum over classes of ``sklearn.metrics.brier_score_loss`` of each one-vs-rest problem.
* ``ece``: top-label expected calibration error (Guo et al. 2017) with :data:`ECE_BINS` equal-width bins of
  the confidence ``max_c p_c`` (bin b holds ``b/15 < conf <= (b+1)/15``): sum over bins of
  ``|bin| / n * |accuracy(bin) - mean confidence(bin)|``, where a row is correct when the arg-max class
  (first on ties) is the true class.
"""

from __future__ import annotations

import numpy as np

LOG_LOSS_EPS = 1e-15
"""Probabilities below this are clipped before the logarithm (a confident wrong answer costs ln 1e15 = 34.5)."""
ECE_BINS = 15
"""Equal-width confidence bins of the expected calibration error."""


def _auroc_column(scores: np.ndarray, positive: np.ndarray) -> float:
    """One-vs-rest AUROC of one class: P(score of a positive > score of a negative), ties counted half.

    Sorting the negatives and binary-searching each positive counts, for every positive, the negatives
    below it and those tied with it (integers, so exact); a plain sort is about 5x faster than the stable
    arg-sort a midrank computation needs. The positives are sorted too (few, so cheap): binary searches of
    ascending keys walk the negatives in order, about twice as fast as random probes (docs/performance.md).
    Only the positives that equal a negative (the first one not below them) need the second search.
    """
    negatives = np.sort(scores[~positive])
    pos = np.sort(scores[positive])
    below = np.searchsorted(negatives, pos, side="left")
    tied_rows = np.flatnonzero(negatives[np.minimum(below, negatives.shape[0] - 1)] == pos)
    tied = np.searchsorted(negatives, pos[tied_rows], side="right") - below[tied_rows]
    pairs = float(pos.shape[0]) * float(negatives.shape[0])
    return float((int(below.sum()) + 0.5 * int(tied.sum())) / pairs)


def auroc(true: np.ndarray, probs: np.ndarray) -> float:
    """Macro one-vs-rest AUROC over the classes with positives and negatives in the fold (NaN if none)."""
    counts = np.bincount(true, minlength=probs.shape[1])
    scored = [c for c in range(probs.shape[1]) if 0 < counts[c] < true.shape[0]]
    if not scored:
        return float("nan")
    columns = probs.T  # masking a strided column is slow: each class's scores are made contiguous (no-op if so)
    return float(np.mean([_auroc_column(np.ascontiguousarray(columns[c]), true == c) for c in scored]))


def log_loss(true: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log-probability of the true class, clipped at 1e-15."""
    p_true = probs[np.arange(true.shape[0]), true]
    return float(-np.log(np.maximum(p_true, LOG_LOSS_EPS)).mean())


def brier(true: np.ndarray, probs: np.ndarray) -> float:
    """Mean over images of the squared distance between the probability vector and the one-hot truth."""
    squared = np.einsum("ij,ij->i", probs, probs)
    p_true = probs[np.arange(true.shape[0]), true]
    return float((squared - 2.0 * p_true + 1.0).mean())


def ece(true: np.ndarray, probs: np.ndarray) -> float:
    """Top-label expected calibration error with 15 equal-width bins (right-closed)."""
    top = probs.argmax(axis=1)
    confidence = probs[np.arange(true.shape[0]), top]
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    bins = np.searchsorted(edges[1:-1], confidence, side="left")
    n = true.shape[0]
    correct = np.bincount(bins, weights=(top == true).astype(np.float64), minlength=ECE_BINS)
    conf_sum = np.bincount(bins, weights=confidence, minlength=ECE_BINS)
    return float(np.abs(correct - conf_sum).sum() / n)
