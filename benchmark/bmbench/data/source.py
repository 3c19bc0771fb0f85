"""Where the image data comes from: ``--data PATH``, ``$BMBENCH_DATA``, or ``synthetic``.

``synthetic`` means the embedded demo set, generated once into the cache folder
(``$BMBENCH_CACHE``, default ``~/.cache/bmbench``) and reused by every later command.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from bmbench.datasets import how_to_get_data
from bmbench.errors import BmbenchError, DataNotFoundError

SYNTHETIC = "synthetic"
DATA_ENV = "BMBENCH_DATA"
CACHE_ENV = "BMBENCH_CACHE"


def cache_dir() -> Path:
    """bmbench's cache folder: ``$BMBENCH_CACHE``, else ``$XDG_CACHE_HOME/bmbench``, else ``~/.cache/bmbench``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bmbench"


def synthetic_dir(seed: int = 0) -> Path:
    """The cache folder of the synthetic set for ``seed`` (holds ``BM_cytomorphology_data/``)."""
    from bmbench.data.synthetic import GENERATOR_VERSION

    return cache_dir() / "synthetic" / f"v{GENERATOR_VERSION}-seed{seed}"


def ensure_synthetic(seed: int = 0, progress: Callable[[int], None] | None = None) -> Path:
    """Return the synthetic data root, generating it into the cache on first use."""
    from bmbench.data.layout import DATA_FOLDER
    from bmbench.data.synthetic import generate_synthetic

    root = synthetic_dir(seed) / DATA_FOLDER
    if root.is_dir():
        return root
    try:
        return generate_synthetic(synthetic_dir(seed), seed=seed, progress=progress)
    except BmbenchError:
        if root.is_dir():  # another process (a torchrun rank, a parallel job) generated it first
            return root
        raise


def resolve_data(option: str | None, progress: Callable[[int], None] | None = None) -> Path:
    """The data folder named by ``--data`` (or ``$BMBENCH_DATA``); ``synthetic`` is generated on demand."""
    value = option or os.environ.get(DATA_ENV)
    if not value:
        raise DataNotFoundError(f"No data folder given (--data or ${DATA_ENV}).\n{how_to_get_data()}")
    if value == SYNTHETIC:
        return ensure_synthetic(progress=progress)
    return Path(value).expanduser()
