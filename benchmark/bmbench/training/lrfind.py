"""The learning-rate range test (Smith 2017) with torch-lr-finder, as the paper used it (Sec. 2.2).

It runs on the fold's training data with the submission's model, augmentation and sampler, starting from the
model's initial weights, and restores those weights afterwards. The optimizer it uses is a throwaway: the
training loop builds a fresh one, so no momentum buffers leak from the test into training.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bmbench.errors import BmbenchError
from bmbench.training.datapath import DataPath
from bmbench.training.loop import LoopSettings, make_optimizer
from bmbench.training.recipe import Recipe

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

    def to_json(self) -> dict[str, Any]:
        return {"suggested_lr": self.suggested_lr, "rule": self.rule, "lrs": self.lrs, "losses": self.losses}


def suggest_lr(lrs: list[float], losses: list[float], rule: str) -> float:
    """``steepest``: the LR where the (smoothed) loss falls fastest, skipping the noisy ends, as
    torch-lr-finder suggests; ``min_div_10``: a tenth of the LR at the minimum loss."""
    lr = np.asarray(lrs, dtype=np.float64)
    loss = np.asarray(losses, dtype=np.float64)
    finite = np.isfinite(loss)
    lr, loss = lr[finite], loss[finite]
    if len(loss) < 3:
        raise BmbenchError("the learning-rate range test produced too few finite losses; lower lr_find.end_lr")
    if rule == "min_div_10":
        return float(lr[int(np.argmin(loss))] / 10)
    lo, hi = (SKIP_START, len(loss) - SKIP_END) if len(loss) > SKIP_START + SKIP_END + 2 else (0, len(loss))
    gradient = np.gradient(loss[lo:hi])
    return float(lr[lo:hi][int(np.argmin(gradient))])


def find_lr(model: nn.Module, datapath: DataPath, train: np.ndarray, recipe: Recipe,
            settings: LoopSettings) -> LrFindResult:
    """Run the range test; the model's weights are the same before and after."""
    from torch_lr_finder import LRFinder, TrainDataLoaderIter

    class EpochIter(TrainDataLoaderIter):  # type: ignore[misc]
        """Endless class-balanced batches; each pass over the data draws a fresh, seeded epoch."""

        def __init__(self) -> None:
            self.passes = 0
            super().__init__(datapath.train_batches(train, 0, stream=LR_FIND_STREAM))

        def __next__(self) -> Any:
            try:
                batch = next(self._iterator)
            except StopIteration:
                self.passes += 1
                self._iterator = iter(datapath.train_batches(train, self.passes, stream=LR_FIND_STREAM))
                batch = next(self._iterator)
            return self.inputs_labels_from_batch(batch)

    cfg = recipe.lr_find
    initial = copy.deepcopy(model.state_dict())
    model.to(settings.device)
    optimizer = make_optimizer(model, recipe, cfg.start_lr, settings.device)
    amp = {"amp_backend": "torch", "amp_config": {"device_type": "cuda", "dtype": torch.bfloat16}} if settings.bf16 else {}
    finder = LRFinder(model, optimizer, nn.CrossEntropyLoss(), device=settings.device, **amp)
    try:
        finder.range_test(EpochIter(), end_lr=cfg.end_lr, num_iter=cfg.num_iter, step_mode="exp", diverge_th=5)
        lrs = [float(x) for x in finder.history["lr"]]
        losses = [float(x) for x in finder.history["loss"]]
    finally:
        finder.reset()
        model.load_state_dict(initial)
    return LrFindResult(lrs, losses, suggest_lr(lrs, losses, cfg.rule), cfg.rule)
