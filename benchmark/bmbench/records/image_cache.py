"""``<cache>/images/<dataset>-<key>/manifest.json``: what an image cache holds and the digests that guard it.

:mod:`bmbench.data.cache` writes it (last, inside the temporary folder that is renamed into place) and reads
it to decide whether a cache is up to date; ``bmbench data cache --verify`` recomputes its digests. A cache
is a cache: a manifest that does not fit this model makes the cache stale, and it is rebuilt; the strict
reader :func:`read_image_cache_manifest` says which key is wrong. Every manifest bmbench has written
carries ``schema_version`` 1; a manifest without the key reads as version 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from bmbench.records._io import BMBENCH_ONLY, SHA256, read_model, write_model

IMAGE_CACHE_MANIFEST = "manifest.json"
IMAGE_CACHE_SCHEMA_VERSION = 1
FIX = "rebuild the cache with `bmbench data cache --rebuild` (or delete its folder)"


class CacheSplit(BaseModel):
    """The split whose rows the cache holds in order (empty name and hash: every image of a data folder)."""

    model_config = BMBENCH_ONLY

    name: str
    sha256: SHA256 | Literal[""]


class ImageCacheManifest(BaseModel):
    """One image cache: its rows, the digests of pixels and index, and the fingerprint of the source files."""

    model_config = BMBENCH_ONLY

    schema_version: Literal[1] = IMAGE_CACHE_SCHEMA_VERSION
    dataset: str = Field(min_length=1)
    split: CacheSplit
    rows: int = Field(ge=1)
    shape: tuple[int, int, int, int] = Field(description="rows x height x width x 3.")
    dtype: Literal["uint8"] = "uint8"
    key: SHA256 = Field(description="Names the cache: version, data set, split hash and every (id, path) row.")
    images_sha256: SHA256
    hash_block_rows: int = Field(ge=1)
    index_sha256: SHA256
    checksum: SHA256 = Field(description="Binds the pixels, the index, the split hash and the data set id.")
    fingerprint: SHA256 = Field(description="Size and modification time of every source file.")
    decoded_with_opencv: list[str] = Field(default_factory=list, description="Image ids Pillow refused.")
    seconds: float = Field(ge=0)
    created_at: str

    @model_validator(mode="after")
    def _shape_fits(self) -> ImageCacheManifest:
        if self.shape[0] != self.rows or self.shape[3] != 3 or min(self.shape) < 1:
            raise ValueError(f"shape {list(self.shape)} does not fit rows {self.rows} of RGB images")
        return self


def image_cache_manifest_path(folder: Path) -> Path:
    """Where the cache in ``folder`` records itself."""
    return Path(folder) / IMAGE_CACHE_MANIFEST


def read_image_cache_manifest(folder: Path) -> ImageCacheManifest:
    """The manifest of the cache in ``folder``, checked (exit 2 naming the file and the key)."""
    return read_model(ImageCacheManifest, image_cache_manifest_path(folder), what="image cache manifest", fix=FIX)


def write_image_cache_manifest(folder: Path, manifest: ImageCacheManifest) -> None:
    """Write the manifest of the cache in ``folder`` atomically."""
    write_model(image_cache_manifest_path(folder), manifest)
