"""One fold on several processes (torchrun + DDP, gloo on CPU) and the distributed class-balanced sampler."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bmbench.errors import BmbenchError
from bmbench.scoring.score import score_file
from bmbench.submissions.registry import default_submissions_dir
from bmbench.datapaths.sampling import ShardSampler, epoch_draws, per_process_batch


def test_shards_partition_the_global_draws() -> None:
    weights = torch.tensor([1.0, 1.0, 8.0, 0.5] * 25, dtype=torch.double)
    order = epoch_draws(weights, 101, torch.Generator().manual_seed(3))
    shards = [list(ShardSampler(order, rank, 4)) for rank in range(4)]
    assert {len(s) for s in shards} == {26}  # 101 padded to 104, split evenly
    interleaved = [shards[i % 4][i // 4] for i in range(104)]
    assert interleaved[:101] == order.tolist()
    assert list(ShardSampler(order)) == order.tolist()  # one process: the whole epoch


def test_the_global_batch_must_split_evenly() -> None:
    assert per_process_batch(32, 4) == 8
    with pytest.raises(BmbenchError, match="not divisible"):
        per_process_batch(32, 3)


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path: Path) -> None:
    sub = tmp_path / "subs" / "demo_cnn"
    shutil.copytree(default_submissions_dir() / "demo_cnn", sub)
    (sub / "submission.toml").write_text((sub / "submission.toml").read_text().replace("num_workers = 2",
                                                                                    "num_workers = 0"))
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "bmbench.cli.main", "run", str(sub), "--data", "synthetic", "--folds", "1", "--epochs", "2",
           "--max-steps", "3", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = out / "demo_cnn" / "synthetic"
    fold = json.loads((run_dir / "fold1" / "fold.json").read_text())
    assert fold["processes"] == 2 and fold["epochs_run"] == 2
    history = [json.loads(x) for x in (run_dir / "fold1" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2  # written once (rank 0), not once per process
    assert score_file(run_dir / "predictions.csv", "synthetic-cv5-v1")["folds"] == [1]
