"""Initialisations: random, ImageNet (the libraries' own weights) and in-domain checkpoints (weights cache).

* ``random``: the architecture's default initialisation, seeded by the run.
* ``imagenet``: torchvision weights through ``torch.hub``'s cache (``$TORCH_HOME/hub/checkpoints``), timm
  weights through timm's own mechanism. Offline and not cached: a clear error, never random weights. A file
  lock (:mod:`bmbench.locks`) makes concurrent processes download once, the others wait and read the file.
* ``pcam``, ``cd``, ``imagenet+pcam``, ``imagenet+cd``: checkpoints that ``bmbench pretrain`` writes into the
  weights cache (``$BMBENCH_WEIGHTS``, default ``<cache>/weights``), each with a JSON metadata file that
  records its SHA-256; the in-domain head is dropped and a fresh 21-class head is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bmbench.errors import BmbenchError
from bmbench.safe_io import sha256_file
from bmbench.locks import target_lock
from bmbench.paths import WEIGHTS_ENV
from bmbench.models.backbones import build_backbone, head_name, imagenet_weights_name, replace_head
from bmbench.records.checkpoint import CheckpointMeta, read_checkpoint_meta

IN_DOMAIN = {"pcam": ("pcam", "random"), "cd": ("cd", "random"),
             "imagenet+pcam": ("pcam", "imagenet"), "imagenet+cd": ("cd", "imagenet")}
"""In-domain initialisation -> (pre-training data set, the init the pre-training started from)."""


def weights_dir() -> Path:
    """The weights cache for in-domain checkpoints: ``$BMBENCH_WEIGHTS`` or ``<bmbench cache>/weights``."""
    from bmbench.paths import weights_dir as _weights_dir

    return _weights_dir()


def backbone_slug(backbone: str) -> str:
    """A file-system-safe name for a backbone spec (``torchvision:regnet_y_32gf`` -> ``torchvision-regnet_y_32gf``)."""
    return backbone.replace(":", "-").replace("/", "-")


@dataclass(frozen=True)
class CheckpointRef:
    """Where an in-domain checkpoint of a backbone lives, and the command that produces it."""

    backbone: str
    init: str

    @property
    def path(self) -> Path:
        return weights_dir() / backbone_slug(self.backbone) / f"{self.init}.pt"

    @property
    def meta_path(self) -> Path:
        return self.path.with_suffix(".json")

    @property
    def command(self) -> str:
        dataset, start = IN_DOMAIN[self.init]
        return f"bmbench pretrain --dataset {dataset} --backbone {self.backbone} --init {start} --data PATH"


def load_in_domain_checkpoint(ref: CheckpointRef) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """The state dict and metadata of an in-domain checkpoint, after checking the metadata was made for
    this backbone and initialisation, and that the file's SHA-256 is the recorded one."""
    if not ref.path.is_file() or not ref.meta_path.is_file():
        raise BmbenchError(
            f"the {ref.init} initialisation of {ref.backbone} needs the checkpoint {ref.path} (and its "
            f"{ref.meta_path.name}), which is not in the weights cache {weights_dir()}. Produce it with:\n"
            f"  {ref.command}\nor copy a checkpoint made elsewhere into that folder (set {WEIGHTS_ENV} to use "
            "another cache)."
        )
    meta = read_checkpoint_meta(ref.meta_path, backbone=ref.backbone, init=ref.init,
                                fix=f"Re-create the checkpoint and its metadata with:\n  {ref.command}")
    digest = sha256_file(ref.path)
    if meta.sha256 != digest:
        raise BmbenchError(
            f"{ref.path} has SHA-256 {digest} but {ref.meta_path.name} records {meta.sha256}: the "
            f"checkpoint is corrupt or was replaced. Re-create it with:\n  {ref.command}"
        )
    state = torch.load(ref.path, map_location="cpu", weights_only=True)
    return state, meta


def _without_head(state: dict[str, torch.Tensor], head: str) -> dict[str, torch.Tensor]:
    prefix = head + "."
    return {k: v for k, v in state.items() if not k.startswith(prefix)}


def _imagenet_torchvision(backbone: str, num_classes: int) -> tuple[nn.Module, dict[str, Any]]:
    import torchvision

    arch = backbone.partition(":")[2]
    name = imagenet_weights_name(backbone)
    if name is None:
        raise BmbenchError(f"torchvision has no ImageNet weights for {arch}")
    enum_name, _, member = name.partition(".")
    weights = getattr(torchvision.models, enum_name)[member]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        with target_lock(cached):  # N grid tasks / torchrun ranks: one downloads, the others read its file
            state = weights.get_state_dict(progress=False, check_hash=True)
    except OSError as err:  # URLError, socket errors, missing files are all OSErrors
        raise BmbenchError(
            f"cannot load the ImageNet weights {name} for {arch}: they are not in the torch "
            f"cache ({cached}) and downloading them failed ({err}). On a machine with network access they "
            "download automatically on first use; offline, copy the file from "
            f"{weights.url} to {cached} (set TORCH_HOME to use another cache)."
        ) from None
    model = build_backbone(backbone, None)  # built only once the weights are at hand
    model.load_state_dict(state)
    return replace_head(model, num_classes), {"imagenet_weights": name, "weights_file": str(cached)}


def _imagenet_timm(backbone: str, num_classes: int) -> tuple[nn.Module, dict[str, Any]]:
    import timm

    arch = backbone.partition(":")[2]
    try:
        with target_lock(weights_dir() / f"timm-{backbone_slug(backbone)}"):  # one download at a time
            model = timm.create_model(arch, pretrained=True, num_classes=num_classes)
    except Exception as err:  # hub errors come in many types; any failure here is "weights unavailable"
        raise BmbenchError(
            f"cannot load timm's pretrained weights for {arch} ({type(err).__name__}: {err}). On a machine "
            "with network access timm downloads them on first use; offline, place them in the Hugging Face "
            "cache (HF_HOME) beforehand."
        ) from None
    return model, {"imagenet_weights": f"timm:{arch}"}


def build_initialised_model(backbone: str, init: str, num_classes: int,
                            folder: Path | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The ``backbone`` network (see :func:`build_backbone`; ``folder`` holds a ``model.py``) with the
    initialisation ``init`` applied, and what was loaded (for provenance)."""
    if init == "random":
        return build_backbone(backbone, num_classes, folder), {"init": "random"}
    if init == "imagenet":
        build = _imagenet_timm if backbone.startswith("timm:") else _imagenet_torchvision
        model, info = build(backbone, num_classes)
        return model, {"init": "imagenet", **info}
    if init in IN_DOMAIN:
        ref = CheckpointRef(backbone, init)
        state, meta = load_in_domain_checkpoint(ref)
        model = build_backbone(backbone, num_classes, folder)
        head = head_name(model)
        missing, unexpected = model.load_state_dict(_without_head(state, head), strict=False)
        if unexpected or any(not k.startswith(head + ".") for k in missing):
            raise BmbenchError(
                f"{ref.path} does not fit {backbone}: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        return model, {"init": init, "checkpoint": str(ref.path), "checkpoint_sha256": meta.sha256,
                       "pretraining": meta.pretraining()}
    raise BmbenchError(f"init {init!r} does not apply to a neural network")
