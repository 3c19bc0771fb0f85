"""Atomic file writes: a result file is either complete or absent, never half written.

Writers create a temporary file in the destination folder (same filesystem), flush and fsync it, then
``os.replace`` it over the target. An exception inside the block removes the temporary file. A process
killed mid-write (SIGKILL, power loss) cannot clean up, so temporary names say what they are and whose
they are -- ``.<target name>.bmbench-tmp-<pid>-<random>`` -- and :func:`remove_stale` (called when a run
starts or resumes, by ``leaderboard build`` and ``data cache``) deletes those whose process is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

TMP_MARK = ".bmbench-tmp-"
"""What every temporary file name contains: ``.<target>.bmbench-tmp-<pid>-<random>``."""
_TMP_RE = re.compile(r"^\.(?P<target>.+)\.bmbench-tmp-(?P<pid>\d+)-[0-9a-f]+$")
_LEGACY_RE = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]{8}\.tmp$")
"""Names of the former ``tempfile.mkstemp`` temporaries (no pid): removed once older than an hour."""
PAUSE_ENV = "BMBENCH_ATOMIC_PAUSE"
"""Test hook: seconds to sleep after writing a temporary file, before moving it into place (kill tests)."""


def tmp_name(target: Path) -> Path:
    """A fresh temporary sibling of ``target`` that names its kind and the writing process."""
    return target.with_name(f".{target.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def remove_stale(folder: str | os.PathLike[str], *, targets: Callable[[str], bool] | None = None,
                 recursive: bool = False) -> list[Path]:
    """Delete bmbench temporary files in ``folder`` left by writers that were killed; return them.

    Only files named by :func:`tmp_name` whose process no longer runs are removed (a live writer's file is
    kept), plus former ``.<name>.<random>.tmp`` temporaries older than an hour. ``targets`` restricts it to
    temporaries of target names it accepts (their *kind*, e.g. ``lambda n: n.endswith(".pt")``);
    ``recursive`` also searches subfolders. A missing folder has nothing to remove.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    candidates = root.rglob(".*") if recursive else root.glob(".*")
    removed: list[Path] = []
    now = time.time()
    for path in candidates:
        match = _TMP_RE.match(path.name)
        legacy = None if match else _LEGACY_RE.match(path.name)
        if not (match or legacy):
            continue
        target = (match or legacy).group("target")  # type: ignore[union-attr]
        if targets is not None and not targets(target):
            continue
        try:
            if not path.is_file() or path.is_symlink():
                continue
            if match and _pid_alive(int(match.group("pid"))):
                continue
            if legacy and now - path.stat().st_mtime < 3600:
                continue
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; move it into place when the block succeeds."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', not {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
        kwargs.setdefault("newline", "")
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        pause = os.environ.get(PAUSE_ENV)
        if pause:
            time.sleep(float(pause))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text with ``\\n`` line ends atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write bytes atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-ordered-as-given JSON with a trailing newline, atomically."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


@contextlib.contextmanager
def made_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """``mkdir -p path`` for a block; if the block raises, remove the folders it made that are still empty.

    So a run refused inside a fold (a failing ``model.py``, missing weights) leaves no empty
    ``runs/<name>/<dataset>/fold0/`` behind, while a fold that wrote anything keeps its folder (resume).
    """
    folder = Path(path)
    created: list[Path] = []
    probe = folder
    while not os.path.lexists(probe) and probe != probe.parent:
        created.append(probe)
        probe = probe.parent
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        for made in created:  # innermost first; stops at the first folder that holds something
            try:
                made.rmdir()
            except OSError:
                break
        raise
