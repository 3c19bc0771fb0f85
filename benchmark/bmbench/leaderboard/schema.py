"""The leaderboard entry: one JSON file per result, ``leaderboard/entries/<name>.json`` (schema version 2).

An entry says who made the result and how (backbone, initialisation and external pre-training data,
parameters, recipe digest, code URL and commit, hardware, wall time and device-hours, bmbench version), on
which split (name, SHA-256, data set) and with which status, and it carries the **raw results**:

* ``results.kind = "confusions"``: the per-fold 21x21 confusion matrices (rows true class, columns
  predicted, class index order). Every number on the board is recomputed from them by
  :func:`bmbench.scoring.score.score_confusions`; ``metrics`` states what the submitter computed and
  ``bmbench leaderboard check`` verifies the two agree.
* ``results.kind = "published"``: figures reported in a paper (mean ± std over folds), optionally per class.
  Only entries of status ``reported in a paper`` may use it; where per-class figures exist the board
  derives the mean row from them.

Example (abridged)::

    {"schema_version": 1, "name": "regnet_imagenet_cd", "status": "reproduced here",
     "authors": ["..."], "backbone": "torchvision:regnet_y_32gf", "init": "imagenet+cd",
     "pretraining_data": ["ImageNet-1k", "Comparison Detector"], "external_data": true,
     "parameters": 141451949, "parameters_note": null, "recipe_digest": "...",
     "code": {"url": "https://github.com/...", "commit": "..."},
     "compute": {"hardware": "NVIDIA H100", "wall_hours": 31.2, "device_hours": 31.0},
     "bmbench_version": "0.1.0", "smoke": false,
     "split": {"name": "bm-cv5-v1", "sha256": "177e...", "dataset": "bm", "description": null},
     "date": "2026-11-27",
     "results": {"kind": "confusions", "folds": [{"fold": 0, "confusion": [[...21 ints...], ...]}, ...]},
     "metrics": {"precision": {"mean": 0.78, "std": 0.06}, ..., "weighted_f1": {"mean": 0.9, "std": 0.01}},
     "predictions": {"file": "predictions/regnet_imagenet_cd.csv.gz", "sha256": "...", "rows": 171374},
     "notes": null}

Version 2 adds ``protocol`` (``finetune`` or a frozen-feature variant), ``encoder`` (a frozen-feature
run's encoder), ``weights`` ({url, sha256, licence} of the checkpoint) and the probability metrics of
:mod:`bmbench.metric_registry` in ``metrics`` (stated where the stored predictions file has probabilities;
``check`` recomputes them from it). Version 1 files still read. The JSON Schema of this model is exported to
``leaderboard/entry.schema.json`` (:func:`entry_json_schema`) for contributors' editors.

Unknown keys are refused (``extra="forbid"``); messages name the key.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from bmbench.classes import CLASS_CODES, NUM_CLASSES
from bmbench.errors import validation_messages
from bmbench.metric_registry import ALL_METRICS, BY_NAME, FOLD_METRICS, PAPER_METRICS, PROBABILITY_METRICS
from bmbench.protocols import FINETUNE, ProtocolToken
from bmbench.records.score import MeanStd

ENTRY_SCHEMA_VERSION = 2
STATUSES: tuple[str, ...] = ("reproduced here", "submitted", "reported in a paper", "superseded")
Status = Literal["reproduced here", "submitted", "reported in a paper", "superseded"]
PAPER_STATUS = "reported in a paper"
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
DATE_RE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
__all__ = ["ALL_METRICS", "FOLD_METRICS", "PAPER_METRICS", "PROBABILITY_METRICS"]  # re-exported registry names


class _Strict(BaseModel):
    # no NaN/Infinity in any float (the board would show `inf`); see the MAX_* bounds for plausible maxima
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


MAX_HOURS = 1_000_000.0
"""Largest plausible wall/device hours of one result (over a century of one GPU)."""
MAX_PARAMETERS = 10**13
"""Largest plausible parameter count (100x the largest published networks)."""
MAX_COUNT = 10**9
"""Largest plausible confusion cell or predictions row count (the BM data has 171,374 images)."""


class Code(_Strict):
    """Where the code that produced the result lives."""

    url: str | None = Field(None, max_length=500)
    commit: str | None = Field(None, max_length=100)


class Compute(_Strict):
    """What the result cost: the hardware, wall time and accelerator (GPU) hours over all folds."""

    hardware: str | None = Field(None, max_length=200)
    wall_hours: float | None = Field(None, ge=0, le=MAX_HOURS)
    device_hours: float | None = Field(None, ge=0, le=MAX_HOURS)


class SplitRef(_Strict):
    """The split the result was computed on; ``sha256`` is null only for a paper's own, unpublished split."""

    name: str = Field(min_length=1, max_length=100)
    sha256: str | None = None
    dataset: str = Field(min_length=1, max_length=50)
    description: str | None = Field(None, max_length=300)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None and not SHA256_RE.fullmatch(value):
            raise ValueError("must be 64 lowercase hex digits (the split file's SHA-256)")
        return value


