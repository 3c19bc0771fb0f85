"""Every location bmbench reads or writes, decided in one place.

Three kinds of place, so that bmbench works the same from a checkout, from any folder and from a wheel:

* the **working root** -- ``--root`` (the global CLI option), else ``$BMBENCH_ROOT``, else the current
  directory -- holds the user's ``submissions/``, ``runs/`` and ``leaderboard/``;
* the **published split files** (``<name>.csv``, ``SHA256SUMS``, the split card and the DinoBloom test-id
  list) are package data (``bmbench/resources/splits/``), so an installed wheel scores. A local splits
  folder (``$BMBENCH_SPLITS``, else ``<root>/splits`` when it is not the package folder itself) may stand in
  for a published file only when its SHA-256 equals the published one (:mod:`bmbench.splits.store`);
* the **cache** (``$BMBENCH_CACHE``, else ``$XDG_CACHE_HOME/bmbench``, else ``~/.cache/bmbench``) for the
  synthetic set, image caches and parsed splits, and the **weights** folder (``$BMBENCH_WEIGHTS``, else
  ``<cache>/weights``) for in-domain checkpoints.

Only this module reads these environment variables; everything else asks it.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from bmbench.errors import BmbenchError

ROOT_ENV = "BMBENCH_ROOT"
SUBMISSIONS_ENV = "BMBENCH_SUBMISSIONS"
SPLITS_ENV = "BMBENCH_SPLITS"
CACHE_ENV = "BMBENCH_CACHE"
WEIGHTS_ENV = "BMBENCH_WEIGHTS"
FEATURES_ENV = "BMBENCH_FEATURES"
ENVIRONMENT: dict[str, str] = {
    ROOT_ENV: "working root for submissions/, runs/ and leaderboard/ (default: the current directory)",
    SUBMISSIONS_ENV: "the submissions folder (default: <root>/submissions)",
    SPLITS_ENV: "a local splits folder; each file in it must hash to the published SHA-256 (default: <root>/splits)",
    CACHE_ENV: "the cache: synthetic data, image caches, parsed splits (default: $XDG_CACHE_HOME/bmbench)",
    WEIGHTS_ENV: "in-domain pre-trained checkpoints (default: <cache>/weights)",
    FEATURES_ENV: "frozen-feature stores written by `bmbench embed` (default: <cache>/features)",
}
"""The location variables, with what each sets; the README's table lists the same."""

_root_override: Path | None = None


def set_root(path: Path | None) -> None:
    """Use ``path`` as the working root for the rest of the process (the ``--root`` option); None resets."""
    global _root_override
    if path is not None and not Path(path).expanduser().is_dir():
        raise BmbenchError(f"--root {path}: no such folder; give an existing folder (it holds submissions/, "
                           "runs/ and leaderboard/)", exit_code=2)
    _root_override = Path(path).expanduser().resolve() if path is not None else None


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def root() -> Path:
    """The working root: ``--root``, else ``$BMBENCH_ROOT``, else the current directory."""
    return _root_override or _env_path(ROOT_ENV) or Path.cwd()


def submissions_dir() -> Path:
    """``$BMBENCH_SUBMISSIONS``, else ``<root>/submissions``."""
    return _env_path(SUBMISSIONS_ENV) or root() / "submissions"


def runs_dir() -> Path:
    """``<root>/runs``: where ``bmbench run``, ``lr-find`` and ``grid`` write by default."""
    return root() / "runs"


def leaderboard_dir() -> Path:
    """``<root>/leaderboard``: the main board."""
    return root() / "leaderboard"


def demo_board_dir() -> Path:
    """``<root>/runs/demo/board``: the demo board that ``make demo`` builds."""
    return runs_dir() / "demo" / "board"


def published_splits_dir() -> Path:
    """The package's own copy of the published split files (read-only in an installed wheel)."""
    return Path(str(resources.files("bmbench.resources").joinpath("splits")))


def local_splits_dir() -> Path | None:
    """A local splits folder that may stand in for published files, or None.

    ``$BMBENCH_SPLITS`` if set, else ``<root>/splits`` if it exists and is not the package folder itself
    (in the repository, ``splits/`` is a link to the package folder).
    """
    env = _env_path(SPLITS_ENV)
    if env is not None:
        return env
    candidate = root() / "splits"
    if candidate.is_dir() and candidate.resolve() != published_splits_dir().resolve():
        return candidate
    return None


def cache_dir() -> Path:
    """bmbench's cache folder: ``$BMBENCH_CACHE``, else ``$XDG_CACHE_HOME/bmbench``, else ``~/.cache/bmbench``."""
    env = _env_path(CACHE_ENV)
    if env is not None:
        return env
    base = _env_path("XDG_CACHE_HOME") or Path.home() / ".cache"
    return base / "bmbench"


def weights_dir() -> Path:
    """The weights cache for in-domain checkpoints: ``$BMBENCH_WEIGHTS``, else ``<cache>/weights``."""
    return _env_path(WEIGHTS_ENV) or cache_dir() / "weights"


def features_dir() -> Path:
    """Where ``bmbench embed`` keeps feature stores: ``$BMBENCH_FEATURES`` or ``<cache>/features``."""
    return _env_path(FEATURES_ENV) or cache_dir() / "features"


def split_cache_dir() -> Path:
    """``<cache>/splits``: parsed split arrays, keyed by the split file's SHA-256."""
    return cache_dir() / "splits"


def source_checkout() -> Path | None:
    """The git checkout bmbench runs from (editable install), or None for an installed wheel."""
    here = Path(__file__).resolve().parents[2]  # benchmark/bmbench/paths.py -> the checkout
    return here if (here / ".git").exists() else None
