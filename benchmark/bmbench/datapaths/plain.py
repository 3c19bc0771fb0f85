"""The data path: decode, augment and batch the images of a fold.

A data path hands the loop iterables of ``(images, labels)`` batches. :class:`PlainDataPath` is the
reference implementation (a torchvision ``DataLoader`` with Pillow decoding, or the image cache, and the transforms of
:mod:`bmbench.datapaths.transforms`); a GPU-resident path can replace it behind the same two methods.
Every epoch's randomness (sampling order, augmentation) derives from ``(seed, fold, epoch)``, so a resumed
run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bmbench.data.decode import decode_image
from bmbench.datapaths.sampling import ProcessPlace, ShardSampler, class_balanced_weights, epoch_draws, epoch_seed, per_process_batch
from bmbench.parallel import available_cpus
from bmbench.datapaths.transforms import eval_transform, train_transform

if TYPE_CHECKING:
    from bmbench.recipe import Recipe

Batch = tuple[torch.Tensor, torch.Tensor]


Transform = Callable[[np.ndarray], torch.Tensor]
"""A pipeline of :mod:`bmbench.datapaths.transforms`: ``(H, W, 3)`` uint8 pixels in, a normalised tensor out."""


class CachedPixels:
    """Rows of an image cache, memory-mapped once per process.

    Pickling (DataLoader workers under the ``spawn`` start method) sends the file name, never the pixels.
    """

    def __init__(self, images_file: Path) -> None:
        self.images_file = Path(images_file)
        self._images: np.ndarray | None = None

    def __getstate__(self) -> dict[str, object]:
        return {"images_file": self.images_file, "_images": None}

    def row(self, index: int) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.images_file, mmap_mode="r")
        return np.array(self._images[index])  # a private, writable copy


class ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """Images by path, transformed, with integer labels.

    Pixels come from the image cache when ``cache_rows`` (the cache row of each item) is given, else each file is
    decoded with Pillow (OpenCV fallback). The cache holds exactly what :func:`decode_image` returns, so both
    sources give identical pixels; the cache only saves the decoding (a CPU core-millisecond per 250 x 250 JPEG).
    """

    def __init__(self, paths: Sequence[Path], labels: np.ndarray, transform: Transform,
                 *, cache: CachedPixels | None = None, cache_rows: np.ndarray | None = None) -> None:
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        if (cache is None) != (cache_rows is None):
            raise ValueError("ImageDataset: give both cache and cache_rows, or neither")
        self.cache, self.cache_rows = cache, cache_rows

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.cache is not None and self.cache_rows is not None:
            pixels = self.cache.row(int(self.cache_rows[index]))
        else:
            pixels, _ = decode_image(self.paths[index])
        return self.transform(pixels), int(self.labels[index])


def resolve_workers(recipe: Recipe) -> int:
    """DataLoader workers: the recipe's number, or all usable CPUs (at most 8) for ``auto``."""
    if recipe.num_workers != "auto":
        return int(recipe.num_workers)
    return min(8, available_cpus())


class DataPath(Protocol):
    """What the training loop needs from a data path."""

    def train_batches(self, positions: np.ndarray, epoch: int, stream: int = 0) -> Iterable[Batch]: ...
    def eval_batches(self, positions: np.ndarray) -> Iterable[Batch]: ...

    dist: ProcessPlace | None
    def train_steps(self, positions: np.ndarray) -> int: ...


class PlainDataPath:
    """torchvision DataLoader + the transforms of :mod:`.transforms`; the reference semantics for every other path."""

    def __init__(self, recipe: Recipe, paths: Sequence[Path], labels: np.ndarray, num_classes: int,
                 *, seed: int, fold: int, pin_memory: bool = False, dist: ProcessPlace | None = None,
                 cache: CachedPixels | None = None) -> None:
        self.recipe = recipe
        self.cache = cache
        """Split position ``p`` is cache row ``p`` (the cache of the run's split): pixels without decoding."""
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = num_classes
        self.seed = seed
        self.fold = fold
        self.workers = resolve_workers(recipe)
        self.pin_memory = pin_memory
        self.dist = dist
        self.batch_size = per_process_batch(recipe.batch_size, dist.world_size if dist else 1)
        self._train_tf = train_transform(recipe)
        self._eval_tf = eval_transform(recipe)

    def _dataset(self, positions: np.ndarray, transform: Transform) -> ImageDataset:
        rows = np.asarray(positions, dtype=np.int64) if self.cache is not None else None
        return ImageDataset([self.paths[i] for i in positions], self.labels[positions], transform,
                            cache=self.cache, cache_rows=rows)

    def train_steps(self, positions: np.ndarray) -> int:
        """Batches per epoch and process: the epoch length is the training set size (drop_last=False)."""
        world = self.dist.world_size if self.dist else 1
        per_process = -(-len(positions) // world)
        return -(-per_process // self.batch_size)

    def train_batches(self, positions: np.ndarray, epoch: int, stream: int = 0) -> DataLoader:
        """One epoch: ``len(positions)`` draws, class-balanced (with replacement) or a uniform shuffle.

        The global order comes from the epoch's seed alone; under torchrun each process takes its shard.
        """
        seed = epoch_seed(self.seed, self.fold, epoch, stream)
        labels = self.labels[positions]
        weights = (torch.as_tensor(class_balanced_weights(labels, self.num_classes), dtype=torch.double)
                   if self.recipe.sampler == "class_balanced" else None)
        order = epoch_draws(weights, len(positions), torch.Generator().manual_seed(seed))
        rank, world = (self.dist.rank, self.dist.world_size) if self.dist else (0, 1)
        # Augmentation randomness: the main process's RNG, or each worker's seed drawn from this generator.
        torch.manual_seed(seed + rank)
        return DataLoader(
            self._dataset(positions, self._train_tf), batch_size=self.batch_size, num_workers=self.workers,
            sampler=ShardSampler(order, rank, world), pin_memory=self.pin_memory,
            generator=torch.Generator().manual_seed(seed + rank),
        )

    def eval_batches(self, positions: np.ndarray) -> DataLoader:
        """Sequential batches in ``positions`` order (deterministic transforms)."""
        return DataLoader(
            self._dataset(positions, self._eval_tf), batch_size=max(self.recipe.batch_size, 64),
            num_workers=self.workers, pin_memory=self.pin_memory, shuffle=False,
        )
