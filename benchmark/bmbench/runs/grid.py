"""``bmbench grid``: the paper's reference grid (24 submissions x 5 folds), locally or as a SLURM array.

The grid is the 24 reference submissions ``<vgg|resnet|regnet|vit>_<init>`` (Glüge et al. 2023, Table 4)
times the folds of the published split; ``--submissions`` picks others by name patterns. Each task is one
fold of one submission and is exactly ``bmbench run SUBMISSION --folds K --resume``: a finished fold
(``fold.json``) is skipped, an interrupted one resumes from its last epoch. Locally the tasks run one after
another; ``--slurm`` writes an array job with one task per pending fold instead. ``--merge`` (after the
jobs) re-scores every submission over all its completed folds and prints the ``bmbench leaderboard add``
commands for the complete ones.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bmbench.errors import BmbenchError
from bmbench.records.fold import FOLD_FILE
from bmbench.records.run import RUN_FILE, read_run

PAPER_SUBMISSION_RE = re.compile(r"^(vgg|resnet|regnet|vit)_(random|imagenet|pcam|cd|imagenet_pcam|imagenet_cd)$")
"""Names of the 24 reference submissions of the paper's Table 4."""
BACKBONE_ORDER = ("vgg", "resnet", "regnet", "vit")
FOLD_DONE = FOLD_FILE


@dataclass(frozen=True)
class GridTask:
    """One fold of one submission, and how far it got."""

    submission: str
    folder: Path
    fold: int
    status: str
    epochs_done: int
    run_dir: Path

    @property
    def label(self) -> str:
        return f"{self.submission}/fold{self.fold}"


def _order(name: str) -> tuple[int, str]:
    prefix = name.split("_", 1)[0]
    return (BACKBONE_ORDER.index(prefix) if prefix in BACKBONE_ORDER else len(BACKBONE_ORDER), name)


def select_submissions(patterns: str | None, root: Path | None = None) -> list[Any]:
    """The paper's 24 reference submissions, or those matching comma-separated glob patterns
    (``resnet_*,vit_imagenet``); a pattern that matches nothing is an error."""
    from bmbench.submissions.registry import list_submissions

    available = list_submissions(root)
    if patterns is None:
        chosen = [s for s in available if PAPER_SUBMISSION_RE.fullmatch(s.submission.name)]
    else:
        wanted = [p.strip() for p in patterns.split(",") if p.strip()]
        if not wanted:
            raise BmbenchError("--submissions is empty; give name patterns such as 'resnet_*,vit_imagenet'")
        chosen = []
        for pattern in wanted:
            hits = [s for s in available if fnmatch.fnmatchcase(s.submission.name, pattern)]
            if not hits:
                names = ", ".join(s.submission.name for s in available)
                raise BmbenchError(f"--submissions: {pattern!r} matches no submission; known: {names}")
            chosen += [s for s in hits if s not in chosen]
    return sorted(chosen, key=lambda s: _order(s.submission.name))


def fold_status(run_dir: Path, fold: int) -> tuple[str, int]:
    """``done`` (fold.json), ``partial`` (epochs in history.jsonl or a last.pt) or ``pending``; epochs done."""
    folder = run_dir / f"fold{fold}"
    history = folder / "history.jsonl"
    epochs = len(history.read_text(encoding="utf-8").splitlines()) if history.is_file() else 0
    if (folder / FOLD_DONE).is_file():
        return "done", epochs
    if epochs or (folder / "last.pt").is_file():
        return "partial", epochs
    return "pending", 0


def grid_tasks(submissions: Sequence[Any], folds: Sequence[int], out: Path, dataset_id: str) -> list[GridTask]:
    """Every (submission, fold) of the grid with its status under ``out``."""
    tasks = []
    for loaded in submissions:
        run_dir = out / loaded.submission.name / dataset_id
        for fold in folds:
            status, epochs = fold_status(run_dir, fold)
            tasks.append(GridTask(loaded.submission.name, Path(loaded.folder), fold, status, epochs, run_dir))
    return tasks


