"""``bmbench data stats --json FILE``: a data set's channel statistics, as a document for users and scripts.

:func:`bmbench.data.stats.stats_document` builds it from the exact tallies; the command writes it with
``--json PATH|-`` (:func:`bmbench.cli.common.emit_json`, atomically or to stdout). Mean and standard deviation follow the paper's Table 2 convention (0..1 scale,
per RGB channel, population std over all pixels); for the real BM data ``table2`` sets them beside Table 2's
published values. :func:`read_data_stats` lets a script read a document back with the same checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from bmbench.records._io import BMBENCH_ONLY, read_model

DATA_STATS_SCHEMA_VERSION = 1
FIX = "write it again with `bmbench data stats --data PATH --json FILE`"
Channel = Literal["red", "green", "blue"]


class StatsData(BaseModel):
    """The images the statistics cover."""

    model_config = BMBENCH_ONLY

    root: str
    dataset: str | None = Field(description="bm, synthetic, or null for a plain folder of images.")
    synthetic: bool


class PerChannel(BaseModel):
    """One value per RGB channel, on the 0..1 scale."""

    model_config = BMBENCH_ONLY

    red: float = Field(ge=0, le=1)
    green: float = Field(ge=0, le=1)
    blue: float = Field(ge=0, le=1)


class Undecodable(BaseModel):
    """A file left out because neither Pillow nor OpenCV could decode it."""

    model_config = BMBENCH_ONLY

    file: str
    reason: str


class Table2Row(BaseModel):
    """One channel of this data beside the paper's Table 2 (4 decimals) and the differences."""

    model_config = BMBENCH_ONLY

    channel: Channel
    mean: float = Field(ge=0, le=1)
    table2_mean: float = Field(ge=0, le=1)
    mean_diff: float = Field(ge=-1, le=1)
    std: float = Field(ge=0, le=1)
    table2_std: float = Field(ge=0, le=1)
    std_diff: float = Field(ge=-1, le=1)


class DataStatsDocument(BaseModel):
    """The statistics of one ``bmbench data stats`` call."""

    model_config = BMBENCH_ONLY

    schema_version: Literal[1] = DATA_STATS_SCHEMA_VERSION
    data: StatsData
    images: int = Field(ge=1, description="Images decoded and counted.")
    pixels_per_channel: int = Field(ge=1)
    mean: PerChannel
    std: PerChannel
    convention: str
    undecodable: list[Undecodable] = Field(default_factory=list)
    table2: list[Table2Row] | None = Field(None, description="Only for the real BM data.")


def read_data_stats(path: Path) -> DataStatsDocument:
    """A statistics document, checked (exit 2 naming the file and the key)."""
    return read_model(DataStatsDocument, path, what="data statistics document", fix=FIX)

