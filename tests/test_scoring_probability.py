"""Probability metrics against scikit-learn (ECE against a direct loop), the metric registry, score.json v2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import (
    balanced_accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from bmbench import metric_registry
from bmbench.classes import CLASS_CODES, NUM_CLASSES
from bmbench.errors import BmbenchError
from bmbench.records.score import SCORE_SCHEMA_VERSION, read_score, score_from_dict, write_score
from bmbench.scoring import probability
from bmbench.scoring.metrics import FoldMetrics, confusion_matrix, fold_metrics
from bmbench.scoring.score import score_confusions


def _fold(seed: int, n: int = 4000, absent: int | None = 20, rounded: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Imbalanced labels and softmax probabilities with ties (rounded), one class absent from the truth."""
    rng = np.random.default_rng(seed)
    weights = rng.pareto(1.0, NUM_CLASSES) + 0.05
    if absent is not None:
        weights[absent] = 0
    true = rng.choice(NUM_CLASSES, size=n, p=weights / weights.sum())
    logits = rng.normal(size=(n, NUM_CLASSES)) * 2
    logits[np.arange(n), true] += rng.random(n) * 4
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    if rounded:
        probs = np.round(probs, 3)  # many tied scores, as a 3-decimal file has
        probs /= probs.sum(axis=1, keepdims=True)
    return true, probs


@pytest.mark.parametrize("seed", [0, 1])
def test_auroc_matches_sklearn_per_class(seed: int) -> None:
    true, probs = _fold(seed)
    present = [c for c in range(NUM_CLASSES) if 0 < (true == c).sum() < len(true)]
    expected = np.mean([roc_auc_score(true == c, probs[:, c]) for c in present])
    assert probability.auroc(true, probs) == pytest.approx(expected, abs=1e-12)
    assert 20 not in present  # the absent class is left out, not scored as 0 or 0.5


def test_log_loss_matches_sklearn_and_clips() -> None:
    true, probs = _fold(2, rounded=False)  # no zeros: scikit-learn clips at float eps, bmbench at 1e-15
    labels = list(range(NUM_CLASSES))
    assert probability.log_loss(true, probs) == pytest.approx(log_loss(true, probs, labels=labels), abs=1e-12)
    zero = probs.copy()
    zero[0] = 0.0
    zero[0, (true[0] + 1) % NUM_CLASSES] = 1.0  # certain and wrong
    direct = -np.mean(np.log(np.maximum(zero[np.arange(len(true)), true], 1e-15)))
    assert probability.log_loss(true, zero) == pytest.approx(direct, abs=1e-12)
    cost = (-np.log(1e-15) + np.log(probs[0, true[0]])) / len(true)  # row 0 now costs ln 1e15 = 34.5
    assert probability.log_loss(true, zero) - probability.log_loss(true, probs) == pytest.approx(cost, abs=1e-12)


def test_brier_is_the_sum_of_the_one_vs_rest_brier_scores() -> None:
    true, probs = _fold(3)
    expected = sum(brier_score_loss(true == c, probs[:, c]) for c in range(NUM_CLASSES))
    assert probability.brier(true, probs) == pytest.approx(expected, abs=1e-12)
    onehot = np.eye(NUM_CLASSES)[true]
    assert probability.brier(true, onehot) == pytest.approx(0.0, abs=1e-15)


