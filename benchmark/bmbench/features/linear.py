"""The linear probe: multinomial logistic regression on frozen features, full-batch L-BFGS in torch.

The objective is scikit-learn's ``LogisticRegression(C, solver="lbfgs")`` (K >= 3 classes: multinomial, one
weight row per class present in the training labels; 2 classes: its binomial model, one row; intercept not
penalised)::

    F(W, b) = sum_i  -log softmax(W x_i + b)[y_i]  +  ||W||^2 / (2 C)

minimised, as scikit-learn does, in its per-sample form F / n from W = 0, b = 0, and stopped by the same
rule: max |grad(F / n)| over W and b <= ``tol`` (scipy's ``gtol``), or a relative decrease of F / n below
64 machine epsilons (scipy's ``ftol``, as scikit-learn sets it), or ``max_iter`` iterations. The default
``tol`` of the probe is 1e-5, ten times tighter than scikit-learn's 1e-4, because at DinoBloom's weak L2
(C = D x K / 100, :func:`dinobloom_c`) scikit-learn's rule stops far from the optimum.

How it is fast without changing the problem:

* **Preconditioning.** L-BFGS runs on (V, b') with W = V A and b = b' - W mu, where mu is the feature
  mean and A = L^-1 for the Cholesky factor L L^T = S + I / (0.1 C n) of the covariance S of (a sample of)
  the features plus the L2 term.
  This is a linear change of variables: the objective and its unique minimiser are exactly those above,
  the stopping rule is evaluated on the gradient in (W, b), but the curvature L-BFGS sees is close to
  isotropic, so weakly regularised fits converge in tens instead of hundreds of iterations.
* **Precision where it matters.** The features stay float32 (no copy); the two products per evaluation
  (logits ``X W^T`` and gradient ``R^T X``) run in float32 over row blocks, everything else in float64:
  the parameters, the L-BFGS state, log-sum-exp and the loss sum, and the accumulation of the gradient
  over blocks. ``dtype = "float64"`` runs the products in float64 too (the reference). TF32 is switched
  off during the fit.
* Hand-written gradient (no autograd graph), strong-Wolfe line search (``torch.optim.lbfgs``'s), memory
  ``history`` (scipy's default 10), no Python loop over samples; everything on ``device``.

``tests/test_probe_numerics.py`` checks it against scikit-learn; docs/performance.md has the timings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bmbench.errors import BmbenchError

FTOL = 64 * float(np.finfo(np.float64).eps)
"""Relative decrease of F / n below which the fit stops (scikit-learn passes scipy ``ftol = 64 eps``)."""
HESSIAN_SCALE = 0.1
"""Typical p (1 - p) of the softmax: the preconditioner approximates the Hessian as 0.1 S + I / (C n)."""
COVARIANCE_ROWS = 16_384
"""Rows sampled (evenly spaced) to estimate the feature covariance for the preconditioner."""
BLOCK_ROWS = {"cpu": 8_192, "cuda": 65_536}
"""Rows per float32 product; the block results are summed in float64."""
MAX_LS = 25
"""Function evaluations per strong-Wolfe line search (torch's default)."""


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

    if dtype not in ("float32", "float64"):
        raise BmbenchError(f"the linear probe computes in 'float32' or 'float64', not {dtype!r}", exit_code=2)
    return {"float32": torch.float32, "float64": torch.float64}[dtype]


@dataclass
class _Problem:
    """The data and the change of variables of one fit; :meth:`evaluate` is F / n and its gradients."""

    x: Any  # (n, D) features in the compute dtype
    y: Any  # (n,) class positions
    penalty: float  # 1 / (C n): the L2 term of F / n is penalty / 2 * ||W||^2
    binary: bool  # scikit-learn's binomial model: one free row, logits (0, z)
    mean: Any  # (D,) float64
    precond: Any  # A, (D, D) float64: W = V A
    precond_inv: Any  # A^-1
    block: int

    def weights(self, v: Any) -> Any:
        return v @ self.precond

    def evaluate(self, v: Any, b_shift: Any) -> tuple[float, Any, Any, Any, Any]:
        """F / n at (V, b'); its gradient in (V, b'), and the gradient in the original (W, b)."""
        import torch

        w = self.weights(v)
        bias = b_shift - w @ self.mean
        w_c = w.to(self.x.dtype)
        n = self.x.shape[0]
        loss = torch.zeros((), dtype=torch.float64, device=v.device)
        grad_w = torch.zeros_like(w)
        grad_b = torch.zeros_like(bias)
        for lo in range(0, n, self.block):
            xb = self.x[lo:lo + self.block]
            yb = self.y[lo:lo + self.block]
            z = (xb @ w_c.T).to(torch.float64) + bias
            if self.binary:
                z = torch.cat([torch.zeros_like(z), z], dim=1)
            log_p = torch.log_softmax(z, dim=1)
            loss -= log_p.gather(1, yb[:, None]).sum()
            r = log_p.exp_()
            r[torch.arange(len(yb), device=r.device), yb] -= 1.0
            if self.binary:
                r = r[:, 1:]
            grad_w += (r.T.to(self.x.dtype) @ xb).to(torch.float64)
            grad_b += r.sum(dim=0)
        value = float(loss) / n + 0.5 * self.penalty * float((w * w).sum())
        grad_w = grad_w / n + self.penalty * w  # dF/dW at fixed b
        grad_b = grad_b / n
        grad_v = (grad_w - grad_b[:, None] * self.mean[None, :]) @ self.precond.T  # at fixed b' = b + W mu
        return value, grad_v, grad_b, grad_w, bias


def _preconditioner(x: Any, penalty: float, precondition: bool) -> tuple[Any, Any, Any]:
    """Feature mean, A = L^-1 and A^-1 = L (float64) for L L^T = S + I / (0.1 C n); identity when off.

    With W = V A the curvature in V is about A (0.1 S + I / (C n)) A^T, i.e. isotropic. A Cholesky factor
    (D^3 / 3) costs a tenth of an eigendecomposition; the covariance comes from at most
    :data:`COVARIANCE_ROWS` evenly spaced rows, in float32 products summed in float64.
    """
    import torch

    n, dim = x.shape
    eye = torch.eye(dim, dtype=torch.float64, device=x.device)
    mean = torch.zeros(dim, dtype=torch.float64, device=x.device)
    for lo in range(0, n, 65_536):
        mean += x[lo:lo + 65_536].to(torch.float64).sum(dim=0)
    mean /= n
    if not precondition:
        return mean, eye, eye
    rows = torch.linspace(0, n - 1, min(n, COVARIANCE_ROWS), device=x.device).round().long()
    sample = (x[rows].to(torch.float64) - mean).to(x.dtype)
    cov = (sample.T @ sample).to(torch.float64) / len(rows)
    ridge = max(penalty / HESSIAN_SCALE, 1e-10 * float(cov.diagonal().max()), 1e-300)
    factor = torch.linalg.cholesky(cov + ridge * eye)
    return mean, torch.linalg.solve_triangular(factor, eye, upper=False), factor


class _Tf32Off:
    """Full float32 matrix products during the fit, whatever the process set (TF32 would cost 1e-3)."""

    def __enter__(self) -> None:
        import torch

        self.previous = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_float32_matmul_precision(self.previous)


def _lbfgs(evaluate: Callable[[Any], tuple[float, Any, float]], theta: Any, *, max_iter: int, tol: float,
           history: int) -> tuple[Any, float, float, int, int, str]:
    """Minimise with L-BFGS (two-loop recursion) and torch's strong-Wolfe line search.

    ``evaluate(theta) -> (f, grad, stop_grad_max)``; ``stop_grad_max`` is what ``tol`` is compared with (the
    gradient in the original parameters). Returns theta, f, stop_grad_max, iterations, evaluations, why.
    """
    from torch.optim.lbfgs import _strong_wolfe

    f, g, gmax = evaluate(theta)
    evaluations, iterations = 1, 0
    if gmax <= tol:
        return theta, f, gmax, 0, 1, "gradient"
    steps: list[tuple[Any, Any, float]] = []  # (s, y, 1 / y.s)
    gamma = 1.0
    last: dict[str, Any] = {}

    def obj_func(x: Any, t: float, d: Any) -> tuple[float, Any]:
        value, grad, stop = evaluate(x + t * d)
        last[float(t)] = stop
        return value, grad

    while iterations < max_iter:
        q = -g
        alphas = []
        for s, yv, rho in reversed(steps):
            a = rho * float(s @ q)
            q -= a * yv
            alphas.append(a)
        q *= gamma
        for (s, yv, rho), a in zip(steps, reversed(alphas), strict=True):
            q += (a - rho * float(yv @ q)) * s
        d = q
        gtd = float(g @ d)
        if gtd > -1e-300:  # not a descent direction (numerical breakdown): restart from the gradient
            steps.clear()
            d, gtd = -g, -float(g @ g)
        t = min(1.0, 1.0 / float(g.abs().sum())) if iterations == 0 else 1.0
        last.clear()
        f_new, g_new, t, ls_evals = _strong_wolfe(obj_func, theta, t, d, f, g, gtd, max_ls=MAX_LS)
        evaluations += int(ls_evals)
        iterations += 1
        if not f_new < f:
            return theta, f, gmax, iterations, evaluations, "line search found no decrease"
        s = t * d
        theta = theta + s
        yv = g_new - g
        ys = float(yv @ s)
        if ys > 1e-10:
            if len(steps) == history:
                steps.pop(0)
            steps.append((s, yv, 1.0 / ys))
            gamma = ys / float(yv @ yv)
        decrease = (f - f_new) / max(abs(f), abs(f_new), 1.0)
        f, g, gmax = f_new, g_new, last.get(float(t), gmax)
        if gmax <= tol:
            return theta, f, gmax, iterations, evaluations, "gradient"
        if decrease <= FTOL:
            return theta, f, gmax, iterations, evaluations, "relative decrease below ftol"
    return theta, f, gmax, iterations, evaluations, "max_iter"


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float, *, max_iter: int = 1000, tol: float = 1e-5,
                 history: int = 10, device: Any = "cpu", dtype: str = "float32",
                 init: LinearModel | None = None, precondition: bool = True) -> LinearModel:
    """Fit the logistic regression on ``x`` (n, D) with labels ``y`` (class indices).

    ``init`` warm-starts from another fit on the same labels (the C search). Everything runs on ``device``;
    ``precondition = False`` runs plain L-BFGS on (W, b) (same objective, many more iterations).
    """
    import torch

    if not c > 0:
        raise BmbenchError(f"the linear probe's C must be > 0, got {c}", exit_code=2)
    started = time.perf_counter()
    classes, y_compact = np.unique(np.asarray(y), return_inverse=True)
    x = np.asarray(x)
    if x.ndim != 2 or len(x) != len(y_compact):
        raise BmbenchError(f"the linear probe needs features (n, D) and n labels; got features {x.shape} and "
                           f"{len(y_compact)} labels", exit_code=2)
    n, dim = x.shape
    if n == 0:
        raise BmbenchError("the linear probe has no training images in this fold", exit_code=2)
    if len(classes) == 1:  # one class: scikit-learn refuses; the only sensible model predicts it
        return LinearModel(np.zeros((1, dim)), np.zeros(1), classes, c, 0, 0, 0.0, 0.0, True,
                           time.perf_counter() - started, {"stop": "one class"})
    tdtype = _torch_dtype(dtype)
    device = torch.device(device)
    binary = len(classes) == 2
    rows = 1 if binary else len(classes)
    with _Tf32Off(), torch.no_grad():
        xt = torch.as_tensor(np.ascontiguousarray(x), device=device).to(tdtype)
        yt = torch.as_tensor(y_compact, device=device, dtype=torch.long)
        penalty = 1.0 / (c * n)
        mean, precond, precond_inv = _preconditioner(xt, penalty, precondition)
        problem = _Problem(x=xt, y=yt, penalty=penalty, binary=binary, mean=mean, precond=precond,
                           precond_inv=precond_inv, block=BLOCK_ROWS.get(device.type, BLOCK_ROWS["cpu"]))
        w0 = torch.zeros(rows, dim, dtype=torch.float64, device=device)
        b0 = torch.zeros(rows, dtype=torch.float64, device=device)
        if init is not None and np.array_equal(init.classes, classes):
            w0 = torch.as_tensor(init.weight[-rows:], dtype=torch.float64, device=device)
            b0 = torch.as_tensor(init.bias[-rows:], dtype=torch.float64, device=device)
        theta0 = torch.cat([(w0 @ precond_inv).flatten(), b0 + w0 @ mean])

        def split(theta: Any) -> tuple[Any, Any]:
            return theta[:rows * dim].view(rows, dim), theta[rows * dim:]

        def evaluate(theta: Any) -> tuple[float, Any, float]:
            value, grad_v, grad_b, grad_w, _ = problem.evaluate(*split(theta))
            stop = max(float(grad_w.abs().max()), float(grad_b.abs().max()))
            return value, torch.cat([grad_v.flatten(), grad_b]), stop

        theta, value, gmax, iterations, evaluations, why = _lbfgs(evaluate, theta0, max_iter=max_iter, tol=tol,
                                                                   history=history)
        v, b_shift = split(theta)
        w = problem.weights(v)
        b = b_shift - w @ mean
    weight, bias = w.cpu().numpy(), b.cpu().numpy()
    if binary:  # scikit-learn's binomial model as a softmax over (0, z)
        weight = np.vstack([np.zeros((1, dim)), weight])
        bias = np.concatenate([[0.0], bias])
    return LinearModel(weight=weight, bias=bias, classes=classes, c=float(c), iterations=iterations,
                       evaluations=evaluations, objective=value * n, grad_max=gmax, converged=gmax <= tol,
                       seconds=time.perf_counter() - started,
                       extra={"stop": why, "tol": tol, "compute_dtype": dtype, "preconditioned": precondition,
                              "model": "binomial" if binary else "multinomial"})


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
