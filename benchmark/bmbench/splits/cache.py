"""Parsed split arrays cached in ``<cache>/splits/``, keyed by the split file's SHA-256.

Parsing the 171,374-row split file costs more than hashing it, so :func:`bmbench.splits.store.load_split`
hashes the file once, checks the hash against the published one and then reads the arrays from here.
The cache is never trusted blindly: each file also records the SHA-256 of its own arrays, and a file that
fails to load, has the wrong shapes or values, or whose arrays do not hash to that record is parsed
again from the split file and rewritten (atomically). A cache folder that cannot be written is skipped.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from bmbench import atomic, paths
from bmbench.classes import NUM_CLASSES
from bmbench.splits.algorithm import ROLES, TEST

FORMAT = 1
"""Bumped when the arrays stored here change meaning; old files are then ignored."""
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(image ids as fixed-width unicode, labels int16, roles uint8 of shape (n, folds))."""


def cache_path(digest: str) -> Path:
    """The cache file of the split file with SHA-256 ``digest``."""
    return paths.split_cache_dir() / f"{digest}.v{FORMAT}.npz"


def _arrays_digest(ids: np.ndarray, labels: np.ndarray, roles: np.ndarray) -> str:
    h = hashlib.sha256()
    for array in (ids, labels, roles):
        h.update(str((array.dtype.str, array.shape)).encode())
        h.update(np.ascontiguousarray(array).view(np.uint8))  # the same bytes as tobytes(), without the copy
    return h.hexdigest()


def load_arrays(digest: str, folds: int) -> Arrays | None:
    """The cached arrays of a split file, or None when absent or not exactly what was stored."""
    path = cache_path(digest)
    try:
        with np.load(path, allow_pickle=False) as z:
            ids, labels, roles, check = z["image_ids"], z["labels"], z["roles"], str(z["check"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # absent, truncated, not a zip ...
        return None
    n = len(ids)
    shapes_ok = (ids.dtype.kind == "U" and ids.ndim == 1 and labels.dtype == np.int16 and labels.shape == (n,)
                 and roles.dtype == np.uint8 and roles.shape == (n, folds))
    if not shapes_ok or check != _arrays_digest(ids, labels, roles):
        return None
    if n and (labels.min() < 0 or labels.max() >= NUM_CLASSES or roles.max() >= len(ROLES)
              or ((roles == TEST).sum(axis=1) > 1).any()):
        return None
    return ids, labels, roles


def store_arrays(digest: str, ids: np.ndarray, labels: np.ndarray, roles: np.ndarray) -> None:
    """Write the arrays of a parsed split file atomically; an unwritable cache is not an error."""
    ids = np.asarray(ids, dtype=str)
    try:
        with atomic.atomic_open(cache_path(digest), "wb") as handle:
            np.savez(handle, image_ids=ids, labels=labels, roles=roles,
                     check=np.array(_arrays_digest(ids, labels, roles)))
    except OSError:
        return
