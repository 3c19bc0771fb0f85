"""The leaderboard: entry schema, the paper's rows, adding runs, statistics, deterministic and safe builds."""

from __future__ import annotations

import csv
import html
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bmbench.cli.main import app
from bmbench.errors import BmbenchError
from bmbench.leaderboard.board import COLUMNS, get_board
from bmbench.leaderboard.build import GENERATED, build_board, render_board
from bmbench.leaderboard.check import BoardProblems, check_board
from bmbench.leaderboard.entries import add_run, dump_entry, load_entries
from bmbench.leaderboard.published import derived_metrics, fmt, published_entries
from bmbench.leaderboard.render_html import safe_url
from bmbench.leaderboard.render_md import md_text
from bmbench.leaderboard.schema import Entry
from bmbench.scoring.score import score_file
from bmbench.splits.store import Split
from leaderboard_helpers import demo_board, main_board, real_split_run, synthetic_run

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "benchmark" / "bmbench" / "resources" / "paper"


@pytest.fixture(scope="module")
def runs_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lb-runs")


@pytest.fixture(scope="module")
def majority_run(runs_base: Path) -> Path:
    return synthetic_run(runs_base, "baseline_majority")


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory, bm_split: Split) -> Path:
    return real_split_run(tmp_path_factory.mktemp("real") / "baseline_majority" / "bm", bm_split)


def _entry_dict(name: str = "x") -> dict:
    entry = published_entries()[0].model_dump(mode="json")
    entry["name"] = name
    return entry


# ---------------------------------------------------------------------------------------------- schema


def test_schema_accepts_published_entry_and_roundtrips_canonically() -> None:
    entry = published_entries()[0]
    again = Entry.model_validate(json.loads(dump_entry(entry)))
    assert again == entry and dump_entry(again) == dump_entry(entry)


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d.update(colour="red"), "colour"),
    (lambda d: d.update(status="great"), "status"),
    (lambda d: d["split"].update(sha256="xyz"), "split.sha256"),
    (lambda d: d.update(date="27.11.2026"), "date"),
    (lambda d: d.update(external_data=True), "external_data"),
    (lambda d: d.update(status="submitted"), "published"),
    (lambda d: d["metrics"]["f1"].update(mean="NaN"), "metrics.f1.mean"),
    (lambda d: d.update(results={"kind": "confusions", "folds": [{"fold": 0, "confusion": [[1, 2]]}]}),
     "confusion"),
    (lambda d: d.update(schema_version=3), "schema_version"),
    (lambda d: d.update(protocol="knn-5"), "protocol"),
    (lambda d: d.update(weights={"url": "https://x.org/w.pt", "sha256": "abc"}), "weights.sha256"),
    (lambda d: d.update(weights={"url": "javascript:alert(1)", "sha256": "0" * 64}), "weights.url"),
    (lambda d: d.update(metrics={}), "metrics"),
    (lambda d: d.update(encoder={"id": "x", "parameters": 1, "feature_dim": 8}), "encoder"),
])
def test_schema_refuses_bad_entries(change, field: str) -> None:
    from pydantic import ValidationError

    data = _entry_dict()
    change(data)
    with pytest.raises(ValidationError) as info:
        Entry.model_validate(data)
    assert field.split(".")[0] in str(info.value)


# ------------------------------------------------------------------------------------- the paper's rows


