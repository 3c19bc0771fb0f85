"""Honest statistics for the board: fold tests valid for cross-validation, tiers, bootstrap intervals.

Within one section (same data set and split hash) entries are ordered by F1 (the mean over folds of macro
F1, which equals the paper-convention F1 mean); every test below compares the per-fold macro F1.

* **Corrected resampled t-test** (Nadeau and Bengio 2003, *Machine Learning* 52:239-281; Bouckaert and
  Frank 2004, PAKDD): with k common folds and d_i the per-fold differences,
  ``t = mean(d) / sqrt((1/k + n_test/n_train) * var(d))`` with ``var`` the sample variance (ddof=1) and
  ``k - 1`` degrees of freedom. The plain paired t-test uses ``1/k`` only and treats the folds as
  independent, but their training parts overlap (by 75 % for 5-fold CV), which makes t too large;
  ``n_test/n_train`` is the fold's test images over the images outside its test part (train +
  validation, which the training procedure uses), about 1/4 for 5-fold CV.
* **Paired bootstrap over test images** (one common fold, e.g. a one-fold hold-out split): both entries'
  predictions of the same test images are resampled together :data:`BOOTSTRAP_RESAMPLES` times; the
  two-sided p-value is ``min(1, 2 min((1 + #{diff <= 0}) / (B + 1), (1 + #{diff >= 0}) / (B + 1)))``.
  Resampling images is a multinomial draw of the joint (true, prediction A, prediction B) counts, which is
  what is drawn. It needs both entries' stored predictions files.
* **Holm's adjustment** (Holm 1979) of the p-values of each round of comparisons; "not significantly
  worse" means adjusted p >= :data:`ALPHA`. With five folds the test has little power: not
  distinguishable does not mean equal.
* **Tiers**: tier 1 is the leader and every entry not significantly worse than it; tier t + 1 is the best
  remaining entry and every remaining entry not significantly worse than it; and so on.
* **Bootstrap intervals.** F1 95 % CI: a seeded percentile bootstrap resampling each fold's test images
  (a multinomial draw of each fold's confusion matrix, exactly equivalent for this statistic). Rank 95 %
  interval: in each of the same resamples the entries of the section are ranked by the resampled F1; the
  2.5th and 97.5th percentiles of an entry's ranks. Entries are resampled independently, each with its
  own stream seeded by :data:`BOOTSTRAP_SEED` and its name (:func:`entry_seed`; the matrices carry no
  per-image pairing), so the intervals are conservative and an entry's draws never change when another
  entry is added.

The Student t distribution is computed here (regularised incomplete beta, continued fraction) so the
check needs neither scipy nor torch; the tests compare it with scipy.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

ALPHA = 0.05
"""Significance level of every comparison (after Holm's adjustment)."""
BOOTSTRAP_RESAMPLES = 1000
"""Bootstrap resamples per entry (and per paired bootstrap test)."""
BOOTSTRAP_SEED = 2023
"""Seed of the bootstrap generator (NumPy PCG64), the same for every entry: same entries, same board."""
INTERVAL = (2.5, 97.5)
"""Percentiles of the 95 % intervals."""

METHOD_NOTE = (
    "Statistics: within each section the leader is the entry with the highest F1; tests compare per-fold "
    "macro F1. Over two or more common folds: the corrected resampled t-test of Nadeau and Bengio (2003), "
    "t = mean(d) / sqrt((1/k + n_test/n_train) var(d)) with k - 1 degrees of freedom (d: per-fold differences, "
    "var: sample variance, n_test/n_train: a fold's test images over the images outside its test part), "
    "because the folds' training parts overlap and the plain paired t-test is too liberal (Bouckaert and "
    "Frank 2004). On one common fold (a hold-out split): a paired bootstrap over the test images "
    f"({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}) of both entries' stored predictions. "
    f"p-values are Holm-adjusted (Holm 1979) within each round; ≈ marks entries not significantly worse "
    f"than the leader at α = {ALPHA}. Tiers: tier 1 is the leader and every entry not significantly worse "
    "than it; tier t+1 is the best remaining entry and every remaining entry not significantly worse than it. "
    "Not distinguishable does not mean equal: with five folds the test has little power. F1 95 % CI: "
    f"percentile bootstrap, {BOOTSTRAP_RESAMPLES} resamples (seed {BOOTSTRAP_SEED} and the entry's name) of each "
    "fold's test images (a multinomial draw of the fold's confusion matrix, equivalent for this statistic); "
    "rank 95 % interval: the 2.5th-97.5th percentiles of the entry's rank by F1 over the same resamples "
    "(entries resampled independently). An entry that cannot be tested against a tier's reference gets no "
    "tier; entries with published figures only have none of these."
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
    """A paired test of reference (leader) minus entry: method, pairs (folds or images), difference, p."""

    n: int
    mean_difference: float
    t: float | None
    p: float
    method: str = "paired t-test"


def paired_t_test(leader: Sequence[float], other: Sequence[float], test_train_ratio: float = 0.0) -> PairedTest:
    """Two-sided paired t-test; with ``test_train_ratio`` > 0 the corrected resampled t-test of Nadeau-Bengio.

    The variance of the mean difference is ``(1/k + test_train_ratio) * var(d)``; identical values give
    p = 1, a constant non-zero difference p = 0.
    """
    diff = np.asarray(leader, dtype=np.float64) - np.asarray(other, dtype=np.float64)
    n = int(diff.size)
    if n < 2:
        raise ValueError("a paired t-test needs at least two pairs")
    method = "corrected resampled t-test" if test_train_ratio > 0 else "paired t-test"
    mean = float(diff.mean())
    sd = float(diff.std(ddof=1))
    if sd == 0.0:
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
        return PairedTest(n, mean, t, 1.0 if mean == 0.0 else 0.0, method)
    t = mean / math.sqrt((1.0 / n + test_train_ratio) * sd * sd)
    return PairedTest(n, mean, t, t_two_sided_p(t, n - 1), method)


def corrected_t_test(leader: Sequence[float], other: Sequence[float], test_train_ratio: float) -> PairedTest:
    """The corrected resampled t-test (Nadeau and Bengio 2003) for k-fold cross-validation results."""
    if not test_train_ratio > 0:
        raise ValueError("the corrected t-test needs n_test / n_train > 0")
    return paired_t_test(leader, other, test_train_ratio)


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


def paired_bootstrap_test(true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, n_classes: int,
                          resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> PairedTest:
    """Two-sided paired bootstrap of macro F1 (A minus B) over the test images both entries predicted."""
    k = n_classes
    n = int(true.shape[0])
    if n == 0 or pred_a.shape != true.shape or pred_b.shape != true.shape:
        raise ValueError("a paired bootstrap needs both entries' predictions of the same test images")
    joint = np.bincount((true * k + pred_a) * k + pred_b, minlength=k ** 3).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, joint / n, size=resamples).reshape(resamples, k, k, k)
    f1_a = macro_f1_batch(draws.sum(axis=3))
    f1_b = macro_f1_batch(draws.sum(axis=2))
    cube = joint.reshape(k, k, k)
    observed = float(macro_f1_batch(cube.sum(axis=2)) - macro_f1_batch(cube.sum(axis=1)))
    diff = f1_a - f1_b
    below = (1 + int((diff <= 0).sum())) / (resamples + 1)
    above = (1 + int((diff >= 0).sum())) / (resamples + 1)
    return PairedTest(n, observed, None, min(1.0, 2 * min(below, above)), "paired bootstrap over test images")


@dataclass(frozen=True)
class Candidate:
    """What the tests need of one entry: per-fold macro F1, fold sizes, and its predictions where stored."""

    name: str
    folds: Mapping[int, float] | None
    test_train_ratio: Mapping[int, float] = field(default_factory=dict)
    """Per fold: its test images over the images outside its test part."""
    paired: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    """(split positions, true classes, predicted classes) sorted by position, from a stored predictions file."""


def compare(reference: Candidate, other: Candidate, n_classes: int) -> PairedTest | str:
    """The test of ``reference`` minus ``other`` that the data allow, or why there is none."""
    if reference.folds is None:
        return "the reference entry has no per-fold results"
    if other.folds is None:
        return "no per-fold results"
    common = sorted(set(reference.folds) & set(other.folds))
    if len(common) >= 2:
        ratios = [reference.test_train_ratio.get(f, 0.0) for f in common]
        if not all(r > 0 for r in ratios):
            return "the folds' test and training sizes are unknown, so the corrected t-test cannot be computed"
        return corrected_t_test([reference.folds[f] for f in common], [other.folds[f] for f in common],
                                float(np.mean(ratios)))
    if not common:
        return "no fold in common"
    if reference.paired is None or other.paired is None:
        return "one fold in common and no stored predictions files to pair image by image"
    pos_a, true_a, pred_a = reference.paired
    pos_b, _, pred_b = other.paired
    if not np.array_equal(pos_a, pos_b):
        return "the stored predictions files do not cover the same test images"
    return paired_bootstrap_test(true_a, pred_a, pred_b, n_classes)


@dataclass(frozen=True)
class Comparison:
    """How an entry stands against its section's leader."""

    verdict: str
    """``leader``, ``tied`` (not distinguishable), ``below``, or ``n/a`` (nothing to compare)."""
    test: PairedTest | None = None
    p_adjusted: float | None = None
    reason: str | None = None


def _round(reference: Candidate, others: Sequence[Candidate], n_classes: int) -> dict[str, Comparison]:
    out: dict[str, Comparison] = {reference.name: Comparison("leader")}
    tests: list[tuple[str, PairedTest]] = []
    for other in others:
        result = compare(reference, other, n_classes)
        if isinstance(result, str):
            out[other.name] = Comparison("n/a", reason=result)
        else:
            tests.append((other.name, result))
    adjusted = holm([t.p for _, t in tests])
    for (name, test), p_adj in zip(tests, adjusted, strict=True):
        out[name] = Comparison("tied" if p_adj >= ALPHA else "below", test=test, p_adjusted=p_adj)
    return out


def compare_with_leader(candidates: Sequence[Candidate | tuple[str, Mapping[int, float] | None]],
                        n_classes: int = 21) -> dict[str, Comparison]:
    """Compare every entry with the first one (the leader); Holm-adjusted over the section's comparisons."""
    cands = [c if isinstance(c, Candidate) else Candidate(c[0], c[1]) for c in candidates]
    if not cands:
        return {}
    return _round(cands[0], cands[1:], n_classes)


def assign_tiers(candidates: Sequence[Candidate], n_classes: int = 21) -> dict[str, int]:
    """Tier of every entry with per-fold results; ``candidates`` ordered best first (by F1).

    Each round takes the best remaining entry as the reference; the entries not significantly worse than
    it (Holm-adjusted over the round) join its tier, those significantly worse go on to the next round.
    An entry that cannot be tested against a round's reference (no common fold, no stored predictions
    to pair) gets no tier rather than a worse one: not comparable is not "significantly worse".
    """
    remaining = [c for c in candidates if c.folds is not None]
    tiers: dict[str, int] = {}
    tier = 0
    while remaining:
        tier += 1
        reference, others = remaining[0], remaining[1:]
        verdicts = _round(reference, others, n_classes)
        members = {reference.name} | {n for n, v in verdicts.items() if v.verdict == "tied"}
        for name in members:
            tiers[name] = tier
        remaining = [c for c in others if verdicts[c.name].verdict == "below"]
    return tiers


def entry_seed(name: str, seed: int = BOOTSTRAP_SEED) -> list[int]:
    """The bootstrap seed of one entry: ``seed`` and the SHA-256 of its name (NumPy ``SeedSequence`` entropy).

    Each entry gets its own stream, so entries are resampled independently (as the rank intervals assume)
    and an entry's draws do not change when another entry is added.
    """
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return [seed, *(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 32, 4))]


def bootstrap_f1_draws(confusions: Sequence[np.ndarray], resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int | Sequence[int] = BOOTSTRAP_SEED) -> np.ndarray:
    """Resampled F1 (mean over folds of macro F1), each fold's test images drawn with replacement."""
    rng = np.random.default_rng(list(seed) if not isinstance(seed, int) else seed)
    out = np.zeros(resamples, dtype=np.float64)
    for cm in confusions:
        counts = np.asarray(cm, dtype=np.int64)
        k = counts.shape[0]
        n = int(counts.sum())
        if n == 0:
            continue
        draws = rng.multinomial(n, counts.ravel() / n, size=resamples).reshape(resamples, k, k)
        out += macro_f1_batch(draws)
    return out / len(confusions)


def percentile_interval(draws: np.ndarray) -> tuple[float, float]:
    """The percentile 95 % interval of bootstrap draws."""
    low, high = np.percentile(draws, INTERVAL)
    return float(low), float(high)


def bootstrap_f1_interval(confusions: Sequence[np.ndarray], resamples: int = BOOTSTRAP_RESAMPLES,
                          seed: int | Sequence[int] = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile 95 % interval of the mean over folds of macro F1, resampling each fold's test images."""
    return percentile_interval(bootstrap_f1_draws(confusions, resamples, seed))


def rank_intervals(draws: Mapping[str, np.ndarray]) -> dict[str, tuple[int, int]]:
    """Per entry, the 95 % interval of its competition rank (1 = best) across the bootstrap resamples."""
    names = sorted(draws)
    if not names:
        return {}
    matrix = np.stack([draws[n] for n in names])  # entries x resamples
    ranks = 1 + (matrix[None, :, :] > matrix[:, None, :]).sum(axis=1)  # how many beat each entry, per draw
    out = {}
    for i, name in enumerate(names):
        low = int(np.percentile(ranks[i], INTERVAL[0], method="lower"))
        high = int(np.percentile(ranks[i], INTERVAL[1], method="higher"))
        out[name] = (low, high)
    return out
