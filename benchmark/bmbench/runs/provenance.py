"""Provenance: library versions, the git commit, and the device a result was computed on."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from typing import Any

from bmbench import __version__, paths



def package_versions() -> dict[str, str | None]:
    """Versions of bmbench, Python and the numerical stack (None where not installed)."""
    versions: dict[str, str | None] = {"bmbench": __version__, "python": platform.python_version()}
    for name in ("torch", "torchvision", "timm", "numpy", "pandas", "scikit-learn", "pillow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> dict[str, Any]:
    """The checkout's commit and whether tracked files differ from it (None for an installed wheel)."""
    checkout = paths.source_checkout()
    if checkout is None:
        return {"commit": None, "dirty": None}
    try:
        commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def device_info(device: Any) -> dict[str, Any]:
    """Name of the compute device, and CUDA/cuDNN versions where relevant."""
    import torch

    info: dict[str, Any] = {"type": str(device), "cpu": platform.processor() or platform.machine()}
    if getattr(device, "type", str(device)) == "cuda":
        info.update({"name": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
                     "cudnn": torch.backends.cudnn.version()})
    else:
        info["name"] = f"CPU ({info['cpu']})"
    return info
