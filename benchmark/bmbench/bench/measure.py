"""What ``bmbench bench`` measures, and how.

Two paths, side by side in one process on one device:

* ``plain``: the reference: :class:`PlainDataPath` (DataLoader, Pillow decoding, torchvision transforms),
  float32, NCHW, eager, PyTorch's default SGD;
* ``bmbench``: exactly what ``bmbench run`` executes for the backbone: :class:`GpuDataPath` (cached images,
  augmentation on the device) and the switches :func:`bmbench.engine.fastpath.settings_for` derives from the
  recipe (bf16 autocast, the backbone's layout, torch.compile of training and evaluation with static shapes,
  cudnn.benchmark, fused SGD). ``--layouts both`` adds the other layout, ``--cuda-graphs`` the same with CUDA
  graphs, ``--compile/--no-compile`` overrides compilation; such variants are labelled. On a CPU the GPU-only
  switches fall back exactly as in training (fp32, NCHW, eager).

For each: data-only throughput (batches produced and moved to the device, no model), training steps (the
training loop's own ``_train_epoch`` on a stream of batches: warm-up steps first, compilation included there,
then ``steps`` timed steps), evaluation (forward only, ``max(batch, 64)`` per batch), peak device memory, and
the model FLOPs utilisation: FLOPs of one training step counted with ``FlopCounterMode``, times steps per
second, over the device's dense bf16 peak (``resources/peak_flops.toml``; unknown elsewhere).
"""

from __future__ import annotations

import copy
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import resources
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from bmbench.errors import BmbenchError, RunFailure

PLAIN = "plain"
BMBENCH = "bmbench"
PAPER_BACKBONES = ("torchvision:vgg19_bn", "torchvision:resnet152", "torchvision:regnet_y_32gf",
                   "torchvision:vit_l_32")
CPU_DEFAULT_BACKBONE = "torchvision:resnet18"
BENCH_LR = 1e-3
BARRIER_ENV = "BMBENCH_BENCH_BARRIER"
PARTIES_ENV = "BMBENCH_BENCH_PARTIES"
BATCH_PROBE = (32, 64, 128, 256, 512, 1024, 2048)
MEMORY_HEADROOM = 0.85
"""``--batch max`` keeps the largest batch whose eager step peaks below this fraction of the device memory."""


@dataclass(frozen=True)
class BenchOptions:
    """Everything ``bmbench bench`` lets a user choose."""

    backbones: tuple[str, ...] = ()
    batch: int | str = 32
    device: str = "auto"
    steps: int = 20
    warmup: int | None = None
    eval_steps: int | None = None
    data: str | None = "synthetic"
    images: int | None = None
    compile: bool | None = None
    layouts: str = "auto"
    cuda_graphs: bool = False
    paths: tuple[str, ...] = (PLAIN, BMBENCH)
    concurrent: int = 1
    only_train: bool = False
    seed: int = 0
    compile_backend: str = "inductor"
    """``eager`` traces with dynamo but generates no code (the device check's CPU smoke)."""
    image_size: int | None = None
    """Train and evaluate at this size instead of the recipe's (the device check's CPU smoke: toy sizes)."""
    eval_as_run_only: bool = False
    """Time evaluation only for the variant a run executes (each other compiled variant costs a compile)."""


@dataclass(frozen=True)
class Variant:
    """One configuration of a path: what the loop's switches are for it."""

    path: str
    layout: str
    bf16: bool
    compile: bool
    cuda_graphs: bool
    as_run: bool = False
    """The bmbench variant with exactly the switches ``bmbench run`` uses for this backbone."""

    @property
    def label(self) -> str:
        if self.path == PLAIN:
            return PLAIN
        graphs = " + CUDA graphs" if self.cuda_graphs else ""
        return f"{BMBENCH} ({'NCHW' if self.layout == 'nchw' else 'channels_last'}{graphs})"

    def settings(self, device: Any, seed: int = 0, backend: str = "inductor") -> Any:
        """The loop settings of this variant (for the run's variant: what ``settings_for`` resolved)."""
        from bmbench.engine.fastpath import LoopSettings

        return LoopSettings(device=device, epochs=1, lr=BENCH_LR, seed=seed, bf16=self.bf16,
                            channels_last=self.layout == "channels_last", compile=self.compile,
                            cuda_graphs=self.cuda_graphs, compile_backend=backend)


