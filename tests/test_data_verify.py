"""bmbench.data.decode and bmbench.data.verify: decoding with fallback, checking against the image list."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from rich.console import Console

from bmbench.data.decode import DecodeError, decode_image
from bmbench.data.layout import scan_data
from bmbench.data.verify import ClassCheck, VerifyReport, render_verify_report, verify_data
from bmbench.datasets import SYNTHETIC, TCIA_URL

try:
    from fixtures_bm import (
        garbage_bytes,
        jpeg_bytes,
        pillow_refused_jpeg_bytes,
        spec,
        truncated_jpeg_bytes,
        write_bm_tree,
    )
except ImportError:  # tests/ collected as a package
    from tests.fixtures_bm import (  # type: ignore[no-redef]
        garbage_bytes,
        jpeg_bytes,
        pillow_refused_jpeg_bytes,
        spec,
        truncated_jpeg_bytes,
        write_bm_tree,
    )

COUNTS = {"ABE": 8, "ART": 7, "BAS": 3}


def render(report: VerifyReport) -> str:
    """The report as plain text, whitespace collapsed (Rich wraps long lines at spaces)."""
    console = Console(record=True, width=120)
    render_verify_report(report, console)
    return " ".join(console.export_text().split())


def tree(tmp_path: Path, counts: dict[str, int] = COUNTS, **kwargs: object) -> Path:
    return write_bm_tree(tmp_path, counts, chunk_size=3, **kwargs)  # type: ignore[arg-type]


def image_path(root: Path, image_id: str) -> Path:
    return next(root.rglob(f"{image_id}.jpg"))


# --- decode_image ---------------------------------------------------------------------------------


def test_decode_healthy_jpeg_with_pillow(tmp_path: Path) -> None:
    path = tmp_path / "ABE_00001.jpg"
    path.write_bytes(jpeg_bytes())
    array, decoder = decode_image(path)
    assert decoder == "pillow"
    assert array.shape == (250, 250, 3) and array.dtype == np.uint8
    np.testing.assert_array_equal(array, np.asarray(Image.open(io.BytesIO(jpeg_bytes())).convert("RGB")))


def test_pillow_refused_jpeg_falls_back_to_opencv(tmp_path: Path) -> None:
    path = tmp_path / "ABE_00001.jpg"
    path.write_bytes(pillow_refused_jpeg_bytes())
    with pytest.raises(Exception):  # Pillow really refuses it
        with Image.open(path) as im:
            im.load()
    array, decoder = decode_image(path)
    assert decoder == "opencv"
    assert array.shape == (250, 250, 3) and array.dtype == np.uint8
    reference = np.asarray(Image.open(io.BytesIO(jpeg_bytes())).convert("RGB")).astype(int)
    assert np.abs(array.astype(int) - reference).max() <= 2  # same pixels, RGB order (not BGR)


def test_truncated_jpeg_fails_in_pillow_and_goes_to_opencv(tmp_path: Path) -> None:
    import cv2

    path = tmp_path / "ABE_00001.jpg"
    path.write_bytes(truncated_jpeg_bytes())
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(OSError, match="truncated"):
        with Image.open(path) as im:
            im.load()
    # OpenCV 4 decodes a truncated JPEG (grey bottom, a warning); OpenCV 5 refuses it. Either way
    # decode_image must have tried OpenCV and must report Pillow's reason when both fail.
    opencv_reads_it = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR) is not None
    if opencv_reads_it:
        array, decoder = decode_image(path)
        assert decoder == "opencv" and array.shape == (250, 250, 3)
    else:
        with pytest.raises(DecodeError) as info:
            decode_image(path)
        assert "truncated" in info.value.pillow_reason and "imdecode" in info.value.opencv_reason
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_garbage_fails_both_decoders(tmp_path: Path) -> None:
    path = tmp_path / "ABE_00001.jpg"
    path.write_bytes(garbage_bytes())
    with pytest.raises(DecodeError) as info:
        decode_image(path)
    message = str(info.value)
    assert str(path) in message and "Pillow:" in message and "OpenCV:" in message
    assert info.value.pillow_reason and info.value.opencv_reason


def test_missing_file_is_a_decode_error(tmp_path: Path) -> None:
    with pytest.raises(DecodeError):
        decode_image(tmp_path / "nothing.jpg")


def test_importing_the_data_modules_does_not_import_opencv() -> None:
    code = (
        "import sys, bmbench.data, bmbench.data.layout, bmbench.data.decode, bmbench.data.verify;"
        "bad = [m for m in ('cv2', 'torch') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- verify_data ----------------------------------------------------------------------------------


def test_complete_tree_verifies_ok(tmp_path: Path) -> None:
    root = tree(tmp_path)
    report = verify_data(scan_data(root, dataset=spec(COUNTS, title="Tiny BM")), workers=1)
    assert report.ok and report.decoded
    assert report.opencv_fallback == report.undecodable == report.wrong_shape == ()
    assert len(report.classes) == 21 and all(isinstance(c, ClassCheck) for c in report.classes)
    abe = report.classes[0]
    assert (abe.code, abe.name, abe.expected, abe.found, abe.missing, abe.unexpected) == (
        "ABE",
        "Abnormal eosinophils",
        8,
        8,
        (),
        (),
    )
    text = render(report)
    assert "Tiny BM" in text and "Abnormal eosinophils" in text and "✓" in text
    assert "matches the published image list of Tiny BM: 18 images" in text
    assert "FAILED" not in text


def test_missing_and_unexpected_ids(tmp_path: Path) -> None:
    root = tree(tmp_path)
    image_path(root, "ABE_00002").unlink()
    image_path(root, "ART_00005").unlink()
    (root / "ABE" / "ABE_00009.jpg").write_bytes(jpeg_bytes())  # ABE has 8
    report = verify_data(scan_data(root, dataset=spec(COUNTS)), workers=1)
    assert not report.ok
    abe = report.classes[0]
    assert abe.missing == ("ABE_00002",) and abe.unexpected == ("ABE_00009",) and abe.found == 8
    assert report.missing == ("ABE_00002", "ART_00005")
    assert report.unexpected == ("ABE_00009",)
    text = render(report)
    for expected in ("ABE_00002", "ART_00005", "ABE_00009", "✗", "FAILED", "2 missing images", TCIA_URL):
        assert expected in text, expected


def test_long_lists_are_cut_with_and_n_more(tmp_path: Path) -> None:
    root = tree(tmp_path, {"ABE": 0, "ART": 0})
    report = verify_data(scan_data(root, dataset=spec({"ABE": 8, "ART": 7})), decode=False)
    assert len(report.missing) == 15
    text = render(report)
    assert "... and 5 more" in text and "ART_00002" in text and "ART_00007" not in text


def test_opencv_fallback_is_reported_but_ok(tmp_path: Path) -> None:
    root = tree(tmp_path)
    image_path(root, "ART_00004").write_bytes(pillow_refused_jpeg_bytes())
    report = verify_data(scan_data(root, dataset=spec(COUNTS)), workers=1)
    assert report.opencv_fallback == ("ART_00004",)
    assert report.undecodable == () and report.wrong_shape == ()
    assert report.ok
    text = render(report)
    assert "Decoded with OpenCV after Pillow failed" in text and "ART_00004" in text
    assert "1 file decoded with OpenCV after Pillow failed" in text and "OK" in text


def test_truncated_jpeg_never_passes_silently(tmp_path: Path) -> None:
    root = tree(tmp_path)
    image_path(root, "BAS_00002").write_bytes(truncated_jpeg_bytes())
    report = verify_data(scan_data(root, dataset=spec(COUNTS)), workers=1)
    # Depending on the OpenCV version it is decoded by the fallback (reported) or undecodable (failure).
    assert report.opencv_fallback == ("BAS_00002",) or [i for i, _ in report.undecodable] == ["BAS_00002"]
    assert report.ok == (report.undecodable == ())


def test_garbage_file_is_undecodable_and_fails(tmp_path: Path) -> None:
    root = tree(tmp_path)
    image_path(root, "ABE_00003").write_bytes(garbage_bytes())
    index = scan_data(root, dataset=spec(COUNTS))
    report = verify_data(index, workers=1)
    assert [i for i, _ in report.undecodable] == ["ABE_00003"]
    reason = report.undecodable[0][1]
    assert "Pillow" in reason and "OpenCV" in reason
    assert not report.ok
    text = render(report)
    assert "Undecodable files" in text and "ABE_00003" in text and "1 undecodable file" in text

    skipped = verify_data(index, decode=False)
    assert not skipped.decoded and skipped.undecodable == () and skipped.ok
    assert "images were not decoded" in render(skipped)


def test_wrong_shape_is_a_warning(tmp_path: Path) -> None:
    root = tree(tmp_path)
    image_path(root, "ART_00001").write_bytes(jpeg_bytes(100, 80))
    report = verify_data(scan_data(root, dataset=spec(COUNTS)), workers=1)
    assert report.wrong_shape == (("ART_00001", (80, 100, 3)),)
    assert report.ok
    text = render(report)
    assert "Warning" in text and "ART_00001: 80 x 100 x 3" in text


def test_misplaced_and_duplicates_fail(tmp_path: Path) -> None:
    root = tree(tmp_path)
    (root / "ART" / "0001-0003" / "ABE_00001.jpg").write_bytes(jpeg_bytes())
    (root / "ART" / "0004-0006" / "ART_00002.jpg").write_bytes(jpeg_bytes())
    (root / ".DS_Store").write_bytes(b"\0")
    report = verify_data(scan_data(root, dataset=spec(COUNTS)), workers=1)
    assert all(c.ok for c in report.classes)
    assert len(report.misplaced) == 1 and len(report.duplicates) == 1 and len(report.ignored) == 1
    assert not report.ok
    text = render(report)
    for expected in ("Misplaced files", "ABE_00001.jpg", "Duplicate files", "Ignored files", ".DS_Store"):
        assert expected in text, expected
    assert "1 misplaced file, 1 duplicate file" in text


def test_ignored_files_alone_do_not_fail(tmp_path: Path) -> None:
    root = tree(tmp_path)
    (root / "Thumbs.db").write_bytes(b"\0")
    report = verify_data(scan_data(root, dataset=spec(COUNTS)), decode=False)
    assert report.ok and len(report.ignored) == 1


def test_process_pool_gives_the_same_findings_and_progress(tmp_path: Path) -> None:
    root = tree(tmp_path)
    image_path(root, "ABE_00003").write_bytes(garbage_bytes())
    image_path(root, "ART_00004").write_bytes(pillow_refused_jpeg_bytes())
    image_path(root, "BAS_00001").write_bytes(jpeg_bytes(120, 90))
    index = scan_data(root, dataset=spec(COUNTS))
    steps: list[int] = []
    pooled = verify_data(index, workers=2, chunk_size=4, progress=steps.append)
    serial = verify_data(index, workers=1)
    assert sum(steps) == len(index.records) == 18 and len(steps) == 5
    assert pooled == serial
    assert pooled.opencv_fallback == ("ART_00004",)
    assert [i for i, _ in pooled.undecodable] == ["ABE_00003"]
    assert pooled.wrong_shape == (("BAS_00001", (90, 120, 3)),)


def test_synthetic_data_is_labelled_synthetic(tmp_path: Path) -> None:
    root = write_bm_tree(tmp_path, {"ABE": 2}, synthetic_marker=True)
    index = scan_data(root)
    assert index.dataset == SYNTHETIC
    report = verify_data(index, decode=False)
    assert not report.ok  # the tiny tree lacks most of the synthetic set
    text = render(report)
    assert text.startswith("Data check: SYNTHETIC demo data")
    assert "not real cells" in text
    assert "generate it again" in text and TCIA_URL not in text

    custom = spec({"ABE": 2}, title="Toy set", synthetic=True)
    report = verify_data(scan_data(root, dataset=custom), decode=False)
    assert report.ok
    text = render(report)
    assert "SYNTHETIC: Toy set" in text and "matches the image list of SYNTHETIC: Toy set: 2 images" in text


def test_unreadable_abbreviations_become_a_warning(tmp_path: Path) -> None:
    root = tree(tmp_path, abbreviations=False)
    (root / "abbreviations.csv").write_text("nonsense\n", encoding="utf-8")
    report = verify_data(scan_data(root, dataset=spec(COUNTS)), decode=False)
    assert report.ok and len(report.warnings) == 1
    assert "abbreviations.csv" in render(report)
