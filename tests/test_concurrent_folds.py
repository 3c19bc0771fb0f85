"""`bmbench run --concurrent-folds N`: folds in parallel processes give exactly the sequential results."""

from __future__ import annotations

from pathlib import Path

import pytest

from bmbench.errors import BmbenchError
from bmbench.submissions.registry import resolve_submission
from bmbench.submissions.schema import load_submission
from bmbench.runs.concurrent import run_concurrent, worker_command
from bmbench.runs.run import RunOptions, run_submission


def test_worker_command(tmp_path: Path) -> None:
    options = RunOptions(out=tmp_path, device="cpu", epochs=2, max_steps=3, seed=4, lr_find_steps=7)
    cmd = worker_command(Path("subs/demo_cnn"), 3, "/data/bm", options)
    assert cmd[1:5] == ["-m", "bmbench.cli.main", "run", "subs/demo_cnn"]
    text = " ".join(cmd)
    for part in ("--folds 3", "--data /data/bm", f"--out {tmp_path}", "--device cpu", "--seed 4", "--resume",
                 "--epochs 2", "--max-steps 3", "--lr-find-steps 7"):
        assert part in text
    defaults = " ".join(worker_command(Path("subs/demo_cnn"), 0, "/data/bm", RunOptions(out=tmp_path)))
    assert not any(flag in defaults for flag in ("--device", "--seed", "--epochs", "--max-steps", "--lr-find"))


def test_refuses_baselines_and_torchrun(monkeypatch: pytest.MonkeyPatch, quick_demo: Path) -> None:
    with pytest.raises(BmbenchError, match="baselines"):
        run_concurrent(resolve_submission("baseline_majority"), RunOptions(data="synthetic"), 2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(BmbenchError, match="torchrun"):
        run_concurrent(load_submission(quick_demo), RunOptions(data="synthetic"), 2)


@pytest.mark.slow
def test_concurrent_folds_equal_a_sequential_run(quick_demo: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """One thread everywhere (``OMP_NUM_THREADS=1``, which bmbench's CPU thread rule leaves as it is): the two
    fold processes share two cores without spinning on each other (two threads each made this test several
    times slower on a loaded machine), and the sequential reference computes with the same single thread, so
    the bytes can be equal."""
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the fold processes inherit it; this process is set below
    loaded = load_submission(quick_demo)
    smoke = {"data": "synthetic", "folds": (0, 1), "epochs": 1, "max_steps": 2, "device": "cpu"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sequential = run_submission(loaded, RunOptions(out=tmp_path / "seq", **smoke))
    finally:
        torch.set_num_threads(threads)
    events: list[tuple[str, int]] = []
    concurrent = run_concurrent(loaded, RunOptions(out=tmp_path / "conc", **smoke), 2,
                                on_event=lambda kind, fold, detail: events.append((kind, fold)))
    assert sorted(events) == [("done", 0), ("done", 1), ("start", 0), ("start", 1)]
    assert concurrent.score["folds"] == [0, 1]
    for fold in (0, 1):
        same = [(run.run_dir / f"fold{fold}" / "test_predictions.csv").read_text()
                for run in (sequential, concurrent)]
        assert same[0] == same[1]
    assert (concurrent.run_dir / "logs" / "fold0.log").is_file()
    assert concurrent.run["comparable"] is False
