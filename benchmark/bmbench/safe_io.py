"""Reading untrusted input files safely, and checking output paths before any work starts.

Every file a user hands bmbench (a predictions CSV, ``submission.toml``, an entry or a run record) is
opened as a *regular file only*: FIFOs (which would block forever), devices (``/dev/zero`` never ends),
sockets and folders are refused, symlinks are followed with loop detection, and a size limit per kind
of file refuses inputs far larger than any valid one before they fill memory. JSON is read with a depth
bound and bounded numbers (no ``NaN``/``Infinity``, no integers that overflow later), and text that is
not UTF-8 is named with its file, line and byte offset. Every refusal is an :class:`UnsafeInputError`
(a :class:`~bmbench.errors.BmbenchError`, exit status 2) whose message names the file and the fix.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

from bmbench.errors import BmbenchError

MiB = 1024 * 1024
MAX_BYTES: dict[str, int] = {
    "predictions": 1024 * MiB,  # the full BM split with 21 probability columns is about 60 MiB
    "json": 64 * MiB,           # run records, entries, score files: a few hundred KiB at most
    "toml": 1 * MiB,            # submission.toml: a few KiB
    "text": 64 * MiB,
}
"""Largest accepted input per kind of file: far beyond any valid one, small enough to read into memory."""
MAX_JSON_DEPTH = 64
"""Deepest accepted JSON nesting; bmbench's own files nest at most 6 levels."""
MAX_JSON_INT_DIGITS = 19
"""Longest accepted JSON integer; its value must also fit int64 (larger values overflow numpy and SQLite
later). 19 digits: file modification times in nanoseconds (``st_mtime_ns``, about 1.8e18) are recorded."""
INT64 = range(-(2**63), 2**63)


class UnsafeInputError(BmbenchError):
    """An input file that is not a readable regular file of plausible size, or not well-formed text/JSON."""

    exit_code = 2


def _refuse(path: Path, what: str, problem: str, fix: str) -> UnsafeInputError:
    return UnsafeInputError(f"{path}: {problem} (reading the {what}); {fix}")


def _kind_of(mode: int) -> str | None:
    """The name of a non-regular file type, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _os_error(path: Path, what: str, err: OSError) -> UnsafeInputError:
    if err.errno == errno.ENOENT:
        return _refuse(path, what, "no such file", "check the path")
    if err.errno == errno.ELOOP:
        return _refuse(path, what, "symlink loop (a link that points back to itself)", "point it at a real file")
    if err.errno in (errno.EACCES, errno.EPERM):
        return _refuse(path, what, "permission denied", "make it readable (chmod u+r) or copy it somewhere readable")
    if err.errno == errno.ENOTDIR:
        return _refuse(path, what, "a part of the path is a file, not a folder", "check the path")
    if err.errno == errno.ENAMETOOLONG:
        return _refuse(path, what, "the path is too long", "use a shorter path")
    return _refuse(path, what, f"cannot be read ({err.strerror or err})", "check the file")


def read_bytes(path: str | os.PathLike[str], *, what: str = "input file", kind: str = "text",
               max_bytes: int | None = None) -> bytes:
    """The content of ``path``, read only if it is a regular file no larger than the limit for ``kind``.

    The file is opened non-blocking (so a FIFO cannot hang the open) and checked with ``fstat`` on the
    opened descriptor (so a file swapped after a check cannot slip through); at most ``limit + 1`` bytes
    are read, so a file that grows while being read is refused too.
    """
    path = Path(path)
    limit = MAX_BYTES.get(kind, MAX_BYTES["text"]) if max_bytes is None else max_bytes
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise _os_error(path, what, err) from None
    try:
        info = os.fstat(fd)
        other = _kind_of(info.st_mode)
        if other is not None:
            fix = "pass the file inside it" if other == "a folder" else "pass a regular file"
            raise _refuse(path, what, f"is {other}, not a regular file", fix)
        if info.st_size > limit:
            raise _too_large(path, what, info.st_size, limit)
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        total = 0
        want = info.st_size + 1  # the whole file in one read (no join copy), then until EOF if it grew
        while True:
            chunk = os.read(fd, min(max(want, MiB), limit + 1 - total))
            want = 8 * MiB
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise _too_large(path, what, total, limit)
    except OSError as err:
        raise _os_error(path, what, err) from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def _too_large(path: Path, what: str, size: int, limit: int) -> UnsafeInputError:
    return _refuse(path, what, f"is {size:,} bytes or more, larger than any valid one (limit {limit:,} bytes)",
                   "check that this is the right file")


def decode_utf8(path: str | os.PathLike[str], data: bytes, *, what: str = "input file") -> str:
    """``data`` decoded as UTF-8 (a BOM dropped); an error names the file, line and byte offset."""
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as err:
        raise utf8_error(path, data, bom + err.start, what=what) from None


def utf8_error(path: str | os.PathLike[str], data: bytes, offset: int, *, what: str = "input file") -> UnsafeInputError:
    """The error for invalid UTF-8 at byte ``offset`` of ``data``: names the file, line and offset."""
    line = data[:offset].count(b"\n") + 1
    return _refuse(Path(path), what, f"line {line} (byte offset {offset}) is not valid UTF-8 "
                   f"(byte 0x{data[offset]:02x})", "save the file as UTF-8")


def read_text(path: str | os.PathLike[str], *, what: str = "input file", kind: str = "text",
              max_bytes: int | None = None) -> str:
    """The UTF-8 text of a regular file (see :func:`read_bytes`, :func:`decode_utf8`)."""
    return decode_utf8(path, read_bytes(path, what=what, kind=kind, max_bytes=max_bytes), what=what)


def _parse_int(text: str) -> int:
    value = int(text) if len(text.lstrip("-")) <= MAX_JSON_INT_DIGITS else None
    if value is None or value not in INT64:
        raise ValueError(f"the integer {text[:24]}{'...' if len(text) > 24 else ''} is too large "
                         "(beyond 64-bit integers)")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:24]} is too large to be a finite float")
    return value


def _parse_constant(text: str) -> float:
    raise ValueError(f"{text} is not valid JSON (numbers must be finite)")


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a decoded JSON value, stopping once ``limit`` is exceeded (iterative)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def loads_json(text: str, *, path: str | os.PathLike[str], what: str = "JSON file",
               max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON text with bounded depth and numbers; any problem is an :class:`UnsafeInputError`."""
    where = Path(path)
    fix = "the file is damaged or was edited by hand; restore or regenerate it"
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except RecursionError:
        raise _refuse(where, what, f"JSON nested deeper than {max_depth} levels", fix) from None
    except json.JSONDecodeError as err:
        raise _refuse(where, what, f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}", fix) \
            from None
    except ValueError as err:
        raise _refuse(where, what, f"not acceptable JSON: {err}", fix) from None
    if _depth(value, max_depth) > max_depth:
        raise _refuse(where, what, f"JSON nested deeper than {max_depth} levels", fix)
    return value


