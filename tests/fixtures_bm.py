"""Write tiny trees in the layout of the BM release (``BM_cytomorphology_data/``) for tests.

``write_bm_tree(tmp_path, {"ABE": 3, "ART": 7}, chunk_size=3)`` gives::

    tmp_path/BM_cytomorphology_data/
        abbreviations.csv                       Abbreviation;Meaning ...
        ABE/ABE_00001.jpg ... ABE_00003.jpg      (flat: fewer images than chunk_size)
        ART/0001-0003/ART_00001.jpg ...          (sub-folders of chunk_size, as 0001-1000 in the release)
        ART/0007-0007/ART_00007.jpg

Every image is a valid 250 x 250 RGB JPEG (the same bytes, cached). Helpers also make the odd files the
decoder must cope with: a JPEG that Pillow refuses but OpenCV reads, a truncated JPEG, and garbage.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Collection, Mapping
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from bmbench.classes import CLASS_CODES, cell_classes
from bmbench.datasets import DatasetSpec

TOP = "BM_cytomorphology_data"
KAGGLE_WRAPPER = "bone_marrow_cell_dataset"


@cache
def jpeg_bytes(width: int = 250, height: int = 250, quality: int = 90) -> bytes:
    """A valid RGB JPEG of ``width`` x ``height`` (a smooth colour ramp plus a little noise)."""
    rng = np.random.default_rng(width * 1000 + height)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], axis=-1)
    noise = rng.integers(0, 16, size=(height, width, 3))
    array = np.clip(base + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(array, "RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def pillow_refused_jpeg_bytes() -> bytes:
    """A JPEG whose JFIF APP0 segment is cut to ``JFIF\\0``: Pillow's header parser gives up
    ("cannot identify image file"), libjpeg skips the short segment, so OpenCV decodes it exactly.
    The stand-in for the release file that public loaders re-encode with OpenCV."""
    data = jpeg_bytes()
    assert data[2:4] == b"\xff\xe0" and data[6:11] == b"JFIF\x00", "Pillow no longer writes JFIF APP0 first"
    seg_len = struct.unpack(">H", data[4:6])[0]
    short = b"JFIF\x00"
    return data[:2] + b"\xff\xe0" + struct.pack(">H", len(short) + 2) + short + data[4 + seg_len :]


def truncated_jpeg_bytes(keep: float = 0.6) -> bytes:
    """The first ``keep`` of a valid JPEG: Pillow raises "image file is truncated" on ``load()``.
    (OpenCV 4 decodes the rest as grey with a warning; OpenCV 5 refuses it too.)"""
    data = jpeg_bytes()
    return data[: int(len(data) * keep)]


def garbage_bytes() -> bytes:
    """Bytes that no decoder reads."""
    return b"this is not an image\n" * 20


def chunk_folder(start: int, end: int) -> str:
    """Sub-folder name as in the release: ``0001-1000``, ``19001-19630``."""
    return f"{start:04d}-{end:04d}"


def image_relpath(code: str, number: int, count: int, chunk_size: int | None) -> Path:
    """Where image ``number`` of a class of ``count`` images lies, relative to the data root
    (flat when ``chunk_size`` is None, else in its numbered sub-folder)."""
    name = f"{code}_{number:05d}.jpg"
    if chunk_size is None:
        return Path(code) / name
    start = (number - 1) // chunk_size * chunk_size + 1
    end = min(start + chunk_size - 1, count)
    return Path(code) / chunk_folder(start, end) / name


def write_abbreviations(
    root: Path,
    codes: Collection[str] | None = None,
    *,
    bom: bool = False,
    crlf: bool = False,
    header: str = "Abbreviation;Meaning",
) -> Path:
    """Write ``abbreviations.csv`` (semicolon-separated) for ``codes`` (default: all 21)."""
    names = {c.code: c.name for c in cell_classes()}
    lines = [header] + [f"{code};{names[code]}" for code in (codes if codes is not None else CLASS_CODES)]
    newline = "\r\n" if crlf else "\n"
    data = newline.join(lines) + newline
    path = root / "abbreviations.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data.encode("utf-8"))
    return path


def write_bm_tree(
    base: Path,
    counts: Mapping[str, int],
    *,
    chunk_size: int | None = None,
    chunked: Collection[str] | None = None,
    top: str | None = TOP,
    abbreviations: bool = True,
    synthetic_marker: bool = False,
    image: bytes | None = None,
) -> Path:
    """Write a BM-layout tree under ``base`` and return its data root (``base/top``, or ``base``).

    ``counts`` maps class codes to image counts (a code with 0 gets an empty folder). With
    ``chunk_size``, classes with at least that many images (as the release does at 1,000), or exactly
    the classes in ``chunked`` if given, are split into numbered sub-folders of ``chunk_size``.
    """
    root = base / top if top else base
    root.mkdir(parents=True, exist_ok=True)
    data = image if image is not None else jpeg_bytes()
    for code, count in counts.items():
        assert code in CLASS_CODES, code
        (root / code).mkdir(exist_ok=True)
        if chunked is not None:
            size = chunk_size if code in chunked else None
        else:
            size = chunk_size if chunk_size is not None and count >= chunk_size else None
        for n in range(1, count + 1):
            rel = image_relpath(code, n, count, size)
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    if abbreviations:
        write_abbreviations(root)
    if synthetic_marker:
        (root / "bmbench-synthetic.json").write_text('{"generator": "bmbench tests"}\n', encoding="utf-8")
    return root


def spec(counts: Mapping[str, int], *, title: str = "Tiny BM test set", synthetic: bool = False) -> DatasetSpec:
    """A :class:`DatasetSpec` with ``counts`` (0 for classes not named), to compare tiny trees with."""
    return DatasetSpec(
        id="synthetic" if synthetic else "bm",
        title=title,
        synthetic=synthetic,
        counts=tuple(int(counts.get(code, 0)) for code in CLASS_CODES),
    )