@dataclass
class BenchData:
    """The images both paths read: the cache of every image in the data folder, tiled to ``positions``."""

    cache: Any
    paths: list[Path]
    rows: np.ndarray
    synthetic: bool
    dataset: str
    root: str

    @property
    def positions(self) -> np.ndarray:
        return np.arange(len(self.rows), dtype=np.int64)


# ---------------------------------------------------------------------------------------------------
# Device facts
# ---------------------------------------------------------------------------------------------------


def peak_bf16_flops(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s of a device from ``resources/peak_flops.toml`` (None when not listed)."""
    text = resources.files("bmbench.resources").joinpath("peak_flops.toml").read_text(encoding="utf-8")
    for entry in tomllib.loads(text)["device"]:
        if entry["match"] in device_name:
            return float(entry["bf16_tflops"]) * 1e12
    return None


def device_name(device: Any) -> str:
    import platform

    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: Any) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    try:
        torch._dynamo.reset()
    except Exception:  # noqa: BLE001 - dynamo may be unavailable; nothing to free then
        pass


# ---------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------


def resolve_backbone(spec: str) -> tuple[str, str, Path | None, Any]:
    """``(label, backbone, folder, Recipe)`` for ``torchvision:NAME``, ``timm:NAME``, a submission name or
    folder (its recipe and model.py are used), or a bare torchvision model name."""
    from bmbench.recipe_defaults import paper_recipe

    if ":" not in spec:
        from bmbench.submissions.registry import resolve_submission

        try:
            loaded = resolve_submission(spec)
        except BmbenchError:
            spec = f"torchvision:{spec}"
        else:
            if loaded.submission.kind == "baseline":
                raise BmbenchError(f"{spec} is a baseline: there is no network to benchmark")
            return loaded.submission.name, str(loaded.submission.backbone), loaded.folder, loaded.submission.recipe
    return spec, spec, None, paper_recipe()


def build_model(backbone: str, folder: Path | None) -> Any:
    """The network with a 21-unit head, random weights: bmbench's builder, or (no pydantic on a bare GPU
    machine) torchvision's / timm's own for ``torchvision:``/``timm:`` names (the same architectures)."""
    try:
        from bmbench.models.backbones import build_backbone
    except ImportError:
        kind, _, arch = backbone.partition(":")
        if kind == "torchvision":
            import torchvision

            return torchvision.models.get_model(arch, weights=None, num_classes=21)
        if kind == "timm":
            import timm

            return timm.create_model(arch, pretrained=False, num_classes=21)
        raise
    return build_backbone(backbone, 21, folder)


def prepare_data(options: BenchOptions, progress: Callable[[str, int], Callable[[int], None]] | None = None,
                 ) -> BenchData:
    """Open (building on first use) the cache of every image of ``--data``, tiled to ``--images``."""
    from bmbench.data.cache import cache_status, ensure_cache, rows_for_index
    from bmbench.data.layout import scan_data
    from bmbench.data.source import resolve_data
    from bmbench.splits.store import load_split, split_for_dataset

    index = scan_data(resolve_data(options.data))
    if not index.records:
        raise BmbenchError(f"{index.root} holds no images")
    # the cache `bmbench data cache --all-images` builds (for the complete BM data: the one runs read)
    rows = rows_for_index(index, load_split(split_for_dataset(index.dataset.id).name))
    advance = progress("decoding images into the cache", len(rows)) if progress and cache_status(rows) != "ok" \
        else None
    cache = ensure_cache(rows, progress=advance)
    n = options.images or len(rows)
    tiled = np.resize(np.arange(len(rows), dtype=np.int64), n)  # repeats the rows when n > len(rows)
    return BenchData(cache=cache, paths=[rows.paths[r] for r in tiled], rows=tiled,
                     synthetic=index.dataset.synthetic, dataset=index.dataset.id, root=str(index.root))


def variants(options: BenchOptions, backbone: str, device: Any, recipe: Any = None) -> list[Variant]:
    """The configurations to time for one backbone: plain first, then the run's own bmbench path, then the
    variants asked for (the other layout, CUDA graphs)."""
    from bmbench.engine.fastpath import settings_for
    from bmbench.recipe_defaults import paper_recipe

    cuda = device.type == "cuda"
    out: list[Variant] = []
    if PLAIN in options.paths:
        out.append(Variant(PLAIN, "nchw", bf16=False, compile=False, cuda_graphs=False))
    if BMBENCH not in options.paths:
        return out
    if options.layouts not in ("auto", "both", "channels_last", "nchw"):
        raise BmbenchError(f"--layouts must be auto, both, channels_last or nchw, not {options.layouts!r}")
    run = settings_for(recipe if recipe is not None else paper_recipe(), device, epochs=1, lr=BENCH_LR, seed=0,
                       max_steps=None, backbone=backbone)
    compile_on = run.compile if options.compile is None else bool(options.compile) and (cuda or
                                                                                         options.compile_backend == "eager")
    own = "channels_last" if run.channels_last else "nchw"
    other = "nchw" if own == "channels_last" else "channels_last"
    layouts = {"auto": [own], "both": [own, other], "channels_last": ["channels_last"], "nchw": ["nchw"]}
    for layout in layouts[options.layouts] if cuda else ["nchw"]:
        graph_modes = [run.cuda_graphs] + ([not run.cuda_graphs] if options.cuda_graphs and cuda and compile_on
                                          else [])
        for graphs in graph_modes:
            # on CPU the one bmbench variant is the run's path (a CPU smoke forces the eager compile backend)
            as_run = layout == own and graphs == run.cuda_graphs and (compile_on == run.compile or not cuda)
            out.append(Variant(BMBENCH, layout, bf16=run.bf16, compile=compile_on or graphs, cuda_graphs=graphs,
                               as_run=as_run))
    return out


# ---------------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------------


def make_datapath(variant: Variant, recipe: Any, data: BenchData, device: Any, seed: int) -> Any:
    from bmbench.classes import NUM_CLASSES
    from bmbench.datapaths.plain import PlainDataPath
    from bmbench.datapaths.gpu import GpuDataPath

    labels = np.asarray(data.cache.labels, dtype=np.int64)[data.rows]
    if variant.path == PLAIN:
        return PlainDataPath(recipe, data.paths, labels, NUM_CLASSES, seed=seed, fold=0,
                             pin_memory=device.type == "cuda")
    return GpuDataPath(recipe, data.cache, NUM_CLASSES, seed=seed, fold=0, device=device,
                       channels_last=variant.layout == "channels_last" and device.type == "cuda", rows=data.rows)


def endless_batches(datapath: Any, positions: np.ndarray) -> Iterator[Any]:
    """Training batches epoch after epoch (a benchmark may need more steps than one epoch holds)."""
    epoch = 0
    while True:
        yield from datapath.train_batches(positions, epoch)
        epoch += 1


def measure_data_only(datapath: Any, positions: np.ndarray, device: Any, warmup: int, steps: int,
                      channels_last: bool) -> dict[str, Any]:
    """Batches per second of a data path alone (produced and on the device), in images/s."""
    import torch

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    batches = endless_batches(datapath, positions)
    for images, _ in islice(batches, warmup):
        images.to(device, non_blocking=True, memory_format=fmt)
    _sync(device)
    started, seen = time.perf_counter(), 0
    for images, labels in islice(batches, steps):
        images.to(device, non_blocking=True, memory_format=fmt)
        labels.to(device, non_blocking=True)
        seen += int(labels.shape[0])
    _sync(device)
    seconds = time.perf_counter() - started
    return {"images_per_s": seen / seconds, "seconds": seconds, "images": seen}


def count_step_flops(model: Any, batch: int, size: int, device: Any) -> float:
    """FLOPs of one training step (forward + backward) of ``model`` on ``batch`` images, FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 21, (batch,), device=device)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def _barrier() -> None:
    """With ``$BMBENCH_BENCH_BARRIER`` set (concurrent runs), wait until every party has warmed up."""
    folder, parties = os.environ.get(BARRIER_ENV), int(os.environ.get(PARTIES_ENV, "1"))
    if not folder or parties <= 1:
        return
    Path(folder, f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + 900
    while len(list(Path(folder).glob("ready-*"))) < parties:
        if time.monotonic() > deadline:
            raise RunFailure("concurrent benchmark: the other processes did not get ready within 15 minutes")
        time.sleep(0.05)


def build_step_model(model: Any, variant: Variant, device: Any, settings: Any = None) -> tuple[Any, Any]:
    """``(model on the device, model to call)``: the layout, and torch.compile (with the loop's fall-back to
    eager when compilation fails), exactly as ``train_fold`` prepares them."""
    import torch

    from bmbench.engine.fastpath import compile_model, prepare_device

    settings = settings if settings is not None else variant.settings(device)
    prepare_device(settings)
    model = model.to(device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, compile_model(model, settings, "training")


def measure_training(model: Any, step_model: Any, datapath: Any, positions: np.ndarray, recipe: Any,
                     variant: Variant, device: Any, warmup: int, steps: int,
                     backend: str = "inductor") -> dict[str, Any]:
    """Images/s, step time and peak memory of ``steps`` training steps after ``warmup`` (compile) steps."""
    import torch

    from bmbench.engine.loop import NoProgress, _train_epoch, make_optimizer

    settings = variant.settings(device, backend=backend)
    if variant.path == PLAIN:  # PyTorch's default SGD (foreach), as a plain script would use
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=BENCH_LR,
                                    momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    else:
        optimizer = make_optimizer(model, recipe, BENCH_LR, device)
    batches = endless_batches(datapath, positions)
    started = time.perf_counter()
    if warmup > 0:  # compilation happens here (--warmup 0: it is timed with the steps)
        _train_epoch(step_model, islice(batches, warmup), optimizer, recipe, settings, NoProgress())
    _sync(device)
    warmup_s = time.perf_counter() - started
    _barrier()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    _, _, seen = _train_epoch(step_model, islice(batches, steps), optimizer, recipe, settings, NoProgress())
    _sync(device)
    seconds = time.perf_counter() - started
    out = {"images_per_s": seen / seconds, "step_ms": 1000 * seconds / steps, "seconds": seconds, "images": seen,
           "warmup": warmup, "warmup_s": warmup_s, "batch": int(recipe.batch_size)}
    out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del optimizer
    return out


def measure_eval(model: Any, datapath: Any, positions: np.ndarray, variant: Variant, device: Any, warmup: int,
                 steps: int, backend: str = "inductor") -> dict[str, Any]:
    """Forward-only images/s on evaluation batches: the loop's ``evaluate`` on the model a run evaluates
    with (compiled when the variant compiles, static shape padded as in a run)."""
    from bmbench.engine.fastpath import compile_model
    from bmbench.engine.loop import eval_batch_size, evaluate

    settings = variant.settings(device, backend=backend)
    eval_model = compile_model(model, settings, "evaluation")
    per_batch = eval_batch_size(datapath.recipe)
    pad_to = per_batch if settings.static_shapes else None
    take = positions[: per_batch * (warmup + steps)]
    batches = iter(datapath.eval_batches(take))
    started = time.perf_counter()
    if warmup:
        evaluate(eval_model, islice(batches, warmup), settings, pad_to=pad_to)
    _sync(device)
    warmup_s = time.perf_counter() - started
    started = time.perf_counter()
    evaluate(eval_model, islice(batches, steps), settings, pad_to=pad_to)
    _sync(device)
    seconds = time.perf_counter() - started
    seen = min(len(take) - per_batch * warmup, per_batch * steps)
    out = {"images_per_s": seen / seconds, "seconds": seconds, "images": seen, "warmup": warmup, "warmup_s": warmup_s}
    fallback = getattr(eval_model, "fallback", None)
    if fallback:
        out["compile_fallback"] = fallback
    return out


def largest_batch(model: Any, variant: Variant, device: Any, size: int) -> int:
    """The largest batch of :data:`BATCH_PROBE` for which an eager training step fits (CUDA only)."""
    import torch

    if device.type != "cuda":
        return BATCH_PROBE[0]
    fmt = torch.channels_last if variant.layout == "channels_last" else torch.contiguous_format
    total = torch.cuda.get_device_properties(device).total_memory
    best = BATCH_PROBE[0]
    for batch in BATCH_PROBE:
        try:
            torch.cuda.reset_peak_memory_stats(device)
            x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
            y = torch.randint(0, 21, (batch,), device=device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=variant.bf16):
                loss = torch.nn.functional.cross_entropy(model(x).float(), y)
            loss.backward()
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device)
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            model.zero_grad(set_to_none=True)
            x = y = loss = None
            gc.collect()
            torch.cuda.empty_cache()
        if peak > MEMORY_HEADROOM * total:  # fits, but leaves too little for the optimizer and compilation
            break
        best = batch
    return best


# ---------------------------------------------------------------------------------------------------
# The whole benchmark
# ---------------------------------------------------------------------------------------------------


@dataclass
class BackboneResult:
    """The measurements of one backbone: per variant label, and the FLOPs of one image's training step."""

    backbone: str
    image_size: int
    train_flops_per_image: float | None
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    concurrent: dict[str, Any] | None = None


def run_bench(options: BenchOptions, *, log: Callable[[str], None] = lambda s: None,
              progress: Callable[[str, int], Callable[[int], None]] | None = None,
              command: str = "", on_backbone: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Measure every backbone and variant; return the JSON document (see :mod:`bmbench.bench.report`).

    ``on_backbone(doc)`` is called after each backbone (the CLI writes the JSON so far: a run cut short by a
    time limit keeps what it measured)."""
    import torch

    from bmbench.datapaths.gpu import release_resident_images
    from bmbench.engine.device import resolve_device

    device = resolve_device(options.device)
    cuda = device.type == "cuda"
    warmup = options.warmup if options.warmup is not None else (5 if cuda else 1)
    eval_steps = options.eval_steps if options.eval_steps is not None else (5 if cuda else 1)
    eval_warmup = min(warmup, 2) if cuda else 0
    if options.steps < 1 or warmup < 0 or eval_steps < 1:
        raise BmbenchError("--steps and --eval-steps must be at least 1, --warmup at least 0")
    backbones = options.backbones or (PAPER_BACKBONES if device.type == "cuda" else (CPU_DEFAULT_BACKBONE,))
    data = prepare_data(options, progress)
    log(f"data: {data.root} ({len(data.cache):,} cached images, {len(data.rows):,} per epoch"
        f"{', SYNTHETIC' if data.synthetic else ''})")
    name = device_name(device)
    torch.manual_seed(options.seed)
    doc: dict[str, Any] = {
        "schema_version": 1,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "device": {"type": device.type, "name": name, "peak_bf16_flops": peak_bf16_flops(name)
                   if device.type == "cuda" else None},
        "data": {"root": data.root, "dataset": data.dataset, "synthetic": data.synthetic,
                 "cached_images": len(data.cache), "images_per_epoch": len(data.rows), "cache": data.cache.checksum},
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items()},
        "versions": _versions(),
        "data_only": {},
        "backbones": [],
    }
    for spec in backbones:
        result = measure_backbone(options, spec, data, device, doc, warmup=warmup, eval_warmup=eval_warmup,
                                  eval_steps=eval_steps, log=log, on_variant=on_backbone)
        if options.concurrent > 1 and BMBENCH in options.paths and result is not None:
            result["concurrent"] = measure_concurrent(options, result, data, device, log, warmup)
        _free(device)
        if on_backbone is not None:
            on_backbone(doc)
    release_resident_images()  # the cached images stay resident across backbones, not beyond
    return doc


def resized(recipe: Any, size: int | None) -> Any:
    """The recipe at another image size (training crop and evaluation), or unchanged."""
    if size is None:
        return recipe
    aug = recipe.augmentation.model_copy(update={"crop_size": size}) if hasattr(recipe.augmentation, "model_copy") \
        else replace(recipe.augmentation, crop_size=size)
    return recipe.model_copy(update={"augmentation": aug, "eval_size": size})


def data_only_bench(options: BenchOptions, emit: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The data paths alone (no model): plain and bmbench at the recipe's batch, size and the run's layout."""
    import torch

    from bmbench.datapaths.gpu import release_resident_images
    from bmbench.engine.device import resolve_device

    device = resolve_device(options.device)
    warmup = options.warmup if options.warmup is not None else 3
    data = prepare_data(options)
    label, backbone, _folder, recipe = resolve_backbone(options.backbones[0])
    recipe = resized(recipe, options.image_size)
    batch = int(options.batch) if options.batch != "max" else int(recipe.batch_size)
    recipe = recipe.model_copy(update={"batch_size": batch})
    size = recipe.augmentation.crop_size
    doc: dict[str, Any] = {"schema_version": 1, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                           "device": {"type": device.type, "name": device_name(device), "peak_bf16_flops": None},
                           "data": {"root": data.root, "dataset": data.dataset, "synthetic": data.synthetic,
                                    "cached_images": len(data.cache), "images_per_epoch": len(data.rows)},
                           "versions": _versions(), "data_only": {}, "backbones": []}
    for variant in variants(options, backbone, device, recipe):
        key = f"{variant.path}:{size}:{batch}:{variant.layout}"
        if key in doc["data_only"]:
            continue
        datapath = None
        try:
            datapath = make_datapath(variant, recipe, data, device, options.seed)
            loaded = time.perf_counter()
            if variant.path == BMBENCH:  # loading the epoch's images onto the device, timed apart from batches
                datapath.train_batches(data.positions, 0)
                _sync(device)
            load_s = time.perf_counter() - loaded
            figures = measure_data_only(datapath, data.positions, device, warmup, options.steps,
                                        variant.layout == "channels_last")
            doc["data_only"][key] = {"path": variant.path, "size": size, "batch": batch, "layout": variant.layout,
                                     "load_s": load_s, "storage": getattr(datapath, "storage", None), **figures}
        except Exception as exc:  # noqa: BLE001 - recorded; the other path still runs
            doc["data_only"][key] = {"path": variant.path, "size": size, "batch": batch, "layout": variant.layout,
                                     **failure(exc, f"data path {variant.path}")}
        del datapath
        if emit is not None:
            emit({"bench": doc})
    release_resident_images()
    torch.manual_seed(options.seed)
    return doc


def failure(exc: BaseException, what: str) -> dict[str, Any]:
    """An error as the JSON records it: the message and the last frames of its traceback."""
    import traceback

    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        message = f"out of device memory ({what})"
    else:
        message = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:500]} ({what})"
    frames = traceback.extract_tb(exc.__traceback__)[-4:]
    return {"error": message, "traceback": [f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames]}


