"""The feature store's manifest (``manifest.json``, schema_version 1): what was embedded, how, and how fast.

One owner for the format: :mod:`bmbench.features.store` reads it, :mod:`bmbench.features.embed` writes it.
The ``key`` binds everything that decides the numbers in the store (encoder id and weights, fold of a
``run:`` encoder, preprocessing, data set and the exact row order); a store is reused only when the key
of the request equals the key in its manifest, so features of another encoder are never read silently.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

FEATURES_SCHEMA_VERSION = 1
Interpolation = Literal["nearest", "bilinear", "bicubic"]


class Preprocessing(BaseModel):
    """Resolved eval preprocessing: resize the shorter side to ``resize``, centre-crop ``size``, normalise.

    ``source`` says where it came from (timm data config, torchvision weights, recipe, submission override).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(ge=8, le=4096)
    resize: int = Field(ge=8, le=4096)
    interpolation: Interpolation
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str


class EncoderInfo(BaseModel):
    """The encoder that produced the features (also recorded in run.json of every probe run)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="The submission's encoder spec: timm:<name>, torchvision:<name>, model.py, run:<path>.")
    kind: Literal["timm", "torchvision", "model.py", "run"]
    weights_sha256: str = Field(description="SHA-256 of the weights file (timm/torchvision/run) or of the state dict (model.py).")
    weights_file: str | None = None
    parameters: int = Field(ge=0)
    feature_dim: int = Field(ge=1)
    fold: int | None = Field(None, description="For run: encoders, the fold whose best.pt was loaded.")


class StoreKey(BaseModel):
    """Everything that decides the stored numbers; its digest names and guards the store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoder_id: str
    weights_sha256: str
    fold: int | None
    preprocess: Preprocessing
    dataset: str
    index_sha256: str = Field(description="SHA-256 of index.csv: the image ids in row order.")

    def digest(self) -> str:
        """Hex SHA-256 of the canonical JSON of the key."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(f"bmbench-features-v{FEATURES_SCHEMA_VERSION}\0{text}".encode()).hexdigest()


class SplitRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    sha256: str


class KeyedRecord(BaseModel):
    """What ``manifest.json`` and ``progress.json`` share: the store key and its digest, checked to agree
    (a record whose key was edited, or whose digest is stale, would guard the store with a false name)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = FEATURES_SCHEMA_VERSION
    key: StoreKey
    key_sha256: str

    @model_validator(mode="after")
    def _digest_is_the_keys(self) -> Self:
        if self.key_sha256 != self.key.digest():
            raise ValueError("key_sha256 is not the SHA-256 of key; the record was edited: delete the store and "
                             "run `bmbench embed` again")
        return self


class FeatureManifest(KeyedRecord):
    """``manifest.json`` of a complete feature store; written last, so its presence marks completion."""

    encoder: EncoderInfo
    preprocess: Preprocessing
    dataset: str
    synthetic: bool
    split: SplitRef = Field(description="The split the store was made for (another split with the same rows reuses it).")
    rows: int = Field(ge=1)
    dim: int = Field(ge=1)
    dtype: Literal["float16"] = "float16"
    index_sha256: str
    image_cache: dict[str, str | int | None] | None = Field(
        None, description="The uint8 image cache read (folder, checksum), or None when images were decoded.")
    bmbench_version: str
    device: dict[str, str | int | float | None]
    batch: int = Field(ge=1)
    images_per_second: float = Field(ge=0)
    wall_seconds: float = Field(ge=0, description="Seconds of embedding, summed over resumed invocations.")
    resumed: int = Field(0, ge=0, description="How many times the embedding was resumed after an interruption.")
    created_at: str


class EmbedProgress(KeyedRecord):
    """``progress.json`` of an unfinished store: rows ``0..rows_done`` are written; resuming starts there."""

    rows: int = Field(ge=1)
    dim: int = Field(ge=1)
    rows_done: int = Field(ge=0)
    wall_seconds: float = Field(ge=0)
    resumed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _done_within_rows(self) -> Self:
        if self.rows_done > self.rows:
            raise ValueError(f"rows_done {self.rows_done} exceeds rows {self.rows}")
        return self
