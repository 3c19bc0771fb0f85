"""Metrics from confusion matrices, and the aggregation convention of Glüge et al. (2023).

Conventions (they reproduce the paper's Tables 4 and 5):

* Confusion matrices have rows = true class, columns = predicted class, in class index order.
* Per class and fold: precision = TP / (TP + FP), **0 for a class never predicted in the fold**;
  recall = TP / (TP + FN), 0 for a class absent from the fold; F1 = 2PR / (P + R), 0 when P + R = 0
  (identical to scikit-learn with ``zero_division=0``).
* Per fold: accuracy; balanced accuracy = mean recall over the classes present in the fold (as
  scikit-learn); macro F1 = unweighted mean F1 over all classes; weighted F1 = support-weighted mean F1.
* Over folds: mean and **sample** standard deviation (ddof=1); the std is ``None`` for a single fold.
* Paper convention (the precision / recall / F1 of Table 4): mean over classes of the per-class means,
  ± the mean over classes of the per-class standard deviations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def confusion_matrix(true: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs as an ``n_classes x n_classes`` int64 matrix."""
    return confusion_matrices(np.zeros(len(true), dtype=np.int64), true, pred, n_classes)[0]


def confusion_matrices(group: np.ndarray, true: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """One confusion matrix per group 0 .. max(group) (e.g. per fold), all from one ``bincount``:
    ``(groups, n_classes, n_classes)`` int64."""
    cells = n_classes * n_classes
    flat = group.astype(np.int64) * cells + true.astype(np.int64) * n_classes + pred.astype(np.int64)
    groups = int(group.max(initial=0)) + 1
    return np.bincount(flat, minlength=groups * cells).reshape(groups, n_classes, n_classes)


@dataclass(frozen=True)
class FoldMetrics:
    """Everything computed from one fold's confusion matrix."""

    confusion: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    weighted_f1: float


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 0 where den is 0."""
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def fold_metrics(confusion: np.ndarray) -> FoldMetrics:
    """Per-class and overall metrics of one fold under the conventions in the module docstring."""
    cm = np.asarray(confusion, dtype=np.int64)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    total = int(support.sum())
    present = support > 0
    return FoldMetrics(
        confusion=cm,
        precision=precision,
        recall=recall,
        f1=f1,
        support=support,
        accuracy=float(tp.sum() / total) if total else 0.0,
        balanced_accuracy=float(recall[present].mean()) if present.any() else 0.0,
        macro_f1=float(f1.mean()),
        weighted_f1=float((f1 * support).sum() / total) if total else 0.0,
    )


def mean_std(values: Sequence[float] | np.ndarray) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1); std is None for fewer than two values."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), (float(arr.std(ddof=1)) if arr.size > 1 else None)


@dataclass(frozen=True)
class PaperSummary:
    """One metric in the paper's convention: mean of per-class means ± mean of per-class stds."""

    mean: float
    std: float | None


def paper_summary(per_class_means: Sequence[float], per_class_stds: Sequence[float | None]) -> PaperSummary:
    """Aggregate per-class (mean, std) figures into a Table-4 style row (std None if any class has none)."""
    means = np.asarray(per_class_means, dtype=np.float64)
    if any(s is None for s in per_class_stds):
        return PaperSummary(float(means.mean()), None)
    return PaperSummary(float(means.mean()), float(np.asarray(per_class_stds, dtype=np.float64).mean()))


def paper_summary_from_folds(per_fold_values: np.ndarray) -> PaperSummary:
    """Paper convention from a (folds x classes) array of one per-class metric."""
    values = np.asarray(per_fold_values, dtype=np.float64)
    stds: list[float | None]
    if values.shape[0] > 1:
        stds = list(values.std(axis=0, ddof=1))
    else:
        stds = [None] * values.shape[1]
    return paper_summary(values.mean(axis=0), stds)


def f1_from_precision_recall(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """2PR / (P + R) elementwise, 0 where P + R = 0 (how Matek 2021's per-class F1 is derived)."""
    p = np.asarray(precision, dtype=np.float64)
    r = np.asarray(recall, dtype=np.float64)
    return _ratio(2 * p * r, p + r)
