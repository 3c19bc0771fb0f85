"""Calibration baselines that every benchmark table carries beside the neural submissions.

Both run per fold of a published split exactly like a submission: fit on the fold's ``train`` part,
select on its ``val`` part (by validation accuracy, as the paper does), predict its ``test`` part.

* ``majority``: the most frequent class of the training part for every test image; the probabilities
  are the training class frequencies. It is the floor a model must clear on imbalanced data.
* ``features_logreg``: hand-crafted colour / shape / texture features (:func:`extract_features`) and a
  multinomial logistic regression with class-balanced weights (mirroring the paper's class-balanced
  sampling); its regularisation ``C`` is chosen from :data:`C_GRID` by validation accuracy.

No torch here: numpy, Pillow (through :func:`bmbench.data.decode.decode_image`) and scikit-learn, which
is imported inside the functions that need it, so importing this module stays cheap.

Features of one image (all deterministic functions of the pixels; float32 out):

* a 64 x 64 box-filtered copy of the whole image ("small") and of its central half ("centre", cells
  are centred, so this is the cell at twice the resolution), plus the native-resolution central
  128 x 128 grey patch ("fine") for texture that downsampling would erase (granules, chromatin);
* per-channel mean / std / 5-25-50-75-95th percentiles of R, G, B, saturation, value and the two hue
  chroma coordinates ``S cos(h)``, ``S sin(h)`` (hue is circular) on "small" and "centre";
* a joint 4 x 4 x 4 RGB histogram ("small") and an 8 hue x 4 saturation histogram ("centre");
* for two "dark purple" (nucleus-like) masks, a loose and a strict one: area fraction, centroid distance
  from the centre, the square roots of the second-moment eigenvalues, elongation, boundary / sqrt(area)
  (lobulation), mean brightness and the share inside the central region;
* radial profiles (9 rings around the centre) of grey level, saturation and the loose nucleus mask,
  which encode cell and nucleus size;
* gradient-magnitude histograms and mean / std on "fine" and "small" (texture);
* rotation-invariant uniform local binary patterns (8 neighbours, radius 1; 10 bins) on "fine" and
  "small", and the mean absolute Laplacian per RGB channel on the fine centre.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from bmbench.classes import CLASS_CODES, NUM_CLASSES
from bmbench.data.decode import DecodeError, decode_image
from bmbench.errors import BmbenchError
from bmbench.parallel import map_chunks
from bmbench.splits.store import Split

BASELINES: tuple[str, ...] = ("majority", "features_logreg")
"""The baselines :func:`fit_predict_fold` knows."""

C_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
"""Inverse regularisation strengths tried by ``features_logreg``; ties go to the smaller C."""
MAX_ITER = 2000
"""L-BFGS iterations allowed per logistic-regression fit."""

SMALL = 64
"""Side of the downsampled whole image and of the downsampled central half."""
FINE = 128
"""Side of the native-resolution central patch used for fine texture."""
_CHUNK = 32
"""Images per process-pool task."""

F64 = npt.NDArray[np.float64]

# ---------------------------------------------------------------------------------------------------
# Feature extraction
# ---------------------------------------------------------------------------------------------------

_PERCENTILES = (5.0, 25.0, 50.0, 75.0, 95.0)
_GRAD_EDGES = np.array([0, 2, 4, 8, 12, 16, 24, 32, 48, 64, np.inf])
_RING_EDGES = np.array([0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0, np.inf])  # radius / half side
_LBP_TOL = 2.0  # grey levels a neighbour must exceed the centre by to count as "brighter" (JPEG noise)
_MASKS = ((170.0, "loose"), (130.0, "strict"))  # max-channel ceilings of the nucleus-like masks
_PURPLE_BG = 20.0  # blue must exceed green by this ...
_PURPLE_RG = 5.0  # ... and red exceed green by this for a pixel to be "purple"


def _resize(img: Image.Image, box: tuple[float, float, float, float] | None = None) -> F64:
    """Box-filtered SMALL x SMALL copy of ``img`` (or of ``box`` in it), float64 RGB in 0..255."""
    return np.asarray(img.resize((SMALL, SMALL), Image.Resampling.BOX, box=box), dtype=np.float64)


def _grey(rgb: F64) -> F64:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _hsv_channels(rgb: F64) -> tuple[F64, F64, F64, F64]:
    """Saturation (0..1), value (0..255) and the chroma coordinates S cos(h), S sin(h) of an RGB array."""
    mx = rgb.max(axis=-1)
    mn = rgb.min(axis=-1)
    delta = mx - mn
    sat = np.where(mx > 0, delta / np.maximum(mx, 1e-9), 0.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    safe = np.maximum(delta, 1e-9)
    hue = np.where(
        mx == r, ((g - b) / safe) % 6.0, np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)
    ) * (math.pi / 3.0)
    hue = np.where(delta > 0, hue, 0.0)
    return sat, mx, sat * np.cos(hue), sat * np.sin(hue)


def _channel_stats(channels: Sequence[F64]) -> list[float]:
    """Mean, std and the :data:`_PERCENTILES` of every channel (channel by channel in the output)."""
    flat = np.stack([c.ravel() for c in channels])
    stats = np.concatenate(
        [flat.mean(axis=1)[:, None], flat.std(axis=1)[:, None], np.percentile(flat, _PERCENTILES, axis=1).T], axis=1
    )
    return stats.ravel().tolist()


def _rgb_hist(rgb: F64, bins: int = 4) -> F64:
    q = np.minimum((rgb * (bins / 256.0)).astype(np.int64), bins - 1)
    idx = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    return np.bincount(idx.ravel(), minlength=bins**3) / idx.size


def _hs_hist(sat: F64, a: F64, b: F64, hue_bins: int = 8, sat_bins: int = 4) -> F64:
    hue = np.arctan2(b, a) % (2.0 * math.pi)
    hq = np.minimum((hue * (hue_bins / (2.0 * math.pi))).astype(np.int64), hue_bins - 1)
    sq = np.minimum((sat * sat_bins).astype(np.int64), sat_bins - 1)
    return np.bincount((hq * sat_bins + sq).ravel(), minlength=hue_bins * sat_bins) / hq.size


def _coords(n: int) -> tuple[F64, F64]:
    """Pixel-centre coordinates of an n x n grid in [-1, 1] (0 at the image centre)."""
    c = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    return np.meshgrid(c, c, indexing="ij")  # (y, x)


_YY, _XX = _coords(SMALL)
_RADIUS = np.hypot(_YY, _XX)
_RING = np.digitize(_RADIUS, _RING_EDGES[1:-1])  # ring index 0..8 per pixel
_RING_SIZE = np.bincount(_RING.ravel(), minlength=len(_RING_EDGES) - 1).astype(np.float64)
_CENTRAL = _RADIUS < 0.5


def _purple(rgb: F64) -> npt.NDArray[np.bool_]:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return (b - g > _PURPLE_BG) & (r - g > _PURPLE_RG)


def _mask_shape(mask: npt.NDArray[np.bool_], value: F64) -> list[float]:
    """Area, centroid distance, spreads, elongation, lobulation, brightness and central share of a mask."""
    area = int(mask.sum())
    if area < 3:
        return [area / mask.size, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    ys, xs = _YY[mask], _XX[mask]
    my, mx = float(ys.mean()), float(xs.mean())
    dy, dx = ys - my, xs - mx
    vy, vx, cxy = float((dy * dy).mean()), float((dx * dx).mean()), float((dy * dx).mean())
    half_sum, root = (vy + vx) / 2.0, math.hypot((vy - vx) / 2.0, cxy)  # eigenvalues of the 2x2 covariance
    s1, s2 = math.sqrt(max(half_sum + root, 0.0)), math.sqrt(max(half_sum - root, 0.0))
    elong = 1.0 - s2 / s1 if s1 > 0 else 0.0
    padded = np.pad(mask, 1)
    interior = mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    boundary = area - int(interior.sum())
    return [
        area / mask.size,
        math.hypot(my, mx),
        s1,
        s2,
        elong,
        boundary / math.sqrt(area),
        float(value[mask].mean()) / 255.0,
        float((mask & _CENTRAL).sum()) / area,
    ]


def _ring_means(channel: F64) -> F64:
    return np.bincount(_RING.ravel(), weights=channel.ravel(), minlength=len(_RING_SIZE)) / _RING_SIZE


def _gradient_features(grey: F64) -> list[float]:
    gy = grey[2:, 1:-1] - grey[:-2, 1:-1]
    gx = grey[1:-1, 2:] - grey[1:-1, :-2]
    mag = np.hypot(gx, gy) * 0.5
    hist = np.histogram(mag, bins=_GRAD_EDGES)[0] / mag.size
    return [*hist.tolist(), float(mag.mean()), float(mag.std())]


_LBP_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))  # circular order


def _lbp_riu2(grey: F64) -> F64:
    """Histogram of rotation-invariant uniform LBP codes (P=8, R=1): 0..8 ones if uniform, else 9."""
    h, w = grey.shape
    centre = grey[1:-1, 1:-1] + _LBP_TOL
    bits = np.stack([grey[1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx] >= centre for dy, dx in _LBP_OFFSETS])
    ones = bits.sum(axis=0)
    transitions = (bits != np.roll(bits, 1, axis=0)).sum(axis=0)
    code = np.where(transitions <= 2, ones, 9)
    return np.bincount(code.ravel(), minlength=10) / code.size


def _laplacian_energy(rgb: F64) -> list[float]:
    lap = 4.0 * rgb[1:-1, 1:-1] - rgb[:-2, 1:-1] - rgb[2:, 1:-1] - rgb[1:-1, :-2] - rgb[1:-1, 2:]
    return [float(v) for v in np.abs(lap).mean(axis=(0, 1))]


def image_features(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """The feature vector of one decoded ``(H, W, 3)`` uint8 RGB image (any size, 250 x 250 in the release)."""
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    w, h = img.size
    small = _resize(img)
    centre = _resize(img, (w / 4.0, h / 4.0, w * 3.0 / 4.0, h * 3.0 / 4.0))
    side = min(FINE, w, h)
    y0, x0 = (h - side) // 2, (w - side) // 2
    fine_rgb = np.asarray(rgb[y0 : y0 + side, x0 : x0 + side], dtype=np.float64)
    fine_grey = _grey(fine_rgb)
    small_grey = _grey(small)

    feats: list[float] = []
    hsv_small = _hsv_channels(small)
    hsv_centre = _hsv_channels(centre)
    for arr, hsv in ((small, hsv_small), (centre, hsv_centre)):
        feats += _channel_stats([arr[..., 0], arr[..., 1], arr[..., 2], hsv[0], hsv[1], hsv[2], hsv[3]])
    feats += _rgb_hist(small).tolist()
    feats += _hs_hist(hsv_centre[0], hsv_centre[2], hsv_centre[3]).tolist()

    purple = _purple(small)
    value = hsv_small[1]
    loose = None
    for ceiling, name in _MASKS:
        mask = purple & (value < ceiling)
        if name == "loose":
            loose = mask
        feats += _mask_shape(mask, value)
    assert loose is not None
    feats += _ring_means(small_grey / 255.0).tolist()
    feats += _ring_means(hsv_small[0]).tolist()
    feats += _ring_means(loose.astype(np.float64)).tolist()

    feats += _gradient_features(fine_grey)
    feats += _gradient_features(small_grey)
    feats += _lbp_riu2(fine_grey).tolist()
    feats += _lbp_riu2(small_grey).tolist()
    feats += _laplacian_energy(fine_rgb)
    return np.asarray(feats, dtype=np.float32)


def feature_dim() -> int:
    """Length of the feature vector (computed once on a blank image)."""
    return int(image_features(np.full((250, 250, 3), 200, np.uint8)).shape[0])


def _features_chunk(paths: list[str]) -> npt.NDArray[np.float32]:
    """Features of a chunk of image files; runs in a worker process."""
    rows = []
    for path in paths:
        try:
            rgb, _decoder = decode_image(path)
        except DecodeError as exc:
            raise BmbenchError(f"cannot compute baseline features: {exc}") from None
        if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 8:
            raise BmbenchError(f"cannot compute baseline features of {path}: image of shape {rgb.shape}")
        rows.append(image_features(rgb))
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


def extract_features(
    paths: Sequence[str | os.PathLike[str]],
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> npt.NDArray[np.float32]:
    """The ``(n, d)`` float32 feature matrix of the images at ``paths``, rows in ``paths`` order.

    Chunks of images are processed on a pool of ``workers`` processes (default: all CPUs; 1 runs in
    this process). The result does not depend on ``workers`` or on the chunking. ``progress(k)`` is
    called with the number of newly finished images. An undecodable file raises :class:`BmbenchError`.
    """
    if workers is not None and workers < 1:
        raise BmbenchError(f"workers must be at least 1, got {workers}")
    names = [os.fspath(p) for p in paths]
    chunks = [names[i : i + _CHUNK] for i in range(0, len(names), _CHUNK)]
    blocks = map_chunks(_features_chunk, chunks, workers=workers, progress=progress, sizes=[len(c) for c in chunks])
    return np.concatenate(blocks) if blocks else np.zeros((0, feature_dim()), np.float32)


# ---------------------------------------------------------------------------------------------------
# Per-fold fitting
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FoldPrediction:
    """A baseline's predictions for the test part of one fold.

    ``probs`` is ``(len(test_positions), 21)`` float64 with non-negative rows summing to 1 (columns in
    class index order, zero for classes absent from the training part); ``test_positions`` are the split
    rows predicted (``split.members(fold, "test")``); ``params`` records what was chosen (e.g. ``C``).
    """

    fold: int
    test_positions: npt.NDArray[np.int64]
    probs: F64
    val_accuracy: float
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def predicted(self) -> npt.NDArray[np.int64]:
        """The predicted class index of every test image (arg-max of ``probs``, ties to the lower index)."""
        return np.argmax(self.probs, axis=1)


def _check_inputs(name: str, labels: npt.NDArray[Any], split: Split, fold: int) -> npt.NDArray[np.int64]:
    if name not in BASELINES:
        raise BmbenchError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    if not 0 <= fold < split.folds:
        raise BmbenchError(f"fold {fold} is outside 0..{split.folds - 1} of split {split.name}")
    y = np.asarray(labels).astype(np.int64, copy=False)
    if y.shape != (len(split.image_ids),):
        raise BmbenchError(f"labels must be one per split row ({len(split.image_ids)}), got shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise BmbenchError(f"labels must be class indices 0..{NUM_CLASSES - 1}")
    return y


def _accuracy(true: npt.NDArray[np.int64], pred: npt.NDArray[np.int64]) -> float:
    return float(np.mean(true == pred)) if true.size else float("nan")


def _normalised(probs: F64) -> F64:
    probs = np.clip(probs, 0.0, None)
    return probs / probs.sum(axis=1, keepdims=True)


def fit_predict_fold(
    name: str,
    features: npt.NDArray[Any] | None,
    labels: npt.NDArray[Any],
    split: Split,
    fold: int,
    *,
    seed: int = 0,
    workers: int | None = None,
) -> FoldPrediction:
    """Fit baseline ``name`` on the train part of ``fold``, select on its val part, predict its test part.

    ``features`` is ``(n split rows, d)`` aligned with ``split.image_ids`` (ignored, may be None, for
    ``majority``); ``labels`` are the rows' class indices (``split.labels``); ``workers`` processes fit the
    grid of ``C`` (default: all CPUs; the result does not depend on it). Raises :class:`BmbenchError`
    for an unknown baseline, a bad fold, misaligned inputs or an empty training part.
    """
    y = _check_inputs(name, labels, split, fold)
    train, val, test = (split.members(fold, role) for role in ("train", "val", "test"))
    if train.size == 0:
        raise BmbenchError(f"fold {fold} of split {split.name} has no training images")
    if name == "majority":
        return _majority(y, fold, train, val, test)
    return _features_logreg(features, y, fold, train, val, test, seed, workers)


def _majority(
    y: npt.NDArray[np.int64],
    fold: int,
    train: npt.NDArray[np.int64],
    val: npt.NDArray[np.int64],
    test: npt.NDArray[np.int64],
) -> FoldPrediction:
    freq = np.bincount(y[train], minlength=NUM_CLASSES).astype(np.float64) / train.size
    top = int(np.argmax(freq))
    probs = np.tile(freq, (test.size, 1))
    return FoldPrediction(
        fold=fold,
        test_positions=test,
        probs=probs,
        val_accuracy=_accuracy(y[val], np.full(val.size, top)),
        params={"class": CLASS_CODES[top], "train_frequency": float(freq[top])},
    )


def _features_logreg(
    features: npt.NDArray[Any] | None,
    y: npt.NDArray[np.int64],
    fold: int,
    train: npt.NDArray[np.int64],
    val: npt.NDArray[np.int64],
    test: npt.NDArray[np.int64],
    seed: int,
    workers: int | None,
) -> FoldPrediction:
    if features is None:
        raise BmbenchError("features_logreg needs a feature matrix (see extract_features)")
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != y.size:
        raise BmbenchError(f"features must be (n split rows = {y.size}, d), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise BmbenchError("features hold NaN or infinite values")
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std[std < 1e-12] = 1.0
    z = (x - mean) / std
    present = np.unique(y[train])
    base = {"n_features": int(x.shape[1]), "train_classes": int(present.size), "grid": list(C_GRID)}

    if present.size == 1:  # a single training class: logistic regression is undefined; predict it surely
        probs = np.zeros((test.size, NUM_CLASSES))
        probs[:, present[0]] = 1.0
        return FoldPrediction(
            fold, test, probs, _accuracy(y[val], np.full(val.size, present[0])), {**base, "C": None}
        )

    def full_probs(model: Any, rows: npt.NDArray[np.int64]) -> F64:
        out = np.zeros((rows.size, NUM_CLASSES))
        if rows.size:
            out[:, model.classes_] = model.predict_proba(z[rows])
            out = _normalised(out)
        return out

    best: tuple[float, float, Any, bool] | None = None  # (val accuracy, C, model, converged)
    val_acc: list[float] = []
    grid = C_GRID if val.size else (1.0,)  # without a validation part nothing can be selected: C = 1
    # The grid's fits are independent and single-threaded (same bits in any process): one per CPU.
    fits = map_chunks(_fit_task, [(z[train], y[train], c, seed) for c in grid], workers=workers)
    for c, (model, converged) in zip(grid, fits, strict=True):
        acc = _accuracy(y[val], np.argmax(full_probs(model, val), axis=1))
        val_acc.append(acc)
        if best is None or acc > best[0]:  # ties keep the smaller C
            best = (acc, c, model, converged)
    assert best is not None
    acc, c, model, converged = best
    return FoldPrediction(
        fold=fold,
        test_positions=test,
        probs=full_probs(model, test),
        val_accuracy=acc,
        params={**base, "C": c, "val_accuracy_by_C": val_acc, "converged": converged,
                "n_iter": int(np.max(model.n_iter_))},
    )


def _fit_task(task: tuple[F64, npt.NDArray[np.int64], float, int]) -> tuple[Any, bool]:
    """:func:`_fit_logreg` of one grid point; runs in a worker process."""
    return _fit_logreg(*task)


def _fit_logreg(x: F64, y: npt.NDArray[np.int64], c: float, seed: int) -> tuple[Any, bool]:
    """A class-balanced multinomial (L2, L-BFGS) logistic regression; also whether it converged."""
    from bmbench.extras import require

    require("sklearn", "train", "the features + logistic regression baseline")
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    model = LogisticRegression(C=c, class_weight="balanced", max_iter=MAX_ITER, random_state=seed)
    # One BLAS / OpenMP thread: the same bits whatever the machine, and no collapse when the cores are
    # shared (multi-threaded OpenBLAS ran these small products 20-50x slower on a busy 2-core machine).
    with threadpool_limits(limits=1), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x, y)
    converged = True
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            converged = False  # recorded in the fold's params instead of printed
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return model, converged