def measure_backbone(options: BenchOptions, spec: str, data: BenchData, device: Any, doc: dict[str, Any], *,
                     warmup: int, eval_warmup: int, eval_steps: int, log: Callable[[str], None],
                     on_variant: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any] | None:
    """Every variant of one backbone, each in its own ``try``: a failure (a compile error that eager cannot
    cover, running out of memory) is recorded with its traceback summary and the next variant runs.
    The backbone's record is in ``doc["backbones"]`` from the start; ``on_variant(doc)`` after each variant."""
    try:
        label, backbone, folder, base_recipe = resolve_backbone(spec)
        base_recipe = resized(base_recipe, options.image_size)
        log(f"{label}: building")
        base = build_model(backbone, folder).to("cpu")
    except BmbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded; the other backbones still run
        doc["backbones"].append({"backbone": spec, "image_size": None, "train_flops_per_image": None,
                                 "variants": {}, "concurrent": None, **failure(exc, "building the model")})
        return None
    size = base_recipe.augmentation.crop_size if base_recipe.augmentation.random_crop else base_recipe.eval_size
    result = asdict(BackboneResult(backbone=label, image_size=size, train_flops_per_image=None))
    result["backbone_spec"] = backbone
    doc["backbones"].append(result)
    for variant in variants(options, backbone, device, base_recipe):
        record: dict[str, Any] = {"path": variant.path, "layout": variant.layout, "bf16": variant.bf16,
                                  "compile": variant.compile, "cuda_graphs": variant.cuda_graphs,
                                  "as_run": variant.as_run, "data_only_key": None}
        result["variants"][variant.label] = record
        model = step_model = datapath = None
        batch: int | str = options.batch
        try:
            settings = variant.settings(device, options.seed, options.compile_backend)
            model, step_model = build_step_model(copy.deepcopy(base), variant, device, settings)
            if result["train_flops_per_image"] is None:
                result["train_flops_per_image"] = count_step_flops(model, 2, size, device) / 2
            batch = largest_batch(model, variant, device, size) if options.batch == "max" else int(options.batch)
            recipe = base_recipe.model_copy(update={"batch_size": batch})
            datapath = make_datapath(variant, recipe, data, device, options.seed)
            log(f"{label}: {variant.label}, batch {batch}")
            key = f"{variant.path}:{size}:{batch}:{variant.layout}"
            if not options.only_train:
                record["data_only_key"] = key
                if key not in doc["data_only"]:
                    doc["data_only"][key] = {"path": variant.path, "size": size, "batch": batch,
                                             "layout": variant.layout,
                                             **measure_data_only(datapath, data.positions, device, min(warmup, 3),
                                                                 options.steps, variant.layout == "channels_last")}
            record["train"] = measure_training(model, step_model, datapath, data.positions, recipe, variant,
                                               device, warmup, options.steps, options.compile_backend)
            fallback = getattr(step_model, "fallback", None)
            if fallback:
                record["compile_fallback"] = fallback
            if not options.only_train and (variant.as_run or variant.path == PLAIN or not options.eval_as_run_only):
                record["eval"] = measure_eval(model, datapath, data.positions, variant, device, eval_warmup,
                                              eval_steps, options.compile_backend)
        except BmbenchError:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded with its traceback; the next variant runs
            record.update(failure(exc, f"{variant.label}, batch {batch}"))
            log(f"{label}: {variant.label}: {record['error']}")
        storage = getattr(datapath, "storage", None)
        if storage is not None:
            record["storage"] = storage
        del model, step_model, datapath
        _free(device)
        if on_variant is not None:
            on_variant(doc)
    del base
    return result


