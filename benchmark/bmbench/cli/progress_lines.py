"""Training progress for logs and batch jobs: plain lines instead of bars, and a stop at an epoch boundary.

Why: a SLURM log or ``| tee`` gets thousands of redrawn Rich bars. When stdout is not a terminal,
:class:`PlainLoopProgress` prints one line every ``every`` steps with the rate and an ETA over the whole
run (every selected fold, every epoch). :class:`StopAtEpochBoundary` wraps any loop progress: after
SIGUSR1 (SLURM's ``--signal=B:USR1@120`` time-limit warning, passed on by the grid script) the run stops
right after the epoch in progress, whose checkpoint is already written: a planned stop, not an error,
so the CLI prints ``stopped: ...`` with the command that resumes (exit 130, which the grid script requeues).
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any, TextIO

from bmbench.errors import StopRequested

PROGRESS_EVERY = 50
"""Steps between two progress lines when stdout is not a terminal."""


class EpochBoundaryStop(StopRequested):
    """The run stopped at an epoch boundary on request (SIGUSR1); exit status 130: interrupted, resumable."""


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class PlainLoopProgress:
    """A :class:`bmbench.engine.loop.LoopProgress` printing one line per ``every`` steps (and per epoch).

    ``folds`` is the number of folds this process runs: with the epochs and steps per epoch it gives the
    whole run's step count, so the ETA covers the run, not just the epoch."""

    def __init__(self, folds: int = 1, *, every: int = PROGRESS_EVERY, stream: TextIO | None = None,
                 clock: Any = time.perf_counter) -> None:
        self.folds = max(1, folds)
        self.every = max(1, every)
        self.stream = stream if stream is not None else sys.stdout
        self.clock = clock
        self.started: float | None = None
        self.done_here = 0  # steps this process ran (ETA), not counting resumed epochs
        self.images_here = 0  # images of those steps (rate): a ragged last batch counts what it holds
        self.fold_order: list[int] = []
        self.fold = self.epoch = self.epochs = self.steps = self.step_in_epoch = 0
        self.images = 0

    def __enter__(self) -> PlainLoopProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.flush()

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def features(self, images: int) -> None:
        """Progress of the features baseline's extraction (count of images done)."""
        self.images += images

    def epoch_start(self, fold: int, epoch: int, epochs: int, steps: int) -> None:
        if self.started is None:
            self.started = self.clock()
        if fold not in self.fold_order:
            self.fold_order.append(fold)
        self.fold, self.epoch, self.epochs, self.steps, self.step_in_epoch = fold, epoch, epochs, steps, 0

    def eta(self) -> float | None:
        """Seconds left in the whole run, from this process's step rate; None before the first step."""
        if self.started is None or self.done_here == 0:
            return None
        rate = self.done_here / max(self.clock() - self.started, 1e-9)
        position = ((len(self.fold_order) - 1) * self.epochs + self.epoch) * self.steps + self.step_in_epoch
        total = max(self.folds, len(self.fold_order)) * self.epochs * self.steps
        return max(0, total - position) / rate

    def step(self, images: int) -> None:
        self.step_in_epoch += 1
        self.done_here += 1
        self.images_here += images
        if self.step_in_epoch % self.every == 0 or self.step_in_epoch == self.steps:
            elapsed = self.clock() - self.started if self.started is not None else 0.0
            rate = self.images_here / elapsed if elapsed > 0 else 0.0
            eta = self.eta()
            self._print(f"fold {self.fold} epoch {self.epoch + 1}/{self.epochs} step {self.step_in_epoch}/{self.steps}"
                        f" | {rate:,.0f} img/s | run ETA {_duration(eta) if eta is not None else '?'}")

    def epoch_end(self, record: Any) -> None:
        mark = " *" if record.best else ""
        self._print(f"fold {record.fold} ep {record.epoch + 1:>2} | loss {record.train_loss:.3f}/{record.val_loss:.3f}"
                    f" | acc {record.train_accuracy:.3f}/{record.val_accuracy:.3f}{mark} | lr {record.lr:.2g}"
                    f" | {record.images_per_s:,.0f} img/s | {record.seconds:.0f} s")


class StopAtEpochBoundary:
    """Delegates to ``inner``; once ``signum`` (SIGUSR1) arrived, raises :class:`EpochBoundaryStop` at the next
    ``epoch_end`` (after the loop wrote that epoch's checkpoint). ``resume`` is the command that continues
    the run, named in the ``stopped:`` line. Use as a context manager: the previous handler is restored on
    exit."""

    def __init__(self, inner: Any, signum: int = signal.SIGUSR1, *, resume: str | None = None) -> None:
        self.inner = inner
        self.signum = signum
        self.resume = resume
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: object) -> None:
        self.requested = True
        print("bmbench: stop requested (signal USR1): stopping at the end of this epoch", file=sys.stderr,
              flush=True)

    def __enter__(self) -> StopAtEpochBoundary:
        enter = getattr(self.inner, "__enter__", None)
        if enter is not None:
            enter()
        try:
            self._previous = signal.signal(self.signum, self._handler)
        except ValueError:  # not the main thread: no handler, the run simply cannot be stopped early
            self._previous = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(self.signum, self._previous)
        exit_ = getattr(self.inner, "__exit__", None)
        if exit_ is not None:
            exit_(*exc)

    def __getattr__(self, name: str) -> Any:  # features(), anything else the inner progress offers
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def epoch_start(self, fold: int, epoch: int, epochs: int, steps: int) -> None:
        self.inner.epoch_start(fold, epoch, epochs, steps)

    def step(self, images: int) -> None:
        self.inner.step(images)

    def epoch_end(self, record: Any) -> None:
        self.inner.epoch_end(record)
        if self.requested:
            how = f"resume with: {self.resume}" if self.resume else "run the same command with --resume to continue"
            raise EpochBoundaryStop(f"after epoch {record.epoch + 1} of fold {record.fold} on request (SIGUSR1); "
                                    f"its checkpoint is saved; {how}")


def loop_progress(folds: int, label: str | None = None, *, resume: str | None = None) -> Any:
    """Rich bars on a terminal, plain lines otherwise; either stops at an epoch boundary on SIGUSR1 (and says
    ``resume``, the command that continues)."""
    if sys.stdout.isatty():
        from bmbench.cli.run_cmd import RichLoopProgress

        return StopAtEpochBoundary(RichLoopProgress(label), resume=resume)
    return StopAtEpochBoundary(PlainLoopProgress(folds), resume=resume)
