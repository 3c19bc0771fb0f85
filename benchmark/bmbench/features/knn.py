"""The kNN probe: exact k-nearest neighbours on frozen features, uniform votes, in torch.

It reproduces scikit-learn's ``KNeighborsClassifier(n_neighbors=k)`` (DinoBloom's kNN), including which
neighbours it keeps when distances tie:

* ``metric = "euclidean"``: scikit-learn's ``algorithm="auto"`` picks brute force for features of more than
  15 dimensions (every real encoder), i.e. ``kneighbors`` through ``ArgKmin`` (its ``ArgKminClassMode``
  excludes Euclidean): squared distances ``||q||^2 - 2 q.t + ||t||^2`` in float64 (float32 features are
  upcast), clamped at 0, pushed in training-row order onto a size-k max-heap that only a strictly smaller
  distance enters (``sklearn/utils/_heap.pyx``). That order is its ``parallel_on_X`` strategy, which its
  "auto" rule picks whenever there are fewer training rows than queries or more than 4 x 256 x threads
  queries (DinoBloom's split: 34,266 queries, i.e. up to 33 threads); otherwise (``parallel_on_Y``) its
  tie-breaking depends on its thread count, and bmbench keeps the thread-independent order.
  Here the same float64 distances are one matrix product per block of queries on the device and a top-k.
  Where the k-th and (k+1)-th smallest distances differ, the k neighbours are simply the k smallest; a query
  whose k-th distance is shared by rows that cannot all be kept replays that heap exactly
  (:func:`sklearn_heap_select`): among tied rows the heap keeps those its replacement order keeps, which is
  neither "lowest index first" nor "highest index first".
* ``metric = "cosine"``: scikit-learn falls back to ``pairwise_distances`` (1 - cosine similarity of
  L2-normalised rows, clipped to [0, 2]; a zero row has distance 1 to everything) and
  ``numpy.argpartition``; here the same distances in float64, and tied queries call ``numpy.argpartition``
  on the query's distance row, as scikit-learn does. (scikit-learn computes cosine distances in the input
  precision, i.e. float32 for float32 features; bmbench always in float64, so it equals scikit-learn given
  float64 features.)
* votes: each neighbour adds 1 to its class; the probabilities are votes / k (scikit-learn's
  ``predict_proba``) and the prediction is the first class with the most votes (``argmax``, its
  ``predict``), i.e. the lowest class index among tied votes.

Exact ties (duplicate training rows, integer-valued features) are broken as scikit-learn breaks them;
distinct distances that differ only in the last bit of float64 may be ordered differently by the two
summation orders. Memory: the training features in float64 plus one block of the query x train distance
matrix (:data:`CHUNK_BYTES`), whatever the number of queries.
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
    """Rows as float64 on the device; for cosine divided by their norm (zero rows stay zero, as in sklearn)."""
    import torch

    t = torch.as_tensor(np.ascontiguousarray(x), device=device).to(torch.float64)
    if metric == "cosine":
        norms = t.norm(dim=1, keepdim=True)
        t = t / torch.where(norms == 0, torch.ones_like(norms), norms)
    return t


def _distances(q: Any, train: Any, train_sq: Any, metric: str) -> Any:
    """The block of query x train distances scikit-learn ranks by (squared Euclidean, or 1 - cosine)."""
    import torch

    if metric == "cosine":
        return torch.mm(q, train.T).neg_().add_(1.0).clamp_(0.0, 2.0)
    dist = torch.addmm(train_sq.unsqueeze(0), q, train.T, alpha=-2.0)
    return dist.add_((q * q).sum(dim=1, keepdim=True)).clamp_(min=0.0)


def _tie_select(row: np.ndarray, k: int, metric: str) -> np.ndarray:
    """The k training rows scikit-learn keeps for one query whose k-th distance is tied."""
    if metric == "cosine":
        return np.argpartition(row, k - 1)[:k]
    return sklearn_heap_select(row, k)


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
    labels_np = np.asarray(train_y, dtype=np.int64)
    with torch.no_grad():
        train = _as_tensor(train_x, device, metric)
        labels = torch.as_tensor(labels_np, device=device)
        train_sq = (train * train).sum(dim=1)
        top = min(max(ks) + 1, n_train)  # one more than the largest k: is the k-th distance tied?
        rows = max(1, CHUNK_BYTES.get(device.type, CHUNK_BYTES["cpu"]) // (8 * max(n_train, 1)))
        out = {k: np.zeros((len(query_x), n_classes), dtype=np.float64) for k in ks}
        for lo in range(0, len(query_x), rows):
            q = _as_tensor(query_x[lo:lo + rows], device, metric)
            dist = _distances(q, train, train_sq, metric)
            values, nearest = torch.topk(dist, top, dim=1, largest=False, sorted=True)
            for k in ks:
                votes = torch.zeros(len(q), n_classes, dtype=torch.float64, device=device)
                votes.scatter_add_(1, labels[nearest[:, :k]], torch.ones(len(q), k, dtype=torch.float64,
                                                                        device=device))
                if k < n_train:
                    tied = torch.nonzero(values[:, k] == values[:, k - 1]).flatten().tolist()
                    for query in tied:
                        picked = _tie_select(dist[query].cpu().numpy(), k, metric)
                        votes[query] = torch.as_tensor(np.bincount(labels_np[picked], minlength=n_classes),
                                                       dtype=torch.float64, device=device)
                out[k][lo:lo + len(q)] = (votes / k).cpu().numpy()
    return out


def knn_predict(votes: np.ndarray) -> np.ndarray:
    """scikit-learn's prediction from vote fractions: the first class with the most votes."""
    return np.asarray(votes).argmax(axis=1)
