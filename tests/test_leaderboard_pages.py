"""The generated board without a browser: HTML structure (filters, row attributes, links), absent metrics,
the CSV / JSON export and `leaderboard show --format`, and weights per entry.

The interactive behaviour (filtering, URL hash) is tests/test_leaderboard_browser.py's; here the page's
structure and the exported figures are checked against the computed sections.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bmbench.classes import CLASS_CODES
from bmbench.cli.main import app
from bmbench.errors import BmbenchError
from bmbench.leaderboard.board import COLUMNS, Board, get_board
from bmbench.leaderboard.build import build_board, sections_for
from bmbench.leaderboard.check import check_board
from bmbench.leaderboard.entries import add_run, load_entries
from bmbench.leaderboard.export import CSV_COLUMNS
from bmbench.leaderboard.schema import STATUSES
from bmbench.metric_registry import ALL_METRICS, PROBABILITY_METRICS
from leaderboard_helpers import main_board, synthetic_run

runner = CliRunner()
WEIGHTS = b"stand-in checkpoint bytes\n"
WEIGHTS_URL = "https://example.org/weights/no_probs.pt"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `bmbench run` of the majority baseline on the SYNTHETIC data (with probabilities)."""
    return synthetic_run(tmp_path_factory.mktemp("pages-runs"), "baseline_majority")


