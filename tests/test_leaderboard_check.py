"""`bmbench leaderboard check` accepts a sound pull request and rejects each kind of broken one.

Each case starts from a sound board (built from real runs made by the tests), breaks one thing the way a
careless or dishonest pull request could, and expects a problem naming the entry, the field and a fix,
and the CLI to exit non-zero.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bmbench.cli.main import app
from bmbench.leaderboard.board import Board
from bmbench.leaderboard.check import check_board
from bmbench.scoring.score import score_confusions
from bmbench.splits.store import Split
from leaderboard_helpers import copy_board, demo_board, main_board, real_split_run, synthetic_run

runner = CliRunner()
ENTRY = "baseline_majority"


@pytest.fixture(scope="module")
def sound_demo(tmp_path_factory: pytest.TempPathFactory) -> Board:
    """A demo board with a real synthetic run and its predictions."""
    base = tmp_path_factory.mktemp("check-runs")
    return demo_board(tmp_path_factory.mktemp("check") / "demo", [synthetic_run(base, ENTRY)])


@pytest.fixture(scope="module")
def sound_main(tmp_path_factory: pytest.TempPathFactory, bm_split: Split) -> Board:
    """The main board: the paper's rows and one result on the published real split, with predictions."""
    run = real_split_run(tmp_path_factory.mktemp("check-real") / ENTRY / "bm", bm_split)
    return main_board(tmp_path_factory.mktemp("check") / "main", [(run, "model_a")])


def _edit_json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _cli_check(board: Board) -> tuple[int, str]:
    result = runner.invoke(app, ["leaderboard", "check", "--board", board.kind, "--dir", str(board.root)])
    return result.exit_code, result.output


def test_sound_boards_pass(sound_demo: Board, sound_main: Board) -> None:
    for board in (sound_demo, sound_main):
        assert check_board(board) == []
        code, output = _cli_check(board)
        assert code == 0, output


def _tamper_metric(board: Board) -> None:
    def change(d: dict) -> None:
        d["metrics"]["f1"]["mean"] += 0.05
    _edit_json(board.entries_dir / f"{ENTRY}.json", change)


def _move_count(board: Board) -> None:
    """Move one image from the diagonal to a wrong class: row sums stay, the metrics no longer match."""
    def change(d: dict) -> None:
        row = next(r for r in d["results"]["folds"][0]["confusion"] if max(r) > 0)
        j = row.index(max(row))
        row[j] -= 1
        row[(j + 1) % len(row)] += 1
    _edit_json(board.entries_dir / f"{ENTRY}.json", change)


def _add_count(board: Board) -> None:
    """Invent an extra image (and restate the metrics to match, as a careful forger would)."""
    def change(d: dict) -> None:
        d["results"]["folds"][1]["confusion"][3][3] += 7
        score = score_confusions({f["fold"]: np.array(f["confusion"]) for f in d["results"]["folds"]})
        for metric, value in score["summary"].items():
            d["metrics"][metric] = value
        d["predictions"] = None
    _edit_json(board.entries_dir / f"{ENTRY}.json", change)
    (board.predictions_dir / f"{ENTRY}.csv.gz").unlink()


def _wrong_hash(board: Board) -> None:
    _edit_json(board.entries_dir / f"{ENTRY}.json", lambda d: d["split"].update(sha256="ab" * 32))


def _bad_name(board: Board) -> None:
    path = board.entries_dir / f"{ENTRY}.json"
    _edit_json(path, lambda d: d.update(name="Bad Name!", predictions=None))
    path.rename(board.entries_dir / "Bad Name!.json")
    (board.predictions_dir / f"{ENTRY}.csv.gz").unlink()


def _duplicate_name(board: Board) -> None:
    shutil.copy(board.entries_dir / f"{ENTRY}.json", board.entries_dir / "copy.json")


def _stale_readme(board: Board) -> None:
    board.readme.write_text(board.readme.read_text(encoding="utf-8").replace("0.0", "0.9", 1), encoding="utf-8")


def _stale_html(board: Board) -> None:
    board.html.write_text(board.html.read_text(encoding="utf-8") + "<!-- edited -->\n", encoding="utf-8")


