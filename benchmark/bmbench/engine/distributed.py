"""One fold on several GPUs: torchrun + DistributedDataParallel with a distributed class-balanced sampler.

Launched as ``torchrun --nproc-per-node G -m bmbench.cli.main run SUBMISSION --folds K ...``, every process
draws the SAME global epoch (``len(train)`` class-balanced draws from the epoch's seed) and takes every
G-th index of it, so the G processes together see exactly the draws a single process would, each with a
per-process batch of ``batch_size / G`` (the global batch stays the paper's 32). Validation is sharded and
reduced; rank 0 alone predicts the test part and writes files. On CUDA, BatchNorm layers become
SyncBatchNorm so that batch statistics are those of the global batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class DistContext:
    """This process's place in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        torch_dist.barrier()

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """All-reduce (sum) a tensor across processes, in place, and return it."""
        torch_dist.all_reduce(value, op=torch_dist.ReduceOp.SUM)
        return value


def from_environment(device_type: str) -> DistContext | None:
    """Join the process group if started by torchrun with more than one process; else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world, local_rank=local_rank)
