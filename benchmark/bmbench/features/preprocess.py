"""The encoder's eval preprocessing, resolved once and recorded in the feature store's manifest.

Sources, in order of precedence: the submission's ``[preprocess]`` fields; else timm's resolved data
config (``input_size``, ``interpolation``, ``mean``/``std``, ``crop_pct``: resize the shorter side to
``floor(size / crop_pct)``, centre-crop ``size``), torchvision's weights transforms (``resize_size``,
``crop_size``), or, for ``model.py`` and ``run:`` encoders, the recipe's eval transform (resize to
``eval_size``, the recipe's normalisation: what a fine-tuned model saw). Overriding ``size`` without
``resize`` means no crop (``resize = size``).

The transform itself (:func:`bmbench.features.batch.batch_transform`, pydantic-free so the device check
can run it) works on batches of uint8 ``N x H x W x 3`` tensors on the device (the image cache's layout),
so the cache path and the decoding path feed the encoder identical inputs. It never augments.
"""

from __future__ import annotations

import math
from typing import Any

from bmbench.recipe import Recipe, channel_stats
from bmbench.records.features import Preprocessing
from bmbench.submissions.schema import PreprocessOverride

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


def _interp(name: str) -> str:
    name = str(name).lower().rsplit(".", 1)[-1]
    return name if name in INTERPOLATIONS else "bicubic"


def apply_override(base: Preprocessing, override: PreprocessOverride | None) -> Preprocessing:
    """``base`` with the fields the submission sets replaced (``source`` says so)."""
    if override is None:
        return base
    fields = override.model_dump(exclude_none=True)
    if not fields:
        return base
    if "size" in fields and "resize" not in fields:
        fields["resize"] = fields["size"]
    merged = {**base.model_dump(), **fields, "source": f"{base.source} + submission [preprocess] "
              f"({', '.join(sorted(override.model_dump(exclude_none=True)))})"}
    return Preprocessing.model_validate(merged)


def from_timm(model: Any) -> Preprocessing:
    """timm's resolved data config of ``model`` (its pretrained_cfg), as timm's own eval transform uses it."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    size = int(cfg["input_size"][-1])
    crop_pct = float(cfg.get("crop_pct") or 1.0)
    return Preprocessing(size=size, resize=int(math.floor(size / crop_pct)), interpolation=_interp(cfg["interpolation"]),
                         mean=tuple(float(v) for v in cfg["mean"]), std=tuple(float(v) for v in cfg["std"]),
                         source="timm data config")


def from_torchvision(weights: Any) -> Preprocessing:
    """The eval transform that torchvision ships with ``weights`` (``weights.transforms()``)."""
    t = weights.transforms()
    return Preprocessing(size=int(t.crop_size[0]), resize=int(t.resize_size[0]),
                         interpolation=_interp(t.interpolation.value), mean=tuple(float(v) for v in t.mean),
                         std=tuple(float(v) for v in t.std), source=f"torchvision {weights}")


def from_recipe(recipe: Recipe, source: str) -> Preprocessing:
    """The recipe's eval transform: resize to ``eval_size`` (bilinear, antialiased), normalise."""
    mean, std = channel_stats(recipe.normalization)
    return Preprocessing(size=recipe.eval_size, resize=recipe.eval_size, interpolation="bilinear",
                         mean=tuple(mean), std=tuple(std), source=source)
