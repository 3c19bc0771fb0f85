"""User-facing errors.

Every mistake a user can make (a wrong path, a malformed predictions file, a tampered split) raises
:class:`BmbenchError`. The CLI prints its message without a traceback and exits with ``exit_code``;
library callers and tests catch it like any exception. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations

from typing import Any


class BmbenchError(Exception):
    """An error caused by input or environment, with a message that says what to do about it."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


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
