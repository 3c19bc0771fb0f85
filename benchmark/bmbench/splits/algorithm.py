"""The split algorithm: stratified k-fold test folds and per-fold validation parts from SHA-256 keys.

It depends on no library's random generator, so anyone can re-derive a split from the list of ids:

* ``key(purpose, id)`` is the hex SHA-256 of the UTF-8 string ``"<split name>:<purpose>:<id>"``.
* Test folds: per class, order the ids by ``key("test", id)``; the id of rank r (0-based) is in the test
  set of fold ``r mod k``. Every image is tested exactly once; each fold holds 1/k of every class (±1).
* Validation of fold f: per class, take the m ids whose test fold is not f, order them by
  ``key("val<f>", id)``; the first ``floor(val_fraction * m + 0.5)`` are ``val`` in fold f, the rest ``train``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ROLES: tuple[str, ...] = ("train", "val", "test")
"""Roles of an image in one fold; the index in this tuple is the code used in memory (0, 1, 2)."""
TRAIN, VAL, TEST = 0, 1, 2


def split_key(split_name: str, purpose: str, image_id: str) -> str:
    """The ordering key of ``image_id`` for ``purpose`` (``test`` or ``val<k>``) in split ``split_name``."""
    return hashlib.sha256(f"{split_name}:{purpose}:{image_id}".encode()).hexdigest()


def n_val(m: int, val_fraction: float) -> int:
    """Validation size for m candidate ids: ``floor(val_fraction * m + 0.5)`` (round half up)."""
    return math.floor(val_fraction * m + 0.5)


@dataclass(frozen=True)
class SplitRow:
    """One image of a split: its id, class code and role (``train``/``val``/``test``) in each fold."""

    image_id: str
    label: str
    roles: tuple[str, ...]


def derive_split(
    split_name: str,
    ids_by_class: Mapping[str, Sequence[str]],
    *,
    folds: int = 5,
    val_fraction: float = 0.2,
) -> list[SplitRow]:
    """Assign every id a role per fold, following the module's algorithm; rows sorted by image id."""
    if folds < 2:
        raise ValueError("a cross-validation split needs at least 2 folds")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1)")
    rows: list[SplitRow] = []
    for label, ids in ids_by_class.items():
        by_test_key = sorted(ids, key=lambda i: split_key(split_name, "test", i))
        test_fold = {image_id: rank % folds for rank, image_id in enumerate(by_test_key)}
        roles: dict[str, list[str]] = {i: ["train"] * folds for i in ids}
        for f in range(folds):
            candidates = [i for i in ids if test_fold[i] != f]
            candidates.sort(key=lambda i, f=f: split_key(split_name, f"val{f}", i))
            for image_id in candidates[: n_val(len(candidates), val_fraction)]:
                roles[image_id][f] = "val"
        for image_id, fold in test_fold.items():
            roles[image_id][fold] = "test"
        rows.extend(SplitRow(i, label, tuple(roles[i])) for i in ids)
    if len({r.image_id for r in rows}) != len(rows):
        raise ValueError("image ids must be unique across classes")
    rows.sort(key=lambda r: r.image_id)
    return rows


def render_split_csv(rows: Sequence[SplitRow], folds: int) -> bytes:
    """The split file's bytes: header ``image_id,label,fold0..``, one row per image, ``\\n`` line ends."""
    header = ",".join(["image_id", "label", *(f"fold{f}" for f in range(folds))])
    lines = [header, *(",".join([r.image_id, r.label, *r.roles]) for r in rows)]
    return ("\n".join(lines) + "\n").encode("utf-8")


def n_holdout_test(n: int, test_fraction: float) -> int:
    """Hold-out test size of a class of n images: ``floor(test_fraction * n)`` (as DinoBloom's split)."""
    return math.floor(round(test_fraction * n, 9))


def derive_holdout(
    split_name: str,
    ids_by_class: Mapping[str, Sequence[str]],
    *,
    test_ids: frozenset[str] | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.2,
) -> list[SplitRow]:
    """A one-fold split (``fold0``): a fixed test part, then validation by key among the rest.

    The test part is ``test_ids`` when given (a published hold-out such as DinoBloom's), else per class
    the first ``floor(test_fraction * n)`` ids by ``key("test", id)``. Of the m other ids of each class,
    the first ``floor(val_fraction * m + 0.5)`` by ``key("val0", id)`` are ``val``, the rest ``train``.
    """
    if not 0.0 <= val_fraction < 1.0 or not 0.0 < test_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1) and test_fraction in (0, 1)")
    rows: list[SplitRow] = []
    for label, ids in ids_by_class.items():
        if test_ids is not None:
            test = {i for i in ids if i in test_ids}
        else:
            ranked = sorted(ids, key=lambda i: split_key(split_name, "test", i))
            test = set(ranked[: n_holdout_test(len(ids), test_fraction)])
        rest = sorted((i for i in ids if i not in test), key=lambda i: split_key(split_name, "val0", i))
        val = set(rest[: n_val(len(rest), val_fraction)])
        rows.extend(SplitRow(i, label, ("test" if i in test else "val" if i in val else "train",)) for i in ids)
    if len({r.image_id for r in rows}) != len(rows):
        raise ValueError("image ids must be unique across classes")
    rows.sort(key=lambda r: r.image_id)
    return rows
