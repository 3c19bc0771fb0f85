"""Which layer Grad-CAM explains, per backbone family, and the ViT token-to-grid reshape.

Grad-CAM weighs the activations of one layer by the gradients of the target class score; the layer should be
the last one that still has a spatial grid. The choices (as in the grad-cam package's own guidance, and the
paper's "final convolutional layer"):

=====================  ===============================================  ===================================
family                 target layer                                     why
=====================  ===============================================  ===================================
torchvision ``vgg*``   the last ReLU of ``features`` (last conv block)  the final max-pool would halve the
                                                                        grid (14x14 -> 7x7 at 224 px)
torchvision ``resnet*``/ ``layer4`` (last residual stage)                  last spatial stage before pooling
``resnext*``/``wide_resnet*``
torchvision ``regnet*``  ``trunk_output`` (last stage)                  last spatial stage before pooling
torchvision ``vit_*``  ``encoder.layers[-1].ln_1`` + reshape            the last block's input tokens; the
                                                                        class token is dropped and the patch
                                                                        tokens form the grid (7x7 for
                                                                        vit_l_32 at 224 px)
timm ViTs (``blocks``)  ``blocks[-1].norm1`` + reshape (prefix tokens   the same for timm's layout
                       dropped)
anything else          the last ``nn.Conv2d`` in ``named_modules()``    a sensible default for CNNs
                                                                        (model.py submissions); a network
                                                                        without Conv2d is refused
=====================  ===============================================  ===================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from bmbench.errors import BmbenchError

Reshape = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class CamTarget:
    """The layer Grad-CAM hooks, its qualified name, the rule that chose it and the reshape (ViT only)."""

    module: nn.Module
    name: str
    rule: str
    reshape: Reshape | None = None


def vit_reshape_transform(tokens: torch.Tensor, prefix_tokens: int = 1) -> torch.Tensor:
    """(B, prefix + H*W, C) tokens -> (B, C, H, W) grid: drop the class (and register) tokens, square the rest."""
    if tokens.dim() != 3:
        raise ValueError(f"expected (batch, tokens, channels), got shape {tuple(tokens.shape)}")
    patches = tokens[:, prefix_tokens:, :]
    side = math.isqrt(patches.shape[1])
    if side * side != patches.shape[1]:
        raise ValueError(f"{patches.shape[1]} patch tokens do not form a square grid")
    return patches.reshape(patches.shape[0], side, side, patches.shape[2]).permute(0, 3, 1, 2)


def _name_of(model: nn.Module, module: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is module)


def _last_of(model: nn.Module, kind: type[nn.Module]) -> tuple[str, nn.Module] | None:
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, kind)]
    return found[-1] if found else None


def choose_target_layer(model: nn.Module, backbone: str) -> CamTarget:
    """The Grad-CAM target of ``model`` built from the backbone spec ``backbone`` (see the module table)."""
    kind, _, arch = backbone.partition(":")
    if kind == "torchvision":
        if arch.startswith("vgg") and isinstance(getattr(model, "features", None), nn.Sequential):
            relu = _last_of(model.features, nn.ReLU)
            if relu is not None:
                return CamTarget(relu[1], f"features.{relu[0]}", "vgg: last ReLU of features (last conv block)")
        if arch.startswith(("resnet", "resnext", "wide_resnet")) and hasattr(model, "layer4"):
            return CamTarget(model.layer4, "layer4", "resnet: layer4")
        if arch.startswith("regnet") and hasattr(model, "trunk_output"):
            return CamTarget(model.trunk_output, "trunk_output", "regnet: trunk_output")
        if arch.startswith("vit_") and hasattr(model, "encoder"):
            block = model.encoder.layers[-1]
            return CamTarget(block.ln_1, _name_of(model, block.ln_1), "vit: last encoder block (ln_1) + reshape",
                             partial(vit_reshape_transform, prefix_tokens=1))
    blocks = getattr(model, "blocks", None)
    if kind == "timm" and isinstance(blocks, nn.Sequential) and hasattr(model, "num_prefix_tokens") \
            and hasattr(blocks[-1], "norm1"):
        prefix = int(model.num_prefix_tokens)
        return CamTarget(blocks[-1].norm1, _name_of(model, blocks[-1].norm1),
                         "timm vit: last block (norm1) + reshape", partial(vit_reshape_transform, prefix_tokens=prefix))
    conv = _last_of(model, nn.Conv2d)
    if conv is None:
        raise BmbenchError(
            f"cannot choose a Grad-CAM layer for {backbone}: it has no nn.Conv2d and is not a known "
            "transformer layout (torchvision vit_*, timm blocks)"
        )
    return CamTarget(conv[1], conv[0], "default: last Conv2d")
