"""The board's statistics against hand computations: corrected resampled t-test, Holm, tiers, bootstrap intervals.

Every expected value here is worked out independently of :mod:`bmbench.leaderboard.stats` (explicit sums,
scipy's t distribution, a plain image-resampling loop), so a wrong formula fails.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bmbench.classes import CLASS_CODES, NUM_CLASSES
from bmbench.leaderboard import stats
from bmbench.leaderboard.board import build_sections, get_board
from bmbench.leaderboard.schema import Entry

RATIO = 0.25
"""n_test / n_train of 5-fold cross-validation (20 % test, 80 % outside the test part)."""


def _cand(name: str, folds: list[float] | None, ratio: float = RATIO) -> stats.Candidate:
    if folds is None:
        return stats.Candidate(name, None)
    return stats.Candidate(name, dict(enumerate(folds)), {f: ratio for f in range(len(folds))})


# ------------------------------------------------------------------------ Student t and the corrected test


def test_t_distribution_matches_scipy() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 4, 9, 30):
        for t in (0.0, 0.3, 1.0, 2.132, 2.776, 4.6, 12.0, 80.0):
            assert stats.t_two_sided_p(t, df) == pytest.approx(2 * scipy_stats.t.sf(t, df), rel=1e-9, abs=1e-15)


def test_plain_paired_t_test_matches_scipy_and_edge_cases() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    a = rng.random(5)
    b = a - 0.02 + rng.normal(0, 0.01, 5)
    ours = stats.paired_t_test(a, b)
    ref = scipy_stats.ttest_rel(a, b)
    assert ours.t == pytest.approx(ref.statistic) and ours.p == pytest.approx(ref.pvalue)
    assert stats.paired_t_test([0.5] * 5, [0.5] * 5).p == 1.0
    assert stats.paired_t_test([0.6] * 5, [0.5] * 5).p == 0.0
    with pytest.raises(ValueError):
        stats.paired_t_test([0.5], [0.4])


def test_corrected_resampled_t_test_by_hand() -> None:
    """Nadeau and Bengio (2003): t = mean(d) / sqrt((1/k + n_test/n_train) * s^2), k - 1 degrees of freedom."""
    scipy_stats = pytest.importorskip("scipy.stats")
    leader = [0.80, 0.82, 0.79, 0.81, 0.83]
    other = [0.78, 0.81, 0.79, 0.78, 0.80]
    d = [x - y for x, y in zip(leader, other, strict=True)]  # 0.02, 0.01, 0.00, 0.03, 0.03
    k = len(d)
    mean = sum(d) / k  # 0.018
    s2 = sum((x - mean) ** 2 for x in d) / (k - 1)  # 680e-6 / 4 = 170e-6
    assert mean == pytest.approx(0.018) and s2 == pytest.approx(170e-6)
    t_hand = mean / math.sqrt((1 / k + RATIO) * s2)  # 0.018 / sqrt(0.45 * 170e-6) = 2.05798...
    assert t_hand == pytest.approx(2.05798, abs=1e-5)

    ours = stats.corrected_t_test(leader, other, RATIO)
    assert ours.method == "corrected resampled t-test" and ours.n == 5
    assert ours.mean_difference == pytest.approx(mean)
    assert ours.t == pytest.approx(t_hand, rel=1e-12)
    assert ours.p == pytest.approx(2 * scipy_stats.t.sf(t_hand, k - 1), rel=1e-9)
    # the plain paired t-test on the same folds: t larger by sqrt((1/k + r) / (1/k)) = 1.5, p smaller
    plain = stats.paired_t_test(leader, other)
    assert plain.t == pytest.approx(t_hand * 1.5, rel=1e-12)
    assert plain.p < 0.05 < ours.p  # the overlap correction is what makes this difference not significant
    with pytest.raises(ValueError):
        stats.corrected_t_test(leader, other, 0.0)


def test_compare_uses_the_corrected_test_with_the_folds_sizes() -> None:
    leader = _cand("a", [0.80, 0.82, 0.79, 0.81, 0.83])
    other = _cand("b", [0.78, 0.81, 0.79, 0.78, 0.80])
    result = stats.compare(leader, other, NUM_CLASSES)
    assert isinstance(result, stats.PairedTest) and result.method == "corrected resampled t-test"
    assert result.t == pytest.approx(2.05798, abs=1e-5)
    # fold sizes unknown: no silent fall-back to the plain (too liberal) test
    unsized = stats.compare(stats.Candidate("a", leader.folds), other, NUM_CLASSES)
    assert isinstance(unsized, str) and "corrected t-test" in unsized
    # only the folds both entries have are paired
    partial = stats.Candidate("c", {0: 0.70, 1: 0.71, 3: 0.69}, {})
    result = stats.compare(leader, partial, NUM_CLASSES)
    assert isinstance(result, stats.PairedTest) and result.n == 3
    assert result.mean_difference == pytest.approx(((0.80 - 0.70) + (0.82 - 0.71) + (0.81 - 0.69)) / 3)
    assert stats.compare(leader, stats.Candidate("d", {7: 0.5, 8: 0.5}), NUM_CLASSES) == "no fold in common"
    assert stats.compare(leader, _cand("e", None), NUM_CLASSES) == "no per-fold results"


# -------------------------------------------------------------------------------------------------- Holm


def test_holm_adjustment_by_hand() -> None:
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> raised to 0.06 (monotone)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert stats.holm([0.4, 0.6]) == pytest.approx([0.8, 0.8])  # capped at 1 and monotone
    assert stats.holm([0.9, 0.9, 0.9]) == [1.0, 1.0, 1.0]
    assert stats.holm([0.02]) == [0.02]
    assert stats.holm([]) == []


def test_holm_decides_the_verdicts() -> None:
    """Two differences each significant alone (p < 0.05) but not both after Holm's adjustment."""
    base = [0.80, 0.82, 0.79, 0.81, 0.83]
    noise = [0.004, -0.003, 0.002, -0.004, 0.001]
    shift = 0.007
    b = [x - shift + n for x, n in zip(base, noise, strict=True)]
    c = [x - shift - n for x, n in zip(base, noise, strict=True)]
    raw = stats.corrected_t_test(base, b, RATIO).p
    assert 0.025 < raw < 0.05, raw  # significant alone, not after x2
    result = stats.compare_with_leader([_cand("a", base), _cand("b", b), _cand("c", c)])
    assert stats.corrected_t_test(base, c, RATIO).p == pytest.approx(raw)  # same |d|: equal p, both x 2
    assert result["b"].p_adjusted == pytest.approx(2 * raw) and result["c"].p_adjusted == pytest.approx(2 * raw)
    assert result["b"].verdict == "tied" and result["c"].verdict == "tied"


