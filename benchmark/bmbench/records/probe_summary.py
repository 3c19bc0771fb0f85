"""``bmbench probe --json``: one document summarising a probe run's variants (schema_version 1).

Every number is copied from a record the run wrote: the fold figures from each variant's ``score.json``
(the official scorer's summary: mean ± sample std over folds) and, for few-shot variants, the spread over
episodes from ``episodes.json``. Nothing here computes a metric. Written by :mod:`bmbench.cli.probe_cmd`
with ``--json PATH|-`` (:func:`bmbench.cli.common.emit_json`: a file, atomically, or stdout).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bmbench.protocols import ProtocolToken
from bmbench.records.episodes import Spread
from bmbench.records.score import MeanStd

PROBE_SUMMARY_SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VariantSummary(_Strict):
    """One variant's run folder and its figures."""

    variant: ProtocolToken
    run_dir: str
    folds: list[int]
    metrics: dict[str, MeanStd | None] = Field(description="score.json's summary: over folds (std null: one fold).")
    episodes: int | None = Field(None, description="Few-shot: episodes run; null for linear and kNN.")
    over_episodes: dict[str, Spread] | None = Field(
        None, description="Few-shot: mean and sample std over episodes (episodes.json); the figures to report.")
    selected_episode: int | None = Field(None, description="Few-shot: the episode in predictions.csv/score.json.")
    short_classes: dict[str, dict[str, int]] | None = Field(
        None, description="Few-shot: fold -> class -> images available where fewer than the shots (all used).")
    fit_seconds: float = Field(ge=0, description="Sum over the folds of the probe's fit and predict time.")


class ProbeSummary(_Strict):
    """The ``--json`` document of ``bmbench probe`` (and ``bmbench run`` on a frozen-feature submission)."""

    schema_version: Literal[1] = PROBE_SUMMARY_SCHEMA_VERSION
    submission: str
    encoder: str
    dataset: str
    synthetic: bool = Field(description="SYNTHETIC demo data: never comparable with real results.")
    split: str
    features: str = Field(description="The feature store folder the probes read.")
    variants: list[VariantSummary]

