"""Decode every image once into a memory-mapped uint8 array: the input of the GPU-resident data path.

Why: the plain data path decodes each JPEG again in every epoch (171,374 images x 75 epochs x 5 folds, a
CPU core-millisecond each), which starves a fast GPU. The cache decodes each image once (Pillow, OpenCV for
the files Pillow refuses: :func:`bmbench.data.decode.decode_image`) into one ``N x 250 x 250 x 3`` uint8
array that every later run on the same data memory-maps.

Layout (``<BMBENCH_CACHE>/images/<dataset>-<key>/``, written in a temporary folder and renamed into place
under a file lock, :func:`bmbench.locks.build_once`: concurrent builders build it once)::

    images.npy      N x 250 x 250 x 3 uint8 (NumPy .npy, memory-mappable), rows in the given order
    index.csv       row,image_id,label (label = class code)
    manifest.json   data set, split, rows, SHA-256 digests, checksum, fingerprint of the source files

The rows are those of the published split in split-row order (``bmbench run`` reads row ``p`` for split
position ``p``), or, for ``bmbench bench``, every image found in the data folder (sorted by id: for the
complete BM data both orders are the same, and so is the cache). ``key`` hashes the data set id, the
split's SHA-256 and every ``(id, path)`` row. ``fingerprint`` hashes the size and modification time of
every source file: a changed file makes the cache stale, and it is rebuilt. ``images_sha256`` is a
two-level SHA-256 (over blocks of :data:`HASH_BLOCK_ROWS` rows, computed by the decoding workers, so
hashing runs in parallel); ``checksum`` binds it to the index, the split hash and the data set id.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bmbench import atomic
from bmbench.classes import CLASS_CODES
from bmbench.data.decode import EXPECTED_SHAPE, decode_image
from bmbench.errors import BmbenchError, RunFailure

CACHE_VERSION = 1
"""Bump when the layout or the decoding changes: the key changes, old caches are ignored."""
HASH_BLOCK_ROWS = 1024
"""Rows per hash block (and per decoding task) of ``images_sha256``; fixed so the digest never depends on
the number of workers."""
IMAGES_FILE = "images.npy"
INDEX_FILE = "index.csv"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class CacheRows:
    """What a cache holds: image ids, labels (class indices) and source files, in row order."""

    image_ids: tuple[str, ...]
    labels: np.ndarray
    paths: tuple[Path, ...]
    dataset_id: str
    split_name: str
    split_sha256: str

    def __len__(self) -> int:
        return len(self.image_ids)

    def key(self) -> str:
        """SHA-256 naming the cache: version, data set, split hash and every ``(id, path)`` row."""
        h = hashlib.sha256(f"bmbench-image-cache-v{CACHE_VERSION}\0{self.dataset_id}\0{self.split_sha256}\0"
                           f"{EXPECTED_SHAPE}\0".encode())
        for image_id, path in zip(self.image_ids, self.paths, strict=True):
            h.update(f"{image_id}\t{path}\n".encode())
        return h.hexdigest()


def rows_for_split(split: Any, paths: Sequence[Path]) -> CacheRows:
    """The rows of a published split (``Split``) with their files (``DataIndex.paths_for``): what runs read."""
    return CacheRows(image_ids=tuple(str(i) for i in split.image_ids), labels=np.asarray(split.labels, np.int16),
                     paths=tuple(Path(p) for p in paths), dataset_id=split.spec.dataset.id, split_name=split.name,
                     split_sha256=split.sha256)


def rows_for_index(index: Any, split: Any | None = None) -> CacheRows:
    """Every image found in a data folder (``DataIndex``), sorted by id; ``split`` only adds its provenance."""
    codes = {code: i for i, code in enumerate(CLASS_CODES)}
    records = index.records
    return CacheRows(image_ids=tuple(r.image_id for r in records),
                     labels=np.array([codes[r.code] for r in records], dtype=np.int16),
                     paths=tuple(r.path for r in records), dataset_id=index.dataset.id,
                     split_name=split.name if split is not None else "",
                     split_sha256=split.sha256 if split is not None else "")


def images_root() -> Path:
    """``<BMBENCH_CACHE>/images``: where image caches live."""
    from bmbench.data.source import cache_dir

    return cache_dir() / "images"


def cache_folder(rows: CacheRows) -> Path:
    """The folder of the cache of ``rows``."""
    return images_root() / f"{rows.dataset_id}-{rows.key()[:20]}"


def fingerprint(paths: Sequence[Path]) -> str:
    """SHA-256 over the size and modification time (ns) of every file; a missing file raises."""
    h = hashlib.sha256()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise BmbenchError(f"{path}: cannot be read ({exc.strerror or exc}); check the data folder with "
                               "`bmbench data verify`") from None
        h.update(f"{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


@dataclass
class ImageCache:
    """An opened cache: the memory-mapped images and their index."""

    folder: Path
    images: np.ndarray
    image_ids: tuple[str, ...]
    labels: np.ndarray
    manifest: dict[str, Any]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def checksum(self) -> str:
        """SHA-256 binding the pixels, the index, the split hash and the data set id."""
        return str(self.manifest["checksum"])

    @property
    def dataset_id(self) -> str:
        return str(self.manifest["dataset"])

    def describe(self) -> dict[str, Any]:
        """What a result records about the cache it read."""
        return {"folder": str(self.folder), "rows": len(self), "checksum": self.checksum,
                "dataset": self.dataset_id, "split": self.manifest.get("split")}


def _combine(block_digests: Sequence[str]) -> str:
    h = hashlib.sha256(f"blocks of {HASH_BLOCK_ROWS} rows\n".encode())
    for digest in block_digests:
        h.update(bytes.fromhex(digest))
    return h.hexdigest()


def _checksum(images_sha256: str, index_sha256: str, split_sha256: str, dataset_id: str) -> str:
    text = f"images {images_sha256}\nindex {index_sha256}\nsplit {split_sha256}\ndataset {dataset_id}\n"
    return hashlib.sha256(text.encode()).hexdigest()


def _index_csv(rows: CacheRows) -> str:
    lines = ["row,image_id,label"]
    lines += [f"{k},{i},{CLASS_CODES[int(c)]}" for k, (i, c) in enumerate(zip(rows.image_ids, rows.labels,
                                                                                strict=True))]
    return "\n".join(lines) + "\n"


def _decode_block(npy: str, start: int, paths: list[str]) -> tuple[int, str, list[str], list[tuple[str, str]]]:
    """Decode rows ``start..`` into the shared array in a worker; return (rows, block SHA-256, OpenCV-decoded
    files, errors). Runs in a worker process: the pixels never travel back through a pipe."""
    images = np.load(npy, mmap_mode="r+")
    block = np.empty((len(paths), *EXPECTED_SHAPE), dtype=np.uint8)
    opencv: list[str] = []
    errors: list[tuple[str, str]] = []
    for k, path in enumerate(paths):
        try:
            array, decoder = decode_image(path)
        except Exception as exc:  # DecodeError carries both reasons; anything else is reported the same way
            errors.append((path, str(exc)))
            block[k] = 0
            continue
        if array.shape != EXPECTED_SHAPE:
            errors.append((path, f"shape {array.shape}, the cache holds {EXPECTED_SHAPE} images only"))
            block[k] = 0
            continue
        if decoder == "opencv":
            opencv.append(path)
        block[k] = array
    images[start:start + len(paths)] = block
    images.flush()
    del images
    return len(paths), hashlib.sha256(block.data).hexdigest(), opencv, errors


def _hash_block(npy: str, start: int, stop: int) -> str:
    images = np.load(npy, mmap_mode="r")
    return hashlib.sha256(np.ascontiguousarray(images[start:stop]).data).hexdigest()


def _workers(workers: int | None) -> int:
    if workers is not None:
        if workers < 1:
            raise BmbenchError(f"workers must be at least 1, got {workers}")
        return workers
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _map_blocks(func: Callable[..., Any], tasks: list[tuple[Any, ...]], workers: int,
                on_result: Callable[[int, Any], None]) -> None:
    """Run ``func(*task)`` for every task (in a process pool when ``workers > 1``); results by task number."""
    if workers == 1 or len(tasks) <= 1:
        for k, task in enumerate(tasks):
            on_result(k, func(*task))
        return
    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)))
    try:
        pending: dict[Future[Any], int] = {pool.submit(func, *task): k for k, task in enumerate(tasks)}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                on_result(pending.pop(future), future.result())
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _check_space(folder: Path, needed: int) -> None:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed * 1.02 + 64 * 2**20:
        raise BmbenchError(
            f"the image cache needs {needed / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB are free under "
            f"{probe}; point BMBENCH_CACHE at a disk with room, or use recipe data_path = \"plain\""
        )


def build_cache(rows: CacheRows, *, workers: int | None = None, progress: Callable[[int], None] | None = None,
                force: bool = False) -> ImageCache:
    """Decode ``rows`` into a new cache (atomically) and return it opened; an up-to-date cache is reused
    unless ``force``. ``progress(k)`` is called with the number of newly decoded images.

    Concurrent builders (grid tasks, torchrun ranks) are serialised by :func:`bmbench.locks.build_once`:
    one decodes, the others wait for the lock and then open its cache."""
    from bmbench.locks import build_once

    if len(rows) == 0:
        raise BmbenchError("there are no images to cache")
    final = cache_folder(rows)
    atomic.remove_stale(final.parent, recursive=True)  # temporaries of a cache writer killed mid-write
    if not force:
        existing = open_cache(rows)
        if existing is not None:
            return existing
    final.parent.mkdir(parents=True, exist_ok=True)
    _check_space(final.parent, len(rows) * int(np.prod(EXPECTED_SHAPE)))
    build_once(final, lambda tmp: _write_cache(tmp, rows, workers, progress),
               is_done=lambda _: open_cache(rows) is not None, force=force)
    opened = open_cache(rows, check_files=False)
    if opened is None:
        raise RunFailure(f"{final}: the cache was written but cannot be opened")
    return opened


@dataclass(frozen=True)
class CacheOutcome:
    """What :func:`obtain_cache` did: the opened cache, how many images this process decoded (0: reused, an
    up-to-date one or one a concurrent builder finished while this process waited) and the seconds taken."""

    cache: ImageCache
    decoded: int
    seconds: float

    @property
    def reused(self) -> bool:
        return self.decoded == 0


def obtain_cache(rows: CacheRows, *, rebuild: bool = False, workers: int | None = None,
                 progress: Callable[[int], None] | None = None) -> CacheOutcome:
    """The reuse policy of ``bmbench data cache``: reuse an up-to-date cache unless ``rebuild``, else decode
    (under the build lock, so a cache a concurrent process finishes meanwhile is reused, not decoded twice)."""
    started = time.perf_counter()
    decoded = [0]

    def count(k: int) -> None:
        decoded[0] += k
        if progress is not None:
            progress(k)

    cache = build_cache(rows, workers=workers, progress=count, force=rebuild)
    return CacheOutcome(cache=cache, decoded=decoded[0], seconds=time.perf_counter() - started)


def _write_cache(tmp: Path, rows: CacheRows, workers: int | None,
                 progress: Callable[[int], None] | None) -> None:
    """Decode every row into the empty folder ``tmp`` and write its index and manifest."""
    started = time.perf_counter()
    n = len(rows)
    npy = tmp / IMAGES_FILE
    np.lib.format.open_memmap(npy, mode="w+", dtype=np.uint8, shape=(n, *EXPECTED_SHAPE)).flush()
    source_print = fingerprint(rows.paths)
    tasks = [(str(npy), start, [str(p) for p in rows.paths[start:start + HASH_BLOCK_ROWS]])
             for start in range(0, n, HASH_BLOCK_ROWS)]
    digests: list[str] = [""] * len(tasks)
    opencv: list[str] = []
    errors: list[tuple[str, str]] = []

    def collect(k: int, result: tuple[int, str, list[str], list[tuple[str, str]]]) -> None:
        done, digest, block_opencv, block_errors = result
        digests[k] = digest
        opencv.extend(block_opencv)
        errors.extend(block_errors)
        if progress is not None:
            progress(done)

    _map_blocks(_decode_block, tasks, _workers(workers), collect)
    if errors:
        shown = "; ".join(f"{p}: {why}" for p, why in errors[:3])
        raise BmbenchError(f"{len(errors)} image(s) could not be cached ({shown}). Check the data with "
                           "`bmbench data verify`.")
    index_text = _index_csv(rows)
    (tmp / INDEX_FILE).write_text(index_text, encoding="utf-8", newline="")
    images_sha = _combine(digests)
    index_sha = hashlib.sha256(index_text.encode()).hexdigest()
    by_path = {str(p): i for i, p in zip(rows.image_ids, rows.paths, strict=True)}
    manifest = {
        "schema_version": CACHE_VERSION,
        "dataset": rows.dataset_id,
        "split": {"name": rows.split_name, "sha256": rows.split_sha256},
        "rows": n,
        "shape": [n, *EXPECTED_SHAPE],
        "dtype": "uint8",
        "key": rows.key(),
        "images_sha256": images_sha,
        "hash_block_rows": HASH_BLOCK_ROWS,
        "index_sha256": index_sha,
        "checksum": _checksum(images_sha, index_sha, rows.split_sha256, rows.dataset_id),
        "fingerprint": source_print,
        "decoded_with_opencv": sorted(by_path[p] for p in opencv),
        "seconds": round(time.perf_counter() - started, 3),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a cache folder, or None when it is missing or unreadable."""
    try:
        return dict(json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def cache_status(rows: CacheRows) -> str:
    """``missing``, ``stale`` (source files changed, or a damaged cache) or ``ok``."""
    folder = cache_folder(rows)
    manifest = read_manifest(folder)
    if manifest is None:
        return "missing"
    if manifest.get("key") != rows.key() or manifest.get("fingerprint") != fingerprint(rows.paths):
        return "stale"
    return "ok"


def open_cache(rows: CacheRows, *, check_files: bool = True) -> ImageCache | None:
    """The up-to-date cache of ``rows``, memory-mapped; None when it is missing or stale.

    ``check_files`` compares the size and modification time of every source file with the manifest (about
    a second for the full data set).
    """
    folder = cache_folder(rows)
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("key") != rows.key() or manifest.get("rows") != len(rows):
        return None
    if check_files and manifest.get("fingerprint") != fingerprint(rows.paths):
        return None
    try:
        images = np.load(folder / IMAGES_FILE, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if images.shape != (len(rows), *EXPECTED_SHAPE) or images.dtype != np.uint8:
        return None
    return ImageCache(folder=folder, images=images, image_ids=rows.image_ids, labels=np.asarray(rows.labels),
                      manifest=manifest)


def ensure_cache(rows: CacheRows, *, workers: int | None = None,
                 progress: Callable[[int], None] | None = None) -> ImageCache:
    """Open the cache of ``rows``, building (or rebuilding a stale) one first."""
    return build_cache(rows, workers=workers, progress=progress, force=False)


def verify_cache(cache: ImageCache, *, workers: int | None = None,
                 progress: Callable[[int], None] | None = None) -> list[str]:
    """Recompute every digest of ``cache`` (in parallel); return the problems found (empty: intact)."""
    problems: list[str] = []
    n = len(cache)
    npy = str(cache.folder / IMAGES_FILE)
    tasks = [(npy, start, min(start + HASH_BLOCK_ROWS, n)) for start in range(0, n, HASH_BLOCK_ROWS)]
    digests: list[str] = [""] * len(tasks)

    def collect(k: int, digest: str) -> None:
        digests[k] = digest
        if progress is not None:
            progress(tasks[k][2] - tasks[k][1])

    _map_blocks(_hash_block, tasks, _workers(workers), collect)
    m = cache.manifest
    if _combine(digests) != m.get("images_sha256"):
        problems.append(f"{cache.folder / IMAGES_FILE}: the pixels differ from those recorded (SHA-256 mismatch)")
    with contextlib.suppress(OSError):
        index_sha = hashlib.sha256((cache.folder / INDEX_FILE).read_bytes()).hexdigest()
        if index_sha != m.get("index_sha256"):
            problems.append(f"{cache.folder / INDEX_FILE}: differs from the one recorded (SHA-256 mismatch)")
    expected = _checksum(str(m.get("images_sha256")), str(m.get("index_sha256")),
                         str(m.get("split", {}).get("sha256", "")), str(m.get("dataset")))
    if expected != m.get("checksum"):
        problems.append(f"{cache.folder / MANIFEST_FILE}: checksum does not match its own digests")
    return problems
