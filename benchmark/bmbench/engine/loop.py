"""The per-fold training loop of the paper (Sec. 2.2), plain and readable.

Per epoch: train on ``len(train)`` class-balanced draws, evaluate on the fold's validation part, step
ReduceLROnPlateau on the validation loss, keep the checkpoint with the highest validation accuracy. After the
last epoch, that checkpoint predicts the fold's test part. ``last.pt`` (written atomically every epoch)
lets ``--resume`` continue a killed run from its last completed epoch with identical results.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import nn

from bmbench import atomic
from bmbench.errors import BmbenchError, RunFailure
from bmbench.engine.checkpoint import load_checkpoint, save_checkpoint
from bmbench.engine.distributed import DistContext
from bmbench.engine.fastpath import (LoopSettings, compile_fallback, compile_model, make_optimizer, micro_batches,
                                     prepare_device, settings_for)

if TYPE_CHECKING:
    from bmbench.datapaths.plain import DataPath
    from bmbench.recipe import Recipe

Batch = tuple[torch.Tensor, torch.Tensor]
__all__ = ["LoopSettings", "evaluate", "make_optimizer", "settings_for", "train_fold"]

LAST = "last.pt"
BEST = "best.pt"
HISTORY = "history.jsonl"


class LoopProgress(Protocol):
    """Callbacks for progress display; the CLI renders them with Rich."""

    def epoch_start(self, fold: int, epoch: int, epochs: int, steps: int) -> None: ...
    def step(self, images: int) -> None: ...
    def epoch_end(self, record: EpochRecord) -> None: ...


class NoProgress:
    """A silent :class:`LoopProgress`."""

    def epoch_start(self, fold: int, epoch: int, epochs: int, steps: int) -> None:
        pass

    def step(self, images: int) -> None:
        pass

    def epoch_end(self, record: EpochRecord) -> None:
        pass


@dataclass(frozen=True)
class EpochRecord:
    """One line of ``history.jsonl``."""

    fold: int
    epoch: int
    lr: float
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    images_per_s: float
    seconds: float
    best: bool


@dataclass
class FoldOutcome:
    """The result of one fold: test probabilities and the facts the run records."""

    fold: int
    test_positions: np.ndarray
    test_probs: np.ndarray
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    compile_fallback: str | None = None
    """Why torch.compile fell back to eager in this fold (None: compiled as asked, or compile off)."""


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """ReduceLROnPlateau on the validation loss (factor 0.1, patience 3 in the paper)."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=recipe.plateau_factor, patience=recipe.plateau_patience
    )


