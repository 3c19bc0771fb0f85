"""The published split files: algorithm, committed bytes, hash checks and the split card."""

from __future__ import annotations

import csv
import hashlib
import math
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bmbench.classes import CLASS_CODES
from bmbench.cli.main import app
from bmbench.errors import SplitIntegrityError
from bmbench.splits.algorithm import derive_split, n_val, split_key
from bmbench.splits.store import SUMS_NAME, build_splits, default_splits_dir, load_split, verify_splits

REFERENCE = Path(__file__).resolve().parents[1] / "benchmark" / "bmbench" / "resources" / "paper"
SPLITS = default_splits_dir()


def test_key_is_sha256_of_name_purpose_id() -> None:
    expected = hashlib.sha256(b"bm-cv5-v1:test:ABE_00001").hexdigest()
    assert split_key("bm-cv5-v1", "test", "ABE_00001") == expected


def test_validation_size_rounds_half_up() -> None:
    assert [n_val(m, 0.2) for m in (5, 6, 7, 8, 12, 13)] == [1, 1, 1, 2, 2, 3]  # 0.2*12+0.5 = 2.9 -> 2


def _reference_implementation(split: str, ids: list[str], folds: int = 5, val_fraction: float = 0.2):
    """The algorithm written out independently (as in the split card)."""
    def key(purpose: str, image_id: str) -> str:
        return hashlib.sha256(f"{split}:{purpose}:{image_id}".encode()).hexdigest()

    ranked = sorted(ids, key=lambda i: key("test", i))
    test_fold = {i: r % folds for r, i in enumerate(ranked)}
    roles = {i: ["train"] * folds for i in ids}
    for k in range(folds):
        rest = sorted((i for i in ids if test_fold[i] != k), key=lambda i, k=k: key(f"val{k}", i))
        for i in rest[: math.floor(val_fraction * len(rest) + 0.5)]:
            roles[i][k] = "val"
    for i, k in test_fold.items():
        roles[i][k] = "test"
    return roles


def test_derive_matches_independent_implementation() -> None:
    ids = {"ABE": [f"ABE_{n:05d}" for n in range(1, 9)], "BAS": [f"BAS_{n:05d}" for n in range(1, 442)]}
    rows = derive_split("demo", ids)
    for code, class_ids in ids.items():
        reference = _reference_implementation("demo", class_ids)
        assert {r.image_id: list(r.roles) for r in rows if r.label == code} == reference


def test_derive_properties_per_class() -> None:
    ids = {"BAS": [f"BAS_{n:05d}" for n in range(1, 442)]}
    rows = derive_split("demo", ids)
    assert all(r.roles.count("test") == 1 for r in rows)
    for fold in range(5):
        test = sum(r.roles[fold] == "test" for r in rows)
        val = sum(r.roles[fold] == "val" for r in rows)
        assert test in (88, 89)
        assert val == n_val(441 - test, 0.2)
    assert [r.image_id for r in rows] == sorted(r.image_id for r in rows)
    # The split name changes the assignment: it is part of every key.
    assert [r.roles for r in derive_split("other", ids)] != [r.roles for r in rows]


def test_derive_refuses_duplicate_ids() -> None:
    with pytest.raises(ValueError):
        derive_split("demo", {"ABE": ["X_00001"], "ART": ["X_00001"]})


def test_committed_files_verify() -> None:
    checks = verify_splits(SPLITS)
    assert [c.name for c in checks] == ["bm-cv5-v1", "synthetic-cv5-v1", "dinobloom-bm-v1", "synthetic-holdout-v1",
                                        "README.md"]
    assert all(c.ok for c in checks), [c.problems for c in checks]


def test_sha256sums_matches_files() -> None:
    for line in (SPLITS / SUMS_NAME).read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((SPLITS / name).read_bytes()).hexdigest() == digest


