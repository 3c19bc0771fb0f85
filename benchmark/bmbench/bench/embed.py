"""``bmbench bench --embed SUBMISSION``: embedding throughput next to the encoder's pure forward throughput.

Why: ``bmbench embed`` should be limited by the encoder, not by reading, decoding, copying or
preprocessing images. The pure forward pass runs the same encoder, the same way (eval, inference mode,
bf16 autocast + channels_last on CUDA), at the same batch on one preprocessed batch already resident on
the device; the embedding figure is a complete ``bmbench embed`` of the split into a temporary store
(its ``images_per_second``, what the manifest records). The ratio is embed / forward; the issue asks
for at least 0.8 on a GPU.

:func:`device_check` is the device check's embed stage: the same comparison for a timm encoder built without
weights (ViT-L/14 at 224 px on a GPU, a toy ViT with ``--cpu-smoke``) on random pixels, through the
pydantic-free per-batch step of :mod:`bmbench.features.batch`, so it runs on a GPU machine without pydantic.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the module imports no pydantic at import time: the device check's embed stage needs none
    from bmbench.features.embed import Progress
    from bmbench.records.embed_bench import EmbedBench
    from bmbench.submissions.schema import LoadedSubmission

BENCH_SCHEMA_VERSION = 1
SOURCE_PIXELS = (250, 250)
"""Height and width of a bone-marrow image (the uint8 pixels the image cache holds)."""
TARGET_RATIO = 0.8
"""Embedding images/s over pure-forward images/s that issue 14 asks for on a GPU."""


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], Any], *, device: Any, steps: int, warmup: int) -> float:
    """Seconds for ``steps`` calls of ``step`` after ``warmup`` untimed ones, the device synchronised around."""
    for _ in range(warmup):
        step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return time.perf_counter() - started


def _rate(images: int, seconds: float) -> float:
    return round(images / seconds, 2) if seconds > 0 else 0.0


def pure_forward(loaded: LoadedSubmission, *, device: Any, batch: int, steps: int, warmup: int,
                 fold: int | None) -> dict[str, Any]:
    """Images/s of the encoder alone on one device-resident preprocessed batch (random uint8 pixels)."""
    import torch

    from bmbench.features.batch import batch_transform, forward_features, prepare_module
    from bmbench.features.encoders import load_encoder

    encoder = load_encoder(loaded, fold=fold)
    encoder.module = prepare_module(encoder.module, device)
    gen = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (batch, *SOURCE_PIXELS, 3), dtype=torch.uint8, generator=gen)
    x = batch_transform(encoder.preprocess)(pixels.to(device))
    seconds = timed(lambda: forward_features(encoder.module, x, device), device=device, steps=steps, warmup=warmup)
    return {"images_per_second": _rate(batch * steps, seconds), "steps": steps, "warmup": warmup,
            "seconds": round(seconds, 3), "input": [batch, 3, encoder.preprocess.size, encoder.preprocess.size],
            "parameters": encoder.parameters}


def bench_embed(loaded: LoadedSubmission, *, data: str, split_name: str | None, device: str, batch: int, steps: int,
                warmup: int | None = None, progress: Progress | None = None,
                log: Callable[[str], None] = lambda s: None) -> EmbedBench:
    """Embed the split into a temporary store and time the pure forward pass; both at ``batch``: the typed
    ``bench --embed --json`` document (:mod:`bmbench.records.embed_bench`, built only here)."""
    from bmbench.engine.device import resolve_device
    from bmbench.features.embed import embed
    from bmbench.features.encoders import run_folds
    from bmbench.features.store import fold_folder, read_manifest
    from bmbench.records.embed_bench import EmbedBench, EmbedBenchData, EmbedTiming, ForwardTiming
    from bmbench.runs.provenance import device_info

    dev = resolve_device(device)
    warm = warmup if warmup is not None else (5 if dev.type == "cuda" else 1)
    fold = run_folds(str(loaded.submission.encoder))[0] if str(loaded.submission.encoder).startswith("run:") else None
    log(f"pure forward: {steps} timed batches of {batch} after {warm} warm-up")
    forward = pure_forward(loaded, device=dev, batch=batch, steps=steps, warmup=warm, fold=fold)
    with tempfile.TemporaryDirectory(prefix="bmbench-bench-embed-") as tmp:
        log("embedding the split into a temporary store")
        folder = embed(loaded, data=data, split_name=split_name, out_dir=Path(tmp) / "store", device=device,
                       batch=batch, progress=progress, folds=(fold,) if fold is not None else None)
        manifest = read_manifest(fold_folder(folder, fold) if fold is not None else folder)
    embed_ips = manifest.images_per_second
    return EmbedBench(
        submission=loaded.submission.name, encoder=manifest.encoder, preprocess=manifest.preprocess,
        data=EmbedBenchData(dataset=manifest.dataset, synthetic=manifest.synthetic, split=manifest.split.name,
                            rows=manifest.rows, image_cache=manifest.image_cache is not None),
        device=device_info(dev), batch=batch, forward=ForwardTiming(**forward),
        embed=EmbedTiming(images_per_second=embed_ips, wall_seconds=manifest.wall_seconds, dim=manifest.dim),
        ratio=round(embed_ips / forward["images_per_second"], 3) if forward["images_per_second"] else None)


def render_embed_bench(doc: EmbedBench, console: Any) -> None:
    """The two figures side by side, and their ratio."""
    from rich.table import Table

    tag = " [SYNTHETIC]" if doc.data.synthetic else ""
    table = Table(title=f"embed vs pure forward: {doc.encoder.id} on {doc.data.split}{tag}, "
                        f"batch {doc.batch}, {doc.device.get('name', doc.device.get('type'))}",
                  title_justify="left")
    for col in ("path", "images/s", "seconds", "notes"):
        table.add_column(col, justify="right" if col in ("images/s", "seconds") else "left")
    f, e = doc.forward, doc.embed
    table.add_row("pure forward (device-resident batch)", f"{f.images_per_second:,.1f}", f"{f.seconds:.2f}",
                  f"{f.steps} batches of {f.input}")
    source = "image cache" if doc.data.image_cache else "JPEG decoding"
    table.add_row("bmbench embed (whole split)", f"{e.images_per_second:,.1f}", f"{e.wall_seconds:.2f}",
                  f"{doc.data.rows} images from the {source}, D = {e.dim}")
    console.print(table)
    if doc.ratio is not None:
        console.print(f"embed / forward = {doc.ratio:.2f}", highlight=False)


# -- the device check's embed stage (no pydantic: a bare GPU machine has torch and timm only) ---------------

@dataclass(frozen=True)
class CheckPreprocess:
    """The check encoder's preprocessing, as ``bmbench embed`` resolves it (a ``PreprocessLike``)."""

    size: int
    resize: int
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EmbedCheck:
    """One encoder of the device check, built by timm without pretrained weights (speed needs none)."""

    timm_name: str
    kwargs: tuple[tuple[str, Any], ...]
    size: int
    batch: int
    steps: int
    warmup: int
    pool: int = 4
    """Distinct host batches the data path cycles through (so no batch is served from a warm cache)."""
    what: str = ""


