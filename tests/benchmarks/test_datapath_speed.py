"""CPU-visible parts of the GPU data path: the fused augmentation kernel, an epoch's parameters, cache reads.

``make test`` runs each once as a plain test (``--benchmark-disable``); ``make bench`` times them
(pytest-benchmark). Measured figures are in docs/performance.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bmbench.datapaths.gpu import _gather, affine_matrices, augment_batch, mip_levels, sample_draws
from bmbench.recipe import Augmentation

BATCH = 32
FOLD_TRAIN = 109_700
"""Draws per epoch of a real fold's training part."""


@pytest.fixture(scope="module")
def batch_u8() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (BATCH, 250, 250, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def memmap_cache(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """A 1,024-row uint8 array on disk, memory-mapped like the image cache (192 MB)."""
    path = Path(tmp_path_factory.mktemp("cache")) / "images.npy"
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(1024, 250, 250, 3))
    array[:] = np.random.default_rng(1).integers(0, 256, (1, 250, 250, 3), dtype=np.uint8)
    array.flush()
    del array
    return np.load(path, mmap_mode="r")


@pytest.mark.parametrize("size", [224, 64])
def test_fused_augmentation_kernel(benchmark, batch_u8: torch.Tensor, size: int) -> None:
    """One batch of 32: the GPU path after the gather (uint8 -> antialiased affine resampling -> normalised)."""
    draws = sample_draws(BATCH, Augmentation(), 250, 250, torch.Generator().manual_seed(0))
    theta, inner = affine_matrices(draws, 250, 250)
    level = mip_levels(draws, size)
    mean, std = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    out = benchmark(augment_batch, batch_u8, theta, inner, size, mean, std, level=level)
    assert out.shape == (BATCH, 3, size, size) and torch.isfinite(out).all()


def test_epoch_parameters(benchmark) -> None:
    """Drawing and composing the augmentation of a whole real-size epoch (done once per epoch on the CPU)."""

    def epoch() -> torch.Tensor:
        draws = sample_draws(FOLD_TRAIN, Augmentation(), 250, 250, torch.Generator().manual_seed(0))
        return affine_matrices(draws, 250, 250)[0]

    theta = benchmark.pedantic(epoch, rounds=3, iterations=1)
    assert theta.shape == (FOLD_TRAIN, 2, 3)


def test_cache_random_batch_read(benchmark, memmap_cache: np.ndarray) -> None:
    """32 random rows of the memory-mapped cache (the pinned-host storage's per-batch read)."""
    rng = np.random.default_rng(2)
    out = benchmark(lambda: _gather(memmap_cache, rng.integers(0, len(memmap_cache), BATCH)))
    assert out.shape == (BATCH, 250, 250, 3)


def test_cache_sequential_load(benchmark, memmap_cache: np.ndarray) -> None:
    """Loading rows in order (what putting a fold on the device reads), 512 rows at a time."""
    rows = np.arange(512)
    out = benchmark.pedantic(_gather, args=(memmap_cache, rows), rounds=3, iterations=1)
    assert out.shape == (512, 250, 250, 3)
