"""The score document: metrics per fold and class, and the paper-convention summary (schema below).

``score.json`` (``schema_version`` 1)::

    schema_version, bmbench_version,
    split: {name, sha256, dataset}, synthetic: bool,
    predictions: {file, sha256, rows, has_probabilities},
    classes: [21 codes in index order], folds: [folds scored],
    per_fold: [{fold, confusion (21x21 ints, rows true, columns predicted), accuracy,
                balanced_accuracy, macro_f1, weighted_f1}],
    per_class: {code: {precision|recall|f1: {mean, std, folds: [...]}, support}},
    summary: {precision|recall|f1: {mean, std} (paper convention),
              macro_f1|accuracy|balanced_accuracy|weighted_f1: {mean, std} (over folds)}

Conventions are those of :mod:`bmbench.scoring.metrics`; std is null for a single fold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bmbench import __version__
from bmbench.classes import CLASS_CODES, NUM_CLASSES
from bmbench.scoring.metrics import confusion_matrix, fold_metrics, mean_std, paper_summary_from_folds
from bmbench.scoring.predictions import Predictions, read_predictions
from bmbench.splits.store import Split, load_split

SCHEMA_VERSION = 1
PAPER_METRICS: tuple[str, ...] = ("precision", "recall", "f1")
FOLD_METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1")


def confusions_by_fold(preds: Predictions, split: Split) -> dict[int, np.ndarray]:
    """One confusion matrix per scored fold (rows true class, columns predicted)."""
    true = split.labels[preds.positions]
    return {
        fold: confusion_matrix(true[preds.folds == fold], preds.pred[preds.folds == fold], NUM_CLASSES)
        for fold in preds.folds_scored
    }


def score_confusions(confusions: dict[int, np.ndarray]) -> dict[str, Any]:
    """Per-fold, per-class and summary metrics from per-fold confusion matrices.

    The leaderboard recomputes entries through this same function, so every number on the board comes
    from the confusion matrices it stores.
    """
    folds = sorted(confusions)
    metrics = [fold_metrics(confusions[f]) for f in folds]
    per_fold = [
        {"fold": f, "confusion": m.confusion.tolist(), **{k: getattr(m, k) for k in FOLD_METRICS}}
        for f, m in zip(folds, metrics, strict=True)
    ]
    stacked = {name: np.stack([getattr(m, name) for m in metrics]) for name in PAPER_METRICS}
    per_class: dict[str, Any] = {}
    for j, code in enumerate(CLASS_CODES):
        entry: dict[str, Any] = {}
        for name in PAPER_METRICS:
            values = stacked[name][:, j]
            mean, std = mean_std(values)
            entry[name] = {"mean": mean, "std": std, "folds": [float(v) for v in values]}
        entry["support"] = int(sum(int(m.support[j]) for m in metrics))
        per_class[code] = entry
    summary: dict[str, Any] = {}
    for name in PAPER_METRICS:
        paper = paper_summary_from_folds(stacked[name])
        summary[name] = {"mean": paper.mean, "std": paper.std}
    for name in FOLD_METRICS:
        mean, std = mean_std([getattr(m, name) for m in metrics])
        summary[name] = {"mean": mean, "std": std}
    return {"folds": folds, "per_fold": per_fold, "per_class": per_class, "summary": summary}


def score_predictions(preds: Predictions, split: Split) -> dict[str, Any]:
    """The full score document for validated predictions."""
    body = score_confusions(confusions_by_fold(preds, split))
    return {
        "schema_version": SCHEMA_VERSION,
        "bmbench_version": __version__,
        "split": split.provenance(),
        "synthetic": split.spec.dataset.synthetic,
        "predictions": {
            "file": preds.path.name,
            "sha256": preds.sha256,
            "rows": int(len(preds.positions)),
            "has_probabilities": preds.probs is not None,
        },
        "classes": list(CLASS_CODES),
        **body,
    }


def score_file(path: Path, split_name: str = "bm-cv5-v1", splits_dir: Path | None = None) -> dict[str, Any]:
    """Validate and score a predictions file against a published split (the one official scorer)."""
    split = load_split(split_name, splits_dir)
    return score_predictions(read_predictions(Path(path), split), split)