def _rewrite_predictions(board: Board, edit: Callable[[list[str]], list[str]], restate_hash: bool) -> None:
    gz = board.predictions_dir / f"{ENTRY}.csv.gz"
    lines = gzip.decompress(gz.read_bytes()).decode("utf-8").splitlines()
    data = ("\n".join(edit(lines)) + "\n").encode("utf-8")
    gz.write_bytes(gzip.compress(data, mtime=0))
    if restate_hash:
        _edit_json(board.entries_dir / f"{ENTRY}.json",
                   lambda d: d["predictions"].update(sha256=hashlib.sha256(data).hexdigest()))


def _swap_prediction(lines: list[str]) -> list[str]:
    """Change the predicted class of one row (probabilities kept valid)."""
    cells = lines[1].split(",")
    cells[2] = "NGS" if cells[2] != "NGS" else "ART"
    return [lines[0], ",".join(cells), *lines[2:]]


def _predictions_do_not_rescore(board: Board) -> None:
    _rewrite_predictions(board, _swap_prediction, restate_hash=True)


def _predictions_hash_mismatch(board: Board) -> None:
    _rewrite_predictions(board, _swap_prediction, restate_hash=False)


def _predictions_invalid(board: Board) -> None:
    _rewrite_predictions(board, lambda lines: lines[:-5], restate_hash=True)


def _predictions_missing(board: Board) -> None:
    (board.predictions_dir / f"{ENTRY}.csv.gz").unlink()


def _orphan_predictions(board: Board) -> None:
    shutil.copy(board.predictions_dir / f"{ENTRY}.csv.gz", board.predictions_dir / "nobody.csv.gz")


def _not_json(board: Board) -> None:
    (board.entries_dir / f"{ENTRY}.json").write_text("{ not json", encoding="utf-8")


def _unknown_key(board: Board) -> None:
    _edit_json(board.entries_dir / f"{ENTRY}.json", lambda d: d.update(leaderboard_position=1))


def _unknown_split(board: Board) -> None:
    _edit_json(board.entries_dir / f"{ENTRY}.json", lambda d: d["split"].update(name="my-own-split"))


def _tamper_probability(metric: str, part: str, delta: float) -> Callable[[Board], None]:
    def breaker(board: Board) -> None:
        def change(d: dict) -> None:
            assert d["metrics"][metric] is not None, "the sound entry states probability metrics"
            d["metrics"][metric][part] += delta
        _edit_json(board.entries_dir / f"{ENTRY}.json", change)
    return breaker


def _probability_dropped(board: Board) -> None:
    """The stored predictions give a log loss, but the entry hides it (as if it were absent)."""
    _edit_json(board.entries_dir / f"{ENTRY}.json", lambda d: d["metrics"].update(log_loss=None))


def _probabilities_without_predictions(board: Board) -> None:
    """Probability metrics stated with nothing to recompute them from."""
    _edit_json(board.entries_dir / f"{ENTRY}.json", lambda d: d.update(predictions=None))
    (board.predictions_dir / f"{ENTRY}.csv.gz").unlink()


def _one_hot(lines: list[str]) -> list[str]:
    """Make one row certain of its predicted class: same matrices, different probability metrics."""
    header = lines[0].split(",")
    cells = lines[1].split(",")
    for i, column in enumerate(header):
        if column.startswith("p_"):
            cells[i] = "1" if column == f"p_{cells[2]}" else "0"
    return [lines[0], ",".join(cells), *lines[2:]]


def _predictions_probabilities_changed(board: Board) -> None:
    _rewrite_predictions(board, _one_hot, restate_hash=True)


def _stale_export(name: str) -> Callable[[Board], None]:
    def breaker(board: Board) -> None:
        path = board.root / name
        path.write_text(path.read_text(encoding="utf-8").replace("baseline_majority", "baseline_majorit", 1),
                        encoding="utf-8")
    return breaker


def _export_missing(board: Board) -> None:
    (board.root / "results.json").unlink()


def _bad_weights(board: Board) -> None:
    _edit_json(board.entries_dir / f"{ENTRY}.json",
               lambda d: d.update(weights={"url": "https://example.org/w.pt", "sha256": "not-a-hash"}))


