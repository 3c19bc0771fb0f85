"""Row positions of a predictions file's image ids in a split, in Arrow (no pandas, no Python objects).

Files are usually in one of two orders: the split's own (row k is split position k) or grouped by test fold,
ascending, in split order within a fold (what ``bmbench run`` writes). For those, one string comparison of
the whole column against the split's ids in that order proves the positions; any other order, a partial
file, an unknown or repeated id goes to Arrow's hash look-up (``index_in``, about 15 ms for 171,374 ids). The
positions are the same either way; only the path to them differs. Needs pyarrow
(:meth:`bmbench.splits.store.Split.positions_of` uses pandas' index without it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bmbench import arrow_columns


def positions(ids: Any, split_ids: Any, orders: list[Callable[[], np.ndarray | None]]) -> np.ndarray:
    """The split position of each of ``ids`` (an Arrow string array, or strings pyarrow converts), -1 for an
    id not in ``split_ids`` (:func:`bmbench.arrow_columns.strings` of the split's ids).

    ``orders`` are tried first, cheapest first: each gives split positions, one per row (None: the identity);
    the first under which ``ids`` equals the split's ids row by row is the answer.
    """
    if not isinstance(ids, pa.Array | pa.ChunkedArray):
        ids = pa.array(ids, type=pa.string())
    column = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    if column.null_count == 0:
        for make_order in orders:
            order = make_order()
            if len(column) != (len(split_ids) if order is None else len(order)):
                continue
            expected = split_ids if order is None else split_ids.take(arrow_columns.int64_array(order))
            if pc.all(pc.equal(column, expected)).as_py():
                return np.arange(len(split_ids)) if order is None else order
    return arrow_columns.indices(pc.index_in(column, value_set=split_ids))
