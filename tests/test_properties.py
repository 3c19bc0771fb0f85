"""Property tests of the three readers of user files (issue 12): mutated valid inputs give a valid result or
the reader's own error, never another exception.

* the predictions reader (``scoring.predictions.read_predictions``): ``PredictionsError`` or a result;
* the leaderboard entry loader and check (``leaderboard.entries.load_entries``, ``leaderboard.check``):
  problems or a result, never a raise;
* the submission loader (``submissions.schema.load_submission``): ``BmbenchError`` or a result.

Mutations are byte-level (flips, insertions, deletions, truncation, other encodings) and structural (huge
numbers, NaN/inf, duplicated ids, extra columns, nested values). The suite runs a couple of hundred examples
per property in seconds; ``make fuzz`` (``-m fuzz``) runs thousands.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bmbench.errors import BmbenchError, PredictionsError
from bmbench.leaderboard.board import get_board
from bmbench.leaderboard.check import check_board
from bmbench.leaderboard.entries import load_entries
from bmbench.scoring.predictions import read_predictions
from bmbench.submissions.registry import default_submissions_dir
from bmbench.submissions.schema import load_submission
from conftest import header, prediction_rows

SIZES = [pytest.param(150, id="suite"), pytest.param(3000, marks=pytest.mark.fuzz, id="fuzz")]
"""Examples per property: the default run, and `make fuzz`."""


def _run(examples: int, strategy: st.SearchStrategy, check: Callable[[Any], None]) -> None:
    """Run ``check`` over ``examples`` draws of ``strategy`` (deterministic: derandomised, no database)."""
    run = settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                          HealthCheck.data_too_large])(given(strategy)(check))
    run()


# --- mutations ---------------------------------------------------------------------------------------------

ODD_NUMBERS = ["1e309", "-1e309", "1e-400", "nan", "NaN", "inf", "-inf", "Infinity", "1" * 400, "-0", "0x10",
               "1_0", "١", "1e30", "9" * 25, "", " ", "1.5", "-1", "+3", "1,5", "\"1\"", "'1'", "True", "None"]
"""Values that are numbers to some parsers and not to others."""

ENCODINGS = ["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252", "utf-8-sig", "utf-7"]


@st.composite
def byte_mutation(draw: st.DrawFn, data: bytes) -> bytes:
    """One to three byte-level edits of ``data``: flip, insert, delete, truncate, duplicate, re-encode."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate", "encode", "crlf"]))
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        if kind == "flip" and out:
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            out[at:at] = draw(st.one_of(st.binary(min_size=1, max_size=8),
                                        st.sampled_from([b",", b"\n", b"\"", b"\r", b"\x00", b"\xff", b"\xef\xbb\xbf",
                                                         b"\"" + b"x" * 200_000, b"\n\n", b"\\", b"#"]))
                              .map(bytes))
        elif kind == "delete":
            del out[at:at + draw(st.integers(1, 64))]
        elif kind == "truncate":
            del out[at:]
        elif kind == "duplicate":
            end = out.find(b"\n", at)
            out[at:at] = out[at:end + 1 if end >= 0 else len(out)]
        elif kind == "encode":
            text = bytes(out).decode("utf-8", errors="replace")
            out = bytearray(text.encode(draw(st.sampled_from(ENCODINGS)), errors="replace"))
        elif kind == "crlf":
            out = bytearray(bytes(out).replace(b"\n", b"\r\n"))
    return bytes(out)


