"""The learning-rate range test (Smith 2017) with torch-lr-finder, as the paper used it (Sec. 2.2).

It runs on the fold's training data with the submission's model, augmentation and sampler, starting from the
model's initial weights, and restores those weights afterwards. The optimizer it uses is a throwaway: the
training loop builds a fresh one, so no momentum buffers leak from the test into training.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bmbench.errors import BmbenchError, RunFailure
from bmbench.paths import runs_dir
from bmbench.datapaths.plain import DataPath
from bmbench.engine.fastpath import micro_batches
from bmbench.engine.loop import LoopSettings, make_optimizer
from bmbench.recipe import Recipe
from bmbench.records.lrfind import LrFindRecord

LR_FIND_STREAM = 1
"""Random stream of the range test's batches, apart from the training epochs' stream 0."""
SKIP_START = 10
SKIP_END = 5


@dataclass(frozen=True)
class LrFindResult:
    """The range test's curve and the suggested learning rate, with the rule that picked it."""

    lrs: list[float]
    losses: list[float]
    suggested_lr: float
    rule: str
    stopped_early: bool = False
    """The loss diverged (5x its best) before ``num_iter`` batches: the curve ends below ``end_lr``."""

    def to_json(self) -> dict[str, Any]:
        return {"suggested_lr": self.suggested_lr, "rule": self.rule, "stopped_early": self.stopped_early,
                "lrs": self.lrs, "losses": self.losses}


def suggest_lr(lrs: list[float], losses: list[float], rule: str) -> float:
    """``steepest``: the LR where the (smoothed) loss falls fastest, skipping the noisy ends, as
    torch-lr-finder suggests; ``min_div_10``: a tenth of the LR at the minimum loss."""
    lr = np.asarray(lrs, dtype=np.float64)
    loss = np.asarray(losses, dtype=np.float64)
    finite = np.isfinite(loss)
    lr, loss = lr[finite], loss[finite]
    if len(loss) < 3:
        raise RunFailure("the learning-rate range test produced too few finite losses; lower lr_find.end_lr")
    if rule == "min_div_10":
        return float(lr[int(np.argmin(loss))] / 10)
    lo, hi = (SKIP_START, len(loss) - SKIP_END) if len(loss) > SKIP_START + SKIP_END + 2 else (0, len(loss))
    gradient = np.gradient(loss[lo:hi])
    return float(lr[lo:hi][int(np.argmin(gradient))])


def find_lr(model: nn.Module, datapath: DataPath, train: np.ndarray, recipe: Recipe,
            settings: LoopSettings, progress: Callable[[int], None] | None = None) -> LrFindResult:
    """Run the range test; the model's weights (and buffers) are the same before and after.

    torch-lr-finder's rough edges, handled here: its optimizer is a throwaway (the loop builds a fresh one);
    its own ``reset()`` restores a state it cached, so the initial weights are restored from our copy as
    well; with ``amp_backend="torch"`` it insists on a GradScaler, which bf16 does not need (a disabled one
    is passed); and it prints and draws a tqdm bar, which are captured (``progress(1)`` per batch instead).
    """
    import unittest.mock

    from torch_lr_finder import LRFinder, TrainDataLoaderIter
    from torch_lr_finder import lr_finder as lr_finder_module

    accumulation = int(recipe.grad_accumulation)

    class EpochIter(TrainDataLoaderIter):  # type: ignore[misc]
        """Endless class-balanced batches; each pass over the data draws a fresh, seeded epoch.

        With ``grad_accumulation`` = k it yields each batch's micro-batches (the training loop's split), and
        the finder accumulates k of them per step: the range test sees the memory footprint and the
        effective batch of training."""

        def __init__(self) -> None:
            self.passes = 0
            self.pending: list[Any] = []
            super().__init__(datapath.train_batches(train, 0, stream=LR_FIND_STREAM))

        def _next_batch(self) -> Any:
            try:
                return next(self._iterator)
            except StopIteration:
                self.passes += 1
                self._iterator = iter(datapath.train_batches(train, self.passes, stream=LR_FIND_STREAM))
                return next(self._iterator)

        def __next__(self) -> Any:
            if not self.pending:
                images, labels = self._next_batch()
                sizes = micro_batches(int(labels.shape[0]), accumulation)
                self.pending = list(zip(images.split(sizes), labels.split(sizes), strict=True))
                if progress is not None:
                    progress(1)
            return self.inputs_labels_from_batch(self.pending.pop(0))

    cfg = recipe.lr_find
    initial = copy.deepcopy(model.state_dict())
    model.to(settings.device)
    optimizer = make_optimizer(model, recipe, cfg.start_lr, settings.device)
    amp: dict[str, Any] = {}
    if settings.bf16:  # bf16 autocast as in training; bf16 needs no loss scaling, hence a disabled scaler
        amp = {"amp_backend": "torch", "amp_config": {"device_type": settings.device.type, "dtype": torch.bfloat16},
               "grad_scaler": torch.amp.GradScaler(settings.device.type, enabled=False)}
    finder = LRFinder(model, optimizer, nn.CrossEntropyLoss(), device=settings.device, **amp)
    try:
        # The library prints to stdout and draws a tqdm bar on stderr; silence both without touching
        # sys.stderr (the CLI's own progress bar draws there while the test runs).
        with contextlib.redirect_stdout(io.StringIO()), \
                unittest.mock.patch.object(lr_finder_module, "tqdm", lambda iterable, *_a, **_k: iterable):
            finder.range_test(EpochIter(), end_lr=cfg.end_lr, num_iter=cfg.num_iter, step_mode="exp",
                              diverge_th=5, accumulation_steps=accumulation)
        lrs = [float(x) for x in finder.history["lr"]]
        losses = [float(x) for x in finder.history["loss"]]
    finally:
        finder.reset()
        model.load_state_dict(initial)
    return LrFindResult(lrs, losses, suggest_lr(lrs, losses, cfg.rule), cfg.rule,
                        stopped_early=len(lrs) < cfg.num_iter)


