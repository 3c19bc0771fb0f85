"""``bmbench bench --embed SUBMISSION --json PATH|-``: embedding throughput beside the encoder's pure forward
(schema_version 1).

:func:`bmbench.bench.embed.bench_embed` builds the one :class:`EmbedBench` (the only place its fields are
filled); the command writes it with :func:`bmbench.cli.common.emit_json`, and :func:`read_embed_bench` reads a
document back with the usual checks. The training bench (``bench --json``) and the device check's embed stage
stay plain JSON: they run on a GPU machine without pydantic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from bmbench.records._io import BMBENCH_ONLY, read_model
from bmbench.records.features import EncoderInfo, Preprocessing

EMBED_BENCH_SCHEMA_VERSION = 1
FIX = "measure again with `bmbench bench --embed SUBMISSION --json FILE`"


class EmbedBenchData(BaseModel):
    """The images embedded: the whole split, from the image cache when there is one."""

    model_config = BMBENCH_ONLY

    dataset: str
    synthetic: bool
    split: str
    rows: int = Field(ge=1)
    image_cache: bool = Field(description="Read from the uint8 image cache (else the JPEGs were decoded).")


class ForwardTiming(BaseModel):
    """The encoder alone on one device-resident preprocessed batch, ``steps`` times after ``warmup``."""

    model_config = BMBENCH_ONLY

    images_per_second: float = Field(ge=0)
    steps: int = Field(ge=1)
    warmup: int = Field(ge=0)
    seconds: float = Field(ge=0)
    input: list[int] = Field(min_length=4, max_length=4, description="batch, channels, height, width")
    parameters: int = Field(ge=0)


class EmbedTiming(BaseModel):
    """A complete ``bmbench embed`` of the split into a temporary store (the figures its manifest records)."""

    model_config = BMBENCH_ONLY

    images_per_second: float = Field(ge=0)
    wall_seconds: float = Field(ge=0)
    dim: int = Field(ge=1)


class EmbedBench(BaseModel):
    """The document: both figures at the same batch, and their ratio embed / forward (the target is 0.8)."""

    model_config = BMBENCH_ONLY

    schema_version: Literal[1] = EMBED_BENCH_SCHEMA_VERSION
    kind: Literal["embed"] = "embed"
    submission: str
    encoder: EncoderInfo
    preprocess: Preprocessing
    data: EmbedBenchData
    device: dict[str, Any] = Field(description="bmbench.runs.provenance.device_info: type, name, CUDA versions.")
    batch: int = Field(ge=1)
    forward: ForwardTiming
    embed: EmbedTiming
    ratio: float | None = Field(ge=0, description="embed / forward images per second; null when forward is 0.")


def read_embed_bench(path: Path) -> EmbedBench:
    """A ``bench --embed --json`` document, validated (exit 2 naming the file and the key)."""
    return read_model(EmbedBench, path, what="embed benchmark", fix=FIX)
