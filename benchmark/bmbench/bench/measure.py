"""What ``bmbench bench`` measures, and how.

Two paths, side by side in one process on one device:

* ``plain``: the reference: :class:`PlainDataPath` (DataLoader, Pillow decoding, torchvision transforms),
  float32, NCHW, eager, PyTorch's default SGD;
* ``bmbench``: :class:`GpuDataPath` (cached images, augmentation on the device), bf16 autocast, channels_last
  (and NCHW too for RegNet, whose grouped convolutions may prefer it), torch.compile, fused SGD, optionally
  CUDA graphs. On a CPU the GPU-only switches fall back exactly as in training (fp32, NCHW, eager).

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
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from bmbench.errors import BmbenchError

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


@dataclass(frozen=True)
class Variant:
    """One configuration of a path: what the loop's switches are for it."""

    path: str
    layout: str
    bf16: bool
    compile: bool
    cuda_graphs: bool

    @property
    def label(self) -> str:
        if self.path == PLAIN:
            return PLAIN
        return f"{BMBENCH} ({'NCHW' if self.layout == 'nchw' else 'channels_last'})"


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


def resolve_backbone(spec: str) -> tuple[str, Any, Any]:
    """``(label, LoadedSubmission, Recipe)`` for ``torchvision:NAME``, ``timm:NAME``, a submission name or
    folder (its recipe and model.py are used), or a bare torchvision model name."""
    from bmbench.submissions.registry import resolve_submission
    from bmbench.submissions.schema import LoadedSubmission, Submission

    if ":" not in spec:
        try:
            loaded = resolve_submission(spec)
        except BmbenchError:
            spec = f"torchvision:{spec}"
        else:
            if loaded.submission.kind == "baseline":
                raise BmbenchError(f"{spec} is a baseline: there is no network to benchmark")
            return loaded.submission.name, loaded, loaded.submission.recipe
    submission = Submission(name="bench", authors=["bmbench bench"], description="benchmark model",
                            backbone=spec, init="random")
    return spec, LoadedSubmission(submission=submission, folder=Path("."), digest=""), submission.recipe


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


def variants(options: BenchOptions, backbone: str, device: Any) -> list[Variant]:
    """The configurations to time for one backbone, plain first."""
    cuda = device.type == "cuda"
    out: list[Variant] = []
    if PLAIN in options.paths:
        out.append(Variant(PLAIN, "nchw", bf16=False, compile=False, cuda_graphs=False))
    if BMBENCH in options.paths:
        layouts = {"auto": ["channels_last", "nchw"] if "regnet" in backbone.lower() else ["channels_last"],
                   "both": ["channels_last", "nchw"], "channels_last": ["channels_last"], "nchw": ["nchw"]}
        if options.layouts not in layouts:
            raise BmbenchError(f"--layouts must be auto, both, channels_last or nchw, not {options.layouts!r}")
        compile_on = cuda if options.compile is None else options.compile
        for layout in layouts[options.layouts] if cuda else ["nchw"]:
            out.append(Variant(BMBENCH, layout, bf16=cuda, compile=compile_on and cuda,
                               cuda_graphs=options.cuda_graphs and cuda))
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
            raise BmbenchError("concurrent benchmark: the other processes did not get ready within 15 minutes")
        time.sleep(0.05)


def build_step_model(model: Any, variant: Variant, device: Any) -> tuple[Any, Any]:
    """``(model on the device, model to call)``: channels_last and torch.compile per the variant."""
    import torch

    model = model.to(device)
    if variant.layout == "channels_last" and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if variant.compile:
        return model, torch.compile(model, mode="reduce-overhead" if variant.cuda_graphs else None)
    return model, model


def measure_training(model: Any, step_model: Any, datapath: Any, positions: np.ndarray, recipe: Any,
                     variant: Variant, device: Any, warmup: int, steps: int) -> dict[str, Any]:
    """Images/s, step time and peak memory of ``steps`` training steps after ``warmup`` (compile) steps."""
    import torch

    from bmbench.engine.loop import LoopSettings, NoProgress, _train_epoch, make_optimizer

    settings = LoopSettings(device=device, epochs=1, lr=BENCH_LR, seed=0, bf16=variant.bf16,
                            channels_last=variant.layout == "channels_last" and device.type == "cuda",
                            compile=variant.compile, cuda_graphs=variant.cuda_graphs)
    if variant.path == PLAIN:  # PyTorch's default SGD (foreach), as a plain script would use
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=BENCH_LR,
                                    momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    else:
        optimizer = make_optimizer(model, recipe, BENCH_LR, device)
    batches = endless_batches(datapath, positions)
    started = time.perf_counter()
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
           "warmup_s": warmup_s, "batch": int(recipe.batch_size)}
    out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del optimizer
    return out


