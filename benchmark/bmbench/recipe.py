"""The training recipe: every knob of the paper's protocol as a validated field with the paper's default.

A submission's ``[recipe]`` table states only what it changes. Sources: Glüge et al. (2023), Sec. 2.2
(model training), 2.3 (data preparation and augmentation) and 2.4 (pre-training). Fields that the paper
does not fix (precision, layout, compile, CUDA graphs, data path, workers) are engineering switches; what each
changes (rounding, bf16, the GPU data path's bilinear resampling) is stated in docs/recipe.md. They are
resolved for a device and backbone in one place, :func:`bmbench.engine.fastpath.settings_for`, and fall back
to fp32 / NCHW / eager on a CPU.
"""

from __future__ import annotations

import hashlib
import math
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bmbench.recipe_defaults import channel_stats

__all__ = ["Augmentation", "LrFind", "Recipe", "channel_stats"]


class _Strict(BaseModel):
    # allow_inf_nan=False: NaN and infinities are refused in every float field (a NaN lr trains 8 epochs and
    # only then fails); every number below also has a plausible range, so a typo is refused at load time.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


MAX_LR = 10.0
"""Largest accepted learning rate (SGD diverges long before)."""
MAX_WORKERS = 256


def _number_or(value: object, word: str, *, low: float, high: float, integer: bool, low_open: bool) -> object:
    """One clear message for a field that is a bounded number or the keyword ``word``."""
    if value == word:
        return value
    ok = isinstance(value, int | float) and not isinstance(value, bool) and (not integer or isinstance(value, int))
    if ok:
        ok = math.isfinite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        kind = "an integer" if integer else "a finite number"
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        raise ValueError(f"must be {kind} {bound} and <= {high:g}, or {word!r}; got {value!r}")
    return value


class Augmentation(_Strict):
    """Training augmentation (paper Sec. 2.3), applied in this order."""

    crop_size: int = Field(224, ge=8, le=4096, description="RandomResizedCrop output size; images are resized to 224 (Sec. 2.3).")
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

    @field_validator("crop_scale")
    @classmethod
    def _scale_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not (0 < value[0] and value[1] <= 1):
            raise ValueError("crop area fractions must lie in (0, 1]")
        return value

    @field_validator("crop_ratio")
    @classmethod
    def _ratio_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not (0 < value[0] and value[1] <= 100):
            raise ValueError("aspect ratios must lie in (0, 100]")
        return value

    @field_validator("rotation")
    @classmethod
    def _rotation_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not (-360 <= value[0] and value[1] <= 360):
            raise ValueError("rotation degrees must lie in [-360, 360]")
        return value


class LrFind(_Strict):
    """The learning-rate range test used when ``lr = "find"`` (Sec. 2.2, Smith 2017, torch-lr-finder)."""

    start_lr: float = Field(1e-7, gt=0, le=10)
    end_lr: float = Field(1.0, gt=0, le=100)
    num_iter: int = Field(100, ge=5, le=100_000)
    rule: Literal["steepest", "min_div_10"] = Field(
        "steepest", description="steepest: LR at the steepest loss descent (torch-lr-finder's suggestion); "
        "min_div_10: a tenth of the LR at minimum loss."
    )

    @model_validator(mode="after")
    def _increasing(self) -> LrFind:
        if self.start_lr >= self.end_lr:
            raise ValueError("lr_find.start_lr must be smaller than lr_find.end_lr")
        return self


class Recipe(_Strict):
    """The paper's recipe; each default is what Glüge et al. (2023) used."""

    epochs: int = Field(75, ge=1, le=10_000, description="Training epochs (Sec. 2.2).")
    batch_size: int = Field(32, ge=1, le=65_536, description="Batch size (Sec. 2.2).")
    optimizer: Literal["sgd"] = Field("sgd", description="PyTorch SGD (Sec. 2.2).")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum, fixed (Sec. 2.2).")
    weight_decay: float = Field(0.0, ge=0, le=1, description="Not mentioned in the paper: PyTorch's default 0.")
    lr: float | Literal["find"] = Field("find", description="Initial LR (finite, > 0, <= 10), or 'find' for the "
                                            "range test (Sec. 2.2).")
    lr_find: LrFind = Field(default_factory=LrFind)
    plateau_factor: float = Field(0.1, gt=0, lt=1, description="ReduceLROnPlateau factor on val loss (Sec. 2.2).")
    plateau_patience: int = Field(3, ge=0, le=10_000, description="ReduceLROnPlateau patience in epochs (Sec. 2.2).")
    sampler: Literal["class_balanced", "uniform"] = Field(
        "class_balanced", description="Weighted random sampler: every class seen equally often (Sec. 2.3)."
    )
    augmentation: Augmentation = Field(default_factory=Augmentation)
    normalization: Literal["bm", "cd", "pcam", "imagenet"] = Field(
        "bm", description="Channel statistics of Table 2 used to normalise (Sec. 2.3)."
    )
    eval_size: int = Field(224, ge=8, le=4096, description="Evaluation images are resized to this size (Sec. 2.3).")
    selection: Literal["val_accuracy"] = Field(
        "val_accuracy", description="Keep the epoch with the highest validation accuracy for testing (Sec. 2.2)."
    )
    grad_accumulation: int = Field(1, ge=1, le=1024, description="Micro-batches per optimizer step (for small GPUs).")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 autocast on CUDA, fp32 on CPU.")
    channels_last: bool | Literal["auto"] = Field(
        "auto", description="channels_last memory format on CUDA; auto: per backbone (resources/fast_paths.toml).")
    compile: bool | Literal["auto"] = Field(
        "auto", description="torch.compile training and evaluation on CUDA (one static shape); auto: on.")
    data_path: Literal["auto", "plain", "gpu"] = Field(
        "auto", description="Data pipeline: plain (DataLoader + Pillow), gpu (cached images, augmentation on the "
        "device; bmbench.datapaths.gpu), auto (gpu on CUDA, plain on CPU).")
    cuda_graphs: bool = Field(False, description="CUDA graphs on CUDA (torch.compile mode reduce-overhead; "
                              "implies compile; single-process runs only).")
    num_workers: int | Literal["auto"] = Field("auto", description="DataLoader workers; auto = all CPUs, max 8.")

    @field_validator("lr", mode="before")
    @classmethod
    def _lr_bounded(cls, value: object) -> object:
        return _number_or(value, "find", low=0, high=MAX_LR, integer=False, low_open=True)

    @field_validator("num_workers", mode="before")
    @classmethod
    def _workers_bounded(cls, value: object) -> object:
        return _number_or(value, "auto", low=0, high=MAX_WORKERS, integer=True, low_open=False)

    @model_validator(mode="after")
    def _crop_fits(self) -> Recipe:
        if self.augmentation.random_crop and self.augmentation.crop_size != self.eval_size:
            raise ValueError("augmentation.crop_size and eval_size must be equal (the model sees one size)")
        return self

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the fully resolved recipe (provenance, caching)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()
