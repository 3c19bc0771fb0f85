"""The paper's recipe defaults as plain frozen dataclasses, and the channel statistics of Table 2.

Why a second spelling of the defaults: :mod:`bmbench.recipe` is a pydantic model, and the GPU machines that
run ``scripts/device-check.sh`` have torch, torchvision, timm, numpy, pandas, typer and rich but no pydantic.
The device check's bench (``python -m bmbench.bench``) measures the same data paths and loop with
:func:`paper_recipe`, which has exactly the fields and defaults of ``Recipe()`` (``tests/test_bench.py``
compares them field by field), so the figures describe what ``bmbench run`` executes. Nothing here imports
pydantic or torch.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class PlainAugmentation:
    """``recipe.Augmentation`` with its defaults (paper Sec. 2.3)."""

    crop_size: int = 224
    random_crop: bool = True
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.33)
    rotation: tuple[float, float] = (0.0, 180.0)
    hflip: float = 0.5
    vflip: float = 0.5


@dataclass(frozen=True)
class PlainLrFind:
    """``recipe.LrFind`` with its defaults."""

    start_lr: float = 1e-7
    end_lr: float = 1.0
    num_iter: int = 100
    rule: str = "steepest"


@dataclass(frozen=True)
class PlainRecipe:
    """``recipe.Recipe`` with its defaults; ``model_copy(update=...)`` as pydantic spells it."""

    epochs: int = 75
    batch_size: int = 32
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr: float | str = "find"
    lr_find: PlainLrFind = field(default_factory=PlainLrFind)
    plateau_factor: float = 0.1
    plateau_patience: int = 3
    sampler: str = "class_balanced"
    augmentation: PlainAugmentation = field(default_factory=PlainAugmentation)
    normalization: str = "bm"
    eval_size: int = 224
    selection: str = "val_accuracy"
    grad_accumulation: int = 1
    precision: str = "auto"
    channels_last: bool | str = "auto"
    compile: bool | str = "auto"
    data_path: str = "auto"
    cuda_graphs: bool = False
    num_workers: int | str = "auto"

    def model_copy(self, update: dict[str, Any] | None = None) -> PlainRecipe:
        return replace(self, **(update or {}))


def paper_recipe(**update: Any) -> Any:
    """The paper's recipe: the pydantic ``Recipe`` where pydantic is installed, else :class:`PlainRecipe`."""
    try:
        from bmbench.recipe import Recipe
    except ImportError:  # a bare GPU machine: same fields, same defaults
        return PlainRecipe(**update)
    return Recipe(**update)


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