DEMO_CASES = {
    "tampered metric": (_tamper_metric, f"entries/{ENTRY}.json", "metrics.f1.mean"),
    "tampered confusion (moved count)": (_move_count, f"entries/{ENTRY}.json", "metrics."),
    "tampered confusion (invented images)": (_add_count, f"entries/{ENTRY}.json", "results.folds[fold 1].confusion"),
    "wrong split hash": (_wrong_hash, f"entries/{ENTRY}.json", "split.sha256"),
    "unknown split": (_unknown_split, f"entries/{ENTRY}.json", "split.name"),
    "bad name": (_bad_name, "entries/Bad Name!.json", "name"),
    "duplicate name": (_duplicate_name, "entries/copy.json", "name"),
    "stale README": (_stale_readme, "README.md", "(file)"),
    "stale HTML": (_stale_html, "index.html", "(file)"),
    "predictions do not re-score": (_predictions_do_not_rescore, f"entries/{ENTRY}.json", "predictions.file"),
    "predictions hash": (_predictions_hash_mismatch, f"entries/{ENTRY}.json", "predictions.sha256"),
    "predictions invalid": (_predictions_invalid, f"entries/{ENTRY}.json", "predictions.file"),
    "predictions missing": (_predictions_missing, f"entries/{ENTRY}.json", "predictions.file"),
    "orphan predictions": (_orphan_predictions, "predictions/nobody.csv.gz", "(file)"),
    "not JSON": (_not_json, f"entries/{ENTRY}.json", "(file)"),
    "unknown key": (_unknown_key, f"entries/{ENTRY}.json", "leaderboard_position"),
    "tampered AUROC": (_tamper_probability("auroc", "mean", 0.01), f"entries/{ENTRY}.json", "metrics.auroc.mean"),
    "tampered ECE": (_tamper_probability("ece", "std", 0.001), f"entries/{ENTRY}.json", "metrics.ece.std"),
    "tampered Brier": (_tamper_probability("brier", "mean", -0.05), f"entries/{ENTRY}.json", "metrics.brier.mean"),
    "probability metric hidden": (_probability_dropped, f"entries/{ENTRY}.json", "metrics.log_loss"),
    "probabilities without predictions": (_probabilities_without_predictions, f"entries/{ENTRY}.json",
                                          "metrics.auroc"),
    "probabilities changed in the predictions": (_predictions_probabilities_changed, f"entries/{ENTRY}.json",
                                                 "metrics.log_loss.mean"),
    "stale results.csv": (_stale_export("results.csv"), "results.csv", "(file)"),
    "stale results.json": (_stale_export("results.json"), "results.json", "(file)"),
    "missing results.json": (_export_missing, "results.json", "(file)"),
    "bad weights hash": (_bad_weights, f"entries/{ENTRY}.json", "weights.sha256"),
}


@pytest.mark.parametrize("case", list(DEMO_CASES))
def test_check_rejects_broken_demo_board(case: str, sound_demo: Board, tmp_path: Path) -> None:
    breaker, entry, field = DEMO_CASES[case]
    board = copy_board(sound_demo, tmp_path / "board")
    breaker(board)
    problems = check_board(board)
    assert problems, f"{case}: the check accepted a broken board"
    matching = [p for p in problems if p.entry == entry and p.field.startswith(field)]
    assert matching, f"{case}: expected a problem for {entry} / {field}, got:\n" + "\n".join(map(str, problems))
    assert all(p.message and p.fix for p in problems)
    code, output = _cli_check(board)
    assert code == 2 and entry in output and "fix:" in output and "Traceback" not in output


def _published_changed(board: Board) -> None:
    _edit_json(board.entries_dir / "gluge2023_regnet_y_32gf_imagenet_cd.json",
               lambda d: d["metrics"]["precision"].update(mean=0.801))


def _published_per_class_changed(board: Board) -> None:
    _edit_json(board.entries_dir / "matek2021_resnext50_32x4d_random.json",
               lambda d: d["results"]["per_class"]["FGC"]["recall"].update(mean=0.93))


def _published_missing(board: Board) -> None:
    (board.entries_dir / "gluge2023_vit_l_32_random.json").unlink()


def _published_invented(board: Board) -> None:
    data = json.loads((board.entries_dir / "gluge2023_vit_l_32_random.json").read_text(encoding="utf-8"))
    data["name"] = "gluge2023_vit_h_14_random"
    (board.entries_dir / "gluge2023_vit_h_14_random.json").write_text(json.dumps(data), encoding="utf-8")


