"""Reading and strictly validating a predictions file against a published split.

Format (CSV, UTF-8, header required)::

    image_id,fold,pred[,p_ABE,...,p_PMO]

One row per test image of every fold that is scored; ``pred`` is a class code, the optional ``p_*``
columns (all 21 in class index order, or none) hold class probabilities that must be finite, >= 0 and sum
to 1 within :data:`PROB_SUM_TOLERANCE`. A fold that appears must be complete. Every violation raises
:class:`~bmbench.errors.PredictionsError` naming the file, the line(s) and the fix; the file is read
with pyarrow's CSV reader and checked with Arrow compute and vectorised numpy, without importing pandas
(which costs more than the parse); a file that reader refuses is read by pandas' C parser, which accepts a
little more (a fold written ``+1``) and words every error.
"""

from __future__ import annotations

import csv
import hashlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bmbench import safe_io
from bmbench.classes import CLASS_CODES, CLASS_INDEX
from bmbench.errors import PredictionsError
from bmbench.splits.algorithm import ROLES, TEST
from bmbench.splits.store import Split

BASE_COLUMNS: tuple[str, ...] = ("image_id", "fold", "pred")
PROB_COLUMNS: tuple[str, ...] = tuple(f"p_{code}" for code in CLASS_CODES)
PROB_SUM_TOLERANCE = 1e-3
"""Largest accepted |sum of a row's probabilities - 1| (allows 6-decimal rounding of float32 softmax)."""
MAX_REPORTED = 8
"""How many offending lines an error lists before summarising the rest."""


@dataclass(frozen=True)
class Predictions:
    """A validated predictions file: per row the split position, fold, predicted class and probabilities."""

    path: Path
    sha256: str
    positions: np.ndarray
    folds: np.ndarray
    pred: np.ndarray
    probs: np.ndarray | None

    @property
    def folds_scored(self) -> tuple[int, ...]:
        """The folds that the file holds predictions for, ascending."""
        return tuple(int(f) for f in np.unique(self.folds))


def _fail(path: Path, problem: str) -> PredictionsError:
    return PredictionsError(f"{path}: {problem}")


def _lines(path: Path, what: str, line_numbers: np.ndarray, details: list[str], fix: str) -> PredictionsError:
    """An error listing the first offending lines, e.g. 'line 5: unknown class code ...'."""
    shown = [f"  line {int(n)}: {d}" for n, d in zip(line_numbers[:MAX_REPORTED], details[:MAX_REPORTED], strict=True)]
    more = len(line_numbers) - MAX_REPORTED
    if more > 0:
        shown.append(f"  ... and {more} more line(s)")
    return PredictionsError(f"{path}: {what} ({len(line_numbers)} line(s)):\n" + "\n".join(shown) + f"\nFix: {fix}")


def _strip_bom(path: Path, data: bytes) -> bytes:
    """Refuse empty and UTF-16 files; return the bytes without a UTF-8 BOM (pandas checks the UTF-8)."""
    if not data or (data[:4096].isspace() and data.isspace()):
        raise _fail(path, "the file is empty; expected a header line 'image_id,fold,pred' and one row per test image")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _fail(path, "the file is UTF-16 encoded; save it as UTF-8")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise _fail(path, f"line {line} contains a NUL byte; this is not a UTF-8 CSV file")
    return data


def _not_utf8(path: Path, data: bytes) -> PredictionsError:
    """Name the first line that is not valid UTF-8."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        return _fail(path, f"line {line} is not valid UTF-8 (byte 0x{data[err.start]:02x}); save the file as UTF-8")
    return _fail(path, "the file is not valid UTF-8; save it as UTF-8")


def _check_header(path: Path, header_line: bytes) -> bool:
    """Validate the header; return whether probability columns are present."""
    try:
        text = header_line.decode("utf-8")
    except UnicodeDecodeError:
        raise _not_utf8(path, header_line) from None
    columns = [c.strip() for c in text.rstrip("\r").split(",")]
    expected_all = _column_names(has_probs=True)
    if columns in (list(BASE_COLUMNS), expected_all):
        return columns == expected_all
    want = "'image_id,fold,pred' optionally followed by all 21 probability columns p_ABE,...,p_PMO in class order"
    missing = [c for c in BASE_COLUMNS if c not in columns]
    if missing:
        raise _fail(path, f"header line is missing column(s) {', '.join(missing)}; expected {want}")
    unknown = [c for c in columns if c not in expected_all]
    if unknown:
        raise _fail(path, f"header line has unexpected column(s) {', '.join(map(repr, unknown))}; expected {want}")
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise _fail(path, f"header line repeats column(s) {', '.join(duplicated)}; expected {want}")
    probs = [c for c in columns if c in PROB_COLUMNS]
    if probs and len(probs) != len(PROB_COLUMNS):
        absent = [c for c in PROB_COLUMNS if c not in probs]
        raise _fail(path, f"probability columns must be all 21 or none; missing {', '.join(absent)}")
    raise _fail(path, f"header columns are in the wrong order: got {','.join(columns)}; expected {want}")


def _first_bad_row(path: Path, data: bytes, n_fields: int) -> PredictionsError:
    """Slow path after a parser complaint: find the first row with the wrong number of fields.

    Works on the bytes so that invalid UTF-8 or an over-long quoted field is reported, not raised.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _not_utf8(path, data)
    reader = csv.reader(io.StringIO(text))
    try:
        for row in reader:
            if row and len(row) != n_fields:
                return _fail(path, f"line {reader.line_num} has {len(row)} fields; the header has {n_fields}")
    except csv.Error as err:  # e.g. a quoted field longer than csv.field_size_limit(), a stray NUL
        return _fail(path, f"line {reader.line_num}: {err}; check the quoting (a quote opened and never closed?)")
    return _fail(path, "the file could not be parsed as CSV")


