"""``<cache>/pcam/<file>.h5.source.json``: which gzip file a decompressed PatchCamelyon copy was made from.

:func:`bmbench.pretraining.pcam.decompress_cached` reuses the copy while the gzip file's path, size and
modification time equal this record; a missing or damaged record means "decompress again" (the copy is a
cache), so the caller treats a refusal from :func:`read_pcam_source` as stale. Files written before
``schema_version`` existed read as version 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from bmbench.records._io import BMBENCH_ONLY, read_model, write_model

PCAM_SOURCE_SCHEMA_VERSION = 1
FIX = "delete it (and the decompressed copy beside it) to decompress again"


class PcamSource(BaseModel):
    """The gzip file behind a decompressed copy: resolved path, size in bytes, modification time in ns."""

    model_config = BMBENCH_ONLY

    schema_version: Literal[1] = PCAM_SOURCE_SCHEMA_VERSION
    source: str = Field(min_length=1)
    size: int = Field(ge=0)
    mtime_ns: int

    def same_file(self, other: PcamSource) -> bool:
        """Both records describe the same gzip file, unchanged."""
        return (self.source, self.size, self.mtime_ns) == (other.source, other.size, other.mtime_ns)


def read_pcam_source(path: Path) -> PcamSource:
    """The source record of a decompressed copy, checked."""
    return read_model(PcamSource, path, what="PatchCamelyon source record", fix=FIX)


def write_pcam_source(path: Path, record: PcamSource) -> None:
    """Write the record atomically (after the copy it describes)."""
    write_model(path, record)
