"""Where the image data comes from: ``--data PATH``, ``$BMBENCH_DATA``, or ``synthetic``.

``synthetic`` means the embedded demo set, generated once into the cache folder
(:func:`bmbench.paths.cache_dir`) and reused by every later command.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from bmbench.datasets import how_to_get_data
from bmbench.errors import DataNotFoundError

from bmbench.paths import CACHE_ENV, cache_dir  # the one owner of locations; re-exported for callers

__all__ = ["CACHE_ENV", "DATA_ENV", "SYNTHETIC", "cache_dir", "ensure_synthetic", "resolve_data", "synthetic_dir"]
SYNTHETIC = "synthetic"
DATA_ENV = "BMBENCH_DATA"


def synthetic_dir(seed: int = 0) -> Path:
    """The cache folder of the synthetic set for ``seed`` (holds ``BM_cytomorphology_data/``)."""
    from bmbench.data.synthetic import GENERATOR_VERSION

    return cache_dir() / "synthetic" / f"v{GENERATOR_VERSION}-seed{seed}"


def ensure_synthetic(seed: int = 0, progress: Callable[[int], None] | None = None) -> Path:
    """Return the synthetic data root, generating it into the cache on first use."""
    from bmbench.data.layout import DATA_FOLDER
    from bmbench.data.synthetic import ensure_generated

    root = synthetic_dir(seed) / DATA_FOLDER
    if root.is_dir():
        return root
    return ensure_generated(synthetic_dir(seed), seed=seed, progress=progress)  # locked: built once


def resolve_data(option: str | None, progress: Callable[[int], None] | None = None) -> Path:
    """The data folder named by ``--data`` (or ``$BMBENCH_DATA``); ``synthetic`` is generated on demand."""
    value = option or os.environ.get(DATA_ENV)
    if not value:
        raise DataNotFoundError(f"No data folder given (--data or ${DATA_ENV}).\n{how_to_get_data()}")
    if value == SYNTHETIC:
        return ensure_synthetic(progress=progress)
    return Path(value).expanduser()
