"""Row positions of a predictions file's image ids, without a hash look-up when the file is in a known order.

Building the hash index of 171,374 ids and probing it costs about 45 ms, a twentieth of the whole-process
``read_csv`` the scorer is measured against (issue 14). Files are usually in one of two orders: the split's
own (row k is split position k) or grouped by test fold, ascending, in split order within a fold (what
``bmbench run`` writes). For those, one string comparison of the whole column against the split's ids in
that order (pyarrow, no Python objects) proves the positions; any other order, a partial file, an unknown
or repeated id, or a missing pyarrow goes to :attr:`bmbench.splits.store.Split.id_index`. The positions are
the same either way; only the path to them differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def arrow_ids(fixed: np.ndarray) -> Any:
    """The ids (fixed-width unicode) as a pyarrow string array, built from their code points; None when
    pyarrow is missing or an id is not ASCII (then the hash look-up serves)."""
    try:
        import pyarrow as pa
    except ImportError:
        return None
    width = fixed.dtype.itemsize // 4
    points = np.ascontiguousarray(fixed).view(np.uint32).reshape(len(fixed), width)
    if width == 0 or points.max(initial=0) > 127:
        return None
    chars = points.astype(np.uint8)  # ASCII: one byte per code point, NUL-padded like numpy's bytes strings
    lengths = np.char.str_len(chars.view(f"S{width}").ravel()).astype(np.int32)
    data = chars.ravel() if lengths.min(initial=width) == width else chars[np.arange(width) < lengths[:, None]]
    offsets = np.zeros(len(fixed) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.StringArray.from_buffers(len(fixed), pa.py_buffer(offsets), pa.py_buffer(data))


def positions_in_order(ids: Any, split_ids: Any, orders: list[Callable[[], np.ndarray | None]]) -> np.ndarray | None:
    """The first of ``orders`` (each gives split positions, one per row, or None: identity) under which
    ``ids`` (a pandas string column) equals ``split_ids`` (:func:`arrow_ids`) row by row, or None."""
    if split_ids is None or getattr(ids.dtype, "storage", None) != "pyarrow":
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    column = pa.array(ids.array)
    if column.null_count:
        return None
    for make_order in orders:
        order = make_order()
        if len(column) != (len(split_ids) if order is None else len(order)):
            continue
        expected = split_ids if order is None else split_ids.take(pa.array(order))
        if pc.all(pc.equal(column, expected)).as_py():
            return np.arange(len(split_ids)) if order is None else order
    return None
