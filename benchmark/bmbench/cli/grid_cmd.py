"""``bmbench grid``: list, run (locally or as a SLURM array) and merge the paper's reference grid."""

from __future__ import annotations

from pathlib import Path

import typer

from bmbench.cli.common import console, err_console, folds_option, parse_folds, user_errors


def _dataset_id(data: str | None, *, required: bool) -> tuple[str, str]:
    """The data set id of ``--data`` and a note; when the data is not reachable here (a login node writing
    a SLURM script), ``bm`` is assumed unless ``required``."""
    from bmbench.data.layout import scan_data
    from bmbench.data.source import resolve_data
    from bmbench.errors import BmbenchError

    try:
        return scan_data(resolve_data(data)).dataset.id, ""
    except BmbenchError:
        if required:
            raise
        return "bm", "data not reachable here: assuming the BM data set (its folder is read by the jobs)"


@user_errors
def grid(
    submissions: str | None = typer.Option(None, "--submissions", help="Comma-separated name patterns, e.g. "
                                           "'resnet_*,vit_imagenet' (default: the paper's 24 submissions)."),
    folds: str | None = folds_option("Folds (default: all five)"),
    data: str | None = typer.Option(None, "--data", help="BM data folder or 'synthetic' (default $BMBENCH_DATA)."),
    out: Path | None = typer.Option(None, "--out", help="Runs folder (OUT/<submission>/<dataset>/; default: "
                                    "<root>/runs)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Override epochs (smoke: not comparable)."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Cap steps per epoch (smoke)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every run."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and their status; run nothing."),
    slurm: Path | None = typer.Option(None, "--slurm", help="Write a SLURM array script (one pending fold per "
                                      "task) instead of running locally."),
    merge: bool = typer.Option(False, "--merge", help="After the jobs: score every submission over its "
                               "completed folds and print the leaderboard commands."),
    max_parallel: int = typer.Option(8, "--max-parallel", min=1, help="SLURM: tasks running at once (%N)."),
    partition: str | None = typer.Option(None, "--partition", help="SLURM partition."),
    time_limit: str = typer.Option("24:00:00", "--time", help="SLURM time limit per task."),
    cpus: int = typer.Option(16, "--cpus-per-task", min=1, help="SLURM CPUs per task."),
    mem: str = typer.Option("64G", "--mem", help="SLURM memory per task."),
    setup: str = typer.Option("", "--setup", help="SLURM: shell lines run before bmbench (module load, "
                              "source .venv/bin/activate). The job runs the bmbench they put on PATH, else "
                              "this command's Python (-m bmbench)."),
    sbatch_option: list[str] = typer.Option([], "--sbatch-option", help="SLURM: an extra #SBATCH option, e.g. "
                                            "--account=proj (repeat for more)."),
    gpus: int | None = typer.Option(None, "--gpus", min=0, help="SLURM: GPUs per task (--gres=gpu:N; default 1 "
                                    "with --device cuda, else 0)."),
    cache: str | None = typer.Option(None, "--cache", help="SLURM: BMBENCH_CACHE of the jobs, e.g. a scratch "
                                     "disk ('$TMPDIR/bmbench' expands in the job)."),
) -> None:
    """The reference grid (24 submissions x 5 folds): list it, run it here, or write a SLURM array script.

    Finished folds are skipped and interrupted ones resume, so running or submitting again is safe.
    """
    from rich.table import Table

    from bmbench import atomic
    from bmbench.cli.run_cmd import RichLoopProgress
    from bmbench.errors import BmbenchError
    from bmbench.runs.grid import (grid_tasks, leaderboard_commands, merge_grid, run_local, run_options_args,
                              select_submissions, slurm_script)
    from bmbench.splits.store import split_for_dataset
    from bmbench.runs.run import RunOptions

    if sum([dry_run and slurm is None, slurm is not None, merge]) > 1:
        raise BmbenchError("choose one of --dry-run, --slurm and --merge (--slurm with --dry-run prints the script)")
    from bmbench.paths import runs_dir

    out = out or runs_dir()
    chosen = select_submissions(submissions)
    dataset, note = _dataset_id(data, required=not (dry_run or slurm is not None))
    spec = split_for_dataset(dataset)
    fold_list = parse_folds(folds, split=spec) or tuple(range(spec.folds))
    if note:
        err_console.print(f"[yellow]note:[/] {note}")

    if merge:
        merged = merge_grid(chosen, out, dataset)
        table = Table(title=f"bmbench grid --merge ({dataset}{', SYNTHETIC DATA' if dataset != 'bm' else ''})",
                      title_justify="left")
        for column in ("submission", "folds", "macro F1", "balanced acc.", "note"):
            table.add_column(column, justify="left" if column in ("submission", "note") else "right")
        for run in merged:
            s = (run.score or {}).get("summary", {})
            table.add_row(run.submission, ",".join(map(str, run.folds)) or "-",
                          f"{s['macro_f1']['mean']:.3f}" if s else "-",
                          f"{s['balanced_accuracy']['mean']:.3f}" if s else "-", run.note)
        console.print(table)
        commands = leaderboard_commands(merged)
        if commands:
            console.print("leaderboard entries for the complete runs:")
            for command in commands:
                console.print(f"  {command}", highlight=False, soft_wrap=True)
        return

    tasks = grid_tasks(chosen, fold_list, out, dataset)
    counts = {s: sum(t.status == s for t in tasks) for s in ("done", "partial", "pending")}
    summary = (f"{len(chosen)} submission(s) x {len(fold_list)} fold(s) = {len(tasks)} runs: {counts['done']} done, "
               f"{counts['partial']} partial, {counts['pending']} pending")
    run_args = run_options_args(data or "$BMBENCH_DATA", out, device=device, epochs=epochs, max_steps=max_steps,
                                seed=seed)
    if slurm is not None:
        n_gpus = gpus if gpus is not None else int(device == "cuda")
        if device == "auto" and gpus is None:
            err_console.print("[yellow]note:[/] --device auto asks SLURM for no GPU; pass --device cuda (or --gpus 1) "
                              "on a GPU cluster")
        script = slurm_script([t for t in tasks if t.status != "done"], run_args, max_parallel=max_parallel,
                              partition=partition, time_limit=time_limit, cpus=cpus, mem=mem, setup=setup,
                              gpus=n_gpus, sbatch_options=sbatch_option, cache=cache)
        if dry_run:
            console.print(script, highlight=False, markup=False, soft_wrap=True)
        else:
            atomic.write_text(slurm, script)
            console.print(f"wrote {slurm}: {counts['partial'] + counts['pending']} array task(s); "
                          f"submit with: sbatch {slurm}")
        console.print(summary)
        return
    if dry_run:
        table = Table(title=f"bmbench grid ({dataset})", title_justify="left")
        for column in ("submission", "fold", "status", "epochs done", "folder"):
            table.add_column(column, justify="right" if column in ("fold", "epochs done") else "left")
        for t in tasks:
            table.add_row(t.submission, str(t.fold), t.status, str(t.epochs_done), str(t.run_dir / f"fold{t.fold}"))
        console.print(table)
        console.print(summary)
        return

    console.print(summary)
    options = RunOptions(data=data, out=out, device=device, epochs=epochs, max_steps=max_steps, seed=seed)

    def event(kind: str, task, detail: str) -> None:  # noqa: ANN001 - GridTask
        err_console.print(f"{task.label}: {kind}" + (f" ({detail})" if detail else ""), highlight=False)

    with RichLoopProgress() as progress:
        outcome = run_local(tasks, options, on_event=event, progress=progress)
    failed = {name: why for name, why in outcome.items() if why != "ok"}
    for name, why in failed.items():
        err_console.print(f"[bold red]{name} failed:[/] {why}", highlight=False)
    console.print(f"grid finished: {len(outcome) - len(failed)} submission(s) ran, {len(failed)} failed; "
                  "score everything with `bmbench grid --merge` (same options)")
    if failed:
        raise typer.Exit(1)
