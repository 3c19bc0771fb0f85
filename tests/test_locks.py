"""File locks around derived artefacts (bmbench.locks): concurrent builders build once, nothing is left over."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from bmbench.errors import BmbenchError
from bmbench.locks import build_once, lock_path, target_lock

FORK = multiprocessing.get_context("fork")


def _build_cache_child(rows: object, barrier: object, out: str) -> None:
    """One of the concurrent builders: count the images it decodes itself, record the bytes it opened."""
    from bmbench.data.cache import build_cache

    decoded = [0]
    barrier.wait()  # type: ignore[attr-defined]
    cache = build_cache(rows, workers=1, progress=lambda k: decoded.__setitem__(0, decoded[0] + k))  # type: ignore[arg-type]
    digest = hashlib.sha256((cache.folder / "images.npy").read_bytes()).hexdigest()
    Path(out).write_text(f"{decoded[0]} {digest}\n")


def test_four_processes_build_the_image_cache_once(tiny_image_set, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from bmbench.data.cache import cache_folder, rows_for_split

    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))  # its own cache: no other test built it first

    split, paths = tiny_image_set
    rows = rows_for_split(split, paths)
    barrier = FORK.Barrier(4)
    outs = [tmp_path / f"child{k}.txt" for k in range(4)]
    children = [FORK.Process(target=_build_cache_child, args=(rows, barrier, str(out))) for out in outs]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
    assert [child.exitcode for child in children] == [0, 0, 0, 0]
    results = [out.read_text().split() for out in outs]
    decoded = sorted(int(n) for n, _ in results)
    assert decoded == [0, 0, 0, len(rows)]  # exactly one process decoded, the three others reused its cache
    assert len({digest for _, digest in results}) == 1  # identical bytes for everyone
    folder = cache_folder(rows)
    assert sorted(p.name for p in folder.parent.iterdir()) == sorted([folder.name, lock_path(folder).name])


def test_build_once_failure_leaves_only_the_lock(tmp_path: Path) -> None:
    target = tmp_path / "store"

    def failing(tmp: Path) -> None:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        build_once(target, failing)
    assert [p.name for p in tmp_path.iterdir()] == [".store.lock"]


def test_build_once_replaces_an_unfinished_target_and_reuses_a_finished_one(tmp_path: Path) -> None:
    target = tmp_path / "store"
    target.mkdir()
    (target / "partial").write_text("old")
    calls: list[Path] = []

    def build(tmp: Path) -> None:
        calls.append(tmp)
        (tmp / "done").write_text("new")

    def done(p: Path) -> bool:
        return (p / "done").is_file()

    assert build_once(target, build, is_done=done) == target
    assert sorted(p.name for p in target.iterdir()) == ["done"]  # the unfinished one was replaced
    assert oct(target.stat().st_mode & 0o777) == "0o755"
    build_once(target, build, is_done=done)
    assert len(calls) == 1  # the finished one was reused
    assert sorted(p.name for p in tmp_path.iterdir()) == [".store.lock", "store"]


def test_build_once_of_a_file(tmp_path: Path) -> None:
    target = tmp_path / "w" / "weights.pt"
    path = build_once(target, lambda tmp: tmp.write_bytes(b"abc"), kind="file")
    assert path.read_bytes() == b"abc"
    assert sorted(p.name for p in target.parent.iterdir()) == [".weights.pt.lock", "weights.pt"]


def _hold(target: str, ready: object, seconds: float) -> None:
    with target_lock(Path(target)):
        ready.set()  # type: ignore[attr-defined]
        time.sleep(seconds)


def test_a_waiter_reports_waiting_and_times_out_with_the_lock_named(tmp_path: Path) -> None:
    target = tmp_path / "store"
    ready = FORK.Event()
    holder = FORK.Process(target=_hold, args=(str(target), ready, 3.0))
    holder.start()
    try:
        assert ready.wait(30)
        waited: list[bool] = []
        with pytest.raises(BmbenchError, match=r"\.store\.lock.*more than 0\.3 s"):
            build_once(target, lambda tmp: None, timeout=0.3, on_wait=lambda: waited.append(True))
        assert waited == [True]
    finally:
        holder.join(timeout=30)
    assert not target.exists()
    assert os.listdir(tmp_path) == [".store.lock"]
