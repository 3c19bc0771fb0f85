"""Published test-id lists that a hold-out split takes as given (DinoBloom's ``bm_test.csv``).

The list is package data (``resources/splits/sources/``), checked against the SHA-256 recorded in
``splits.toml`` before use, and every id must be an id of the data set with the class it names.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from bmbench import paths
from bmbench.errors import SplitIntegrityError


def read_test_ids(relative: str, sha256: str, ids_by_class: Mapping[str, Collection[str]]) -> frozenset[str]:
    """The ids of a published test list (``image_id,label`` CSV), hash-checked and checked against the data set."""
    import hashlib

    path = paths.published_splits_dir() / relative
    if not path.is_file():
        raise SplitIntegrityError(f"{path} is missing: it is part of the bmbench package (reinstall bmbench, "
                                  "or restore it with git checkout)")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise SplitIntegrityError(f"{path} has SHA-256 {digest}, but splits.toml records {sha256}: the published "
                                  "test-id list was modified; restore it with git checkout")
    lines = data.decode("utf-8").splitlines()
    if not lines or lines[0] != "image_id,label":
        raise SplitIntegrityError(f"{path}, line 1: the header must be image_id,label")
    seen: set[str] = set()
    for lineno, line in enumerate(lines[1:], start=2):
        image_id, sep, label = line.partition(",")
        if not sep or label not in ids_by_class or image_id not in ids_by_class[label]:
            raise SplitIntegrityError(f"{path}, line {lineno}: {line!r} is not an image id of the data set "
                                      "with its class code")
        if image_id in seen:
            raise SplitIntegrityError(f"{path}, line {lineno}: duplicate id {image_id}")
        seen.add(image_id)
    return frozenset(seen)
