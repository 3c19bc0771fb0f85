"""The leaderboard never runs submitted code: `add`, `build` and `check` read records only (issue 9).

A submission whose ``model.py`` writes a marker file when imported has a finished run; ``leaderboard add``,
``build`` and ``check`` (which also validates every submission.toml) run on it in a fresh process, and the
marker never appears. The positive control, ``bmbench submissions describe`` (which does build the model),
shows that the marker mechanism works, so the test can fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import header

from bmbench.classes import CLASS_CODES, NUM_CLASSES
from bmbench.records.digest import submission_digest
from bmbench.records.score import write_score
from bmbench.scoring.score import score_file
from bmbench.splits.store import Split

MODEL_PY = """
from pathlib import Path
import os
Path(os.environ["MARKER"]).write_text("model.py was imported\\n")

import torch


def build_model(num_classes: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))
"""


def _submission(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "submission.toml").write_text(
        'name = "marker_cnn"\nauthors = ["tests"]\ndescription = "writes a marker file when model.py is imported"\n'
        'backbone = "model.py"\ninit = "random"\nlicence = "MIT"\n', encoding="utf-8")
    (folder / "model.py").write_text(MODEL_PY, encoding="utf-8")
    return folder


def _finished_run(run_dir: Path, submission: Path, split: Split) -> Path:
    """A run folder as `bmbench run` leaves it (predictions, score.json, run.json), made without running."""
    rng = np.random.default_rng(3)
    lines = [header(probs=True)]
    for fold in range(split.folds):
        for p in split.members(fold, "test"):
            probs = rng.dirichlet(np.ones(NUM_CLASSES))
            pred = int(split.labels[p]) if rng.random() < 0.7 else int(probs.argmax())
            probs[pred] += 1.0
            probs /= probs.sum()
            lines.append(f"{split.image_ids[p]},{fold},{CLASS_CODES[pred]}," + ",".join(f"{x:.6f}" for x in probs))
    run_dir.mkdir(parents=True)
    (run_dir / "predictions.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_score(run_dir / "score.json", score_file(run_dir / "predictions.csv", split.name))
    run = {
        "schema_version": 2, "protocol": "finetune", "parameters": 1234,
        "submission": {"name": "marker_cnn", "digest": submission_digest(submission), "backbone": "model.py",
                       "init": "random", "folder": str(submission)},
        "recipe_digest": "1" * 64, "comparable": False, "smoke": None, "seed": 0,
        "data": {"dataset": "synthetic", "synthetic": True, "root": "/tmp/synthetic"},
        "split": split.provenance(), "device": {"type": "cpu"}, "versions": {"bmbench": "0.1.0"},
        "git": {"commit": None, "dirty": None},
        "folds": [{"fold": f, "seconds": 10.0, "device_hours": 0.0} for f in range(split.folds)],
        "device_hours": 0.0, "created_at": "2026-12-01T12:00:00+00:00",
    }
    (run_dir / "run.json").write_text(json.dumps(run, indent=2), encoding="utf-8")
    return run_dir


def _bmbench(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bmbench", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_add_build_check_never_import_model_py(tmp_path: Path, synthetic_split: Split) -> None:
    submissions = tmp_path / "submissions"
    submission = _submission(submissions / "marker_cnn")
    run_dir = _finished_run(tmp_path / "runs" / "marker_cnn" / "synthetic", submission, synthetic_split)
    marker = tmp_path / "MARKER"
    env = {**os.environ, "MARKER": str(marker), "BMBENCH_SUBMISSIONS": str(submissions)}
    board = tmp_path / "board"
    for args in (["leaderboard", "add", str(run_dir), "--board", "demo", "--dir", str(board), "--predictions"],
                 ["leaderboard", "build", "--board", "demo", "--dir", str(board)],
                 ["leaderboard", "check", "--board", "demo", "--dir", str(board)]):
        out = _bmbench(*args, env=env)
        assert out.returncode == 0, f"{args}: {out.stdout}{out.stderr}"
        assert not marker.exists(), f"`bmbench {' '.join(args[:2])}` imported the submission's model.py"
    entry = json.loads((board / "entries" / "marker_cnn.json").read_text(encoding="utf-8"))
    assert entry["parameters"] == 1234  # the count came from run.json, not from building the model
    # positive control: a command that must build the model does import model.py, so the marker works
    out = _bmbench("submissions", "describe", str(submission), env=env)
    assert marker.exists(), out.stdout + out.stderr
