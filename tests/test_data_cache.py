"""The image cache (`bmbench data cache`): exact pixels, index, checksums, staleness, atomic writes."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bmbench.classes import CLASS_CODES
from bmbench.cli.main import app
from bmbench.data.cache import (HASH_BLOCK_ROWS, build_cache, cache_folder, cache_status, ensure_cache, open_cache,
                                rows_for_index, rows_for_split, verify_cache)
from bmbench.data.decode import decode_image
from bmbench.errors import BmbenchError

runner = CliRunner()


@pytest.fixture
def own_rows(tiny_image_set, tmp_path: Path):
    """The tiny set copied to a private folder (tests here modify files) and its split rows."""
    split, paths = tiny_image_set
    root = Path(os.path.commonpath([str(p) for p in paths]))
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    own = [copy / p.relative_to(root) for p in paths]
    return split, rows_for_split(split, own)


def test_cache_holds_the_decoded_pixels_in_split_order(own_rows) -> None:
    split, rows = own_rows
    cache = build_cache(rows, workers=1)
    assert cache.images.shape == (len(split.image_ids), 250, 250, 3) and cache.images.dtype == np.uint8
    for k in (0, 17, len(rows) - 1):
        assert np.array_equal(cache.images[k], decode_image(rows.paths[k])[0])
    index = (cache.folder / "index.csv").read_text().splitlines()
    assert index[0] == "row,image_id,label" and len(index) == len(rows) + 1
    assert index[1] == f"0,{split.image_ids[0]},{CLASS_CODES[split.labels[0]]}"
    manifest = json.loads((cache.folder / "manifest.json").read_text())
    assert manifest["split"] == {"name": split.name, "sha256": split.sha256}
    assert manifest["rows"] == len(rows) and len(manifest["checksum"]) == 64
    assert verify_cache(cache) == []
    # no temporary left (the empty lock file of bmbench.locks stays by design)
    assert not [p for p in cache.folder.parent.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]


def test_digest_does_not_depend_on_the_number_of_workers(own_rows) -> None:
    _, rows = own_rows
    one = build_cache(rows, workers=1).manifest["images_sha256"]
    two = build_cache(rows, workers=2, force=True).manifest["images_sha256"]
    assert one == two and len(rows) < HASH_BLOCK_ROWS * 2


def test_reuse_staleness_and_rebuild(own_rows) -> None:
    _, rows = own_rows
    assert cache_status(rows) == "missing" and open_cache(rows) is None
    first = build_cache(rows, workers=1)
    assert cache_status(rows) == "ok"
    assert build_cache(rows).manifest["created_at"] == first.manifest["created_at"]  # reused, not rebuilt
    st = os.stat(rows.paths[3])
    os.utime(rows.paths[3], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a source file changed
    assert cache_status(rows) == "stale" and open_cache(rows) is None
    rebuilt = ensure_cache(rows, workers=1)
    assert rebuilt.folder == first.folder and cache_status(rows) == "ok"
    assert rebuilt.checksum == first.checksum  # same pixels, same checksum


def test_verify_finds_damaged_pixels(own_rows) -> None:
    _, rows = own_rows
    cache = build_cache(rows, workers=1)
    with open(cache.folder / "images.npy", "r+b") as handle:
        handle.seek(-10, os.SEEK_END)
        handle.write(b"\xff" * 10)
    assert any("pixels differ" in p for p in verify_cache(open_cache(rows, check_files=False)))


def test_undecodable_file_leaves_nothing_behind(own_rows) -> None:
    _, rows = own_rows
    rows.paths[5].write_bytes(b"not a jpeg")
    with pytest.raises(BmbenchError, match="could not be cached"):
        build_cache(rows, workers=1)
    folder = cache_folder(rows)
    assert not folder.exists()
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}")] == [f".{folder.name}.lock"]


def test_all_images_rows_equal_split_rows_for_complete_data(tiny_image_set) -> None:
    from bmbench.data.layout import scan_data

    split, paths = tiny_image_set
    index = scan_data(paths[0].parents[1])
    everything = rows_for_index(index, split)
    by_split = rows_for_split(split, paths)
    assert everything.image_ids == by_split.image_ids  # sorted ids == split-row order
    assert everything.paths == by_split.paths and np.array_equal(everything.labels, by_split.labels)
    # (for the real data both also name the same data set and split, hence the same cache)
    assert replace(everything, dataset_id=by_split.dataset_id).key() == by_split.key()


def test_cli_cache_builds_reuses_and_verifies() -> None:
    first = runner.invoke(app, ["data", "cache", "--data", "synthetic", "--workers", "2", "--rebuild"])
    assert first.exit_code == 0, first.output
    assert "3,118 images" in first.output and "decoded" in first.output and "SYNTHETIC" in first.output
    again = runner.invoke(app, ["data", "cache", "--data", "synthetic"])
    assert again.exit_code == 0 and "up to date" in again.output
    verified = runner.invoke(app, ["data", "cache", "--data", "synthetic", "--verify"])
    assert verified.exit_code == 0 and "cache intact" in verified.output


def test_synth_real_counts_scaled(tmp_path: Path) -> None:
    from bmbench.data.layout import scan_data
    from bmbench.datasets import BM

    result = runner.invoke(app, ["data", "synth", "--counts", "bm", "--scale", "0.0005", "--out", str(tmp_path),
                                 "--workers", "2"])
    assert result.exit_code == 0, result.output
    counts = scan_data(tmp_path).counts()
    assert counts == {code: max(1, round(n * 0.0005)) for code, n in zip(CLASS_CODES, BM.counts, strict=True)}
    assert "SYNTHETIC" in result.output and "images/s" in result.output
    refused = runner.invoke(app, ["data", "synth", "--counts", "bm"])
    assert refused.exit_code != 0 and "--out" in refused.output
