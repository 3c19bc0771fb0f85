"""``bmbench merge``: combine folds of one submission run on several machines (SLURM arrays, ``--folds``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from bmbench.errors import BmbenchError
from bmbench.records.fold import completed_folds
from bmbench.records.run import RunRecord, read_run
from bmbench.runs.run import RunResult, finalize_run
from bmbench.splits.store import load_split

SAME = ("submission.digest", "recipe_digest", "split.sha256", "data.dataset", "seed", "smoke", "protocol")


def _get(run: RunRecord, dotted: str) -> Any:
    value: Any = run.model_dump(mode="json")
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def merge_runs(run_dirs: list[Path], out: Path) -> RunResult:
    """Copy the completed folds of ``run_dirs`` into ``out`` and score them as one run.

    The runs must share submission digest, recipe digest, split hash, data set, seed, smoke settings and
    protocol; a fold present in two runs is refused rather than silently picked.
    """
    runs = [(run_dir, read_run(run_dir)) for run_dir in run_dirs]
    first_dir, first = runs[0]
    for run_dir, run in runs[1:]:
        for key in SAME:
            if _get(run, key) != _get(first, key):
                raise BmbenchError(f"cannot merge {run_dir} with {first_dir}: {key} differs "
                                   f"({_get(run, key)!r} vs {_get(first, key)!r})")
    sources: dict[int, Path] = {}
    for run_dir, _ in runs:
        for fold in completed_folds(run_dir):
            if fold in sources:
                raise BmbenchError(f"fold {fold} is in both {sources[fold]} and {run_dir}; pass each fold once")
            sources[fold] = run_dir
    if out.exists() and any(out.iterdir()):
        raise BmbenchError(f"{out} is not empty; merge into a new folder")
    for fold, run_dir in sorted(sources.items()):
        shutil.copytree(run_dir / f"fold{fold}", out / f"fold{fold}")
    split = load_split(first.split.name)
    base = first.model_copy(update={"merged_from": [str(d) for d, _ in runs],
                                    "devices": [run.device for _, run in runs]})
    return finalize_run(out, split, base)
