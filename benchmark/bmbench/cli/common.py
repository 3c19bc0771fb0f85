"""Shared CLI plumbing: the exit-code policy, consoles, progress bars, and the ``--json PATH|-`` and
``--folds 0,3`` conventions that every command shares (one way to do each thing).

:func:`user_errors` wraps every command: a :class:`BmbenchError` prints its message (exit 2 for invalid
input, 1 for a :class:`~bmbench.errors.RunFailure`), Ctrl-C exits 130 with one line, a planned stop
(:class:`~bmbench.errors.StopRequested`) prints ``stopped: ...`` and exits 130, and any other
exception is one line "bmbench crashed: ..." with exit 1. ``--debug`` or ``BMBENCH_DEBUG=1`` adds the
traceback for bug reports.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from bmbench.errors import EXIT_INTERRUPTED, EXIT_RUN_FAILED, BmbenchError, StopRequested

F = TypeVar("F", bound=Callable[..., Any])

console = Console()
err_console = Console(stderr=True)


DEBUG_ENV = "BMBENCH_DEBUG"
_debug = False
DEBUG_HINT = f"rerun with --debug / {DEBUG_ENV}=1 for the traceback"


def set_debug(on: bool) -> None:
    """Switch traceback printing on (the global ``--debug`` flag)."""
    global _debug
    _debug = on


def debug_enabled() -> bool:
    """Whether tracebacks are shown: ``--debug`` was given or ``BMBENCH_DEBUG`` is set to a true value."""
    return _debug or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _traceback() -> None:
    import traceback

    traceback.print_exc()


def user_errors(func: F) -> F:
    """Apply the exit-code policy: a message on stderr and the policy's exit status, with no traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except StopRequested as stop:  # planned (SIGUSR1 at an epoch boundary): not an error
            err_console.print(f"stopped: {stop.message}", highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(stop.exit_code) from None
        except BmbenchError as err:
            if debug_enabled():
                _traceback()
            err_console.print(Text.assemble(("error:", "bold red"), " ", err.message), highlight=False, soft_wrap=True)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            if debug_enabled():
                _traceback()
            err_console.print("interrupted; finished results are kept (a run continues with --resume)",
                              highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort, click_exceptions()):
            raise
        except Exception as err:  # a bug or an unforeseen failure: one line, exit 1
            from bmbench.extras import missing_extra_error  # an optional dependency: name the extra (exit 2)

            extra_err = missing_extra_error(err) if isinstance(err, ModuleNotFoundError) else None
            if extra_err is not None:
                err_console.print(Text.assemble(("error:", "bold red"), " ", extra_err.message), highlight=False)
                raise typer.Exit(extra_err.exit_code) from None
            if debug_enabled():
                _traceback()
            first = (str(err).strip().splitlines() or [""])[0][:300]
            err_console.print(f"bmbench crashed: {type(err).__name__}: {first} ({DEBUG_HINT})",
                              highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(EXIT_RUN_FAILED) from None

    return wrapper  # type: ignore[return-value]


def click_exceptions() -> type[BaseException]:
    """Click's own usage/exit exceptions, which must reach Click unchanged (usage errors exit 2)."""
    import click

    return click.exceptions.ClickException


# --- one convention for JSON output and fold selections, shared by every command ---------------------------

STDOUT = "-"
"""``--json -``: the JSON document goes to stdout, alone; human output goes to stderr."""


def json_option(what: str) -> Any:
    """The ``--json PATH|-`` option of every command that writes a JSON document."""
    return typer.Option(None, "--json", metavar="PATH|-", help=f"{what} PATH, or - for stdout (then stdout holds "
                        "only the JSON; tables and messages go to stderr).")


def json_to_stdout(json_out: Path | None) -> bool:
    """Whether ``--json -`` was given."""
    return json_out is not None and str(json_out) == STDOUT


def check_json_out(json_out: Path | None) -> None:
    """Refuse an unusable ``--json`` path before any work starts (``-`` is always usable)."""
    if json_out is not None and not json_to_stdout(json_out):
        from bmbench.safe_io import check_output_path

        check_output_path(json_out, what="--json")


def human_console(json_out: Path | None) -> Console:
    """Where tables and messages go: stderr under ``--json -`` (stdout carries the JSON), else stdout."""
    return err_console if json_to_stdout(json_out) else console


def emit_json(json_out: Path | None, doc: Any) -> None:
    """Write ``doc`` to the ``--json`` target: stdout for ``-``, else atomically with a "wrote PATH" line;
    nothing when the option was not given."""
    if json_out is None:
        return
    if hasattr(doc, "model_dump"):  # a record model (bmbench.records): its JSON form
        doc = doc.model_dump(mode="json")
    if json_to_stdout(json_out):
        sys.stdout.write(json.dumps(doc, indent=2, allow_nan=False) + "\n")
        sys.stdout.flush()
        return
    from bmbench import atomic

    atomic.write_json(json_out, doc)
    console.print(f"wrote {json_out}", highlight=False, markup=False, soft_wrap=True)


FOLDS_HELP = "e.g. 0,3 or 3 (comma-separated fold numbers)"


def folds_option(what: str) -> Any:
    """The ``--folds 0,3`` option of every command that selects folds."""
    return typer.Option(None, "--folds", metavar="K[,K...]", help=f"{what} ({FOLDS_HELP}).")


def deprecated_fold_option() -> Any:
    """The hidden ``--fold K`` alias kept for old scripts (warns; use ``--folds K``)."""
    return typer.Option(None, "--fold", min=0, hidden=True, help="Deprecated alias of --folds K.")


def parse_folds(folds: str | None, deprecated_fold: int | None = None, *, split: Any = None) -> tuple[int, ...] | None:
    """``--folds 0,3`` as a sorted tuple (None when not given); ``--fold K`` (deprecated) as ``(K,)``.

    With ``split`` (a split or its spec) every fold is checked against it here, before a command does any
    work (:func:`bmbench.splits.store.check_folds`: exit 2 naming the fold and the range)."""
    parsed = _parse_folds(folds, deprecated_fold)
    if parsed is not None and split is not None:
        from bmbench.splits.store import check_folds

        check_folds(parsed, split)
    return parsed


def _parse_folds(folds: str | None, deprecated_fold: int | None) -> tuple[int, ...] | None:
    from bmbench.errors import BmbenchError

    if deprecated_fold is not None:
        if folds is not None:
            raise BmbenchError("give --folds only (--fold is its deprecated single-fold alias)")
        err_console.print("warning: --fold is deprecated; use --folds " + str(deprecated_fold),
                          style="yellow", highlight=False)
        return (deprecated_fold,)
    if folds is None:
        return None
    try:
        parsed = tuple(sorted({int(f) for f in folds.split(",") if f.strip()}))
    except ValueError:
        raise BmbenchError(f"--folds takes fold numbers separated by commas (e.g. 0,3), not {folds!r}") from None
    if not parsed or min(parsed) < 0:
        raise BmbenchError(f"--folds takes fold numbers >= 0 separated by commas (e.g. 0,3), not {folds!r}")
    return parsed


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar; yields ``advance(k)`` for library functions that report progress."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console, transient=True,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda k: progress.advance(task, k)