def run_options_args(data: str, out: Path, *, device: str = "auto", epochs: int | None = None,
                     max_steps: int | None = None, seed: int = 0) -> list[str]:
    """The ``bmbench run`` options every task of a grid shares."""
    args = ["--data", data, "--out", str(out), "--device", device, "--seed", str(seed), "--resume"]
    if epochs is not None:
        args += ["--epochs", str(epochs)]
    if max_steps is not None:
        args += ["--max-steps", str(max_steps)]
    return args


def run_local(tasks: Sequence[GridTask], options: Any, *,
              on_event: Callable[[str, GridTask, str], None] | None = None,
              progress: Any = None) -> dict[str, str]:
    """Run the unfinished tasks one submission after another (its pending folds in order, with resume).

    Returns ``{submission: "ok" | error message}``; a failing submission does not stop the others.
    """
    from dataclasses import replace

    from bmbench.submissions.registry import resolve_submission
    from bmbench.runs.run import run_submission

    notify = on_event or (lambda kind, task, detail: None)
    by_submission: dict[str, list[GridTask]] = {}
    for task in tasks:
        by_submission.setdefault(task.submission, []).append(task)
    outcome: dict[str, str] = {}
    for name, own in by_submission.items():
        todo = [t for t in own if t.status != "done"]
        for t in own:
            if t.status == "done":
                notify("skip", t, "finished")
        if not todo:
            continue
        loaded = resolve_submission(str(todo[0].folder))
        for t in todo:
            notify("start", t, "resuming" if t.status == "partial" else "")
        try:
            run_submission(loaded, replace(options, folds=tuple(t.fold for t in todo), resume=True),
                           progress=progress)
        except BmbenchError as exc:
            outcome[name] = exc.message
            notify("failed", todo[0], exc.message)
            continue
        outcome[name] = "ok"
        for t in todo:
            notify("done", t, "")
    return outcome


DATA_ENV_TOKEN = "$BMBENCH_DATA"
"""The ``--data`` value a grid script leaves to the job's environment (expanded there, in double quotes)."""
STOP_SIGNAL_SECONDS = 120
"""``--signal=B:USR1@120``: SLURM warns the batch shell this long before the time limit; the task stops at
its next epoch boundary (the checkpoint of the last epoch is on disk) and is requeued, then resumes."""


def _sbatch_lines(options: Sequence[str]) -> list[str]:
    """``#SBATCH`` lines from ``--sbatch-option`` values (``--account=x`` or ``#SBATCH --account=x``)."""
    lines: list[str] = []
    for option in options:
        text = option.strip()
        if text.startswith("#SBATCH"):
            text = text[len("#SBATCH"):].strip()
        if not text.startswith("-") or "\n" in text or "\r" in text:
            raise BmbenchError(f"--sbatch-option {option!r}: give one sbatch option such as --account=myproject "
                               "or --qos=short (one per --sbatch-option)", exit_code=2)
        lines.append(f"#SBATCH {text}")
    return lines