@st.composite
def csv_mutation(draw: st.DrawFn, lines: list[str]) -> bytes:
    """Structural edits of a predictions CSV: odd cells, duplicate or dropped rows, extra or missing columns,
    quotes."""
    rows = [line.split(",") for line in lines]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["cell", "dup", "drop", "extra", "short", "swap", "header", "blank", "quote"]))
        r = draw(st.integers(0, len(rows) - 1))
        if kind == "cell":
            c = draw(st.integers(0, len(rows[r]) - 1))
            rows[r][c] = draw(st.one_of(st.sampled_from(ODD_NUMBERS), st.text(max_size=12),
                                        st.floats().map(repr), st.integers(-10**40, 10**40).map(str)))
        elif kind == "dup":
            rows.insert(draw(st.integers(1, len(rows))), list(rows[max(r, 1)]))
        elif kind == "drop" and len(rows) > 1:
            del rows[max(r, 1)]
        elif kind == "extra":
            rows[r].append(draw(st.sampled_from(ODD_NUMBERS)))
        elif kind == "short" and len(rows[r]) > 1:
            rows[r].pop()
        elif kind == "swap":
            c = draw(st.integers(0, len(rows[r]) - 1))
            d = draw(st.integers(0, len(rows[r]) - 1))
            rows[r][c], rows[r][d] = rows[r][d], rows[r][c]
        elif kind == "header":
            rows[0][draw(st.integers(0, len(rows[0]) - 1))] = draw(st.sampled_from(
                ["image_id", "fold", "pred", "p_ABE", "p_PMO", "P_ABE", "", " image_id", "extra"]))
        elif kind == "blank":
            rows.insert(draw(st.integers(0, len(rows))), [""])
        elif kind == "quote":  # an opened, closed, escaped or line-broken quote anywhere in a cell
            c = draw(st.integers(0, len(rows[r]) - 1))
            at = draw(st.integers(0, len(rows[r][c])))
            mark = draw(st.sampled_from(['"', '""', '"\n', '\n"', '"x"']))
            rows[r][c] = rows[r][c][:at] + mark + rows[r][c][at:]
    return ("\n".join(",".join(row) for row in rows) + "\n").encode("utf-8", errors="surrogatepass")


