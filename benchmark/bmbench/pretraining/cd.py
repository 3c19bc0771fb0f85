"""Comparison Detector (cervical cells) as a classification set: one square crop per annotated box.

The release holds COCO-style ``train.json`` / ``test.json`` (boxes ``[x, y, w, h]`` in pixels) and the
images under ``train/`` and ``test/`` (``.bmp``). For classification pre-training (Glüge et al. 2023,
Sec. 2.1.2 / 2.4.2) every box becomes one image:

* **Crop.** The box is first clipped to the image; the crop is the square centred on the clipped box whose
  side is the box's longer side plus :data:`PADDING` (10 %) of it on each side (side x 1.2). Where the square
  leaves the image it is filled with the data set's mean colour (Table 2), which normalises to zero.
* **Dropped boxes** are counted per reason and logged: width or height <= 1 px (or not finite), less than
  2 px left inside the image after clipping, or an ``image_id`` that no image entry has.
* **Classes:** the 11 categories by *name* (``ascus, asch, lsil, hsil, scc, agc, trichomonas, candida,
  flora, herps, actinomyces``; ``ASC-US`` and ``ascus`` are the same name), never by the file's ids.
* **Split:** ``test.json`` is the test part. ``train.json`` is split by *image* (all boxes of an image stay
  together) into train and val for checkpoint selection, with the rule of bmbench's splits: order the
  images that keep at least one box by the hex SHA-256 of ``"cd-pretrain-v1:val:<file_name>"``; the first
  ``floor(0.2 * m + 0.5)`` of the m images are val.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bmbench.errors import BmbenchError, DataNotFoundError
from bmbench.pretraining.source import CD, PretrainData
from bmbench.splits.algorithm import n_val, split_key
from bmbench.recipe import channel_stats

PADDING = 0.10
"""Fraction of the box's longer side added on each side of the square crop."""
VAL_FRACTION = 0.2
VAL_SPLIT_NAME = "cd-pretrain-v1"
SPLITS = ("train", "test")

DROP_SMALL = "w or h <= 1 px"
DROP_OUTSIDE = "outside the image"
DROP_UNKNOWN_IMAGE = "unknown image_id"

Log = Callable[[str], None]


def is_cd_folder(root: Path) -> bool:
    """Whether ``root`` holds the Comparison Detector annotation files."""
    return (root / "train.json").is_file() or (root / "annotations" / "train.json").is_file()


def fill_colour() -> tuple[int, int, int]:
    """The CD mean colour (Table 2) as 8-bit RGB: padding that normalises to zero."""
    mean, _ = channel_stats("cd")
    return (round(mean[0] * 255), round(mean[1] * 255), round(mean[2] * 255))


class CdCrops:
    """Square crops of the box table ``boxes`` (rows ``image, left, top, side``) from ``paths``."""

    def __init__(self, paths: list[Path], boxes: np.ndarray, fill: tuple[int, int, int]) -> None:
        self.paths = paths
        self.boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        self.fill = fill

    def __len__(self) -> int:
        return len(self.boxes)

    def image(self, index: int) -> Image.Image:
        image_index, left, top, side = (int(v) for v in self.boxes[index])
        with Image.open(self.paths[image_index]) as source:
            width, height = source.size
            x0, y0 = max(left, 0), max(top, 0)
            x1, y1 = min(left + side, width), min(top + side, height)
            canvas = Image.new("RGB", (side, side), self.fill)
            if x1 > x0 and y1 > y0:
                canvas.paste(source.crop((x0, y0, x1, y1)).convert("RGB"), (x0 - left, y0 - top))
        return canvas


