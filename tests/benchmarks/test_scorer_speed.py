"""Scorer speed on the full BM split: 171,374 rows with all 21 probability columns.

The target is that validating and scoring cost about one ``pandas.read_csv`` of the same file. Run with
``make bench`` to record timings (pytest-benchmark); in ``make test`` it runs once as a plain test.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from bench_files import full_predictions_file

from bmbench.scoring.score import score_file
from bmbench.splits.store import Split

MAX_RATIO = 10.0
"""Generous bound for a loaded 2-core CI machine; measured ratios are in docs/performance.md."""


@pytest.fixture(scope="module")
def full_predictions(tmp_path_factory: pytest.TempPathFactory, bm_split: Split) -> Path:
    return full_predictions_file(tmp_path_factory, bm_split)


def _best_of(n: int, func, clock=time.perf_counter) -> float:
    times = []
    for _ in range(n):
        start = clock()
        func()
        times.append(clock() - start)
    return min(times)


def test_score_full_file_costs_about_one_read_csv(full_predictions: Path, bm_split: Split, benchmark) -> None:
    """Wall time against read_csv (asserted), and CPU time per step (printed: stabler on a shared machine)."""
    from bmbench.scoring.predictions import read_predictions
    from bmbench.scoring.score import probabilities_by_fold

    read = _best_of(3, lambda: pd.read_csv(full_predictions))
    score = _best_of(3, lambda: score_file(full_predictions, "bm-cv5-v1"))
    benchmark.extra_info.update({"read_csv_s": read, "score_s": score, "ratio": score / read})
    result = benchmark.pedantic(score_file, args=(full_predictions, "bm-cv5-v1"), rounds=1, iterations=1)
    assert result["predictions"]["rows"] == 171_374
    print(f"\nwall: read_csv {read:.3f} s, validate+score {score:.3f} s, ratio {score / read:.2f}")
    cpu = time.process_time
    preds = read_predictions(full_predictions, bm_split)
    steps = {"read_csv": _best_of(3, lambda: pd.read_csv(full_predictions), cpu),
             "read_predictions": _best_of(3, lambda: read_predictions(full_predictions, bm_split), cpu),
             "probability metrics": _best_of(3, lambda: probabilities_by_fold(preds, bm_split), cpu),
             "score_file": _best_of(3, lambda: score_file(full_predictions, "bm-cv5-v1"), cpu)}
    print("CPU: " + ", ".join(f"{k} {v:.3f} s" for k, v in steps.items())
          + f", ratio {steps['score_file'] / steps['read_csv']:.2f}")
    assert score / read < MAX_RATIO
