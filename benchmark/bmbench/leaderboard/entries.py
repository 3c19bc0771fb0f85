"""Entry files: reading and validating ``entries/*.json``, writing them canonically, and making one from a run.

Reading never raises on a bad file: it returns :class:`Problem` records (entry, field, what is wrong, the
fix) so ``bmbench leaderboard check`` can list every problem at once. ``add_run`` turns a finished
``bmbench run`` folder into an entry, re-scoring its predictions with the official scorer; it refuses
smoke runs and SYNTHETIC data for the main board.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bmbench import atomic
from bmbench.errors import BmbenchError
from bmbench.leaderboard.board import Board, is_synthetic
from bmbench.leaderboard.schema import (
    FOLD_METRICS,
    PAPER_METRICS,
    PAPER_STATUS,
    STATUSES,
    Code,
    Compute,
    ConfusionResults,
    Entry,
    FoldConfusion,
    MeanStd,
    Metrics,
    PredictionsRef,
    SplitRef,
    format_validation_error,
)

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")
"""Entry names: lowercase letters, digits, ``_`` and ``-`` (they are file names and HTML ids)."""
STATUS_ALIASES = {"reproduced": "reproduced here", "paper": PAPER_STATUS}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a board: which entry (or file), which field, what is wrong, how to fix it."""

    entry: str
    field: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.entry}: {self.field}: {self.message}\n    fix: {self.fix}"


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a safe entry name, or None."""
    if NAME_RE.fullmatch(name):
        return None
    return (f"{name!r} is not a safe entry name: use 1-80 lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit")


def _dump(value: Any, indent: int) -> str:
    """JSON with 2-space indentation, lists of numbers on one line (a confusion row per line)."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {_dump(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return "[" + ", ".join(json.dumps(v, allow_nan=False) for v in value) + "]"
        return "[\n" + ",\n".join(inner + _dump(v, indent + 1) for v in value) + "\n" + pad + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def dump_entry(entry: Entry) -> str:
    """The canonical text of an entry file."""
    return _dump(entry.model_dump(mode="json"), 0) + "\n"


def entry_path(board: Board, name: str) -> Path:
    """Where the entry ``name`` lives."""
    return board.entries_dir / f"{name}.json"


def predictions_relpath(name: str) -> str:
    """The only place an entry's predictions file may be: ``predictions/<name>.csv.gz``."""
    return f"predictions/{name}.csv.gz"


def load_entries(board: Board) -> tuple[list[tuple[Path, Entry]], list[Problem]]:
    """Every ``entries/*.json`` that parses and validates, and a problem for every one that does not."""
    loaded: list[tuple[Path, Entry]] = []
    problems: list[Problem] = []
    if not board.entries_dir.is_dir():
        return loaded, problems
    for path in sorted(board.entries_dir.iterdir()):
        label = f"entries/{path.name}"
        if path.name.startswith("."):
            continue
        if path.suffix != ".json" or not path.is_file():
            problems.append(Problem(label, "(file)", "not an entry: entries/ holds only <name>.json files",
                                    "move or delete it"))
            continue
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            problems.append(Problem(label, "(file)", "not UTF-8 text", "save the file as UTF-8 JSON"))
            continue
        except json.JSONDecodeError as err:
            problems.append(Problem(label, "(file)", f"not valid JSON: {err.msg} at line {err.lineno}, "
                                    f"column {err.colno}", "fix the JSON syntax (or re-create it with "
                                    "`bmbench leaderboard add`)"))
            continue
        try:
            entry = Entry.model_validate(raw)
        except ValidationError as err:
            for field, message in format_validation_error(err):
                problems.append(Problem(label, field, message, "correct the value to match the entry schema "
                                        "(see bmbench/leaderboard/schema.py), or re-create the entry with "
                                        "`bmbench leaderboard add`"))
            continue
        loaded.append((path, entry))
    return loaded, problems


