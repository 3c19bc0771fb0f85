"""Metrics against scikit-learn, and the paper's aggregation against its own Tables 4 and 5."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_recall_fscore_support,
)

from bmbench.classes import CLASS_CODES, NUM_CLASSES
from bmbench.scoring.metrics import (
    confusion_matrices,
    confusion_matrix,
    f1_from_precision_recall,
    fold_metrics,
    mean_std,
    paper_summary,
    paper_summary_from_folds,
)
from bmbench.scoring.score import score_confusions

REFERENCE = Path(__file__).resolve().parents[1] / "benchmark" / "bmbench" / "resources" / "paper"


def _random_fold(seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Imbalanced labels; classes 3 and 7 are never predicted, class 20 is absent from the truth."""
    rng = np.random.default_rng(seed)
    weights = rng.pareto(1.0, NUM_CLASSES) + 0.05
    weights[20] = 0
    true = rng.choice(NUM_CLASSES, size=n, p=weights / weights.sum())
    pred = np.where(rng.random(n) < 0.6, true, rng.integers(NUM_CLASSES, size=n))
    pred[np.isin(pred, (3, 7))] = 0
    return true, pred


@pytest.mark.parametrize("seed, n", [(0, 3000), (1, 3000), (2, 3000), (3, 171_374)])  # 171,374: the full BM set
def test_fold_metrics_match_sklearn(seed: int, n: int) -> None:
    true, pred = _random_fold(seed, n)
    m = fold_metrics(confusion_matrix(true, pred, NUM_CLASSES))
    labels = list(range(NUM_CLASSES))
    p, r, f, s = precision_recall_fscore_support(true, pred, labels=labels, zero_division=0)
    np.testing.assert_allclose(m.precision, p, atol=1e-12)
    np.testing.assert_allclose(m.recall, r, atol=1e-12)
    np.testing.assert_allclose(m.f1, f, atol=1e-12)
    np.testing.assert_array_equal(m.support, s)
    assert m.precision[3] == 0 and m.precision[7] == 0  # never predicted: precision 0
    assert m.accuracy == pytest.approx(accuracy_score(true, pred), abs=1e-12)
    assert m.balanced_accuracy == pytest.approx(balanced_accuracy_score(true, pred), abs=1e-12)
    assert m.macro_f1 == pytest.approx(f1_score(true, pred, labels=labels, average="macro", zero_division=0), abs=1e-12)
    assert m.weighted_f1 == pytest.approx(
        f1_score(true, pred, labels=labels, average="weighted", zero_division=0), abs=1e-12
    )


def test_confusion_rows_are_true_columns_predicted() -> None:
    cm = confusion_matrix(np.array([0, 0, 1]), np.array([1, 1, 1]), 3)
    assert cm.tolist() == [[0, 2, 0], [0, 1, 0], [0, 0, 0]]


def test_abe_example_from_the_paper() -> None:
    """ABE precision 0.400 ± 0.548 in Table 5 is five folds of (1, 1, 0, 0, 0) with the sample std."""
    mean, std = mean_std([1, 1, 0, 0, 0])
    assert (round(mean, 3), round(std, 3)) == (0.4, 0.548)
    assert mean_std([0.5]) == (0.5, None)


def _table5() -> list[dict[str, str]]:
    with open(REFERENCE / "published_table5.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _table4_row(source: str, model: str, pretraining: str) -> dict[str, str]:
    with open(REFERENCE / "published_table4.csv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if (row["source"], row["model"], row["pretraining"]) == (source, model, pretraining):
                return row
    raise LookupError


def test_table5_aggregates_to_table4_regnet_imagenet_cd() -> None:
    rows = _table5()
    published = _table4_row("gluge2023", "regnet_y_32gf", "imagenet+cd")
    for metric, column in (("precision", "gluge2023_precision"), ("recall", "gluge2023_recall"), ("f1", "gluge2023_f1")):
        summary = paper_summary([float(r[column]) for r in rows], [float(r[column + "_std"]) for r in rows])
        assert round(summary.mean, 3) == float(published[f"{metric}_mean"])
        assert summary.std is not None and round(summary.std, 3) == float(published[f"{metric}_std"])
    assert len(rows) == 21 and sorted(r["class"] for r in rows) == list(CLASS_CODES)


def test_table5_aggregates_to_table4_matek() -> None:
    rows = _table5()
    published = _table4_row("matek2021", "resnext50_32x4d", "random")
    precision = np.array([float(r["matek2021_precision"]) for r in rows])
    recall = np.array([float(r["matek2021_recall"]) for r in rows])
    for metric, values in (("precision", precision), ("recall", recall)):
        summary = paper_summary(values, [float(r[f"matek2021_{metric}_std"]) for r in rows])
        assert (round(summary.mean, 3), round(summary.std or 0, 3)) == (
            float(published[f"{metric}_mean"]), float(published[f"{metric}_std"]))
    f1 = f1_from_precision_recall(precision, recall)
    np.testing.assert_allclose(f1, [float(r["matek2021_f1"]) for r in rows], atol=5e-4)
    assert paper_summary(f1, [None] * 21).std is None
    assert round(float(f1.mean()), 3) == float(published["f1_mean"])


def test_paper_summary_from_folds_equals_per_class_route() -> None:
    rng = np.random.default_rng(5)
    values = rng.random((5, NUM_CLASSES))
    summary = paper_summary_from_folds(values)
    assert summary.mean == pytest.approx(values.mean(axis=0).mean())
    assert summary.std == pytest.approx(values.std(axis=0, ddof=1).mean())
    assert paper_summary_from_folds(values[:1]).std is None


def test_score_confusions_document() -> None:
    confusions = {f: confusion_matrix(*_random_fold(f), NUM_CLASSES) for f in range(5)}
    score = score_confusions(confusions)
    assert score["folds"] == [0, 1, 2, 3, 4]
    macro = [fold_metrics(c).macro_f1 for c in confusions.values()]
    assert score["summary"]["macro_f1"]["mean"] == pytest.approx(np.mean(macro))
    assert score["summary"]["macro_f1"]["std"] == pytest.approx(np.std(macro, ddof=1))
    # Mean over classes of per-class mean F1 equals the mean over folds of macro F1 (linearity).
    assert score["summary"]["f1"]["mean"] == pytest.approx(np.mean(macro))
    abe = score["per_class"]["ABE"]
    assert len(abe["f1"]["folds"]) == 5 and abe["support"] == sum(int(c[0].sum()) for c in confusions.values())
    single = score_confusions({2: confusions[2]})
    assert single["summary"]["f1"]["std"] is None and single["per_class"]["ART"]["recall"]["std"] is None


def test_confusion_matrices_are_the_per_group_matrices() -> None:
    """One bincount for every fold gives each fold's own confusion matrix (and zeros for an absent fold)."""
    folds = [_random_fold(f, n=500 + f) for f in (0, 1, 3)]
    group = np.concatenate([np.full(len(t), f) for f, (t, _) in zip((0, 1, 3), folds, strict=True)])
    true = np.concatenate([t for t, _ in folds])
    pred = np.concatenate([p for _, p in folds])
    order = np.random.default_rng(0).permutation(len(group))
    stacked = confusion_matrices(group[order], true[order], pred[order], NUM_CLASSES)
    assert stacked.shape == (4, NUM_CLASSES, NUM_CLASSES) and not stacked[2].any()
    for f, (t, p) in zip((0, 1, 3), folds, strict=True):
        assert (stacked[f] == confusion_matrix(t, p, NUM_CLASSES)).all()