def _dq(text: str) -> str:
    """``text`` in double quotes for bash: ``$VAR`` still expands, nothing else is interpreted."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`") + '"'


def _shell_arg(arg: str) -> str:
    if arg == DATA_ENV_TOKEN:
        return '"${BMBENCH_DATA:?set BMBENCH_DATA to the data folder, or pass --data to bmbench grid --slurm}"'
    return shlex.quote(arg)


def bmbench_lines(python: str, setup_commands: Sequence[str]) -> list[str]:
    """Bash lines that set ``BMBENCH`` (an array) to the command the job runs.

    Without ``--setup`` commands: ``python -m bmbench``, the interpreter that wrote the script (``bmbench``
    need not be on the job's PATH, and a stale one there is not picked). With them, the ``bmbench`` the
    setup put on PATH (an activated venv, a module), else that interpreter. ``python`` empty: ``bmbench``.
    """
    if not python:
        return ["BMBENCH=(bmbench)"]
    own = f"BMBENCH=({shlex.quote(python)} -m bmbench)"
    if not setup_commands:
        return ["# the Python that ran `bmbench grid --slurm` (give --setup to use another environment's bmbench)",
                own]
    return ["# the bmbench that --setup put on PATH, else the Python that ran `bmbench grid --slurm`",
            f"if command -v bmbench >/dev/null 2>&1; then BMBENCH=(bmbench); else {own}; fi"]


def slurm_script(tasks: Sequence[GridTask], run_args: Sequence[str], *, max_parallel: int = 8,
                 partition: str | None = None, time_limit: str = "24:00:00", cpus: int = 16, mem: str = "64G",
                 python: str | None = None, setup: str = "", gpus: int = 0, sbatch_options: Sequence[str] = (),
                 cache: str | None = None) -> str:
    """A SLURM array script: task ``i`` runs one fold of one submission (``bmbench run --folds K --resume``).

    ``python`` (default: this interpreter, ``sys.executable``) runs ``-m bmbench`` in the job unless a
    ``setup`` command line puts a ``bmbench`` on PATH (:func:`bmbench_lines`).
    ``gpus`` > 0 asks ``--gres=gpu:N`` (only for CUDA runs: a CPU cluster refuses gres it lacks);
    ``sbatch_options`` and ``#SBATCH`` lines of ``setup`` join the other ``#SBATCH`` lines (sbatch reads
    them only before the first command); ``cache`` becomes ``BMBENCH_CACHE`` (a scratch disk; ``$VARS``
    expand in the job). Near the time limit SLURM sends USR1 (:data:`STOP_SIGNAL_SECONDS`): the batch shell
    passes it to ``bmbench run``, which stops after the epoch in progress, and requeues the task.
    """
    if not tasks:
        raise BmbenchError("no task to submit: every selected fold is finished (see `bmbench grid --dry-run`)")
    if max_parallel < 1:
        raise BmbenchError("--max-parallel must be at least 1")
    if gpus < 0:
        raise BmbenchError("--gpus must be 0 or more", exit_code=2)
    setup_lines = setup.splitlines()
    hoisted = [line for line in setup_lines if line.strip().startswith("#SBATCH")]
    commands = [line for line in setup_lines if not line.strip().startswith("#SBATCH")]
    header = ["#!/bin/bash",
              f"# bmbench reference grid: {len(tasks)} task(s), one fold of one submission each.",
              "# Written by `bmbench grid --slurm`; submit with `sbatch <this file>`, then run `bmbench grid --merge`",
              "# with the same --submissions/--folds/--data/--out once every task has finished. Re-submitting is",
              "# safe: finished folds are skipped, interrupted ones resume from their last epoch.",
              "#SBATCH --job-name=bmbench-grid",
              f"#SBATCH --array=0-{len(tasks) - 1}%{max_parallel}"]
    if gpus:
        header.append(f"#SBATCH --gres=gpu:{gpus}")
    header += ["#SBATCH --nodes=1",
               "#SBATCH --ntasks=1",
               f"#SBATCH --cpus-per-task={cpus}",
               f"#SBATCH --mem={mem}",
               f"#SBATCH --time={time_limit}",
               f"#SBATCH --signal=B:USR1@{STOP_SIGNAL_SECONDS}",
               "#SBATCH --requeue",
               "#SBATCH --output=bmbench-grid-%A_%a.log"]
    if partition:
        header.append(f"#SBATCH --partition={partition}")
    header += _sbatch_lines([*hoisted, *sbatch_options])
    lines = [*header, ""]
    if commands:
        lines += ["# --setup (before `set -u`: module and activate scripts often read unset variables)",
                  *commands, ""]
    lines += ["set -euo pipefail", "",
              *bmbench_lines(sys.executable if python is None else python, [c for c in commands if c.strip()]), ""]
    if cache:
        lines += ["# image cache and synthetic data on scratch (--cache)", f"export BMBENCH_CACHE={_dq(cache)}",
                  'mkdir -p "$BMBENCH_CACHE"', ""]
    lines.append("# task id -> submission folder and fold")
    lines.append("TASKS=(")
    lines += [f"  {shlex.quote(str(t.folder))}:{t.fold}  # {t.label}" for t in tasks]
    lines += [")", "",
              'TASK="${TASKS[$SLURM_ARRAY_TASK_ID]}"',
              'SUBMISSION="${TASK%:*}"',
              'FOLD="${TASK##*:}"',
              'echo "bmbench grid task $SLURM_ARRAY_TASK_ID: $SUBMISSION fold $FOLD on $(hostname)"',
              "",
              "# USR1 (the time limit is near): bmbench stops after the current epoch, then the task is requeued",
              "STOP=0",
              "PID=",
              'on_usr1() { STOP=1; echo "time limit near: stopping at the end of this epoch"; '
              '[ -n "$PID" ] && kill -USR1 "$PID" 2>/dev/null || true; }',
              "trap on_usr1 USR1",
              f'"${{BMBENCH[@]}}" run "$SUBMISSION" --folds "$FOLD" {" ".join(_shell_arg(a) for a in run_args)} &',
              "PID=$!",
              "RC=0",
              '# a trapped signal interrupts `wait`; wait again until bmbench has really exited',
              'while true; do wait "$PID" && RC=0 || RC=$?; kill -0 "$PID" 2>/dev/null || break; done',
              'if [ "$STOP" = 1 ]; then',
              '  echo "requeueing ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}: it resumes from its last epoch"',
              '  scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"',
              "  exit 0",
              "fi",
              'exit "$RC"',
              ""]
    return "\n".join(lines)


@dataclass
class MergedRun:
    """One submission after ``--merge``."""

    submission: str
    run_dir: Path
    folds: list[int]
    complete: bool
    score: dict[str, Any] | None
    note: str = ""


def merge_grid(submissions: Sequence[Any], out: Path, dataset_id: str, folds: int = 5) -> list[MergedRun]:
    """Re-score each submission over all its completed folds (predictions.csv, score.json, run.json).

    Uses the run.json the tasks wrote (device, versions, provenance) with the fold list replaced by every
    completed fold, so a merge on a login node does not record the login node as the device.
    """
    from bmbench.records.fold import completed_folds
    from bmbench.runs.run import finalize_run
    from bmbench.splits.store import load_split

    merged: list[MergedRun] = []
    for loaded in submissions:
        name = loaded.submission.name
        run_dir = out / name / dataset_id
        done = completed_folds(run_dir) if run_dir.is_dir() else {}
        if not done:
            merged.append(MergedRun(name, run_dir, [], False, None, "no completed fold"))
            continue
        if not (run_dir / RUN_FILE).is_file():
            merged.append(MergedRun(name, run_dir, sorted(done), False, None,
                                    f"no {RUN_FILE}: finish it with `bmbench run --resume`"))
            continue
        base = read_run(run_dir, submission_folder=Path(loaded.folder))  # the grid's submission made these folds
        split = load_split(base.split.name)
        result = finalize_run(run_dir, split, base)
        merged.append(MergedRun(name, run_dir, sorted(done), len(done) == split.folds, result.score,
                                "" if len(done) == split.folds else f"{len(done)}/{split.folds} folds"))
    return merged


def leaderboard_commands(merged: Sequence[MergedRun]) -> list[str]:
    """``bmbench leaderboard add`` commands for the complete runs (the main board for comparable runs, the
    demo board for synthetic or smoke ones), then ``bmbench leaderboard build``. Empty when bmbench has no
    leaderboard package (it is never imported here)."""
    import importlib.util

    if importlib.util.find_spec("bmbench.leaderboard") is None:
        return []
    commands = []
    for run in merged:
        if not run.complete:
            continue
        board = [] if read_run(run.run_dir).comparable else ["--board", "demo"]
        commands.append(shlex.join(["bmbench", "leaderboard", "add", str(run.run_dir), "--status", "reproduced",
                                    *board]))
    if commands:
        commands.append("bmbench leaderboard build")
    return commands
