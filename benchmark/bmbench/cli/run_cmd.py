"""``bmbench run`` and ``bmbench merge``: the main job, and combining folds run on several machines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from bmbench.cli.common import console, err_console, folds_option, parse_folds, user_errors


class RichLoopProgress:
    """Rich progress bars for the training loop: one bar per epoch with images/s and ETA.

    Lines are labelled ``fold <k>``, or with ``label`` (e.g. the pre-training data set) when given.
    """

    def __init__(self, label: str | None = None) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=err_console)
        self.task: Any = None
        self.images = 0
        self.label = label

    def _name(self, fold: int) -> str:
        return self.label if self.label is not None else f"fold {fold}"

    def __enter__(self) -> RichLoopProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def features(self, images: int) -> None:
        """Progress of the features baseline's extraction (count of images done)."""
        if self.task is None:
            self.task = self.progress.add_task("extracting features", total=None, rate="")
        self.progress.update(self.task, advance=images)

    def epoch_start(self, fold: int, epoch: int, epochs: int, steps: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(f"{self._name(fold)} epoch {epoch + 1}/{epochs}", total=steps, rate="")
        self.images = 0

    def step(self, images: int) -> None:
        task = self.progress.tasks[-1]
        elapsed = task.elapsed or 0.0
        self.images += images  # this epoch's images: a ragged last batch counts what it holds
        rate = f"{self.images / elapsed:,.0f} img/s" if elapsed > 0 else ""
        self.progress.update(self.task, advance=1, rate=rate)

    def epoch_end(self, record: Any) -> None:
        mark = " *" if record.best else ""
        self.progress.console.print(
            f"{self._name(record.fold)} ep {record.epoch + 1:>2} | loss {record.train_loss:.3f}/{record.val_loss:.3f} "
            f"| acc {record.train_accuracy:.3f}/{record.val_accuracy:.3f}{mark:2} | lr {record.lr:.2g} "
            f"| {record.images_per_s:,.0f} img/s | {record.seconds:.0f} s",
            highlight=False,
        )


def _summary(result: Any) -> None:
    from rich.table import Table

    run = result.run
    tag = " [bold red]SYNTHETIC DATA[/]" if run["data"]["synthetic"] else ""
    smoke = " [bold yellow]SMOKE RUN — not comparable[/]" if run["smoke"] else ""
    table = Table(title=f"{run['submission']['name']} on {run['split']['name']}{tag}{smoke}", title_justify="left")
    for column in ("fold", "best epoch", "val acc", "lr", "seconds", "device-hours"):
        table.add_column(column, justify="right")
    for fold in result.folds:
        table.add_row(str(fold["fold"]), str(fold.get("best_epoch", "-")), f"{fold['best_val_accuracy']:.3f}",
                      f"{fold['lr']:.3g}" if fold.get("lr") else "-", f"{fold['seconds']:.1f}",
                      f"{fold['device_hours']:.3f}")
    console.print(table)
    s = result.score["summary"]
    console.print(
        f"macro F1 {s['macro_f1']['mean']:.3f}"
        + (f" ± {s['macro_f1']['std']:.3f}" if s["macro_f1"]["std"] is not None else "")
        + f" | balanced accuracy {s['balanced_accuracy']['mean']:.3f} | paper-convention P/R/F1 "
        f"{s['precision']['mean']:.3f} / {s['recall']['mean']:.3f} / {s['f1']['mean']:.3f}"
    )
    console.print(f"results in {result.run_dir} (predictions.csv, score.json, run.json)")


def resume_command(submission: str, options: Any) -> str:
    """The ``bmbench run`` command line that continues ``options``' run (``--resume``), for the line a
    planned stop prints; defaults are left out."""
    import shlex

    args = ["bmbench", "run", submission]
    if options.data is not None:
        args += ["--data", options.data]
    if options.folds is not None:
        args += ["--folds", ",".join(map(str, options.folds))]
    return shlex.join([*args, "--out", str(options.out), *options.training_flags(), "--resume"])


def _run_frozen(loaded: Any, *, data: str | None, folds: str | None, out: Path, device: str, resume: bool,
                training: dict[str, Any]) -> None:
    """``bmbench run`` on a frozen-feature submission: exactly ``bmbench probe`` (training options refused)."""
    from bmbench.cli.probe_cmd import probe_and_report
    from bmbench.errors import BmbenchError
    from bmbench.features.probe import ProbeOptions

    given = [name for name, value in training.items() if value is not None]
    if given:
        raise BmbenchError(f"{', '.join(given)} train a network; {loaded.submission.name} is a frozen-feature "
                           f"submission (protocol {loaded.submission.protocol!r}), whose encoder is not trained. "
                           "Drop those options (`bmbench probe` takes --split, --features and --json as well)")
    probe_and_report(loaded, ProbeOptions(data=data, folds=parse_folds(folds), out=out, device=device,
                                          resume=resume))


@user_errors
def run(
    submission: str = typer.Argument(..., help="Submission folder (submissions/regnet_imagenet_cd) or name."),
    data: str | None = typer.Option(None, "--data", help="BM data folder or 'synthetic' (default $BMBENCH_DATA)."),
    folds: str | None = folds_option("Folds to run (default: all of the split)"),
    out: Path | None = typer.Option(None, "--out", help="Runs folder; results go to OUT/<submission>/<dataset>/ "
                                    "(default: <root>/runs)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Override epochs (smoke run: not comparable)."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1,
                                         help="Cap training steps per epoch (smoke run: not comparable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue a run: keep finished folds, resume the rest."),
    seed: int = typer.Option(0, "--seed", help="Seed of sampling, augmentation and initialisation."),
    concurrent_folds: int = typer.Option(1, "--concurrent-folds", min=1,
                                         help="Run up to N folds at once, one process each (one GPU)."),
    lr_find_steps: int | None = typer.Option(None, "--lr-find-steps", min=5, help="Cap the learning-rate range "
                                             "test (lr = \"find\") at N steps (smoke runs: 10 unless given)."),
) -> None:
    """Train and evaluate a submission on the published split, then score it (predictions.csv, score.json, run.json).

    A frozen-feature submission (protocol linear, knn, fewshot or probe) runs its probes instead, exactly
    as `bmbench probe SUBMISSION` does.
    """
    from bmbench.submissions.registry import resolve_submission
    from bmbench.paths import runs_dir
    from bmbench.runs.run import RunOptions, run_submission

    from bmbench.safe_io import check_output_path

    loaded = resolve_submission(submission)
    check_output_path(out or runs_dir(), what="--out", folder=True)  # refused before any work starts
    if loaded.submission.kind == "frozen":  # one way: the same function and table as `bmbench probe`
        _run_frozen(loaded, data=data, folds=folds, out=out or runs_dir(), device=device, resume=resume,
                    training={"--epochs": epochs, "--max-steps": max_steps, "--seed": seed or None,
                              "--concurrent-folds": concurrent_folds if concurrent_folds > 1 else None,
                              "--lr-find-steps": lr_find_steps})
        return
    options = RunOptions(data=data, folds=parse_folds(folds), out=out or runs_dir(), device=device, epochs=epochs,
                         max_steps=max_steps, resume=resume, seed=seed, lr_find_steps=lr_find_steps)
    if concurrent_folds > 1:
        from bmbench.runs.concurrent import run_concurrent

        def event(kind: str, fold: int, detail: str) -> None:
            err_console.print(f"fold {fold}: {kind} ({detail})", highlight=False)

        result = run_concurrent(loaded, options, concurrent_folds, on_event=event)
        _summary(result)
        return
    from bmbench.cli.progress_lines import loop_progress

    # bars on a terminal, one line per 50 steps (run ETA) in a log; SIGUSR1 stops at an epoch boundary
    with loop_progress(len(options.folds) if options.folds else 5,
                       resume=resume_command(submission, options)) as progress:
        result = run_submission(loaded, options, progress=progress, feature_progress=progress.features)
    if result is not None:  # None on the non-zero ranks of a torchrun job
        _summary(result)


@user_errors
def merge(
    run_dirs: list[Path] = typer.Argument(..., help="Run folders (OUT/<submission>/<dataset>) holding some folds."),
    out: Path = typer.Option(..., "--out", help="Folder for the merged run."),
) -> None:
    """Combine folds run on different machines into one run, and score it."""
    from bmbench.runs.merge import merge_runs
    from bmbench.safe_io import check_output_path

    check_output_path(out, what="--out", folder=True)
    result = merge_runs(run_dirs, out)
    _summary(result)
