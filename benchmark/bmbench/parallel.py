"""One way to fan work out over processes: chunks in, results back in order, progress as chunks finish;
and one way to run a producer ahead of its consumer in a thread (:func:`prefetch`).

Used by every CPU-bound pass over the images (decoding checks, synthetic generation, baseline features,
statistics, caches). Workers use the platform's default start method (fork on Linux, as torch DataLoader
workers do, so unguarded scripts and notebooks work). At most ``4 x workers`` chunks are in flight, so memory
stays flat on 171k images, and a failure or Ctrl-C cancels what has not started.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def available_cpus() -> int:
    """CPUs this process may run on (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def map_chunks(
    func: Callable[[T], R],
    chunks: Sequence[T],
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    sizes: Sequence[int] | None = None,
) -> list[R]:
    """``[func(c) for c in chunks]`` on a process pool (in this process for one worker or one chunk).

    ``progress(sizes[i])`` (default 1) is called as chunk i finishes; results keep the order of ``chunks``.
    A worker's exception is re-raised here after the remaining chunks are cancelled.
    """
    n_workers = min(workers or available_cpus(), max(len(chunks), 1))
    weight = list(sizes) if sizes is not None else [1] * len(chunks)
    results: list[R | None] = [None] * len(chunks)
    if n_workers <= 1:
        for i, chunk in enumerate(chunks):
            results[i] = func(chunk)
            if progress is not None:
                progress(weight[i])
        return results  # type: ignore[return-value]
    pool = ProcessPoolExecutor(max_workers=n_workers)
    try:
        pending: dict[Future[R], int] = {}
        next_index = 0
        while next_index < len(chunks) or pending:
            while next_index < len(chunks) and len(pending) < 4 * n_workers:
                pending[pool.submit(func, chunks[next_index])] = next_index
                next_index += 1
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                i = pending.pop(future)
                results[i] = future.result()
                if progress is not None:
                    progress(weight[i])
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results  # type: ignore[return-value]


@dataclass(frozen=True)
class _Failed:
    error: BaseException


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``items``, produced by a background thread up to ``depth`` ahead of the consumer.

    Why: reading, gathering, pinning and decoding (which release the GIL) overlap the consumer's device work.
    An exception of the producer is raised in the consumer; leaving the loop early stops the thread.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
            q.put(done)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
            q.put(_Failed(err))

    thread = threading.Thread(target=work, name="bmbench-prefetch", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass
