"""``bmbench embed``: one eval-mode forward pass over every image of a split into a feature store.

Where: ``--out DIR`` names the store folder; by default it lives in the feature cache
``$BMBENCH_FEATURES`` (default ``<BMBENCH_CACHE>/features``) as ``<dataset>/<encoder>-<key>/``, where
``key`` digests everything that decides the numbers (:class:`~bmbench.records.features.StoreKey`), so every
probe of the same encoder on the same images reuses one store. A ``run:`` encoder gets ``fold<k>/`` stores
inside that folder, one per fold of the run (fold k's ``best.pt``).

How: the rows are the split's images in split-row order. Pixels come from the uint8 image cache
(``bmbench data cache``) when one is up to date, else they are decoded by DataLoader workers; a prefetch
thread keeps the next batch ready (pinned, copied asynchronously on CUDA). The preprocessing of
:mod:`bmbench.features.preprocess` runs on the device; on CUDA under bf16 autocast with channels_last.
Features are written as float16 into a pre-allocated ``.npy`` memmap; every :data:`CHUNK_ROWS` rows the
array is flushed and ``progress.json`` records the rows done, so a killed run resumes there. The
manifest is written last, atomically: it is the completion marker. An encoder that returns anything but a
finite ``(N, D)`` tensor is refused (exit 2) and its unfinished store removed.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bmbench import atomic
from bmbench.errors import BmbenchError
from bmbench.features.batch import batch_transform, embed_batch, prefetch, prepare_module
from bmbench.features.encoders import Encoder, load_encoder, run_folds
from bmbench.features.store import (FEATURES_FILE, INDEX_FILE, MANIFEST_FILE, PROGRESS_FILE, index_text,
                                    open_store, read_manifest, refuse_mismatch)
from bmbench.records._io import read_model, write_model
from bmbench.records.features import EmbedProgress, FeatureManifest, SplitRef, StoreKey
from bmbench.submissions.schema import LoadedSubmission

CHUNK_ROWS = 4096
"""Rows between two checkpoints of an unfinished store (flush + ``progress.json``)."""
INVALID = 2
Progress = Callable[[int, int, str], None]
"""``progress(rows_done, rows_total, label)``, called after every batch."""


def features_root() -> Path:
    """Where feature stores live (:func:`bmbench.paths.features_dir`)."""
    from bmbench.paths import features_dir

    return features_dir()


def _slug(spec: str) -> str:
    keep = "".join(c if c.isalnum() or c in "._-" else "-" for c in spec)
    return keep.strip("-")[-60:]


class ImageSource:
    """The split's images as uint8 ``N x H x W x 3`` batches, from the image cache or decoded by workers."""

    def __init__(self, split: Any, paths: list[Path], dataset_id: str, workers: int | None) -> None:
        self.split, self.paths, self.workers = split, paths, workers
        self.cache = self._find_cache(split, paths, dataset_id)
        self.positions: np.ndarray | None = None
        if self.cache is not None:
            rows_of = {i: k for k, i in enumerate(self.cache.image_ids)}
            self.positions = np.array([rows_of[str(i)] for i in split.image_ids], dtype=np.int64)

    @staticmethod
    def _find_cache(split: Any, paths: list[Path], dataset_id: str) -> Any:
        """The up-to-date cache of this split, else of the data set's default split if it has every image."""
        from bmbench.data.cache import open_cache, rows_for_split
        from bmbench.splits.store import load_split, split_for_dataset

        found = open_cache(rows_for_split(split, paths))
        if found is not None:
            return found
        default = split_for_dataset(dataset_id).name
        if default == split.name:
            return None
        other = load_split(default)
        if set(map(str, other.image_ids)) < set(map(str, split.image_ids)):
            return None
        by_id = {str(i): p for i, p in zip(split.image_ids, paths, strict=True)}
        if not all(str(i) in by_id for i in other.image_ids):
            return None
        return open_cache(rows_for_split(other, [by_id[str(i)] for i in other.image_ids]))

    def describe(self) -> dict[str, str | int | None] | None:
        if self.cache is None:
            return None
        return {"folder": str(self.cache.folder), "checksum": self.cache.checksum, "rows": len(self.cache)}

    def batches(self, start: int, batch: int, pin: bool) -> Iterator[tuple[int, Any]]:
        """``(first_row, uint8 tensor)`` for rows ``start..N`` in order, one batch prefetched ahead."""
        gen = self._cache_batches(start, batch) if self.cache is not None else self._decoded_batches(start, batch)
        return prefetch(gen, pin)

    def _cache_batches(self, start: int, batch: int) -> Iterator[tuple[int, Any]]:
        import torch

        if self.positions is None or self.cache is None:
            return
        images, pos, n = self.cache.images, self.positions, len(self.positions)
        for a in range(start, n, batch):
            p = pos[a:a + batch]
            if p[-1] - p[0] == len(p) - 1 and np.all(np.diff(p) == 1):
                block = np.array(images[p[0]:p[-1] + 1])  # a private, writable copy (pinnable)
            else:
                block = images[np.sort(p)][np.argsort(np.argsort(p))]
            yield a, torch.from_numpy(block)

    def _decoded_batches(self, start: int, batch: int) -> Iterator[tuple[int, Any]]:
        import torch
        from torch.utils.data import DataLoader

        from bmbench.parallel import available_cpus

        workers = self.workers if self.workers is not None else min(8, available_cpus())
        loader = DataLoader(_Decoded(self.paths[start:]), batch_size=batch, shuffle=False,
                            num_workers=workers, collate_fn=_stack)
        a = start
        for block in loader:
            yield a, torch.from_numpy(block)
            a += len(block)