def _versions() -> dict[str, Any]:
    from bmbench.runs.provenance import git_commit, package_versions

    return {**package_versions(), "git": git_commit()}


def measure_concurrent(options: BenchOptions, result: dict[str, Any], data: BenchData, device: Any,
                       log: Callable[[str], None], warmup: int) -> dict[str, Any]:
    """Run the bmbench path of a backbone in N processes at once; total images/s vs one process."""
    from bmbench.datapaths.gpu import CONCURRENT_ENV, host_fallback_notes

    backbone = result["backbone"]
    single = [v for v in result["variants"].values() if v["path"] == BMBENCH and "train" in v]
    if not single:
        return {"error": "no single-process measurement to compare with"}
    best = max(single, key=lambda v: v["train"]["images_per_s"])
    n = options.concurrent
    from bmbench.datapaths.gpu import release_resident_images

    release_resident_images()  # the workers load their own copies
    _free(device)
    log(f"{backbone}: {n} concurrent processes")
    with tempfile.TemporaryDirectory(prefix="bmbench-bench-") as tmp:
        barrier = Path(tmp, "barrier")
        barrier.mkdir()
        env = {**os.environ, BARRIER_ENV: str(barrier), PARTIES_ENV: str(n), CONCURRENT_ENV: str(n)}
        procs = []
        for k in range(n):
            cmd = [sys.executable, "-m", "bmbench.cli.main", "bench", "--backbone", backbone, "--paths", BMBENCH,
                   "--only-train", "--batch", str(best["train"]["batch"]), "--device", device.type,
                   "--steps", str(options.steps), "--warmup", str(warmup), "--data", data.root,
                   "--images", str(len(data.rows)), "--layouts", best["layout"], "--json", str(Path(tmp, f"{k}.json")),
                   "--compile" if best["compile"] else "--no-compile", "--seed", str(options.seed + k)]
            if best["cuda_graphs"]:
                cmd.append("--cuda-graphs")
            log_file = open(Path(tmp, f"{k}.log"), "wb")  # noqa: SIM115 - closed below
            procs.append((subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env), log_file))
        per_process: list[float] = []
        storages: list[str] = []
        errors: list[str] = []
        notes: list[str] = []
        for k, (proc, log_file) in enumerate(procs):
            code = proc.wait()
            log_file.close()
            path = Path(tmp, f"{k}.json")
            if code != 0 or not path.is_file():
                tail = Path(tmp, f"{k}.log").read_text(errors="replace").splitlines()[-5:]
                errors.append(f"process {k} exited {code}: {' | '.join(tail)}")
                continue
            doc = json.loads(path.read_text())
            records = [v for b in doc["backbones"] for v in b["variants"].values() if "train" in v]
            per_process.extend(r["train"]["images_per_s"] for r in records)
            storages.extend(r.get("storage", "-") for r in records)
            log_text = Path(tmp, f"{k}.log").read_text(errors="replace")
            notes.extend(f"process {k}: {note}" for note in host_fallback_notes(log_text))
    if errors:
        return {"processes": n, "error": "; ".join(errors)}
    total = sum(per_process)
    return {"processes": n, "batch": best["train"]["batch"], "layout": best["layout"],
            "images_per_s_per_process": per_process, "storage_per_process": storages, "storage_notes": notes,
            "images_per_s_total": total,
            "images_per_s_one_process": best["train"]["images_per_s"],
            "ratio_vs_one_process": total / best["train"]["images_per_s"]}
