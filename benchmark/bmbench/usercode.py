"""Running a submission's own code (``model.py``) so that its failures are reported as *its* failures.

An import error, a syntax error, an exception raised in ``build_model``, and even ``SystemExit`` or
``KeyboardInterrupt`` raised by the user's code become one :class:`~bmbench.errors.UserCodeError`
(exit 2) naming the file and line, with a short traceback of the user's own frames only -- never a raw
bmbench traceback, and never a silent exit 0 that wrote nothing.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, TypeVar

from bmbench.errors import UserCodeError

T = TypeVar("T")
MAX_FRAMES = 6
"""How many of the user's frames the message shows (the innermost ones)."""


def _same_file(a: str, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _user_frames(path: Path, tb: TracebackType | None) -> list[str]:
    """The frames of ``tb`` that lie in ``path`` (the submission's file), formatted like Python does."""
    frames = [f for f in traceback.extract_tb(tb) if _same_file(f.filename, path)]
    shown = [f'  File "{f.filename}", line {f.lineno}, in {f.name}' + (f"\n    {f.line.strip()}" if f.line else "")
             for f in frames[-MAX_FRAMES:]]
    if len(frames) > MAX_FRAMES:
        shown.insert(0, f"  ... {len(frames) - MAX_FRAMES} earlier frame(s)")
    return shown


def _describe(err: BaseException) -> str:
    if isinstance(err, SystemExit):
        return f"SystemExit({err.code!r}): model.py must not exit; return the model instead"
    if isinstance(err, KeyboardInterrupt):
        return "KeyboardInterrupt (raised by the code, or Ctrl-C while it ran)"
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__


def _failure(path: Path, doing: str, err: BaseException) -> UserCodeError:
    """The error for ``err`` raised while ``doing`` the user's file ``path``."""
    if isinstance(err, SyntaxError) and err.filename and _same_file(err.filename, path):
        where = f"{path}, line {err.lineno}"
        text = f"\n    {err.text.rstrip()}" if err.text else ""
        return UserCodeError(f"{where}: syntax error while {doing}: {err.msg}{text}\nFix the syntax in {path.name}.")
    frames = _user_frames(path, err.__traceback__)
    line = ""
    if frames:
        last = [f for f in traceback.extract_tb(err.__traceback__) if _same_file(f.filename, path)][-1]
        line = f", line {last.lineno}"
    shown = ("\nTraceback (your code only):\n" + "\n".join(frames)) if frames else ""
    return UserCodeError(f"{path}{line}: the submission's code failed while {doing}: {_describe(err)}{shown}\n"
                         f"Fix {path.name} (run it on its own to debug; bmbench --debug shows the full traceback).")


def import_file(path: str | os.PathLike[str], module_name: str) -> ModuleType:
    """Import the user's ``path`` as ``module_name``; any failure is a :class:`UserCodeError`."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserCodeError(f"{path}: cannot be imported as Python code; it must be a .py file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except BaseException as err:  # noqa: BLE001 - user code: SystemExit/KeyboardInterrupt must not pass either
        sys.modules.pop(module_name, None)
        raise _failure(path, "importing it", err) from err
    return module


def call(path: str | os.PathLike[str], name: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call the user's ``func`` (defined in ``path`` as ``name``); any failure is a :class:`UserCodeError`."""
    try:
        return func(*args, **kwargs)
    except BaseException as err:  # noqa: BLE001 - see import_file
        raise _failure(Path(path), f"running {name}()", err) from err
