"""User-facing errors and the one exit-code policy.

Exit status of every ``bmbench`` command:

* ``0`` success;
* ``1`` a failure of the run itself (:class:`RunFailure`: training diverged, a fold crashed, the GPU ran
  out of memory) -- the input was acceptable, the work did not succeed;
* ``2`` invalid input or usage (:class:`BmbenchError`, the default): every refusal of a file, key, value
  or argument, in every command; the message names the file (line or key) and the fix;
* ``130`` interrupted: Ctrl-C, or a planned stop (:class:`StopRequested`, e.g. SIGUSR1 at an epoch boundary),
  which prints ``stopped: ...`` with the command that resumes, not an error.

Every mistake a user can make (a wrong path, a malformed predictions file, a tampered split) raises
:class:`BmbenchError`. The CLI prints its message without a traceback and exits with ``exit_code``;
library callers and tests catch it like any exception. Programming errors stay ordinary exceptions (the
CLI reports them as a one-line crash, exit 1; ``--debug`` shows the traceback).
"""

from __future__ import annotations

from typing import Any


EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_INVALID_INPUT = 2
EXIT_INTERRUPTED = 130


class BmbenchError(Exception):
    """A refusal of input (file, key, value, argument), with a message that says what to do about it.

    Exit status 2 unless a subclass (:class:`RunFailure`) or ``exit_code=`` says otherwise.
    """

    exit_code: int = EXIT_INVALID_INPUT

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


class RunFailure(BmbenchError):
    """The input was valid but the work itself failed (a fold crashed, training diverged): exit status 1."""

    exit_code = EXIT_RUN_FAILED


class StopRequested(BmbenchError):
    """A stop the user (or SLURM's time-limit warning) asked for, not a failure: the CLI prints
    ``stopped: <message>`` (no ``error:``) and exits 130, so a batch script can requeue and resume."""

    exit_code = EXIT_INTERRUPTED


class UserCodeError(BmbenchError):
    """A submission's own code (``model.py``) failed: reported at its file and line, exit status 2."""

    exit_code = EXIT_INVALID_INPUT


class DataNotFoundError(BmbenchError):
    """The image data is missing or not where the user pointed."""


class SplitIntegrityError(BmbenchError):
    """A split file is missing or its SHA-256 does not match ``splits/SHA256SUMS`` (invalid input: exit 2)."""

    exit_code = 2


class PredictionsError(BmbenchError):
    """A predictions file failed validation; exit status 2 as for any invalid input to the scorer."""

    exit_code = 2


def validation_messages(err: Any, schema: str) -> list[tuple[str, str]]:
    """(dotted key, message) pairs for a pydantic ``ValidationError``, in words a user can act on.

    ``schema`` names where the valid keys are documented (used for unknown keys). Duck-typed, so this
    module does not import pydantic.
    """
    out: list[tuple[str, str]] = []
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = f"unknown key; check its spelling against {schema}"
        elif item["type"] == "missing":
            message = "required key is missing"
        out.append((key, message))
    return out