def _non_numeric(path: Path, data: bytes) -> PredictionsError:
    """Slow path: name the probability cells that are not numbers."""
    import pandas as pd

    frame = _cells(path, data, _column_names(has_probs=True))
    for column in PROB_COLUMNS:
        bad = pd.to_numeric(frame[column], errors="coerce").isna() & ~frame[column].isin(_NA_TEXT)
        if bad.any():
            rows = np.flatnonzero(bad.to_numpy())
            return _lines(path, f"non-numeric values in {column}", rows + 2,
                          [repr(v) for v in frame[column].to_numpy()[rows]], "probabilities must be decimal numbers")
    return _fail(path, "the file could not be parsed as CSV")


_NA_TEXT = ["", "nan", "NaN", "NA"]
"""Probability cells read as NaN (and then refused as missing) rather than as non-numeric text."""


def _column_names(has_probs: bool) -> list[str]:
    """The canonical columns of a file with or without the probability columns, in order."""
    return [*BASE_COLUMNS, *(PROB_COLUMNS if has_probs else ())]


@dataclass(frozen=True)
class _Rows:
    """A parsed file, per row: split position (-1: an id not in the split), fold (-1: not a fold of the split),
    class index (-1: not a class code), whether image_id or pred is empty, and the probabilities or None."""

    positions: np.ndarray
    folds: np.ndarray
    pred: np.ndarray
    empty: np.ndarray
    probs: np.ndarray | None


