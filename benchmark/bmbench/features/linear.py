"""The linear probe: multinomial logistic regression on frozen features, full-batch L-BFGS in torch.

The objective is scikit-learn's ``LogisticRegression(C, solver="lbfgs")`` (multinomial, one weight row per
class present in the training labels, intercept not penalised)::

    F(W, b) = sum_i  -log softmax(W x_i + b)[y_i]  +  ||W||^2 / (2 C)

minimised, as scikit-learn does, in its per-sample form F / n from W = 0, b = 0 with L-BFGS (memory 10) and
the stopping rule max |grad(F / n)| <= tol (default 1e-5, ten times tighter than scikit-learn's 1e-4: on
ill-conditioned problems both stop short of the optimum, and the probe must reach at least scikit-learn's
objective), at most ``max_iter`` iterations. DinoBloom's constant is C = D x K / 100 (:func:`dinobloom_c`).
Running it in torch puts the whole fit on the accelerator; on a CPU it is compared with scikit-learn in
docs/performance.md. ``tests/test_probes.py`` checks that it reaches scikit-learn's objective.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bmbench.errors import BmbenchError


TOL_CHANGE = 1
"""L-BFGS also stops when the mean objective changes by less than TOL_CHANGE x machine epsilon of the dtype."""


def dinobloom_c(dim: int, n_classes: int) -> float:
    """DinoBloom's inverse L2 strength: ``1 / (100 / (D x K))`` with K the classes in the training labels."""
    return dim * n_classes / 100.0


@dataclass(frozen=True)
class LinearModel:
    """A fitted probe: weights of the classes present in training, and how the fit went."""

    weight: np.ndarray
    bias: np.ndarray
    classes: np.ndarray
    c: float
    iterations: int
    evaluations: int
    objective: float
    grad_max: float
    converged: bool
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """``x W^T + b`` in float64 for the present classes."""
        return np.asarray(x, dtype=np.float64) @ self.weight.T.astype(np.float64) + self.bias.astype(np.float64)

    def predict_proba(self, x: np.ndarray, n_classes: int) -> np.ndarray:
        """Softmax probabilities over all ``n_classes`` (0 for classes absent from the training labels)."""
        z = self.logits(x)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        out = np.zeros((len(p), n_classes), dtype=np.float64)
        out[:, self.classes] = p
        return out

    def describe(self) -> dict[str, Any]:
        """What run.json records about the fit."""
        return {"c": self.c, "iterations": self.iterations, "function_evaluations": self.evaluations,
                "objective": self.objective, "max_abs_gradient": self.grad_max, "converged": self.converged,
                "classes_fitted": int(len(self.classes)), "seconds": self.seconds, **self.extra}


def objective(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray, c: float) -> float:
    """scikit-learn's objective (sum of log losses + ||W||^2 / 2C) in float64; ``y`` indexes rows of ``weight``."""
    z = np.asarray(x, dtype=np.float64) @ np.asarray(weight, dtype=np.float64).T + np.asarray(bias, np.float64)
    zmax = z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z - zmax).sum(axis=1)) + zmax[:, 0]
    loss = float((log_norm - z[np.arange(len(z)), y]).sum())
    return loss + float((np.asarray(weight, np.float64) ** 2).sum()) / (2.0 * c)


def _torch_dtype(dtype: str) -> Any:
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[dtype]


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float, *, max_iter: int = 1000, tol: float = 1e-5,
                 history: int = 10, device: Any = "cpu", dtype: str = "float32",
                 init: LinearModel | None = None) -> LinearModel:
    """Fit the multinomial logistic regression on ``x`` (n, D) with labels ``y`` (class indices).

    ``init`` warm-starts from another fit on the same labels (the C search). Everything runs on ``device``.
    """
    import torch
    import torch.nn.functional as F

    if not c > 0:
        raise BmbenchError(f"the linear probe's C must be > 0, got {c}", exit_code=2)
    started = time.perf_counter()
    classes, y_compact = np.unique(np.asarray(y), return_inverse=True)
    n, dim = x.shape
    if n == 0:
        raise BmbenchError("the linear probe has no training images in this fold", exit_code=2)
    if len(classes) == 1:  # one class: scikit-learn refuses; the only sensible model predicts it
        return LinearModel(np.zeros((1, dim)), np.zeros(1), classes, c, 0, 0, 0.0, 0.0, True,
                           time.perf_counter() - started)
    tdtype = _torch_dtype(dtype)
    xt = torch.as_tensor(np.ascontiguousarray(x), device=device).to(tdtype)
    yt = torch.as_tensor(y_compact, device=device, dtype=torch.long)
    if init is not None and np.array_equal(init.classes, classes):
        w0, b0 = torch.as_tensor(init.weight), torch.as_tensor(init.bias)
    else:
        w0, b0 = torch.zeros(len(classes), dim), torch.zeros(len(classes))
    weight = w0.to(device=device, dtype=tdtype).clone().requires_grad_(True)
    bias = b0.to(device=device, dtype=tdtype).clone().requires_grad_(True)
    eps = float(torch.finfo(tdtype).eps)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, max_eval=max_iter * 5 // 4 + 20,
                                  tolerance_grad=tol, tolerance_change=TOL_CHANGE * eps, history_size=history,
                                  line_search_fn="strong_wolfe")
    penalty = 1.0 / (2.0 * c * n)

    def closure() -> Any:
        optimizer.zero_grad(set_to_none=False)
        loss = F.cross_entropy(torch.addmm(bias, xt, weight.T), yt) + penalty * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    final = float(closure().detach())  # the objective and gradient at the solution, for the record
    grad_max = float(max(weight.grad.abs().max(), bias.grad.abs().max()))
    state = optimizer.state[optimizer.param_groups[0]["params"][0]]
    w = weight.detach().to("cpu", torch.float64).numpy()
    b = bias.detach().to("cpu", torch.float64).numpy()
    return LinearModel(weight=w, bias=b, classes=classes, c=float(c), iterations=int(state.get("n_iter", 0)),
                       evaluations=int(state.get("func_evals", 0)), objective=final * n,
                       grad_max=grad_max, converged=grad_max <= tol, seconds=time.perf_counter() - started)


def search_c(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
             grid: Sequence[float], n_classes: int, **fit: Any) -> tuple[float, list[dict[str, Any]]]:
    """``c = "val-search"``: fit on train for each C of ``grid`` (ascending, warm-started), score on val.

    The criterion is macro F1 on the val part (the board's headline metric, computed by the scorer's
    :func:`bmbench.scoring.metrics.fold_metrics`); ties go to the smaller C (stronger regularisation).
    """
    from bmbench.scoring.metrics import confusion_matrix, fold_metrics

    if len(y_val) == 0:
        raise BmbenchError("c = 'val-search' needs a val part in every fold, and this split's fold has none; use "
                           "c = 'dinobloom' or a number in [probe.linear]", exit_code=2)
    table: list[dict[str, Any]] = []
    previous: LinearModel | None = None
    for c in sorted(grid):
        model = fit_logistic(x_train, y_train, c, init=previous, **fit)
        pred = model.predict_proba(x_val, n_classes).argmax(axis=1)
        m = fold_metrics(confusion_matrix(np.asarray(y_val), pred, n_classes))
        table.append({"c": float(c), "val_macro_f1": m.macro_f1, "val_accuracy": m.accuracy,
                      "iterations": model.iterations, "converged": model.converged})
        previous = model
    best = max(table, key=lambda row: (row["val_macro_f1"], -row["c"]))
    return float(best["c"]), table