class FoldConfusion(_Strict):
    """One fold's confusion matrix: 21 rows (true class) of 21 non-negative counts (predicted class)."""

    fold: int = Field(ge=0, le=1000)
    confusion: list[list[int]]

    @field_validator("confusion")
    @classmethod
    def _shape(cls, value: list[list[int]]) -> list[list[int]]:
        if len(value) != NUM_CLASSES or any(len(row) != NUM_CLASSES for row in value):
            raise ValueError(f"must be {NUM_CLASSES} rows of {NUM_CLASSES} counts (class index order ABE..PMO)")
        if any(v < 0 for row in value for v in row):
            raise ValueError("counts must be >= 0")
        if any(v > MAX_COUNT for row in value for v in row):
            raise ValueError(f"counts must be at most {MAX_COUNT:,} (a cell counts images)")
        return value


class ConfusionResults(_Strict):
    """Per-fold confusion matrices, folds ascending and distinct."""

    kind: Literal["confusions"]
    folds: list[FoldConfusion] = Field(min_length=1)

    @field_validator("folds")
    @classmethod
    def _ascending(cls, value: list[FoldConfusion]) -> list[FoldConfusion]:
        numbers = [f.fold for f in value]
        if numbers != sorted(set(numbers)):
            raise ValueError("folds must be distinct and in ascending order")
        return value


class ClassFigures(_Strict):
    """A paper's per-class figures for one class."""

    precision: MeanStd
    recall: MeanStd
    f1: MeanStd


class Source(_Strict):
    """The publication a ``reported in a paper`` entry comes from."""

    citation: str = Field(min_length=1, max_length=500)
    url: str | None = Field(None, max_length=500)
    tables: str = Field(min_length=1, max_length=200)


class PublishedResults(_Strict):
    """Figures as a paper printed them; per class (all 21 classes) where the paper gives them."""

    kind: Literal["published"]
    source: Source
    per_class: dict[str, ClassFigures] | None = None

    @field_validator("per_class")
    @classmethod
    def _all_classes(cls, value: dict[str, ClassFigures] | None) -> dict[str, ClassFigures] | None:
        if value is not None and sorted(value) != sorted(CLASS_CODES):
            missing = sorted(set(CLASS_CODES) - set(value))
            unknown = sorted(set(value) - set(CLASS_CODES))
            raise ValueError(f"must hold exactly the 21 class codes (missing {missing}, unknown {unknown})")
        return value


Results = Annotated[ConfusionResults | PublishedResults, Field(discriminator="kind")]


Metrics = create_model(
    "Metrics", __base__=_Strict,
    __doc__="What the entry states, one field per metric of bmbench.metric_registry (absent: null, never 0).",
    **{name: (MeanStd | None, Field(None, description=BY_NAME[name].help)) for name in ALL_METRICS},
)
"""Generated from the registry: a new metric needs no edit here."""


class Weights(_Strict):
    """Where the trained checkpoint can be downloaded, its SHA-256 and its licence."""

    url: str = Field(min_length=1, max_length=500)
    sha256: str
    licence: str | None = Field(None, max_length=100)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not SHA256_RE.fullmatch(value):
            raise ValueError("must be 64 lowercase hex digits (the checkpoint file's SHA-256)")
        return value


