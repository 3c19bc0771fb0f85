"""The checks every record reader applies: the file exists, is UTF-8 JSON, and fits its model.

Each failure is a :class:`~bmbench.errors.BmbenchError` with exit status 2 naming the file, the key and the
fix, so ``bmbench`` prints one line instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from bmbench import atomic, safe_io
from bmbench.errors import BmbenchError, validation_messages

M = TypeVar("M", bound=BaseModel)
INVALID = 2
SHA256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
"""A lower-case hex SHA-256 digest."""
BMBENCH_ONLY = ConfigDict(extra="forbid", allow_inf_nan=False)
"""The configuration of a record only bmbench writes: unknown keys and non-finite numbers are refused."""


def load_json(path: Path, *, what: str, fix: str) -> Any:
    """The parsed JSON of ``path``; ``what`` names the document, ``fix`` says what to do if it is unusable.

    Reading goes through :mod:`bmbench.safe_io` (regular file, size and depth limits, UTF-8).
    """
    path = Path(path)
    if not path.is_file():
        raise BmbenchError(f"{path}: the {what} is missing; {fix}", exit_code=INVALID)
    try:
        return safe_io.read_json(path, what=what)
    except BmbenchError as err:
        raise BmbenchError(f"{err.message}\n{fix}", exit_code=INVALID) from None


def validate(model: type[M], raw: Any, path: Path, *, what: str, fix: str) -> M:
    """``raw`` as ``model``, or an error listing every bad key of ``path``."""
    if not isinstance(raw, dict):
        raise BmbenchError(f"{path}: the {what} must be a JSON object, not {type(raw).__name__}; {fix}",
                           exit_code=INVALID)
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        lines = [f"  {key}: {message}" for key, message in validation_messages(err, f"{model.__module__}")]
        raise BmbenchError(f"{path}: invalid {what}:\n" + "\n".join(lines) + f"\n{fix}", exit_code=INVALID) \
            from None


def read_model(model: type[M], path: Path, *, what: str, fix: str) -> M:
    """Read ``path`` and validate it as ``model`` (every check of :func:`load_json` and :func:`validate`)."""
    return validate(model, load_json(path, what=what, fix=fix), Path(path), what=what, fix=fix)


def write_model(path: Path, record: BaseModel) -> None:
    """Write ``record`` as indented JSON, atomically (unset optional fields included, as ``null``)."""
    atomic.write_json(path, record.model_dump(mode="json"))
