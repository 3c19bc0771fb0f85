"""The encoder's eval preprocessing, resolved once and recorded in the feature store's manifest.

Sources, in order of precedence: the submission's ``[preprocess]`` fields; else timm's resolved data
config (``input_size``, ``interpolation``, ``mean``/``std``, ``crop_pct``: resize the shorter side to
``floor(size / crop_pct)``, centre-crop ``size``), torchvision's weights transforms (``resize_size``,
``crop_size``), or, for ``model.py`` and ``run:`` encoders, the recipe's eval transform (resize to
``eval_size``, the recipe's normalisation: what a fine-tuned model saw). Overriding ``size`` without
``resize`` means no crop (``resize = size``).

The transform runs on batches of uint8 ``N x H x W x 3`` tensors on the device (the image cache's
layout), so the cache path and the decoding path feed the encoder identical inputs. It never augments.
On CUDA it resizes in float32 (``F.interpolate``, antialiased); on the CPU it resizes the uint8 pixels
with torchvision's kernels first (faster; the results differ by under one grey level before
normalisation, and a store records its device).
"""

from __future__ import annotations

import math
from collections.abc import Callable
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


def batch_transform(pre: Preprocessing) -> Callable[[Any], Any]:
    """uint8 ``N x H x W x 3`` tensor -> normalised float32 ``N x 3 x size x size`` on the same device."""
    import torch
    import torch.nn.functional as F

    mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32).view(1, 3, 1, 1)
    antialias = pre.interpolation != "nearest"

    def apply(images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2)
        h, w = x.shape[-2:]
        scale = pre.resize / min(h, w)
        out_h, out_w = max(pre.size, round(h * scale)), max(pre.size, round(w * scale))
        resize = (out_h, out_w) != (h, w)
        if resize and x.device.type == "cpu":
            # On the CPU resize the uint8 pixels (torchvision's vectorised kernels), then convert the small
            # image: converting 250 x 250 floats first costs more than the encoder for small inputs. The
            # permuted batch is already channels-last, the layout those kernels want: making it contiguous
            # first cost 10x the resize itself (identical output).
            from torchvision.transforms.v2 import InterpolationMode
            from torchvision.transforms.v2 import functional as TF

            x = TF.resize(x, [out_h, out_w], interpolation=InterpolationMode(pre.interpolation),
                          antialias=antialias).contiguous()
            resize = False
        x = x.to(torch.float32).div_(255.0)
        if resize:
            kwargs = {"antialias": True, "align_corners": False} if antialias else {}
            x = F.interpolate(x, size=(out_h, out_w), mode=pre.interpolation, **kwargs)
            if pre.interpolation == "bicubic":
                x = x.clamp_(0.0, 1.0)
        top, left = (out_h - pre.size) // 2, (out_w - pre.size) // 2
        x = x[..., top:top + pre.size, left:left + pre.size]
        return (x - mean.to(x.device)) / std.to(x.device)

    return apply