# --- the predictions reader ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch() -> Any:
    folder = Path(tempfile.mkdtemp(prefix="bmbench-properties-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _predictions_lines(split: Any, probs: bool) -> list[str]:
    lines, _, _ = prediction_rows(split, (0,), probs=probs, seed=1)
    return [header(probs), *lines]


@pytest.mark.parametrize("probs", [False, True], ids=["labels", "probabilities"])
@pytest.mark.parametrize("examples", SIZES)
def test_predictions_reader_raises_only_its_error(synthetic_split: Any, scratch: Path, examples: int,
                                                  probs: bool) -> None:
    lines = _predictions_lines(synthetic_split, probs)
    valid = ("\n".join(lines) + "\n").encode()
    path = scratch / f"preds-{int(probs)}.csv"
    path.write_bytes(valid)
    assert len(read_predictions(path, synthetic_split).positions) == len(lines) - 1  # the seed itself is valid

    def check(data: bytes) -> None:
        path.write_bytes(data)
        try:
            preds = read_predictions(path, synthetic_split)
        except PredictionsError as err:
            assert str(path) in err.message  # the message names the file
            return
        assert len(preds.positions) == len(preds.folds) == len(preds.pred)

    _run(examples, st.one_of(byte_mutation(valid), csv_mutation(lines)), check)


@pytest.mark.parametrize("probs", [False, True], ids=["labels", "probabilities"])
@pytest.mark.parametrize("examples", SIZES)
def test_strict_and_tolerant_parsers_read_alike(synthetic_split: Any, examples: int, probs: bool) -> None:
    """What the strict pyarrow parse accepts, pandas' tolerant parse accepts too, with the same rows."""
    import numpy as np

    from bmbench.scoring.predictions import _body, _rows_arrow, _rows_pandas

    lines = _predictions_lines(synthetic_split, probs)
    path = Path("preds.csv")  # only named in errors
    accepted = []

    def check(raw: bytes) -> None:
        try:
            data, has_probs = _body(path, raw)
        except PredictionsError:
            return
        strict = _rows_arrow(data, has_probs, synthetic_split)
        if strict is None:
            return
        tolerant = _rows_pandas(path, data, has_probs, synthetic_split)  # must not refuse it
        for name in ("positions", "folds", "pred", "empty", "probs"):
            a, b = getattr(strict, name), getattr(tolerant, name)
            assert (a is None) == (b is None), name
            assert a is None or np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), (name, raw[:300])
        accepted.append(raw)

    check(("\n".join(lines) + "\n").encode())
    assert accepted, "the valid file itself must take the strict parse"
    _run(examples, st.one_of(byte_mutation(("\n".join(lines) + "\n").encode()), csv_mutation(lines)), check)


# --- the leaderboard entry loader and check -----------------------------------------------------------------


@pytest.fixture(scope="module")
def entry_doc(synthetic_split: Any, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from leaderboard_helpers import real_split_run

    from bmbench.leaderboard.entries import add_run

    base = tmp_path_factory.mktemp("entry")
    run_dir = real_split_run(base / "run" / "baseline_majority" / "synthetic", synthetic_split, folds=(0, 1))
    path = add_run(run_dir, get_board("demo", base / "board"), status="reproduced", name="fuzzed")
    return json.loads(path.read_text())


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a JSON document (lists sampled: the first two items)."""
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc[:2]):
            out += _paths(value, (*prefix, i))
    return out


JSON_ODD = st.one_of(
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 10**30, -1, 0, 10**400, 1e308, -0.0, "", None, True,
                     [], {}, "2026-99-99", "9999-12-31", "x" * 10_000, [[0] * 21] * 21, [[10**20] * 21] * 21]),
    st.integers(-10**50, 10**50), st.floats(), st.text(max_size=20),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                 max_leaves=8),
)


@st.composite
def json_mutation(draw: st.DrawFn, doc: dict) -> bytes:
    """Replace, delete or add values at random key paths; serialised with NaN/Infinity allowed."""
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            continue
        node = doc
        try:
            for key in path[:-1]:
                node = node[key]
            kind = draw(st.sampled_from(["replace", "delete", "add"]))
            if kind == "replace":
                node[path[-1]] = copy.deepcopy(draw(JSON_ODD))
            elif kind == "delete":
                del node[path[-1]]
            elif isinstance(node, dict):
                node[draw(st.text(max_size=8))] = copy.deepcopy(draw(JSON_ODD))
            else:
                node.append(copy.deepcopy(draw(JSON_ODD)))
        except (KeyError, IndexError, TypeError):  # an earlier edit changed the shape
            continue
    return json.dumps(doc, allow_nan=True).encode()


@pytest.mark.parametrize("examples", SIZES)
def test_entry_loader_and_check_report_problems_only(entry_doc: dict, synthetic_split: Any, scratch: Path,
                                                     examples: int) -> None:
    board = get_board("demo", scratch / "board")
    board.entries_dir.mkdir(parents=True, exist_ok=True)
    path = board.entries_dir / "fuzzed.json"
    path.write_text(json.dumps(entry_doc))
    assert check_board(board, generated=False) == []  # the seed entry is sound

    def check(data: bytes) -> None:
        path.write_bytes(data)
        loaded, problems = load_entries(board)
        assert loaded or problems  # the file is either an entry or a named problem
        assert all(p.entry == "entries/fuzzed.json" for p in problems), problems
        for problem in check_board(board, generated=False):
            assert str(problem)  # every problem renders as a message

    valid = json.dumps(entry_doc, indent=2).encode()
    _run(examples, st.one_of(byte_mutation(valid), json_mutation(entry_doc)), check)


# --- the submission loader -----------------------------------------------------------------------------------


TOML_ODD = st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e400", "99999999999999999999999", "\"\"", "[]", "{}",
                            "true", "\"x\"", "1979-05-27", "[1, \"a\"]", "{ a = 1 }", "\"\\u0000\"", "'''\n'''",
                            "0.0", "1e-400", "-0.0", "\"find\"", "\"" + "x" * 5000 + "\""])


@st.composite
def toml_mutation(draw: st.DrawFn, text: str) -> bytes:
    """Replace the value of a random ``key = value`` line, or add a line, in a submission.toml."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["value", "add", "recipe"]))
        if kind == "value" and " = " in lines[i]:
            lines[i] = lines[i].split(" = ", 1)[0] + " = " + draw(TOML_ODD)
        elif kind == "add":
            lines.insert(i, draw(st.sampled_from(["lr", "epochs", "batch_size", "name", "seed", "licence", "[recipe]",
                                                  "[recipe.lr_find]", "weight_decay", "x"])) + " = " + draw(TOML_ODD))
        else:
            lines.append(f"[recipe]\n{draw(st.sampled_from(['lr', 'epochs', 'batch_size', 'momentum']))} = "
                         + draw(TOML_ODD))
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("examples", SIZES)
def test_submission_loader_raises_only_its_error(scratch: Path, examples: int) -> None:
    folder = scratch / "subs" / "resnet_imagenet"
    shutil.copytree(default_submissions_dir() / "resnet_imagenet", folder, dirs_exist_ok=True)
    path = folder / "submission.toml"
    valid = path.read_text()
    assert load_submission(folder).submission.name == "resnet_imagenet"

    def check(data: bytes) -> None:
        path.write_bytes(data)
        try:
            load_submission(folder)
        except BmbenchError as err:
            assert str(path) in err.message or str(folder) in err.message

    _run(examples, st.one_of(byte_mutation(valid.encode()), toml_mutation(valid)), check)
