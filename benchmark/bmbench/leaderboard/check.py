"""``bmbench leaderboard check``: what CI runs on a pull request, and what ``build`` runs before writing.

For every entry: it validates against the schema; its name is safe, unique and its file name; the board
admits it (the main board: real data, no smoke runs, all folds of a published split, a code URL); its split
is a published split with the published SHA-256 and data set; each fold's confusion matrix holds exactly
that fold's test images of each class; the metrics recomputed from the matrices by the official scorer
(:func:`bmbench.scoring.score.score_confusions`) equal the stated ones; a predictions file, where present,
re-scores against the published split to the same matrices, and its probabilities give the stated probability
metrics (AUROC, log loss, Brier, ECE) through the same scorer functions; an entry stating probability metrics
without a stored predictions file is refused. The paper's rows equal what ``import-published`` makes from the
package's tables, and their per-class figures give the printed mean row. Every ``submissions/*/submission.toml``
validates against its schema (read as TOML; ``model.py`` is never imported). Finally the generated
README.md, index.html, results.csv, results.json and entry.schema.json equal a fresh build byte for byte.

It reads entries as data only: nothing from ``submissions/`` and no training code is imported or run.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bmbench.datasets import DATASETS
from bmbench.errors import BmbenchError
from bmbench.leaderboard.board import Board, is_synthetic
from bmbench.leaderboard.entries import (
    Problem,
    dump_entry,
    load_entries,
    name_problem,
    predictions_relpath,
)
from bmbench.leaderboard.published import all_published_entries, printed_mismatches, reported_sources, sources
from bmbench.leaderboard.schema import (
    FOLD_METRICS,
    PAPER_METRICS,
    PAPER_STATUS,
    PROBABILITY_METRICS,
    ConfusionResults,
    Entry,
)
from bmbench.leaderboard.stored import MAX_PREDICTIONS_BYTES, StoredPredictionsError, read_stored
from bmbench.scoring.score import score_confusions

METRIC_TOLERANCE = 1e-9
"""Largest accepted difference between a stated and a recomputed metric (float round-off only)."""
__all__ = ["MAX_PREDICTIONS_BYTES", "METRIC_TOLERANCE", "BoardProblems", "check_board", "check_entry"]
REBUILD = "`bmbench leaderboard add RUN_DIR --replace` re-creates an entry from its run"


class BoardProblems(BmbenchError):
    """The board has problems; the message lists each one."""

    def __init__(self, problems: list[Problem], action: str) -> None:
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{action}: {len(problems)} problem(s):\n{lines}")
        self.problems = problems


class _Splits:
    """Published splits and their hashes, loaded once per check."""

    def __init__(self, splits_dir: Path | None = None) -> None:
        self.splits_dir = splits_dir
        self._loaded: dict[str, Any] = {}
        self._sums: dict[str, str] | None = None

    def published_sha(self, name: str) -> str | None:
        from bmbench.splits.store import default_splits_dir, read_sums, split_specs

        spec = split_specs().get(name)
        if spec is None:
            return None
        if self._sums is None:
            self._sums = read_sums(self.splits_dir or default_splits_dir())
        return self._sums.get(spec.filename)

    def load(self, name: str) -> Any:
        from bmbench.splits.store import load_split

        if name not in self._loaded:
            self._loaded[name] = load_split(name, self.splits_dir)
        return self._loaded[name]


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=0.0, abs_tol=METRIC_TOLERANCE)


def _fmt(value: float | None) -> str:
    return "null" if value is None else f"{value:.6f}"


def _policy(board: Board, entry: Entry, label: str) -> list[Problem]:
    out: list[Problem] = []
    dataset = entry.split.dataset
    if dataset not in DATASETS:
        out.append(Problem(label, "split.dataset", f"unknown data set {dataset!r}",
                           f"use one of {', '.join(DATASETS)}"))
    if not board.is_demo:
        if is_synthetic(dataset):
            out.append(Problem(label, "split.dataset", "SYNTHETIC results never enter the main leaderboard",
                               "remove the entry (the demo board, `--board demo`, takes synthetic runs)"))
        if entry.smoke:
            out.append(Problem(label, "smoke", "a smoke run (shortened training) is not comparable",
                               "submit a full run (without --epochs/--max-steps)"))
        if entry.status != PAPER_STATUS and not entry.code.url:
            out.append(Problem(label, "code.url", "the main leaderboard needs the code that produced the result",
                               "set code.url to the public repository (and code.commit to the commit used)"))
    return out


def _split_checks(entry: Entry, label: str, splits: _Splits) -> tuple[list[Problem], Any]:
    """The split must be published, with its published hash and data set; returns the loaded split if so."""
    from bmbench.splits.store import split_specs

    ref = entry.split
    if ref.sha256 is None and not entry.has_confusions:
        return [], None  # a paper's own split: nothing to compare with
    spec = split_specs().get(ref.name)
    if spec is None:
        return [Problem(label, "split.name", f"{ref.name!r} is not a published split",
                        f"compute results on a published split ({', '.join(split_specs())})")], None
    out = []
    published = splits.published_sha(ref.name)
    if ref.sha256 != published:
        out.append(Problem(label, "split.sha256", f"{ref.sha256} is not the published SHA-256 of {ref.name} "
                           f"({published})", "re-run on the published split file (git checkout splits/) and "
                           "add the run again"))
    if ref.dataset != spec.dataset.id:
        out.append(Problem(label, "split.dataset", f"split {ref.name} is a split of data set {spec.dataset.id!r}, "
                           f"not {ref.dataset!r}", f"set split.dataset to {spec.dataset.id!r}"))
    if out:
        return out, None
    return out, splits.load(ref.name)


def _confusion_checks(board: Board, entry: Entry, label: str, split: Any) -> list[Problem]:
    if not isinstance(entry.results, ConfusionResults):
        return []
    out: list[Problem] = []
    folds = [f.fold for f in entry.results.folds]
    if split is not None:
        bad = [f for f in folds if f >= split.folds]
        if bad:
            return [Problem(label, "results.folds", f"fold(s) {bad} do not exist in {split.name} "
                            f"({split.folds} folds)", f"keep folds 0..{split.folds - 1}")]
        if not board.is_demo and entry.status != PAPER_STATUS and folds != list(range(split.folds)):
            out.append(Problem(label, "results.folds", f"holds folds {folds}; the main leaderboard needs all "
                               f"{split.folds}", "run the missing folds and merge them (`bmbench merge`), then "
                               "add the merged run"))
        for fc in entry.results.folds:
            expected = np.bincount(split.labels[split.members(fc.fold, "test")], minlength=len(fc.confusion))
            got = np.asarray(fc.confusion, dtype=np.int64).sum(axis=1)
            if not np.array_equal(expected, got):
                from bmbench.classes import CLASS_CODES

                diffs = [f"{CLASS_CODES[j]} {int(got[j])} (split: {int(expected[j])})"
                         for j in np.flatnonzero(expected != got)[:5]]
                out.append(Problem(label, f"results.folds[fold {fc.fold}].confusion",
                                   "row sums are not this fold's test images per class: " + ", ".join(diffs),
                                   "the matrix must count every test image of the fold exactly once; "
                                   f"{REBUILD}"))
    score = score_confusions({f.fold: np.asarray(f.confusion, dtype=np.int64) for f in entry.results.folds})
    for metric in (*PAPER_METRICS, *FOLD_METRICS):
        stated = getattr(entry.metrics, metric)
        got = score["summary"][metric]
        if stated is None:
            out.append(Problem(label, f"metrics.{metric}", "missing; an entry with confusion matrices states all "
                               "metrics", f"state {metric}: mean {_fmt(got['mean'])}, std {_fmt(got['std'])}"))
            continue
        for part in ("mean", "std"):
            if not _close(getattr(stated, part), got[part]):
                out.append(Problem(label, f"metrics.{metric}.{part}",
                                   f"states {_fmt(getattr(stated, part))}, but the confusion matrices give "
                                   f"{_fmt(got[part])}", f"correct the figure or the matrices; {REBUILD}"))
    return out


def _stated_probability_checks(entry: Entry, label: str) -> list[Problem]:
    """Probability metrics need the stored predictions file they are recomputed from."""
    stated = [m for m in PROBABILITY_METRICS if getattr(entry.metrics, m) is not None]
    if stated and entry.predictions is None:
        return [Problem(label, f"metrics.{stated[0]}", f"states {', '.join(stated)} without a stored predictions "
                        "file to recompute them from", "add the entry with --predictions (or set these metrics "
                        f"to null); {REBUILD}")]
    return []


def _probability_checks(entry: Entry, label: str, preds: Any, split: Any) -> list[Problem]:
    """The stated probability metrics equal those recomputed from the stored predictions by the scorer."""
    from bmbench.scoring.score import probabilities_by_fold, probability_summary

    per_fold = probabilities_by_fold(preds, split)
    got = probability_summary(per_fold) if per_fold is not None else {}
    out = []
    for metric in PROBABILITY_METRICS:
        stated = getattr(entry.metrics, metric)
        recomputed = got.get(metric) if per_fold is not None else None
        if stated is None and recomputed is None:
            continue
        if recomputed is None:
            out.append(Problem(label, f"metrics.{metric}", f"states {_fmt(stated.mean)}, but the stored predictions "
                               "have no probability columns", f"set metrics.{metric} to null; {REBUILD}"))
            continue
        if stated is None:
            out.append(Problem(label, f"metrics.{metric}", f"is null, but the stored predictions give mean "
                               f"{_fmt(recomputed['mean'])}", f"state it; {REBUILD}"))
            continue
        for part in ("mean", "std"):
            if not _close(getattr(stated, part), recomputed[part]):
                out.append(Problem(label, f"metrics.{metric}.{part}", f"states {_fmt(getattr(stated, part))}, but "
                                   f"the stored predictions give {_fmt(recomputed[part])}",
                                   f"correct the figure or the predictions; {REBUILD}"))
    return out


def _predictions_checks(board: Board, entry: Entry, label: str, split: Any, rescore: bool) -> list[Problem]:
    ref = entry.predictions
    if ref is None:
        return _stated_probability_checks(entry, label)
    expected = predictions_relpath(entry.name)
    if ref.file != expected:
        return [Problem(label, "predictions.file", f"{ref.file!r}: predictions files live at {expected!r}",
                        f"move the file there and set predictions.file to {expected!r}")]
    path = board.root / expected
    if not path.is_file():
        return [Problem(label, "predictions.file", f"{expected} is missing",
                        "add the file (gzip of the run's predictions.csv) or remove the predictions key")]
    if not rescore:
        return []
    if split is None or not isinstance(entry.results, ConfusionResults):
        return []
    from bmbench.scoring.score import confusions_by_fold

    try:
        stored = read_stored(path, expected, split)
    except StoredPredictionsError as err:
        fix = ("write it with gzip from the run's predictions.csv" if "gzip" in err.message or "decompresses"
               in err.message else "re-create it from a complete run on the published split")
        return [Problem(label, "predictions.file", f"{expected} {err.message}" if not err.message.startswith(
            expected) else f"does not validate against {split.name}: {err.message}", fix)]
    out: list[Problem] = []
    if stored.sha256 != ref.sha256:
        out.append(Problem(label, "predictions.sha256", f"states {ref.sha256}, the decompressed file has "
                           f"{stored.sha256}", "state the SHA-256 of the uncompressed CSV"))
    preds = stored.predictions
    if len(preds.positions) != ref.rows:
        out.append(Problem(label, "predictions.rows", f"states {ref.rows}, the file has {len(preds.positions)} rows",
                           f"state {len(preds.positions)}"))
    rescored = confusions_by_fold(preds, split)
    stated = {f.fold: np.asarray(f.confusion, dtype=np.int64) for f in entry.results.folds}
    if sorted(rescored) != sorted(stated):
        out.append(Problem(label, "predictions.file", f"predicts folds {sorted(rescored)}, the entry states "
                           f"{sorted(stated)}", f"the predictions and the matrices must come from one run; {REBUILD}"))
        return out
    differ = [f for f in sorted(stated) if not np.array_equal(stated[f], rescored[f])]
    if differ:
        out.append(Problem(label, "predictions.file", f"re-scoring it gives different confusion matrices for "
                           f"fold(s) {differ} than the entry states", "the predictions and the matrices must "
                           f"come from one run; {REBUILD}"))
    return out + _probability_checks(entry, label, preds, split)


def check_entry(board: Board, entry: Entry, *, rescore: bool = True, splits: _Splits | None = None,
                label: str | None = None) -> list[Problem]:
    """Every check that concerns one entry on its own."""
    label = label or f"entries/{entry.name}.json"
    splits = splits or _Splits()
    problem = name_problem(entry.name)
    out = [Problem(label, "name", problem, "rename the entry (and its file) to a safe name")] if problem else []
    out += _policy(board, entry, label)
    split_problems, split = _split_checks(entry, label, splits)
    out += split_problems
    out += _confusion_checks(board, entry, label, split)
    out += _predictions_checks(board, entry, label, split, rescore)
    for field, derived, stated in printed_mismatches(entry):
        out.append(Problem(label, field, f"the per-class figures give {derived}, the entry states {stated}",
                           "the per-class figures and the mean row must be the paper's; run "
                           "`bmbench leaderboard import-published`"))
    return out


def _published_checks(board: Board, entries: dict[str, tuple[Path, Entry]]) -> list[Problem]:
    """The paper's rows are exactly what ``import-published`` makes from the package's tables."""
    if board.is_demo:
        return []
    out: list[Problem] = []
    expected = {e.name: e for e in all_published_entries()}
    fix = "run `bmbench leaderboard import-published` (the figures come from bmbench/resources/paper/*.csv)"
    for name, want in expected.items():
        label = f"entries/{name}.json"
        if name not in entries:
            out.append(Problem(label, "(file)", "a published row of the paper is missing from the board", fix))
            continue
        path, have = entries[name]
        if have != want:
            a, b = have.model_dump(mode="json"), want.model_dump(mode="json")
            for field in _differences(a, b)[:5]:
                out.append(Problem(label, field, "differs from the published table", fix))
        elif path.read_text(encoding="utf-8") != dump_entry(want):
            out.append(Problem(label, "(file)", "not in the canonical format", fix))
    prefixes = tuple(f"{key}_" for key in (*sources(), *reported_sources()))
    for name in sorted(entries):
        if name.startswith(prefixes) and name not in expected:
            out.append(Problem(f"entries/{name}.json", "name", "named like a published row but not a row of the "
                               "published tables", "rename it, or " + fix))
    return out


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        return out
    return [] if a == b else [prefix or "(entry)"]


def check_submissions(submissions_dir: Path) -> list[Problem]:
    """Every ``submissions/*/submission.toml`` validates (schema only: ``model.py`` is never imported)."""
    from bmbench.submissions.schema import SUBMISSION_FILE, load_submission

    out: list[Problem] = []
    if not Path(submissions_dir).is_dir():
        return out
    for folder in sorted(Path(submissions_dir).iterdir()):
        if not folder.is_dir() or folder.name.startswith((".", "_")):
            continue
        label = f"submissions/{folder.name}/{SUBMISSION_FILE}"
        try:
            load_submission(folder)
        except BmbenchError as err:
            message = err.message.replace(str(folder / SUBMISSION_FILE), label).replace(str(folder), label)
            out.append(Problem(label, "(file)", message, "fix the submission so `bmbench submissions describe "
                               f"{folder.name}` accepts it (schema: the README's Submissions section)"))
    return out


def check_board(board: Board, *, rescore: bool = True, generated: bool = True,
                splits_dir: Path | None = None, submissions_dir: Path | None = None) -> list[Problem]:
    """All problems of a board (empty when CI may merge it); ``submissions_dir`` is validated too when given."""
    loaded, problems = load_entries(board)
    if submissions_dir is not None:
        problems += check_submissions(submissions_dir)
    splits = _Splits(splits_dir)
    by_name: dict[str, tuple[Path, Entry]] = {}
    counts = Counter(entry.name.casefold() for _, entry in loaded)
    for path, entry in loaded:
        label = f"entries/{path.name}"
        if counts[entry.name.casefold()] > 1:
            others = sorted(p.name for p, e in loaded if e.name.casefold() == entry.name.casefold() and p != path)
            problems.append(Problem(label, "name", f"{entry.name!r} is also the name of {', '.join(others)}",
                                    "give every entry a unique name"))
        elif path.stem != entry.name and name_problem(entry.name) is None:
            problems.append(Problem(label, "name", f"the file is {path.name} but the entry is named {entry.name!r}",
                                    f"rename the file to {entry.name}.json (or the entry to {path.stem!r})"))
        else:
            by_name[entry.name] = (path, entry)
        problems += check_entry(board, entry, rescore=rescore, splits=splits, label=label)
    problems += _published_checks(board, by_name)
    referenced = {e.predictions.file for _, e in loaded if e.predictions is not None}
    unreadable = {p.stem for p in board.entries_dir.glob("*.json")} - {p.stem for p, _ in loaded}
    if board.predictions_dir.is_dir():
        for path in sorted(board.predictions_dir.iterdir()):
            rel = f"predictions/{path.name}"
            if rel in referenced or path.name.startswith(".") or path.name.removesuffix(".csv.gz") in unreadable:
                continue  # referenced, hidden, or belongs to an entry that is already reported as broken
            problems.append(Problem(rel, "(file)", "no entry refers to this file",
                                    "delete it, or set the entry's predictions.file to it"))
    if generated and not problems:
        problems += _generated_checks(board, [e for _, e in loaded], splits_dir)
    return problems


def _generated_checks(board: Board, entries: list[Entry], splits_dir: Path | None) -> list[Problem]:
    from bmbench.leaderboard.build import render_files

    out = []
    for name, text in render_files(board, entries, splits_dir=splits_dir).items():
        path, rel = board.root / name, name
        if not path.is_file():
            out.append(Problem(rel, "(file)", "missing", "run `bmbench leaderboard build` and commit the result"))
        elif path.read_bytes() != text.encode("utf-8"):
            out.append(Problem(rel, "(file)", "differs from a fresh build of the entries (stale or edited by hand)",
                               "run `bmbench leaderboard build` and commit the result; never edit it by hand"))
    return out