# ------------------------------------------------------------------------------------------------- tiers


def _spread(mean: float, wobble: float = 0.004) -> list[float]:
    return [mean + w for w in (wobble, -wobble, 0.5 * wobble, -0.5 * wobble, 0.0)]


def test_tiers_are_built_recursively() -> None:
    """Tier 1: the leader and all not significantly worse; then the best remaining, and so on."""
    a = _cand("a", _spread(0.90))
    b = _cand("b", [x - 0.001 for x in _spread(0.90, 0.006)])  # indistinguishable from a
    c = _cand("c", _spread(0.80))  # clearly below a
    d = _cand("d", [x - 0.001 for x in _spread(0.80, 0.006)])  # indistinguishable from c, below a
    e = _cand("e", _spread(0.60))  # below everyone
    verdicts = stats.compare_with_leader([a, b, c, d, e])
    assert [verdicts[n].verdict for n in "abcde"] == ["leader", "tied", "below", "below", "below"]
    assert stats.assign_tiers([a, b, c, d, e]) == {"a": 1, "b": 1, "c": 2, "d": 2, "e": 3}


def test_tier_membership_is_against_the_tier_reference_only() -> None:
    """Not transitive: b ties with a, c ties with b but is below a, so c starts tier 2."""
    a = _cand("a", _spread(0.90, 0.001))
    b = _cand("b", _spread(0.85, 0.08))  # noisy: nothing distinguishes it from a or c
    c = _cand("c", _spread(0.80, 0.001))
    assert stats.compare_with_leader([a, b, c])["c"].verdict == "below"
    assert stats.compare_with_leader([b, c])["c"].verdict == "tied"
    assert stats.assign_tiers([a, b, c]) == {"a": 1, "b": 1, "c": 2}


