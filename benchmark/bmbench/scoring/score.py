"""The score document: metrics per fold and class, and the summary; its format is :mod:`bmbench.records.score`.

Which metrics exist, and how each is aggregated, is :mod:`bmbench.metric_registry`; this module computes
them: confusion-matrix metrics through :func:`bmbench.scoring.metrics.fold_metrics`, probability metrics
through :mod:`bmbench.scoring.probability` (null when the file has no probabilities). Conventions are those
of :mod:`bmbench.scoring.metrics`; std is null for a single fold.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from bmbench import __version__
from bmbench.classes import CLASS_CODES, NUM_CLASSES
from bmbench.metric_registry import FOLD_METRICS, PAPER_METRICS, PROBABILITY_METRICS
from bmbench.scoring import probability
from bmbench.scoring.metrics import confusion_matrices, fold_metrics, mean_std, paper_summary_from_folds
from bmbench.scoring.predictions import Predictions, read_predictions
from bmbench.splits.store import Split, load_split

DEFAULT_SPLIT = "bm-cv5-v1"
"""The split ``bmbench score`` assumes for a predictions file that is not a run's own."""
SCHEMA_VERSION = 2
"""Version of the score document this scorer writes (:mod:`bmbench.records.score`)."""


def confusions_by_fold(preds: Predictions, split: Split) -> dict[int, np.ndarray]:
    """One confusion matrix per scored fold (rows true class, columns predicted), all from one ``bincount``."""
    by_fold = confusion_matrices(preds.folds, split.labels[preds.positions], preds.pred, NUM_CLASSES)
    return {fold: by_fold[fold].copy() for fold in preds.folds_scored}


def probability_metrics(true: np.ndarray, probs: np.ndarray) -> dict[str, float | None]:
    """Every probability metric of the registry for one fold (None where undefined, e.g. AUROC of one class)."""
    out: dict[str, float | None] = {}
    for name in PROBABILITY_METRICS:
        value = getattr(probability, name)(true, probs)
        out[name] = value if math.isfinite(value) else None
    return out


def probabilities_by_fold(preds: Predictions, split: Split) -> dict[int, dict[str, float | None]] | None:
    """The probability metrics of each scored fold, or None when the file has no probabilities."""
    if preds.probs is None:
        return None
    # one gather, then each fold is a slice (no per-fold copy); as 8-bit keys the stable sort is a radix sort
    keys = preds.folds.astype(np.uint8) if split.folds <= 256 else preds.folds
    order = np.argsort(keys, kind="stable")
    folds = preds.folds[order]
    true = split.labels[preds.positions[order]].astype(np.int64)
    by_class = preds.probs.T[:, order]  # (21, rows): one contiguous row per class, as the per-class passes read
    bounds = np.searchsorted(folds, np.array(preds.folds_scored + (np.iinfo(np.int64).max,)))
    out = {}
    for fold, start, stop in zip(preds.folds_scored, bounds[:-1], bounds[1:], strict=True):
        out[fold] = probability_metrics(true[start:stop], by_class[:, start:stop].T)
    return out


def _summary_of(values: list[float | None]) -> dict[str, float | None] | None:
    if not values or any(v is None for v in values):
        return None
    mean, std = mean_std([float(v) for v in values if v is not None])
    return {"mean": mean, "std": std}


def probability_summary(per_fold: dict[int, dict[str, float | None]]) -> dict[str, dict[str, float | None] | None]:
    """Mean and sample std over folds of each probability metric (None if a fold lacks it)."""
    folds = sorted(per_fold)
    return {name: _summary_of([per_fold[f][name] for f in folds]) for name in PROBABILITY_METRICS}


def score_confusions(confusions: dict[int, np.ndarray],
                     probabilities: dict[int, dict[str, float | None]] | None = None) -> dict[str, Any]:
    """Per-fold, per-class and summary metrics from per-fold confusion matrices (and probability metrics).

    The leaderboard recomputes entries through this same function, so every number on the board comes
    from the confusion matrices it stores (probability metrics from its stored predictions file).
    """
    folds = sorted(confusions)
    metrics = [fold_metrics(confusions[f]) for f in folds]
    if probabilities is not None and sorted(probabilities) != folds:
        raise ValueError(f"probability metrics for folds {sorted(probabilities)}, confusions for {folds}")
    per_fold = [
        {"fold": f, "images": int(m.support.sum()), "confusion": m.confusion.tolist(),
         **{k: getattr(m, k) for k in FOLD_METRICS},
         **{k: (probabilities[f][k] if probabilities is not None else None) for k in PROBABILITY_METRICS}}
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
    summary.update(probability_summary({p["fold"]: p for p in per_fold}))
    return {"folds": folds, "per_fold": per_fold, "per_class": per_class, "summary": summary}


def score_predictions(preds: Predictions, split: Split) -> dict[str, Any]:
    """The full score document for validated predictions."""
    body = score_confusions(confusions_by_fold(preds, split), probabilities_by_fold(preds, split))
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


def score_file(path: Path, split_name: str = DEFAULT_SPLIT, splits_dir: Path | None = None) -> dict[str, Any]:
    """Validate and score a predictions file against a published split (the one official scorer)."""
    split = load_split(split_name, splits_dir)
    return score_predictions(read_predictions(Path(path), split), split)


def split_of_predictions(path: Path) -> tuple[str, str]:
    """The split a predictions file belongs to when none is given, and why: the split recorded in the run's
    ``run.json`` (beside a run's ``predictions.csv``, or above a ``fold<k>/test_predictions.csv``), else
    :data:`DEFAULT_SPLIT`."""
    from bmbench.records.run import RUN_FILE, read_run

    folder = Path(path).parent
    candidates = [folder, folder.parent] if re.fullmatch(r"fold\d+", folder.name) else [folder]
    for run_dir in candidates:
        if (run_dir / RUN_FILE).exists():
            return read_run(run_dir).split.name, f"the split recorded in {run_dir / RUN_FILE}"
    return DEFAULT_SPLIT, "the default; pass --split for another"


def missing_folds(score: dict[str, Any]) -> tuple[int, ...]:
    """The folds of the score's split that its predictions do not cover (empty when all are scored)."""
    from bmbench.splits.store import get_split_spec

    scored = set(score["folds"])
    return tuple(f for f in range(get_split_spec(score["split"]["name"]).folds) if f not in scored)


def require_all_folds(score: dict[str, Any], path: Path) -> None:
    """Refuse (exit 2) a score whose predictions file leaves out a whole fold of its split."""
    from bmbench.errors import PredictionsError

    missing = missing_folds(score)
    if missing:
        raise PredictionsError(
            f"{path}: no predictions for fold(s) {', '.join(map(str, missing))} of split {score['split']['name']} "
            f"(scored: {', '.join(map(str, score['folds']))}); predict every fold's test images, or drop "
            "--require-all-folds to score the folds present")
