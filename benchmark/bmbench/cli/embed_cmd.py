"""``bmbench embed``: a frozen-feature submission's encoder over every image of a split, into a feature store."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from bmbench.cli.common import console, err_console, folds_option, parse_folds, user_errors

PLAIN_EVERY = 10_000
"""Without a terminal (SLURM logs), one line per this many images."""


@contextmanager
def embed_progress() -> Iterator[Callable[[int, int, str], None]]:
    """Rich bar with images/s and ETA on a terminal; a plain line every :data:`PLAIN_EVERY` images otherwise."""
    if err_console.is_terminal:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeRemainingColumn)

        bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                        TextColumn("{task.fields[rate]} img/s"), TimeRemainingColumn(), console=err_console)
        tasks: dict[str, tuple[int, float, int]] = {}

        def update(done: int, total: int, label: str) -> None:
            if label not in tasks:
                tasks[label] = (bars.add_task(f"embed {label}", total=total, completed=done, rate="-"),
                                time.perf_counter(), done)
            task, t0, d0 = tasks[label]
            elapsed = time.perf_counter() - t0
            rate = f"{(done - d0) / elapsed:,.0f}" if elapsed > 0 and done > d0 else "-"
            bars.update(task, completed=done, rate=rate)

        with bars:
            yield update
        return
    state: dict[str, tuple[float, int, int]] = {}

    def plain(done: int, total: int, label: str) -> None:
        t0, d0, last = state.setdefault(label, (time.perf_counter(), done, done))
        if done - last >= PLAIN_EVERY or done == total:
            elapsed = time.perf_counter() - t0
            rate = (done - d0) / elapsed if elapsed > 0 else 0.0
            eta = (total - done) / rate if rate > 0 else 0.0
            err_console.print(f"embed {label}: {done}/{total} images, {rate:.0f} img/s, ETA {eta:.0f} s",
                              highlight=False, markup=False)
            state[label] = (t0, d0, done)

    yield plain


@user_errors
def embed(
    submission: str = typer.Argument(..., help="Frozen-feature submission folder or name (protocol linear|knn|fewshot)."),
    data: str | None = typer.Option(None, "--data", help="Data folder, or 'synthetic' (default: $BMBENCH_DATA)."),
    split: str | None = typer.Option(None, "--split", help="Published split whose images to embed (default: the "
                                     "data set's split, bm-cv5-v1 or synthetic-cv5-v1)."),
    out: Path | None = typer.Option(None, "--out", help="Store folder (default: $BMBENCH_FEATURES, else "
                                    "<BMBENCH_CACHE>/features/<dataset>/<encoder>-<key>)."),
    device: str = typer.Option("auto", "--device", help="auto, cuda or cpu."),
    batch: int = typer.Option(256, "--batch", min=1, help="Images per forward pass."),
    folds: str | None = folds_option("For run: encoders, the folds to embed (default: every finished fold)"),
) -> None:
    """Embed every image of a split with the submission's encoder into a float16 feature store.

    One eval-mode forward pass, no augmentation (bf16 autocast and channels_last on CUDA), from the uint8
    image cache when present. The store (features.npy, index.csv, manifest.json) is written in chunks:
    an interrupted run resumes where it stopped; a complete matching store is reused; a store of another
    encoder, preprocessing or data is refused (exit 2).
    """
    from bmbench.features.embed import embed as run_embed
    from bmbench.features.store import MANIFEST_FILE, read_manifest
    from bmbench.submissions.registry import resolve_submission

    loaded = resolve_submission(submission)
    with embed_progress() as progress:
        folder = run_embed(loaded, data=data, split_name=split, out_dir=out, device=device, batch=batch,
                           progress=progress, folds=parse_folds(folds))
    stores = [folder] if (folder / MANIFEST_FILE).is_file() else sorted(folder.glob("fold*"))
    for store in stores:
        m = read_manifest(store)
        tag = " [SYNTHETIC]" if m.synthetic else ""
        fold = f" fold {m.encoder.fold}" if m.encoder.fold is not None else ""
        console.print(f"{m.encoder.id}{fold}: {m.rows} x {m.dim} float16 features of {m.dataset}{tag} "
                      f"({m.split.name}), {m.images_per_second:.1f} img/s on {m.device.get('type')}, "
                      f"{m.wall_seconds:.1f} s -> {store}", highlight=False, markup=False, soft_wrap=True)


def bench_embed_command(submission: str, *, data: str, device: str, batch: str, steps: int, warmup: int | None,
                        json_out: Path | None, split: str | None = None) -> None:
    """``bmbench bench --embed SUBMISSION``: embedding vs pure forward throughput (see bmbench.bench.embed)."""
    from bmbench.bench.embed import bench_embed, render_embed_bench
    from bmbench.cli.common import check_json_out, emit_json, human_console
    from bmbench.errors import BmbenchError
    from bmbench.submissions.registry import resolve_submission

    check_json_out(json_out)
    if not batch.isdigit() or int(batch) < 1:
        raise BmbenchError(f"--batch with --embed must be a positive number, not {batch!r}", exit_code=2)
    loaded = resolve_submission(submission)
    with embed_progress() as progress:
        doc = bench_embed(loaded, data=data, split_name=split, device=device, batch=int(batch), steps=steps,
                          warmup=warmup, progress=progress,
                          log=lambda m: err_console.print(f"[dim]{m}[/]", highlight=False))
    render_embed_bench(doc, human_console(json_out))
    emit_json(json_out, doc)
