"""``episodes.json`` of a few-shot run (``fewshot-<n>``, schema_version 1): every episode's score, and their spread.

A few-shot variant runs E seeded episodes; every episode's predictions go through the official scorer
functions (:func:`bmbench.scoring.score.score_confusions` on per-fold confusion matrices). This record holds
each episode's summary metrics, their mean and sample std over episodes (the numbers to report for the
protocol), which episode's predictions were written to ``predictions.csv`` (and so scored into
``score.json``), and the classes that had fewer than n images to draw from. Written by
:mod:`bmbench.features.probe`, read by anyone through :func:`read_episodes`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bmbench.records._io import read_model, write_model

EPISODES_FILE = "episodes.json"
EPISODES_SCHEMA_VERSION = 1
EPISODE_METRICS: tuple[str, ...] = ("macro_f1", "accuracy", "balanced_accuracy", "weighted_f1", "precision",
                                    "recall", "f1")
"""Summary metrics recorded per episode (fold means; precision/recall/f1 in the paper's convention)."""
FIX = "re-create it with `bmbench probe ... --resume`; episodes.json is written by bmbench, not by hand"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EpisodeScore(_Strict):
    """One episode's summary metrics (means over the folds scored)."""

    episode: int = Field(ge=0)
    metrics: dict[str, float]


class Spread(_Strict):
    """Mean and sample std (ddof=1; null for one episode) over episodes."""

    mean: float
    std: float | None


class EpisodesRecord(_Strict):
    """``episodes.json``."""

    schema_version: Literal[1] = EPISODES_SCHEMA_VERSION
    variant: str = Field(pattern=r"^fewshot-(1|2|4|8|16)$")
    shots: int = Field(ge=1)
    episodes: int = Field(ge=1)
    seed: int = Field(ge=0)
    folds: list[int]
    selected_episode: int = Field(ge=0, description="The episode written to predictions.csv and score.json.")
    selection_rule: str
    short_classes: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="fold -> class code -> images available (< shots): all were used.")
    summary: dict[str, Spread]
    per_episode: list[EpisodeScore]


def write_episodes(run_dir: Path, record: EpisodesRecord) -> Path:
    """Write ``run_dir/episodes.json`` atomically."""
    path = Path(run_dir) / EPISODES_FILE
    write_model(path, record)
    return path


def read_episodes(run_dir: Path) -> EpisodesRecord:
    """The checked ``episodes.json`` of a few-shot run folder."""
    return read_model(EpisodesRecord, Path(run_dir) / EPISODES_FILE, what="few-shot episodes record", fix=FIX)
