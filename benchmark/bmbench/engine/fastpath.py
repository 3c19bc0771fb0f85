"""The engineering switches of a run, resolved in ONE place: device, backbone and recipe -> :class:`LoopSettings`.

``bmbench run``, ``bmbench lr-find``, ``bmbench pretrain`` and ``bmbench bench`` (its "bmbench path") all call
:func:`settings_for`, so what the bench measures is what a run executes. On CUDA the defaults are the fast
paths that leave the recipe's mathematics alone: bf16 autocast (``precision = "auto"``), channels_last per
backbone (``resources/fast_paths.toml``), ``torch.compile`` of training and evaluation with one static shape,
``cudnn.benchmark``, fused SGD. On a CPU everything falls back to fp32, NCHW, eager.

Static shapes (with compile): the training epoch drops its ragged last batch (fewer than ``batch_size`` of the
epoch's ``len(train)`` class-balanced draws with replacement, i.e. under 0.03 % of a real fold's 109,700
draws; the sampler draws i.i.d., so this is a marginally shorter epoch, not a different distribution);
evaluation pads its last batch and drops the padded rows, so every test image is still predicted.

A ``torch.compile`` that fails (no C compiler, no Python headers, a Triton error) falls back to the eager
model for the rest of the run, and says so (stderr, and ``fold.json``'s ``compile_fallback``).

Nothing here imports pydantic; the recipe is read by attribute.
"""

from __future__ import annotations

import contextlib
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class LoopSettings:
    """What the run decided for this fold: device, precision, layout, compilation, limits, LR, seed."""

    device: torch.device
    epochs: int
    lr: float
    seed: int
    max_steps: int | None = None
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False
    compile_backend: str = "inductor"
    """``inductor`` on a GPU; the device check's CPU smoke uses ``eager`` (dynamo only, no C compiler)."""

    @property
    def static_shapes(self) -> bool:
        """One batch shape for the compiled model: drop the ragged last training batch, pad evaluation."""
        return self.compile

    @property
    def cudnn_benchmark(self) -> bool:
        """Let cuDNN pick the fastest convolution algorithms for the (static) shapes."""
        return self.device.type == "cuda"

    def describe(self) -> dict[str, Any]:
        """The switches as recorded in fold.json and bench JSON."""
        return {"bf16": self.bf16, "channels_last": self.channels_last, "compile": self.compile,
                "cuda_graphs": self.cuda_graphs, "static_shapes": self.static_shapes,
                "cudnn_benchmark": self.cudnn_benchmark, "fused_sgd": self.device.type == "cuda"}


