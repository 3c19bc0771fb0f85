"""Reading and strictly validating a predictions file against a published split.

Format (CSV, UTF-8, header required)::

    image_id,fold,pred[,p_ABE,...,p_PMO]

One row per test image of every fold that is scored; ``pred`` is a class code, the optional ``p_*``
columns (all 21 in class index order, or none) hold class probabilities that must be finite, >= 0 and sum
to 1 within :data:`PROB_SUM_TOLERANCE`. A fold that appears must be complete. Every violation raises
:class:`~bmbench.errors.PredictionsError` naming the file, the line(s) and the fix; the file is read
with pandas' C parser and checked with vectorised numpy, so validation costs about one ``read_csv``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

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
    expected_all = [*BASE_COLUMNS, *PROB_COLUMNS]
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

    try:
        frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, skip_blank_lines=False,
                            names=[*BASE_COLUMNS, *PROB_COLUMNS], header=0)
    except UnicodeDecodeError:
        return _not_utf8(path, data)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
        return _fail(path, "the file could not be parsed as CSV")
    for column in PROB_COLUMNS:
        bad = pd.to_numeric(frame[column], errors="coerce").isna() & ~frame[column].isin(_NA_TEXT)
        if bad.any():
            rows = np.flatnonzero(bad.to_numpy())
            return _lines(path, f"non-numeric values in {column}", rows + 2,
                          [repr(v) for v in frame[column].to_numpy()[rows]], "probabilities must be decimal numbers")
    return _fail(path, "the file could not be parsed as CSV")


_NA_TEXT = ["", "nan", "NaN", "NA"]
"""Probability cells read as NaN (and then refused as missing) rather than as non-numeric text."""


def _parse(path: Path, data: bytes, has_probs: bool):  # -> pandas.DataFrame
    """Parse with the C engine and dtype inference (several times faster than forcing dtypes).

    Inference leaves ids and codes as strings and folds as integers in a valid file; anything else
    (a non-numeric probability, a fold such as ``1.0``) is caught by the dtype checks that follow.
    """
    import pandas as pd

    names = [*BASE_COLUMNS, *(PROB_COLUMNS if has_probs else ())]
    n_fields = len(names)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                io.BytesIO(data),
                index_col=False,
                keep_default_na=False,
                na_values={c: _NA_TEXT for c in PROB_COLUMNS} if has_probs else None,
                skip_blank_lines=False,
                engine="c",
                names=names,  # the canonical names: the header may pad them with spaces (" image_id")
                header=0,
            )
    except UnicodeDecodeError:
        raise _not_utf8(path, data) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning):
        raise _first_bad_row(path, data, n_fields) from None
    if len(frame) == 0:
        raise _fail(path, "the file has a header but no prediction rows")
    if has_probs and not all(pd.api.types.is_float_dtype(frame[c]) or pd.api.types.is_integer_dtype(frame[c])
                             for c in PROB_COLUMNS):
        raise _non_numeric(path, data)
    for column in ("image_id", "pred"):
        if not pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].astype(str)
    if not pd.api.types.is_integer_dtype(frame["fold"]):
        frame["fold"] = pd.read_csv(io.BytesIO(data), usecols=["fold"], dtype=str, keep_default_na=False,
                                    skip_blank_lines=False, names=names, header=0)["fold"]
    return frame


def read_predictions(path: Path, split: Split) -> Predictions:
    """Read ``path`` and validate every row against ``split``; raise PredictionsError on any problem."""
    path = Path(path)
    try:  # a regular file of plausible size only: no FIFO, device or symlink loop (bmbench.safe_io)
        raw = safe_io.read_bytes(path, what="predictions file", kind="predictions")
    except safe_io.UnsafeInputError as err:
        raise PredictionsError(err.message) from None
    digest = hashlib.sha256(raw).hexdigest()
    data = _strip_bom(path, raw)
    newline = data.find(b"\n")
    has_probs = _check_header(path, data if newline < 0 else data[:newline])
    frame = _parse(path, data, has_probs)
    import pandas as pd
    lines = np.arange(len(frame)) + 2  # 1-based, after the header

    empty = (frame["image_id"] == "").to_numpy() | (frame["pred"] == "").to_numpy()
    if empty.any():
        raise _lines(path, "empty lines or missing values", lines[empty], ["missing image_id or pred"] * int(empty.sum()),
                     "every row needs image_id, fold and pred (no blank lines)")

    positions = split.positions_of(frame["image_id"])  # one comparison for a file in split or run order
    unknown = positions < 0
    if unknown.any():
        ids = frame["image_id"].to_numpy(dtype=object)  # object arrays only to word an error
        raise _lines(path, f"image ids that are not in split {split.name}", lines[unknown],
                     [f"unknown image id {i!r}" for i in ids[unknown]],
                     f"predict only the images of split {split.name} (pass --split for another split)")

    if np.bincount(positions, minlength=len(split.labels)).max(initial=0) > 1:  # ints: cheaper than strings
        duplicated = frame["image_id"].duplicated(keep="first").to_numpy()
        ids = frame["image_id"].to_numpy(dtype=object)
        first_line = {i: n for n, i in zip(lines[::-1], ids[::-1], strict=True)}
        raise _lines(path, "duplicate image ids", lines[duplicated],
                     [f"{i} already predicted on line {first_line[i]}" for i in ids[duplicated]],
                     "give exactly one row per test image")

    if pd.api.types.is_integer_dtype(frame["fold"]):
        folds = frame["fold"].to_numpy(dtype=np.int64, copy=True)
        folds[(folds < 0) | (folds >= split.folds)] = -1
    else:
        valid_folds = {str(f): f for f in range(split.folds)}
        folds = frame["fold"].map(valid_folds).fillna(-1).to_numpy(dtype=np.int64)
    bad_fold = folds < 0
    if bad_fold.any():
        fold_text = frame["fold"].to_numpy(dtype=object)
        raise _lines(path, "fold numbers out of range", lines[bad_fold],
                     [f"fold {str(v)!r}" for v in fold_text[bad_fold]],
                     f"fold must be an integer from 0 to {split.folds - 1}")

    roles = split.roles[positions, folds]
    not_test = roles != TEST
    if not_test.any():
        ids = frame["image_id"].to_numpy(dtype=object)
        test_of = split.test_fold[positions[not_test]]
        raise _lines(path, "images that are not in the test part of the given fold", lines[not_test],
                     [f"{i} is in the {ROLES[r]} part of fold {f}; it is tested in fold {t}"
                      for i, r, f, t in zip(ids[not_test], roles[not_test], folds[not_test], test_of, strict=True)],
                     "predict each fold's test images only, with the fold they are tested in")

    row_codes, uniques = pd.factorize(frame["pred"])  # map the few distinct codes, not every row
    pred = np.array([CLASS_INDEX.get(str(u), -1) for u in uniques], dtype=np.int64)[row_codes]
    bad_pred = pred < 0
    if bad_pred.any():
        pred_codes = frame["pred"].to_numpy(dtype=object)
        raise _lines(path, "unknown class codes in column pred", lines[bad_pred],
                     [f"pred {c!r}" for c in pred_codes[bad_pred]],
                     f"pred must be one of {', '.join(CLASS_CODES)}")

    probs = _probabilities(frame) if has_probs else None
    if probs is not None:
        _check_probabilities(path, probs, lines)

    _check_complete(path, split, positions, folds)
    return Predictions(path=path, sha256=digest, positions=positions, folds=folds, pred=pred, probs=probs)


def _probabilities(frame) -> np.ndarray:  # frame: a pandas DataFrame (pandas is imported lazily)
    """The (rows, 21) probabilities, stored class-major (Fortran order), one contiguous column per class.

    Copying column by column is several times cheaper than pandas' row-major interleave, and the
    per-class passes of the scorer (AUROC sorts each class's scores) read contiguous memory.
    """
    out = np.empty((len(PROB_COLUMNS), len(frame)), dtype=np.float64)
    for j, column in enumerate(PROB_COLUMNS):
        out[j] = frame[column].to_numpy(dtype=np.float64)
    return out.T


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