def test_bm_split_matches_published_class_counts() -> None:
    """Oracle: the per-class image counts of Table 5 (shared/reference/published_table5.csv)."""
    with open(REFERENCE / "published_table5.csv", encoding="utf-8") as handle:
        published = {row["class"]: int(row["images"]) for row in csv.DictReader(handle)}
    raw = (SPLITS / "bm-cv5-v1.csv").read_bytes()
    assert b"\r" not in raw and b'"' not in raw
    lines = raw.decode("utf-8").splitlines()
    assert lines[0] == "image_id,label,fold0,fold1,fold2,fold3,fold4"
    rows = [line.split(",") for line in lines[1:]]
    assert len(rows) == 171_374
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert Counter(r[1] for r in rows) == published
    assert all(re.fullmatch(rf"{r[1]}_\d{{5}}", r[0]) for r in rows)
    for fold in range(5):
        tested = Counter(r[1] for r in rows if r[2 + fold] == "test")
        for code, count in published.items():
            assert abs(tested[code] - count / 5) < 1  # 20 % of every class in every fold


def test_load_split_arrays(bm_split) -> None:
    assert bm_split.roles.shape == (171_374, 5)
    assert np.bincount(bm_split.test_fold, minlength=5).sum() == 171_374
    assert set(np.unique(bm_split.labels)) == set(range(len(CLASS_CODES)))
    assert bm_split.provenance()["dataset"] == "bm"
    fold0_test = bm_split.members(0, "test")
    assert (bm_split.test_fold[fold0_test] == 0).all()


def _copy_splits(tmp_path: Path) -> Path:
    folder = tmp_path / "splits"
    shutil.copytree(SPLITS, folder)
    return folder


def test_load_refuses_tampered_split(tmp_path: Path) -> None:
    folder = _copy_splits(tmp_path)
    path = folder / "synthetic-cv5-v1.csv"
    path.write_bytes(path.read_bytes().replace(b"ABE_00001,ABE,", b"ABE_00001,ART,", 1))
    with pytest.raises(SplitIntegrityError, match="was modified"):
        load_split("synthetic-cv5-v1", folder)


def test_load_refuses_missing_hashes(tmp_path: Path) -> None:
    folder = _copy_splits(tmp_path)
    (folder / SUMS_NAME).write_text("")
    with pytest.raises(SplitIntegrityError, match="no hash"):
        load_split("bm-cv5-v1", folder)
    (folder / SUMS_NAME).unlink()
    with pytest.raises(SplitIntegrityError, match="SHA256SUMS is missing"):
        load_split("bm-cv5-v1", folder)


def test_build_reproduces_committed_bytes(tmp_path: Path) -> None:
    build_splits(tmp_path)
    for name in ("bm-cv5-v1.csv", "synthetic-cv5-v1.csv", "dinobloom-bm-v1.csv", "synthetic-holdout-v1.csv",
                 SUMS_NAME, "README.md"):
        assert (tmp_path / name).read_bytes() == (SPLITS / name).read_bytes(), name


def test_verify_reports_tampering_and_cli_exits_nonzero(tmp_path: Path) -> None:
    folder = _copy_splits(tmp_path)
    (folder / "README.md").write_text("edited\n")
    path = folder / "synthetic-cv5-v1.csv"
    path.write_bytes(path.read_bytes() + b"ZZZ_00001,ABE,test,train,train,train,train\n")
    problems = {c.name: c.problems for c in verify_splits(folder)}
    assert problems["bm-cv5-v1"] == ()
    assert any("differs" in p for p in problems["synthetic-cv5-v1"])
    assert any("out of date" in p for p in problems["README.md"])
    result = CliRunner().invoke(app, ["splits", "verify", "--dir", str(folder)])
    assert result.exit_code == 2
    assert "git checkout splits/" in result.output
    ok = CliRunner().invoke(app, ["splits", "verify"])
    assert ok.exit_code == 0, ok.output


def test_card_describes_counts_and_image_level_caveat() -> None:
    card = (SPLITS / "README.md").read_text()
    assert "image-level" in card and "patient" in card
    assert "| ABE | Abnormal eosinophils | 8 |" in card
    assert "SYNTHETIC" in card
    for line in (SPLITS / SUMS_NAME).read_text().splitlines():
        assert line.split("  ")[0] in card


