"""``<weights>/<backbone>/<init>.json``: what an in-domain checkpoint is, how it was made, and its SHA-256.

``bmbench pretrain`` writes it beside the checkpoint (:mod:`bmbench.pretraining.pretrain`); the ``pcam``,
``cd``, ``imagenet+pcam`` and ``imagenet+cd`` initialisations read it (:mod:`bmbench.models.init`) before
loading the weights, so a checkpoint whose bytes differ from the recorded SHA-256, or a metadata file made
for another backbone or initialisation, is refused instead of silently fine-tuned from. Every file bmbench
has written carries ``schema_version`` 1; a file without the key (copied from elsewhere) reads as version 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from bmbench.errors import BmbenchError
from bmbench.records._io import BMBENCH_ONLY, INVALID, SHA256, read_model, write_model

CHECKPOINT_SCHEMA_VERSION = 1
KIND = "bmbench in-domain checkpoint"
InDomainDataset = Literal["pcam", "cd"]
StartInit = Literal["random", "imagenet"]
InDomainInit = Literal["pcam", "cd", "imagenet+pcam", "imagenet+cd"]


def checkpoint_init(dataset: str, init: str) -> str:
    """The initialisation name a checkpoint serves: ``cd``, ``pcam``, ``imagenet+cd``, ``imagenet+pcam``."""
    return dataset if init == "random" else f"{init}+{dataset}"


class CheckpointMeta(BaseModel):
    """The metadata of one in-domain checkpoint (the state dict, in-domain head included, lies beside it)."""

    model_config = BMBENCH_ONLY

    schema_version: Literal[1] = CHECKPOINT_SCHEMA_VERSION
    kind: Literal["bmbench in-domain checkpoint"] = KIND
    backbone: str = Field(min_length=1, description="torchvision:<name> or timm:<name>.")
    checkpoint_init: InDomainInit = Field(description="The initialisation this checkpoint serves.")
    dataset: InDomainDataset
    dataset_title: str
    init: StartInit = Field(description="What the pre-training started from.")
    init_info: dict[str, Any] = Field(default_factory=dict)
    num_classes: int = Field(ge=2, le=10_000, description="Classes of the in-domain head (PCam 2, CD 11).")
    classes: list[str]
    head: str
    head_included: bool = True
    recipe: dict[str, Any]
    recipe_digest: SHA256
    epochs: int = Field(ge=0, description="Epochs trained.")
    epochs_planned: int = Field(ge=1)
    max_steps: int | None = Field(None, ge=1)
    smoke: bool = Field(description="Shortened training (--epochs/--max-steps): never a comparable start.")
    seed: int
    lr: float = Field(gt=0)
    lr_rule: str
    data_path: str
    best_epoch: int | None = Field(None, ge=0)
    val_accuracy: float | None = Field(None, ge=0, le=1)
    final_val_accuracy: float | None = Field(None, ge=0, le=1)
    test_accuracy: float | None = Field(None, ge=0, le=1)
    data: dict[str, Any] = Field(default_factory=dict, description="Where the in-domain images came from, counts.")
    history: list[dict[str, Any]] = Field(default_factory=list)
    seconds: float = Field(ge=0)
    wall_seconds_this_invocation: float = Field(ge=0)
    device: dict[str, Any] = Field(default_factory=dict)
    bmbench_version: str
    versions: dict[str, str | None] = Field(default_factory=dict)
    git: dict[str, Any] = Field(default_factory=dict)
    created_at: str
    sha256: SHA256 = Field(description="SHA-256 of the checkpoint file.")

    @model_validator(mode="after")
    def _consistent(self) -> CheckpointMeta:
        served = checkpoint_init(self.dataset, self.init)
        if self.checkpoint_init != served:
            raise ValueError(f"checkpoint_init is {self.checkpoint_init!r}, but pre-training on {self.dataset} "
                             f"from {self.init} weights serves {served!r}")
        if len(self.classes) != self.num_classes:
            raise ValueError(f"classes lists {len(self.classes)} names for num_classes {self.num_classes}")
        return self

    def pretraining(self) -> dict[str, Any]:
        """The pre-training facts a fine-tuning fold records in its provenance (``fold.json`` ``init``)."""
        return {"dataset": self.dataset, "init": self.init, "recipe_digest": self.recipe_digest,
                "epochs": self.epochs, "val_accuracy": self.val_accuracy, "smoke": self.smoke}


def read_checkpoint_meta(path: Path, *, fix: str, backbone: str | None = None,
                         init: str | None = None) -> CheckpointMeta:
    """The metadata at ``path``, checked; with ``backbone``/``init``, also that it was made for them.

    ``fix`` says how to re-create the checkpoint (its ``bmbench pretrain`` command).
    """
    meta = read_model(CheckpointMeta, path, what="in-domain checkpoint metadata", fix=fix)
    for key, expected in (("backbone", backbone), ("checkpoint_init", init)):
        recorded = getattr(meta, key)
        if expected is not None and recorded != expected:
            raise BmbenchError(f"{path}: {key} is {recorded!r}, but this file should describe the {expected!r} "
                               f"checkpoint; the file was moved or renamed. {fix}", exit_code=INVALID)
    return meta


def write_checkpoint_meta(path: Path, meta: CheckpointMeta) -> None:
    """Write the metadata atomically (after the checkpoint it describes)."""
    write_model(path, meta)