def square_box(x: float, y: float, w: float, h: float, width: int, height: int) -> tuple[int, int, int] | str:
    """``(left, top, side)`` of the padded square crop of a box, or the reason it is dropped."""
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 1 or h <= 1:
        return DROP_SMALL
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    if x1 - x0 <= 1 or y1 - y0 <= 1:
        return DROP_OUTSIDE
    side = max(x1 - x0, y1 - y0) * (1 + 2 * PADDING)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return round(cx - side / 2), round(cy - side / 2), max(2, round(side))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise BmbenchError(f"{path}: not UTF-8 text ({err}); is it really the annotation file?") from None
    except json.JSONDecodeError as err:
        raise BmbenchError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); the "
                           "file is truncated or corrupt. Download the release again.") from None
    if not isinstance(doc, dict):
        raise BmbenchError(f"{path}: expected a COCO object with 'images', 'annotations' and 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise BmbenchError(f"{path}: the COCO key '{key}' is missing or not a list")
    return doc


def _field(path: Path, where: str, entry: Any, key: str) -> Any:
    if not isinstance(entry, dict) or key not in entry:
        raise BmbenchError(f"{path}: {where} has no '{key}'")
    return entry[key]


@dataclass
class _Part:
    """The kept boxes of one annotation file."""

    image_names: list[str] = field(default_factory=list)
    image_paths: list[Path] = field(default_factory=list)
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # local image index, left, top, side
    labels: list[int] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    images: int = 0


def _image_file(root: Path, split: str, name: str) -> Path | None:
    for candidate in (root / split / name, root / name, root / split / Path(name).name):
        if candidate.is_file():
            return candidate
    return None


def _categories(path: Path, doc: dict[str, Any]) -> dict[Any, int]:
    mapping: dict[Any, int] = {}
    unknown: list[str] = []
    for k, entry in enumerate(doc["categories"]):
        cat_id = _field(path, f"categories[{k}]", entry, "id")
        name = _field(path, f"categories[{k}]", entry, "name")
        index = CD.class_index(name)
        if index is None:
            unknown.append(str(name))
        else:
            mapping[cat_id] = index
    if unknown:
        raise BmbenchError(f"{path}: unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                           f"the Comparison Detector classes are {', '.join(CD.classes)}")
    return mapping


def _read_part(root: Path, split: str, path: Path) -> _Part:
    doc = _read_json(path)
    categories = _categories(path, doc)
    images: dict[Any, tuple[str, int | None, int | None]] = {}
    for k, entry in enumerate(doc["images"]):
        where = f"images[{k}]"
        image_id = _field(path, where, entry, "id")
        name = str(_field(path, where, entry, "file_name"))
        width, height = entry.get("width"), entry.get("height")
        images[image_id] = (name, int(width) if width else None, int(height) if height else None)

    part = _Part(images=len(images))
    local: dict[Any, int] = {}
    sizes: dict[Any, tuple[int, int]] = {}
    missing: list[str] = []
    for k, entry in enumerate(doc["annotations"]):
        where = f"annotations[{k}]"
        image_id = _field(path, where, entry, "image_id")
        cat_id = _field(path, where, entry, "category_id")
        bbox = _field(path, where, entry, "bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in bbox):
            raise BmbenchError(f"{path}: {where}: 'bbox' must be 4 numbers [x, y, w, h], not {bbox!r}")
        if cat_id not in categories:
            raise BmbenchError(f"{path}: {where}: category_id {cat_id!r} is not in the file's 'categories'")
        if image_id not in images:
            part.dropped[DROP_UNKNOWN_IMAGE] += 1
            continue
        name, width, height = images[image_id]
        if image_id not in local:
            file = _image_file(root, split, name)
            if file is None:
                missing.append(name)
                local[image_id] = -1
                continue
            if width is None or height is None:
                with Image.open(file) as img:
                    width, height = img.size
            local[image_id] = len(part.image_paths)
            part.image_paths.append(file)
            part.image_names.append(name)
            sizes[image_id] = (width, height)
        if local[image_id] < 0:
            continue
        crop = square_box(*(float(v) for v in bbox), *sizes[image_id])
        if isinstance(crop, str):
            part.dropped[crop] += 1
            continue
        part.boxes.append((local[image_id], *crop))
        part.labels.append(categories[cat_id])
    if missing:
        raise DataNotFoundError(
            f"{len(missing)} image(s) named in {path} are not in {root / split}: {', '.join(missing[:5])}"
            f"{', ...' if len(missing) > 5 else ''}. Unpack the complete release.\n{CD.download}"
        )
    return part


def _dropped_text(dropped: Counter[str]) -> str:
    total = sum(dropped.values())
    if not total:
        return "0 dropped"
    return f"{total} dropped ({', '.join(f'{reason}: {n}' for reason, n in sorted(dropped.items()))})"


def load_cd(root: Path, log: Log | None = None) -> PretrainData:
    """The Comparison Detector crops under ``root``: train.json (train + val by image) and test.json (test)."""
    if not root.is_dir():
        raise DataNotFoundError(f"{root} is not a folder.\n{CD.download}")
    base = root if (root / "train.json").is_file() else root / "annotations"
    paths = {split: base / f"{split}.json" for split in SPLITS}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise DataNotFoundError(f"{root} lacks {' and '.join(missing)} (expected train.json and test.json, "
                                f"and the images under train/ and test/).\n{CD.download}")
    parts = {split: _read_part(root, split, paths[split]) for split in SPLITS}
    for split, part in parts.items():
        if log is not None:
            log(f"Comparison Detector {split}.json: {part.images} images, {len(part.boxes)} boxes kept, "
                f"{_dropped_text(part.dropped)}")

    all_paths = parts["train"].image_paths + parts["test"].image_paths
    shift = len(parts["train"].image_paths)
    boxes = list(parts["train"].boxes) + [(i + shift, x, y, s) for i, x, y, s in parts["test"].boxes]
    labels = np.asarray(parts["train"].labels + parts["test"].labels, dtype=np.int64)

    train_part = parts["train"]
    names = sorted({train_part.image_names[b[0]] for b in train_part.boxes},
                   key=lambda n: split_key(VAL_SPLIT_NAME, "val", n))
    val_names = set(names[: n_val(len(names), VAL_FRACTION)])
    is_val = np.array([train_part.image_names[b[0]] in val_names for b in train_part.boxes], dtype=bool)
    train_count = len(train_part.boxes)
    data = PretrainData(
        spec=CD, source=CdCrops(all_paths, np.asarray(boxes, dtype=np.int64), fill_colour()), labels=labels,
        train=np.flatnonzero(~is_val).astype(np.int64), val=np.flatnonzero(is_val).astype(np.int64),
        test=np.arange(train_count, len(boxes), dtype=np.int64),
        info={"format": "cd-coco", "root": str(root), "padding": PADDING,
              "crop": f"square around the clipped box, side = longer side x {1 + 2 * PADDING:g}, "
                      "filled with the CD mean colour outside the image",
              "split_rule": f"test.json = test; train.json split by image: SHA-256 of "
                            f"'{VAL_SPLIT_NAME}:val:<file_name>', first floor({VAL_FRACTION} m + 0.5) = val",
              "val_images": len(val_names), "train_images": len(names) - len(val_names),
              "dropped_boxes": {split: dict(sorted(part.dropped.items())) for split, part in parts.items()}},
    )
    data.check()
    return data