class _Decoded:
    """Map-style dataset of decoded uint8 images (Pillow, OpenCV fallback) for DataLoader workers."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, k: int) -> np.ndarray:
        from bmbench.data.decode import decode_image

        return decode_image(self.paths[k])[0]


def _stack(items: list[np.ndarray]) -> np.ndarray:
    shapes = {a.shape for a in items}
    if len(shapes) != 1:
        raise BmbenchError(f"images of different shapes in one batch ({sorted(shapes)}); check the data with "
                           "`bmbench data verify`", exit_code=INVALID)
    return np.stack(items)


def _device_record(device: Any) -> dict[str, str | int | float | None]:
    import platform

    import torch

    if device.type == "cuda":
        return {"type": "cuda", "name": torch.cuda.get_device_name(device), "torch": torch.__version__}
    return {"type": "cpu", "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def _embed_store(encoder: Encoder, folder: Path, source: ImageSource, *, split: Any, dataset: Any, ids: list[str],
                 device: Any, batch: int, progress: Progress | None, label: str) -> Path:
    """Fill (or resume, or reuse) one store folder with ``encoder``'s features of ``ids``."""
    from bmbench import __version__
    text = index_text(ids)
    index_sha = hashlib.sha256(text.encode()).hexdigest()
    key = StoreKey(encoder_id=encoder.spec, weights_sha256=encoder.weights_sha256, fold=encoder.fold,
                   preprocess=encoder.preprocess, dataset=dataset.id, index_sha256=index_sha)
    n = len(ids)
    if (folder / MANIFEST_FILE).is_file():
        refuse_mismatch(folder, read_manifest(folder).key, key)
        open_store(folder)  # checks array, index and manifest agree
        return folder
    start, dim, wall_before, resumed, feats = 0, 0, 0.0, 0, None
    if (folder / PROGRESS_FILE).is_file():
        state = read_model(EmbedProgress, folder / PROGRESS_FILE, what="embedding progress record",
                           fix=f"delete {folder} and run `bmbench embed` again")
        refuse_mismatch(folder, state.key, key)
        try:
            feats = np.load(folder / FEATURES_FILE, mmap_mode="r+")
        except (OSError, ValueError):
            feats = None
        if feats is not None and feats.shape == (n, state.dim) and feats.dtype == np.float16:
            start, dim, wall_before, resumed = state.rows_done, state.dim, state.wall_seconds, state.resumed + 1
        else:
            feats = None
    elif folder.exists() and any(folder.iterdir()):
        raise BmbenchError(f"{folder} exists and is not a feature store (no {MANIFEST_FILE} or {PROGRESS_FILE}); "
                           "choose an empty --out folder", exit_code=INVALID)
    transform = batch_transform(encoder.preprocess)
    encoder.module = prepare_module(encoder.module, device)
    started = time.perf_counter()
    rows_this_run = 0
    last_checkpoint = start
    try:
        for first, block in source.batches(start, batch, pin=device.type == "cuda"):
            out = embed_batch(encoder.module, transform, block, device, spec=encoder.spec, first_row=first,
                              image_ids=ids)
            if feats is None:
                dim = int(out.shape[1])
                folder.mkdir(parents=True, exist_ok=True)
                atomic.write_text(folder / INDEX_FILE, text)
                feats = np.lib.format.open_memmap(folder / FEATURES_FILE, mode="w+", dtype=np.float16, shape=(n, dim))
            elif out.shape[1] != dim:
                raise BmbenchError(f"encoder {encoder.spec} returned D = {out.shape[1]} features, but the store "
                                   f"{folder} holds D = {dim}; delete it and embed again", exit_code=INVALID)
            feats[first:first + len(out)] = out
            rows_this_run += len(out)
            done = first + len(out)
            if done - last_checkpoint >= CHUNK_ROWS and done < n:
                _checkpoint(folder, feats, key, n, dim, done, wall_before + time.perf_counter() - started, resumed)
                last_checkpoint = done
            if progress is not None:
                progress(done, n, label)
    except BmbenchError:  # a deterministic encoder fails again at the same rows: never keep a bad store
        del feats
        shutil.rmtree(folder, ignore_errors=True)
        raise
    except BaseException:
        if feats is not None and rows_this_run:  # interrupted: keep what is written, resume there next time
            done = start + rows_this_run
            _checkpoint(folder, feats, key, n, dim, done, wall_before + time.perf_counter() - started, resumed)
        raise
    if feats is None:
        raise BmbenchError(f"split {split.name} has no images to embed", exit_code=INVALID)
    feats.flush()
    del feats
    seconds = time.perf_counter() - started
    manifest = FeatureManifest(
        key=key, key_sha256=key.digest(), encoder=encoder.info(dim), preprocess=encoder.preprocess,
        dataset=dataset.id, synthetic=bool(dataset.synthetic), split=SplitRef(name=split.name, sha256=split.sha256),
        rows=n, dim=dim, index_sha256=index_sha, image_cache=source.describe(), bmbench_version=__version__,
        device=_device_record(device), batch=batch,
        images_per_second=round(rows_this_run / seconds, 2) if seconds > 0 else 0.0,
        wall_seconds=round(wall_before + seconds, 3), resumed=resumed,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"))
    write_model(folder / MANIFEST_FILE, manifest)
    (folder / PROGRESS_FILE).unlink(missing_ok=True)
    return folder


def _checkpoint(folder: Path, feats: np.ndarray, key: StoreKey, n: int, dim: int, done: int, wall: float,
                resumed: int) -> None:
    """Flush the rows written so far, then record how many there are (in that order: never ahead of the data)."""
    feats.flush()  # type: ignore[attr-defined]  # a memmap
    write_model(folder / PROGRESS_FILE, EmbedProgress(key=key, key_sha256=key.digest(), rows=n, dim=dim,
                                                      rows_done=done, wall_seconds=round(wall, 3), resumed=resumed))


def default_folder(loaded: LoadedSubmission, dataset_id: str, index_sha: str, fold_keys: list[str]) -> Path:
    """``<features root>/<dataset>/<encoder slug>-<digest>``; the digest covers encoder, images and overrides."""
    sub = loaded.submission
    h = hashlib.sha256(f"{sub.encoder}\0{index_sha}\0".encode())
    if sub.preprocess is not None:
        h.update(sub.preprocess.model_dump_json().encode())
    for k in fold_keys:
        h.update(k.encode())
    return features_root() / dataset_id / f"{_slug(str(sub.encoder))}-{h.hexdigest()[:16]}"


def embed(loaded: LoadedSubmission, *, data: str | None, split_name: str | None = None, out_dir: Path | None = None,
          device: str = "auto", batch: int = 256, progress: Progress | None = None,
          folds: tuple[int, ...] | None = None, workers: int | None = None) -> Path:
    """Embed every image of the split with the submission's encoder; return the store folder.

    A complete matching store is reused, an unfinished one resumed, a store of anything else refused. For
    a ``run:`` encoder the folder holds ``fold<k>/`` stores (``folds``: which; default every finished fold).
    """
    from bmbench.data.layout import scan_data
    from bmbench.data.source import resolve_data
    from bmbench.engine.device import resolve_device
    from bmbench.splits.store import check_folds, load_split, split_for_dataset

    sub = loaded.submission
    if sub.encoder is None:
        raise BmbenchError(f"{loaded.folder}: {sub.name} has no encoder (protocol {sub.protocol!r}); `bmbench embed` "
                           "needs a frozen-feature submission (protocol linear, knn or fewshot)", exit_code=INVALID)
    if batch < 1:
        raise BmbenchError(f"--batch must be at least 1, got {batch}", exit_code=INVALID)
    per_fold = str(sub.encoder).startswith("run:")
    if folds is not None and not per_fold:
        raise BmbenchError(f"--folds picks the fold networks of a run: encoder; {sub.encoder} is one network for "
                           "every fold, embedded once: drop --folds", exit_code=INVALID)
    index = scan_data(resolve_data(data))
    split = load_split(split_name or split_for_dataset(index.dataset.id).name)
    if split.spec.dataset.id != index.dataset.id:
        raise BmbenchError(f"split {split.name} is a split of data set {split.spec.dataset.id!r}, but the data at "
                           f"{index.root} is {index.dataset.id!r}; choose --split for that data set",
                           exit_code=INVALID)
    ids = [str(i) for i in split.image_ids]
    paths = index.paths_for(ids, split.name)
    dev = resolve_device(device)
    source = ImageSource(split, paths, index.dataset.id, workers)
    index_sha = hashlib.sha256(index_text(ids).encode()).hexdigest()
    common = {"split": split, "dataset": index.dataset, "ids": ids, "device": dev, "batch": batch,
              "progress": progress}
    if folds is not None:
        check_folds(folds, split)
    if not per_fold:
        encoder = load_encoder(loaded)
        folder = out_dir or default_folder(loaded, index.dataset.id, index_sha, [encoder.weights_sha256])
        return _embed_store(encoder, Path(folder), source, label=str(sub.encoder), **common)
    available = run_folds(str(sub.encoder))
    chosen = tuple(folds) if folds is not None else tuple(available)
    missing = [f for f in chosen if f not in available]
    if missing:
        raise BmbenchError(f"encoder {sub.encoder} has no best.pt for fold(s) {missing}; finished folds: {available}",
                           exit_code=INVALID)
    encoders = [load_encoder(loaded, fold=f) for f in chosen]
    folder = Path(out_dir) if out_dir is not None else default_folder(
        loaded, index.dataset.id, index_sha, [e.weights_sha256 for e in encoders])
    for enc in encoders:
        _embed_store(enc, folder / f"fold{enc.fold}", source, label=f"{sub.encoder} fold {enc.fold}", **common)
        enc.module = None  # free the fold's network before the next one
    return folder
