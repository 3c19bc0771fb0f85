"""The full-size predictions file of the scorer benchmarks: 171,374 rows of ``bm-cv5-v1``, all 21 probabilities.

Shared by test_scorer_speed.py (library calls) and test_startup_speed.py (whole processes); written once per
test session (37 MB).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bmbench.classes import CLASS_CODES, NUM_CLASSES
from bmbench.splits.store import Split


def write_full_predictions(path: Path, split: Split) -> Path:
    """A valid predictions file for every test image of ``split``: 80 % correct, Dirichlet probabilities."""
    rng = np.random.default_rng(0)
    n = len(split.image_ids)
    probs = rng.dirichlet(np.ones(NUM_CLASSES), size=n).astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    pred = np.where(rng.random(n) < 0.8, split.labels, probs.argmax(axis=1))
    frame = pd.DataFrame({"image_id": split.image_ids, "fold": split.test_fold, "pred": np.array(CLASS_CODES)[pred]})
    frame[[f"p_{c}" for c in CLASS_CODES]] = probs
    frame.to_csv(path, index=False, float_format="%.6f")
    return path


def full_predictions_file(tmp_path_factory: pytest.TempPathFactory, split: Split) -> Path:
    """The session's copy of the file (written on first use)."""
    path = tmp_path_factory.getbasetemp() / "bench-full-predictions.csv"
    return path if path.is_file() else write_full_predictions(path, split)