def _rows_arrow(data: bytes, has_probs: bool, split: Split) -> _Rows | None:
    """The strict parse: pyarrow's CSV reader with every column's type fixed (ids and codes UTF-8 strings,
    folds int64, probabilities float64, no null spellings, no blank lines), then Arrow compute; no pandas.

    None when pyarrow is missing or refuses the file (a blank line, a field count, a cell that is not of its
    column's type, a quoted line break, invalid UTF-8): :func:`_rows_pandas` then reads it, accepting what
    pandas accepts (e.g. a fold written ``+1``) and wording every error. What both accept they read alike
    (tests/test_properties.py).
    """
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pa_csv

        from bmbench import arrow_columns
    except ImportError:
        return None
    if data.count(b'"') % 2:  # a quote left open: pyarrow ends it at the end of the file, pandas refuses
        return None
    names = _column_names(has_probs)
    types = {"image_id": pa.string(), "fold": pa.int64(), "pred": pa.string(),
             **{column: pa.float64() for column in names[len(BASE_COLUMNS):]}}
    try:
        table = pa_csv.read_csv(
            pa.BufferReader(data),
            read_options=pa_csv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pa_csv.ParseOptions(ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(column_types=types, null_values=[], strings_can_be_null=False,
                                                  quoted_strings_can_be_null=False),
        )
    except pa.ArrowInvalid:
        return None
    if table.num_rows == 0 or any(table.column(name).null_count for name in names):  # nulls: none by the options
        return None
    ids, codes = table.column("image_id"), table.column("pred")
    empty = ((arrow_columns.values(pc.binary_length(ids), np.int32) == 0)
             | (arrow_columns.values(pc.binary_length(codes), np.int32) == 0))
    folds = arrow_columns.values(table.column("fold"), np.int64).copy()
    folds[(folds < 0) | (folds >= split.folds)] = -1
    pred = arrow_columns.indices(pc.index_in(codes, value_set=arrow_columns.strings(np.array(CLASS_CODES))))
    probs = _class_major(lambda c: arrow_columns.values(table.column(c), np.float64), table.num_rows) \
        if has_probs else None
    return _Rows(positions=split.positions_of(ids), folds=folds, pred=pred, empty=empty, probs=probs)


def _rows_pandas(path: Path, data: bytes, has_probs: bool, split: Split) -> _Rows:
    """The tolerant parse: pandas' C engine, ids and codes as text, dtype inference for the rest; raises the
    worded error of a file it refuses.

    Inference leaves folds as integers and probabilities as floats in a valid file; anything else (a
    non-numeric probability, a fold such as ``1.0``) is caught by the dtype checks that follow.
    """
    import pandas as pd

    names = _column_names(has_probs)
    frame = _pandas_read(path, data, names, dtype={"image_id": str, "pred": str},  # an id "0007" is text
                         na_values={c: _NA_TEXT for c in PROB_COLUMNS} if has_probs else None)
    if len(frame) == 0:
        raise _fail(path, "the file has a header but no prediction rows")
    if has_probs and not all(pd.api.types.is_float_dtype(frame[c]) or pd.api.types.is_integer_dtype(frame[c])
                             for c in PROB_COLUMNS):
        raise _non_numeric(path, data)
    ids, codes = frame["image_id"], frame["pred"]
    if pd.api.types.is_integer_dtype(frame["fold"]):
        folds = frame["fold"].to_numpy(dtype=np.int64, copy=True)
        folds[(folds < 0) | (folds >= split.folds)] = -1
    else:
        valid_folds = {str(f): f for f in range(split.folds)}
        folds = _cells(path, data, names)["fold"].map(valid_folds).fillna(-1).to_numpy(dtype=np.int64)
    row_codes, uniques = pd.factorize(codes)  # map the few distinct codes, not every row
    pred = np.array([CLASS_INDEX.get(str(u), -1) for u in uniques], dtype=np.int64)[row_codes]
    probs = _class_major(lambda c: frame[c].to_numpy(dtype=np.float64), len(frame)) if has_probs else None
    empty = (ids == "").to_numpy() | (codes == "").to_numpy()
    return _Rows(positions=split.positions_of(ids), folds=folds, pred=pred, empty=empty, probs=probs)


def _class_major(column: Callable[[str], np.ndarray], rows: int) -> np.ndarray:
    """The (rows, 21) probabilities, stored class-major (Fortran order), one contiguous column per class.

    Copying column by column is several times cheaper than pandas' row-major interleave, and the
    per-class passes of the scorer (AUROC sorts each class's scores) read contiguous memory.
    """
    out = np.empty((len(PROB_COLUMNS), rows), dtype=np.float64)
    for j, name in enumerate(PROB_COLUMNS):
        out[j] = column(name)
    return out.T


def _pandas_read(path: Path, data: bytes, names: list[str], **options: Any):  # -> pandas.DataFrame
    """``pandas.read_csv`` of the file (C engine, no default missing values, blank lines kept, the canonical
    column names: the header may pad them with spaces, " image_id"); a file it cannot parse raises the
    PredictionsError that names the first bad line."""
    import pandas as pd

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(io.BytesIO(data), index_col=False, keep_default_na=False, skip_blank_lines=False,
                               engine="c", names=names, header=0, **options)
    except UnicodeDecodeError:
        raise _not_utf8(path, data) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning):
        raise _first_bad_row(path, data, len(names)) from None


def _cells(path: Path, data: bytes, names: list[str]):  # -> pandas.DataFrame
    """Every cell as the text it is written as (no type inference, no missing values): for wording errors."""
    return _pandas_read(path, data, names, dtype=str)


def _body(path: Path, raw: bytes) -> tuple[bytes, bool]:
    """The file's bytes without a BOM after checking its header, and whether it has probability columns."""
    data = _strip_bom(path, raw)
    newline = data.find(b"\n")
    return data, _check_header(path, data if newline < 0 else data[:newline])


def read_predictions(path: Path, split: Split) -> Predictions:
    """Read ``path`` and validate every row against ``split``; raise PredictionsError on any problem."""
    path = Path(path)
    try:  # a regular file of plausible size only: no FIFO, device or symlink loop (bmbench.safe_io)
        raw = safe_io.read_bytes(path, what="predictions file", kind="predictions")
    except safe_io.UnsafeInputError as err:
        raise PredictionsError(err.message) from None
    digest = hashlib.sha256(raw).hexdigest()
    data, has_probs = _body(path, raw)
    rows = _rows_arrow(data, has_probs, split) or _rows_pandas(path, data, has_probs, split)
    _check_rows(path, split, rows, lambda: _cells(path, data, _column_names(has_probs)))
    return Predictions(path=path, sha256=digest, positions=rows.positions, folds=rows.folds, pred=rows.pred,
                       probs=rows.probs)


