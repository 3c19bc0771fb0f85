"""``bmbench run --concurrent-folds N``: several folds of one submission at once on one GPU.

At the paper's batch of 32 a large GPU is under-used; folds are independent jobs, so running N of them side
by side can raise the total throughput (``bmbench bench --concurrent N`` measures whether it does). Each
fold runs in its own process (``bmbench run --folds k --resume``: separate CUDA contexts, no shared state,
a crash takes one fold down, not the others); this process builds the image cache first (so the workers do
not all decode it), starts up to N workers, restarts nothing, and when all have finished scores the run
exactly as a sequential run would (:func:`bmbench.runs.run.run_submission` with ``resume``, which skips
the finished folds and writes predictions.csv, score.json and run.json). Every worker is told N through
``$BMBENCH_CONCURRENT_FOLDS`` and keeps its images in device memory only if they fit in its share.
Worker output goes to ``<run>/logs/fold<k>.log``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bmbench.errors import BmbenchError, RunFailure

LOG_DIR = "logs"
_POLL_S = 0.5
_TAIL_LINES = 15


def _tail(path: Path, lines: int = _TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def worker_command(folder: Path, fold: int, data: str, options: Any) -> list[str]:
    """The command line of the worker that runs ``fold``."""
    return [sys.executable, "-m", "bmbench.cli.main", "run", str(folder), "--folds", str(fold), "--data", data,
            "--out", str(options.out), *options.training_flags(), "--resume"]


def run_concurrent(loaded: Any, options: Any, workers: int,
                   on_event: Callable[[str, int, str], None] | None = None) -> Any:
    """Run the folds of ``options`` in up to ``workers`` processes at once, then merge and score them.

    ``on_event(kind, fold, detail)`` reports ``start``, ``done`` and ``failed`` per fold, and ``note`` when a
    worker kept its images in host memory (the data path's reason). Returns the
    :class:`bmbench.runs.run.RunResult` of the whole run; raises :class:`BmbenchError` naming the logs of
    any fold that failed (after the others have finished).
    """
    from bmbench.datapaths.gpu import CONCURRENT_ENV, host_fallback_notes
    from bmbench.engine.device import resolve_device
    from bmbench.runs.run import FOLD_DONE, resolve_run_target, run_submission

    if workers < 1:
        raise BmbenchError(f"--concurrent-folds must be at least 1, got {workers}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise BmbenchError("--concurrent-folds cannot be combined with torchrun (one fold on several GPUs)")
    sub = loaded.submission
    if sub.kind == "baseline":
        raise BmbenchError("--concurrent-folds is for neural networks; baselines run in seconds per fold")
    index, split, folds, run_dir = resolve_run_target(loaded, options)
    pending = [f for f in folds if not (run_dir / f"fold{f}" / FOLD_DONE).is_file()]
    device = resolve_device(options.device)
    _prepare_cache(sub.recipe, index, split, device)

    logs = run_dir / LOG_DIR
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, CONCURRENT_ENV: str(workers)}
    running: dict[int, tuple[subprocess.Popen[bytes], Any, Path]] = {}
    failed: dict[int, Path] = {}
    notify = on_event or (lambda kind, fold, detail: None)
    try:
        while pending or running:
            while pending and len(running) < workers:
                fold = pending.pop(0)
                log_path = logs / f"fold{fold}.log"
                handle = open(log_path, "wb")  # noqa: SIM115 - closed when the worker ends
                proc = subprocess.Popen(worker_command(loaded.folder, fold, str(index.root), options),
                                        stdout=handle, stderr=subprocess.STDOUT, env=env)
                running[fold] = (proc, handle, log_path)
                notify("start", fold, str(log_path))
            time.sleep(_POLL_S)
            for fold, (proc, handle, log_path) in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                handle.close()
                del running[fold]
                if code == 0 and (run_dir / f"fold{fold}" / FOLD_DONE).is_file():
                    for note in host_fallback_notes(log_path.read_text(encoding="utf-8", errors="replace")):
                        notify("note", fold, note)  # why its images were not kept on the device
                    notify("done", fold, str(log_path))
                else:
                    failed[fold] = log_path
                    notify("failed", fold, f"exit code {code}; log {log_path}")
    except BaseException:
        for proc, handle, _ in running.values():
            proc.terminate()
        for proc, handle, _ in running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            handle.close()
        raise
    if failed:
        details = "\n".join(f"fold {f} ({path}):\n{_tail(path)}" for f, path in sorted(failed.items()))
        raise RunFailure(f"{len(failed)} fold(s) failed; finished folds are kept (rerun with --resume).\n{details}")
    return run_submission(loaded, replace(options, data=str(index.root), resume=True))


def _prepare_cache(recipe: Any, index: Any, split: Any, device: Any) -> None:
    """Build the image cache once here when the workers will use the GPU data path."""
    from bmbench.datapaths.gpu import resolve_data_path

    if resolve_data_path(recipe.data_path, device) != "gpu":
        return
    from bmbench.data.cache import cache_status, ensure_cache, rows_for_split

    rows = rows_for_split(split, index.paths_for(split.image_ids, split.name))
    if cache_status(rows) != "ok":
        print(f"bmbench: decoding {len(rows):,} images once into the image cache ...", file=sys.stderr, flush=True)
    try:
        ensure_cache(rows)
    except (BmbenchError, OSError):
        if recipe.data_path == "gpu":
            raise
        # auto: each worker falls back to the plain path with its own note
