"""Build a derived artefact (an image cache, a feature store, the synthetic set, a weights file) once.

Why: several processes (SLURM array tasks, ``bmbench grid --jobs 4``, two terminals) often need the same
cache at the same moment. Without coordination each decodes 171,374 images, they race on the final
rename, and a crash leaves half-written folders. :func:`build_once` serialises builders with a
``filelock`` lock beside the target and builds in a temporary folder made by ``tempfile.mkdtemp`` in the
target's folder (same filesystem, so the final ``os.rename`` is atomic). A second builder waits for the
lock, then finds the finished target and reuses it.

Usage::

    from bmbench.locks import build_once

    def build(tmp: Path) -> None:          # fill the empty temporary folder ``tmp``
        (tmp / "features.npy").write_bytes(...)

    folder = build_once(target_folder, build, is_done=lambda p: (p / "manifest.json").is_file())

For a single file (``kind="file"``) ``build_fn`` gets the path of a not-yet-existing file inside the
temporary folder and must create it; it is renamed onto ``target``.

Contract:
    * ``is_done(target)`` says whether an existing target is complete and current (default: it exists).
      A target that exists but is not done is replaced (moved aside, then removed) after the new build.
    * ``build_fn`` runs with the lock held and only ever sees the temporary path; an exception removes
      the temporary folder and propagates (the target is untouched).
    * The lock file ``.<name>.lock`` stays beside the target (empty; removing it would be racy). It is an
      OS-level lock (``fcntl.flock``), so a builder that dies releases it: no stale locks to clean up.
    * ``timeout`` (seconds, None: wait for ever) bounds the wait; when it passes a :class:`BmbenchError`
      (exit 1) names the lock file. ``on_wait()`` is called once when the lock is busy (to print a line).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from bmbench.errors import BmbenchError

__all__ = ["build_once", "lock_path", "target_lock"]


def lock_path(target: Path) -> Path:
    """The lock file guarding ``target``: ``<parent>/.<name>.lock``."""
    return target.parent / f".{target.name}.lock"


def target_lock(target: Path, *, timeout: float | None = None):  # noqa: ANN201 - filelock's type
    """A ``filelock.FileLock`` guarding ``target`` (folder created); use as ``with target_lock(t): ...``."""
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(lock_path(target)), timeout=-1 if timeout is None else timeout)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def build_once(target: str | os.PathLike[str], build_fn: Callable[[Path], object], *,
               is_done: Callable[[Path], bool] | None = None, kind: Literal["dir", "file"] = "dir",
               timeout: float | None = None, on_wait: Callable[[], None] | None = None,
               force: bool = False) -> Path:
    """Return ``target`` complete, building it with ``build_fn`` unless a finished one exists (see the
    module docstring). ``force`` rebuilds even a done target (still one builder at a time)."""
    from filelock import Timeout

    final = Path(target)
    done = is_done if is_done is not None else (lambda p: p.exists())
    if not force and final.exists() and done(final):
        return final  # fast path: no lock needed to read a finished target
    lock = target_lock(final, timeout=timeout)
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if on_wait is not None:
                on_wait()
            lock.acquire()
    except Timeout:
        raise BmbenchError(f"{lock_path(final)}: another process has held this lock for more than {timeout:g} s "
                           f"while building {final}; wait for it, or remove the lock if no bmbench process "
                           "is running") from None
    try:
        if not force and final.exists() and done(final):
            return final  # another builder finished while we waited
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            built = tmp_dir / final.name if kind == "file" else tmp_dir
            build_fn(built)
            if kind == "file" and not built.is_file():
                raise RuntimeError(f"build_fn did not create the file {built}")
            if kind == "dir":
                os.chmod(tmp_dir, 0o755)  # mkdtemp makes it 0700
            old: Path | None = None
            if final.exists() or final.is_symlink():
                old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
                os.rename(final, old / final.name)
            os.rename(built, final)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            _remove(tmp_dir)
        return final
    finally:
        lock.release()
