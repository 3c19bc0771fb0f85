"""``BM_cytomorphology_data/bmbench-synthetic.json``: the marker that labels a data folder as SYNTHETIC.

Its presence alone makes :func:`bmbench.data.layout.scan_data` treat the folder as the synthetic demo set
(so results on it are never mistaken for real ones, whatever the file holds). Its content says where the
images came from: the generator (:mod:`bmbench.data.synthetic`: version, seed, per-class counts, which
decide whether an existing set may be reused) or ``bmbench data import-hf`` (the source). Markers written
before ``schema_version`` existed (every demo set generated so far) read as version 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from bmbench.records._io import BMBENCH_ONLY, read_model, write_model

SYNTHETIC_MARKER_SCHEMA_VERSION = 1
FIX = "delete the data folder and generate it again (`bmbench data synth`)"


class SyntheticMarker(BaseModel):
    """Either a generated set (``generator`` with version, seed and counts) or an imported one (``imported_by``)."""

    model_config = BMBENCH_ONLY

    schema_version: Literal[1] = SYNTHETIC_MARKER_SCHEMA_VERSION
    synthetic: Literal[True] = True
    generator: str | None = None
    generator_version: int | None = Field(None, ge=1)
    seed: int | None = Field(None, ge=0)
    counts: dict[str, int] | None = Field(None, description="Images per class code.")
    imported_by: str | None = None
    source: str | None = None
    note: str

    @model_validator(mode="after")
    def _one_origin(self) -> SyntheticMarker:
        generated = (self.generator, self.generator_version, self.seed, self.counts)
        if self.imported_by is None and any(v is None for v in generated):
            raise ValueError("a generated set records generator, generator_version, seed and counts; an "
                             "imported one records imported_by")
        if self.imported_by is not None and any(v is not None for v in generated):
            raise ValueError("imported_by and generator keys exclude each other")
        if self.counts is not None and any(n < 0 for n in self.counts.values()):
            raise ValueError("counts must not be negative")
        return self


def read_synthetic_marker(path: Path) -> SyntheticMarker:
    """The marker at ``path``, checked (exit 2 naming the file and the key)."""
    return read_model(SyntheticMarker, path, what="synthetic data marker", fix=FIX)


def write_synthetic_marker(path: Path, marker: SyntheticMarker) -> None:
    """Write the marker atomically."""
    write_model(path, marker)
