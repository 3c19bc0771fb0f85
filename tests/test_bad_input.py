"""The bad-input promise (issue 12), case by case through the CLI: exit status, a message naming the thing,
no traceback, nothing left behind.

Exit-code policy (bmbench.errors): 0 ok, 1 the run itself failed, 2 invalid input or usage, 130 interrupted.
Most cases run in-process with Typer's CliRunner; the FIFO (which must not hang) and the kill-mid-write
cases run in subprocesses.

Issue 12's 22 failures, and the test that covers each:

* scorer on a symlink loop, a symlink to /dev/zero, an over-long quoted field, invalid UTF-8 in the slow
  path: ``test_scorer_refuses_special_and_malformed_files``; a FIFO: ``test_scorer_refuses_a_fifo_without_hanging``;
* ``--json`` naming a folder, a path under a file, a read-only folder: ``test_json_output_paths_are_checked_first``
  (and ``..._in_every_command``); ``leaderboard add --dir`` naming a file: ``test_leaderboard_add_dir_naming_a_file``;
* unreadable submission.toml: ``test_unreadable_submission_toml``; unreadable or 100,000-deep entry JSON:
  ``test_deep_and_unreadable_entries``; a confusion cell of 10^30 in check and build, ``device_hours: Infinity``,
  ``parameters: 10**40``, ``date: "2026-99-99"``: ``test_tampered_entries_are_refused_by_check_and_build``;
* ``lr = -1``, ``lr = nan``, ``lr = 0`` (nothing left behind): ``test_recipe_bounds``; a model.py that raises at
  import, has a syntax error, raises in build_model, or exits: ``test_failing_model_py_is_reported_as_the_users_code``;
  SystemExit(0) and ``leaderboard add``: ``test_leaderboard_add_never_runs_model_py``;
* a PNG renamed .jpg: ``test_png_named_jpg_is_reported``;
* exit codes (2 for every refusal, ``score --split nonexistent``, ``splits verify``):
  ``test_every_command_refuses_with_exit_2``, ``test_unknown_split_and_usage_errors_exit_2``,
  ``test_splits_verify_refuses_tampered_files_with_exit_2``, ``test_crash_interrupt_and_debug``;
* temporaries of killed writers (board, run resume, data cache) and empty folders of refused runs:
  ``test_killed_writers_leave_nothing_after_the_next_command``,
  ``test_data_cache_removes_a_killed_writers_temporaries_even_when_it_reuses``, ``test_recipe_bounds``.

The mutation properties (predictions, entries, submission.toml) are tests/test_properties.py.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bmbench import atomic, safe_io
from bmbench.cli.main import app
from bmbench.leaderboard.board import get_board
from conftest import header, prediction_rows

runner = CliRunner()
SPLIT = "synthetic-cv5-v1"
ENTRY_NAME = "tampered"
RAW_TRACEBACK = "Traceback (most recent call last)"


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"bmbench {' '.join(args)} raised {result.exception!r}:\n{result.output}")
    return result.exit_code, result.output


def _refused(code: int, output: str, *fragments: str, status: int = 2) -> None:
    flat = " ".join(output.split())
    assert code == status, output
    assert RAW_TRACEBACK not in output, output  # (a failing model.py shows "Traceback (your code only)")
    for fragment in fragments:
        assert " ".join(fragment.split()) in flat, (fragment, output)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")) if folder.exists() else []


# --- the scorer on special files --------------------------------------------------------------------------


@pytest.fixture
def valid_preds(tmp_path: Path, synthetic_split) -> Path:
    lines, _, _ = prediction_rows(synthetic_split, (0,), probs=False)
    path = tmp_path / "preds.csv"
    path.write_text("\n".join([header(False), *lines]) + "\n", encoding="utf-8")
    return path


def _loop(tmp: Path) -> Path:
    link = tmp / "loop.csv"
    link.symlink_to(link)
    return link


def _dev_zero(tmp: Path) -> Path:
    link = tmp / "zero.csv"
    link.symlink_to("/dev/zero")
    return link


def _long_quoted(tmp: Path) -> Path:
    path = tmp / "long.csv"
    path.write_text("image_id,fold,pred\nABE_00001,0,\"" + "x" * 300_000 + "\n", encoding="utf-8")
    return path


def _bad_utf8_in_slow_path(tmp: Path) -> Path:
    path = tmp / "bad_utf8.csv"
    path.write_bytes(b"image_id,fold,pred\nABE_00001,0,ABE,extra,fields\nABE_00002,0,\xff\xfe\n")
    return path


def _folder(tmp: Path) -> Path:
    (tmp / "adir.csv").mkdir()
    return tmp / "adir.csv"


@pytest.mark.parametrize(("make", "fragment"), [
    (_loop, "symlink loop"),
    (_dev_zero, "is a device, not a regular file"),
    (_long_quoted, "line 2"),
    (_bad_utf8_in_slow_path, "UTF-8"),
    (_folder, "is a folder"),
], ids=["symlink-loop", "dev-zero", "csv-field-limit", "utf8-in-error-path", "folder"])
def test_scorer_refuses_special_and_malformed_files(tmp_path: Path, make: Callable[[Path], Path],
                                                    fragment: str) -> None:
    path = make(tmp_path)
    out = tmp_path / "out" / "score.json"
    code, output = _cli("score", str(path), "--split", SPLIT, "--json", str(out))
    _refused(code, output, str(path), fragment)
    assert not out.exists()


def test_scorer_refuses_a_fifo_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", "bmbench.cli.main", "score", str(fifo), "--split", SPLIT],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    _refused(done.returncode, done.stderr, str(fifo), "FIFO")


def test_size_limit_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text("[" + "0," * 600 + "0]")
    with pytest.raises(safe_io.UnsafeInputError, match="larger than any valid one"):
        safe_io.read_json(path, what="record", max_bytes=1000)


def test_unknown_split_and_usage_errors_exit_2(valid_preds: Path) -> None:
    _refused(*_cli("score", str(valid_preds), "--split", "nonexistent"), "unknown split 'nonexistent'")
    code, output = _cli("score", str(valid_preds), "--no-such-option")
    assert code == 2 and "Traceback" not in output


# --- output paths, checked before any work starts -------------------------------------------------------------


def test_json_output_paths_are_checked_first(tmp_path: Path, valid_preds: Path) -> None:
    (tmp_path / "folder.json").mkdir()
    _refused(*_cli("score", str(valid_preds), "--split", SPLIT, "--json", str(tmp_path / "folder.json")),
             "--json", "is a folder")
    _refused(*_cli("score", str(valid_preds), "--split", SPLIT, "--json", str(valid_preds / "x.json")),
             "--json", "is a file, so nothing can be created under it")
    _refused(*_cli("score", str(valid_preds), "--split", SPLIT, "--json", "/proc/bmbench-score.json"),
             "--json", "not writable")
    if os.geteuid() != 0:  # root writes anywhere; /proc above covers it
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        _refused(*_cli("score", str(valid_preds), "--split", SPLIT, "--json", str(locked / "s.json")),
                 "not writable")
        assert list(locked.iterdir()) == []


def test_leaderboard_add_dir_naming_a_file(tmp_path: Path, valid_preds: Path) -> None:
    _refused(*_cli("leaderboard", "add", str(tmp_path), "--board", "demo", "--dir", str(valid_preds)),
             "--dir", "is a file, not a folder")


# --- unreadable or tampered files -----------------------------------------------------------------------------


def _deny(monkeypatch: pytest.MonkeyPatch, denied: Path) -> None:
    """Make ``denied`` unreadable: chmod for a normal user, a refusing os.open for root (who reads anything)."""
    if os.geteuid() != 0:
        denied.chmod(0)
        return
    real_open = os.open

    def fake_open(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if Path(os.fsdecode(path)).resolve() == denied.resolve():  # type: ignore[arg-type]
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(safe_io.os, "open", fake_open)


def _submission(base: Path, quick_demo: Path, *, recipe: str | None = None, model: str | None = None) -> Path:
    folder = base / "subs" / "demo_cnn"
    shutil.copytree(quick_demo, folder)
    if recipe is not None:  # "old -> new" replaces a line of the [recipe] table
        old, _, new = recipe.partition(" -> ")
        text = (folder / "submission.toml").read_text()
        assert old in text
        (folder / "submission.toml").write_text(text.replace(old, new))
    if model is not None:
        (folder / "model.py").write_text(model)
    return folder


def test_unreadable_submission_toml(tmp_path: Path, quick_demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _submission(tmp_path, quick_demo)
    _deny(monkeypatch, folder / "submission.toml")
    _refused(*_cli("submissions", "describe", str(folder)), str(folder / "submission.toml"), "permission denied")


def _board_with(tmp_path: Path, text: str) -> Path:
    board = tmp_path / "board"
    (board / "entries").mkdir(parents=True)
    (board / "entries" / f"{ENTRY_NAME}.json").write_text(text, encoding="utf-8")
    return board


@pytest.fixture
def entry(tmp_path: Path, synthetic_split) -> dict:
    """A valid demo-board entry, made by `leaderboard add` from a generated run folder (no images needed)."""
    from leaderboard_helpers import real_split_run

    from bmbench.leaderboard.entries import add_run

    run_dir = real_split_run(tmp_path / "run" / "baseline_majority" / "synthetic", synthetic_split)
    path = add_run(run_dir, get_board("demo", tmp_path / "source-board"), status="reproduced", name=ENTRY_NAME)
    return json.loads(path.read_text())


def _tamper(doc: dict, dotted: str, value: object) -> dict:
    doc = json.loads(json.dumps(doc))
    *parents, last = dotted.split(".")
    node = doc
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(last) if isinstance(node, list) else last] = value
    return doc


@pytest.mark.parametrize(("dotted", "value", "fragment"), [
    ("compute.device_hours", float("inf"), "Infinity"),
    ("compute.device_hours", 1e300, "compute.device_hours"),
    ("parameters", 10**40, "too large"),
    ("parameters", 10**15, "parameters"),
    ("date", "2026-99-99", "not a real calendar date"),
    ("results.folds.0.confusion.0.0", 10**30, "too large"),
    ("results.folds.0.confusion.0.0", 10**12, "confusion"),
], ids=["inf-hours", "huge-hours", "params-1e40", "params-1e15", "bad-date", "cell-1e30", "cell-1e12"])
def test_tampered_entries_are_refused_by_check_and_build(tmp_path: Path, entry: dict, dotted: str, value: object,
                                                         fragment: str) -> None:
    board = _board_with(tmp_path, json.dumps(_tamper(entry, dotted, value)))
    for command in ("check", "build"):
        code, output = _cli("leaderboard", command, "--board", "demo", "--dir", str(board))
        _refused(code, output, f"entries/{ENTRY_NAME}.json", fragment)
    assert not (board / "README.md").exists() and not (board / "index.html").exists()


def test_deep_and_unreadable_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    board = _board_with(tmp_path, "[" * 100_000 + "]" * 100_000)
    _refused(*_cli("leaderboard", "check", "--board", "demo", "--dir", str(board)),
             f"entries/{ENTRY_NAME}.json", "nested deeper than")
    (board / "entries" / f"{ENTRY_NAME}.json").write_text("{}")
    _deny(monkeypatch, board / "entries" / f"{ENTRY_NAME}.json")
    _refused(*_cli("leaderboard", "check", "--board", "demo", "--dir", str(board)),
             f"entries/{ENTRY_NAME}.json", "permission denied")


# --- recipes and model.py: refused with nothing left behind ---------------------------------------------------


@pytest.mark.parametrize(("recipe", "fragment"), [
    ("lr = 0.05 -> lr = -1", "recipe.lr"), ("lr = 0.05 -> lr = nan", "recipe.lr"), ("lr = 0.05 -> lr = 0", "recipe.lr"),
    ("lr = 0.05 -> batch_size = 0", "recipe.batch_size"), ("epochs = 3 -> epochs = 0", "recipe.epochs"),
    ("lr = 0.05 -> weight_decay = inf", "recipe.weight_decay"), ("epochs = 3 -> epochs = 100000000", "recipe.epochs"),
], ids=["lr-negative", "lr-nan", "lr-zero", "batch-0", "epochs-0", "wd-inf", "epochs-huge"])
def test_recipe_bounds(tmp_path: Path, quick_demo: Path, recipe: str, fragment: str) -> None:
    folder = _submission(tmp_path, quick_demo, recipe=recipe)
    out = tmp_path / "runs"
    code, output = _cli("run", str(folder), "--data", "synthetic", "--out", str(out), "--device", "cpu")
    _refused(code, output, str(folder / "submission.toml"), fragment)
    assert _files(out) == []


MODELS = {
    "import-error": ("import torch\nimport no_such_module_here\n", "line 2", "ModuleNotFoundError"),
    "syntax-error": ("def build_model(num_classes)\n    pass\n", "line 1", "syntax error"),
    "raises": ("def build_model(num_classes):\n    raise ValueError('no model today')\n", "line 2",
               "ValueError: no model today"),
    "system-exit": ("import sys\n\ndef build_model(num_classes):\n    sys.exit(0)\n", "line 4", "SystemExit(0)"),
    "keyboard-interrupt": ("def build_model(num_classes):\n    raise KeyboardInterrupt\n", "line 2",
                           "KeyboardInterrupt"),
}


@pytest.mark.parametrize("case", sorted(MODELS))
def test_failing_model_py_is_reported_as_the_users_code(tmp_path: Path, quick_demo: Path, case: str) -> None:
    source, line, fragment = MODELS[case]
    folder = _submission(tmp_path, quick_demo, model=source)
    _refused(*_cli("submissions", "describe", str(folder)), f"{folder / 'model.py'}, {line}", fragment)
    out = tmp_path / "runs"
    code, output = _cli("run", str(folder), "--data", "synthetic", "--out", str(out), "--device", "cpu",
                        "--epochs", "1", "--max-steps", "1", "--folds", "0")
    _refused(code, output, f"{folder / 'model.py'}, {line}", fragment)
    assert "bmbench/" not in output.split("Traceback (your code only)")[-1]  # the user's frames only
    assert [p for p in _files(out) if p.is_file()] == [] and not (out / "demo_cnn" / "synthetic" / "fold0").exists()


# --- data verify: the format by magic bytes -------------------------------------------------------------------


def test_png_named_jpg_is_reported(tmp_path: Path) -> None:
    from PIL import Image

    from bmbench.data.synthetic import generate_synthetic

    root = generate_synthetic(tmp_path, seed=3, counts={"ABE": 2}, workers=1)
    target = sorted((root / "ABE").rglob("*.jpg"))[0]
    Image.open(target).convert("RGB").save(target, format="PNG")  # PNG bytes under the .jpg name
    code, output = _cli("data", "verify", "--data", str(root), "--workers", "1")
    flat = " ".join(output.split())
    assert "Traceback" not in output
    assert f"{target.stem}: .jpg file holds PNG" in flat, output
    # accepted with a notice (README); the partial set fails only for its missing images
    assert code == 2 and "Notice: the content is not the format the extension says" in flat
    assert "undecodable" not in flat.lower()


# --- the policy itself: crashes, interrupts, --debug ----------------------------------------------------------


def test_crash_interrupt_and_debug(valid_preds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bmbench.scoring.score as score_module

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("an unforeseen bug\nsecond line")

    monkeypatch.setattr(score_module, "score_file", crash)
    code, output = _cli("score", str(valid_preds), "--split", SPLIT)
    assert code == 1 and "bmbench crashed: RuntimeError: an unforeseen bug (rerun with --debug" in " ".join(
        output.split()) and "Traceback" not in output and "second line" not in output
    code, output = _cli("--debug", "score", str(valid_preds), "--split", SPLIT)
    assert code == 1 and "Traceback" in output and "bmbench crashed" in output
    monkeypatch.setenv("BMBENCH_DEBUG", "1")
    from bmbench.cli.common import set_debug

    set_debug(False)
    code, output = _cli("score", str(valid_preds), "--split", SPLIT)  # BMBENCH_DEBUG=1 alone shows it too
    assert code == 1 and "Traceback" in output
    monkeypatch.delenv("BMBENCH_DEBUG")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(score_module, "score_file", interrupted)
    code, output = _cli("score", str(valid_preds), "--split", SPLIT)
    assert code == 130 and "interrupted" in output and "Traceback" not in output


# --- temporary files of killed writers ------------------------------------------------------------------------

_WRITER = "import sys; from bmbench import atomic; atomic.write_text(sys.argv[1], 'x' * 1000)"


def _kill_mid_write(target: Path) -> Path:
    """Start a writer paused inside atomic_open, SIGKILL it there; return the temporary file it left."""
    target.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)],
                            env={**os.environ, atomic.PAUSE_ENV: "120"})
    deadline = time.monotonic() + 60
    pattern = f".{target.name}{atomic.TMP_MARK}{proc.pid}-*"
    while not list(target.parent.glob(pattern)):
        assert proc.poll() is None and time.monotonic() < deadline, "the writer never reached its pause"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    (left,) = target.parent.glob(pattern)
    assert not target.exists()
    return left


def test_killed_writers_leave_nothing_after_the_next_command(tmp_path: Path) -> None:
    board = tmp_path / "board"
    left = _kill_mid_write(board / "index.html")
    live = board / f".README.md{atomic.TMP_MARK}{os.getpid()}-abcd"  # this process is alive: kept
    live.write_text("in progress")
    code, output = _cli("leaderboard", "build", "--board", "demo", "--dir", str(board))
    assert code == 0, output
    assert not left.exists() and live.exists()
    live.unlink()
    assert not [p for p in _files(board) if atomic.TMP_MARK in p.name]

    runs = tmp_path / "runs"
    fold0 = runs / "baseline_majority" / "synthetic" / "fold0"
    left = _kill_mid_write(fold0 / "predictions.csv")
    code, output = _cli("run", "baseline_majority", "--data", "synthetic", "--out", str(runs), "--folds", "0",
                        "--resume")
    assert code == 0, output
    assert not left.exists() and not [p for p in _files(runs) if atomic.TMP_MARK in p.name]


# --- one exit status for every refusal, in every command ----------------------------------------------------

REFUSALS = {  # command line -> a fragment of the message; every one is a refusal of input: exit 2
    "run": (["run", "no_such_submission", "--data", "synthetic"], "no_such_submission"),
    "run-folds": (["run", "baseline_majority", "--data", "synthetic", "--folds", "7"], "--folds must be between"),
    "describe": (["submissions", "describe", "no_such_submission"], "no_such_submission"),
    "data-verify": (["data", "verify", "--data", "/nonexistent/bm"], "/nonexistent/bm"),
    "data-stats": (["data", "stats", "--data", "/nonexistent/bm"], "/nonexistent/bm"),
    "data-cache": (["data", "cache", "--data", "/nonexistent/bm"], "/nonexistent/bm"),
    "merge": (["merge", "/nonexistent/run", "--out", "OUT"], "/nonexistent/run"),
    "grid": (["grid", "--dry-run", "--data", "synthetic", "--folds", "9", "--out", "OUT"], "--folds must be between"),
    "lr-find": (["lr-find", "baseline_majority", "--data", "synthetic", "--out", "OUT"], "no learning rate"),
    "explain": (["explain", "OUT", "--class", "FGC"], "run.json is missing"),
    "embed": (["embed", "no_such_submission", "--data", "synthetic"], "no_such_submission"),
    "leaderboard-show": (["leaderboard", "show", "--format", "xml"], "--format 'xml'"),
    "leaderboard-add": (["leaderboard", "add", "OUT", "--board", "demo", "--dir", "OUT/board"], "run.json is missing"),
    "classes-json": (["classes", "--json", "/proc/bmbench-classes.json"], "not writable"),
    "score-folds": (["score", "PREDS", "--split", SPLIT, "--require-all-folds"], "no predictions for fold(s) 1, 2, 3, 4"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_every_command_refuses_with_exit_2(tmp_path: Path, valid_preds: Path, case: str) -> None:
    args, fragment = REFUSALS[case]
    args = [str(valid_preds) if a == "PREDS" else a.replace("OUT", str(tmp_path / "out")) for a in args]
    (tmp_path / "out").mkdir()
    _refused(*_cli(*args), fragment)
    assert [p for p in _files(tmp_path / "out") if p.is_file()] == []


def test_splits_verify_refuses_tampered_files_with_exit_2(tmp_path: Path) -> None:
    from bmbench.splits.store import default_splits_dir

    folder = tmp_path / "splits"
    shutil.copytree(default_splits_dir(), folder, symlinks=False)
    path = folder / "synthetic-cv5-v1.csv"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace("test", "val", 1) if "test" in lines[1] else lines[1].replace("train", "test", 1)
    path.write_text("\n".join(lines) + "\n")
    code, output = _cli("splits", "verify", "--dir", str(folder))
    _refused(code, output, "synthetic-cv5-v1", "do not match the algorithm")
    _refused(*_cli("splits", "verify", "--dir", str(valid_path := tmp_path / "missing")), str(valid_path))


@pytest.mark.parametrize("args", [["classes"], ["submissions", "describe", "baseline_majority"],
                                  ["score", "PREDS", "--split", SPLIT]], ids=["classes", "describe", "score"])
def test_json_output_paths_are_checked_in_every_command(tmp_path: Path, valid_preds: Path, args: list[str]) -> None:
    args = [str(valid_preds) if a == "PREDS" else a for a in args]
    (tmp_path / "folder.json").mkdir()
    _refused(*_cli(*args, "--json", str(tmp_path / "folder.json")), "--json", "is a folder")
    _refused(*_cli(*args, "--json", str(valid_preds / "x.json")), "--json", "is a file")


def test_leaderboard_add_never_runs_model_py(tmp_path: Path, quick_demo: Path, synthetic_split) -> None:
    """A model.py that exits (or does anything) at import cannot make `leaderboard add` pass or fail: the
    leaderboard never imports submitted code, it reads the run's records."""
    from leaderboard_helpers import real_split_run

    from bmbench.records.digest import submission_digest

    marker = tmp_path / "model-py-ran"
    folder = _submission(tmp_path, quick_demo, model=f"import sys\nopen({str(marker)!r}, 'w').close()\nsys.exit(0)\n")
    run_dir = real_split_run(tmp_path / "runs" / "demo_cnn" / "synthetic", synthetic_split, folds=(0,))
    run = json.loads((run_dir / "run.json").read_text())
    run["submission"] = {"name": "demo_cnn", "digest": submission_digest(folder), "backbone": "model.py",
                         "init": "random", "folder": str(folder)}
    run["parameters"] = 12345
    (run_dir / "run.json").write_text(json.dumps(run))
    board = tmp_path / "board"
    code, output = _cli("leaderboard", "add", str(run_dir), "--board", "demo", "--dir", str(board),
                        "--submission", str(folder))
    assert code == 0, output
    assert json.loads((board / "entries" / "demo_cnn.json").read_text())["parameters"] == 12345
    assert not marker.exists()


def test_data_cache_removes_a_killed_writers_temporaries_even_when_it_reuses(tmp_path: Path) -> None:
    from bmbench.data.cache import cache_folder, rows_for_index
    from bmbench.data.layout import scan_data
    from bmbench.data.synthetic import generate_synthetic
    from bmbench.splits.store import load_split

    root = generate_synthetic(tmp_path / "data", seed=5, counts={"ABE": 3}, workers=1)
    args = ("data", "cache", "--data", str(root), "--all-images", "--workers", "1")
    code, output = _cli(*args)
    assert code == 0, output
    folder = cache_folder(rows_for_index(scan_data(root), load_split(SPLIT)))
    assert folder.is_dir()
    left = _kill_mid_write(folder / "rebuilt.npy")  # a writer of the cache folder, killed mid-write
    code, output = _cli(*args)  # the cache is up to date: reused, and the temporary removed
    assert code == 0 and "up to date (reused)" in output, output
    assert not left.exists()