@cache
def _fast_path_table() -> dict[str, Any]:
    text = resources.files("bmbench.resources").joinpath("fast_paths.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def backbone_default(backbone: str, key: str) -> Any:
    """A per-backbone default of ``resources/fast_paths.toml`` (its ``[default]`` for unlisted backbones)."""
    table = _fast_path_table()
    specific = table.get("backbone", {}).get(backbone, {})
    return specific[key] if key in specific else table["default"][key]


def _switch(value: Any, auto: bool) -> bool:
    return auto if value == "auto" else bool(value)


def settings_for(recipe: Any, device: torch.device, *, epochs: int, lr: float, seed: int,
                 max_steps: int | None, backbone: str = "") -> LoopSettings:
    """Resolve the recipe's engineering switches for ``device`` and ``backbone`` (a submission's backbone
    string, e.g. ``torchvision:regnet_y_32gf``; ``model.py`` and unknown ones get the table's default)."""
    cuda = device.type == "cuda"
    graphs = cuda and bool(recipe.cuda_graphs)
    return LoopSettings(
        device=device, epochs=epochs, lr=lr, seed=seed, max_steps=max_steps,
        bf16=cuda and recipe.precision in ("auto", "bf16"),
        channels_last=cuda and _switch(recipe.channels_last, bool(backbone_default(backbone, "channels_last"))),
        compile=cuda and (_switch(recipe.compile, True) or graphs),
        cuda_graphs=graphs)


def make_optimizer(model: nn.Module, recipe: Any, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """SGD with the recipe's momentum and weight decay (fused kernels on CUDA)."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.SGD(params, lr=lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, **fused)


def prepare_device(settings: LoopSettings) -> None:
    """Process-wide switches of the settings (cuDNN autotuning)."""
    if settings.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True


@contextlib.contextmanager
def cpu_threads(loader_workers: int) -> Iterator[int | None]:
    """On a CPU, give the training process the cores its DataLoader workers leave free (restored on exit);
    yields the count set.

    Why: torch's default uses every core for its own OpenMP pool, so on a small machine the pool and the
    workers oversubscribe the cores and every operator waits at its barrier for a descheduled thread (on the
    2-core development machine `demo_cnn` used 2.5x the CPU time per epoch with 2 threads + 2 workers as with
    1 + 2: docs/performance.md, "make demo"). The count does not depend on ``--concurrent-folds`` (the thread
    count changes float rounding, and concurrent folds must give the bytes of a sequential run); set
    ``OMP_NUM_THREADS`` to choose it (then nothing is changed and this yields None). The fold's record states it.
    """
    import os

    from bmbench.parallel import available_cpus

    if os.environ.get("OMP_NUM_THREADS"):
        yield None
        return
    threads = max(1, available_cpus() - max(0, loader_workers))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def _note(message: str) -> None:
    print(f"bmbench: {message}", file=sys.stderr, flush=True)


def _is_compile_failure(exc: BaseException) -> bool:
    """An error of dynamo/inductor/Triton (not of the model or the device: those are re-raised)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return False
    module = type(exc).__module__ or ""
    return (module.startswith(("torch._dynamo", "torch._inductor", "triton", "torch._subclasses"))
            or "compile" in type(exc).__name__.lower() or getattr(exc, "bmbench_compile_failure", False))


class Compiled:
    """``torch.compile(model)`` that falls back to the eager ``model`` when compilation fails.

    Compilation happens at the first call (and on a recompile); a failure there happens before any
    backward pass, so the same batch is simply run eagerly, and so is everything after it.
    """

    def __init__(self, model: nn.Module, compiled: Callable[..., Any], what: str,
                 on_fallback: Callable[[str], None] | None = None) -> None:
        self.model, self.compiled, self.what = model, compiled, what
        self.fallback: str | None = None
        self.on_fallback = on_fallback or (lambda message: _note(message))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - only compile failures fall back; others re-raised
                if not _is_compile_failure(exc):
                    raise
                first = (str(exc).strip().splitlines() or [""])[0][:300]
                self.fallback = f"{type(exc).__name__}: {first}"
                self.compiled = None
                self.on_fallback(f"torch.compile of the {self.what} model failed ({self.fallback}); "
                                 "continuing eagerly (same results, slower)")
        return self.model(*args, **kwargs)

    def train(self, mode: bool = True) -> Compiled:
        self.model.train(mode)
        return self

    def eval(self) -> Compiled:
        self.model.eval()
        return self

    def parameters(self) -> Any:
        return self.model.parameters()


def compile_model(model: nn.Module, settings: LoopSettings, what: str, *, distributed: bool = False,
                  on_fallback: Callable[[str], None] | None = None) -> nn.Module | Compiled:
    """The model to call under ``settings``: compiled (CUDA graphs if asked, single process only) or as is."""
    if not settings.compile:
        return model
    mode = "reduce-overhead" if settings.cuda_graphs and not distributed else None
    try:
        compiled = torch.compile(model, mode=mode, backend=settings.compile_backend)
    except Exception as exc:  # noqa: BLE001 - e.g. an unsupported Python for dynamo: eager, said so
        message = f"torch.compile is unavailable ({type(exc).__name__}: {exc}); running eagerly"
        (on_fallback or _note)(message)
        wrapper = Compiled(model, model, what, on_fallback)
        wrapper.fallback, wrapper.compiled = message, None
        return wrapper
    return Compiled(model, compiled, what, on_fallback)


def compile_fallback(*models: Any) -> str | None:
    """The first recorded compile failure among ``models`` (None when every compile worked or was off)."""
    for model in models:
        if isinstance(model, Compiled) and model.fallback:
            return f"{model.what}: {model.fallback}"
    return None


def micro_batches(n: int, accumulation: int) -> list[int]:
    """Sizes of the micro-batches of an ``n``-image batch: at most ``accumulation`` of them, none of one image
    when ``n`` > 1 (BatchNorm in training mode needs more than one value per channel), sizes within 1 of each
    other. A remainder that would make a micro-batch of one image is merged into fewer micro-batches."""
    parts = max(1, min(accumulation, n // 2)) if n > 1 else 1
    base, extra = divmod(n, parts)
    return [base + (1 if k < extra else 0) for k in range(parts)]
