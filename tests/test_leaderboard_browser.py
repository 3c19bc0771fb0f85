"""The HTML board in a real headless browser: Playwright (sync API) driving Debian's Chromium.

The page must load without JavaScript errors, console errors or Content-Security-Policy violations, show
every entry, reorder rows on a real click on a column header, narrow the rows with each filter control,
restore filters and sort from the address (``#protocol=...&q=...&sort=f1:desc``) on reload, keep hostile
entry text inert, and render a page that is not blank (the screenshot is kept as a CI artefact).

Nothing is installed here: ``.ci/run`` installs Chromium (scripts/ensure-chromium.sh) and ``make setup``
installs the pinned ``playwright`` wheel (the ``test`` extra; no browser download). When either is missing
these tests fail and say what to run; they never skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bmbench.leaderboard.board import Board, external_data_kind
from bmbench.leaderboard.build import render_board
from bmbench.leaderboard.entries import load_entries
from bmbench.leaderboard.schema import Entry
from bmbench.splits.store import Split
from leaderboard_helpers import demo_board, main_board, real_split_run, synthetic_run

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
"""The names scripts/ensure-chromium.sh looks for (after $BMBENCH_CHROMIUM), in its order."""
INSTALL_HINT = ("run `bash scripts/ensure-chromium.sh` (as root; .ci/run does) to install Debian's chromium, "
                "or set BMBENCH_CHROMIUM to a Chromium-family browser")
ARTIFACTS_ENV = "BMBENCH_TEST_ARTIFACTS"
"""Folder for files CI keeps (the board screenshot); a temporary folder when unset."""
HOME = "#section-bm-bm-cv5-v1-table"
PAPER = "#section-bm-gluge2023-cv5-table"
ROWS = "table.board tbody tr"
CSP_WATCH = """document.addEventListener("securitypolicyviolation", function (e) {
  console.error("CSP violation: " + e.violatedDirective + " blocked " + (e.blockedURI || "inline"));
});"""
"""Injected before any page script (Playwright's init scripts are not subject to the page's CSP)."""


def chromium_path() -> str | None:
    """The browser scripts/ensure-chromium.sh would report: $BMBENCH_CHROMIUM, then the usual names."""
    for name in (os.environ.get("BMBENCH_CHROMIUM"), *BROWSERS):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: `make setup` (or pip install -e '.[test]') installs the "
                    "pinned version; it needs no browser download (never run `playwright install`)")
    executable = chromium_path()
    if executable is None:
        pytest.fail(f"no Chromium found on PATH ({', '.join(BROWSERS)}): {INSTALL_HINT}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


class Watched:
    """One page and everything that went wrong on it: exceptions, console errors, CSP violations, dialogs."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", lambda m: self.problems.append(f"console.{m.type}: {m.text}")
                if m.type in ("error", "assert") else None)
        page.on("pageerror", lambda exc: self.problems.append(f"exception: {exc}"))
        page.on("dialog", self._dialog)
        page.add_init_script(CSP_WATCH)

    def _dialog(self, dialog: Any) -> None:
        self.problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    def open(self, path: Path, fragment: str = "") -> None:
        """Load the page (fresh, even if only the fragment differs) and wait until its script ran."""
        self.page.goto("about:blank")
        self.page.goto(path.as_uri() + fragment)
        self.page.wait_for_selector("html[data-ready='1']", state="attached", timeout=10_000)

    def shown(self, table: str = "") -> list[str]:
        """``data-name`` of the rows a user sees (rendered, not hidden), in page order."""
        return self.page.locator(f"{table} tbody tr:visible" if table else f"{ROWS}:visible").evaluate_all(
            "rows => rows.map(r => r.getAttribute('data-name'))")

    def values(self, table: str, key: str) -> list[Any]:
        """The sort values (``data-v``) of column ``key`` in ``table``, top to bottom (numbers as floats)."""
        return self.page.eval_on_selector(table, """(t, key) => {
            const i = Array.from(t.tHead.rows[0].cells).findIndex(c => c.dataset.key === key);
            return Array.from(t.tBodies[0].rows).map(r => {
                const v = r.cells[i].getAttribute('data-v');
                return v === '' ? null : (isNaN(parseFloat(v)) ? v : parseFloat(v)); });
        }""", key)

    def sort_by(self, table: str, key: str) -> None:
        self.page.click(f"{table} th[data-key={key}] button")

    def address_hash(self) -> str:
        """``location.hash`` as the page sees it (``page.url`` follows replaceState only later)."""
        return self.page.evaluate("window.location.hash")

    def count_text(self) -> str:
        return self.page.inner_text("#filter-count")


