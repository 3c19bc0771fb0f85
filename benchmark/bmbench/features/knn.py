"""The kNN probe: exact k-nearest neighbours on frozen features, uniform votes, in torch.

It reproduces scikit-learn's ``KNeighborsClassifier(n_neighbors=k)`` with ``algorithm="brute"`` (what
``"auto"`` picks for features of more than 15 dimensions, i.e. every real encoder) exactly:

* distances: squared Euclidean ``||q||^2 + ||t||^2 - 2 q.t`` in float64 (clamped at 0), computed as one
  chunked matrix product per block of queries on the device; ``metric = "cosine"`` L2-normalises both
  sides first (the same ranking as cosine distance);
* the k neighbours: scikit-learn pushes the training rows, in index order, onto a size-k max-heap that only
  a strictly smaller distance enters (``sklearn/utils/_heap.pyx``, used by ``ArgKminClassMode``). Where
  the k-th distance is not tied this is simply every row with distance <= the k-th smallest (a top-k on
  the device); a query whose k-th distance is shared by rows that cannot all be kept replays that heap
  exactly (:func:`sklearn_heap_select`), so even exact ties pick the neighbours scikit-learn picks;
* votes: each neighbour adds 1 to its class; the probabilities are votes / k (scikit-learn's
  ``predict_proba``) and the prediction is the first class with the most votes (``argmax``, its
  ``predict``), i.e. the lowest class index among tied votes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bmbench.errors import BmbenchError

DBL_MAX = float(np.finfo(np.float64).max)
"""scikit-learn's empty-heap sentinel."""
CHUNK_BYTES = {"cpu": 64 * 2**20, "cuda": 1024 * 2**20}
"""Size of one block of the query x train distance matrix (float64) on each device type."""


def _heap_push(values: list[float], indices: list[int], val: float, idx: int) -> None:
    """``sklearn.utils._heap.heap_push``, line for line: a fixed-size max-heap as two arrays."""
    size = len(values)
    if val >= values[0]:
        return
    values[0], indices[0] = val, idx
    cur = 0
    while True:
        left = 2 * cur + 1
        right = left + 1
        if left >= size:
            break
        if right >= size:
            if values[left] > val:
                swap = left
            else:
                break
        elif values[left] >= values[right]:
            if val < values[left]:
                swap = left
            else:
                break
        elif val < values[right]:
            swap = right
        else:
            break
        values[cur], indices[cur] = values[swap], indices[swap]
        cur = swap
    values[cur], indices[cur] = val, idx


def sklearn_heap_select(distances: np.ndarray, k: int) -> np.ndarray:
    """The k rows scikit-learn's brute-force heap keeps for one query (distances in training-row order).

    Only rows that enter the heap are replayed: a row enters iff it is strictly below the current heap
    maximum, so a vectorised scan jumps from one entering row to the next.
    """
    values, indices = [DBL_MAX] * k, [-1] * k
    d = np.asarray(distances, dtype=np.float64)
    start, n, block = 0, len(d), 4096
    while start < n:
        hits = np.flatnonzero(d[start:start + block] < values[0])
        if hits.size == 0:
            start += block
            continue
        j = start + int(hits[0])
        _heap_push(values, indices, float(d[j]), j)
        start = j + 1
    return np.asarray([i for i in indices if i >= 0], dtype=np.int64)


def _as_tensor(x: np.ndarray, device: Any, metric: str) -> Any:
    import torch

    t = torch.as_tensor(np.ascontiguousarray(x), device=device).to(torch.float64)
    if metric == "cosine":
        t = t / t.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return t


def knn_votes(train_x: np.ndarray, train_y: np.ndarray, query_x: np.ndarray, ks: Sequence[int], n_classes: int, *,
              metric: str = "euclidean", device: Any = "cpu") -> dict[int, np.ndarray]:
    """For each k, the (n_query, n_classes) vote fractions of the k nearest training rows."""
    import torch

    if metric not in ("euclidean", "cosine"):
        raise BmbenchError(f"unknown kNN metric {metric!r}; use 'euclidean' or 'cosine'", exit_code=2)
    n_train = len(train_x)
    bad = [k for k in ks if not 1 <= k <= n_train]
    if bad:
        raise BmbenchError(f"kNN with k = {bad[0]} needs at least {bad[0]} training images; this fold has "
                           f"{n_train}", exit_code=2)
    device = torch.device(device)
    train = _as_tensor(train_x, device, metric)
    labels = torch.as_tensor(np.asarray(train_y, dtype=np.int64), device=device)
    onehot = torch.nn.functional.one_hot(labels, n_classes).to(torch.float64)
    train_sq = (train * train).sum(dim=1)
    rows = max(1, CHUNK_BYTES.get(device.type, CHUNK_BYTES["cpu"]) // (8 * max(n_train, 1)))
    out = {k: np.zeros((len(query_x), n_classes), dtype=np.float64) for k in ks}
    for lo in range(0, len(query_x), rows):
        q = _as_tensor(query_x[lo:lo + rows], device, metric)
        dist = torch.addmm(train_sq.unsqueeze(0), q, train.T, alpha=-2.0)
        dist.add_((q * q).sum(dim=1, keepdim=True)).clamp_(min=0.0)
        for k in ks:
            kth = torch.topk(dist, k, dim=1, largest=False, sorted=True).values[:, k - 1:k]
            keep = dist <= kth  # every row at or below the k-th distance ...
            counts = keep.sum(dim=1)
            votes = keep.to(torch.float64) @ onehot
            tied = torch.nonzero(counts > k).flatten().tolist()  # ... unless the k-th distance is shared
            if tied:
                dist_cpu = dist[tied].cpu().numpy()
                labels_cpu = np.asarray(train_y, dtype=np.int64)
                for row, query in zip(dist_cpu, tied, strict=True):
                    picked = sklearn_heap_select(row, k)
                    votes[query] = torch.as_tensor(np.bincount(labels_cpu[picked], minlength=n_classes),
                                                   dtype=torch.float64, device=device)
            out[k][lo:lo + len(q)] = (votes / k).cpu().numpy()
    return out


def knn_predict(votes: np.ndarray) -> np.ndarray:
    """scikit-learn's prediction from vote fractions: the first class with the most votes."""
    return np.asarray(votes).argmax(axis=1)
