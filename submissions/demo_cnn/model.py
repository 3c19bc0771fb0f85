"""A small CNN that trains on a CPU in minutes: the demo and test submission (not a paper model)."""

from __future__ import annotations

from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


def build_model(num_classes: int) -> nn.Module:
    """Four conv blocks (8-16-32-64 channels, about 27 MFLOPs per 64x64 training image), pooling, a linear head."""
    return nn.Sequential(
        _block(3, 8), _block(8, 16), _block(16, 32), _block(32, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
    )