def _synthetic_on_main(board: Board, demo: Board) -> None:
    shutil.copy(demo.entries_dir / f"{ENTRY}.json", board.entries_dir / f"{ENTRY}.json")
    shutil.copy(demo.predictions_dir / f"{ENTRY}.csv.gz", board.predictions_dir / f"{ENTRY}.csv.gz")


def _smoke_on_main(board: Board) -> None:
    _edit_json(board.entries_dir / "model_a.json", lambda d: d.update(smoke=True))


def _no_code_on_main(board: Board) -> None:
    _edit_json(board.entries_dir / "model_a.json", lambda d: d["code"].update(url=None))


def _missing_fold_on_main(board: Board) -> None:
    def change(d: dict) -> None:
        d["results"]["folds"] = d["results"]["folds"][:4]
        score = score_confusions({f["fold"]: np.array(f["confusion"]) for f in d["results"]["folds"]})
        for metric, value in score["summary"].items():
            d["metrics"][metric] = value
        d["predictions"] = None
    _edit_json(board.entries_dir / "model_a.json", change)
    (board.predictions_dir / "model_a.csv.gz").unlink()


MAIN_CASES = {
    "published row changed": (_published_changed, "entries/gluge2023_regnet_y_32gf_imagenet_cd.json",
                              "metrics.precision.mean"),
    "published per-class figure changed": (_published_per_class_changed,
                                           "entries/matek2021_resnext50_32x4d_random.json", "results.per_class"),
    "published row missing": (_published_missing, "entries/gluge2023_vit_l_32_random.json", "(file)"),
    "published row invented": (_published_invented, "entries/gluge2023_vit_h_14_random.json", "name"),
    "synthetic result on the main board": (_synthetic_on_main, f"entries/{ENTRY}.json", "split.dataset"),
    "smoke result on the main board": (_smoke_on_main, "entries/model_a.json", "smoke"),
    "no code on the main board": (_no_code_on_main, "entries/model_a.json", "code.url"),
    "missing fold on the main board": (_missing_fold_on_main, "entries/model_a.json", "results.folds"),
}


@pytest.mark.parametrize("case", list(MAIN_CASES))
def test_check_rejects_broken_main_board(case: str, sound_main: Board, sound_demo: Board, tmp_path: Path) -> None:
    breaker, entry, field = MAIN_CASES[case]
    board = copy_board(sound_main, tmp_path / "board")
    if breaker is _synthetic_on_main:
        breaker(board, sound_demo)
    else:
        breaker(board)
    problems = check_board(board)
    matching = [p for p in problems if p.entry == entry and p.field.startswith(field)]
    assert matching, f"{case}: expected a problem for {entry} / {field}, got:\n" + "\n".join(map(str, problems))
    code, output = _cli_check(board)
    assert code == 2 and "fix:" in output


def test_check_validates_submission_folders_without_importing_them(sound_demo: Board, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken submission.toml fails the pull request; no model.py is ever imported or run."""
    from bmbench.paths import SUBMISSIONS_ENV
    from bmbench.submissions.registry import default_submissions_dir

    folder = tmp_path / "submissions"
    shutil.copytree(default_submissions_dir() / "baseline_majority", folder / "baseline_majority")
    shutil.copytree(default_submissions_dir() / "baseline_majority", folder / "broken")
    toml = folder / "broken" / "submission.toml"
    text = toml.read_text(encoding="utf-8").replace('name = "baseline_majority"', 'name = "broken"')
    toml.write_text(text + "\nnot_a_key = 1\n", encoding="utf-8")
    marker = tmp_path / "imported"
    for name in ("baseline_majority", "broken"):
        (folder / name / "model.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n", encoding="utf-8")
    (folder / "_template").mkdir()  # ignored: not a submission
    problems = check_board(sound_demo, submissions_dir=folder)
    assert [p.entry for p in problems] == ["submissions/broken/submission.toml"], problems
    assert "not_a_key" in problems[0].message and "submissions describe broken" in problems[0].fix
    monkeypatch.setenv(SUBMISSIONS_ENV, str(folder))
    code, output = _cli_check(sound_demo)
    assert code == 2 and "submissions/broken/submission.toml" in output and "Traceback" not in output
    assert not marker.exists()
    shutil.rmtree(folder / "broken")
    assert _cli_check(sound_demo)[0] == 0
