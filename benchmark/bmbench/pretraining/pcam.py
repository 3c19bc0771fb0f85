"""PatchCamelyon from the official HDF5 files, read without reopening a file per item.

The release ships ``camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5.gz``: key ``x`` holds
(N, 96, 96, 3) uint8 patches, key ``y`` (N, 1, 1, 1) binary labels (1 = metastatic tissue in the centre).
The published train / valid / test split is used as it is: ``valid`` selects the checkpoint, ``test`` is
reported. torchvision's ``PCAM`` opens the HDF5 file for every item; here each process (the main one, or
each DataLoader worker) opens each ``x`` file once, on first use, and keeps the handle. Gzipped files are
decompressed once into ``<bmbench cache>/pcam/`` (reading a gzip stream per random access would decode
the file from its start every time).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image

from bmbench import atomic
from bmbench.data.source import cache_dir
from bmbench.errors import BmbenchError, DataNotFoundError
from bmbench.pretraining.source import PCAM, PretrainData, positions
from bmbench.records.pcam_source import PcamSource, read_pcam_source, write_pcam_source

SPLITS = ("train", "valid", "test")
"""The release's parts, in pool order; ``valid`` plays the role of bmbench's ``val``."""
CHUNK = 1 << 22

Advance = Callable[[int], None]
TaskFactory = Callable[[str, int | None], Advance]


def file_name(split: str, key: str) -> str:
    """``camelyonpatch_level_2_split_<split>_<key>.h5`` (key ``x`` or ``y``)."""
    return f"camelyonpatch_level_2_split_{split}_{key}.h5"


def expected_names() -> list[str]:
    return [file_name(split, key) for split in SPLITS for key in ("x", "y")]


def is_pcam_folder(root: Path) -> bool:
    """Whether ``root`` (or a sub-folder) holds a PatchCamelyon training file, gzipped or not."""
    return _find(root, file_name("train", "x")) is not None


def _find(root: Path, name: str) -> Path | None:
    """``name`` or ``name.gz`` in ``root``, else anywhere below it (first in sorted order); plain wins."""
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    for pattern in (name, f"{name}.gz"):
        found = sorted(root.rglob(pattern))
        if found:
            return found[0]
    return None


def locate_files(root: Path) -> dict[str, Path]:
    """The six release files under ``root`` (plain ``.h5`` preferred over ``.h5.gz``); missing ones named."""
    if not root.is_dir():
        raise DataNotFoundError(f"{root} is not a folder.\n{PCAM.download}")
    found = {name: _find(root, name) for name in expected_names()}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise DataNotFoundError(
            f"{root} lacks the PatchCamelyon file(s) {', '.join(n + '[.gz]' for n in missing)} (expected all of "
            f"{', '.join(expected_names())}, each plain or gzipped).\n{PCAM.download}"
        )
    return {name: path for name, path in found.items() if path is not None}


def decompress_cached(path: Path, progress: TaskFactory | None = None) -> Path:
    """The plain HDF5 file for ``path``: itself, or its decompressed copy in ``<cache>/pcam/`` (made once).

    The copy is reused while the gzip file's size and modification time match the record beside it; it is
    written atomically, so an interrupted decompression leaves nothing half written.
    """
    if path.suffix != ".gz":
        return path
    target = cache_dir() / "pcam" / path.name[: -len(".gz")]
    record_path = target.with_name(target.name + ".source.json")
    stat = path.stat()
    record = PcamSource(source=str(path.resolve()), size=stat.st_size, mtime_ns=stat.st_mtime_ns)
    if target.is_file() and record_path.is_file():
        try:
            if read_pcam_source(record_path).same_file(record):
                return target
        except BmbenchError:
            pass  # a damaged record: decompress again
    description = f"decompressing {path.name} into {target.parent} (kept for later runs)"
    advance = progress(description, stat.st_size) if progress else None
    try:
        with open(path, "rb") as raw, gzip.GzipFile(fileobj=raw) as stream, atomic.atomic_open(target, "wb") as out:
            done = 0
            for block in iter(lambda: stream.read(CHUNK), b""):
                out.write(block)
                if advance is not None:
                    position = raw.tell()
                    advance(position - done)
                    done = position
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError; EOFError: truncated download
        raise BmbenchError(f"{path}: cannot be decompressed ({err}); the download is incomplete or corrupt. "
                           f"Download it again.\n{PCAM.download}") from None
    write_pcam_source(record_path, record)
    return target


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise BmbenchError(f"{path}: not a readable HDF5 file ({err}); the download is incomplete or corrupt. "
                           f"Download it again.\n{PCAM.download}") from None


def _read_split(x_path: Path, y_path: Path) -> tuple[int, np.ndarray]:
    """Check the shapes of one part's files; its image count and labels (0/1)."""
    with _open(x_path) as handle:
        if "x" not in handle:
            raise BmbenchError(f"{x_path}: has no dataset 'x' (keys: {', '.join(handle.keys()) or 'none'})")
        x = handle["x"]
        if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
            raise BmbenchError(f"{x_path}: 'x' must be (N, height, width, 3) uint8 patches, found "
                               f"{x.shape} {x.dtype}")
        count = int(x.shape[0])
    with _open(y_path) as handle:
        if "y" not in handle:
            raise BmbenchError(f"{y_path}: has no dataset 'y' (keys: {', '.join(handle.keys()) or 'none'})")
        y = np.asarray(handle["y"][...])
    if y.shape[:1] != (count,) or y.size != count:
        raise BmbenchError(f"{y_path}: 'y' has shape {y.shape}, expected ({count}, 1, 1, 1) to match {x_path.name}")
    labels = y.reshape(count).astype(np.int64)
    bad = sorted(set(np.unique(labels).tolist()) - {0, 1})
    if bad:
        raise BmbenchError(f"{y_path}: labels must be 0 or 1, found {bad[:5]}")
    return count, labels


