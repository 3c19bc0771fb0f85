"""One CLI (issue 13): the README's command table equals the command tree `bmbench --help` shows, every option
the README names exists, `--json PATH|-` and `--folds 0,3` mean the same everywhere, `bmbench score` finds a
run's split and names missing folds, and `bmbench classes` prints the classes with their counts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from bmbench.classes import CLASS_CODES, cell_classes
from bmbench.cli.main import app
from conftest import header, prediction_rows

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
runner = CliRunner()
SPLIT = "synthetic-cv5-v1"


# --- the command tree against the README ---------------------------------------------------------------------


def _tree() -> dict[str, Any]:
    """Every visible leaf command, by its space-separated path, as Click sees it (what --help lists)."""
    root = typer.main.get_command(app)
    ctx = root.make_context("bmbench", [], resilient_parsing=True)
    out: dict[str, Any] = {}

    def walk(command: Any, path: tuple[str, ...]) -> None:
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if not sub.hidden:
                    walk(sub, (*path, name))
        else:
            out[" ".join(path)] = command

    walk(root, ())
    return out


def _visible_options(command: Any) -> set[str]:
    return {opt for p in command.params if not getattr(p, "hidden", False)
            for opt in (*p.opts, *p.secondary_opts) if opt.startswith("-")}


GLOBAL_OPTIONS = {"--help", "--version", "--root", "--debug", "--install-completion", "--show-completion"}


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start:end if end >= 0 else len(text)]


def _table_commands() -> list[str]:
    """Each `bmbench ...` code span of the first column of the README's command table."""
    table = _section(README.read_text(encoding="utf-8"), "## CLI at a glance")
    spans: list[str] = []
    for line in table.splitlines():
        if line.startswith("| `bmbench"):
            first = re.split(r"(?<!\\)\|", line)[1]
            spans += re.findall(r"`(bmbench [^`]*)`", first)
    return spans


def _command_of(span: str, tree: dict[str, Any]) -> str | None:
    """The longest command path that a `bmbench ...` text starts with (None: no command)."""
    words = span.replace("\\|", "|").split()[1:]
    for n in range(min(len(words), 3), 0, -1):
        if " ".join(words[:n]) in tree:
            return " ".join(words[:n])
    return None


def test_readme_table_lists_every_command_and_nothing_stale() -> None:
    tree = _tree()
    listed = [_command_of(span, tree) for span in _table_commands()]
    stale = [span for span, command in zip(_table_commands(), listed, strict=True) if command is None]
    assert not stale, f"README command table names commands that do not exist: {stale}"
    missing = sorted(set(tree) - set(listed))
    assert not missing, f"commands missing from the README command table: {missing}"
    assert len(listed) == len(set(listed)), "a command is listed twice in the README command table"


def _readme_invocations() -> list[str]:
    """Every `bmbench ...` inline code span and every line of a code block that runs bmbench."""
    text = README.read_text(encoding="utf-8")
    found = re.findall(r"`(bmbench [^`\n]+)`", text)
    in_block = False
    for line in text.replace("\\\n", " ").splitlines():  # continuation lines joined
        if line.startswith("```"):
            in_block = not in_block
        elif in_block and line.strip().removeprefix("$ ").startswith("bmbench "):
            found.append(line.strip().removeprefix("$ "))
    return found


def test_every_option_the_readme_names_exists() -> None:
    tree = _tree()
    problems = []
    invocations = _readme_invocations()
    assert len(invocations) > 40  # the parser sees the README's examples
    for text in invocations:
        command = _command_of(text, tree)
        if command is None:
            if re.fullmatch(r"[a-z][a-z-]*", (text.split()[1:2] or ["-"])[0]):
                problems.append(f"{text!r}: no such command")
            continue
        allowed = _visible_options(tree[command]) | GLOBAL_OPTIONS
        for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text.split("#")[0]):
            if option not in allowed:
                problems.append(f"{text!r}: bmbench {command} has no option {option}")
    assert not problems, "\n".join(problems)


def test_help_lists_the_commands_and_python_m_bmbench_works() -> None:
    done = subprocess.run([sys.executable, "-m", "bmbench", "--help"], capture_output=True, text=True, timeout=120,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "benchmark")})
    assert done.returncode == 0, done.stderr
    for name in {path.split()[0] for path in _tree()}:
        assert f" {name} " in done.stdout, name
    assert "Exit status: 0 success; 1 the run itself failed; 2 invalid input" in " ".join(done.stdout.split())


# --- --json PATH|- -------------------------------------------------------------------------------------------