@pytest.fixture
def page(browser: Any) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    yield Watched(context.new_page())
    context.close()


@pytest.fixture(scope="module")
def boards(tmp_path_factory: pytest.TempPathFactory, bm_split: Split) -> tuple[Board, Board]:
    """The main board (the paper's rows and three results on the published split) and a demo board."""
    base = tmp_path_factory.mktemp("browser-runs")
    real = [(real_split_run(base / f"r{i}" / "baseline_majority" / "bm", bm_split, accuracy=acc, seed=i), name)
            for i, (acc, name) in enumerate(((0.80, "model_a"), (0.70, "model_b"), (0.799, "model_c")))]
    main = main_board(tmp_path_factory.mktemp("browser") / "main", real, predictions=False)
    demo = demo_board(tmp_path_factory.mktemp("browser") / "demo", [synthetic_run(base, "baseline_majority")])
    return main, demo


def _entries(board: Board) -> list[Entry]:
    return [entry for _, entry in load_entries(board)[0]]


def _params(entry: Entry) -> int | None:
    return entry.parameters if entry.parameters is not None else (entry.encoder.parameters if entry.encoder else None)


def _matching(board: Board, **want: Any) -> list[str]:
    """Names of the entries a filter should keep, decided from the entries (not from the page)."""
    keep = []
    for entry in _entries(board):
        params = _params(entry)
        text = " ".join([entry.name, entry.backbone, entry.init, *entry.pretraining_data,
                         entry.encoder.id if entry.encoder else ""]).lower()
        if ("protocol" in want and entry.protocol != want["protocol"]
                or "status" in want and entry.status != want["status"]
                or "external" in want and external_data_kind(entry.pretraining_data) != want["external"]
                or "pmin" in want and (params is None or params < want["pmin"] * 1e6)
                or "pmax" in want and (params is None or params > want["pmax"] * 1e6)
                or "q" in want and want["q"] not in text):
            continue
        keep.append(entry.name)
    return sorted(keep)


def test_pages_load_without_errors_and_show_every_entry(page: Watched, boards: tuple[Board, Board]) -> None:
    for board in boards:
        page.open(board.html)
        names = sorted(e.name for e in _entries(board))
        assert sorted(page.shown()) == names and page.problems == []
        text = page.page.inner_text("body")
        assert all(name in text for name in names)
        assert page.count_text() == f"{len(names)} of {len(names)} entries shown"
        assert page.page.is_hidden("#filter-notice")
    assert "SYNTHETIC DATA" in page.page.inner_text(".banner")
    assert page.page.locator("figure svg").count() == 1
    assert page.page.locator("#heat-f1 tbody tr").count() == 1
    assert page.problems == []


def test_the_watch_catches_a_csp_violation_and_a_script_error(page: Watched, tmp_path: Path) -> None:
    """The zero-problem assertions above can fail: a blocked inline script and a thrown error are seen."""
    path = tmp_path / "bad.html"
    path.write_text("<!DOCTYPE html><html><head><meta http-equiv='Content-Security-Policy' content=\"script-src "
                    "'none'\"></head><body><script>document.title = 'ran';</script></body></html>")
    page.page.goto(path.as_uri())
    page.page.evaluate("setTimeout(() => { throw new Error('marker-42'); }, 0)")
    page.page.wait_for_timeout(200)
    assert page.page.title() != "ran"
    assert any("CSP violation: script-src" in p for p in page.problems), page.problems
    assert any("marker-42" in p for p in page.problems), page.problems


