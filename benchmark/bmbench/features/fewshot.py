"""The few-shot probe: SimpleShot nearest-prototype classification (Wang et al. 2019, "SimpleShot").

One *episode* for n shots draws, for every class, n images of the fold's train + val part (without
replacement; a class with fewer than n images contributes all it has, and is recorded), then

1. centres every feature on the mean of the episode's support features (SimpleShot's "CL2N" with the
   support as the only labelled data),
2. L2-normalises it,
3. makes one prototype per class: the mean of its normalised support features,
4. labels each test image with the class of the nearest prototype (Euclidean; ties: the lowest class
   index; a class with no support image is never predicted).

The draws are seeded by (seed, fold, n, episode) through NumPy's ``SeedSequence``, so an episode is the
same on every machine and independent of the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Support:
    """One episode's support set: row positions (into the pool arrays) and the classes short of n images."""

    positions: np.ndarray
    short: dict[int, int]
    """class index -> how many images it had (fewer than the n asked for)."""


def episode_rng(seed: int, fold: int, shots: int, episode: int) -> np.random.Generator:
    """The generator of one episode: independent streams per (seed, fold, shots, episode)."""
    return np.random.default_rng(np.random.SeedSequence([seed, fold, shots, episode]))


def draw_support(pool_labels: np.ndarray, shots: int, n_classes: int, rng: np.random.Generator) -> Support:
    """Draw ``shots`` images per class from the pool (all of a class's images when it has fewer)."""
    labels = np.asarray(pool_labels)
    chosen: list[np.ndarray] = []
    short: dict[int, int] = {}
    for c in range(n_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < shots:
            short[c] = int(len(members))
        if len(members):
            take = min(shots, len(members))
            chosen.append(np.sort(rng.choice(members, size=take, replace=False)))
    positions = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    return Support(positions=positions.astype(np.int64), short=short)


def _normalise(x: np.ndarray, centre: np.ndarray) -> np.ndarray:
    z = np.asarray(x, dtype=np.float64) - centre
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return z / np.maximum(norms, 1e-12)


def simpleshot_predict(support_x: np.ndarray, support_y: np.ndarray, query_x: np.ndarray,
                       n_classes: int) -> np.ndarray:
    """Class index of the nearest prototype for every query row (SimpleShot, CL2N on the support mean)."""
    centre = np.asarray(support_x, dtype=np.float64).mean(axis=0)
    s = _normalise(support_x, centre)
    q = _normalise(query_x, centre)
    y = np.asarray(support_y, dtype=np.int64)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    sums = np.zeros((n_classes, s.shape[1]))
    np.add.at(sums, y, s)
    present = counts > 0
    protos = sums[present] / counts[present, None]
    dist = (protos * protos).sum(axis=1)[None, :] - 2.0 * q @ protos.T  # + |q|^2, the same for every class
    return np.flatnonzero(present)[dist.argmin(axis=1)]