def _autocast(settings: LoopSettings) -> contextlib.AbstractContextManager[Any]:
    if settings.bf16:
        return torch.autocast(device_type=settings.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _to_device(batch: Batch, settings: LoopSettings) -> Batch:
    images, labels = batch
    fmt = torch.channels_last if settings.channels_last else torch.contiguous_format
    return (images.to(settings.device, non_blocking=True, memory_format=fmt),
            labels.to(settings.device, non_blocking=True))


def _padded(batches: Iterable[Batch], size: int) -> Iterable[tuple[torch.Tensor, torch.Tensor, int]]:
    """Batches of exactly ``size`` rows (the last one padded by repeating its first image), with the count of
    real rows: the compiled evaluation model sees one static shape."""
    for images, labels in batches:
        n = int(labels.shape[0])
        if n < size:
            pad = size - n
            images = torch.cat([images, images[:1].expand(pad, *images.shape[1:])])
            labels = torch.cat([labels, labels[:1].expand(pad)])
        yield images, labels, n


def evaluate(model: Any, batches: Iterable[Batch], settings: LoopSettings,
             dist: DistContext | None = None, *, pad_to: int | None = None) -> tuple[float, float, np.ndarray]:
    """Mean cross-entropy, accuracy and the softmax probabilities (float64) over ``batches``.

    Everything accumulates on the device and is copied to the host once, at the end (no synchronisation per
    batch). ``pad_to`` (static shapes): the last batch is padded to that size and the padded rows dropped.
    Under torchrun each process passes its shard; the sums are reduced, so every process gets the global
    loss and accuracy (the probabilities stay local).
    """
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    loss = torch.zeros((), device=settings.device, dtype=torch.float64)
    correct = torch.zeros((), device=settings.device, dtype=torch.int64)
    probs: list[torch.Tensor] = []
    total = 0
    stream = _padded(batches, pad_to) if pad_to else ((i, y, int(y.shape[0])) for i, y in batches)
    with torch.inference_mode():
        for images_in, labels_in, n in stream:
            images, labels = _to_device((images_in, labels_in), settings)
            with _autocast(settings):
                logits = model(images)
            logits, labels = logits[:n].float(), labels[:n]
            loss += criterion(logits, labels).double()
            correct += (logits.argmax(dim=1) == labels).sum()
            probs.append(torch.softmax(logits.double(), dim=1))
            total += n
    count = torch.tensor(total, device=settings.device, dtype=torch.int64)
    if dist is not None:
        dist.sum(loss), dist.sum(correct), dist.sum(count)
    if int(count) == 0:
        raise BmbenchError("an evaluation set is empty")
    local = torch.cat(probs).cpu().numpy() if probs else np.zeros((0, 0))
    return float(loss) / int(count), int(correct) / int(count), local


def _train_epoch(model: nn.Module, batches: Iterable[Batch], optimizer: torch.optim.Optimizer, recipe: Recipe,
                 settings: LoopSettings, progress: LoopProgress,
                 dist: DistContext | None = None) -> tuple[float, float, int]:
    """One epoch of SGD; metrics accumulate on the device (no host sync per step).

    Gradient accumulation splits each batch into micro-batches (:func:`micro_batches`: never one of a single
    image); the loss of each is weighted by its share of the batch, so the step equals the full batch's.
    """
    model.train()
    full = 0
    criterion = nn.CrossEntropyLoss()
    loss_sum = torch.zeros((), device=settings.device, dtype=torch.float64)
    correct = torch.zeros((), device=settings.device, dtype=torch.int64)
    seen = 0
    for step, batch in enumerate(batches):
        if settings.max_steps is not None and step >= settings.max_steps:
            break
        if settings.static_shapes and step > 0 and int(batch[1].shape[0]) < full:
            break  # the ragged last batch: dropped, so the compiled step keeps one shape (fastpath docstring)
        full = max(full, int(batch[1].shape[0]))
        images, labels = _to_device(batch, settings)
        optimizer.zero_grad(set_to_none=True)
        sizes = micro_batches(int(labels.shape[0]), recipe.grad_accumulation)
        for chunk_images, chunk_labels in zip(images.split(sizes), labels.split(sizes), strict=True):
            with _autocast(settings):
                logits = model(chunk_images)
                loss = criterion(logits.float(), chunk_labels)
            (loss * chunk_labels.numel() / labels.numel()).backward()
            loss_sum += loss.detach().double() * chunk_labels.numel()
            correct += (logits.argmax(dim=1) == chunk_labels).sum()
        optimizer.step()
        seen += labels.numel()
        progress.step(labels.numel())
    count = torch.tensor(seen, device=settings.device, dtype=torch.int64)
    if dist is not None:
        dist.sum(loss_sum), dist.sum(correct), dist.sum(count)
    if int(count) == 0:
        raise BmbenchError("the training part of this fold is empty")
    return float(loss_sum) / int(count), int(correct) / int(count), int(count)


def eval_batch_size(recipe: Any) -> int:
    """The evaluation batch of both data paths (``max(batch_size, 64)``): the padded static shape."""
    return max(int(recipe.batch_size), 64)


def _write_history(fold_dir: Path, history: list[dict[str, Any]]) -> None:
    atomic.write_text(fold_dir / HISTORY, "".join(json.dumps(h) + "\n" for h in history))


def train_fold(model: nn.Module, datapath: DataPath, recipe: Recipe, settings: LoopSettings, *, fold: int,
               train: np.ndarray, val: np.ndarray, test: np.ndarray, fold_dir: Path, resume: bool = False,
               progress: LoopProgress | None = None) -> FoldOutcome:
    """Train one fold and predict its test part with the best-validation-accuracy checkpoint.

    Under torchrun (``datapath.dist`` set) the model is wrapped in DistributedDataParallel, validation is
    sharded, and only rank 0 writes checkpoints and predicts the test part (other ranks return no probs).
    """
    dist = datapath.dist
    main = dist is None or dist.is_main
    progress = progress if progress is not None and main else NoProgress()
    fold_dir.mkdir(parents=True, exist_ok=True)
    if dist is not None and settings.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    prepare_device(settings)
    model.to(settings.device)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe, settings.lr, settings.device)
    scheduler = make_scheduler(optimizer, recipe)
    history: list[dict[str, Any]] = []
    start_epoch, best_acc, best_epoch, elapsed = 0, -math.inf, -1, 0.0
    if resume and (fold_dir / LAST).is_file():
        state = load_checkpoint(fold_dir / LAST)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = list(state["history"])
        start_epoch, best_acc, best_epoch = state["epoch"] + 1, state["best_val_accuracy"], state["best_epoch"]
        elapsed = float(state["seconds"])
    train_model: nn.Module = model
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            model, device_ids=[settings.device.index] if settings.device.type == "cuda" else None)
    # CUDA graphs (recipe.cuda_graphs): torch.compile's cudagraph trees, single-process runs only.
    step_model = compile_model(train_model, settings, "training", distributed=dist is not None)
    eval_model = compile_model(model, settings, "evaluation", distributed=dist is not None)
    pad_to = eval_batch_size(recipe) if settings.static_shapes else None

    def shard(positions: np.ndarray) -> np.ndarray:
        return positions if dist is None else positions[dist.rank::dist.world_size]

    for epoch in range(start_epoch, settings.epochs):
        steps = datapath.train_steps(train)
        progress.epoch_start(fold, epoch, settings.epochs, min(steps, settings.max_steps or steps))
        started = time.perf_counter()
        try:
            train_loss, train_acc, seen = _train_epoch(
                step_model, datapath.train_batches(train, epoch), optimizer, recipe, settings, progress, dist)
            train_seconds = time.perf_counter() - started
            val_loss, val_acc, _ = evaluate(eval_model, datapath.eval_batches(shard(val)), settings, dist,
                                            pad_to=pad_to)
        except torch.cuda.OutOfMemoryError:
            raise RunFailure(
                f"out of GPU memory at batch size {recipe.batch_size}: set a smaller recipe.batch_size, or keep "
                "the paper's batch and set recipe.grad_accumulation = 2 (or more) in submission.toml"
            ) from None
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step(val_loss)
        improved = val_acc > best_acc
        if improved:
            best_acc, best_epoch = val_acc, epoch
            if main:
                save_checkpoint(fold_dir / BEST, {"model": model.state_dict(), "epoch": epoch, "val_accuracy": val_acc})
        seconds = time.perf_counter() - started
        elapsed += seconds
        record = EpochRecord(fold, epoch, lr, train_loss, train_acc, val_loss, val_acc,
                             seen / train_seconds if train_seconds > 0 else 0.0, seconds, improved)
        history.append(asdict(record))
        if main:
            save_checkpoint(fold_dir / LAST, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "epoch": epoch, "best_val_accuracy": best_acc, "best_epoch": best_epoch, "history": history,
                "seconds": elapsed,
            })
            _write_history(fold_dir, history)
        if dist is not None:
            dist.barrier()  # every rank resumes from the same last.pt
        progress.epoch_end(record)

    if best_epoch < 0:
        raise BmbenchError(f"{fold_dir}: no epoch was trained (epochs = {settings.epochs})")
    probs = np.zeros((0, 0))
    if main:
        model.load_state_dict(load_checkpoint(fold_dir / BEST)["model"])
        started = time.perf_counter()
        _, _, probs = evaluate(eval_model, datapath.eval_batches(test), settings, pad_to=pad_to)
        elapsed += time.perf_counter() - started
    if dist is not None:
        dist.barrier()
    return FoldOutcome(fold=fold, test_positions=test, test_probs=probs, best_epoch=best_epoch,
                       best_val_accuracy=best_acc, epochs_run=len(history), seconds=elapsed, history=history,
                       compile_fallback=compile_fallback(step_model, eval_model))
