"""The torch probes against their references: scikit-learn (linear, kNN) and a direct numpy SimpleShot.

Small problems only (seconds); the full-size timings are tests/benchmarks/test_probe_speed.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from bmbench.errors import BmbenchError
from bmbench.features import knn as knn_mod
from bmbench.features.fewshot import draw_support, episode_rng, simpleshot_predict
from bmbench.features.knn import knn_votes, sklearn_heap_select
from bmbench.features.linear import dinobloom_c, fit_logistic, objective, search_c
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These problems are tiny: threads only add synchronisation (and stall on a loaded machine)."""
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(previous)


def _blobs(n: int, dim: int, k: int, seed: int, sep: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping, anisotropic, off-centre class clusters (float32), unequal class sizes."""
    rng = np.random.default_rng(seed)
    p = np.linspace(1.0, 0.3, k)
    y = rng.choice(k, size=n, p=p / p.sum())
    means = np.random.default_rng(100 + k).standard_normal((k, dim)) * sep
    scale = (1.0 + np.arange(dim)) ** -0.5
    x = (means[y] + rng.standard_normal((n, dim))) * scale * 3.0 + 0.7
    return x.astype(np.float32), y


def _sklearn(x: np.ndarray, y: np.ndarray, c: float, tol: float) -> LogisticRegression:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LogisticRegression(C=c, solver="lbfgs", tol=tol, max_iter=20_000).fit(x, y)


# ---------------------------------------------------------------------------------------------- linear


@pytest.mark.parametrize("c", [0.05, "dinobloom"])
def test_linear_reaches_sklearns_objective_and_predictions(c: float | str) -> None:
    x, y = _blobs(800, 32, 5, seed=0, sep=0.6)
    x_test, _ = _blobs(1000, 32, 5, seed=1, sep=0.6)
    c = dinobloom_c(32, 5) if c == "dinobloom" else c
    reference = _sklearn(x, y, c, tol=1e-9)
    ref_obj = objective(reference.coef_, reference.intercept_, x, y, c)
    model = fit_logistic(x, y, c)
    assert model.converged and model.extra["stop"] == "gradient"
    ours = objective(model.weight, model.bias, x, y, c)
    assert abs(ours - ref_obj) <= 1e-4 * ref_obj
    assert abs(model.objective - ours) <= 1e-6 * ours  # the recorded objective is the true one
    agree = (model.predict_proba(x_test, 5).argmax(axis=1) == reference.predict(x_test)).mean()
    assert agree >= 0.995
    probs = model.predict_proba(x_test, 5)
    assert np.allclose(probs.sum(axis=1), 1.0)


def test_linear_at_sklearns_default_tol_is_no_worse_than_sklearn() -> None:
    """With the tolerance scikit-learn uses by default, the probe stops at least as low as scikit-learn."""
    x, y = _blobs(800, 32, 5, seed=2, sep=0.6)
    c = dinobloom_c(32, 5)
    reference = _sklearn(x, y, c, tol=1e-4)
    ref_obj = objective(reference.coef_, reference.intercept_, x, y, c)
    model = fit_logistic(x, y, c, tol=1e-4)
    assert model.objective <= ref_obj * (1 + 1e-4)


@pytest.mark.parametrize(("dtype", "precondition"), [("float64", True), ("float32", False)])
def test_linear_other_paths_reach_the_same_optimum(dtype: str, precondition: bool) -> None:
    x, y = _blobs(800, 24, 4, seed=3, sep=0.7)
    c = 0.5
    best = _sklearn(x, y, c, tol=1e-10)
    ref_obj = objective(best.coef_, best.intercept_, x, y, c)
    model = fit_logistic(x, y, c, dtype=dtype, precondition=precondition, max_iter=5000)
    assert abs(model.objective - ref_obj) <= 1e-4 * ref_obj


def test_preconditioning_cuts_iterations_at_weak_l2() -> None:
    x, y = _blobs(1000, 40, 6, seed=4, sep=0.3)
    c = dinobloom_c(40, 6)
    plain = fit_logistic(x, y, c, precondition=False, max_iter=3000)
    fast = fit_logistic(x, y, c)
    assert fast.objective <= plain.objective * (1 + 1e-4)
    assert fast.iterations * 2 < plain.iterations


def test_linear_two_classes_is_sklearns_binomial_model() -> None:
    x, y = _blobs(600, 20, 2, seed=5, sep=0.4)
    c = 0.3
    reference = _sklearn(x, y, c, tol=1e-10)
    assert reference.coef_.shape == (1, 20)  # scikit-learn's binary model: one weight row
    model = fit_logistic(x, y, c)
    ref_obj = objective(np.vstack([np.zeros((1, 20)), reference.coef_]), np.r_[0.0, reference.intercept_], x, y, c)
    assert abs(model.objective - ref_obj) <= 1e-4 * ref_obj
    assert np.allclose(model.predict_proba(x, 2), reference.predict_proba(x), atol=2e-3)


def test_linear_absent_classes_get_probability_zero_and_warm_start_keeps_the_optimum() -> None:
    x, y = _blobs(900, 24, 3, seed=6, sep=0.8)
    labels = np.array([2, 5, 9])[y]
    model = fit_logistic(x, labels, 1.0)
    probs = model.predict_proba(x[:50], 12)
    assert probs.shape == (50, 12)
    assert np.all(probs[:, [0, 1, 3, 4, 6, 7, 8, 10, 11]] == 0)
    reference = _sklearn(x, labels, 1.0, tol=1e-10)
    assert np.allclose(probs[:, [2, 5, 9]], reference.predict_proba(x[:50]), atol=2e-3)
    warm = fit_logistic(x, labels, 1.0, init=model)
    assert warm.iterations <= 2 and abs(warm.objective - model.objective) <= 1e-6 * model.objective


def test_linear_bad_input_is_a_clear_error() -> None:
    x, y = _blobs(50, 8, 3, seed=7)
    for bad in (0.0, -1.0):
        with pytest.raises(BmbenchError, match="C must be > 0") as err:
            fit_logistic(x, y, bad)
        assert err.value.exit_code == 2
    with pytest.raises(BmbenchError, match="float32"):
        fit_logistic(x, y, 1.0, dtype="float16")
    with pytest.raises(BmbenchError, match="no training images"):
        fit_logistic(x[:0], y[:0], 1.0)
    with pytest.raises(BmbenchError, match="n labels"):
        fit_logistic(x, y[:-1], 1.0)


def test_val_search_picks_the_best_c_of_the_grid_on_val() -> None:
    x, y = _blobs(1200, 24, 4, seed=8, sep=0.6)
    x_val, y_val = _blobs(600, 24, 4, seed=9, sep=0.6)
    grid = (1e-4, 1e-2, 1.0, 100.0)
    best, table = search_c(x, y, x_val, y_val, grid, 4)
    assert [row["c"] for row in table] == list(grid)
    scores = {row["c"]: row["val_macro_f1"] for row in table}
    assert best == max(grid, key=lambda c: (scores[c], -c))
    assert scores[1e-4] < scores[best]  # C = 1e-4 shrinks W to ~0: the majority class, a poor macro F1
    # each row scores a fit of that C on train only (cold and warm starts reach the same optimum)
    from sklearn.metrics import f1_score

    cold = fit_logistic(x, y, best)
    f1 = f1_score(y_val, cold.predict_proba(x_val, 4).argmax(axis=1), average="macro", labels=range(4))
    assert abs(f1 - scores[best]) < 0.01
    with pytest.raises(BmbenchError, match="val part"):
        search_c(x, y, x_val[:0], y_val[:0], grid, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_linear_on_cuda_matches_cpu() -> None:
    x, y = _blobs(2000, 64, 6, seed=10, sep=0.6)
    c = dinobloom_c(64, 6)
    cpu, gpu = fit_logistic(x, y, c), fit_logistic(x, y, c, device="cuda")
    assert abs(cpu.objective - gpu.objective) <= 1e-5 * cpu.objective


# ---------------------------------------------------------------------------------------------- kNN


def _assert_knn_equals_sklearn(train: np.ndarray, labels: np.ndarray, query: np.ndarray, metric: str,
                               n_classes: int) -> None:
    ours = knn_votes(train, labels, query, [1, 20], n_classes, metric=metric)
    for k in (1, 20):
        ref = KNeighborsClassifier(n_neighbors=k, metric=metric).fit(train, labels)
        cols = ref.classes_
        assert np.array_equal(ours[k][:, cols], ref.predict_proba(query)), (metric, k)
        assert not ours[k][:, np.setdiff1d(np.arange(n_classes), cols)].any()
        assert np.array_equal(ours[k].argmax(axis=1), ref.predict(query)), (metric, k)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_knn_equals_sklearn_on_continuous_features(metric: str) -> None:
    x, y = _blobs(700, 32, 7, seed=11, sep=0.8)
    dtype = np.float32 if metric == "euclidean" else np.float64  # sklearn's cosine runs in the input dtype
    _assert_knn_equals_sklearn(x[:500].astype(dtype), y[:500], x[500:].astype(dtype), metric, 9)


def _tied_problem(metric: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features on which float64 arithmetic is exact, with duplicate rows and many tied distances.

    Euclidean: integers in {0, 1, 2}. Cosine: 0/1 rows with 1, 4 or 16 ones (norms 1, 2, 4) times 1 or 2,
    so normalised rows and their dot products are exact; plus a zero row (distance 1 to everything).
    More queries than training rows: scikit-learn then searches in training-row order (``parallel_on_X``),
    whatever its thread count (see bmbench.features.knn).
    """
    rng = np.random.default_rng(seed)
    if metric == "euclidean":
        base = rng.integers(0, 3, size=(40, 16)).astype(np.float64)
    else:
        base = np.zeros((40, 16))
        for row, ones in zip(base, rng.choice([1, 4, 16], size=40), strict=True):
            row[rng.choice(16, size=ones, replace=False)] = 1.0
    train = base[rng.integers(0, 40, size=300)]
    train[::5] *= 2  # parallel rows (cosine: the same distances as the halved row)
    train[7] = 0.0
    labels = rng.integers(0, 5, size=300)
    query = np.vstack([base[rng.integers(0, 40, size=400)], np.zeros((1, 16))])
    return train, labels, query


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_knn_equals_sklearn_with_exact_ties(metric: str, monkeypatch: pytest.MonkeyPatch) -> None:
    train, labels, query = _tied_problem(metric, 12)
    if metric == "euclidean":
        dist = ((query[:, None, :] - train[None, :, :]) ** 2).sum(axis=2)
    else:
        norm = lambda a: a / np.where((n := np.linalg.norm(a, axis=1, keepdims=True)) == 0, 1, n)
        dist = np.clip(1 - norm(query) @ norm(train).T, 0, 2)
    ordered = np.sort(dist, axis=1)
    assert (ordered[:, 19] == ordered[:, 20]).sum() > 30  # the k-th distance is tied for many queries
    assert (ordered[:, 0] == ordered[:, 1]).sum() > 30
    monkeypatch.setitem(knn_mod.CHUNK_BYTES, "cpu", 8 * 300 * 17)  # 17 queries per block: several blocks
    _assert_knn_equals_sklearn(train, labels, query, metric, 5)


def test_heap_tie_break_is_not_a_simple_index_order() -> None:
    """Among tied rows the heap keeps neither the lowest indices nor the highest ones."""
    d = np.array([1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 1.0, 2.0, 0.0, 2.0, 2.0, 0.0])
    kept = sorted(sklearn_heap_select(d, 4).tolist())
    ref = KNeighborsClassifier(n_neighbors=4).fit(np.c_[d, np.zeros((12, 15))], np.arange(12))
    sk = np.flatnonzero(ref.predict_proba(np.zeros((20, 16)))[0])  # 20 queries > 12 rows: parallel_on_X
    assert kept == sorted(sk.tolist()) == [0, 4, 8, 11]
    assert kept != sorted(np.argsort(d, kind="stable")[:4].tolist())  # lowest index first: [0, 1, 8, 11]


def test_knn_bad_input() -> None:
    x, y = _blobs(10, 4, 2, seed=13)
    with pytest.raises(BmbenchError, match="unknown kNN metric") as err:
        knn_votes(x, y, x, [1], 2, metric="manhattan")
    assert err.value.exit_code == 2
    with pytest.raises(BmbenchError, match="k = 20 needs at least 20"):
        knn_votes(x, y, x, [1, 20], 2)


# ---------------------------------------------------------------------------------------------- few-shot


def _simpleshot_reference(sx: np.ndarray, sy: np.ndarray, qx: np.ndarray) -> np.ndarray:
    """SimpleShot written out: centre on the support mean, L2-normalise, nearest class mean (Euclidean)."""
    centre = sx.astype(np.float64).mean(axis=0)
    s = sx - centre
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    q = qx - centre
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    classes = np.unique(sy)
    protos = np.stack([s[sy == c].mean(axis=0) for c in classes])
    dist = np.linalg.norm(q[:, None, :] - protos[None, :, :], axis=2)
    return classes[dist.argmin(axis=1)]


def test_simpleshot_equals_the_direct_implementation() -> None:
    x, y = _blobs(900, 32, 8, seed=14, sep=0.7)
    labels = np.where(y == 3, 6, y)  # class 3 has no support image: never predicted
    for episode in range(5):
        support = draw_support(labels[:600], 4, 8, episode_rng(0, 0, 4, episode))
        sx, sy = x[support.positions], labels[support.positions]
        ours = simpleshot_predict(sx, sy, x[600:], 8)
        assert np.array_equal(ours, _simpleshot_reference(sx, sy, x[600:]))
        assert 3 not in ours


def test_support_draws_short_classes_and_seeding() -> None:
    labels = np.array([0] * 30 + [1] * 3 + [2] * 16 + [4] * 1)
    support = draw_support(labels, 16, 5, episode_rng(0, 1, 16, 0))
    counts = np.bincount(labels[support.positions], minlength=5)
    assert counts.tolist() == [16, 3, 16, 0, 1]
    assert support.short == {1: 3, 3: 0, 4: 1}
    assert len(set(support.positions.tolist())) == len(support.positions)  # without replacement
    again = draw_support(labels, 16, 5, episode_rng(0, 1, 16, 0))
    assert np.array_equal(support.positions, again.positions)
    others = [draw_support(labels, 16, 5, episode_rng(*key)).positions for key in
              [(0, 1, 16, 1), (1, 1, 16, 0), (0, 2, 16, 0)]]
    assert all(not np.array_equal(support.positions, o) for o in others)


def test_val_search_fold_refits_the_chosen_c_on_train_plus_val(synthetic_split, tmp_path) -> None:
    """features/probe.py's linear fold with c = "val-search": C from val, then the fit on train + val."""
    from bmbench.classes import NUM_CLASSES
    from bmbench.features.probe import FOLD_PREDICTIONS, FoldData, _linear_fold
    from bmbench.protocols import probe_config

    split = synthetic_split
    rng = np.random.default_rng(15)
    means = rng.standard_normal((NUM_CLASSES, 16))
    features = (means[split.labels] + 1.5 * rng.standard_normal((len(split.labels), 16))).astype(np.float32)
    roles = {role: split.members(0, role) for role in ("train", "val", "test")}
    data = FoldData(fold=0, features=features, **roles)
    config = probe_config({"linear": {"c": "val-search", "c_grid": [1e-4, 1e-2, 1.0]}})
    record = _linear_fold(config, data, split, tmp_path, "cpu", {"id": "test"})
    fit = record.fit
    chosen, _ = search_c(features[roles["train"]], split.labels[roles["train"]], features[roles["val"]],
                         split.labels[roles["val"]], (1e-4, 1e-2, 1.0), NUM_CLASSES)
    assert fit["c"] == chosen and [row["c"] for row in fit["c_search"]] == [1e-4, 1e-2, 1.0]
    trainval = data.trainval
    refit = fit_logistic(features[trainval], split.labels[trainval], chosen)
    assert abs(fit["objective"] - refit.objective) <= 1e-6 * refit.objective
    assert (tmp_path / FOLD_PREDICTIONS).is_file()