@pytest.fixture(scope="module")
def board(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Board:
    """A demo board: one entry with stored predictions (probabilities), one without but with weights."""
    checkpoint = tmp_path_factory.mktemp("weights") / "no_probs.pt"
    checkpoint.write_bytes(WEIGHTS)
    target = get_board("demo", tmp_path_factory.mktemp("pages") / "board")
    add_run(run, target, status="reproduced", with_predictions=True)
    add_run(run, target, name="no_probs", status="submitted", with_predictions=False, weights_url=WEIGHTS_URL,
            weights_file=checkpoint, weights_sha256=hashlib.sha256(WEIGHTS).hexdigest(), weights_licence="CC-BY-4.0")
    build_board(target)
    return target


class _Page(HTMLParser):
    """Elements by id, the ranked tables' rows and cells, and every link."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, tuple[str, dict[str, str]]] = {}
        self.rows: list[dict[str, str]] = []
        self.cells: list[list[tuple[dict[str, str], str]]] = []
        self.links: list[str] = []
        self.options: dict[str, list[str]] = {}
        self._board = 0
        self._td: dict[str, str] | None = None
        self._text = ""
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids[a["id"]] = (tag, a)
        if tag == "table" and "board" in a.get("class", "").split():
            self._board += 1
        if tag == "tr" and self._board and "data-name" in a:
            self.rows.append(a)
            self.cells.append([])
        if tag == "td" and self._board and self.cells:
            self._td, self._text = a, ""
        if tag == "a":
            self.links.append(a.get("href", ""))
        if tag == "select":
            self._select = a.get("id")
            self.options[a["id"]] = []
        if tag == "option" and self._select:
            self.options[self._select].append(a.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._board:
            self._board -= 1
        if tag == "td" and self._td is not None:
            self.cells[-1].append((self._td, self._text))
            self._td = None
        if tag == "select":
            self._select = None

    def handle_data(self, data: str) -> None:
        if self._td is not None:
            self._text += data


def _page(board: Board) -> _Page:
    parser = _Page()
    parser.feed(board.html.read_text(encoding="utf-8"))
    return parser


def _column(key: str) -> int:
    return next(i for i, c in enumerate(COLUMNS) if c.key == key)


# ------------------------------------------------------------------------------------------ HTML structure


def test_filter_controls_exist(board: Board) -> None:
    page = _page(board)
    assert page.ids["filters"][0] == "form"
    for key, tag in (("protocol", "select"), ("status", "select"), ("external", "select"), ("pmin", "input"),
                     ("pmax", "input"), ("q", "input")):
        found_tag, attrs = page.ids[f"filter-{key}"]
        assert found_tag == tag and attrs["data-filter"] == key, key
    assert page.ids["filter-pmin"][1]["type"] == "number" and page.ids["filter-q"][1]["type"] == "search"
    assert page.ids["filter-reset"][0] == "button"
    assert "filter-count" in page.ids and "hidden" in page.ids["filter-notice"][1]
    assert page.options["filter-status"] == ["", *STATUSES]
    assert page.options["filter-external"] == ["", "none", "ImageNet", "in-domain", "other"]
    assert "finetune" in page.options["filter-protocol"]


def test_every_ranked_row_carries_the_filter_attributes(board: Board) -> None:
    page = _page(board)
    entries = {e.name: e for _, e in load_entries(board)[0]}
    assert sorted(r["data-name"] for r in page.rows) == sorted(entries)
    for row in page.rows:
        entry = entries[row["data-name"]]
        assert row["data-protocol"] == entry.protocol == "finetune"
        assert row["data-status"] == entry.status
        assert row["data-external"] == "none"
        assert row["data-params"] == ("" if entry.parameters is None else str(entry.parameters))
        assert entry.name in row["data-search"] and entry.backbone.lower() in row["data-search"]
        assert row["data-search"] == row["data-search"].lower()


def test_page_links_its_exports_and_has_no_external_resources(board: Board) -> None:
    page = _page(board)
    assert {"results.csv", "results.json", "entry.schema.json"} <= set(page.links)
    text = board.html.read_text(encoding="utf-8")
    assert "default-src 'none'" in text.replace("&#x27;", "'")
    for needle in ("<link", 'src="http', "@import", "url(http"):
        assert needle not in text


def test_notes_describe_the_statistical_procedure(board: Board, tmp_path: Path) -> None:
    for text in (board.readme.read_text(encoding="utf-8"), board.html.read_text(encoding="utf-8")):
        for needle in ("Nadeau and Bengio (2003)", "Bouckaert and Frank 2004", "Holm 1979", "1/k + n_test/n_train",
                       "paired bootstrap over the test images", "Tiers: tier 1 is the leader",
                       "rank 95 % interval", "docs/statistics.md"):
            assert needle in text.replace("\\_", "_"), needle
    # the main board (leaderboard/ in the repository) links the document itself
    main = main_board(tmp_path / "main")
    assert "sources: [docs/statistics.md](../docs/statistics.md)." in main.readme.read_text(encoding="utf-8")
    assert "../docs/statistics.md" in _page(main).links
    assert (Path(__file__).resolve().parents[1] / "docs" / "statistics.md").is_file()


def test_tiers_and_rank_intervals_are_shown(board: Board) -> None:
    page = _page(board)
    tier, rank_ci, vs = _column("tier"), _column("rank_ci"), _column("vs_leader")
    for cells in page.cells:
        assert cells[tier][1] == "1"  # identical results: one tier
        assert cells[rank_ci][1] in ("1", "1–2")
    verdicts = sorted(cells[vs][1] for cells in page.cells)
    assert verdicts[0] == "leader" and verdicts[1].startswith("≈ (p = 1")


# --------------------------------------------------------------------------- absent probability metrics


def test_absent_probability_metrics_show_a_dash_never_zero(board: Board) -> None:
    page = _page(board)
    by_name = {row["data-name"]: cells for row, cells in zip(page.rows, page.cells, strict=True)}
    for metric in PROBABILITY_METRICS:
        attrs, text = by_name["no_probs"][_column(metric)]
        assert text == "—" and attrs["data-v"] == "" and "absent" in attrs["title"], metric
        _, shown = by_name["baseline_majority"][_column(metric)]
        assert shown != "—" and float(shown.split(" ")[0]) >= 0, metric
    lines = {line.split(" | ")[2].strip("* "): line.split(" | ") for line in
             board.readme.read_text(encoding="utf-8").splitlines() if line.startswith("| 1 |")}
    for metric in PROBABILITY_METRICS:
        assert lines["no_probs"][_column(metric)] == "—", metric
        assert lines["baseline_majority"][_column(metric)] != "—", metric
    auroc = lines["baseline_majority"][_column("auroc")]
    assert auroc.startswith("0.500")  # the majority baseline's constant probabilities rank nothing: 0.5


# ------------------------------------------------------------------------------------------------ export


def test_results_json_holds_the_computed_figures(board: Board) -> None:
    document = json.loads((board.root / "results.json").read_text(encoding="utf-8"))
    assert document["schema_version"] == 1 and document["board"] == "demo"
    sections = sections_for(board, [e for _, e in load_entries(board)[0]])
    rows = {r.name: r for s in sections for r in s.rows}
    records = {r["name"]: r for s in document["sections"] for r in s["entries"]}
    assert sorted(records) == sorted(rows)
    for name, record in records.items():
        row = rows[name]
        assert set(record["metrics"]) == set(ALL_METRICS)
        assert record["metrics"]["f1"] == {"mean": row.f1.mean, "std": row.f1.std}
        assert record["rank"] == row.rank and record["tier"] == row.tier
        assert record["rank_ci"] == list(row.rank_ci) and record["f1_ci"] == list(row.ci)
        assert record["per_class_f1"] == {c: row.per_class[c]["f1"] for c in CLASS_CODES}
    assert all(records["no_probs"]["metrics"][m] is None for m in PROBABILITY_METRICS)
    assert records["baseline_majority"]["metrics"]["auroc"]["mean"] == pytest.approx(0.5)
    assert records["no_probs"]["weights"] == {"url": WEIGHTS_URL, "sha256": hashlib.sha256(WEIGHTS).hexdigest(),
                                              "licence": "CC-BY-4.0"}


def test_results_csv_has_every_board_column_and_per_class_f1(board: Board) -> None:
    text = (board.root / "results.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(CSV_COLUMNS) and len(rows) == 2
    exported = {"pretraining": "pretraining_data", "f1_ci": "f1_ci_low", "rank_ci": "rank_ci_low",
                "weights": "weights_url"}
    for column in COLUMNS:
        key = exported.get(column.key, column.key)
        assert key in CSV_COLUMNS or f"{key}_mean" in CSV_COLUMNS, column.key
    assert all(f"f1_{code}" in CSV_COLUMNS for code in CLASS_CODES)
    records = json.loads((board.root / "results.json").read_text(encoding="utf-8"))["sections"][0]["entries"]
    for row, record in zip(rows, records, strict=True):
        assert row["name"] == record["name"]
        assert float(row["f1_mean"]) == record["metrics"]["f1"]["mean"]  # repr round-trips exactly
        assert float(row["f1_ABE"]) == record["per_class_f1"]["ABE"]
    no_probs = next(r for r in rows if r["name"] == "no_probs")
    assert all(no_probs[f"{m}_mean"] == "" for m in PROBABILITY_METRICS)  # empty, never 0
    assert no_probs["weights_url"] == WEIGHTS_URL


def test_show_prints_the_exports(board: Board) -> None:
    for fmt, name in (("csv", "results.csv"), ("json", "results.json")):
        result = runner.invoke(app, ["leaderboard", "show", "--board", "demo", "--dir", str(board.root),
                                     "--format", fmt])
        assert result.exit_code == 0, result.output
        assert result.output == (board.root / name).read_text(encoding="utf-8")
    result = runner.invoke(app, ["leaderboard", "show", "--board", "demo", "--dir", str(board.root), "--format",
                                 "xml"])
    assert result.exit_code == 2 and "--format" in result.output and "Traceback" not in result.output


def test_show_names_entries_it_cannot_read(board: Board, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "board"
    shutil.copytree(board.root, copy)
    (copy / "entries" / "no_probs.json").write_text("{ not json", encoding="utf-8")
    result = runner.invoke(app, ["leaderboard", "show", "--board", "demo", "--dir", str(copy), "--format", "csv"])
    assert result.exit_code == 0 and "left out: entries/no_probs.json" in result.stderr
    assert "no_probs" not in result.stdout and "baseline_majority" in result.stdout


# ----------------------------------------------------------------------------------------------- weights


def test_weights_are_hashed_from_the_local_file_and_shown(board: Board) -> None:
    entry = next(e for _, e in load_entries(board)[0] if e.name == "no_probs")
    assert entry.weights is not None and entry.weights.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    page = _page(board)
    assert WEIGHTS_URL in page.links
    by_name = {row["data-name"]: cells for row, cells in zip(page.rows, page.cells, strict=True)}
    attrs, text = by_name["no_probs"][_column("weights")]
    assert text == "download" and entry.weights.sha256 in attrs["title"] and "CC-BY-4.0" in attrs["title"]
    assert by_name["baseline_majority"][_column("weights")][1] == "—"
    assert check_board(board) == []


def test_weights_hash_mismatch_and_bad_input_are_refused(run: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "w.pt"
    checkpoint.write_bytes(WEIGHTS)
    folder = tmp_path / "board"
    base = ["leaderboard", "add", str(run), "--board", "demo", "--dir", str(folder), "--name", "w"]
    cases = [
        (["--weights-url", WEIGHTS_URL, "--weights-file", str(checkpoint), "--weights-sha256", "ab" * 32],
         "weights hash mismatch"),
        (["--weights-url", WEIGHTS_URL, "--weights-file", str(checkpoint), "--weights-sha256", "xyz"],
         "64 hex digits"),
        (["--weights-url", "ftp://example.org/w.pt", "--weights-file", str(checkpoint)], "http(s) URL"),
        (["--weights-url", WEIGHTS_URL, "--weights-file", str(tmp_path / "missing.pt")], "no such file"),
        (["--weights-url", WEIGHTS_URL], "fold*/best.pt"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, extra
        assert not (folder / "entries" / "w.json").exists(), extra  # nothing half written
    result = runner.invoke(app, [*base, "--weights-url", WEIGHTS_URL, "--weights-file", str(checkpoint),
                                 "--weights-sha256", hashlib.sha256(WEIGHTS).hexdigest().upper()])
    assert result.exit_code == 0, result.output
    assert json.loads((folder / "entries" / "w.json").read_text())["weights"]["sha256"] == \
        hashlib.sha256(WEIGHTS).hexdigest()
    with pytest.raises(BmbenchError, match="holds no fold"):
        from bmbench.leaderboard.weights import checkpoint_of

        checkpoint_of(tmp_path, None)