def test_clicking_column_headers_sorts_the_rows(page: Watched, boards: tuple[Board, Board]) -> None:
    main, _ = boards
    page.open(main.html)
    before = page.shown(PAPER)
    f1 = page.values(PAPER, "f1")
    assert f1 == sorted(f1, reverse=True)  # the default order: F1, best first

    page.sort_by(PAPER, "recall")
    recall = page.values(PAPER, "recall")
    assert recall == sorted(recall, reverse=True) and recall[0] > recall[-1]
    assert page.shown(PAPER) != before and sorted(page.shown(PAPER)) == sorted(before)
    assert page.page.get_attribute(f"{PAPER} th[data-key=recall]", "aria-sort") == "descending"
    assert page.page.get_attribute(f"{PAPER} th[data-key=f1]", "aria-sort") == "none"

    page.sort_by(PAPER, "recall")  # again: reversed
    assert page.values(PAPER, "recall") == sorted(recall)
    assert page.page.get_attribute(f"{PAPER} th[data-key=recall]", "aria-sort") == "ascending"

    page.sort_by(PAPER, "name")
    assert page.shown(PAPER) == sorted(before)

    page.sort_by(HOME, "vs_leader")  # a column with blanks: they sort last
    verdicts = page.values(HOME, "vs_leader")
    assert verdicts[0] == 2.0 and verdicts == sorted(verdicts, reverse=True)
    assert page.problems == []


def test_each_filter_changes_the_visible_rows(page: Watched, boards: tuple[Board, Board]) -> None:
    main, _ = boards
    page.open(main.html)
    total = len(_entries(main))
    p = page.page
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("#filter-protocol", "linear", {"protocol": "linear"}),
        ("#filter-status", "submitted", {"status": "submitted"}),
        ("#filter-external", "ImageNet", {"external": "ImageNet"}),
        ("#filter-external", "none", {"external": "none"}),
    ]
    for selector, value, want in cases:
        p.select_option(selector, value)
        expected = _matching(main, **want)
        assert 0 < len(expected) < total, f"{want} does not test anything on this board"
        assert sorted(page.shown()) == expected, want
        assert page.count_text() == f"{len(expected)} of {total} entries shown"
        p.click("#filter-reset")
        assert len(page.shown()) == total

    p.fill("#filter-pmin", "100")
    p.fill("#filter-pmax", "200")
    expected = _matching(main, pmin=100, pmax=200)
    assert 0 < len(expected) < total and sorted(page.shown()) == expected
    p.fill("#filter-pmax", "")
    assert sorted(page.shown()) == _matching(main, pmin=100)

    p.click("#filter-reset")
    p.fill("#filter-q", "RegNet")  # the search ignores case
    expected = _matching(main, q="regnet")
    assert 0 < len(expected) < total and sorted(page.shown()) == expected
    p.select_option("#filter-external", "none")  # filters combine
    both = sorted(set(expected) & set(_matching(main, external="none")))
    assert both and sorted(page.shown()) == both
    assert p.locator(f"{ROWS}[hidden]").count() == total - len(both)

    p.click("#filter-reset")
    assert len(page.shown()) == total and p.input_value("#filter-q") == "" and p.input_value("#filter-external") == ""
    assert page.count_text() == f"{total} of {total} entries shown"
    assert page.address_hash() == ""  # the reset state leaves nothing in the address
    assert page.problems == []


