"""``score.json``: the official scorer's output, one pydantic model, read and written only here.

Schema version 2::

    schema_version: 2, bmbench_version,
    split: {name, sha256, dataset}, synthetic: bool,
    predictions: {file, sha256, rows, has_probabilities},
    classes: [21 codes in index order], folds: [folds scored],
    per_fold: [{fold, images, confusion (21x21 ints, rows true, columns predicted),
                <every per-fold metric of bmbench.metric_registry>: float | null}],
    per_class: {code: {precision|recall|f1: {mean, std, folds: [...]}, support}},
    summary: {<every metric>: {mean, std} | null}

Probability metrics (AUROC, log loss, Brier, ECE) are ``null`` per fold and in the summary when the
predictions file has no ``p_*`` columns: absent, never zero. ``std`` is null for a single fold.
Version 1 documents (no probability metrics, no ``images``) still read: they upgrade with those null.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from bmbench.classes import CLASS_CODES, NUM_CLASSES
from bmbench.metric_registry import ALL_METRICS, BY_NAME, PAPER_METRICS, PER_FOLD_METRICS, PROBABILITY_METRICS
from bmbench.records._io import read_model, validate, write_model

SCORE_FILE = "score.json"
SCORE_SCHEMA_VERSION = 2
FIX = "re-create it with `bmbench score PREDICTIONS --json score.json` (or re-run the run's scoring)"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MeanStd(_Strict):
    """A figure over folds: mean and sample std (std null for one fold or where a paper gives none).

    score.json's summary and the leaderboard entries' metrics share this one model.
    """

    mean: float
    std: float | None = None

    @field_validator("mean", "std")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class ClassStat(MeanStd):
    """A per-class figure: mean, std and the value of every fold."""

    folds: list[float]


ClassScore = create_model(
    "ClassScore", __base__=_Strict, __doc__="One class: the paper-convention metrics over folds, and its test images.",
    support=(int, Field(ge=0)), **{name: (ClassStat, ...) for name in PAPER_METRICS},
)


class SplitProvenance(_Strict):
    """The split scored against, by name, file SHA-256 and data set."""

    name: str
    sha256: str
    dataset: str


class PredictionsInfo(_Strict):
    """The predictions file scored."""

    file: str
    sha256: str
    rows: int = Field(ge=0)
    has_probabilities: bool


class _FoldBase(_Strict):
    """One fold: its confusion matrix and every per-fold metric (null where it cannot be computed)."""

    fold: int = Field(ge=0)
    images: int = Field(ge=0)
    confusion: list[list[int]]

    @field_validator("confusion")
    @classmethod
    def _shape(cls, value: list[list[int]]) -> list[list[int]]:
        if len(value) != NUM_CLASSES or any(len(row) != NUM_CLASSES for row in value):
            raise ValueError(f"must be {NUM_CLASSES} rows of {NUM_CLASSES} counts")
        return value

    @model_validator(mode="before")
    @classmethod
    def _images(cls, data: Any) -> Any:
        if isinstance(data, dict) and "images" not in data and isinstance(data.get("confusion"), list):
            data = {**data, "images": sum(sum(row) for row in data["confusion"])}  # version 1 had no count
        return data


def _optional(name: str) -> bool:
    return BY_NAME[name].needs_probabilities


FoldScore = create_model(
    "FoldScore", __base__=_FoldBase, __doc__=_FoldBase.__doc__,
    **{name: ((float | None, None) if _optional(name) else (float, ...)) for name in PER_FOLD_METRICS},
)
Summary = create_model(
    "Summary", __base__=_Strict, __doc__="Every metric over the folds scored (paper convention for P / R / F1).",
    **{name: ((MeanStd | None, None) if _optional(name) else (MeanStd, ...)) for name in ALL_METRICS},
)
"""Both generated from :mod:`bmbench.metric_registry`: a new metric needs no edit here."""


class ScoreRecord(_Strict):
    """A score document (see the module docstring)."""

    schema_version: Literal[1, 2] = SCORE_SCHEMA_VERSION
    bmbench_version: str
    split: SplitProvenance
    synthetic: bool
    predictions: PredictionsInfo
    classes: list[str]
    folds: list[int] = Field(min_length=1)
    per_fold: list[FoldScore]  # type: ignore[valid-type]
    per_class: dict[str, ClassScore]  # type: ignore[valid-type]
    summary: Summary  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _consistent(self) -> ScoreRecord:
        if self.classes != list(CLASS_CODES):
            raise ValueError("classes must be the 21 class codes in index order")
        if [f.fold for f in self.per_fold] != self.folds:
            raise ValueError("per_fold must list the folds of 'folds', in order")
        if sorted(self.per_class) != sorted(CLASS_CODES):
            raise ValueError("per_class must hold the 21 class codes")
        if not self.predictions.has_probabilities:
            for name in PROBABILITY_METRICS:
                if getattr(self.summary, name) is not None:
                    raise ValueError(f"summary.{name} must be null without probabilities")
        return self


def score_from_dict(document: dict[str, Any], path: Path | None = None) -> ScoreRecord:
    """Validate a score document produced in memory (or read from ``path``)."""
    return validate(ScoreRecord, document, Path(path or SCORE_FILE), what="score document", fix=FIX)


def read_score(path: Path) -> ScoreRecord:
    """Read and validate ``score.json`` (version 1 or 2)."""
    record = read_model(ScoreRecord, Path(path), what="score document", fix=FIX)
    return record


def write_score(path: Path, record: ScoreRecord | dict[str, Any]) -> None:
    """Write a score document atomically (validated first, so nothing invalid is ever written)."""
    if isinstance(record, dict):
        record = score_from_dict(record, Path(path))
    write_model(Path(path), record)


def score_json(record: ScoreRecord | dict[str, Any]) -> dict[str, Any]:
    """The validated JSON form of a score document: what :func:`write_score` writes (``--json -`` prints it)."""
    if isinstance(record, dict):
        record = score_from_dict(record)
    return record.model_dump(mode="json")
