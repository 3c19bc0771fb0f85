"""Where the learning-rate range test of a fold is cached, and the one compute-or-load rule for it.

``bmbench lr-find`` and ``bmbench run`` (when the recipe says ``lr = "find"``) share the cache
``<runs>/<submission>/<dataset>/fold<k>/lr_find.json``: whichever runs first computes the test, the other
reuses it, so a plot a user looked at is exactly the learning rate the run trains with. Each file records
what it was computed for (submission and recipe digests, split, fold, seed); a file computed for something
else is refused rather than silently reused (the file's model and reader are :mod:`bmbench.records.lrfind`).
This module imports neither torch nor matplotlib at load time (``bmbench run``'s output-folder check uses it).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from bmbench import atomic
from bmbench.records.lrfind import LR_FIND_FILE, LrFindIdentity, LrFindRecord, read_lr_find, write_lr_find

LR_FIND_PLOT = "lr_find.png"
LR_FIND_OUTPUTS = frozenset({LR_FIND_FILE, LR_FIND_PLOT})
"""Files a fold folder may hold before training starts (``bmbench run`` does not count them as results)."""
__all__ = ["LR_FIND_FILE", "LR_FIND_OUTPUTS", "LR_FIND_PLOT", "load_or_find_lr", "lr_find_identity", "lr_find_path",
           "lr_find_record", "plot_lr_find", "read_lr_find"]


class RangeTestResult(Protocol):
    """What :func:`bmbench.runs.lrfind.find_lr` returns (kept abstract so this module needs no torch)."""

    def to_json(self) -> dict[str, Any]: ...


def lr_find_path(run_dir: Path, fold: int) -> Path:
    """The cache file of ``fold`` in a run folder (``<out>/<submission>/<dataset>``)."""
    return Path(run_dir) / f"fold{fold}" / LR_FIND_FILE


def lr_find_identity(loaded: Any, split: Any, fold: int, seed: int) -> LrFindIdentity:
    """What a cached range test must have been computed for to be reused (a ``LoadedSubmission``, a ``Split``)."""
    return LrFindIdentity(submission=loaded.submission.name, submission_digest=loaded.digest,
                          recipe_digest=loaded.submission.recipe.digest(), split=split.name,
                          split_sha256=split.sha256, fold=int(fold), seed=int(seed))


def lr_find_record(result: RangeTestResult, identity: LrFindIdentity | None, device: str) -> LrFindRecord:
    """The record of a fresh range test: the curve, the suggestion, the rule, and what it is for."""
    return LrFindRecord.model_validate({**result.to_json(), "computed_for": identity, "device": device,
                                        "created_at": datetime.now(UTC).isoformat(timespec="seconds")})


def load_or_find_lr(path: Path, identity: LrFindIdentity | None, compute: Callable[[], RangeTestResult], *,
                    device: str, force: bool = False) -> tuple[LrFindRecord, bool]:
    """The cached range test at ``path`` or, if there is none (or ``force``), ``compute()`` written atomically.

    Returns ``(record, computed)``. ``compute`` runs only when needed: the range test costs minutes on a
    large backbone.
    """
    if Path(path).is_file() and not force:
        return read_lr_find(path, identity), False
    record = lr_find_record(compute(), identity, device)
    write_lr_find(path, record)
    return record, True


def plot_lr_find(record: LrFindRecord, path: Path, title: str = "") -> None:
    """Loss against learning rate (log x axis) with the suggested LR marked and its rule in the legend (PNG)."""
    from matplotlib.figure import Figure  # lazily: only the lr-find command draws

    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    ax = fig.subplots()
    lrs, losses = record.lrs, record.losses
    finite = [(lr, loss) for lr, loss in zip(lrs, losses, strict=False) if math.isfinite(loss)]
    if finite:
        ax.plot([p[0] for p in finite], [p[1] for p in finite], color="tab:blue", label="training loss (smoothed)")
    lr = record.suggested_lr
    ax.axvline(lr, color="tab:red", linestyle="--", label=f"suggested LR {lr:.3g} (rule: {record.rule})")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title(title or "learning-rate range test", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic.write_bytes(path, buffer.getvalue())
