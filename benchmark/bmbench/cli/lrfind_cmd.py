"""``bmbench lr-find``: the learning-rate range test of one fold, plotted, cached where ``bmbench run`` reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from bmbench.cli.common import console, deprecated_fold_option, err_console, folds_option, parse_folds, user_errors


@user_errors
def lr_find(
    submission: str = typer.Argument(..., help="Submission folder (submissions/resnet_imagenet) or name."),
    folds: str | None = folds_option("Folds whose training images the test runs on, one test each (default: 0)"),
    fold: int | None = deprecated_fold_option(),
    data: str | None = typer.Option(None, "--data", help="BM data folder or 'synthetic' (default $BMBENCH_DATA)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    out: Path | None = typer.Option(None, "--out", help="Runs folder, as for `bmbench run` (the cache is shared; "
                                    "default: <root>/runs)."),
    seed: int = typer.Option(0, "--seed", help="Seed, as for `bmbench run` (same initial weights and batches)."),
    force: bool = typer.Option(False, "--force", help="Recompute even if the fold's range test is cached."),
) -> None:
    """Run the learning-rate range test (Smith 2017) on each fold; save lr_find.json and the loss-vs-LR plot.

    The result goes to OUT/<submission>/<dataset>/fold<K>/lr_find.json: `bmbench run` trains that fold
    with the suggested LR when the recipe says lr = "find" (the paper's default).
    """
    from bmbench.extras import require

    require("torch", "train", "bmbench lr-find")
    from bmbench.data.layout import scan_data
    from bmbench.data.source import resolve_data
    from bmbench.paths import runs_dir
    from bmbench.runs.lrfind import LrFindOptions
    from bmbench.splits.store import check_folds, split_for_dataset
    from bmbench.submissions.registry import resolve_submission

    requested = parse_folds(folds, fold) or (0,)  # usage errors first, before the data is looked at
    loaded = resolve_submission(submission)
    index = scan_data(resolve_data(data))  # once: every fold is checked against the split before fold 0 runs
    chosen = check_folds(requested, split_for_dataset(index.dataset.id))
    for k in chosen:
        options = LrFindOptions(fold=k, data=data, out=out or runs_dir(), device=device, seed=seed, force=force)
        _one_fold(loaded, options, index)


def _one_fold(loaded: Any, options: Any, index: Any) -> None:  # LoadedSubmission, LrFindOptions, DataIndex
    """One fold's range test with a progress bar, and what it found."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from bmbench.runs.lrfind import run_lr_find

    fold = options.fold
    total = loaded.submission.recipe.lr_find.num_iter
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task(f"range test, fold {fold}", total=total)
        outcome = run_lr_find(loaded, options, progress=lambda k: bar.advance(task, k), index=index)
    record = outcome.record
    tag = " [bold red]SYNTHETIC DATA[/]" if outcome.synthetic else ""
    how = "computed" if outcome.computed else "cached (reused; --force recomputes)"
    console.print(f"{loaded.submission.name} fold {fold}{tag}: suggested learning rate "
                  f"[bold]{record.suggested_lr:.3g}[/] (rule: {record.rule}; {how})")
    lrs = record.lrs
    if lrs:
        console.print(f"range tested: {min(lrs):.3g} .. {max(lrs):.3g} over {len(lrs)} batches"
                      + (" (stopped early: the loss diverged)" if record.stopped_early else ""))
    console.print(f"wrote {outcome.path} and {outcome.plot}")
    if outcome.recipe_uses_it:
        console.print("`bmbench run` uses this learning rate for this fold (the recipe says lr = \"find\").")
    else:
        console.print(f"note: the recipe fixes lr = {loaded.submission.recipe.lr}; `bmbench run` will not use "
                      "this result unless the recipe says lr = \"find\".")