class H5Images:
    """Images of several HDF5 ``x`` files as one pool; each process opens each file once, lazily.

    Handles are kept per process id: a forked DataLoader worker inherits the parent's dictionary but
    never uses the parent's handles, and pickling (spawned workers) drops them altogether.
    """

    def __init__(self, paths: list[Path], counts: list[int]) -> None:
        self.paths = [Path(p) for p in paths]
        self.offsets = np.cumsum([0, *counts])
        self._handles: dict[tuple[int, int], Any] = {}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def _dataset(self, part: int) -> Any:
        key = (os.getpid(), part)
        handle = self._handles.get(key)
        if handle is None:
            handle = self._handles[key] = h5py.File(self.paths[part], "r")
        return handle["x"]

    def image(self, index: int) -> Image.Image:
        if not 0 <= index < len(self):
            raise IndexError(index)
        part = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return Image.fromarray(np.asarray(self._dataset(part)[index - int(self.offsets[part])]))

    def close(self) -> None:
        """Close this process's handles."""
        for (pid, part), handle in list(self._handles.items()):
            if pid == os.getpid():
                handle.close()
                del self._handles[(pid, part)]


def load_pcam(root: Path, progress: TaskFactory | None = None) -> PretrainData:
    """PatchCamelyon from the release files under ``root``: the pool train + valid + test, in that order."""
    files = locate_files(root)
    x_paths: list[Path] = []
    counts: list[int] = []
    labels: list[np.ndarray] = []
    for split in SPLITS:
        x_path = decompress_cached(files[file_name(split, "x")], progress)
        y_path = decompress_cached(files[file_name(split, "y")], progress)
        count, y = _read_split(x_path, y_path)
        x_paths.append(x_path)
        counts.append(count)
        labels.append(y)
    start = np.cumsum([0, *counts])
    data = PretrainData(
        spec=PCAM, source=H5Images(x_paths, counts), labels=np.concatenate(labels),
        train=positions(int(start[0]), counts[0]), val=positions(int(start[1]), counts[1]),
        test=positions(int(start[2]), counts[2]),
        info={"format": "pcam-hdf5", "root": str(root), "files": {n: str(p) for n, p in files.items()},
              "split_rule": "the release's train / valid / test files (valid selects the checkpoint)"},
    )
    data.check()
    return data
