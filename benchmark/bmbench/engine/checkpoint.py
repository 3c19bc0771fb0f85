"""Atomic checkpoint files: a crash while saving never leaves a truncated ``last.pt`` or ``best.pt``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bmbench import atomic


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` into a temporary sibling, then rename over ``path``."""
    with atomic.atomic_open(path, "wb") as handle:
        torch.save(payload, handle)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` onto the CPU (tensors only, no pickled code)."""
    return torch.load(path, map_location="cpu", weights_only=True)
