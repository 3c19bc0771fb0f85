"""A feature store on disk, opened read-only for the probes: float16 ``(N, D)`` features in split-row order.

Layout of a store folder (written by :func:`bmbench.features.embed.embed`)::

    features.npy    N x D float16 (NumPy .npy, memory-mapped), row r = image r of index.csv
    index.csv       row,image_id
    progress.json   while unfinished: how many rows are written (a killed run resumes there)
    manifest.json   written last (atomically): the completion marker, see bmbench.records.features

An encoder ``run:<path>`` has one network per fold (fold k's ``best.pt``), so its store folder holds one
store per fold, ``fold<k>/``; every other encoder has a single store shared by all folds.
:func:`fold_store` hides the difference: probes always ask for the store of the fold they fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from bmbench.errors import BmbenchError
from bmbench.records._io import read_model
from bmbench.records.features import FeatureManifest, StoreKey

FEATURES_FILE = "features.npy"
INDEX_FILE = "index.csv"
MANIFEST_FILE = "manifest.json"
PROGRESS_FILE = "progress.json"
INVALID = 2
_FIX = "delete the folder and run `bmbench embed` again"


def index_text(image_ids: list[str] | tuple[str, ...]) -> str:
    """``index.csv`` for ``image_ids`` in row order (its SHA-256 is part of the store key)."""
    return "row,image_id\n" + "".join(f"{k},{i}\n" for k, i in enumerate(image_ids))


@dataclass
class FeatureStore:
    """An opened, complete store. ``features`` is a read-only memmap: slice it, never copy it all."""

    folder: Path
    features: np.ndarray
    image_ids: list[str]
    manifest: FeatureManifest
    _row_of: dict[str, int] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @cached_property
    def row_of(self) -> dict[str, int]:
        """image id -> row."""
        return {image_id: k for k, image_id in enumerate(self.image_ids)}

    def rows_for(self, image_ids: list[str] | tuple[str, ...] | np.ndarray) -> np.ndarray:
        """Row numbers of ``image_ids`` (in that order); ids the store lacks are an error naming them."""
        row_of = self.row_of
        ids = [str(i) for i in image_ids]
        missing = [i for i in ids if i not in row_of]
        if missing:
            raise BmbenchError(
                f"{self.folder}: the feature store lacks {len(missing)} of the requested images (e.g. "
                f"{', '.join(missing[:5])}); it was made for split {self.manifest.split.name}. Run "
                "`bmbench embed` for the split you probe on.", exit_code=INVALID)
        return np.fromiter((row_of[i] for i in ids), dtype=np.int64, count=len(ids))

    def check_key(self, key: StoreKey) -> None:
        """Refuse this store unless it holds exactly the features ``key`` asks for."""
        refuse_mismatch(self.folder, self.manifest.key, key)


def describe_mismatch(have: StoreKey, want: StoreKey) -> list[str]:
    """The fields in which two keys differ, as ``name: stored -> requested`` lines."""
    a, b = have.model_dump(mode="json"), want.model_dump(mode="json")
    return [f"{name}: {a[name]!r} in the store, {b[name]!r} requested" for name in a if a[name] != b[name]]


def refuse_mismatch(folder: Path, have: StoreKey, want: StoreKey) -> None:
    """Raise (exit 2) when a store's key differs from the requested one; never reuse it silently."""
    diffs = describe_mismatch(have, want)
    if diffs:
        raise BmbenchError(
            f"{folder} holds features of another encoder, preprocessing or data:\n  " + "\n  ".join(diffs)
            + f"\nUse another --out folder, or {_FIX}.", exit_code=INVALID)


