"""The one-fold hold-out splits (DinoBloom's ``dinobloom-bm-v1``, ``synthetic-holdout-v1``) and the parsed-split cache."""

from __future__ import annotations

import hashlib
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bmbench import paths
from bmbench.classes import CLASS_CODES
from bmbench.datasets import BM, SYNTHETIC
from bmbench.errors import SplitIntegrityError
from bmbench.splits import cache
from bmbench.splits.algorithm import derive_holdout, split_key
from bmbench.splits.sources import read_test_ids
from bmbench.splits.store import get_split_spec, load_split, verify_splits

PUBLISHED = paths.published_splits_dir()
DINOBLOOM_LIST = PUBLISHED / "sources" / "dinobloom_bm_test.csv"
DINOBLOOM_LIST_SHA256 = "630435906a0d1d5c85043a43e07c400ad343bf1955d955a9150270e30c4a32b2"
"""The SHA-256 that shared/reference/README.md gives for DinoBloom's test-id list (as an oracle)."""


def _rows(name: str) -> list[list[str]]:
    lines = (PUBLISHED / f"{name}.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "image_id,label,fold0"
    return [line.split(",") for line in lines[1:]]


def test_dinobloom_test_ids_are_the_published_list() -> None:
    data = DINOBLOOM_LIST.read_bytes()
    assert hashlib.sha256(data).hexdigest() == DINOBLOOM_LIST_SHA256
    assert get_split_spec("dinobloom-bm-v1").test_ids_sha256 == DINOBLOOM_LIST_SHA256
    listed = {line.split(",")[0] for line in data.decode().splitlines()[1:]}
    rows = _rows("dinobloom-bm-v1")
    assert len(rows) == 171_374 and len(listed) == 34_266
    assert {r[0] for r in rows if r[2] == "test"} == listed


@pytest.mark.parametrize("name, dataset", [("dinobloom-bm-v1", BM), ("synthetic-holdout-v1", SYNTHETIC)])
def test_holdout_counts_per_class(name: str, dataset) -> None:
    """Oracle (reference README): test = floor(20 %) of every class; val = floor(0.2 m + 0.5) of the rest."""
    counts = Counter((r[1], r[2]) for r in _rows(name))
    for code in CLASS_CODES:
        n = dataset.count(code)
        test = n * 20 // 100
        val = math.floor(0.2 * (n - test) + 0.5)
        assert (counts[(code, "test")], counts[(code, "val")], counts[(code, "train")]) == (test, val, n - test - val)
    if dataset is BM:  # the reference README's examples: ABE 1 of 8, FGC 9 of 47, KSC 8 of 42
        assert (counts[("ABE", "test")], counts[("FGC", "test")], counts[("KSC", "test")]) == (1, 9, 8)


def test_val_is_chosen_by_the_keyed_rule() -> None:
    rows = _rows("dinobloom-bm-v1")
    rest = sorted((r[0] for r in rows if r[1] == "FGC" and r[2] != "test"),
                  key=lambda i: split_key("dinobloom-bm-v1", "val0", i))
    val = {r[0] for r in rows if r[1] == "FGC" and r[2] == "val"}
    assert val == set(rest[: math.floor(0.2 * len(rest) + 0.5)])


def test_derive_holdout_by_key_and_given_ids() -> None:
    ids = {"BAS": [f"BAS_{n:05d}" for n in range(1, 101)]}
    by_key = derive_holdout("demo", ids)
    ranked = sorted(ids["BAS"], key=lambda i: split_key("demo", "test", i))
    assert {r.image_id for r in by_key if r.roles == ("test",)} == set(ranked[:20])
    given = derive_holdout("demo", ids, test_ids=frozenset({"BAS_00001"}))
    assert [r.image_id for r in given if r.roles == ("test",)] == ["BAS_00001"]
    assert sum(r.roles == ("val",) for r in given) == math.floor(0.2 * 99 + 0.5)


def test_one_fold_split_loads() -> None:
    split = load_split("synthetic-holdout-v1")
    assert split.folds == 1 and split.roles.shape == (SYNTHETIC.total, 1)
    test, val, train = (split.members(0, role) for role in ("test", "val", "train"))
    assert len(test) + len(val) + len(train) == SYNTHETIC.total
    assert (split.test_fold[test] == 0).all() and (split.test_fold[train] == -1).all()
    assert split.provenance() == {"name": "synthetic-holdout-v1", "sha256": split.sha256, "dataset": "synthetic"}


def test_tampered_holdout_copy_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "splits"
    shutil.copytree(PUBLISHED, folder)
    path = folder / "synthetic-holdout-v1.csv"
    text = path.read_text()
    first_train = text.index(",train\n")
    path.write_text(text[:first_train] + ",test\n" + text[first_train + len(",train\n"):])
    problems = {c.name: c.problems for c in verify_splits(folder)}
    assert any("differs" in p for p in problems["synthetic-holdout-v1"])
    assert problems["dinobloom-bm-v1"] == ()
    monkeypatch.setenv("BMBENCH_SPLITS", str(folder))  # a local override must hash to the published file
    with pytest.raises(SplitIntegrityError, match="was modified"):
        load_split("synthetic-holdout-v1")


def test_tampered_test_id_list_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sources").mkdir()
    copy = tmp_path / "sources" / DINOBLOOM_LIST.name
    monkeypatch.setattr(paths, "published_splits_dir", lambda: tmp_path)
    ids_by_class = {code: frozenset(BM.image_ids(code)) for code in CLASS_CODES}
    copy.write_bytes(DINOBLOOM_LIST.read_bytes().replace(b"ABE_00005", b"ABE_00006", 1))
    with pytest.raises(SplitIntegrityError, match="was modified"):
        read_test_ids(f"sources/{copy.name}", DINOBLOOM_LIST_SHA256, ids_by_class)
    copy.write_bytes(b"image_id,label\nABE_00005,ART\n")  # a forged list with its own hash
    forged = hashlib.sha256(copy.read_bytes()).hexdigest()
    with pytest.raises(SplitIntegrityError, match="line 2"):
        read_test_ids(f"sources/{copy.name}", forged, ids_by_class)


def test_parsed_split_cache_is_used_and_corruption_rebuilt() -> None:
    first = load_split("synthetic-cv5-v1")
    cached = cache.cache_path(first.sha256)
    assert cached.is_file() and cached.parent == paths.split_cache_dir()
    assert cache.load_arrays(first.sha256, first.folds) is not None
    cached.write_bytes(cached.read_bytes()[:200])  # truncated
    assert cache.load_arrays(first.sha256, first.folds) is None
    again = load_split("synthetic-cv5-v1")
    assert np.array_equal(again.roles, first.roles) and list(again.image_ids) == list(first.image_ids)
    ids, labels, roles = cache.load_arrays(first.sha256, first.folds)  # rebuilt
    forged = roles.copy()
    forged[0] = forged[1]
    with cache.atomic.atomic_open(cached, "wb") as handle:  # well-formed file, arrays changed behind the check
        np.savez(handle, image_ids=ids, labels=labels, roles=forged, check=np.array("0" * 64))
    assert cache.load_arrays(first.sha256, first.folds) is None
    assert np.array_equal(load_split("synthetic-cv5-v1").roles, first.roles)
