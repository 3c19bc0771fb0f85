"""Sampling: per-epoch seeds, class-balanced draws and their split across processes.

Every data path draws an epoch's global sample order from ``(seed, fold, epoch)`` alone, so a resumed run,
a GPU-resident run and a torchrun job all see the same images in the same order. Under torchrun each
process takes every ``world_size``-th draw (:class:`ShardSampler`), with a per-process batch that keeps the
paper's global batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Sampler

from bmbench.errors import BmbenchError


class ProcessPlace(Protocol):
    """Where this process sits in a multi-process job (``bmbench.engine.distributed.DistContext``)."""

    rank: int
    world_size: int


def epoch_seed(seed: int, fold: int, epoch: int, stream: int = 0) -> int:
    """A 63-bit seed for one epoch of one fold (``stream`` separates e.g. the LR range test from training)."""
    state = np.random.SeedSequence([seed, fold, epoch, stream]).generate_state(2, np.uint32)
    return int(state.view(np.uint64)[0] >> 1)


def class_balanced_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-sample weights 1 / (count of its class): every class is drawn equally often in expectation."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return 1.0 / counts[labels]


def per_process_batch(batch_size: int, world_size: int) -> int:
    """The per-process batch that keeps the global batch; refuses sizes that do not divide."""
    if batch_size % world_size:
        raise BmbenchError(
            f"recipe.batch_size {batch_size} is not divisible by the {world_size} processes; the global batch "
            "must split evenly (use a process count that divides it)"
        )
    return batch_size // world_size


def epoch_draws(weights: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
    """The epoch's global sample order: ``n`` weighted draws with replacement, or a permutation of ``n``."""
    if weights is None:
        return torch.randperm(n, generator=generator)
    return torch.multinomial(weights, n, replacement=True, generator=generator)


class ShardSampler(Sampler[int]):
    """Every ``world_size``-th index of a global order, starting at ``rank`` (the order padded to divide)."""

    def __init__(self, order: torch.Tensor, rank: int = 0, world_size: int = 1) -> None:
        pad = (-len(order)) % world_size
        full = torch.cat([order, order[:pad]]) if pad else order
        self.indices = full[rank::world_size].tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