def _preds(tmp_path: Path, split: Any, folds: tuple[int, ...], name: str = "preds.csv") -> Path:
    lines, _, _ = prediction_rows(split, folds, probs=False)
    path = tmp_path / name
    path.write_text("\n".join([header(False), *lines]) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("args", [
    ["classes"],
    ["submissions", "describe", "baseline_majority"],
    ["score", "PREDS", "--split", SPLIT],
], ids=["classes", "describe", "score"])
def test_json_dash_writes_only_json_to_stdout(tmp_path: Path, synthetic_split: Any, args: list[str]) -> None:
    preds = _preds(tmp_path, synthetic_split, (0, 1, 2, 3, 4))
    args = [str(preds) if a == "PREDS" else a for a in args]
    result = runner.invoke(app, [*args, "--json", "-"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # nothing but the document on stdout
    assert isinstance(doc, dict) and doc
    assert not (tmp_path / "-").exists() and not Path("-").exists()
    to_file = runner.invoke(app, [*args, "--json", str(tmp_path / "out.json")])
    assert to_file.exit_code == 0, to_file.output
    assert json.loads((tmp_path / "out.json").read_text()) == doc
    assert f"wrote {tmp_path / 'out.json'}" in " ".join(to_file.stdout.split())


def test_score_json_dash_keeps_the_tables_on_stderr(tmp_path: Path, synthetic_split: Any) -> None:
    preds = _preds(tmp_path, synthetic_split, (0, 1, 2, 3, 4))
    result = runner.invoke(app, ["score", str(preds), "--split", SPLIT, "--json", "-"])
    assert result.exit_code == 0
    assert "Score on split synthetic-cv5-v1" in result.stderr and "Score on split" not in result.stdout
    assert json.loads(result.stdout)["split"]["name"] == SPLIT


def test_every_json_option_takes_path_or_dash() -> None:
    for path, command in _tree().items():
        for param in command.params:
            if "--json" in param.opts:
                assert not getattr(param, "is_flag", False), f"bmbench {path}: --json is a switch"
                assert "- for stdout" in (param.help or ""), f"bmbench {path}: --json help does not say '-'"


# --- --folds everywhere ---------------------------------------------------------------------------------------


def test_fold_selections_are_all_folds_options() -> None:
    for path, command in _tree().items():
        visible = _visible_options(command)
        assert "--fold" not in visible, f"bmbench {path} still shows --fold (use --folds)"
        for param in command.params:
            if "--folds" in param.opts:
                assert param.metavar == "K[,K...]" and not param.multiple, f"bmbench {path}: --folds differs"


def test_folds_parsing_and_the_deprecated_alias(capsys: pytest.CaptureFixture[str]) -> None:
    from bmbench.cli.common import parse_folds
    from bmbench.errors import BmbenchError

    assert parse_folds("3,0,3") == (0, 3) and parse_folds("3") == (3,) and parse_folds(None) is None
    for bad in ("a,b", ",", "-1"):
        with pytest.raises(BmbenchError, match="--folds takes fold numbers"):
            parse_folds(bad)
    assert parse_folds(None, 2) == (2,)
    assert "--fold is deprecated; use --folds 2" in capsys.readouterr().err
    with pytest.raises(BmbenchError, match="give --folds only"):
        parse_folds("1", 2)


def test_the_fold_alias_still_works_with_a_warning(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    result = runner.invoke(app, ["lr-find", "baseline_majority", "--data", "synthetic", "--fold", "1",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--fold is deprecated; use --folds 1" in result.stderr
    assert "no learning rate" in result.output  # the command went on with fold 1
    result = runner.invoke(app, ["lr-find", "baseline_majority", "--folds", "1", "--fold", "1"])
    assert result.exit_code == 2 and "give --folds only" in result.output


def _no_work(*args: object, **kwargs: object) -> None:
    raise AssertionError("work started before every --folds value was checked")


LATE_WORK = {  # command -> the functions doing its first piece of work once the folds are accepted
    "run": ["bmbench.runs.run._run_torch_fold", "bmbench.runs.run._run_baseline_fold"],
    "lr-find": ["bmbench.runs.lrfind.run_lr_find"],
    "probe": ["bmbench.features.embed.embed"],
    "embed": ["bmbench.features.embed.load_encoder", "bmbench.features.embed.run_folds"],
    "grid": ["bmbench.runs.grid.grid_tasks"],
}
FOLDS_ARGS = {
    "run": ["run", "demo_cnn", "--data", "synthetic", "--device", "cpu", "--out", "OUT"],
    "lr-find": ["lr-find", "demo_cnn", "--data", "synthetic", "--device", "cpu", "--out", "OUT"],
    "probe": ["probe", "demo_cnn_probe", "--data", "synthetic", "--device", "cpu", "--out", "OUT"],
    "embed": ["embed", "demo_cnn_probe", "--data", "synthetic", "--device", "cpu", "--out", "OUT"],
    "grid": ["grid", "--submissions", "demo_cnn", "--data", "synthetic", "--dry-run", "--out", "OUT"],
}


@pytest.mark.parametrize("command", sorted(FOLDS_ARGS))
def test_every_requested_fold_is_checked_against_the_split_before_any_work(
        command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--folds 0,9` on a 5-fold split: exit 2 naming fold 9 and the range, and fold 0 is not run first."""
    for target in LATE_WORK[command]:
        monkeypatch.setattr(target, _no_work)
    out = tmp_path / "out"
    result = runner.invoke(app, [a.replace("OUT", str(out)) for a in FOLDS_ARGS[command]] + ["--folds", "0,9"])
    assert result.exit_code == 2, result.output
    assert "--folds must be between 0 and 4 (split synthetic-cv5-v1 has 5 folds); got 9" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_embed_refuses_folds_for_an_encoder_shared_by_all_folds(tmp_path: Path) -> None:
    result = runner.invoke(app, ["embed", "probe_dinobloom_s", "--data", "synthetic", "--folds", "0",
                                 "--out", str(tmp_path / "store")])
    assert result.exit_code == 2 and "one network for every fold" in result.output, result.output
    assert not (tmp_path / "store").exists()


# --- bmbench score: the run's split, missing folds ------------------------------------------------------------


def _run_folder(tmp_path: Path, split: Any, folds: tuple[int, ...]) -> Path:
    from leaderboard_helpers import real_split_run

    return real_split_run(tmp_path / "runs" / "baseline_majority" / "synthetic", split, folds=folds)


def test_score_takes_the_split_from_the_runs_run_json(tmp_path: Path, synthetic_split: Any) -> None:
    run_dir = _run_folder(tmp_path, synthetic_split, (0, 1, 2, 3, 4))
    assert json.loads((run_dir / "run.json").read_text())["split"]["name"] == SPLIT
    result = runner.invoke(app, ["score", str(run_dir / "predictions.csv"), "--json", "-"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["split"]["name"] == SPLIT
    assert f"split {SPLIT} (the split recorded in {run_dir / 'run.json'})" in " ".join(result.stderr.split())
    fold_file = run_dir / "fold2" / "test_predictions.csv"  # one fold's file: the run.json above it
    fold_file.parent.mkdir()
    fold_file.write_text("\n".join(line for line in (run_dir / "predictions.csv").read_text().splitlines()
                                   if line.split(",")[1] in ("fold", "2")) + "\n")
    result = runner.invoke(app, ["score", str(fold_file), "--json", "-"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["folds"] == [2] and f"recorded in {run_dir / 'run.json'}" in " ".join(
        result.stderr.split())
    # a file that is not a run's own keeps the default, and says so
    loose = _preds(tmp_path, synthetic_split, (0,))
    result = runner.invoke(app, ["score", str(loose)])
    assert result.exit_code == 2 and "split bm-cv5-v1 (the default; pass --split for another)" in " ".join(
        result.output.split())


def test_missing_folds_are_named_and_require_all_folds_refuses(tmp_path: Path, synthetic_split: Any) -> None:
    preds = _preds(tmp_path, synthetic_split, (0, 3))
    result = runner.invoke(app, ["score", str(preds), "--split", SPLIT])
    flat = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert "warning: folds 1, 2, 4 of synthetic-cv5-v1 have no predictions" in flat
    assert "figures cover folds 0, 3 only" in flat
    out = tmp_path / "score.json"
    result = runner.invoke(app, ["score", str(preds), "--split", SPLIT, "--require-all-folds", "--json", str(out)])
    flat = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{preds}: no predictions for fold(s) 1, 2, 4 of split {SPLIT}" in flat
    assert not out.exists()
    complete = _preds(tmp_path, synthetic_split, (0, 1, 2, 3, 4), "all.csv")
    result = runner.invoke(app, ["score", str(complete), "--split", SPLIT, "--require-all-folds"])
    assert result.exit_code == 0 and "warning" not in result.output


# --- bmbench classes ------------------------------------------------------------------------------------------


def test_classes_lists_codes_names_and_counts_per_dataset(synthetic_split: Any, bm_split: Any) -> None:
    import numpy as np

    result = runner.invoke(app, ["classes", "--json", "-"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [c["code"] for c in doc["classes"]] == list(CLASS_CODES)
    assert [c["name"] for c in doc["classes"]] == [c.name for c in cell_classes()]
    for split in (bm_split, synthetic_split):
        counts = np.bincount(split.labels.astype(np.int64), minlength=len(CLASS_CODES))
        dataset = split.spec.dataset.id
        assert [c["images"][dataset] for c in doc["classes"]] == counts.tolist()
    assert {d["id"]: d["total"] for d in doc["datasets"]} == {"bm": 171_374, "synthetic": 3_118}
    assert all(d["matches_expected"] for d in doc["datasets"])
    table = runner.invoke(app, ["classes"], env={"COLUMNS": "160"})
    assert table.exit_code == 0
    for cls in cell_classes():
        assert re.search(rf"{cls.code}\s+│\s+{cls.name}\s+│\s+{cls.count:,}\s+│\s+{cls.synthetic_count:,}", table.stdout)
    assert "171,374" in table.stdout and "SYNTHETIC" in table.stdout


def test_no_help_text_contradicts_the_exit_code_policy() -> None:
    for path, command in _tree().items():
        text = " ".join(filter(None, [command.help, *(getattr(p, "help", None) for p in command.params)]))
        assert not re.search(r"\bexits? (?:with status )?1 on\b", text, flags=re.I), (
            f"bmbench {path}: its help gives exit 1 for a refusal; refusals exit 2 (bmbench.errors)")
