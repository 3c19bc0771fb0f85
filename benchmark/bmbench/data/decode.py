"""Decode one image file: Pillow first, OpenCV when Pillow refuses it.

The BM release holds at least one JPEG that Pillow will not read; public loaders re-encode it with
OpenCV or silently skip it. bmbench decodes it with OpenCV and says so (:func:`decode_image` returns
which decoder succeeded), so nothing is skipped and nothing is hidden.

Pillow must really decode (``load()``), and truncated files must fail there: this module never sets
``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``. OpenCV is imported inside the fallback only, so importing this
module (and every worker that decodes only healthy files) does not load it. Both decoders return the
stored pixel orientation (EXIF orientation is ignored by both), as RGB.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

EXPECTED_SHAPE: tuple[int, int, int] = (250, 250, 3)
"""The shape of every image of the release (250 x 250 RGB)."""


class DecodeError(Exception):
    """A file that neither Pillow nor OpenCV can decode; the message gives both reasons."""

    def __init__(self, path: str | os.PathLike[str], pillow_reason: str, opencv_reason: str) -> None:
        super().__init__(f"{path}: cannot be decoded (Pillow: {pillow_reason}; OpenCV: {opencv_reason})")
        self.path = Path(path)
        self.pillow_reason = pillow_reason
        self.opencv_reason = opencv_reason


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _decode_pillow(path: str | os.PathLike[str]) -> np.ndarray:
    with Image.open(path) as im:
        im.load()  # raises OSError("image file is truncated ...") on a truncated file
        rgb = im if im.mode == "RGB" else im.convert("RGB")
        return np.asarray(rgb, dtype=np.uint8).copy()


def _decode_opencv(path: str | os.PathLike[str]) -> np.ndarray:
    import cv2  # lazily: only files Pillow refused get here

    data = np.fromfile(path, np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise ValueError("cv2.imdecode could not decode the data")
    if bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"cv2.imdecode returned an array of shape {bgr.shape}, not (H, W, 3)")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def decode_image(path: str | os.PathLike[str]) -> tuple[np.ndarray, str]:
    """Decode ``path`` to an ``(H, W, 3)`` uint8 RGB array; also return ``"pillow"`` or ``"opencv"``.

    Pillow is tried first; on any error OpenCV decodes the file instead. Raises :class:`DecodeError`
    (carrying both reasons) when both fail.
    """
    try:
        return _decode_pillow(path), "pillow"
    except Exception as exc:  # any Pillow failure (OSError, UnidentifiedImageError, SyntaxError, ...)
        pillow_reason = _reason(exc)
    try:
        return _decode_opencv(path), "opencv"
    except Exception as exc:  # includes ImportError (no OpenCV) and unreadable files
        raise DecodeError(path, pillow_reason, _reason(exc)) from exc


def check_chunk(
    items: list[tuple[str, str]],
) -> tuple[int, list[tuple[str, str, str | tuple[int, ...]]]]:
    """Decode a chunk of ``(image_id, path)`` pairs in a worker; report only what is noteworthy.

    Returns ``(number of files processed, findings)`` where each finding is ``(image_id, kind, detail)``:
    ``("opencv", shape)`` for a file that needed the fallback, ``("error", reason)`` for an undecodable
    one (its folder left out of the reason) and ``("shape", shape)`` for a Pillow-decoded file that is
    not 250 x 250 x 3 (fallback findings carry their shape, so the caller checks those itself). Healthy
    files cost nothing to send back.
    """
    findings: list[tuple[str, str, str | tuple[int, ...]]] = []
    for image_id, path in items:
        try:
            array, decoder = decode_image(path)
        except DecodeError as exc:
            reason = f"Pillow: {exc.pillow_reason}; OpenCV: {exc.opencv_reason}"
            findings.append((image_id, "error", reason.replace(path, os.path.basename(path))))
            continue
        except Exception as exc:  # never let one odd file take the pool down
            findings.append((image_id, "error", _reason(exc).replace(path, os.path.basename(path))))
            continue
        shape = tuple(int(s) for s in array.shape)
        if decoder == "opencv":
            findings.append((image_id, "opencv", shape))
        elif shape != EXPECTED_SHAPE:
            findings.append((image_id, "shape", shape))
    return len(items), findings
