"""Training progress in logs (plain lines, rate and ETA) and the planned stop at an epoch boundary (SIGUSR1)."""

from __future__ import annotations

import dataclasses
import io
import shlex
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from bmbench.cli.main import app
from bmbench.cli.progress_lines import EpochBoundaryStop, PlainLoopProgress, StopAtEpochBoundary
from bmbench.errors import EXIT_INTERRUPTED, StopRequested


class Clock:
    """A hand-wound clock: each test says how many seconds pass."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_plain_rate_counts_the_images_done_not_the_last_batch_times_steps() -> None:
    clock, out = Clock(5.0), io.StringIO()
    progress = PlainLoopProgress(every=2, stream=out, clock=clock)
    progress.epoch_start(fold=0, epoch=0, epochs=1, steps=3)
    for images in (100, 100, 10):  # the last batch of the epoch is ragged
        clock.now += 1.0
        progress.step(images)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("fold 0 epoch 1/1 step 2/3 | 100 img/s")  # 200 images in 2 s
    assert lines[1].startswith("fold 0 epoch 1/1 step 3/3 | 70 img/s")  # 210 images in 3 s, not 3 x 10 / 3


def test_rich_rate_counts_the_images_done() -> None:
    from bmbench.cli.run_cmd import RichLoopProgress

    with RichLoopProgress() as progress:
        progress.epoch_start(0, 0, 1, 3)
        for images in (100, 100, 10):
            progress.step(images)
    assert progress.images == 210


def _record(epoch: int = 1, fold: int = 2) -> SimpleNamespace:
    return SimpleNamespace(epoch=epoch, fold=fold, best=False, train_loss=1.0, val_loss=1.0, train_accuracy=0.5,
                           val_accuracy=0.5, lr=0.1, images_per_s=10.0, seconds=1.0)


def test_the_stop_is_raised_after_the_epoch_and_names_the_resume_command() -> None:
    inner = PlainLoopProgress(stream=io.StringIO())
    with StopAtEpochBoundary(inner, resume="bmbench run demo_cnn --folds 2 --resume") as progress:
        progress.epoch_start(2, 1, 3, 1)
        progress.epoch_end(_record())  # no signal yet: nothing happens
        signal.raise_signal(signal.SIGUSR1)
        with pytest.raises(EpochBoundaryStop) as stop:
            progress.epoch_end(_record())
    assert isinstance(stop.value, StopRequested) and stop.value.exit_code == EXIT_INTERRUPTED
    assert stop.value.message.startswith("after epoch 2 of fold 2")
    assert "bmbench run demo_cnn --folds 2 --resume" in stop.value.message
    assert signal.getsignal(signal.SIGUSR1) is not progress._handler  # the previous handler is back


def test_usr1_stop_of_bmbench_run_is_no_error_exits_130_and_names_a_command_that_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI path of `bmbench grid --slurm`'s time-limit warning, without a cluster (tests/test_slurm.py runs
    the real one): the stop line's command, parsed by the CLI again, asks for the same run with --resume."""
    from bmbench.runs import run as run_module

    seen: list[object] = []

    def one_epoch_then_usr1(loaded: object, options: object, progress: object = None, **_: object) -> None:
        seen.append(options)
        if len(seen) == 1:  # what the batch script passes on from SLURM, during fold 1's first epoch
            progress.epoch_start(1, 0, 2, 1)  # type: ignore[attr-defined]
            progress.step(8)  # type: ignore[attr-defined]
            signal.raise_signal(signal.SIGUSR1)
            progress.epoch_end(_record(epoch=0, fold=1))  # type: ignore[attr-defined]
        return None  # None: nothing to summarise (as on a non-zero torchrun rank)

    monkeypatch.setattr(run_module, "run_submission", one_epoch_then_usr1)
    out = tmp_path / "runs with space"
    result = CliRunner().invoke(app, ["run", "demo_cnn", "--data", "synthetic", "--folds", "1,3", "--out", str(out),
                                      "--epochs", "2", "--max-steps", "1", "--seed", "7"])
    assert result.exit_code == 130, result.output
    assert "error" not in result.output and "Traceback" not in result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("stopped: ")]
    assert line.startswith("stopped: after epoch 1 of fold 1 on request (SIGUSR1); its checkpoint is saved")
    resume = shlex.split(line.split("resume with: ", 1)[1])
    assert resume[:3] == ["bmbench", "run", "demo_cnn"] and resume[-1] == "--resume"
    again = CliRunner().invoke(app, resume[1:])
    assert again.exit_code == 0, again.output
    first, second = seen
    assert second == dataclasses.replace(first, resume=True)  # type: ignore[type-var]