def test_the_address_restores_filters_and_sort(page: Watched, boards: tuple[Board, Board]) -> None:
    main, _ = boards
    page.open(main.html, "#protocol=finetune&q=regnet&sort=f1:asc")
    expected = _matching(main, protocol="finetune", q="regnet")
    assert 0 < len(expected) < len(_entries(main)) and sorted(page.shown()) == expected
    assert page.page.input_value("#filter-protocol") == "finetune" and page.page.input_value("#filter-q") == "regnet"
    shown_f1 = [v for v, visible in zip(page.values(PAPER, "f1"), _visible_flags(page, PAPER), strict=True)
                if visible]
    assert shown_f1 == sorted(shown_f1) and shown_f1[0] < shown_f1[-1]  # sort=f1:asc applied

    # a filter set by hand goes into the address, and a reload restores it
    page.page.click("#filter-reset")
    page.page.select_option("#filter-protocol", "linear")
    page.page.fill("#filter-q", "dinobloom-l")
    assert "protocol=linear" in page.address_hash() and "q=dinobloom-l" in page.address_hash()
    chosen = page.shown()
    assert chosen == _matching(main, protocol="linear", q="dinobloom-l") and len(chosen) == 1
    page.page.reload()
    page.page.wait_for_selector("html[data-ready='1']", state="attached")
    assert page.shown() == chosen and page.page.input_value("#filter-protocol") == "linear"

    # unknown keys and values are ignored and named, the rest still applies
    page.open(main.html, "#protocol=nonsense&colour=red&status=submitted")
    notice = page.page.inner_text("#filter-notice")
    assert page.page.is_visible("#filter-notice") and "protocol=nonsense" in notice and "colour=red" in notice
    assert sorted(page.shown()) == _matching(main, status="submitted")
    assert page.problems == []


def _visible_flags(page: Watched, table: str) -> list[bool]:
    return page.page.eval_on_selector(table, "t => Array.from(t.tBodies[0].rows).map(r => !r.hidden)")


def test_filters_on_the_demo_board(page: Watched, boards: tuple[Board, Board]) -> None:
    _, demo = boards
    page.open(demo.html)
    (name,) = [e.name for e in _entries(demo)]
    page.page.fill("#filter-q", "no-such-model")
    assert page.shown() == [] and page.count_text() == "0 of 1 entries shown"
    assert page.page.locator("#heat-f1 tbody tr:visible").count() == 0  # the per-class view follows the filter
    page.page.fill("#filter-q", name[:8])
    assert page.shown() == [name] and page.page.locator("figure[data-name]:visible").count() == 1
    assert page.problems == []


HOSTILE = {
    "name": "<script>alert(1)</script>",
    "authors": ['<img src=x onerror="alert(2)">', "</style><body onload=alert(3)>",
                '<svg onload="console.error(\'hostile-svg\')"><script>alert(4)</script></svg>'],
    "backbone": "</style><style>body{display:none}</style>",
    "init": "<iframe src=javascript:alert(5)>",
    "notes": "<a href=\"javascript:alert(6)\">x</a><b onmouseover=alert(7)>hover</b>",
}


def test_hostile_entry_text_stays_inert(page: Watched, boards: tuple[Board, Board], tmp_path: Path) -> None:
    _, demo = boards
    entry = _entries(demo)[0]
    hostile = entry.model_copy(update={**HOSTILE, "code": entry.code.model_copy(update={"url": "javascript:alert(8)"})})
    _, html_text = render_board(demo, [hostile])
    path = tmp_path / "index.html"
    path.write_text(html_text, encoding="utf-8")
    page.open(path)
    title = page.page.title()
    page.page.hover("td.name")
    page.page.fill("#filter-q", "script")  # filtering re-renders nothing as HTML
    page.page.wait_for_timeout(100)
    assert page.page.title() == title == demo.title
    assert HOSTILE["name"] in page.page.inner_text("td.name")
    assert page.page.locator("script").count() == 1  # only the page's own
    assert page.page.locator("img, iframe, svg[onload], a[href^=javascript], [onerror], [onload], [onmouseover]"
                             ).count() == 0
    assert page.page.is_visible("body") and page.page.is_visible("table.board")
    assert page.problems == []  # no dialog, no console marker, no CSP violation (nothing even tried to run)


