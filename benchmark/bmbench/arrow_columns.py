"""Arrow arrays to numpy and back through their buffers, never through pyarrow's own conversions.

pyarrow's ``Array.to_numpy``, ``pa.array(...)`` and Python scalars in compute calls go through its pandas
bridge, which imports pandas: 0.3 s, a third of the whole-process ``pandas.read_csv`` that ``bmbench score``
is measured against (issue 14, docs/performance.md). The Arrow memory layout (a validity bitmap, then the
values; for strings 32-bit offsets and UTF-8 bytes) is fixed by the Arrow format, so reading and writing the
buffers directly is exact (only non-ASCII strings are built by pyarrow itself). Every function needs
pyarrow; callers import this module only when it is present.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa


def _chunks(column: Any) -> list[Any]:
    return list(column.chunks) if isinstance(column, pa.ChunkedArray) else [column]


def values(column: Any, dtype: np.dtype | type) -> np.ndarray:
    """The values of a fixed-width Arrow array or chunked array, as one numpy array of ``dtype`` (the
    Arrow type's width); where a value is null its slot holds whatever the buffer has (see :func:`valid`)."""
    parts = [np.frombuffer(chunk.buffers()[1], dtype=dtype)[chunk.offset: chunk.offset + len(chunk)]
             for chunk in _chunks(column) if len(chunk)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def valid(column: Any) -> np.ndarray:
    """Per element, whether it is not null (the validity bitmaps, least significant bit first)."""
    parts = []
    for chunk in _chunks(column):
        bitmap = chunk.buffers()[0]
        if bitmap is None or chunk.null_count == 0:
            parts.append(np.ones(len(chunk), dtype=bool))
        else:
            bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
            parts.append(bits[chunk.offset: chunk.offset + len(chunk)].astype(bool))
    return np.concatenate(parts) if parts else np.empty(0, dtype=bool)


def indices(column: Any) -> np.ndarray:
    """An integer array (``pyarrow.compute.index_in``'s result) as int64, -1 where it is null."""
    out = values(column, np.int32 if pa.types.is_int32(column.type) else np.int64).astype(np.int64)
    if column.null_count:
        out[~valid(column)] = -1
    return out


def int64_array(numbers: np.ndarray) -> Any:
    """A numpy integer array as an Arrow int64 array (e.g. the indices of ``Array.take``)."""
    data = np.ascontiguousarray(numbers, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


def strings(fixed: np.ndarray) -> Any:
    """Fixed-width unicode strings (numpy ``U``) as an Arrow string array: built from their code points
    when every one is ASCII (one byte each, NUL-padded like numpy's bytes strings), else element by element."""
    width = fixed.dtype.itemsize // 4
    points = np.ascontiguousarray(fixed).view(np.uint32).reshape(len(fixed), width)
    if width == 0 or points.max(initial=0) > 127:
        return pa.array(fixed.tolist(), type=pa.string())
    chars = points.astype(np.uint8)
    lengths = np.char.str_len(chars.view(f"S{width}").ravel()).astype(np.int32)
    data = chars.ravel() if lengths.min(initial=width) == width else chars[np.arange(width) < lengths[:, None]]
    offsets = np.zeros(len(fixed) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.StringArray.from_buffers(len(fixed), pa.py_buffer(offsets), pa.py_buffer(data))