# --- positions of a predictions file's ids (bmbench.splits.lookup) ---------------------------------------------


def test_arrow_strings_are_the_ids_ascii_or_not() -> None:
    import pyarrow as pa

    from bmbench.arrow_columns import strings

    for ids in (["ABE_00001", "b", "", "ccc_12"], ["abc", "xyz"], ["é", "a", ""], []):
        fixed = np.array(ids, dtype=str)
        built = strings(fixed)
        assert built.type == pa.string() and built.equals(pa.array(ids, type=pa.string())), ids


def test_arrow_columns_read_the_buffers_as_pyarrow_does() -> None:
    """Values, validity and indices of sliced, chunked arrays with nulls equal pyarrow's own conversion."""
    import pyarrow as pa

    from bmbench import arrow_columns

    floats = pa.chunked_array([pa.array([0.5, None, 2.0, 3.0]).slice(1), pa.array([], pa.float64()),
                               pa.array([7.0, 8.0, None, 9.0, 10.0, 11.0, 12.0, 13.0, None, 14.0]).slice(2, 7)])
    assert np.array_equal(arrow_columns.valid(floats), ~np.isnan(floats.to_numpy()))
    ok = arrow_columns.valid(floats)
    assert np.array_equal(arrow_columns.values(floats, np.float64)[ok], floats.to_numpy()[ok])
    ints = pa.array([3, None, 5, None, 1], pa.int32()).slice(1)
    assert arrow_columns.indices(ints).tolist() == [-1, 5, -1, 1]
    numbers = np.array([4, 0, 2**40])
    assert arrow_columns.int64_array(numbers).equals(pa.array(numbers, pa.int64()))
    assert arrow_columns.values(pa.chunked_array([], pa.int64()), np.int64).shape == (0,)


def _id_column(ids: np.ndarray):  # -> pandas Series of Arrow-backed strings, as read_csv gives them
    import pandas as pd

    return pd.Series(ids.tolist(), dtype="str")


@pytest.mark.parametrize("order", ["split", "run", "shuffled", "partial", "unknown", "repeated"])
@pytest.mark.parametrize("kind", ["arrow", "pandas", "no pyarrow"])
def test_positions_of_are_the_ids_rows_in_every_order(order: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Split order and run order (test folds ascending) take the one-comparison path, the rest Arrow's hash
    look-up, and without pyarrow pandas' index: the same positions, those of a plain dictionary."""
    import sys

    import pyarrow as pa
    import pyarrow.compute as pc

    split = load_split("synthetic-cv5-v1")
    n = len(split.image_ids)
    rng = np.random.default_rng(0)
    ids = {"split": split.image_ids, "run": split.image_ids[np.argsort(split.test_fold, kind="stable")],
           "shuffled": split.image_ids[rng.permutation(n)], "partial": split.image_ids[: n - 1],
           "unknown": np.array([*split.image_ids[:-1], "NOPE_1"], dtype=object),
           "repeated": np.array([*split.image_ids[:-1], split.image_ids[0]], dtype=object)}[order]
    row_of = {image_id: k for k, image_id in enumerate(split.image_ids)}
    expected = np.array([row_of.get(i, -1) for i in ids])
    column = {"arrow": lambda: pa.array(ids.tolist(), pa.string()), "pandas": lambda: _id_column(ids),
              "no pyarrow": lambda: _id_column(ids)}[kind]()
    if kind == "no pyarrow":
        monkeypatch.delitem(sys.modules, "bmbench.splits.lookup", raising=False)
        monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError
    elif order in ("split", "run"):  # no hash look-up at all
        monkeypatch.setattr(pc, "index_in", lambda *a, **k: pytest.fail("hash look-up used"))
    assert (split.positions_of(column) == expected).all()
    assert ("id_index" in vars(split)) == (kind == "no pyarrow")  # pandas' index only without pyarrow
