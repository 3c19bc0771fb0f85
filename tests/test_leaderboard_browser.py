"""The HTML board in a real headless browser (Chromium from the system's packages, driven over DevTools).

The page must load without JavaScript errors or Content-Security-Policy violations, show every entry,
reorder the rows when a column header is clicked (a real mouse click) or when ``#sort=<column>`` is in
the address, and show a hostile entry name as text. Chromium is installed by scripts/ensure-chromium.sh
where missing (`.ci/run` calls it); the tests skip, saying why, only when it is absent and cannot be
installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bmbench.leaderboard.board import Board
from bmbench.leaderboard.build import render_board
from bmbench.leaderboard.entries import load_entries
from bmbench.splits.store import Split
from chromium_cdp import Browser, ensure_chromium
from leaderboard_helpers import demo_board, main_board, real_split_run, synthetic_run

ROWS_JS = ("Array.from(document.querySelector({table}).tBodies[0].rows)"
           ".map(function (r) {{ return r.getAttribute('data-name'); }})")
VALUES_JS = ("Array.from(document.querySelector({table}).tBodies[0].rows).map(function (r) {{"
             " var i = Array.from(r.parentNode.parentNode.tHead.rows[0].cells).findIndex(function (c) {{"
             " return c.getAttribute('data-key') === {key}; }}); var v = r.cells[i].getAttribute('data-v');"
             " return v === '' ? null : (isNaN(parseFloat(v)) ? v : parseFloat(v)); }})")
HOME_TABLE = "'#section-bm-bm-cv5-v1-table'"
PAPER_TABLE = "'#section-bm-gluge2023-cv5-table'"


@pytest.fixture(scope="module")
def chromium() -> str:
    path, why = ensure_chromium()
    if path is None:
        pytest.skip(why)
    return path


@pytest.fixture(scope="module")
def boards(tmp_path_factory: pytest.TempPathFactory, bm_split: Split) -> tuple[Board, Board]:
    """The main board (the paper's rows and three results on the published split) and a demo board."""
    base = tmp_path_factory.mktemp("browser-runs")
    real = [(real_split_run(base / f"r{i}" / "baseline_majority" / "bm", bm_split, accuracy=acc, seed=i), name)
            for i, (acc, name) in enumerate(((0.80, "model_a"), (0.70, "model_b"), (0.799, "model_c")))]
    main = main_board(tmp_path_factory.mktemp("browser") / "main", real, predictions=False)
    demo = demo_board(tmp_path_factory.mktemp("browser") / "demo", [synthetic_run(base, "baseline_majority")])
    return main, demo


@pytest.fixture(scope="module")
def browser(chromium: str):
    with Browser(chromium) as b:
        yield b


def _names(board: Board) -> list[str]:
    return sorted(entry.name for _, entry in load_entries(board)[0])


def test_pages_load_without_errors_and_show_every_entry(browser: Browser, boards: tuple[Board, Board]) -> None:
    for board in boards:
        browser.open(board.html.as_uri())
        assert browser.evaluate("document.documentElement.getAttribute('data-ready')") == "1", \
            f"the page's script did not run: {browser.problems()}"
        shown = browser.evaluate("Array.from(document.querySelectorAll('table.board tbody tr'))"
                                 ".map(function (r) { return r.getAttribute('data-name'); })")
        assert sorted(shown) == _names(board)
        text = browser.evaluate("document.body.innerText")
        assert all(name in text for name in _names(board))
        assert browser.problems() == []
    assert "SYNTHETIC DATA" in browser.evaluate("document.querySelector('.banner').innerText")
    assert browser.evaluate("document.querySelectorAll('figure svg').length") == 1
    assert browser.evaluate("document.querySelectorAll('#heat-f1 tbody tr').length") == 1


def _values(browser: Browser, table: str, key: str) -> list:
    return browser.evaluate(VALUES_JS.format(table=table, key=repr(key)))


def test_clicking_a_column_header_reorders_the_rows(browser: Browser, boards: tuple[Board, Board]) -> None:
    main, _ = boards
    browser.open(main.html.as_uri())
    before = browser.evaluate(ROWS_JS.format(table=PAPER_TABLE))
    f1 = _values(browser, PAPER_TABLE, "f1")
    assert f1 == sorted(f1, reverse=True)  # the default order: F1, best first

    browser.click(f"{PAPER_TABLE[1:-1]} th[data-key=recall] button")
    recall = _values(browser, PAPER_TABLE, "recall")
    after = browser.evaluate(ROWS_JS.format(table=PAPER_TABLE))
    assert recall == sorted(recall, reverse=True) and after != before and sorted(after) == sorted(before)
    assert browser.evaluate(f"document.querySelector('{PAPER_TABLE[1:-1]} th[data-key=recall]')"
                            ".getAttribute('aria-sort')") == "descending"

    browser.click(f"{PAPER_TABLE[1:-1]} th[data-key=recall] button")  # again: reversed
    assert _values(browser, PAPER_TABLE, "recall") == sorted(recall)

    browser.click(f"{PAPER_TABLE[1:-1]} th[data-key=name] button")
    names = browser.evaluate(ROWS_JS.format(table=PAPER_TABLE))
    assert names == sorted(names)

    browser.click(f"{HOME_TABLE[1:-1]} th[data-key=vs_leader] button")  # values with blanks sort them last
    verdicts = _values(browser, HOME_TABLE, "vs_leader")
    assert verdicts[0] == 2.0 and verdicts == sorted(verdicts, reverse=True)
    assert browser.problems() == []


def test_sort_in_the_address_is_applied_on_load(browser: Browser, boards: tuple[Board, Board]) -> None:
    main, _ = boards
    browser.open(main.html.as_uri() + "#sort=precision:asc")
    precision = _values(browser, PAPER_TABLE, "precision")
    assert precision == sorted(precision) and precision[0] < precision[-1]
    home = _values(browser, HOME_TABLE, "precision")
    assert home == sorted(home)
    browser.open(main.html.as_uri() + "#sort=rank")
    assert _values(browser, PAPER_TABLE, "rank") == sorted(_values(browser, PAPER_TABLE, "rank"))
    assert browser.problems() == []


def test_home_section_groups_entries_not_distinguishable_from_the_leader(browser: Browser,
                                                                          boards: tuple[Board, Board]) -> None:
    main, _ = boards
    browser.open(main.html.as_uri())
    tied = browser.evaluate(f"Array.from(document.querySelectorAll('{HOME_TABLE[1:-1]} tbody tr.tied'))"
                            ".map(function (r) { return r.getAttribute('data-name'); })")
    assert tied[0] in ("model_a", "model_c") and "model_b" not in tied


def test_hostile_entry_is_shown_as_text(browser: Browser, boards: tuple[Board, Board], tmp_path: Path) -> None:
    _, demo = boards
    entry = load_entries(demo)[0][0][1]
    hostile = entry.model_copy(update={
        "name": "<script>alert(1)</script>",
        "authors": ['<img src=x onerror="alert(2)">'],
        "code": entry.code.model_copy(update={"url": "javascript:alert(3)"}),
    })
    _, page = render_board(demo, [hostile])
    path = tmp_path / "index.html"
    path.write_text(page, encoding="utf-8")
    browser.open(path.as_uri())
    assert "<script>alert(1)</script>" in browser.evaluate("document.querySelector('td.name').innerText")
    assert browser.evaluate("document.querySelectorAll('script').length") == 1
    assert browser.evaluate("document.querySelectorAll('img, a[href^=javascript]').length") == 0
    assert browser.problems() == []


def test_screenshot_of_the_board(browser: Browser, boards: tuple[Board, Board], tmp_path: Path) -> None:
    from PIL import Image, ImageStat

    main, _ = boards
    browser.open(main.html.as_uri())
    shot = browser.screenshot(tmp_path / "board.png")
    with Image.open(shot) as image:
        assert image.width >= 1000 and image.height >= 1500
        spread = ImageStat.Stat(image.convert("L")).stddev[0]
    assert spread > 10  # not a blank page
