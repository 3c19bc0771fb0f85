"""Images per class of every data set, counted from its published split file (``bmbench classes``).

The counts come from the hash-checked split files, so they are what the benchmark scores against; each is
compared with the data set's expected counts (``resources/bm_classes.csv``, the paper's Table 5 for the
real data), and a difference is reported, never hidden.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bmbench.classes import NUM_CLASSES, cell_classes
from bmbench.datasets import DATASETS
from bmbench.splits.store import load_split, split_for_dataset


def class_table() -> dict[str, Any]:
    """The 21 classes (index, code, name) with per data set the images per class of its published split."""
    datasets: list[dict[str, Any]] = []
    for dataset in DATASETS.values():
        split = load_split(split_for_dataset(dataset.id).name)
        counts = np.bincount(split.labels.astype(np.int64), minlength=NUM_CLASSES).tolist()
        datasets.append({"id": dataset.id, "title": dataset.title, "synthetic": dataset.synthetic,
                         "split": split.name, "total": int(sum(counts)), "counts": counts,
                         "expected_counts": list(dataset.counts), "matches_expected": counts == list(dataset.counts)})
    classes = [{"index": c.index, "code": c.code, "name": c.name,
                "images": {d["id"]: d["counts"][c.index] for d in datasets}} for c in cell_classes()]
    return {"schema_version": 1, "classes": classes,
            "datasets": [{k: v for k, v in d.items() if k not in ("counts", "expected_counts")} for d in datasets]}
