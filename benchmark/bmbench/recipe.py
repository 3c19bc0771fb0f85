"""The training recipe: every knob of the paper's protocol as a validated field with the paper's default.

A submission's ``[recipe]`` table states only what it changes. Sources: Glüge et al. (2023), Sec. 2.2
(model training), 2.3 (data preparation and augmentation) and 2.4 (pre-training). Fields that the paper
does not fix (precision, layout, compile, workers) are engineering switches that do not change what is
computed beyond floating-point rounding; they fall back cleanly on CPU.
"""

from __future__ import annotations

import csv
import hashlib
import json
from functools import cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Augmentation(_Strict):
    """Training augmentation (paper Sec. 2.3), applied in this order."""

    crop_size: int = Field(224, ge=8, description="RandomResizedCrop output size; images are resized to 224 (Sec. 2.3).")
    random_crop: bool = Field(True, description="RandomResizedCrop; off during in-domain pre-training (Sec. 2.4.2).")
    crop_scale: tuple[float, float] = Field((0.08, 1.0), description="Crop area range (Sec. 2.3).")
    crop_ratio: tuple[float, float] = Field((0.75, 1.33), description="Crop aspect-ratio range (Sec. 2.3).")
    rotation: tuple[float, float] = Field((0.0, 180.0), description="RandomRotation degrees (Sec. 2.3).")
    hflip: float = Field(0.5, ge=0, le=1, description="Horizontal flip probability (Sec. 2.3).")
    vflip: float = Field(0.5, ge=0, le=1, description="Vertical flip probability (Sec. 2.3).")

    @field_validator("crop_scale", "crop_ratio", "rotation")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError("the first value must not exceed the second")
        return value


class LrFind(_Strict):
    """The learning-rate range test used when ``lr = "find"`` (Sec. 2.2, Smith 2017, torch-lr-finder)."""

    start_lr: float = Field(1e-7, gt=0)
    end_lr: float = Field(1.0, gt=0)
    num_iter: int = Field(100, ge=5)
    rule: Literal["steepest", "min_div_10"] = Field(
        "steepest", description="steepest: LR at the steepest loss descent (torch-lr-finder's suggestion); "
        "min_div_10: a tenth of the LR at minimum loss."
    )


class Recipe(_Strict):
    """The paper's recipe; each default is what Glüge et al. (2023) used."""

    epochs: int = Field(75, ge=1, description="Training epochs (Sec. 2.2).")
    batch_size: int = Field(32, ge=1, description="Batch size (Sec. 2.2).")
    optimizer: Literal["sgd"] = Field("sgd", description="PyTorch SGD (Sec. 2.2).")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum, fixed (Sec. 2.2).")
    weight_decay: float = Field(0.0, ge=0, description="Not mentioned in the paper: PyTorch's default 0.")
    lr: float | Literal["find"] = Field("find", description="Initial LR, or 'find' for the range test (Sec. 2.2).")
    lr_find: LrFind = Field(default_factory=LrFind)
    plateau_factor: float = Field(0.1, gt=0, lt=1, description="ReduceLROnPlateau factor on val loss (Sec. 2.2).")
    plateau_patience: int = Field(3, ge=0, description="ReduceLROnPlateau patience in epochs (Sec. 2.2).")
    sampler: Literal["class_balanced", "uniform"] = Field(
        "class_balanced", description="Weighted random sampler: every class seen equally often (Sec. 2.3)."
    )
    augmentation: Augmentation = Field(default_factory=Augmentation)
    normalization: Literal["bm", "cd", "pcam", "imagenet"] = Field(
        "bm", description="Channel statistics of Table 2 used to normalise (Sec. 2.3)."
    )
    eval_size: int = Field(224, ge=8, description="Evaluation images are resized to this size (Sec. 2.3).")
    selection: Literal["val_accuracy"] = Field(
        "val_accuracy", description="Keep the epoch with the highest validation accuracy for testing (Sec. 2.2)."
    )
    grad_accumulation: int = Field(1, ge=1, description="Micro-batches per optimizer step (for small GPUs).")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 autocast on CUDA, fp32 on CPU.")
    channels_last: bool = Field(False, description="channels_last memory format on CUDA.")
    compile: bool = Field(False, description="torch.compile the model on CUDA.")
    data_path: Literal["auto", "plain", "gpu"] = Field(
        "auto", description="Data pipeline: plain (DataLoader + Pillow), gpu (cached images, augmentation on the "
        "device; bmbench.datapaths.gpu), auto (gpu on CUDA, plain on CPU).")
    cuda_graphs: bool = Field(False, description="CUDA graphs on CUDA (torch.compile mode reduce-overhead; "
                              "implies compile; single-process runs only).")
    num_workers: int | Literal["auto"] = Field("auto", description="DataLoader workers; auto = all CPUs, max 8.")

    @model_validator(mode="after")
    def _crop_fits(self) -> Recipe:
        if self.augmentation.random_crop and self.augmentation.crop_size != self.eval_size:
            raise ValueError("augmentation.crop_size and eval_size must be equal (the model sees one size)")
        return self

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the fully resolved recipe (provenance, caching)."""
        # A switch added later is left out while off, so digests of recipes written before it stay the same.
        canonical = json.dumps(self.model_dump(mode="json", exclude=set() if self.cuda_graphs else {"cuda_graphs"}),
                               sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@cache
def channel_stats(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """(mean, std) per RGB channel of a data set: the paper's Table 2 (ImageNet: torchvision's values)."""
    text = resources.files("bmbench.resources.paper").joinpath("published_table2.csv").read_text(encoding="utf-8")
    for row in csv.DictReader(text.splitlines()):
        if row["dataset"] == name:
            mean = (float(row["red_mean"]), float(row["green_mean"]), float(row["blue_mean"]))
            std = (float(row["red_std"]), float(row["green_std"]), float(row["blue_std"]))
            return mean, std
    raise KeyError(name)