def test_tiers_edge_cases() -> None:
    assert stats.assign_tiers([]) == {}
    assert stats.compare_with_leader([]) == {}
    one = _cand("only", _spread(0.7))
    assert stats.assign_tiers([one]) == {"only": 1}
    assert stats.compare_with_leader([one])["only"].verdict == "leader"
    # exact ties: identical per-fold results are not distinguishable (p = 1), same tier
    twin = _cand("twin", list(one.folds.values()))
    result = stats.compare_with_leader([one, twin])["twin"]
    assert result.verdict == "tied" and result.p_adjusted == 1.0
    assert stats.assign_tiers([one, twin]) == {"only": 1, "twin": 1}
    # entries without per-fold results (published figures) and entries that cannot be tested get no tier
    published = _cand("paper", None)
    elsewhere = stats.Candidate("elsewhere", {7: 0.9, 8: 0.9}, {7: RATIO, 8: RATIO})
    worse = _cand("worse", _spread(0.3))
    tiers = stats.assign_tiers([one, published, elsewhere, worse])
    assert tiers == {"only": 1, "worse": 2}
    verdicts = stats.compare_with_leader([one, published, elsewhere, worse])
    assert verdicts["paper"].verdict == "n/a" and verdicts["elsewhere"].reason == "no fold in common"


# ------------------------------------------------------------------------- one fold: paired bootstrap