def _ece_loop(true: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        rows = [i for i in range(len(true)) if lo < probs[i].max() <= hi]
        if not rows:
            continue
        acc = np.mean([int(np.argmax(probs[i]) == true[i]) for i in rows])
        conf = np.mean([probs[i].max() for i in rows])
        total += len(rows) / len(true) * abs(acc - conf)
    return total


def test_ece_matches_a_direct_loop() -> None:
    true, probs = _fold(4, n=1500)
    assert probability.ece(true, probs) == pytest.approx(_ece_loop(true, probs), abs=1e-12)
    # Confidences exactly on a bin edge belong to the lower bin (right-closed bins).
    edge = np.full((2, NUM_CLASSES), (1 - 2 / 15) / (NUM_CLASSES - 1))
    edge[:, 0] = 2 / 15
    assert probability.ece(np.array([0, 1]), edge) == pytest.approx(_ece_loop(np.array([0, 1]), edge), abs=1e-12)


def test_existing_metrics_equal_sklearn_on_171k_rows() -> None:
    """The equivalence the scorer claims: full data-set size, an absent class and a class never predicted."""
    rng = np.random.default_rng(11)
    n = 171_374
    weights = rng.pareto(1.0, NUM_CLASSES) + 0.01
    weights[5] = 0  # absent from the truth
    true = rng.choice(NUM_CLASSES, size=n, p=weights / weights.sum())
    pred = np.where(rng.random(n) < 0.7, true, rng.integers(NUM_CLASSES, size=n))
    pred[pred == 9] = 0  # never predicted
    m = fold_metrics(confusion_matrix(true, pred, NUM_CLASSES))
    labels = list(range(NUM_CLASSES))
    p, r, f, s = precision_recall_fscore_support(true, pred, labels=labels, zero_division=0)
    for got, want in ((m.precision, p), (m.recall, r), (m.f1, f)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(m.support, s)
    assert m.precision[9] == 0 and m.recall[5] == 0
    assert abs(m.balanced_accuracy - balanced_accuracy_score(true, pred)) < 1e-12
    assert abs(m.macro_f1 - f1_score(true, pred, labels=labels, average="macro", zero_division=0)) < 1e-12
    assert abs(m.weighted_f1 - f1_score(true, pred, labels=labels, average="weighted", zero_division=0)) < 1e-12
    assert abs(m.accuracy - float((true == pred).mean())) < 1e-12


def test_every_registered_metric_has_its_function() -> None:
    fold_fields = set(FoldMetrics.__dataclass_fields__)
    for spec in metric_registry.METRICS:
        if spec.source == "confusion":
            assert spec.name in fold_fields or spec.convention == "paper", spec.name
        else:
            assert callable(getattr(probability, spec.name)), spec.name
    assert metric_registry.PAPER_METRICS == ("precision", "recall", "f1")
    assert set(metric_registry.PROBABILITY_METRICS) == {"auroc", "log_loss", "brier", "ece"}
    assert metric_registry.spec("ece").format(None) == "\u2014"
    with pytest.raises(KeyError, match="unknown metric"):
        metric_registry.spec("nope")


def _document(with_probs: bool, folds: tuple[int, ...] = (0, 1, 2)) -> dict:
    confusions, probabilities = {}, {}
    for f in folds:
        true, probs = _fold(10 + f, n=800, absent=None)
        confusions[f] = confusion_matrix(true, probs.argmax(axis=1), NUM_CLASSES)
        probabilities[f] = {name: getattr(probability, name)(true, probs)
                            for name in metric_registry.PROBABILITY_METRICS}
    body = score_confusions(confusions, probabilities if with_probs else None)
    return {"schema_version": SCORE_SCHEMA_VERSION, "bmbench_version": "0.1.0",
            "split": {"name": "synthetic-cv5-v1", "sha256": "0" * 64, "dataset": "synthetic"}, "synthetic": True,
            "predictions": {"file": "predictions.csv", "sha256": "1" * 64, "rows": 2400,
                            "has_probabilities": with_probs},
            "classes": list(CLASS_CODES), **body}


def test_score_document_carries_probability_metrics_or_null(tmp_path: Path) -> None:
    doc = _document(True)
    record = score_from_dict(doc)
    assert record.summary.ece is not None and record.summary.ece.std is not None
    assert record.per_fold[0].auroc == doc["per_fold"][0]["auroc"]
    write_score(tmp_path / "score.json", record)
    assert read_score(tmp_path / "score.json") == record
    bare = score_from_dict(_document(False))
    assert bare.summary.auroc is None and bare.per_fold[1].brier is None  # absent, never zero
    one = score_from_dict(_document(True, folds=(0,)))
    assert one.summary.log_loss is not None and one.summary.log_loss.std is None  # one fold: std null


def test_version_1_score_documents_still_read(tmp_path: Path) -> None:
    doc = _document(False)
    doc["schema_version"] = 1
    for row in doc["per_fold"]:
        for name in (*metric_registry.PROBABILITY_METRICS, "images"):
            del row[name]
    for name in metric_registry.PROBABILITY_METRICS:
        del doc["summary"][name]
    (tmp_path / "score.json").write_text(json.dumps(doc), encoding="utf-8")
    record = read_score(tmp_path / "score.json")
    assert record.schema_version == 1 and record.summary.auroc is None
    assert record.per_fold[0].images == sum(map(sum, doc["per_fold"][0]["confusion"]))


def test_bad_score_documents_are_refused_with_the_key(tmp_path: Path) -> None:
    doc = _document(False)
    doc["summary"]["ece"] = {"mean": 0.1, "std": None}  # a probability metric without probabilities
    with pytest.raises(BmbenchError, match="null without probabilities") as info:
        write_score(tmp_path / "score.json", doc)
    assert info.value.exit_code == 2 and not (tmp_path / "score.json").exists()
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(BmbenchError, match="not valid JSON"):
        read_score(tmp_path / "bad.json")


def test_scored_probabilities_do_not_depend_on_row_order_or_memory_layout(tmp_path: Path) -> None:
    """The scorer groups rows by fold and stores probabilities class-major; the figures are each fold's own."""
    import pandas as pd

    from bmbench.scoring.score import score_file
    from bmbench.splits.store import load_split

    split = load_split("synthetic-cv5-v1")
    rng = np.random.default_rng(7)
    n = len(split.image_ids)
    true = split.labels.astype(np.int64)
    logits = rng.normal(size=(n, NUM_CLASSES))
    logits[np.arange(n), true] += 2.0
    probs = np.round(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), 4)  # ties, as a file has
    probs /= probs.sum(axis=1, keepdims=True)
    shuffled = rng.permutation(n)  # folds interleaved in the file
    frame = pd.DataFrame({"image_id": split.image_ids[shuffled], "fold": split.test_fold[shuffled],
                          "pred": np.array(CLASS_CODES)[probs[shuffled].argmax(axis=1)]})
    frame[[f"p_{c}" for c in CLASS_CODES]] = probs[shuffled]
    frame.to_csv(tmp_path / "p.csv", index=False, float_format="%.10f")
    written = pd.read_csv(tmp_path / "p.csv")[[f"p_{c}" for c in CLASS_CODES]].to_numpy()
    probs[shuffled] = written  # exactly the values the file holds
    score = score_file(tmp_path / "p.csv", "synthetic-cv5-v1")
    for row in score["per_fold"]:
        rows = np.flatnonzero(split.test_fold == row["fold"])
        fold_true, fold_probs = true[rows], np.ascontiguousarray(probs[rows])
        for name in metric_registry.PROBABILITY_METRICS:
            expected = getattr(probability, name)(fold_true, fold_probs)
            assert row[name] == pytest.approx(expected, abs=1e-12), (row["fold"], name)
            assert getattr(probability, name)(fold_true, np.asfortranarray(fold_probs)) == pytest.approx(expected,
                                                                                                      abs=1e-12)
    auroc = roc_auc_score(true[split.test_fold == 0], probs[split.test_fold == 0], multi_class="ovr",
                          average="macro", labels=list(range(NUM_CLASSES)))
    assert score["per_fold"][0]["auroc"] == pytest.approx(auroc, abs=1e-12)