EMBED_BATCH = 256
"""``bmbench embed --batch``'s default: the batch a real embedding runs at."""
EMBED_CHECKS = {
    # DinoBloom-L's shape: a DINOv2 ViT-L/14 at 224 px (304 M parameters), ImageNet statistics, bicubic
    "gpu": EmbedCheck("vit_large_patch14_dinov2", (("img_size", 224),), size=224, batch=EMBED_BATCH, steps=20,
                      warmup=3, what="ViT-L/14 (DINOv2 / DinoBloom-L shape) at 224 px"),
    # a two-block ViT at 32 px: the same code path, at a size two shared CPU cores run in a second
    "cpu": EmbedCheck("vit_tiny_patch16_224", (("img_size", 32), ("depth", 2)), size=32, batch=16, steps=3,
                      warmup=1, pool=2, what="toy ViT (2 blocks, 32 px): cpu smoke, tests the machinery"),
}


def device_check(config: dict[str, Any], emit: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Pure forward vs the embedding data path of ``bmbench embed``, same encoder, same batch.

    *Pure forward*: the preprocessed batch already on the device, only :func:`forward_features`. *Data
    path*: what ``bmbench embed`` executes per batch from the image cache (:func:`embed_batch`): uint8
    pixels copied out of a host array, pinned by the prefetch thread, copied to the device, preprocessed
    there, the bf16/channels_last forward, the finiteness check, float16 features back to the host. The
    ratio data path / pure forward is judged against :data:`TARGET_RATIO` on a GPU only. The component
    figures (copy, preprocess) say where a shortfall comes from. ``emit`` receives the document as it grows.
    """
    import numpy as np
    import timm
    import torch

    from bmbench.features.batch import batch_transform, embed_batch, forward_features, prefetch, prepare_module

    def report(doc: dict[str, Any]) -> None:
        if emit is not None:
            emit(doc)

    mode = str(config["mode"])
    check = EMBED_CHECKS[mode]
    device = torch.device(config["device"])
    started = time.perf_counter()
    with torch.device(device):  # initialise on the device: seconds, where 304 M parameters take ~25 s on 2 cores
        model = timm.create_model(check.timm_name, pretrained=False, num_classes=0, **dict(check.kwargs))
    model.eval().requires_grad_(False)
    module = prepare_module(model, device)
    batch, steps, warmup = check.batch, check.steps, check.warmup
    doc: dict[str, Any] = {
        "schema_version": BENCH_SCHEMA_VERSION, "kind": "embed-device-check", "mode": mode, "synthetic": True,
        "encoder": {"timm": check.timm_name, "kwargs": dict(check.kwargs), "what": check.what,
                    "weights": "random (timm, no pretrained weights: the speed does not depend on them)",
                    "parameters": sum(p.numel() for p in model.parameters())},
        "device": {"type": device.type, **({"name": torch.cuda.get_device_name(device)} if device.type == "cuda"
                                           else {"threads": torch.get_num_threads()})},
        "batch": batch, "steps": steps, "warmup": warmup, "pixels": [batch, *SOURCE_PIXELS, 3],
        "input": [batch, 3, check.size, check.size], "bf16_channels_last": device.type == "cuda",
        "build_s": round(time.perf_counter() - started, 2), "target_ratio": TARGET_RATIO,
    }
    report(doc)
    transform = batch_transform(CheckPreprocess(size=check.size, resize=check.size))
    host = np.random.default_rng(0).integers(0, 256, (check.pool * batch, *SOURCE_PIXELS, 3), dtype=np.uint8)
    first = torch.from_numpy(host[:batch])
    pixels = first.to(device)
    x = transform(pixels)
    seconds = timed(lambda: forward_features(module, x, device), device=device, steps=steps, warmup=warmup)
    doc["forward"] = {"images_per_second": _rate(batch * steps, seconds), "seconds": round(seconds, 3)}
    report(doc)
    prep_s = timed(lambda: transform(pixels), device=device, steps=steps, warmup=warmup)
    doc["components"] = {"preprocess": {
        "images_per_second": _rate(batch * steps, prep_s), "seconds": round(prep_s, 3),
        "what": f"resize + crop + normalise on the device ({SOURCE_PIXELS[0]} -> {check.size} px)"}}
    if device.type == "cuda":
        pinned = first.pin_memory()
        copy_s = timed(lambda: pinned.to(device, non_blocking=True), device=device, steps=steps, warmup=warmup)
        doc["components"]["copy_to_device"] = {"images_per_second": _rate(batch * steps, copy_s),
                                               "seconds": round(copy_s, 3), "what": "pinned uint8 host batch -> device"}
    report(doc)
    total = warmup + steps
    ids = [f"synthetic-{k}" for k in range(total * batch)]
    feats: np.ndarray | None = None

    def blocks() -> Any:
        for k in range(total):
            a = (k % check.pool) * batch
            yield k * batch, torch.from_numpy(np.array(host[a:a + batch]))  # a private copy, as from the cache

    t0 = 0.0
    for k, (row, block) in enumerate(prefetch(blocks(), pin=device.type == "cuda")):
        if k == warmup:
            t0 = time.perf_counter()
        out = embed_batch(module, transform, block, device, spec=check.timm_name, first_row=row, image_ids=ids)
        if feats is None:
            feats = np.empty((total * batch, out.shape[1]), dtype=np.float16)
        feats[row:row + len(out)] = out
    path_s = time.perf_counter() - t0
    path_ips = _rate(batch * steps, path_s)
    forward_ips = doc["forward"]["images_per_second"]
    ratio = round(path_ips / forward_ips, 3) if forward_ips else None
    doc["data_path"] = {"images_per_second": path_ips, "seconds": round(path_s, 3),
                        "dim": int(feats.shape[1]) if feats is not None else None,
                        "what": "bmbench embed's per-batch step from a host uint8 array (the image cache's "
                                "layout): prefetch thread + pin, async copy, preprocess, forward, check, "
                                "float16 to host"}
    doc["ratio"] = ratio
    doc["meets_target"] = (ratio >= TARGET_RATIO) if (ratio is not None and mode == "gpu") else None
    if mode != "gpu":
        doc["note"] = "cpu smoke: a toy encoder on shared CPU cores; the 0.8 target is judged on a GPU only"
    report(doc)
    return doc