def read_index(path: Path) -> list[str]:
    """The image ids of ``index.csv`` in row order, checking the ``row`` column counts 0, 1, 2 ..."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise BmbenchError(f"{path}: cannot read the store index ({err}); {_FIX}", exit_code=INVALID) from None
    if not lines or lines[0] != "row,image_id":
        raise BmbenchError(f"{path}: line 1 must be 'row,image_id'; {_FIX}", exit_code=INVALID)
    ids: list[str] = []
    for lineno, line in enumerate(lines[1:], start=2):
        row, sep, image_id = line.partition(",")
        if not sep or row != str(lineno - 2) or not image_id:
            raise BmbenchError(f"{path}, line {lineno}: expected '{lineno - 2},<image_id>', got {line!r}; {_FIX}",
                               exit_code=INVALID)
        ids.append(image_id)
    return ids


def read_manifest(folder: Path) -> FeatureManifest:
    """The validated manifest of a store folder (exit 2 when missing: the store is unfinished)."""
    return read_model(FeatureManifest, Path(folder) / MANIFEST_FILE, what="feature-store manifest",
                      fix="the store is unfinished or damaged; run `bmbench embed` again (it resumes)")


def open_store(path: str | Path) -> FeatureStore:
    """Open a complete store read-only, after checking the manifest against the array and the index."""
    import hashlib

    folder = Path(path)
    if not folder.is_dir():
        raise BmbenchError(f"{folder}: no feature store there; create it with `bmbench embed`", exit_code=INVALID)
    if not (folder / MANIFEST_FILE).is_file() and any(folder.glob("fold*/" + MANIFEST_FILE)):
        raise BmbenchError(f"{folder} holds one store per fold (a run: encoder); open it with "
                           "fold_store(path, fold)", exit_code=INVALID)
    manifest = read_manifest(folder)
    index_path = folder / INDEX_FILE
    try:
        index_sha = hashlib.sha256(index_path.read_bytes()).hexdigest()
    except OSError as err:
        raise BmbenchError(f"{index_path}: cannot be read ({err}); {_FIX}", exit_code=INVALID) from None
    if index_sha != manifest.index_sha256:
        raise BmbenchError(f"{index_path} differs from the index recorded in {MANIFEST_FILE} (SHA-256 "
                           f"mismatch); {_FIX}", exit_code=INVALID)
    image_ids = read_index(index_path)
    try:
        features = np.load(folder / FEATURES_FILE, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise BmbenchError(f"{folder / FEATURES_FILE}: cannot be memory-mapped ({err}); {_FIX}",
                           exit_code=INVALID) from None
    expected = (manifest.rows, manifest.dim)
    if features.ndim != 2 or features.shape[1] != manifest.dim:
        raise BmbenchError(f"{folder / FEATURES_FILE}: shape {features.shape} but {MANIFEST_FILE} records "
                           f"dim D = {manifest.dim}; {_FIX}", exit_code=INVALID)
    if features.shape != expected or len(image_ids) != manifest.rows:
        raise BmbenchError(f"{folder / FEATURES_FILE}: shape {features.shape} and {len(image_ids)} index rows, "
                           f"but {MANIFEST_FILE} records {expected}; {_FIX}", exit_code=INVALID)
    if features.dtype != np.float16:
        raise BmbenchError(f"{folder / FEATURES_FILE}: dtype {features.dtype}, expected float16; {_FIX}",
                           exit_code=INVALID)
    return FeatureStore(folder=folder, features=features, image_ids=image_ids, manifest=manifest)


def fold_folder(path: str | Path, fold: int) -> Path:
    """The store folder that serves ``fold``: ``path/fold<k>`` for per-fold stores, else ``path`` itself."""
    folder = Path(path)
    per_fold = folder / f"fold{fold}"
    if per_fold.is_dir():
        return per_fold
    if any(folder.glob("fold*/" + MANIFEST_FILE)) or any(folder.glob("fold*/" + PROGRESS_FILE)):
        raise BmbenchError(f"{folder} holds per-fold stores but none for fold {fold}; run `bmbench embed` "
                           f"for that fold (--folds {fold})", exit_code=INVALID)
    return folder


def fold_store(path: str | Path, fold: int) -> FeatureStore:
    """The store a probe uses for ``fold``: fold k's own store for ``run:`` encoders, the shared one otherwise."""
    return open_store(fold_folder(path, fold))