def test_screenshot_of_the_board_is_not_blank(page: Watched, boards: tuple[Board, Board], tmp_path: Path) -> None:
    from PIL import Image, ImageStat

    main, _ = boards
    page.open(main.html)
    folder = Path(os.environ.get(ARTIFACTS_ENV) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / "leaderboard.png"
    page.page.screenshot(path=str(shot), full_page=True)
    with Image.open(shot) as image:
        assert image.width >= 1000 and image.height >= 1500
        grey = image.convert("L")
        spread = ImageStat.Stat(grey).stddev[0]
        dark = sum(grey.histogram()[:100]) / (image.width * image.height)
    assert spread > 10 and dark > 0.005  # text and tables drawn, not a blank page
    assert page.problems == []


HOSTILE_NAME = "x<script>alert('gallery')</script><img src=x onerror=alert(2)>"


def _gallery(tmp_path: Path) -> tuple[Path, int]:
    """An explain gallery page rendered by bmbench from made-up examples (one right, one wrong), with a
    hostile submission name; returns the page and the number of image panels it must show."""
    import numpy as np

    from bmbench.explain.gallery import ExplainedExample, ExplainResult, Example, render_html
    from bmbench.records.explain import Available, ExplainedImage, ExplainRecord
    from bmbench.records.run import DataRef, SplitRef, SubmissionRef

    rng = np.random.default_rng(0)
    examples = [Example(image_id="ABE_00001", fold=0, true="ABE", pred="ABE", p_true=0.9, p_pred=0.9),
                Example(image_id="ABE_00002", fold=1, true="ABE", pred="BLA", p_true=0.2, p_pred=0.7)]
    explained = [ExplainedExample(example=ex, image=rng.integers(0, 256, (40, 40, 3), dtype=np.uint8),
                                  maps={c: rng.random((40, 40)).astype(np.float32) for c in {ex.true, ex.pred}})
                 for ex in examples]
    hexd = "0" * 64
    record = ExplainRecord(
        run_dir="runs/x/synthetic", submission=SubmissionRef(name=HOSTILE_NAME, digest=hexd, folder="subs/x"),
        split=SplitRef(name="synthetic-cv5-v1", sha256=hexd, dataset="synthetic"),
        data=DataRef(dataset="synthetic", synthetic=True, root="/d"), class_code="ABE", class_name="Abnormal",
        n_requested=2, available=Available(correct=1, misclassified=1), selection="s", method="Grad-CAM",
        target_layer="features.0", target_rule="last conv", input_size=40,
        examples=[ExplainedImage(image_id=x.image_id, fold=x.fold, true=x.true, pred=x.pred, p_true=x.p_true,
                                 p_pred=x.p_pred, correct=x.correct, maps_for=[x.pred]) for x in examples])
    result = ExplainResult(out_dir=tmp_path, png=tmp_path / "gallery.png", html=tmp_path / "gallery.html",
                           json=tmp_path / "explain.json", examples=explained, available_correct=1,
                           available_wrong=1, target_layer="features.0", target_rule="last conv", synthetic=True,
                           smoke=False, record=record)
    result.html.write_text(render_html(result), encoding="utf-8")
    return result.html, 2 + 3  # a right answer: image + its map; a wrong one: image + both classes' maps


def test_the_explain_gallery_page_shows_every_panel_and_runs_nothing(page: Watched, tmp_path: Path) -> None:
    path, panels = _gallery(tmp_path)
    page.page.goto(path.as_uri())
    page.page.wait_for_load_state("load")
    decoded = page.page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
    assert decoded == [True] * panels  # every embedded data-URI image decodes
    assert "SYNTHETIC DATA" in page.page.inner_text("body")
    assert HOSTILE_NAME in page.page.title()  # shown as text, not parsed as markup
    assert page.page.locator("script").count() == 0 and not page.problems, page.problems