class Encoder(_Strict):
    """The frozen encoder of a frozen-feature entry (from the run's run.json)."""

    id: str = Field(min_length=1, max_length=300)
    parameters: int = Field(ge=0, le=MAX_PARAMETERS)
    weights_sha256: str | None = None
    feature_dim: int = Field(ge=1, le=10**7)


class PredictionsRef(_Strict):
    """The predictions file beside the entry (gzip of the scorer's CSV); sha256 is of the uncompressed CSV."""

    file: str = Field(min_length=1, max_length=200)
    sha256: str
    rows: int = Field(ge=1, le=MAX_COUNT)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not SHA256_RE.fullmatch(value):
            raise ValueError("must be 64 lowercase hex digits")
        return value


class Entry(_Strict):
    """One leaderboard result (schema version 1; see the module docstring)."""

    schema_version: Literal[1, 2] = ENTRY_SCHEMA_VERSION
    name: str = Field(min_length=1, max_length=200)
    status: Status
    protocol: ProtocolToken = Field(FINETUNE, description="finetune | linear | knn-1 | knn-20 | fewshot-<n>")
    authors: list[str] = Field(min_length=1)
    backbone: str = Field(min_length=1, max_length=200)
    init: str = Field(min_length=1, max_length=100)
    pretraining_data: list[str] = Field(default_factory=list)
    external_data: bool
    parameters: int | None = Field(None, ge=0, le=MAX_PARAMETERS)
    parameters_note: str | None = Field(None, max_length=300)
    recipe_digest: str | None = Field(None, max_length=100)
    code: Code = Field(default_factory=Code)
    compute: Compute = Field(default_factory=Compute)
    bmbench_version: str | None = Field(None, max_length=50)
    smoke: bool = False
    split: SplitRef
    date: str
    results: Results
    metrics: Metrics  # type: ignore[valid-type]
    predictions: PredictionsRef | None = None
    encoder: Encoder | None = None
    weights: Weights | None = None
    notes: str | None = Field(None, max_length=2000)

    @field_validator("date")
    @classmethod
    def _date(cls, value: str) -> str:
        if not DATE_RE.fullmatch(value):
            raise ValueError("must be YYYY-MM-DD (or YYYY-MM / YYYY for a publication)")
        parts = [int(p) for p in value.split("-")]
        try:
            datetime.date(parts[0], *(parts[1:] + [1] * (3 - len(parts))))
        except ValueError:
            raise ValueError(f"{value} is not a real calendar date") from None
        if not 1900 <= parts[0] <= 2200:
            raise ValueError(f"the year {parts[0]} is not plausible")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Entry:
        if self.external_data != bool(self.pretraining_data):
            raise ValueError("external_data must be true exactly when pretraining_data lists a data set")
        if isinstance(self.results, PublishedResults) and self.status != PAPER_STATUS:
            raise ValueError(f"published figures (results.kind 'published') need status {PAPER_STATUS!r}")
        if isinstance(self.results, ConfusionResults) and self.split.sha256 is None:
            raise ValueError("an entry with confusion matrices must name its split's SHA-256 (split.sha256)")
        if all(getattr(self.metrics, name) is None for name in ALL_METRICS):
            raise ValueError("metrics must state at least one figure")
        if self.protocol == FINETUNE and self.encoder is not None:
            raise ValueError("encoder is only for frozen-feature entries (protocol linear, knn-<k>, fewshot-<n>)")
        return self

    @property
    def has_confusions(self) -> bool:
        """Whether the entry carries per-fold confusion matrices (and so per-fold statistics)."""
        return isinstance(self.results, ConfusionResults)


def entry_json_schema() -> str:
    """The entry's JSON Schema as the deterministic text of ``leaderboard/entry.schema.json``."""
    schema: dict[str, Any] = Entry.model_json_schema()
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "title": f"bmbench leaderboard entry (schema version {ENTRY_SCHEMA_VERSION})", **schema}
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def format_validation_error(err: ValidationError) -> list[tuple[str, str]]:
    """(field, message) pairs for a pydantic error, in words a contributor can act on."""
    return validation_messages(err, "the entry schema (bmbench/leaderboard/schema.py)")