def _confusion(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return np.bincount(true * NUM_CLASSES + pred, minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)


def _macro_f1(true: np.ndarray, pred: np.ndarray) -> float:
    """Macro F1 by an explicit loop over classes (precision 0 for a class never predicted)."""
    out = []
    for c in range(NUM_CLASSES):
        tp = int(((pred == c) & (true == c)).sum())
        predicted, actual = int((pred == c).sum()), int((true == c).sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        out.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(out) / NUM_CLASSES


def _predictions(rng: np.random.Generator, true: np.ndarray, accuracy: float) -> np.ndarray:
    return np.where(rng.random(true.shape[0]) < accuracy, true, rng.integers(NUM_CLASSES, size=true.shape[0]))


def test_macro_f1_batch_matches_a_loop() -> None:
    rng = np.random.default_rng(1)
    true = rng.integers(NUM_CLASSES, size=500)
    pred = _predictions(rng, true, 0.6)
    pred[pred == 3] = 4  # class 3 never predicted: precision 0
    assert stats.macro_f1_batch(_confusion(true, pred)) == pytest.approx(_macro_f1(true, pred), abs=1e-12)


def test_paired_bootstrap_matches_resampling_the_images() -> None:
    """The multinomial draw of the joint counts is the image bootstrap: same p-value up to Monte Carlo error."""
    rng = np.random.default_rng(5)
    true = rng.integers(NUM_CLASSES, size=800)
    pred_a = _predictions(rng, true, 0.62)
    pred_b = _predictions(rng, true, 0.58)
    resamples = 2000
    ours = stats.paired_bootstrap_test(true, pred_a, pred_b, NUM_CLASSES, resamples=resamples)
    assert ours.method == "paired bootstrap over test images" and ours.n == 800 and ours.t is None
    assert ours.mean_difference == pytest.approx(_macro_f1(true, pred_a) - _macro_f1(true, pred_b), abs=1e-12)
    assert ours == stats.paired_bootstrap_test(true, pred_a, pred_b, NUM_CLASSES, resamples=resamples)  # seeded

    loop = np.random.default_rng(99)
    diffs = []
    for _ in range(resamples):
        idx = loop.integers(0, true.shape[0], size=true.shape[0])
        diffs.append(float(stats.macro_f1_batch(_confusion(true[idx], pred_a[idx]))
                           - stats.macro_f1_batch(_confusion(true[idx], pred_b[idx]))))  # checked by a loop above
    diff = np.asarray(diffs)
    below = (1 + int((diff <= 0).sum())) / (resamples + 1)
    above = (1 + int((diff >= 0).sum())) / (resamples + 1)
    p_loop = min(1.0, 2 * min(below, above))
    assert 0.01 < p_loop < 0.9, p_loop  # a case where the p-value is neither 0 nor 1
    assert ours.p == pytest.approx(p_loop, abs=0.05)


def test_paired_bootstrap_edge_cases() -> None:
    rng = np.random.default_rng(2)
    true = rng.integers(NUM_CLASSES, size=400)
    pred = _predictions(rng, true, 0.7)
    same = stats.paired_bootstrap_test(true, pred, pred, NUM_CLASSES)
    assert same.mean_difference == 0.0 and same.p == 1.0
    perfect = stats.paired_bootstrap_test(true, true, pred, NUM_CLASSES)
    assert perfect.p == pytest.approx(2 / (stats.BOOTSTRAP_RESAMPLES + 1))  # never below, always above 0
    with pytest.raises(ValueError):
        stats.paired_bootstrap_test(true, pred[:-1], pred, NUM_CLASSES)


def test_one_common_fold_is_compared_image_by_image() -> None:
    rng = np.random.default_rng(4)
    positions = np.arange(600)
    true = rng.integers(NUM_CLASSES, size=600)
    pred_a, pred_b = _predictions(rng, true, 0.9), _predictions(rng, true, 0.5)
    a = stats.Candidate("a", {0: _macro_f1(true, pred_a)}, paired=(positions, true, pred_a))
    b = stats.Candidate("b", {0: _macro_f1(true, pred_b)}, paired=(positions, true, pred_b))
    result = stats.compare(a, b, NUM_CLASSES)
    assert isinstance(result, stats.PairedTest) and result.method == "paired bootstrap over test images"
    assert stats.compare_with_leader([a, b])["b"].verdict == "below"
    assert stats.assign_tiers([a, b]) == {"a": 1, "b": 2}
    unpaired = stats.Candidate("c", {0: 0.5})
    assert "no stored predictions" in stats.compare(a, unpaired, NUM_CLASSES)
    shifted = stats.Candidate("d", {0: 0.5}, paired=(positions + 1, true, pred_b))
    assert "same test images" in stats.compare(a, shifted, NUM_CLASSES)
    assert stats.assign_tiers([a, unpaired]) == {"a": 1}  # not testable: no tier


# ------------------------------------------------------------------------------ bootstrap intervals


def _folds(seed: int, accuracy: float, n: int = 600, k: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(k):
        true = rng.integers(NUM_CLASSES, size=n)
        out.append(_confusion(true, _predictions(rng, true, accuracy)))
    return out


def test_f1_interval_is_seeded_and_brackets_the_estimate() -> None:
    confusions = _folds(0, 0.7)
    low, high = stats.bootstrap_f1_interval(confusions)
    assert (low, high) == stats.bootstrap_f1_interval(confusions)
    estimate = float(np.mean(stats.macro_f1_batch(np.stack(confusions))))
    assert low < estimate < high and high - low < 0.1
    assert stats.bootstrap_f1_interval(confusions, seed=7) != (low, high)


def test_rank_intervals_by_hand() -> None:
    """Competition rank per resample (1 + entries strictly better), then the 2.5th / 97.5th percentiles."""
    draws = {"a": np.full(40, 0.9), "b": np.r_[np.full(20, 0.8), np.full(20, 0.95)], "c": np.full(40, 0.1),
             "d": np.full(40, 0.1)}
    assert stats.rank_intervals(draws) == {"a": (1, 2), "b": (1, 2), "c": (3, 3), "d": (3, 3)}
    assert stats.rank_intervals({"only": np.full(10, 0.5)}) == {"only": (1, 1)}
    assert stats.rank_intervals({}) == {}
    # one resample in 100 where "c" jumps to the top: in the interval's 2.5 % tail, not in the interval
    draws = {"a": np.full(100, 0.9), "b": np.full(100, 0.8), "c": np.r_[np.full(99, 0.1), 0.99]}
    assert stats.rank_intervals(draws) == {"a": (1, 1), "b": (2, 2), "c": (3, 3)}


def test_rank_intervals_from_seeded_bootstraps() -> None:
    best, close, far = _folds(10, 0.95), _folds(11, 0.70), _folds(12, 0.70)
    worst = _folds(13, 0.30)
    draws = {name: stats.bootstrap_f1_draws(cms, seed=stats.entry_seed(name))
             for name, cms in (("best", best), ("close", close), ("far", far), ("worst", worst))}
    intervals = stats.rank_intervals(draws)
    assert intervals["best"] == (1, 1) and intervals["worst"] == (4, 4)
    assert intervals["close"][0] == 2 and intervals["far"][1] == 3  # two similar entries: overlapping ranks
    again = {name: stats.bootstrap_f1_draws(cms, seed=stats.entry_seed(name))
             for name, cms in (("best", best), ("close", close), ("far", far), ("worst", worst))}
    assert stats.rank_intervals(again) == intervals  # reproducible
    # each entry its own stream: identical matrices under two names are resampled independently
    twin = stats.bootstrap_f1_draws(close, seed=stats.entry_seed("twin"))
    assert not np.array_equal(twin, draws["close"])
    assert stats.entry_seed("close") == stats.entry_seed("close") != stats.entry_seed("twin")


# -------------------------------------------------------------- sections: different splits, one board


def _entry(name: str, confusions: list[np.ndarray], split: str, sha: str) -> Entry:
    return Entry.model_validate({
        "name": name, "status": "submitted", "authors": ["test"], "backbone": "baseline:test", "init": "none",
        "external_data": False, "date": "2026-12-01", "code": {"url": "https://example.org/x"},
        "split": {"name": split, "sha256": sha, "dataset": "bm"},
        "results": {"kind": "confusions",
                    "folds": [{"fold": f, "confusion": cm.tolist()} for f, cm in enumerate(confusions)]},
        "metrics": {"accuracy": {"mean": 0.5, "std": 0.1}},
    })


def test_entries_on_different_splits_are_never_ranked_together(tmp_path: Path) -> None:
    home = "1" * 64
    entries = [
        _entry("home_best", _folds(20, 0.9), "bm-cv5-v1", home),
        _entry("home_worse", _folds(21, 0.5), "bm-cv5-v1", home),
        _entry("other_split", _folds(22, 0.99), "someone-elses-split", "2" * 64),
    ]
    sections = build_sections(get_board("main", tmp_path), entries, home)
    by_split: dict[str, Any] = {s.split_name: s for s in sections}
    assert list(by_split) == ["bm-cv5-v1", "someone-elses-split"]
    home_rows = {r.name: r for r in by_split["bm-cv5-v1"].rows}
    other = by_split["someone-elses-split"].rows
    assert [r.name for r in other] == ["other_split"]
    assert other[0].rank == 1 and other[0].tier == 1 and other[0].rank_ci == (1, 1)
    assert other[0].comparison is not None and other[0].comparison.verdict == "leader"
    assert home_rows["home_best"].rank == 1 and home_rows["home_best"].tier == 1
    worse = home_rows["home_worse"]
    assert worse.rank == 2 and worse.tier == 2 and worse.rank_ci == (2, 2)
    assert worse.comparison is not None and worse.comparison.verdict == "below"
    assert worse.comparison.test is not None and worse.comparison.test.method == "corrected resampled t-test"
    # the ratio is the fold's test images over the rest of the data set's 171,374 images
    n_test = int(np.sum(entries[0].results.folds[0].confusion))
    assert home_rows["home_best"].candidate.test_train_ratio[0] == pytest.approx(n_test / (171_374 - n_test))
    assert worse.ci is not None and worse.ci[0] < worse.f1.mean < worse.ci[1]
    assert set(CLASS_CODES) == set(worse.per_class)
