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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bmbench import atomic, safe_io
from bmbench.errors import BmbenchError
from bmbench.leaderboard.board import Board, is_synthetic
from bmbench.protocols import FINETUNE
from bmbench.records.run import RUN_FILE, RunRecord, check_submission, read_run
from bmbench.leaderboard.schema import (
    ALL_METRICS,
    PAPER_STATUS,
    STATUSES,
    Code,
    Compute,
    ConfusionResults,
    Encoder,
    Entry,
    FoldConfusion,
    MeanStd,
    Metrics,
    PROBABILITY_METRICS,
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
        try:  # regular file, size-, depth- and number-bounded (bmbench.safe_io)
            raw = safe_io.read_json(path, what="leaderboard entry")
        except safe_io.UnsafeInputError as err:
            problems.append(Problem(label, "(file)", err.message, "fix the file (or re-create it with "
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


def _refuse_for_main(run: RunRecord, run_dir: Path) -> None:
    """The main board takes only full real-data runs."""
    if run.smoke is not None:
        raise BmbenchError(f"{run_dir} is a smoke run ({run.smoke.model_dump()}): shortened training is not "
                           "comparable and cannot enter the main leaderboard. Run it without --epochs/--max-steps, "
                           "or add it to the demo board with --board demo.")
    if run.data.synthetic or is_synthetic(run.data.dataset):
        raise BmbenchError(f"{run_dir} was computed on SYNTHETIC data: it never enters the main leaderboard. Add it "
                           "to the demo board with --board demo, or run on the real data (--data PATH).")
    if not run.comparable:
        raise BmbenchError(f"{run_dir}: run.json marks the run as not comparable; only comparable runs enter the "
                           "main leaderboard.")


def _parameters(run: RunRecord, kind: str, run_dir: Path) -> int | None:
    """The parameter count ``bmbench run`` recorded (the leaderboard never builds a submission's model)."""
    if run.parameters is not None or kind == "baseline":
        return run.parameters
    raise BmbenchError(f"{run_dir / RUN_FILE} records no parameter count (it was written by an older bmbench); "
                       "pass --params N, or re-run the submission with this bmbench")


def entry_from_run(run_dir: Path, board: Board, *, status: str = "submitted", name: str | None = None,
                   code_url: str | None = None, parameters: int | None = None,
                   submission_dir: Path | None = None) -> tuple[Entry, Path]:
    """An entry for a finished run (and the path of its predictions file), re-scored by the official scorer.

    Reads records only: ``run.json`` (parameters, provenance), the submission's ``submission.toml``
    (authors, code URL), whose folder must hash to the digest the run recorded, and the predictions.
    Nothing of the submission is imported or run.
    """
    from bmbench.scoring.score import score_file
    from bmbench.splits.store import get_split_spec
    from bmbench.submissions.schema import load_submission

    run_dir = Path(run_dir)
    run = read_run(run_dir)
    status = normalise_status(status)
    if status == PAPER_STATUS:
        raise BmbenchError("a run is not 'reported in a paper'; use reproduced, submitted or superseded")
    if not board.is_demo:
        _refuse_for_main(run, run_dir)
    predictions = run_dir / "predictions.csv"
    if not predictions.is_file():
        raise BmbenchError(f"{run_dir} has no predictions.csv; finish the run (`bmbench run ... --resume`) first")
    split_name = run.split.name
    spec = get_split_spec(split_name)
    score = score_file(predictions, split_name)
    if score["split"]["sha256"] != run.split.sha256:
        raise BmbenchError(f"{run_dir}: run.json names split SHA-256 {run.split.sha256}, but the published "
                           f"{split_name} is {score['split']['sha256']}; the run used a modified split and cannot "
                           "be added. Re-run it on the published split.")
    if not board.is_demo and score["folds"] != list(range(spec.folds)):
        raise BmbenchError(f"{run_dir} holds folds {score['folds']} of {spec.folds}: the main leaderboard needs all "
                           f"{spec.folds}. Run the missing folds (`bmbench run --folds K`) and `bmbench merge` them.")

    folder = Path(submission_dir) if submission_dir is not None else Path(run.submission.folder)
    check_submission(run, folder, where=run_dir / RUN_FILE)  # an entry never credits code the run did not use
    try:
        loaded = load_submission(folder)
    except BmbenchError as err:
        raise BmbenchError(f"cannot read the run's submission ({err.message}); pass --submission PATH to its "
                           "folder") from None
    sub = loaded.submission
    default_name = sub.name if run.protocol == FINETUNE else f"{sub.name}-{run.protocol}"
    entry_name = name or default_name
    problem = name_problem(entry_name)
    if problem:
        raise BmbenchError(problem + "; pass --name")
    url = code_url or sub.code_url
    if not board.is_demo and not url:
        raise BmbenchError(f"the main leaderboard needs the code: set code_url in {folder}/submission.toml or pass "
                           "--code-url URL")
    commit = run.git.commit
    if commit and run.git.dirty:
        commit = f"{commit}+dirty"
    data = list(sub.pretraining_data)
    encoder = run.encoder
    if encoder is not None:  # a frozen-feature run: the network is the encoder; the probe sits on top of it
        count, count_note = _frozen_parameters(run, encoder.parameters, parameters)
        notes = _fewshot_notes(run_dir, run.protocol)
    else:
        count = parameters if parameters is not None else _parameters(run, sub.kind, run_dir)
        count_note, notes = None, None
    entry = Entry(
        name=entry_name,
        status=status,
        protocol=run.protocol,
        authors=list(sub.authors),
        backbone=run.submission.backbone or (encoder.id if encoder else str(sub.encoder)),
        init=run.submission.init or ("frozen" if encoder is not None else "none"),
        pretraining_data=data,
        external_data=bool(data),
        parameters=count,
        parameters_note=count_note,
        recipe_digest=run.recipe_digest,
        code=Code(url=url, commit=commit),
        compute=Compute(
            hardware=run.device.get("name"),
            wall_hours=run.wall_hours,
            device_hours=run.device_hours,
        ),
        bmbench_version=run.versions.get("bmbench"),
        smoke=run.smoke is not None,
        split=SplitRef(**score["split"]),
        date=str(run.created_at or "")[:10],
        results=ConfusionResults(kind="confusions", folds=[
            FoldConfusion(fold=p["fold"], confusion=p["confusion"]) for p in score["per_fold"]]),
        metrics=Metrics(**{m: MeanStd(**v) if (v := score["summary"].get(m)) else None for m in ALL_METRICS}),
        predictions=None,
        encoder=Encoder(**encoder.model_dump()) if encoder else None,
        notes=notes,
    )
    return entry, predictions


def _frozen_parameters(run: RunRecord, encoder_parameters: int, given: int | None) -> tuple[int, str | None]:
    """A frozen-feature entry counts its encoder (as the board's Params column says), noting the probe's own."""
    if given is not None:
        return given, None
    probe = run.parameters or 0
    if not probe:
        return encoder_parameters, None
    return encoder_parameters, (f"the frozen encoder's {encoder_parameters:,} parameters (not trained); the "
                                f"{run.protocol} probe on its features fits {probe:,} more")


def _fewshot_notes(run_dir: Path, protocol: str) -> str | None:
    """A few-shot entry's confusions are one episode's; the note states the spread over all of them."""
    from bmbench.records.episodes import read_episodes

    if not protocol.startswith("fewshot-"):
        return None
    ep = read_episodes(run_dir)
    spread = ", ".join(f"{name.replace('_', ' ')} {s.mean:.3f}" + (f" ± {s.std:.3f}" if s.std is not None else "")
                       for name, s in ep.summary.items() if name in ("macro_f1", "accuracy", "balanced_accuracy"))
    return (f"{ep.shots}-shot SimpleShot: the figures are those of episode {ep.selected_episode}, the median of "
            f"{ep.episodes} seeded episodes by macro F1; over all episodes (mean ± std, episodes.json): {spread}")


@dataclass(frozen=True)
class _PreparedEntry:
    """An entry checked and ready to write, with the predictions file it may store."""

    entry: Entry
    predictions: Path
    with_predictions: bool


def _prepare_run_entry(run_dir: Path, board: Board, *, status: str, name: str | None, code_url: str | None,
                       parameters: int | None, submission_dir: Path | None, with_predictions: bool, replace: bool,
                       weights_url: str | None, weights_file: Path | None, weights_sha256: str | None,
                       weights_licence: str | None) -> _PreparedEntry:
    """Everything :func:`add_run` checks, before anything is written."""
    entry, predictions = entry_from_run(run_dir, board, status=status, name=name, code_url=code_url,
                                        parameters=parameters, submission_dir=submission_dir)
    without_probabilities = entry.model_copy(update={"metrics": entry.metrics.model_copy(
        update=dict.fromkeys(PROBABILITY_METRICS))})
    if not with_predictions:
        entry = without_probabilities
    if weights_url is not None:
        from bmbench.leaderboard.weights import weights_for

        entry = entry.model_copy(update={"weights": weights_for(run_dir, weights_url, weights_file=weights_file,
                                                                sha256=weights_sha256, licence=weights_licence)})
    target = entry_path(board, entry.name)
    if target.exists() and not replace:
        raise BmbenchError(f"{target} already exists; pass --replace to overwrite it, or --name to add another entry")
    from bmbench.leaderboard.check import check_entry

    problems = check_entry(board, without_probabilities, rescore=False)  # the stored file is not written yet
    if problems:
        raise BmbenchError(f"{run_dir}: the entry would not pass `bmbench leaderboard check`:\n"
                           + "\n".join(f"  {p}" for p in problems))
    return _PreparedEntry(entry, predictions, with_predictions)


def _write_prepared(board: Board, prepared: _PreparedEntry) -> Path:
    entry = prepared.entry
    gz_path = board.root / predictions_relpath(entry.name)
    if prepared.with_predictions:
        data = prepared.predictions.read_bytes()
        rows = sum(sum(map(sum, f.confusion)) for f in entry.results.folds) \
            if isinstance(entry.results, ConfusionResults) else 0
        entry = entry.model_copy(update={"predictions": PredictionsRef(
            file=predictions_relpath(entry.name), sha256=hashlib.sha256(data).hexdigest(), rows=rows)})
        atomic.write_bytes(gz_path, gzip.compress(data, compresslevel=9, mtime=0))
    path = write_entry(board, entry)
    if not prepared.with_predictions and gz_path.exists():
        gz_path.unlink()  # a replaced entry's old predictions would no longer belong to anything
    return path


def add_run(run_dir: Path, board: Board, *, status: str = "submitted", name: str | None = None,
            code_url: str | None = None, parameters: int | None = None, submission_dir: Path | None = None,
            with_predictions: bool = False, replace: bool = False, weights_url: str | None = None,
            weights_file: Path | None = None, weights_sha256: str | None = None,
            weights_licence: str | None = None) -> Path:
    """Make an entry from a finished run and write it (and optionally its gzipped predictions) atomically.

    Probability metrics stay on the entry only with its stored predictions (``check`` recomputes them from
    that file); ``weights_url`` adds ``weights`` hashed from the run's checkpoint (:mod:`.weights`).
    """
    return _write_prepared(board, _prepare_run_entry(
        run_dir, board, status=status, name=name, code_url=code_url, parameters=parameters,
        submission_dir=submission_dir, with_predictions=with_predictions, replace=replace, weights_url=weights_url,
        weights_file=weights_file, weights_sha256=weights_sha256, weights_licence=weights_licence))


def add_runs(run_dirs: Sequence[Path], board: Board, *, status: str = "submitted", code_url: str | None = None,
             with_predictions: bool = False, replace: bool = False) -> list[Path]:
    """:func:`add_run` for several runs, each under its submission's name: every run is checked before any
    entry is written, so one bad run adds nothing (``bmbench leaderboard add RUN...``)."""
    prepared = [_prepare_run_entry(Path(r), board, status=status, name=None, code_url=code_url, parameters=None,
                                   submission_dir=None, with_predictions=with_predictions, replace=replace,
                                   weights_url=None, weights_file=None, weights_sha256=None, weights_licence=None)
                for r in run_dirs]
    names: dict[str, Path] = {}
    for run_dir, item in zip(run_dirs, prepared, strict=True):
        if item.entry.name in names:
            raise BmbenchError(f"{names[item.entry.name]} and {run_dir} would both be entry {item.entry.name!r}; "
                               "add one of them with its own --name")
        names[item.entry.name] = Path(run_dir)
    return [_write_prepared(board, item) for item in prepared]
