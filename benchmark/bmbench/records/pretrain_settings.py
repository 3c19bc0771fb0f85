"""``<checkpoint>.work/pretrain.json``: the settings an interrupted pre-training started with.

``bmbench pretrain`` writes it when a pre-training starts and, on ``--resume``, refuses to continue with
other settings (another recipe, seed, epoch count or data would mix two trainings in one checkpoint).
Files written before ``schema_version`` existed read as version 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from bmbench.records._io import BMBENCH_ONLY, SHA256, read_model, write_model

SETTINGS_FILE = "pretrain.json"
SETTINGS_SCHEMA_VERSION = 1
FIX = "delete the work folder to start the pre-training over"


class PretrainSettings(BaseModel):
    """What must stay the same between a pre-training and its resumption."""

    model_config = BMBENCH_ONLY

    schema_version: Literal[1] = SETTINGS_SCHEMA_VERSION
    backbone: str = Field(min_length=1)
    dataset: Literal["pcam", "cd"]
    init: Literal["random", "imagenet"]
    recipe_digest: SHA256
    epochs: int = Field(ge=1)
    max_steps: int | None = Field(None, ge=1)
    seed: int
    data: str = Field(description="Where the in-domain images were read from.")

    def differences(self, other: PretrainSettings) -> dict[str, tuple[object, object]]:
        """Key -> (this file's value, ``other``'s) for every setting that differs."""
        mine, theirs = self.model_dump(exclude={"schema_version"}), other.model_dump(exclude={"schema_version"})
        return {k: (v, theirs[k]) for k, v in mine.items() if theirs[k] != v}


def read_pretrain_settings(path: Path) -> PretrainSettings:
    """The recorded settings of an interrupted pre-training, checked."""
    return read_model(PretrainSettings, path, what="pre-training settings", fix=FIX)


def write_pretrain_settings(path: Path, settings: PretrainSettings) -> None:
    """Write the settings atomically."""
    write_model(path, settings)