def _table(number: int) -> list[dict[str, str]]:
    with open(PAPER / f"published_table{number}.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_published_entries_are_every_table4_row() -> None:
    entries = published_entries()
    rows = _table(4)
    assert len(entries) == len(rows) == 25
    assert len({e.name for e in entries}) == 25
    assert all(e.status == "reported in a paper" and e.split.sha256 is None for e in entries)
    with_classes = [e.name for e in entries if derived_metrics(e) is not None]
    assert with_classes == ["gluge2023_regnet_y_32gf_imagenet_cd", "matek2021_resnext50_32x4d_random"]
    by_name = {e.name: e for e in entries}
    for row in rows:
        entry = by_name[f"{row['source']}_{row['model']}_{row['pretraining']}".replace("+", "_")]
        assert entry.metrics.precision.mean == float(row["precision_mean"])
        assert entry.metrics.f1.std == (float(row["f1_std"]) if row["f1_std"] else None)


def test_derived_rows_come_out_as_printed() -> None:
    by_name = {e.name: e for e in published_entries()}

    def shown(name: str) -> list[str]:
        derived = derived_metrics(by_name[name])
        assert derived is not None
        return [fmt(derived[m].mean) + ("" if derived[m].std is None else f" ± {fmt(derived[m].std)}")
                for m in ("precision", "recall", "f1")]

    assert shown("gluge2023_regnet_y_32gf_imagenet_cd") == ["0.787 ± 0.060", "0.755 ± 0.061", "0.762 ± 0.050"]
    assert shown("matek2021_resnext50_32x4d_random") == ["0.510 ± 0.048", "0.689 ± 0.087", "0.545"]


def test_board_shows_every_paper_row_as_printed(tmp_path: Path) -> None:
    board = main_board(tmp_path / "board")
    readme = board.readme.read_text(encoding="utf-8")
    at = [c.key for c in COLUMNS].index("name")
    lines = {line.split(" | ")[at].strip("*"): line for line in readme.splitlines()
             if line.startswith("| ") and " | " in line and ("gluge2023_" in line or "matek2021_" in line)}
    for row in _table(4):
        name = f"{row['source']}_{row['model']}_{row['pretraining']}".replace("+", "_")
        expected = [f"{row[f'{m}_mean']} ± {row[f'{m}_std']}" if row[f"{m}_std"] else row[f"{m}_mean"]
                    for m in ("precision", "recall", "f1")]
        assert " | ".join(expected) in lines[md_text(name)], name
    assert "| 0.787 ± 0.060 | 0.755 ± 0.061 | 0.762 ± 0.050 |" in lines["gluge2023_regnet_y_32gf_imagenet_cd"]
    assert "| 0.510 ± 0.048 | 0.689 ± 0.087 | 0.545 |" in lines["matek2021_resnext50_32x4d_random"]
    assert check_board(board) == []


def test_committed_main_board_is_sound() -> None:
    """leaderboard/ in the repository: the paper's rows, and README/HTML equal to a fresh build."""
    board = get_board("main")
    problems = check_board(board)
    assert problems == [], "\n".join(map(str, problems))
    names = {e.name for _, e in load_entries(board)[0]}
    assert {e.name for e in published_entries()} <= names


# -------------------------------------------------------------------------------------- adding runs


def test_add_synthetic_run_to_demo_board(majority_run: Path, tmp_path: Path) -> None:
    board = get_board("demo", tmp_path / "demo")
    path = add_run(majority_run, board, with_predictions=True)
    entry = Entry.model_validate_json(path.read_text(encoding="utf-8"))
    score = json.loads((majority_run / "score.json").read_text(encoding="utf-8"))
    assert entry.name == "baseline_majority" and entry.split.dataset == "synthetic"
    assert [f.confusion for f in entry.results.folds] == [p["confusion"] for p in score["per_fold"]]
    assert entry.metrics.f1.mean == score["summary"]["f1"]["mean"]
    assert entry.predictions is not None and (board.root / entry.predictions.file).is_file()
    assert entry.status == "submitted" and entry.compute.device_hours == 0.0
    with pytest.raises(BmbenchError, match="already exists"):
        add_run(majority_run, board)
    build_board(board)
    assert "SYNTHETIC" in board.readme.read_text(encoding="utf-8")
    assert check_board(board) == []


def test_main_board_refuses_synthetic_runs(majority_run: Path, tmp_path: Path) -> None:
    with pytest.raises(BmbenchError, match="SYNTHETIC"):
        add_run(majority_run, get_board("main", tmp_path / "main"), code_url="https://example.org")
    assert not (tmp_path / "main" / "entries").exists()


def test_main_board_refuses_smoke_runs(runs_base: Path, tmp_path: Path) -> None:
    smoke = synthetic_run(runs_base, "baseline_majority", smoke=True)
    assert json.loads((smoke / "run.json").read_text())["smoke"] is not None
    with pytest.raises(BmbenchError, match="smoke run"):
        add_run(smoke, get_board("main", tmp_path / "main"), code_url="https://example.org")


def test_main_board_refuses_a_run_without_code_or_with_missing_folds(real_run: Path, bm_split: Split,
                                                                     tmp_path: Path) -> None:
    board = get_board("main", tmp_path / "main")
    with pytest.raises(BmbenchError, match="code"):
        add_run(real_run, board)
    partial = real_split_run(tmp_path / "partial" / "baseline_majority" / "bm", bm_split, folds=(0, 1))
    with pytest.raises(BmbenchError, match="all 5"):
        add_run(partial, board, code_url="https://example.org")


def test_add_real_split_run_to_main_board(real_run: Path, tmp_path: Path) -> None:
    board = main_board(tmp_path / "main", [(real_run, "model_a")])
    entry = Entry.model_validate_json((board.entries_dir / "model_a.json").read_text(encoding="utf-8"))
    score = score_file(real_run / "predictions.csv", "bm-cv5-v1")
    assert entry.metrics.macro_f1 is not None and entry.metrics.macro_f1.mean == score["summary"]["macro_f1"]["mean"]
    assert entry.compute.device_hours == 5.0 and entry.code.commit == "a" * 40
    readme = board.readme.read_text(encoding="utf-8")
    home = readme.split("## Split bm-cv5-v1")[1].split("## ")[0]
    assert "model\\_a" in home or "model_a" in home
    assert check_board(board) == []


def test_cli_add_build_check_show(majority_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "board"
    result = runner.invoke(app, ["leaderboard", "add", str(majority_run), "--board", "demo", "--dir", str(folder),
                                 "--predictions", "--status", "reproduced"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["leaderboard", "check", "--board", "demo", "--dir", str(folder)])
    assert result.exit_code == 2 and "README.md" in result.output and "bmbench leaderboard build" in result.output
    result = runner.invoke(app, ["leaderboard", "build", "--board", "demo", "--dir", str(folder)])
    assert result.exit_code == 0 and "baseline_majority" in result.output
    result = runner.invoke(app, ["leaderboard", "check", "--board", "demo", "--dir", str(folder)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["leaderboard", "show", "--board", "demo", "--dir", str(folder)])
    assert result.exit_code == 0 and "baseline_majority" in result.output
    result = runner.invoke(app, ["leaderboard", "add", str(majority_run), "--dir", str(tmp_path / "main")])
    assert result.exit_code == 2 and "SYNTHETIC" in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------------------ builds: determinism, safety


def test_build_is_deterministic(majority_run: Path, tmp_path: Path) -> None:
    board = demo_board(tmp_path / "a", [majority_run])
    first = (board.readme.read_bytes(), board.html.read_bytes())
    build_board(board)
    assert (board.readme.read_bytes(), board.html.read_bytes()) == first
    other = demo_board(tmp_path / "b", [majority_run])
    assert (other.readme.read_bytes(), other.html.read_bytes()) == first


def test_failed_build_leaves_the_previous_board(majority_run: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    board = demo_board(tmp_path / "board", [majority_run])
    before = (board.readme.read_bytes(), board.html.read_bytes())
    path = board.entries_dir / "baseline_majority.json"
    data = json.loads(path.read_text())
    data["metrics"]["f1"]["mean"] += 0.1
    path.write_text(json.dumps(data))
    with pytest.raises(BoardProblems, match="metrics.f1.mean"):
        build_board(board)
    assert (board.readme.read_bytes(), board.html.read_bytes()) == before
    # An interruption while writing replaces neither page.
    data["metrics"]["f1"]["mean"] -= 0.1
    data["notes"] = "changed"
    path.write_text(json.dumps(data))
    import bmbench.leaderboard.build as build_module

    def exploding_render(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build_module, "render_markdown", exploding_render)
    with pytest.raises(KeyboardInterrupt):
        build_board(board)
    assert (board.readme.read_bytes(), board.html.read_bytes()) == before
    assert sorted(p.name for p in board.root.iterdir()) == sorted(["entries", "predictions", *GENERATED])


def test_entry_strings_are_escaped(majority_run: Path, tmp_path: Path) -> None:
    board = demo_board(tmp_path / "board", [majority_run], predictions=False)
    entry = load_entries(board)[0][0][1]
    hostile = entry.model_copy(update={
        "name": "<script>alert(1)</script>",
        "authors": ['<img src=x onerror="alert(2)">'],
        "backbone": "a|b</td><td>",
        "code": entry.code.model_copy(update={"url": "javascript:alert(3)"}),
    })
    markdown, page = render_board(board, [hostile])
    assert "<script>alert" not in page and "<img" not in page and "javascript:" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # only the page's own
    assert "<script>" not in markdown and "<img" not in markdown and "a&#124;b&lt;/td&gt;" in markdown
    assert safe_url("https://example.org/x") and not safe_url("javascript:alert(1)")
    assert not safe_url('https://x.org/"onmouseover=alert(1)')
    problems = [p for p in check_board(board) if p.field == "name"]
    assert problems == []
    bad = get_board("demo", tmp_path / "bad")
    bad.entries_dir.mkdir(parents=True)
    (bad.entries_dir / "bad.json").write_text(dump_entry(hostile))
    names = [p for p in check_board(bad) if p.field == "name"]
    assert len(names) == 1 and "not a safe entry name" in names[0].message


def test_html_page_is_self_contained(tmp_path: Path) -> None:
    board = main_board(tmp_path / "board")
    page = board.html.read_text(encoding="utf-8")
    assert "http-equiv=\"Content-Security-Policy\"" in page and "default-src 'none'" in html.unescape(page)
    for needle in ("<link", "src=\"http", "@import", "url(http"):
        assert needle not in page


def test_check_imports_no_submission_or_training_code(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from bmbench.leaderboard.board import get_board\n"
        "from bmbench.leaderboard.check import check_board\n"
        f"problems = check_board(get_board('main', Path({str(REPO / 'leaderboard')!r})))\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('bmbench.submissions', 'bmbench.engine', 'bmbench.runs', 'bmbench.datapaths', 'torch',"
        " 'matplotlib', 'submissions')))\n"
        "print(len(problems), bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "0 []", out.stdout + out.stderr


BLOCKER = """
import sys
BLOCK = {"torch", "torchvision", "timm", "cv2", "sklearn", "scipy", "matplotlib", "datasets", "h5py"}
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCK:
            raise ImportError("blocked for this test: " + name)
sys.meta_path.insert(0, Blocker())
from bmbench.cli.main import app
sys.argv = ["bmbench", "leaderboard", "check", "--dir", sys.argv[1]]
app()
"""


def test_check_runs_without_the_training_stack() -> None:
    """CI installs only the scorer's dependencies (.github/workflows/leaderboard.yml)."""
    out = subprocess.run([sys.executable, "-c", BLOCKER, str(REPO / "leaderboard")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "sound" in out.stdout


def test_superseded_entries_are_listed_last_and_not_ranked(majority_run: Path, tmp_path: Path) -> None:
    board = get_board("demo", tmp_path / "board")
    add_run(majority_run, board, name="old_result", status="superseded")
    add_run(majority_run, board, name="new_result", status="reproduced")
    result = build_board(board)
    rows = result.sections[0].rows
    assert [(r.name, r.rank) for r in rows] == [("new_result", 1), ("old_result", 0)]
    assert rows[0].comparison is not None and rows[0].comparison.verdict == "leader" and rows[1].comparison is None
    assert "| — | old_result |" in board.readme.read_text(encoding="utf-8")


def test_add_runs_checks_every_run_before_writing_any(majority_run: Path, runs_base: Path, tmp_path: Path) -> None:
    """`bmbench leaderboard add RUN RUN ...`: each run under its submission's name; one bad run, or two runs
    that would be the same entry, add nothing."""
    from typer.testing import CliRunner

    from bmbench.cli.main import app
    from bmbench.leaderboard.entries import add_runs

    board = get_board("demo", tmp_path / "demo")
    smoke = synthetic_run(runs_base, "baseline_majority", smoke=True)
    with pytest.raises(BmbenchError, match="would both be entry 'baseline_majority'"):
        add_runs([majority_run, smoke], board)
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    with pytest.raises(BmbenchError, match="run.json"):
        add_runs([majority_run, not_a_run], board)
    assert not (board.root / "entries").exists() or not any((board.root / "entries").iterdir())
    result = CliRunner().invoke(app, ["leaderboard", "add", str(majority_run), str(smoke), "--board", "demo",
                                      "--dir", str(board.root), "--name", "x"])
    assert result.exit_code == 2 and "--name describe(s) one run, but 2 runs were given" in result.output
    result = CliRunner().invoke(app, ["leaderboard", "add", str(majority_run), "--board", "demo",
                                      "--dir", str(board.root), "--predictions"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in add_runs([majority_run], board, replace=True, with_predictions=True)] == [
        "baseline_majority.json"]
    build_board(board)
    assert check_board(board) == []