def write_entry(board: Board, entry: Entry) -> Path:
    """Write an entry canonically and atomically."""
    path = entry_path(board, entry.name)
    atomic.write_text(path, dump_entry(entry))
    return path


def normalise_status(status: str) -> str:
    """Accept the full status or a one-word alias (``reproduced``, ``submitted``, ``superseded``)."""
    value = STATUS_ALIASES.get(status.strip().lower(), status.strip().lower())
    if value not in STATUSES:
        raise BmbenchError(f"unknown status {status!r}; use one of: {', '.join(STATUSES)} "
                           "(or reproduced / submitted / superseded)")
    return value


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise BmbenchError(f"{path.parent} is not a finished run: {path.name} is missing. Finish it with "
                           "`bmbench run ... --resume` (or combine per-fold jobs with `bmbench merge`), then add it.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BmbenchError(f"{path}: not valid JSON ({err}); the {what} is damaged, re-run `bmbench run --resume`") \
            from None


def _refuse_for_main(run: dict[str, Any], run_dir: Path) -> None:
    """The main board takes only full real-data runs."""
    if run.get("smoke") is not None:
        raise BmbenchError(f"{run_dir} is a smoke run ({run['smoke']}): shortened training is not comparable and "
                           "cannot enter the main leaderboard. Run it without --epochs/--max-steps, or add it to the "
                           "demo board with --board demo.")
    data = run.get("data") or {}
    if data.get("synthetic") or is_synthetic(str(data.get("dataset", ""))):
        raise BmbenchError(f"{run_dir} was computed on SYNTHETIC data: it never enters the main leaderboard. Add it "
                           "to the demo board with --board demo, or run on the real data (--data PATH).")
    if run.get("comparable") is not True:
        raise BmbenchError(f"{run_dir}: run.json marks the run as not comparable; only comparable runs enter the "
                           "main leaderboard.")


def _parameters(loaded: Any) -> int | None:
    """Trainable parameters of the submission's 21-class model (built on the meta device: no memory, no download)."""
    if loaded.submission.kind == "baseline":
        return None
    from bmbench.submissions.describe import describe_submission

    try:
        return describe_submission(loaded)["params"]
    except Exception as err:  # noqa: BLE001 - any failure to build the model means: ask the user
        raise BmbenchError(f"could not count the parameters of {loaded.folder} ({err}); pass --params N") from None


def entry_from_run(run_dir: Path, board: Board, *, status: str = "submitted", name: str | None = None,
                   code_url: str | None = None, parameters: int | None = None,
                   submission_dir: Path | None = None) -> tuple[Entry, Path]:
    """An entry for a finished run (and the path of its predictions file), re-scored by the official scorer."""
    from bmbench.scoring.score import score_file
    from bmbench.splits.store import get_split_spec
    from bmbench.submissions.schema import load_submission

    run_dir = Path(run_dir)
    run = _read_json(run_dir / "run.json", "run record")
    status = normalise_status(status)
    if status == PAPER_STATUS:
        raise BmbenchError("a run is not 'reported in a paper'; use reproduced, submitted or superseded")
    if not board.is_demo:
        _refuse_for_main(run, run_dir)
    predictions = run_dir / "predictions.csv"
    if not predictions.is_file():
        raise BmbenchError(f"{run_dir} has no predictions.csv; finish the run (`bmbench run ... --resume`) first")
    split_name = str((run.get("split") or {}).get("name", ""))
    spec = get_split_spec(split_name)
    score = score_file(predictions, split_name)
    if score["split"]["sha256"] != (run.get("split") or {}).get("sha256"):
        raise BmbenchError(f"{run_dir}: run.json names split SHA-256 {run['split'].get('sha256')}, but the published "
                           f"{split_name} is {score['split']['sha256']}; the run used a modified split and cannot "
                           "be added. Re-run it on the published split.")
    if not board.is_demo and score["folds"] != list(range(spec.folds)):
        raise BmbenchError(f"{run_dir} holds folds {score['folds']} of {spec.folds}: the main leaderboard needs all "
                           f"{spec.folds}. Run the missing folds (`bmbench run --folds K`) and `bmbench merge` them.")

    sub_info = run.get("submission") or {}
    folder = Path(submission_dir) if submission_dir is not None else Path(str(sub_info.get("folder", "")))
    try:
        loaded = load_submission(folder)
    except BmbenchError as err:
        raise BmbenchError(f"cannot read the run's submission ({err.message}); pass --submission PATH to its "
                           "folder") from None
    sub = loaded.submission
    entry_name = name or sub.name
    problem = name_problem(entry_name)
    if problem:
        raise BmbenchError(problem + "; pass --name")
    url = code_url or sub.code_url
    if not board.is_demo and not url:
        raise BmbenchError(f"the main leaderboard needs the code: set code_url in {folder}/submission.toml or pass "
                           "--code-url URL")
    git = run.get("git") or {}
    commit = git.get("commit")
    if commit and git.get("dirty"):
        commit = f"{commit}+dirty"
    folds = run.get("folds") or []
    device = run.get("device") or {}
    data = list(sub.pretraining_data)
    entry = Entry(
        name=entry_name,
        status=status,
        authors=list(sub.authors),
        backbone=sub.backbone,
        init=sub.init,
        pretraining_data=data,
        external_data=bool(data),
        parameters=parameters if parameters is not None else _parameters(loaded),
        recipe_digest=run.get("recipe_digest"),
        code=Code(url=url, commit=commit),
        compute=Compute(
            hardware=device.get("name"),
            wall_hours=sum(float(f.get("seconds", 0.0)) for f in folds) / 3600,
            device_hours=float(run.get("device_hours", 0.0)),
        ),
        bmbench_version=(run.get("versions") or {}).get("bmbench"),
        smoke=run.get("smoke") is not None,
        split=SplitRef(**score["split"]),
        date=str(run.get("created_at", ""))[:10],
        results=ConfusionResults(kind="confusions", folds=[
            FoldConfusion(fold=p["fold"], confusion=p["confusion"]) for p in score["per_fold"]]),
        metrics=Metrics(**{m: MeanStd(**score["summary"][m]) for m in (*PAPER_METRICS, *FOLD_METRICS)}),
        predictions=None,
    )
    return entry, predictions


def add_run(run_dir: Path, board: Board, *, status: str = "submitted", name: str | None = None,
            code_url: str | None = None, parameters: int | None = None, submission_dir: Path | None = None,
            with_predictions: bool = False, replace: bool = False) -> Path:
    """Make an entry from a finished run and write it (and optionally its gzipped predictions) atomically."""
    entry, predictions = entry_from_run(run_dir, board, status=status, name=name, code_url=code_url,
                                        parameters=parameters, submission_dir=submission_dir)
    target = entry_path(board, entry.name)
    if target.exists() and not replace:
        raise BmbenchError(f"{target} already exists; pass --replace to overwrite it, or --name to add another entry")
    from bmbench.leaderboard.check import check_entry

    problems = check_entry(board, entry, rescore=False)
    if problems:
        raise BmbenchError("the entry would not pass `bmbench leaderboard check`:\n"
                           + "\n".join(f"  {p}" for p in problems))
    gz_path = board.root / predictions_relpath(entry.name)
    if with_predictions:
        data = predictions.read_bytes()
        rows = sum(sum(map(sum, f.confusion)) for f in entry.results.folds) \
            if isinstance(entry.results, ConfusionResults) else 0
        entry = entry.model_copy(update={"predictions": PredictionsRef(
            file=predictions_relpath(entry.name), sha256=hashlib.sha256(data).hexdigest(), rows=rows)})
        atomic.write_bytes(gz_path, gzip.compress(data, compresslevel=9, mtime=0))
    path = write_entry(board, entry)
    if not with_predictions and gz_path.exists():
        gz_path.unlink()  # a replaced entry's old predictions would no longer belong to anything
    return path