def _check_rows(path: Path, split: Split, rows: _Rows, cells: Callable[[], Any]) -> None:
    """Every row against the split, in the order the errors are reported; ``cells`` gives the file's text
    (a pandas DataFrame), read only to word an error."""
    lines = np.arange(len(rows.positions)) + 2  # 1-based, after the header
    if rows.empty.any():
        raise _lines(path, "empty lines or missing values", lines[rows.empty],
                     ["missing image_id or pred"] * int(rows.empty.sum()),
                     "every row needs image_id, fold and pred (no blank lines)")

    unknown = rows.positions < 0
    if unknown.any():
        ids = cells()["image_id"].to_numpy(dtype=object)
        raise _lines(path, f"image ids that are not in split {split.name}", lines[unknown],
                     [f"unknown image id {i!r}" for i in ids[unknown]],
                     f"predict only the images of split {split.name} (pass --split for another split)")

    if np.bincount(rows.positions, minlength=len(split.labels)).max(initial=0) > 1:  # ints: cheaper than strings
        column = cells()["image_id"]
        duplicated, ids = column.duplicated(keep="first").to_numpy(), column.to_numpy(dtype=object)
        first_line = {i: n for n, i in zip(lines[::-1], ids[::-1], strict=True)}
        raise _lines(path, "duplicate image ids", lines[duplicated],
                     [f"{i} already predicted on line {first_line[i]}" for i in ids[duplicated]],
                     "give exactly one row per test image")

    bad_fold = rows.folds < 0
    if bad_fold.any():
        fold_text = cells()["fold"].to_numpy(dtype=object)
        raise _lines(path, "fold numbers out of range", lines[bad_fold],
                     [f"fold {v!r}" for v in fold_text[bad_fold]],
                     f"fold must be an integer from 0 to {split.folds - 1}")

    roles = split.roles[rows.positions, rows.folds]
    not_test = roles != TEST
    if not_test.any():
        ids = cells()["image_id"].to_numpy(dtype=object)
        test_of = split.test_fold[rows.positions[not_test]]
        raise _lines(path, "images that are not in the test part of the given fold", lines[not_test],
                     [f"{i} is in the {ROLES[r]} part of fold {f}; it is tested in fold {t}"
                      for i, r, f, t in zip(ids[not_test], roles[not_test], rows.folds[not_test], test_of,
                                            strict=True)],
                     "predict each fold's test images only, with the fold they are tested in")

    bad_pred = rows.pred < 0
    if bad_pred.any():
        pred_codes = cells()["pred"].to_numpy(dtype=object)
        raise _lines(path, "unknown class codes in column pred", lines[bad_pred],
                     [f"pred {c!r}" for c in pred_codes[bad_pred]],
                     f"pred must be one of {', '.join(CLASS_CODES)}")

    if rows.probs is not None:
        _check_probabilities(path, rows.probs, lines)
    _check_complete(path, split, rows.positions, rows.folds)


def _check_probabilities(path: Path, probs: np.ndarray, lines: np.ndarray) -> None:
    finite = np.isfinite(probs)
    if not finite.all():
        bad = ~finite.all(axis=1)
        raise _lines(path, "missing, NaN or infinite probabilities", lines[bad],
                     [", ".join(PROB_COLUMNS[j] for j in np.flatnonzero(~row)) for row in finite[bad]],
                     "every p_* cell must be a finite number")
    negative = (probs < 0).any(axis=1)
    if negative.any():
        raise _lines(path, "negative probabilities", lines[negative],
                     [", ".join(PROB_COLUMNS[j] for j in np.flatnonzero(row < 0)) for row in probs[negative]],
                     "probabilities must be >= 0 (apply softmax to logits)")
    sums = probs.sum(axis=1)
    off = np.abs(sums - 1.0) > PROB_SUM_TOLERANCE
    if off.any():
        raise _lines(path, f"probabilities that do not sum to 1 (tolerance {PROB_SUM_TOLERANCE})", lines[off],
                     [f"sum {s:.6g}" for s in sums[off]], "normalise each row (softmax) before writing")


def _check_complete(path: Path, split: Split, positions: np.ndarray, folds: np.ndarray) -> None:
    """Every fold that appears must hold a prediction for every one of its test images.

    The rows are distinct test images of their folds (checked before), so counting them suffices; the
    missing ids are looked up only to word the error.
    """
    have = np.bincount(folds, minlength=split.folds)
    expected = (split.roles == TEST).sum(axis=0)
    problems: list[str] = []
    for fold in np.flatnonzero((have > 0) & (have < expected)):
        members = split.members(int(fold), "test")
        missing = np.setdiff1d(members, positions[folds == fold], assume_unique=True)
        examples = ", ".join(split.image_ids[missing[:5]])
        problems.append(
            f"fold {fold}: {have[fold]} of {expected[fold]} test images predicted; missing {len(missing)} "
            f"(e.g. {examples})"
        )
    if problems:
        raise _fail(path, "incomplete folds (a fold that is scored must be complete):\n  " + "\n  ".join(problems))