@dataclass(frozen=True)
class LrFindOptions:
    """What ``bmbench lr-find`` lets a user choose besides the submission (defaults as ``bmbench run``)."""

    fold: int = 0
    data: str | None = None
    out: Path = field(default_factory=runs_dir)  # <root>/runs (bmbench.paths)
    device: str = "auto"
    seed: int = 0
    force: bool = False


@dataclass(frozen=True)
class LrFindOutcome:
    """Where the range test of one fold lies, what it says, and whether it was computed now or reused."""

    path: Path
    plot: Path
    record: LrFindRecord = field(repr=False)
    computed: bool
    synthetic: bool
    recipe_uses_it: bool
    """The recipe says ``lr = "find"``: ``bmbench run`` will train this fold with the suggested LR."""


def run_lr_find(loaded: Any, options: LrFindOptions, progress: Callable[[int], None] | None = None, *,
                index: Any = None) -> LrFindOutcome:
    """The range test of one fold of a submission, computed (or reused) where ``bmbench run`` caches it.

    ``index`` is ``options.data`` already scanned (a caller testing several folds scans once).

    The model is the fold's initial model exactly as ``bmbench run`` builds it (same seed, same
    initialisation), on the fold's training images with the submission's augmentation and sampler.
    """
    from bmbench.classes import NUM_CLASSES
    from bmbench.data.layout import scan_data
    from bmbench.data.source import resolve_data
    from bmbench.splits.store import check_folds, load_split, split_for_dataset
    from bmbench.datapaths.gpu import make_datapath  # the data path `bmbench run` uses
    from bmbench.engine.loop import LAST, settings_for
    from bmbench.runs.lrfind_cache import (LR_FIND_PLOT, load_or_find_lr, lr_find_identity, lr_find_path,
                                               plot_lr_find)
    from bmbench.engine.device import resolve_device
    from bmbench.runs.run import FOLD_DONE, fold_model, fold_threads

    sub = loaded.submission
    recipe = sub.recipe
    if sub.kind == "baseline":
        raise BmbenchError(f"{sub.name} is a baseline ({sub.backbone}); it has no learning rate to find")
    index = index if index is not None else scan_data(resolve_data(options.data))
    split = load_split(split_for_dataset(index.dataset.id).name)
    check_folds((options.fold,), split)
    path = lr_find_path(Path(options.out) / sub.name / index.dataset.id, options.fold)
    if options.force and ((path.parent / FOLD_DONE).is_file() or (path.parent / LAST).is_file()):
        raise BmbenchError(
            f"fold {options.fold} in {path.parent.parent} has already trained with its cached learning rate; "
            "recomputing it there would no longer describe that training. Use --out to write elsewhere."
        )
    identity = lr_find_identity(loaded, split, options.fold, options.seed)
    device = resolve_device(options.device)

    def compute() -> LrFindResult:
        paths = index.paths_for(split.image_ids, split.name)
        with fold_threads(recipe, device):  # the thread count of the same range test inside `bmbench run`
            model, _ = fold_model(loaded, options.seed, options.fold)
            settings = settings_for(recipe, device, epochs=recipe.epochs, lr=recipe.lr_find.start_lr,
                                    seed=options.seed, max_steps=None, backbone=sub.backbone or "")
            datapath = make_datapath(recipe, paths, split, NUM_CLASSES, device=device, seed=options.seed,
                                     fold=options.fold, channels_last=settings.channels_last)
            return find_lr(model, datapath, split.members(options.fold, "train"), recipe, settings, progress)

    record, computed = load_or_find_lr(path, identity, compute, device=str(device), force=options.force)
    plot = path.with_name(LR_FIND_PLOT)
    tag = " [SYNTHETIC DATA]" if index.dataset.synthetic else ""
    plot_lr_find(record, plot, title=f"{sub.name}, {split.name} fold {options.fold}{tag}")
    return LrFindOutcome(path=path, plot=plot, record=record, computed=computed,
                         synthetic=index.dataset.synthetic, recipe_uses_it=recipe.lr == "find")
