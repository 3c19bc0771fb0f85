"""The paper's image transforms (Sec. 2.3) as torchvision pipelines: one for training, one for evaluation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torchvision.transforms import v2

from bmbench.recipe_defaults import channel_stats

if TYPE_CHECKING:
    from bmbench.recipe import Recipe


def train_transform(recipe: Recipe) -> v2.Compose:
    """RandomResizedCrop (or resize), RandomRotation, horizontal and vertical flips, normalisation."""
    aug = recipe.augmentation
    mean, std = channel_stats(recipe.normalization)
    geometry: list[v2.Transform] = [
        v2.RandomResizedCrop(aug.crop_size, scale=aug.crop_scale, ratio=aug.crop_ratio, antialias=True)
        if aug.random_crop
        else v2.Resize((recipe.eval_size, recipe.eval_size), antialias=True),
        v2.RandomRotation(aug.rotation),
        v2.RandomHorizontalFlip(aug.hflip),
        v2.RandomVerticalFlip(aug.vflip),
    ]
    return v2.Compose([v2.ToImage(), *geometry, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def eval_transform(recipe: Recipe) -> v2.Compose:
    """Resize to ``eval_size`` x ``eval_size`` and normalise."""
    mean, std = channel_stats(recipe.normalization)
    return v2.Compose([
        v2.ToImage(),
        v2.Resize((recipe.eval_size, recipe.eval_size), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ])
