"""Shared builders for the leaderboard tests: real synthetic runs, a real-split run, boards in temp folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from bmbench.classes import CLASS_CODES, NUM_CLASSES
from bmbench.leaderboard.board import Board, get_board
from bmbench.leaderboard.build import build_board, import_published
from bmbench.leaderboard.entries import add_run
from bmbench.records.digest import submission_digest
from bmbench.splits.store import Split
from bmbench.submissions.registry import default_submissions_dir

_RUNS: dict[tuple[str, str, bool], Path] = {}


def synthetic_run(base: Path, submission: str = "baseline_majority", *, smoke: bool = False) -> Path:
    """A real `bmbench run` of a baseline on the SYNTHETIC data (cached per test session)."""
    from bmbench.submissions.registry import resolve_submission
    from bmbench.runs.run import RunOptions, run_submission

    key = (str(base), submission, smoke)
    if key not in _RUNS:
        out = base / ("smoke" if smoke else "full")
        options = RunOptions(data="synthetic", out=out, epochs=1 if smoke else None)
        _RUNS[key] = run_submission(resolve_submission(submission), options).run_dir
    return _RUNS[key]


def real_split_run(folder: Path, split: Split, *, accuracy: float = 0.8, seed: int = 0,
                   folds: tuple[int, ...] = (0, 1, 2, 3, 4)) -> Path:
    """A finished-run folder on the published real split (bm-cv5-v1), as `bmbench run` lays it out.

    The predictions are generated (no real images are needed to test the board); run.json has the fields
    `bmbench leaderboard add` reads, for a full, comparable run of the baseline_majority submission folder.
    """
    rng = np.random.default_rng(seed)
    lines = ["image_id,fold,pred"]
    for fold in folds:
        positions = split.members(fold, "test")
        true = split.labels[positions].astype(np.int64)
        wrong = rng.random(len(positions)) >= accuracy
        pred = np.where(wrong, rng.integers(NUM_CLASSES, size=len(positions)), true)
        lines += [f"{split.image_ids[p]},{fold},{CLASS_CODES[c]}" for p, c in zip(positions, pred, strict=True)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predictions.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    submission = default_submissions_dir() / "baseline_majority"
    run: dict[str, Any] = {
        "schema_version": 1,
        "submission": {"name": "baseline_majority", "digest": submission_digest(submission),
                       "backbone": "baseline:majority", "init": "none", "folder": str(submission)},
        "recipe_digest": "1" * 64,
        "comparable": True,
        "smoke": None,
        "seed": seed,
        "data": {"dataset": "bm", "synthetic": False, "root": "/data/BM_cytomorphology_data"},
        "split": split.provenance(),
        "device": {"type": "cuda", "name": "NVIDIA H100 80GB HBM3"},
        "versions": {"bmbench": "0.1.0"},
        "git": {"commit": "a" * 40, "dirty": False},
        "folds": [{"fold": f, "seconds": 3600.0, "device_hours": 1.0} for f in folds],
        "device_hours": float(len(folds)),
        "created_at": "2026-11-27T12:00:00+00:00",
    }
    (folder / "run.json").write_text(json.dumps(run, indent=2), encoding="utf-8")
    return folder


def demo_board(root: Path, runs: list[Path], *, predictions: bool = True) -> Board:
    """A built demo board in ``root`` holding the given synthetic runs."""
    board = get_board("demo", root)
    for run_dir in runs:
        add_run(run_dir, board, status="reproduced", with_predictions=predictions, replace=True)
    build_board(board)
    return board


def main_board(root: Path, real_runs: list[tuple[Path, str]] = (), *, predictions: bool = True) -> Board:
    """A built main board in ``root``: the paper's rows plus real-split runs (path, entry name)."""
    board = get_board("main", root)
    import_published(board)
    for run_dir, name in real_runs:
        add_run(run_dir, board, name=name, code_url="https://example.org/code", with_predictions=predictions,
                replace=True)
    build_board(board)
    return board


def copy_board(board: Board, root: Path) -> Board:
    """An independent copy of a board (to break it without touching the original)."""
    shutil.copytree(board.root, root)
    return get_board(board.kind, root)
