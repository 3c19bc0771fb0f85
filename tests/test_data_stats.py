"""`bmbench data stats`: channel mean/std in Table 2's convention, exact against numpy, streaming over a pool."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bmbench.classes import CLASS_CODES
from bmbench.cli.main import app
from bmbench.data.decode import decode_image
from bmbench.data.stats import channel_statistics, chunk_sums, combine, find_images
from bmbench.data.synthetic import generate_synthetic
from bmbench.errors import BmbenchError
from bmbench.records.data_stats import read_data_stats
from fixtures_bm import write_bm_tree

runner = CliRunner()


def _write_images(folder: Path) -> list[Path]:
    """Odd sizes, JPEG and PNG, RGB, greyscale and RGBA, plus a sub-folder: what 'new data' may look like."""
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True)
    (folder / "sub").mkdir()
    paths = []
    for k in range(11):
        h, w = int(rng.integers(5, 90)), int(rng.integers(5, 90))
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        mode, suffix = [("RGB", ".jpg"), ("RGB", ".png"), ("L", ".png"), ("RGBA", ".png")][k % 4]
        image = Image.fromarray(pixels).convert(mode)
        path = folder / ("sub" if k % 3 == 0 else "") / f"img{k}{suffix}"
        image.save(path)
        paths.append(path)
    (folder / "notes.txt").write_text("not an image")
    return sorted(paths)


def _numpy_reference(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.concatenate([decode_image(p)[0].reshape(-1, 3) for p in paths]).astype(np.float64) / 255.0
    return pixels.mean(axis=0), pixels.std(axis=0)


def test_statistics_equal_numpy_and_do_not_depend_on_chunking(tmp_path: Path) -> None:
    paths = _write_images(tmp_path / "new")
    assert find_images(tmp_path / "new") == paths
    mean, std = _numpy_reference(paths)
    one = channel_statistics(paths, workers=1)
    pooled = channel_statistics(paths, workers=2, chunk=3)
    np.testing.assert_allclose(one.mean, mean, rtol=0, atol=1e-9)
    np.testing.assert_allclose(one.std, std, rtol=0, atol=1e-9)
    assert pooled == one  # integer tallies: bit-identical whatever the chunking and process count
    assert one.images == len(paths) and one.pixels == sum(decode_image(p)[0].shape[0] * decode_image(p)[0].shape[1]
                                                         for p in paths)


def test_constant_images_have_zero_std_and_exact_mean(tmp_path: Path) -> None:
    path = tmp_path / "c.png"
    Image.new("RGB", (7, 3), (255, 0, 51)).save(path)
    stats = combine([chunk_sums([str(path)])] * 3)
    assert stats.mean == (1.0, 0.0, 0.2) and stats.std == (0.0, 0.0, 0.0) and stats.pixels == 63


def test_undecodable_files_are_listed_and_left_out(tmp_path: Path) -> None:
    paths = _write_images(tmp_path / "new")
    broken = tmp_path / "new" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 garbage")
    stats = channel_statistics([*paths, broken], workers=1)
    assert stats.images == len(paths) and [f for f, _ in stats.undecodable] == [str(broken)]
    np.testing.assert_allclose(stats.mean, _numpy_reference(paths)[0], atol=1e-9)


def test_cli_on_synthetic_data_is_labelled_and_writes_json(tmp_path: Path) -> None:
    root = generate_synthetic(tmp_path / "s", seed=2, counts=dict.fromkeys(CLASS_CODES, 2), workers=1)
    out = tmp_path / "stats.json"
    result = runner.invoke(app, ["data", "stats", "--data", str(root), "--json", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output and "Table 2" not in result.output
    doc = json.loads(out.read_text())
    mean, std = _numpy_reference(sorted(root.rglob("*.jpg")))
    assert doc["images"] == 42 and doc["data"]["synthetic"] is True and doc["table2"] is None
    np.testing.assert_allclose([doc["mean"][c] for c in ("red", "green", "blue")], mean, atol=1e-9)
    np.testing.assert_allclose([doc["std"][c] for c in ("red", "green", "blue")], std, atol=1e-9)
    record = read_data_stats(out)  # the document has one model: it reads back, and a damaged one is named
    assert record.schema_version == 1 and record.model_dump(mode="json") == doc
    for key, value in (("mean", {**doc["mean"], "red": 2.0}), ("images", 0), ("extra", 1)):
        out.write_text(json.dumps({**doc, key: value}))
        with pytest.raises(BmbenchError) as info:
            read_data_stats(out)
        assert info.value.exit_code == 2 and str(out) in info.value.message and key in info.value.message


def test_cli_on_a_bm_copy_compares_with_table2(tmp_path: Path) -> None:
    root = write_bm_tree(tmp_path, {"ABE": 2, "ART": 3}, chunk_size=2)
    out = tmp_path / "stats.json"
    result = runner.invoke(app, ["data", "stats", "--data", str(root), "--json", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "Table 2 mean" in result.output and "0.5630" in result.output and "5 images" in result.output
    assert "the data set has 171,374 images" in result.output  # an incomplete copy is pointed out
    table2 = json.loads(out.read_text())["table2"]
    assert [row["table2_mean"] for row in table2] == [0.5630, 0.4959, 0.7353]
    assert table2[0]["mean_diff"] == pytest.approx(table2[0]["mean"] - 0.5630)


def test_cli_plain_folder_and_empty_folder(tmp_path: Path) -> None:
    _write_images(tmp_path / "new")
    result = runner.invoke(app, ["data", "stats", "--data", str(tmp_path / "new"), "--workers", "1"])
    assert result.exit_code == 0 and "a folder of images" in result.output and "11 images" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["data", "stats", "--data", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "neither the BM layout nor any image file" in result.output

