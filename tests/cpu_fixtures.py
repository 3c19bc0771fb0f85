"""The CPU-sized pieces many tests share: the paper's recipe at 32 px and tiny CNNs.

One definition each (issue 9: they were copied into several test files; the predictions header is conftest.header). Tests pass what they
vary (epochs, batch, learning rate) explicitly, so each test still says the sizes it relies on.
"""

from __future__ import annotations

import torch
from torch import nn

from bmbench.classes import NUM_CLASSES
from bmbench.recipe import Augmentation, Recipe


def cpu_recipe(**changes: object) -> Recipe:
    """The paper's recipe at CPU size: 32 px crops and evaluation, no loader workers; ``changes`` override."""
    base: dict[str, object] = {"eval_size": 32, "num_workers": 0, "augmentation": Augmentation(crop_size=32)}
    return Recipe(**(base | changes))


def tiny_cnn(seed: int = 0, *, blocks: int = 2, batchnorm: bool = True) -> nn.Module:
    """A seeded CNN with a 21-unit head: one block (8 channels) or two (8 then 16), BatchNorm optional."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    widths = [3, 8, 16][: blocks + 1]
    for k, (cin, cout) in enumerate(zip(widths, widths[1:], strict=False)):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), *([nn.BatchNorm2d(cout)] if batchnorm else []), nn.ReLU()]
        layers.append(nn.MaxPool2d(2) if k < blocks - 1 else nn.AdaptiveAvgPool2d(1))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(widths[blocks], NUM_CLASSES))

