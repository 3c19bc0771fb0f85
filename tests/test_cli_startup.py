"""`bmbench --help` and `bmbench score` start fast (issue 14): they import neither torch nor OpenCV, `--help`
imports no command module, and a plain `bmbench score` skips Typer's parser (and so pydantic) with the same
result as through Typer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from conftest import PredsWriter
from typer.testing import CliRunner

PROBE = """
import sys
from typer.testing import CliRunner
from bmbench.cli.main import app
result = CliRunner().invoke(app, sys.argv[1:])
heavy = sorted(m for m in ("torch", "torchvision", "cv2", "timm", "sklearn", "datasets") if m in sys.modules)
print("HEAVY:" + ",".join(heavy))
print("EXIT:" + str(result.exit_code))
"""


def _probe(*args: str) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True)
    return out.stdout


def test_help_imports_no_heavy_packages() -> None:
    out = _probe("--help")
    assert "HEAVY:\n" in out and "EXIT:0" in out


def test_score_imports_no_heavy_packages(write_preds: PredsWriter) -> None:
    path: Path = write_preds(folds=(0,))
    out = _probe("score", str(path), "--split", "synthetic-cv5-v1")
    assert "HEAVY:\n" in out and "EXIT:0" in out


def test_console_script_version() -> None:
    exe = Path(sys.executable).with_name("bmbench")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("bmbench ")


# --- issue 14: lazy command modules, and plain `bmbench score` without Typer's parser -----------------------

MODULES_AT_EXIT = """
import atexit, sys
atexit.register(lambda: print("MODULES:" + " ".join(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["bmbench", *sys.argv[1:]]
from bmbench.cli.main import run
run()
"""
COMMAND_MODULES = {f"bmbench.cli.{m}" for m in ("bench_cmd", "classes_cmd", "data_cmd", "embed_cmd", "explain_cmd",
                                                  "grid_cmd", "leaderboard_cmd", "lrfind_cmd", "pretrain_cmd",
                                                  "probe_cmd", "run_cmd", "score_cmd", "splits_cmd",
                                                  "submissions_cmd")}


def _modules_of(*args: str) -> set[str]:
    """The modules a whole `bmbench ...` process (the console script's entry point) has imported at exit."""
    done = subprocess.run([sys.executable, "-c", MODULES_AT_EXIT, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stderr.rpartition("MODULES:")[2].split())


def test_help_imports_no_command_module_and_no_numpy() -> None:
    modules = _modules_of("--help")
    assert not modules & COMMAND_MODULES
    assert not {m for m in modules if m.split(".")[0] in ("numpy", "pandas", "pydantic", "torch")}


def test_score_imports_only_what_scoring_uses(write_preds: PredsWriter, tmp_path: Path) -> None:
    path = write_preds(folds=(0, 1))
    modules = _modules_of("score", str(path), "--split", "synthetic-cv5-v1")
    assert modules & COMMAND_MODULES == {"bmbench.cli.score_cmd"}
    unused = {m for m in modules if m.split(".")[0] in ("pydantic", "pandas", "torch", "sklearn", "markdown_it", "cv2")
              or m in ("typer.rich_utils", "bmbench.records.score") or m.startswith(("bmbench.runs", "bmbench.engine"))}
    assert not unused, f"bmbench score imported {sorted(unused)}"
    with_json = _modules_of("score", str(path), "--split", "synthetic-cv5-v1", "--json", str(tmp_path / "s.json"))
    assert "bmbench.records.score" in with_json  # the document written is validated by its model


def _eager_app() -> Any:
    """The command tree registered eagerly, as bmbench.cli.main did before it became lazy (the reference)."""
    from bmbench.cli import main as cli_main

    eager = typer.Typer(name="bmbench", help=cli_main.app.info.help, no_args_is_help=True,
                        pretty_exceptions_show_locals=False)
    eager.callback()(cli_main.main)
    for entry in cli_main.COMMANDS:
        target = entry.target_object()
        if isinstance(target, typer.Typer):
            eager.add_typer(target, name=entry.name)
        else:
            eager.command(entry.name)(target)
    return eager


def _command_paths(app: Any) -> list[list[str]]:
    root = typer.main.get_command(app)
    ctx = root.make_context("bmbench", [], resilient_parsing=True)
    paths = []
    for name in root.list_commands(ctx):
        command = root.get_command(ctx, name)
        paths.append([name])
        paths += [[name, sub] for sub in getattr(command, "commands", {})]
    return paths


def test_lazy_tree_equals_the_eager_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same commands, same one-line helps (the table's), same help of every command and sub-command."""
    from bmbench.cli.lazy import LazyGroup
    from bmbench.cli.main import app

    runner = CliRunner()
    eager = _eager_app()
    listing = runner.invoke(app, ["--help"], terminal_width=200).output
    assert listing == runner.invoke(eager, ["--help"], terminal_width=200).output
    monkeypatch.setattr(LazyGroup, "listing_stubs", False)  # the loaded commands' own helps
    assert runner.invoke(app, ["--help"], terminal_width=200).output == listing
    assert _command_paths(app) == _command_paths(eager)
    for path in _command_paths(eager):
        ours, theirs = (runner.invoke(a, [*path, "--help"], terminal_width=200) for a in (app, eager))
        assert (ours.exit_code, ours.output) == (theirs.exit_code, theirs.output), path


SCORE_ARGS_PLAIN = [
    ["P", "--split", "s"], ["--split=s", "P"], ["P"], ["P", "--json", "-"],
    ["P", "--json=out.json", "--require-all-folds"], ["--require-all-folds", "P", "--split", "x", "--json", "o"],
]
SCORE_ARGS_TYPER = [  # not plain: Typer parses these (and reports the usage errors)
    [], ["P", "Q"], ["P", "--split"], ["P", "--split", "a", "--split", "b"], ["P", "--nope"], ["--help"],
    ["P", "--require-all-folds=1"], ["P", "--", "x"], ["-x"], ["P", "--split", "--json"], ["P", "--split="], [""],
    ["P", "-h"], ["P", "--json", "-x"],
]


def _typer_params(args: list[str]) -> dict[str, Any]:
    """What Typer passes the score function for ``bmbench score ARGS``."""
    from bmbench.cli.main import app

    root = typer.main.get_command(app)
    ctx = root.make_context("bmbench", ["score", *args])
    command = root.get_command(ctx, "score")
    return dict(command.make_context("score", list(args), parent=ctx).params)


@pytest.mark.parametrize("args", SCORE_ARGS_PLAIN, ids=" ".join)
def test_plain_score_parse_equals_typer(args: list[str]) -> None:
    from bmbench.cli.plain import parse
    from bmbench.cli.score_cmd import score

    assert parse(score, args) == _typer_params(args)


@pytest.mark.parametrize("args", SCORE_ARGS_TYPER, ids=lambda a: " ".join(a) or "nothing")
def test_unusual_score_invocations_go_to_typer(args: list[str]) -> None:
    from bmbench.cli.plain import parse
    from bmbench.cli.score_cmd import score

    assert parse(score, args) is None


def test_plain_parse_refuses_commands_with_typer_only_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from bmbench.cli.plain import parse, plain_call
    from bmbench.cli.score_cmd import score

    def checked(path: Path = typer.Argument(..., exists=True)) -> None:
        """An argument Typer checks."""

    def counted(n: int = typer.Option(1, "--n")) -> None:
        """An option Typer converts."""

    assert parse(checked, ["P"]) is None
    assert parse(counted, ["--n", "2"]) is None
    assert plain_call(["score", "P"], {"score": lambda: score}) is not None
    monkeypatch.setenv("_BMBENCH_COMPLETE", "complete_bash")  # shell completion is Typer's
    assert plain_call(["score", "P"], {"score": lambda: score}) is None


@pytest.mark.parametrize("valid", [True, False], ids=["valid", "invalid"])
def test_plain_score_run_equals_typer(write_preds: PredsWriter, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch, valid: bool) -> None:
    """Same output, exit status and score.json whether `bmbench score` goes through Typer or not."""
    from bmbench.cli import main as cli_main

    path = write_preds(folds=(0, 2), mutate=None if valid else (lambda lines: lines[:-1]))
    args = ["score", str(path), "--split", "synthetic-cv5-v1", "--json", str(tmp_path / "plain.json")]
    monkeypatch.setattr(sys, "argv", ["bmbench", *args])
    monkeypatch.setenv("COLUMNS", "120")
    with pytest.raises(SystemExit) as done:
        cli_main.run()
    plain = capsys.readouterr()
    typer_args = [*args[:-1], str(tmp_path / "typer.json")]
    result = CliRunner().invoke(cli_main.app, typer_args, env={"COLUMNS": "120"})
    assert done.value.code == result.exit_code == (0 if valid else 2)
    assert plain.out.replace("plain.json", "typer.json") == result.stdout
    assert plain.err == result.stderr
    if valid:
        assert (tmp_path / "plain.json").read_bytes() == (tmp_path / "typer.json").read_bytes()