def read_json(path: str | os.PathLike[str], *, what: str = "JSON file", max_bytes: int | None = None,
              max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Read a JSON file safely: regular file, size-limited, UTF-8, depth- and number-bounded.

    ``what`` names the file's role in messages (e.g. ``"run record run.json"``). Raises
    :class:`UnsafeInputError` (exit 2) naming the file and the fix.
    """
    text = read_text(path, what=what, kind="json", max_bytes=max_bytes)
    return loads_json(text, path=path, what=what, max_depth=max_depth)


def read_toml(path: str | os.PathLike[str], *, what: str = "TOML file", max_bytes: int | None = None) -> dict[str, Any]:
    """Read a TOML file safely (regular file, size-limited, UTF-8); syntax errors name the file."""
    import tomllib

    text = read_text(path, what=what, kind="toml", max_bytes=max_bytes)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise _refuse(Path(path), what, f"not valid TOML: {err}", "fix the syntax at the position named") from None
    except RecursionError:
        raise _refuse(Path(path), what, "TOML nested too deeply", "flatten the tables") from None


class OutputPathError(BmbenchError):
    """An output path that cannot be written: checked before any work starts (exit 2)."""

    exit_code = 2


def _writable_folder(folder: Path) -> bool:
    """Whether a file can be created in ``folder``: tried for real (``os.access`` says yes to root)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    probe = folder / f".bmbench-write-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return True
    except OSError:
        return False
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass
    return True


def _first_existing(path: Path) -> Path:
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    return probe


def check_output_path(path: str | os.PathLike[str], *, what: str, folder: bool = False) -> Path:
    """Refuse an output path that could not be written, before any work starts; return it.

    For a file (``folder=False``): the target must not be a folder, and its nearest existing ancestor
    must be a writable folder (not a file). For a folder: the target must not be a file, and the same
    holds for the nearest existing ancestor. ``what`` names the option (``"--json"``) in the message.
    Missing parents are fine: writers create them.
    """
    target = Path(path)
    shown = f"{what} {target}"
    if os.path.lexists(target):
        try:
            is_dir = target.is_dir()
        except OSError as err:
            raise OutputPathError(f"{shown}: cannot be used ({err.strerror or err}); pass another path") from None
        if not is_dir and os.path.islink(target) and not target.exists():
            raise OutputPathError(f"{shown}: is a broken symlink; remove it or pass another path")
        if folder and not is_dir:
            raise OutputPathError(f"{shown}: is a file, not a folder; pass a folder (or remove the file)")
        if not folder and is_dir:
            raise OutputPathError(f"{shown}: is a folder; pass a file path inside it (e.g. {target / 'out.json'})")
        if is_dir:
            if not _writable_folder(target):
                raise OutputPathError(f"{shown}: the folder is not writable; make it writable or pass another path")
            return target
    ancestor = _first_existing(target.parent)
    if not ancestor.is_dir():
        raise OutputPathError(f"{shown}: {ancestor} is a file, so nothing can be created under it; "
                              "pass a path in a folder")
    if not _writable_folder(ancestor):
        raise OutputPathError(f"{shown}: the folder {ancestor} is not writable; make it writable or pass another path")
    return target


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, streamed in 1 MiB blocks: the one hash of weights and checkpoint files."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
