"""Shared CLI plumbing: the exit-code policy, consoles and progress bars.

:func:`user_errors` wraps every command: a :class:`BmbenchError` prints its message (exit 2 for invalid
input, 1 for a :class:`~bmbench.errors.RunFailure`), Ctrl-C exits 130 with one line, and any other
exception is one line "bmbench crashed: ..." with exit 1. ``--debug`` or ``BMBENCH_DEBUG=1`` adds the
traceback for bug reports.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from bmbench.errors import EXIT_INTERRUPTED, EXIT_RUN_FAILED, BmbenchError

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
