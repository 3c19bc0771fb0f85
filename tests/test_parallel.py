"""The shared process-pool helper: order, progress, failures."""

from __future__ import annotations

import pytest

from bmbench.parallel import available_cpus, map_chunks


def _square_sum(chunk: list[int]) -> int:
    return sum(x * x for x in chunk)


def _fail_on_three(chunk: list[int]) -> int:
    if 3 in chunk:
        raise ValueError("bad chunk")
    return len(chunk)


@pytest.mark.parametrize("workers", [1, 2])
def test_results_keep_chunk_order_and_progress_adds_up(workers: int) -> None:
    chunks = [list(range(i, i + 5)) for i in range(0, 60, 5)]
    seen: list[int] = []
    out = map_chunks(_square_sum, chunks, workers=workers, progress=seen.append, sizes=[len(c) for c in chunks])
    assert out == [_square_sum(c) for c in chunks]
    assert sum(seen) == 60 and len(seen) == len(chunks)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_failure_is_raised(workers: int) -> None:
    with pytest.raises(ValueError, match="bad chunk"):
        map_chunks(_fail_on_three, [[1], [2], [3], [4]], workers=workers)


def test_available_cpus_is_positive() -> None:
    assert available_cpus() >= 1
    assert map_chunks(_square_sum, [], workers=2) == []


def test_prefetch_keeps_order_raises_the_producers_error_and_stops_early() -> None:
    import itertools
    import threading

    from bmbench.parallel import prefetch

    assert list(prefetch(iter(range(50)), 3)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("the producer failed")

    with pytest.raises(ValueError, match="the producer failed"):
        list(prefetch(failing()))
    endless = prefetch(itertools.count(), 2)
    assert [next(endless), next(endless)] == [0, 1]
    endless.close()  # leaving early stops the thread
    assert not any(t.name == "bmbench-prefetch" for t in threading.enumerate())