def measure_eval(model: Any, datapath: Any, positions: np.ndarray, variant: Variant, device: Any, warmup: int,
                 steps: int) -> dict[str, Any]:
    """Forward-only images/s on evaluation batches (the loop's ``evaluate``)."""
    from bmbench.engine.loop import LoopSettings, evaluate

    settings = LoopSettings(device=device, epochs=1, lr=BENCH_LR, seed=0, bf16=variant.bf16,
                            channels_last=variant.layout == "channels_last" and device.type == "cuda",
                            compile=False)
    per_batch = max(int(datapath.recipe.batch_size), 64)
    take = positions[: per_batch * (warmup + steps)]
    batches = iter(datapath.eval_batches(take))
    if warmup:
        evaluate(model, islice(batches, warmup), settings)
    _sync(device)
    started = time.perf_counter()
    evaluate(model, islice(batches, steps), settings)
    _sync(device)
    seconds = time.perf_counter() - started
    seen = min(len(take) - per_batch * warmup, per_batch * steps)
    return {"images_per_s": seen / seconds, "seconds": seconds, "images": seen}


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

    from bmbench.models.backbones import build_backbone
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
        label, loaded, base_recipe = resolve_backbone(spec)
        log(f"{label}: building")
        base = build_backbone(loaded, 21).to("cpu")
        size = base_recipe.augmentation.crop_size if base_recipe.augmentation.random_crop else base_recipe.eval_size
        result = BackboneResult(backbone=label, image_size=size, train_flops_per_image=None)
        for variant in variants(options, label, device):
            model = copy.deepcopy(base)
            model, step_model = build_step_model(model, variant, device)
            if result.train_flops_per_image is None:
                result.train_flops_per_image = count_step_flops(model, 2, size, device) / 2
            batch = (largest_batch(model, variant, device, size) if options.batch == "max" else int(options.batch))
            recipe = base_recipe.model_copy(update={"batch_size": batch})
            datapath = make_datapath(variant, recipe, data, device, options.seed)
            log(f"{label}: {variant.label}, batch {batch}")
            key = f"{variant.path}:{size}:{batch}:{variant.layout}"
            if not options.only_train and key not in doc["data_only"]:
                doc["data_only"][key] = {"path": variant.path, "size": size, "batch": batch, "layout": variant.layout,
                                         **measure_data_only(datapath, data.positions, device, min(warmup, 3),
                                                             options.steps, variant.layout == "channels_last")}
            record: dict[str, Any] = {"path": variant.path, "layout": variant.layout, "bf16": variant.bf16,
                                      "compile": variant.compile, "cuda_graphs": variant.cuda_graphs,
                                      "data_only_key": key if not options.only_train else None}
            try:
                record["train"] = measure_training(model, step_model, datapath, data.positions, recipe, variant,
                                                   device, warmup, options.steps)
                if not options.only_train:
                    record["eval"] = measure_eval(model, datapath, data.positions, variant, device, eval_warmup,
                                                  eval_steps)
            except torch.cuda.OutOfMemoryError:
                record["error"] = f"out of device memory at batch {batch}"
            storage = getattr(datapath, "storage", None)
            if storage is not None:
                record["storage"] = storage
            result.variants[variant.label] = record
            del model, step_model, datapath
            _free(device)
        if options.concurrent > 1 and BMBENCH in options.paths:
            result.concurrent = measure_concurrent(options, label, data, result, device, log)
        doc["backbones"].append(asdict(result))
        del base
        _free(device)
        if on_backbone is not None:
            on_backbone(doc)
    release_resident_images()  # the cached images stay resident across backbones, not beyond
    return doc


def _versions() -> dict[str, Any]:
    from bmbench.runs.provenance import git_commit, package_versions

    return {**package_versions(), "git": git_commit()}


def measure_concurrent(options: BenchOptions, backbone: str, data: BenchData, result: BackboneResult, device: Any,
                       log: Callable[[str], None]) -> dict[str, Any]:
    """Run the bmbench path of ``backbone`` in N processes at once; total images/s vs one process."""
    from bmbench.datapaths.gpu import CONCURRENT_ENV

    single = [v for v in result.variants.values() if v["path"] == BMBENCH and "train" in v]
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
                   "--steps", str(options.steps), "--warmup", str(options.warmup or 5), "--data", data.root,
                   "--images", str(len(data.rows)), "--layouts", best["layout"], "--json", str(Path(tmp, f"{k}.json")),
                   "--compile" if best["compile"] else "--no-compile", "--seed", str(options.seed + k)]
            if best["cuda_graphs"]:
                cmd.append("--cuda-graphs")
            log_file = open(Path(tmp, f"{k}.log"), "wb")  # noqa: SIM115 - closed below
            procs.append((subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env), log_file))
        per_process: list[float] = []
        storages: list[str] = []
        errors: list[str] = []
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
    if errors:
        return {"processes": n, "error": "; ".join(errors)}
    total = sum(per_process)
    return {"processes": n, "batch": best["train"]["batch"], "layout": best["layout"],
            "images_per_s_per_process": per_process, "storage_per_process": storages, "images_per_s_total": total,
            "images_per_s_one_process": best["train"]["images_per_s"],
            "ratio_vs_one_process": total / best["train"]["images_per_s"]}
