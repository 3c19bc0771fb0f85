"""The device a command runs on."""

from __future__ import annotations

from typing import Any

from bmbench.errors import BmbenchError


def resolve_device(name: str) -> Any:
    """``auto`` picks CUDA when available; asking for CUDA without one is an error, not a silent CPU run."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BmbenchError("--device cuda was requested but no CUDA device is available; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise BmbenchError(f"--device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


