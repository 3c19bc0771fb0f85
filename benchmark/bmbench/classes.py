"""The 21 cell classes of the Matek et al. 2021 bone-marrow data set.

Index order is alphabetical by code (ABE=0 ... PMO=20), as every public loader uses. Full names and the
published image count per class (Glüge et al. 2023, Table 5) live in ``resources/bm_classes.csv`` (data,
not code), together with the per-class size of the embedded synthetic demo set, which keeps the real
imbalance in shape (proportional, at least 20 images a class).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class CellClass:
    """One class: its index, 3-letter code, full name and image counts (real and synthetic)."""

    index: int
    code: str
    name: str
    count: int
    synthetic_count: int


@cache
def cell_classes() -> tuple[CellClass, ...]:
    """All 21 classes in index order, read once from the packaged CSV."""
    text = resources.files("bmbench.resources").joinpath("bm_classes.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    out = tuple(
        CellClass(int(r["index"]), r["code"], r["name"], int(r["count"]), int(r["synthetic_count"]))
        for r in rows
    )
    if [c.index for c in out] != list(range(len(out))) or [c.code for c in out] != sorted(c.code for c in out):
        raise RuntimeError("bm_classes.csv is corrupt: classes must be listed in alphabetical index order")
    return out


CLASS_CODES: tuple[str, ...] = tuple(c.code for c in cell_classes())
NUM_CLASSES: int = len(CLASS_CODES)
CLASS_INDEX: dict[str, int] = {code: i for i, code in enumerate(CLASS_CODES)}
TOTAL_IMAGES: int = sum(c.count for c in cell_classes())
