"""Honest statistics for the board: paired comparison with the leader over folds, bootstrap intervals.

* **Paired comparison.** Within one section (same data set and split hash), the leader is the entry with
  the highest F1. Every entry with per-fold confusion matrices is compared with it by a two-sided paired
  t-test over the per-fold macro F1 of the folds both have (the folds are the same test images, so the
  pairing is exact); the p-values of a section are Holm-adjusted for the number of comparisons, and an
  entry whose adjusted p is at least :data:`ALPHA` is *not distinguishable from the leader* and is grouped
  with it. With five folds the test has little power: "not distinguishable" is not "equal".
* **Bootstrap interval.** A seeded percentile bootstrap 95 % interval of F1 (the mean over folds of macro
  F1, which equals the paper-convention F1 mean) resamples each fold's test images with replacement.
  The statistic depends on the images only through the fold's confusion matrix, so resampling the images
  is exactly a multinomial draw of the matrix's cells (n = the fold's image count, p = the cell counts / n),
  which is what is drawn; results with a predictions file and results with only the matrices get the
  same interval.

The Student t distribution is computed here (regularised incomplete beta, continued fraction) so the
check needs neither scipy nor torch; the tests compare it with scipy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
"""Significance level of the comparison with the leader (after Holm's adjustment)."""
BOOTSTRAP_RESAMPLES = 1000
"""Bootstrap resamples per entry."""
BOOTSTRAP_SEED = 2023
"""Seed of the bootstrap generator (NumPy PCG64), the same for every entry: same entries, same board."""
INTERVAL = (2.5, 97.5)
"""Percentiles of the 95 % interval."""

METHOD_NOTE = (
    f"Statistics: within each section the leader is the entry with the highest F1. Entries with per-fold "
    f"confusion matrices are compared with it by a two-sided paired t-test over the per-fold macro F1 "
    f"(same folds, same test images), Holm-adjusted for the comparisons in the section; \u2248 marks entries "
    f"not distinguishable from the leader at \u03b1 = {ALPHA} (adjusted p \u2265 {ALPHA}), which are grouped with "
    f"it. With five folds the test has little power: not distinguishable does not mean equal. F1 95 % CI: "
    f"percentile bootstrap, {BOOTSTRAP_RESAMPLES} resamples (seed {BOOTSTRAP_SEED}) of each fold's test "
    f"images with replacement (a multinomial draw of the fold's confusion matrix, which is equivalent for "
    f"this statistic). Entries with published mean \u00b1 std only have neither."
)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def incomplete_beta(x: float, a: float, b: float) -> float:
    """The regularised incomplete beta function I_x(a, b) for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return incomplete_beta(df / (df + t * t), df / 2.0, 0.5)


@dataclass(frozen=True)
class PairedTest:
    """A paired t-test of leader minus entry over the common folds."""

    n: int
    mean_difference: float
    t: float
    p: float


def paired_t_test(leader: Sequence[float], other: Sequence[float]) -> PairedTest:
    """Two-sided paired t-test; identical values give p = 1, a constant non-zero difference p = 0."""
    diff = np.asarray(leader, dtype=np.float64) - np.asarray(other, dtype=np.float64)
    n = int(diff.size)
    if n < 2:
        raise ValueError("a paired t-test needs at least two pairs")
    mean = float(diff.mean())
    sd = float(diff.std(ddof=1))
    if sd == 0.0:
        return PairedTest(n, mean, 0.0 if mean == 0.0 else math.copysign(math.inf, mean), 1.0 if mean == 0.0 else 0.0)
    t = mean / (sd / math.sqrt(n))
    return PairedTest(n, mean, t, t_two_sided_p(t, n - 1))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (monotone, capped at 1), in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: (pvalues[i], i))
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Comparison:
    """How an entry stands against its section's leader."""

    verdict: str
    """``leader``, ``tied`` (not distinguishable), ``below``, or ``n/a`` (no per-fold results to compare)."""
    test: PairedTest | None = None
    p_adjusted: float | None = None
    reason: str | None = None


def compare_with_leader(per_fold: Sequence[tuple[str, Mapping[int, float] | None]]) -> dict[str, Comparison]:
    """Compare every entry with the first one (the leader); ``per_fold`` is (name, fold -> macro F1 or None)."""
    if not per_fold:
        return {}
    leader_name, leader_folds = per_fold[0]
    out: dict[str, Comparison] = {leader_name: Comparison("leader")}
    tests: list[tuple[str, PairedTest]] = []
    for name, folds in per_fold[1:]:
        if leader_folds is None:
            out[name] = Comparison("n/a", reason="the leader has no per-fold results")
        elif folds is None:
            out[name] = Comparison("n/a", reason="no per-fold results")
        else:
            common = sorted(set(leader_folds) & set(folds))
            if len(common) < 2:
                out[name] = Comparison("n/a", reason="fewer than two folds in common with the leader")
            else:
                tests.append((name, paired_t_test([leader_folds[f] for f in common], [folds[f] for f in common])))
    adjusted = holm([t.p for _, t in tests])
    for (name, test), p_adj in zip(tests, adjusted, strict=True):
        out[name] = Comparison("tied" if p_adj >= ALPHA else "below", test=test, p_adjusted=p_adj)
    return out


def macro_f1_batch(confusions: np.ndarray) -> np.ndarray:
    """Macro F1 of a stack of confusion matrices (..., k, k), with the scorer's zero-division conventions."""
    cm = np.asarray(confusions, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)
    predicted = cm.sum(axis=-2)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1.mean(axis=-1)


def bootstrap_f1_interval(confusions: Sequence[np.ndarray], resamples: int = BOOTSTRAP_RESAMPLES,
                          seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile 95 % interval of the mean over folds of macro F1, resampling each fold's test images."""
    rng = np.random.default_rng(seed)
    stats = np.zeros(resamples, dtype=np.float64)
    for cm in confusions:
        counts = np.asarray(cm, dtype=np.int64)
        k = counts.shape[0]
        n = int(counts.sum())
        if n == 0:
            continue
        draws = rng.multinomial(n, counts.ravel() / n, size=resamples).reshape(resamples, k, k)
        stats += macro_f1_batch(draws)
    stats /= len(confusions)
    low, high = np.percentile(stats, INTERVAL)
    return float(low), float(high)
